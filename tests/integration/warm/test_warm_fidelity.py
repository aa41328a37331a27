"""Fidelity of the warm engine: stdout and exit code byte-identical to a cold `spark-sql -f`."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.local.warm.client import engine_alive
from tests.conftest import run_cli
from tests.support.spark import CORPUS, SparkSqlReference, fidelity_args, fidelity_hivevars

pytestmark = pytest.mark.spark

# The Spark SQL CLI's own behaviours, beyond the corpus: each is Spark's code, not the runner's.
BEHAVIOURS = {
    "variables.sql": (
        "SELECT '${hivevar:greeting}' AS g, ${n} + 1 AS n, '${run_date}' AS d, '${hivevar:undefined}' AS u;\n"
        "SET hivevar:late=value;\nSELECT '${late}', '${hivevar:late}';\n"
    ),
    "splitting.sql": (
        "SELECT 1; SELECT 2;SELECT 'a;b', \"c;d\" -- one; comment\n;\n"
        "SELECT 3 /* block; comment */;\n-- whole line; comment\nSELECT 4\n;\n\n;\nSELECT 'no semicolon at the end'"
    ),
    "formatting.sql": (
        "SELECT CAST(NULL AS INT), 1.50BD, 1e10D, TIMESTAMP'2024-01-02 03:04:05.600', DATE'2024-02-29',\n"
        "  array(1, 2), map('k', named_struct('a', 1)), X'CAFE', true, 'tab\\there';\n"
        "SELECT id, id * 2 FROM range(0, 2000);\n"
        "CREATE TABLE IF NOT EXISTS ${table} (x INT, s STRING) USING parquet;\n"
        "INSERT OVERWRITE TABLE ${table} VALUES (1, 'one'), (2, NULL);\n"
        "SELECT * FROM ${table} ORDER BY x;\nDESCRIBE ${table};\nSHOW TABLES LIKE 'fidelity*';\nEXPLAIN SELECT 1;\n"
    ),
    # Plans print JVM-wide counters (a#8L, plan_id=40, CTE ids): each step must see a cold run's.
    "explain.sql": (
        "EXPLAIN EXTENDED WITH c AS (SELECT id % 3 AS a FROM range(10)) SELECT a, count(*) FROM c GROUP BY a;\n"
        "EXPLAIN FORMATTED SELECT transform(array(1, 2), x -> x + 1), (SELECT max(id) FROM range(3));\n"
    ),
    "first_failure.sql": "SELECT 'before';\nSELECT * FROM no_such_table;\nSELECT 'never';\n",
    "bad_syntax.sql": "SELECT 'ok';\nSELEC 1;\nSELECT 'never';\n",
}


STEPS = [*(step.name for step in CORPUS), *BEHAVIOURS]


def _step(name: str, tmp: Path) -> Path:
    if name not in BEHAVIOURS:
        return next(step for step in CORPUS if step.name == name)
    tmp.mkdir(exist_ok=True)
    (tmp / name).write_text(BEHAVIOURS[name], encoding="utf-8")
    return tmp / name


# One test per step (each within pytest's timeout however loaded the machine), all on the shared engine.
@pytest.mark.parametrize("name", STEPS)
def test_every_step_is_byte_identical_warm_and_cold(
    name: str, shared_warm_state: Path, spark_sql_reference: SparkSqlReference, tmp_path: Path
) -> None:
    step = _step(name, tmp_path / "steps")
    # The session's one bare spark-sql of each corpus file, the local and SSH tests' as well.
    cold = spark_sql_reference(step, fidelity_hivevars())
    warm = run_cli(step, "--state-dir", shared_warm_state, *fidelity_args())
    assert b"runs warm" in warm.stderr, warm.stderr
    assert warm.stdout == cold.stdout, step.name
    assert warm.returncode == cold.returncode, (step.name, warm.stderr[-2000:])
    if name == "bad_syntax.sql":
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
