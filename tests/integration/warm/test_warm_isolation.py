"""Isolation on the warm engine: tables persist between steps, session state does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.local.warm.client import stop_engine
from tests.conftest import HOLD_ENGINE, run_cli

pytestmark = pytest.mark.spark

LEAVES_STATE = """\
SET spark.sql.shuffle.partitions=7;
SET my.own.setting=leaked;
CREATE TEMPORARY VIEW temp_view AS SELECT 1 AS x;
CREATE GLOBAL TEMPORARY VIEW global_view AS SELECT 2 AS x;
CREATE TEMPORARY FUNCTION my_upper AS 'org.apache.hadoop.hive.ql.udf.generic.GenericUDFUpper';
CREATE DATABASE IF NOT EXISTS other_db;
USE other_db;
CREATE TABLE kept (x INT) USING parquet;
INSERT INTO kept VALUES (42);
CACHE TABLE kept;
SELECT '${hivevar:greeting}', current_database();
"""

LOOKS_FOR_STATE = """\
SELECT * FROM other_db.kept;
SET spark.sql.shuffle.partitions;
SET my.own.setting;
SELECT current_database();
SELECT '${hivevar:greeting}', '${greeting}';
SHOW TABLES IN global_temp;
SHOW VIEWS;
SHOW USER FUNCTIONS LIKE 'my_*';
SELECT * FROM temp_view;
"""


def test_a_step_sees_earlier_tables_but_no_session_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first, second = tmp_path / "first.sql", tmp_path / "second.sql"
    first.write_text(LEAVES_STATE)
    second.write_text(LOOKS_FOR_STATE)
    try:
        # Held (HOLD_ENGINE): the second run must find the first one's engine, however loaded the machine.
        made = run_cli(first, "--state-dir", state, "--var", "greeting=hallo", env=HOLD_ENGINE)
        assert made.returncode == 0, made.stderr[-3000:]
        assert made.stdout.endswith(b"hallo\tother_db\n")
        warm = run_cli(second, "--state-dir", state, env=HOLD_ENGINE)
        assert b"runs warm (engine pid" in warm.stderr  # the same engine ran both steps
    finally:
        stop_engine(state)
    # The reference: what a cold spark-sql, a JVM of its own, sees after the first step.
    cold = run_cli(second, "--state-dir", state, "--cold")
    assert warm.stdout == cold.stdout
    assert warm.returncode == cold.returncode == 1  # the temporary view is gone: the last statement fails
    lines = warm.stdout.decode().splitlines()
    assert lines[0] == "42"  # the table made by the earlier step is there
    assert "spark.sql.shuffle.partitions\t200" in lines  # the earlier SET (7) is gone: Spark's default
    assert "my.own.setting\t<undefined>" in lines
    assert "default" in lines and "other_db" not in lines  # USE did not carry over
    # Nor did the variable: undefined, Hive substitutes nothing, as in the cold run.
    assert lines[4] == "\t" and b"hallo" not in warm.stdout
    assert not any("global_view" in line or "temp_view" in line or "my_upper" in line for line in lines)
