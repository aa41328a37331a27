"""Create a run's cluster exactly once, and never leave a half-made one behind."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.cluster_spec import cluster_name, cluster_tags, run_job_flow_request
from lambdas.shared.clusters import (
    NOT_TERMINATED_STATES,
    TAG_LAUNCH_ATTEMPT,
    TAG_PIPELINE,
    TAG_RUN_ID,
    TAG_STACK,
    describe,
    find_clusters,
    tags_of,
)
from lambdas.shared.errors import (
    ClusterCreationError,
    TransientAwsError,
    error_code,
    is_throttling,
    is_transient,
    transient_on_throttling,
)
from lambdas.shared.models import CreateClusterRequest
from lambdas.shared.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient

# EMR's clock and ours may disagree; look this far back for a cluster a failed call made.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class CreateClusterResult:
    cluster_id: str
    created: bool


def find_run_cluster(request: CreateClusterRequest, *, stack: str, emr: EMRClient) -> str | None:
    """The cluster this launch attempt of the run already created, in any state but terminated."""
    name = cluster_name(request.pipeline, request.run_date.isoformat())
    for cluster in find_clusters(
        emr,
        states=NOT_TERMINATED_STATES,
        name=name,
        matches=lambda tags: (
            tags.get(TAG_PIPELINE) == request.pipeline
            and tags.get(TAG_RUN_ID) == request.run_id
            and tags.get(TAG_STACK) == stack
            and tags.get(TAG_LAUNCH_ATTEMPT) == str(request.attempt)
        ),
    ):
        return cluster.cluster_id
    return None


@transient_on_throttling
def create_cluster(
    request: CreateClusterRequest,
    *,
    stack: str,
    emr: EMRClient,
    emr_without_retries: EMRClient | None = None,
) -> CreateClusterResult:
    """Find the run's cluster or create it; on a failure after creation, terminate it and raise.

    Only RunJobFlow goes through ``emr_without_retries`` (an SDK retry of it could make a second
    cluster); every other call may be retried, and a transient failure once the cluster exists
    keeps the cluster and raises TransientAwsError: the state machine's retry finds it by its tags.
    """
    existing = find_run_cluster(request, stack=stack, emr=emr)
    if existing is not None:
        logger.info("cluster of this run already exists", cluster_id=existing)
        return CreateClusterResult(cluster_id=existing, created=False)

    started = datetime.now(UTC)
    try:
        cluster_id = (emr_without_retries or emr).run_job_flow(**run_job_flow_request(request, stack=stack))[
            "JobFlowId"
        ]
    except (ClientError, BotoCoreError) as exc:
        if is_throttling(exc):
            # A throttled request was refused before EMR did anything: safe to retry as is.
            raise
        # A failed or timed-out RunJobFlow may still have made a cluster (EMR can fail after the
        # cluster record exists, and a read timeout hides a success), so look for one.
        _terminate_leftovers(request, stack=stack, emr=emr, since=started - CLOCK_SKEW)
        raise ClusterCreationError(f"RunJobFlow failed for run {request.run_id}: {exc}") from exc

    try:
        _confirm_tags(request, stack, cluster_id, emr=emr)
    except (ClientError, BotoCoreError) as exc:
        if not is_transient(exc):
            _terminate_quietly(cluster_id, emr=emr)
            raise ClusterCreationError(
                f"cluster {cluster_id} was created but could not be confirmed, so it was terminated: {exc}"
            ) from exc
        # RunJobFlow put the tags on with the cluster; only looking at them failed.
        code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        logger.warning("kept the new cluster: confirming its tags failed transiently", cluster_id=cluster_id)
        raise TransientAwsError(
            f"cluster {cluster_id} was created, but confirming its tags failed ({code}); "
            "it is kept, and the retry finds it by its tags"
        ) from exc
    except Exception as exc:
        _terminate_quietly(cluster_id, emr=emr)
        raise ClusterCreationError(
            f"cluster {cluster_id} was created but could not be confirmed, so it was terminated: {exc}"
        ) from exc
    logger.info("cluster created", cluster_id=cluster_id)
    return CreateClusterResult(cluster_id=cluster_id, created=True)


def _confirm_tags(request: CreateClusterRequest, stack: str, cluster_id: str, *, emr: EMRClient) -> None:
    # Idempotency, preflight and the sweeper all find a cluster by its tags: an untagged
    # cluster would be invisible to every safety net but the idle timeout.
    cluster = describe(emr, cluster_id)
    if cluster is None:
        raise ClusterCreationError(f"EMR does not know cluster {cluster_id} it just created")
    tags = tags_of(cluster)
    missing = sorted(key for key, value in cluster_tags(request, stack).items() if tags.get(key) != value)
    if missing:
        raise ClusterCreationError(f"cluster {cluster_id} is missing tags {', '.join(missing)}")


def _terminate_leftovers(
    request: CreateClusterRequest, *, stack: str, emr: EMRClient, since: datetime
) -> None:
    name = cluster_name(request.pipeline, request.run_date.isoformat())

    def made_by_this_call(tags: dict[str, str]) -> bool:
        # Untagged clusters of this name are what a failure mid-RunJobFlow leaves.
        if TAG_RUN_ID not in tags:
            return True
        return (
            tags[TAG_RUN_ID] == request.run_id
            and tags.get(TAG_STACK) == stack
            and tags.get(TAG_LAUNCH_ATTEMPT) == str(request.attempt)
        )

    try:
        leftovers = list(
            find_clusters(
                emr, states=NOT_TERMINATED_STATES, name=name, created_after=since, matches=made_by_this_call
            )
        )
    except (ClientError, BotoCoreError):
        logger.exception("could not look for clusters left by a failed RunJobFlow")
        return
    for cluster in leftovers:
        _terminate_quietly(cluster.cluster_id, emr=emr)


def _terminate_quietly(cluster_id: str, *, emr: EMRClient) -> None:
    try:
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
        logger.warning("terminated a cluster left by a failed create", cluster_id=cluster_id)
    except (ClientError, BotoCoreError):
        # The sweeper (by tag) and the idle timeout are what is left to catch it.
        logger.exception("could not terminate a cluster left by a failed create", cluster_id=cluster_id)
