"""StartRun and the alert formatter (lambdas/): StartRun's run date and at-most-once start, the alert naming the failing step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from lambdas import start_run as start_run_lambda
from lambdas.shared import alerting as alert
from lambdas.shared import scheduling as start_run
from tests.lambda_support import FakeLambdaContext

REGION = "us-east-1"


@pytest.mark.parametrize(
    ("scheduled_time", "timezone", "run_date"),
    [
        # 03:00 in Berlin is 01:00 UTC in summer and 02:00 UTC in winter: the same local date.
        ("2025-06-01T01:00:00Z", "Europe/Berlin", "2025-06-01"),
        ("2025-01-15T02:00:00Z", "Europe/Berlin", "2025-01-15"),
        # 00:30 in Berlin is still the previous day in UTC.
        ("2025-06-30T22:30:00Z", "Europe/Berlin", "2025-07-01"),
        # 21:00 in New York is already tomorrow in UTC.
        ("2025-03-10T01:00:00Z", "America/New_York", "2025-03-09"),
        ("2025-06-01T03:00:00Z", "UTC", "2025-06-01"),
    ],
)
def test_run_date_is_the_local_date_of_the_scheduled_time(
    scheduled_time: str, timezone: str, run_date: str
) -> None:
    assert start_run.run_date_of(scheduled_time, timezone) == run_date


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield boto3.client("stepfunctions", region_name=REGION)


def test_start_run_starts_each_date_once(sfn: Any) -> None:
    role = "arn:aws:iam::123456789012:role/sfn"
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    machine = sfn.create_state_machine(name="Nightshift-example", definition=definition, roleArn=role)
    event = {
        "pipeline": "example",
        "state_machine_arn": machine["stateMachineArn"],
        "timezone": "Europe/Berlin",
        "scheduled_time": "2025-06-01T01:00:00Z",
    }
    first = start_run_lambda.handler(event, FakeLambdaContext(), sfn=sfn)
    # Scheduler retried while the run is going: StartExecution with the same name and input is
    # idempotent then; once the run is over it answers ExecutionAlreadyExists (test_execution.py).
    again = start_run_lambda.handler(event, FakeLambdaContext(), sfn=sfn)
    assert first["started"] is True and first["execution_name"] == "example-2025-06-01"
    assert again["execution_name"] == "example-2025-06-01"
    (execution,) = sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]
    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert json.loads(described["input"]) == {"run_date": "2025-06-01"}


def _event(id_: int, type_: str, previous: int, **details: Any) -> dict[str, Any]:
    key = {
        "TaskStateEntered": "stateEnteredEventDetails",
        "ParallelStateEntered": "stateEnteredEventDetails",
        "TaskSubmitted": "taskSubmittedEventDetails",
        "TaskFailed": "taskFailedEventDetails",
    }.get(type_, "executionFailedEventDetails")
    return {"id": id_, "type": type_, "previousEventId": previous, key: details}


TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/runner/0f1e2d3c4b5a69788796a5b4c3d2e1f0"
# The shape of GetExecutionHistory for a run whose step 20_sessions failed, then was cleaned up.
HISTORY = [
    _event(1, "ParallelStateEntered", 0, name="Stage 20"),
    _event(2, "TaskStateEntered", 1, name="Run 20_sessions"),
    _event(3, "TaskScheduled", 2),
    _event(4, "TaskSubmitted", 3, output=json.dumps({"Tasks": [{"TaskArn": TASK_ARN}]})),
    _event(5, "TaskFailed", 4, error="States.TaskFailed", cause='{"Containers": [{"ExitCode": 3}]}'),
    _event(6, "TaskStateEntered", 5, name="TerminateCluster"),
    _event(7, "ExecutionFailed", 6, error="States.TaskFailed", cause="..."),
]


def test_alert_names_the_failing_step_and_links_its_log_stream() -> None:
    failure = alert.find_failure(HISTORY)
    assert failure == alert.Failure(
        "Run 20_sessions", "States.TaskFailed", '{"Containers": [{"ExitCode": 3}]}', TASK_ARN
    )
    detail = {
        "executionArn": "arn:aws:states:us-east-1:123456789012:execution:Nightshift-example:example-2025-06-01",
        "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:Nightshift-example",
        "name": "example-2025-06-01",
        "status": "FAILED",
    }
    pipelines = {"Nightshift-example": ["example", "Nightshift-RunnerLogsExample", "runner"]}
    subject, body = alert.render(detail, failure, pipelines, REGION)
    assert subject == "Nightshift: example-2025-06-01 FAILED at Run 20_sessions"
    assert "Failing state: Run 20_sessions" in body
    assert (
        "log-group/Nightshift-RunnerLogsExample/log-events/example$252Frunner$252F0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        in body
    )
    assert "#/v2/executions/details/" + detail["executionArn"] in body


def test_start_run_reports_a_date_that_already_ran(sfn: Any, monkeypatch: pytest.MonkeyPatch) -> None:

    def already(**_kwargs: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "ExecutionAlreadyExists", "Message": "exists"}}, "StartExecution"
        )

    monkeypatch.setattr(sfn, "start_execution", already)
    answer = start_run.start_run(pipeline="example", state_machine_arn="arn", run_date="2025-06-01", sfn=sfn)
    assert answer == {"started": False, "execution_name": "example-2025-06-01", "run_date": "2025-06-01",
                      "reason": "already ran"}  # fmt: skip
