"""The sweeper against moto: exactly the orphaned clusters are terminated."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber
from moto.core.exceptions import AWSError
from moto.emr.exceptions import InvalidRequestException
from moto.stepfunctions.models import StepFunctionBackend

from lambdas import create_cluster, sweeper
from lambdas.shared.errors import SweepIncompleteError
from lambdas.shared.hostkeys import host_key_parameter_name

ACCOUNT = "123456789012"


class InternalServerError(InvalidRequestException):
    code = "InternalServerError"


def _status_change(execution_arn: str, status: str, state_machine_arn: str) -> dict[str, Any]:
    """An "Execution Status Change" event as EventBridge delivers it."""
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": ACCOUNT,
        "time": "2024-06-01T03:04:05Z",
        "region": "us-east-1",
        "resources": [execution_arn],
        "detail": {
            "executionArn": execution_arn,
            "stateMachineArn": state_machine_arn,
            "name": execution_arn.rsplit(":", 1)[-1],
            "status": status,
            "startDate": 1717210800000,
            "stopDate": 1717211045000,
            "input": "{}",
            "output": None,
        },
    }


SCHEDULED = {
    "version": "0",
    "id": "89d1a02d-5ec7-412e-82f5-13505f849b41",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": ACCOUNT,
    "time": "2024-06-01T04:00:00Z",
    "region": "us-east-1",
    "resources": [f"arn:aws:events:us-east-1:{ACCOUNT}:rule/nightshift-sweeper-hourly"],
    "detail": {},
}


@pytest.fixture
def make_cluster(emr, create_payload, lambda_context):
    """Create the cluster of one run of one execution, the way the state machine does."""

    def make(execution_arn: str, run_id: str) -> str:
        payload = dict(create_payload, execution_arn=execution_arn, run_id=run_id)
        return str(create_cluster.handler(payload, lambda_context, emr=emr)["cluster_id"])

    return make


def _alive_ids(alive, emr) -> set[str]:
    return {c["Id"] for c in alive(emr)}


@pytest.mark.parametrize("event", [SCHEDULED, {}], ids=["hourly-schedule", "manual-empty"])
def test_full_sweep_terminates_exactly_the_orphans(
    event, emr, ssm, sfn, start_execution, state_machine_arn, make_cluster, lambda_context, alive
):
    running = start_execution("run-running")
    aborted = start_execution("run-aborted")
    sfn.stop_execution(executionArn=aborted)
    vanished = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:nightshift-example:run-deleted"
    keep = make_cluster(running, "r1")
    orphan_aborted = make_cluster(aborted, "r2")
    orphan_vanished = make_cluster(vanished, "r3")
    foreign = emr.run_job_flow(
        Name="not-nightshift",
        ReleaseLabel="emr-7.13.0",
        Instances={"KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    ssm.put_parameter(Name=host_key_parameter_name(orphan_aborted), Value="ssh-ed25519 AAAA", Type="String")

    result = sweeper.handler(event, lambda_context, emr=emr, ssm=ssm, sfn=sfn)

    assert sorted(result["terminated"]) == sorted([orphan_aborted, orphan_vanished])
    assert result["kept"] == [keep]
    assert _alive_ids(alive, emr) == {keep, foreign}
    assert ssm.describe_parameters()["Parameters"] == []


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_status_change_sweeps_that_execution_only(
    status, emr, ssm, start_execution, state_machine_arn, make_cluster, lambda_context, alive
):
    finished = start_execution("run-finished")
    other = start_execution("run-other")
    orphan = make_cluster(finished, "r1")
    bystander = make_cluster(other, "r2")

    result = sweeper.handler(
        _status_change(finished, status, state_machine_arn), lambda_context, emr=emr, ssm=ssm
    )

    assert result == {"terminated": [orphan], "kept": [], "skipped": []}
    assert _alive_ids(alive, emr) == {bystander}


def test_status_change_to_running_keeps_the_cluster(
    emr, ssm, start_execution, state_machine_arn, make_cluster, lambda_context, alive
):
    execution = start_execution("run-redriven")
    cluster = make_cluster(execution, "r1")

    result = sweeper.handler(
        _status_change(execution, "RUNNING", state_machine_arn), lambda_context, emr=emr, ssm=ssm
    )

    assert result == {"terminated": [], "kept": [cluster], "skipped": []}
    assert _alive_ids(alive, emr) == {cluster}


def test_one_stuck_orphan_does_not_shield_the_others(
    emr, emr_backend, ssm, sfn, start_execution, make_cluster, lambda_context, alive, monkeypatch
):
    gone = start_execution("run-gone")
    sfn.stop_execution(executionArn=gone)
    stuck = make_cluster(gone, "r1")
    freed = make_cluster(gone, "r2")
    original = type(emr_backend).terminate_job_flows

    # EMR refusing one cluster (an internal error, say): moto never refuses by itself.
    def refuse_stuck(backend, job_flow_ids):
        if stuck in job_flow_ids:
            raise InternalServerError("cannot terminate right now")
        return original(backend, job_flow_ids)

    monkeypatch.setattr(type(emr_backend), "terminate_job_flows", refuse_stuck)

    with pytest.raises(SweepIncompleteError, match=f"skipped: {stuck} \\(terminate orphan\\)") as raised:
        sweeper.handler({}, lambda_context, emr=emr, ssm=ssm, sfn=sfn)

    assert f"terminated ['{freed}']" in str(raised.value)
    assert _alive_ids(alive, emr) == {stuck}


def test_a_throttled_execution_look_up_skips_that_cluster_only(
    emr, ssm, sfn, start_execution, make_cluster, lambda_context, alive
):
    gone = start_execution("run-gone")
    sfn.stop_execution(executionArn=gone)
    unknown = make_cluster(start_execution("run-1"), "r1")
    orphan = make_cluster(gone, "r2")
    with Stubber(sfn) as stub:
        # Clusters are listed newest first: the orphan's look-up answers, the other's is throttled.
        stub.add_response("describe_execution", _described_execution(gone, "ABORTED"), {"executionArn": gone})
        stub.add_client_error("describe_execution", service_error_code="ThrottlingException")
        with pytest.raises(SweepIncompleteError, match=f"skipped: {unknown} \\(look up its execution\\)"):
            sweeper.handler({}, lambda_context, emr=emr, ssm=ssm, sfn=sfn)
    alive_ids = _alive_ids(alive, emr)
    assert unknown in alive_ids and orphan not in alive_ids  # kept for the next sweep; the orphan is gone


class AccessDeniedException(AWSError):
    TYPE = "AccessDeniedException"
    STATUS = 400


def test_two_stacks_in_one_account_sweep_only_their_own_clusters(
    emr, ssm, sfn, start_execution, make_cluster, create_payload, lambda_context, alive, monkeypatch
):
    gone = start_execution("run-gone")
    sfn.stop_execution(executionArn=gone)
    ours = make_cluster(gone, "r1")
    # The other stack's run of the same pipeline, whose execution this stack may not describe.
    theirs_arn = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:NightshiftDev-example:run-1"
    monkeypatch.setenv("NIGHTSHIFT_STACK", "NightshiftDev")
    theirs = make_cluster(theirs_arn, "r1")
    monkeypatch.setenv("NIGHTSHIFT_STACK", "Nightshift")
    original = StepFunctionBackend.describe_execution

    def deny_other_stacks(backend, execution_arn):
        if ":NightshiftDev-" in execution_arn:
            raise AccessDeniedException("not authorized to perform: states:DescribeExecution")
        return original(backend, execution_arn)

    monkeypatch.setattr(StepFunctionBackend, "describe_execution", deny_other_stacks)

    result = sweeper.handler({}, lambda_context, emr=emr, ssm=ssm, sfn=sfn)

    assert result == {"terminated": [ours], "kept": [], "skipped": []}
    assert _alive_ids(alive, emr) == {theirs}


def _described_execution(arn: str, status: str) -> dict[str, Any]:
    return {
        "executionArn": arn,
        "stateMachineArn": arn.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0],
        "status": status,
        "startDate": "2024-06-01T03:00:00Z",
    }


def test_a_dates_end_leaves_its_batchs_cluster_and_the_batchs_end_terminates_it(
    emr, ssm, start_execution, state_machine_arn, create_payload, lambda_context, alive
):
    # A shared-cluster backfill (issue 22): the cluster carries the batch's execution, not a date's.
    batch = start_execution("example-batch-2024-06-01-2024-06-03")
    payload = dict(create_payload, execution_arn=batch, run_id="example-batch-2024-06-01-2024-06-03")
    shared = create_cluster.handler(dict(payload, last_run_date="2024-06-03"), lambda_context, emr=emr)[
        "cluster_id"
    ]
    child = start_execution("example-2024-06-01")

    after_date = sweeper.handler(
        _status_change(child, "FAILED", state_machine_arn), lambda_context, emr=emr, ssm=ssm
    )
    assert after_date == {"terminated": [], "kept": [], "skipped": []}
    assert _alive_ids(alive, emr) == {shared}

    after_batch = sweeper.handler(
        _status_change(batch, "ABORTED", state_machine_arn), lambda_context, emr=emr, ssm=ssm
    )
    assert after_batch == {"terminated": [shared], "kept": [], "skipped": []}
    assert _alive_ids(alive, emr) == set()
