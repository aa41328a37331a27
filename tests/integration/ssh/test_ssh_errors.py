"""Bad input over SSH: each a clear one-line error and the exit code ssh would give."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.sshd_harness import free_port
from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd


def _error_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode(errors="replace").splitlines() if "error:" in line]


def _args_without(cli: Cli, *flags: str) -> list[str]:
    argv = cli.target_args()
    for flag in flags:
        index = argv.index(flag)
        del argv[index : index + 2]
    return argv


def test_a_closed_port_fails_at_once_with_255(cli: Cli) -> None:
    step = cli.step("10_x.sh", "echo never\n")
    argv = _args_without(cli, "--port")

    started = time.monotonic()
    result = cli.run(step, *argv, "--port", str(free_port()), "--connect-timeout", "600", target=False)

    assert result.returncode == 255
    # At once, not after the 600 s connect timeout: 120 s leaves room for the CLI's start under load 20.
    assert time.monotonic() - started < 120
    (line,) = _error_lines(result.stderr)
    assert "cannot connect to 127.0.0.1" in line and "refused" in line


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that never answers a connection attempt, like a host behind a firewall.

    A listener that never accepts and whose accept queue is full makes Linux drop further SYNs,
    so a client waits exactly as for an unroutable address, without any traffic leaving 127.0.0.1.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        fillers = [socket.create_connection(listener.getsockname(), timeout=2)]
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            with pytest.raises(TimeoutError):
                probe.connect(listener.getsockname())  # the queue is full: SYNs go unanswered
        finally:
            probe.close()
        yield listener.getsockname()[1]
        for filler in fillers:
            filler.close()


def test_an_unanswered_host_fails_within_the_connect_timeout(cli: Cli, silent_port: int) -> None:
    step = cli.step("10_x.sh", "echo never\n")
    argv = _args_without(cli, "--port")

    started = time.monotonic()
    result = cli.run(step, *argv, "--port", str(silent_port), "--connect-timeout", "1.5", target=False)

    # It waited out its 1.5 s, and not the kernel's two minutes of SYN retries (60 s: the CLI's start
    # under load 20 takes seconds of its own).
    assert result.returncode == 255
    assert 1.5 <= time.monotonic() - started < 60
    (line,) = _error_lines(result.stderr)
    assert f"no answer from 127.0.0.1:{silent_port} within 1.5 s" in line


def test_a_name_that_does_not_resolve_is_a_clear_error(cli: Cli) -> None:
    step = cli.step("10_x.sh", "echo never\n")
    argv = _args_without(cli, "--host")

    result = cli.run(step, *argv, "--host", "no-such-master.invalid", target=False)

    assert result.returncode == 255
    (line,) = _error_lines(result.stderr)
    assert "cannot resolve no-such-master.invalid" in line


def test_a_wrong_user_is_refused_with_255(cli: Cli) -> None:
    step = cli.step("10_x.sh", "echo never\n")
    argv = _args_without(cli, "--user")

    result = cli.run(step, *argv, "--user", "nosuchuser", target=False)

    assert result.returncode == 255
    (line,) = _error_lines(result.stderr)
    assert "permission denied (publickey) for user 'nosuchuser'" in line


def test_a_wrong_key_is_refused_with_255(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    step = cli.step("10_x.sh", "echo never\n")
    argv = _args_without(cli, "--key")

    result = cli.run(step, *argv, "--key", str(other), target=False)

    assert result.returncode == 255
    (line,) = _error_lines(result.stderr)
    assert "permission denied" in line and str(other) in line
    assert result.stdout == b""


def test_a_missing_key_file_is_a_usage_error(cli: Cli) -> None:
    step = cli.step("10_x.sh", "echo never\n")
    argv = _args_without(cli, "--key")

    result = cli.run(step, *argv, "--key", "/no/such/key", target=False)

    assert result.returncode == 2
    assert _error_lines(result.stderr) == ["nightshift: error: --key /no/such/key: no such file"]


def test_an_unknown_host_key_is_refused_with_how_to_accept_it(cli: Cli) -> None:
    cli.known_hosts.write_text("")
    step = cli.step("10_x.sh", "echo never\n")

    result = cli.run(step)

    assert result.returncode == 255
    (line,) = _error_lines(result.stderr)
    assert "host key of" in line and "is not known (ssh-ed25519 SHA256:" in line
    assert "--accept-new-host-key" in line
    assert result.stdout == b""


def test_accept_new_records_the_key_and_later_runs_trust_it(cli: Cli) -> None:
    cli.known_hosts.unlink()
    step = cli.step("10_x.sh", "echo trusted\n")

    first = cli.run(step, "--accept-new-host-key")
    second = cli.run(step)

    assert first.returncode == 0, first.stderr
    assert first.stdout == b"trusted\n"
    assert cli.known_hosts.read_text() == cli.sshd.known_hosts_line()
    assert second.returncode == 0, second.stderr


def test_accept_new_records_in_the_known_hosts_file_given(cli: Cli, tmp_path: Path) -> None:
    cli.known_hosts.unlink()
    chosen = tmp_path / "cluster_known_hosts"
    step = cli.step("10_x.sh", "echo ok\n")

    result = cli.run(step, "--accept-new-host-key", "--known-hosts", chosen)

    assert result.returncode == 0, result.stderr
    assert chosen.read_text() == cli.sshd.known_hosts_line()
    assert not cli.known_hosts.exists()


def test_a_changed_host_key_is_refused_even_with_accept_new(cli: Cli, tmp_path: Path) -> None:
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    kind, blob = (tmp_path / "impostor.pub").read_text().split()[:2]
    cli.known_hosts.write_text(f"[127.0.0.1]:{cli.sshd.port} {kind} {blob}\n")
    step = cli.step("10_x.sh", "echo never\n")

    result = cli.run(step, "--accept-new-host-key")

    assert result.returncode == 255
    (line,) = _error_lines(result.stderr)
    assert "has CHANGED" in line and "ssh-keygen -R" in line
    assert cli.known_hosts.read_text() == f"[127.0.0.1]:{cli.sshd.port} {kind} {blob}\n"


def test_a_revoked_host_key_is_refused_even_with_accept_new_and_not_recorded(cli: Cli) -> None:
    revoked = f"@revoked {cli.sshd.known_hosts_line()}"
    cli.known_hosts.write_text(revoked)
    step = cli.step("10_x.sh", "echo never\n")

    result = cli.run(step, "--accept-new-host-key")

    assert result.returncode == 255
    (line,) = _error_lines(result.stderr)
    assert "is REVOKED" in line and f"{cli.known_hosts}:1 marks it @revoked" in line
    assert cli.known_hosts.read_text() == revoked
    assert result.stdout == b""


def test_a_hashed_known_hosts_entry_is_recognised(cli: Cli) -> None:
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(cli.known_hosts)], check=True, capture_output=True)
    assert cli.known_hosts.read_text().startswith("|1|")
    step = cli.step("10_x.sh", "echo hashed\n")

    result = cli.run(step)

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"hashed\n"


def test_a_missing_remote_engine_is_exit_127_with_a_message(cli: Cli) -> None:
    step = cli.step("10_report.hql", "SELECT 1;\n")

    result = cli.run(step)

    assert result.returncode == 127
    assert b"nightshift: hive: command not found on" in result.stderr
    assert b"10_report.hql: failed (exit 127)" in result.stderr


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, filled up: the remote upload directory with no room left."""
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], check=True)
    try:
        descriptor = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(descriptor, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(descriptor)
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_remote_disk_fails_the_upload_with_a_clear_error(cli: Cli, full_disk: Path) -> None:
    step = cli.step("10_big.sh", "echo never\n" + "# padding\n" * 2000)
    argv = _args_without(cli, "--remote-dir")

    result = cli.run(step, *argv, "--remote-dir", full_disk / "runs", target=False)

    assert result.returncode == 1
    (line,) = _error_lines(result.stderr)
    assert "cannot upload 10_big.sh" in line and "remote disk is full" in line
    assert result.stdout == b""
    assert cli.leftovers() == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "a", "--cluster-id", "j-1"], "not allowed with argument"),
        (["--host", "a", "--reset"], "--reset and --state-dir apply to the local engine only"),
        (
            ["--host", "a", "--state-dir", "elsewhere"],
            "--reset and --state-dir apply to the local engine only",
        ),
        (["--user", "hadoop"], "--user: only with --host or --cluster-id"),
        (["--host", "a", "--port", "0"], "--port 0: expected 1 to 65535"),
    ],
)
def test_conflicting_flags_are_usage_errors(cli: Cli, flags: list[str], message: str) -> None:
    step = cli.step("10_x.sh", "echo never\n")

    result = cli.run(step, *flags, target=False)

    assert result.returncode == 2
    assert message in result.stderr.decode()
