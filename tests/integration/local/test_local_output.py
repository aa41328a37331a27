"""One huge line through the real CLI: byte for byte, in bounded memory and linear time, text and JSON."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.output import MAX_EVENT_BYTES, reassemble
from tests.conftest import ROOT, run_cli

LINE_BYTES = 64 * 1024 * 1024
PEAK_RSS_LIMIT_MIB = 100

# Runs the command, then reports the peak RSS of what it waited for: the runner (and its bash).
MEASURE = """
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out:
    code = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.DEVNULL).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def measured(argv: list[str], out: Path) -> tuple[int, int, float]:
    """Exit code, peak RSS in MiB and seconds of `argv`, run in a fresh process with stdout to `out`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(out), *argv],
        env=env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    seconds = time.perf_counter() - started
    code, peak = map(int, result.stdout.split())
    return code, peak, seconds


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while block := data.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def huge_line_step(tmp_path: Path) -> Path:
    step = tmp_path / "huge.sh"
    # A 64 MiB line with no newline until its end, then a short one and a last one without newline.
    step.write_text(f"head -c {LINE_BYTES} /dev/zero | tr '\\0' 'x'\necho\necho after\nprintf end\n")
    return step


def test_a_64_mib_line_passes_through_text_mode_unchanged_in_bounded_memory(
    huge_line_step: Path, tmp_path: Path
) -> None:
    code, _, bash_seconds = measured(["bash", str(huge_line_step)], tmp_path / "bash.out")
    assert code == 0
    code, peak, seconds = measured(
        [sys.executable, "-m", "runner", str(huge_line_step)], tmp_path / "runner.out"
    )
    assert code == 0
    assert (tmp_path / "runner.out").stat().st_size == LINE_BYTES + len(b"\nafter\nend")
    assert sha256(tmp_path / "runner.out") == sha256(tmp_path / "bash.out")
    assert peak < PEAK_RSS_LIMIT_MIB, f"the runner held {peak} MiB for one long line"
    # Python's start-up alone is a few tenths of a second; the relay itself must stay linear.
    assert seconds < 5 * bash_seconds + 2, f"runner {seconds:.1f} s, bash {bash_seconds:.1f} s"


def test_a_64_mib_line_becomes_joinable_json_records_in_bounded_memory(
    huge_line_step: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runner.jsonl"
    code, peak, _ = measured(
        [sys.executable, "-m", "runner", str(huge_line_step), "--log-format", "json"], out
    )
    assert code == 0
    assert peak < PEAK_RSS_LIMIT_MIB, f"the runner held {peak} MiB for one long line"
    with out.open("rb") as lines:
        records = []
        for line in lines:
            assert len(line) < MAX_EVENT_BYTES
            records.append(json.loads(line))
    assert {(r["pipeline"], r["step"]) for r in records} == {
        ("huge", "huge")
    }  # a lone file is its own pipeline
    assert len({r["run_id"] for r in records}) == 1
    streams = reassemble(records)
    assert streams["stdout"] == b"x" * LINE_BYTES + b"\nafter\nend"
    assert streams["stderr"] == b""


def test_a_notice_after_stderr_without_newline_starts_its_own_line(tmp_path: Path) -> None:
    step = tmp_path / "half.sh"
    step.write_text("printf 'out, no newline'\nprintf 'err, no newline' >&2\n")
    result = run_cli(step, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == b"out, no newline"  # stdout stays byte for byte
    lines = result.stderr.decode().splitlines()[1:]  # after the run header
    assert lines[:2] == ["nightshift: half.sh: started (bash)", "err, no newline"]
    assert lines[2].startswith("nightshift: half.sh: succeeded in ")


def test_every_json_record_names_pipeline_step_and_run(tmp_path: Path) -> None:
    folder = tmp_path / "nightly"
    folder.mkdir()
    (folder / "10_a.sh").write_text("echo a\nprintf 'no newline' >&2\n")
    (folder / "20_b.sh").write_text("echo b\n")
    result = run_cli(folder, "--log-format", "json", "--run-id", "night-1", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == b""
    records = [json.loads(line) for line in result.stdout.splitlines()]
    step_records = [r for r in records if r["step"]]
    assert {(r["pipeline"], r["run_id"]) for r in records} == {("nightly", "night-1")}
    assert [(r["step"], r["stream"], r.get("line")) for r in step_records if r["stream"] != "nightshift"] == [
        ("10_a", "stdout", "a"),
        ("10_a", "stderr", "no newline"),
        ("20_b", "stdout", "b"),
    ]
    notices = [(r["step"], r["line"].split(" in ")[0]) for r in step_records if r["stream"] == "nightshift"]
    assert notices == [
        ("10_a", "10_a.sh: started (bash)"),
        ("10_a", "10_a.sh: succeeded"),
        ("20_b", "20_b.sh: started (bash)"),
        ("20_b", "20_b.sh: succeeded"),
    ]


def test_the_runners_own_error_of_a_one_step_run_names_its_step(tmp_path: Path) -> None:
    # As on Fargate: one step per task, so an error that ends the task belongs to that step's stream.
    folder = tmp_path / "nightly"
    folder.mkdir()
    (folder / "pipeline.toml").write_text('description = "nightly"\n')
    step = folder / "10_a.sh"
    step.write_text("echo never\n")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run_cli(
        step, "--log-format", "json", "--run-id", "night-1", "--host", "127.0.0.1", "--port", str(port),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 255
    records = [json.loads(line) for line in result.stdout.splitlines()]
    (error,) = [r for r in records if r["line"].startswith("error:")]
    assert (error["pipeline"], error["step"], error["run_id"]) == ("nightly", "10_a", "night-1")


def test_json_records_give_back_the_exact_bytes_of_both_streams(tmp_path: Path) -> None:
    out = (
        b"caf\xc3\xa9\r\n\xff\xfe not utf-8\n\\xff literally\n"
        + "✓".encode() * 40_000
        + b"\n\x00\x01\x1b[0m\nend"
    )
    err = b"progress 10%\rprogress 100%\r\nwarning without newline"
    (tmp_path / "out.bin").write_bytes(out)
    (tmp_path / "err.bin").write_bytes(err)
    step = tmp_path / "bytes.sh"
    step.write_text("cat out.bin\ncat err.bin >&2\n")
    result = run_cli(step, "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert any("line_b64" in r for r in records) and any("part" in r for r in records)
    assert reassemble(records) == {"stdout": out, "stderr": err}
