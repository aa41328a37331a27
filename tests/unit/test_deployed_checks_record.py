"""A data check's JSON record stays one CloudWatch Logs event, and reads back as the same result."""

from __future__ import annotations

import io
import json
from typing import Any

from runner.checks.run import MAX_RECORD_SAMPLE_BYTES, CheckReport, report_of, result_lines
from runner.checks.spec import DataCheck
from runner.output import MAX_EVENT_BYTES, JsonOutput

CHECK = DataCheck("10_wide", 10, "SELECT * FROM t", "10_wide.check.sql")


def test_a_sample_of_wide_rows_is_cut_so_the_record_fits_one_log_event() -> None:
    """sample_rows may be 1,000 and each row 64 KiB: on Fargate the record is one awslogs event, which
    CloudWatch Logs takes up to 256 KiB; a longer line is cut into pieces that are not JSON, and the
    alert, RecordRun and --follow would find no result at all."""
    rows = [{"id": n, "payload": "\x01" * 60_000} for n in range(1000)]  # escaping makes each 6x wider
    report = CheckReport(CHECK, status="failed", count=5_000_000, sample=rows, exit_code=65)
    buffer = io.BytesIO()
    output = JsonOutput(buffer)
    output.begin("pipe", "pipe-2025-06-01", run_date="2025-06-01")
    output.result(report.record(1000), [])
    (line,) = buffer.getvalue().splitlines()
    assert len(line) < MAX_EVENT_BYTES
    record = json.loads(line)
    assert record["count"] == 5_000_000 and record["sample"] == []
    assert record["sample_cut"] == 1000

    narrow = [{"id": n, "name": f"user {n} " + "u" * 300} for n in range(1000)]
    record = CheckReport(CHECK, status="failed", count=1000, sample=narrow, exit_code=65).record(1000)
    assert len(json.dumps(record["sample"])) <= MAX_RECORD_SAMPLE_BYTES
    assert record["sample"] == narrow[: len(record["sample"])] and len(record["sample"]) > 100
    assert record["sample_cut"] == 1000 - len(record["sample"])


def test_a_record_read_back_says_what_the_check_said() -> None:
    """A deployed run's check, read from its task's log by --follow, is said as the local run said it."""
    sample: list[dict[str, Any]] = [{"user_id": 7, "n": 2}, {"user_id": 19, "n": None}]
    report = CheckReport(CHECK, status="failed", count=1204, sample=sample, exit_code=65)
    again = report_of(CHECK, json.loads(json.dumps(report.record(10))))
    assert (
        result_lines(again)
        == result_lines(report)
        == [
            "10_wide.check.sql: failed: 1,204 rows (a sample of 2)",
            "  user_id  n",
            "  7        2",
            "  19       NULL",
        ]
    )
    assert again.exit_code == 65
