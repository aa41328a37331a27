"""Output sinks: engine output relayed as text (the console) or JSON lines (CloudWatch), in bounded memory."""

from __future__ import annotations

import base64
import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal

Stream = Literal["stdout", "stderr"]

#: A partial line longer than this goes on in pieces: memory stays bounded whatever the line length.
#: Shorter lines go on whole, so parallel steps interleave only between lines.
PIECE_BYTES = 1 << 20
#: CloudWatch Logs' largest event; awslogs cuts a longer line into fragments that are not JSON.
MAX_EVENT_BYTES = 256 * 1024
#: Raw bytes of a line per JSON record. Escaping grows a byte to at most 6 (a control character
#: becomes \u00XX), so 6 x 32 KiB plus the other fields stays under MAX_EVENT_BYTES.
FRAGMENT_BYTES = 32 * 1024
#: Room for the fields other than the line and the step's names: time, stream, part, last, newline.
_OTHER_FIELDS_BYTES = 200


class LineBuffer:
    """Cuts a byte stream into blocks of whole lines; a long unfinished line goes on in bounded pieces."""

    __slots__ = ("_limit", "_tail")

    def __init__(self, limit: int = PIECE_BYTES) -> None:
        self._tail = bytearray()  # a bytearray grows in place: no quadratic copying of a long line
        self._limit = limit

    def feed(self, chunk: bytes) -> bytes:
        """Return what `chunk` makes ready: the whole lines it finishes, or a piece of a long line."""
        end = chunk.rfind(b"\n") + 1
        tail = self._tail
        if not end:
            tail += chunk
            if len(tail) < self._limit:
                return b""
            end = len(chunk)  # a piece of a long line: all that waited goes on
        elif not tail:
            # The usual read: passed on as it is when it ends on a line end, else cut once.
            block = chunk if end == len(chunk) else chunk[:end]
            tail += memoryview(chunk)[end:]
            return block
        else:
            tail += memoryview(chunk)[:end]
        # Copied once into the block; what followed the last line end waits for the next chunk.
        block = bytes(tail)
        tail.clear()
        if end < len(chunk):
            tail += memoryview(chunk)[end:]
        return block

    def rest(self) -> bytes:
        """Return what is left after the last newline (a final line without one)."""
        tail = bytes(self._tail)
        self._tail.clear()
        return tail


@dataclass(frozen=True)
class StepEnd:
    """How one attempt of a step (or a stage's checks) ended: the fields of its `step_ended` record."""

    #: a StepStatus value (runner/deployed/run_states.py): succeeded, failed, timed out, stopped
    status: str
    exit_code: int | None
    seconds: float
    attempt: int = 1
    #: the most attempts the run allows the step (its retries + 1)
    attempts: int = 1


class StepOutput(ABC):
    """The output of one running step. Executors feed raw chunks; complete lines go on at once.

    The runner's own notices about the step go through it too, so each knows its step. Its start,
    end and retries are events: in text the notice alone (`in_text`: or nothing), in JSON the notice
    as a record that also says the event (README, JSON records).
    """

    def __init__(self, notify: Callable[[str], None] | None = None) -> None:
        self._buffers = {"stdout": LineBuffer(), "stderr": LineBuffer()}
        #: notices kept here when no `notify` is given (test doubles)
        self.notices: list[str] = []
        self._notify = notify or self.notices.append

    def notice(self, message: str) -> None:
        """A line from the runner about this step (reconnects, stops), said as the runner says it."""
        self._notify(message)

    def started(self, message: str, attempt: int = 1, *, in_text: bool = True) -> None:
        """An attempt of the step started (1-based); JSON: `"event": "step_started"`."""
        self.event(message, {"event": "step_started", "attempt": attempt}, in_text=in_text)

    def ended(self, message: str, end: StepEnd, *, in_text: bool = True) -> None:
        """An attempt of the step ended; JSON: `"event": "step_ended"` with `end`'s fields."""
        fields = {
            "event": "step_ended",
            "status": end.status,
            "exit_code": end.exit_code,
            "seconds": round(end.seconds, 3),
            "attempt": end.attempt,
            "attempts": end.attempts,
        }
        self.event(message, fields, in_text=in_text)

    def retrying(self, message: str, attempt: int) -> None:
        """The step runs again as `attempt` after a failed one; JSON: `"event": "step_retry"`."""
        self.event(message, {"event": "step_retry", "attempt": attempt})

    def event(self, message: str, fields: Mapping[str, Any], *, in_text: bool = True) -> None:
        """A notice that is also an event: text says `message` (when `in_text`); JSON adds `fields`."""
        if in_text:
            self.notice(message)

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
        """Write a block of whole lines, or a piece of a line longer than PIECE_BYTES, or the last line."""


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

    def begin(self, pipeline: str, run_id: str, step: str = "", *, run_date: str = "") -> None:  # noqa: B027
        """The run the runner's own lines belong to from now on (`step`: a run of one step)."""

    def result(self, record: Mapping[str, Any], lines: Iterable[str]) -> None:
        """A result of the run (a data check's): its `lines` in text, one JSON record of `record` in JSON."""
        for line in lines:
            self.notice(line)


class _TextStep(StepOutput):
    def __init__(self, out: TextOutput, label: str) -> None:
        super().__init__(lambda message: out.notice(f"{label}: {message}"))
        self._out = out

    def emit(self, stream: Stream, block: bytes) -> None:
        out = self._out
        with out.lock:
            if stream == "stdout":
                out.stdout.write(block)
                out.stdout.flush()
            else:
                out.stderr.write(block)
                out.stderr.flush()
                out.stderr_line_open = not block.endswith(b"\n")


class TextOutput(Output):
    """Console output: the engine's stdout to stdout and stderr to stderr, bytes unchanged."""

    def __init__(self, stdout: BinaryIO, stderr: BinaryIO) -> None:
        super().__init__()
        self.stdout = stdout
        self.stderr = stderr
        #: the last stderr bytes written by a step did not end a line (guarded by `lock`)
        self.stderr_line_open = False

    def for_step(self, pipeline: str, step: str, run_id: str, label: str = "") -> StepOutput:
        return _TextStep(self, label or step)

    def notice(self, message: str, *, step: str = "") -> None:
        line = f"nightshift: {message}\n".encode()
        with self.lock:
            if self.stderr_line_open:
                # A step's stderr ended mid-line: the notice starts its own line, never glued on.
                line = b"\n" + line
                self.stderr_line_open = False
            self.stderr.write(line)
            self.stderr.flush()


def _dumps(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utf8_cut(data: bytearray, limit: int) -> int:
    """Where to cut `data` at or before `limit` without splitting a UTF-8 sequence."""
    for start in range(limit - 1, max(limit - 4, 0) - 1, -1):
        byte = data[start]
        if byte & 0xC0 != 0x80:  # not a continuation byte: a sequence starts here
            length = 4 if byte >= 0xF0 else 3 if byte >= 0xE0 else 2 if byte >= 0xC0 else 1
            return start if start + length > limit else limit
    return limit


@dataclass
class _Line:
    """The unfinished line of one stream: at most one fragment's bytes wait here."""

    pending: bytearray = field(default_factory=bytearray)
    #: fragments of this line already written (0: none, the line may still fit one record)
    part: int = 0


class _JsonStep(StepOutput):
    def __init__(self, out: JsonOutput, pipeline: str, step: str, run_id: str, label: str) -> None:
        # Only the line varies between records: encode the rest once, not once per line.
        self._fields = f', "pipeline": {_dumps(pipeline)}, "step": {_dumps(step)}, "run_id": {_dumps(run_id)}'
        if out.run_date:  # a run's records carry its date; a bare step output has none
            self._fields += f', "run_date": {_dumps(out.run_date)}'
        super().__init__(lambda message: out.write_records([self._notice_record(f"{label}: {message}")]))
        self._label = label
        self._out = out
        self._lines: dict[Stream, _Line] = {"stdout": _Line(), "stderr": _Line()}
        room = MAX_EVENT_BYTES - len(self._fields.encode("utf-8", "backslashreplace")) - _OTHER_FIELDS_BYTES
        # Names so long that a record barely fits still get whole UTF-8 sequences (up to 4 bytes).
        self._fragment = max(4, min(FRAGMENT_BYTES, room // 6))

    def _notice_record(self, message: str, extra: str = "") -> str:
        return (
            f'{{"time": "{_now()}"{self._fields}, "stream": "nightshift", "line": {_dumps(message)}{extra}}}'
        )

    def event(self, message: str, fields: Mapping[str, Any], *, in_text: bool = True) -> None:
        extra = "".join(f", {_dumps(name)}: {json.dumps(value)}" for name, value in fields.items())
        self._out.write_records([self._notice_record(f"{self._label}: {message}", extra)])

    def emit(self, stream: Stream, block: bytes) -> None:
        self.feed(stream, block)  # feed() below does the cutting: a block is just more bytes

    def feed(self, stream: Stream, chunk: bytes) -> None:
        prefix = f'{{"time": "{_now()}"{self._fields}, "stream": "{stream}", '
        records: list[str] = []
        line = self._lines[stream]
        first = chunk.find(b"\n")
        if first < 0:
            line.pending += chunk
            self._fragments(prefix, line, records)
        else:
            start = 0
            if line.pending or line.part:  # the line begun in earlier chunks ends here
                line.pending += memoryview(chunk)[:first]
                self._fragments(prefix, line, records)
                self._end(prefix, line, records, newline=True)
                start = first + 1
            last = chunk.rfind(b"\n") + 1
            if last > start:
                self._whole_lines(prefix, chunk[start:last], line, records)
            line.pending += memoryview(chunk)[last:]
            self._fragments(prefix, line, records)
        if records:
            self._out.write_records(records)

    def close(self) -> None:
        """Pass on a last line that had no newline, marked `"newline": false`."""
        for stream, line in self._lines.items():
            if line.pending or line.part:
                records: list[str] = []
                prefix = f'{{"time": "{_now()}"{self._fields}, "stream": "{stream}", '
                self._end(prefix, line, records, newline=False)
                self._out.write_records(records)

    def _whole_lines(self, prefix: str, block: bytes, line: _Line, records: list[str]) -> None:
        """Records for a block of complete lines; a line too long for one record goes in fragments."""
        fragment = self._fragment
        try:
            texts = block.decode("utf-8").split("\n")[:-1]
        except UnicodeDecodeError:
            texts = None
        if texts is not None:  # the usual case: valid UTF-8, one json.dumps per line
            short = len(block) <= fragment
            for text in texts:
                if short or len(text) * 4 <= fragment or len(text.encode()) <= fragment:
                    records.append(f'{prefix}"line": {_dumps(text)}}}')
                else:
                    line.pending += text.encode()
                    self._fragments(prefix, line, records)
                    self._end(prefix, line, records, newline=True)
            return
        for raw in block.split(b"\n")[:-1]:
            line.pending += raw
            self._fragments(prefix, line, records)
            self._end(prefix, line, records, newline=True)

    def _fragments(self, prefix: str, line: _Line, records: list[str]) -> None:
        """Write out full fragments while more than one fragment's bytes wait (the rest may still grow)."""
        pending = line.pending
        while len(pending) > self._fragment:
            cut = _utf8_cut(pending, self._fragment)
            line.part += 1
            records.append(_record(prefix, bytes(pending[:cut]), f', "part": {line.part}, "last": false'))
            del pending[:cut]

    def _end(self, prefix: str, line: _Line, records: list[str], *, newline: bool) -> None:
        """The line is over: its last fragment, or the whole line when it fits one record."""
        extra = "" if newline else ', "newline": false'
        if line.part:
            extra = f', "part": {line.part + 1}, "last": true{extra}'
        records.append(_record(prefix, bytes(line.pending), extra))
        line.pending.clear()
        line.part = 0


def _record(prefix: str, data: bytes, extra: str) -> str:
    try:
        text = f'"line": {_dumps(data.decode("utf-8"))}'
    except UnicodeDecodeError:
        # Not UTF-8: the raw bytes, so a reader can tell them from text that spells "\xff".
        text = f'"line_b64": "{base64.b64encode(data).decode("ascii")}"'
    return f"{prefix}{text}{extra}}}"


class JsonOutput(Output):
    """JSON lines on stdout, for CloudWatch Logs Insights: one record per output line (README)."""

    def __init__(self, stdout: BinaryIO) -> None:
        super().__init__()
        self.stdout = stdout
        self._pipeline = self._run_id = self._step = ""
        #: the run date every record carries (a range: the date running now)
        self.run_date = ""

    def begin(self, pipeline: str, run_id: str, step: str = "", *, run_date: str = "") -> None:
        # On Fargate a task runs one step: its summary and errors then belong to that step's stream.
        self._pipeline, self._run_id, self._step, self.run_date = pipeline, run_id, step, run_date

    def for_step(self, pipeline: str, step: str, run_id: str, label: str = "") -> StepOutput:
        return _JsonStep(self, pipeline, step, run_id, label or step)

    def _date(self) -> dict[str, str]:
        return {"run_date": self.run_date} if self.run_date else {}

    def write_records(self, records: list[str]) -> None:
        data = ("\n".join(records) + "\n").encode("utf-8", errors="backslashreplace")
        with self.lock:
            self.stdout.write(data)
            self.stdout.flush()

    def result(self, record: Mapping[str, Any], lines: Iterable[str]) -> None:
        fields = {"time": _now(), "pipeline": self._pipeline, "run_id": self._run_id, **self._date()}
        fields["stream"] = "check"
        self.write_records([json.dumps({**fields, **record}, ensure_ascii=False)])

    def notice(self, message: str, *, step: str = "") -> None:
        record = {
            "time": _now(),
            "pipeline": self._pipeline,
            "step": step or self._step,
            "run_id": self._run_id,
            **self._date(),
            "stream": "nightshift",
            "line": message,
        }
        self.write_records([json.dumps(record, ensure_ascii=False)])


class Reassembler:
    """Turns one step run's JSON records back into its bytes record by record, in order.

    A line longer than one record comes back fragment by fragment, so a reader holds no more than
    one record of it, however long the line (`reassemble` is the whole-run form).
    """

    def __init__(self) -> None:
        #: per stream, the last fragment of a line not yet ended (0: none)
        self.parts: dict[str, int] = {"stdout": 0, "stderr": 0}

    def take(self, record: Mapping[str, Any]) -> tuple[Stream, bytes] | None:
        """The bytes `record` adds to its stream (None for a notice); ValueError when one is missing.

        After a ValueError the record still counts: its bytes are `resume(record)`'s.
        """
        stream = record["stream"]
        if stream not in self.parts:
            return None
        part = record.get("part", 0)
        before = self.parts[stream]
        if part != (before + 1 if part else 0) or (not part and before):
            self.parts[stream] = 0
            raise ValueError(f"{stream}: fragment {part or 'of a whole line'} after part {before}")
        return self.resume(record)

    def resume(self, record: Mapping[str, Any]) -> tuple[Stream, bytes]:
        """`record`'s bytes, taken as the next of its stream whatever came before it."""
        stream: Stream = record["stream"]
        part = record.get("part", 0)
        data = base64.b64decode(record["line_b64"]) if "line_b64" in record else record["line"].encode()
        ended = not part or record["last"]
        self.parts[stream] = 0 if ended else part
        if ended and record.get("newline", True):
            data += b"\n"
        return stream, data


def reassemble(records: Iterable[Mapping[str, Any]]) -> dict[Stream, bytes]:
    """The exact stdout and stderr bytes of one step run, from its JSON records in order.

    The runner's notices (stream "nightshift") are not part of either stream and are skipped.
    Raises ValueError when a fragment is missing.
    """
    streams: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    reassembler = Reassembler()
    for record in records:
        taken = reassembler.take(record)
        if taken is not None:
            streams[taken[0]] += taken[1]
    return {"stdout": bytes(streams["stdout"]), "stderr": bytes(streams["stderr"])}


#: What reads as an error line: Spark's error class ("[TABLE_OR_VIEW_NOT_FOUND] ..."), "Error in query:",
#: a Java exception, "ERROR", "error:". Not any "error": Spark's advice lines mention the word too.
_ERROR_LINE = re.compile(rb"^\[[A-Z][A-Z0-9_.]+\]|Error|ERROR|Exception|FATAL|Fatal|\berror:|\bfailed\b")
#: How much of that line the summary table repeats.
ERROR_LINE_CHARS = 200
#: spark-sql's line before a file's first statement, and the one after each statement that succeeded.
_SPARK_MASTER = re.compile(rb"^Spark master: ")
_TIME_TAKEN = re.compile(rb"Time taken: [0-9.]+ seconds")
_ERROR_CLASS = re.compile(rb"^\[[A-Z][A-Z0-9_.]+\]")


class ErrorLine(StepOutput):
    """A step's output passed on unchanged, keeping its first stderr line that reads as an error.

    Without such a line the step's last stderr line is kept: the summary table repeats it, so a
    failure's cause is not lost above a hundred lines of Java stack.
    """

    def __init__(self, inner: StepOutput) -> None:
        super().__init__(inner.notice)
        self._inner = inner
        self._stderr = LineBuffer()
        self._first = b""
        self._last = b""
        self._statements: int | None = None

    def feed(self, stream: Stream, chunk: bytes) -> None:
        self._inner.feed(stream, chunk)
        if stream == "stderr" and not self._first:
            self._scan(self._stderr.feed(chunk))

    def emit(self, stream: Stream, block: bytes) -> None:
        self._inner.emit(stream, block)

    def event(self, message: str, fields: Mapping[str, Any], *, in_text: bool = True) -> None:
        self._inner.event(message, fields, in_text=in_text)

    def close(self) -> None:
        self._inner.close()
        if not self._first:
            self._scan(self._stderr.rest())

    def _scan(self, block: bytes) -> None:
        for raw in block.splitlines():
            line = raw.strip()[: ERROR_LINE_CHARS * 4]
            if not line:
                continue
            if self._statements is None:
                self._statements = 0 if _SPARK_MASTER.search(line) else None
            elif _TIME_TAKEN.search(line):
                self._statements += 1  # a progress bar may share the line: search, not match
            if _ERROR_LINE.search(line):
                self._first = line
                return
            self._last = line

    @property
    def statements_done(self) -> int | None:
        """How many statements of a spark-sql file succeeded before the one whose error is `line`.

        None unless spark-sql reached the file's statements and the error is one it printed for a
        statement (its error class, "[TABLE_OR_VIEW_NOT_FOUND] ...").
        """
        return self._statements if self._first and _ERROR_CLASS.search(self._first) else None

    @property
    def line(self) -> str:
        """The kept line as text (at most ERROR_LINE_CHARS characters), "" when stderr was empty."""
        text = (self._first or self._last).decode("utf-8", errors="replace")
        return text if len(text) <= ERROR_LINE_CHARS else text[: ERROR_LINE_CHARS - 1] + "…"
