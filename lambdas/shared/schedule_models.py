"""Payload models of the scheduled Lambdas (StartRun, LateCheck) and of the alert formatter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lambdas.shared.models import Payload, PipelineName, StateMachineArn


class StartRunRequest(Payload):
    """What a pipeline's schedule sends (infra/schedules.py): Scheduler's time is UTC."""

    pipeline: PipelineName
    state_machine_arn: StateMachineArn
    timezone: str
    scheduled_time: str


class LateCheckRequest(StartRunRequest):
    """What a pipeline's `[schedule] expected_by` check sends (infra/alerts.py)."""

    expected_by: str


class ExecutionStatusChange(BaseModel):
    """The `detail` of EventBridge's Step Functions Execution Status Change (its other fields ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str = Field(alias="stateMachineArn")
    name: str
    status: str
    error: str | None = None
    cause: str | None = None


class AlertRequest(BaseModel):
    """An execution status change event; only its `detail` matters."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    detail: ExecutionStatusChange
