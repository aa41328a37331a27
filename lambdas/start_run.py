"""Lambda: start a pipeline's run for the local date of its scheduled time, at most once per date."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.observability import logger, tracer
from lambdas.shared.schedule_models import StartRunRequest
from lambdas.shared.scheduling import start_scheduled_run

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_stepfunctions import SFNClient


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext, *, sfn: SFNClient | None = None) -> dict[str, Any]:
    """StartRunRequest (from Scheduler) -> ``{started, execution_name, run_date, ...}``."""
    request = parse(event=event, model=StartRunRequest)
    logger.append_keys(pipeline=request.pipeline)
    return start_scheduled_run(request, sfn=sfn or clients.sfn())
