"""The synthesized state machine, executed by moto's interpreter with the real lifecycle Lambdas."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import boto3
import pytest
from moto.emr.exceptions import ValidationException
from moto.emr.models import ElasticMapReduceBackend, emr_backends

from lambdas.shared.errors import TransientAwsError
from lambdas.shared.preflight import preflight
from tests.infra.moto_harness import Harness

PIPELINE = "nightly"


# `harness` (this PIPELINE) and `adhoc` are tests/support/aws.py's fixtures.


def cluster_states(harness: Harness) -> list[str]:
    return [c["Status"]["State"] for c in harness.clusters()]


def test_happy_path_runs_every_step_and_terminates_the_cluster(harness: Harness) -> None:
    execution = harness.run()
    assert execution["status"] == "SUCCEEDED", execution
    assert sorted(harness.faults.steps_run) == sorted(
        ["10_users.sql", "10_events.sql", "20_sessions.hql", "30_funnel.sql", "30_segments.sql"]
    )
    # Stages in order: no step of a later stage before all of an earlier one.
    stages = [int(step[:2]) for step in harness.faults.steps_run]
    assert stages == sorted(stages)
    assert cluster_states(harness) == ["TERMINATED"]
    entered = harness.states_entered(execution["executionArn"])
    assert entered[:7] == [
        "PrepareRun", "Batch or date?", "Preflight", "Proceed?", "Given cluster?", "CreateCluster", "WaitForCluster"
    ]  # fmt: skip
    assert entered[-4:] == ["TerminateCluster", "RecordRun", "Run failed?", "Succeeded"]


def test_run_date_and_run_id_reach_the_cluster(harness: Harness) -> None:
    execution = harness.run("2025-03-30")
    assert execution["status"] == "SUCCEEDED", execution
    (cluster,) = harness.clusters()
    tags = {
        t["Key"]: t["Value"] for t in harness.emr.describe_cluster(ClusterId=cluster["Id"])["Cluster"]["Tags"]
    }
    assert tags["nightshift:run-date"] == "2025-03-30"
    assert tags["nightshift:run-id"] == f"{PIPELINE}-2025-03-30"
    assert tags["nightshift:execution-arn"] == execution["executionArn"]


def assert_failed_after_terminate(harness: Harness, execution: dict, error: str, cause: str) -> None:
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == error
    assert cause in execution["cause"]
    assert "RUNNING" not in cluster_states(harness) and "WAITING" not in cluster_states(harness)
    assert "TerminateCluster" in harness.states_entered(execution["executionArn"])


def left_over_cluster(harness: Harness, stack: str) -> str:
    """An alive cluster of this pipeline's 2025-06-01, left by an earlier run made by ``stack``."""
    return str(
        harness.emr.run_job_flow(
            Name="left over",
            ReleaseLabel="emr-7.13.0",
            Instances={
                "MasterInstanceType": "m5.xlarge",
                "InstanceCount": 1,
                "KeepJobFlowAliveWhenNoSteps": True,
            },
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
            Tags=[
                {"Key": "nightshift:pipeline", "Value": PIPELINE},
                {"Key": "nightshift:managed", "Value": "true"},
                {"Key": "nightshift:stack", "Value": stack},
                {"Key": "nightshift:run-date", "Value": "2025-06-01"},
            ],
        )["JobFlowId"]
    )


def test_preflight_refusal_creates_nothing(harness: Harness) -> None:
    left_over_cluster(harness, harness.synth.stack.stack_name)
    execution = harness.run()
    assert execution["status"] == "FAILED"
    assert execution["error"] == "PreflightRefused"
    assert "still alive" in execution["cause"]
    assert len(harness.clusters()) == 1  # only the one that was already there
    assert "CreateCluster" not in harness.states_entered(execution["executionArn"])


def test_another_stacks_cluster_of_the_same_pipeline_does_not_refuse_the_run(harness: Harness) -> None:
    other = left_over_cluster(harness, "NightshiftDev")
    execution = harness.run()
    assert execution["status"] == "SUCCEEDED", execution
    states = {c["Id"]: c["Status"]["State"] for c in harness.clusters()}
    assert states.pop(other) == "WAITING"  # neither refused nor touched
    assert list(states.values()) == ["TERMINATED"]


def test_preflight_error_fails_the_run(harness: Harness) -> None:
    harness.faults.raise_in["lambdas.preflight"] = (RuntimeError("preflight broke"), -1)
    execution = harness.run()
    assert_failed_after_terminate(harness, execution, "RuntimeError", "preflight broke")
    assert harness.clusters() == []


def test_create_failure_terminates_and_fails(harness: Harness) -> None:

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise ValidationException("The subnet is out of addresses")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ElasticMapReduceBackend, "run_job_flow", refuse)
        execution = harness.run()
    assert_failed_after_terminate(harness, execution, "ClusterCreationError", "out of addresses")
    assert harness.faults.steps_run == []


def test_cluster_that_fails_to_start_is_terminated(harness: Harness) -> None:
    harness.faults.after["lambdas.create_cluster"] = fail_launch(
        harness, "BOOTSTRAP_FAILURE", "publish_host_keys.sh returned a non-zero exit code", {1, 2, 3}
    )
    execution = harness.run()
    assert_failed_after_terminate(harness, execution, "ClusterFailedToStart", "bootstrap failure")
    assert harness.faults.steps_run == []


def test_cluster_that_never_gets_ready_times_out(harness: Harness) -> None:

    def stall(_payload: dict, result: dict) -> None:
        emr_backends["123456789012"]["us-east-1"].clusters[result["cluster_id"]].state = "STARTING"

    harness.faults.after["lambdas.create_cluster"] = stall
    execution = harness.run()
    assert_failed_after_terminate(harness, execution, "ClusterStartTimedOut", "not ready after 30 minutes")
    assert harness.faults.calls["lambdas.cluster_status"] == 61  # the first poll, then 60 more


def test_cluster_status_error_terminates_and_fails(harness: Harness) -> None:
    harness.faults.raise_in["lambdas.cluster_status"] = (RuntimeError("status broke"), -1)
    execution = harness.run()
    assert_failed_after_terminate(harness, execution, "RuntimeError", "status broke")
    assert cluster_states(harness) == ["TERMINATED"]


@pytest.mark.parametrize(
    "step", ["10_users.sql", "10_events.sql", "20_sessions.hql", "30_funnel.sql", "30_segments.sql"]
)
def test_a_failing_step_fails_its_stage_and_the_run(harness: Harness, step: str) -> None:
    harness.faults.failing_steps.add(step)
    execution = harness.run()
    assert_failed_after_terminate(harness, execution, "States.TaskFailed", '"ExitCode": 1')
    assert cluster_states(harness) == ["TERMINATED"]
    # pipeline.toml says retries = 2: three attempts, then the stage fails and no later stage runs.
    assert harness.faults.steps_run.count(step) == 3
    failed_stage = int(step[:2])
    assert not [s for s in harness.faults.steps_run if int(s[:2]) > failed_stage]


def test_transient_lambda_error_is_retried(harness: Harness) -> None:

    harness.faults.raise_in["lambdas.create_cluster"] = (TransientAwsError("RunJobFlow was throttled"), 1)
    execution = harness.run()
    assert execution["status"] == "SUCCEEDED", execution
    assert harness.faults.calls["lambdas.create_cluster"] == 2
    assert len(harness.clusters()) == 1  # the retry made no second cluster
    assert harness.retry_waits and harness.retry_waits[0] <= 2  # full jitter on a 2-second interval


def test_terminate_failing_once_is_retried(harness: Harness) -> None:
    harness.faults.raise_in["lambdas.terminate_cluster"] = (RuntimeError("EMR hiccup"), 1)
    execution = harness.run()
    assert execution["status"] == "SUCCEEDED", execution
    assert harness.faults.calls["lambdas.terminate_cluster"] == 2
    assert cluster_states(harness) == ["TERMINATED"]


def test_terminate_failing_for_good_fails_the_run_loudly(harness: Harness) -> None:
    harness.faults.raise_in["lambdas.terminate_cluster"] = (RuntimeError("EMR is down"), -1)
    execution = harness.run()
    assert execution["status"] == "FAILED"
    assert execution["error"] == "ClusterNotTerminated"
    assert "EMR is down" in execution["cause"]
    assert harness.faults.calls["lambdas.terminate_cluster"] == 4  # 1 + 3 retries


def test_a_date_runs_at_most_once(harness: Harness) -> None:
    assert harness.run("2025-06-02")["status"] == "SUCCEEDED"
    with pytest.raises(harness.sfn.exceptions.ExecutionAlreadyExists):
        harness.run("2025-06-02")
    assert [c["Name"] for c in harness.clusters()] == ["nightshift-nightly-2025-06-02"]


def test_state_transitions_per_run_match_the_documented_formula(harness: Harness) -> None:
    """docs/infra.md: 6 + 4*polls - 1 + sum(2 + steps) per stage + 5; moto's cluster is ready at once.

    A night passes the three Choices a batch and its dates part at (Batch or date?, Given cluster?,
    Leave cluster?: docs/backfill.md)."""
    execution = harness.run()
    polls = harness.faults.calls["lambdas.cluster_status"]
    stages = {"10": 2, "20": 1, "30": 2}
    expected = 6 + 4 * polls - 1 + sum(2 + steps for steps in stages.values()) + 5
    assert len(harness.states_entered(execution["executionArn"])) == expected == 25


def fail_launch(harness: Harness, code: str, message: str, attempts: set[int]) -> Any:
    """A CreateCluster fault: the launch attempts named fail as EMR reports it, the others start."""

    def fail(payload: dict, result: dict) -> None:
        if payload["attempt"] in attempts:
            harness.fail_cluster(result["cluster_id"], code, message)

    return fail


LAUNCH_FAILURES = {
    "internal-error": ("INTERNAL_ERROR", "An internal error occurred."),
    "bootstrap": (
        "BOOTSTRAP_FAILURE",
        "On the master instance, bootstrap action 1 returned a non-zero return code",
    ),
    "instance": ("INSTANCE_FAILURE", "The master node was lost"),
    "capacity": ("VALIDATION_ERROR", "Instance type r7g.2xlarge: InsufficientInstanceCapacity in us-east-1a"),
    "spot": ("INSTANCE_FLEET_TIMEOUT", "The core instance fleet timed out while provisioning Spot capacity"),
}


@pytest.mark.parametrize(("code", "message"), LAUNCH_FAILURES.values(), ids=LAUNCH_FAILURES.keys())
def test_a_launch_failure_gets_a_new_cluster_of_the_next_type_in_the_next_subnet(
    harness: Harness, code: str, message: str
) -> None:
    harness.faults.after["lambdas.create_cluster"] = fail_launch(harness, code, message, {1})
    execution = harness.run()
    assert execution["status"] == "SUCCEEDED", execution
    assert sorted(cluster_states(harness)) == ["TERMINATED", "TERMINATED_WITH_ERRORS"]
    first, second = harness.faults.payloads["lambdas.create_cluster"]
    assert (first["attempt"], second["attempt"]) == (1, 2)
    # nightly's core_instance_types; EMR chooses among all subnets first, then the next one is pinned.
    assert first["cluster"]["core_instance_type"] == "r7g.2xlarge"
    assert second["cluster"]["core_instance_type"] == "r6g.2xlarge"
    assert (first["network"]["subnet_ids"], second["network"]["subnet_ids"]) == (
        harness.subnets,
        harness.subnets[1:],
    )
    assert len(harness.faults.steps_run) == 5  # every step once, on the second cluster
    entered = harness.states_entered(execution["executionArn"])
    assert entered.count("TerminateFailedLaunch") == 1 and entered.count("CreateCluster") == 2


def test_launches_that_keep_failing_end_the_run_naming_every_attempt(harness: Harness) -> None:
    fail = fail_launch(harness, "INTERNAL_ERROR", "An internal error occurred.", {1, 2, 3})
    created: list[dict] = []

    def fail_and_record(payload: dict, result: dict) -> None:
        created.append(result)
        fail(payload, result)

    harness.faults.after["lambdas.create_cluster"] = fail_and_record
    execution = harness.run()
    assert_failed_after_terminate(harness, execution, "ClusterFailedToStart", "attempt 1 (j-")
    ids = [payload_result["cluster_id"] for payload_result in created]
    assert len(ids) == len(harness.clusters()) == 3  # launch_attempts defaults to 3
    for attempt, cluster_id in enumerate(ids, start=1):
        assert (
            f"attempt {attempt} ({cluster_id}): TERMINATED_WITH_ERRORS (INTERNAL_ERROR)" in execution["cause"]
        )
    assert harness.faults.steps_run == []


@pytest.mark.parametrize(
    ("code", "message"),
    [("VALIDATION_ERROR", "The requested release label is not valid"), ("STEP_FAILURE", "Step failed")],
    ids=["validation", "step"],
)
def test_a_failure_that_would_repeat_is_not_launched_again(harness: Harness, code: str, message: str) -> None:
    harness.faults.after["lambdas.create_cluster"] = fail_launch(harness, code, message, {1, 2, 3})
    execution = harness.run()
    assert_failed_after_terminate(harness, execution, "ClusterFailedToStart", "attempt 1 (j-")
    assert message in execution["cause"] and "attempt 2" not in execution["cause"]
    assert len(harness.clusters()) == 1
    assert harness.faults.calls["lambdas.create_cluster"] == 1


def start(harness: Harness, name: str, run_input: dict[str, Any]) -> str:
    """Start an execution with any name and input (as the CLI does); its ARN."""
    return str(
        harness.sfn.start_execution(
            stateMachineArn=harness.state_machine_arn, name=name, input=json.dumps(run_input)
        )["executionArn"]
    )


def finished(harness: Harness, execution_arn: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = harness.sfn.describe_execution(executionArn=execution_arn)
        if answer["status"] != "RUNNING":
            return dict(answer)
        time.sleep(0.05)
    raise AssertionError(f"execution {execution_arn} still running after {timeout} s")


def test_from_stage_runs_only_the_later_stages_and_still_terminates_the_cluster(harness: Harness) -> None:
    arn = start(harness, f"{PIPELINE}-2025-06-01-r2", {"run_date": "2025-06-01", "from_stage": 30})
    execution = finished(harness, arn)
    assert execution["status"] == "SUCCEEDED", execution
    assert sorted(harness.faults.steps_run) == ["30_funnel.sql", "30_segments.sql"]
    assert cluster_states(harness) == ["TERMINATED"]
    entered = harness.states_entered(arn)
    assert [
        state for state in entered if state.startswith(("Stage ", "Skip Stage ")) and not state.endswith("?")
    ] == ["Skip Stage 10", "Skip Stage 20", "Stage 30"]
    assert "CreateCluster" in entered and entered.index("TerminateCluster") > entered.index("Stage 30")
    assert json.loads(execution["output"])["request"] == {"run_date": "2025-06-01", "from_stage": 30}


def test_from_stage_between_stages_starts_at_the_next_one(harness: Harness) -> None:
    execution = finished(harness, start(harness, "by-hand", {"run_date": "2025-06-01", "from_stage": 15}))
    assert execution["status"] == "SUCCEEDED", execution
    assert sorted(harness.faults.steps_run) == ["20_sessions.hql", "30_funnel.sql", "30_segments.sql"]
    entered = harness.states_entered(execution["executionArn"])
    assert "Skip Stage 10" in entered and "Skip Stage 20" not in entered


def test_a_failing_step_after_from_stage_fails_the_run_and_terminates(harness: Harness) -> None:
    harness.faults.failing_steps.add("30_funnel.sql")
    execution = finished(harness, start(harness, "by-hand", {"run_date": "2025-06-01", "from_stage": 30}))
    assert_failed_after_terminate(harness, execution, "States.TaskFailed", '"ExitCode": 1')
    assert set(harness.faults.steps_run) <= {"30_funnel.sql", "30_segments.sql"}


def test_a_from_stage_that_is_not_a_number_fails_before_any_cluster(harness: Harness) -> None:
    execution = finished(harness, start(harness, "by-hand", {"run_date": "2025-06-01", "from_stage": "30"}))
    assert execution["status"] == "FAILED"
    assert execution["error"] == "InvalidInput" and "from_stage must be a number" in execution["cause"]
    assert harness.clusters() == [] and harness.faults.steps_run == []


def run_while_another_runs(
    harness: Harness, first: str, first_date: str, second: str, second_date: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start ``second`` while ``first`` holds its cluster (after CreateCluster); both as they end."""
    seconds: list[dict[str, Any]] = []

    def start_the_second(payload: dict[str, Any], _result: dict[str, Any]) -> None:
        if payload["run_id"] == first and not seconds:
            seconds.append({})
            seconds[0] = finished(harness, start(harness, second, {"run_date": second_date}))

    harness.faults.after["lambdas.create_cluster"] = start_the_second
    one = finished(harness, start(harness, first, {"run_date": first_date}))
    return one, seconds[0]


def test_two_dates_run_at_once_up_to_the_pipelines_maximum(adhoc: Harness) -> None:
    one, two = run_while_another_runs(
        adhoc, "adhoc-2025-06-01", "2025-06-01", "adhoc-2025-06-02", "2025-06-02"
    )
    assert (one["status"], two["status"]) == ("SUCCEEDED", "SUCCEEDED"), (one, two)
    assert adhoc.faults.steps_run == ["10_export.sh", "10_export.sh"]
    assert cluster_states(adhoc) == ["TERMINATED", "TERMINATED"]


def test_a_second_run_of_a_running_date_is_refused(adhoc: Harness) -> None:
    one, two = run_while_another_runs(
        adhoc, "adhoc-2025-06-01", "2025-06-01", "adhoc-2025-06-01-r2", "2025-06-01"
    )
    assert one["status"] == "SUCCEEDED", one
    assert two["status"] == "FAILED" and two["error"] == "PreflightRefused"
    assert f"for 2025-06-01 is still running: {one['executionArn']}" in two["cause"]
    assert adhoc.faults.calls["lambdas.create_cluster"] == 1 and cluster_states(adhoc) == ["TERMINATED"]


def test_another_date_waits_for_the_only_slot_and_runs_once_the_first_has_ended(harness: Harness) -> None:
    # The nightly run that fires while another date (a backfill's) holds the pipeline's one slot.
    first, second = f"{PIPELINE}-2025-06-01", f"{PIPELINE}-2025-06-02"
    queued: list[str] = []

    def queue_the_second(payload: dict[str, Any], _result: dict[str, Any]) -> None:
        if payload["run_id"] == first and not queued:
            queued.append(start(harness, second, {"run_date": "2025-06-02"}))
            # The first keeps its slot (and cluster) until the second has been made to wait.
            deadline = time.monotonic() + 600
            while "WaitForSlot" not in harness.states_entered(queued[0]) and time.monotonic() < deadline:
                time.sleep(0.05)

    harness.faults.after["lambdas.create_cluster"] = queue_the_second
    one = finished(harness, start(harness, first, {"run_date": "2025-06-01"}))
    two = finished(harness, queued[0])

    statuses = (one["status"], two["status"])
    assert statuses == ("SUCCEEDED", "SUCCEEDED"), [harness.why(e["executionArn"]) for e in (one, two)]
    states = harness.states_entered(queued[0])
    assert "WaitForSlot" in states and states.count("CreateCluster") == 1
    assert states.index("WaitForSlot") < states.index("CreateCluster")
    created = next(
        e["timestamp"]
        for e in harness.history(queued[0])
        if e.get("stateEnteredEventDetails", {}).get("name") == "CreateCluster"
    )
    assert created >= one["stopDate"]  # never two clusters of the pipeline at once
    assert cluster_states(harness) == ["TERMINATED", "TERMINATED"]


def test_a_run_that_finds_no_free_slot_within_its_queue_minutes_is_refused_without_a_cluster(
    adhoc: Harness,
) -> None:
    # adhoc: max_concurrent_runs = 2, queue_minutes = 0.05 (3 s), asked again every second.
    release = threading.Event()
    holders = ["adhoc-2025-06-01", "adhoc-2025-06-02"]

    def hold(payload: dict[str, Any], _result: dict[str, Any]) -> None:
        if payload["run_id"] in holders:
            release.wait(60)

    adhoc.faults.after["lambdas.create_cluster"] = hold
    held = [start(adhoc, name, {"run_date": name[-10:]}) for name in holders]
    deadline = time.monotonic() + 600
    while len(adhoc.clusters()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        third = finished(adhoc, start(adhoc, "adhoc-2025-06-03", {"run_date": "2025-06-03"}))
    finally:
        release.set()

    assert third["status"] == "FAILED" and third["error"] == "PreflightRefused", third
    assert third["cause"].startswith(
        "no free slot after waiting 0.05 minutes: 2 runs of pipeline 'adhoc' still running and "
        "max_concurrent_runs is 2: "
    ), third["cause"]
    states = adhoc.states_entered(third["executionArn"])
    assert states.count("Preflight") == 4 and states.count("WaitForSlot") == 3  # at 0, 1, 2 and 3 s
    assert "CreateCluster" not in states
    assert [finished(adhoc, arn)["status"] for arn in held] == ["SUCCEEDED", "SUCCEEDED"]
    assert cluster_states(adhoc) == ["TERMINATED", "TERMINATED"]


def test_a_handlers_function_environment_is_its_own_and_never_the_other_threads(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each Lambda invocation has its own environment. The harness once set a function's variables in
    # the process environment and cleared them afterwards, under the other executions' threads: a step
    # thread building a boto3 client (which copies os.environ) then failed with KeyError, States.Runtime
    # "'POWERTOOLS_SERVICE_NAME'", and the first run of the slot test above FAILED in CI.
    inside, checked = threading.Event(), threading.Event()
    seen: dict[str, str | None] = {}

    def held_preflight(*args: Any, **kwargs: Any) -> Any:
        seen["handler"] = os.environ.get("NIGHTSHIFT_STACK")
        inside.set()
        checked.wait(30)
        return preflight(*args, **kwargs)

    monkeypatch.setattr("lambdas.preflight.preflight", held_preflight)
    arn = start(harness, f"{PIPELINE}-2025-06-01", {"run_date": "2025-06-01"})
    try:
        assert inside.wait(30), "Preflight never ran"
        # While the handler runs, this thread sees the process environment, untouched.
        seen["other thread"] = os.environ.get("NIGHTSHIFT_STACK")
        boto3.client("ecs", region_name="us-east-1")  # copies os.environ, as every RunTask does
    finally:
        checked.set()
    assert finished(harness, arn)["status"] == "SUCCEEDED", harness.why(arn)
    assert seen == {"handler": harness.synth.stack.stack_name, "other thread": None}
