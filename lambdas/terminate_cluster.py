"""Lambda: terminate the run's cluster; idempotent, and safe before any cluster exists.

The state machine calls this on every path, also when CreateCluster failed before returning an
id: it then passes ``"cluster_id": null`` (or leaves the key out) together with
``"execution_arn"``, and any cluster tagged with that execution is terminated; with none found the
answer is ``{"terminated": false, "reason": "no cluster"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.models import TerminateClusterRequest
from lambdas.shared.observability import logger, metrics, tracer
from lambdas.shared.stack import stack_name
from lambdas.shared.termination import (
    NO_CLUSTER,
    TerminationResult,
    terminate_cluster,
    terminate_execution_clusters,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_ssm import SSMClient


def _as_output(result: TerminationResult) -> dict[str, Any]:
    return {
        "cluster_id": result.cluster_id,
        "state": result.state,
        "terminated": result.terminated,
        "reason": result.reason,
    }


@logger.inject_lambda_context(correlation_id_path="execution_arn", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    emr: EMRClient | None = None,
    ssm: SSMClient | None = None,
) -> dict[str, Any]:
    """``{cluster_id | null, execution_arn?}`` -> ``{cluster_id, state, terminated, reason}``."""
    request = parse(event=event, model=TerminateClusterRequest)
    emr, ssm = emr or clients.emr(), ssm or clients.ssm()
    if request.cluster_id is not None:
        results = [terminate_cluster(request.cluster_id, emr=emr, ssm=ssm)]
    else:
        results = terminate_execution_clusters(request.execution_arn, stack=stack_name(), emr=emr, ssm=ssm)
    requested = sum(result.requested_now for result in results)
    if requested:
        metrics.add_metric(name="ClustersTerminated", unit=MetricUnit.Count, value=requested)
    if not results:
        return _as_output(TerminationResult(None, "", terminated=False, reason=NO_CLUSTER))
    if request.cluster_id is None:
        logger.warning(
            "no cluster id given, terminated the execution's clusters by tag",
            cluster_ids=[result.cluster_id for result in results],
        )
    return _as_output(results[0])
