"""Date ranges and --from-stage on the local engine, with real bash and spark-sql steps."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from tests.conftest import run_cli, start_cli

RUN_ID = r"\d{8}T\d{6}Z-[0-9a-f]{6}"


def normalized(stderr: bytes) -> list[str]:
    """The runner's lines with durations as T, generated run ids as ID and column padding as one space."""
    lines = []
    for line in stderr.decode().splitlines():
        line = re.sub(r"\d+ h \d\d min|\d+ min \d\d s|\d+\.\d s", "T", line)
        lines.append(re.sub(" +", " ", re.sub(RUN_ID, "ID", line)))
    return lines


def pipeline(folder: Path) -> Path:
    """Stage 10 leaves a marker per date (to prove a skipped stage ran nothing); 20 fails on June 2."""
    folder.mkdir()
    (folder / "10_load.sh").write_text('touch "$marks/load-$run_date"\necho "load $run_date"\n')
    (folder / "20_report.sh").write_text(
        'echo "report $run_date"\n'
        'if [ "$run_date" = 2025-06-02 ]; then echo "no data for $run_date" >&2; exit 3; fi\n'
    )
    (folder / "30_publish.sh").write_text('echo "publish $run_date"\n')
    return folder


def test_a_range_runs_every_date_and_a_failed_date_does_not_stop_the_later_ones(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    folder = pipeline(tmp_path / "daily")
    result = run_cli(
        folder, "--run-date", "2025-06-01..2025-06-03", "--from-stage", "20", "--var", f"marks={marks}",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr.decode()  # the failed date's own exit code
    assert result.stdout == (
        b"report 2025-06-01\npublish 2025-06-01\nreport 2025-06-02\nreport 2025-06-03\npublish 2025-06-03\n"
    )
    assert list(marks.iterdir()) == [], "the skipped stage 10 must not run for any date"

    def one_date(run_date: str, number: int, failed: bool = False) -> list[str]:
        skipped = [
            f"nightshift: run date {run_date} ({number} of 3): started, run id ID",
            "nightshift: stage 10 skipped (--from-stage 20): 10_load.sh",
            "nightshift: 20_report.sh: started (bash)",
        ]
        if failed:
            return [
                *skipped,
                f"no data for {run_date}",
                "nightshift: 20_report.sh: failed (exit 3) in T",
                "nightshift: step stage status duration first error line",
                "nightshift: 10_load.sh 10 skipped -",
                f"nightshift: 20_report.sh 20 failed (exit 3) T no data for {run_date}",
                "nightshift: 30_publish.sh 30 not run -",
                f"nightshift: run date {run_date}: failed (exit 3) in T: 20_report.sh failed (exit 3)",
            ]
        return [
            *skipped,
            "nightshift: 20_report.sh: succeeded in T",
            "nightshift: 30_publish.sh: started (bash)",
            "nightshift: 30_publish.sh: succeeded in T",
            "nightshift: step stage status duration",
            "nightshift: 10_load.sh 10 skipped -",
            "nightshift: 20_report.sh 20 succeeded T",
            "nightshift: 30_publish.sh 30 succeeded T",
            f"nightshift: run date {run_date}: succeeded in T",
        ]

    assert normalized(result.stderr) == [
        f"nightshift: daily: run dates 2025-06-01 to 2025-06-03 (given with --run-date); variables: marks={marks}",
        "nightshift: 3 run dates, 2025-06-01 to 2025-06-03, one after another"
        " (a failed date does not stop the later ones)",
        *one_date("2025-06-01", 1),
        *one_date("2025-06-02", 2, failed=True),
        *one_date("2025-06-03", 3),
        "nightshift: run date status duration detail",
        "nightshift: 2025-06-01 succeeded T",
        "nightshift: 2025-06-02 failed (exit 3) T 20_report.sh failed (exit 3)",
        "nightshift: 2025-06-03 succeeded T",
        "nightshift: 3 dates: 2 succeeded, 1 failed",
    ]


def test_from_stage_on_one_date_skips_each_earlier_stage_with_a_line(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    folder = pipeline(tmp_path / "daily")
    args = (folder, "--run-date", "2025-06-02", "--from-stage", "30", "--var", f"marks={marks}")
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"publish 2025-06-02\n"
    assert list(marks.iterdir()) == []
    assert normalized(result.stderr) == [
        f"nightshift: daily: run date 2025-06-02 (given with --run-date); variables: marks={marks}",
        "nightshift: stage 10 skipped (--from-stage 30): 10_load.sh",
        "nightshift: stage 20 skipped (--from-stage 30): 20_report.sh",
        "nightshift: 30_publish.sh: started (bash)",
        "nightshift: 30_publish.sh: succeeded in T",
        "nightshift: step stage status duration",
        "nightshift: 10_load.sh 10 skipped -",
        "nightshift: 20_report.sh 20 skipped -",
        "nightshift: 30_publish.sh 30 succeeded T",
    ]
    dry = run_cli(
        folder, "--run-date", "2025-06-01..2025-06-02", "--from-stage", "30", "--var", "marks=/m", "--dry-run"
    )
    assert dry.returncode == 0
    assert [line for line in dry.stderr.decode().splitlines() if "skipped" in line] == [
        "nightshift: stage 10 skipped (--from-stage 30): 10_load.sh",
        "nightshift: stage 20 skipped (--from-stage 30): 20_report.sh",
    ] * 2
    assert dry.stdout.decode().splitlines() == [
        f"marks=/m {dates} bash {folder.resolve() / '30_publish.sh'}"
        for dates in (
            "run_date=2025-06-01 prev_date=2025-05-31 next_date=2025-06-02"
            " run_date_nodash=20250601 prev_date_nodash=20250531 next_date_nodash=20250602",
            "run_date=2025-06-02 prev_date=2025-06-01 next_date=2025-06-03"
            " run_date_nodash=20250602 prev_date_nodash=20250601 next_date_nodash=20250603",
        )
    ]


def test_a_signal_stops_the_current_date_and_starts_no_more(tmp_path: Path) -> None:
    folder = tmp_path / "daily"
    folder.mkdir()
    (folder / "10_wait.sh").write_text(
        'echo "start $run_date"\n'
        '[ "$run_date" != 2025-06-02 ] || sleep 300\n'
        f'touch "{tmp_path}/ran-$run_date"\n'
    )
    process = start_cli(folder, "--run-date", "2025-06-01..2025-06-04", cwd=tmp_path)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == b"start 2025-06-01\n"
    assert process.stdout.readline() == b"start 2025-06-02\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(120) == 143
    assert process.stdout.read() == b""
    assert sorted(path.name for path in tmp_path.glob("ran-*")) == ["ran-2025-06-01"]
    lines = normalized(process.stderr.read())
    assert lines[-13:] == [
        "nightshift: run date 2025-06-02 (2 of 4): started, run id ID",
        "nightshift: 10_wait.sh: started (bash)",
        "nightshift: 10_wait.sh: stopped in T",
        "nightshift: step stage status duration",
        "nightshift: 10_wait.sh 10 stopped T",
        "nightshift: run date 2025-06-02: failed (exit 143) in T: 10_wait.sh stopped; stopped by signal 15",
        "nightshift: run date status duration detail",
        "nightshift: 2025-06-01 succeeded T",
        "nightshift: 2025-06-02 failed (exit 143) T 10_wait.sh stopped; stopped by signal 15",
        "nightshift: 2025-06-03 not run -",
        "nightshift: 2025-06-04 not run -",
        "nightshift: 4 dates: 1 succeeded, 1 failed, 2 not run",
        "nightshift: stopped by signal 15: no later date was started",
    ]


def test_each_date_of_a_range_is_a_run_of_its_own_in_json_logs(tmp_path: Path) -> None:
    step = tmp_path / "job.sh"
    step.write_text('echo "day $run_date"\n')
    result = run_cli(
        step, "--run-date", "2025-12-31..2026-01-01", "--run-id", "backfill", "--log-format", "json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == b""
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [(r["run_id"], r["stream"], r["line"]) for r in records if r["stream"] == "stdout"] == [
        ("backfill-2025-12-31", "stdout", "day 2025-12-31"),
        ("backfill-2026-01-01", "stdout", "day 2026-01-01"),
    ]
    notices = [re.sub(r"\d+\.\d s", "T", r["line"]) for r in records if r["stream"] == "nightshift"]
    assert "run date 2025-12-31 (1 of 2): started, run id backfill-2025-12-31" in notices
    assert "run date 2026-01-01: succeeded in T" in notices
    assert notices[-1] == "2 dates: 2 succeeded, 0 failed"


@pytest.mark.spark
def test_spark_sql_range_from_a_stage(tmp_path: Path, state_dir: Path) -> None:
    folder = tmp_path / "daily"
    folder.mkdir()
    (folder / "10_seed.sh").write_text(f'touch "{tmp_path}/seeded-$run_date"\n')
    (folder / "20_count.sql").write_text("SELECT '${run_date}', 6 * 7;\n")
    result = run_cli(
        folder, "--run-date", "2025-06-30..2025-07-01", "--from-stage", "20", "--state-dir", state_dir,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"2025-06-30\t42\n2025-07-01\t42\n"
    assert list(tmp_path.glob("seeded-*")) == []
    ours = [
        re.sub(r"engine pid \d+, up \d+ (s|min)", "engine pid P, up A", line)
        for line in normalized(result.stderr)
        if line.startswith("nightshift: ")
    ]
    warm = {
        "2025-06-30": f"runs warm: starting the warm engine for {state_dir} (Spark's start-up, once)",
        "2025-07-01": "runs warm (engine pid P, up A)",
    }
    assert ours == [
        "nightshift: daily: run dates 2025-06-30 to 2025-07-01 (given with --run-date); variables: none",
        "nightshift: 2 run dates, 2025-06-30 to 2025-07-01, one after another"
        " (a failed date does not stop the later ones)",
        *[
            line
            for number, run_date in ((1, "2025-06-30"), (2, "2025-07-01"))
            for line in (
                f"nightshift: run date {run_date} ({number} of 2): started, run id ID",
                "nightshift: stage 10 skipped (--from-stage 20): 10_seed.sh",
                "nightshift: 20_count.sql: started (spark-sql)",
                f"nightshift: 20_count.sql: {warm[run_date]}",
                "nightshift: 20_count.sql: succeeded in T",
                "nightshift: step stage status duration",
                "nightshift: 10_seed.sh 10 skipped -",
                "nightshift: 20_count.sql 20 succeeded T",
                f"nightshift: run date {run_date}: succeeded in T",
            )
        ],
        "nightshift: run date status duration detail",
        "nightshift: 2025-06-30 succeeded T",
        "nightshift: 2025-07-01 succeeded T",
        "nightshift: 2 dates: 2 succeeded, 0 failed",
        "nightshift: the warm engine stays up for the next run (it ends after 1 min without a step);"
        f" end it now: python -m runner --state-dir {state_dir} --stop-engine",
    ]
