"""preflight against moto: a run is refused while its date runs or the pipeline runs as often as it may."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import Stubber

from lambdas import create_cluster, preflight
from lambdas.shared.errors import TransientAwsError

RUN_DATE = "2025-06-01"


@pytest.fixture
def start(sfn, state_machine_arn):
    """Start a RUNNING execution (moto keeps it so until stopped) of a date; its ARN."""

    def started(name: str, run_date: str | None = None) -> str:
        extra = {} if run_date is None else {"input": json.dumps({"run_date": run_date})}
        return str(sfn.start_execution(stateMachineArn=state_machine_arn, name=name, **extra)["executionArn"])

    return started


@pytest.fixture
def request_for(state_machine_arn):
    """The Preflight payload of an execution, as the state machine sends it."""

    def payload(
        execution_arn: str, run_date: str = RUN_DATE, max_concurrent_runs: int = 1, **queue: float
    ) -> dict[str, Any]:
        return {
            "pipeline": "example",
            "execution_arn": execution_arn,
            "state_machine_arn": state_machine_arn,
            "run_date": run_date,
            "max_concurrent_runs": max_concurrent_runs,
            **queue,
        }

    return payload


def cluster_of(create_payload: dict[str, Any], run_date: str, attempt: int = 1) -> dict[str, Any]:
    """A CreateCluster payload of another run of ``run_date``."""
    return dict(
        create_payload,
        run_date=run_date,
        run_id=f"example-{run_date}",
        execution_arn=create_payload["execution_arn"].replace("run-1", f"example-{run_date}"),
        attempt=attempt,
    )


def test_proceeds_when_nothing_else_runs(emr, sfn, start, request_for, lambda_context):
    result = preflight.handler(request_for(start(f"example-{RUN_DATE}")), lambda_context, emr=emr, sfn=sfn)

    assert result == {"proceed": True, "reason": "", "wait": False}


def test_refuses_another_date_while_one_runs_and_the_maximum_is_one(
    emr, sfn, start, request_for, lambda_context, alive
):
    earlier = start("example-2025-05-31")
    payload = request_for(start(f"example-{RUN_DATE}"))

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result == {
        "proceed": False,
        "reason": f"1 run of pipeline 'example' still running and max_concurrent_runs is 1: {earlier}",
        "wait": False,  # the pipeline's queue_minutes is 0 (the payload's default)
    }
    assert alive(emr) == []


def test_another_date_proceeds_below_the_maximum(emr, sfn, start, request_for, lambda_context):
    start("example-2025-05-31")
    payload = request_for(start(f"example-{RUN_DATE}"), max_concurrent_runs=2)

    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)["proceed"] is True


def test_refuses_at_the_maximum(emr, sfn, start, request_for, lambda_context):
    first, second = start("example-2025-05-30"), start("example-2025-05-31")
    payload = request_for(start(f"example-{RUN_DATE}"), max_concurrent_runs=2)

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result["proceed"] is False
    assert result["reason"] == (
        f"2 runs of pipeline 'example' still running and max_concurrent_runs is 2: {first}, {second}"
    )


def test_waits_at_the_maximum_while_its_queue_lasts_then_refuses_saying_how_long(
    emr, sfn, start, request_for, lambda_context
):
    earlier = start("example-2025-05-31")
    mine = start(f"example-{RUN_DATE}")
    reason = f"1 run of pipeline 'example' still running and max_concurrent_runs is 1: {earlier}"

    results = [
        preflight.handler(
            request_for(mine, queue_minutes=2, waited_seconds=waited), lambda_context, emr=emr, sfn=sfn
        )
        for waited in (0, 60, 119, 120)
    ]

    assert results[:3] == [{"proceed": False, "reason": reason, "wait": True}] * 3
    assert results[3] == {
        "proceed": False,
        "reason": f"no free slot after waiting 2 minutes: {reason}",
        "wait": False,
    }


def test_a_queued_run_proceeds_once_a_slot_frees(emr, sfn, start, request_for, lambda_context):
    earlier = start("example-2025-05-31")
    mine = start(f"example-{RUN_DATE}")
    payload = request_for(mine, queue_minutes=240, waited_seconds=60)
    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)["wait"] is True

    sfn.stop_execution(executionArn=earlier)

    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn) == {
        "proceed": True,
        "reason": "",
        "wait": False,
    }


def test_a_run_of_a_running_date_is_refused_at_once_even_with_a_queue(
    emr, sfn, start, request_for, lambda_context
):
    start(f"example-{RUN_DATE}")
    payload = request_for(start(f"example-{RUN_DATE}-r2"), queue_minutes=240)

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert (result["proceed"], result["wait"]) == (False, False)
    assert f"for {RUN_DATE} is still running" in result["reason"]


@pytest.mark.parametrize(
    ("running", "mine"),
    [
        (f"example-{RUN_DATE}", f"example-{RUN_DATE}-r2"),  # a rerun while the first run still runs
        (f"example-{RUN_DATE}-r2", f"example-{RUN_DATE}-r3"),
        (f"example-{RUN_DATE}-r3", "by-hand"),  # started by hand under any name: the date of its input
    ],
)
def test_refuses_a_second_run_of_the_same_date_whatever_the_maximum(
    emr, sfn, start, request_for, lambda_context, running, mine
):
    other = start(running)
    payload = request_for(start(mine, RUN_DATE), max_concurrent_runs=50)

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result == {
        "proceed": False,
        "reason": f"another run of pipeline 'example' for {RUN_DATE} is still running: {other}",
        "wait": False,
    }


def test_the_date_of_a_run_named_by_hand_is_read_from_its_input(emr, sfn, start, request_for, lambda_context):
    other = start("backfill-by-hand", RUN_DATE)
    payload = request_for(start(f"example-{RUN_DATE}-r2"), max_concurrent_runs=2)

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result["proceed"] is False and other in result["reason"] and RUN_DATE in result["reason"]


def test_of_two_runs_of_a_date_started_together_the_earlier_proceeds(
    emr, sfn, start, request_for, lambda_context
):
    first = start(f"example-{RUN_DATE}")
    second = start(f"example-{RUN_DATE}-r2")

    # Whichever checks first, only the later one is refused: never both, never neither.
    later = preflight.handler(request_for(second, max_concurrent_runs=2), lambda_context, emr=emr, sfn=sfn)
    earlier = preflight.handler(request_for(first, max_concurrent_runs=2), lambda_context, emr=emr, sfn=sfn)

    assert (earlier["proceed"], later["proceed"]) == (True, False)
    assert first in later["reason"]


def test_a_run_missing_from_the_list_still_proceeds_before_a_later_one(
    emr, sfn, start, request_for, lambda_context
):
    first = start(f"example-{RUN_DATE}")
    start(f"example-{RUN_DATE}-r2")
    # ListExecutions is eventually consistent: as if the first run were not listed yet.
    sfn.stop_execution(executionArn=first)

    assert preflight.handler(request_for(first), lambda_context, emr=emr, sfn=sfn)["proceed"] is True


def test_a_finished_execution_does_not_block(emr, sfn, start, request_for, lambda_context):
    sfn.stop_execution(executionArn=start(f"example-{RUN_DATE}"))

    payload = request_for(start(f"example-{RUN_DATE}-r2"))

    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)["proceed"] is True


def test_refuses_while_a_cluster_of_the_date_is_alive(
    emr, sfn, start, request_for, create_payload, lambda_context
):
    # Left by a run of this date whose execution is gone (the sweeper has not caught it yet).
    leftover = create_cluster.handler(cluster_of(create_payload, RUN_DATE), lambda_context, emr=emr)
    payload = request_for(start(f"example-{RUN_DATE}-r2"), max_concurrent_runs=2)

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result == {
        "proceed": False,
        "reason": (
            f"cluster {leftover['cluster_id']} of pipeline 'example' for {RUN_DATE} is still alive "
            "(WAITING); terminate it or wait for the sweeper"
        ),
        "wait": False,
    }


def test_refuses_while_as_many_clusters_as_the_maximum_are_alive(
    emr, sfn, start, request_for, create_payload, lambda_context
):
    ids = sorted(
        create_cluster.handler(cluster_of(create_payload, day), lambda_context, emr=emr)["cluster_id"]
        for day in ("2025-05-30", "2025-05-31")
    )
    payload = request_for(start(f"example-{RUN_DATE}"), max_concurrent_runs=2)

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result["proceed"] is False
    assert result["reason"] == (
        f"2 clusters of pipeline 'example' still alive and max_concurrent_runs is 2: "
        f"{ids[0]} (WAITING), {ids[1]} (WAITING); terminate them or wait for the sweeper"
    )
    queued = request_for(payload["execution_arn"], max_concurrent_runs=2, queue_minutes=240)
    assert preflight.handler(queued, lambda_context, emr=emr, sfn=sfn)["wait"] is True  # clusters end too


def test_a_cluster_of_another_date_below_the_maximum_does_not_block(
    emr, sfn, start, request_for, create_payload, lambda_context
):
    create_cluster.handler(cluster_of(create_payload, "2025-05-31"), lambda_context, emr=emr)
    payload = request_for(start(f"example-{RUN_DATE}"), max_concurrent_runs=2)

    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)["proceed"] is True


def test_a_cluster_of_another_pipeline_does_not_block(
    emr, sfn, start, request_for, create_payload, lambda_context
):
    create_cluster.handler(
        dict(cluster_of(create_payload, RUN_DATE), pipeline="billing"), lambda_context, emr=emr
    )

    assert preflight.handler(request_for(start(f"example-{RUN_DATE}")), lambda_context, emr=emr, sfn=sfn)[
        "proceed"
    ]


def test_a_terminated_cluster_does_not_block(emr, sfn, start, request_for, create_payload, lambda_context):
    old = create_cluster.handler(cluster_of(create_payload, RUN_DATE), lambda_context, emr=emr)["cluster_id"]
    emr.terminate_job_flows(JobFlowIds=[old])

    assert preflight.handler(request_for(start(f"example-{RUN_DATE}")), lambda_context, emr=emr, sfn=sfn)[
        "proceed"
    ]


def test_throttled_list_executions_is_a_transient_error(emr, sfn, start, request_for, lambda_context):
    payload = request_for(start(f"example-{RUN_DATE}"))
    with Stubber(sfn) as stub:
        stub.add_client_error("list_executions", service_error_code="ThrottlingException")
        with pytest.raises(TransientAwsError, match="ListExecutions was throttled"):
            preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)


def test_another_stacks_cluster_of_the_same_date_does_not_block(
    emr, sfn, start, request_for, create_payload, lambda_context, monkeypatch
):
    # A dev stack and a prod stack in one account, both with a pipeline named "example".
    monkeypatch.setenv("NIGHTSHIFT_STACK", "NightshiftDev")
    create_cluster.handler(cluster_of(create_payload, RUN_DATE), lambda_context, emr=emr)
    monkeypatch.setenv("NIGHTSHIFT_STACK", "Nightshift")

    assert preflight.handler(request_for(start(f"example-{RUN_DATE}")), lambda_context, emr=emr, sfn=sfn)[
        "proceed"
    ]
