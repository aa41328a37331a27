"""Lambda: at [schedule] expected_by, one alert if the date's run has not succeeded, saying where it is."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.late_runs import check_late
from lambdas.shared.observability import logger, tracer
from lambdas.shared.schedule_models import LateCheckRequest
from lambdas.shared.stack import alert_topic_arn

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_stepfunctions import SFNClient


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    sfn: SFNClient | None = None,
    sns: Any = None,
) -> dict[str, Any]:
    """LateCheckRequest (from Scheduler at expected_by) -> ``{run_date, late, reason?, subject?}``."""
    request = parse(event=event, model=LateCheckRequest)
    logger.append_keys(pipeline=request.pipeline)
    return check_late(
        request, topic_arn=alert_topic_arn(), sfn=sfn or clients.sfn(), sns=sns or clients.sns()
    )
