"""The warm engine's life: start on first use, idle exit, --reset, a killed JVM, two runs at once,
stop and timeout, a changed Java, and a socket no other user can use."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.execution import Outcome, StopRequest
from runner.local.executor import LocalSpark, _spark_home
from runner.local.java import find_java_home
from runner.local.warm import protocol
from runner.local.warm.client import WarmEngine, engine_alive, stop_engine
from runner.local.warm.jvm import CLI_DRIVER
from runner.output import StepOutput, Stream
from tests.conftest import HOLD_ENGINE, run_cli, start_cli

pytestmark = pytest.mark.spark

OTHER_USER = "nightshift-other"
# A Python the other user can run (this one may live in root's home).
OTHER_PYTHON = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
QUICK = "SELECT 'quick' AS answer;\n"
# A Spark job that runs for hours unless cancelled (a filter like `rand() < 0` would not: Spark
# optimizes it away).
LONG = "SELECT 'started';\nSELECT sum(id % 7) FROM range(0, 5000000000000, 1, 2);\nSELECT 'never';\n"


def wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used (user and system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def jvm_pid(state: Path) -> int:
    log = (protocol.engine_dir(state) / protocol.LOG_NAME).read_text(errors="replace")
    return int(re.findall(r"ready: JVM pid (\d+)", log)[-1])


@pytest.fixture(scope="module")
def module_state() -> Iterator[Path]:
    """One state dir for the module's tests, so one engine: a test that ends its engine and starts
    another leaves that one up for the next test, which starts none (each test still passes alone:
    every one starts its engine if none is up). In a folder another user may pass (mode 0711, not
    pytest's 0700 tree), for test_another_user_cannot_use_the_socket."""
    top = Path(tempfile.mkdtemp(prefix="nightshift-lifecycle-", dir="/tmp"))
    top.chmod(0o711)
    state = top / "state"
    try:
        yield state
    finally:
        stop_engine(state)
        shutil.rmtree(top)


@pytest.fixture
def steps(module_state: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    quick, long = tmp_path / "quick.sql", tmp_path / "long.sql"
    quick.write_text(QUICK)
    long.write_text(LONG)
    return module_state, quick, long


@pytest.fixture
def own_steps(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """The same, with an engine of the test's own."""
    state = tmp_path / "state"
    quick, long = tmp_path / "quick.sql", tmp_path / "long.sql"
    quick.write_text(QUICK)
    long.write_text(LONG)
    yield state, quick, long
    stop_engine(state)


def test_idle_exit_then_a_new_engine_on_the_next_run(steps: tuple[Path, Path, Path]) -> None:
    state, quick, _ = steps
    # The module's engine, if a test before this one left it up, is not the one this run must start.
    stop_engine(state)
    first = run_cli(quick, "--state-dir", state, "--engine-idle-minutes", "0.05")
    assert first.returncode == 0 and first.stdout == b"quick\n"
    assert b"starting the warm engine" in first.stderr
    assert wait_for(lambda: not engine_alive(state), 300), "the engine did not end when idle"
    assert not (protocol.engine_dir(state) / protocol.SOCKET_NAME).exists()
    again = run_cli(quick, "--state-dir", state)
    assert again.returncode == 0 and again.stdout == b"quick\n"
    assert b"starting the warm engine" in again.stderr


def test_a_killed_jvm_is_replaced_on_the_next_run(steps: tuple[Path, Path, Path]) -> None:
    state, quick, _ = steps
    assert run_cli(quick, "--state-dir", state).returncode == 0
    os.kill(jvm_pid(state), signal.SIGKILL)
    assert wait_for(lambda: not engine_alive(state), 300), "the engine outlived its JVM"
    again = run_cli(quick, "--state-dir", state)
    assert again.returncode == 0 and again.stdout == b"quick\n"
    assert b"starting the warm engine" in again.stderr


def test_reset_ends_the_engine_and_forgets_the_tables(steps: tuple[Path, Path, Path], tmp_path: Path) -> None:
    state, _, _ = steps
    make = tmp_path / "make.sql"
    make.write_text("CREATE TABLE t (x INT) USING parquet;\nINSERT INTO t VALUES (1);\n")
    assert run_cli(make, "--state-dir", state).returncode == 0
    assert engine_alive(state)
    reset = run_cli("--reset", "--state-dir", state)
    assert reset.returncode == 0
    assert not engine_alive(state) and not state.exists()
    # A new engine on a new metastore: the table is gone, the same step makes it again.
    again = run_cli(make, "--state-dir", state)
    assert again.returncode == 0, again.stderr[-2000:]
    assert b"starting the warm engine" in again.stderr


def test_two_runs_at_once_queue(steps: tuple[Path, Path, Path], tmp_path: Path) -> None:
    state, quick, _ = steps
    # The slow step is slow by construction, not by its size: its Spark job (a script transform, run
    # by bash) ends when the test creates `release`, after the second run has said that it waits.
    release = tmp_path / "release"
    slow = tmp_path / "slow.sql"
    slow.write_text(
        "SELECT 'started';\n"
        f"SELECT TRANSFORM(id) USING 'until [ -e {release} ]; do sleep 0.05; done; cat' AS (id) FROM range(1);\n"
        "SELECT 'slow done';\n"
    )
    assert run_cli(quick, "--state-dir", state).returncode == 0  # the engine is up
    first = start_cli(slow, "--state-dir", state)
    assert first.stdout is not None and first.stdout.readline() == b"started\n"
    second = start_cli(quick, "--state-dir", state)
    assert second.stderr is not None
    said = b""
    while b"waiting for the warm engine: it is running a step of another run" not in said:
        line = second.stderr.readline()
        assert line, f"the second run ended without waiting for the first: {said!r}"
        said += line
    release.touch()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and out == b"0\nslow done\n", err[-2000:]
    second_out, second_err = second.communicate(timeout=300)
    assert second.returncode == 0 and second_out == b"quick\n", (said + second_err)[-2000:]


def test_ctrl_c_and_sigterm_cancel_the_step_and_the_engine_stays(steps: tuple[Path, Path, Path]) -> None:
    state, quick, long = steps
    # Held: the same engine must serve every run here, however long the machine makes them start.
    assert run_cli(quick, "--state-dir", state, env=HOLD_ENGINE).returncode == 0
    pid = jvm_pid(state)
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        running = start_cli(long, "--state-dir", state, env=HOLD_ENGINE)
        assert running.stdout is not None
        assert running.stdout.readline() == b"started\n"
        # The long Spark job runs: the idle engine's JVM has used 2 s of CPU more since the line above.
        before = cpu_seconds(pid)
        assert wait_for(lambda: cpu_seconds(pid) >= before + 2, 300), "the long job never ran"  # noqa: B023
        started = time.monotonic()
        running.send_signal(signum)
        out, _ = running.communicate(timeout=600)
        assert running.returncode == code
        # Cancelled, not waited for: the job alone runs for hours; a cancel takes seconds, even at
        # load 20 on 2 cores, so 300 s still tells the two apart.
        assert time.monotonic() - started < 300
        assert b"never" not in out
        again = run_cli(quick, "--state-dir", state, env=HOLD_ENGINE)
        assert again.returncode == 0 and again.stdout == b"quick\n"
        assert jvm_pid(state) == pid and b"runs warm (engine pid" in again.stderr


class Captured(StepOutput):
    def __init__(self) -> None:
        super().__init__()
        self.stdout = b""

    def emit(self, stream: Stream, block: bytes) -> None:
        if stream == "stdout":
            self.stdout += block


def test_a_timeout_cancels_the_step_with_exit_124(own_steps: tuple[Path, Path, Path]) -> None:
    # An engine of its own: this WarmEngine is built here, not by the command line, so its fingerprint
    # need not be the module engine's.
    state, quick, long = own_steps
    spark = LocalSpark(state)
    java_home = find_java_home()
    engine = WarmEngine(
        spark.state_dir,
        spark_submit=str(_spark_home() / "bin" / "spark-submit"),
        submit_args=[*spark.engine_args(), "--name", CLI_DRIVER],
        env={**os.environ, **spark.environ(java_home)},
        java_home=java_home,
        spark_home=_spark_home(),
    )
    assert engine.run(quick, {}, Captured(), StopRequest(), None).exit_code == 0
    output = Captured()
    started = time.monotonic()
    result = engine.run(long, {}, output, StopRequest(), 3.0)
    assert (result.exit_code, result.outcome) == (124, Outcome.TIMED_OUT)
    # After its 3 s, and long before the job's hours (a cancel takes seconds, even at load 20 on 2 cores).
    assert 3.0 <= time.monotonic() - started < 300
    assert output.stdout == b"started\n"
    after = Captured()
    assert engine.run(quick, {}, after, StopRequest(), None).exit_code == 0
    assert after.stdout == b"quick\n"


def _other_user() -> str:
    if subprocess.run(["id", OTHER_USER], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", OTHER_USER], check=True)
    return OTHER_USER


CONNECT_AS_OTHER = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("denied"); sys.exit(0)
print(s.recv(4096).decode().strip() or "closed")
"""


@pytest.fixture
def passable_state(steps: tuple[Path, Path, Path]) -> Iterator[tuple[Path, Path]]:
    """The module's state dir, whose parents another user may pass; its engine's modes restored after."""
    state, quick, _ = steps
    folder = protocol.engine_dir(state)
    try:
        yield state, quick
    finally:
        # The test opens the modes up; the next test's engine is this one, as a user's would be.
        if folder.exists():
            folder.chmod(0o700)
        if (folder / protocol.SOCKET_NAME).exists():
            (folder / protocol.SOCKET_NAME).chmod(0o600)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or OTHER_PYTHON is None,
    reason="needs root to add a user, and a system python3",
)
def test_another_user_cannot_use_the_socket(passable_state: tuple[Path, Path]) -> None:
    state, quick = passable_state
    # Held: the engine must still listen when the test itself connects, after the other user's tries.
    assert run_cli(quick, "--state-dir", state, env=HOLD_ENGINE).returncode == 0
    folder = protocol.engine_dir(state)
    sock = folder / protocol.SOCKET_NAME
    assert sock.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700
    user = _other_user()
    state.chmod(0o711)  # the other user may pass through the state dir, up to the engine's folder

    def as_other() -> str:
        done = subprocess.run(
            ["runuser", "-u", user, "--", str(OTHER_PYTHON), "-c", CONNECT_AS_OTHER, str(sock)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return done.stdout.strip() + done.stderr.strip()

    assert as_other() == "denied"  # mode 0600 in a 0700 folder
    # Even with the file modes opened up, the engine itself refuses another uid (SO_PEERCRED).
    folder.chmod(0o711)
    sock.chmod(0o666)
    answer = as_other()
    assert '"event": "refused"' in answer, answer
    with socket.socket(socket.AF_UNIX) as mine:
        mine.connect(str(sock))
        assert b'"event": "hello"' in mine.recv(4096)


def test_another_java_starts_another_engine(steps: tuple[Path, Path, Path], tmp_path: Path) -> None:
    state, quick, _ = steps
    # Held: the second run must find this engine up to restart it, not one that ended idle meanwhile.
    assert run_cli(quick, "--state-dir", state, env=HOLD_ENGINE).returncode == 0
    # The same Java binaries under a home whose `release` says another version: an upgrade.
    real = find_java_home().resolve()
    other = tmp_path / "other-java"
    other.mkdir()
    for entry in real.iterdir():
        if entry.name != "release":
            (other / entry.name).symlink_to(entry)
    (other / "release").write_text('JAVA_VERSION="17.0.99"\n')
    changed = run_cli(quick, "--state-dir", state, env={**HOLD_ENGINE, "JAVA_HOME": str(other)})
    assert changed.returncode == 0 and changed.stdout == b"quick\n"
    assert b"started with another pyspark, Java or environment: restarting it" in changed.stderr


def test_a_py_step_ends_the_engine_first_and_the_next_sql_step_starts_one(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipeline"
    pipeline.mkdir()
    (pipeline / "10_make.sql").write_text(
        "CREATE TABLE made (x INT) USING parquet;\nINSERT INTO made VALUES (7);\n"
    )
    (pipeline / "20_read.py").write_text(
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.enableHiveSupport().getOrCreate()\n"
        "print('py saw', spark.sql('SELECT x FROM made').collect()[0][0])\n"
    )
    (pipeline / "30_read.sql").write_text("SELECT x + 1 FROM made;\n")
    state = tmp_path / "state"
    try:
        result = run_cli(pipeline, "--state-dir", state)
        stderr = result.stderr.decode()
        assert result.returncode == 0, stderr[-3000:]
        assert result.stdout == b"py saw 7\n8\n"
        # Derby admits one process: the .py step's own JVM got the metastore after the engine ended.
        assert "20_read.py: ending the warm engine first" in stderr
        assert stderr.count("starting the warm engine") == 2  # for 10_make, then again for 30_read
    finally:
        stop_engine(state)


# Another user's process holding a state dir as an engine does: its lock taken, its socket listening.
HOLDER = """
import fcntl, os, socket, sys
from pathlib import Path
folder = Path(sys.argv[1]) / "engine"
folder.mkdir(parents=True, mode=0o700)
lock = os.open(folder / "engine.lock", os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(lock, fcntl.LOCK_EX)
server = socket.socket(socket.AF_UNIX)
server.bind(str(folder / "engine.sock"))
server.listen(5)
print("ready", flush=True)
while True:
    server.accept()[0].close()
"""


@pytest.fixture
def taken_state() -> Iterator[tuple[Path, int]]:
    """A state dir in a folder like /tmp (mode 1777) that another user's engine took first; its uid."""
    top = Path(tempfile.mkdtemp(prefix="nightshift-shared-", dir="/tmp"))
    top.chmod(0o1777)
    state = top / "state"
    user = _other_user()
    holder = subprocess.Popen(
        ["runuser", "-u", user, "--", str(OTHER_PYTHON), "-c", HOLDER, str(state)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield (
            state,
            int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout),
        )
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        shutil.rmtree(top)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None or OTHER_PYTHON is None,
    reason="needs root to add a user, and a system python3",
)
@pytest.mark.parametrize(
    ("flags", "found", "before"),
    [
        ((), "its engine folder belongs to uid {uid}", ["quick.sql: started (spark-sql)"]),
        (
            ("--cold",),
            "its warm engine belongs to uid {uid}",
            [
                "quick.sql: started (spark-sql)",
                "quick.sql: runs cold (--cold): a JVM of its own",
                "quick.sql: ending the warm engine first: a JVM of its own needs the metastore to itself",
            ],
        ),
        (("--reset",), "its warm engine belongs to uid {uid}", []),
        (("--stop-engine",), "its warm engine belongs to uid {uid}", []),
    ],
)
def test_a_state_dir_another_users_engine_holds_is_refused_in_one_line_at_once(
    taken_state: tuple[Path, int], tmp_path: Path, flags: tuple[str, ...], found: str, before: list[str]
) -> None:
    # It used to wait a minute for an engine it can neither use nor end, then print a traceback.
    state, uid = taken_state
    step = tmp_path / "quick.sql"
    step.write_text(QUICK)

    result = run_cli(step, "--state-dir", state, *flags, timeout=30)

    assert result.returncode == 2 and result.stdout == b""
    error = (
        f"error: --state-dir {state} is another user's ({found.format(uid=uid)}): use a state dir of your own"
    )
    lines = result.stderr.decode().splitlines()
    if before:  # a run that started: its header first
        assert lines.pop(0).startswith("nightshift: quick: run date ")
    assert lines == [f"nightshift: {line}" for line in [*before, error]]
    assert engine_alive(state)  # the other user's engine is left alone
    assert [path.name for path in state.iterdir()] == ["engine"]  # no warehouse, no metastore
