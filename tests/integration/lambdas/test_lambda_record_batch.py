"""RecordRun of a shared-cluster backfill (issue 22) against moto: the batch's record splits its cluster
over its dates, and a date's own record prices no cluster.

A date's seconds are its child execution's startDate to stopDate, and its status and error are
DescribeExecution's; an execution never started answers ExecutionDoesNotExist (AWS Step Functions API
Reference, "DescribeExecution", https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeExecution.html).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.stepfunctions.models import stepfunctions_backends

from lambdas import record_run
from tests.integration.lambdas.test_lambda_run_cost import make_cluster
from tests.lambda_support import ACCOUNT, REGION

FIRST, LAST = "2025-06-01", "2025-06-03"
BATCH = f"example-batch-{FIRST}-{LAST}"
DATES = ["2025-06-01", "2025-06-02", "2025-06-03"]
T0 = datetime(2025, 6, 4, 1, 0, tzinfo=UTC)


def _events(*, pulled: float, stopped: float) -> list[dict[str, Any]]:
    """A child's history with one runner task (0.5 vCPU, 1 GB), as Step Functions writes it."""
    task = {"TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/runner/abc", "Cpu": "512", "Memory": "1024"}

    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    def millis(seconds: float) -> int:
        return int(at(seconds).timestamp() * 1000)

    ended = {
        **task,
        "PullStartedAt": millis(pulled),
        "StoppedAt": millis(stopped),
        "Containers": [{"ExitCode": 0}],
    }
    return [
        {"id": 1, "type": "ExecutionStarted", "timestamp": at(0), "executionStartedEventDetails": {"input": "{}"}},
        {"id": 2, "type": "TaskStateEntered", "timestamp": at(1), "previousEventId": 1,
         "stateEnteredEventDetails": {"name": "Run 10_a"}},
        {"id": 3, "type": "TaskScheduled", "timestamp": at(1), "previousEventId": 2},
        {"id": 4, "type": "TaskSubmitted", "timestamp": at(2), "previousEventId": 3,
         "taskSubmittedEventDetails": {"output": json.dumps({"Tasks": [task]})}},
        {"id": 5, "type": "TaskSucceeded", "timestamp": at(stopped + 1), "previousEventId": 4,
         "taskSucceededEventDetails": {"output": json.dumps(ended)}},
        {"id": 6, "type": "TaskStateExited", "timestamp": at(stopped + 1), "previousEventId": 5,
         "stateExitedEventDetails": {"name": "Run 10_a"}},
    ]  # fmt: skip


@pytest.fixture
def batch(sfn, emr, emr_backend, state_machine_arn, monkeypatch) -> dict[str, Any]:
    """A batch of three dates that ran: the first succeeded (600 s), the second failed (300 s), the
    third never started; its cluster lived an hour and is terminated."""
    runs = [{"run_date": day, "name": f"example-{day}"} for day in DATES]
    batch_arn = sfn.start_execution(
        stateMachineArn=state_machine_arn,
        name=BATCH,
        input=json.dumps({"run_date": FIRST, "batch": {"runs": runs}}),
    )["executionArn"]
    # Instance groups with set timelines (moto lists no fleet's instances): the batch's cluster,
    # an hour from creation to TERMINATED, every node up all of it.
    cluster_id = make_cluster(emr, emr_backend, master_seconds=3600, core_seconds=3600)
    emr.add_tags(ResourceId=cluster_id, Tags=[{"Key": "nightshift:execution-arn", "Value": batch_arn}])
    cluster = emr_backend.clusters[cluster_id]
    naive = T0.replace(tzinfo=None)  # moto keeps naive UTC times
    cluster.creation_datetime, cluster.ready_datetime = naive, naive + timedelta(minutes=9)
    cluster.end_datetime = naive + timedelta(hours=1)
    for group in cluster.instance_groups:
        group.creation_date_time, group.end_date_time = naive, naive + timedelta(hours=1)
    children = {}
    for day in DATES[:2]:
        arn = sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=f"example-{day}",
            input=json.dumps({"run_date": day, "cluster": {"cluster_id": cluster_id}, "batch": batch_arn}),
        )["executionArn"]
        children[day] = arn
    # moto runs no state machine here: put each child where the batch's Map left it.
    backend = stepfunctions_backends[ACCOUNT][REGION]
    for execution in backend.describe_state_machine(state_machine_arn).executions:
        if execution.name == f"example-{DATES[0]}":
            execution.start_date, execution.stop_date = T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)
            execution.status = "SUCCEEDED"
            # Its history as the interpreter would write it: one runner task of 300 s.
            monkeypatch.setattr(
                execution, "get_execution_history", lambda role_arn: _events(pulled=30, stopped=330)
            )
        elif execution.name == f"example-{DATES[1]}":
            execution.start_date, execution.stop_date = T0 + timedelta(minutes=21), T0 + timedelta(minutes=26)
            execution.status, execution.error = "FAILED", "States.TaskFailed"
    return {"arn": batch_arn, "cluster_id": cluster_id, "children": children}


def _record(batch: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "pipeline": "example",
        "execution_arn": batch["arn"],
        "run": {"run_date": FIRST, "cluster": {"cluster_id": batch["cluster_id"]}},
        "runner_task": {"cpu": 512, "memory_mib": 1024},
        **extra,
    }


NOW = T0 + timedelta(hours=1, minutes=2)


def test_the_batch_record_splits_its_cluster_over_its_dates_and_the_shares_add_up(
    batch, emr, sfn, lambda_context, capsys
):
    payload = _record(batch, batch_runs=[f"example-{day}" for day in DATES])

    record = record_run.handler(payload, lambda_context, emr=emr, sfn=sfn, now=NOW, logs=object())

    # The state machine then fails the batch with DatesFailed; its record says so already.
    assert (record["outcome"], record["error"]) == ("failed", "DatesFailed")
    assert record["failure"]["line"] == "dates not succeeded: 2025-06-02 (FAILED), 2025-06-03 (NOT_STARTED)"
    dates = record["dates"]
    assert [(d["run_date"], d["name"], d["status"], d["error"], d["seconds"]) for d in dates] == [
        ("2025-06-01", "example-2025-06-01", "SUCCEEDED", None, 600.0),
        ("2025-06-02", "example-2025-06-02", "FAILED", "States.TaskFailed", 300.0),
        ("2025-06-03", "example-2025-06-03", "NOT_STARTED", None, 0.0),
    ]
    assert record["clusters"] == [batch["cluster_id"]]
    cost = record["cost"]
    assert cost["cluster_seconds"] == 3600
    # The batch's cost is its cluster and its dates' runner tasks: the dates' shares are all of it.
    shares = [d["own_usd"] + d["start_share_usd"] for d in dates]
    assert sum(shares) == pytest.approx(cost["total_usd"], abs=1e-3)
    assert record["unused_usd"] == pytest.approx(sum(d["start_share_usd"] for d in dates), abs=1e-3)
    # The nodes cost the same every second: the first date ran twice the second's seconds.
    nodes = cost["ec2_usd"] + cost["emr_usd"]
    first, second, third = dates
    assert first["tasks_usd"] == pytest.approx(cost["fargate_usd"], abs=1e-4)
    assert first["tasks_usd"] > 0 and nodes > 0
    assert first["own_usd"] - first["tasks_usd"] == pytest.approx(nodes * 600 / 3600, abs=1e-3)
    assert second["own_usd"] == pytest.approx(nodes * 300 / 3600, abs=1e-3)
    assert first["start_share_usd"] == pytest.approx(2 * second["start_share_usd"], abs=1e-3)
    assert record["unused_usd"] == pytest.approx(nodes * (3600 - 900) / 3600, abs=1e-3)
    assert (third["own_usd"], third["start_share_usd"]) == (0, 0)  # it never held the cluster
    # A batch is no night: it publishes none of the nightly run metrics (EMF on stdout).
    assert "RunCost" not in capsys.readouterr().out


def test_a_failed_batch_keeps_its_error_and_still_splits(batch, emr, sfn, lambda_context):
    error = {"Error": "States.TaskFailed", "Cause": "the date example-2025-06-02 failed"}
    payload = _record(batch, batch_runs=[f"example-{day}" for day in DATES[:2]])
    payload["run"]["error"] = error

    record = record_run.handler(payload, lambda_context, emr=emr, sfn=sfn, now=NOW, logs=object())

    assert (record["outcome"], record["error"]) == ("failed", "States.TaskFailed")
    assert [d["status"] for d in record["dates"]] == ["SUCCEEDED", "FAILED"]
    assert sum(d["own_usd"] + d["start_share_usd"] for d in record["dates"]) == pytest.approx(
        record["cost"]["total_usd"], abs=1e-3
    )


def test_a_dates_record_names_its_batch_and_prices_no_cluster(batch, emr, sfn, lambda_context, capsys):
    child = batch["children"][DATES[0]]
    payload = {
        "pipeline": "example",
        "execution_arn": child,
        # The child's state holds its batch's cluster (the one it ran on): priced in the batch's record.
        "run": {"run_date": DATES[0], "cluster": {"cluster_id": batch["cluster_id"]}},
        "runner_task": {"cpu": 512, "memory_mib": 1024},
        "batch_arn": batch["arn"],
    }

    record = record_run.handler(payload, lambda_context, emr=emr, sfn=sfn, now=NOW, logs=object())

    assert record["cluster"] == {"shared_in": BATCH}
    assert record["clusters"] == []
    assert (record["cost"]["ec2_usd"], record["cost"]["emr_usd"], record["cost"]["cluster_seconds"]) == (
        0,
        0,
        0,
    )
    assert record["cost"]["fargate_usd"] > 0  # its runner task, as a night's record prices it
    assert "steps" in record and "10_a" in record["steps"]
    assert "RunCost" in capsys.readouterr().out  # a date is a night of its pipeline


def test_a_batch_whose_dates_all_succeeded_succeeded_and_its_one_date_holds_all_but_the_unused(
    batch, emr, sfn, lambda_context
):
    record = record_run.handler(
        _record(batch, batch_runs=[f"example-{DATES[0]}"]),
        lambda_context,
        emr=emr,
        sfn=sfn,
        now=NOW,
        logs=object(),
    )

    assert (record["outcome"], record["error"], record["failure"]) == ("succeeded", None, None)
    [only] = record["dates"]
    assert only["own_usd"] + only["start_share_usd"] == pytest.approx(record["cost"]["total_usd"], abs=1e-3)
