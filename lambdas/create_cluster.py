"""Lambda: create the run's EMR cluster, or return the one this run already created."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.creation import create_cluster
from lambdas.shared.models import CreateClusterRequest
from lambdas.shared.observability import logger, metrics, tracer
from lambdas.shared.stack import stack_name

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_emr import EMRClient


@logger.inject_lambda_context(correlation_id_path="execution_arn", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext, *, emr: EMRClient | None = None) -> dict[str, Any]:
    """CreateClusterRequest -> ``{cluster_id, created}`` (created false: found the run's cluster)."""
    request = parse(event=event, model=CreateClusterRequest)
    logger.append_keys(pipeline=request.pipeline, run_id=request.run_id, attempt=request.attempt)
    result = create_cluster(
        request,
        stack=stack_name(),
        emr=emr or clients.emr(),
        emr_without_retries=emr or clients.emr_for_create(),
    )
    if result.created:
        metrics.add_metric(name="ClustersCreated", unit=MetricUnit.Count, value=1)
    return asdict(result)
