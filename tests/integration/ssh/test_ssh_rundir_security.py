"""A run directory in a shared directory (/tmp) that another local user of the master got to first."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.ssh.conftest import Cli, OtherUser, process_group_alive

pytestmark = pytest.mark.sshd


def _run_in(cli: Cli, remote_dir: Path, step: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    argv = cli.target_args()
    argv[argv.index("--remote-dir") + 1] = str(remote_dir)
    return cli.run(step, *args, *argv, target=False)


def _error_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode(errors="replace").splitlines() if "error:" in line]


@pytest.fixture
def bystander() -> Iterator[int]:
    """A process of the login's (root's) in a group of its own, which no stop may touch."""
    process = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    yield process.pid
    process.kill()
    process.wait()


def test_a_run_in_a_shared_sticky_directory_is_private_at_every_level(cli: Cli, shared_tmp: Path) -> None:
    step = cli.step("10_private.sh", "echo private\n")

    result = _run_in(cli, shared_tmp, step, "--run-id", "nightly", "--keep-remote")

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"private\n"
    levels = [
        shared_tmp / "10_private",
        shared_tmp / "10_private/nightly",
        shared_tmp / "10_private/nightly/10_private",
    ]
    for level in levels:
        info = level.lstat()
        assert (stat.S_ISDIR(info.st_mode), info.st_uid, oct(info.st_mode & 0o7777)) == (True, 0, "0o700"), (
            level
        )
    files = sorted(levels[-1].iterdir())
    assert {path.name for path in files} >= {
        "10_private.sh",
        "launch.sh",
        "stdout",
        "stderr",
        "exit",
        "pid",
        "token",
    }
    for path in files:
        expected = "0o700" if path.is_dir() else "0o600"
        assert oct(path.lstat().st_mode & 0o7777) == expected, path.name


ATTACKS = {
    # She forges a finished run: the runner would print her output and exit 0, the step never run.
    "forged-exit-and-stdout": "mkdir -p {run}/launched && printf 'forged\\n' > {run}/stdout && echo 0 > {run}/exit"
    " && echo 1 > {run}/pid",
    # She leaves the directories open and her own launcher in place: her code as the login.
    "swapped-launcher": "mkdir -m 777 -p {run} && chmod 777 {pipeline} {pipeline}/* "
    "&& printf 'touch {shared}/pwned\\n' > {run}/launch.sh && chmod 666 {run}/launch.sh",
    # She names a process group of the login's as the follower the next follower stops.
    "planted-follower": "mkdir -p {run} && echo {bystander} > {run}/follower",
    # She points the pipeline level at a directory of hers.
    "symbolic-link": "mkdir -p {shared}/hers/nightly/10_target && ln -s {shared}/hers {pipeline}",
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_a_run_directory_another_user_made_first_is_refused(
    cli: Cli, shared_tmp: Path, other_user: OtherUser, bystander: int, attack: str
) -> None:
    marker = cli.root / "ran"
    step = cli.step("10_target.sh", f"touch {marker}; echo real\n")
    pipeline = shared_tmp / "10_target"
    other_user.run(
        attack.format(
            run=pipeline / "nightly" / "10_target", pipeline=pipeline, shared=shared_tmp, bystander=bystander
        )
    )

    result = _run_in(cli, shared_tmp, step, "--run-id", "nightly")

    assert result.returncode == 1
    (line,) = _error_lines(result.stderr)
    assert str(pipeline) in line and "refusing to use it" in line
    assert f"belongs to {other_user.name}" in line or "symbolic link" in line
    assert result.stdout == b""
    assert not marker.exists()  # nothing ran, and nothing of hers ran either
    assert not (shared_tmp / "pwned").exists()
    assert process_group_alive(bystander, within=0)
    assert cli.leftovers() == []


def test_a_level_of_the_login_that_others_can_write_is_refused(cli: Cli, shared_tmp: Path) -> None:
    step = cli.step("10_open.sh", "echo never\n")
    (shared_tmp / "10_open").mkdir(mode=0o700)
    (shared_tmp / "10_open").chmod(0o777)

    result = _run_in(cli, shared_tmp, step, "--run-id", "nightly")

    assert result.returncode == 1
    (line,) = _error_lines(result.stderr)
    assert f"{shared_tmp}/10_open is writable by others (mode 777): refusing to use it" in line
    assert result.stdout == b""


def test_a_shared_remote_dir_without_the_sticky_bit_is_refused(cli: Cli, shared_tmp: Path) -> None:
    step = cli.step("10_open.sh", "echo never\n")
    unsticky = shared_tmp / "open"
    unsticky.mkdir()
    unsticky.chmod(0o777)

    result = _run_in(cli, unsticky, step)

    assert result.returncode == 1
    (line,) = _error_lines(result.stderr)
    assert f"{unsticky} is writable by others and not sticky (mode 777)" in line
    assert list(unsticky.iterdir()) == []


def test_a_follower_pid_the_runner_did_not_record_is_never_signalled(cli: Cli, bystander: int) -> None:
    step = cli.step("10_again.sh", "echo again\n")
    first = cli.run(step, "--run-id", "r1", "--keep-remote")
    assert first.returncode == 0, first.stderr
    run_directory = cli.remote_dir / "10_again" / "r1" / "10_again"
    # A pid recorded long ago, since reused by an unrelated process group of the same login.
    (run_directory / "follower").write_text(f"{bystander}\n")

    again = cli.run(step, "--run-id", "r1")

    assert again.returncode == 0, again.stderr
    assert again.stdout == b"again\n"
    assert b"reattaching" in again.stderr
    assert process_group_alive(bystander, within=0)
    os.kill(bystander, signal.SIGCONT)  # still ours to signal: it is alive


def test_a_remote_dir_that_is_another_users_symbolic_link_is_refused(
    cli: Cli, shared_tmp: Path, other_user: OtherUser
) -> None:
    step = cli.step("10_linked.sh", "echo never\n")
    sticky = shared_tmp / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # root's and sticky: fine as a --remote-dir in itself
    # Hers: she can point it at another directory whenever she likes, between two runs too.
    other_user.run(f"ln -s {sticky} {shared_tmp}/runs")

    result = _run_in(cli, shared_tmp / "runs", step)

    assert result.returncode == 1
    (line,) = _error_lines(result.stderr)
    assert f"{shared_tmp}/runs is a symbolic link of {other_user.name}" in line
    assert list(sticky.iterdir()) == []


def test_a_follower_pid_of_another_users_process_is_never_signalled(
    cli: Cli, shared_tmp: Path, other_user: OtherUser
) -> None:
    step = cli.step("10_hers.sh", "echo never\n")
    run = shared_tmp / "10_hers" / "nightly" / "10_hers"
    started = other_user.run(f"setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; mkdir -p {run}")
    hers = int(started.stdout)
    try:
        other_user.run(f"echo {hers} > {run}/follower")

        result = _run_in(cli, shared_tmp, step, "--run-id", "nightly")

        assert result.returncode == 1
        assert f"{shared_tmp}/10_hers belongs to {other_user.name}" in result.stderr.decode()
        assert process_group_alive(hers, within=0)
    finally:
        os.kill(hers, signal.SIGKILL)
