"""Bad payloads: a validation error naming the field, and not a single AWS call."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from botocore.exceptions import UnStubbedResponseError
from pydantic import ValidationError

from lambdas import cluster_status, create_cluster, preflight, sweeper, terminate_cluster

PREFLIGHT = {
    "pipeline": "example",
    "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:nightshift-example:run-1",
    "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:nightshift-example",
    "run_date": "2025-06-01",
    "max_concurrent_runs": 2,
}


def _without(payload: dict[str, Any], dotted: str) -> dict[str, Any]:
    bad = copy.deepcopy(payload)
    *parents, leaf = dotted.split(".")
    target = bad
    for key in parents:
        target = target[key]
    del target[leaf]
    return bad


def _with(payload: dict[str, Any], dotted: str, value) -> dict[str, Any]:
    bad = copy.deepcopy(payload)
    *parents, leaf = dotted.split(".")
    target = bad
    for key in parents:
        target = target[key]
    target[leaf] = value
    return bad


def _assert_names(raised: pytest.ExceptionInfo[ValidationError], field: str) -> None:
    locations = [".".join(str(part) for part in error["loc"]) for error in raised.value.errors()]
    assert any(location.endswith(field) for location in locations), locations
    assert field.rsplit(".", 1)[-1] in str(raised.value)


CORE_COUNT = "cluster.core_instance_count"
IDLE = "cluster.idle_timeout_minutes"

CREATE_CASES = [
    ("missing run_id", lambda p: _without(p, "run_id"), "run_id"),
    ("missing execution_arn", lambda p: _without(p, "execution_arn"), "execution_arn"),
    ("missing core count", lambda p: _without(p, CORE_COUNT), CORE_COUNT),
    ("missing subnets", lambda p: _without(p, "network.subnet_ids"), "network.subnet_ids"),
    ("count not a number", lambda p: _with(p, CORE_COUNT, "two"), CORE_COUNT),
    ("use_spot not a bool", lambda p: _with(p, "cluster.use_spot", "maybe"), "cluster.use_spot"),
    ("run_date not a date", lambda p: _with(p, "run_date", "June 1st"), "run_date"),
    ("no subnet at all", lambda p: _with(p, "network.subnet_ids", []), "network.subnet_ids"),
    ("idle timeout zero", lambda p: _with(p, IDLE, 0), IDLE),
    ("log uri not s3", lambda p: _with(p, "log_uri", "/var/log/emr"), "log_uri"),
    ("pipeline not a string", lambda p: _with(p, "pipeline", 42), "pipeline"),
    ("cluster not an object", lambda p: _with(p, "cluster", "big"), "cluster"),
    ("misspelt field", lambda p: _with(p, "bootstrap_scrpit_uri", "s3://b/k"), "bootstrap_scrpit_uri"),
    (
        "instance type without size",
        lambda p: _with(p, "cluster.master_instance_type", "m5"),
        "cluster.master_instance_type",
    ),
    ("negative core count", lambda p: _with(p, CORE_COUNT, -1), CORE_COUNT),
    ("launch attempt zero", lambda p: _with(p, "attempt", 0), "attempt"),
]


def _cases(cases):
    return pytest.mark.parametrize(("case", "field"), [c[1:] for c in cases], ids=[c[0] for c in cases])


@_cases(CREATE_CASES)
def test_create_cluster(case, field, create_payload, untouchable, lambda_context):
    with pytest.raises(ValidationError) as raised:
        create_cluster.handler(case(create_payload), lambda_context, emr=untouchable.emr)

    _assert_names(raised, field)
    assert untouchable.calls == []


PREFLIGHT_CASES = [
    ("missing state machine", _without(PREFLIGHT, "state_machine_arn"), "state_machine_arn"),
    ("missing pipeline", _without(PREFLIGHT, "pipeline"), "pipeline"),
    ("execution arn not an arn", _with(PREFLIGHT, "execution_arn", "run-1"), "execution_arn"),
    ("pipeline a list", _with(PREFLIGHT, "pipeline", ["example"]), "pipeline"),
    ("missing run_date", _without(PREFLIGHT, "run_date"), "run_date"),
    ("run_date not a date", _with(PREFLIGHT, "run_date", "2025-02-30"), "run_date"),
    ("no concurrent run at all", _with(PREFLIGHT, "max_concurrent_runs", 0), "max_concurrent_runs"),
    ("too many concurrent runs", _with(PREFLIGHT, "max_concurrent_runs", 51), "max_concurrent_runs"),
]


@_cases(PREFLIGHT_CASES)
def test_preflight(case, field, untouchable, lambda_context):
    with pytest.raises(ValidationError) as raised:
        preflight.handler(case, lambda_context, emr=untouchable.emr, sfn=untouchable.sfn)

    _assert_names(raised, field)
    assert untouchable.calls == []


STATUS_CASES = [
    ("missing cluster id", {}, "cluster_id"),
    ("null cluster id", {"cluster_id": None}, "cluster_id"),
    ("cluster id a number", {"cluster_id": 123}, "cluster_id"),
    ("not a cluster id", {"cluster_id": "i-0abc"}, "cluster_id"),
    ("misspelt field", {"cluster_id": "j-ABC", "clusterid": "j-ABC"}, "clusterid"),
]


@_cases(STATUS_CASES)
def test_cluster_status(case, field, untouchable, lambda_context):
    with pytest.raises(ValidationError) as raised:
        cluster_status.handler(case, lambda_context, emr=untouchable.emr)

    _assert_names(raised, field)
    assert untouchable.calls == []


TERMINATE_CASES = [
    ("cluster id a number", {"cluster_id": 42}, "cluster_id"),
    ("empty cluster id", {"cluster_id": ""}, "cluster_id"),
    ("cluster id an object", {"cluster_id": {"cluster_id": "j-ABC"}}, "cluster_id"),
    ("execution arn not an arn", {"cluster_id": None, "execution_arn": "x"}, "execution_arn"),
    ("misspelt field", {"clusterId": "j-ABC"}, "clusterId"),
]


@_cases(TERMINATE_CASES)
def test_terminate_cluster(case, field, untouchable, lambda_context):
    with pytest.raises(ValidationError) as raised:
        terminate_cluster.handler(case, lambda_context, emr=untouchable.emr, ssm=untouchable.ssm)

    _assert_names(raised, field)
    assert untouchable.calls == []


STATUS_CHANGE = {
    "version": "0",
    "id": "315c1398-40ff-a850-213b-158f73e60175",
    "detail-type": "Step Functions Execution Status Change",
    "source": "aws.states",
    "account": "123456789012",
    "time": "2024-06-01T03:04:05Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {
        "executionArn": PREFLIGHT["execution_arn"],
        "stateMachineArn": PREFLIGHT["state_machine_arn"],
        "status": "FAILED",
    },
}

SWEEPER_CASES = [
    ("status change without execution", _without(STATUS_CHANGE, "detail.executionArn"), "executionArn"),
    ("status change with unknown status", _with(STATUS_CHANGE, "detail.status", "EXPLODED"), "detail.status"),
    ("status change without detail-type", _without(STATUS_CHANGE, "detail-type"), "detail-type"),
    ("unknown manual payload", {"sweep": "everything"}, "sweep"),
]


@_cases(SWEEPER_CASES)
def test_sweeper(case, field, untouchable, lambda_context):
    with pytest.raises(ValidationError) as raised:
        sweeper.handler(case, lambda_context, emr=untouchable.emr, ssm=untouchable.ssm, sfn=untouchable.sfn)

    _assert_names(raised, field)
    assert untouchable.calls == []


def test_the_guard_notices_an_aws_call(untouchable, lambda_context):
    with pytest.raises(UnStubbedResponseError):
        cluster_status.handler({"cluster_id": "j-ABC"}, lambda_context, emr=untouchable.emr)

    assert untouchable.calls == ["DescribeCluster"]
