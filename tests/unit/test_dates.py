"""Run dates and ranges: parsing, the line as a date ends, the table at the end, the exit code."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from runner.config import parse_config
from runner.dates import (
    MAX_RANGE_DATES,
    DateResult,
    date_line,
    format_duration,
    parse_run_dates,
    range_exit_code,
    range_summary_lines,
)
from runner.errors import ConfigError, UsageError
from runner.model import Pipeline, load_pipeline


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    (tmp_path / "10_a.sql").write_text("SELECT 1;")
    return load_pipeline(tmp_path)


def test_one_date_and_an_inclusive_range(pipeline: Pipeline) -> None:
    assert parse_run_dates("2025-06-01", pipeline) == ["2025-06-01"]
    assert parse_run_dates("2025-06-01..2025-06-01", pipeline) == ["2025-06-01"]
    # Across a month end and a leap day.
    assert parse_run_dates("2024-02-28..2024-03-01", pipeline) == ["2024-02-28", "2024-02-29", "2024-03-01"]


def test_default_is_today_in_the_schedule_time_zone(tmp_path: Path) -> None:
    (tmp_path / "pipeline.toml").write_text(
        "[schedule]\ncron = '0 3 * * *'\ntimezone = 'Pacific/Kiritimati'\n"
    )
    (tmp_path / "10_a.sql").write_text("SELECT 1;")
    assert parse_run_dates(None, load_pipeline(tmp_path)) == [
        datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    ]
    (tmp_path / "pipeline.toml").unlink()
    assert parse_run_dates(None, load_pipeline(tmp_path)) == [datetime.now(UTC).date().isoformat()]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2025-06-07..2025-06-01", "--run-date '2025-06-07..2025-06-01': the range ends before it starts"),
        ("2025-06-01..2025-13-01", "--run-date '2025-06-01..2025-13-01': 2025-13-01: month must be in 1..12"),
        ("2025-06-01..", "--run-date '2025-06-01..': expected YYYY-MM-DD or an inclusive range"),
        ("..2025-06-01", "--run-date '..2025-06-01': expected YYYY-MM-DD"),
        ("2025-06-01...2025-06-02", "--run-date '2025-06-01...2025-06-02': expected YYYY-MM-DD"),
        ("2025-6-1", "--run-date '2025-6-1': expected YYYY-MM-DD"),
        ("2026-02-30", "--run-date '2026-02-30': 2026-02-30: day is out of range for month"),
        (
            "2000-01-01..2025-01-01",
            "--run-date '2000-01-01..2025-01-01': 9133 dates; at most 366 in one command",
        ),
    ],
)
def test_bad_ranges_are_one_line_usage_errors(pipeline: Pipeline, text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_run_dates(text, pipeline)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_longest_range_is_a_leap_year(pipeline: Pipeline) -> None:
    dates = parse_run_dates("2024-01-01..2024-12-31", pipeline)
    assert len(dates) == MAX_RANGE_DATES == 366
    assert (dates[0], dates[-1]) == ("2024-01-01", "2024-12-31")
    with pytest.raises(UsageError, match="367 dates"):
        parse_run_dates("2024-01-01..2025-01-01", pipeline)


def test_durations_read_well_from_seconds_to_hours() -> None:
    assert [format_duration(s) for s in (0.04, 59.94, 65, 3599.4, 3600, 7385)] == [
        "0.0 s", "59.9 s", "1 min 05 s", "59 min 59 s", "1 h 00 min", "2 h 03 min",
    ]  # fmt: skip


def test_the_line_as_a_date_ends_names_the_failing_step() -> None:
    assert date_line(DateResult("2025-06-01", 0, 12.34)) == "run date 2025-06-01: succeeded in 12.3 s"
    assert (
        date_line(DateResult("2025-06-02", 3, 75, "20_c.sql failed (exit 3)"))
        == "run date 2025-06-02: failed (exit 3) in 1 min 15 s: 20_c.sql failed (exit 3)"
    )


def test_the_range_table_has_a_row_per_date_and_a_count() -> None:
    results = [
        DateResult("2025-06-01", 0, 1.0),
        DateResult("2025-06-02", 3, 2.5, "20_c.sql failed (exit 3)"),
        DateResult("2025-06-03", 143, 0.5, "stopped by signal 15"),
    ]
    planned = ["2025-06-01", "2025-06-02", "2025-06-03", "2025-06-04"]
    assert range_summary_lines(results, planned) == [
        "run date    status             duration  detail",
        "2025-06-01  succeeded          1.0 s",
        "2025-06-02  failed (exit 3)    2.5 s     20_c.sql failed (exit 3)",
        "2025-06-03  failed (exit 143)  0.5 s     stopped by signal 15",
        "2025-06-04  not run            -",
        "4 dates: 1 succeeded, 2 failed, 1 not run",
    ]


def test_a_range_exits_with_the_first_failed_dates_code() -> None:
    ok = DateResult("2025-06-01", 0, 1.0)
    assert range_exit_code([ok, ok]) == 0
    assert range_exit_code([ok, DateResult("2025-06-02", 3, 1.0), DateResult("2025-06-03", 1, 1.0)]) == 3
    assert range_exit_code([]) == 0


def test_max_concurrent_runs_defaults_to_one_and_is_validated() -> None:
    path = Path("sql/demo/pipeline.toml")
    assert parse_config("", path).max_concurrent_runs == 1
    assert parse_config("max_concurrent_runs = 4\n", path).max_concurrent_runs == 4
    for value in ("0", "51", "true", "'2'", "1.5"):
        with pytest.raises(ConfigError) as caught:
            parse_config(f"max_concurrent_runs = {value}\n", path)
        assert str(caught.value).startswith(
            "sql/demo/pipeline.toml: max_concurrent_runs: expected an integer from 1 to 50, got "
        )
