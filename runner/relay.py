"""The one relay loop: a running step's stdout and stderr, from any source, handed on as they arrive."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from runner.execution import EXIT_TIMEOUT, Outcome, StopRequest
from runner.output import StepOutput, Stream

POLL_SECONDS = 0.1
READ_SIZE = 256 * 1024


class Source(Protocol):
    """Where a running step's output comes from: a local process, an SSH follower, the warm engine.

    Fabric's split: the source only provides primitives; the loop below owns the pumping.
    A deployed run's CloudWatch records are not a Source: runner/deployed/follow.py polls one
    history and many steps' streams in one loop, and feeds the same StepOutput sinks.
    """

    def read_stdout(self) -> bytes:
        """Whatever stdout bytes have arrived, without waiting; b"" when none."""
        ...

    def read_stderr(self) -> bytes:
        """Whatever stderr bytes have arrived, without waiting; b"" when none."""
        ...

    def ended(self) -> bool:
        """The step's output is over: both streams at their end and its exit status known."""
        ...

    def lost(self) -> bool:
        """The way to the step is gone (a dropped connection); the step itself may still run."""
        ...

    def wait(self, seconds: float) -> None:
        """Block until something arrives or `seconds` pass."""
        ...


class Stoppable(Source, Protocol):
    """A source whose step the runner itself can stop: a local process, a step on the warm engine."""

    def stop(self) -> None:
        """Ask the step to stop (TERM, or cancel its Spark jobs); its last words still come."""
        ...

    def kill(self) -> None:
        """End the step now: it did not stop within the drain period."""
        ...


class Pipes:
    """A step's stdout and stderr as two local pipes (or FIFOs), read without blocking.

    Each is dropped once it reaches its end; the sources built on it add how the step ends.
    """

    def __init__(self, stdout: int, stderr: int) -> None:
        self.fds: dict[Stream, int] = {"stdout": stdout, "stderr": stderr}
        for fd in self.fds.values():
            os.set_blocking(fd, False)

    def read(self, stream: Stream) -> bytes:
        """What has arrived on `stream`, at most READ_SIZE bytes; b"" when nothing (or at its end)."""
        fd = self.fds.get(stream)
        if fd is None:
            return b""
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return b""
        if not chunk:
            del self.fds[stream]
        return chunk

    def wait(self, seconds: float, *others: int) -> None:
        """Block until a pipe (or one of `others`) is readable, or `seconds` pass."""
        fds = [*self.fds.values(), *others]
        if fds:
            select.select(fds, [], [], seconds)


class Pumped(Enum):
    """Why `pump` returned."""

    ENDED = "ended"
    LOST = "lost"
    INTERRUPTED = "interrupted"


@dataclass
class Offsets:
    """How many bytes of each stream have been passed on: where a reattach resumes."""

    stdout: int = 0
    stderr: int = 0


def pump(
    source: Source,
    output: StepOutput,
    offsets: Offsets,
    interrupt: Callable[[], bool] = lambda: False,
    *,
    poll_seconds: float = POLL_SECONDS,
) -> Pumped:
    """Relay both streams until the source ends, is lost, or `interrupt` says so.

    Both streams are drained before the end is believed: an exit status can arrive before the
    last output does. Each read is bounded, so memory does not grow with the output.
    """
    while True:
        # Checked on every turn, not only when idle: a step that never stops printing can be stopped too.
        if interrupt():
            return Pumped.INTERRUPTED
        if _relay(source, output, offsets):
            continue
        # The end can come between the last read and this check; what arrived before it still counts.
        if source.ended():
            while _relay(source, output, offsets):
                pass
            return Pumped.ENDED
        if source.lost():
            while _relay(source, output, offsets):
                pass
            return Pumped.LOST
        source.wait(poll_seconds)


def _relay(source: Source, output: StepOutput, offsets: Offsets) -> bool:
    out = source.read_stdout()
    if out:
        offsets.stdout += len(out)
        output.feed("stdout", out)
    err = source.read_stderr()
    if err:
        offsets.stderr += len(err)
        output.feed("stderr", err)
    return bool(out or err)


class Stopper:
    """When a step must stop (a stop request, or its timeout), and how long its last words may take.

    `interrupt` is what `pump` asks: true once when a stop becomes due (the caller then stops the
    step and pumps on), and true again when the drain period after it is over.
    """

    def __init__(self, stop: StopRequest, timeout_seconds: float | None, drain_seconds: float) -> None:
        self._stop = stop
        self._deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
        self._drain_seconds = drain_seconds
        self._drain_until = 0.0
        #: why the step is being stopped; None while it runs undisturbed
        self.reason: Outcome | None = None

    def _due(self) -> Outcome | None:
        if self._stop.is_set():
            return Outcome.STOPPED
        if self._deadline is not None and time.monotonic() > self._deadline:
            return Outcome.TIMED_OUT
        return None

    def interrupt(self) -> bool:
        if self.reason is None:
            self.reason = self._due()
            if self.reason is not None:
                self._drain_until = time.monotonic() + self._drain_seconds
            return self.reason is not None
        return self.drained

    @property
    def drained(self) -> bool:
        """The stop was made and its drain period is over: stop waiting for the step's last words."""
        return self.reason is not None and time.monotonic() > self._drain_until

    def exit_code(self, code: int) -> int:
        """The exit code a stopped or timed-out step reports, whatever the engine returned."""
        if self.reason is Outcome.TIMED_OUT:
            return EXIT_TIMEOUT
        if self.reason is Outcome.STOPPED:
            return self._stop.exit_code
        return code


def relay(source: Stoppable, output: StepOutput, stopper: Stopper) -> None:
    """Relay until the step's output is over; on a stop or timeout stop it, and kill it after the drain."""
    interrupt = stopper.interrupt
    while pump(source, output, Offsets(), interrupt) is Pumped.INTERRUPTED:
        if stopper.drained:
            source.kill()
            interrupt = _never  # after the kill, only what the pipes still hold is left to relay
        else:
            source.stop()


def _never() -> bool:
    return False
