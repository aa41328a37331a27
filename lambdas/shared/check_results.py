"""A stage's data check results, as the runner's checks task wrote them to its CloudWatch log stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


#: a date of a batch's `Run stages` stream holds its whole run: read forward, at most this many
#: GetLogEvents pages (each up to 1 MB or STAGES_PAGE_EVENTS events), so RecordRun ends in its timeout
STAGES_PAGES = 25
STAGES_PAGE_EVENTS = 10_000


class ForwardRead:
    """The runner's JSON records of one stream from its head, page by page up to a bound.

    Iterate for each record with its event's timestamp (epoch ms); afterwards `complete` says
    whether the stream's end was reached (GetLogEvents answers the same forward token there) and
    `events` how many events were read. A ClientError of the first page propagates.
    """

    def __init__(
        self, logs: Any, log_group: str, stream: str, pages: int | None = None, limit: int | None = None
    ) -> None:
        self._logs, self._group, self.stream = logs, log_group, stream
        self.pages = STAGES_PAGES if pages is None else pages
        self.limit = STAGES_PAGE_EVENTS if limit is None else limit
        self.complete = False
        self.events = 0

    def __iter__(self) -> Iterator[tuple[dict[str, Any], int]]:
        token: str | None = None
        for _ in range(self.pages):
            ask: dict[str, Any] = {
                "logGroupName": self._group,
                "logStreamName": self.stream,
                "startFromHead": True,
                "limit": self.limit,
            }
            if token is not None:
                ask["nextToken"] = token
            page = self._logs.get_log_events(**ask)
            for event in page.get("events", []):
                self.events += 1
                try:
                    record = json.loads(event["message"])
                except ValueError:
                    continue  # not the runner's JSON: a line of a crash
                if isinstance(record, dict):
                    yield record, int(event.get("timestamp") or 0)
            following = page.get("nextForwardToken")
            if not following or following == token:
                self.complete = True
                return
            token = following
