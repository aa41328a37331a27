"""A connection lost under a write the runner makes (a window adjust inside a read, a close) is a loss, not a crash."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.sshd_harness import Sshd
from runner.remote.executor import ChannelFollower
from runner.remote.hostkeys import HostKeyPolicy
from runner.remote.target import SSHTarget
from runner.remote.transport import Connection, ConnectSettings, Unreachable, connect
from tests.integration.ssh.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.sshd

# More than a tenth of the runner's 8 MiB channel window: reading it makes paramiko send a window
# adjust, so a read is also a write.
OUTPUT_BYTES = 4_000_000


@pytest.fixture
def connection(sshd: Sshd, tmp_path: Path) -> Iterator[Connection]:
    """A logged-in connection through a middlebox that never passes on a half-close.

    Its socket can then be made to refuse every write while the server, which never hears of it,
    keeps the connection open: paramiko's reader thread sees nothing wrong, which is the moment CI
    hit (the write failed before the reader noticed the cut) made to last.
    """
    with tcp_proxy(sshd.port) as proxy:
        proxy.pass_half_close = False
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{proxy.port} {sshd.host_public_key}\n")
        target = SSHTarget(
            alias="127.0.0.1",
            hostname="127.0.0.1",
            port=proxy.port,
            user=sshd.user,
            identity_files=(sshd.user_key,),
            explicit_identities=True,
        )
        opened = connect(target, ConnectSettings(policy=HostKeyPolicy((known_hosts,)), use_agent=False))
        try:
            yield opened
        finally:
            opened.close()


def _buffered(channel_holder: ChannelFollower, size: int, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while len(channel_holder.channel.in_buffer) < size:
        assert time.monotonic() < deadline, f"only {len(channel_holder.channel.in_buffer)} bytes arrived"
        channel_holder.wait(0.1)


def _refuse_writes(connection: Connection) -> None:
    sock = connection.transport.sock
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_WR)


def test_a_follower_whose_read_cannot_send_its_window_adjust_is_lost_not_a_traceback(
    connection: Connection,
) -> None:
    # The follow command outlives the test: the channel stays open, as a step's follower does.
    follower = ChannelFollower(
        connection.exec(f"head -c {OUTPUT_BYTES} /dev/zero; exec sleep 60"), connection
    )
    _buffered(follower, OUTPUT_BYTES)
    _refuse_writes(connection)
    assert connection.active  # paramiko has not noticed: only the next write can tell

    # Before the fix: EOFError from paramiko's packetizer, and the runner ended with a traceback.
    assert follower.read_stdout() == b""
    assert follower.read_stderr() == b""
    assert follower.lost()
    follower.close()  # a close sends too: nothing to send it over, and nothing raised


def test_a_command_whose_connection_refuses_writes_is_unreachable(connection: Connection) -> None:
    _refuse_writes(connection)
    with pytest.raises(Unreachable, match="cannot start a command"):
        connection.run("true", timeout=30)


def test_a_command_whose_reads_cannot_send_is_unreachable_not_a_traceback(
    connection: Connection, tmp_path: Path
) -> None:
    started, gate = tmp_path / "started", tmp_path / "gate"
    # The command says it started, then waits for the gate: its writes are refused after run() has
    # started it and before its output arrives.
    command = (
        f"touch '{started}'; while [ ! -e '{gate}' ]; do sleep 0.05; done; "
        f"head -c {OUTPUT_BYTES} /dev/zero; exec sleep 60"
    )

    def refuse_then_open_the_gate() -> None:
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        _refuse_writes(connection)
        gate.touch()

    opener = threading.Thread(target=refuse_then_open_the_gate, daemon=True)
    opener.start()
    # Before the fix: EOFError from the read's window adjust.
    with pytest.raises(Unreachable, match="connection lost"):
        connection.run(command, timeout=120)
    opener.join()
