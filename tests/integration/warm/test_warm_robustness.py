"""What no runner can do to the warm engine (be killed at the worst moment), and rows in spark-sql's order."""

from __future__ import annotations

import os
import platform
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.local.warm import protocol
from runner.local.warm.client import engine_alive, stop_engine
from tests.conftest import HOLD_ENGINE, run_cli, start_cli
from tests.support.spark import SparkSqlReference

pytestmark = pytest.mark.spark

QUICK = "SELECT 'quick' AS answer;\n"
# A Spark job that runs for hours unless cancelled.
LONG = "SELECT 'started';\nSELECT sum(id % 7) FROM range(0, 5000000000000, 1, 2);\nSELECT 'never';\n"
# An aggregate and a pivot without ORDER BY (as in Spark's own sql-tests input pivot.sql): their rows
# come in the order of the shuffle's partitions, so the number of partitions shows in the output.
UNORDERED = """\
CREATE TEMPORARY VIEW courses AS SELECT * FROM VALUES
  ('dotNET', 2012, 10000), ('Java', 2012, 20000), ('dotNET', 2012, 5000), ('dotNET', 2013, 48000),
  ('Java', 2013, 30000), ('Scala', 2014, 7000), ('Kotlin', 2015, 100), ('Go', 2016, 11)
  AS courseSales(course, year, earnings);
SELECT year, course, sum(earnings) FROM courses GROUP BY year, course;
SELECT * FROM courses PIVOT (sum(earnings) FOR course IN ('dotNET', 'Java', 'Scala', 'Go'));
SELECT id % 13 AS k, count(*) FROM range(1000) GROUP BY id % 13;
SELECT DISTINCT course FROM courses;
"""
# A quick step on a warm engine takes seconds (a minute at load 20 on 2 cores), not the long job's hours.
PROMPT_SECONDS = 300
SELECT, PSELECT6 = "23", "270"  # x86_64 system call numbers, as /proc/PID/syscall shows them


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """One warm engine for the module (its state dir), and a quick and a long step. Every run on it
    holds it (HOLD_ENGINE): the tests here need the same JVM across runs and cold JVMs in between."""
    top = tmp_path_factory.mktemp("robust")
    state, quick, long = top / "state", top / "quick.sql", top / "long.sql"
    quick.write_text(QUICK)
    long.write_text(LONG)
    first = run_cli(quick, "--state-dir", state, env=HOLD_ENGINE)
    assert first.returncode == 0 and first.stdout == b"quick\n", first.stderr[-2000:]
    yield state, quick, long
    stop_engine(state)


def _step_folders(state: Path) -> list[Path]:
    return sorted(protocol.engine_dir(state).glob(protocol.STEP_DIR_PREFIX + "*"))


def _wait_for(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def _jvm_pid(state: Path) -> int:
    log = (protocol.engine_dir(state) / protocol.LOG_NAME).read_text(errors="replace")
    return int(re.findall(r"ready: JVM pid (\d+)", log)[-1])


def _in_select(pid: int) -> bool:
    """The runner's main thread waits in select(): it relays a step, so it has handed it over."""
    with open(f"/proc/{pid}/syscall") as syscall:
        return syscall.read().split(" ", 1)[0] in (SELECT, PSELECT6)


def _kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_a_runner_killed_during_its_step_has_the_step_cancelled_and_cleaned_up(
    engine: tuple[Path, Path, Path],
) -> None:
    state, quick, long = engine
    victim = start_cli(long, "--state-dir", state, env=HOLD_ENGINE)
    assert victim.stdout is not None and victim.stdout.readline() == b"started\n"
    _kill(victim)
    # The engine cancels the dead runner's Spark job: the next run does not wait for hours.
    again = run_cli(quick, "--state-dir", state, env=HOLD_ENGINE, timeout=PROMPT_SECONDS)
    assert again.returncode == 0 and again.stdout == b"quick\n", again.stderr[-2000:]
    assert b"runs warm (engine pid" in again.stderr
    assert _wait_for(lambda: not _step_folders(state), 120), _step_folders(state)


def test_rows_without_order_by_come_in_spark_sqls_order_warm_and_cold(
    engine: tuple[Path, Path, Path], spark_sql_reference: SparkSqlReference, tmp_path: Path
) -> None:
    state, _, _ = engine
    step = tmp_path / "unordered.sql"
    step.write_text(UNORDERED)
    # `spark-sql -f` as a user types it: no settings at all, its metastore in a folder of its own.
    bare = spark_sql_reference(step)
    assert bare.returncode == 0, bare.stderr[-2000:]
    warm = run_cli(step, "--state-dir", state, env=HOLD_ENGINE)
    assert b"runs warm" in warm.stderr and warm.returncode == 0, warm.stderr[-2000:]
    cold = run_cli(step, "--state-dir", tmp_path / "cold-state", "--cold")
    assert b"runs cold (--cold)" in cold.stderr and cold.returncode == 0, cold.stderr[-2000:]
    assert warm.stdout == bare.stdout
    assert cold.stdout == bare.stdout
    # The step really printed its rows (13 groups, 8 courses, ...), not nothing on every side.
    assert len(bare.stdout.splitlines()) > 25


@pytest.mark.skipif(platform.machine() != "x86_64", reason="reads x86_64 system call numbers")
def test_a_runner_killed_right_after_handing_over_its_step_does_not_wedge_the_engine(
    engine: tuple[Path, Path, Path],
) -> None:
    # The worst moment: the step is handed over but the JVM has not opened its output FIFOs yet. The
    # engine used to block for good in that open(), which waits for a reader that died with the runner.
    # The JVM is held (SIGSTOP) so that the moment lasts; the runner is killed once it relays output
    # (in select(): the step is handed over), then the JVM goes on.
    state, quick, _ = engine
    # A step first makes sure the engine runs before its JVM is held (held up: HOLD_ENGINE).
    ready = run_cli(quick, "--state-dir", state, env=HOLD_ENGINE, timeout=600)
    # Either line is right: the module's engine ran it, or (had it ended) a new one started for it.
    assert ready.returncode == 0 and ready.stdout == b"quick\n", ready.stderr[-2000:]
    assert re.search(rb"runs warm( \(engine pid|: starting the warm engine)", ready.stderr), ready.stderr[
        -2000:
    ]
    jvm = _jvm_pid(state)
    os.kill(jvm, signal.SIGSTOP)
    try:
        victim = start_cli(quick, "--state-dir", state, env=HOLD_ENGINE)
        assert _wait_for(lambda: _in_select(victim.pid), 300), "the runner never relayed its step's output"
        assert _step_folders(state)
        _kill(victim)
    finally:
        os.kill(jvm, signal.SIGCONT)

    again = run_cli(quick, "--state-dir", state, env=HOLD_ENGINE, timeout=PROMPT_SECONDS)
    assert again.returncode == 0 and again.stdout == b"quick\n", again.stderr[-2000:]
    assert b"runs warm (engine pid" in again.stderr and _jvm_pid(state) == jvm
    assert _wait_for(lambda: not _step_folders(state), 120), _step_folders(state)
    stopped = run_cli("--stop-engine", "--state-dir", state, timeout=PROMPT_SECONDS)
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert not engine_alive(state)
