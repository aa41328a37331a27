"""Terminate every Nightshift cluster whose Step Functions execution is no longer running."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambdas.shared.clusters import (
    ALIVE_STATES,
    TAG_EXECUTION_ARN,
    TAG_MANAGED,
    FoundCluster,
    find_clusters,
)
from lambdas.shared.errors import SweepIncompleteError, error_code, transient_on_throttling
from lambdas.shared.observability import logger
from lambdas.shared.termination import terminate_cluster

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_stepfunctions import SFNClient

RUNNING = "RUNNING"


@dataclass
class SweepResult:
    terminated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _execution_running(sfn: SFNClient, execution_arn: str, cache: dict[str, bool]) -> bool:
    if execution_arn not in cache:
        try:
            status: str = sfn.describe_execution(executionArn=execution_arn)["status"]
        except ClientError as exc:
            # Executions are deleted 90 days after they close, and a mangled tag is no ARN:
            # neither belongs to a running execution.
            if error_code(exc) not in {"ExecutionDoesNotExist", "InvalidArn"}:
                raise
            status = "DOES_NOT_EXIST"
        cache[execution_arn] = status == RUNNING
    return cache[execution_arn]


def _sweep(
    clusters: list[FoundCluster],
    is_orphan: dict[str, bool],
    *,
    emr: EMRClient,
    ssm: SSMClient,
) -> SweepResult:
    result = SweepResult()
    failures: list[str] = []
    for cluster in clusters:
        if not is_orphan[cluster.cluster_id]:
            result.kept.append(cluster.cluster_id)
            continue
        try:
            terminate_cluster(cluster.cluster_id, emr=emr, ssm=ssm)
        except Exception as exc:
            # One cluster that cannot be terminated must not shield the others.
            logger.exception("could not terminate orphan", cluster_id=cluster.cluster_id)
            failures.append(f"{cluster.cluster_id}: {exc}")
            continue
        logger.warning(
            "terminated orphaned cluster",
            cluster_id=cluster.cluster_id,
            execution_arn=cluster.tags.get(TAG_EXECUTION_ARN, ""),
        )
        result.terminated.append(cluster.cluster_id)
    if failures:
        raise SweepIncompleteError(
            f"terminated {result.terminated}, but could not terminate: {'; '.join(failures)}"
        )
    return result


def _managed(tags: dict[str, str]) -> bool:
    return tags.get(TAG_MANAGED) == "true"


@transient_on_throttling
def sweep_execution(execution_arn: str, status: str, *, emr: EMRClient, ssm: SSMClient) -> SweepResult:
    """Sweep the clusters of one execution whose status EventBridge just reported."""
    clusters = list(
        find_clusters(
            emr,
            states=ALIVE_STATES,
            matches=lambda tags: _managed(tags) and tags.get(TAG_EXECUTION_ARN) == execution_arn,
        )
    )
    # The rule only sends FAILED/TIMED_OUT/ABORTED; anything still RUNNING is left alone.
    orphan = status != RUNNING
    return _sweep(clusters, {c.cluster_id: orphan for c in clusters}, emr=emr, ssm=ssm)


@transient_on_throttling
def sweep_all(*, emr: EMRClient, ssm: SSMClient, sfn: SFNClient) -> SweepResult:
    """Sweep every alive Nightshift cluster whose execution is not RUNNING."""
    clusters = list(find_clusters(emr, states=ALIVE_STATES, matches=_managed))
    running: dict[str, bool] = {}
    is_orphan = {}
    for cluster in clusters:
        execution_arn = cluster.tags.get(TAG_EXECUTION_ARN)
        # A managed cluster without an execution tag belongs to no run at all.
        is_orphan[cluster.cluster_id] = execution_arn is None or not _execution_running(
            sfn, execution_arn, running
        )
    return _sweep(clusters, is_orphan, emr=emr, ssm=ssm)
