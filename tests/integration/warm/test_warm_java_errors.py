"""A Java exception the warm engine does not expect reaches the step's stderr, as a cold spark-sql prints it.

The real case: a `.hiverc` in $HIVE_CONF_DIR that cannot be read (here a folder of that name).
Hive's processInitFiles lets the FileNotFoundException out of `main`, so a cold `spark-sql -f` of
Spark 3.5.x prints `Exception in thread "main" java.io.FileNotFoundException: <dir>/.hiverc (Is a
directory)` with its stack trace and exits 1, before the step (checked by hand). In the engine the
exception comes back through py4j into the step's handling: the step must fail the same way, loud,
and the engine must stay up for the next step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.local.warm.client import engine_alive, stop_engine
from tests.conftest import HOLD_ENGINE, run_cli

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def warm_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An engine of the module's own: $HIVE_CONF_DIR is part of what an engine is started with."""
    state = tmp_path_factory.mktemp("java-errors") / "state"
    yield state
    stop_engine(state)
    assert not engine_alive(state)


def test_a_java_exception_in_the_engine_fails_the_step_on_its_stderr(
    tmp_path: Path, warm_state: Path
) -> None:
    conf = tmp_path / "hive conf"
    hiverc = conf / ".hiverc"
    hiverc.mkdir(parents=True)
    step = tmp_path / "10_step.sql"
    step.write_text("SELECT 'step';\n", encoding="utf-8")
    # The engine is held up between the two runs, however long the machine makes them wait.
    env = {"HIVE_CONF_DIR": str(conf), **HOLD_ENGINE}

    failed = run_cli(step, "--state-dir", warm_state, env=env)

    assert (failed.returncode, failed.stdout) == (1, b""), failed.stderr[-3000:]
    assert b"runs warm" in failed.stderr
    expected = f'Exception in thread "main" java.io.FileNotFoundException: {hiverc} (Is a directory)'
    assert expected.encode() in failed.stderr, failed.stderr[-3000:]
    assert b"\tat org.apache.hadoop.hive.cli.CliDriver.processFile" in failed.stderr
    assert engine_alive(warm_state)

    # The same engine runs the next step once the file is readable.
    hiverc.rmdir()
    hiverc.write_text("SELECT 'from hiverc';\n", encoding="utf-8")
    fixed = run_cli(step, "--state-dir", warm_state, env=env)

    assert (fixed.returncode, fixed.stdout) == (0, b"from hiverc\nstep\n"), fixed.stderr[-3000:]
    assert b"runs warm (engine pid" in fixed.stderr, fixed.stderr[-3000:]
