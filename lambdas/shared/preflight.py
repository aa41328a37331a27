"""Refuse a run while another run of the same pipeline, or its cluster, is still alive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lambdas.shared.clusters import ALIVE_STATES, TAG_PIPELINE, find_clusters, of_stack
from lambdas.shared.errors import transient_on_throttling
from lambdas.shared.models import PreflightRequest

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_stepfunctions import SFNClient


@dataclass(frozen=True)
class PreflightResult:
    proceed: bool
    reason: str


@transient_on_throttling
def preflight(request: PreflightRequest, *, stack: str, emr: EMRClient, sfn: SFNClient) -> PreflightResult:
    """Proceed only when no other execution is RUNNING and no cluster of the pipeline is alive.

    Only this stack's clusters count: a dev and a prod stack in one account may run a pipeline
    of the same name side by side.
    """
    paginator = sfn.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=request.state_machine_arn, statusFilter="RUNNING"):
        for execution in page["executions"]:
            if execution["executionArn"] != request.execution_arn:
                return PreflightResult(
                    proceed=False,
                    reason=(
                        f"another run of pipeline {request.pipeline!r} is still running: "
                        f"{execution['executionArn']}"
                    ),
                )
    for cluster in find_clusters(
        emr,
        states=ALIVE_STATES,
        matches=lambda tags: of_stack(tags, stack) and tags.get(TAG_PIPELINE) == request.pipeline,
    ):
        return PreflightResult(
            proceed=False,
            reason=(
                f"cluster {cluster.cluster_id} of pipeline {request.pipeline!r} is still alive "
                f"({cluster.state}); terminate it or wait for the sweeper"
            ),
        )
    return PreflightResult(proceed=True, reason="")
