"""The executor port and the pipeline run: stages in order, steps of a stage together, a summary."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from runner.checks.run import (
    EXIT_DATA,
    CaptureOutput,
    CheckCount,
    CheckReport,
    FailuresTable,
    check_file,
    failures_table,
    new_marker,
    parse_check_output,
    result_lines,
)
from runner.checks.spec import CheckStatus, DataCheck
from runner.dates import date_variables
from runner.errors import NightshiftError, UsageError
from runner.model import Engine, Pipeline, Stage, Step, UndefinedVariable, undefined_variables
from runner.output import ErrorLine, Output, StepEnd, StepOutput
from runner.statements import statement_start_lines

EXIT_TIMEOUT = 124  # as GNU timeout
EXIT_UNREACHABLE = 255  # as ssh


class Outcome(StrEnum):
    """How a step run ended, as the summary table says it."""

    FINISHED = "finished"
    TIMED_OUT = "timed out"
    STOPPED = "stopped"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class StepResult:
    """What an executor reports: the step's exit code (or the runner's, when it did not finish) and why."""

    exit_code: int
    outcome: Outcome = Outcome.FINISHED


class StopRequest:
    """Set from a signal handler; executors poll it and stop their step when it is set."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum = 0

    def trigger(self, signum: int) -> None:
        self.signum = signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass(frozen=True)
class Invocation:
    """One step, ready to run: which engine, which variables, under which run."""

    step: Step
    engine: Engine
    variables: Mapping[str, str]
    pipeline: str
    run_id: str
    timeout_seconds: float | None = None


class Executor(Protocol):
    """Runs invocations somewhere (a local process, a cluster over SSH)."""

    #: whether the steps of one stage may run at the same time on this executor
    parallel: bool

    def describe(self, invocation: Invocation) -> str:
        """The command line that would run, for --dry-run."""
        ...

    def run(self, invocation: Invocation, output: StepOutput, stop: StopRequest) -> StepResult:
        """Run to the end; on `stop` or timeout, stop the step first. Notices go through `output`."""
        ...


@dataclass(frozen=True)
class RunPlan:
    """One run of a pipeline: its variables and run id, and the invocation of each of its steps."""

    pipeline: Pipeline
    variables: Mapping[str, str]
    run_id: str
    #: --engine: for a whole folder it replaces the SQL engine only (.py and .sh steps keep theirs)
    engine_override: Engine | None = None
    whole_pipeline: bool = True
    #: --from-stage: the stages numbered below it are skipped (None: run them all)
    from_stage: int | None = None
    #: --checks-only: run no step, only the data checks (of stage `checks_stage`, None: of every stage)
    checks_only: bool = False
    checks_stage: int | None = None
    #: --step-retries: a failed or timed-out step runs again as pipeline.toml's [steps] says
    step_retries: bool = False

    @property
    def attempts(self) -> int:
        """The most attempts of each step: [steps] retries + 1 with --step-retries, else 1."""
        return self.pipeline.config.steps.retries + 1 if self.step_retries else 1

    @property
    def retry_interval_seconds(self) -> float:
        return self.pipeline.config.steps.retry_interval_seconds

    @classmethod
    def make(
        cls,
        pipeline: Pipeline,
        *,
        run_date: str,
        run_id: str,
        local: bool,
        overrides: Mapping[str, str],
        engine_override: Engine | None = None,
        whole_pipeline: bool = True,
        from_stage: int | None = None,
    ) -> RunPlan:
        """Variables, later wins: [variables], [variables.local] (local runs), --var, then the run's dates."""
        variables = {
            **pipeline.config.variables,
            **(pipeline.config.local_variables if local else {}),
            **overrides,
            **date_variables(run_date),
        }
        # Refused here, before anything runs, not after the stage whose check would store rows.
        failures_table(pipeline.config.checks, run_id, pipeline.name, variables)
        return cls(pipeline, variables, run_id, engine_override, whole_pipeline, from_stage)

    def skips(self, stage: Stage) -> bool:
        """Whether --from-stage skips this stage."""
        return self.from_stage is not None and stage.number is not None and stage.number < self.from_stage

    def undefined_variables(self) -> list[UndefinedVariable]:
        """Each ${name} no variable defines in what this run runs: its SQL steps, then its checks."""
        stages = [stage for stage in self.pipeline.stages if not self.skips(stage)]
        if self.checks_only:
            stages = [s for s in stages if self.checks_stage is None or s.number == self.checks_stage]
        steps = [] if self.checks_only else [step for stage in stages for step in stage.steps]
        checks = [check for stage in stages for check in stage.checks]
        return undefined_variables(steps, self.variables, checks)

    def engine(self, step: Step) -> Engine:
        override = self.engine_override
        if override is None or (self.whole_pipeline and not step.engine.is_sql):
            return step.engine
        return override

    def invocation(self, step: Step) -> Invocation:
        return Invocation(
            step=step,
            engine=self.engine(step),
            variables=self.variables,
            pipeline=self.pipeline.name,
            run_id=self.run_id,
            timeout_seconds=self.pipeline.config.steps.timeout_minutes * 60,
        )


def check_from_stage(pipeline: Pipeline, from_stage: int, *, whole_pipeline: bool) -> None:
    """Refuse --from-stage N unless PATH is a folder and N one of its stage numbers."""
    if not whole_pipeline:
        raise UsageError(f"--from-stage {from_stage}: only for a pipeline folder, not a single step file")
    numbers = [stage.number for stage in pipeline.stages]
    if from_stage not in numbers:
        stages = ", ".join(str(number) for number in numbers)
        raise UsageError(
            f"--from-stage {from_stage}: {pipeline.name} has no stage {from_stage} (its stages: {stages})"
        )


SKIPPED = "skipped"


def skipped_stage_line(stage: Stage, from_stage: int) -> str:
    """The runner's line for a stage that --from-stage skips: the same locally, over SSH and deployed."""
    names = ", ".join(step.file_name for step in stage.steps)
    return f"stage {stage.number} skipped (--from-stage {from_stage}): {names}"


@dataclass
class StepReport:
    step: Step
    status: str = "not run"
    exit_code: int | None = None
    seconds: float = 0.0
    #: a failed step's first stderr line that reads as an error (else its last), for the summary
    error: str = ""


@dataclass
class RunReport:
    reports: list[StepReport] = field(default_factory=list)
    exit_code: int = 0
    checks: list[CheckReport] = field(default_factory=list)


#: A StepStatus value (runner/deployed/run_states.py) per way an attempt ends. Spelled here, not
#: imported: a local run loads nothing of the deployed mode (tests/unit/test_step_records.py holds
#: them equal).
SUCCEEDED, FAILED, TIMED_OUT, STOPPED = "succeeded", "failed", "timed out", "stopped"


def attempt_status(exit_code: int, outcome: Outcome) -> str:
    """How an attempt ended, as a StepStatus value: as StepStatus.of_exit, and "stopped" for a stop."""
    if outcome is Outcome.STOPPED:
        return STOPPED
    if outcome is Outcome.TIMED_OUT or exit_code == EXIT_TIMEOUT:
        return TIMED_OUT
    return SUCCEEDED if exit_code == 0 else FAILED


def checks_name(stage: int | None) -> str:
    """A stage's checks as a step in records and summaries: `30_checks` (as run_states.checks_step_name)."""
    return f"{stage}_checks"


def _run_step(
    executor: Executor, plan: RunPlan, invocation: Invocation, output: Output, stop: StopRequest
) -> StepReport:
    """Run a step; with --step-retries a failed or timed-out attempt again after the interval.

    The report is the last attempt's. A stop (during an attempt or the wait) is never retried.
    """
    step = invocation.step
    # The step's output first: a JSON notice then carries the pipeline and run id too.
    step_output = output.for_step(invocation.pipeline, step.name, invocation.run_id, step.file_name)
    attempts = plan.attempts
    attempt = 1
    while True:
        report = _run_one(executor, invocation, step_output, stop, attempt=attempt, attempts=attempts)
        if report.exit_code == 0 or attempt >= attempts or stop.is_set() or report.status == STOPPED:
            return report
        attempt += 1
        interval = plan.retry_interval_seconds
        step_output.retrying(f"attempt {attempt} of {attempts} in {interval:g} s", attempt)
        if stop.wait(interval):
            return report


def _run_one(
    executor: Executor,
    invocation: Invocation,
    output: StepOutput,
    stop: StopRequest,
    *,
    attempt: int = 1,
    attempts: int = 1,
) -> StepReport:
    step = invocation.step
    report = StepReport(step)
    started = time.monotonic()
    step_output = ErrorLine(output)
    step_output.started(f"started ({invocation.engine})", attempt)
    if invocation.engine.is_sql and step.starts_with_bom:
        # The file still runs as it is; the engine will likely reject its first statement.
        step_output.notice(
            f"starts with a UTF-8 byte-order mark, which {invocation.engine}"
            " reads as part of the first statement; save the file without it"
        )
    try:
        result = executor.run(invocation, step_output, stop)
    except NightshiftError as error:
        step_output.close()
        # The run ends with the error's line and code (text: only that); JSON: the attempt's end too.
        seconds = time.monotonic() - started
        end = StepEnd(FAILED, error.exit_code, seconds, attempt, attempts)
        step_output.ended(f"failed in {seconds:.1f} s: {error}", end, in_text=False)
        raise
    except BaseException:
        step_output.close()
        raise
    step_output.close()
    report.seconds = time.monotonic() - started
    report.exit_code = result.exit_code
    if result.outcome is not Outcome.FINISHED:
        report.status = str(result.outcome)
    elif result.exit_code == 0:
        report.status = "succeeded"
    else:
        report.status = f"failed (exit {result.exit_code})"
        report.error = _where_it_failed(invocation, step_output)
    status = attempt_status(result.exit_code, result.outcome)
    end = StepEnd(status, result.exit_code, report.seconds, attempt, attempts)
    step_output.ended(f"{report.status} in {report.seconds:.1f} s", end)
    return report


def _where_it_failed(invocation: Invocation, output: ErrorLine) -> str:
    """The first error line, after the file and line of the statement it is about when spark-sql says so."""
    step, done = invocation.step, output.statements_done
    if not invocation.engine.is_sql:
        return output.line
    starts = statement_start_lines(step.path) if done is not None else None
    if done is None or starts is None or done >= len(starts):
        return output.line
    return f"{step.file_name} line {starts[done]}: {output.line}"


def _run_checks_file(
    checks: Sequence[DataCheck],
    plan: RunPlan,
    executor: Executor,
    output: Output,
    stop: StopRequest,
    *,
    name: str,
) -> list[CheckReport]:
    """Run `checks` as one step (a generated spark-sql file), judge each count, and say each result.

    One engine call for a stage's checks: on a cluster each call is a JVM's start. When that call
    fails, each check runs alone, so the failure is the failing check's and the others still count.
    """
    sample_rows = plan.pipeline.config.checks.sample_rows
    store = failures_table(plan.pipeline.config.checks, plan.run_id, plan.pipeline.name, plan.variables)
    marker = new_marker()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nightshift-checks-") as folder:
        path = check_file(Path(folder), name, checks, sample_rows, marker, store=store)
        # spark-sql always: the sample is read back as to_json's text, which Hive has no function for.
        step = Step(path, checks[0].stage, Engine.SPARK_SQL)
        invocation = Invocation(
            step=step,
            engine=Engine.SPARK_SQL,
            variables=plan.variables,
            pipeline=plan.pipeline.name,
            run_id=plan.run_id,
            timeout_seconds=plan.pipeline.config.steps.timeout_minutes * 60,
        )
        label = checks[0].label if len(checks) == 1 else f"stage {checks[0].stage}'s checks"
        # Its output belongs to the stage's checks (`30_checks`), whichever checks this file holds.
        step_output = output.for_step(plan.pipeline.name, checks_name(step.stage), plan.run_id, label)
        captured = CaptureOutput(step_output, marker, len(checks) * (sample_rows + 1))
        try:
            result = executor.run(invocation, captured, stop)
        finally:
            captured.close()
    counts = [parse_check_output(captured.lines, f"{marker}-{n}") for n in range(len(checks))]
    answered = result.outcome is Outcome.FINISHED and result.exit_code == 0
    answered = answered and all(counted.count is not None for counted in counts)
    alone = not answered and result.outcome is Outcome.FINISHED and len(checks) > 1
    captured.finish(show_stderr=not answered and not alone)
    if alone:
        return [
            _run_checks_file([check], plan, executor, output, stop, name=check.name)[0] for check in checks
        ]
    share = (time.monotonic() - started) / len(checks)
    return [
        _judge(CheckReport(check, seconds=share), counted, result, output, sample_rows, store=store)
        for check, counted in zip(checks, counts, strict=True)
    ]


def _judge(
    report: CheckReport,
    counted: CheckCount,
    result: StepResult,
    output: Output,
    sample_rows: int,
    *,
    store: FailuresTable | None = None,
) -> CheckReport:
    """The check's status from its count (or how the engine ended), said as a line and a record."""
    check = report.check
    if result.outcome is not Outcome.FINISHED:
        report.status, report.exit_code = str(result.outcome), result.exit_code
    elif result.exit_code != 0 or counted.count is None:
        # The engine failed (a syntax error, a missing table): its code, not the data's.
        report.exit_code = result.exit_code or 1
        report.status = f"failed (exit {report.exit_code})"
    else:
        report.count, report.sample = counted.count, counted.sample
        report.status = str(check.thresholds.status(counted.count))
        if report.status == CheckStatus.FAILED:
            report.exit_code = EXIT_DATA
        report.stored_in(store)
    output.result(report.record(sample_rows), result_lines(report))
    return report


def run_checks(
    plan: RunPlan, stage: Stage, executor: Executor, output: Output, stop: StopRequest
) -> tuple[list[CheckReport], int]:
    """Run a stage's checks: their reports, and the stage's exit code.

    All of them run, so one failure does not hide another; an engine failure's code wins over 65.
    """
    reports = _run_checks_file(stage.checks, plan, executor, output, stop, name=checks_name(stage.number))
    return reports, checks_exit_code(reports)


def _run_stage_checks(
    plan: RunPlan, stage: Stage, executor: Executor, output: Output, stop: StopRequest
) -> tuple[list[CheckReport], int]:
    """A stage's checks in a whole run, as a step `<N>_checks` whose start and end JSON records say.

    Text says nothing more than the checks' own lines, as before; the checks are never retried.
    """
    events = output.for_step(
        plan.pipeline.name, checks_name(stage.number), plan.run_id, f"stage {stage.number}'s checks"
    )
    started = time.monotonic()
    events.started("started", in_text=False)
    reports, exit_code = run_checks(plan, stage, executor, output, stop)
    seconds = time.monotonic() - started
    stopped = any(report.status == STOPPED for report in reports)
    status = attempt_status(exit_code, Outcome.STOPPED if stopped else Outcome.FINISHED)
    said = "succeeded" if exit_code == 0 else status if status != FAILED else f"failed (exit {exit_code})"
    events.ended(f"{said} in {seconds:.1f} s", StepEnd(status, exit_code, seconds), in_text=False)
    return reports, exit_code


def checks_exit_code(reports: list[CheckReport]) -> int:
    codes = [report.exit_code for report in reports if report.exit_code]
    engine = [code for code in codes if code != EXIT_DATA]
    return engine[0] if engine else (EXIT_DATA if codes else 0)


def run_pipeline(plan: RunPlan, executor: Executor, output: Output, stop: StopRequest) -> RunReport:
    """Run stage after stage; a failed step or `error` check fails the run once its stage has finished."""
    pipeline = plan.pipeline
    finished: dict[Step, StepReport] = {}
    exit_code = 0
    checked: list[CheckReport] = []
    if plan.checks_only:
        for stage in pipeline.stages:
            # A stage without checks has nothing to run (an empty check file would be no step).
            if stage.checks and (plan.checks_stage is None or stage.number == plan.checks_stage):
                checked += run_checks(plan, stage, executor, output, stop)[0]
        code = stop.exit_code if stop.is_set() else checks_exit_code(checked)
        return RunReport([], code, checked)
    for stage in pipeline.stages:
        if exit_code != 0 or stop.is_set():
            break
        if plan.skips(stage) and plan.from_stage is not None:
            output.notice(skipped_stage_line(stage, plan.from_stage))
            for step in stage.steps:
                finished[step] = StepReport(step, SKIPPED)
            checked += [CheckReport(check, SKIPPED) for check in stage.checks]
            continue
        planned = [plan.invocation(step) for step in stage.steps]
        if executor.parallel and len(planned) > 1:
            with ThreadPoolExecutor(max_workers=len(planned)) as pool:
                results = list(pool.map(lambda inv: _run_step(executor, plan, inv, output, stop), planned))
        else:
            results = []
            for invocation in planned:
                if stop.is_set():
                    break
                results.append(_run_step(executor, plan, invocation, output, stop))
        for result in results:
            finished[result.step] = result
            if result.exit_code and exit_code == 0:
                exit_code = result.exit_code
        if exit_code == 0 and stage.checks and not stop.is_set():
            stage_checks, exit_code = _run_stage_checks(plan, stage, executor, output, stop)
            checked += stage_checks
    if stop.is_set():
        exit_code = stop.exit_code
    reports = [finished.get(step) or StepReport(step) for step in pipeline.steps]
    ran = {report.check: report for report in checked}
    return RunReport(reports, exit_code, [ran.get(check) or CheckReport(check) for check in pipeline.checks])


def failure_detail(run: RunReport) -> str:
    """The first step that did not succeed, with how it ended ("20_c.sql failed (exit 3)"); "" if none."""
    for report in run.reports:
        if report.status not in ("succeeded", "not run", SKIPPED):
            return f"{report.step.file_name} {report.status}"
    for check in run.checks:
        if check.exit_code:
            return f"check {check.check.label} {check.line}"
    return ""


def _check_row(report: CheckReport) -> tuple[str, str, str, str]:
    took = "-" if report.status in ("not run", SKIPPED) else f"{report.seconds:.1f} s"
    return (f"check {report.check.label}", str(report.check.stage), report.line, took)


def summary_lines(run: RunReport) -> list[str]:
    """The end-of-run table: step, stage, status, duration, and a failed step's first error line."""
    rows: list[tuple[str, ...]] = [("step", "stage", "status", "duration")]
    checks = list(run.checks)
    for number, report in enumerate(run.reports):
        stage = "-" if report.step.stage is None else str(report.step.stage)
        took = f"{report.seconds:.1f} s" if report.status not in ("not run", SKIPPED) else "-"
        error = (report.error,) if report.error else ()
        rows.append((report.step.file_name, stage, report.status, took, *error))
        following = run.reports[number + 1].step.stage if number + 1 < len(run.reports) else None
        if following != report.step.stage:
            # A stage's checks right after its steps, as they ran.
            rows += [_check_row(c) for c in checks if c.check.stage == report.step.stage]
            checks = [c for c in checks if c.check.stage != report.step.stage]
    rows += [_check_row(check) for check in checks]
    if any(len(row) > 4 for row in rows):
        rows[0] += ("first error line",)
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
        for row in rows
    ]
