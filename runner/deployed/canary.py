"""The canary run on AWS: its modelled cost, its name, and its clusters gone at the end."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from runner.canary import (
    CANARY_TABLE,
    canary_applications,
    canary_as_deployed,
    canary_database,
    canary_run_name,
)
from runner.catalog import METASTORE_GLUE
from runner.deployed.discovery import (
    Deployment,
)
from runner.deployed.follow import Detached, Follower, Polling, now
from runner.deployed.runs import GONE_CLUSTER_STATES, MAX_RERUNS, Execution, clusters_of, describe, start
from runner.errors import NightshiftError
from runner.execution import summary_lines
from runner.model import Pipeline
from runner.output import Output

# The cost model's timeline (minutes), for a master-only cluster of the pipeline's master type:
#: RunJobFlow to WAITING: EMR provisions, boots and bootstraps the node (8-10 min is usual)
MODEL_START_MINUTES = 9.0
#: the canary's one runner task: Fargate's start (about a minute), then five engine starts of about
#: half a minute on the master node (spark-sql for the row, its check and the drop; hive for the
#: read-back and for the .sh step's DESCRIBE FORMATTED) and a hadoop fs -ls
MODEL_TASK_MINUTES = 5.0
#: TerminateCluster to TERMINATED: the node is billed until it has shut down
MODEL_TERMINATE_MINUTES = 1.0
#: the runner task's size (infra.runner_task.RunnerTask; a test holds them equal)
RUNNER_TASK_VCPU = 0.25
RUNNER_TASK_GB = 0.5
#: Ctrl-C while following (as runner.deployed's EXIT_DETACHED)
EXIT_DETACHED = 130
#: the run succeeded but its cluster is not TERMINATED (as an AWS error's code)
EXIT_CLUSTER_LEFT = 1


@dataclass(frozen=True)
class Watch:
    """How a deployed command follows a run: where it says things, how often it asks, Ctrl-C."""

    output: Output
    polling: Polling
    interrupted: threading.Event
    count: Callable[[str], None]


@dataclass(frozen=True)
class CanaryCost:
    """The canary's modelled cost: a stated timeline priced at On-Demand rates."""

    instance_type: str
    minutes: float
    usd: float | None
    #: the timeline and prices the figure comes from, in a line
    model: str


def canary_cost(pipeline: Pipeline, region: str) -> CanaryCost:
    """What a canary costs by the model: its cluster's minutes at EC2 + EMR On-Demand, and its task.

    The price table is the Lambdas' (lambdas/shared/prices.json, which RecordRun prices runs with),
    read from the project checkout the operator runs the CLI in; without it the figure is unknown.
    """
    instance = pipeline.config.cluster.master_instance_type
    minutes = MODEL_START_MINUTES + MODEL_TASK_MINUTES + MODEL_TERMINATE_MINUTES
    timeline = (
        f"one {instance} (master-only) for {minutes:g} min: {MODEL_START_MINUTES:g} to start,"
        f" {MODEL_TASK_MINUTES:g} for the canary's runner task, {MODEL_TERMINATE_MINUTES:g} to terminate"
    )
    try:
        # Only here, on the operator's machine: the runner image holds no lambdas/.
        from lambdas.shared.cost import region_prices  # noqa: PLC0415
    except ImportError:
        return CanaryCost(instance, minutes, None, f"{timeline}; no price table here")
    prices = region_prices(region)
    hourly = prices.instance_hour(instance)
    if hourly is None:
        return CanaryCost(
            instance, minutes, None, f"{timeline}; {instance} is not in the {region} price table"
        )
    cluster = sum(hourly) * minutes / 60
    task = 0.0
    if prices.fargate_vcpu_hour is not None and prices.fargate_gb_hour is not None:
        task_hour = RUNNER_TASK_VCPU * prices.fargate_vcpu_hour + RUNNER_TASK_GB * prices.fargate_gb_hour
        task = task_hour * MODEL_TASK_MINUTES / 60
    model = (
        f"{timeline}, at ${hourly[0]:.3f}/h EC2 + ${hourly[1]:.3f}/h EMR;"
        f" one Fargate task of {RUNNER_TASK_VCPU:g} vCPU and {RUNNER_TASK_GB:g} GB"
        f" for {MODEL_TASK_MINUTES:g} min ({prices.source})"
    )
    return CanaryCost(instance, minutes, cluster + task, model)


def cost_line(cost: CanaryCost) -> str:
    """The line before a canary starts: about $0.05, 13 minutes, and the model the figure comes from."""
    figure = "cost unknown" if cost.usd is None else f"about ${cost.usd:.2f}"
    return f"canary: {figure}, {cost.minutes:g} minutes by the model ({cost.model})"


def leftover_line(pipeline: Pipeline) -> str | None:
    """What a canary that failed in its runner task may leave, and how it goes; None when nothing can.

    Its last stage drops its table, so a failed task left the table its first stage made. In a Glue
    catalog that outlives the cluster (with its files under the warehouse); in the cluster's own
    metastore it ended with the cluster. The next canary's first stage drops a table it finds.
    """
    if pipeline.config.cluster.metastore != METASTORE_GLUE:
        return None
    database = canary_database(pipeline)
    catalog = pipeline.config.catalog
    # Spark's and Hive's place for a managed table: its database's location, then its name.
    location = f"{catalog.database_location(database)}{CANARY_TABLE}" if catalog is not None else None
    where = location or f"under the location of Glue's {database} database"
    # DeleteTable removes only the definition: a managed table's files stay unless removed too.
    now = f"`aws glue delete-table --database-name {database} --name {CANARY_TABLE}`"
    if location is not None:
        now += f" and `aws s3 rm --recursive {location}/`"
    return (
        f"canary: its table {database}.{CANARY_TABLE} ({where}) is left in the Glue catalog if its first"
        f" stage made it: the next `python -m runner {pipeline.folder} --deployed --canary` drops it"
        f" before it writes; to remove it now, {now}"
    )


def next_canary_name(deployment: Deployment, run_date: str) -> str:
    """The date's first canary name not taken yet (execution names stay taken for 90 days)."""
    for attempt in range(1, MAX_RERUNS + 1):
        name = canary_run_name(deployment.pipeline, run_date, attempt)
        if describe(deployment, name) is None:
            return name
    raise CanaryError(f"{MAX_RERUNS} canary runs of {run_date} already: give another --run-date")


class CanaryError(NightshiftError):
    """The canary cannot be started as asked."""


def wait_for_clusters_gone(
    deployment: Deployment,
    execution: Execution,
    *,
    poll: float,
    wait: float,
    interrupted: threading.Event,
) -> dict[str, str]:
    """The run's clusters and their states, once all are gone (or `wait` seconds have passed)."""
    waited = 0.0
    while True:
        states = dict(clusters_of(deployment, execution, alive_only=False))
        if all(state in GONE_CLUSTER_STATES for state in states.values()) or waited >= wait:
            return states
        if interrupted.wait(poll):
            return states
        waited += poll


def run_canary(
    pipeline: Pipeline, deployment: Deployment, run_date: str, watch: Watch, *, dry_run: bool
) -> int:
    """The built-in canary through the pipeline's state machine, followed as any deployed run.

    0 only when the run succeeded and every cluster it made is TERMINATED; a failed run's own code
    (the failing step's, or 69 outside a step) with the reason; EXIT_CLUSTER_LEFT for a cluster left.
    """
    say = watch.output.notice
    name = next_canary_name(deployment, run_date)
    cluster = pipeline.config.cluster
    machine = deployment.state_machine_arn.rsplit(":", 1)[-1]
    say(
        f"canary {name}: through {machine} (its Preflight and cluster Lambdas), a master-only cluster"
        f" (one {cluster.master_instance_type}, {cluster.release_label},"
        f" {', '.join(canary_applications(cluster))}), one runner task that over SSH"
        f" writes a row of {run_date} to {canary_database(pipeline)}.{CANARY_TABLE} on spark-sql and"
        " checks it, reads it back on hive, lists the table's files with hadoop fs and drops the table,"
        " then the cluster terminated; it is no run of its date (a night is neither refused nor"
        " held up by it)"
    )
    say(cost_line(canary_cost(pipeline, deployment.region)))
    if dry_run:
        say("dry run: nothing started")
        return 0
    execution = start(deployment, name, run_date, None, canary=True)
    say(f"run {execution.name} started (canary)")
    follower = Follower(
        deployment,
        canary_as_deployed(),
        execution.arn,
        watch.output,
        watch.polling,
        watch.interrupted,
        watch.count,
    )
    try:
        tracker = follower.run()
    except Detached:
        say(
            f"detached: canary {execution.name} goes on and terminates its cluster at its end (see it with"
            f" --deployed --history --run-date {run_date}); stop it with"
            f" `aws stepfunctions stop-execution --execution-arn {execution.arn}`"
        )
        return EXIT_DETACHED
    report = tracker.report(now())
    for line in summary_lines(report):
        say(line)
    clusters = wait_for_clusters_gone(
        deployment,
        execution,
        poll=watch.polling.cluster_poll,
        wait=watch.polling.cluster_wait,
        interrupted=watch.interrupted,
    )
    shown = ", ".join(f"{cid} {state}" for cid, state in sorted(clusters.items())) or "no cluster"
    if report.exit_code != 0:
        # A failing step is the canary's task: it ran, and stopped before its last stage's DROP.
        leftover = leftover_line(pipeline) if tracker.failing_step() is not None else None
        if leftover is not None:
            say(leftover)
        say(f"canary failed: {tracker.failure} (cluster: {shown})")
        return report.exit_code
    left = sorted(cid for cid, state in clusters.items() if state != "TERMINATED")
    if left or not clusters:
        say(
            f"canary failed: the run succeeded but its cluster is not TERMINATED ({shown}); check with"
            f" `aws emr describe-cluster --cluster-id {left[0] if left else '<id>'}`"
        )
        return EXIT_CLUSTER_LEFT
    say(f"canary passed: {execution.name} succeeded, its cluster {shown}")
    return 0
