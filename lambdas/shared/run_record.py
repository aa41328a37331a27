"""The record of a finished run: durations from the execution history, cost from EMR and Fargate."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.check_results import log_stream, read_checks
from lambdas.shared.clusters import (
    GONE_STATES,
    NOT_TERMINATED_STATES,
    TAG_EXECUTION_ARN,
    describe,
    find_clusters,
)
from lambdas.shared.cost import ClusterUsage, RegionPrices, RunCost, TaskUsage, cluster_usage, run_cost
from lambdas.shared.executions import execution_history

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_stepfunctions import SFNClient

# infra/workflow.py names the states so; tests/infra holds these equal to its functions.
STEP_STATE_PREFIX = "Run "
STAGE_STATE_PREFIX = "Stage "
# A stage's data checks task, after its steps: "Check Stage 30" (infra.workflow.checks_state_name).
CHECKS_STATE_PREFIX = "Check Stage "
_STAGE_STATE = re.compile(r"^Stage \d+$")
_TASK_END = frozenset({"TaskSucceeded", "TaskFailed", "TaskTimedOut"})


@dataclass(frozen=True)
class StepRecord:
    seconds: float
    attempts: int


@dataclass(frozen=True)
class Timeline:
    """What the execution history says about a run so far."""

    started: datetime
    stages: dict[str, float] = field(default_factory=dict)
    steps: dict[str, StepRecord] = field(default_factory=dict)
    tasks: tuple[TaskUsage, ...] = ()
    #: the ECS task of each stage's checks (its last attempt), in the order they ran
    check_tasks: tuple[str, ...] = ()


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


def read_timeline(
    events: Iterable[Mapping[str, Any]], now: datetime, task_size: tuple[int, int] | None = None
) -> Timeline:
    """Stage and step durations, step attempts and Fargate tasks, from the history's events.

    ``task_size`` (ECS cpu units, MiB) stands in for a task whose answer does not say its size.
    """
    state_of: dict[int, str] = {}
    entered: dict[str, datetime] = {}
    last_seen: dict[str, datetime] = {}
    attempts: dict[str, int] = {}
    submitted: dict[str, tuple[datetime, dict[str, Any]]] = {}
    tasks: list[TaskUsage] = []
    check_tasks: dict[str, str] = {}
    started = now
    stage = ""
    for event in events:
        kind, when = event["type"], event["timestamp"]
        if kind == "ExecutionStarted":
            started = when
        if kind.endswith("StateEntered"):
            name = _details(event).get("name", "")
            state_of[event["id"]] = name
            entered.setdefault(name, when)
        elif kind.endswith("StateExited"):
            name = _details(event).get("name", "")
            state_of[event["id"]] = ""
        else:
            previous = event.get("previousEventId")
            name = state_of.get(previous, "") if previous is not None else ""
            if kind.startswith("ParallelState") and stage:
                # A branch's last event precedes the Parallel's own (ParallelStateFailed after a step's).
                name = stage
            state_of[event["id"]] = name
        if not name:
            continue
        last_seen[name] = when
        if _STAGE_STATE.match(name):
            stage = name
        elif stage and name.startswith(STEP_STATE_PREFIX):
            # A failing step ends its stage without a ParallelStateExited.
            last_seen[stage] = when
        elif name.startswith(CHECKS_STATE_PREFIX):
            # A stage's checks are part of it: the next stage starts after them.
            last_seen[STAGE_STATE_PREFIX + name.removeprefix(CHECKS_STATE_PREFIX)] = when
        if name.startswith(CHECKS_STATE_PREFIX):
            step = f"{name.removeprefix(CHECKS_STATE_PREFIX)}_checks"
        elif name.startswith(STEP_STATE_PREFIX):
            step = name.removeprefix(STEP_STATE_PREFIX)
        else:
            continue
        if kind == "TaskScheduled":
            attempts[step] = attempts.get(step, 0) + 1
        elif kind == "TaskSubmitted":
            answer = _json(_details(event).get("output"))
            task = (answer.get("Tasks") or answer.get("tasks") or [{}])[0]
            submitted[step] = (when, task)
            if name.startswith(CHECKS_STATE_PREFIX) and (task.get("TaskArn") or task.get("taskArn")):
                check_tasks[name] = str(task.get("TaskArn") or task.get("taskArn"))
        elif kind in _TASK_END and step in submitted:
            details = _details(event)
            task = _json(details.get("output") or details.get("cause")) or submitted[step][1]
            tasks.append(_task_usage(step, task, submitted.pop(step)[0], when, task_size))
    seconds = {
        name: (last_seen[name] - entered[name]).total_seconds() for name in entered if name in last_seen
    }
    return Timeline(
        started=started,
        stages={
            name.removeprefix(STAGE_STATE_PREFIX): value
            for name, value in seconds.items()
            if _STAGE_STATE.match(name)
        },
        steps={
            name.removeprefix(STEP_STATE_PREFIX): StepRecord(
                value, attempts.get(name.removeprefix(STEP_STATE_PREFIX), 0)
            )
            for name, value in seconds.items()
            if name.startswith(STEP_STATE_PREFIX)
        },
        tasks=tuple(tasks),
        check_tasks=tuple(check_tasks.values()),
    )


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
            count, stored = record.get("count"), record.get("stored")
            table, query = record.get("failures_table"), record.get("failures_query")
            results[str(record.get("check", "?"))] = CheckResult(
                stage=record.get("stage"),
                severity=str(record.get("severity", "error")),
                status=str(record.get("status", "")),
                count=count if isinstance(count, int) and not isinstance(count, bool) else None,
                failures_table=table if isinstance(table, str) else None,
                stored=stored if isinstance(stored, int) and not isinstance(stored, bool) else 0,
                failures_query=query if isinstance(query, str) else None,
            )
    return results


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

    def as_output(self) -> dict[str, Any]:
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
            "steps": {
                name: {"seconds": round(step.seconds, 1), "attempts": step.attempts}
                for name, step in self.timeline.steps.items()
            },
            "checks": {label: check.as_output() for label, check in self.checks.items()},
        }


def record_run(
    *,
    pipeline: str,
    run_date: str,
    execution_arn: str,
    cluster_id: str | None,
    error: str | None,
    emr: EMRClient,
    sfn: SFNClient,
    prices: RegionPrices,
    now: datetime,
    task_size: tuple[int, int] | None = None,
    logs: Any = None,
    runner_log: tuple[str, str] | None = None,
) -> RunRecord:
    """Read the execution's history and its clusters, and price them.

    With ``runner_log`` (the runner's log group and container), also the data checks' results, from
    their tasks' streams.
    """
    timeline = read_timeline(execution_history(sfn, execution_arn), now, task_size)
    checks: dict[str, CheckResult] = {}
    if logs is not None and runner_log is not None and timeline.check_tasks:
        checks = run_checks(logs, runner_log[0], pipeline, runner_log[1], timeline.check_tasks)
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
    )
