"""A shared-cluster batch (issue 22) run by moto's interpreter: one cluster, each date its own execution."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.ecs.models import ecs_backends

from lambdas.shared import run_states
from lambdas.shared.clusters import TAG_EXECUTION_ARN, TAG_RUN_DATES
from runner.deployed.runs import read_record
from tests.infra.conftest import ACCOUNT, REGION
from tests.infra.moto_harness import Harness, StepScript
from tests.infra.test_catalog import example_synth  # noqa: F401 - the shared sql/ synth
from tests.infra.test_inputs_gate import MARKER, USERS, gated_synth  # noqa: F401 - the shared gated synth
from tests.support.aws import INTERPRETER_END_SECONDS, pipeline_in_moto
from tests.support.aws import _join_interpreter_threads as join_interpreter_threads

DATES = ["2025-06-01", "2025-06-02", "2025-06-03"]
EXAMPLE_STEPS = ["10_events", "10_users", "20_sessions", "30_funnel", "30_segments"]


@pytest.fixture
def example(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield from pipeline_in_moto(request, "example_synth", "example", monkeypatch)


@pytest.fixture
def gated(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    for harness in pipeline_in_moto(request, "gated_synth", "gated", monkeypatch):
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="lake")
        yield harness


def run_batch(harness: Harness, dates: list[str], timeout: float = 300, **extra: Any) -> dict[str, Any]:
    """Start the batch as the CLI does (docs/backfill.md) and wait for it to end; its DescribeExecution."""
    runs = [{"run_date": date, "name": f"{harness.pipeline}-{date}"} for date in dates]
    given = {"run_date": dates[0], "batch": {"runs": runs}, **extra}
    return wait(harness, f"{harness.pipeline}-batch-{dates[0]}-{dates[-1]}", given, timeout)


def wait(harness: Harness, name: str, given: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    """Start an execution of `name` with input `given` and wait for it to end; its DescribeExecution."""
    arn = harness.sfn.start_execution(
        stateMachineArn=harness.state_machine_arn, name=name, input=json.dumps(given)
    )["executionArn"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = harness.sfn.describe_execution(executionArn=arn)
        if answer["status"] != "RUNNING":
            return dict(answer)
        time.sleep(0.05)
    raise AssertionError(f"batch {arn} still running after {timeout} s: {harness.why(arn)}")


def child(harness: Harness, date: str) -> dict[str, Any]:
    prefix = harness.state_machine_arn.replace(":stateMachine:", ":execution:")
    return dict(harness.sfn.describe_execution(executionArn=f"{prefix}:{harness.pipeline}-{date}"))


def commands(harness: Harness) -> list[list[str]]:
    """Every runner task's command, in no particular order."""
    backend = ecs_backends[ACCOUNT][REGION]
    return [task.nightshift_command for tasks in backend.tasks.values() for task in tasks.values()]  # type: ignore[attr-defined]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


#: sql/example's steps and checks as a date's `Run stages` task runs them (parallel steps by name).
STAGES_IN_ORDER = ["10_events", "10_users", "10_checks", "20_sessions", "20_checks", "30_funnel",
                   "30_segments", "30_checks"]  # fmt: skip


def steps_of(harness: Harness, date: str) -> list[str]:
    """The steps (and stages' checks) that started for `date`, in order, each attempt once."""
    return [step.split(".")[0] for run_date, step in harness.faults.steps_run_on if run_date == date]


def stream_of(harness: Harness, date: str) -> list[dict[str, Any]]:
    """The JSON records of the date's one runner task's stream in the runner log group."""
    logs = boto3.client("logs", region_name=REGION)
    records = []
    for stream in logs.describe_log_streams(logGroupName=harness.runner_log_group)["logStreams"]:
        events = logs.get_log_events(
            logGroupName=harness.runner_log_group, logStreamName=stream["logStreamName"]
        )
        found = [json.loads(e["message"]) for e in events["events"]]
        if found and found[0].get("run_date") == date:
            records += found
    return records


def test_a_batch_runs_every_date_on_one_cluster_each_as_its_own_run(example: Harness) -> None:
    """Three dates of sql/example: one cluster created and terminated at the end; each date an
    execution named `example-<date>` that ran ONE runner task (`Run stages`: the pipeline folder with
    its own --run-date and --run-id on that cluster) in which every stage's steps and checks ran in
    order, and succeeded; the batch succeeded. A night of sql/example runs a task per step and per
    stage's checks: eight."""
    batch = run_batch(example, DATES)
    assert batch["status"] == "SUCCEEDED", example.why(batch["executionArn"])
    assert example.faults.calls["lambdas.create_cluster"] == 1
    (cluster,) = example.clusters()
    assert cluster["Status"]["State"] == "TERMINATED"
    ran = commands(example)
    # One RunTask per date: three Fargate starts for the batch, where three nights take 3 x 8.
    assert sorted(option(command, "--run-date") for command in ran) == DATES
    for command in ran:
        date = option(command, "--run-date")
        assert command == [
            "sql/example",
            "--cluster-id", cluster["Id"],
            "--run-date", date,
            "--run-id", f"example-{date}",
            "--log-format", "json",
            "--no-wait",
            "--step-retries",
        ]  # fmt: skip
    for date in DATES:
        execution = child(example, date)
        assert execution["status"] == "SUCCEEDED", example.why(execution["executionArn"])
        given = json.loads(execution["input"])
        assert given["batch"] == batch["executionArn"]
        assert given["AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID"] == batch["executionArn"]
        assert given["cluster"] == {"cluster_id": cluster["Id"]}
        # Stage by stage, each stage's checks after its steps.
        assert steps_of(example, date) == STAGES_IN_ORDER
        entered = example.states_entered(execution["executionArn"])
        assert "CreateCluster" not in entered and "TerminateCluster" not in entered
        assert entered.count(run_states.RUN_STAGES_STATE) == 1
        assert not any(
            state.startswith(("Stage ", "Check Stage", "Run 1", "Run 2", "Run 3")) for state in entered
        )
        assert entered[entered.index(run_states.RUN_STAGES_STATE) + 1 :][:2] == [
            run_states.LEAVE_OR_TERMINATE_STATE,
            run_states.LEAVE_CLUSTER_STATE,
        ]
        # Its stream: one step_ended per step and per stage's checks, as the runner writes it.
        ended = [r for r in stream_of(example, date) if r.get("event") == "step_ended"]
        assert [(r["step"], r["status"], r["exit_code"], r["attempt"], r["attempts"]) for r in ended] == [
            (step, "succeeded", 0, 1, 1 if step.endswith("_checks") else 2) for step in STAGES_IN_ORDER
        ]
        # Its record (--history's) has every step, each run once, from that one stream.
        record = read_record(example.sfn, execution["executionArn"])
        assert record is not None
        assert {name: (s["status"], s["attempts"]) for name, s in record["steps"].items()} == {
            name: ("succeeded", 1) for name in EXAMPLE_STEPS
        }, record
    # One date after another: a date's first task starts after the previous date's execution ended.
    ends = [child(example, date)["stopDate"] for date in DATES]
    starts = [child(example, date)["startDate"] for date in DATES]
    assert all(start >= end for start, end in zip(starts[1:], ends, strict=False))
    entered = example.states_entered(batch["executionArn"])
    assert entered.count(run_states.RUN_DATE_STATE) == len(DATES)
    assert entered[-5:] == [
        run_states.TERMINATE_CLUSTER_STATE,
        run_states.RECORD_RUN_STATE,
        "Run failed?",
        run_states.BATCH_FAILED_STATE,
        "Succeeded",
    ]
    # The cluster says which dates it holds, and whose it is: the batch's.
    tags = {
        t["Key"]: t["Value"] for t in example.emr.describe_cluster(ClusterId=cluster["Id"])["Cluster"]["Tags"]
    }
    assert tags[TAG_RUN_DATES] == f"{DATES[0]}..{DATES[-1]}"
    assert tags[TAG_EXECUTION_ARN] == batch["executionArn"]


def test_a_failed_date_does_not_stop_the_next_and_fails_the_batch_by_name(example: Harness) -> None:
    """A step failing in the middle date: that date's execution FAILED, the next date still ran and
    succeeded, the batch FAILED with DatesFailed naming the date, the one cluster terminated."""
    failing = "2025-06-02"
    example.faults.exit_codes = {}

    original = example.faults.step_actions

    def fail_on_middle_date(command: list[str]) -> None:
        if option(command, "--run-date") == failing:
            raise RuntimeError("the middle date's 20_sessions fails")

    example.faults.step_actions = {**original, "20_sessions.hql": fail_on_middle_date}
    batch = run_batch(example, DATES)
    assert batch["status"] == "FAILED", example.why(batch["executionArn"])
    assert batch["error"] == run_states.DATES_FAILED_ERROR
    assert failing in batch["cause"] and "2025-06-01" not in batch["cause"]
    assert [child(example, d)["status"] for d in DATES] == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    # The middle date: 20_sessions twice (sql/example's retries = 1, applied by the runner), then
    # nothing of stage 20's checks or stage 30; its task failed with the step's exit code.
    assert steps_of(example, failing) == ["10_events", "10_users", "10_checks", "20_sessions", "20_sessions"]
    middle = child(example, failing)
    assert middle["error"] == "States.TaskFailed", example.why(middle["executionArn"])
    assert '"ExitCode": 1' in middle["cause"]
    retried = [r for r in stream_of(example, failing) if r.get("event") in ("step_ended", "step_retry")]
    assert [(r["step"], r["event"], r.get("status"), r["attempt"]) for r in retried[-3:]] == [
        ("20_sessions", "step_ended", "failed", 1),
        ("20_sessions", "step_retry", None, 2),
        ("20_sessions", "step_ended", "failed", 2),
    ]
    # Its record (--history's): the step failed after its two attempts, stage 30 never ran.
    record = read_record(example.sfn, middle["executionArn"])
    assert record is not None, example.why(middle["executionArn"])
    steps = record["steps"]
    assert (steps["20_sessions"]["status"], steps["20_sessions"]["attempts"]) == ("failed", 2), record
    assert steps["10_events"]["status"] == "succeeded", record
    assert [steps[name]["status"] for name in ("30_funnel", "30_segments")] == ["not run", "not run"], record
    assert (record["failure"]["step"], record["failure"]["exit_code"]) == ("20_sessions", 1), record
    # The next date ran every stage in its own one task.
    assert steps_of(example, "2025-06-03") == STAGES_IN_ORDER
    assert sorted(option(c, "--run-date") for c in commands(example)) == DATES
    assert example.faults.calls["lambdas.create_cluster"] == 1
    assert [c["Status"]["State"] for c in example.clusters()] == ["TERMINATED"]


def test_a_date_without_its_inputs_ends_at_once_and_the_next_date_runs(gated: Harness) -> None:
    """A gated pipeline's batch: the first date's inputs are missing, so its execution fails at once
    with InputsMissing naming them (no wait, no task); the second date, whose inputs are there, runs
    on the batch's cluster; the batch fails naming the first."""
    s3 = boto3.client("s3", region_name=REGION)
    for key in (MARKER, USERS):
        s3.put_object(Bucket="lake", Key=key.replace("2025-06-01", "2025-06-02"), Body=b"")
    dates = ["2025-06-01", "2025-06-02"]
    batch = run_batch(gated, dates)
    assert batch["status"] == "FAILED", gated.why(batch["executionArn"])
    assert "2025-06-01" in batch["cause"] and "2025-06-02" not in batch["cause"]
    missing = child(gated, "2025-06-01")
    assert missing["status"] == "FAILED"
    assert missing["error"] == run_states.INPUTS_MISSING_ERROR
    assert "_SUCCESS" in missing["cause"]
    entered = gated.states_entered(missing["executionArn"])
    assert "WaitForInputs" not in entered and "Preflight" not in entered
    assert child(gated, "2025-06-02")["status"] == "SUCCEEDED"
    assert {option(c, "--run-date") for c in commands(gated)} == {"2025-06-02"}
    assert gated.faults.calls["lambdas.create_cluster"] == 1
    assert [c["Status"]["State"] for c in gated.clusters()] == ["TERMINATED"]


def test_a_batch_from_stage_30_runs_only_stage_30_of_each_date(example: Harness) -> None:
    """`from_stage` of a batch goes to every date (and only when given): each date runs stage 30's
    steps and checks, no step of stages 10 and 20."""
    batch = run_batch(example, DATES[:2], from_stage=30)
    assert batch["status"] == "SUCCEEDED", example.why(batch["executionArn"])
    for date in DATES[:2]:
        assert json.loads(child(example, date)["input"])["from_stage"] == 30
        assert steps_of(example, date) == ["30_funnel", "30_segments", "30_checks"]
        # Stages 10 and 20 skipped: no step record of them in the date's stream.
        assert {r["step"] for r in stream_of(example, date) if r.get("event")} == {
            "30_funnel",
            "30_segments",
            "30_checks",
        }
        # Its record says stages 10 and 20 were skipped, from the runner's own line for them.
        record = read_record(example.sfn, child(example, date)["executionArn"])
        assert record is not None
        statuses = {name: step["status"] for name, step in record["steps"].items()}
        assert statuses == {
            "10_events": "skipped",
            "10_users": "skipped",
            "20_sessions": "skipped",
            "30_funnel": "succeeded",
            "30_segments": "succeeded",
        }, record
    ran = commands(example)
    assert [command[-2:] for command in ran] == [["--from-stage", "30"]] * 2
    assert example.faults.calls["lambdas.create_cluster"] == 1


def test_a_date_whose_batch_cluster_is_not_its_batchs_runs_no_stage_and_leaves_it(example: Harness) -> None:
    """A date of a batch given a cluster tagged with another execution: ClusterGone, no task, and the
    cluster is left as it was (a date never terminates a cluster)."""
    cluster = example.emr.run_job_flow(
        Name="someone-elses",
        ReleaseLabel="emr-7.5.0",
        Instances={
            "MasterInstanceType": "m5.xlarge",
            "InstanceCount": 1,
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        Tags=[{"Key": TAG_EXECUTION_ARN, "Value": "arn:aws:states:us-east-1:123456789012:execution:x:y"}],
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    before = example.emr.describe_cluster(ClusterId=cluster)["Cluster"]["Status"]["State"]
    prefix = example.state_machine_arn.replace(":stateMachine:", ":execution:")
    batch_arn = f"{prefix}:example-batch-2025-06-01-2025-06-02"
    given = {"run_date": "2025-06-01", "cluster": {"cluster_id": cluster}, "batch": batch_arn}
    execution = wait(example, "example-2025-06-01", given)
    assert execution["status"] == "FAILED", example.why(execution["executionArn"])
    assert execution["error"] == run_states.CLUSTER_GONE_ERROR, example.why(execution["executionArn"])
    assert commands(example) == []
    entered = example.states_entered(execution["executionArn"])
    assert run_states.LEAVE_CLUSTER_STATE in entered and run_states.TERMINATE_CLUSTER_STATE not in entered
    assert example.emr.describe_cluster(ClusterId=cluster)["Cluster"]["Status"]["State"] == before


def test_a_batch_stopped_in_the_middle_date_runs_nothing_more(example: Harness) -> None:
    """The middle date held in stage 20's step: stopping the batch, then that date (as `--stop` does,
    runner/deployed/backfill.py stop_batch) ends the date ABORTED with stage 30 never run, and the
    last date never starts; the first date's run is whole. (The CLI then terminates the cluster:
    tests/deployed/test_deployed_batch.py.)"""
    middle = DATES[1]
    held = StepScript(gate_after=0, gate_timeout=600, run_date=middle)  # the timeout only a backstop
    example.faults.scripts["20_sessions.hql"] = held
    prefix = example.state_machine_arn.replace(":stateMachine:", ":execution:")
    runs = [{"run_date": date, "name": f"example-{date}"} for date in DATES]
    batch_arn = example.sfn.start_execution(
        stateMachineArn=example.state_machine_arn,
        name="example-batch-2025-06-01-2025-06-03",
        input=json.dumps({"run_date": DATES[0], "batch": {"runs": runs}}),
    )["executionArn"]
    try:
        assert held.reached_gate.wait(120), example.why(batch_arn)
        example.sfn.stop_execution(executionArn=batch_arn)
        date_arn = f"{prefix}:example-{middle}"
        if example.sfn.describe_execution(executionArn=date_arn)["status"] == "RUNNING":
            example.sfn.stop_execution(executionArn=date_arn, error="Nightshift.Stopped")
    finally:
        held.gate.set()
    # Every execution's thread ends; the held task is asked no more once its execution stopped.
    join_interpreter_threads(INTERPRETER_END_SECONDS)
    assert example.sfn.describe_execution(executionArn=batch_arn)["status"] in ("ABORTED", "FAILED")
    assert [child(example, date)["status"] for date in DATES[:2]] == ["SUCCEEDED", "ABORTED"]
    with pytest.raises(example.sfn.exceptions.ExecutionDoesNotExist):
        child(example, DATES[2])
    assert steps_of(example, DATES[0]) == STAGES_IN_ORDER
    assert steps_of(example, middle) == ["10_events", "10_users", "10_checks", "20_sessions"]
    assert sorted(option(c, "--run-date") for c in commands(example)) == DATES[:2]
