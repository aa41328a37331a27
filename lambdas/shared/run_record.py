"""The record of a finished run: durations from the execution history, cost from EMR and Fargate."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.backfill_plan import split_cluster_cost
from lambdas.shared.check_results import CHECK_STREAM, ForwardRead, log_stream, read_checks
from lambdas.shared.clusters import (
    GONE_STATES,
    NOT_TERMINATED_STATES,
    TAG_EXECUTION_ARN,
    describe,
    find_clusters,
)
from lambdas.shared.cost import ClusterUsage, RegionPrices, RunCost, TaskUsage, cluster_usage, run_cost
from lambdas.shared.errors import error_code
from lambdas.shared.executions import execution_history
from lambdas.shared.preflight import date_of_name
from lambdas.shared.run_states import (
    DATES_FAILED_ERROR,
    RUN_STAGES_STATE,
    StateKind,
    StateName,
    StepStatus,
    checks_step_name,
    parse_state,
    stage_state_name,
)

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_stepfunctions import SFNClient

_TASK_END = frozenset({"TaskSucceeded", "TaskFailed", "TaskTimedOut"})
#: a task state's ends that are no container's end: ECS never ran it, or Step Functions stopped waiting
_TASK_NOT_RUN = frozenset({"TaskStartFailed", "TaskSubmitFailed"})
#: the longest "first error line" a record keeps (SNS and a terminal line, not a log)
ERROR_LINE_CHARS = 300
#: the head of a failed step's stream read for its first error line (one GetLogEvents call)
ERROR_LINE_EVENTS = 200
_ERROR_WORDS = re.compile(r"error|exception|failed|fatal", re.IGNORECASE)


@dataclass(frozen=True)
class StepRecord:
    """A step's (or a stage's checks task's) part in the run: time, attempts, and how it ended."""

    seconds: float
    attempts: int
    status: StepStatus = StepStatus.SUCCEEDED
    #: its last attempt's container exit code (None: it has none, or it did not end)
    exit_code: int | None = None
    #: its last attempt's ECS task (its log stream is named after it)
    task_arn: str | None = None
    #: why its last attempt ended without an exit code (ECS's StoppedReason), or ""
    reason: str = ""
    ended: datetime | None = None

    def as_output(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 1),
            "attempts": self.attempts,
            "status": self.status.value,
            "exit_code": self.exit_code,
            "task_arn": self.task_arn,
        }


@dataclass(frozen=True)
class RunFailure:
    """What failed the run: a step (or a stage's checks) and its exit code, or a state's error."""

    #: the step's name, or a stage's checks task's `NN_checks`; None when no step failed it
    step: str | None
    exit_code: int | None
    error: str
    #: the first line that says what went wrong (the step log's first error line, else the cause's)
    line: str
    task_arn: str | None = None

    def as_output(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "exit_code": self.exit_code,
            "error": self.error,
            "line": self.line,
            "task_arn": self.task_arn,
        }


@dataclass(frozen=True)
class Timeline:
    """What the execution history says about a run so far."""

    started: datetime
    stages: dict[str, float] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    tasks: tuple[TaskUsage, ...] = ()
    #: the ECS task of each stage's checks (its last attempt), in the order they ran
    check_tasks: tuple[str, ...] = ()
    #: each stage's checks task as a step, by its `NN_checks` name
    checks: dict[str, StepRecord] = field(default_factory=dict)
    #: the stages the run went past (before --from-stage; a checks-only run's without its checks)
    skipped_stages: tuple[int, ...] = ()
    #: a date of a batch's one runner task for all its stages (RUN_STAGES_STATE), if it has one
    stages_task: StepRecord | None = None
    #: the run's input's from_stage (a date of a batch skips the stages before it in its stages task)
    from_stage: int | None = None
    #: the execution was stopped (StopExecution) or timed out: a step it left unended was stopped
    aborted: bool = False

    def failing_step(self) -> tuple[str, StepRecord] | None:
        """The step or checks task whose failure failed the run: the earliest to end non-zero."""
        failed = [
            (name, step)
            for name, step in [*self.steps.items(), *self.checks.items()]
            if step.status in (StepStatus.FAILED, StepStatus.TIMED_OUT) and step.ended is not None
        ]
        return min(failed, key=lambda item: item[1].ended or self.started, default=None)


@dataclass(frozen=True)
class CheckResult:
    """One data check of the run, as its checks task's record says: what the history and metrics keep."""

    stage: int | None
    severity: str
    status: str
    #: failing rows (None: the check's engine failed before it counted)
    count: int | None
    #: [checks] failures_table: where its rows were kept, how many, and the query that reads them back
    failures_table: str | None = None
    stored: int = 0
    failures_query: str | None = None

    def as_output(self) -> dict[str, Any]:
        kept = (
            {
                "failures_table": self.failures_table,
                "stored": self.stored,
                "failures_query": self.failures_query,
            }
            if self.stored and self.failures_query
            else {}
        )
        return {
            "stage": self.stage,
            "severity": self.severity,
            "status": self.status,
            "count": self.count,
            **kept,
        }


def _details(event: Mapping[str, Any]) -> dict[str, Any]:
    return next((value for key, value in event.items() if key.endswith("EventDetails")), {})


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _time(value: Any) -> datetime | None:
    """A task's time as Step Functions passes it on: epoch milliseconds (or seconds), or ISO text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def _task_usage(
    step: str, task: dict[str, Any], submitted: datetime, ended: datetime, size: tuple[int, int] | None
) -> TaskUsage:
    """Fargate bills from the image pull to the task's stop; without those times, what Step Functions saw."""
    started = _time(task.get("PullStartedAt")) or _time(task.get("CreatedAt")) or submitted
    stopped = _time(task.get("StoppedAt")) or ended
    cpu = float(task.get("Cpu") or (size[0] if size else 0)) / 1024
    memory = float(task.get("Memory") or (size[1] if size else 0)) / 1024
    return TaskUsage(step, cpu, memory, max(0.0, (stopped - started).total_seconds()))


def _exit_code(task: Mapping[str, Any]) -> int | None:
    """The runner container's exit code in an ECS task's description (Step Functions': PascalCase)."""
    for container in task.get("Containers") or task.get("containers") or []:
        if not isinstance(container, Mapping):
            continue
        code = container.get("ExitCode", container.get("exitCode"))
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    return None


@dataclass
class _TaskState:
    """One task state as the history unfolds: its attempts and how the last one ended."""

    attempts: int = 0
    ended: datetime | None = None
    exit_code: int | None = None
    task_arn: str | None = None
    reason: str = ""
    timed_out: bool = False
    done: bool = False

    def status(self) -> StepStatus:
        if not self.done:
            # Entered and never ended by RecordRun: a sibling's failure stopped its stage's branches.
            return StepStatus.STOPPED
        if self.timed_out:
            return StepStatus.TIMED_OUT
        return StepStatus.of_exit(self.exit_code) if self.exit_code is not None else StepStatus.FAILED


def _track_task(kind: str, when: datetime, event: Mapping[str, Any], task: _TaskState) -> None:
    if kind == "TaskScheduled":
        task.attempts += 1
        task.done, task.exit_code, task.reason, task.timed_out = False, None, "", False
        return
    details = _details(event)
    if kind == "TaskSubmitted":
        answer = _json(details.get("output"))
        found = (answer.get("Tasks") or answer.get("tasks") or [{}])[0]
        task.task_arn = str(found.get("TaskArn") or found.get("taskArn") or "") or task.task_arn
    elif kind in _TASK_END or kind in _TASK_NOT_RUN:
        described = _json(details.get("output") or details.get("cause"))
        task.ended, task.done = when, True
        task.exit_code = _exit_code(described)
        if kind == "TaskSucceeded" and task.exit_code is None:
            task.exit_code = 0
        task.timed_out = kind == "TaskTimedOut" or details.get("error") == "States.Timeout"
        if task.exit_code is None:
            task.reason = str(described.get("StoppedReason") or details.get("error") or "")


def _record(seconds: float, task: _TaskState) -> StepRecord:
    return StepRecord(
        seconds, task.attempts, task.status(), task.exit_code, task.task_arn, task.reason, task.ended
    )


def read_timeline(
    events: Iterable[Mapping[str, Any]], now: datetime, task_size: tuple[int, int] | None = None
) -> Timeline:
    """Stage and step durations, step attempts and ends, Fargate tasks, from the history's events.

    ``task_size`` (ECS cpu units, MiB) stands in for a task whose answer does not say its size.
    """
    state_of: dict[int, StateName] = {}
    entered: dict[str, datetime] = {}
    last_seen: dict[str, datetime] = {}
    task_states: dict[str, _TaskState] = {}
    submitted: dict[str, tuple[datetime, dict[str, Any]]] = {}
    tasks: list[TaskUsage] = []
    skipped: list[int] = []
    started = now
    stage: StateName | None = None
    nothing = parse_state("")
    from_stage: int | None = None
    aborted = False
    for event in events:
        kind, when = event["type"], event["timestamp"]
        if kind == "ExecutionStarted":
            started = when
            given = _json(_details(event).get("input")).get("from_stage")
            from_stage = given if isinstance(given, int) and not isinstance(given, bool) else None
        elif kind in ("ExecutionAborted", "ExecutionTimedOut"):
            aborted = True
        if kind.endswith("StateEntered"):
            named = parse_state(_details(event).get("name", ""))
            state_of[event["id"]] = named
            entered.setdefault(named.name, when)
            if named.kind is StateKind.SKIP_STAGE and named.stage is not None:
                skipped.append(named.stage)
        elif kind.endswith("StateExited"):
            named = parse_state(_details(event).get("name", ""))
            state_of[event["id"]] = nothing
        else:
            previous = event.get("previousEventId")
            named = state_of.get(previous, nothing) if previous is not None else nothing
            if kind.startswith("ParallelState") and stage is not None:
                # A branch's last event precedes the Parallel's own (ParallelStateFailed after a step's).
                named = stage
            state_of[event["id"]] = named
        if not named.name:
            continue
        last_seen[named.name] = when
        if named.kind is StateKind.STAGE:
            stage = named
        elif stage is not None and named.kind is StateKind.STEP:
            # A failing step ends its stage without a ParallelStateExited.
            last_seen[stage.name] = when
        elif named.kind is StateKind.CHECKS:
            # A stage's checks are part of it: the next stage starts after them.
            last_seen[stage_name_of(named)] = when
        if not named.is_task:
            continue
        # A date of a batch's stages task is priced as one task under its state's name.
        step = named.step or named.name
        if kind.startswith("Task"):
            _track_task(kind, when, event, task_states.setdefault(named.name, _TaskState()))
        if kind == "TaskSubmitted":
            answer = _json(_details(event).get("output"))
            task = (answer.get("Tasks") or answer.get("tasks") or [{}])[0]
            submitted[step] = (when, task)
        elif kind in _TASK_END and step in submitted:
            details = _details(event)
            task = _json(details.get("output") or details.get("cause")) or submitted[step][1]
            tasks.append(_task_usage(step, task, submitted.pop(step)[0], when, task_size))
    seconds = {
        name: (last_seen[name] - entered[name]).total_seconds() for name in entered if name in last_seen
    }
    named_states = [parse_state(name) for name in seconds]
    return Timeline(
        started=started,
        stages={
            str(named.stage): seconds[named.name] for named in named_states if named.kind is StateKind.STAGE
        },
        steps={
            named.step: _record(seconds[named.name], task_states.get(named.name, _TaskState()))
            for named in named_states
            if named.kind is StateKind.STEP and named.step is not None
        },
        tasks=tuple(tasks),
        check_tasks=tuple(
            task.task_arn
            for name, task in task_states.items()
            if parse_state(name).kind is StateKind.CHECKS and task.task_arn
        ),
        checks={
            named.step: _record(seconds[named.name], task_states.get(named.name, _TaskState()))
            for named in named_states
            if named.kind is StateKind.CHECKS and named.step is not None
        },
        skipped_stages=tuple(skipped),
        stages_task=_record(seconds[RUN_STAGES_STATE], task_states.get(RUN_STAGES_STATE, _TaskState()))
        if RUN_STAGES_STATE in seconds
        else None,
        from_stage=from_stage,
        aborted=aborted,
    )


def stage_name_of(named: StateName) -> str:
    """The stage state a step's or checks' state belongs to."""
    return stage_state_name(named.stage)


def run_checks(
    logs: Any, log_group: str, pipeline: str, container: str, check_tasks: Iterable[str]
) -> dict[str, CheckResult]:
    """Each check's result, by its label, from the records its checks task wrote to its stream.

    A stream that cannot be read leaves its checks out: the record is still worth having.
    """
    results: dict[str, CheckResult] = {}
    for task_arn in check_tasks:
        try:
            records = read_checks(logs, log_group, log_stream(pipeline, container, task_arn))
        except (ClientError, BotoCoreError):
            continue
        for record in records:
            results[str(record.get("check", "?"))] = _check_result(record)
    return results


_STAGE_OF_STEP = re.compile(r"^(\d+)_")


@dataclass(frozen=True)
class PlannedStage:
    """A stage of the pipeline as its state machine was built (RecordRun's payload's `stages`)."""

    number: int | None
    #: its steps' names, in order
    steps: tuple[str, ...]
    #: it has data checks (a `N_checks` step after its steps)
    checks: bool = False


def _check_result(record: Mapping[str, Any]) -> CheckResult:
    count, stored = record.get("count"), record.get("stored")
    table, query = record.get("failures_table"), record.get("failures_query")
    return CheckResult(
        stage=record.get("stage"),
        severity=str(record.get("severity", "error")),
        status=str(record.get("status", "")),
        count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        failures_table=table if isinstance(table, str) else None,
        stored=stored if isinstance(stored, int) and not isinstance(stored, bool) else 0,
        failures_query=query if isinstance(query, str) else None,
    )


def _stage_of(step: str) -> int | None:
    found = _STAGE_OF_STEP.match(step)
    return int(found[1]) if found else None


@dataclass
class _StreamStep:
    """One step (or a stage's checks) as the stages task's records tell it, attempt by attempt."""

    order: int
    started: datetime | None = None
    attempts: int = 0
    last_seen: datetime | None = None
    #: its last attempt's end (None: started and no step_ended read after it)
    status: StepStatus | None = None
    ended: datetime | None = None
    exit_code: int | None = None
    #: the seconds its step_ended records say, for a step whose start was not read
    seconds: float = 0.0
    #: its last attempt's first stderr line naming an error
    error_line: str = ""


@dataclass(frozen=True)
class StagesLog:
    """A date of a batch's steps, checks and check results, from its one stages task's stream."""

    stream: str
    steps: dict[str, StepRecord]
    #: each stage's checks as a step, by its `NN_checks` name
    checks: dict[str, StepRecord]
    stages: dict[str, float]
    skipped_stages: tuple[int, ...]
    results: dict[str, CheckResult]
    #: a failed step's first error line, by step
    error_lines: dict[str, str]
    events: int
    #: False: the stream was not read to its end (or not at all): what it did not say is not here
    complete: bool
    #: why it is incomplete ("" when complete)
    note: str = ""

    def as_output(self) -> dict[str, Any]:
        return {"stream": self.stream, "events": self.events, "complete": self.complete, "note": self.note}


class _StagesFold:
    """Folds the stages task's records, in order, into its steps, checks and check results."""

    def __init__(self) -> None:
        self.steps: dict[str, _StreamStep] = {}
        self.results: dict[str, CheckResult] = {}

    def take(self, record: Mapping[str, Any], timestamp: int) -> None:
        when = _time(record.get("time")) or _time(timestamp)
        stream, name = record.get("stream"), str(record.get("step") or "")
        event = record.get("event")
        if stream == CHECK_STREAM:
            self.results[str(record.get("check", "?"))] = _check_result(record)
            return
        if event in ("step_started", "step_ended") and name:
            self._step_event(name, str(event), record, when)
            return
        if stream == "stderr" and name in self.steps:
            step = self.steps[name]
            step.last_seen = when or step.last_seen
            line = str(record.get("line") or "")
            if not step.error_line and _ERROR_WORDS.search(line):
                step.error_line = _first_line(line)

    def _step_event(self, name: str, event: str, record: Mapping[str, Any], when: datetime | None) -> None:
        step = self.steps.setdefault(name, _StreamStep(len(self.steps)))
        attempt = record.get("attempt")
        if isinstance(attempt, int) and not isinstance(attempt, bool):
            step.attempts = max(step.attempts, attempt)
        step.last_seen = when or step.last_seen
        if event == "step_started":
            step.started = step.started or when
            step.status, step.ended, step.exit_code, step.error_line = None, None, None, ""
            return
        try:
            step.status = StepStatus.parse(record.get("status"))
        except ValueError:
            step.status = StepStatus.FAILED
        code = record.get("exit_code")
        step.exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
        step.ended = when
        seconds = record.get("seconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            step.seconds += float(seconds)
        step.attempts = max(step.attempts, 1)


def _unended_status(task: StepRecord | None, aborted: bool, complete: bool) -> StepStatus:
    """A step started and not ended in the stream: by how its run and its task ended."""
    if not complete:
        return StepStatus.RUNNING  # its end, if any, is past what was read
    if aborted or (task is not None and task.status is StepStatus.STOPPED):
        return StepStatus.STOPPED
    if task is not None and task.status is StepStatus.TIMED_OUT:
        return StepStatus.TIMED_OUT  # the stages task's own timeout cut it short
    return StepStatus.FAILED


def read_stages_log(
    logs: Any,
    log_group: str,
    stream: str,
    *,
    task: StepRecord | None,
    from_stage: int | None,
    aborted: bool,
    stages: Iterable[PlannedStage] | None = None,
) -> StagesLog:
    """The date's steps, checks and check results from its stages task's stream (bounded: STAGES_PAGES).

    Every step the runner ran ends in one `step_ended` record per attempt; a stage --from-stage
    skipped and one never reached have none: `stages` (the pipeline's, as the state machine knows
    it) names their steps. Past the bound, or without the stream, the log says it is incomplete.
    """
    fold = _StagesFold()
    read = ForwardRead(logs, log_group, stream)
    note = ""
    try:
        for record, timestamp in read:
            fold.take(record, timestamp)
    except (ClientError, BotoCoreError) as exc:
        said = error_code(exc) if isinstance(exc, ClientError) else ""
        note = f"{stream} could not be read after {read.events} events: {said or exc}"
    if not read.complete and not note:
        note = f"read the first {read.events} events of {stream} ({read.pages} pages): not its end"
    complete = read.complete and not note
    arn = task.task_arn if task is not None else None
    task_end = task.ended if task is not None else None
    exit_code = task.exit_code if task is not None else None
    unended = _unended_status(task, aborted, complete)
    records: dict[str, tuple[int, StepRecord]] = {}
    stage_times: dict[int, list[datetime]] = {}
    timed_out = task is not None and task.status is StepStatus.TIMED_OUT and not aborted
    for name, step in fold.steps.items():
        status = step.status or unended
        if timed_out and status is StepStatus.STOPPED:
            status = StepStatus.TIMED_OUT  # the runner was stopped by its task's timeout, as a night's step
        end = step.ended if step.status is not None else (task_end if complete else None)
        last = end or step.last_seen
        seconds = (last - step.started).total_seconds() if step.started and last else step.seconds
        # Unended and failed: the runner's container ended under it (its exit code is the task's).
        code = step.exit_code if step.status is not None else (exit_code if end is not None else None)
        records[name] = (
            step.order,
            StepRecord(max(0.0, seconds), max(step.attempts, 1), status, code, arn, "", end),
        )
        stage = _stage_of(name)
        if stage is not None:
            stage_times.setdefault(stage, []).extend(t for t in (step.started, last) if t is not None)
    # Without `stages` (an older deployment's payload), only the steps the stream names are known.
    planned = tuple(stages or ())
    skipped_stages: list[int] = []
    for each in planned:
        before = from_stage is not None and each.number is not None and each.number < from_stage
        if before and each.number is not None:
            skipped_stages.append(each.number)
        elif not complete:
            continue  # what the unread rest of the stream says is not known: not "not run"
        checks = [checks_step_name(each.number)] if each.checks and each.number is not None else []
        for name in [*each.steps, *checks]:
            if name not in records:
                status = StepStatus.SKIPPED if before else StepStatus.NOT_RUN
                records[name] = (len(fold.steps) + len(records), StepRecord(0.0, 0, status))
    stage_of = {name: each.number for each in planned for name in each.steps}
    ordered = sorted(
        records.items(), key=lambda item: (stage_of.get(item[0], _stage_of(item[0])) or 0, item[1][0])
    )
    is_checks = {name for name, _ in ordered if name == checks_step_name(_stage_of(name))}
    return StagesLog(
        stream=stream,
        steps={name: record for name, (_, record) in ordered if name not in is_checks},
        checks={name: record for name, (_, record) in ordered if name in is_checks},
        stages={
            str(stage): (max(times) - min(times)).total_seconds()
            for stage, times in sorted(stage_times.items())
            if times
        },
        skipped_stages=tuple(skipped_stages),
        results=fold.results,
        error_lines={name: step.error_line for name, step in fold.steps.items() if step.error_line},
        events=read.events,
        complete=complete,
        note=note,
    )


def run_clusters(
    emr: EMRClient, execution_arn: str, cluster_id: str | None, since: datetime, now: datetime
) -> list[ClusterUsage]:
    """Every cluster the execution launched (a failed launch costs too), by its execution tag."""
    ids = {
        found.cluster_id
        for found in find_clusters(
            emr,
            states=(*NOT_TERMINATED_STATES, *GONE_STATES),  # type: ignore[arg-type]
            matches=lambda tags: tags.get(TAG_EXECUTION_ARN) == execution_arn,
            created_after=since,
        )
    }
    if cluster_id:
        ids.add(cluster_id)
    usages = []
    for found_id in sorted(ids):
        cluster = describe(emr, found_id)
        if cluster is not None:
            usages.append(cluster_usage(emr, cluster, now))
    return usages


@dataclass(frozen=True)
class RunRecord:
    pipeline: str
    run_date: str
    outcome: str
    error: str | None
    run_seconds: float
    cluster_ready_seconds: float | None
    clusters: tuple[str, ...]
    cost: RunCost
    timeline: Timeline
    checks: dict[str, CheckResult] = field(default_factory=dict)
    failure: RunFailure | None = None
    #: a date of a batch: how much of its stages task's stream the record read
    stages_log: StagesLog | None = None

    def as_output(self) -> dict[str, Any]:
        read = {} if self.stages_log is None else {"stages_log": self.stages_log.as_output()}
        return {
            "pipeline": self.pipeline,
            "run_date": self.run_date,
            "outcome": self.outcome,
            "error": self.error,
            "run_seconds": round(self.run_seconds, 1),
            "cluster_ready_seconds": None
            if self.cluster_ready_seconds is None
            else round(self.cluster_ready_seconds, 1),
            "clusters": list(self.clusters),
            "cost": self.cost.as_output(),
            "stages": {name: round(value, 1) for name, value in self.timeline.stages.items()},
            "steps": {name: step.as_output() for name, step in self.timeline.steps.items()},
            "checks_tasks": {name: step.as_output() for name, step in self.timeline.checks.items()},
            "skipped_stages": list(self.timeline.skipped_stages),
            "failure": None if self.failure is None else self.failure.as_output(),
            "checks": {label: check.as_output() for label, check in self.checks.items()},
            **read,
        }


def _first_line(text: str) -> str:
    """A cause's first line; a Lambda's error cause is JSON whose errorMessage is what it said."""
    given = _json(text)
    said = str(given.get("errorMessage") or "") if given else text
    line = next((line.strip() for line in said.splitlines() if line.strip()), "")
    return line if len(line) <= ERROR_LINE_CHARS else line[: ERROR_LINE_CHARS - 3] + "..."


def first_error_line(logs: Any, log_group: str, stream: str) -> str:
    """The first line a failed step wrote to stderr that names an error, from its stream's head ("" if none).

    The runner writes each output line as a JSON record with its stream; one bounded read, since
    a step that failed usually says why early, and the record is still worth having without it.
    """
    try:
        page = logs.get_log_events(
            logGroupName=log_group, logStreamName=stream, startFromHead=True, limit=ERROR_LINE_EVENTS
        )
    except (ClientError, BotoCoreError):
        return ""
    for event in page.get("events", []):
        record = _json(event.get("message"))
        line = str(record.get("line") or "")
        if record.get("stream") == "stderr" and _ERROR_WORDS.search(line):
            return _first_line(line)
    return ""


def run_failure(
    timeline: Timeline,
    error: str | None,
    cause: str | None,
    logs: Any = None,
    runner_log: tuple[str, str, str] | None = None,
    *,
    error_lines: Mapping[str, str] | None = None,
) -> RunFailure | None:
    """What failed the run (None: it did not): its failing step, else the error the run caught.

    ``runner_log`` (log group, pipeline, container) lets the step's own first error line be read;
    ``error_lines`` are them already read (a date of a batch's steps share one stream).
    """
    if not error:
        return None
    failing = timeline.failing_step()
    if failing is None:
        return RunFailure(None, None, error, _first_line(cause or ""))
    name, step = failing
    line = ""
    if error_lines is not None:
        line = error_lines.get(name, "")
    elif logs is not None and runner_log is not None and step.task_arn:
        group, pipeline, container = runner_log
        line = first_error_line(logs, group, log_stream(pipeline, container, step.task_arn))
    if not line:
        line = f"exit code {step.exit_code}" if step.exit_code is not None else step.reason or error
    return RunFailure(name, step.exit_code, error, line, step.task_arn)


def record_run(
    *,
    pipeline: str,
    run_date: str,
    execution_arn: str,
    cluster_id: str | None,
    error: str | None,
    emr: EMRClient,
    cause: str | None = None,
    sfn: SFNClient,
    prices: RegionPrices,
    now: datetime,
    task_size: tuple[int, int] | None = None,
    logs: Any = None,
    runner_log: tuple[str, str] | None = None,
    stages: Iterable[PlannedStage] | None = None,
) -> RunRecord:
    """Read the execution's history and its clusters, and price them.

    With ``runner_log`` (the runner's log group and container), also the data checks' results, from
    their tasks' streams; a date of a batch's steps, checks and results from its stages task's,
    with ``stages`` (the pipeline's) naming the steps that task never ran.
    """
    timeline = read_timeline(execution_history(sfn, execution_arn), now, task_size)
    checks: dict[str, CheckResult] = {}
    if logs is not None and runner_log is not None and timeline.check_tasks:
        checks = run_checks(logs, runner_log[0], pipeline, runner_log[1], timeline.check_tasks)
    stages_log = None
    task = timeline.stages_task
    if logs is not None and runner_log is not None and task is not None and task.task_arn:
        stages_log = read_stages_log(
            logs,
            runner_log[0],
            log_stream(pipeline, runner_log[1], task.task_arn),
            task=task,
            from_stage=timeline.from_stage,
            aborted=timeline.aborted,
            stages=stages,
        )
        timeline = replace(
            timeline,
            steps=stages_log.steps,
            checks=stages_log.checks,
            stages=stages_log.stages,
            skipped_stages=stages_log.skipped_stages,
        )
        checks = stages_log.results
    clusters = run_clusters(emr, execution_arn, cluster_id, timeline.started, now)
    # The cluster the stages ran on (the last launch): its time to ready is what the run waited.
    ready = [cluster.ready_seconds for cluster in clusters if cluster.ready_seconds is not None]
    last = max(clusters, key=lambda cluster: cluster.created, default=None)
    return RunRecord(
        pipeline=pipeline,
        run_date=run_date,
        outcome="failed" if error else "succeeded",
        error=error,
        run_seconds=(now - timeline.started).total_seconds(),
        cluster_ready_seconds=last.ready_seconds if last is not None and ready else None,
        clusters=tuple(cluster.cluster_id for cluster in clusters),
        cost=run_cost(clusters, timeline.tasks, prices),
        timeline=timeline,
        checks=checks,
        failure=run_failure(
            timeline,
            error,
            cause,
            logs,
            (runner_log[0], pipeline, runner_log[1]) if runner_log is not None else None,
            error_lines=stages_log.error_lines if stages_log is not None else None,
        ),
        stages_log=stages_log,
    )


#: a batch's date whose execution never started (the batch failed or was stopped before its turn)
NOT_STARTED = "NOT_STARTED"


@dataclass(frozen=True)
class DateRun:
    """One date of a batch as its child execution ended: what DescribeExecution and its history say."""

    name: str
    run_date: str
    #: the child execution's status (SUCCEEDED, FAILED, TIMED_OUT, ABORTED), or NOT_STARTED
    status: str
    error: str | None
    #: from the child's start to its stop: what it held the shared cluster for
    seconds: float
    tasks: tuple[TaskUsage, ...] = ()


def child_arn(batch_arn: str, name: str) -> str:
    """A child's execution ARN: the batch's state machine (it is the same one), the child's name."""
    return f"{batch_arn.rsplit(':', 1)[0]}:{name}"


def read_date_run(
    sfn: SFNClient,
    batch_arn: str,
    name: str,
    *,
    pipeline: str,
    now: datetime,
    task_size: tuple[int, int] | None,
) -> DateRun:
    """A child's status, seconds and runner tasks (its own history, as its own record reads them)."""
    arn = child_arn(batch_arn, name)
    try:
        described = sfn.describe_execution(executionArn=arn)
    except ClientError as exc:
        if error_code(exc) != "ExecutionDoesNotExist":
            raise
        return DateRun(name, date_of_name(name, pipeline) or "", NOT_STARTED, None, 0.0)
    run_date = _json(described.get("input")).get("run_date")
    stopped = described.get("stopDate") or now
    timeline = read_timeline(execution_history(sfn, arn), now, task_size)
    return DateRun(
        name=name,
        run_date=run_date if isinstance(run_date, str) else date_of_name(name, pipeline) or "",
        status=str(described["status"]),
        error=described.get("error"),
        seconds=max(0.0, (stopped - described["startDate"]).total_seconds()),
        tasks=timeline.tasks,
    )


@dataclass(frozen=True)
class DateCost:
    """A date's line in its batch's record: how it ended and its share of the shared cluster."""

    run: DateRun
    #: its runner tasks (also in its own record's cost)
    tasks_usd: float
    #: the cluster's nodes for its own seconds, and its runner tasks
    own_usd: float
    #: its part, by its seconds, of what no date used (the start, the shutdown, the gaps)
    start_share_usd: float

    def as_output(self) -> dict[str, Any]:
        return {
            "run_date": self.run.run_date,
            "name": self.run.name,
            "status": self.run.status,
            "error": self.run.error,
            "seconds": round(self.run.seconds, 1),
            "tasks_usd": round(self.tasks_usd, 4),
            "own_usd": round(self.own_usd, 4),
            "start_share_usd": round(self.start_share_usd, 4),
        }


@dataclass(frozen=True)
class BatchRecord:
    """A batch's record: its run record (its cluster, and its dates' tasks), and each date's share."""

    record: RunRecord
    dates: tuple[DateCost, ...]
    #: what no date used, shared out in start_share_usd
    unused_usd: float

    def as_output(self) -> dict[str, Any]:
        return {
            **self.record.as_output(),
            "dates": [date.as_output() for date in self.dates],
            "unused_usd": round(self.unused_usd, 4),
        }


def record_batch(
    *,
    pipeline: str,
    run_date: str,
    execution_arn: str,
    cluster_id: str | None,
    error: str | None,
    cause: str | None,
    emr: EMRClient,
    sfn: SFNClient,
    prices: RegionPrices,
    now: datetime,
    runs: Iterable[str],
    task_size: tuple[int, int] | None = None,
) -> BatchRecord:
    """Price the batch's cluster(s) and split them over its dates by the seconds each child ran.

    Made after every child ended (the Map ran them one after another). The batch's cost is its
    clusters and every date's runner tasks, so the dates' shares add up to it; a date that never
    started has no seconds, so no share (unless none ran: then the cluster is shared out evenly).
    """
    started = read_timeline(execution_history(sfn, execution_arn, with_data=False), now).started
    date_runs = [
        read_date_run(sfn, execution_arn, name, pipeline=pipeline, now=now, task_size=task_size)
        for name in runs
    ]
    clusters = run_clusters(emr, execution_arn, cluster_id, started, now)
    nodes = run_cost(clusters, [], prices)
    tasks_usd = {run.name: run_cost([], run.tasks, prices).total_usd for run in date_runs}
    unused, shares = split_cluster_cost(
        nodes.total_usd,
        sum(cluster.seconds for cluster in clusters),
        {run.name: run.seconds for run in date_runs},
        tasks_usd,
    )
    ready = [cluster.ready_seconds for cluster in clusters if cluster.ready_seconds is not None]
    last = max(clusters, key=lambda cluster: cluster.created, default=None)
    timeline = Timeline(started=started)  # a batch runs no stage of its own: its dates do
    failed = [run for run in date_runs if run.status != "SUCCEEDED"]
    if error is None and failed:
        # The state machine fails the batch after this record ("Batch failed?"): say so here too.
        error = DATES_FAILED_ERROR
        cause = "dates not succeeded: " + ", ".join(f"{run.run_date} ({run.status})" for run in failed)
    record = RunRecord(
        pipeline=pipeline,
        run_date=run_date,
        outcome="failed" if error else "succeeded",
        error=error,
        run_seconds=(now - started).total_seconds(),
        cluster_ready_seconds=last.ready_seconds if last is not None and ready else None,
        clusters=tuple(cluster.cluster_id for cluster in clusters),
        cost=run_cost(clusters, [task for run in date_runs for task in run.tasks], prices),
        timeline=timeline,
        failure=run_failure(timeline, error, cause),
    )
    dates = tuple(
        DateCost(run, tasks_usd[run.name], share.own_usd, share.start_share_usd)
        for run, share in zip(date_runs, shares, strict=True)
    )
    return BatchRecord(record, dates, unused)
