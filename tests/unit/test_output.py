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


def test_json_output_writes_one_object_per_line() -> None:
    stdout = io.BytesIO()
    out = JsonOutput(stdout)
    step = out.for_step("example", "10_users", "run-1")
    step.feed("stdout", b"a\tb\r\n\xff\xfe\n")
    step.feed("stderr", b"oops\n")
    step.feed("stdout", b"no newline")
    step.close()
    out.notice("finished", step="10_users")
    records = [json.loads(line) for line in stdout.getvalue().decode().splitlines()]
    assert [(r["stream"], r["line"]) for r in records] == [
        ("stdout", "a\tb"),
        ("stdout", "\\xff\\xfe"),  # invalid UTF-8 stays visible instead of failing the run
        ("stderr", "oops"),
        ("stdout", "no newline"),
        ("nightshift", "finished"),
    ]
    assert {(r["pipeline"], r["step"], r["run_id"]) for r in records} == {("example", "10_users", "run-1")}
    assert all(r["time"].endswith("Z") for r in records)
