"""Terminate this stack's clusters whose Step Functions execution is no longer running."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambdas.shared.clusters import (
    ALIVE_STATES,
    TAG_EXECUTION_ARN,
    FoundCluster,
    find_clusters,
    of_stack,
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
    # Clusters that could not be looked at or terminated this time; the next sweep tries again.
    skipped: list[str] = field(default_factory=list)


@dataclass
class _Failures:
    messages: list[str] = field(default_factory=list)

    def add(self, result: SweepResult, cluster_id: str, what: str, exc: Exception) -> None:
        # One cluster that cannot be handled must not shield the others.
        logger.exception(f"could not {what}; skipped", cluster_id=cluster_id)
        result.skipped.append(cluster_id)
        self.messages.append(f"{cluster_id} ({what}): {exc}")

    def raise_if_any(self, result: SweepResult) -> None:
        if self.messages:
            raise SweepIncompleteError(
                f"terminated {result.terminated}, kept {result.kept}, but skipped: {'; '.join(self.messages)}"
            )


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


def _terminate_orphans(
    orphans: list[FoundCluster], result: SweepResult, failures: _Failures, *, emr: EMRClient, ssm: SSMClient
) -> None:
    for cluster in orphans:
        try:
            terminate_cluster(cluster.cluster_id, emr=emr, ssm=ssm)
        except Exception as exc:
            failures.add(result, cluster.cluster_id, "terminate orphan", exc)
            continue
        logger.warning(
            "terminated orphaned cluster",
            cluster_id=cluster.cluster_id,
            execution_arn=cluster.tags.get(TAG_EXECUTION_ARN, ""),
        )
        result.terminated.append(cluster.cluster_id)


def _alive_clusters(
    emr: EMRClient, stack: str, result: SweepResult, failures: _Failures, execution_arn: str | None = None
) -> list[FoundCluster]:
    def matches(tags: dict[str, str]) -> bool:
        return of_stack(tags, stack) and (
            execution_arn is None or tags.get(TAG_EXECUTION_ARN) == execution_arn
        )

    return list(
        find_clusters(
            emr,
            states=ALIVE_STATES,
            matches=matches,
            on_error=lambda cluster_id, exc: failures.add(result, cluster_id, "describe cluster", exc),
        )
    )


@transient_on_throttling
def sweep_execution(
    execution_arn: str, status: str, *, stack: str, emr: EMRClient, ssm: SSMClient
) -> SweepResult:
    """Sweep this stack's clusters of one execution whose status EventBridge just reported."""
    result, failures = SweepResult(), _Failures()
    clusters = _alive_clusters(emr, stack, result, failures, execution_arn)
    # The rule only sends FAILED/TIMED_OUT/ABORTED; anything still RUNNING is left alone.
    if status == RUNNING:
        result.kept += [cluster.cluster_id for cluster in clusters]
    else:
        _terminate_orphans(clusters, result, failures, emr=emr, ssm=ssm)
    failures.raise_if_any(result)
    return result


@transient_on_throttling
def sweep_all(*, stack: str, emr: EMRClient, ssm: SSMClient, sfn: SFNClient) -> SweepResult:
    """Sweep every alive cluster of this stack whose execution is not RUNNING."""
    result, failures = SweepResult(), _Failures()
    running: dict[str, bool] = {}
    orphans = []
    for cluster in _alive_clusters(emr, stack, result, failures):
        execution_arn = cluster.tags.get(TAG_EXECUTION_ARN)
        try:
            # A managed cluster without an execution tag belongs to no run at all.
            orphan = execution_arn is None or not _execution_running(sfn, execution_arn, running)
        except Exception as exc:
            failures.add(result, cluster.cluster_id, "look up its execution", exc)
            continue
        if orphan:
            orphans.append(cluster)
        else:
            result.kept.append(cluster.cluster_id)
    _terminate_orphans(orphans, result, failures, emr=emr, ssm=ssm)
    failures.raise_if_any(result)
    return result
