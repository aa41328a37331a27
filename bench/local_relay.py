"""Benchmark: the local runner relaying a step's output vs running the same step with bash directly."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        step = Path(tmp) / "print.sh"
        # seq is fast enough that the relay, not the producer, is what gets measured.
        step.write_text(f"seq 1 {args.lines} | sed 's/$/ some typical log line text/'\n")
        commands = {
            "bash step.sh > /dev/null": ["bash", str(step)],
            "python -m runner step.sh > /dev/null": [sys.executable, "-m", "runner", str(step)],
            "python -m runner step.sh --log-format json": [
                sys.executable, "-m", "runner", str(step), "--log-format", "json"
            ],
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():  # interleaved, so machine noise hits all alike
                times[name].append(timed(argv, env))
    base = statistics.median(times["bash step.sh > /dev/null"])
    print(f"{args.lines:,} lines, median of {args.runs} runs, {os.cpu_count()} cores")
    print(f"{'command':45} {'median s':>9} {'lines/s':>12} {'vs bash':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:45} {median:9.2f} {args.lines / median:12,.0f} {base / median:7.2f}x")


if __name__ == "__main__":
    main()
