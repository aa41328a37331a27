"""A deployed run as its Step Functions history tells it: state changes, step attempts, outcome."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from runner.checks.run import CheckReport, report_of
from runner.deployed.run_states import (
    CLUSTER_STATUS_STATE,
    CREATE_CLUSTER_STATE,
    NEXT_LAUNCH_STATE,
    PREFLIGHT_STATE,
    RECORD_KEY,
    RECORD_RUN_STATE,
    RUN_STAGES_STATE,
    TERMINATE_CLUSTER_STATE,
    StateKind,
    StepStatus,
    checks_state_name,
    checks_step_name,
    parse_state,
    step_state_name,
)
from runner.execution import EXIT_TIMEOUT, SKIPPED, RunReport, StepReport
from runner.model import Engine, Pipeline, Stage, Step

#: a run that failed outside any step: the cluster never started, preflight refused, inputs late
EXIT_RUN_FAILED = 69  # EX_UNAVAILABLE: the service the steps need was not there
#: the execution was stopped (--stop, the console): as a run stopped by SIGTERM
EXIT_RUN_STOPPED = 143
#: a step whose task ended without an exit code (it never started, Fargate lost it)
EXIT_NO_CODE = 1

ENDED = ("SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT")


@dataclass
class Attempt:
    """One Fargate task of a step: where its output went and how it ended."""

    number: int
    started: datetime
    task_arn: str | None = None
    ended: datetime | None = None
    exit_code: int | None = None
    reason: str = ""


@dataclass
class StepRun:
    step: Step
    entered: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)
    skipped: bool = False
    done: bool = False
    #: it was running in a date's `Run stages` task when its run was stopped (or timed out)
    stopped: bool = False
    #: the most attempts its run allows (a `step_ended` record's `attempts`), when a record said it
    most_attempts: int | None = None

    @property
    def exit_code(self) -> int | None:
        return self.attempts[-1].exit_code if self.attempts and self.done else None

    @property
    def status(self) -> StepStatus:
        if self.skipped:
            return StepStatus.SKIPPED
        if self.entered is None:
            return StepStatus.NOT_RUN
        if not self.done:
            return StepStatus.RUNNING
        if self.stopped:
            return StepStatus.STOPPED
        return StepStatus.of_exit(self.exit_code)

    def report(self, now: datetime) -> StepReport:
        report = StepReport(self.step)
        status = self.status
        if status is StepStatus.SKIPPED:
            report.status = status.value
            return report
        if status is StepStatus.NOT_RUN:
            return report
        last = self.attempts[-1] if self.attempts else None
        end = last.ended if last is not None and last.ended is not None and self.done else now
        report.seconds = max(0.0, (end - self.entered).total_seconds()) if self.entered else 0.0
        if status in (StepStatus.RUNNING, StepStatus.STOPPED):
            report.status = status.value
            return report
        report.exit_code = self.exit_code
        report.status = f"failed (exit {self.exit_code})" if status is StepStatus.FAILED else status.value
        return report


@dataclass(frozen=True)
class Notice:
    """A `nightshift:` line; `after_task` holds it back until that task's output has been printed."""

    message: str
    after_task: str | None = None
    #: the rest of the line, made when it is said: a date's stages stream tells after the history
    #: event which step failed the run ("": a line that only holds back the ones after it)
    then: Callable[[], str] | None = None

    @property
    def line(self) -> str:
        return self.message + (self.then() if self.then is not None else "")


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


def _details(event: Mapping[str, Any]) -> Mapping[str, Any]:
    found = next((v for k, v in event.items() if k.endswith("EventDetails")), None)
    return found if isinstance(found, Mapping) else {}


def checks_step(pipeline: Pipeline, stage: Stage) -> Step:
    """A stage's checks task as the step it is to the tracker: named `NN_checks`, as the runner names it."""
    return Step(pipeline.folder / checks_step_name(stage.number), stage.number, Engine.SPARK_SQL)


def stages_task_step(pipeline: Pipeline) -> Step:
    """A date's `Run stages` task as the step it is to the tracker: the pipeline folder, as it runs it."""
    return Step(pipeline.folder, None, Engine.SPARK_SQL)


def _record_time(record: Mapping[str, Any]) -> datetime | None:
    """When the runner wrote a record (its `time`, ISO 8601 in UTC), None when it has none."""
    try:
        return datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None


def _exit_code(task: Any) -> int | None:
    """The runner container's exit code in an ECS task (PascalCase, as Step Functions gives it)."""
    if not isinstance(task, Mapping):
        return None
    for container in task.get("Containers") or []:
        if isinstance(container, Mapping) and container.get("ExitCode") is not None:
            return int(container["ExitCode"])
    return None


class RunTracker:
    """Folds history events, in id order, into what a user wants to see of a run."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.steps = {step_state_name(step.name): StepRun(step) for step in pipeline.steps}
        #: each stage's checks task, by its state's name
        self.checks = {
            checks_state_name(stage.number): StepRun(checks_step(pipeline, stage))
            for stage in pipeline.stages
            if stage.checks
        }
        #: a date of a batch's one runner task for all its stages (RUN_STAGES_STATE): its steps' and
        #: checks' runs above are told by its stream's records (`take_stages_record`), not by tasks
        self.stages_task = StepRun(stages_task_step(pipeline))
        #: the stages whose start was said from a `Run stages` stream
        self._stages_said: set[int | None] = set()
        #: each check's result as its task's log said it (`take_check`), by its label
        self.check_results: dict[str, CheckReport] = {}
        #: each check's status and count as RecordRun recorded them, by its label
        self.recorded_checks: dict[str, Mapping[str, Any]] = {}
        self._state_of: dict[int, str] = {}
        self._failed_in: dict[str, str] = {}  # state -> error of its last failed task, for retry lines
        self.status = "RUNNING"
        self.error = ""
        self.cause = ""
        self.started: datetime | None = None
        self.stopped: datetime | None = None
        self.run_date = ""
        self.from_stage: int | None = None
        #: the run only runs data checks (`checks_only` in its input): its steps are skipped
        self.checks_only = False
        self.cluster_id = ""
        self._cluster_requested: datetime | None = None
        #: CreateCluster was entered and has not answered yet: a cluster may appear any moment
        self.creating = False
        #: what RecordRun computed the run cost (USD, Spot counted at On-Demand), when it did
        self.cost_usd: float | None = None
        self._cluster_ready = False
        self._launch = 1
        #: why Preflight last made the run wait for a slot ("": it did not)
        self._queued = ""
        self.new_tasks: list[tuple[StepRun, Attempt]] = []

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def apply(self, event: Mapping[str, Any]) -> list[Notice]:
        """Take one history event; the `nightshift:` lines it makes."""
        kind: str = event["type"]
        when: datetime = event["timestamp"]
        entered = event.get("stateEnteredEventDetails")
        exited = event.get("stateExitedEventDetails")
        if entered is not None:
            state = entered["name"]
        elif exited is not None:
            state = exited["name"]
        else:
            state = self._state_of.get(event.get("previousEventId") or 0, "")
        self._state_of[event["id"]] = state
        if kind.startswith("Execution"):
            return self._execution(kind, event, when)
        if entered is not None:
            return self._entered(state, entered, when)
        if exited is not None:
            return self._exited(state, exited)
        if kind.startswith("Task"):
            return self._task(kind, state, event, when)
        return []

    # --- the execution ---------------------------------------------------------------------

    def _execution(self, kind: str, event: Mapping[str, Any], when: datetime) -> list[Notice]:
        if kind == "ExecutionStarted":
            self.started = when
            given = _json(event["executionStartedEventDetails"].get("input"))
            if isinstance(given, Mapping):
                self.run_date = str(given.get("run_date", ""))
                if isinstance(given.get("from_stage"), int):
                    self.from_stage = given["from_stage"]
                if given.get("checks_only") is True:
                    # A checks-only run: no step runs, whatever stage its checks are in.
                    self.checks_only = True
                    for run in self.steps.values():
                        run.skipped = True
            return []
        self.stopped = when
        said = self._execution_end(kind, event, when)
        task = self.stages_task
        last = task.attempts[-1] if task.attempts else None
        if last is not None and last.task_arn and not task.done:
            # The run ended with its stages task still running: that task's last lines come first.
            return [Notice("", last.task_arn), *said]
        return said

    def _execution_end(self, kind: str, event: Mapping[str, Any], when: datetime) -> list[Notice]:
        details: Mapping[str, Any] = _details(event)
        self.error = str(details.get("error", "") or "")
        self.cause = str(details.get("cause", "") or "")
        took = f" after {self._minutes(when):.1f} min"
        if kind == "ExecutionSucceeded":
            self.status = "SUCCEEDED"
            return [Notice(f"run succeeded{took}")]
        if kind == "ExecutionAborted":
            self.status = "ABORTED"
            return [Notice(f"run stopped{took}" + (f": {self.cause}" if self.cause else ""))]
        if kind == "ExecutionTimedOut":
            self.status = "TIMED_OUT"
            return [Notice(f"run timed out{took} (the state machine's timeout)")]
        self.status = "FAILED"
        if self.stages_task.entered is not None:
            return [Notice(f"run failed{took}: ", then=lambda: self.failure)]
        return [Notice(f"run failed{took}: {self.failure}")]

    def _minutes(self, when: datetime) -> float:
        return (when - self.started).total_seconds() / 60 if self.started else 0.0

    # --- states ------------------------------------------------------------------------------

    def _entered(self, state: str, details: Mapping[str, Any], when: datetime) -> list[Notice]:
        if state != CREATE_CLUSTER_STATE:
            self.creating = False
        run = self._task_run(state)
        if run is self.stages_task:
            run.entered = run.entered or when
            return self._skip_before_from_stage()
        if run is not None:
            run.entered = run.entered or when
            return [Notice(f"stage {run.step.stage}'s checks started")] if state in self.checks else []
        named = parse_state(state)
        if named.kind is StateKind.SKIP_STAGE:
            for run in [*self.steps.values(), *self.checks.values()]:
                if run.step.stage == named.stage:
                    run.skipped = True
            return [Notice(f"stage {named.stage} skipped")]
        if named.kind is StateKind.STAGE:
            return [Notice(f"stage {named.stage} started")]
        if state == CREATE_CLUSTER_STATE:
            self._cluster_requested = self._cluster_requested or when
            self.creating = True
            return []
        if state == NEXT_LAUNCH_STATE:
            given = _json(details.get("input")) or {}
            reason = (given.get("status") or {}).get("reason") or "it failed to start"
            self._launch += 1
            return [
                Notice(
                    f"cluster {self.cluster_id} failed to start ({reason}); "
                    f"launch retried (attempt {self._launch})"
                )
            ]
        if state == TERMINATE_CLUSTER_STATE and self.cluster_id:
            return [Notice(f"terminating cluster {self.cluster_id}")]
        return []

    def _exited(self, state: str, details: Mapping[str, Any]) -> list[Notice]:
        if state == CREATE_CLUSTER_STATE:
            self.creating = False
        output = _json(details.get("output"))
        if not isinstance(output, Mapping):
            return []
        if state == PREFLIGHT_STATE:
            checked = output.get("preflight") or {}
            reason = str(checked.get("reason") or "") if checked.get("wait") else ""
            said, self._queued = self._queued, reason
            # Said when the wait begins and when what it waits for changes, not at every poll.
            return [Notice(f"waiting for a free slot: {reason}")] if reason and reason != said else []
        if state == CREATE_CLUSTER_STATE:
            self.cluster_id = str((output.get("cluster") or {}).get("cluster_id") or "")
            return [Notice(f"cluster {self.cluster_id} requested")]
        if state == RECORD_RUN_STATE:
            checks = (output.get(RECORD_KEY) or {}).get("checks")
            if isinstance(checks, Mapping):
                self.recorded_checks = {str(k): v for k, v in checks.items() if isinstance(v, Mapping)}
            cost = ((output.get(RECORD_KEY) or {}).get("cost") or {}).get("total_usd")
            if isinstance(cost, int | float):
                self.cost_usd = float(cost)
                return [Notice(f"run cost ${cost:.2f} (EMR, EC2 and Fargate; Spot at the On-Demand price)")]
            return []
        ready = (output.get("status") or {}).get("ready")
        if state == CLUSTER_STATUS_STATE and not self._cluster_ready and ready:
            self._cluster_ready = True
            return [Notice(f"cluster {self.cluster_id} ready after {self._since_requested():.1f} min")]
        return []

    def _since_requested(self) -> float:
        if self._cluster_requested is None or not self._last_time:
            return 0.0
        return (self._last_time - self._cluster_requested).total_seconds() / 60

    # --- tasks -------------------------------------------------------------------------------

    _last_time: datetime | None = None

    def _task_run(self, state: str) -> StepRun | None:
        """The step, or the stage's checks, or a date's stages, that a task state runs."""
        if state == RUN_STAGES_STATE:
            return self.stages_task
        return self.steps.get(state) or self.checks.get(state)

    def _task(self, kind: str, state: str, event: Mapping[str, Any], when: datetime) -> list[Notice]:
        self._last_time = when
        run = self._task_run(state)
        if run is None:
            return self._lambda_task(kind, state, event)
        stages = run is self.stages_task
        name = RUN_STAGES_STATE if stages else run.step.file_name
        if kind == "TaskScheduled":
            previous = run.attempts[-1] if run.attempts else None
            run.attempts.append(Attempt(len(run.attempts) + 1, when))
            if previous is not None and (stages or state in self.checks):
                # A checks task is retried only when ECS failed to run it.
                return [Notice(f"{name}: retrying (attempt {len(run.attempts)})")]
            if previous is not None:
                tries = self.pipeline.config.steps.retries + 1
                return [Notice(f"{name}: retrying (attempt {len(run.attempts)} of {tries})")]
            return []
        attempt = run.attempts[-1] if run.attempts else None
        if attempt is None:
            return []
        if kind == "TaskSubmitted":
            submitted = _json(event["taskSubmittedEventDetails"].get("output")) or {}
            tasks = submitted.get("Tasks") or []
            if tasks and tasks[0].get("TaskArn"):
                attempt.task_arn = str(tasks[0]["TaskArn"])
                self.new_tasks.append((run, attempt))
            return []
        if kind == "TaskSucceeded":
            attempt.ended = when
            attempt.exit_code = _exit_code(_json(event["taskSucceededEventDetails"].get("output")))
            attempt.exit_code = 0 if attempt.exit_code is None else attempt.exit_code
            run.done = True
            if stages:
                # Its steps' lines came from its stream; what follows waits until that is all printed.
                return [Notice("", attempt.task_arn)]
            return [Notice(f"{name}: finished with exit code {attempt.exit_code}", attempt.task_arn)]
        if kind in ("TaskFailed", "TaskTimedOut", "TaskStartFailed", "TaskSubmitFailed"):
            details: Mapping[str, Any] = _details(event)
            attempt.ended = when
            error = str(details.get("error", "") or "")
            cause = _json(details.get("cause"))
            code = _exit_code(cause)
            if kind == "TaskTimedOut" or error == "States.Timeout":
                code = EXIT_TIMEOUT
            attempt.exit_code = EXIT_NO_CODE if code is None else code
            if code is None and isinstance(cause, Mapping):
                attempt.reason = str(cause.get("StoppedReason") or error)
            run.done = True  # until a retry schedules the next attempt
            said = f"exit code {code}" if code is not None else f"no exit code ({attempt.reason or error})"
            if stages and code is not None:
                return [Notice("", attempt.task_arn)]  # its failed step said so in its stream
            return [Notice(f"{name}: failed with {said}", attempt.task_arn)]
        return []

    # --- a date of a batch: its one `Run stages` task's stream --------------------------------

    def _skip_before_from_stage(self) -> list[Notice]:
        # The task runs with --from-stage: its stream has no step record of the stages before it,
        # and says each skipped stage itself ("stage 10 skipped (--from-stage 20): ..."), a
        # night's line with its steps named, so none is said here.
        for stage in self.pipeline.stages:
            if stage.number is not None and self.from_stage is not None and stage.number < self.from_stage:
                for run in [*self.steps.values(), *self.checks.values()]:
                    if run.step.stage == stage.number:
                        run.skipped = True
        return []

    def stage_run(self, step: str) -> StepRun | None:
        """A step, or a stage's checks (`NN_checks`), by the name a stages stream's record gives it."""
        stage, _, rest = step.partition("_")
        if rest == "checks" and stage.isdigit() and checks_state_name(int(stage)) in self.checks:
            return self.checks[checks_state_name(int(stage))]
        return self.steps.get(step_state_name(step))

    def take_stages_record(self, record: Mapping[str, Any]) -> list[str]:
        """A runner notice from a date's `Run stages` stream: the lines to say for it, as a night says them.

        Its `step_started`, `step_ended` and `step_retry` records tell each step's (and each stage's
        checks') attempts and how they ended; any other notice is said as it is.
        """
        line = str(record.get("line", ""))
        event = record.get("event")
        run = self.stage_run(str(record.get("step") or ""))
        if run is None or event not in ("step_started", "step_ended", "step_retry"):
            return [line]
        when = _record_time(record) or self._last_time or self.started or datetime.now(UTC)
        given = record.get("attempt")
        number = given if isinstance(given, int) and given >= 1 else max(len(run.attempts), 1)
        name = run.step.file_name
        if event == "step_retry":
            tries = run.most_attempts or self.pipeline.config.steps.retries + 1
            return [f"{name}: retrying (attempt {number} of {tries})"]
        said: list[str] = []
        if event == "step_started":
            if any(run is checks for checks in self.checks.values()):
                said.append(f"stage {run.step.stage}'s checks started")
            elif run.step.stage not in self._stages_said and run.step.stage is not None:
                self._stages_said.add(run.step.stage)  # said once, at its first step's start
                said.append(f"stage {run.step.stage} started")
            attempt = self._attempt(run, number, when)
            attempt.started = when
            run.entered = run.entered or when
            run.done = run.stopped = False
            return [*said, line]
        seconds = record.get("seconds")
        took = timedelta(seconds=float(seconds)) if isinstance(seconds, int | float) else None
        attempt = self._attempt(run, number, when - took if took is not None else when)
        attempt.ended = attempt.started + took if took is not None else when
        run.entered = run.entered or attempt.started
        try:
            status = StepStatus.parse(record.get("status"))
        except ValueError:
            status = StepStatus.FAILED
        code = record.get("exit_code")
        if not isinstance(code, int) or isinstance(code, bool):
            code = {
                StepStatus.SUCCEEDED: 0,
                StepStatus.TIMED_OUT: EXIT_TIMEOUT,
                StepStatus.STOPPED: None,
            }.get(status, EXIT_NO_CODE)
        attempt.exit_code = code
        run.done = True
        run.stopped = status is StepStatus.STOPPED
        most = record.get("attempts")
        run.most_attempts = most if isinstance(most, int) and most >= 1 else run.most_attempts
        if run.stopped:
            return [line]
        ended = "finished with exit code 0" if code == 0 else f"failed with exit code {code}"
        return [line, f"{name}: {ended}"]

    @staticmethod
    def _attempt(run: StepRun, number: int, when: datetime) -> Attempt:
        while len(run.attempts) < number:
            run.attempts.append(Attempt(len(run.attempts) + 1, when))
        return run.attempts[number - 1]

    def _settle_stages(self) -> None:
        """Once a date's `Run stages` task (or its run) has ended: a step it left without an end record.

        Stopped when the run was stopped (or timed out), else failed with the task's exit code.
        """
        task = self.stages_task
        if task.entered is None or not (task.done or self.ended):
            return
        stopped = self.status in ("ABORTED", "TIMED_OUT")
        code = task.exit_code or EXIT_NO_CODE
        end = (task.attempts[-1].ended if task.attempts and task.done else None) or self.stopped
        for run in [*self.steps.values(), *self.checks.values()]:
            if run.entered is not None and not run.done and run.attempts:
                run.attempts[-1].ended = run.attempts[-1].ended or end
                run.attempts[-1].exit_code = None if stopped else code
                run.done, run.stopped = True, stopped

    def _lambda_task(self, kind: str, state: str, event: Mapping[str, Any]) -> list[Notice]:
        if kind == "TaskFailed":
            self._failed_in[state] = str(event["taskFailedEventDetails"].get("error", ""))
        elif kind == "TaskScheduled" and state in self._failed_in:
            return [Notice(f"{state}: retried after {self._failed_in.pop(state)}")]
        return []

    # --- the outcome -------------------------------------------------------------------------

    def take_check(self, record: Mapping[str, Any]) -> CheckReport | None:
        """A check's result record from its task's log: kept for the summary (None: not this pipeline's)."""
        check = next((c for c in self.pipeline.checks if c.label == record.get("check")), None)
        if check is None:
            return None
        report = report_of(check, record)
        self.check_results[check.label] = report
        return report

    def check_reports(self, now: datetime) -> list[CheckReport]:
        """Every check of the pipeline as this run has it: its result, or how its stage's task ended."""
        self._settle_stages()
        reports = []
        for check in self.pipeline.checks:
            run = self.checks.get(checks_state_name(check.stage))
            report = self.check_results.get(check.label)
            if report is None:
                report = CheckReport(check)
                recorded = self.recorded_checks.get(check.label)
                if recorded is not None:
                    report = report_of(check, recorded)
                elif run is not None and run.skipped:
                    report.status = SKIPPED
                elif run is not None and run.done and run.exit_code:
                    # No result came: the checks' engine (or the task) failed before it counted.
                    report.exit_code = run.exit_code
                    report.status = f"failed (exit {run.exit_code})"
            if run is not None and run.entered is not None and run.done:
                stage_checks = sum(1 for c in self.pipeline.checks if c.stage == check.stage)
                report.seconds = run.report(now).seconds / stage_checks
            reports.append(report)
        return reports

    def failing_step(self) -> StepRun | None:
        """The step (or stage's checks) whose failure failed the run: the earliest to end non-zero."""
        self._settle_stages()
        runs = [*self.steps.values(), *self.checks.values()]
        failed = [r for r in runs if r.done and not r.stopped and r.exit_code not in (0, None)]
        return min(failed, key=lambda r: r.attempts[-1].ended or r.attempts[-1].started, default=None)

    @property
    def failure(self) -> str:
        """Why the run failed, in a line: the failing step and its code, else the error and cause."""
        run = self.failing_step()
        if run is not None and self.error in ("States.TaskFailed", "States.Timeout", ""):
            return f"{run.step.file_name} exited with code {run.exit_code}"
        if (
            run is None
            and self.stages_task.exit_code
            and self.error in ("States.TaskFailed", "States.Timeout", "")
        ):
            return f"{RUN_STAGES_STATE} exited with code {self.stages_task.exit_code}"
        cause = self.cause if len(self.cause) <= 300 else self.cause[:300] + "..."
        return f"{self.error}: {cause}" if cause else self.error or "unknown error"

    def exit_code(self) -> int:
        """The run's exit code, as a local run would give it."""
        if self.status == "SUCCEEDED":
            return 0
        if self.status == "ABORTED":
            return EXIT_RUN_STOPPED
        if self.status == "TIMED_OUT":
            return EXIT_TIMEOUT
        run = self.failing_step()
        if run is not None and run.exit_code:
            return run.exit_code
        if self.stages_task.exit_code:
            return self.stages_task.exit_code  # its stream told no failed step: the runner's own code
        return EXIT_RUN_FAILED

    def report(self, now: datetime) -> RunReport:
        code = self.exit_code() if self.ended else 0
        self._settle_stages()
        steps = [run.report(now) for run in self.steps.values()]
        return RunReport(steps, code, self.check_reports(now))


@dataclass(frozen=True)
class RecordedStep:
    """A step (or a stage's checks task) as RecordRun recorded it."""

    status: StepStatus
    exit_code: int | None
    task_arn: str | None

    @property
    def shown_exit_code(self) -> int:
        """Its exit code as the follower shows a failed task's: a timeout is 124, no code 1."""
        if self.exit_code is not None:
            return self.exit_code
        return EXIT_TIMEOUT if self.status is StepStatus.TIMED_OUT else EXIT_NO_CODE


@dataclass(frozen=True)
class RecordedRun:
    """A finished run as RecordRun's record tells it: no history replay needed."""

    #: steps and stages' checks tasks (`NN_checks`), by name, that the run entered
    steps: dict[str, RecordedStep]
    #: the step (or checks task) that failed the run, None when none did
    failing: str | None
    #: the error the run failed with ("" when it did not)
    error: str
    cost_usd: float | None
    #: each check's status and count, by its label
    checks: dict[str, Mapping[str, Any]]

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> RecordedRun:
        """The record's parts; ValueError for one without step statuses or with a status it does not know."""
        if "failure" not in record:
            raise ValueError("its record has no step statuses: RecordRun from before this Nightshift")
        steps: dict[str, RecordedStep] = {}
        for key in ("steps", "checks_tasks"):
            for name, step in (record.get(key) or {}).items():
                code = step.get("exit_code")
                steps[str(name)] = RecordedStep(
                    StepStatus.parse(step.get("status")),
                    code if isinstance(code, int) and not isinstance(code, bool) else None,
                    str(step["task_arn"]) if step.get("task_arn") else None,
                )
        failure = record.get("failure") or {}
        cost = (record.get("cost") or {}).get("total_usd")
        checks = record.get("checks") or {}
        return cls(
            steps=steps,
            failing=str(failure["step"]) if failure.get("step") else None,
            error=str(failure.get("error") or ""),
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
            checks={str(k): v for k, v in checks.items() if isinstance(v, Mapping)},
        )
