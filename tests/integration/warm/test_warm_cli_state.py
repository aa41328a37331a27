"""JVM-wide state a step can touch on the warm engine, warm against a cold `spark-sql -f` (the README's table)."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from runner.local.executor import _spark_home
from runner.local.java import find_java_home
from runner.local.warm import protocol
from tests.conftest import HOLD_ENGINE, run_cli, start_cli
from tests.support.spark import SparkSqlReference

pytestmark = pytest.mark.spark

TARGET = "NIGHTSHIFT_TEST_TARGET"
ENVIRONMENT = f"SELECT '${{env:{TARGET}}}' AS target, '${{env:NO_SUCH_VARIABLE_HERE}}' AS unset;\n"
SOURCED = "SELECT 'sourced' AS s;\n"
SOURCE = "SELECT 'before';\nsource {sourced};\nSELECT 'after';\n"
SHELL = f"SELECT 'before';\n!printenv {TARGET};\n!echo from the shell;\nSELECT 'after';\n"
QUIT = "SELECT 'before quit';\n-- a comment; with a semicolon\nSELECT 'a;b';\n  QUIT  ;\nSELECT 'never';\n"
EXIT_IN_SOURCED = "SELECT 'sources an exit';\nsource {sourced};\nSELECT 'never';\n"
ADD_JAR = "ADD JAR {jar};\nSELECT 'added';\n"
LIST_RESOURCES = "LIST JARS;\nLIST FILES;\nSELECT 'listed';\n"
# A Spark task that sleeps ten minutes unless its thread is interrupted.
SLEEPS = (
    "SELECT 'started';\nSELECT reflect('java.lang.Thread', 'sleep', id + 600000) FROM range(0, 1, 1, 1);\n"
)
QUICK = "SELECT 'quick';\n"


def _step(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _warm(step: Path, state: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    done = run_cli(step, "--state-dir", state, env=env)
    assert b"runs warm" in done.stderr, done.stderr[-2000:]
    return done


def test_a_step_sees_the_runners_environment_not_the_engines(
    shared_warm_state: Path, spark_sql_reference: SparkSqlReference, tmp_path: Path
) -> None:
    step = _step(tmp_path / "steps", "environment.sql", ENVIRONMENT)
    first = _warm(step, shared_warm_state, env={TARGET: "first"})
    assert first.returncode == 0 and first.stdout.startswith(b"first\t"), first.stderr[-2000:]
    # The engine runs with the environment of the run that started it (this one, or another test's on
    # the shared engine); the next run has another.
    second = _warm(step, shared_warm_state, env={TARGET: "second value, ü"})
    cold = spark_sql_reference(step, env={TARGET: "second value, ü"})
    assert second.stdout == cold.stdout == "second value, ü\t${env:NO_SUCH_VARIABLE_HERE}\n".encode()
    assert second.returncode == cold.returncode == 0


def test_source_runs_as_cold(
    shared_warm_state: Path, spark_sql_reference: SparkSqlReference, tmp_path: Path
) -> None:
    sourced = _step(tmp_path / "steps", "sourced.sql", SOURCED)
    step = _step(tmp_path / "steps", "source.sql", SOURCE.format(sourced=sourced))
    warm = _warm(step, shared_warm_state)
    cold = spark_sql_reference(step)
    assert warm.stdout == cold.stdout == b"before\nsourced\nafter\n"
    assert warm.returncode == cold.returncode == 0, warm.stderr[-2000:]


def test_a_stopped_step_leaves_no_task_running(shared_warm_state: Path, tmp_path: Path) -> None:
    """On the shared engine: a cancelled step must leave it as it was, for whoever runs next."""
    warm_state = shared_warm_state
    step = _step(tmp_path / "steps", "sleeps.sql", SLEEPS)
    quick = _step(tmp_path / "steps", "quick.sql", QUICK)
    # Held (HOLD_ENGINE): the same JVM must still be up for the last run, however loaded the machine.
    assert _warm(quick, warm_state, env=HOLD_ENGINE).returncode == 0
    pid = _jvm_pid(warm_state)
    running = start_cli(step, "--state-dir", warm_state, env=HOLD_ENGINE)
    assert running.stdout is not None
    assert running.stdout.readline() == b"started\n"
    assert _wait_for(lambda: "CallMethodViaReflection" in _threads(pid), 300), "the task never started"
    running.send_signal(signal.SIGINT)
    running.communicate(timeout=300)
    assert running.returncode == 130
    # Cancelled with an interrupt: the task's thread leaves its sleep (ten minutes) instead of holding a core.
    assert _wait_for(lambda: "CallMethodViaReflection" not in _threads(pid), 120), _threads(pid)
    again = _warm(quick, warm_state, env=HOLD_ENGINE)
    assert again.stdout == b"quick\n" and _jvm_pid(warm_state) == pid


def _runs_in_a_jvm_of_its_own(step: Path, state: Path, printed: bytes) -> None:
    """The step's run, routed cold by the module's engine (which ends): what it printed and its exit code.

    The runner's cold run is the reference itself: `spark-sql -f`, a JVM of its own. Before, `quit`
    ended the engine's JVM (exit 1), `!` failed (exit 1, silent), the jar stayed.
    """
    ran = run_cli(step, "--state-dir", state, env={TARGET: "the runner's"})
    assert b"runs in a JVM of its own" in ran.stderr, ran.stderr[-2000:]
    # A deliberate routing, not an engine that failed: the notice names the statement only.
    assert b"unavailable" not in ran.stderr, ran.stderr[-2000:]
    assert (ran.stdout, ran.returncode) == (printed, 0), (step.name, ran.stderr[-2000:])


# The four tests below each end the engine they find (the cold JVM needs the metastore to itself), so
# they share only the module's state dir (warm_state): one JVM start fewer where an engine is left up.
def test_quit_runs_in_a_jvm_of_its_own(warm_state: Path, tmp_path: Path) -> None:
    step = _step(tmp_path / "steps", "quit.sql", QUIT)
    _runs_in_a_jvm_of_its_own(step, warm_state, b"before quit\na;b\n")


def test_exit_in_a_sourced_file_runs_in_a_jvm_of_its_own(warm_state: Path, tmp_path: Path) -> None:
    sourced_exit = _step(tmp_path / "steps", "sourced_exit.sql", "SELECT 'in the sourced file';\nexit;\n")
    step = _step(tmp_path / "steps", "exit_in_sourced.sql", EXIT_IN_SOURCED.format(sourced=sourced_exit))
    _runs_in_a_jvm_of_its_own(step, warm_state, b"sources an exit\nin the sourced file\n")


def test_add_jar_runs_in_a_jvm_of_its_own_and_no_later_step_sees_the_jar(
    warm_state: Path, spark_sql_reference: SparkSqlReference, tmp_path: Path
) -> None:
    jar = next((_spark_home() / "jars").glob("commons-lang3-*.jar"))
    step = _step(tmp_path / "steps", "add_jar.sql", ADD_JAR.format(jar=jar))
    _runs_in_a_jvm_of_its_own(step, warm_state, b"added\n")
    # A later step, warm again, sees no jar of the earlier one, as a cold JVM sees none.
    listing = _step(tmp_path / "steps", "list.sql", LIST_RESOURCES)
    warm = _warm(listing, warm_state)
    assert warm.stdout == spark_sql_reference(listing).stdout == b"listed\n"


def test_a_shell_command_runs_in_a_jvm_of_its_own_with_the_runners_environment(
    warm_state: Path, tmp_path: Path
) -> None:
    step = _step(tmp_path / "steps", "shell.sql", SHELL)
    _runs_in_a_jvm_of_its_own(step, warm_state, b"before\nthe runner's\nfrom the shell\nafter\n")


def _jvm_pid(state: Path) -> int:
    log = (protocol.engine_dir(state) / protocol.LOG_NAME).read_text(errors="replace")
    return int(re.findall(r"ready: JVM pid (\d+)", log)[-1])


def _threads(pid: int) -> str:
    """The engine JVM's thread dump, as `jcmd PID Thread.print` gives it."""
    jcmd = find_java_home() / "bin" / "jcmd"
    done = subprocess.run([str(jcmd), str(pid), "Thread.print"], capture_output=True, timeout=60, check=False)
    return done.stdout.decode(errors="replace")


def _wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.5)
    return False
