"""Refuse a run while its date already runs; make it wait while the pipeline runs as often as it may."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from lambdas.shared.clusters import (
    ALIVE_STATES,
    TAG_EXECUTION_ARN,
    TAG_PIPELINE,
    TAG_RUN_DATE,
    TAG_RUN_DATES,
    TAG_RUN_ID,
    FoundCluster,
    find_clusters,
    of_stack,
)
from lambdas.shared.errors import transient_on_throttling
from lambdas.shared.models import PreflightRequest

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import ExecutionListItemTypeDef

# Execution names: `<pipeline>-<date>` (the schedule's and the CLI's), reruns `<pipeline>-<date>-r2`, ...,
# checks-only runs `<pipeline>-<date>-checks`, `-checks-r2`, ...: each a run of its date, so a
# checks-only run never reads tables a run of its date is still writing (nor the reverse).
RERUN_SUFFIX = re.compile(r"(?:-checks)?(?:-r\d+)?")
# A canary run (`--deployed --canary`): `<pipeline>-<date>-canary`, `-canary-r2`, ... is no run of its
# date: it neither waits for nor holds up a night, nor counts against max_concurrent_runs (its own
# master-only cluster and table prove the deployment; runner.canary names it, a test holds
# the two equal).
CANARY_SUFFIX = re.compile(r"-canary(?:-r\d+)?")
# A batch of a shared-cluster backfill: `<pipeline>-batch-<first>-<last>`, `-r2`, ...: it holds every
# date of first..last until it ends (its children, `<pipeline>-<date>`, run on its cluster).
BATCH_NAME = re.compile(r"-batch-(\d{4}-\d{2}-\d{2})-(\d{4}-\d{2}-\d{2})(?:-r\d+)?")


@dataclass(frozen=True)
class DateRange:
    """The dates a run holds: one for a night, first..last for a batch."""

    first: date
    last: date

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last

    def overlap(self, other: DateRange) -> date | None:
        """The first date both hold, or None."""
        first = max(self.first, other.first)
        return first if first <= min(self.last, other.last) else None

    def __str__(self) -> str:
        return self.first.isoformat() if self.first == self.last else f"{self.first}..{self.last}"

    @classmethod
    def parse(cls, text: str) -> DateRange | None:
        """`<first>..<last>` (a batch cluster's nightshift:run-dates tag) or one date; None if neither."""
        first, _, last = text.partition("..")
        try:
            found = cls(date.fromisoformat(first), date.fromisoformat(last or first))
        except ValueError:
            return None
        return found if found.first <= found.last else None


@dataclass(frozen=True)
class PreflightResult:
    proceed: bool
    reason: str
    #: not now, but a slot may free: the state machine asks again (until the pipeline's queue_minutes)
    wait: bool = False


def _full(request: PreflightRequest, reason: str) -> PreflightResult:
    """Every slot taken: wait while the queue allows, then refuse saying how long the run waited."""
    if request.waited_seconds < request.queue_minutes * 60:
        return PreflightResult(proceed=False, wait=True, reason=reason)
    if request.waited_seconds:
        reason = f"no free slot after waiting {request.waited_seconds / 60:g} minutes: {reason}"
    return PreflightResult(proceed=False, reason=reason)


def date_of_name(name: str, pipeline: str) -> str | None:
    """The run date in an execution name, or None when the name does not follow the convention."""
    prefix = f"{pipeline}-"
    if not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    text, suffix = rest[:10], rest[10:]
    if suffix and not RERUN_SUFFIX.fullmatch(suffix):
        return None
    try:
        return date.fromisoformat(text).isoformat() if len(text) == 10 else None
    except ValueError:
        return None


def batch_range_of_name(name: str, pipeline: str) -> DateRange | None:
    """The dates a batch execution holds, read from its name; None for any other name."""
    prefix = f"{pipeline}-"
    if not name.startswith(prefix):
        return None
    found = BATCH_NAME.fullmatch(name[len(prefix) - 1 :])
    if found is None:
        return None
    return DateRange.parse(f"{found[1]}..{found[2]}")


def is_canary(name: str, pipeline: str) -> bool:
    """Whether an execution (or cluster run id) of the pipeline is a canary run."""
    return re.fullmatch(re.escape(pipeline) + r"-\d{4}-\d{2}-\d{2}" + CANARY_SUFFIX.pattern, name) is not None


def date_of_execution(sfn: SFNClient, execution: ExecutionListItemTypeDef, pipeline: str) -> str | None:
    """From the name, else from the input (a run started by hand under any name); None if neither says."""
    found = date_of_name(execution["name"], pipeline)
    if found is not None:
        return found
    text = sfn.describe_execution(executionArn=execution["executionArn"]).get("input", "{}")
    try:
        run_date = json.loads(text).get("run_date")
        return date.fromisoformat(run_date).isoformat() if isinstance(run_date, str) else None
    except (ValueError, AttributeError):
        return None


def _order(execution: ExecutionListItemTypeDef) -> tuple[datetime, str]:
    return execution["startDate"], execution["executionArn"]


def _runs(count: int) -> str:
    return "1 run" if count == 1 else f"{count} runs"


def _held(sfn: SFNClient, execution: ExecutionListItemTypeDef, pipeline: str) -> DateRange | None:
    """The dates a running execution holds: a batch's range by its name, else its one date."""
    batch = batch_range_of_name(execution["name"], pipeline)
    if batch is not None:
        return batch
    found = date_of_execution(sfn, execution, pipeline)
    return None if found is None else DateRange.parse(found)


def _cluster_dates(cluster: FoundCluster) -> DateRange | None:
    """A batch's cluster holds its whole range (nightshift:run-dates), a night's its run date."""
    return DateRange.parse(cluster.tags.get(TAG_RUN_DATES) or cluster.tags.get(TAG_RUN_DATE, ""))


def _refusal(pipeline: str, execution: ExecutionListItemTypeDef, held: DateRange, day: date) -> str:
    if batch_range_of_name(execution["name"], pipeline) is not None:
        return (
            f"batch {execution['name']} of pipeline {pipeline!r} holds {day} ({held}) and is still "
            f"running: {execution['executionArn']}"
        )
    return f"another run of pipeline {pipeline!r} for {day} is still running: {execution['executionArn']}"


@transient_on_throttling
def preflight(request: PreflightRequest, *, stack: str, emr: EMRClient, sfn: SFNClient) -> PreflightResult:
    """Proceed only if no other run of the date runs or has a cluster, and fewer than the maximum do.

    Another run of the date refuses at once: it is a duplicate. The maximum only makes the run wait
    (``wait``): runs end and clusters go, and a nightly run that fires while a backfill holds every
    slot should run after it, not be lost.

    "Fewer": other runs RUNNING, and this stack's alive clusters of the pipeline, each fewer than
    ``max_concurrent_runs``. A rerun (`<pipeline>-<date>-r2`) is a run of its date. Only this
    stack's clusters count: a dev and a prod stack in one account may run a pipeline of the same
    name side by side. A canary run (`<pipeline>-<date>-canary`) is no run: it always proceeds, and
    neither its execution nor its cluster counts for the others.

    A batch (``batch_dates``) holds every one of its dates, and is one run with one cluster; the
    runs of its dates started after it are its children (any other was refused here, the batch
    being ahead of it), so they take no slot of their own. A child (``batch_arn``) runs in its
    batch's slot on its batch's cluster: it counts neither, and only another run of its date
    refuses it.
    """
    mine_dates = DateRange(request.run_date, (request.batch_dates or [request.run_date])[-1])
    limit = request.max_concurrent_runs
    running: list[ExecutionListItemTypeDef] = []
    mine: tuple[datetime, str] | None = None
    paginator = sfn.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=request.state_machine_arn, statusFilter="RUNNING"):
        for execution in page["executions"]:
            if execution["executionArn"] == request.execution_arn:
                mine = _order(execution)
            elif execution["executionArn"] == request.batch_arn:
                continue  # a child's own batch: it holds the child's slot, cluster and date for it
            elif not is_canary(execution["name"], request.pipeline):
                running.append(execution)
    if is_canary(request.execution_arn.rsplit(":", 1)[-1], request.pipeline):
        return PreflightResult(proceed=True, reason="")
    if mine is None:
        # ListExecutions is eventually consistent: a run that has just started may be missing.
        mine = (
            sfn.describe_execution(executionArn=request.execution_arn)["startDate"],
            request.execution_arn,
        )
    # Only runs started before this one count: of two started together, the earlier proceeds and
    # the later is refused, instead of each refusing the other. A later one that got past its own
    # preflight counted this one, and its cluster counts below. Reasons name runs in start order.
    ahead = sorted((execution for execution in running if _order(execution) < mine), key=_order)
    held = {execution["executionArn"]: _held(sfn, execution, request.pipeline) for execution in ahead}
    for execution in ahead:
        dates = held[execution["executionArn"]]
        day = None if dates is None else mine_dates.overlap(dates)
        if dates is not None and day is not None:
            return PreflightResult(proceed=False, reason=_refusal(request.pipeline, execution, dates, day))
    if request.batch_arn is not None:
        ahead = []  # a child's slot is its batch's
    batches = [
        (_order(execution), dates)
        for execution in running
        if (dates := batch_range_of_name(execution["name"], request.pipeline)) is not None
    ]

    def child_of_a_batch(execution: ExecutionListItemTypeDef) -> bool:
        dates = held[execution["executionArn"]]
        return dates is not None and any(
            dates.first == dates.last and dates.first in batch and started < _order(execution)
            for started, batch in batches
        )

    counted = [execution for execution in ahead if not child_of_a_batch(execution)]
    if len(counted) >= limit:
        return _full(
            request,
            f"{_runs(len(counted))} of pipeline {request.pipeline!r} still running and "
            f"max_concurrent_runs is {limit}: " + ", ".join(e["executionArn"] for e in counted),
        )
    alive = [
        cluster
        for cluster in find_clusters(
            emr,
            states=ALIVE_STATES,
            matches=lambda tags: (
                of_stack(tags, stack)
                and tags.get(TAG_PIPELINE) == request.pipeline
                and not is_canary(tags.get(TAG_RUN_ID, ""), request.pipeline)
            ),
        )
        # A child runs on its batch's cluster: no cluster of another run of its date.
        if request.batch_arn is None or cluster.tags.get(TAG_EXECUTION_ARN) != request.batch_arn
    ]
    for cluster in alive:
        dates = _cluster_dates(cluster)
        day = None if dates is None else mine_dates.overlap(dates)
        if dates is not None and day is not None:
            what = f"{day}" if dates.first == dates.last else f"{dates} (holding {day})"
            return PreflightResult(
                proceed=False,
                reason=(
                    f"cluster {cluster.cluster_id} of pipeline {request.pipeline!r} for {what} is still "
                    f"alive ({cluster.state}); terminate it or wait for the sweeper"
                ),
            )
    if request.batch_arn is None and len(alive) >= limit:
        listed = ", ".join(f"{c.cluster_id} ({c.state})" for c in sorted(alive, key=lambda c: c.cluster_id))
        return _full(
            request,
            f"{len(alive)} cluster{'s' if len(alive) > 1 else ''} of pipeline {request.pipeline!r} "
            f"still alive and max_concurrent_runs is {limit}: {listed}; terminate "
            f"{'them' if len(alive) > 1 else 'it'} or wait for the sweeper",
        )
    return PreflightResult(proceed=True, reason="")
