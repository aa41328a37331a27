"""The input gate of a local run: real files, a real bash step, the runner as a user runs it."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import IO

from tests.conftest import run_cli, start_cli

TOML = """
[variables]
raw_path = "s3://lake/raw"

[variables.local]
raw_path = "data"

[inputs]
objects = ["${raw_path}/events/dt=${run_date}/_SUCCESS"]
prefixes = ["${raw_path}/users/dt=${run_date}/"]
wait_minutes = %s
poll_minutes = 0.02
"""
STEP = 'echo "ran $run_date"\necho "$run_date" >> ran.txt\n'


def pipeline(tmp_path: Path, wait_minutes: float = 0.5) -> Path:
    folder = tmp_path / "gated"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(TOML % wait_minutes)
    (folder / "10_load.sh").write_text(STEP)
    return folder


def arrive(tmp_path: Path, run_date: str, *, users: bool = True, marker: bool = True) -> None:
    if users:
        (tmp_path / "data" / "users" / f"dt={run_date}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "users" / f"dt={run_date}" / "part-0.csv").write_text("1,ann\n")
    if marker:
        (tmp_path / "data" / "events" / f"dt={run_date}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "events" / f"dt={run_date}" / "_SUCCESS").write_text("")


def line_with(stream: IO[bytes], text: str) -> str:
    """The first line of `stream` that holds `text` (lines before it, as the run's header, are skipped)."""
    for line in iter(stream.readline, b""):
        if text in line.decode():
            return line.decode()
    return ""


def wait_until_listed(folder: Path, times: int, within: float = 60) -> None:
    """Wait until something has read `folder` `times` times: each poll of a prefix input lists it.

    Linux (relatime, the default) sets a folder's access time when it is read while that time is older
    than its modification time; the test sets it older before each read it waits for.
    """
    for _ in range(times):
        modified = folder.stat().st_mtime_ns
        os.utime(folder, ns=(modified - 1_000_000_000, modified))
        deadline = time.monotonic() + within
        while folder.stat().st_atime_ns < modified:
            assert time.monotonic() < deadline, f"nothing read {folder} (a file system mounted noatime?)"
            time.sleep(0.02)


def ran(tmp_path: Path) -> list[str]:
    record = tmp_path / "ran.txt"
    return record.read_text().split() if record.exists() else []


def test_missing_inputs_stop_the_run_before_any_step(tmp_path: Path) -> None:
    folder = pipeline(tmp_path)
    arrive(tmp_path, "2025-06-01", marker=False)
    (tmp_path / "data" / "events" / "dt=2025-06-01").mkdir(parents=True)  # the folder, no marker yet
    result = run_cli(folder, "--run-date", "2025-06-01", cwd=tmp_path)
    assert result.returncode == 75
    assert result.stdout == b""
    assert result.stderr.decode().splitlines()[1:] == [  # after the run header
        "nightshift: error: inputs missing for 2025-06-01: data/events/dt=2025-06-01/_SUCCESS"
        " (--wait waits for them up to [inputs] wait_minutes)"
    ]
    assert ran(tmp_path) == []


def test_inputs_there_run_the_pipeline(tmp_path: Path) -> None:
    folder = pipeline(tmp_path)
    arrive(tmp_path, "2025-06-01")
    result = run_cli(folder, "--run-date", "2025-06-01", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ran 2025-06-01\n"
    assert result.stderr.decode().splitlines()[1] == "nightshift: inputs: all 2 there for 2025-06-01"
    assert ran(tmp_path) == ["2025-06-01"]


def test_no_wait_skips_the_check(tmp_path: Path) -> None:
    folder = pipeline(tmp_path)
    result = run_cli(folder, "--run-date", "2025-06-01", "--no-wait", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert b"inputs" not in result.stderr
    assert ran(tmp_path) == ["2025-06-01"]


def test_a_single_step_is_not_gated_unless_asked(tmp_path: Path) -> None:
    folder = pipeline(tmp_path, wait_minutes=0.05)
    assert run_cli(folder / "10_load.sh", "--run-date", "2025-06-01", cwd=tmp_path).returncode == 0
    asked = run_cli(folder / "10_load.sh", "--run-date", "2025-06-02", "--wait", cwd=tmp_path)
    assert asked.returncode == 75 and b"inputs missing for 2025-06-02 after waiting" in asked.stderr
    assert ran(tmp_path) == ["2025-06-01"]


def test_wait_runs_once_late_inputs_arrive(tmp_path: Path) -> None:
    folder = pipeline(tmp_path, wait_minutes=1)
    users = tmp_path / "data" / "users" / "dt=2025-06-01"
    users.mkdir(parents=True)  # the prefix's folder, empty: not there yet, and each poll lists it
    process = start_cli(folder, "--run-date", "2025-06-01", "--wait", cwd=tmp_path)
    assert process.stderr is not None
    waiting = line_with(process.stderr, "nightshift: inputs: ")
    assert waiting.startswith(
        "nightshift: inputs: waiting for 2 of 2 for 2025-06-01: data/events/dt=2025-06-01/_SUCCESS,"
        " data/users/dt=2025-06-01/ (no file in it); checking every 1 s until "
    )
    wait_until_listed(users, 2)  # two more polls find nothing (the first printed the line above)
    assert process.poll() is None and ran(tmp_path) == []
    arrive(tmp_path, "2025-06-01")
    assert process.wait(120) == 0
    there = process.stderr.readline().decode()
    assert re.fullmatch(
        r"nightshift: inputs: all 2 there for 2025-06-01 after \d+ s \((\d+) checks\)\n", there
    )
    assert int(re.findall(r"\((\d+) checks", there)[0]) >= 4  # the first, two more, the one that found them
    assert ran(tmp_path) == ["2025-06-01"]


def test_wait_gives_up_at_the_deadline(tmp_path: Path) -> None:
    folder = pipeline(tmp_path, wait_minutes=0.05)  # 3 s
    arrive(tmp_path, "2025-06-01", users=False)
    started = time.monotonic()
    result = run_cli(folder, "--run-date", "2025-06-01", "--wait", cwd=tmp_path)
    took = time.monotonic() - started
    assert result.returncode == 75
    last = result.stderr.decode().splitlines()[-1]
    assert re.fullmatch(
        r"nightshift: error: inputs missing for 2025-06-01 after waiting 3 s \(4 checks\):"
        r" data/users/dt=2025-06-01/ \(no file in it\)",
        last,
    ), last
    assert 3 <= took < 60  # its 3 s and the CLI's start-up (seconds at load 20)
    assert ran(tmp_path) == []


def test_a_range_runs_the_dates_whose_inputs_are_there(tmp_path: Path) -> None:
    folder = pipeline(tmp_path)
    arrive(tmp_path, "2025-06-01")
    arrive(tmp_path, "2025-06-03")
    result = run_cli(folder, "--run-date", "2025-06-01..2025-06-03", cwd=tmp_path)
    assert result.returncode == 75  # the first failed date's code
    assert ran(tmp_path) == ["2025-06-01", "2025-06-03"]
    assert b"error: inputs missing for 2025-06-02: data/events/dt=2025-06-02/_SUCCESS" in result.stderr


def test_an_s3_input_is_refused_locally_with_the_way_out(tmp_path: Path) -> None:
    folder = pipeline(tmp_path)
    toml = folder / "pipeline.toml"
    toml.write_text(toml.read_text().replace('[variables.local]\nraw_path = "data"\n', ""))
    result = run_cli(folder, "--run-date", "2025-06-01", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "nightshift: error: [inputs] s3://lake/raw/events/dt=2025-06-01/_SUCCESS: a s3:// path cannot be checked"
        " on the local engine (give the variable a local value in [variables.local], or skip the check with"
        " --no-wait)"
    ]
