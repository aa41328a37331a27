"""Data checks run cold (`spark-sql -f`, a JVM each) give what the warm engine and the cluster give."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.spark

RUN_DATE = "2026-10-31"
#: One check whose rows hold a NULL, a tab and a variable; no table, so every engine can run it alike.
SAME_CHECK = (
    "-- every third id fails\n"
    "SELECT id, CASE WHEN id % 4 = 0 THEN NULL ELSE concat('v', id, '\\t', 'x') END AS v, '${run_date}' AS d\n"
    "FROM range(0, 30)\nWHERE id % 3 = 0;\n"
)
SAMPLE_ROWS = 4


def same_check_pipeline(root: Path) -> Path:
    """A pipeline of one step and the check, as the warm, cold and SSH tests run it."""
    folder = root / "same_check"
    folder.mkdir()
    (folder / "10_step.sql").write_text("SELECT 'the step ran';\n")
    (folder / "10_every_third.check.sql").write_text(SAME_CHECK)
    (folder / "pipeline.toml").write_text(f"[checks]\nsample_rows = {SAMPLE_ROWS}\n")
    return folder


def same_check_expected() -> dict[str, Any]:
    """The check's record as Python computes it: 10 failing rows, the first 4 in to_json's text order."""
    rows = [
        {"id": i, "v": None if i % 4 == 0 else f"v{i}\tx", "d": RUN_DATE} for i in range(30) if i % 3 == 0
    ]
    rows.sort(key=lambda row: json.dumps(row, separators=(",", ":")))
    return {"check": "10_every_third.check.sql", "stage": 10, "severity": "error", "status": "failed",
            "count": len(rows), "sample": rows[:SAMPLE_ROWS], "sample_rows": SAMPLE_ROWS, "exit_code": 65}  # fmt: skip


def check_records(stdout: bytes) -> list[dict[str, Any]]:
    """The check records of a --log-format json run, without the time and run fields."""
    records = [json.loads(line) for line in stdout.splitlines()]
    drop = {"time", "run_id", "run_date", "stream", "pipeline"}
    return [{k: v for k, v in r.items() if k not in drop} for r in records if r["stream"] == "check"]


def test_the_same_check_cold(tmp_path: Path, state_dir: Path) -> None:
    folder = same_check_pipeline(tmp_path)
    done = run_cli(
        folder,
        "--checks-only",
        "--cold",
        "--log-format",
        "json",
        "--run-date",
        RUN_DATE,
        "--state-dir",
        state_dir,
    )
    assert done.returncode == 65, done.stdout.decode()[-3000:]
    assert check_records(done.stdout) == [same_check_expected()]
    # --checks-only ran no step.
    assert b"the step ran" not in done.stdout
