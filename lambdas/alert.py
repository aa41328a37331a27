"""Lambda: a failed, timed-out or aborted run (or, with notify = "always", a success) as a readable e-mail."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.alerting import send_alert
from lambdas.shared.observability import logger, tracer
from lambdas.shared.schedule_models import AlertRequest
from lambdas.shared.stack import alert_topic_arn, alerted_pipelines

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_stepfunctions import SFNClient


@logger.inject_lambda_context(correlation_id_path="detail.executionArn", clear_state=True)
@tracer.capture_lambda_handler
def handler(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    sfn: SFNClient | None = None,
    sns: Any = None,
    logs: Any = None,
) -> dict[str, Any]:
    """EventBridge execution status change -> one SNS message; returns ``{subject}``."""
    request = parse(event=event, model=AlertRequest)
    subject = send_alert(
        request.detail.model_dump(by_alias=True, exclude_none=True),
        pipelines=alerted_pipelines(),
        topic_arn=alert_topic_arn(),
        sfn=sfn or clients.sfn(),
        sns=sns or clients.sns(),
        logs=logs or clients.logs(),
    )
    return {"subject": subject}
