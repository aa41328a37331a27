"""A deployed backfill modelled (issue 22): one cluster per date against shared clusters, side by side.

Nothing runs: the plan (lambdas/shared/backfill_plan.py) cuts the dates into batches and prices
each cluster with the project's own cost code (lambdas/shared/cost.py's run_cost and the shipped
price table), from a stated timeline of a date (its figures: the MODEL_* constants there, and
docs/backfill.md). A date on a shared cluster runs its stages in one runner task (one Fargate
start); one cluster per date runs them as a night does (a task per step and per stage's checks).

    .venv/bin/python bench/backfill_model.py
    .venv/bin/python bench/backfill_model.py --dates 30 --concurrency 3 --start-minutes 10 --step-seconds 30
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lambdas.shared.backfill_plan import (  # noqa: E402
    MODEL_BETWEEN_DATES_SECONDS,
    MODEL_CHECKS_SECONDS,
    MODEL_CLUSTER_START_SECONDS,
    MODEL_FARGATE_START_SECONDS,
    MODEL_NEXT_DATE_SECONDS,
    MODEL_STEP_SECONDS,
    MODEL_TERMINATE_SECONDS,
    BackfillPlan,
    ClusterShape,
    Timeline,
    modelled_timeline,
    one_cluster_per_date,
    shared_clusters,
)
from lambdas.shared.cost import RegionPrices, region_prices  # noqa: E402
from runner.model import Pipeline, load_pipeline  # noqa: E402

#: the issue's goal: shared clusters at most this share of one cluster per date, in cost and in wall time
GOAL = 0.5


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def pipeline_stages(pipeline: Pipeline) -> list[tuple[str, int, bool]]:
    """The pipeline's stages as the model takes them: (stage, number of steps, has checks)."""
    return [(str(stage.number), len(stage.steps), bool(stage.checks)) for stage in pipeline.stages]


def cluster_shape(pipeline: Pipeline) -> ClusterShape:
    profile = pipeline.config.cluster
    return ClusterShape(
        profile.master_instance_type,
        profile.core_instance_type,
        profile.core_instance_count,
        profile.use_spot,
    )


def run_dates(first: date, count: int) -> list[str]:
    return [(first + timedelta(days=offset)).isoformat() for offset in range(count)]


def plans(
    dates: list[str], concurrency: int, timeline: Timeline, shape: ClusterShape, prices: RegionPrices
) -> tuple[BackfillPlan, BackfillPlan]:
    return (
        one_cluster_per_date(dates, concurrency, timeline, shape, prices),
        shared_clusters(dates, concurrency, timeline, shape, prices),
    )


def table(
    counts: list[int],
    concurrency: int,
    timeline: Timeline,
    shape: ClusterShape,
    prices: RegionPrices,
    first: date,
) -> list[str]:
    """The side-by-side table, one row per mode and number of dates."""
    lines = [
        "| dates | mode | clusters | wall time | cost | shared / one per date: cost | wall time |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count in counts:
        today, shared = plans(run_dates(first, count), concurrency, timeline, shape, prices)
        lines.append(
            f"| {count} | {today.mode} | {today.cluster_starts} | {duration(today.wall_seconds)}"
            f" | ${today.cost_usd:.2f} | | |"
        )
        lines.append(
            f"| {count} | {shared.mode} | {shared.cluster_starts} | {duration(shared.wall_seconds)}"
            f" | ${shared.cost_usd:.2f} | {shared.cost_usd / today.cost_usd:.2f}"
            f" | {shared.wall_seconds / today.wall_seconds:.2f} |"
        )
    return lines


def ratios(
    count: int, concurrency: int, timeline: Timeline, shape: ClusterShape, prices: RegionPrices, first: date
) -> tuple[float, float]:
    today, shared = plans(run_dates(first, count), concurrency, timeline, shape, prices)
    return shared.cost_usd / today.cost_usd, shared.wall_seconds / today.wall_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", type=Path, default=ROOT / "sql" / "example")
    parser.add_argument("--dates", type=int, nargs="+", default=[7, 30, 90], help="numbers of dates to plan")
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--start-minutes", type=float, default=MODEL_CLUSTER_START_SECONDS / 60)
    parser.add_argument("--step-seconds", type=float, default=MODEL_STEP_SECONDS)
    parser.add_argument("--first-date", type=date.fromisoformat, default=date(2025, 6, 1))
    args = parser.parse_args()
    if args.concurrency < 1 or min(args.dates) < 1:
        parser.error("--concurrency and every --dates: 1 or more")

    pipeline = load_pipeline(args.pipeline)
    stages = pipeline_stages(pipeline)
    shape = cluster_shape(pipeline)
    prices = region_prices(args.region)
    types = dict.fromkeys((shape.master_instance_type, shape.core_instance_type))
    unpriced = [t for t in types if not prices.instance_hour(t)]
    if unpriced:
        parser.error(f"no {args.region} price for {', '.join(unpriced)} in lambdas/shared/prices.json")
    timeline = modelled_timeline(
        stages, cluster_start_seconds=args.start_minutes * 60, step_seconds=args.step_seconds
    )
    nodes = (
        f"{shape.master_instance_type} master + {shape.core_instance_count} {shape.core_instance_type} core"
    )
    spot = " (core on Spot, priced at On-Demand: an upper bound)" if shape.use_spot else ""
    print(f"pipeline {pipeline.name}: {nodes}{spot}; {prices.source}")
    described = "; ".join(
        f"stage {stage}: {steps} step{'s' if steps > 1 else ''}" + (" + checks" if checks else "")
        for stage, steps, checks in stages
    )
    night_tasks = len(timeline.tasks(args.first_date.isoformat()))
    print(
        f"a date (stated, not measured): cluster start {args.start_minutes:g} min; {described};"
        f" {args.step_seconds:g} s a step, {MODEL_CHECKS_SECONDS:g} s a stage's checks,"
        f" {MODEL_FARGATE_START_SECONDS:g} s a runner task's Fargate start;"
        f" one cluster per date, as a night: a task per step and per stage's checks ({night_tasks} tasks),"
        f" {duration(timeline.date_seconds)} of stages; shared clusters: one task for all the stages,"
        f" {duration(timeline.shared_date_seconds)} of stages;"
        f" terminate {MODEL_TERMINATE_SECONDS:g} s; {MODEL_BETWEEN_DATES_SECONDS:g} s between dates on a"
        f" shared cluster; {MODEL_NEXT_DATE_SECONDS:g} s from one execution's end to the next date's start"
    )
    print(f"\n--concurrency {args.concurrency}:\n")
    for line in table(args.dates, args.concurrency, timeline, shape, prices, args.first_date):
        print(line)

    count = 30 if 30 in args.dates else args.dates[0]
    today, shared = plans(run_dates(args.first_date, count), args.concurrency, timeline, shape, prices)
    print(f"\n{count} dates on shared clusters, and each date's record:\n")
    for batch in shared.batches:
        first = batch.shares[0]
        print(
            f"cluster {batch.cluster}: {batch.dates[0]}..{batch.dates[-1]} ({len(batch.dates)} dates),"
            f" up {duration(batch.cluster_seconds)}, ${batch.cost.total_usd:.2f}, of which"
            f" ${batch.shared_usd:.2f} its start, shutdown and gaps between dates; {first.run_date}:"
            f" ${first.total_usd:.3f} = ${first.own_usd:.3f} its own + ${first.start_share_usd:.3f} its share"
            " of the start"
        )
    alone = today.shares[0]
    print(
        f"one cluster per date, {alone.run_date}: ${alone.total_usd:.3f} = ${alone.own_usd:.3f} its own"
        f" + ${alone.start_share_usd:.3f} its cluster's start and shutdown"
    )

    print(f"\n{count} dates at --concurrency {args.concurrency}, shared / one per date (cost, wall time):\n")
    step_choices = (30.0, 60.0, 120.0)
    print("| cluster start | " + " | ".join(f"steps of {s:g} s" for s in step_choices) + " |")
    print("| ---: | " + " | ".join("---:" for _ in step_choices) + " |")
    for minutes in (8, 9, 10):
        cells = []
        for step in step_choices:
            varied = modelled_timeline(stages, cluster_start_seconds=minutes * 60, step_seconds=step)
            cost, wall = ratios(count, args.concurrency, varied, shape, prices, args.first_date)
            cells.append(f"{cost:.2f}, {wall:.2f}")
        print(f"| {minutes} min | " + " | ".join(cells) + " |")

    print(f"\nthe goal (both at most {GOAL:g}), {count} dates at --concurrency {args.concurrency}:")
    for minutes in (8, 9, 10):
        met = [
            step
            for step in range(0, 301, 5)
            if max(
                ratios(
                    count,
                    args.concurrency,
                    modelled_timeline(stages, cluster_start_seconds=minutes * 60, step_seconds=step),
                    shape,
                    prices,
                    args.first_date,
                )
            )
            <= GOAL
        ]
        if met:
            longest = modelled_timeline(stages, cluster_start_seconds=minutes * 60, step_seconds=met[-1])
            print(
                f"- cluster start {minutes} min: met while a step takes at most {met[-1]} s"
                f" (a date's stages {duration(longest.shared_date_seconds)} on a shared cluster,"
                f" {duration(longest.date_seconds)} as a night)"
            )
        else:
            print(f"- cluster start {minutes} min: not met even with steps of 0 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
