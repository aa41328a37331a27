"""One loop for a range of run dates here, on a cluster and deployed: a line as each date ends, the table."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from runner.dates import DateResult, date_line, range_exit_code, range_summary_lines
from runner.errors import NightshiftError, UsageError
from runner.execution import (
    Executor,
    RunPlan,
    RunReport,
    StepReport,
    StopRequest,
    failure_detail,
    run_pipeline,
    summary_lines,
)
from runner.inputs import GateMode, gate_inputs
from runner.output import Output

Run = TypeVar("Run")


class DateRuns(Protocol[Run]):
    """How one place runs the dates of a range.

    Here and on a cluster a date has ended when `start` returns (one after another); deployed,
    `start` starts an execution and `ended` polls it.
    """

    def start(self, run_date: str) -> Run:
        """Start the date's run.

        A NightshiftError ends the range (the later dates are not started), except a UsageError,
        which ends the command; a date that merely failed is a result, not an error.
        """

    def ended(self, run: Run) -> DateResult | None:
        """The run's result once it has ended, else None."""

    def interrupted(self) -> bool:
        """The user asked to stop (a signal, Ctrl-C): no later date starts and the range ends now."""

    def wait(self) -> None:
        """Wait a while for the running dates (returns early when interrupted)."""


@dataclass
class RangeEnd(Generic[Run]):
    """How a range ended: the dates' results, what was still running or not started, and why."""

    planned: list[str]
    results: list[DateResult] = field(default_factory=list)
    #: runs going on when the range ended (deployed: they go on in AWS after a detach)
    running: list[Run] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    #: why the range stopped starting dates (deployed: a start refused or failed)
    failure: NightshiftError | None = None
    interrupted: bool = False
    #: what a date without a result is doing (deployed on a shared cluster: "waiting in <batch>")
    pending: dict[str, str] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """The table: one row per planned date (those without a result "not run" or `pending`'s), a count."""
        return range_summary_lines(self.results, self.planned, self.pending)

    def exit_code(self, interrupted: int) -> int:
        """The failure's exit code, else `interrupted` after a stop, else the first failed date's.

        The first in date order, not in the order the dates ended: deployed dates run side by side
        (--concurrency) and the later date may fail first, but the same backfill must exit the same way.
        """
        if self.failure is not None:
            return self.failure.exit_code
        if self.interrupted:
            return interrupted
        order = {run_date: index for index, run_date in enumerate(self.planned)}
        return range_exit_code(sorted(self.results, key=lambda r: order.get(r.run_date, len(order))))


def run_range(
    runs: DateRuns[Run],
    say: Callable[[str], None],
    *,
    planned: Sequence[str],
    to_start: Iterable[str] | None = None,
    running: Iterable[Run] = (),
    at_once: int = 1,
) -> RangeEnd[Run]:
    """Start the dates in order, at most `at_once` running, a line as each ends (date_line).

    A failed date does not stop the later ones; an interrupt stops starting them and ends the range
    at once; a NightshiftError from a start (not a UsageError) does too, as `failure`. `running`:
    runs already going on that the range waits for (deployed --follow of a range); `to_start`
    defaults to every planned date. The caller prints the table (RangeEnd.summary_lines).
    """
    end: RangeEnd[Run] = RangeEnd(list(planned), running=list(running))
    queue = list(planned if to_start is None else to_start)

    def start_what_fits() -> bool:
        started = False
        while queue and len(end.running) < at_once and not runs.interrupted():
            try:
                run = runs.start(queue[0])
            except UsageError:
                raise
            except NightshiftError as error:
                end.failure = error
                break
            queue.pop(0)
            end.running.append(run)
            started = True
        return started

    start_what_fits()
    while end.failure is None and end.running:
        for run in list(end.running):
            result = runs.ended(run)
            if result is not None:
                end.running.remove(run)
                end.results.append(result)
                say(date_line(result))
        if runs.interrupted():
            end.interrupted = True
            break
        started = start_what_fits()
        if end.running and not started and end.failure is None:
            runs.wait()
    # Interrupted before anything ran (or between two dates here): the range ends as a stop.
    end.interrupted = end.interrupted or (bool(queue) and end.failure is None and runs.interrupted())
    end.not_started = queue
    return end


def run_one_date(
    plan: RunPlan, executor: Executor, output: Output, stop: StopRequest, *, whole: bool, gate: GateMode
) -> RunReport:
    """One run of one date here or on a cluster: its inputs, its steps, (for a folder) the table."""
    pipeline = plan.pipeline
    one_step = pipeline.steps[0].name if len(pipeline.steps) == 1 else ""
    output.begin(pipeline.name, plan.run_id, one_step, run_date=plan.variables["run_date"])
    if not gate_inputs(plan, executor, output, stop, mode=gate):
        return RunReport([StepReport(step) for step in pipeline.steps], stop.exit_code)
    report = run_pipeline(plan, executor, output, stop)
    if whole:
        for line in summary_lines(report):
            output.notice(line)
    return report


@dataclass
class PlannedRuns:
    """Here and on a cluster: each date a run of its own, one after another (ended when `start` returns)."""

    plans: Sequence[RunPlan]
    executor: Executor
    output: Output
    stop: StopRequest
    whole: bool
    gate: GateMode

    def start(self, run_date: str) -> DateResult:
        number, plan = next(
            (n, p) for n, p in enumerate(self.plans, 1) if p.variables["run_date"] == run_date
        )
        self.output.notice(
            f"run date {run_date} ({number} of {len(self.plans)}): started, run id {plan.run_id}"
        )
        started = time.monotonic()
        try:
            report = run_one_date(
                plan, self.executor, self.output, self.stop, whole=self.whole, gate=self.gate
            )
            exit_code, detail = report.exit_code, failure_detail(report)
        except UsageError:
            raise
        except NightshiftError as error:
            # Something the next date may not meet (an unreachable cluster, missing inputs): this
            # date failed with the error's code, and the later dates still run.
            self.output.notice(f"error: {error}")
            exit_code, detail = error.exit_code, str(error)
        if self.stop.is_set():
            exit_code = self.stop.exit_code
            detail = "; ".join(filter(None, [detail, f"stopped by signal {self.stop.signum}"]))
        return DateResult(run_date, exit_code, time.monotonic() - started, detail)

    def ended(self, run: DateResult) -> DateResult:
        return run

    def interrupted(self) -> bool:
        return self.stop.is_set()

    def wait(self) -> None:  # pragma: no cover - a date here has ended when start returns
        return


def run_planned_range(
    plans: Sequence[RunPlan],
    executor: Executor,
    output: Output,
    stop: StopRequest,
    *,
    whole: bool,
    gate: GateMode,
) -> int:
    """Here and on a cluster: the dates one after another, the table, the range's exit code.

    A failed date does not stop the later ones; a signal does (128 + its number is the exit code).
    """
    dates = [plan.variables["run_date"] for plan in plans]
    output.notice(
        f"{len(dates)} run dates, {dates[0]} to {dates[-1]}, one after another"
        " (a failed date does not stop the later ones)"
    )
    runs = PlannedRuns(plans, executor, output, stop, whole, gate)
    end = run_range(runs, output.notice, planned=dates)
    for line in end.summary_lines():
        output.notice(line)
    if end.interrupted:
        output.notice(f"stopped by signal {stop.signum}: no later date was started")
    return end.exit_code(interrupted=stop.exit_code)
