"""The canary pipeline on the real spark-sql: what its deployed task runs on the cluster, but hadoop."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runner.canary import CANARY_FOLDER
from tests.conftest import run_cli

DATE = "2026-12-01"
NEXT_DATE = "2026-12-02"


@pytest.mark.spark
def test_the_canary_writes_reads_back_on_hive_checks_and_drops_its_table(shared_warm_state: Path) -> None:
    """Stage 10 writes a row of the run date to its own Hive format table and reads it back, its check
    passes; stage 20 (.hql) reads the row on HiveQL; stage 30 (.sh) lists the table's files with
    `hadoop fs`, which is only on a cluster: here it says so in one line and exits 127 (as a shell's
    command not found), and the run stops there, the table kept. A check of a date never written fails
    with 65 and names it (the check can fail). The table a failed canary left (here replaced by one of
    another shape, as an older canary's) is gone after the next canary: its stage 10 drops it before
    its CREATE TABLE (which fails on a table that is there) and writes the new date's row alone;
    `--from-stage 40` then drops the table."""
    if shutil.which("hadoop") is not None:
        pytest.skip("hadoop is on PATH here: stage 30 would list real files")
    result = run_cli(CANARY_FOLDER, "--state-dir", shared_warm_state, "--run-date", DATE)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 127, lines
    out = result.stdout.decode().splitlines()
    assert out[0].startswith(f"{DATE}\t"), out
    # Hive's read-back: the date, one row, and assert_true's NULL (it passed).
    assert out[1:] == [f"{DATE}\t1\tNULL"], out
    assert "variables: canary_database=default" in result.stderr.decode()
    assert "nightshift: 10_nightshift_canary_written.check.sql: passed" in lines
    no_hadoop = (
        "nightshift canary: no hadoop here: this step lists the table's files with hadoop fs on a cluster"
        " (run the canary there: --deployed --canary)"
    )
    assert no_hadoop in lines, lines
    # Its duration is the machine's: 0.0 s idle, more under load.
    assert [
        line
        for line in lines
        if line.startswith("nightshift: 30_nightshift_canary_files.sh: failed (exit 127) in ")
    ], lines
    (dropped,) = [line for line in lines if line.startswith("nightshift: 40_nightshift_canary_dropped.sql ")]
    assert dropped.split()[2:] == ["40", "not", "run", "-"], dropped

    result = run_cli(
        CANARY_FOLDER, "--state-dir", shared_warm_state, "--run-date", "1999-01-01", "--checks-only"
    )
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 65, lines
    assert "nightshift: 10_nightshift_canary_written.check.sql: failed: 1 row" in lines
    assert "nightshift:   1999-01-01" in lines

    # What the failed canary left: its table (DROP TABLE without IF EXISTS fails on a missing one),
    # replaced by a table of another shape, as a canary of another version would have left.
    older = (
        "DROP TABLE default.nightshift_canary;"
        " CREATE TABLE default.nightshift_canary (left_by STRING) USING parquet;"
        " INSERT INTO default.nightshift_canary VALUES ('an older canary');"
        " SHOW TABLES IN default LIKE 'nightshift_canary'"
    )
    listed = run_cli(CANARY_FOLDER, "--state-dir", shared_warm_state, "-e", older)
    assert listed.returncode == 0 and b"nightshift_canary" in listed.stdout, listed.stderr
    result = run_cli(CANARY_FOLDER, "--state-dir", shared_warm_state, "--run-date", NEXT_DATE)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 127, lines
    out = result.stdout.decode().splitlines()
    # Stage 10's own SELECT of the new table, then hive's count of the date: one row, nothing older.
    assert out[0].startswith(f"{NEXT_DATE}\t") and out[1:] == [f"{NEXT_DATE}\t1\tNULL"], out
    assert "nightshift: 10_nightshift_canary_written.check.sql: passed" in lines

    result = run_cli(
        CANARY_FOLDER, "--state-dir", shared_warm_state, "--run-date", NEXT_DATE, "--from-stage", "40"
    )
    assert result.returncode == 0, result.stderr.decode()
    # Stage 40's own SHOW TABLES, the query that listed the table above, lists nothing after its DROP.
    assert result.stdout == b"", result.stdout
