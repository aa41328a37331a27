"""What a step starts on the master ends with it; a run id followed twice is followed once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd

# Three ways out of the step's process group: a new session, a double fork, nohup in the background.
ESCAPES = """\
setsid sleep 1000 & echo $! >> {pids}
( setsid sh -c 'sleep 1001 & echo $! >> {pids}; wait' & )
nohup sleep 1002 >/dev/null 2>&1 & echo $! >> {pids}
until [ $(wc -l < {pids}) -ge 3 ]; do sleep 0.01; done
"""


def _alive(pid: int, *, within: float = 60.0) -> bool:
    """Whether the process still runs after `within` seconds (a zombie has ended); returns as soon as
    it has ended, so the generous default costs nothing when it has."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state == "Z" or time.monotonic() >= deadline:
            return state != "Z"
        time.sleep(0.05)


def _escapees(pids: Path) -> list[int]:
    found = [int(line) for line in pids.read_text().split()]
    assert len(found) == 3
    return found


def test_processes_that_left_the_steps_group_end_when_the_step_ends(cli: Cli) -> None:
    pids = cli.root / "pids"
    step = cli.step("10_daemons.sh", ESCAPES.format(pids=pids) + "echo started them\n")

    result = cli.run(step)

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"started them\n"
    for pid in _escapees(pids):
        # Killed as the step ended; a KILLed process may take a moment to be gone at load 20.
        assert not _alive(pid), f"{pid} outlived its step"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_ends_processes_that_left_the_steps_group(cli: Cli, signum: int, code: int) -> None:
    pids = cli.root / "pids"
    step = cli.step("10_daemons.sh", ESCAPES.format(pids=pids) + "echo running\nsleep 300\n")
    process = cli.start(step)
    assert process.stdout is not None
    assert process.stdout.readline() == b"running\n"
    escapees = _escapees(pids)
    assert all(_alive(pid, within=0) for pid in escapees)

    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == code, stderr
    for pid in escapees:
        assert not _alive(pid), f"{pid} outlived the stop"
    assert cli.leftovers() == []


def test_a_stop_ends_the_steps_group_also_where_the_mark_was_dropped(cli: Cli) -> None:
    pids = cli.root / "pids"
    step = cli.step(
        "10_unmarked.sh",
        f"env -u NIGHTSHIFT_STEP_TOKEN sleep 1003 & echo $! > {pids}\necho running\nsleep 300\n",
    )
    process = cli.start(step)
    assert process.stdout is not None
    assert process.stdout.readline() == b"running\n"
    unmarked = int(pids.read_text())

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 143, stderr
    assert not _alive(unmarked)


def test_a_stop_ends_an_escaped_process_that_ignores_term_after_the_grace(cli: Cli) -> None:
    pids = cli.root / "pids"
    step = cli.step(
        "10_stubborn.sh",
        f"setsid sh -c 'trap \"\" TERM; echo $$ > {pids}; while :; do sleep 0.1; done' &\n"
        f"until [ -s {pids} ]; do sleep 0.01; done\necho running\nsleep 300\n",
    )
    process = cli.start(step)
    assert process.stdout is not None
    assert process.stdout.readline() == b"running\n"
    (stubborn,) = [int(pids.read_text())]

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)

    assert process.returncode == 143, stderr
    # TERM is ignored: only KILL, after the 5 s grace, ends it (read at once: a second more of a
    # loaded machine could take the check past the grace).
    assert _alive(stubborn, within=0)
    assert not _alive(stubborn)


def test_a_second_runner_with_the_same_run_id_takes_over_once_and_the_first_steps_aside(cli: Cli) -> None:
    marker, gate = cli.root / "starts", cli.root / "gate"
    # Half-way the step waits (up to 300 s) until the first runner has stepped aside, so the second
    # takes over a running step however long it takes to start at load 20 (4 s of lines did not
    # always cover it).
    step = cli.step(
        "10_twice.sh",
        f"echo run >> {marker}\nfor i in $(seq 1 40); do echo line $i; sleep 0.1\n"
        f"  [ $i -ne 20 ] || for _ in $(seq 6000); do [ -e {gate} ] && break; sleep 0.05; done\n"
        "done\nexit 4\n",
    )
    first = cli.start(step, "--run-id", "same")
    assert first.stdout is not None
    assert first.stdout.readline() == b"line 1\n"

    second = cli.start(step, "--run-id", "same")
    try:
        first_out, first_err = first.communicate(timeout=600)
    finally:
        gate.touch()
    second_out, second_err = second.communicate(timeout=600)

    everything = b"".join(f"line {i}\n".encode() for i in range(1, 41))
    assert second.returncode == 4, second_err
    assert second_out == everything
    assert everything.startswith(b"line 1\n" + first_out)  # what it relayed before stepping aside
    assert b"reattaching" in second_err
    assert first.returncode == 1, first_err
    assert b"is being followed" in first_err and b"Terminated" not in first_err
    assert b"reconnect" not in first_err + second_err  # no follower killed another in a loop
    assert marker.read_text() == "run\n"
    assert cli.leftovers() == []
