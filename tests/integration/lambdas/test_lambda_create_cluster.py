"""create_cluster against moto: one cluster per run, tagged, and nothing left when creation fails."""

from __future__ import annotations

import io
import json

import pytest
from botocore.stub import Stubber
from moto.emr.exceptions import InvalidRequestException

from lambdas import create_cluster
from lambdas.shared import clients
from lambdas.shared.errors import ClusterCreationError, TransientAwsError
from lambdas.shared.observability import logger


def test_creates_one_tagged_waiting_cluster(emr, create_payload, lambda_context, alive):
    result = create_cluster.handler(create_payload, lambda_context, emr=emr)

    assert result["created"] is True
    clusters = alive(emr)
    assert [c["Id"] for c in clusters] == [result["cluster_id"]]
    cluster = clusters[0]
    assert cluster["Name"] == "nightshift-example-2024-06-01"
    assert {t["Key"]: t["Value"] for t in cluster["Tags"]} == {
        "nightshift:pipeline": "example",
        "nightshift:run-id": "example-2024-06-01-a1b2",
        "nightshift:run-date": "2024-06-01",
        "nightshift:execution-arn": create_payload["execution_arn"],
        "nightshift:launch-attempt": "1",
        "nightshift:stack": "Nightshift",
        "nightshift:managed": "true",
        "for-use-with-amazon-emr-managed-policies": "true",
    }
    assert cluster["Status"]["State"] == "WAITING"
    assert cluster["ReleaseLabel"] == "emr-7.13.0"
    assert sorted(a["Name"] for a in cluster["Applications"]) == ["Hive", "Spark"]
    assert cluster["VisibleToAllUsers"] is True
    assert cluster["TerminationProtected"] is False
    assert cluster["LogUri"] == "s3://nightshift-logs-123456789012/emr/"
    assert cluster["StepConcurrencyLevel"] == 4
    assert cluster["Ec2InstanceAttributes"]["Ec2KeyName"] == "nightshift"
    actions = emr.list_bootstrap_actions(ClusterId=result["cluster_id"])["BootstrapActions"]
    assert [a["ScriptPath"] for a in actions] == [create_payload["bootstrap_script_uri"]]


def test_create_twice_for_one_run_gives_one_cluster(emr, create_payload, lambda_context, alive):
    first = create_cluster.handler(create_payload, lambda_context, emr=emr)
    second = create_cluster.handler(create_payload, lambda_context, emr=emr)

    assert second == {"cluster_id": first["cluster_id"], "created": False}
    assert len(alive(emr)) == 1


def test_retry_finds_the_cluster_while_it_is_still_starting(
    emr, emr_backend, create_payload, lambda_context, alive
):
    first = create_cluster.handler(create_payload, lambda_context, emr=emr)
    # moto jumps straight to WAITING; a real retry usually arrives while EMR is still starting.
    emr_backend.clusters[first["cluster_id"]].state = "STARTING"

    second = create_cluster.handler(create_payload, lambda_context, emr=emr)

    assert second == {"cluster_id": first["cluster_id"], "created": False}
    assert len(alive(emr)) == 1


def test_another_run_of_the_same_day_gets_its_own_cluster(emr, create_payload, lambda_context, alive):
    first = create_cluster.handler(create_payload, lambda_context, emr=emr)
    rerun = dict(create_payload, run_id="example-2024-06-01-c3d4")

    second = create_cluster.handler(rerun, lambda_context, emr=emr)

    assert second["created"] is True
    assert second["cluster_id"] != first["cluster_id"]
    assert len(alive(emr)) == 2


def test_a_batch_cluster_is_tagged_with_its_whole_range_and_made_once(
    emr, create_payload, lambda_context, alive
):
    # Preflight and the sweeper read the range a batch's cluster holds from this tag.
    batch_arn = create_payload["execution_arn"].replace("run-1", "example-batch-2024-06-01-2024-06-03")
    payload = dict(
        create_payload,
        run_id="example-batch-2024-06-01-2024-06-03",
        last_run_date="2024-06-03",
        execution_arn=batch_arn,
    )

    first = create_cluster.handler(payload, lambda_context, emr=emr)
    again = create_cluster.handler(payload, lambda_context, emr=emr)  # a retried call reuses it

    assert (first["created"], again) == (True, {"cluster_id": first["cluster_id"], "created": False})
    [cluster] = alive(emr)
    tags = {t["Key"]: t["Value"] for t in cluster["Tags"]}
    assert tags["nightshift:run-dates"] == "2024-06-01..2024-06-03"
    assert (tags["nightshift:run-date"], tags["nightshift:execution-arn"]) == ("2024-06-01", batch_arn)


def test_a_batch_whose_last_date_is_before_its_first_is_refused(emr, create_payload, lambda_context, alive):
    with pytest.raises(ValueError, match="last_run_date 2024-05-31 is before run_date 2024-06-01"):
        create_cluster.handler(dict(create_payload, last_run_date="2024-05-31"), lambda_context, emr=emr)
    assert alive(emr) == []


def test_a_terminated_cluster_of_the_run_is_not_reused(emr, create_payload, lambda_context, alive):
    first = create_cluster.handler(create_payload, lambda_context, emr=emr)
    emr.terminate_job_flows(JobFlowIds=[first["cluster_id"]])

    second = create_cluster.handler(create_payload, lambda_context, emr=emr)

    assert second["created"] is True
    assert [c["Id"] for c in alive(emr)] == [second["cluster_id"]]


def test_runjobflow_failing_after_the_cluster_exists_leaves_nothing_alive(
    emr, emr_backend, create_payload, lambda_context, alive, monkeypatch
):
    # moto's RunJobFlow records the cluster and then tags it; failing the tagging reproduces
    # EMR answering 500 for a cluster that nonetheless exists.
    class InternalServerError(InvalidRequestException):
        code = "InternalServerError"

    def tagging_fails(backend, cluster_id, tags):
        raise InternalServerError("tagging failed")

    monkeypatch.setattr(type(emr_backend), "add_tags", tagging_fails)
    # The handler's own client: no SDK retries, or each retry would make another cluster.
    clients.emr_for_create.cache_clear()
    try:
        with pytest.raises(ClusterCreationError, match="RunJobFlow failed for run example-2024"):
            create_cluster.handler(create_payload, lambda_context)
    finally:
        clients.emr_for_create.cache_clear()

    assert len(emr_backend.clusters) == 1, "exactly one cluster was made"
    assert alive(emr) == []


def test_cluster_created_without_its_tags_is_terminated(
    emr, emr_backend, create_payload, lambda_context, alive, monkeypatch
):
    monkeypatch.setattr(type(emr_backend), "add_tags", lambda backend, cluster_id, tags: None)

    with pytest.raises(
        ClusterCreationError,
        match="missing tags for-use-with-amazon-emr-managed-policies, nightshift:execution-arn",
    ):
        create_cluster.handler(create_payload, lambda_context, emr=emr)

    assert len(emr_backend.clusters) == 1
    assert alive(emr) == []


def test_throttled_runjobflow_is_a_transient_error_and_creates_nothing(
    emr, create_payload, lambda_context, alive
):
    # moto never throttles, so the throttled answer comes from a Stubber on the same client.
    with Stubber(emr) as stub:
        stub.add_response("list_clusters", {"Clusters": []})
        stub.add_client_error(
            "run_job_flow", service_error_code="ThrottlingException", service_message="Rate exceeded"
        )
        with pytest.raises(TransientAwsError, match="RunJobFlow was throttled"):
            create_cluster.handler(create_payload, lambda_context, emr=emr)
        stub.assert_no_pending_responses()
    assert alive(emr) == []


def test_logs_and_metrics_carry_the_run(emr, create_payload, lambda_context, capsys, monkeypatch):
    # The Logger's handler holds the stdout of import time; point it at a buffer we can read.
    log = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", log)

    create_cluster.handler(create_payload, lambda_context, emr=emr)

    records = [json.loads(line) for line in log.getvalue().splitlines()]
    created = next(r for r in records if r["message"] == "cluster created")
    assert created["correlation_id"] == create_payload["execution_arn"]
    assert created["service"] == "nightshift"
    assert created["pipeline"] == "example"
    assert created["function_request_id"] == lambda_context.aws_request_id
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Nightshift"
    assert emf[0]["ClustersCreated"] == [1.0]


class ThrottlingException(InvalidRequestException):
    code = "ThrottlingException"


# AWS throttles every API with ThrottlingException, a common error that EMR's model does not list:
# moto warns when it serialises an error its model lacks. The SDK reads the code all the same.
@pytest.mark.filterwarnings("ignore:Exception\\(ThrottlingException\\) with code ThrottlingException")
def test_throttled_describe_after_runjobflow_keeps_the_cluster_for_the_retry(
    emr, emr_backend, create_payload, lambda_context, alive, monkeypatch
):
    original = type(emr_backend).describe_cluster

    def throttled(backend, cluster_id):
        raise ThrottlingException("Rate exceeded")

    def throttle_from_now_on(**_kwargs):
        # EMR throttling DescribeCluster, through every SDK retry, while the new cluster's tags
        # are confirmed.
        monkeypatch.setattr(type(emr_backend), "describe_cluster", throttled)

    emr.meta.events.register("after-call.emr.RunJobFlow", throttle_from_now_on)
    with pytest.raises(TransientAwsError, match="it is kept, and the retry finds it by its tags"):
        create_cluster.handler(create_payload, lambda_context, emr=emr)
    emr.meta.events.unregister("after-call.emr.RunJobFlow", throttle_from_now_on)
    monkeypatch.setattr(type(emr_backend), "describe_cluster", original)

    (cluster,) = alive(emr)
    assert cluster["Status"]["State"] == "WAITING"
    retried = create_cluster.handler(create_payload, lambda_context, emr=emr)
    assert retried == {"cluster_id": cluster["Id"], "created": False}
