"""-e "SELECT ..." (as spark-sql -e) through the real command line: a pipeline's variables and tables, here."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.conftest import write_pipeline as pipeline

RUN_DATE = "2025-06-04"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--deployed"], "-e: not with --deployed: it runs the statements and nothing else"),
        (["--run-date", "2025-06-01..2025-06-03"], "-e: one run date, not a range (2025-06-01..2025-06-03)"),
        (["--checks-only"], "-e: not with --checks-only: it runs the statements and nothing else"),
        (["--dry-run", "--from-stage", "10"], "-e: not with --from-stage, --dry-run: it runs the statements"),
        (["--engine", "bash"], "-e: --engine bash: only spark-sql or hive run statements"),
        (["--strict"], "-e line 1: ${dbb} is not defined, spark-sql would put an empty string there"),
    ],
)
def test_a_statement_with_a_flag_of_a_whole_run_is_refused_in_one_line(
    flags: list[str], message: str, tmp_path: Path, state_dir: Path
) -> None:
    folder = pipeline(tmp_path / "shop", '[variables]\ndb = "shop"\n', {"10_orders.sql": "SELECT 1;\n"})

    result = run_cli(folder, "-e", "SELECT * FROM ${dbb}.orders", *flags, "--state-dir", state_dir)

    assert result.returncode == 2
    assert result.stdout == b""
    [line] = result.stderr.decode().splitlines()
    assert line.startswith(f"nightshift: error: {message}"), line
    assert not state_dir.exists()  # no engine was started, no warehouse made


def test_a_statement_needs_a_pipeline_folder(tmp_path: Path, state_dir: Path) -> None:
    folder = pipeline(tmp_path / "shop", "", {"10_orders.sql": "SELECT 1;\n"})
    step = run_cli(folder / "10_orders.sql", "-e", "SELECT 1", "--state-dir", state_dir)
    none = run_cli("-e", "SELECT 1", "--state-dir", state_dir)
    empty = run_cli(folder, "-e", " \n", "--state-dir", state_dir)

    assert (step.returncode, none.returncode, empty.returncode) == (2, 2, 2)
    assert step.stderr.decode() == (
        f"nightshift: error: -e: {folder / '10_orders.sql'} is a step file; give its pipeline folder\n"
    )
    assert none.stderr.decode() == (
        "nightshift: error: -e: PATH is required: the pipeline folder whose variables and tables it uses\n"
    )
    assert empty.stderr.decode() == "nightshift: error: -e: no statement given\n"
    assert not state_dir.exists()


def test_a_statement_reads_the_tables_the_pipeline_made_with_its_variables(
    tmp_path: Path, shared_warm_state: Path
) -> None:
    # The shared engine's metastore is every test's: a database of this test's own.
    db = f"e_{secrets.token_hex(4)}"
    folder = pipeline(
        tmp_path / "shop",
        f'[variables]\ndb = "{db}"\nregion = "eu"\n\n[variables.local]\nregion = "local"\n',
        {
            "10_orders.sql": (
                "CREATE DATABASE IF NOT EXISTS ${db};\n"
                "CREATE TABLE ${db}.orders USING parquet AS\n"
                "  SELECT * FROM VALUES ('${prev_date}', 'a;b', 2), ('${prev_date}', 'it''s', 3),\n"
                "    ('${run_date}', 'today', 5) AS t(day, note, amount);\n"
            )
        },
    )
    made = run_cli(folder, "--run-date", RUN_DATE, "--state-dir", shared_warm_state)
    assert made.returncode == 0, made.stderr.decode()

    # Quotes of both kinds, a ';' inside a string, a variable, a built-in date, no final ';': as typed.
    statements = (
        "SELECT count(*), sum(amount), '${region}' FROM ${db}.orders WHERE day = '${prev_date}';\n"
        "SELECT \"x;y\", note FROM ${db}.orders WHERE note = 'a;b'"
    )
    looked = run_cli(folder, "-e", statements, "--run-date", RUN_DATE, "--state-dir", shared_warm_state)

    assert looked.returncode == 0, looked.stderr.decode()
    assert looked.stdout == b"2\t5\tlocal\nx;y\ta;b\n"
    lines = looked.stderr.decode().splitlines()
    assert lines[:2] == [
        f"nightshift: shop: run date {RUN_DATE} (given with --run-date); variables: db={db}, region=local",
        f"nightshift: -e on spark-sql here, warm: the engine of {shared_warm_state} (started if none is up)",
    ]
    # What spark-sql -e would print, and no summary table or run epilogue of a pipeline run.
    assert not [line for line in lines if "succeeded" in line or "stays up" in line], lines

    failed = run_cli(
        folder,
        "-e",
        "SELECT 'before'; SELECT * FROM ${db}.no_such_table; SELECT 'after'",
        "--state-dir",
        shared_warm_state,
    )

    assert failed.returncode == 1, failed.stderr.decode()
    assert failed.stdout == b"before\n"
    assert f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `{db}`.`no_such_table`" in failed.stderr.decode()


def test_a_hive_pipelines_statement_runs_on_spark_sql_here_and_says_so(
    tmp_path: Path, shared_warm_state: Path
) -> None:
    folder = pipeline(tmp_path / "legacy", 'default_engine = "hive"\n', {"10_report.sql": "SELECT 1;\n"})

    result = run_cli(
        folder, "-e", "SELECT '${next_date_nodash}'", "--run-date", RUN_DATE,
        "--state-dir", shared_warm_state,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"20250605\n"
    assert (
        f"nightshift: -e on spark-sql here, warm: the engine of {shared_warm_state} (started if none is up)"
        "; not hive: there is no hive here (on a cluster: hive)"
    ) in result.stderr.decode().splitlines()
