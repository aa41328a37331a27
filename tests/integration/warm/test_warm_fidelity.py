"""Fidelity of the warm engine: stdout and exit code byte-identical to a cold `spark-sql -f`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.local.executor import LocalSpark, _spark_home
from runner.local.java import find_java_home
from runner.local.warm.client import engine_alive, stop_engine
from tests.conftest import ROOT, UTF8_TERMINAL, run_cli

pytestmark = pytest.mark.spark

CORPUS = sorted((ROOT / "tests" / "fidelity_corpus").glob("*.sql"))
RUN_DATE = "2026-10-31"
VARIABLES = {"greeting": 'it\'s ${not} a "var"; really', "n": "3", "table": "fidelity_t"}

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


def cold_spark_sql(step: Path, cwd: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """`spark-sql -f` in a JVM of its own, with the Spark settings the runner gives a cold step."""
    env = {**os.environ, **UTF8_TERMINAL, "JAVA_HOME": str(find_java_home()), "SPARK_LOCAL_IP": "127.0.0.1"}
    hivevars = [arg for name, value in variables.items() for arg in ("--hivevar", f"{name}={value}")]
    settings = LocalSpark(cwd / "state").engine_args()
    return subprocess.run(
        [str(_spark_home() / "bin" / "spark-sql"), *settings, *hivevars, "-f", str(step)],
        cwd=cwd, env=env, capture_output=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def warm_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One state dir (so one warm engine) for every step of this module; ended afterwards."""
    state = tmp_path_factory.mktemp("warm") / "state"
    yield state
    stop_engine(state)
    assert not engine_alive(state)


def _steps(tmp: Path) -> list[Path]:
    tmp.mkdir(exist_ok=True)
    for name, text in BEHAVIOURS.items():
        (tmp / name).write_text(text, encoding="utf-8")
    return [*CORPUS, *(tmp / name for name in BEHAVIOURS)]


def test_every_step_is_byte_identical_warm_and_cold(warm_state: Path, tmp_path: Path) -> None:
    var_args = [arg for name, value in VARIABLES.items() for arg in ("--var", f"{name}={value}")]
    for step in _steps(tmp_path / "steps"):
        variables = {**VARIABLES, "run_date": RUN_DATE}
        cold_dir = tmp_path / f"cold-{step.stem}"
        cold_dir.mkdir()
        cold = cold_spark_sql(step, cold_dir, variables)
        warm = run_cli(step, "--state-dir", warm_state, "--run-date", RUN_DATE, *var_args)
        assert b"runs warm" in warm.stderr, warm.stderr
        assert warm.stdout == cold.stdout, step.name
        assert warm.returncode == cold.returncode, (step.name, warm.stderr[-2000:])
    # The behaviours really ran: the substitution, the splitting and the first failure.
    assert cold.returncode == 1


def test_cold_flag_runs_the_old_way_with_the_same_bytes(warm_state: Path, tmp_path: Path) -> None:
    step = CORPUS[0]
    warm = run_cli(step, "--state-dir", warm_state)
    assert b"runs warm" in warm.stderr and warm.returncode == 0
    cold = run_cli(step, "--state-dir", warm_state, "--cold")
    assert b"runs cold (--cold)" in cold.stderr
    # A cold JVM needs the metastore to itself: the engine was ended first, and said so.
    assert b"ending the warm engine first" in cold.stderr
    assert not engine_alive(warm_state)
    assert cold.stdout == warm.stdout and cold.returncode == 0
