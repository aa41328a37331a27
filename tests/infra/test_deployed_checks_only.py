"""Running a deployed pipeline's data checks alone (`--deployed --checks-only`), as `dbt test` does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.workflow import CHECKS_ONLY, CHECKS_STAGE, checks_state_name, skip_state_name
from lambdas import alert as alert_lambda
from lambdas.shared.preflight import date_of_name
from runner.__main__ import main
from runner.deployed.runs import date_of
from runner.model import load_pipeline
from tests.infra.moto_harness import Harness, StepScript
from tests.infra.test_catalog import example_synth  # noqa: F401 - the shared sql/ synth in moto
from tests.infra.test_deployed_checks import DUPLICATES, EXAMPLE, _alert_inbox, _check_records, _wait
from tests.lambda_support import FakeLambdaContext
from tests.support.aws import Synthesis, definition_of, states_of

SYNTH = "example_synth"
PIPELINE = "example"
DATE = "2025-06-01"


def _cli(capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, list[str]]:
    capsysbinary.readouterr()
    code = main([str(EXAMPLE), "--deployed", *argv])
    return code, capsysbinary.readouterr().err.decode(errors="replace").splitlines()


def _input_of(harness: Harness, name: str) -> dict[str, Any]:
    answer = harness.sfn.describe_execution(executionArn=_arn(harness, name))
    given: dict[str, Any] = json.loads(answer["input"])
    return given


def _arn(harness: Harness, name: str) -> str:
    return harness.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def test_each_stages_choice_runs_only_its_checks_in_a_checks_only_run(
    example_synth: Synthesis,  # noqa: F811
) -> None:
    """A checks-only run goes from a stage's Choice straight to its checks task (every stage's, or
    only checks_stage's, as `--checks-only --stage N` locally), else past the stage: its steps never
    run. These rules come before from_stage's, and a malformed checks_only fails before any cluster."""
    states = states_of(definition_of(example_synth, PIPELINE))
    for stage in load_pipeline(EXAMPLE).stages:
        choice = states[f"Stage {stage.number}?"]
        only_checks, past, from_stage = choice["Choices"][:3]
        assert only_checks["Next"] == checks_state_name(stage)
        assert only_checks["And"][0] == {
            "And": [
                {"Variable": CHECKS_ONLY, "IsPresent": True},
                {"Variable": CHECKS_ONLY, "BooleanEquals": True},
            ]
        }
        assert only_checks["And"][1] == {
            "Or": [
                {"Not": {"Variable": CHECKS_STAGE, "IsPresent": True}},
                {
                    "And": [
                        {"Variable": CHECKS_STAGE, "IsNumeric": True},
                        {"Variable": CHECKS_STAGE, "NumericEquals": stage.number},
                    ]
                },
            ]
        }
        # Any other stage of a checks-only run: past it (a stage without checks has only this rule).
        assert past["Next"] == skip_state_name(stage) and past["And"] == only_checks["And"][0]["And"]
        assert from_stage["Next"] == skip_state_name(stage) and "FromStage" not in json.dumps(past)
        assert choice["Default"] == f"Stage {stage.number}"
    rules = states["Proceed?"]["Choices"]
    (invalid,) = [rule for rule in rules if rule["Next"] == "InvalidChecksOnly"]
    assert rules.index(invalid) < [r["Next"] for r in rules].index("Given cluster?")
    assert states["InvalidChecksOnly"]["Type"] == "Fail"


def test_a_checks_only_run_runs_every_stages_checks_and_no_step(
    harness: Harness, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--deployed --checks-only`: a run of its own name (never the nightly's), a cluster, each
    stage's checks task and no step, the cluster terminated, exit 0; the e-mail says checks only."""
    code, lines = _cli(capsysbinary, "--checks-only", "--run-date", DATE)
    assert code == 0, "\n".join(lines)
    name = f"{PIPELINE}-{DATE}-checks"
    assert (
        f"nightshift: run {name} started (checks only: the stages' data checks on a new cluster, no step)"
        in lines
    )
    assert harness.faults.steps_run == ["10_checks", "20_checks", "30_checks"]
    assert _input_of(harness, name) == {"run_date": DATE, "checks_only": True}
    assert {c["Status"]["State"] for c in harness.clusters()} == {"TERMINATED"}
    assert len(harness.clusters()) == 1
    assert "nightshift: stage 10's checks started" in lines
    # The summary lists the steps as skipped: none ran.
    (users,) = [line for line in lines if line.split()[1:2] == ["10_users.sql"]]
    assert "skipped" in users, users

    inbox = _alert_inbox(monkeypatch, harness)
    execution = harness.sfn.describe_execution(executionArn=_arn(harness, name))
    detail = {key: execution[key] for key in ("executionArn", "stateMachineArn", "name", "status")}
    answer = alert_lambda.handler({"detail": detail}, FakeLambdaContext())
    assert answer["subject"].startswith(f"Nightshift: {name} SUCCEEDED (checks only)"), answer
    (message,) = inbox.messages()
    first = message["Message"].splitlines()[0]
    assert first == (
        f"Nightshift pipeline {PIPELINE}: run {name} SUCCEEDED (a checks-only run: only the data checks ran, no step)."
    )

    # Only stage 20's checks, again on the same date: no --rerun needed, the next name.
    harness.faults.steps_run.clear()
    code, lines = _cli(capsysbinary, "--checks-only", "--stage", "20", "--run-date", DATE)
    assert code == 0, "\n".join(lines)
    assert harness.faults.steps_run == ["20_checks"]
    second = f"{name}-r2"
    assert _input_of(harness, second) == {"run_date": DATE, "checks_only": True, "checks_stage": 20}
    entered = harness.states_entered(_arn(harness, second))
    assert "Skip Stage 10" in entered and "Skip Stage 30" in entered and "Stage 20" not in entered
    assert {c["Status"]["State"] for c in harness.clusters()} == {"TERMINATED"}
    # The nightly run of the date was never taken: it still starts under its own name.
    assert harness.run(DATE)["name"] == f"{PIPELINE}-{DATE}"


def test_a_failing_check_in_a_checks_only_run_exits_65_and_terminates_the_cluster(
    harness: Harness, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stage 10's checks find duplicated users (planted as test_deployed_checks plants them): the
    checks-only run fails with the data's exit code, 65, terminates its cluster, runs no step, and
    the alert names the check and says it was a checks-only run."""
    harness.faults.exit_codes["10_checks"] = 65
    harness.faults.scripts["10_checks"] = StepScript(results=_check_records("users.unique", 1204, DUPLICATES))
    code, lines = _cli(capsysbinary, "--checks-only", "--stage", "10", "--run-date", DATE)
    assert code == 65, "\n".join(lines)
    assert "nightshift: users.unique: failed: 1,204 rows (a sample of 3)" in lines
    assert harness.faults.steps_run == ["10_checks"]
    name = f"{PIPELINE}-{DATE}-checks"
    entered = harness.states_entered(_arn(harness, name))
    assert entered[entered.index("Check Stage 10") + 1 : entered.index("Check Stage 10") + 3] == [
        "Leave cluster?",
        "TerminateCluster",
    ]
    assert {c["Status"]["State"] for c in harness.clusters()} == {"TERMINATED"}

    inbox = _alert_inbox(monkeypatch, harness)
    execution = harness.sfn.describe_execution(executionArn=_arn(harness, name))
    assert execution["status"] == "FAILED"
    detail = {key: execution[key] for key in ("executionArn", "stateMachineArn", "name", "status")}
    answer = alert_lambda.handler({"detail": detail}, FakeLambdaContext())
    assert answer["subject"] == f"Nightshift: {name} FAILED (checks only): check users.unique failed"
    (message,) = inbox.messages()
    body = message["Message"].splitlines()
    assert body[0] == (
        f"Nightshift pipeline {PIPELINE}: run {name} FAILED"
        " (a checks-only run: only the data checks ran, no step)."
    )
    assert "  users.unique (error): failed, 1,204 rows; a sample of 3:" in body


def test_a_checks_only_run_is_refused_while_a_run_of_its_date_runs(
    harness: Harness, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Checks read what the date's run writes: while that run runs, no checks-only run starts (one
    line, exit 4, no second execution); once it has ended, one starts without --rerun."""
    # The gate opens when the test has looked (not on a clock): a loaded machine only waits longer.
    users = StepScript(gate_after=0, gate_timeout=600)
    harness.faults.scripts["10_users.sql"] = users
    harness.sfn.start_execution(
        stateMachineArn=harness.state_machine_arn,
        name=f"{PIPELINE}-{DATE}",
        input=json.dumps({"run_date": DATE}),
    )
    try:
        assert users.reached_gate.wait(300)
        code, lines = _cli(capsysbinary, "--checks-only", "--run-date", DATE)
        assert code == 4, lines
        assert lines[-1].startswith(f"nightshift: error: {PIPELINE}-{DATE} is running"), lines
        listed = harness.sfn.list_executions(stateMachineArn=harness.state_machine_arn)["executions"]
        assert [e["name"] for e in listed] == [f"{PIPELINE}-{DATE}"]
    finally:
        users.gate.set()
    assert _wait(harness, _arn(harness, f"{PIPELINE}-{DATE}"))["status"] == "SUCCEEDED"
    code, lines = _cli(capsysbinary, "--checks-only", "--stage", "30", "--run-date", DATE)
    assert code == 0, "\n".join(lines)


@pytest.mark.parametrize("suffix", ["-checks", "-checks-r2", "-checks-r17"])
def test_a_checks_only_runs_name_is_a_run_of_its_date_for_preflight_and_the_cli(suffix: str) -> None:
    """Preflight refuses two runs of a date at once, a checks-only run included (it must not read
    tables a run of its date is still writing); --history --run-date lists it under its date."""
    name = f"{PIPELINE}-{DATE}{suffix}"
    assert date_of_name(name, PIPELINE) == date_of(PIPELINE, name) == DATE
    assert date_of_name(f"{PIPELINE}-{DATE}-checksx", PIPELINE) is None
