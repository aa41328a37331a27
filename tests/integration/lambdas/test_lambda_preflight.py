"""preflight against moto: a second concurrent run of a pipeline is refused before it creates anything."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas import create_cluster, preflight
from lambdas.shared.errors import TransientAwsError


@pytest.fixture
def payload(state_machine_arn, start_execution) -> dict[str, Any]:
    return {
        "pipeline": "example",
        "execution_arn": start_execution("run-today"),
        "state_machine_arn": state_machine_arn,
    }


def test_proceeds_when_nothing_else_runs(emr, sfn, payload, lambda_context):
    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result == {"proceed": True, "reason": ""}


def test_refuses_while_another_execution_runs(emr, sfn, payload, start_execution, lambda_context, alive):
    earlier = start_execution("run-yesterday")

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result == {
        "proceed": False,
        "reason": f"another run of pipeline 'example' is still running: {earlier}",
    }
    assert alive(emr) == []


def test_a_finished_execution_does_not_block(emr, sfn, payload, start_execution, lambda_context):
    sfn.stop_execution(executionArn=start_execution("run-yesterday"))

    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)["proceed"] is True


def test_refuses_while_a_cluster_of_the_pipeline_is_alive(emr, sfn, payload, create_payload, lambda_context):
    # Left by a run whose execution is gone (the sweeper has not caught it yet).
    leftover = create_cluster.handler(create_payload, lambda_context, emr=emr)["cluster_id"]

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result == {
        "proceed": False,
        "reason": (
            f"cluster {leftover} of pipeline 'example' is still alive (WAITING); "
            "terminate it or wait for the sweeper"
        ),
    }


def test_a_cluster_of_another_pipeline_does_not_block(emr, sfn, payload, create_payload, lambda_context):
    create_cluster.handler(dict(create_payload, pipeline="billing"), lambda_context, emr=emr)

    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)["proceed"] is True


def test_a_terminated_cluster_does_not_block(emr, sfn, payload, create_payload, lambda_context):
    old = create_cluster.handler(create_payload, lambda_context, emr=emr)["cluster_id"]
    emr.terminate_job_flows(JobFlowIds=[old])

    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)["proceed"] is True


def test_throttled_list_executions_is_a_transient_error(emr, sfn, payload, lambda_context):
    with Stubber(sfn) as stub:
        stub.add_client_error("list_executions", service_error_code="ThrottlingException")
        with pytest.raises(TransientAwsError, match="ListExecutions was throttled"):
            preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)


def test_another_stacks_cluster_of_the_same_pipeline_does_not_block(
    emr, sfn, payload, create_payload, lambda_context, monkeypatch
):
    # A dev stack and a prod stack in one account, both with a pipeline named "example".
    monkeypatch.setenv("NIGHTSHIFT_STACK", "NightshiftDev")
    create_cluster.handler(create_payload, lambda_context, emr=emr)
    monkeypatch.setenv("NIGHTSHIFT_STACK", "Nightshift")

    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)["proceed"] is True
