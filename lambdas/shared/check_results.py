"""A stage's data check results, as the runner's checks task wrote them to its CloudWatch log stream."""

from __future__ import annotations

import json
from typing import Any

# The runner's JSON record of one check result (runner/output.py JsonOutput.result).
CHECK_STREAM = "check"
# A checks task's stream ends with its records, then its summary (a row per check) and a notice or
# two: the last events, read in one GetLogEvents call (1 MB at most), hold them however long it ran.
CHECK_EVENTS = 1000


def log_stream(pipeline: str, container: str, task_arn: str) -> str:
    """The runner task's stream: awslogs names it `<prefix>/<container>/<task id>`."""
    return f"{pipeline}/{container}/{task_arn.rsplit('/', 1)[-1]}"


def read_checks(logs: Any, log_group: str, stream: str) -> list[dict[str, Any]]:
    """The check records at the end of a checks task's stream, in order (one bounded GetLogEvents)."""
    page = logs.get_log_events(
        logGroupName=log_group, logStreamName=stream, startFromHead=False, limit=CHECK_EVENTS
    )
    records = []
    for event in page.get("events", []):
        try:
            record = json.loads(event["message"])
        except ValueError:
            continue  # not the runner's JSON: a line of a crash
        if isinstance(record, dict) and record.get("stream") == CHECK_STREAM:
            records.append(record)
    return records


def is_failed(record: dict[str, Any]) -> bool:
    """A check that failed the run: an `error` check over its threshold, or its engine failing."""
    return str(record.get("status", "")).startswith("failed")
