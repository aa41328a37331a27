"""Lambda: tell whether the run's declared inputs are in S3, and name the missing ones."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.inputs import check_inputs
from lambdas.shared.models import CheckInputsRequest
from lambdas.shared.observability import logger, metrics, tracer

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_s3 import S3Client


@logger.inject_lambda_context(correlation_id_path="execution_arn", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext, *, s3: S3Client | None = None) -> dict[str, Any]:
    """``{pipeline, run_date, inputs: [{kind, path}]}`` -> ``{ready, missing, summary}``."""
    request = parse(event=event, model=CheckInputsRequest)
    result = check_inputs(request, s3=s3 or clients.s3())
    if not result.ready:
        logger.info("inputs missing", pipeline=request.pipeline, missing=result.missing)
    return asdict(result)
