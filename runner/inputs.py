"""The input gate: a run starts once the paths of [inputs] exist, checked where its steps read them."""

from __future__ import annotations

import os
import shlex
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlparse

from runner.config import INPUT_PREFIX, Inputs, expand_input
from runner.errors import ConnectionFailure, NightshiftError, UsageError
from runner.execution import Executor, Invocation, Outcome, RunPlan, StopRequest
from runner.model import Engine, Step
from runner.output import Output, StepOutput, Stream

#: sysexits' EX_TEMPFAIL, "try again later": the data is not there yet, nothing ran.
EXIT_INPUTS_MISSING = 75
#: the generated check's own "some are missing"; any other non-zero exit is the check failing
_SCRIPT_MISSING = 3
_REMOTE_CHECK_TIMEOUT_SECONDS = 300.0

GateMode = Literal["skip", "once", "wait"]


class InputsMissing(NightshiftError):
    """A declared input is still missing (after the wait, with --wait): the run did not start."""

    exit_code = EXIT_INPUTS_MISSING


class InputsCheckFailed(NightshiftError):
    """The check itself could not tell (the cluster's hadoop failed, a check timed out)."""


@dataclass(frozen=True)
class InputPath:
    """One declared input with the run's variables in: a file, or a folder that must hold a file."""

    kind: str
    path: str

    def __str__(self) -> str:
        return f"{self.path} (no file in it)" if self.kind == INPUT_PREFIX else self.path


def input_paths(inputs: Inputs, variables: dict[str, str] | None = None, **more: str) -> list[InputPath]:
    """The declared paths of a run, its variables substituted."""
    values = {**(variables or {}), **more}
    return [InputPath(kind, expand_input(template, values)) for kind, template in inputs.paths]


class InputChecker(Protocol):
    """Tells which of the paths are missing, as the run's steps would see them."""

    def missing(self, paths: Sequence[InputPath], stop: StopRequest) -> list[InputPath] | None:
        """The missing ones, in order; None when `stop` ended the check."""
        ...


class LocalInputs:
    """The local engine's view: files and folders on this machine, relative paths from the working folder."""

    def missing(self, paths: Sequence[InputPath], stop: StopRequest) -> list[InputPath] | None:
        return [path for path in paths if not _local_exists(path)]


def _local_path(text: str) -> Path:
    parsed = urlparse(text)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if len(parsed.scheme) > 1:  # one letter would be a Windows drive, which is a path
        raise UsageError(
            f"[inputs] {text}: a {parsed.scheme}:// path cannot be checked on the local engine"
            " (give the variable a local value in [variables.local], or skip the check with --no-wait)"
        )
    return Path(text)


def _local_exists(path: InputPath) -> bool:
    local = _local_path(path.path)
    if path.kind != INPUT_PREFIX:
        return local.is_file()
    # As in S3, a folder counts once something is in it (below it): an empty folder is not data yet.
    return any(files for _, _, files in os.walk(local))


class ClusterInputs:
    """The master node's view, through `hadoop fs` (S3 as EMRFS sees it, HDFS, file:), run like a .sh step.

    The check goes through the same executor as the steps: the same connection, host-key pin,
    cluster look-up and reconnects; and a generated file uploaded, never a command line.
    """

    def __init__(self, executor: Executor, plan: RunPlan, output: Output) -> None:
        self._executor = executor
        self._plan = plan
        self._output = output
        self._checks = 0

    def missing(self, paths: Sequence[InputPath], stop: StopRequest) -> list[InputPath] | None:
        self._checks += 1
        # Each check a step of its own: a kept run directory (--keep-remote) is never reused.
        name = f"inputs-check-{self._checks}"
        with tempfile.TemporaryDirectory(prefix="nightshift-inputs-") as folder:
            script = Path(folder) / f"{name}.sh"
            script.write_text(check_script(self._plan.pipeline.name, paths), encoding="utf-8")
            invocation = Invocation(
                step=Step(path=script, stage=None, engine=Engine.BASH),
                engine=Engine.BASH,
                variables={"run_date": self._plan.variables["run_date"]},
                pipeline=self._plan.pipeline.name,
                run_id=self._plan.run_id,
                timeout_seconds=_REMOTE_CHECK_TIMEOUT_SECONDS,
            )
            step_output = self._output.for_step(self._plan.pipeline.name, name, self._plan.run_id, "inputs")
            captured = _Captured(step_output)
            try:
                result = self._executor.run(invocation, captured, stop)
            finally:
                captured.close()
                step_output.close()
        if result.outcome is Outcome.STOPPED:
            return None
        if result.outcome is Outcome.UNREACHABLE:
            raise ConnectionFailure("the inputs check could not reach the cluster")
        if result.outcome is Outcome.TIMED_OUT:
            raise InputsCheckFailed(f"the inputs check did not end in {_REMOTE_CHECK_TIMEOUT_SECONDS:.0f} s")
        if result.exit_code not in (0, _SCRIPT_MISSING):
            raise InputsCheckFailed(
                f"the inputs check failed on the cluster (exit {result.exit_code}); its stderr is above"
            )
        indexes = {int(line.split()[1]) for line in captured.lines() if line.startswith("missing ")}
        return [path for index, path in enumerate(paths) if index in indexes]


def check_script(pipeline: str, paths: Sequence[InputPath]) -> str:
    """A bash script that prints `missing <index>` for each missing path and exits 3 if any is."""
    lines = [
        f"# Generated by nightshift: which [inputs] of {pipeline} are missing, as this node sees them.",
        "command -v hadoop >/dev/null || { echo 'nightshift: no hadoop command here' >&2; exit 127; }",
        "status=0",
        f'missing() {{ echo "missing $1"; status={_SCRIPT_MISSING}; }}',
    ]
    for index, path in enumerate(paths):
        quoted = shlex.quote(path.path)
        if path.kind == INPUT_PREFIX:
            # -count prints DIRS FILES BYTES PATH; a folder counts once it holds a file.
            test = f"hadoop fs -count {quoted} 2>/dev/null | awk '$2 > 0 {{found = 1}} END {{exit !found}}'"
        else:
            test = f"hadoop fs -test -f {quoted}"
        lines.append(f"{test} || missing {index}")
    lines.append("exit $status")
    return "\n".join(lines) + "\n"


class _Captured(StepOutput):
    """The check's stdout kept for the runner to read; its stderr (hadoop's complaints) shown as it comes."""

    def __init__(self, shown: StepOutput) -> None:
        super().__init__(shown.notice)
        self._shown = shown
        self._stdout = bytearray()

    def emit(self, stream: Stream, block: bytes) -> None:
        if stream == "stdout":
            self._stdout += block
        else:
            self._shown.feed(stream, block)

    def lines(self) -> list[str]:
        return self._stdout.decode("utf-8", "replace").splitlines()


def gate_mode(*, wait: bool, no_wait: bool, whole_pipeline: bool) -> GateMode:
    """--no-wait skips the check, --wait waits up to the deadline; by default a folder run checks once."""
    if no_wait:
        return "skip"
    if wait:
        return "wait"
    # A single step (a deployed run's Fargate step among them) is not a run of the pipeline.
    return "once" if whole_pipeline else "skip"


def checker_for(executor: Executor, plan: RunPlan, output: Output) -> InputChecker:
    from runner.local.executor import LocalExecutor  # noqa: PLC0415 - a cluster run does not need it

    return LocalInputs() if isinstance(executor, LocalExecutor) else ClusterInputs(executor, plan, output)


def gate_inputs(
    plan: RunPlan,
    executor: Executor,
    output: Output,
    stop: StopRequest,
    *,
    mode: GateMode,
    checker: InputChecker | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Check the plan's [inputs] (waiting with mode "wait"); False when a signal ended the wait.

    Raises InputsMissing naming every missing path once the deadline (or the one check) has passed.
    """
    inputs = plan.pipeline.config.inputs
    if inputs is None or mode == "skip":
        return True
    checker = checker or checker_for(executor, plan, output)
    paths = input_paths(inputs, dict(plan.variables))
    run_date = plan.variables["run_date"]
    started = clock()
    deadline = started + (inputs.wait_minutes * 60 if mode == "wait" else 0)
    poll = max(1.0, round(inputs.poll_minutes * 60))
    checks = 0
    while True:
        missing = checker.missing(paths, stop)
        checks += 1
        if missing is None or stop.is_set():
            return False
        waited = clock() - started
        if not missing:
            after = f" after {_minutes(waited)} ({checks} checks)" if checks > 1 else ""
            output.notice(f"inputs: all {len(paths)} there for {run_date}{after}")
            return True
        names = ", ".join(str(path) for path in missing)
        remaining = deadline - clock()
        if remaining <= 0:
            waited_text = f" after waiting {_minutes(waited)} ({checks} checks)" if checks > 1 else ""
            hint = "" if mode == "wait" else " (--wait waits for them up to [inputs] wait_minutes)"
            raise InputsMissing(f"inputs missing for {run_date}{waited_text}: {names}{hint}")
        if checks == 1:
            until = datetime.now(UTC) + timedelta(seconds=remaining)
            output.notice(
                f"inputs: waiting for {len(missing)} of {len(paths)} for {run_date}: {names};"
                f" checking every {_minutes(poll)} until {until:%H:%M:%S} UTC"
            )
        if stop.wait(min(poll, remaining)):
            return False


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
