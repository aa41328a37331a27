"""preflight against moto: a run is refused while its date runs or the pipeline runs as often as it may."""

from __future__ import annotations

import json
from datetime import date, timedelta
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
        execution_arn: str, run_date: str = RUN_DATE, max_concurrent_runs: int = 1, **extra: Any
    ) -> dict[str, Any]:
        return {
            "pipeline": "example",
            "execution_arn": execution_arn,
            "state_machine_arn": state_machine_arn,
            "run_date": run_date,
            "max_concurrent_runs": max_concurrent_runs,
            **extra,
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


# A shared-cluster backfill (issue 22): a batch execution holds first..last and owns one cluster;
# each date runs as a child execution `<pipeline>-<date>` on it, with the batch's ARN in its input.
def _days(first: str, last: str) -> list[str]:
    start, end = date.fromisoformat(first), date.fromisoformat(last)
    return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


@pytest.fixture
def start_batch(sfn, state_machine_arn):
    """Start a RUNNING batch execution of first..last with the contract's name and input; its ARN."""

    def started(first: str, last: str) -> str:
        runs = [{"run_date": day, "name": f"example-{day}"} for day in _days(first, last)]
        return str(
            sfn.start_execution(
                stateMachineArn=state_machine_arn,
                name=f"example-batch-{first}-{last}",
                input=json.dumps({"run_date": first, "batch": {"runs": runs}}),
            )["executionArn"]
        )

    return started


@pytest.fixture
def start_child(sfn, state_machine_arn):
    """Start a RUNNING child of a batch: its date's name, the batch's ARN in its input."""

    def started(run_date: str, batch_arn: str) -> str:
        child_input = {
            "run_date": run_date,
            "cluster": {"cluster_id": "j-GIVEN"},
            "batch": batch_arn,
            "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": batch_arn,
        }
        return str(
            sfn.start_execution(
                stateMachineArn=state_machine_arn, name=f"example-{run_date}", input=json.dumps(child_input)
            )["executionArn"]
        )

    return started


def batch_cluster_of(create_payload: dict[str, Any], batch_arn: str) -> dict[str, Any]:
    """The CreateCluster payload of a batch: its first date, its last, its name and ARN."""
    name = batch_arn.rsplit(":", 1)[-1]
    first, last = name.removeprefix("example-batch-")[:10], name.removeprefix("example-batch-")[11:21]
    return dict(create_payload, run_date=first, last_run_date=last, run_id=name, execution_arn=batch_arn)


def test_a_nightly_run_of_a_date_a_batch_holds_is_refused_naming_the_batch(
    emr, sfn, start, start_batch, request_for, lambda_context
):
    # RUN_DATE is the batch's LAST date: its input's run_date (the first) alone would not hold it.
    batch = start_batch("2025-05-30", RUN_DATE)
    payload = request_for(start(f"example-{RUN_DATE}"), max_concurrent_runs=5, queue_minutes=240)

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result == {
        "proceed": False,
        "reason": (
            f"batch example-batch-2025-05-30-{RUN_DATE} of pipeline 'example' holds {RUN_DATE} "
            f"(2025-05-30..{RUN_DATE}) and is still running: {batch}"
        ),
        "wait": False,  # a duplicate is refused at once, as today
    }


def test_a_batch_overlapping_a_running_night_is_refused(
    emr, sfn, start, start_batch, request_for, lambda_context
):
    night = start("example-2025-06-02")
    batch = start_batch(RUN_DATE, "2025-06-03")
    payload = request_for(batch, max_concurrent_runs=5, batch_dates=_days(RUN_DATE, "2025-06-03"))

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result == {
        "proceed": False,
        "reason": f"another run of pipeline 'example' for 2025-06-02 is still running: {night}",
        "wait": False,
    }


def test_a_batch_beside_a_night_of_another_date_proceeds(
    emr, sfn, start, start_batch, request_for, lambda_context
):
    start("example-2025-06-04")
    batch = start_batch(RUN_DATE, "2025-06-03")
    payload = request_for(batch, max_concurrent_runs=2, batch_dates=_days(RUN_DATE, "2025-06-03"))

    assert preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)["proceed"] is True


def test_of_two_batches_with_overlapping_ranges_the_later_is_refused(
    emr, sfn, start_batch, request_for, lambda_context
):
    earlier = start_batch(RUN_DATE, "2025-06-03")
    later = start_batch("2025-06-03", "2025-06-05")

    refused = preflight.handler(
        request_for(
            later, "2025-06-03", max_concurrent_runs=5, batch_dates=_days("2025-06-03", "2025-06-05")
        ),
        lambda_context,
        emr=emr,
        sfn=sfn,
    )
    proceeds = preflight.handler(
        request_for(earlier, max_concurrent_runs=5, batch_dates=_days(RUN_DATE, "2025-06-03")),
        lambda_context,
        emr=emr,
        sfn=sfn,
    )

    assert refused == {
        "proceed": False,
        "reason": (
            f"batch example-batch-{RUN_DATE}-2025-06-03 of pipeline 'example' holds 2025-06-03 "
            f"({RUN_DATE}..2025-06-03) and is still running: {earlier}"
        ),
        "wait": False,
    }
    assert proceeds["proceed"] is True


def test_a_child_proceeds_beside_its_batch_and_on_its_cluster_at_a_maximum_of_one(
    emr, sfn, start_batch, start_child, request_for, create_payload, lambda_context, alive
):
    # The batch holds the one slot and its cluster is tagged run-date = RUN_DATE, its first date:
    # counted against its own child, every date of every batch would wait for ever.
    batch = start_batch(RUN_DATE, "2025-06-03")
    cluster = create_cluster.handler(batch_cluster_of(create_payload, batch), lambda_context, emr=emr)
    first_child = start_child(RUN_DATE, batch)

    first = preflight.handler(request_for(first_child, batch_arn=batch), lambda_context, emr=emr, sfn=sfn)
    sfn.stop_execution(executionArn=first_child)
    second_child = start_child("2025-06-02", batch)
    second = preflight.handler(
        request_for(second_child, "2025-06-02", batch_arn=batch), lambda_context, emr=emr, sfn=sfn
    )

    assert (first, second) == ({"proceed": True, "reason": "", "wait": False},) * 2
    assert [c["Id"] for c in alive(emr)] == [cluster["cluster_id"]]


def test_a_batch_and_its_running_child_take_one_slot_and_one_cluster(
    emr, sfn, start, start_batch, start_child, request_for, create_payload, lambda_context
):
    batch = start_batch(RUN_DATE, "2025-06-03")
    create_cluster.handler(batch_cluster_of(create_payload, batch), lambda_context, emr=emr)
    start_child(RUN_DATE, batch)
    night = start("example-2025-06-10")

    at_one = preflight.handler(
        request_for(night, "2025-06-10", queue_minutes=240), lambda_context, emr=emr, sfn=sfn
    )
    at_two = preflight.handler(
        request_for(night, "2025-06-10", max_concurrent_runs=2), lambda_context, emr=emr, sfn=sfn
    )

    assert at_one == {
        "proceed": False,
        "reason": f"1 run of pipeline 'example' still running and max_concurrent_runs is 1: {batch}",
        "wait": True,
    }
    assert at_two["proceed"] is True


def test_a_child_is_refused_while_another_run_of_its_date_runs(
    emr, sfn, start, start_batch, start_child, request_for, lambda_context
):
    batch = start_batch(RUN_DATE, "2025-06-03")
    by_hand = start("backfill-by-hand", "2025-06-02")
    child = start_child("2025-06-02", batch)

    result = preflight.handler(
        request_for(child, "2025-06-02", max_concurrent_runs=5, batch_arn=batch),
        lambda_context,
        emr=emr,
        sfn=sfn,
    )

    assert result == {
        "proceed": False,
        "reason": f"another run of pipeline 'example' for 2025-06-02 is still running: {by_hand}",
        "wait": False,
    }


def test_a_child_is_refused_by_another_runs_cluster_of_its_date(
    emr, sfn, start_batch, start_child, request_for, create_payload, lambda_context
):
    batch = start_batch(RUN_DATE, "2025-06-03")
    create_cluster.handler(batch_cluster_of(create_payload, batch), lambda_context, emr=emr)
    leftover = create_cluster.handler(cluster_of(create_payload, "2025-06-02"), lambda_context, emr=emr)
    child = start_child("2025-06-02", batch)

    result = preflight.handler(
        request_for(child, "2025-06-02", max_concurrent_runs=5, batch_arn=batch),
        lambda_context,
        emr=emr,
        sfn=sfn,
    )

    assert result["proceed"] is False
    assert result["reason"].startswith(
        f"cluster {leftover['cluster_id']} of pipeline 'example' for 2025-06-02 "
    )


def test_a_batch_cluster_left_alive_holds_every_date_of_its_range(
    emr, sfn, start, start_batch, request_for, create_payload, lambda_context
):
    # The batch ended (stopped: no Catch ran, no TerminateCluster) and the sweeper has not caught up.
    batch = start_batch("2025-05-31", "2025-06-02")
    leftover = create_cluster.handler(batch_cluster_of(create_payload, batch), lambda_context, emr=emr)
    sfn.stop_execution(executionArn=batch)
    payload = request_for(start(f"example-{RUN_DATE}"), max_concurrent_runs=5)

    result = preflight.handler(payload, lambda_context, emr=emr, sfn=sfn)

    assert result == {
        "proceed": False,
        "reason": (
            f"cluster {leftover['cluster_id']} of pipeline 'example' for 2025-05-31..2025-06-02 "
            f"(holding {RUN_DATE}) is still alive (WAITING); terminate it or wait for the sweeper"
        ),
        "wait": False,
    }


def test_a_batch_waits_for_a_slot_like_a_night_and_counts_another_batch_once(
    emr, sfn, start, start_batch, start_child, request_for, create_payload, lambda_context
):
    # Another batch (not overlapping) with its running child and its cluster: one run, one cluster.
    other = start_batch("2025-05-20", "2025-05-22")
    create_cluster.handler(batch_cluster_of(create_payload, other), lambda_context, emr=emr)
    start_child("2025-05-20", other)
    batch = start_batch(RUN_DATE, "2025-06-03")
    dates = _days(RUN_DATE, "2025-06-03")

    at_one = preflight.handler(
        request_for(batch, queue_minutes=240, batch_dates=dates), lambda_context, emr=emr, sfn=sfn
    )
    at_two = preflight.handler(
        request_for(batch, max_concurrent_runs=2, batch_dates=dates), lambda_context, emr=emr, sfn=sfn
    )

    assert at_one == {
        "proceed": False,
        "reason": f"1 run of pipeline 'example' still running and max_concurrent_runs is 1: {other}",
        "wait": True,
    }
    assert at_two == {"proceed": True, "reason": "", "wait": False}
