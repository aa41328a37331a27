"""Benchmark: the local runner relaying a step's output vs running the same step with bash directly."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs a command with its output to /dev/null; prints its wall time and the peak RSS of what it
# waited for (the runner and, below it, bash: RUSAGE_CHILDREN keeps the largest).
MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def measured(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one run of `argv`, in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv], env=env, cwd=cwd, capture_output=True, check=True
    )
    seconds, kib = result.stdout.split()
    return float(seconds), int(kib) / 1024


def commands(step: Path, runners: dict[str, Path]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """bash alone, then each runner checkout in text and in JSON mode."""
    runs = {"bash step.sh": (["bash", str(step)], dict(os.environ))}
    for name, root in runners.items():
        env = {**os.environ, "PYTHONPATH": str(root)}
        argv = [sys.executable, "-m", "runner", str(step)]
        runs[f"runner{name} text"] = (argv, env)
        runs[f"runner{name} json"] = ([*argv, "--log-format", "json"], env)
    return runs


def bench(title: str, step: Path, runners: dict[str, Path], runs: int, lines: int | None) -> None:
    todo = commands(step, runners)
    times: dict[str, list[float]] = {name: [] for name in todo}
    peaks: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(runs):
        for name, (argv, env) in todo.items():  # interleaved, so machine noise hits all alike
            # Run from the step's folder: `python -m` puts the working directory first on sys.path,
            # which would shadow PYTHONPATH's runner (and the baseline) when run from a checkout.
            seconds, peak = measured(argv, env, step.parent)
            times[name].append(seconds)
            peaks[name].append(peak)
    base = statistics.median(times["bash step.sh"])
    print(f"\n{title}, median of {runs} runs, {os.cpu_count()} cores")
    rate = "lines/s" if lines else ""
    print(f"{'command':26} {'median s':>9} {'peak RSS MiB':>13} {rate:>12} {'vs bash':>8}")
    for name in todo:
        median = statistics.median(times[name])
        per_second = f"{lines / median:12,.0f}" if lines else " " * 12
        print(f"{name:26} {median:9.2f} {max(peaks[name]):13.0f} {per_second} {base / median:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=2_000_000, help="lines of the many-lines step")
    parser.add_argument("--line-mib", type=int, default=64, help="MiB of the one-line step (0: skip)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--baseline", type=Path, metavar="DIR",
        help="also run the runner package found in DIR (e.g. `git archive REV runner | tar -x -C DIR`)",
    )  # fmt: skip
    args = parser.parse_args()
    runners = {"": ROOT}
    if args.baseline:
        runners[" (baseline)"] = args.baseline.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        many = Path(tmp) / "lines.sh"
        # seq is fast enough that the relay, not the producer, is what gets measured.
        many.write_text(f"seq 1 {args.lines} | sed 's/$/ some typical log line text/'\n")
        bench(f"{args.lines:,} lines", many, runners, args.runs, args.lines)
        if args.line_mib:
            one = Path(tmp) / "line.sh"
            one.write_text(f"head -c {args.line_mib * 1024 * 1024} /dev/zero | tr '\\0' x\necho\n")
            bench(f"one line of {args.line_mib} MiB", one, runners, args.runs, None)


if __name__ == "__main__":
    main()
