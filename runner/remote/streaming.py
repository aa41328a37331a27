"""The streaming loop: hand each chunk of a remote step's stdout and stderr on as it arrives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from runner.output import StepOutput

POLL_SECONDS = 0.1


class FollowChannel(Protocol):
    """The primitives the loop needs from one remote follower (Fabric's split: transport below, I/O here)."""

    def read_stdout(self) -> bytes:
        """Whatever stdout bytes have arrived, without waiting; b"" when none."""
        ...

    def read_stderr(self) -> bytes:
        """Whatever stderr bytes have arrived, without waiting; b"" when none."""
        ...

    def ended(self) -> bool:
        """The follower finished: both streams at their end and its exit status received."""
        ...

    def lost(self) -> bool:
        """The connection under the follower is gone (or it closed without an exit status)."""
        ...

    def wait(self, seconds: float) -> None:
        """Block until something arrives or `seconds` pass."""
        ...


class Outcome(Enum):
    ENDED = "ended"
    LOST = "lost"
    STOPPED = "stopped"
    TIMED_OUT = "timed out"


@dataclass
class Offsets:
    """How many bytes of each remote output file have been passed on: where a reattach resumes."""

    stdout: int = 0
    stderr: int = 0


def pump(
    channel: FollowChannel,
    output: StepOutput,
    offsets: Offsets,
    interrupt: Callable[[], Outcome | None] = lambda: None,
    *,
    poll_seconds: float = POLL_SECONDS,
) -> Outcome:
    """Relay both streams until the follower ends, the connection is lost, or `interrupt` says stop.

    Both streams are drained before the end is believed: an exit status can arrive before the
    last output does.
    """
    while True:
        # Checked on every turn, not only when idle: a step that never stops printing can be stopped too.
        reason = interrupt()
        if reason is not None:
            return reason
        if _relay(channel, output, offsets):
            continue
        # The end can come between the last read and this check; what arrived before it still counts.
        if channel.ended():
            while _relay(channel, output, offsets):
                pass
            return Outcome.ENDED
        if channel.lost():
            while _relay(channel, output, offsets):
                pass
            return Outcome.LOST
        channel.wait(poll_seconds)


def _relay(channel: FollowChannel, output: StepOutput, offsets: Offsets) -> bool:
    out = channel.read_stdout()
    if out:
        offsets.stdout += len(out)
        output.feed("stdout", out)
    err = channel.read_stderr()
    if err:
        offsets.stderr += len(err)
        output.feed("stderr", err)
    return bool(out or err)
