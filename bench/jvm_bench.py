"""A spark-sql start with Java's defaults, with C1 alone, and with C1 and the class archive (medians)."""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.spark_jvm import C1_ONLY, QUIET_CDS, archive_path, make_archive
from runner.local.executor import _spark_home
from runner.local.java import find_java_home

QUERY = "SELECT 1"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start(options: str, java_home: Path, folder: Path) -> tuple[float, float]:
    """One `spark-sql -e QUERY` from process start to exit: (wall s, CPU s of it and its children)."""
    environ = {**os.environ, "JAVA_HOME": str(java_home), "SPARK_LOCAL_IP": "127.0.0.1"}
    environ.pop("SPARK_CONF_DIR", None)
    environ["SPARK_SUBMIT_OPTS"] = options
    with tempfile.TemporaryDirectory(dir=folder) as cwd:  # a metastore of its own each time
        cpu, began = children_cpu(), time.monotonic()
        done = subprocess.run(
            [str(_spark_home() / "bin" / "spark-sql"), "-e", QUERY],
            cwd=cwd, env=environ, capture_output=True, check=False,
        )  # fmt: skip
        wall = time.monotonic() - began
    if done.returncode != 0 or done.stdout != b"1\n":
        raise SystemExit(f"spark-sql with {options!r} failed ({done.returncode}): {done.stderr[-500:]!r}")
    return wall, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="rounds; each runs every setting once")
    args = parser.parse_args()
    java_home = find_java_home()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        archive = archive_path(folder, java_home)
        began = time.monotonic()
        if not make_archive(archive, java_home):
            raise SystemExit(f"this Java ({java_home}) made no class archive")
        print(f"archive: {archive.stat().st_size / 2**20:.0f} MiB, made in {time.monotonic() - began:.1f} s")
        settings = {
            "Java's defaults": "",
            "C1 alone": C1_ONLY,
            "C1 and the archive": " ".join([C1_ONLY, f"-XX:SharedArchiveFile={archive}", *QUIET_CDS]),
        }
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in settings}
        for _ in range(args.runs):  # interleaved: a change in the machine's load reaches every setting
            for name, options in settings.items():
                figures[name].append(start(options, java_home, folder))
    base_wall = statistics.median(wall for wall, _ in figures["Java's defaults"])
    base_cpu = statistics.median(cpu for _, cpu in figures["Java's defaults"])
    print(f"`spark-sql -e '{QUERY}'`, {args.runs} rounds, load {os.getloadavg()[0]:.1f} at the end")
    print("| setting | wall (median) | CPU (median) | wall / defaults | CPU / defaults | wall per round |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for name, runs in figures.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        rounds = ", ".join(f"{w:.2f}" for w, _ in runs)
        ratios = f"{wall / base_wall:.2f} | {cpu / base_cpu:.2f}"
        print(f"| {name} | {wall:.2f} s | {cpu:.2f} s | {ratios} | {rounds} |")


if __name__ == "__main__":
    main()
