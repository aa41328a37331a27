"""A warm Lambda's next invocation logs nothing of the last one: the keys a handler appends end with it.

Powertools keeps keys appended with ``logger.append_keys`` on the module's Logger, so they stay for
every later invocation of the same process unless the handler's decorator is told to clear them
("Logger: Clearing all state", Powertools for AWS Lambda (Python),
https://docs.powertools.aws.dev/lambda/python/latest/core/logger/#clearing-all-state: "Logger is
commonly initialized in the global scope. Due to Lambda Execution Context reuse, this means that
custom keys can be persisted across invocations. If you want all custom keys to be deleted, you can
use clear_state=True param in inject_lambda_context decorator."). Every handler here runs in one
process, as they do in tests/infra/moto_harness.py and as one function's invocations do in a warm
execution environment.
"""

from __future__ import annotations

import ast
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

import lambdas
from lambdas import (
    check_inputs,
    cluster_status,
    create_cluster,
    late_check,
    preflight,
    start_run,
    sweeper,
    terminate_cluster,
)
from lambdas.shared.observability import logger
from lambdas.shared.stack import TOPIC_VARIABLE
from tests.lambda_support import ACCOUNT, REGION

# What the first invocation leaves, spelled so that no later event carries it by chance.
LEFT_PIPELINE = "leftover"
LEFT_RUN_ID = "leftover-2024-05-31-zz99"
LEFT_ATTEMPT = 7
LEFT_EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:nightshift-leftover:leftover-2024-05-31"
# The keys a handler appends or its decorator sets per invocation.
PER_INVOCATION = ("pipeline", "run_id", "attempt", "correlation_id")


class Log:
    """The JSON lines the shared Logger writes, as CloudWatch Logs would store them."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def records(self) -> list[dict[str, Any]]:
        lines = self.stream.getvalue().splitlines()
        self.stream.seek(0)
        self.stream.truncate()
        return [json.loads(line) for line in lines]


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    captured = Log()
    monkeypatch.setattr(logger.registered_handler, "stream", captured.stream)
    return captured


@pytest.fixture
def sns(aws):
    return boto3.client("sns", region_name=REGION)


@pytest.fixture
def s3(aws):
    return boto3.client("s3", region_name=REGION)


@pytest.fixture
def leave(emr, sfn, sns, state_machine_arn, create_payload, lambda_context, monkeypatch):
    """Invoke one handler that appends keys of its run: ``leave(name)``; the keys it left."""
    monkeypatch.setenv(TOPIC_VARIABLE, sns.create_topic(Name="nightshift-alerts")["TopicArn"])
    scheduled = {
        "pipeline": LEFT_PIPELINE,
        "state_machine_arn": state_machine_arn,
        "timezone": "Europe/Berlin",
        "scheduled_time": "2024-05-31T02:00:00Z",
    }

    def invoke(name: str) -> dict[str, Any]:
        if name == "create_cluster":
            payload = dict(
                create_payload,
                pipeline=LEFT_PIPELINE,
                run_id=LEFT_RUN_ID,
                attempt=LEFT_ATTEMPT,
                execution_arn=LEFT_EXECUTION,
            )
            create_cluster.handler(payload, lambda_context, emr=emr)
        elif name == "start_run":
            start_run.handler(scheduled, lambda_context, sfn=sfn)
        else:
            late_check.handler(dict(scheduled, expected_by="07:30"), lambda_context, sfn=sfn, sns=sns)
        return dict(logger.get_current_keys())

    return invoke


# The handler that runs second, made to log: it returns the per-invocation keys its records must have.
Follower = Callable[[], dict[str, Any]]


@pytest.fixture
def followers(
    emr, sfn, s3, emr_backend, state_machine_arn, start_execution, create_payload, lambda_context
) -> dict[str, Follower]:
    """Each handler that logs, invoked so that it logs at least one record, in a scenario a night has."""
    cluster_id = create_cluster.handler(create_payload, lambda_context, emr=emr)["cluster_id"]
    context = replace(lambda_context, aws_request_id="6a2d3e4f-0000-4000-8000-000000000001")

    execution = create_payload["execution_arn"]

    def terminate() -> dict[str, Any]:
        payload = {"cluster_id": cluster_id, "execution_arn": execution}
        terminate_cluster.handler(payload, context, emr=emr, ssm=boto3.client("ssm", region_name=REGION))
        return {"correlation_id": execution}

    def failed_cluster() -> dict[str, Any]:
        emr_backend.clusters[cluster_id].state = "TERMINATED_WITH_ERRORS"
        cluster_status.handler({"cluster_id": cluster_id}, context, emr=emr)
        return {}

    def sweep() -> dict[str, Any]:
        sweeper.handler({}, context, emr=emr, ssm=boto3.client("ssm", region_name=REGION), sfn=sfn)
        return {}

    def missing_inputs() -> dict[str, Any]:
        s3.create_bucket(Bucket="nightshift-example-data")
        payload = {
            "pipeline": "example",
            "run_date": "2024-06-01",
            "inputs": [{"kind": "object", "path": "s3://nightshift-example-data/raw/{run_date}/_SUCCESS"}],
        }
        check_inputs.handler(payload, context, s3=s3)
        return {"pipeline": "example"}  # logged with the record, not appended

    def refused() -> dict[str, Any]:
        start_execution("example-2024-05-31")
        own = start_execution("example-2024-06-01")
        payload = {
            "pipeline": "example",
            "execution_arn": own,
            "state_machine_arn": state_machine_arn,
            "run_date": "2024-06-01",
        }
        preflight.handler(payload, context, emr=emr, sfn=sfn)
        return {"correlation_id": own}

    def created() -> dict[str, Any]:
        payload = dict(create_payload, run_id="example-2024-06-01-b2c3")
        create_cluster.handler(payload, context, emr=emr)
        return {"pipeline": "example", "run_id": payload["run_id"], "attempt": 1, "correlation_id": execution}

    return {
        "terminate_cluster": terminate,
        "cluster_status": failed_cluster,
        "sweeper": sweep,
        "check_inputs": missing_inputs,
        "preflight": refused,
        "create_cluster": created,
    }


@pytest.mark.parametrize("first", ["create_cluster", "start_run", "late_check"])
@pytest.mark.parametrize(
    "then", ["terminate_cluster", "cluster_status", "sweeper", "check_inputs", "preflight", "create_cluster"]
)
def test_the_next_invocation_logs_no_key_the_last_one_appended(
    first: str, then: str, leave, followers: dict[str, Follower], log: Log
) -> None:
    left = leave(first)
    assert left["pipeline"] == LEFT_PIPELINE  # what the first invocation appended is on the Logger
    log.records()

    own = followers[then]()

    records = log.records()
    assert records, f"{then} logged nothing: the test would prove nothing"
    for record in records:
        assert {key: record.get(key) for key in PER_INVOCATION} == {
            key: own.get(key) for key in PER_INVOCATION
        }, record
        # Clearing the state keeps what every record must carry (Powertools issue 1084 lost them).
        assert record["service"] == "nightshift"
        assert record["function_request_id"] == "6a2d3e4f-0000-4000-8000-000000000001"


def test_a_warm_create_cluster_logs_only_its_own_run(emr, create_payload, lambda_context, log: Log) -> None:
    """Two runs' invocations of one warm CreateCluster: each record names its own run and attempt."""
    first = dict(create_payload, pipeline=LEFT_PIPELINE, run_id=LEFT_RUN_ID, attempt=LEFT_ATTEMPT)
    create_cluster.handler(first, lambda_context, emr=emr)
    assert {(r["run_id"], r["attempt"]) for r in log.records()} == {(LEFT_RUN_ID, LEFT_ATTEMPT)}

    second = dict(create_payload, run_id="example-2024-06-01-b2c3", attempt=2)
    create_cluster.handler(second, lambda_context, emr=emr)

    records = log.records()
    assert records
    for record in records:
        assert (record["pipeline"], record["run_id"], record["attempt"]) == (
            "example",
            "example-2024-06-01-b2c3",
            2,
        ), record
        assert record["correlation_id"] == create_payload["execution_arn"]


def test_every_handler_clears_the_loggers_state() -> None:
    """The handlers not run above (the alert formatter, RecordRun) and any new one: the same decorator.

    They append no key today; one added later would leak into the next invocation without this.
    """
    unclear = []
    for module in sorted(Path(lambdas.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "inject_lambda_context":
                keywords = {k.arg: k.value for k in node.keywords}
                clear = keywords.get("clear_state")
                if not (isinstance(clear, ast.Constant) and clear.value is True):
                    unclear.append(f"{module.name}:{node.lineno}")
    assert unclear == []
    handlers = [m for m in Path(lambdas.__file__).parent.glob("*.py") if "def handler(" in m.read_text()]
    assert len(handlers) >= 10  # the scan saw the handlers, not an empty folder
