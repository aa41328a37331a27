"""terminate_cluster against moto: idempotent, lifts our protection, cleans the host keys."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from lambdas import create_cluster, terminate_cluster
from lambdas.shared.errors import ClusterTerminationError, TransientAwsError
from lambdas.shared.hostkeys import host_key_parameter_name


@pytest.fixture
def cluster_id(emr, create_payload, lambda_context) -> str:
    return str(create_cluster.handler(create_payload, lambda_context, emr=emr)["cluster_id"])


def _publish_host_keys(ssm, cluster_id: str) -> None:
    ssm.put_parameter(
        Name=host_key_parameter_name(cluster_id),
        Value="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
        Type="String",
    )


def _parameters(ssm) -> list[str]:
    return [p["Name"] for p in ssm.describe_parameters()["Parameters"]]


def test_terminates_and_deletes_the_host_keys(emr, ssm, cluster_id, lambda_context, alive):
    _publish_host_keys(ssm, cluster_id)

    result = terminate_cluster.handler({"cluster_id": cluster_id}, lambda_context, emr=emr, ssm=ssm)

    assert result == {"cluster_id": cluster_id, "state": "TERMINATED", "terminated": True, "reason": ""}
    assert alive(emr) == []
    assert _parameters(ssm) == []


def test_terminate_twice_succeeds_both_times(emr, ssm, cluster_id, lambda_context, alive):
    first = terminate_cluster.handler({"cluster_id": cluster_id}, lambda_context, emr=emr, ssm=ssm)
    second = terminate_cluster.handler({"cluster_id": cluster_id}, lambda_context, emr=emr, ssm=ssm)

    assert first["terminated"] is True
    assert second == {
        "cluster_id": cluster_id,
        "state": "TERMINATED",
        "terminated": True,
        "reason": "already TERMINATED",
    }
    assert alive(emr) == []


def test_already_terminating_is_left_to_finish(emr, emr_backend, ssm, cluster_id, lambda_context):
    emr_backend.clusters[cluster_id].state = "TERMINATING"

    result = terminate_cluster.handler({"cluster_id": cluster_id}, lambda_context, emr=emr, ssm=ssm)

    assert result["terminated"] is True
    assert result["reason"] == "already TERMINATING"


def test_unknown_cluster_counts_as_already_gone(emr, ssm, lambda_context):
    result = terminate_cluster.handler({"cluster_id": "j-DOESNOTEXIST1"}, lambda_context, emr=emr, ssm=ssm)

    assert result == {
        "cluster_id": "j-DOESNOTEXIST1",
        "state": "NOT_FOUND",
        "terminated": True,
        "reason": "already gone: EMR does not know it",
    }


def test_lifts_termination_protection_on_our_cluster(emr, ssm, cluster_id, lambda_context, alive):
    emr.set_termination_protection(JobFlowIds=[cluster_id], TerminationProtected=True)

    result = terminate_cluster.handler({"cluster_id": cluster_id}, lambda_context, emr=emr, ssm=ssm)

    assert result["terminated"] is True
    assert alive(emr) == []


def test_refuses_to_lift_protection_on_a_cluster_not_ours(emr, ssm, lambda_context, alive):
    foreign = emr.run_job_flow(
        Name="someone-elses",
        ReleaseLabel="emr-7.13.0",
        Instances={"KeepJobFlowAliveWhenNoSteps": True, "TerminationProtected": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]

    with pytest.raises(ClusterTerminationError, match="not managed by Nightshift"):
        terminate_cluster.handler({"cluster_id": foreign}, lambda_context, emr=emr, ssm=ssm)

    assert [c["Id"] for c in alive(emr)] == [foreign]


@pytest.mark.parametrize("payload", [{"cluster_id": None}, {}], ids=["null", "missing"])
def test_no_cluster_yet(emr, ssm, lambda_context, payload):
    result = terminate_cluster.handler(payload, lambda_context, emr=emr, ssm=ssm)

    assert result == {"cluster_id": None, "state": "", "terminated": False, "reason": "no cluster"}


def test_no_cluster_id_still_terminates_the_executions_cluster(
    emr, ssm, create_payload, lambda_context, alive
):
    # CreateCluster made the cluster but timed out before returning its id.
    made = create_cluster.handler(create_payload, lambda_context, emr=emr)["cluster_id"]
    other_run = dict(
        create_payload,
        run_id="other-run",
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:nightshift-example:run-2",
    )
    other = create_cluster.handler(other_run, lambda_context, emr=emr)["cluster_id"]

    result = terminate_cluster.handler(
        {"cluster_id": None, "execution_arn": create_payload["execution_arn"]},
        lambda_context,
        emr=emr,
        ssm=ssm,
    )

    assert result["cluster_id"] == made
    assert result["terminated"] is True
    assert [c["Id"] for c in alive(emr)] == [other]


def test_throttled_terminate_is_a_transient_error(emr, ssm, lambda_context):
    with Stubber(emr) as stub:
        stub.add_response(
            "describe_cluster",
            {"Cluster": {"Id": "j-1THROTTLED", "Name": "n", "Status": {"State": "WAITING"}}},
        )
        stub.add_client_error("terminate_job_flows", service_error_code="ThrottlingException")
        with pytest.raises(TransientAwsError, match="TerminateJobFlows was throttled"):
            terminate_cluster.handler({"cluster_id": "j-1THROTTLED"}, lambda_context, emr=emr, ssm=ssm)
