"""cluster_status against moto: ready, master host, and each reason a cluster can fail for."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas import cluster_status, create_cluster
from lambdas.shared import clients
from lambdas.shared.errors import ClusterGone, TransientAwsError


@pytest.fixture
def cluster_id(emr, create_payload, lambda_context) -> str:
    return str(create_cluster.handler(create_payload, lambda_context, emr=emr)["cluster_id"])


def test_waiting_cluster_is_ready_with_its_master_host(emr, cluster_id, lambda_context):
    status = cluster_status.handler({"cluster_id": cluster_id}, lambda_context, emr=emr)

    expected_host = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["MasterPublicDnsName"]
    assert expected_host
    assert status == {
        "cluster_id": cluster_id,
        "state": "WAITING",
        "ready": True,
        "failed": False,
        "master_host": expected_host,
        "reason": "",
        "launch_failure": False,
    }


def test_starting_cluster_is_neither_ready_nor_failed(emr, emr_backend, cluster_id, lambda_context):
    emr_backend.clusters[cluster_id].state = "BOOTSTRAPPING"

    status = cluster_status.handler({"cluster_id": cluster_id}, lambda_context, emr=emr)

    assert (status["state"], status["ready"], status["failed"]) == ("BOOTSTRAPPING", False, False)


def test_terminated_with_errors_reports_emrs_reason(emr, emr_backend, cluster_id, lambda_context):
    # moto never fails a cluster by itself and has no API to do so; its backend object holds the
    # state and the state-change message it serves, so set them there. moto has no reason
    # Code, which is why the Code-driven reasons below use a Stubber.
    cluster = emr_backend.clusters[cluster_id]
    cluster.state = "TERMINATED_WITH_ERRORS"
    cluster.last_state_change_reason = "Terminated with errors: The master node was lost"

    status = cluster_status.handler({"cluster_id": cluster_id}, lambda_context, emr=emr)

    assert status["state"] == "TERMINATED_WITH_ERRORS"
    assert status["failed"] is True
    assert status["ready"] is False
    assert status["reason"] == (
        "TERMINATED_WITH_ERRORS (no code): Terminated with errors: The master node was lost"
    )


def test_spot_capacity_message_is_named_as_such(emr, emr_backend, cluster_id, lambda_context):
    cluster = emr_backend.clusters[cluster_id]
    cluster.state = "TERMINATED_WITH_ERRORS"
    cluster.last_state_change_reason = (
        "The requested number of spot instances exceeds your limit. Insufficient capacity."
    )

    status = cluster_status.handler({"cluster_id": cluster_id}, lambda_context, emr=emr)

    assert status["failed"] is True
    assert status["reason"].startswith("Spot capacity not found (TERMINATED_WITH_ERRORS")


def test_terminated_by_the_idle_timeout_is_failed(emr, cluster_id, lambda_context):
    emr.terminate_job_flows(JobFlowIds=[cluster_id])

    status = cluster_status.handler({"cluster_id": cluster_id}, lambda_context, emr=emr)

    assert (status["state"], status["ready"], status["failed"]) == ("TERMINATED", False, True)
    assert status["reason"].startswith("TERMINATED")


def _described(cluster_id: str, state: str, code: str, message: str) -> dict[str, Any]:
    return {
        "Cluster": {
            "Id": cluster_id,
            "Name": "nightshift-example-2024-06-01",
            "Status": {
                "State": state,
                "StateChangeReason": {"Code": code, "Message": message},
            },
        }
    }


def test_bootstrap_failure(emr, lambda_context):
    # moto cannot report a StateChangeReason Code, so EMR's answer is stubbed as EMR sends it.
    message = "On the master instance (i-0abc), bootstrap action 1 returned a non-zero return code"
    with Stubber(emr) as stub:
        stub.add_response(
            "describe_cluster",
            _described("j-1BOOTSTRAPFAIL", "TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", message),
            {"ClusterId": "j-1BOOTSTRAPFAIL"},
        )
        status = cluster_status.handler({"cluster_id": "j-1BOOTSTRAPFAIL"}, lambda_context, emr=emr)

    assert status["failed"] is True
    assert status["reason"] == f"bootstrap failure (TERMINATED_WITH_ERRORS): {message}"
    assert status["launch_failure"] is True  # a transient download, say: a new cluster may well boot


def test_spot_fleet_timeout(emr, lambda_context):
    # An instance fleet whose Spot request timed out with TimeoutAction TERMINATE_CLUSTER;
    # moto has no fleets, let alone their timeouts.
    message = "The EMR-provisioned instance fleet 'core' did not reach its target Spot capacity"
    with Stubber(emr) as stub:
        stub.add_response(
            "describe_cluster",
            _described("j-1SPOTTIMEOUT", "TERMINATING", "INSTANCE_FLEET_TIMEOUT", message),
        )
        status = cluster_status.handler({"cluster_id": "j-1SPOTTIMEOUT"}, lambda_context, emr=emr)

    assert status["state"] == "TERMINATING"
    assert status["failed"] is True
    assert status["reason"] == f"Spot capacity not found (TERMINATING, INSTANCE_FLEET_TIMEOUT): {message}"
    assert status["launch_failure"] is True


def test_unknown_cluster_is_failed_with_the_reason(emr, lambda_context):
    status = cluster_status.handler({"cluster_id": "j-DOESNOTEXIST1"}, lambda_context, emr=emr)

    assert status == {
        "cluster_id": "j-DOESNOTEXIST1",
        "state": "NOT_FOUND",
        "ready": False,
        "failed": True,
        "master_host": "",
        "reason": "cluster j-DOESNOTEXIST1 not found: EMR does not know this cluster id",
        "launch_failure": False,
    }


def test_throttling_is_a_transient_error(emr, lambda_context):
    with Stubber(emr) as stub:
        stub.add_client_error(
            "describe_cluster", service_error_code="ThrottlingException", service_message="Rate exceeded"
        )
        with pytest.raises(TransientAwsError, match=r"DescribeCluster was throttled \(ThrottlingException"):
            cluster_status.handler({"cluster_id": "j-1THROTTLED"}, lambda_context, emr=emr)


def test_the_default_client_is_made_on_first_use(emr, cluster_id, lambda_context):
    # Made lazily, so the client of an earlier test (another moto backend) must not be reused.
    clients.emr.cache_clear()
    try:
        status = cluster_status.handler({"cluster_id": cluster_id}, lambda_context)
    finally:
        clients.emr.cache_clear()

    assert (status["cluster_id"], status["ready"]) == (cluster_id, True)


# A child of a shared-cluster backfill (issue 22) asks about its batch's cluster with the batch's
# execution; a cluster tagged with another execution is ClusterGone, the errorType a Catch names
# (a Lambda's errorType is the exception's class name).
def test_a_child_gets_the_ready_cluster_of_its_batch(emr, create_payload, cluster_id, lambda_context):
    request = {"cluster_id": cluster_id, "execution_arn": create_payload["execution_arn"]}

    status = cluster_status.handler(request, lambda_context, emr=emr)

    assert (status["state"], status["ready"], status["failed"]) == ("WAITING", True, False)


def test_a_cluster_of_another_execution_is_gone(emr, create_payload, cluster_id, lambda_context):
    """A Python Lambda's error reaches Step Functions as errorType = the exception's class name, which a
    Retry or Catch names ("Handling error conditions using a Step Functions state machine",
    https://docs.aws.amazon.com/step-functions/latest/dg/tutorial-handling-error-conditions.html)."""
    other = create_payload["execution_arn"].replace("run-1", "example-batch-2024-06-01-2024-06-03")

    with pytest.raises(
        ClusterGone, match=rf"cluster {cluster_id} belongs to execution .*:run-1, not to {other}"
    ):
        cluster_status.handler({"cluster_id": cluster_id, "execution_arn": other}, lambda_context, emr=emr)
