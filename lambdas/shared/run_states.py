"""A run's Step Functions states: their names, what a name says (a step, a stage), a step's status."""

# The state machine (infra/workflow.py) names its states with these, and every reader of a run (the
# CLI, RecordRun, the failure alert, the late check) parses them with these. The CLI's package
# cannot import the Lambdas' code, so runner/deployed/run_states.py is this file, byte for byte
# (tests/infra/test_run_states.py holds the two equal and the names equal to the synthesized
# state machine's). Standard library only.

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

STEP_PREFIX = "Run "
STAGE_PREFIX = "Stage "
SKIP_STAGE_PREFIX = "Skip Stage "
CHECKS_PREFIX = "Check Stage "

PREFLIGHT_STATE = "Preflight"
CREATE_CLUSTER_STATE = "CreateCluster"
CLUSTER_STATUS_STATE = "ClusterStatus"
NEXT_LAUNCH_STATE = "NextLaunch"
TERMINATE_CLUSTER_STATE = "TerminateCluster"
#: after TerminateCluster on every path that terminated: the run's record, at `$.run_record`
RECORD_RUN_STATE = "RecordRun"
RECORD_KEY = "run_record"
#: before CreateCluster in a canary run: its master-only launch plans
PREPARE_CANARY_STATE = "PrepareCanary"
CHECK_INPUTS_STATE = "CheckInputs"
#: the input gate's states: a run in one of them waits for its inputs
INPUT_STATES = frozenset({CHECK_INPUTS_STATE, "Inputs there?", "CountInputsPoll", "WaitForInputs"})
#: the queue's and the cluster start's states: a run in one of them waits for its cluster
CLUSTER_STATES = frozenset(
    {
        PREFLIGHT_STATE,
        "Proceed?",
        CREATE_CLUSTER_STATE,
        "WaitForCluster",
        CLUSTER_STATUS_STATE,
        "ClusterReady?",
        "CountPoll",
        NEXT_LAUNCH_STATE,
        "TerminateFailedLaunch",
    }
)
#: a batch (a shared-cluster backfill, docs/backfill.md): the most dates one batch execution may hold
MAX_BATCH_DATES = 31
#: PrepareRun's next state: a batch, a date of a batch (a child), or a night
BATCH_OR_DATE_STATE = "Batch or date?"
PREPARE_BATCH_STATE = "PrepareBatch"
PREPARE_DATE_STATE = "PrepareDate"
#: a child with missing [inputs]: checked once, it ends at once with error INPUTS_MISSING_ERROR
DATE_INPUTS_MISSING_STATE = "DateInputsMissing"
INPUTS_MISSING_ERROR = "InputsMissing"
#: after Proceed?: a child goes to its batch's cluster (one ClusterStatus), any other run creates one
GIVEN_CLUSTER_STATE = "Given cluster?"
USE_CLUSTER_STATE = "UseCluster"
#: a child whose batch's cluster is not ready (or gone): no stage runs
CLUSTER_GONE_ERROR = "ClusterGone"
#: the batch's Map over its dates, and each date's nested execution (startExecution.sync:2) in it
DATES_STATE = "Dates"
RUN_DATE_STATE = "Run date"
FROM_STAGE_CHOICE_STATE = "Date from stage?"
DATE_FROM_STAGE_STATE = "DateFromStage"
#: a date's execution failed, was refused or stopped: noted, and the next date runs
DATE_FAILED_STATE = "Date failed"
#: a date of a batch runs its stages in ONE runner task (the pipeline folder, as `python -m runner`
#: runs it on a cluster), not a task per step: a Fargate start per date, not per step (docs/backfill.md)
RUN_STAGES_STATE = "Run stages"
#: before it: the task's command, with --from-stage only when the date has one
STAGES_COMMAND_STATE = "Stages command"
#: before TerminateCluster on every path: a child leaves its batch's cluster (`Leave cluster`)
LEAVE_OR_TERMINATE_STATE = "Leave cluster?"
LEAVE_CLUSTER_STATE = "Leave cluster"
#: after RecordRun: a batch whose dates failed ends with error DATES_FAILED_ERROR naming them
BATCH_FAILED_STATE = "Batch failed?"
DATES_FAILED_ERROR = "DatesFailed"
#: the states only a batch or a child enters (and DATE_INPUTS_MISSING_STATE, in a gated pipeline)
BATCH_STATES = frozenset(
    {
        PREPARE_BATCH_STATE,
        PREPARE_DATE_STATE,
        USE_CLUSTER_STATE,
        DATES_STATE,
        RUN_DATE_STATE,
        FROM_STAGE_CHOICE_STATE,
        DATE_FROM_STAGE_STATE,
        DATE_FAILED_STATE,
        STAGES_COMMAND_STATE,
        RUN_STAGES_STATE,
        LEAVE_CLUSTER_STATE,
        BATCH_FAILED_STATE,
    }
)
#: the runner's exit code for a step it stopped at its timeout_minutes (runner.execution.EXIT_TIMEOUT)
EXIT_TIMEOUT = 124

_STEP_STAGE = re.compile(r"^(\d+)_[^?]+$")
_NUMBER = re.compile(r"^\d+$")


def step_state_name(step: str) -> str:
    """The Fargate task of one step, by the step's name (its file name without extension)."""
    return f"{STEP_PREFIX}{step}"


def stage_state_name(stage: int | None) -> str:
    """The Parallel state that runs a stage's steps."""
    return f"{STAGE_PREFIX}{stage}"


def skip_state_name(stage: int | None) -> str:
    """The Pass state a run goes past a stage by: before --from-stage, or a checks-only run's other stages."""
    return f"{SKIP_STAGE_PREFIX}{stage}"


def checks_state_name(stage: int | None) -> str:
    """The Fargate task that runs a stage's data checks, after its steps and before the next stage."""
    return f"{CHECKS_PREFIX}{stage}"


def checks_step_name(stage: int | None) -> str:
    """A stage's checks task as a step, as the runner names it in summaries: `30_checks`."""
    return f"{stage}_checks"


class StateKind(Enum):
    STEP = "step"
    STAGE = "stage"
    SKIP_STAGE = "skip stage"
    CHECKS = "checks"
    #: a date of a batch's one runner task for all its stages (RUN_STAGES_STATE)
    STAGES = "stages"
    OTHER = "other"


@dataclass(frozen=True)
class StateName:
    """What a state's name says: a step's task (and its stage), a stage, a skipped stage, its checks."""

    name: str
    kind: StateKind
    stage: int | None = None
    #: the step a task state runs: the step's name, or a stage's checks task's `NN_checks`
    step: str | None = None

    @property
    def is_task(self) -> bool:
        """A runner task: a step's, a stage's checks' or a date's stages' (RUN_STAGES_STATE)."""
        return self.kind in (StateKind.STEP, StateKind.CHECKS, StateKind.STAGES)


def _number(text: str) -> int | None:
    return int(text) if _NUMBER.match(text) else None


def parse_state(name: str) -> StateName:
    """The inverse of the names above; a name none of them makes is OTHER."""
    if name == RUN_STAGES_STATE:
        return StateName(name, StateKind.STAGES)
    for prefix, kind in (
        (SKIP_STAGE_PREFIX, StateKind.SKIP_STAGE),
        (CHECKS_PREFIX, StateKind.CHECKS),
        (STAGE_PREFIX, StateKind.STAGE),
    ):
        if name.startswith(prefix) and (number := _number(name.removeprefix(prefix))) is not None:
            step = checks_step_name(number) if kind is StateKind.CHECKS else None
            return StateName(name, kind, number, step)
    # A step is named after its file, `NN_name` ("Run failed?", a Choice, is no step).
    stage = _STEP_STAGE.match(name.removeprefix(STEP_PREFIX)) if name.startswith(STEP_PREFIX) else None
    if stage is not None:
        return StateName(name, StateKind.STEP, int(stage[1]), name.removeprefix(STEP_PREFIX))
    return StateName(name, StateKind.OTHER)


class StepStatus(Enum):
    """How a step (or a stage's checks task) of a run ended, or that it has not."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: stopped by the runner at its timeout_minutes (exit 124), or by its task's own timeout
    TIMED_OUT = "timed out"
    #: its stage was before --from-stage, or the run only ran checks
    SKIPPED = "skipped"
    #: the run ended (failed, stopped) before it
    NOT_RUN = "not run"
    RUNNING = "running"
    #: its run was stopped (StopExecution) or timed out while it ran
    STOPPED = "stopped"

    @classmethod
    def parse(cls, text: object) -> StepStatus:
        """A status as a record carries it; ValueError naming the known ones for anything else."""
        for status in cls:
            if status.value == text:
                return status
        known = ", ".join(status.value for status in cls)
        raise ValueError(f"unknown step status {text!r} (known: {known})")

    @classmethod
    def of_exit(cls, exit_code: int | None) -> StepStatus:
        """An ended task's status by its container's exit code (None: it ended without one)."""
        if exit_code == 0:
            return cls.SUCCEEDED
        return cls.TIMED_OUT if exit_code == EXIT_TIMEOUT else cls.FAILED
