"""Volume: a million lines, a 1 MiB line and bytes that are not UTF-8, relayed whole over SSH."""

from __future__ import annotations

import json

import pytest

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


def test_json_mode_writes_one_record_per_line_with_invalid_bytes_visible(cli: Cli) -> None:
    step = cli.step("10_volume.sh", STEP)

    result = cli.run(step, "--log-format", "json", timeout=120)

    assert result.returncode == 0
    records = [json.loads(line) for line in result.stdout.splitlines()]
    out = [r["line"] for r in records if r["stream"] == "stdout"]
    err = [r["line"] for r in records if r["stream"] == "stderr"]
    assert len(out) == STDOUT_LINES + 2
    assert out[:3] == ["out 1", "out 2", "out 3"]
    assert out[STDOUT_LINES - 1] == f"out {STDOUT_LINES}"
    assert out[-2] == "x" * BIG_LINE
    assert out[-1] == "not utf-8: \\xff\\xfe end"
    assert err[0] == f"err {STDERR_EVERY}"
    assert err[-1] == "err not utf-8: \\xc0"
    assert len(err) == STDOUT_LINES // STDERR_EVERY + 1
    assert [int(line.split()[1]) for line in out[:STDOUT_LINES]] == list(range(1, STDOUT_LINES + 1))
