"""The executor port and the pipeline run: stages in order, steps of a stage together, a summary."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from runner.model import Engine, Pipeline, Step
from runner.output import Output, StepOutput

EXIT_TIMEOUT = 124  # as GNU timeout


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

    def run(self, invocation: Invocation, output: StepOutput, stop: StopRequest) -> int:
        """Run to the end and return the exit code; on `stop` or timeout, stop the step first."""
        ...


@dataclass
class StepReport:
    step: Step
    status: str = "not run"
    exit_code: int | None = None
    seconds: float = 0.0


@dataclass
class RunReport:
    reports: list[StepReport] = field(default_factory=list)
    exit_code: int = 0


def _run_one(executor: Executor, invocation: Invocation, output: Output, stop: StopRequest) -> StepReport:
    step = invocation.step
    report = StepReport(step)
    started = time.monotonic()
    # The step's output first: a JSON notice then carries the pipeline and run id too.
    step_output = output.for_step(invocation.pipeline, step.name, invocation.run_id)
    output.notice(f"{step.file_name}: started ({invocation.engine})", step=step.name)
    if invocation.engine.is_sql and step.starts_with_bom:
        # The file still runs as it is; the engine will likely reject its first statement.
        output.notice(
            f"{step.file_name}: starts with a UTF-8 byte-order mark, which {invocation.engine}"
            " reads as part of the first statement; save the file without it",
            step=step.name,
        )
    try:
        code = executor.run(invocation, step_output, stop)
    finally:
        step_output.close()
        report.seconds = time.monotonic() - started
    report.exit_code = code
    if stop.is_set():
        report.status = "stopped"
    elif code == 0:
        report.status = "succeeded"
    elif (
        code == EXIT_TIMEOUT
        and invocation.timeout_seconds is not None
        and (report.seconds >= invocation.timeout_seconds)
    ):
        report.status = "timed out"
    else:
        report.status = f"failed (exit {code})"
    output.notice(f"{step.file_name}: {report.status} in {report.seconds:.1f} s", step=step.name)
    return report


def run_pipeline(
    pipeline: Pipeline,
    invocations: Callable[[Step], Invocation],
    executor: Executor,
    output: Output,
    stop: StopRequest,
) -> RunReport:
    """Run stage after stage; a failed step fails the run once its stage has finished."""
    finished: dict[Step, StepReport] = {}
    exit_code = 0
    for stage in pipeline.stages:
        if exit_code != 0 or stop.is_set():
            break
        planned = [invocations(step) for step in stage.steps]
        if executor.parallel and len(planned) > 1:
            with ThreadPoolExecutor(max_workers=len(planned)) as pool:
                results = list(pool.map(lambda inv: _run_one(executor, inv, output, stop), planned))
        else:
            results = []
            for invocation in planned:
                if stop.is_set():
                    break
                results.append(_run_one(executor, invocation, output, stop))
        for result in results:
            finished[result.step] = result
            if result.exit_code and exit_code == 0:
                exit_code = result.exit_code
    if stop.is_set():
        exit_code = stop.exit_code
    reports = [finished.get(step) or StepReport(step) for step in pipeline.steps]
    return RunReport(reports, exit_code)


def summary_lines(run: RunReport) -> list[str]:
    """The end-of-run table: step, stage, status, duration."""
    rows = [("step", "stage", "status", "duration")]
    for report in run.reports:
        stage = "-" if report.step.stage is None else str(report.step.stage)
        took = f"{report.seconds:.1f} s" if report.status != "not run" else "-"
        rows.append((report.step.file_name, stage, report.status, took))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
