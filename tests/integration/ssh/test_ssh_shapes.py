"""The runner against unfriendly but real server shapes: no SFTP, one session per connection, no client locale."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.sshd_harness import Shape, Sshd
from tests.integration.ssh.conftest import Cli, start_sshd

pytestmark = pytest.mark.sshd


def test_a_step_runs_and_reports_its_exit_code_on_every_server_shape(hostile_cli: Cli) -> None:
    step = hostile_cli.step("10_shape.sh", "echo out\necho err >&2\nexit 3\n")

    result = hostile_cli.run(step, timeout=60)

    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert b"err\n" in result.stderr
    assert list(hostile_cli.remote_dir.iterdir()) == []
    assert hostile_cli.leftovers() == []


def test_a_drop_mid_step_is_survived_on_every_server_shape(hostile_cli: Cli) -> None:
    # Silent until the test has dropped the connection: the drop hits the step by construction (a
    # 2 s sleep could end first under load, and the test then saw no reconnect).
    gate = hostile_cli.root / "gate"
    step = hostile_cli.step(
        "10_drop.sh", f"echo before\nuntil [ -e {gate} ]; do sleep 0.05; done\necho after\n"
    )
    process = hostile_cli.start(step)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"before\n"
        assert hostile_cli.sshd.drop_connections() >= 1
    finally:
        gate.touch()
    rest, stderr = process.communicate(timeout=300)

    assert process.returncode == 0, stderr
    assert rest == b"after\n"
    assert stderr.count(b"reconnected to") == 1
    assert list(hostile_cli.remote_dir.iterdir()) == []


@pytest.fixture(scope="module")
def sessionless_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A server that authenticates the login and then refuses every session (MaxSessions 0)."""
    server = start_sshd(tmp_path_factory, Shape(max_sessions=0))
    yield server
    server.stop()


def test_a_server_that_refuses_every_session_fails_at_once_with_255(
    sessionless_sshd: Sshd, tmp_path: Path
) -> None:
    cli = Cli(sessionless_sshd, tmp_path)
    step = cli.step("10_never.sh", "echo never\n")

    started = time.monotonic()
    result = cli.run(step, "--reconnect-timeout", "600", timeout=300)
    took = time.monotonic() - started

    # Not the 600 s reconnect budget: a refusal is not a dropped connection. At once is seconds,
    # the CLI's start-up included (more at load 20), so the bound is generous against the budget.
    assert result.returncode == 255
    assert took < 120
    errors = [line for line in result.stderr.decode().splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "the server refuses every session" in errors[0] and "MaxSessions" in errors[0]
    assert b"reconnecting" not in result.stderr
    assert result.stdout == b""
