"""Volume: a million lines, a 1 MiB line and bytes that are not UTF-8, relayed whole over SSH."""

from __future__ import annotations

import base64
import json

import pytest

from runner.output import MAX_EVENT_BYTES, reassemble
from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd

STDOUT_LINES = 1_000_000
STDERR_EVERY = 10  # 100,000 stderr lines, interleaved
BIG_LINE = 1024 * 1024

STEP = f"""\
awk 'BEGIN {{ for (i = 1; i <= {STDOUT_LINES}; i++) {{
  print "out " i
  if (i % {STDERR_EVERY} == 0) print "err " i > "/dev/stderr"
}} }}'
head -c {BIG_LINE} /dev/zero | tr '\\0' 'x'; echo
printf 'not utf-8: \\377\\376 end\\n'
printf 'err not utf-8: \\300\\n' >&2
"""


def _expected() -> tuple[bytes, bytes]:
    out = "".join(f"out {i}\n" for i in range(1, STDOUT_LINES + 1)).encode()
    out += b"x" * BIG_LINE + b"\n" + b"not utf-8: \xff\xfe end\n"
    err = "".join(f"err {i}\n" for i in range(STDERR_EVERY, STDOUT_LINES + 1, STDERR_EVERY)).encode()
    return out, err + b"err not utf-8: \xc0\n"


def test_text_mode_passes_every_byte_through_in_order(cli: Cli) -> None:
    step = cli.step("10_volume.sh", STEP)

    result = cli.run(step, timeout=120)

    expected_out, expected_err = _expected()
    assert result.returncode == 0
    assert result.stdout == expected_out
    step_err = b"".join(
        line for line in result.stderr.splitlines(keepends=True) if not line.startswith(b"nightshift: ")
    )
    assert step_err == expected_err


def test_json_mode_writes_every_byte_in_records_that_fit_cloudwatch(cli: Cli) -> None:
    step = cli.step("10_volume.sh", STEP)

    result = cli.run(step, "--log-format", "json", timeout=120)

    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert max(len(line) + 1 for line in lines) <= MAX_EVENT_BYTES
    records = [json.loads(line) for line in lines]
    assert reassemble(records) == dict(zip(("stdout", "stderr"), _expected(), strict=True))
    out = [r for r in records if r["stream"] == "stdout"]
    assert [r["line"] for r in out[:3]] == ["out 1", "out 2", "out 3"]
    assert len([r for r in out if r.get("part", 1) == 1]) == STDOUT_LINES + 2  # the 1 MiB line in parts
    assert base64.b64decode(out[-1]["line_b64"]) == b"not utf-8: \xff\xfe end"
    assert "line" not in out[-1]
    assert {(r["pipeline"], r["step"]) for r in records} == {("10_volume", "10_volume")}
