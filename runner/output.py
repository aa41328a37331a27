"""Output sinks: engine output relayed line by line as text (the console) or JSON lines (CloudWatch)."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from typing import BinaryIO, Literal

Stream = Literal["stdout", "stderr"]


class LineBuffer:
    """Cuts a byte stream into complete lines; keeps the unfinished tail for the next chunk."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """Return the complete lines (newline included) that `chunk` finishes, as one block."""
        end = chunk.rfind(b"\n")
        if end < 0:
            self._tail += chunk
            return b""
        block = self._tail + chunk[: end + 1] if self._tail else chunk[: end + 1]
        self._tail = chunk[end + 1 :]
        return block

    def rest(self) -> bytes:
        """Return what is left after the last newline (a final line without one)."""
        tail, self._tail = self._tail, b""
        return tail


class StepOutput(ABC):
    """The output of one running step. Executors feed raw chunks; complete lines go on at once.

    The runner's own notices about the step go through it too, so each knows its step.
    """

    def __init__(self, notify: Callable[[str], None] | None = None) -> None:
        self._buffers = {"stdout": LineBuffer(), "stderr": LineBuffer()}
        #: notices kept here when no `notify` is given (test doubles)
        self.notices: list[str] = []
        self._notify = notify or self.notices.append

    def notice(self, message: str) -> None:
        """A line from the runner about this step (reconnects, stops), said as the runner says it."""
        self._notify(message)

    def feed(self, stream: Stream, chunk: bytes) -> None:
        block = self._buffers[stream].feed(chunk)
        if block:
            self.emit(stream, block)

    def close(self) -> None:
        """Pass on a last line that had no newline (byte for byte: none is added)."""
        for stream, buffer in self._buffers.items():
            rest = buffer.rest()
            if rest:
                self.emit(stream, rest)  # type: ignore[arg-type]

    @abstractmethod
    def emit(self, stream: Stream, block: bytes) -> None:
        """Write a block of whole lines (the last may lack its newline only at the end)."""


class Output(ABC):
    """Where a run's output goes; one per runner process, shared by parallel steps."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    @abstractmethod
    def for_step(self, pipeline: str, step: str, run_id: str, label: str = "") -> StepOutput:
        """The output of one step run; its notices start with `label` (the file name), or the step."""

    @abstractmethod
    def notice(self, message: str, *, step: str = "") -> None:
        """A line from the runner itself (progress, summary), never mixed into stdout in text."""


def _step_notice(out: Output, step: str, label: str) -> Callable[[str], None]:
    return lambda message: out.notice(f"{label}: {message}", step=step)


class _TextStep(StepOutput):
    def __init__(self, out: TextOutput, step: str, label: str) -> None:
        super().__init__(_step_notice(out, step, label))
        self._out = out

    def emit(self, stream: Stream, block: bytes) -> None:
        target = self._out.stdout if stream == "stdout" else self._out.stderr
        with self._out.lock:
            target.write(block)
            target.flush()


class TextOutput(Output):
    """Console output: the engine's stdout to stdout and stderr to stderr, bytes unchanged."""

    def __init__(self, stdout: BinaryIO, stderr: BinaryIO) -> None:
        super().__init__()
        self.stdout = stdout
        self.stderr = stderr

    def for_step(self, pipeline: str, step: str, run_id: str, label: str = "") -> StepOutput:
        return _TextStep(self, step, label or step)

    def notice(self, message: str, *, step: str = "") -> None:
        line = f"nightshift: {message}\n".encode()
        with self.lock:
            self.stderr.write(line)
            self.stderr.flush()


def _dumps(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _JsonStep(StepOutput):
    def __init__(self, out: JsonOutput, pipeline: str, step: str, run_id: str, label: str) -> None:
        super().__init__(_step_notice(out, step, label))
        self._out = out
        # Only the line varies within a block: encode the rest once, not once per line.
        self._fields = f', "pipeline": {_dumps(pipeline)}, "step": {_dumps(step)}, "run_id": {_dumps(run_id)}'

    def emit(self, stream: Stream, block: bytes) -> None:
        # backslashreplace keeps invalid bytes visible (\xff) instead of failing or hiding them.
        text = block.decode("utf-8", errors="backslashreplace")
        if text.endswith("\n"):
            text = text[:-1]
        prefix = f'{{"time": "{_now()}"{self._fields}, "stream": "{stream}", "line": '
        records = [prefix + _dumps(line.removesuffix("\r")) + "}" for line in text.split("\n")]
        self._out.write_records(records)


class JsonOutput(Output):
    """One JSON object per output line on stdout, for CloudWatch Logs Insights."""

    def __init__(self, stdout: BinaryIO, *, pipeline: str = "", run_id: str = "") -> None:
        super().__init__()
        self.stdout = stdout
        self._pipeline = pipeline
        self._run_id = run_id

    def for_step(self, pipeline: str, step: str, run_id: str, label: str = "") -> StepOutput:
        self._pipeline, self._run_id = pipeline, run_id
        return _JsonStep(self, pipeline, step, run_id, label or step)

    def write_records(self, records: list[str]) -> None:
        data = ("\n".join(records) + "\n").encode("utf-8", errors="backslashreplace")
        with self.lock:
            self.stdout.write(data)
            self.stdout.flush()

    def notice(self, message: str, *, step: str = "") -> None:
        record = {
            "time": _now(),
            "pipeline": self._pipeline,
            "step": step,
            "run_id": self._run_id,
            "stream": "nightshift",
            "line": message,
        }
        self.write_records([json.dumps(record, ensure_ascii=False)])
