"""~/.ssh/config and ssh-agent are honoured: Host aliases, HostName, User, Port, IdentityFile, ProxyJump."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd

# The step reports which client port the server saw, then waits while the test looks at the runner.
# The step holds its connection until the test has read the runner's sockets (a gate, up to 300 s),
# instead of a 1 s sleep that load 20 could outlast before the test looked.
REPORT = (
    'set -- $SSH_CONNECTION; echo "client-port $2"\n'
    "for _ in $(seq 6000); do [ -e {gate} ] && break; sleep 0.05; done\n"
)


def _local_ports(pid: int) -> set[int]:
    """TCP ports of the sockets process `pid` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _client_port_and_runner_ports(cli: Cli, *args: str) -> tuple[int, set[int], bytes]:
    gate = cli.root / "gate"
    gate.unlink(missing_ok=True)
    step = cli.step("10_where.sh", REPORT.format(gate=gate))
    process = cli.start(step, *args, target=False)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        ports = _local_ports(process.pid)
    finally:
        gate.touch()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert line.startswith(b"client-port "), stderr
    return int(line.split()[1]), ports, stderr


def _write_config(cli: Cli, text: str) -> None:
    config = cli.home / ".ssh" / "config"
    config.write_text(text)
    config.chmod(0o600)


def test_a_host_alias_supplies_hostname_user_port_and_identity(cli: Cli) -> None:
    _write_config(
        cli,
        f"Host emr-master\n  HostName 127.0.0.1\n  Port {cli.sshd.port}\n  User {cli.sshd.user}\n"
        f"  IdentityFile {cli.sshd.user_key}\n",
    )

    port, runner_ports, _ = _client_port_and_runner_ports(
        cli, "--host", "emr-master", "--remote-dir", str(cli.remote_dir)
    )

    assert port in runner_ports  # a direct connection from the runner itself


def test_flags_win_over_the_config(cli: Cli) -> None:
    _write_config(cli, f"Host 127.0.0.1\n  User nosuchuser\n  Port 1\n  IdentityFile {cli.sshd.user_key}\n")
    step = cli.step("10_x.sh", "echo flags win\n")

    result = cli.run(step)

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"flags win\n"


def test_proxyjump_reaches_the_master_through_a_bastion(cli: Cli) -> None:
    # The bastion and the master are the same sshd here; the master is reached through a channel
    # the bastion opens, so the server sees the bastion's connection, not the runner's.
    _write_config(
        cli,
        f"Host bastion\n  HostName 127.0.0.1\n  Port {cli.sshd.port}\n  User {cli.sshd.user}\n"
        f"  IdentityFile {cli.sshd.user_key}\n\n"
        f"Host private-master\n  HostName 127.0.0.1\n  Port {cli.sshd.port}\n  User {cli.sshd.user}\n"
        f"  IdentityFile {cli.sshd.user_key}\n  ProxyJump bastion\n",
    )

    port, runner_ports, _ = _client_port_and_runner_ports(
        cli, "--host", "private-master", "--remote-dir", str(cli.remote_dir)
    )

    assert runner_ports  # the runner's own connection goes to the bastion
    assert port not in runner_ports


def test_an_unknown_bastion_host_key_is_refused_too(cli: Cli) -> None:
    cli.known_hosts.write_text("")
    _write_config(
        cli,
        f"Host bastion\n  HostName 127.0.0.1\n  Port {cli.sshd.port}\n  User {cli.sshd.user}\n"
        f"  IdentityFile {cli.sshd.user_key}\n\n"
        f"Host private-master\n  HostName 127.0.0.1\n  Port {cli.sshd.port}\n  ProxyJump bastion\n",
    )
    step = cli.step("10_x.sh", "echo never\n")

    result = cli.run(step, "--host", "private-master", "--user", cli.sshd.user, "--key",
                     cli.sshd.user_key, target=False)  # fmt: skip

    assert result.returncode == 255
    assert b"is not known" in result.stderr


@pytest.fixture
def agent(tmp_path: Path, cli: Cli) -> Iterator[str]:
    """A real ssh-agent holding the test user's key; its socket path."""
    socket_path = str(tmp_path / "agent.sock")
    process = subprocess.Popen(["ssh-agent", "-D", "-a", socket_path], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if Path(socket_path).exists():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        subprocess.run(
            ["ssh-add", "-q", str(cli.sshd.user_key)],
            env={**os.environ, "SSH_AUTH_SOCK": socket_path}, check=True, capture_output=True,
        )  # fmt: skip
        yield socket_path
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


def test_an_ssh_agent_key_is_used_when_no_key_is_given(cli: Cli, agent: str) -> None:
    step = cli.step("10_x.sh", "echo via agent\n")
    argv = cli.target_args()
    index = argv.index("--key")
    del argv[index : index + 2]

    with_agent = cli.run(step, *argv, target=False, env={"SSH_AUTH_SOCK": agent})
    without = cli.run(step, *argv, target=False)

    assert with_agent.returncode == 0, with_agent.stderr
    assert with_agent.stdout == b"via agent\n"
    assert without.returncode == 255
    assert b"permission denied" in without.stderr


def test_the_key_can_come_from_the_environment(cli: Cli) -> None:
    step = cli.step("10_x.sh", "echo via environment\n")
    argv = cli.target_args()
    index = argv.index("--key")
    del argv[index : index + 2]

    result = cli.run(
        step, *argv, target=False, env={"NIGHTSHIFT_SSH_PRIVATE_KEY": cli.sshd.user_key.read_text()}
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"via environment\n"
