"""[checks] failures_table through the warm engine: a failing check's rows stored, capped, run by run."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.local.test_local_checks import RUN_DATE

pytestmark = pytest.mark.spark

PEOPLE = """\
CREATE DATABASE IF NOT EXISTS ${db};
DROP TABLE IF EXISTS ${db}.people;
CREATE TABLE ${db}.people USING parquet AS
SELECT * FROM VALUES (1, 'DE'), (2, 'FR'), (3, NULL), (4, 'XX'), (5, 'YY') AS v(id, country);
"""
SETTINGS = """\
[checks]
failures_table = "${db}.check_failures"
failures_max_rows = 3

[checks.10_banded]
warn_above = 5
error_above = 10
"""
STORED = (
    "SELECT run_id, run_date, pipeline, `check`, stage, severity, `row`, recorded_at IS NOT NULL"
    " FROM ${db}.check_failures ORDER BY run_id, `row`;"
)


def _lines(stderr: bytes) -> list[str]:
    return [line.removeprefix("nightshift: ") for line in stderr.decode().splitlines()]


def test_a_failing_checks_rows_are_appended_capped_with_its_run(
    shared_warm_state: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    for name, text in {
        "10_people.sql": PEOPLE,
        # Four rows (ids 2..5), three stored: the first three in the sample's order.
        "10_unknown.check.sql": "SELECT id, country FROM ${db}.people WHERE id >= 2",
        "10_clean.check.sql": "SELECT * FROM ${db}.people WHERE id < 0",
        # Four rows, but up to five pass: a passing check stores nothing.
        "10_banded.check.sql": "SELECT id FROM ${db}.people WHERE id >= 2",
        "pipeline.toml": SETTINGS,
    }.items():
        (folder / name).write_text(text)
    db = f"failures_{uuid.uuid4().hex[:10]}"
    table = f"{db}.check_failures"
    args = ("--var", f"db={db}", "--run-date", RUN_DATE, "--state-dir", shared_warm_state)

    first = run_cli(folder, *args)
    lines = _lines(first.stderr)
    assert first.returncode == 65, "\n".join(lines[-40:])
    assert f"10_unknown.check.sql: failed: 4 rows; 3 of 4 rows in {table}" in lines, lines
    assert "10_clean.check.sql: passed" in lines
    assert "10_banded.check.sql: passed" in lines

    # A second run appends: its own run id, the same rows. A check the engine cannot run (named to
    # come after the failing one) makes each check run alone: the failing one's rows are still
    # stored once in this run, not once by the stage's file and again alone.
    (folder / "10_zz_broken.check.sql").write_text("SELEC id FROM range(3)")
    second = run_cli(folder, *args, "--checks-only", "--log-format", "json")
    assert second.returncode == 1, second.stdout.decode()[-3000:]
    records = [json.loads(line) for line in second.stdout.splitlines()]
    checks = {r["check"]: r for r in records if r["stream"] == "check"}
    assert {name: (r.get("failures_table"), r.get("stored"), r["status"]) for name, r in checks.items()} == {
        "10_unknown.check.sql": (table, 3, "failed"),
        "10_clean.check.sql": (table, 0, "passed"),
        "10_banded.check.sql": (table, 0, "passed"),
        "10_zz_broken.check.sql": (None, None, "failed (exit 1)"),
    }
    second_run = checks["10_unknown.check.sql"]["run_id"]
    # The query the alert and --history give for the kept rows reads this run's back, in spark-sql.
    kept = checks["10_unknown.check.sql"]["failures_query"]
    assert kept == f"SELECT * FROM {table} WHERE run_id = '{second_run}' AND `check` = '10_unknown.check.sql'"
    read = run_cli(folder, "-e", kept, *args)
    assert read.returncode == 0, read.stderr.decode()[-3000:]
    found = sorted(
        (row[0], row[6]) for row in (line.split("\t") for line in read.stdout.decode().splitlines())
    )
    assert found == [
        (second_run, row)
        for row in ['{"id":2,"country":"FR"}', '{"id":3,"country":null}', '{"id":4,"country":"XX"}']
    ]

    query = tmp_path / "stored.sql"
    query.write_text(STORED)
    shown = run_cli(query, *args)
    assert shown.returncode == 0, shown.stderr.decode()[-3000:]
    rows = [line.split("\t") for line in shown.stdout.decode().splitlines()]
    run_ids = sorted({row[0] for row in rows})
    assert len(run_ids) == 2 and second_run in run_ids, rows
    expected = [
        [RUN_DATE, "pipe", "10_unknown.check.sql", "10", "error", row, "true"]
        for row in ['{"id":2,"country":"FR"}', '{"id":3,"country":null}', '{"id":4,"country":"XX"}']
    ]
    assert [row[1:] for row in rows] == expected + expected, rows
