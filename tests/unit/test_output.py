"""Output relay: complete lines pass on at once, bytes unchanged in text, one JSON object per line."""

from __future__ import annotations

import io
import json

from runner.output import JsonOutput, LineBuffer, TextOutput


def test_line_buffer_holds_partial_lines() -> None:
    buffer = LineBuffer()
    assert buffer.feed(b"one\ntw") == b"one\n"
    assert buffer.feed(b"o") == b""
    assert buffer.feed(b"\nthree\nfour") == b"two\nthree\n"
    assert buffer.rest() == b"four"
    assert buffer.rest() == b""


def test_line_buffer_passes_a_long_line_on_in_bounded_pieces() -> None:
    buffer = LineBuffer(limit=100)
    line = bytes(range(10)) * 1000 + b"\n"  # 10,001 bytes, one line, fed 7 bytes at a time
    pieces = [buffer.feed(line[i : i + 7]) for i in range(0, len(line), 7)]
    assert b"".join(pieces) + buffer.rest() == line
    assert max(map(len, pieces)) < 100 + 7, "the partial line may not grow past the limit"
    assert sum(1 for piece in pieces if piece) > 90, "pieces go on while the line is still unfinished"


def test_text_output_passes_bytes_through_per_stream() -> None:
    stdout, stderr = io.BytesIO(), io.BytesIO()
    out = TextOutput(stdout, stderr)
    step = out.for_step("p", "s", "r")
    step.feed("stdout", b"caf\xc3\xa9\r\n\xff bad")
    step.feed("stderr", b"warn\n")
    assert stdout.getvalue() == b"caf\xc3\xa9\r\n"  # the unfinished line waits for its newline
    step.feed("stdout", b" bytes\nlast")
    step.close()
    out.notice("done")
    assert stdout.getvalue() == b"caf\xc3\xa9\r\n\xff bad bytes\nlast"
    assert stderr.getvalue() == b"warn\nnightshift: done\n"


def test_a_notice_never_glues_onto_a_stderr_line_without_newline() -> None:
    stdout, stderr = io.BytesIO(), io.BytesIO()
    out = TextOutput(stdout, stderr)
    step = out.for_step("p", "s", "r", "s.sh")
    step.feed("stdout", b"out without newline")
    step.feed("stderr", b"err without newline")
    step.close()
    step.notice("finished")
    out.notice("summary")
    assert stdout.getvalue() == b"out without newline"  # stdout stays byte for byte
    assert stderr.getvalue() == b"err without newline\nnightshift: s.sh: finished\nnightshift: summary\n"


def test_json_output_writes_one_object_per_line() -> None:
    stdout = io.BytesIO()
    out = JsonOutput(stdout)
    step = out.for_step("example", "10_users", "run-1", "10_users.sql")
    step.feed("stdout", b"a\tb\r\n\xff\xfe\n")
    step.feed("stderr", b"oops\n")
    step.feed("stdout", b"no newline")
    step.close()
    step.notice("finished")
    records = [json.loads(line) for line in stdout.getvalue().decode().splitlines()]
    assert [
        {k: v for k, v in r.items() if k not in ("time", "pipeline", "step", "run_id")} for r in records
    ] == [
        {"stream": "stdout", "line": "a\tb\r"},  # a carriage return is part of the line
        {"stream": "stdout", "line_b64": "//4="},  # not UTF-8: the raw bytes, told apart from text "\xff"
        {"stream": "stderr", "line": "oops"},
        {"stream": "stdout", "line": "no newline", "newline": False},
        {"stream": "nightshift", "line": "10_users.sql: finished"},
    ]
    assert {(r["pipeline"], r["step"], r["run_id"]) for r in records} == {("example", "10_users", "run-1")}
    assert all(r["time"].endswith("Z") for r in records)


def test_json_text_that_spells_an_escape_stays_text() -> None:
    stdout = io.BytesIO()
    step = JsonOutput(stdout).for_step("p", "s", "r")
    step.feed("stdout", b"\\xff\n")
    assert json.loads(stdout.getvalue()) | {"time": ""} == {
        "time": "", "pipeline": "p", "step": "s", "run_id": "r", "stream": "stdout", "line": "\\xff",
    }  # fmt: skip
