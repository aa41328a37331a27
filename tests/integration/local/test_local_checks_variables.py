"""An undefined ${name} in a data check: warned as in a step (file, line, defined names), refused with --strict."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, write_pipeline

DEFINED = "(defined: db; the dates run_date, prev_date, next_date, *_nodash)"
#: ${dbb} in a string: spark-sql puts '' there, so without the warning this check silently passes.
TYPO_CHECK = "-- rows of ${dbb} are fine\nSELECT id FROM range(3)\nWHERE '${dbb}' = 'shop'\n"
SETTINGS = '[variables]\ndb = "shop"\n'
BUILTIN = '\n[checks.table."${dbb}.users"]\nstage = 10\nunique = ["id"]\nnot_null = ["id"]\n'


def _warnings(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode().splitlines() if "is not defined" in line]


def test_a_dry_run_warns_of_a_checks_undefined_name_with_its_line_as_for_a_step(tmp_path: Path) -> None:
    """A check file's typo is named by file and line; a built-in check's by its pipeline.toml section,
    once for the table (its two checks share the name)."""
    folder = write_pipeline(
        tmp_path / "shop",
        SETTINGS + BUILTIN,
        {"10_mark.sh": "touch ran\n", "10_rows.check.sql": TYPO_CHECK, "10_a.sql": "SELECT '${db}';\n"},
    )
    result = run_cli(folder, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    hint = " there " + DEFINED + "; did you mean ${db}?"
    assert _warnings(result.stderr) == [
        "nightshift: warning: 10_rows.check.sql line 3: ${dbb} is not defined, spark-sql would put an empty"
        " string" + hint,
        'nightshift: warning: pipeline.toml [checks.table."${dbb}.users"]: ${dbb} is not defined, spark-sql'
        " would put an empty string" + hint,
    ]
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("strict", [["--strict"], []], ids=["flag", "pipeline.toml"])
def test_strict_makes_a_checks_undefined_name_an_error_and_runs_nothing(
    tmp_path: Path, strict: list[str]
) -> None:
    toml = ("" if strict else "strict_variables = true\n") + SETTINGS
    folder = write_pipeline(
        tmp_path / "shop", toml, {"10_mark.sh": "touch ran\n", "10_rows.check.sql": TYPO_CHECK}
    )
    result = run_cli(folder, *strict, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "nightshift: error: 10_rows.check.sql line 3: ${dbb} is not defined, spark-sql would put an empty"
        " string there " + DEFINED + "; did you mean ${db}?"
    ]
    assert not (tmp_path / "ran").exists()


def test_checks_only_warns_of_the_checks_it_runs_and_not_of_the_steps(tmp_path: Path) -> None:
    """--checks-only --stage 20 runs no step and only stage 20's checks: only their typos are news."""
    folder = write_pipeline(
        tmp_path / "shop",
        SETTINGS,
        {
            "10_a.sql": "SELECT '${dbx}';\n",
            "10_rows.check.sql": TYPO_CHECK,
            "20_b.sh": "true\n",
            "20_more.check.sql": "SELECT id FROM range(3) WHERE '${run_dat}' = ''\n",
        },
    )
    result = run_cli(folder, "--checks-only", "--stage", "20", "--strict", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        "nightshift: error: 20_more.check.sql line 1: ${run_dat} is not defined, spark-sql would put an"
        " empty string there " + DEFINED + "; did you mean ${run_date}?"
    ]


@pytest.mark.spark
def test_a_run_warns_before_the_check_that_the_typo_makes_pass(
    tmp_path: Path, shared_warm_state: Path
) -> None:
    """Through the engine: ${dbb} becomes '' and the check passes; the run said why not to trust it."""
    folder = write_pipeline(
        tmp_path / "shop", SETTINGS, {"10_mark.sh": "true\n", "10_rows.check.sql": TYPO_CHECK}
    )
    result = run_cli(folder, "--state-dir", shared_warm_state)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 0, lines
    (warning,) = _warnings(result.stderr)
    assert warning.startswith("nightshift: warning: 10_rows.check.sql line 3: ${dbb} is not defined")
    assert lines.index(warning) < lines.index("nightshift: 10_rows.check.sql: passed")
