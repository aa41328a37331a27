"""Start a pipeline's run for the local date of its scheduled time, at most once per date."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from lambdas.shared.schedule_models import StartRunRequest


def run_date_of(scheduled_time: str, timezone: str) -> str:
    """The date in the pipeline's time zone of Scheduler's UTC scheduled time (ISO 8601)."""
    moment = datetime.fromisoformat(scheduled_time)
    if moment.tzinfo is None:
        raise ValueError(f"scheduled_time {scheduled_time!r} has no UTC offset")
    return moment.astimezone(ZoneInfo(timezone)).date().isoformat()


def execution_name(pipeline: str, run_date: str) -> str:
    return f"{pipeline}-{run_date}"


def start_run(*, pipeline: str, state_machine_arn: str, run_date: str, sfn: SFNClient) -> dict[str, Any]:
    """Start execution `<pipeline>-<run_date>`; a name already used means the date already ran."""
    name = execution_name(pipeline, run_date)
    try:
        answer = sfn.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps({"run_date": run_date})
        )
    except ClientError as exc:
        # Step Functions keeps execution names for 90 days: this is the "at most once" guarantee.
        if exc.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
        return {"started": False, "execution_name": name, "run_date": run_date, "reason": "already ran"}
    return {
        "started": True,
        "execution_name": name,
        "run_date": run_date,
        "execution_arn": answer["executionArn"],
    }


def start_scheduled_run(request: StartRunRequest, *, sfn: SFNClient) -> dict[str, Any]:
    """The run of the date Scheduler's time falls on in the pipeline's time zone, unless it ran."""
    return start_run(
        pipeline=request.pipeline,
        state_machine_arn=request.state_machine_arn,
        run_date=run_date_of(request.scheduled_time, request.timezone),
        sfn=sfn,
    )
