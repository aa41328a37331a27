"""The runs of a deployed pipeline: names per date, start, stop (and its cluster), the run list."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import botocore.exceptions

from runner.canary import canary_as_deployed, canary_date_of, is_canary_name
from runner.dates import format_duration
from runner.deployed.discovery import (
    CLUSTER_TAG_EXECUTION_ARN,
    CLUSTER_TAG_MANAGED,
    CLUSTER_TAG_STACK,
    Deployment,
    NotFound,
    Refused,
)
from runner.deployed.events import RecordedRun, RunTracker
from runner.deployed.follow import HistoryReader
from runner.deployed.run_states import RECORD_KEY, RECORD_RUN_STATE
from runner.errors import NightshiftError
from runner.model import Pipeline

ALIVE_CLUSTER_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING", "TERMINATING"]
GONE_CLUSTER_STATES = {"TERMINATED", "TERMINATED_WITH_ERRORS"}
#: more reruns of one date than this is a loop gone wrong, not a user
MAX_RERUNS = 99
#: CreateCluster's own timeout (its Lambda state's): a cluster it makes appears within it
CREATE_WAIT_SECONDS = 5 * 60.0


@dataclass(frozen=True)
class Execution:
    name: str
    arn: str
    status: str
    started: datetime
    stopped: datetime | None

    @classmethod
    def of(cls, answer: dict[str, Any]) -> Execution:
        return cls(
            answer["name"],
            answer["executionArn"],
            answer["status"],
            answer["startDate"],
            answer.get("stopDate"),
        )

    def seconds(self) -> float:
        end = self.stopped or datetime.now(UTC)
        return max(0.0, (end - self.started).total_seconds())


def run_name(pipeline: str, run_date: str, attempt: int = 1) -> str:
    """`<pipeline>-<date>` (the scheduler's name), reruns `<pipeline>-<date>-r2`, `-r3`, ..."""
    base = f"{pipeline}-{run_date}"
    return base if attempt == 1 else f"{base}-r{attempt}"


def checks_run_name(pipeline: str, run_date: str, attempt: int = 1) -> str:
    """A checks-only run: `<pipeline>-<date>-checks`, then `-checks-r2`, ... (never the nightly's name)."""
    base = f"{pipeline}-{run_date}-checks"
    return base if attempt == 1 else f"{base}-r{attempt}"


def date_of(pipeline: str, name: str) -> str | None:
    match = re.fullmatch(re.escape(pipeline) + r"-(\d{4}-\d{2}-\d{2})(?:-checks)?(?:-r\d+)?", name)
    return match[1] if match else None


def any_date_of(pipeline: str, name: str) -> str | None:
    """The run date of any run of the pipeline: a night's, a rerun's, a checks-only run's, a canary's."""
    return date_of(pipeline, name) or canary_date_of(name, pipeline)


def describe(deployment: Deployment, name: str) -> Execution | None:
    try:
        answer = deployment.clients.sfn.describe_execution(executionArn=deployment.execution_arn(name))
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return None
        raise
    return Execution.of(answer)


def runs_of_date(deployment: Deployment, run_date: str, *, checks_only: bool = False) -> list[Execution]:
    """Every run of the date, first to last: `<pipeline>-<date>`, then its reruns until a name is free.

    `checks_only`: its checks-only runs instead, `<pipeline>-<date>-checks`, then `-checks-r2`, ...
    """
    name = checks_run_name if checks_only else run_name
    found: list[Execution] = []
    for attempt in range(1, MAX_RERUNS + 1):
        execution = describe(deployment, name(deployment.pipeline, run_date, attempt))
        if execution is None:
            break
        found.append(execution)
    return found


def check_startable(deployment: Deployment, run_date: str, rerun: bool) -> str:
    """The name the date's next run takes; Refused when it already ran (without `rerun`) or runs now."""
    earlier = runs_of_date(deployment, run_date)
    running = [e for e in earlier if e.status == "RUNNING"]
    if running:
        raise Refused(
            f"{running[-1].name} is running (a date never runs twice at once): follow it with "
            f"--follow --run-date {run_date}, or stop it with --stop --run-date {run_date}"
        )
    name = run_name(deployment.pipeline, run_date, len(earlier) + 1)
    if earlier and not rerun:
        last = earlier[-1]
        raise Refused(
            f"{run_date} already ran ({last.name}: {last.status.lower()}); "
            f"add --rerun to run it again as {name}"
        )
    return name


def check_checks_startable(deployment: Deployment, run_date: str) -> str:
    """The name of the date's next checks-only run; Refused while a run of the date runs.

    Checks only read, so a date that already ran needs no --rerun; but a run of the date still
    writing its tables would give them half-written (and Preflight refuses two runs of a date at once).
    """
    runs = runs_of_date(deployment, run_date)
    checks = runs_of_date(deployment, run_date, checks_only=True)
    running = [e for e in [*runs, *checks] if e.status == "RUNNING"]
    if running:
        raise Refused(
            f"{running[-1].name} is running (a date never runs twice at once): follow it with "
            f"--follow --run-date {run_date}, or run the checks when it has ended"
        )
    return checks_run_name(deployment.pipeline, run_date, len(checks) + 1)


def start(
    deployment: Deployment,
    name: str,
    run_date: str,
    from_stage: int | None,
    *,
    checks_only: bool = False,
    checks_stage: int | None = None,
    canary: bool = False,
) -> Execution:
    """StartExecution with the run's input: its date; from_stage, checks_only (checks_stage) or canary."""
    given: dict[str, Any] = {"run_date": run_date}
    if from_stage is not None:
        given["from_stage"] = from_stage
    if checks_only:
        given["checks_only"] = True
        if checks_stage is not None:
            given["checks_stage"] = checks_stage
    if canary:
        given["canary"] = True
    try:
        arn = deployment.clients.sfn.start_execution(
            stateMachineArn=deployment.state_machine_arn, name=name, input=json.dumps(given)
        )["executionArn"]
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
            raise Refused(f"{name} was started meanwhile by someone else: follow it with --follow") from error
        raise
    execution = describe(deployment, name)
    if execution is None:  # pragma: no cover - Step Functions answers describe right after start
        raise NightshiftError(f"{arn} was started but cannot be described")
    return execution


def latest(deployment: Deployment, run_date: str | None) -> Execution:
    """The date's last run; without a date the running run (the newest if several), else the newest."""
    if run_date is not None:
        # Its checks-only runs too: the newest of either is the one to follow or stop.
        runs = sorted(
            [*runs_of_date(deployment, run_date), *runs_of_date(deployment, run_date, checks_only=True)],
            key=lambda e: e.started,
        )
        if not runs:
            raise NotFound(f"no run of {deployment.pipeline} for {run_date} in {deployment.region}")
        return runs[-1]
    newest: Execution | None = None
    for execution in list_runs(deployment, limit=50):
        # Not a canary: `--follow` means the night (or a backfill), and a canary, which is no run of
        # its date, is followed by the `--canary` that started it (a detached one: its stop hint).
        if is_canary_name(execution.name, deployment.pipeline):
            continue
        if execution.status == "RUNNING":
            return execution
        newest = newest or execution
    if newest is None:
        raise NotFound(f"pipeline {deployment.pipeline} has no runs yet in {deployment.region}")
    return newest


def list_runs(deployment: Deployment, limit: int) -> Iterator[Execution]:
    """The newest runs first (ListExecutions' own order), at most `limit`."""
    paginator = deployment.clients.sfn.get_paginator("list_executions")
    given = 0
    for page in paginator.paginate(
        stateMachineArn=deployment.state_machine_arn, PaginationConfig={"PageSize": min(max(limit, 1), 100)}
    ):
        for item in page["executions"]:
            if given >= limit:
                return
            given += 1
            yield Execution(
                item["name"], item["executionArn"], item["status"], item["startDate"], item.get("stopDate")
            )


# --- stop ----------------------------------------------------------------------------------------


def stop_and_wait(
    deployment: Deployment, execution: Execution, *, poll: float, wait: float, interrupted: threading.Event
) -> None:
    """StopExecution from the command line, then wait (at most ``wait``) until it no longer runs."""
    deployment.clients.sfn.stop_execution(
        executionArn=execution.arn,
        error="Nightshift.Stopped",
        cause="stopped from the command line (python -m runner --deployed --stop)",
    )
    # StopExecution answers at once; the status follows (moto's interpreter: a moment later).
    deadline = time.monotonic() + wait
    while (now := describe(deployment, execution.name)) is not None and now.status == "RUNNING":
        if time.monotonic() > deadline or interrupted.wait(poll):
            break


def stop_run(
    deployment: Deployment,
    pipeline: Pipeline,
    execution: Execution,
    say: Callable[[str], None],
    *,
    poll: float,
    wait: float,
    interrupted: threading.Event,
) -> int:
    """StopExecution, then terminate the run's clusters (Catch blocks do not run on a stopped run)."""
    if execution.status == "RUNNING":
        stop_and_wait(deployment, execution, poll=poll, wait=wait, interrupted=interrupted)
        say(f"run {execution.name} stopped")
    else:
        say(f"run {execution.name} is not running ({execution.status.lower()}); checking its cluster")
    return end_clusters(deployment, pipeline, execution, say, poll=poll, wait=wait, interrupted=interrupted)


def end_clusters(
    deployment: Deployment,
    pipeline: Pipeline,
    execution: Execution,
    say: Callable[[str], None],
    *,
    poll: float,
    wait: float,
    interrupted: threading.Event,
) -> int:
    """Terminate the clusters of a run that no longer runs, and wait until EMR has shut them down."""
    emr = deployment.clients.emr
    clusters = list(clusters_of(deployment, execution))
    if not clusters and _was_creating(deployment, pipeline, execution):
        # Stopped while CreateCluster ran: its Lambda still finishes, and its cluster appears after.
        say(f"{execution.name} was requesting its cluster; waiting for it to appear")
        deadline = time.monotonic() + min(wait, CREATE_WAIT_SECONDS)
        while not clusters and time.monotonic() < deadline:
            if interrupted.wait(poll):
                return 130
            clusters = list(clusters_of(deployment, execution))
    if not clusters:
        say(f"no cluster of {execution.name} is alive")
        return 0
    alive = [cluster_id for cluster_id, state in clusters if state != "TERMINATING"]
    if alive:
        # Idempotent: terminating a terminating or terminated cluster is accepted by EMR.
        emr.terminate_job_flows(JobFlowIds=alive)
    ids = ", ".join(cluster_id for cluster_id, _ in clusters)
    say(f"terminating cluster {ids}")
    deadline = time.monotonic() + wait
    waiting = [cluster_id for cluster_id, _ in clusters]
    while True:
        states = {cid: emr.describe_cluster(ClusterId=cid)["Cluster"]["Status"]["State"] for cid in waiting}
        waiting = [cid for cid, state in states.items() if state not in GONE_CLUSTER_STATES]
        if not waiting:
            say(f"cluster {ids} terminated")
            return 0
        if time.monotonic() > deadline:
            say(
                f"cluster {', '.join(waiting)} still {states[waiting[0]].lower()} "
                f"after {format_duration(wait)}; "
                "EMR goes on terminating it: check with `aws emr describe-cluster --cluster-id "
                f"{waiting[0]}`"
            )
            return 1
        if interrupted.wait(poll):
            say(f"no longer waiting; cluster {', '.join(waiting)} goes on terminating")
            return 130


def _was_creating(deployment: Deployment, pipeline: Pipeline, execution: Execution) -> bool:
    tracker = RunTracker(pipeline)
    for event in HistoryReader(deployment.clients.sfn, execution.arn, lambda _api: None).new_events():
        tracker.apply(event)
    return tracker.creating


def clusters_of(
    deployment: Deployment, execution: Execution, *, alive_only: bool = True
) -> Iterator[tuple[str, str]]:
    """(id, state) of this stack's clusters tagged with the execution: not yet terminated, or in any state."""
    emr = deployment.clients.emr
    paginator = emr.get_paginator("list_clusters")
    states = {"ClusterStates": ALIVE_CLUSTER_STATES} if alive_only else {}
    for page in paginator.paginate(**states, CreatedAfter=execution.started):
        for summary in page["Clusters"]:
            cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            tags = {t["Key"]: t["Value"] for t in cluster.get("Tags", [])}
            if (
                tags.get(CLUSTER_TAG_EXECUTION_ARN) == execution.arn
                and tags.get(CLUSTER_TAG_MANAGED) == "true"
                and tags.get(CLUSTER_TAG_STACK) == deployment.stack
            ):
                yield cluster["Id"], cluster["Status"]["State"]


# --- history -------------------------------------------------------------------------------------


def console_stream_url(region: str, group: str, stream: str) -> str:
    """The CloudWatch console page of one log stream (the console escapes names twice, `%` as `$`)."""

    def escape(text: str) -> str:
        return quote(quote(text, safe=""), safe="").replace("%", "$")

    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{escape(group)}/log-events/{escape(stream)}"
    )


def console_execution_url(region: str, arn: str) -> str:
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{arn}"


def checks_cell(recorded: Mapping[str, Mapping[str, Any]]) -> str:
    """A run's data checks in a few words: "7 passed, 1 failed (users.unique: 1,204 rows)"; "-" if none."""
    if not recorded:
        return "-"
    statuses = [str(check.get("status", "")) for check in recorded.values()]
    failed = [
        (label, check)
        for label, check in recorded.items()
        if str(check.get("status", "")).startswith("failed")
    ]
    parts = [f"{statuses.count(status)} {status}" for status in ("passed", "warned") if status in statuses]
    if failed:
        label, check = failed[0]
        count = check.get("count")
        rows = f"{count:,} row{'' if count == 1 else 's'}" if isinstance(count, int) else "no count"
        stored, table = check.get("stored"), check.get("failures_table")
        kept = f"; {stored:,} in {table}" if isinstance(stored, int) and stored and table else ""
        parts.append(f"{len(failed)} failed ({label}: {rows}{kept})")
    return ", ".join(parts)


def kept_rows_lines(run_name: str, recorded: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """For each failed check whose rows [checks] failures_table kept: the query that reads this run's."""
    return [
        f"{run_name}: {label}'s failing rows: {check['failures_query']}"
        for label, check in recorded.items()
        if str(check.get("status", "")).startswith("failed") and isinstance(check.get("failures_query"), str)
    ]


#: GetExecutionHistory events asked for to find a finished run's record: after RecordRun's exit come
#: at most "Run failed?" (entered, exited), the end state (entered, exited) and the execution's end
RECORD_EVENTS = 10


@dataclass(frozen=True)
class HistoryRow:
    """What one run's line says: its cost, failing step (or error), checks and the task to link to."""

    cost_usd: float | None
    failed: str
    checks: Mapping[str, Mapping[str, Any]]
    task_arn: str | None
    #: a date of a shared-cluster backfill: the batch whose cluster it ran on (its record says so)
    shared_in: str | None = None


def read_record(sfn: Any, arn: str) -> Mapping[str, Any] | None:
    """RecordRun's record of a run, from its newest RECORD_EVENTS events only; None when it has none.

    Newest first (reverseOrder); maxResults is only an upper limit (AWS CLI reference,
    get-execution-history), so a short page with a nextToken is followed until that many were seen.
    """
    seen = 0
    token: str | None = None
    while seen < RECORD_EVENTS:
        asked = {"nextToken": token} if token else {}
        page = sfn.get_execution_history(
            executionArn=arn, reverseOrder=True, maxResults=RECORD_EVENTS - seen, **asked
        )
        # The page's newest few: moto answers with every event, oldest first, whatever it was asked.
        events = sorted(page["events"], key=lambda e: e["id"], reverse=True)[: RECORD_EVENTS - seen]
        for event in events:
            details = event.get("stateExitedEventDetails") or {}
            if details.get("name") == RECORD_RUN_STATE:
                try:
                    output = json.loads(details.get("output") or "null")
                except ValueError:
                    return None
                record = output.get(RECORD_KEY) if isinstance(output, Mapping) else None
                return record if isinstance(record, Mapping) else None
        seen += len(events)
        token = page.get("nextToken")
        if not token or not events:
            break
    return None


def _recorded_row(recorded: RecordedRun, pipeline: Pipeline, run: Execution) -> HistoryRow:
    file_names = {step.name: step.file_name for step in pipeline.steps}
    failing = recorded.steps.get(recorded.failing) if recorded.failing else None
    if recorded.failing and failing is not None:
        failed = f"{file_names.get(recorded.failing, recorded.failing)} (exit {failing.shown_exit_code})"
    else:
        failed = (recorded.error or "-") if run.status == "FAILED" else "-"
    if failing is not None and failing.task_arn:
        task_arn: str | None = failing.task_arn
    else:
        ran = [recorded.steps[s.name].task_arn for s in pipeline.steps if s.name in recorded.steps]
        task_arn = next((arn for arn in reversed(ran) if arn), None) if failing is None else None
    return HistoryRow(recorded.cost_usd, failed, recorded.checks, task_arn)


def _replayed_row(deployment: Deployment, pipeline: Pipeline, run: Execution) -> HistoryRow:
    tracker = RunTracker(pipeline)
    for event in HistoryReader(deployment.clients.sfn, run.arn, lambda _api: None).new_events():
        tracker.apply(event)
    failing = tracker.failing_step()
    failed = f"{failing.step.file_name} (exit {failing.exit_code})" if failing is not None else "-"
    if failing is None and run.status == "FAILED":
        failed = tracker.error or "-"
    attempts = [a for r in tracker.steps.values() for a in r.attempts if a.task_arn]
    shown = failing.attempts[-1] if failing is not None else (attempts[-1] if attempts else None)
    return HistoryRow(tracker.cost_usd, failed, tracker.recorded_checks, shown.task_arn if shown else None)


def _no_record(run: Execution) -> str:
    """Why a listed run has no record to read."""
    if run.status == "RUNNING":
        return "still running"
    if run.status == "ABORTED":
        return "stopped before RecordRun ran"
    if run.status == "TIMED_OUT":
        return "timed out before RecordRun ran"
    return "it ended before RecordRun ran, or RecordRun failed"


def history_row(deployment: Deployment, pipeline: Pipeline, run: Execution) -> tuple[HistoryRow, str]:
    """One run's row from its record, else from its whole history; and "" or why there was no record."""
    found = read_record(deployment.clients.sfn, run.arn)
    if found is not None:
        cluster = found.get("cluster")
        shared_in = cluster.get("shared_in") if isinstance(cluster, Mapping) else None
        try:
            row = _recorded_row(RecordedRun.of(found), pipeline, run)
            return replace(row, shared_in=str(shared_in) if shared_in else None), ""
        except ValueError as unreadable:  # OldRecord, or a status this Nightshift does not know
            why = str(unreadable)
    else:
        why = _no_record(run)
    row = _replayed_row(deployment, pipeline, run)
    return row, f"{run.name}: no run record ({why}); read its whole history"


def history_lines(deployment: Deployment, pipeline: Pipeline, execution: list[Execution]) -> list[str]:
    """A line per run, newest first: date, name, status, start, duration, cost, failing step, checks, link.

    Each run's from the record RecordRun left (a few events); a run without one (running, stopped,
    failed before RecordRun) from its whole history, and a line after the table says which.
    """
    schedule = pipeline.config.schedule
    zone = ZoneInfo(schedule.timezone) if schedule else ZoneInfo("UTC")
    header = ("date", "run", "status", f"started ({zone.key})", "duration", "cost", "failed step")
    # The checks column only for a pipeline with checks: RecordRun recorded their results.
    has_checks = bool(pipeline.checks)
    rows = [(*header, *(("checks",) if has_checks else ()), "log")]
    kept: list[str] = []
    replayed: list[str] = []
    shared: list[str] = []
    batch_records: dict[str, Mapping[str, Any] | None] = {}
    for run in execution:
        canary = canary_date_of(run.name, deployment.pipeline)
        # A canary's states are its own runner task's, not the pipeline's steps.
        row, why = history_row(deployment, canary_as_deployed() if canary else pipeline, run)
        replayed += [why] if why else []
        if row.shared_in:
            # A date of a batch prices no cluster: its share is in its batch's record.
            if row.shared_in not in batch_records:
                batch_records[row.shared_in] = _batch_record(deployment, row.shared_in)
            cost, line = _share(run.name, row.shared_in, batch_records[row.shared_in])
            row = replace(row, cost_usd=cost)
            shared.append(line)
        kept += kept_rows_lines(run.name, row.checks)
        if row.task_arn:
            link = console_stream_url(
                deployment.region, deployment.runner_log_group, deployment.log_stream(row.task_arn)
            )
        else:
            link = console_execution_url(deployment.region, run.arn)
        rows.append(
            (
                f"{canary} (canary)"
                if canary
                else date_of(deployment.pipeline, run.name) or _batch_cell(run.name),
                run.name,
                run.status.lower().replace("_", " "),
                run.started.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                format_duration(run.seconds()),
                "-" if row.cost_usd is None else f"${row.cost_usd:.2f}",
                row.failed,
                *((checks_cell(row.checks),) if has_checks else ()),
                link,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return (
        [
            "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
            for row in rows
        ]
        + shared
        + replayed
        + kept
    )


def _batch_record(deployment: Deployment, name: str) -> Mapping[str, Any] | None:
    try:
        return read_record(deployment.clients.sfn, deployment.execution_arn(name))
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return None  # its history is gone (Step Functions keeps it 90 days)
        raise


def _batch_cell(name: str) -> str:
    """A batch's date column: the range it holds (`<pipeline>-batch-<first>-<last>`), else "?"."""
    match = re.search(r"-batch-(\d{4}-\d{2}-\d{2})-(\d{4}-\d{2}-\d{2})(?:-r\d+)?$", name)
    return f"{match[1]}..{match[2]}" if match else "?"


def _share(name: str, batch: str, record: Mapping[str, Any] | None) -> tuple[float | None, str]:
    """A date's share of its batch's cluster, from the batch's record, and the line that says it."""
    dates = record.get("dates") if record is not None else None
    entry = next((d for d in dates or [] if isinstance(d, Mapping) and d.get("name") == name), None)
    own, start = (entry or {}).get("own_usd"), (entry or {}).get("start_share_usd")
    if not isinstance(own, int | float) or not isinstance(start, int | float):
        return None, f"{name}: shared in {batch}; its share comes with the batch's record (none yet)"
    return float(own + start), (
        f"{name}: shared in {batch}: ${own:.2f} for its own time and tasks,"
        f" ${start:.2f} its part of the cluster's start and idle time"
    )
