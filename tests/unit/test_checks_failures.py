"""[checks] failures_table without an engine: its settings, the generated file, the line and the record."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.checks.run import (
    CheckReport,
    FailuresTable,
    check_file,
    failures_table,
    report_of,
    result_lines,
)
from runner.checks.spec import ChecksConfig, CheckStatus, DataCheck, Severity, Thresholds
from runner.config import parse_config
from runner.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "failure_table = 'db.f'",
            "[checks] failure_table: unknown key (expected sample_rows, table, or a check's name such as"
            " 20_unique_users for 20_unique_users.check.sql; the failing rows' table: failures_table,"
            " failures_max_rows); did you mean 'failures_table'?",
        ),
        (
            "failures_table = 'db.f; DROP TABLE x'",
            "[checks] failures_table: expected a table name, maybe with its database: check_failures,"
            " db.check_failures, ${database}.check_failures; got 'db.f; DROP TABLE x'",
        ),
        ("failures_table = 3", "[checks] failures_table: expected a table name"),
        (
            "failures_table = 'f'\nfailures_max_rows = 0",
            "[checks] failures_max_rows: expected an integer from 1 to 100,000, got 0",
        ),
        (
            "failures_table = 'f'\nfailures_max_rows = 100001",
            "[checks] failures_max_rows: expected an integer from 1 to 100,000, got 100001",
        ),
        (
            "failures_table = 'f'\nfailures_max_rows = '10'",
            "[checks] failures_max_rows: expected an integer from 1",
        ),
        (
            "failures_table = 'f'\nfailures_max_rows = true",
            "[checks] failures_max_rows: expected an integer from 1",
        ),
        ("failures_max_rows = 10", "[checks] failures_max_rows: needs failures_table"),
    ],
)
def test_failures_settings_are_validated(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(f"[checks]\n{text}\n", Path("pipeline.toml"))
    assert str(raised.value).startswith(f"pipeline.toml: {message}"), str(raised.value)


def test_failures_settings_and_their_defaults() -> None:
    assert parse_config("", Path("p.toml")).checks.failures_table is None  # off by default
    checks = parse_config("[checks]\nfailures_table = '${db}.fails'\n", Path("p.toml")).checks
    assert (checks.failures_table, checks.failures_max_rows) == ("${db}.fails", 1000)
    checks = parse_config(
        "[checks]\nfailures_table = 'f'\nfailures_max_rows = 100000\n", Path("p.toml")
    ).checks
    assert checks.failures_max_rows == 100_000


def test_a_bad_failures_setting_is_one_line_and_exit_2(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    from runner.__main__ import main  # noqa: PLC0415

    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "10_a.sql").write_text("SELECT 1;")
    (folder / "10_a.check.sql").write_text("SELECT 1")
    (folder / "pipeline.toml").write_text("[checks]\nfailures_tabel = 'db.fails'\n")
    assert main([str(folder), "--state-dir", str(tmp_path / "state")]) == 2
    lines = capsysbinary.readouterr().err.decode().splitlines()
    assert len(lines) == 1 and lines[0].endswith("did you mean 'failures_table'?"), lines
    assert not (tmp_path / "state").exists()  # nothing started


def test_an_undefined_variable_in_the_table_is_refused_before_anything_runs(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    from runner.__main__ import main  # noqa: PLC0415

    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "10_a.sql").write_text("SELECT 1;")
    (folder / "10_a.check.sql").write_text("SELECT 1")
    (folder / "pipeline.toml").write_text("[checks]\nfailures_table = '${dbb}.fails'\n")
    assert main([str(folder), "--var", "db=analytics", "--state-dir", str(tmp_path / "state")]) == 2
    lines = capsysbinary.readouterr().err.decode().splitlines()
    assert lines == [
        "nightshift: error: [checks] failures_table: ${dbb} is not defined, spark-sql would put an empty string"
        " there (--var dbb=VALUE or [variables]); did you mean ${db}?"
    ]
    assert not (tmp_path / "state").exists()  # nothing started


CHECK = DataCheck(
    name="10_it",
    stage=10,
    query="SELECT * FROM ${db}.t -- it's\n;\n",
    label="10_it.check.sql",
    thresholds=Thresholds(Severity.WARN, warn_above=2),
)
STORE = FailuresTable("${db}.fails", 5, "20261031T0102-ab'c", "pipe", "d.fails")


def test_the_generated_file_makes_the_table_counts_then_stores(tmp_path: Path) -> None:
    strict = DataCheck(name="10_s", stage=10, query="SELECT 1 AS x", label="10_s.check.sql")
    text = check_file(tmp_path, "10_checks", [CHECK, strict], 10, "M", store=STORE).read_text()
    assert text == (
        "-- nightshift data checks: the table of failing rows (generated)\n"
        "CREATE TABLE IF NOT EXISTS ${db}.fails (\n"
        "  run_id STRING, run_date DATE, pipeline STRING, `check` STRING, stage INT, severity STRING,\n"
        "  `row` STRING, recorded_at TIMESTAMP\n"
        ") USING parquet;\n"
        "-- nightshift data check 10_it.check.sql: the count and a sample of its rows (generated)\n"
        "WITH nightshift_failures AS (SELECT * FROM ${db}.t -- it's\n"
        ")\n"
        "SELECT 'M-0-count', CAST(count(*) AS STRING) FROM nightshift_failures\n"
        "UNION ALL\n"
        "SELECT 'M-0-row', failure FROM (\n"
        "  SELECT to_json(struct(*), map('ignoreNullFields', 'false')) AS failure FROM nightshift_failures\n"
        "  ORDER BY failure LIMIT 10\n"
        ") nightshift_sample;\n"
        "-- nightshift data check 10_s.check.sql: the count and a sample of its rows (generated)\n"
        "WITH nightshift_failures AS (SELECT 1 AS x\n"
        ")\n"
        "SELECT 'M-1-count', CAST(count(*) AS STRING) FROM nightshift_failures\n"
        "UNION ALL\n"
        "SELECT 'M-1-row', failure FROM (\n"
        "  SELECT to_json(struct(*), map('ignoreNullFields', 'false')) AS failure FROM nightshift_failures\n"
        "  ORDER BY failure LIMIT 10\n"
        ") nightshift_sample;\n"
        # Stored after every check counted: a check the engine cannot run stops the file first.
        "-- nightshift data check 10_it.check.sql: at most 5 of its rows stored (generated)\n"
        "WITH nightshift_failures AS (SELECT * FROM ${db}.t -- it's\n"
        ")\n"
        "INSERT INTO ${db}.fails\n"
        "SELECT '20261031T0102-ab\\'c', to_date('${run_date}'), 'pipe', '10_it.check.sql', 10, 'warn',"
        " failure, current_timestamp()\n"
        "FROM (\n"
        "  SELECT to_json(struct(*), map('ignoreNullFields', 'false')) AS failure FROM nightshift_failures\n"
        # warn_above 2: up to two rows pass, and a passing check stores nothing.
        "  WHERE (SELECT count(*) FROM nightshift_failures) > 2\n"
        "  ORDER BY failure LIMIT 5\n"
        ") nightshift_stored;\n"
        "-- nightshift data check 10_s.check.sql: at most 5 of its rows stored (generated)\n"
        "WITH nightshift_failures AS (SELECT 1 AS x\n"
        ")\n"
        "INSERT INTO ${db}.fails\n"
        "SELECT '20261031T0102-ab\\'c', to_date('${run_date}'), 'pipe', '10_s.check.sql', 10, 'error',"
        " failure, current_timestamp()\n"
        "FROM (\n"
        "  SELECT to_json(struct(*), map('ignoreNullFields', 'false')) AS failure FROM nightshift_failures\n"
        "  ORDER BY failure LIMIT 5\n"
        ") nightshift_stored;\n"
    )


def test_without_the_table_the_file_stores_nothing(tmp_path: Path) -> None:
    text = check_file(tmp_path, "10_checks", [CHECK], 10, "M").read_text()
    assert "INSERT" not in text and "CREATE" not in text
    assert text.startswith("-- nightshift data check 10_it.check.sql: the count and a sample")


def test_the_tables_name_has_the_runs_variables() -> None:
    config = ChecksConfig(failures_table="${db}.fails_${day}", failures_max_rows=7)
    store = failures_table(config, "r1", "pipe", {"db": "analytics", "day": "x"})
    assert store == FailuresTable("${db}.fails_${day}", 7, "r1", "pipe", "analytics.fails_x")
    assert failures_table(ChecksConfig(), "r1", "pipe", {}) is None


@pytest.mark.parametrize(
    ("status", "count", "stored", "line"),
    [
        (
            "failed",
            1204,
            5,
            "10_it.check.sql: failed: 1,204 rows (a sample of 1); 5 of 1,204 rows in d.fails",
        ),
        ("warned", 3, 3, "10_it.check.sql: warned: 3 rows (a sample of 1); 3 of 3 rows in d.fails"),
        ("passed", 2, 0, "10_it.check.sql: passed (a sample of 1)"),  # under warn_above
        ("passed", 0, 0, "10_it.check.sql: passed"),
    ],
)
def test_the_line_and_record_name_the_table_when_rows_were_stored(
    status: str, count: int, stored: int, line: str
) -> None:
    report = CheckReport(
        CHECK, status=str(CheckStatus(status)), count=count, sample=[{"x": 1}] if count else []
    )
    report.stored_in(STORE)
    assert report.stored == stored
    assert result_lines(report)[0] == line
    record = report.record(10)
    assert (record["failures_table"], record["stored"]) == ("d.fails", stored)
    # A deployed run's record, read back, says the same line.
    assert result_lines(report_of(CHECK, record))[0] == line


def test_an_engine_failure_or_no_table_stores_nothing() -> None:
    failed = CheckReport(CHECK, status="failed (exit 1)", exit_code=1)
    failed.stored_in(STORE)
    assert failed.stored == 0
    plain = CheckReport(CHECK, status="failed", count=4, sample=[{"x": 1}])
    plain.stored_in(None)
    assert "failures_table" not in plain.record(10) and "stored" not in plain.record(10)
    assert result_lines(plain)[0] == "10_it.check.sql: failed: 4 rows (a sample of 1)"
