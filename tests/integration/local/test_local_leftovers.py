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


def _run_from_last_line(step: Path, cwd: Path) -> tuple[int, bytes, bytes, float, float]:
    """Run STEP; its exit code, stdout, stderr, and the seconds from the runner's start and from the
    step's last line (`done`, the moment it ends) to the runner's exit. The latter leaves out the
    CLI's own start-up, seconds at load 20."""
    started = time.monotonic()
    process = start_cli(step, cwd=cwd)
    assert process.stdout is not None
    said = process.stdout.readline()
    done = time.monotonic()
    out, err = process.communicate(timeout=600)
    ended = time.monotonic()
    return process.returncode, said + out, err, ended - started, ended - done


@pytest.mark.parametrize("leftover", LEFTOVERS.values(), ids=LEFTOVERS.keys())
def test_a_step_that_exits_leaves_nothing_running(tmp_path: Path, leftover: str) -> None:
    step = tmp_path / "job.sh"
    step.write_text(SAVE_TOKEN + leftover + "echo done\nexit 3\n")
    code, out, err, _, after_done = _run_from_last_line(step, tmp_path)
    assert code == 3, err
    assert out == b"done\n"
    # The leftover sleeps 1000 s; ending it takes the runner well under a second, a few at load 20.
    assert after_done < 60, f"the runner waited {after_done:.1f} s for the step's leftovers"
    assert carrying(token_of(tmp_path)) == []


def test_a_leftover_that_ignores_term_is_killed_after_the_grace(tmp_path: Path) -> None:
    step = tmp_path / "job.sh"
    step.write_text(SAVE_TOKEN + "setsid bash -c 'trap \"\" TERM; sleep 1000' &\nsleep 0.5\necho done\n")
    code, out, err, took, after_done = _run_from_last_line(step, tmp_path)
    assert (code, out) == (0, b"done\n"), err
    # The runner gives the leftover its grace (the whole run lasts longer), then kills it: it does
    # not wait for its 1000 s.
    assert took > KILL_GRACE_SECONDS
    assert after_done < KILL_GRACE_SECONDS + 60
    assert carrying(token_of(tmp_path)) == []


def test_a_process_that_shed_the_token_cannot_make_the_runner_hang(tmp_path: Path) -> None:
    step = tmp_path / "job.sh"
    # env -i: no token, so it cannot be found; it holds the step's pipes open for 1000 s.
    step.write_text("env -i setsid sleep 1000 &\necho $! > escaped.pid\necho done\n")
    try:
        result = run_cli(step, cwd=tmp_path, timeout=300)  # its pipes held for 1000 s
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
    # bash, both sleeps (and the nohup'd one). A child still in its exec() shows no environment for a
    # moment (seen: 2 of 3 at load 9), so the test waits until all are seen.
    deadline = time.monotonic() + 60
    while len(carrying(token)) < 3:
        assert time.monotonic() < deadline, carrying(token)
        time.sleep(0.05)
    process.send_signal(signum)
    assert process.wait(120) == 128 + signum
    assert carrying(token) == []
