"""One reading of a run: the state names every reader parses are the synthesized state machine's."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.shared import run_states
from lambdas.shared.run_states import (
    CLUSTER_STATES,
    RECORD_KEY,
    RECORD_RUN_STATE,
    StateKind,
    StepStatus,
    parse_state,
)
from runner.canary import canary_pipeline
from runner.execution import EXIT_TIMEOUT
from runner.model import load_pipeline
from tests.infra.test_catalog import example_synth  # noqa: F401 - the shared sql/ synth
from tests.support.aws import ROOT, Synthesis, definition_of, states_of


def test_the_command_line_reads_runs_with_the_lambdas_own_file() -> None:
    """The CLI's package holds only runner/ (pyproject's packages), so it cannot import lambdas/: its
    copy is the same file, byte for byte."""
    lambdas_copy = (ROOT / "lambdas" / "shared" / "run_states.py").read_bytes()
    assert (ROOT / "runner" / "deployed" / "run_states.py").read_bytes() == lambdas_copy


def test_every_state_a_reader_names_is_the_synthesized_state_machines(example_synth: Synthesis) -> None:  # noqa: F811
    """sql/example (three stages with steps and checks) as synthesized: each of its steps, stages,
    skipped stages and checks tasks has a state by run_states' name and parses back to it, and no
    other state parses as one; the Lambda states the readers name are there; RecordRun puts its
    record where the readers look for it."""
    pipeline = load_pipeline(example_synth.pipelines_dir / "example")
    states = states_of(definition_of(example_synth, "example"))
    parsed = [parse_state(name) for name in states]

    def of(kind: StateKind) -> set[Any]:
        return {(named.stage, named.step) for named in parsed if named.kind is kind}

    canary_step = canary_pipeline().steps[0]
    assert of(StateKind.STEP) == {(step.stage, step.name) for step in (*pipeline.steps, canary_step)}
    numbers = {stage.number for stage in pipeline.stages}
    assert of(StateKind.STAGE) == {(number, None) for number in numbers}
    assert of(StateKind.SKIP_STAGE) == {(number, None) for number in numbers}
    checked = {stage.number for stage in pipeline.stages if stage.checks}
    assert checked and of(StateKind.CHECKS) == {(n, run_states.checks_step_name(n)) for n in checked}
    for named in parsed:
        # The inverse is exact: the name a reader would build for it is the state's own.
        if named.kind is StateKind.STEP:
            assert run_states.step_state_name(named.step or "") == named.name
        elif named.kind is StateKind.STAGE:
            assert run_states.stage_state_name(named.stage) == named.name
        elif named.kind is StateKind.SKIP_STAGE:
            assert run_states.skip_state_name(named.stage) == named.name
        elif named.kind is StateKind.CHECKS:
            assert run_states.checks_state_name(named.stage) == named.name
    lambda_states = {
        run_states.PREFLIGHT_STATE,
        run_states.CREATE_CLUSTER_STATE,
        run_states.CLUSTER_STATUS_STATE,
        run_states.NEXT_LAUNCH_STATE,
        run_states.TERMINATE_CLUSTER_STATE,
        RECORD_RUN_STATE,
        run_states.PREPARE_CANARY_STATE,
    }
    assert lambda_states <= set(states)
    assert set(CLUSTER_STATES) <= set(states)
    # A batch's and a child's states (docs/backfill.md, "How a batch runs"), and the choices a night
    # passes to go by them.
    batch_states = {
        *run_states.BATCH_STATES,
        run_states.BATCH_OR_DATE_STATE,
        run_states.GIVEN_CLUSTER_STATE,
        run_states.LEAVE_OR_TERMINATE_STATE,
    }
    assert batch_states <= set(states), batch_states - set(states)
    assert all(
        parse_state(name).kind is StateKind.OTHER for name in batch_states - {run_states.RUN_STAGES_STATE}
    )
    # A date of a batch's one runner task is the only state that parses as all its stages'.
    assert of(StateKind.STAGES) == {(None, None)}
    assert [name for name in states if parse_state(name).kind is StateKind.STAGES] == [
        run_states.RUN_STAGES_STATE
    ]
    assert states[run_states.RUN_STAGES_STATE]["Resource"].endswith(":states:::ecs:runTask.sync")
    assert states[run_states.STAGES_COMMAND_STATE]["Type"] == "Choice"
    assert states[run_states.DATES_STATE]["Type"] == "Map"
    assert states[run_states.RUN_DATE_STATE]["Resource"].endswith(":states:::states:startExecution.sync:2")
    assert states[run_states.LEAVE_CLUSTER_STATE]["Next"] == RECORD_RUN_STATE
    assert 1 < run_states.MAX_BATCH_DATES <= 31
    assert states[RECORD_RUN_STATE]["ResultPath"] == f"$.{RECORD_KEY}"


@pytest.mark.parametrize(
    ("name", "kind", "stage", "step"),
    [
        ("Run 20_sessions", StateKind.STEP, 20, "20_sessions"),
        ("Stage 30", StateKind.STAGE, 30, None),
        ("Skip Stage 10", StateKind.SKIP_STAGE, 10, None),
        ("Check Stage 30", StateKind.CHECKS, 30, "30_checks"),
        # A date of a batch: all its stages in one runner task.
        ("Run stages", StateKind.STAGES, None, None),
        # Choices and Lambda states whose names begin like the runs' own are none of them.
        ("Run failed?", StateKind.OTHER, None, None),
        ("Stage 10?", StateKind.OTHER, None, None),
        ("RecordRun", StateKind.OTHER, None, None),
        ("Run ", StateKind.OTHER, None, None),
    ],
)
def test_a_state_name_says_its_step_or_stage(
    name: str, kind: StateKind, stage: int | None, step: str | None
) -> None:
    named = parse_state(name)
    assert (named.kind, named.stage, named.step) == (kind, stage, step)
    assert named.is_task == (kind in (StateKind.STEP, StateKind.CHECKS, StateKind.STAGES))


def test_a_step_status_is_parsed_from_its_text_or_refused_by_name() -> None:
    assert [StepStatus.parse(status.value) for status in StepStatus] == list(StepStatus)
    with pytest.raises(ValueError, match="unknown step status 'done' \\(known: succeeded, failed, timed out"):
        StepStatus.parse("done")
    # The runner stops a step at its timeout_minutes with this exit code.
    assert run_states.EXIT_TIMEOUT == EXIT_TIMEOUT
    assert [StepStatus.of_exit(code) for code in (0, 7, EXIT_TIMEOUT, None)] == [
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.TIMED_OUT,
        StepStatus.FAILED,
    ]
