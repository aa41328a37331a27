"""RecordRun in moto's interpreter: cost and durations on success and failure, never changing the outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.workflow import RECORD_RUN_STATE, stage_state_name, step_state_name
from lambdas.shared.cost import MINIMUM_BILLED_SECONDS, region_prices
from lambdas.shared.run_metrics import (
    NAMESPACE,
    PIPELINE_DIMENSION,
    RUN_COST,
    RUN_FAILED,
    RUN_METRICS,
    STEP_ATTEMPTS,
    STEP_DIMENSION,
    STEP_DURATION,
)
from lambdas.shared.run_states import STAGE_PREFIX, STEP_PREFIX, StepStatus
from runner.model import Engine, Stage, Step
from tests.infra.conftest import REGION
from tests.infra.moto_harness import Harness, StepScript

PIPELINE = "nightly"
STEPS = ["10_users", "10_events", "20_sessions", "30_funnel", "30_segments"]


def record_of(harness: Harness, execution_arn: str) -> dict[str, Any] | None:
    """The run record as RecordRun left it in the state (what the alert and --history read)."""
    for event in harness.history(execution_arn):
        details = event.get("stateExitedEventDetails", {})
        if details.get("name") == RECORD_RUN_STATE:
            record: dict[str, Any] | None = json.loads(details["output"]).get("run_record")
            return record
    return None


def emf_blobs(text: str) -> list[dict[str, Any]]:
    blobs = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs


def value(blob: dict[str, Any], name: str) -> float:
    """A metric's value in an EMF blob (Powertools writes each as a list of one)."""
    (number,) = blob[name]
    return float(number)


def expected_minimum_cost() -> float:
    """moto's cluster lives for well under a minute: each instance and task is billed one minute."""
    prices = region_prices(REGION)
    minute = MINIMUM_BILLED_SECONDS / 3600
    master = sum(prices.instance_hour("m6g.xlarge") or ())
    core = sum(prices.instance_hour("r7g.2xlarge") or ())
    assert prices.fargate_vcpu_hour and prices.fargate_gb_hour
    task = 0.25 * prices.fargate_vcpu_hour + 0.5 * prices.fargate_gb_hour
    return minute * (master + 2 * core) + len(STEPS) * minute * task


def test_state_names_are_the_ones_the_record_reads() -> None:
    step = Step(path=Path("sql/nightly/10_users.sql"), stage=10, engine=Engine.SPARK_SQL)
    assert step_state_name(step).startswith(STEP_PREFIX)
    assert step_state_name(step).removeprefix(STEP_PREFIX) == "10_users"
    assert stage_state_name(Stage(number=10, steps=(step,))).startswith(STAGE_PREFIX)


def test_a_successful_run_records_cost_durations_and_metrics(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    execution = harness.run()
    assert execution["status"] == "SUCCEEDED", execution
    entered = harness.states_entered(execution["executionArn"])
    assert entered[-4:] == ["TerminateCluster", RECORD_RUN_STATE, "Run failed?", "Succeeded"]
    record = json.loads(execution["output"])["run_record"]
    assert record["outcome"] == "succeeded" and record["error"] is None
    assert record["run_date"] == "2025-06-01" and record["pipeline"] == PIPELINE
    (cluster,) = harness.clusters()
    assert record["clusters"] == [cluster["Id"]]
    assert record["cost"]["total_usd"] == pytest.approx(expected_minimum_cost(), abs=0.0001)
    # Every task is billed (at least a minute each); moto's tasks may end within the record's rounding.
    prices = region_prices(REGION)
    task_hour = 0.25 * (prices.fargate_vcpu_hour or 0) + 0.5 * (prices.fargate_gb_hour or 0)
    billed = len(STEPS) * MINIMUM_BILLED_SECONDS / 3600 * task_hour
    assert record["cost"]["fargate_usd"] == pytest.approx(billed, abs=0.0001)
    assert record["cost"]["fargate_task_seconds"] >= 0
    assert "Spot instances are priced at the On-Demand rate" in " ".join(record["cost"]["notes"])
    assert sorted(record["steps"]) == sorted(STEPS)
    assert {step["attempts"] for step in record["steps"].values()} == {1}
    assert sorted(record["stages"]) == ["10", "20", "30"]
    assert record["cluster_ready_seconds"] is not None and record["run_seconds"] >= 0
    # What --history reads instead of the whole history: each step's status, exit code and task.
    assert {StepStatus.parse(step["status"]) for step in record["steps"].values()} == {StepStatus.SUCCEEDED}
    assert {step["exit_code"] for step in record["steps"].values()} == {0}
    assert all(":task/" in step["task_arn"] for step in record["steps"].values())
    assert record["failure"] is None and record["skipped_stages"] == [] and record["checks_tasks"] == {}

    blobs = emf_blobs(capsys.readouterr().out)
    run = next(b for b in blobs if RUN_COST in b)
    assert run["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert run["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[PIPELINE_DIMENSION]]
    assert run[PIPELINE_DIMENSION] == PIPELINE and value(run, RUN_FAILED) == 0
    assert {m["Name"] for m in run["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == set(RUN_METRICS)
    assert value(run, RUN_COST) == record["cost"]["total_usd"]
    steps = {b[STEP_DIMENSION]: b for b in blobs if STEP_DURATION in b}
    assert sorted(steps) == sorted(STEPS)
    assert all(b["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[PIPELINE_DIMENSION, STEP_DIMENSION]]
               for b in steps.values())  # fmt: skip
    assert {value(b, STEP_ATTEMPTS) for b in steps.values()} == {1}


def test_a_failed_run_keeps_its_error_and_cause_and_records_the_attempts(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    harness.faults.failing_steps.add("20_sessions.hql")
    execution = harness.run()
    assert execution["status"] == "FAILED"
    assert execution["error"] == "States.TaskFailed"
    assert '"ExitCode": 1' in execution["cause"]
    record = record_of(harness, execution["executionArn"])
    assert record is not None
    assert record["outcome"] == "failed" and record["error"] == "States.TaskFailed"
    # retries = 2: three attempts, and no stage after the failing one.
    assert record["steps"]["20_sessions"]["attempts"] == 3
    assert "30_funnel" not in record["steps"]
    assert sorted(record["stages"]) == ["10", "20"]
    assert record["cost"]["total_usd"] > 0
    failed = record["steps"]["20_sessions"]
    assert (StepStatus.parse(failed["status"]), failed["exit_code"]) == (StepStatus.FAILED, 1)
    # The step wrote no error line: its exit code is the line.
    assert record["failure"] == {
        "step": "20_sessions",
        "exit_code": 1,
        "error": "States.TaskFailed",
        "line": "exit code 1",
        "task_arn": failed["task_arn"],
    }
    run = next(b for b in emf_blobs(capsys.readouterr().out) if RUN_COST in b)
    assert value(run, RUN_FAILED) == 1


def test_a_failed_steps_first_error_line_is_in_the_record(harness: Harness) -> None:
    """The failing step's first stderr line that names an error (its log stream, as the runner wrote
    it: JSON lines), not the warnings before it nor the lines after."""
    harness.faults.exit_codes["20_sessions.hql"] = 7
    harness.faults.scripts["20_sessions.hql"] = StepScript(
        chunks=[
            ("stdout", b"an error in stdout is the data's\n"),
            ("stderr", b"WARN HiveConf: hive.metastore.warehouse is deprecated\n"),
            ("stderr", b"Error in query: Table or view not found: users; line 1 pos 14\n"),
            ("stderr", b"org.apache.spark.sql.AnalysisException: it again\n"),
        ]
    )
    execution = harness.run()
    assert execution["status"] == "FAILED"
    record = record_of(harness, execution["executionArn"])
    assert record is not None
    assert record["failure"]["step"] == "20_sessions" and record["failure"]["exit_code"] == 7
    assert record["failure"]["line"] == "Error in query: Table or view not found: users; line 1 pos 14"
    assert record["steps"]["20_sessions"]["attempts"] == 3
    assert {StepStatus.parse(record["steps"][name]["status"]) for name in ("10_users", "10_events")} == {
        StepStatus.SUCCEEDED
    }


@pytest.mark.parametrize("failing_step", [None, "30_funnel.sql"], ids=["success", "failure"])
def test_a_broken_record_changes_nothing_about_the_run(harness: Harness, failing_step: str | None) -> None:
    harness.faults.raise_in["lambdas.record_run"] = (RuntimeError("pricing broke"), -1)
    if failing_step:
        harness.faults.failing_steps.add(failing_step)
    execution = harness.run()
    if failing_step:
        assert execution["status"] == "FAILED"
        assert execution["error"] == "States.TaskFailed" and '"ExitCode": 1' in execution["cause"]
    else:
        assert execution["status"] == "SUCCEEDED", execution
        output = json.loads(execution["output"])
        assert "pricing broke" in output["run_record_error"]["Cause"]
        assert "run_record" not in output
    assert [c["Status"]["State"] for c in harness.clusters()] == ["TERMINATED"]
    assert harness.faults.calls["lambdas.record_run"] == 1  # not retried: it is not transient


def test_a_failed_launch_is_part_of_the_cost(harness: Harness) -> None:

    def fail_first(payload: dict, result: dict) -> None:
        if payload["attempt"] == 1:
            harness.fail_cluster(result["cluster_id"], "INTERNAL_ERROR", "An internal error occurred.")

    harness.faults.after["lambdas.create_cluster"] = fail_first
    execution = harness.run()
    assert execution["status"] == "SUCCEEDED", execution
    record = json.loads(execution["output"])["run_record"]
    assert sorted(record["clusters"]) == sorted(c["Id"] for c in harness.clusters())
    assert len(record["clusters"]) == 2
    # The second launch's core type (r6g.2xlarge) replaces r7g.2xlarge, and the first cluster is paid too.
    assert record["cost"]["total_usd"] > expected_minimum_cost()
