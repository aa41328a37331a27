"""A Step Functions execution's history: every page of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


def execution_history(sfn: SFNClient, execution_arn: str, *, with_data: bool = True) -> list[dict[str, Any]]:
    """The execution's events, oldest first; `with_data` includes states' inputs and outputs."""
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(
        executionArn=execution_arn, includeExecutionData=with_data
    ):
        events += page["events"]  # type: ignore[arg-type]
    return events
