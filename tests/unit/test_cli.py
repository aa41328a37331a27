"""CLI parsing: variables, run dates and the engine override, without starting anything."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from runner.__main__ import build_parser, parse_run_date, parse_variables
from runner.errors import UsageError
from runner.execution import RunPlan
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
    pipeline = load_pipeline(tmp_path)
    sql, bash = pipeline.steps

    def engine(step, override, *, whole_pipeline):
        plan = RunPlan.make(
            pipeline, run_date="2026-01-01", run_id="r", local=True, overrides={},
            engine_override=override, whole_pipeline=whole_pipeline,
        )  # fmt: skip
        return plan.invocation(step).engine

    assert engine(sql, Engine.HIVE, whole_pipeline=True) is Engine.HIVE
    assert engine(bash, Engine.HIVE, whole_pipeline=True) is Engine.BASH
    assert engine(bash, Engine.SPARK_SUBMIT, whole_pipeline=False) is Engine.SPARK_SUBMIT
    assert engine(sql, None, whole_pipeline=False) is Engine.SPARK_SQL


def test_run_date_wins_and_local_overrides_apply_only_locally(tmp_path: Path) -> None:
    (tmp_path / "pipeline.toml").write_text(
        '[variables]\nraw = "s3://b"\nx = "1"\n[variables.local]\nraw = "data"\n'
    )
    (tmp_path / "10_a.sql").write_text("SELECT 1;")
    pipeline = load_pipeline(tmp_path)
    local = RunPlan.make(pipeline, run_date="2026-01-02", run_id="r", local=True, overrides={"x": "2"})
    remote = RunPlan.make(pipeline, run_date="2026-01-02", run_id="r", local=False, overrides={})
    assert local.variables == {"raw": "data", "x": "2", "run_date": "2026-01-02"}
    assert remote.variables == {"raw": "s3://b", "x": "1", "run_date": "2026-01-02"}


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["sql/example/"])
    assert (args.log_format, args.dry_run, args.var, args.engine) == ("text", False, [], None)
    assert args.state_dir == Path(".nightshift")
