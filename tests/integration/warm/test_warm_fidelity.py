"""Fidelity of the warm engine: stdout and exit code byte-identical to a cold `spark-sql -f`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runner.local.warm.client import engine_alive
from tests.conftest import run_cli
from tests.support.spark import (
    CLI_BEHAVIOURS,
    CORPUS,
    CORPUS_RUN_ORDER,
    SLEEPERS,
    SparkSqlReference,
    fidelity_args,
    fidelity_hivevars,
)

pytestmark = pytest.mark.spark

# Every corpus file and the Spark SQL CLI's own behaviours (tests/fidelity_corpus/cli): variables,
# statement splitting, formatting, the first failure, bad syntax, and plans, which print JVM-wide
# counters (a#8L, plan_id=40, CTE ids): each step must see a cold run's.
STEPS = [*CORPUS_RUN_ORDER, *CLI_BEHAVIOURS]


# One test per step (each within pytest's timeout however loaded the machine), on the shared engine.
@pytest.mark.parametrize("step", STEPS, ids=[step.name for step in STEPS])
def test_every_step_is_byte_identical_warm_and_cold(
    step: Path, shared_warm_state: Path, warm_state: Path, spark_sql_reference: SparkSqlReference
) -> None:
    # A file that sleeps runs on the module's engine: an engine runs one step at a time, and on the
    # session's shared one every other file's warm steps would wait out its two minutes.
    state = warm_state if step in SLEEPERS else shared_warm_state
    # The warm run first, then the session's one bare spark-sql of each corpus file (the local and SSH
    # tests' as well), made or in progress beside it.
    with ThreadPoolExecutor(1) as beside:
        running = beside.submit(run_cli, step, "--state-dir", state, *fidelity_args())
        cold = spark_sql_reference(step, fidelity_hivevars())
        warm = running.result()
    assert b"runs warm" in warm.stderr, warm.stderr
    assert warm.stdout == cold.stdout, step.name
    assert warm.returncode == cold.returncode, (step.name, warm.stderr[-2000:])
    if step.name == "bad_syntax.sql":
        # The behaviours really ran: the substitution, the splitting and the first failure.
        assert cold.returncode == 1


def test_cold_flag_runs_the_old_way_with_the_same_bytes(warm_state: Path) -> None:
    """An engine of the module's own: --cold ends it."""
    step = CORPUS[0]
    warm = run_cli(step, "--state-dir", warm_state)
    assert b"runs warm" in warm.stderr and warm.returncode == 0
    cold = run_cli(step, "--state-dir", warm_state, "--cold")
    assert b"runs cold (--cold)" in cold.stderr
    # A cold JVM needs the metastore to itself: the engine was ended first, and said so.
    assert b"ending the warm engine first" in cold.stderr
    assert not engine_alive(warm_state)
    assert cold.stdout == warm.stdout and cold.returncode == 0
