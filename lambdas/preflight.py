"""Lambda: refuse a run while its date runs; make it wait while as many runs as the pipeline allows run."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.models import PreflightRequest
from lambdas.shared.observability import logger, metrics, tracer
from lambdas.shared.preflight import preflight
from lambdas.shared.stack import stack_name

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_stepfunctions import SFNClient


@logger.inject_lambda_context(correlation_id_path="execution_arn", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    emr: EMRClient | None = None,
    sfn: SFNClient | None = None,
) -> dict[str, Any]:
    """A PreflightRequest payload -> ``{proceed, reason, wait}``."""
    request = parse(event=event, model=PreflightRequest)
    result = preflight(request, stack=stack_name(), emr=emr or clients.emr(), sfn=sfn or clients.sfn())
    if result.wait:
        logger.info("waiting for a free slot", reason=result.reason)
    elif not result.proceed:
        metrics.add_metric(name="RunsRefused", unit=MetricUnit.Count, value=1)
        logger.warning("run refused", reason=result.reason)
    return asdict(result)
