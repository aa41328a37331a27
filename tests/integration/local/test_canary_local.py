"""The canary pipeline's SQL on the real spark-sql: what its deployed task runs on the cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.canary import CANARY_FOLDER
from tests.conftest import run_cli


@pytest.mark.spark
def test_the_canary_writes_reads_back_and_checks_its_row(shared_warm_state: Path) -> None:
    """Its step writes a row of the run date to its own table and reads it back (stdout), its check
    passes; a date it never wrote fails the check with exit 65 and names the date: the check can fail."""
    result = run_cli(CANARY_FOLDER, "--state-dir", shared_warm_state, "--run-date", "2026-12-01")
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert result.stdout.decode().startswith("2026-12-01\t"), result.stdout
    assert "nightshift: 10_nightshift_canary_written.check.sql: passed" in err.splitlines()
    assert "variables: canary_database=default" in err

    result = run_cli(
        CANARY_FOLDER, "--state-dir", shared_warm_state, "--run-date", "1999-01-01", "--checks-only"
    )
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 65, lines
    assert "nightshift: 10_nightshift_canary_written.check.sql: failed: 1 row" in lines
    assert "nightshift:   1999-01-01" in lines
