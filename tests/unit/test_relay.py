"""The streaming loop against a scripted fake channel (Fabric's way): no network."""

from __future__ import annotations

from collections import deque

from runner.output import StepOutput, Stream
from runner.relay import Offsets, Pumped, pump


class ScriptedChannel:
    """Hands out scripted chunks, one per read; ends (or is lost) once the script runs out."""

    def __init__(
        self, chunks: list[tuple[Stream, bytes]], *, end: str = "ended", idle_polls: int = 0
    ) -> None:
        self.chunks = deque(chunks)
        self.end = end
        self.idle_polls = idle_polls
        self.waits = 0

    def _next(self, stream: Stream) -> bytes:
        if self.idle_polls and self.waits < self.idle_polls:
            return b""
        if self.chunks and self.chunks[0][0] == stream:
            return self.chunks.popleft()[1]
        return b""

    def read_stdout(self) -> bytes:
        return self._next("stdout")

    def read_stderr(self) -> bytes:
        return self._next("stderr")

    def ended(self) -> bool:
        return self.end == "ended" and self._finished()

    def lost(self) -> bool:
        return self.end == "lost" and self._finished()

    def _finished(self) -> bool:
        return self.waits >= self.idle_polls

    def wait(self, seconds: float) -> None:
        self.waits += 1


class Collected(StepOutput):
    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[tuple[Stream, bytes]] = []

    def emit(self, stream: Stream, block: bytes) -> None:
        self.blocks.append((stream, block))

    def text(self, stream: Stream) -> bytes:
        return b"".join(block for name, block in self.blocks if name == stream)


def test_every_chunk_goes_on_in_order_and_whole_lines_are_emitted() -> None:
    channel = ScriptedChannel(
        [("stdout", b"one\ntw"), ("stderr", b"warn"), ("stdout", b"o\nthree\n"), ("stderr", b"ing\n")]
    )
    output, offsets = Collected(), Offsets()

    outcome = pump(channel, output, offsets)

    assert outcome is Pumped.ENDED
    assert output.text("stdout") == b"one\ntwo\nthree\n"
    assert output.text("stderr") == b"warning\n"
    assert (offsets.stdout, offsets.stderr) == (14, 8)


def test_output_that_arrives_with_the_end_is_not_lost() -> None:
    class LateData(ScriptedChannel):
        def ended(self) -> bool:
            # The end is seen while the last chunk is still buffered.
            return True

    channel = LateData([("stdout", b"last words\n")], idle_polls=0)
    channel.chunks.appendleft(("stderr", b""))  # the first read finds nothing on stdout
    output = Collected()

    assert pump(channel, output, Offsets()) is Pumped.ENDED
    assert output.text("stdout") == b"last words\n"


def test_a_lost_connection_is_reported_with_the_offsets_reached() -> None:
    channel = ScriptedChannel([("stdout", b"12345\n"), ("stderr", b"ab\n")], end="lost")
    offsets = Offsets(stdout=100, stderr=7)

    outcome = pump(channel, Collected(), offsets)

    assert outcome is Pumped.LOST
    assert (offsets.stdout, offsets.stderr) == (106, 10)


def test_waits_while_nothing_arrives() -> None:
    channel = ScriptedChannel([("stdout", b"x\n")], idle_polls=3)
    output = Collected()

    assert pump(channel, output, Offsets(), poll_seconds=0) is Pumped.ENDED
    assert channel.waits == 3
    assert output.text("stdout") == b"x\n"


def test_a_stop_is_honoured_even_while_output_keeps_coming() -> None:
    endless = ScriptedChannel([("stdout", b"line\n")] * 1000)
    calls = 0

    def interrupt() -> bool:
        nonlocal calls
        calls += 1
        return calls > 5

    output = Collected()
    assert pump(endless, output, Offsets(), interrupt) is Pumped.INTERRUPTED
    assert output.text("stdout") == b"line\n" * 5


def test_an_interrupt_while_idle_returns_at_once() -> None:
    channel = ScriptedChannel([], idle_polls=10)
    assert pump(channel, Collected(), Offsets(), lambda: True) is Pumped.INTERRUPTED
    assert channel.waits == 0
