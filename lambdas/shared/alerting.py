"""A failed, timed-out or aborted run (or, with notify = "always", a success) as a readable e-mail."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.check_results import is_failed, log_stream, read_checks
from lambdas.shared.executions import execution_history
from lambdas.shared.run_states import RECORD_KEY, RECORD_RUN_STATE, StateKind, StepStatus, parse_state

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient

FAILURE_EVENTS = frozenset(
    {
        "TaskFailed",
        "TaskTimedOut",
        "TaskStartFailed",
        "TaskSubmitFailed",
        "LambdaFunctionFailed",
        "LambdaFunctionTimedOut",
        "LambdaFunctionStartFailed",
        "ExecutionFailed",
        "ExecutionTimedOut",
        "ExecutionAborted",
    }
)
CAUSE_LIMIT = 1500
SUBJECT_LIMIT = 100  # SNS refuses longer e-mail subjects
# What the alert shows of the failed checks: SNS takes 256 KiB per message, a person reads a screen.
CHECKS_SHOWN = 10
SAMPLE_ROWS_SHOWN = 10
SAMPLE_ROW_CHARS = 300


@dataclass(frozen=True)
class Failure:
    state: str
    error: str
    cause: str
    ecs_task_arn: str | None


def _details(event: dict[str, Any]) -> dict[str, Any]:
    return next((value for key, value in event.items() if key.endswith("EventDetails")), {})


def find_failure(events: Iterable[dict[str, Any]]) -> Failure | None:
    """The failure that failed the run (what went wrong, not what the clean-up did after).

    A state that failed and was retried (a throttled Lambda, a step's first attempt) is not it:
    the run's own error (its ExecutionFailed event) names the failure that counted, the last one
    with that error before the run ended. An error no state raised (a Fail state's, such as
    InputsLate) is the execution's own event; without an execution error, the first failure.
    """
    by_id: dict[int, dict[str, Any]] = {}
    failures: list[tuple[str, Failure]] = []
    for event in events:
        by_id[event["id"]] = event
        if event["type"] not in FAILURE_EVENTS:
            continue
        details = _details(event)
        state, task_arn = "", None
        previous = event.get("previousEventId")
        while previous in by_id:
            earlier = by_id[previous]
            if earlier["type"] == "TaskSubmitted" and task_arn is None:
                output = json.loads(_details(earlier).get("output") or "{}")
                tasks = output.get("Tasks") or output.get("tasks") or [{}]
                task_arn = tasks[0].get("TaskArn") or tasks[0].get("taskArn")
            if earlier["type"].endswith("StateEntered"):
                state = _details(earlier).get("name", "")
                break
            previous = earlier.get("previousEventId")
        failures.append(
            (event["type"], Failure(state, details.get("error", ""), details.get("cause", ""), task_arn))
        )
    if not failures:
        return None
    ending = next((failure for kind, failure in failures if kind.startswith("Execution")), None)
    if ending is None or not ending.error:
        return failures[0][1]
    matching = [
        failure
        for kind, failure in failures
        if not kind.startswith("Execution") and failure.error == ending.error
    ]
    return matching[-1] if matching else ending


def is_checks_failure(failure: Failure | None) -> bool:
    """The run failed in a stage's data checks task (a failing `error` check, or its engine)."""
    return bool(failure and failure.ecs_task_arn and parse_state(failure.state).kind is StateKind.CHECKS)


def _count_text(count: Any) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}" if isinstance(count, int) else "no count"


def check_lines(records: list[dict[str, Any]]) -> list[str]:
    """The failed checks first, each with its count and a capped sample; then the others in a line each."""
    failed = [r for r in records if is_failed(r)]
    others = [r for r in records if r not in failed]
    lines = ["Failed checks:" if failed else "Checks:"]
    for record in failed[:CHECKS_SHOWN]:
        count = record.get("count")
        sample = record.get("sample") or []
        lines.append(
            f"  {record.get('check', '?')} ({record.get('severity', 'error')}): {record.get('status')}"
            + (f", {_count_text(count)}" if count is not None else "")
            + (f"; a sample of {len(sample)}:" if sample else "")
        )
        for row in sample[:SAMPLE_ROWS_SHOWN]:
            text = json.dumps(row, ensure_ascii=False, default=str)
            lines.append(
                "    " + (text if len(text) <= SAMPLE_ROW_CHARS else text[: SAMPLE_ROW_CHARS - 3] + "...")
            )
        if len(sample) > SAMPLE_ROWS_SHOWN:
            lines.append(f"    ... and {len(sample) - SAMPLE_ROWS_SHOWN} more sample rows in the step log")
        kept = kept_rows(record)
        if kept:
            lines.append(f"    {kept}")
    if len(failed) > CHECKS_SHOWN:
        lines.append(f"  ... and {len(failed) - CHECKS_SHOWN} more failed checks in the step log")
    for record in others[:CHECKS_SHOWN]:
        count = record.get("count")
        said = f": {_count_text(count)}" if count else ""
        table, stored = record.get("failures_table"), record.get("stored")
        said += f"; {stored:,} kept in {table}" if isinstance(stored, int) and stored and table else ""
        lines.append(
            f"  {record.get('check', '?')} ({record.get('severity', 'error')}): {record.get('status')}{said}"
        )
    return lines


def kept_rows(record: Mapping[str, Any]) -> str:
    """Where a check's failing rows were kept ([checks] failures_table), with this run's query; "" if none."""
    table, stored, query = record.get("failures_table"), record.get("stored"), record.get("failures_query")
    if not (isinstance(stored, int) and stored and table and query):
        return ""
    count = record.get("count")
    of = f" of {count:,}" if isinstance(count, int) and count > stored else ""
    return f"{stored:,}{of} rows kept in {table}: {query}"


def find_record(events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The run's cost and durations as RecordRun left them, if it ran and succeeded."""
    for event in events:
        details = event.get("stateExitedEventDetails") or {}
        if event["type"] == "TaskStateExited" and details.get("name") == RECORD_RUN_STATE:
            try:
                record = json.loads(details.get("output") or "{}").get(RECORD_KEY)
            except ValueError:
                return None
            return record if isinstance(record, dict) else None
    return None


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _status_text(step: Mapping[str, Any]) -> str:
    """A recorded step's end when it did not succeed (", failed (exit 7)"); "" for a success or no status."""
    try:
        status = StepStatus.parse(step.get("status"))
    except ValueError:
        return ""  # a record from before step statuses: its durations still say enough
    if status is StepStatus.SUCCEEDED:
        return ""
    code = step.get("exit_code")
    return f", {status.value}" + (
        f" (exit {code})" if status is StepStatus.FAILED and code is not None else ""
    )


def record_lines(record: dict[str, Any]) -> list[str]:
    """Run date, duration, cost and the stages' and steps' durations, a line each."""
    cost = record.get("cost") or {}
    lines = [
        f"Run date: {record.get('run_date', '?')}",
        f"Duration: {duration_text(record.get('run_seconds'))} "
        f"(cluster ready after {duration_text(record.get('cluster_ready_seconds'))})",
        f"Cost: ${cost.get('total_usd', 0):.2f} (EC2 ${cost.get('ec2_usd', 0):.2f}, "
        f"EMR fee ${cost.get('emr_usd', 0):.2f}, Fargate ${cost.get('fargate_usd', 0):.3f}; "
        f"{cost.get('prices', '')})",
    ]
    lines += [f"  {note}" for note in cost.get("notes", [])]
    stages = record.get("stages") or {}
    if stages:
        lines.append("Stages: " + ", ".join(f"{name} {duration_text(s)}" for name, s in stages.items()))
    for name, step in (record.get("steps") or {}).items():
        attempts = step.get("attempts", 1)
        again = f" ({attempts} attempts)" if attempts > 1 else ""
        lines.append(f"  {name}: {duration_text(step.get('seconds'))}{again}{_status_text(step)}")
    failure = record.get("failure") or {}
    if failure.get("step") and failure.get("line"):
        lines.append(f"First error in {failure['step']}: {failure['line']}")
    checks = record.get("checks") or {}
    if checks:
        # A warned check does not fail the run: a success's message is where it is seen.
        said = [
            f"{label} {check.get('status')}"
            + (f" ({_count_text(check.get('count'))})" if check.get("count") else "")
            for label, check in list(checks.items())[:CHECKS_SHOWN]
        ]
        more = f", and {len(checks) - CHECKS_SHOWN} more" if len(checks) > CHECKS_SHOWN else ""
        lines.append("Checks: " + ", ".join(said) + more)
    return lines


#: what the first line of a checks-only run's message adds (its input's checks_only)
CHECKS_ONLY_NOTE = " (a checks-only run: only the data checks ran, no step)"


def is_checks_only_run(events: Iterable[dict[str, Any]]) -> bool:
    """Whether the execution was started with `checks_only: true` (`--deployed --checks-only`)."""
    for event in events:
        if event.get("type") == "ExecutionStarted":
            try:
                given = json.loads(event.get("executionStartedEventDetails", {}).get("input") or "{}")
            except ValueError:
                return False
            return isinstance(given, dict) and given.get("checks_only") is True
    return False


def render_success(
    detail: dict[str, Any],
    record: dict[str, Any] | None,
    pipelines: dict[str, Any],
    *,
    checks_only: bool = False,
) -> tuple[str, str]:
    """The short message of a successful run (pipeline.toml notify = "always"): what it took and cost."""
    machine = detail["stateMachineArn"].rsplit(":", 1)[-1]
    pipeline = pipelines.get(machine, (machine, "", ""))[0]
    run = detail["name"]
    note = CHECKS_ONLY_NOTE if checks_only else ""
    lines = [f"Nightshift pipeline {pipeline}: run {run} SUCCEEDED{note}.", ""]
    summary = ""
    if record:
        lines += record_lines(record)
        cost = (record.get("cost") or {}).get("total_usd", 0)
        summary = f" in {duration_text(record.get('run_seconds'))}, ${cost:.2f}"
    else:
        lines.append("(no run record: see the execution's RecordRun state)")
    kind = " (checks only)" if checks_only else ""
    return f"Nightshift: {run} SUCCEEDED{kind}{summary}"[:SUBJECT_LIMIT], "\n".join(lines)


def console_link(region: str, fragment: str) -> str:
    return f"https://{region}.console.aws.amazon.com/{fragment}"


def log_stream_link(region: str, log_group: str, stream: str) -> str:
    # The CloudWatch console wants "/" inside names encoded twice ($252F).
    def encode(name: str) -> str:
        return name.replace("/", "$252F")

    return console_link(
        region,
        f"cloudwatch/home?region={region}#logsV2:log-groups/log-group/{encode(log_group)}"
        f"/log-events/{encode(stream)}",
    )


def render(
    detail: dict[str, Any],
    failure: Failure | None,
    pipelines: dict[str, Any],
    region: str,
    record: dict[str, Any] | None = None,
    *,
    checks: list[str] | None = None,
    failed_check: str = "",
    checks_only: bool = False,
) -> tuple[str, str]:
    """Subject and body of the alert; `checks`: the failed checks task's results, as check_lines."""
    machine = detail["stateMachineArn"].rsplit(":", 1)[-1]
    pipeline, log_group, container = pipelines.get(machine, (machine, "", ""))
    status, run = detail["status"], detail["name"]
    error = (failure.error if failure else "") or detail.get("error") or status
    cause = (failure.cause if failure else "") or detail.get("cause") or "(no cause reported)"
    note = CHECKS_ONLY_NOTE if checks_only else ""
    lines = [f"Nightshift pipeline {pipeline}: run {run} {status}{note}.", ""]
    if failure and failure.state:
        lines.append(f"Failing state: {failure.state}")
    lines += [f"Error: {error}", f"Cause: {cause[:CAUSE_LIMIT]}", ""]
    if checks:
        lines += [*checks, ""]
    if failure and failure.ecs_task_arn and log_group:
        stream = log_stream(pipeline, container, failure.ecs_task_arn)
        lines.append(f"Step log: {log_stream_link(region, log_group, stream)}")
    lines.append(
        "Execution: "
        + console_link(region, f"states/home?region={region}#/v2/executions/details/{detail['executionArn']}")
    )
    lines.append("The run terminates its cluster on failure; the sweeper terminates any cluster left behind.")
    if record:
        lines += ["", *record_lines(record)]
    where = f" at {failure.state}" if failure and failure.state else ""
    where = f": check {failed_check} failed" if failed_check else where
    kind = " (checks only)" if checks_only else ""
    subject = f"Nightshift: {run} {status}{kind}{where}"[:SUBJECT_LIMIT]
    return subject, "\n".join(lines)


def failed_checks(
    detail: dict[str, Any], failure: Failure | None, pipelines: dict[str, Any], logs: Any
) -> tuple[list[str] | None, str]:
    """The failed checks task's results as lines, and the first failed check's name ("" if none).

    Read from the task's own log stream, where the runner wrote a JSON record per check; the alert
    still goes out, saying why, when the stream cannot be read.
    """
    if not is_checks_failure(failure):
        return None, ""
    assert failure is not None and failure.ecs_task_arn is not None
    machine = detail["stateMachineArn"].rsplit(":", 1)[-1]
    pipeline, log_group, container = pipelines.get(machine, (machine, "", ""))
    if not log_group:
        return None, ""
    try:
        records = read_checks(logs, log_group, log_stream(pipeline, container, failure.ecs_task_arn))
    except (ClientError, BotoCoreError) as error:
        return [f"(the checks' results could not be read from the step log: {error})"], ""
    if not records:
        return ["(no check results at the end of the step log: see it for how the checks task ended)"], ""
    failed = [r for r in records if is_failed(r)]
    return check_lines(records), str(failed[0].get("check", "")) if failed else ""


def send_alert(
    detail: dict[str, Any],
    *,
    pipelines: dict[str, Any],
    topic_arn: str,
    sfn: SFNClient,
    sns: Any,
    logs: Any = None,
) -> str:
    """An execution's status change -> one SNS message (failure or success); returns its subject."""
    region = detail["executionArn"].split(":")[3]
    events = execution_history(sfn, detail["executionArn"])
    checks_only = is_checks_only_run(events)
    if detail["status"] == "SUCCEEDED":
        subject, body = render_success(detail, find_record(events), pipelines, checks_only=checks_only)
    else:
        failure = find_failure(events)
        checks, failed_check = failed_checks(detail, failure, pipelines, logs)
        subject, body = render(
            detail,
            failure,
            pipelines,
            region,
            find_record(events),
            checks=checks,
            failed_check=failed_check,
            checks_only=checks_only,
        )
    sns.publish(TopicArn=topic_arn, Subject=subject, Message=body)
    return subject
