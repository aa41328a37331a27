"""Data checks through the warm engine: pass, warn, fail, thresholds, built-ins, engine failures, many rows."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.integration.local.test_local_checks import (
    RUN_DATE,
    check_records,
    same_check_expected,
    same_check_pipeline,
)

pytestmark = pytest.mark.spark

EXAMPLE = ROOT / "sql" / "example"


def _database() -> str:
    # The session's warm engine has one metastore for every test: each test its own database.
    return f"checks_{uuid.uuid4().hex[:10]}"


def _pipeline(root: Path, files: dict[str, str]) -> Path:
    folder = root / "pipe"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


PEOPLE = """\
CREATE DATABASE IF NOT EXISTS ${db};
DROP TABLE IF EXISTS ${db}.people;
-- Planted: id 2 twice, a NULL country, an unknown country.
CREATE TABLE ${db}.people USING parquet AS
SELECT * FROM VALUES
  (1, 'DE', DATE'2026-10-31'), (2, 'FR', DATE'2026-10-31'), (2, 'FR', DATE'2026-10-30'),
  (3, NULL, DATE'2026-10-31'), (4, 'XX', DATE'2026-10-31')
AS v(id, country, day);
"""
SETTINGS = """\
[checks.10_null_country]
severity = "warn"

[checks.10_banded]
warn_above = 1
error_above = 10

[checks.10_strict]
error_above = 2

[checks.table."${db}.people"]
stage = 10
unique = ["id"]
not_null = ["country"]
accepted_values = { country = ["DE", "FR"] }
date_column = "day"
min_rows = 3
max_age_days = 0
"""


def _lines(stderr: bytes) -> list[str]:
    return [line.removeprefix("nightshift: ") for line in stderr.decode().splitlines()]


def test_pass_warn_fail_thresholds_and_built_in_checks(shared_warm_state: Path, tmp_path: Path) -> None:
    folder = _pipeline(tmp_path, {
        "10_people.sql": PEOPLE,
        "10_positive_ids.check.sql": "SELECT * FROM ${db}.people WHERE id <= 0",
        "10_null_country.check.sql": "SELECT * FROM ${db}.people WHERE country IS NULL;",
        "10_banded.check.sql": "SELECT id FROM ${db}.people WHERE id >= 2",
        "10_strict.check.sql": "SELECT id, country FROM ${db}.people WHERE country = 'XX' OR id = 2\n",
        "20_after.sql": "SELECT 'stage 20 ran';",
        "pipeline.toml": SETTINGS,
    })  # fmt: skip
    db = _database()
    args = ("--var", f"db={db}", "--run-date", RUN_DATE, "--state-dir", shared_warm_state)
    done = run_cli(folder, *args)
    lines = _lines(done.stderr)
    assert done.returncode == 65, "\n".join(lines[-40:])
    assert b"stage 20 ran" not in done.stdout
    for line in [
        "10_banded.check.sql: warned: 4 rows",
        "10_null_country.check.sql: warned: 1 row",
        "10_positive_ids.check.sql: passed",
        "10_strict.check.sql: failed: 3 rows",
        "people.unique: failed: 1 row",
        "people.not_null: failed: 1 row",
        "people.accepted_values: failed: 1 row",
        "people.min_rows: passed",  # four rows on the run date, three needed
        "people.max_age_days: passed",
    ]:
        assert line in lines, (line, lines)
    # The failing rows' sample, as a table under its check's line.
    strict = lines.index("10_strict.check.sql: failed: 3 rows")
    assert lines[strict + 1 : strict + 5] == ["  id  country", "  2   FR", "  2   FR", "  4   XX"]
    not_null = lines.index("people.not_null: failed: 1 row")
    assert lines[not_null + 2].split() == ["3", "NULL", "2026-10-31"]
    header = max(
        i for i, line in enumerate(lines) if line.split()[:4] == ["step", "stage", "status", "duration"]
    )
    summary = [line.split() for line in lines[header:]]
    assert ["20_after.sql", "20", "not", "run", "-"] in summary
    assert ["check", "10_strict.check.sql", "10", "failed:", "3", "rows"] in [row[:6] for row in summary]

    # The same checks alone, against the tables as they are: one JSON record each.
    again = run_cli(folder, *args, "--checks-only", "--stage", "10", "--log-format", "json")
    assert again.returncode == 65, again.stdout.decode()[-3000:]
    records = {record["check"]: record for record in check_records(again.stdout)}
    assert len(records) == 9
    assert records["people.unique"]["sample"] == [{"id": 2, "nightshift_rows": 2}]
    assert records["people.accepted_values"]["sample"] == [{"id": 4, "country": "XX", "day": "2026-10-31"}]
    assert records["10_null_country.check.sql"] | {"sample": None} == {
        "check": "10_null_country.check.sql", "stage": 10, "severity": "warn", "status": "warned", "count": 1,
        "sample": None, "sample_rows": 10,
    }  # fmt: skip
    assert b"stage 20 ran" not in again.stdout


def test_a_syntax_error_is_the_engines_failure_and_millions_of_rows_stay_a_sample(
    shared_warm_state: Path, tmp_path: Path
) -> None:
    folder = _pipeline(tmp_path, {
        "10_step.sql": "SELECT 'made';",
        "10_broken.check.sql": "SELEC id FROM range(3)",
        "10_many.check.sql": "SELECT id, id % 7 AS r FROM range(0, 3000000)",
        "20_after.sql": "SELECT 'stage 20 ran';",
    })  # fmt: skip
    done = run_cli(folder, "--state-dir", shared_warm_state)
    lines = _lines(done.stderr)
    # The engine's exit code, not 65: the check could not say anything about the data.
    assert done.returncode == 1, "\n".join(lines[-40:])
    assert "10_broken.check.sql: failed (exit 1)" in lines
    assert any("PARSE_SYNTAX_ERROR" in line for line in lines)
    many = lines.index("10_many.check.sql: failed: 3,000,000 rows (a sample of 10)")
    assert [line.split() for line in lines[many + 1 : many + 3]] == [["id", "r"], ["0", "0"]]
    assert done.stdout == b"made\n"
    # Bounded: a count and ten rows, however many rows failed.
    assert len(done.stderr) < 20_000


def test_the_same_check_warm(shared_warm_state: Path, tmp_path: Path) -> None:
    folder = same_check_pipeline(tmp_path)
    done = run_cli(
        folder,
        "--checks-only",
        "--log-format",
        "json",
        "--run-date",
        RUN_DATE,
        "--state-dir",
        shared_warm_state,
    )
    assert done.returncode == 65, done.stdout.decode()[-3000:]
    assert check_records(done.stdout) == [same_check_expected()]
    # The check file as PATH: that one check, counted and sampled, not a step printing every row.
    alone = run_cli(
        folder / "10_every_third.check.sql", "--log-format", "json", "--run-date", RUN_DATE,
        "--state-dir", shared_warm_state,
    )  # fmt: skip
    assert alone.returncode == 65, alone.stdout.decode()[-3000:]
    assert check_records(alone.stdout) == [same_check_expected()]
    assert b"the step ran" not in alone.stdout


def test_the_example_fails_its_check_when_its_data_is_broken(shared_warm_state: Path, tmp_path: Path) -> None:
    """The README's demonstration: an event id exported twice stops the run after stage 10."""
    raw = tmp_path / "raw"
    shutil.copytree(EXAMPLE / "sample_data", raw)
    events = (raw / "events.csv").read_text().splitlines()
    event_id = events[1].split(",")[0]
    (raw / "events.csv").write_text(
        "\n".join([*events, f"{event_id},u00001,page_view,2026-10-20 19:21:23"]) + "\n"
    )
    done = run_cli(
        EXAMPLE, "--run-date", RUN_DATE, "--state-dir", shared_warm_state,
        "--var", f"raw_path={raw}", "--var", f"out_path={tmp_path / 'out'}", "--var", f"database={_database()}",
    )  # fmt: skip
    lines = _lines(done.stderr)
    assert done.returncode == 65, "\n".join(lines[-40:])
    unique = lines.index("events.unique: failed: 1 row")
    assert lines[unique + 1 : unique + 3] == ["  event_id  nightshift_rows", f"  {event_id}   2"]
    assert "20_sessions.hql: started (spark-sql)" not in lines
    assert "users.unique: passed" in lines
