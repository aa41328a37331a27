"""Dropped connections, stops and timeouts: the step runs once, output is complete, nothing is left behind."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import pytest

from runner.execution import EXIT_TIMEOUT, Invocation, Outcome, StepResult, StopRequest
from runner.model import Engine, Step
from runner.output import StepOutput, Stream
from runner.remote import RemoteSettings, SSHExecutor
from tests.integration.ssh.conftest import Cli, process_group_alive

pytestmark = pytest.mark.sshd


def _lines(prefix: str, count: int) -> bytes:
    return b"".join(f"{prefix} {i}\n".encode() for i in range(1, count + 1))


def _step_output(stderr: bytes) -> bytes:
    return b"".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(b"nightshift: "))


def test_connections_killed_at_random_moments_lose_nothing_and_never_restart_the_step(cli: Cli) -> None:
    marker, gate, count = cli.root / "starts", cli.root / "gate", cli.root / "count"
    # The step talks until the test has made its four drops (at least 120 lines of each stream), so
    # every drop hits it while it talks, however fast or slow the machine: by construction, not by a
    # guess of how long 120 lines take. It says how many it printed; the bound only ends a lost test.
    step = cli.step(
        "10_flaky.sh",
        f"echo started >> {marker}\ni=0\n"
        f"while [ $i -lt 120 ] || {{ [ ! -e {gate} ] && [ $i -lt 12000 ]; }}; do\n"
        '  i=$((i + 1)); echo "out $i"; echo "err $i" >&2; sleep 0.05\n'
        f"done\necho $i > {count}\n"
        "exit 9\n",
    )
    rng = random.Random(20240229)
    process = cli.start(step, "--reconnect-timeout", "60")
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"out 1\n"
        drops = 0
        while drops < 4:
            assert process.poll() is None, "the step ended before the test's drops"
            time.sleep(rng.uniform(0.2, 0.9))
            # Between a drop and the reconnect there is nothing to kill; that moment does not count.
            drops += min(1, cli.sshd.drop_connections())
    finally:
        gate.touch()
    rest, stderr = process.communicate(timeout=600)

    assert process.returncode == 9, stderr.decode(errors="replace")
    printed = int(count.read_text())
    assert printed >= 120
    assert b"out 1\n" + rest == _lines("out", printed)
    assert _step_output(stderr) == _lines("err", printed)
    # A drop can hit a reconnect in progress; that attempt is simply retried.
    assert stderr.count(b"reconnected to") >= 2
    assert marker.read_text() == "started\n"  # ran exactly once
    assert list(cli.remote_dir.iterdir()) == []
    assert cli.leftovers() == []


def test_a_drop_while_the_step_is_silent_then_output_resumes(cli: Cli) -> None:
    # Silent until the test has dropped the connection: the drop hits the silence by construction.
    gate = cli.root / "gate"
    step = cli.step("10_quiet.sh", f"echo before\nuntil [ -e {gate} ]; do sleep 0.05; done\necho after\n")
    process = cli.start(step)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"before\n"
        assert cli.sshd.drop_connections() >= 1
    finally:
        gate.touch()
    rest, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert rest == b"after\n"


def _pgid_step(cli: Cli, name: str) -> tuple[Path, Path]:
    pgid_file = cli.root / f"{name}.pgid"
    # The step starts a child and a grandchild too: stopping it must take the whole group.
    step = cli.step(
        f"10_{name}.sh",
        f"cut -d' ' -f5 /proc/$$/stat > {pgid_file}\n"
        "sleep 300 &\n"
        "bash -c 'sleep 300' &\n"
        "echo running\n"
        "wait\n",
    )
    return step, pgid_file


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_the_runner_stops_the_remote_process_group(cli: Cli, signum: int, code: int) -> None:
    step, pgid_file = _pgid_step(cli, "stopme")
    process = cli.start(step)
    assert process.stdout is not None
    assert process.stdout.readline() == b"running\n"
    pgid = int(pgid_file.read_text())
    assert process_group_alive(pgid, within=0)

    sent = time.monotonic()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    took = time.monotonic() - sent

    assert process.returncode == code, stderr
    assert took < 120  # stopped, not waited for: the step's sleeps last 300 s; a stop takes seconds
    assert not process_group_alive(pgid)
    assert b"stopping the step's process group" in stderr
    assert list(cli.remote_dir.iterdir()) == []
    assert cli.leftovers() == []


class _Collect(StepOutput):
    def __init__(self) -> None:
        super().__init__()
        self.data: dict[Stream, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}

    def emit(self, stream: Stream, block: bytes) -> None:
        self.data[stream] += block


def _settings(cli: Cli, **overrides: object) -> RemoteSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": cli.sshd.port,
        "user": cli.sshd.user,
        "key_file": cli.sshd.user_key,
        "known_hosts": cli.known_hosts,
        "remote_dir": str(cli.remote_dir),
        **overrides,
    }
    return RemoteSettings(**values)  # type: ignore[arg-type]


def test_a_step_over_its_timeout_is_stopped_with_exit_124(cli: Cli) -> None:
    step_path, pgid_file = _pgid_step(cli, "slow")
    executor = SSHExecutor(_settings(cli, stop_grace_seconds=1.0))
    invocation = Invocation(
        step=Step(step_path, 10, Engine.BASH),
        engine=Engine.BASH,
        variables={},
        pipeline="job",
        run_id="timeout-run",
        timeout_seconds=1.5,
    )
    output = _Collect()

    started = time.monotonic()
    result = executor.run(invocation, output, StopRequest())
    took = time.monotonic() - started
    output.close()

    assert result == StepResult(EXIT_TIMEOUT, Outcome.TIMED_OUT)
    assert took < 120  # its 1.5 s and the connection's set-up (seconds at load 20), not the sleeps' 300 s
    assert bytes(output.data["stdout"]) == b"running\n"
    assert not process_group_alive(int(pgid_file.read_text()))
    assert any("timed out" in notice for notice in output.notices)
    assert cli.leftovers() == []


def test_a_stop_requested_while_reconnecting_still_stops_the_step(cli: Cli) -> None:
    step_path, pgid_file = _pgid_step(cli, "stopdrop")
    executor = SSHExecutor(_settings(cli, reconnect_backoff=1.0))
    invocation = Invocation(Step(step_path, 10, Engine.BASH), Engine.BASH, {}, "job", "stop-drop")
    stop = StopRequest()
    output = _Collect()

    def drop_then_stop() -> None:
        while not pgid_file.exists() or not pgid_file.read_text().strip():
            time.sleep(0.05)
        cli.sshd.drop_connections()
        stop.trigger(signal.SIGTERM)

    helper = threading.Thread(target=drop_then_stop)
    helper.start()
    result = executor.run(invocation, output, stop)
    helper.join()

    assert result == StepResult(143, Outcome.STOPPED)
    assert not process_group_alive(int(pgid_file.read_text()))
    assert cli.leftovers() == []
