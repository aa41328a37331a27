"""Terminate a cluster idempotently: gone, going or never made all count as success."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lambdas.shared.clusters import (
    ALIVE_STATES,
    GONE_STATES,
    TAG_EXECUTION_ARN,
    TAG_MANAGED,
    describe,
    find_clusters,
    of_stack,
    tags_of,
)
from lambdas.shared.errors import ClusterTerminationError, transient_on_throttling
from lambdas.shared.hostkeys import delete_host_keys
from lambdas.shared.observability import logger
from lambdas.shared.status import NOT_FOUND

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_ssm import SSMClient

NO_CLUSTER = "no cluster"


@dataclass(frozen=True)
class TerminationResult:
    cluster_id: str | None
    state: str
    terminated: bool
    reason: str
    # True only when this call asked EMR to terminate (feeds the ClustersTerminated metric).
    requested_now: bool = False


@transient_on_throttling
def terminate_cluster(cluster_id: str, *, emr: EMRClient, ssm: SSMClient) -> TerminationResult:
    """Terminate the cluster; already terminating, terminated or unknown is success too."""
    cluster = describe(emr, cluster_id)
    if cluster is None:
        delete_host_keys(ssm, cluster_id)
        return TerminationResult(cluster_id, NOT_FOUND, True, "already gone: EMR does not know it")
    state = cluster["Status"].get("State", "")
    if state in GONE_STATES:
        delete_host_keys(ssm, cluster_id)
        return TerminationResult(cluster_id, state, True, f"already {state}")

    if cluster.get("TerminationProtected"):
        if tags_of(cluster).get(TAG_MANAGED) != "true":
            raise ClusterTerminationError(
                f"cluster {cluster_id} is termination protected and not managed by Nightshift "
                "(no nightshift:managed=true tag); refusing to lift someone else's protection"
            )
        # Nightshift creates clusters unprotected; a protected one was changed after the fact
        # and protection must not keep a nightly cluster alive for the weekend.
        logger.warning("lifting termination protection", cluster_id=cluster_id)
        emr.set_termination_protection(JobFlowIds=[cluster_id], TerminationProtected=False)

    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    delete_host_keys(ssm, cluster_id)
    after = describe(emr, cluster_id)
    new_state = after["Status"].get("State", "TERMINATING") if after is not None else "TERMINATING"
    logger.info("cluster terminated", cluster_id=cluster_id, previous_state=state)
    return TerminationResult(cluster_id, new_state, True, "", requested_now=True)


@transient_on_throttling
def terminate_execution_clusters(
    execution_arn: str | None, *, stack: str, emr: EMRClient, ssm: SSMClient
) -> list[TerminationResult]:
    """Terminate this stack's alive clusters tagged with this execution (the "no cluster id yet" path)."""
    if execution_arn is None:
        return []
    found = find_clusters(
        emr,
        states=ALIVE_STATES,
        matches=lambda tags: of_stack(tags, stack) and tags.get(TAG_EXECUTION_ARN) == execution_arn,
    )
    return [terminate_cluster(cluster.cluster_id, emr=emr, ssm=ssm) for cluster in found]
