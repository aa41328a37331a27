"""CLI parsing: variables, run dates and the engine override, without starting anything."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from runner.__main__ import _engine_for, build_parser, parse_run_date, parse_variables
from runner.errors import UsageError
from runner.model import Engine, load_pipeline


def test_variables_keep_everything_after_the_first_equals_sign() -> None:
    assert parse_variables(["a=1", "path=s3://b/k=v", "empty=", "a=2"]) == {
        "a": "2",
        "path": "s3://b/k=v",
        "empty": "",
    }


@pytest.mark.parametrize("pair", ["novalue", "=x", "1a=x", "a-b=x", "run_date=2026-01-01"])
def test_malformed_variables_are_usage_errors(pair: str) -> None:
    with pytest.raises(UsageError, match="--var"):
        parse_variables([pair])


def test_run_date_defaults_to_today_in_the_schedule_time_zone(tmp_path: Path) -> None:
    (tmp_path / "pipeline.toml").write_text(
        "[schedule]\ncron = '0 3 * * *'\ntimezone = 'Pacific/Kiritimati'\n"
    )
    (tmp_path / "10_a.sql").write_text("SELECT 1;")
    pipeline = load_pipeline(tmp_path)
    # UTC+14: on most of every UTC day, Kiritimati's date is already tomorrow's.
    assert parse_run_date(None, pipeline) == datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    (tmp_path / "pipeline.toml").unlink()
    assert parse_run_date(None, load_pipeline(tmp_path)) == datetime.now(UTC).date().isoformat()


@pytest.mark.parametrize("text", ["2026-2-3", "20260203", "2026-02-30", "yesterday"])
def test_bad_run_dates_are_usage_errors(tmp_path: Path, text: str) -> None:
    (tmp_path / "job.sql").write_text("SELECT 1;")
    with pytest.raises(UsageError, match="--run-date"):
        parse_run_date(text, load_pipeline(tmp_path / "job.sql"))


def test_engine_override_applies_to_sql_steps_of_a_folder_only(tmp_path: Path) -> None:
    for name in ("10_a.sql", "20_b.sh"):
        (tmp_path / name).write_text("x\n")
    sql, bash = load_pipeline(tmp_path).steps
    assert _engine_for(sql, "hive", whole_pipeline=True) is Engine.HIVE
    assert _engine_for(bash, "hive", whole_pipeline=True) is Engine.BASH
    assert _engine_for(bash, "spark-submit", whole_pipeline=False) is Engine.SPARK_SUBMIT
    assert _engine_for(sql, None, whole_pipeline=False) is Engine.SPARK_SQL


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["sql/example/"])
    assert (args.log_format, args.dry_run, args.var, args.engine) == ("text", False, [], None)
    assert args.state_dir == Path(".nightshift")
