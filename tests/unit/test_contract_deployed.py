"""What the CLI's deployed mode and the stack must agree on, held equal across the boundary.

The runner image and the CLI do not ship lambdas/ or infra/, so runner/deployed keeps its own
copies of the state machine's tags and of the execution names; this test imports both sides.
"""

from __future__ import annotations

import pytest

from infra.runner_task import CONTAINER_NAME
from infra.workflow import TAG_RUNNER_LOG_GROUP
from lambdas.shared.clusters import TAG_EXECUTION_ARN, TAG_MANAGED, TAG_PIPELINE, TAG_STACK
from lambdas.shared.models import MAX_CONCURRENT_RUNS as LAMBDA_MAX_CONCURRENT_RUNS
from lambdas.shared.models import MAX_QUEUE_MINUTES as LAMBDA_MAX_QUEUE_MINUTES
from lambdas.shared.preflight import date_of_name
from runner.config import MAX_CONCURRENT_RUNS, MAX_QUEUE_MINUTES
from runner.deployed import discovery, runs


def test_the_cli_finds_the_state_machine_by_the_tags_the_stack_sets() -> None:
    assert (discovery.TAG_STACK, discovery.TAG_PIPELINE, discovery.TAG_RUNNER_LOG_GROUP) == (
        TAG_STACK,
        TAG_PIPELINE,
        TAG_RUNNER_LOG_GROUP,
    )


def test_the_cli_finds_a_runs_cluster_by_the_tags_the_lifecycle_sets() -> None:
    assert (
        discovery.CLUSTER_TAG_EXECUTION_ARN,
        discovery.CLUSTER_TAG_MANAGED,
        discovery.CLUSTER_TAG_STACK,
    ) == (TAG_EXECUTION_ARN, TAG_MANAGED, TAG_STACK)


def test_the_cli_reads_the_container_the_task_definition_names() -> None:
    assert discovery.RUNNER_CONTAINER == CONTAINER_NAME


@pytest.mark.parametrize("attempt", [1, 2, 3, 12])
@pytest.mark.parametrize("pipeline", ["example", "v2.orders", "daily_sales-eu"])
def test_preflight_reads_the_date_of_every_run_the_cli_names(pipeline: str, attempt: int) -> None:
    name = runs.run_name(pipeline, "2025-06-01", attempt)
    assert date_of_name(name, pipeline) == runs.date_of(pipeline, name) == "2025-06-01"


def test_the_lambda_accepts_every_maximum_and_queue_pipeline_toml_accepts() -> None:
    assert LAMBDA_MAX_CONCURRENT_RUNS == MAX_CONCURRENT_RUNS
    assert LAMBDA_MAX_QUEUE_MINUTES == MAX_QUEUE_MINUTES
