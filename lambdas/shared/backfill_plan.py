"""A backfill's plan: which dates run on which cluster, and its modelled wall time and cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from lambdas.shared.cost import ClusterUsage, InstanceUsage, RegionPrices, RunCost, TaskUsage, run_cost

Mode = Literal["one cluster per date", "shared clusters"]
#: today's mode: each date its own execution and cluster, at most `concurrency` at once
ONE_CLUSTER_PER_DATE: Mode = "one cluster per date"
#: issue 22: at most `concurrency` clusters, each running its dates one after another, a date's stages
#: in one runner task
SHARED_CLUSTERS: Mode = "shared clusters"
# The stated timeline of a date (no AWS account here: nothing of it was measured on EMR).
#: CreateCluster to ready: EMR provisions, boots and bootstraps the nodes, 8-10 min as a rule (the
#: canary's model takes 9; see docs/backfill.md for the sources)
MODEL_CLUSTER_START_SECONDS = 9 * 60.0
#: a runner task's Fargate start (the README's modelled night, "What it costs"): a night pays one per
#: step and per stage's checks, a date on a shared cluster one for all its stages
MODEL_FARGATE_START_SECONDS = 45.0
#: a step's work on the cluster once its task runs (the README's modelled night: 2 minutes)
MODEL_STEP_SECONDS = 120.0
#: a stage's checks in one engine call once its task runs: a spark-sql start on the master (20 s, as
#: bench/README.md's model of what checks add) and the example's check queries (about 5 s)
MODEL_CHECKS_SECONDS = 25.0
#: TerminateCluster to TERMINATED (the canary's and the README's models)
MODEL_TERMINATE_SECONDS = 60.0
#: on a shared cluster, between one date's last task and the next date's first: the date's record
#: (a Lambda) and a few state transitions
MODEL_BETWEEN_DATES_SECONDS = 20.0
#: one cluster per date: an execution's end seen by the CLI (it polls a range every 15 s), the next
#: StartExecution and its Preflight
MODEL_NEXT_DATE_SECONDS = 30.0
# Only differences of times matter to the cost code; a fixed origin keeps a plan reproducible.
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


class BackfillPlanError(ValueError):
    """The plan cannot be made as asked (no dates, a concurrency below 1)."""


@dataclass(frozen=True)
class ClusterShape:
    """What a cluster of the pipeline runs on (pipeline.toml's [cluster]): its nodes for the whole cluster."""

    master_instance_type: str
    core_instance_type: str
    core_instance_count: int
    #: core nodes on Spot; run_cost prices them at On-Demand (an upper bound) and says so
    use_spot: bool = False


@dataclass(frozen=True)
class StageTime:
    """One stage of a date on the cluster: its steps side by side, then its checks."""

    stage: str
    #: each step's work on the cluster once its runner task runs (Fargate's start not included); the
    #: stage waits for the slowest
    step_seconds: tuple[float, ...]
    #: the stage's data checks after its steps, once their task runs (None: the stage has no checks)
    checks_seconds: float | None = None

    @property
    def seconds(self) -> float:
        """The stage's work on the cluster: its slowest step, then its checks."""
        return max(self.step_seconds, default=0.0) + (self.checks_seconds or 0.0)


@dataclass(frozen=True)
class Timeline:
    """A stated timeline of one date's run, the same for every date of the backfill.

    A date runs its stages in one of two shapes. As a night runs them (one cluster per date): a
    runner task per step and one per stage's checks, each paying its Fargate start while the cluster
    waits. As a date of a batch runs them (shared clusters): ONE runner task for the whole date, the
    pipeline folder run stage by stage over SSH, so one Fargate start and then every stage back to back.
    """

    #: CreateCluster to the first stage: EMR's start, and the ClusterStatus poll that sees it ready
    cluster_start_seconds: float
    stages: tuple[StageTime, ...]
    #: a runner task's start on Fargate, before its first command reaches the cluster
    fargate_start_seconds: float
    #: TerminateCluster to TERMINATED: every node is billed until EMR has shut it down
    terminate_seconds: float
    #: on a shared cluster, from one date's last task to the next date's first (the date's record,
    #: the next date's variables); the cluster is up and billed, and idle
    between_dates_seconds: float
    #: one cluster per date: from an execution's end to the next date's CreateCluster in its slot
    #: (the CLI's poll of the range, StartExecution, Preflight); no cluster of that slot is billed
    next_date_seconds: float
    #: the runner task's size (infra.runner_task.RunnerTask: 256 CPU units, 512 MiB)
    runner_vcpu: float = 0.25
    runner_gb: float = 0.5

    @property
    def date_seconds(self) -> float:
        """One date's stages as a night runs them, on a cluster that is ready.

        Each stage's slowest step task, then its checks task, each task's Fargate start included.
        """
        return sum(
            self.fargate_start_seconds * (1 + (stage.checks_seconds is not None)) + stage.seconds
            for stage in self.stages
        )

    @property
    def shared_date_seconds(self) -> float:
        """One date's stages as a date of a batch runs them: one Fargate start, every stage back to back."""
        return self.fargate_start_seconds + sum(stage.seconds for stage in self.stages)

    def tasks(self, run_date: str) -> list[TaskUsage]:
        """The date's runner tasks as a night starts them (one a step, one a stage's checks)."""
        return [
            TaskUsage(
                f"{run_date} stage {stage.stage}",
                self.runner_vcpu,
                self.runner_gb,
                self.fargate_start_seconds + seconds,
            )
            for stage in self.stages
            for seconds in (
                *stage.step_seconds,
                *(() if stage.checks_seconds is None else (stage.checks_seconds,)),
            )
        ]

    def shared_tasks(self, run_date: str) -> list[TaskUsage]:
        """The date's one runner task on a shared cluster (`Run stages`), for all its stages' time."""
        return [TaskUsage(f"{run_date} stages", self.runner_vcpu, self.runner_gb, self.shared_date_seconds)]


@dataclass(frozen=True)
class DateShare:
    """One date's part of its cluster's cost: its own time and tasks, and its share of the start."""

    run_date: str
    #: the date's stages on the cluster
    seconds: float
    #: the cluster's nodes for the date's own seconds, and the date's runner tasks
    own_usd: float
    #: the date's part of what no date used (start, shutdown, the gaps between dates), by its seconds
    start_share_usd: float

    @property
    def total_usd(self) -> float:
        return self.own_usd + self.start_share_usd


@dataclass(frozen=True)
class Batch:
    """One cluster of the plan and the dates it runs, one after another."""

    cluster: int
    dates: tuple[str, ...]
    #: when its CreateCluster comes, in seconds after the backfill starts
    begins_seconds: float
    #: CreateCluster to TERMINATED: how long EMR bills its nodes
    cluster_seconds: float
    #: the cluster's nodes and every date's runner tasks, as run_cost prices them
    cost: RunCost
    #: the cluster's cost for the time no date used: its start, its shutdown, the gaps between dates
    shared_usd: float
    shares: tuple[DateShare, ...]

    @property
    def ends_seconds(self) -> float:
        return self.begins_seconds + self.cluster_seconds


@dataclass(frozen=True)
class BackfillPlan:
    """The batches of one mode, and what they take and cost by the model."""

    mode: Mode
    concurrency: int
    batches: tuple[Batch, ...]

    @property
    def cluster_starts(self) -> int:
        return len(self.batches)

    @property
    def wall_seconds(self) -> float:
        """From the first CreateCluster until the last cluster is TERMINATED."""
        return max(batch.ends_seconds for batch in self.batches) - min(b.begins_seconds for b in self.batches)

    @property
    def cost_usd(self) -> float:
        return sum(batch.cost.total_usd for batch in self.batches)

    @property
    def shares(self) -> tuple[DateShare, ...]:
        return tuple(share for batch in self.batches for share in batch.shares)

    @property
    def notes(self) -> tuple[str, ...]:
        """The cost code's notes (Spot at On-Demand, a price missing), each once."""
        return tuple(dict.fromkeys(note for batch in self.batches for note in batch.cost.notes))


def modelled_timeline(
    stages: Sequence[tuple[str, int, bool]],
    *,
    cluster_start_seconds: float = MODEL_CLUSTER_START_SECONDS,
    step_seconds: float = MODEL_STEP_SECONDS,
) -> Timeline:
    """The stated timeline for a pipeline's stages, each given as (stage, number of steps, has checks)."""
    return Timeline(
        cluster_start_seconds=cluster_start_seconds,
        stages=tuple(
            StageTime(stage, (step_seconds,) * steps, MODEL_CHECKS_SECONDS if checks else None)
            for stage, steps, checks in stages
        ),
        fargate_start_seconds=MODEL_FARGATE_START_SECONDS,
        terminate_seconds=MODEL_TERMINATE_SECONDS,
        between_dates_seconds=MODEL_BETWEEN_DATES_SECONDS,
        next_date_seconds=MODEL_NEXT_DATE_SECONDS,
    )


def shared_batches(dates: Sequence[str], concurrency: int) -> list[tuple[str, ...]]:
    """The dates in order, cut into at most `concurrency` contiguous runs whose sizes differ by one at most.

    The longer runs come first (7 dates at 3: 3, 2, 2), so the backfill's first dates are not the
    ones that wait longest.
    """
    _check(dates, concurrency)
    count = min(concurrency, len(dates))
    size, longer = divmod(len(dates), count)
    batches: list[tuple[str, ...]] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < longer else 0)
        batches.append(tuple(dates[start:end]))
        start = end
    return batches


def one_cluster_per_date(
    dates: Sequence[str], concurrency: int, timeline: Timeline, shape: ClusterShape, prices: RegionPrices
) -> BackfillPlan:
    """Today's deployed backfill: a cluster per date, the next date starting as a slot frees.

    As runner.ranges.run_range starts them: in date order, at most `concurrency` executions at once;
    with every date taking the same time that is waves of `concurrency` dates.
    """
    _check(dates, concurrency)
    slots = [0.0] * min(concurrency, len(dates))
    batches = []
    for number, run_date in enumerate(dates, 1):
        slot = min(range(len(slots)), key=lambda index: (slots[index], index))
        batch = _batch(
            number, (run_date,), slots[slot], timeline=timeline, shared=False, shape=shape, prices=prices
        )
        batches.append(batch)
        # Preflight counts TERMINATING as gone: the slot frees when the execution ends, before EMR
        # has shut the cluster down.
        execution_ends = batch.begins_seconds + timeline.cluster_start_seconds + timeline.date_seconds
        slots[slot] = execution_ends + timeline.next_date_seconds
    return BackfillPlan(ONE_CLUSTER_PER_DATE, concurrency, tuple(batches))


def shared_clusters(
    dates: Sequence[str], concurrency: int, timeline: Timeline, shape: ClusterShape, prices: RegionPrices
) -> BackfillPlan:
    """Issue 22's backfill: at most `concurrency` clusters started at once, each running its dates in turn.

    A date's stages run in one runner task (the timeline's shared shape), as a date of a batch does.
    """
    batches = tuple(
        _batch(number, run_dates, 0.0, timeline=timeline, shared=True, shape=shape, prices=prices)
        for number, run_dates in enumerate(shared_batches(dates, concurrency), 1)
    )
    return BackfillPlan(SHARED_CLUSTERS, concurrency, batches)


def _check(dates: Sequence[str], concurrency: int) -> None:
    if not dates:
        raise BackfillPlanError("a backfill needs at least one date")
    if concurrency < 1:
        raise BackfillPlanError(f"concurrency {concurrency}: expected 1 or more")


def _batch(
    number: int,
    dates: tuple[str, ...],
    begins: float,
    *,
    timeline: Timeline,
    shared: bool,
    shape: ClusterShape,
    prices: RegionPrices,
) -> Batch:
    """One cluster running `dates` one after another, priced by run_cost and split by the time each used.

    `shared`: each date is a date of a batch (one runner task for its stages), else a night's run.
    """
    date_seconds = timeline.shared_date_seconds if shared else timeline.date_seconds
    date_tasks = timeline.shared_tasks if shared else timeline.tasks
    used = date_seconds * len(dates)
    idle = timeline.cluster_start_seconds + timeline.between_dates_seconds * (len(dates) - 1)
    seconds = idle + used + timeline.terminate_seconds
    cluster = _cluster_usage(f"cluster {number}", shape, begins, seconds, timeline.cluster_start_seconds)
    nodes = run_cost([cluster], [], prices)
    cost = run_cost([cluster], [t for d in dates for t in date_tasks(d)], prices)
    idle_usd, shares = split_cluster_cost(
        nodes.total_usd,
        seconds,
        {run_date: date_seconds for run_date in dates},
        {run_date: run_cost([], date_tasks(run_date), prices).total_usd for run_date in dates},
    )
    return Batch(number, dates, begins, seconds, cost, idle_usd, shares)


def split_cluster_cost(
    nodes_usd: float, cluster_seconds: float, used: Mapping[str, float], tasks_usd: Mapping[str, float]
) -> tuple[float, tuple[DateShare, ...]]:
    """What no date used (start, shutdown, gaps), and each date's share of a cluster it shared.

    `nodes_usd`: the cluster's nodes for its `cluster_seconds` (run_cost of the cluster alone);
    `used`: the seconds each date ran on it, in the order they ran; `tasks_usd`: each date's runner
    tasks. A date's share: the nodes for its own seconds, its tasks, and of what no date used a part
    by its seconds. The shares add up to the nodes' cost and every task's. Planned or recorded
    seconds alike: the batch's record will split a measured cluster so.
    """
    # Per second, the nodes cost the same all the cluster's life (the one-minute minimum is far below).
    per_second = nodes_usd / cluster_seconds if cluster_seconds else 0.0
    total = sum(used.values())
    shared = nodes_usd - per_second * total
    shares = tuple(
        DateShare(
            run_date,
            seconds,
            per_second * seconds + tasks_usd.get(run_date, 0.0),
            shared * seconds / total if total else shared / len(used),
        )
        for run_date, seconds in used.items()
    )
    return shared, shares


def _cluster_usage(
    name: str, shape: ClusterShape, begins: float, seconds: float, ready: float
) -> ClusterUsage:
    """A modelled cluster as EMR would report it: every node up from CreateCluster to TERMINATED."""
    core_market = "SPOT" if shape.use_spot else "ON_DEMAND"
    instances = (
        InstanceUsage(name, shape.master_instance_type, "ON_DEMAND", seconds),
        *[InstanceUsage(name, shape.core_instance_type, core_market, seconds)] * shape.core_instance_count,
    )
    created = _ORIGIN + timedelta(seconds=begins)
    return ClusterUsage(
        name,
        created,
        created + timedelta(seconds=ready),
        created + timedelta(seconds=seconds),
        seconds,
        instances,
    )
