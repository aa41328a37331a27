"""Lambda: terminate Nightshift clusters whose Step Functions execution is no longer running."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.models import ExecutionStatusChange, SweepRequest
from lambdas.shared.observability import logger, metrics, tracer
from lambdas.shared.stack import stack_name
from lambdas.shared.sweeping import sweep_all, sweep_execution

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_stepfunctions import SFNClient


@logger.inject_lambda_context(correlation_id_path="detail.executionArn", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    emr: EMRClient | None = None,
    ssm: SSMClient | None = None,
    sfn: SFNClient | None = None,
) -> dict[str, Any]:
    """Execution status change, scheduled event or ``{}`` -> ``{terminated, kept, skipped}``."""
    sweep = parse(event=event, model=SweepRequest).root
    stack = stack_name()
    emr, ssm = emr or clients.emr(), ssm or clients.ssm()
    if isinstance(sweep, ExecutionStatusChange):
        result = sweep_execution(
            sweep.detail.execution_arn, sweep.detail.status, stack=stack, emr=emr, ssm=ssm
        )
    else:
        result = sweep_all(stack=stack, emr=emr, ssm=ssm, sfn=sfn or clients.sfn())
    metrics.add_metric(name="OrphansSwept", unit=MetricUnit.Count, value=len(result.terminated))
    logger.info("sweep done", terminated=result.terminated, kept=result.kept)
    return asdict(result)
