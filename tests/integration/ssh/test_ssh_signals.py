"""SIGINT/SIGTERM end the runner promptly in every state, and the step on the cluster is stopped too."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.ssh.conftest import Cli, process_group_alive
from tests.integration.ssh.tcp_proxy import TcpProxy, mute_listener, tcp_proxy

pytestmark = pytest.mark.sshd

# The issue promises 2 s; at a load of 16-18 on 2 cores the stops took 0.7-2.3 s, one over the
# promise. 7.5 s holds under load 20 and stays below every wait these tests interrupt (a 10 s
# reconnect pause, a 16 s upload, a 14 s drain, a 60 s connect), so a runner that waited one out
# still fails; the 5 s grace before the master's KILL is shorter, so that test asserts the order
# instead (the runner ended while the step still ran).
STOP_WITHIN = 7.5


def _target_args(cli: Cli, port: int) -> list[str]:
    argv = cli.target_args()
    argv[argv.index("--port") + 1] = str(port)
    return argv


def _start(cli: Cli, step: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    return cli.start(step, *args, *_target_args(cli, port), target=False)


def _stop(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> tuple[float, bytes, bytes]:
    """Signal the runner; how long it took to end, and what it printed."""
    sent = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    took = time.monotonic() - sent
    print(f"stopped in {took:.2f} s")  # shown with -s, and with a failure
    return took, out, err


def _eventually(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _nothing_left(cli: Cli, within: float = 60.0) -> bool:
    """No launcher, follower or stop of this test still runs on the "cluster", and no run directory is left."""
    return _eventually(
        lambda: (
            not cli.leftovers(within=0)
            and not any(cli.remote_dir.iterdir() if cli.remote_dir.exists() else [])
        ),
        within,
    )


@pytest.fixture
def proxy(cli: Cli) -> Iterator[TcpProxy]:
    with tcp_proxy(cli.sshd.port) as relay:
        cli.known_hosts.write_text(
            cli.sshd.known_hosts_line() + f"[127.0.0.1]:{relay.port} {cli.sshd.host_public_key}\n"
        )
        yield relay


def _running_step(cli: Cli) -> tuple[Path, Path]:
    """A step that prints `running` and then waits, with a child and a grandchild in its process group."""
    pgid_file = cli.root / "step.pgid"
    step = cli.step(
        "10_wait.sh",
        f"cut -d' ' -f5 /proc/$$/stat > {pgid_file}\nsleep 300 &\nbash -c 'sleep 300' &\necho running\nwait\n",
    )
    return step, pgid_file


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_connecting_to_a_server_that_never_speaks_ssh(cli: Cli, signum: int) -> None:
    step = cli.step("10_never.sh", "echo never\n")
    with mute_listener() as mute:
        process = _start(cli, step, mute.port, "--connect-timeout", "60")
        # Connected over TCP, now waiting for the server's SSH banner.
        assert _eventually(lambda: bool(mute.held), within=120)
        took, out, err = _stop(process, signum)

    assert process.returncode == 128 + signum, err
    assert took <= STOP_WITHIN
    assert out == b""
    assert b"Traceback" not in err


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose SYNs go unanswered (a listener that never accepts, its queue full): connect() hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler = socket.create_connection(listener.getsockname(), timeout=2)
        yield listener.getsockname()[1]
        filler.close()


def _syn_sent(port: int) -> bool:
    """Some socket on this machine is waiting for the answer to its SYN to `port`."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "02":
            return True
    return False


def test_connecting_to_a_host_that_never_answers(cli: Cli, unanswered_port: int) -> None:
    step = cli.step("10_never.sh", "echo never\n")
    process = _start(cli, step, unanswered_port, "--connect-timeout", "60")
    assert _eventually(lambda: _syn_sent(unanswered_port), within=120)  # in the TCP connect
    took, _, err = _stop(process)

    assert process.returncode == 143, err
    assert took <= STOP_WITHIN


def test_backing_off_after_a_drop_the_step_is_still_stopped(cli: Cli, proxy: TcpProxy) -> None:
    step, pgid_file = _running_step(cli)
    process = _start(cli, step, proxy.port)
    assert process.stdout is not None
    assert process.stdout.readline() == b"running\n"
    pgid = int(pgid_file.read_text())

    proxy.turn_away = True
    before = proxy.accepted
    proxy.cut()
    # Five attempts (after 0.5, 1, 2, 4 and 8 s) turned away: the runner is now in a 10 s pause (its
    # longest), longer than STOP_WITHIN even after the moment this test takes to see the fifth.
    assert _eventually(lambda: proxy.accepted >= before + 5, within=120), "the runner did not reconnect"
    proxy.turn_away = False
    took, _, err = _stop(process)

    assert process.returncode == 143, err
    assert took <= STOP_WITHIN
    assert b"reconnecting" in err
    assert not process_group_alive(pgid)
    assert _nothing_left(cli)


def _part_bytes(folder: Path) -> int:
    """The bytes in the upload's partial files under `folder` (one may be renamed meanwhile)."""
    total = 0
    for part in folder.rglob("*.part"):
        with contextlib.suppress(FileNotFoundError):
            total += part.stat().st_size
    return total


def test_uploading_a_large_step_over_a_slow_link(cli: Cli, proxy: TcpProxy) -> None:
    marker = cli.root / "ran"
    # 16 MiB at 1 MiB/s: the upload takes 16 s; the step itself would leave a marker.
    step = cli.step("10_large.sh", f"touch {marker}\n" + "# padding of a large step file\n" * 540_000)
    proxy.upload_rate = 1024 * 1024
    process = _start(cli, step, proxy.port)
    # Some bytes of the step arrived: the upload is under way.
    assert _eventually(lambda: _part_bytes(cli.remote_dir) > 0, within=120), "the upload never began"

    took, _, err = _stop(process)

    assert process.returncode == 143, err
    assert took <= STOP_WITHIN
    assert _nothing_left(cli)
    assert not marker.exists()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_following_a_running_step(cli: Cli, signum: int, code: int) -> None:
    step, pgid_file = _running_step(cli)
    process = cli.start(step)
    assert process.stdout is not None
    assert process.stdout.readline() == b"running\n"
    pgid = int(pgid_file.read_text())

    took, _, err = _stop(process, signum)

    assert process.returncode == code, err
    assert took <= STOP_WITHIN
    assert b"stopping the step's process group" in err
    assert not process_group_alive(pgid)
    assert _nothing_left(cli)


def test_draining_output_still_in_flight_on_a_slow_link(cli: Cli, proxy: TcpProxy) -> None:
    # 30 MB of output at once, relayed at 2 MiB/s: after the stop, draining it all would take 14 s.
    step, pgid_file = _running_step(cli)
    step.write_text(
        step.read_text().replace("echo running\n", "echo running\nyes " + "x" * 99 + " | head -n 300000\n")
    )
    proxy.download_rate = 2 * 1024 * 1024
    process = _start(cli, step, proxy.port)
    assert process.stdout is not None
    assert process.stdout.readline() == b"running\n"
    assert _eventually(lambda: pgid_file.exists() and bool(pgid_file.read_text()), within=120)
    pgid = int(pgid_file.read_text())

    took, _, err = _stop(process)

    assert process.returncode == 143, err
    assert took <= STOP_WITHIN
    assert not process_group_alive(pgid)
    assert _nothing_left(cli)


def test_a_step_that_ignores_term_is_left_to_the_master_to_kill(cli: Cli) -> None:
    pgid_file = cli.root / "step.pgid"
    step = cli.step(
        "10_stubborn.sh",
        f"cut -d' ' -f5 /proc/$$/stat > {pgid_file}\n"
        "trap 'echo got TERM' TERM\n"
        "echo running\n"
        "while :; do sleep 0.1; done\n",
    )
    process = cli.start(step)
    assert process.stdout is not None
    assert process.stdout.readline() == b"running\n"
    pgid = int(pgid_file.read_text())

    took, out, err = _stop(process)

    assert process.returncode == 143, err
    # Not after the 5 s grace period before the KILL: the step still runs as the runner has ended.
    assert process_group_alive(pgid, within=0), f"the runner waited for the KILL ({took:.1f} s)"
    assert out == b"got TERM\n"  # its last words still arrived
    # The master escalates to KILL after the grace period on its own.
    assert not process_group_alive(pgid, within=60)
    assert _nothing_left(cli)
