"""Follow a deployed run live: its history for state changes, its steps' log streams for their output."""

# Not runner.relay.pump: that loop drains one step's two pipes as they become readable; a deployed
# run is one poll of an API-rate-limited history plus every running step's stream, with fragments
# to rejoin, so it has a loop of its own. What it prints goes through the same StepOutput sinks
# (and the same summary table) as a local or SSH run, so the output is the same.

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions

from runner.checks.run import result_lines
from runner.deployed.discovery import Deployment
from runner.deployed.events import Attempt, Notice, RunTracker, StepRun
from runner.deployed.run_states import RUN_STAGES_STATE
from runner.model import Pipeline
from runner.output import Output, Reassembler, StepOutput

HISTORY_PAGE = 100
#: error codes of a throttled call (Step Functions, CloudWatch Logs)
THROTTLED = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
#: the header of the runner's end-of-run table (runner.execution.summary_lines)
SUMMARY_HEADER = re.compile(r"^step\s+stage\s+status\s+duration\b")
#: GetLogEvents pages read from one stream in one poll: a burst is read on at the next poll.
MAX_PAGES_PER_POLL = 10
#: a page this big may have been cut short: read the next one in the same poll
FULL_PAGE_EVENTS = 1000
FULL_PAGE_BYTES = 512 * 1024


@dataclass(frozen=True)
class Polling:
    """How often the follower asks, and how long it waits for CloudWatch to catch up.

    At the base interval one follow costs 30 GetExecutionHistory and 30 GetLogEvents per running
    step per minute; idle it backs off to `idle_max` (bench/README.md has the figures and quotas).
    """

    interval: float = 2.0
    idle_max: float = 15.0
    backoff: float = 1.5
    #: after a task ends, its last lines may still be on their way into CloudWatch Logs
    settle: float = 5.0
    #: a backfill only asks each running date's status (DescribeExecution)
    range_interval: float = 15.0
    cluster_poll: float = 15.0
    cluster_wait: float = 20 * 60.0


class Detached(Exception):
    """Ctrl-C while following: the run goes on."""


class HistoryReader:
    """The events of one execution not seen yet, oldest first, read newest-first until a seen one."""

    def __init__(self, sfn: Any, execution_arn: str, count: Callable[[str], None]) -> None:
        self._sfn = sfn
        self._arn = execution_arn
        self._last = 0
        self._count = count

    def new_events(self) -> list[dict[str, Any]]:
        fresh: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            args: dict[str, Any] = {
                "executionArn": self._arn,
                "reverseOrder": True,
                "maxResults": HISTORY_PAGE,
            }
            if token:
                args["nextToken"] = token
            self._count("GetExecutionHistory")
            page = self._sfn.get_execution_history(**args)
            events = page["events"]
            new = [e for e in events if e["id"] > self._last]
            fresh += new
            token = page.get("nextToken")
            if len(new) < len(events) or not token:
                break
        fresh.sort(key=lambda e: e["id"])
        if fresh:
            self._last = fresh[-1]["id"]
        return fresh


@dataclass
class StepPart:
    """One step's (or stage's checks') share of a date's `Run stages` stream: its output, its lines."""

    output: StepOutput
    reassembler: Reassembler = field(default_factory=Reassembler)


@dataclass
class StreamReader:
    """One task's log stream, turned back into the bytes its step printed."""

    step: StepRun
    attempt: Attempt
    name: str
    output: StepOutput
    token: str | None = None
    #: where each stream's line stands: a line longer than one record is printed fragment by fragment
    reassembler: Reassembler = field(default_factory=Reassembler)
    closed: bool = False
    #: when a read after the task's end came back empty
    quiet_since: float | None = None
    #: a date's `Run stages` stream: every step's records in one stream, by their `step` (None: a step's)
    steps: dict[str, StepPart] | None = None
    #: the runner's own end-of-run table has begun in this stream (the follower prints its own)
    in_table: bool = False


class Follower:
    """Prints one execution as a local run prints: step output on stdout/stderr, state changes as notices."""

    def __init__(  # noqa: PLR0917 - one follower per command, built in one place
        self,
        deployment: Deployment,
        pipeline: Pipeline,
        execution_arn: str,
        output: Output,
        polling: Polling,
        stop: threading.Event,
        count: Callable[[str], None] = lambda _api: None,
    ) -> None:
        self.deployment = deployment
        self.pipeline = pipeline
        self.arn = execution_arn
        self.name = execution_arn.rsplit(":", 1)[-1]
        self.output = output
        self.polling = polling
        self.stop = stop
        self.count = count
        self.tracker = RunTracker(pipeline)
        self.history = HistoryReader(deployment.clients.sfn, execution_arn, count)
        self.streams: dict[str, StreamReader] = {}
        self.notices: deque[Notice] = deque()

    def run(self) -> RunTracker:
        """Follow until the run has ended and every step's output is printed; Detached on Ctrl-C."""
        interval = self.polling.interval
        while True:
            try:
                active = self.poll()
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") not in THROTTLED:
                    raise
                active = False  # throttled beyond the client's retries: next round, and less often
            if self.tracker.ended and not self.notices and all(s.closed for s in self.streams.values()):
                return self.tracker
            interval = (
                self.polling.interval
                if active
                else min(interval * self.polling.backoff, self.polling.idle_max)
            )
            if self.tracker.ended:
                interval = self.polling.interval  # only the last lines are awaited: keep it short
            if self.stop.wait(interval):
                raise Detached

    def poll(self) -> bool:
        """One round: new history events, then new lines of every open stream. Whether anything came."""
        events = self.history.new_events()
        for event in events:
            self.notices.extend(self.tracker.apply(event))
        for run, attempt in self.tracker.new_tasks:
            self._open(run, attempt)
        self.tracker.new_tasks.clear()
        self._say_notices()  # before the lines read below, which came after these events
        active = bool(events)
        for reader in self.streams.values():
            if not reader.closed:
                active |= self._read(reader)
        self._say_notices()
        return active

    def _open(self, run: StepRun, attempt: Attempt) -> None:
        assert attempt.task_arn is not None
        step = run.step
        name = self.deployment.log_stream(attempt.task_arn)
        if run is self.tracker.stages_task:
            # Its own output: only what is not the runner's JSON (a crash before the runner began).
            out = self.output.for_step(self.pipeline.name, step.name, self.name, RUN_STAGES_STATE)
            self.streams[attempt.task_arn] = StreamReader(run, attempt, name, out, steps={})
            return
        out = self.output.for_step(self.pipeline.name, step.name, self.name, step.file_name)
        self.streams[attempt.task_arn] = StreamReader(run, attempt, name, out)

    def _say_notices(self) -> None:
        # A line about a task's end waits until that task's output has been printed before it.
        while self.notices:
            notice = self.notices[0]
            reader = self.streams.get(notice.after_task or "")
            if reader is not None and not reader.closed:
                return
            line = self.notices.popleft().line
            if line:
                self.output.notice(line)

    def _read(self, reader: StreamReader) -> bool:
        got = at_end = False
        for _ in range(MAX_PAGES_PER_POLL):
            args: dict[str, Any] = {
                "logGroupName": self.deployment.runner_log_group,
                "logStreamName": reader.name,
                "startFromHead": True,
            }
            if reader.token:
                args["nextToken"] = reader.token
            self.count("GetLogEvents")
            try:
                page = self.deployment.clients.logs.get_log_events(**args)
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                page = {"events": [], "nextForwardToken": reader.token}  # the task has not logged yet
            size = 0
            for event in page["events"]:
                size += len(event["message"])
                self._take(reader, event["message"])
            same = page.get("nextForwardToken") == reader.token
            reader.token = page.get("nextForwardToken") or reader.token
            got |= bool(page["events"])
            # A page well under GetLogEvents' limits (10,000 events, 1 MB) holds all there was: asking
            # again at once would only confirm it and double the calls of a busy step.
            if same or (len(page["events"]) < FULL_PAGE_EVENTS and size < FULL_PAGE_BYTES):
                at_end = True
                break
        self._maybe_close(reader, got, at_end)
        return got

    def _maybe_close(self, reader: StreamReader, got: bool, at_end: bool) -> None:
        if not at_end or (reader.attempt.ended is None and not self.tracker.ended):
            return
        now = time.monotonic()
        if got or reader.quiet_since is None:
            reader.quiet_since = now
        if now - reader.quiet_since >= self.polling.settle:
            reader.output.close()  # a line cut short (the task was killed) stays as far as it came
            for part in (reader.steps or {}).values():
                part.output.close()
            reader.closed = True

    def _take(self, reader: StreamReader, message: str) -> None:
        try:
            record = json.loads(message)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "stream" not in record:
            # Not the runner's JSON (a crash before it began, or awslogs cut an overlong line):
            # shown as it is, on stderr, rather than lost.
            reader.output.feed("stderr", message.encode() + b"\n")
            return
        stream = record["stream"]
        if reader.steps is not None and stream == "nightshift":
            self._take_stages_notice(reader, record)
            return
        if stream == "nightshift":
            self.output.notice(str(record.get("line", "")))
            return
        if stream == "check":
            # A data check's result: said as a local run says it, and kept for the summary table.
            report = self.tracker.take_check(record)
            if report is not None:
                fields = ("pipeline", "run_id", "run_date", "time", "stream")
                self.output.result({k: v for k, v in record.items() if k not in fields}, result_lines(report))
            return
        output, reassembler, label = reader.output, reader.reassembler, reader.step.step.file_name
        if reader.steps is not None:
            # A date's stages: each step's lines rejoined on their own, as if its stream were its own.
            label = str(record.get("step") or "")
            part = self._part(reader, label)
            output, reassembler = part.output, part.reassembler
        try:
            taken = reassembler.take(record)
        except ValueError as error:
            # Something of this stream is missing: say so, and go on with what did come.
            self.output.notice(f"{label}: output incomplete in {reader.name}: {error}")
            taken = reassembler.resume(record)
        if taken is not None and taken[1]:
            output.feed(*taken)

    def _part(self, reader: StreamReader, step: str) -> StepPart:
        assert reader.steps is not None
        part = reader.steps.get(step)
        if part is None:
            run = self.tracker.stage_run(step)
            if run is not None:
                out = self.output.for_step(self.pipeline.name, run.step.name, self.name, run.step.file_name)
            else:  # not a step of this folder (it changed since the run): its lines under its name
                out = self.output.for_step(self.pipeline.name, step, self.name, step)
            part = reader.steps[step] = StepPart(out)
        return part

    def _take_stages_notice(self, reader: StreamReader, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event in ("step_started", "step_ended") and record.get("step"):
            part = self._part(reader, str(record["step"]))
            # An attempt's last line without a newline ends with it, as a step task's at its end;
            # the next attempt's lines start afresh, as in a new task's stream.
            part.output.close()
            part.reassembler = Reassembler()
        elif not record.get("step") and self._runners_table(reader, str(record.get("line", ""))):
            return
        for line in self.tracker.take_stages_record(record):
            self.output.notice(line)

    def _runners_table(self, reader: StreamReader, line: str) -> bool:
        """Whether `line` is of the table the runner prints as its folder run ends.

        The follower prints its own from the same records as the run ends, as after a night: one
        table is shown, not two.
        """
        if SUMMARY_HEADER.match(line):
            reader.in_table = True
            return True
        first = line.split(" ", 1)[0]
        names = {step.file_name for step in self.pipeline.steps}
        return reader.in_table and (first in names or line.startswith("check "))


def now() -> datetime:
    return datetime.now(UTC)


def read_stages(deployment: Deployment, tracker: RunTracker, count: Callable[[str], None]) -> None:
    """An ended date's `Run stages` streams read into its tracker, nothing printed: how each step ended.

    A range's line for a date of a batch names the step that failed it, as a night's does; the
    history alone only knows that the date's one runner task failed.
    """
    for attempt in tracker.stages_task.attempts:
        if attempt.task_arn is None:
            continue
        token: str | None = None
        while True:
            args: dict[str, Any] = {
                "logGroupName": deployment.runner_log_group,
                "logStreamName": deployment.log_stream(attempt.task_arn),
                "startFromHead": True,
            }
            if token:
                args["nextToken"] = token
            count("GetLogEvents")
            try:
                page = deployment.clients.logs.get_log_events(**args)
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                break  # the task never logged
            for event in page["events"]:
                try:
                    record = json.loads(event["message"])
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                if record.get("stream") == "nightshift":
                    tracker.take_stages_record(record)
                elif record.get("stream") == "check":
                    tracker.take_check(record)
            if not page["events"] or page.get("nextForwardToken") in (None, token):
                break
            token = page["nextForwardToken"]
