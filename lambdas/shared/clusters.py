"""Cluster tags, states and the EMR look-ups every handler shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambdas.shared.errors import error_code

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_emr.literals import ClusterStateType
    from mypy_boto3_emr.type_defs import ClusterTypeDef

TAG_PIPELINE = "nightshift:pipeline"
TAG_RUN_ID = "nightshift:run-id"
TAG_RUN_DATE = "nightshift:run-date"
# A batch's cluster (shared-cluster backfill) holds every date of "<first>..<last>" (ISO dates).
TAG_RUN_DATES = "nightshift:run-dates"
TAG_EXECUTION_ARN = "nightshift:execution-arn"
TAG_MANAGED = "nightshift:managed"
# The CloudFormation stack whose Lambdas made the cluster: preflight, sweeper and IAM act on no other.
TAG_STACK = "nightshift:stack"
TAG_LAUNCH_ATTEMPT = "nightshift:launch-attempt"
# AmazonEMRServicePolicy_v2 lets EMR launch instances only for a cluster created with this user tag
# (EMR propagates it to the launch templates, instances and volumes it makes).
TAG_EMR_MANAGED_POLICIES = "for-use-with-amazon-emr-managed-policies"

ALIVE_STATES: tuple[ClusterStateType, ...] = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
NOT_TERMINATED_STATES: tuple[ClusterStateType, ...] = (*ALIVE_STATES, "TERMINATING")
READY_STATES = frozenset({"RUNNING", "WAITING"})
GONE_STATES = frozenset({"TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"})


@dataclass(frozen=True)
class FoundCluster:
    """A cluster as DescribeCluster reports it, with its tags as a dict."""

    cluster_id: str
    name: str
    state: str
    tags: dict[str, str]

    @property
    def managed(self) -> bool:
        return self.tags.get(TAG_MANAGED) == "true"


def of_stack(tags: dict[str, str], stack: str) -> bool:
    """Made by this stack's lifecycle Lambdas (another stack's clusters are never touched)."""
    return tags.get(TAG_MANAGED) == "true" and tags.get(TAG_STACK) == stack


def tags_of(cluster: ClusterTypeDef) -> dict[str, str]:
    return {tag.get("Key", ""): tag.get("Value", "") for tag in cluster.get("Tags", [])}


def describe(emr: EMRClient, cluster_id: str) -> ClusterTypeDef | None:
    """DescribeCluster, or None when EMR does not know the id (never created, or long gone)."""
    try:
        return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    except ClientError as exc:
        # EMR answers an unknown id with InvalidRequestException "Cluster id 'j-…' is not valid."
        if error_code(exc) == "InvalidRequestException":
            return None
        raise


def find_clusters(
    emr: EMRClient,
    *,
    states: tuple[ClusterStateType, ...],
    matches: Callable[[dict[str, str]], bool],
    name: str | None = None,
    created_after: datetime | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
) -> Iterator[FoundCluster]:
    """Clusters in ``states`` whose tags satisfy ``matches`` (ListClusters has no tag filter).

    With ``on_error``, a cluster that cannot be described is handed to it and skipped, instead of
    ending the listing.
    """
    paginator = emr.get_paginator("list_clusters")
    pages = (
        paginator.paginate(ClusterStates=list(states), CreatedAfter=created_after)
        if created_after is not None
        else paginator.paginate(ClusterStates=list(states))
    )
    for page in pages:
        for summary in page.get("Clusters", []):
            if name is not None and summary.get("Name") != name:
                continue
            try:
                cluster = describe(emr, summary["Id"])
            except Exception as exc:
                if on_error is None:
                    raise
                on_error(summary["Id"], exc)
                continue
            if cluster is None:
                continue
            tags = tags_of(cluster)
            if matches(tags):
                yield FoundCluster(
                    cluster_id=cluster["Id"],
                    name=cluster.get("Name", ""),
                    state=cluster["Status"]["State"],
                    tags=tags,
                )
