"""At [schedule] expected_by, one alert if the date's run has not succeeded, saying where it is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from lambdas.shared.executions import execution_history
from lambdas.shared.run_states import (
    CLUSTER_STATES,
    CREATE_CLUSTER_STATE,
    INPUT_STATES,
    StateKind,
    parse_state,
)
from lambdas.shared.scheduling import execution_name, run_date_of

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

    from lambdas.shared.schedule_models import LateCheckRequest

SUBJECT_LIMIT = 100
# The input gate's error (owner "inputs").
INPUTS_LATE = "InputsLate"


@dataclass(frozen=True)
class Lateness:
    """Why the date's run is not done: the short reason (subject) and the sentence (body)."""

    reason: str
    detail: str


def runs_of_date(
    sfn: SFNClient, state_machine_arn: str, pipeline: str, run_date: str
) -> list[dict[str, Any]]:
    """The date's executions, its first run and its reruns (`-r2`, ...), newest first."""
    name = execution_name(pipeline, run_date)
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for execution in page["executions"]:
            if execution["name"] == name or re.fullmatch(re.escape(name) + r"-r\d+", execution["name"]):
                found.append(dict(execution))
    return sorted(found, key=lambda e: e["startDate"], reverse=True)


def _clock(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%H:%M")


def where_it_is(events: list[dict[str, Any]], zone: ZoneInfo) -> str:
    """Which part of the run a running execution is in, and since when (pipeline time)."""
    entered = [e for e in events if e["type"].endswith("StateEntered")]
    if not entered:
        return "starting"
    last = entered[-1]["stateEnteredEventDetails"]["name"]
    first_of: dict[str, datetime] = {}
    for event in entered:
        first_of.setdefault(event["stateEnteredEventDetails"]["name"], event["timestamp"])
    stages = [
        (named.stage, e["timestamp"])
        for e in entered
        if (named := parse_state(e["stateEnteredEventDetails"]["name"])).kind is StateKind.STAGE
    ]
    if last in INPUT_STATES:
        since = min(first_of[name] for name in INPUT_STATES if name in first_of)
        return f"waiting for its inputs since {_clock(since, zone)}"
    if last in CLUSTER_STATES:
        since = first_of.get(CREATE_CLUSTER_STATE, entered[-1]["timestamp"])
        return f"waiting for its cluster since {_clock(since, zone)}"
    if stages:
        number, since = stages[-1]
        return f"in stage {number} since {_clock(since, zone)}"
    return f"in state {last} since {_clock(entered[-1]['timestamp'], zone)}"


def lateness(sfn: SFNClient, runs: list[dict[str, Any]], zone: ZoneInfo) -> Lateness | None:
    """None when one of the date's runs succeeded; else what the newest run says."""
    if any(run["status"] == "SUCCEEDED" for run in runs):
        return None
    if not runs:
        return Lateness("not started", "No run of this date has started.")
    run = runs[0]
    started = _clock(run["startDate"], zone)
    if run["status"] == "RUNNING":
        where = where_it_is(execution_history(sfn, run["executionArn"], with_data=False), zone)
        return Lateness("still running", f"Run {run['name']} (started {started}) is still running: {where}.")
    described = sfn.describe_execution(executionArn=run["executionArn"])
    error, cause = described.get("error", ""), described.get("cause", "")
    if error == INPUTS_LATE:
        return Lateness("inputs late", f"Run {run['name']} (started {started}) gave up waiting: {cause}")
    status = run["status"].lower().replace("_", " ")
    what = f"{error}: {cause}" if error else "see the failure alert"
    return Lateness(status, f"Run {run['name']} (started {started}) {status} ({what[:500]}).")


def render(pipeline: str, run_date: str, expected_by: str, timezone: str, late: Lateness) -> tuple[str, str]:
    subject = f"Nightshift: {pipeline} {run_date} not done by {expected_by}: {late.reason}"[:SUBJECT_LIMIT]
    body = "\n".join(
        [
            f"Nightshift pipeline {pipeline}: the run of {run_date} had not succeeded by {expected_by} "
            f"({timezone}).",
            "",
            late.detail,
        ]
    )
    return subject, body


def check_late(request: LateCheckRequest, *, topic_arn: str, sfn: SFNClient, sns: Any) -> dict[str, Any]:
    """At most one SNS message for the scheduled date's run; returns what it found."""
    timezone = request.timezone
    run_date = run_date_of(request.scheduled_time, timezone)
    runs = runs_of_date(sfn, request.state_machine_arn, request.pipeline, run_date)
    late = lateness(sfn, runs, ZoneInfo(timezone))
    if late is None:
        return {"run_date": run_date, "late": False}
    subject, body = render(request.pipeline, run_date, request.expected_by, timezone, late)
    sns.publish(TopicArn=topic_arn, Subject=subject, Message=body)
    return {"run_date": run_date, "late": True, "reason": late.reason, "subject": subject}
