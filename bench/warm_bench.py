"""The warm engine against a JVM per step: a small step, the example pipeline, a first run (medians)."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.local.executor import _spark_home  # noqa: E402
from runner.local.java import find_java_home  # noqa: E402

SMALL_STEP = "SELECT 1;\n"
EXAMPLE = ROOT / "sql" / "example"


def _timed(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per small-step figure (default: 5)")
    parser.add_argument("--pipeline-runs", type=int, default=5, help="runs of the warm pipeline (default: 5)")
    parser.add_argument(
        "--cold-pipeline-runs", type=int, default=5,
        help="runs of the pipeline with --cold (default: 5; each is five JVM starts)",
    )  # fmt: skip
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="warm-bench-"))
    step = work / "step.sql"
    step.write_text(SMALL_STEP)
    env = {**os.environ, "JAVA_HOME": str(find_java_home()), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    runner = [sys.executable, "-m", "runner"]
    state = ["--state-dir", str(work / "state")]
    pipeline_state = ["--state-dir", str(work / "pipeline-state")]
    # A state dir of its own: a cold run ends the warm engine of the state dir it runs on.
    cold_pipeline_state = ["--state-dir", str(work / "cold-pipeline-state")]
    bare = [str(_spark_home() / "bin" / "spark-sql"), "-f", str(step)]

    def stop(which: list[str]) -> Callable[[], None]:
        def stop_engine() -> None:
            subprocess.run([*runner, "--stop-engine", *which], env=env, cwd=ROOT, check=True)

        return stop_engine

    figures: dict[str, list[float]] = {}
    commands: list[tuple[str, list[str], Callable[[], None] | None, int]] = [
        ("bare `spark-sql -f step.sql`", bare, None, args.runs),
        ("`python -m runner step.sql --cold`", [*runner, str(step), *state, "--cold"], None, args.runs),
        ("`python -m runner step.sql`, first run (engine stopped)", [*runner, str(step), *state], stop(state),
         args.runs),
        ("`python -m runner step.sql`, engine warm", [*runner, str(step), *state], None, args.runs),
        ("`python -m runner sql/example/ --cold`", [*runner, str(EXAMPLE), *cold_pipeline_state, "--cold"],
         None, args.cold_pipeline_runs),
        ("`make run` (the example pipeline), engine warm", [*runner, str(EXAMPLE), *pipeline_state],
         None, args.pipeline_runs),
    ]  # fmt: skip
    # A first run of each, unmeasured: the metastores exist and the pipeline's tables are made.
    for argv in ([*runner, str(step), *state], [*runner, str(EXAMPLE), *pipeline_state]):
        _timed(argv, env, ROOT)
    # Interleaved: each round runs every command once, so the machine's noise is shared fairly.
    for round_no in range(max(args.runs, args.pipeline_runs, args.cold_pipeline_runs)):
        for label, argv, before, runs in commands:
            if round_no >= runs:
                continue
            if before is not None:
                before()
            figures.setdefault(label, []).append(_timed(argv, env, ROOT))
            print(f"round {round_no + 1}: {label}: {figures[label][-1]:.2f} s", file=sys.stderr)
    stop(state)()
    stop(pipeline_state)()

    medians = {label: statistics.median(times) for label, times in figures.items()}
    base = medians[commands[0][0]]
    print("| command | runs | median s | vs bare spark-sql -f |")
    print("| --- | ---: | ---: | ---: |")
    for label, _argv, _before, runs in commands:
        if label not in medians:  # asked for no runs of it (--cold-pipeline-runs 0)
            continue
        ratio = f"{base / medians[label]:.2f}x faster" if "example" not in label else "-"
        print(f"| {label} | {runs} | {medians[label]:.2f} | {ratio} |")
    first = medians[commands[2][0]]
    print(f"\nfirst run after the engine stopped / bare spark-sql: {first / base:.3f}")
    print(f"warm re-run: {base / medians[commands[3][0]]:.1f}x faster than bare spark-sql")


if __name__ == "__main__":
    main()
