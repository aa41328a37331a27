"""A deployed backfill on shared clusters: its batches, their starts, each date's line, the dry run's plan."""

from __future__ import annotations

import importlib
import json
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import botocore.exceptions

from runner.dates import DateResult, date_line, format_duration
from runner.deployed.discovery import Deployment, Refused
from runner.deployed.events import EXIT_RUN_FAILED, EXIT_RUN_STOPPED
from runner.deployed.run_states import MAX_BATCH_DATES
from runner.deployed.runs import MAX_RERUNS, Execution, describe, list_runs, stop_and_wait
from runner.errors import NightshiftError
from runner.model import Pipeline
from runner.ranges import RangeEnd

METASTORE_CLUSTER = "cluster"
#: why a `metastore = "cluster"` pipeline backfills one cluster per date (docs/backfill.md)
CLUSTER_METASTORE_WHY = (
    'metastore = "cluster" keeps the tables in the cluster\'s own metastore,'
    " and a shared cluster would carry one date's tables into the next"
)


def batch_name(pipeline: str, first: str, last: str, attempt: int = 1) -> str:
    """`<pipeline>-batch-<first>-<last>`, then `-r2`, `-r3`, ... when taken (docs/backfill.md)."""
    base = f"{pipeline}-batch-{first}-{last}"
    return base if attempt == 1 else f"{base}-r{attempt}"


def batch_range(pipeline: str, name: str) -> tuple[str, str] | None:
    """The first and last date of a batch from its execution name; None for any other run."""
    match = re.fullmatch(
        re.escape(pipeline) + r"-batch-(\d{4}-\d{2}-\d{2})-(\d{4}-\d{2}-\d{2})(?:-r\d+)?", name
    )
    return (match[1], match[2]) if match else None


def plan_module() -> ModuleType | None:
    """lambdas/shared/backfill_plan.py, or None where it is not (the runner image holds no lambdas/)."""
    try:
        # Only here, on the operator's machine, as runner/deployed/canary.py's canary_cost.
        return importlib.import_module("lambdas.shared.backfill_plan")
    except ImportError:
        return None


NO_PLAN = (
    "shared clusters need lambdas/shared/backfill_plan.py (run from the project checkout);"
    " add --one-cluster-per-date to run a cluster per date"
)


def cut_batches(dates: Sequence[str], concurrency: int) -> list[tuple[str, ...]]:
    """The dates in contiguous batches (backfill_plan.shared_batches), none over MAX_BATCH_DATES.

    At most `concurrency` batches unless that many cannot hold the dates: then as many as needed,
    the later ones started as a slot frees.
    """
    module = plan_module()
    if module is None:
        raise Refused(NO_PLAN)
    count = max(concurrency, math.ceil(len(dates) / MAX_BATCH_DATES))
    batches: list[tuple[str, ...]] = module.shared_batches(list(dates), count)
    return batches


@dataclass
class Batch:
    """One batch execution of a backfill: its dates, each date's child name, what has ended."""

    name: str
    dates: tuple[str, ...]
    #: each date's child execution name (check_startable's: `<pipeline>-<date>`, `-r2` with --rerun)
    children: dict[str, str]
    execution: Execution | None = None
    results: dict[str, DateResult] = field(default_factory=dict)
    #: its execution has ended (its cluster terminated, its record made), as the last poll saw it
    ended: bool = False

    @property
    def shown(self) -> str:
        return f"{self.dates[0]}..{self.dates[-1]}" if len(self.dates) > 1 else self.dates[0]


def name_batches(deployment: Deployment, cut: list[tuple[str, ...]], children: dict[str, str]) -> list[Batch]:
    """Each batch with the first free name of its range (a rerun's batch takes `-r2`, ...)."""
    named = []
    for dates in cut:
        for attempt in range(1, MAX_RERUNS + 1):
            name = batch_name(deployment.pipeline, dates[0], dates[-1], attempt)
            if describe(deployment, name) is None:
                break
        else:  # pragma: no cover - 99 batches of one range is a loop gone wrong
            raise Refused(f"{name}: too many batches of {dates[0]}..{dates[-1]}")
        named.append(Batch(name, dates, {d: children[d] for d in dates}))
    return named


def batch_input(batch: Batch, from_stage: int | None) -> dict[str, Any]:
    """The batch execution's input (docs/backfill.md): its first date, its dates' names, from_stage."""
    given: dict[str, Any] = {
        "run_date": batch.dates[0],
        "batch": {"runs": [{"run_date": d, "name": batch.children[d]} for d in batch.dates]},
    }
    if from_stage is not None:
        given["from_stage"] = from_stage
    return given


def start_batch(deployment: Deployment, batch: Batch, from_stage: int | None) -> Execution:
    """StartExecution of the batch: one execution, one cluster, its dates one after another."""
    try:
        deployment.clients.sfn.start_execution(
            stateMachineArn=deployment.state_machine_arn,
            name=batch.name,
            input=json.dumps(batch_input(batch, from_stage)),
        )
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
            raise Refused(
                f"{batch.name} was started meanwhile by someone else: follow it with --follow"
            ) from error
        raise
    execution = describe(deployment, batch.name)
    if execution is None:  # pragma: no cover - Step Functions answers describe right after start
        raise NightshiftError(f"{batch.name} was started but cannot be described")
    batch.execution = execution
    return execution


def poll_batch(
    deployment: Deployment, batch: Batch, date_result: Callable[[Execution], DateResult]
) -> list[DateResult]:
    """The dates of the batch that ended since the last poll, in date order, read from the children.

    The batch first: a child not there after its batch ended never will be (its date was not run).
    """
    now = describe(deployment, batch.name) or batch.execution
    batch.ended = now is not None and now.status != "RUNNING"
    ended = []
    for run_date in batch.dates:
        if run_date in batch.results:
            continue
        child = describe(deployment, batch.children[run_date])
        if child is not None and child.status != "RUNNING":
            # Its line and row under the batch's date for it, whatever its history says.
            result = replace(date_result(child), run_date=run_date)
        elif child is None and now is not None and now.status != "RUNNING":
            code = EXIT_RUN_STOPPED if now.status == "ABORTED" else EXIT_RUN_FAILED
            result = DateResult(run_date, code, 0.0, f"not started: {batch.name} {_status(now)}")
        else:
            continue
        batch.results[run_date] = result
        ended.append(result)
    return ended


def pending(deployment: Deployment, batches: Sequence[Batch]) -> dict[str, str]:
    """What the range table says of a date of a started batch that has not ended."""
    said = {}
    for batch in batches:
        for run_date in batch.dates:
            if run_date in batch.results:
                continue
            child = describe(deployment, batch.children[run_date])
            said[run_date] = f"waiting in {batch.name}" if child is None else f"running ({child.name})"
    return said


def _status(execution: Execution) -> str:
    return execution.status.lower().replace("_", " ")


@dataclass
class SharedRange:
    """How a backfill on shared clusters goes: batches started as slots free, a line as each date ends."""

    deployment: Deployment
    batches: list[Batch]
    at_once: int
    from_stage: int | None
    say: Callable[[str], None]
    date_result: Callable[[Execution], DateResult]
    interrupted: Callable[[], bool]
    wait: Callable[[], None]

    def run(self, planned: list[str]) -> RangeEnd[Execution]:
        """The range's end, as runner.ranges.run_range's (`pending`: what each date not ended is doing)."""
        end: RangeEnd[Execution] = RangeEnd(planned)
        # A batch with its execution was started before (a reattach): it is only polled.
        queue = [batch for batch in self.batches if batch.execution is None]
        running = [batch for batch in self.batches if batch.execution is not None]
        while True:
            while queue and len(running) < self.at_once and not self.interrupted():
                batch = queue[0]
                try:
                    start_batch(self.deployment, batch, self.from_stage)
                except NightshiftError as error:
                    end.failure = error
                    break
                queue.pop(0)
                running.append(batch)
                self.say(f"batch {batch.name} started: {len(batch.dates)} dates, {batch.shown}, one cluster")
            for batch in list(running):
                for result in poll_batch(self.deployment, batch, self.date_result):
                    end.results.append(result)
                    self.say(date_line(result))
                if len(batch.results) == len(batch.dates) and batch.ended:
                    # After its last date the batch still terminates its cluster: a range ends with
                    # its clusters gone, as a night's follow ends after its TerminateCluster.
                    running.remove(batch)
            if self.interrupted():
                end.interrupted = True
                break
            if end.failure is not None or not (running or queue):
                break
            self.wait()
        end.running = [b.execution for b in running if b.execution is not None]
        end.not_started = [d for b in queue for d in b.dates]
        end.pending = pending(self.deployment, running)
        return end


def reattached(
    deployment: Deployment,
    dates: Sequence[str],
    running: Sequence[Execution],
    latest: Callable[[str], Execution],
) -> list[Batch]:
    """A range to follow again: its running batches, then each other date's latest run, in date order.

    A batch keeps only its dates of the range (started or still waiting in it); a date outside
    every running batch is polled as a batch of one date, its latest run.
    """
    wanted = set(dates)
    batches = []
    for execution in running:
        runs = [(d, name) for d, name in batch_runs(deployment, execution) if d in wanted]
        if runs:
            batches.append(Batch(execution.name, tuple(d for d, _ in runs), dict(runs), execution))
    held = {d for batch in batches for d in batch.dates}
    for run_date in dates:
        if run_date not in held:
            # Its own run (or a child of a batch that has ended): polled as a batch of one date.
            execution = latest(run_date)
            batches.append(Batch(execution.name, (run_date,), {run_date: execution.name}, execution))
    return sorted(batches, key=lambda batch: batch.dates[0])


# --- the dry run ---------------------------------------------------------------------------------


def plan_lines(
    pipeline: Pipeline,
    region: str,
    dates: Sequence[str],
    concurrency: int,
    batches: Sequence[Batch] | None,
) -> list[str]:
    """Both plans' modelled wall time and cost side by side (only today's when `batches` is None)."""
    module = plan_module()
    if module is None:
        return ["cost unknown: no lambdas/shared/backfill_plan.py here (run from the project checkout)"]
    from lambdas.shared.cost import region_prices  # noqa: PLC0415

    profile = pipeline.config.cluster
    shape = module.ClusterShape(
        profile.master_instance_type,
        profile.core_instance_type_for(1),
        profile.core_instance_count,
        profile.use_spot,
    )
    stages = [(str(stage.number), len(stage.steps), bool(stage.checks)) for stage in pipeline.stages]
    timeline = module.modelled_timeline(stages)
    prices = region_prices(region)
    plans = [module.one_cluster_per_date(list(dates), concurrency, timeline, shape, prices)]
    if batches is not None:
        # The batches the start would make (MAX_BATCH_DATES may make more than `concurrency`).
        plans.append(module.shared_clusters(list(dates), len(batches), timeline, shape, prices))
    nodes = f"{shape.master_instance_type} + {shape.core_instance_count} x {shape.core_instance_type}"
    walls = [plans[0].wall_seconds]
    if batches is not None:
        walls.append(_in_turns(plans[1], concurrency, module.MODEL_NEXT_DATE_SECONDS))
    rows = [("", "clusters", "wall time", "cost")]
    rows += [
        (plan.mode, str(plan.cluster_starts), format_duration(wall), f"${plan.cost_usd:.2f}")
        for plan, wall in zip(plans, walls, strict=True)
    ]
    if len(plans) == 2:
        today, shared = plans
        rows.append(
            (
                "shared / one per date",
                "",
                f"{walls[1] / walls[0]:.2f}",
                f"{shared.cost_usd / today.cost_usd:.2f}" if today.cost_usd else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    table = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    notes = dict.fromkeys(note for plan in plans for note in plan.notes)
    return [
        f"by the model ({nodes} in {region}; a date's timeline is stated, not measured: docs/backfill.md):",
        *table,
        *notes,
    ]


def _in_turns(plan: Any, concurrency: int, next_seconds: float) -> float:
    """The plan's wall time when at most `concurrency` of its clusters run at once.

    More batches than that (MAX_BATCH_DATES): each later batch starts as one ends, as SharedRange does.
    """
    slots = [0.0] * min(concurrency, len(plan.batches))
    ends: list[float] = []
    for batch in plan.batches:
        slot = min(range(len(slots)), key=lambda index: (slots[index], index))
        ends.append(slots[slot] + float(batch.cluster_seconds))
        # The batch's execution ends once its cluster is terminated and its record made.
        slots[slot] = ends[-1] + next_seconds
    return max(ends)


# --- stop ----------------------------------------------------------------------------------------


def batches_of(deployment: Deployment, dates: Sequence[str], *, scan: int) -> list[Execution]:
    """The running batches among the newest `scan` runs that hold any of `dates` (any at all: every one)."""
    found = []
    for run in list_runs(deployment, scan):
        held = batch_range(deployment.pipeline, run.name)
        if run.status != "RUNNING" or held is None:
            continue
        if not dates or any(held[0] <= d <= held[1] for d in dates):
            found.append(run)
    return sorted(found, key=lambda run: run.name)


def batch_runs(deployment: Deployment, execution: Execution) -> list[tuple[str, str]]:
    """(date, child name) of every date of a batch, from its input."""
    given = json.loads(deployment.clients.sfn.describe_execution(executionArn=execution.arn)["input"])
    return [(str(run["run_date"]), str(run["name"])) for run in given["batch"]["runs"]]


def stop_batch(
    deployment: Deployment,
    execution: Execution,
    say: Callable[[str], None],
    *,
    poll: float,
    wait: float,
    interrupted: threading.Event,
) -> list[str]:
    """Stop the batch (first: it starts no next date), then its running date; the dates not started.

    Its cluster is left to the caller (runs.end_clusters): Step Functions runs no Catch on a stop.
    """
    sfn = deployment.clients.sfn
    runs = batch_runs(deployment, execution)
    stop_and_wait(deployment, execution, poll=poll, wait=wait, interrupted=interrupted)
    say(f"batch {execution.name} stopped")
    not_started = []
    for run_date, name in runs:
        child = describe(deployment, name)
        if child is None:
            not_started.append(run_date)
        elif child.status == "RUNNING":
            try:
                sfn.stop_execution(
                    executionArn=child.arn,
                    error="Nightshift.Stopped",
                    cause=f"its batch {execution.name} was stopped from the command line",
                )
            except botocore.exceptions.ClientError:
                # Ended meanwhile (a stopped parent may end its child itself): nothing to stop.
                if (describe(deployment, name) or child).status == "RUNNING":
                    raise
            say(f"run {child.name} stopped")
    return not_started
