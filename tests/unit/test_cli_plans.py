"""A command's run plans come from runner.plans (plan_runs, plan_statement): typed results, UsageErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.model import Engine, Step, load_pipeline
from runner.plans import PlanOptions, plan_runs, plan_statement, statement_problem, statement_undefined


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "pipeline.toml").write_text("[variables]\ndb = 'shop'\n")
    (tmp_path / "10_load.sql").write_text("SELECT 1;\n")
    (tmp_path / "20_report.sql").write_text("SELECT *\nFROM ${dbb}.orders;\n")
    return tmp_path


def test_a_range_is_one_plan_a_date_in_order_each_with_its_own_run_id(folder: Path) -> None:
    planned = plan_runs(
        load_pipeline(folder),
        PlanOptions(run_date="2025-06-30..2025-07-02", run_id="nightly", overrides={"db": "test"}),
        whole=True,
    )
    assert planned.dates == ["2025-06-30", "2025-07-01", "2025-07-02"]
    assert [plan.run_id for plan in planned.plans] == [
        "nightly-2025-06-30",
        "nightly-2025-07-01",
        "nightly-2025-07-02",
    ]
    assert {plan.variables["db"] for plan in planned.plans} == {"test"}


def test_an_undefined_variable_is_a_warning_and_with_strict_an_error(folder: Path) -> None:
    pipeline = load_pipeline(folder)
    planned = plan_runs(pipeline, PlanOptions(run_date="2025-06-01"), whole=True)
    [problem] = planned.undefined
    assert str(problem).startswith("20_report.sql line 2: ${dbb} is not defined"), str(problem)
    with pytest.raises(UsageError, match=r"^20_report\.sql line 2: \$\{dbb\} is not defined"):
        plan_runs(pipeline, PlanOptions(run_date="2025-06-01", strict=True), whole=True)
    # --from-stage 20 is refused for a step file, as on the command line.
    with pytest.raises(UsageError, match="only for a pipeline folder"):
        plan_runs(pipeline, PlanOptions(from_stage=20), whole=False)


def test_a_statement_runs_in_one_date_on_the_pipelines_sql_engine(folder: Path, tmp_path: Path) -> None:
    pipeline = load_pipeline(folder)
    plan, engine = plan_statement(pipeline, PlanOptions(run_date="2025-06-01", run_id="look"))
    assert (engine, plan.run_id, plan.variables["run_date"]) == (Engine.SPARK_SQL, "look", "2025-06-01")
    with pytest.raises(UsageError, match=r"^-e: --engine bash: only spark-sql or hive run statements$"):
        plan_statement(pipeline, PlanOptions(engine=Engine.BASH))
    statement = tmp_path / "e" / "statement.sql"
    statement.parent.mkdir()
    statement.write_text("SELECT * FROM ${dbb}.orders")
    step = Step(statement, None, Engine.SPARK_SQL)
    [problem] = statement_undefined(step, plan, strict=False)
    assert statement_problem(problem, step).startswith("-e line 1: ${dbb} is not defined")
    with pytest.raises(UsageError, match=r"^-e line 1: \$\{dbb\}"):
        statement_undefined(step, plan, strict=True)
