"""The reconnect budget: counted from the first loss, renewed only by progress, never by a reconnect alone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.integration.ssh.conftest import Cli
from tests.integration.ssh.tcp_proxy import TcpProxy, tcp_proxy

pytestmark = pytest.mark.sshd


@pytest.fixture
def proxy(cli: Cli) -> Iterator[TcpProxy]:
    with tcp_proxy(cli.sshd.port) as relay:
        cli.known_hosts.write_text(
            cli.sshd.known_hosts_line() + f"[127.0.0.1]:{relay.port} {cli.sshd.host_public_key}\n"
        )
        yield relay


def _via(cli: Cli, proxy: TcpProxy) -> list[str]:
    argv = cli.target_args()
    argv[argv.index("--port") + 1] = str(proxy.port)
    return argv


def _notices(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode(errors="replace").splitlines() if line.startswith("nightshift: ")]


def test_a_server_that_drops_every_connection_ends_the_run_within_the_budget(
    cli: Cli, proxy: TcpProxy
) -> None:
    # Every connection is accepted, logs in, and is cut 1.5 s later: each reconnect "succeeds",
    # and none makes progress while the step is silent.
    proxy.lifetime = 1.5
    pgid_file = cli.root / "step.pgid"
    step = cli.step("10_silent.sh", f"cut -d' ' -f5 /proc/$$/stat > {pgid_file}\necho started\nsleep 600\n")

    result = cli.run(
        step, *_via(cli, proxy), "--reconnect-timeout", "3", "--run-id", "r1", target=False, timeout=300
    )
    ended = time.monotonic()

    assert result.returncode == 255, result.stderr
    assert result.stdout == b"started\n"
    # Measured from the first loss, not the CLI's start-up: the 3 s budget and a generous slack for a
    # loaded machine, far from the step's 600 s (a budget renewed by every reconnect would wait for it).
    assert proxy.cut_at and ended - proxy.cut_at[0] < 3 + 30
    notices = _notices(result.stderr)
    (why,) = [line for line in notices if "no progress" in line or "not re-established" in line]
    assert "keeps dropping: no progress within 3 s of the first loss" in why
    assert "run again with --run-id r1 to reattach" in why
    assert sum("reconnected to" in line for line in notices) <= 4
    assert notices[-1].startswith("nightshift: 10_silent.sh: unreachable in ")
    # Unreachable means the step goes on over there; this test's "cluster" is cleared by hand.
    os.killpg(int(pgid_file.read_text()), signal.SIGKILL)


def test_progress_renews_the_budget_so_a_talking_step_survives_many_drops(cli: Cli, proxy: TcpProxy) -> None:
    # The connection is cut each time ten more lines have arrived: every connection makes progress
    # before it goes, however loaded the machine, and the five cuts span more than the 8 s budget
    # twice over, so only renewal by progress can carry the step to its end.
    step = cli.step("10_talking.sh", 'for i in $(seq 1 60); do echo "line $i"; sleep 0.3; done\nexit 4\n')

    process = cli.start(step, *_via(cli, proxy), "--reconnect-timeout", "8", target=False)
    assert process.stdout is not None and process.stderr is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if len(lines) % 10 == 0 and len(lines) < 60:
            proxy.cut()
    stderr = process.stderr.read()
    returncode = process.wait(timeout=90)

    assert returncode == 4, stderr
    assert lines == [f"line {i}\n".encode() for i in range(1, 61)]
    assert stderr.count(b"reconnected to") == 5, stderr  # one per cut: each found a live connection
    assert b"Traceback" not in stderr
    assert list(cli.remote_dir.iterdir()) == []
