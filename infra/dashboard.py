"""One CloudWatch dashboard per stack: each pipeline's nights over the last 30 days, as graphs."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.shared.run_metrics import (
    CHECK_DIMENSION,
    CHECK_FAILING_ROWS,
    CLUSTER_READY_TIME,
    NAMESPACE,
    PIPELINE_DIMENSION,
    RUN_COST,
    RUN_DURATION,
    STEP_DIMENSION,
    STEP_DURATION,
)

# One point per night: a run is one data point a day (a rerun of the night adds to its cost).
NIGHT = Duration.days(1)
WIDTH = 6
HEIGHT = 6


def run_metric(name: str, pipeline: str, statistic: str, label: str) -> cloudwatch.Metric:
    """A metric RecordRun publishes (lambdas/shared/run_metrics.py), for one pipeline, per night."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={PIPELINE_DIMENSION: pipeline},
        statistic=statistic,
        period=NIGHT,
        label=label,
    )


class RunsDashboard(Construct):
    """Per pipeline a row: run duration, cluster-ready time, cost per night, failures; then its steps."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-runs",
            default_interval=Duration.days(30),
        )

    def add_pipeline(
        self,
        pipeline: str,
        state_machine: sfn.IStateMachine,
        steps: list[str],
        checks: tuple[str, ...] = (),
    ) -> None:
        """The pipeline's row of graphs; failures come from Step Functions itself, so every failure counts.

        With data checks (their labels), a graph of each check's failing rows per night.
        """
        failures = cloudwatch.MathExpression(
            expression="failed + timedout + aborted",
            using_metrics={
                "failed": state_machine.metric_failed(period=NIGHT, statistic="Sum"),
                "timedout": state_machine.metric_timed_out(period=NIGHT, statistic="Sum"),
                "aborted": state_machine.metric_aborted(period=NIGHT, statistic="Sum"),
            },
            label="failed, timed out or aborted runs",
            period=NIGHT,
        )
        self.dashboard.add_widgets(
            cloudwatch.TextWidget(markdown=f"## {pipeline}", width=4 * WIDTH, height=1),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"{pipeline}: run duration (s)",
                left=[run_metric(RUN_DURATION, pipeline, "Maximum", "start to end of the run")],
                width=WIDTH,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title=f"{pipeline}: cluster ready after (s)",
                left=[run_metric(CLUSTER_READY_TIME, pipeline, "Maximum", "CreateCluster to ready")],
                width=WIDTH,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title=f"{pipeline}: cost per night (USD, Spot at On-Demand)",
                left=[run_metric(RUN_COST, pipeline, "Sum", "EC2 + EMR fee + Fargate")],
                width=WIDTH,
                height=HEIGHT,
            ),
            cloudwatch.GraphWidget(
                title=f"{pipeline}: failures",
                left=[failures],
                width=WIDTH,
                height=HEIGHT,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title=f"{pipeline}: step durations (s)",
                left=[
                    cloudwatch.Metric(
                        namespace=NAMESPACE,
                        metric_name=STEP_DURATION,
                        dimensions_map={PIPELINE_DIMENSION: pipeline, STEP_DIMENSION: step},
                        statistic="Maximum",
                        period=NIGHT,
                        label=step,
                    )
                    for step in steps
                ],
                stacked=True,
                width=4 * WIDTH,
                height=HEIGHT,
            ),
        )
        if checks:
            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{pipeline}: failing rows of its data checks",
                    left=[
                        cloudwatch.Metric(
                            namespace=NAMESPACE,
                            metric_name=CHECK_FAILING_ROWS,
                            dimensions_map={PIPELINE_DIMENSION: pipeline, CHECK_DIMENSION: check},
                            # A rerun's count replaces nothing: the night's worst is what needs a look.
                            statistic="Maximum",
                            period=NIGHT,
                            label=check,
                        )
                        for check in checks
                    ],
                    width=4 * WIDTH,
                    height=HEIGHT,
                ),
            )
