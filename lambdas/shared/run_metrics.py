"""The run's CloudWatch metrics (EMF through Powertools): one definition for RecordRun and the dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from lambdas.shared.run_states import StepStatus

if TYPE_CHECKING:
    from lambdas.shared.run_record import RunRecord

NAMESPACE = "Nightshift"
PIPELINE_DIMENSION = "pipeline"
STEP_DIMENSION = "step"
# Metric name -> unit. Per run, dimension pipeline:
RUN_DURATION = "RunDuration"
CLUSTER_READY_TIME = "ClusterReadyTime"
RUN_COST = "RunCostUSD"
CLUSTER_SECONDS = "ClusterSeconds"
NORMALIZED_INSTANCE_HOURS = "NormalizedInstanceHours"
FARGATE_TASK_SECONDS = "FargateTaskSeconds"
RUN_FAILED = "RunFailed"
RUN_METRICS: dict[str, MetricUnit] = {
    RUN_DURATION: MetricUnit.Seconds,
    CLUSTER_READY_TIME: MetricUnit.Seconds,
    RUN_COST: MetricUnit.NoUnit,
    CLUSTER_SECONDS: MetricUnit.Seconds,
    NORMALIZED_INSTANCE_HOURS: MetricUnit.Count,
    FARGATE_TASK_SECONDS: MetricUnit.Seconds,
    RUN_FAILED: MetricUnit.Count,
}
# Per step, dimensions pipeline and step:
STEP_DURATION = "StepDuration"
STEP_ATTEMPTS = "StepAttempts"
STEP_METRICS: dict[str, MetricUnit] = {STEP_DURATION: MetricUnit.Seconds, STEP_ATTEMPTS: MetricUnit.Count}
# Per data check that counted, dimensions pipeline and check (its label): its failing rows (0 passed).
CHECK_DIMENSION = "check"
CHECK_FAILING_ROWS = "CheckFailingRows"


def _metrics() -> Metrics:
    # Its own provider: the shared Metrics would add a `service` dimension the dashboard does not ask for.
    return Metrics(provider=AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service=""))


def run_values(record: RunRecord) -> dict[str, float]:
    values = {
        RUN_DURATION: record.run_seconds,
        RUN_COST: round(record.cost.total_usd, 4),
        CLUSTER_SECONDS: record.cost.cluster_seconds,
        NORMALIZED_INSTANCE_HOURS: round(record.cost.normalized_instance_hours, 2),
        FARGATE_TASK_SECONDS: record.cost.fargate_task_seconds,
        RUN_FAILED: 1 if record.outcome == "failed" else 0,
    }
    if record.cluster_ready_seconds is not None:
        values[CLUSTER_READY_TIME] = record.cluster_ready_seconds
    return values


def publish(record: RunRecord) -> list[dict[str, Any]]:
    """Write the run's and each step's EMF blobs to the log; returns them (what CloudWatch will read)."""
    blobs = []
    run = _metrics()
    run.add_dimension(PIPELINE_DIMENSION, record.pipeline)
    for name, value in run_values(record).items():
        run.add_metric(name=name, unit=RUN_METRICS[name], value=value)
    blobs.append(dict(run.serialize_metric_set()))
    run.flush_metrics()
    for step, step_record in record.timeline.steps.items():
        if step_record.status in (StepStatus.SKIPPED, StepStatus.NOT_RUN):
            continue  # a date of a batch's record names the steps it never ran: no time to graph
        metrics = _metrics()
        metrics.add_dimension(PIPELINE_DIMENSION, record.pipeline)
        metrics.add_dimension(STEP_DIMENSION, step)
        metrics.add_metric(name=STEP_DURATION, unit=STEP_METRICS[STEP_DURATION], value=step_record.seconds)
        metrics.add_metric(name=STEP_ATTEMPTS, unit=STEP_METRICS[STEP_ATTEMPTS], value=step_record.attempts)
        blobs.append(dict(metrics.serialize_metric_set()))
        metrics.flush_metrics()
    for label, check in record.checks.items():
        if check.count is None:
            continue  # its engine failed: no count to graph (the run's failure says so)
        metrics = _metrics()
        metrics.add_dimension(PIPELINE_DIMENSION, record.pipeline)
        metrics.add_dimension(CHECK_DIMENSION, label)
        metrics.add_metric(name=CHECK_FAILING_ROWS, unit=MetricUnit.Count, value=check.count)
        blobs.append(dict(metrics.serialize_metric_set()))
        metrics.flush_metrics()
    return blobs
