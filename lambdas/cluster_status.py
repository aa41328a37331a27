"""Lambda: report a cluster's state, readiness, master host and the reason it failed."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.models import ClusterStatusRequest
from lambdas.shared.observability import logger, metrics, tracer
from lambdas.shared.status import cluster_status

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_emr import EMRClient


@logger.inject_lambda_context(correlation_id_path="execution_arn", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext, *, emr: EMRClient | None = None) -> dict[str, Any]:
    """``{cluster_id}`` -> ``{cluster_id, state, ready, failed, master_host, reason}``."""
    request = parse(event=event, model=ClusterStatusRequest)
    status = cluster_status(request.cluster_id, emr=emr or clients.emr(), execution_arn=request.execution_arn)
    if status.failed:
        logger.warning("cluster failed", cluster_id=status.cluster_id, reason=status.reason)
    return asdict(status)
