"""A `.hiverc` runs before every warm step as before a cold `spark-sql -f`, and can neither end nor wedge the engine.

The expected bytes are a cold spark-sql's (Spark 3.5.x), checked by hand and noted per test: the
hiverc's rows come first; a failing hiverc statement ends the run with its exit code before the
step; `quit` in a hiverc ends the JVM with 0 and nothing of the step.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.local.warm.client import engine_alive, stop_engine
from tests.conftest import HOLD_ENGINE, run_cli

pytestmark = pytest.mark.spark

STEP = "SELECT 'step';\n"


@pytest.fixture(scope="module")
def warm_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's engine and, beside it, its Hive conf folder: one HIVE_CONF_DIR for every test, so
    they share one engine (another folder is another environment, so another engine: a JVM start
    each); each test writes its own .hiverc there, which the engine reads before every step."""
    state = tmp_path_factory.mktemp("hiverc") / "state"
    yield state
    stop_engine(state)
    assert not engine_alive(state)


def _run(tmp_path: Path, state: Path, hiverc: str) -> tuple[int, bytes, bytes]:
    conf = state.parent / "hive conf, ü"
    conf.mkdir(exist_ok=True)
    (conf / ".hiverc").write_text(hiverc, encoding="utf-8")
    step = tmp_path / "10_step.sql"
    step.write_text(STEP, encoding="utf-8")
    done = run_cli(step, "--state-dir", state, env={**HOLD_ENGINE, "HIVE_CONF_DIR": str(conf)})
    return done.returncode, done.stdout, done.stderr


def test_the_hiverc_runs_before_the_step_on_the_warm_engine(tmp_path: Path, warm_state: Path) -> None:
    code, out, err = _run(tmp_path, warm_state, "SELECT 'from hiverc';\n")
    assert (code, out) == (0, b"from hiverc\nstep\n"), err[-2000:]
    assert b"runs warm" in err


def test_a_failing_hiverc_ends_the_step_with_its_code_and_leaves_the_engine_up(
    tmp_path: Path, warm_state: Path
) -> None:
    # Hive calls System.exit(1) here: in the engine that would end it, and every later step with it.
    code, out, err = _run(tmp_path, warm_state, "SELECT 'from hiverc';\nSELECT * FROM no_such_table_here;\n")
    assert (code, out) == (1, b"from hiverc\n"), err[-2000:]
    assert b"TABLE_OR_VIEW_NOT_FOUND" in err and b"runs warm" in err
    assert engine_alive(warm_state)


def test_quit_in_the_hiverc_runs_the_step_in_a_jvm_of_its_own(tmp_path: Path, warm_state: Path) -> None:
    """Last in the module: a cold JVM needs the metastore to itself, so the engine ends first."""
    code, out, err = _run(tmp_path, warm_state, "quit;\n")
    assert (code, out) == (0, b""), err[-2000:]
    assert b".hiverc runs before every step: `quit` ends the JVM it runs in" in err
