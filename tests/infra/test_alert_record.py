"""The alert e-mails with the run record: the failure alert's cost and durations, notify = "always"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas import alert as alert_lambda
from lambdas.shared import alerting as alert
from tests.lambda_support import FakeLambdaContext, alert_inbox

REGION = "us-east-1"
MACHINE = f"arn:aws:states:{REGION}:123456789012:stateMachine:Nightshift-example"
RECORD = {
    "pipeline": "example",
    "run_date": "2025-06-01",
    "outcome": "failed",
    "error": "States.TaskFailed",
    "run_seconds": 1834.2,
    "cluster_ready_seconds": 463.0,
    "clusters": ["j-ABC"],
    "cost": {
        "total_usd": 0.2468,
        "ec2_usd": 0.1803,
        "emr_usd": 0.0451,
        "fargate_usd": 0.0214,
        "cluster_seconds": 1790.0,
        "normalized_instance_hours": 11.9,
        "fargate_task_seconds": 1250.0,
        "prices": "us-east-1 list prices as of 2026-11-22",
        "notes": ["Spot instances are priced at the On-Demand rate: the cost is an upper bound"],
    },
    "stages": {"10": 190.0, "20": 612.5},
    "steps": {
        "10_users": {"seconds": 150.0, "attempts": 1},
        "20_sessions": {"seconds": 612.0, "attempts": 2},
    },
}


def history_with_record(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The RecordRun state's exit as GetExecutionHistory shows it (the state's output, record inside)."""
    output = json.dumps({"run_date": "2025-06-01", "run_record": record})
    return [
        {"id": 1, "type": "TaskStateEntered", "stateEnteredEventDetails": {"name": "RecordRun"}},
        {"id": 2, "type": "TaskStateExited", "previousEventId": 1,
         "stateExitedEventDetails": {"name": "RecordRun", "output": output}},
    ]  # fmt: skip


def test_the_failure_alert_carries_cost_and_durations() -> None:
    detail = {
        "executionArn": f"arn:aws:states:{REGION}:123456789012:execution:Nightshift-example:example-2025-06-01",
        "stateMachineArn": MACHINE,
        "name": "example-2025-06-01",
        "status": "FAILED",
    }
    failure = alert.Failure("Run 20_sessions", "States.TaskFailed", '{"ExitCode": 1}', None)
    record = alert.find_record(history_with_record(RECORD))
    _subject, body = alert.render(
        detail, failure, {"Nightshift-example": ["example", "", ""]}, REGION, record
    )
    lines = body.splitlines()
    assert "Failing state: Run 20_sessions" in lines  # the cause comes first, unchanged
    assert "Run date: 2025-06-01" in lines
    assert "Duration: 30 min 34 s (cluster ready after 7 min 43 s)" in lines
    assert (
        "Cost: $0.25 (EC2 $0.18, EMR fee $0.05, Fargate $0.021; us-east-1 list prices as of 2026-11-22)"
        in lines
    )
    assert "  Spot instances are priced at the On-Demand rate: the cost is an upper bound" in lines
    assert "Stages: 10 3 min 10 s, 20 10 min 12 s" in lines
    assert "  20_sessions: 10 min 12 s (2 attempts)" in lines
    assert lines.index("Failing state: Run 20_sessions") < lines.index("Run date: 2025-06-01")


def test_the_failure_alert_says_each_steps_end_and_the_failing_steps_first_error_line() -> None:
    """A record with step statuses (RecordRun's since issue 17): a step that did not succeed says how
    it ended, and the failing step's first error line follows the steps; a success says nothing more."""
    record = {
        **RECORD,
        "steps": {
            "10_users": {"seconds": 150.0, "attempts": 1, "status": "succeeded", "exit_code": 0},
            "20_sessions": {"seconds": 612.0, "attempts": 2, "status": "failed", "exit_code": 7},
            "20_events": {"seconds": 30.0, "attempts": 1, "status": "stopped", "exit_code": None},
        },
        "failure": {"step": "20_sessions", "exit_code": 7, "error": "States.TaskFailed",
                    "line": "Error in query: Table or view not found: users"},
    }  # fmt: skip
    lines = alert.record_lines(record)
    assert "  10_users: 2 min 30 s" in lines
    assert "  20_sessions: 10 min 12 s (2 attempts), failed (exit 7)" in lines
    assert "  20_events: 30 s, stopped" in lines
    assert lines[-1] == "First error in 20_sessions: Error in query: Table or view not found: users"
    # A record without statuses (RecordRun before them), or with one it does not know: durations only.
    odd = {**RECORD, "steps": {"10_users": {"seconds": 150.0, "attempts": 1, "status": "paused"}}}
    assert "  10_users: 2 min 30 s" in alert.record_lines(odd)


def test_without_a_record_the_alert_is_as_before() -> None:
    assert alert.find_record([{"id": 1, "type": "ExecutionFailed"}]) is None
    detail = {
        "executionArn": "arn",
        "stateMachineArn": MACHINE,
        "name": "example-2025-06-01",
        "status": "FAILED",
    }
    _subject, body = alert.render(detail, None, {}, REGION, None)
    assert "Cost:" not in body


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


class HistoryOf:
    """GetExecutionHistory's paginator over a fixed history (the formatter's only Step Functions call)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def get_paginator(self, _name: str) -> HistoryOf:
        return self

    def paginate(self, **_kwargs: Any) -> list[dict[str, Any]]:
        return [{"events": self.events}]


def test_a_success_with_notify_always_sends_one_short_message(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = alert_inbox(monkeypatch)
    monkeypatch.setenv("NIGHTSHIFT_PIPELINES", json.dumps({"Nightshift-example": ["example", "", ""]}))
    event = {
        "detail": {
            "executionArn": f"arn:aws:states:{REGION}:123456789012:execution:Nightshift-example:example-2025-06-01",
            "stateMachineArn": MACHINE,
            "name": "example-2025-06-01",
            "status": "SUCCEEDED",
        }
    }
    record = {**RECORD, "outcome": "succeeded", "error": None}
    history = HistoryOf(history_with_record(record))
    sns = boto3.client("sns", region_name=REGION)
    answer = alert_lambda.handler(event, FakeLambdaContext(), sfn=history, sns=sns)  # type: ignore[arg-type]
    assert answer["subject"] == "Nightshift: example-2025-06-01 SUCCEEDED in 30 min 34 s, $0.25"
    (message,) = inbox.messages()
    body = message["Message"]
    assert body.splitlines()[0] == "Nightshift pipeline example: run example-2025-06-01 SUCCEEDED."
    assert "Run date: 2025-06-01" in body and "Cost: $0.25" in body and "Stages: 10 3 min 10 s" in body
    assert "Error" not in body and "Failing state" not in body


def event(id_: int, kind: str, previous: int, **details: Any) -> dict[str, Any]:
    key = {
        "TaskStateEntered": "stateEnteredEventDetails",
        "FailStateEntered": "stateEnteredEventDetails",
        "TaskSubmitted": "taskSubmittedEventDetails",
        "TaskFailed": "taskFailedEventDetails",
        "LambdaFunctionFailed": "lambdaFunctionFailedEventDetails",
        "TaskSucceeded": "taskSucceededEventDetails",
    }.get(kind, "executionFailedEventDetails")
    return {"id": id_, "type": kind, "previousEventId": previous, key: details}


def submitted(id_: int, previous: int, task: str) -> dict[str, Any]:
    arn = f"arn:aws:ecs:us-east-1:123456789012:task/runner/{task}"
    return event(id_, "TaskSubmitted", previous, output=json.dumps({"Tasks": [{"TaskArn": arn}]}))


def test_a_retried_transient_error_is_not_the_failure_of_inputs_that_never_came() -> None:
    history = [
        event(1, "TaskStateEntered", 0, name="CheckInputs"),
        event(2, "TaskScheduled", 1),
        event(3, "TaskFailed", 2, error="TransientAwsError", cause="S3 SlowDown"),
        event(4, "TaskScheduled", 3),
        event(5, "TaskSucceeded", 4, output="{}"),
        event(6, "FailStateEntered", 5, name="InputsLate"),
        event(7, "ExecutionFailed", 6, error="InputsLate", cause="inputs still missing after 120 minutes"),
    ]
    failure = alert.find_failure(history)
    assert failure == alert.Failure(
        "InputsLate", "InputsLate", "inputs still missing after 120 minutes", None
    )


def test_the_failure_that_counted_is_the_last_attempt_of_the_failing_step() -> None:
    history = [
        event(1, "TaskStateEntered", 0, name="ClusterStatus"),
        event(2, "TaskScheduled", 1),
        event(3, "TaskFailed", 2, error="TransientAwsError", cause="DescribeCluster throttled"),
        event(4, "TaskScheduled", 3),
        event(5, "TaskSucceeded", 4, output="{}"),
        event(6, "TaskStateEntered", 5, name="Run 20_sessions"),
        event(7, "TaskScheduled", 6),
        submitted(8, 7, "first"),
        event(9, "TaskFailed", 8, error="States.TaskFailed", cause='{"ExitCode": 1}'),
        event(10, "TaskScheduled", 9),
        submitted(11, 10, "second"),
        event(12, "TaskFailed", 11, error="States.TaskFailed", cause='{"ExitCode": 3}'),
        event(13, "TaskStateEntered", 12, name="TerminateCluster"),
        event(14, "FailStateEntered", 13, name="RunFailed"),
        event(15, "ExecutionFailed", 14, error="States.TaskFailed", cause='{"ExitCode": 3}'),
    ]
    failure = alert.find_failure(history)
    assert failure == alert.Failure(
        "Run 20_sessions",
        "States.TaskFailed",
        '{"ExitCode": 3}',
        "arn:aws:ecs:us-east-1:123456789012:task/runner/second",
    )
