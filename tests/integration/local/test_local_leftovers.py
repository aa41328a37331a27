"""Real bash steps that leave processes behind: the runner ends them all and never hangs on their pipes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from runner.local.executor import KILL_GRACE_SECONDS, STEP_TOKEN_VARIABLE
from tests.conftest import run_cli, start_cli

# The step writes its token where the test can read it: other runs on this machine have their own.
SAVE_TOKEN = f'echo "${STEP_TOKEN_VARIABLE}" > token\n'


def carrying(token: str) -> list[int]:
    """This user's processes whose environment carries the step's token."""
    entry = f"{STEP_TOKEN_VARIABLE}={token}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if entry in environ.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def token_of(folder: Path) -> str:
    token = (folder / "token").read_text().strip()
    assert len(token) == 32, "each step gets a random token"
    return token


LEFTOVERS = {
    "setsid child holding the pipes": "setsid sleep 1000 &\n",
    "nohup child holding the pipes": "nohup sleep 1000 &\n",
    "daemon with its own session and no pipes": "setsid sleep 1000 </dev/null >/dev/null 2>&1 &\n",
    "child in the group": "sleep 1000 &\n",
}


@pytest.mark.parametrize("leftover", LEFTOVERS.values(), ids=LEFTOVERS.keys())
def test_a_step_that_exits_leaves_nothing_running(tmp_path: Path, leftover: str) -> None:
    step = tmp_path / "job.sh"
    step.write_text(SAVE_TOKEN + leftover + "echo done\nexit 3\n")
    started = time.monotonic()
    result = run_cli(step, cwd=tmp_path, timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert result.stdout == b"done\n"
    assert took < 5, f"the runner waited {took:.1f} s for the step's leftovers"
    assert carrying(token_of(tmp_path)) == []


def test_a_leftover_that_ignores_term_is_killed_after_the_grace(tmp_path: Path) -> None:
    step = tmp_path / "job.sh"
    step.write_text(SAVE_TOKEN + "setsid bash -c 'trap \"\" TERM; sleep 1000' &\nsleep 0.5\necho done\n")
    started = time.monotonic()
    result = run_cli(step, cwd=tmp_path, timeout=60)
    took = time.monotonic() - started
    assert (result.returncode, result.stdout) == (0, b"done\n"), result.stderr
    assert KILL_GRACE_SECONDS < took < KILL_GRACE_SECONDS + 5
    assert carrying(token_of(tmp_path)) == []


def test_a_process_that_shed_the_token_cannot_make_the_runner_hang(tmp_path: Path) -> None:
    step = tmp_path / "job.sh"
    # env -i: no token, so it cannot be found; it holds the step's pipes open for 1000 s.
    step.write_text("env -i setsid sleep 1000 &\necho $! > escaped.pid\necho done\n")
    try:
        result = run_cli(step, cwd=tmp_path, timeout=60)
        assert (result.returncode, result.stdout) == (0, b"done\n"), result.stderr
    finally:
        os.kill(int((tmp_path / "escaped.pid").read_text()), signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_ends_what_left_the_process_group(tmp_path: Path, signum: int) -> None:
    step = tmp_path / "job.sh"
    step.write_text(
        SAVE_TOKEN + "setsid sleep 1000 &\nnohup sleep 1000 >/dev/null 2>&1 &\necho started\nsleep 1000\n"
    )
    process = start_cli(step, cwd=tmp_path, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"
    token = token_of(tmp_path)
    assert len(carrying(token)) >= 3  # bash, both sleeps (and the nohup'd one)
    process.send_signal(signum)
    assert process.wait(10) == 128 + signum
    assert carrying(token) == []
