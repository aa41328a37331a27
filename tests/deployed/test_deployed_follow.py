"""Deployed runs followed live from moto: step output byte for byte, state changes, summary, exit code."""

from __future__ import annotations

import io
import itertools
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runner.deployed import DeployedRequest
from runner.deployed.discovery import Clients, Deployment
from runner.deployed.events import RunTracker
from runner.deployed.follow import Follower, now, read_stages
from runner.deployed.run_states import RUN_STAGES_STATE
from runner.execution import summary_lines
from runner.model import Pipeline, load_pipeline
from runner.output import MAX_EVENT_BYTES, JsonOutput, StepEnd, TextOutput
from tests.deployed.support import (
    FAST,
    Result,
    Watched,
    ctrl_c_when,
    run_cli,
    start_directly,
)
from tests.infra.moto_harness import Harness, StepScript, set_moto_env
from tests.support.aws import REGION

DATE = "2025-06-01"
LONG_LINE = b"".join(b"%07d," % n for n in range(40_000)) + b"\n"  # 320 KiB: more than one CloudWatch event
USERS = [
    ("stdout", b"users: 42 rows\n"),
    ("stderr", b"WARN spark: slow disk\n"),
    ("stdout", b"caf\xe9 in latin-1, not UTF-8\n"),
    ("stdout", b"half a line, "),
    ("stdout", b"the other half\n"),
    ("stdout", LONG_LINE),
    ("stderr", b"\xff\xfe raw bytes on stderr\n"),
    ("stdout", b"\xe2\x9c\x93 done, no newline at the end"),
]
SESSIONS = [("stdout", b"\nsessions: 7 rows\n"), ("stderr", b"INFO sessions written\n")]


def expected(chunks: list[tuple[str, bytes]], stream: str) -> bytes:
    return b"".join(data for name, data in chunks if name == stream)


def test_follow_prints_every_line_live_byte_for_byte_then_the_summary(deployed: Harness) -> None:
    assert len(LONG_LINE) > MAX_EVENT_BYTES
    # 10_users stops half-way until the console shows its first line: the follower is live,
    # not a reader of a finished run.
    users = StepScript(chunks=USERS, gate_after=2)
    deployed.faults.scripts["10_users.sql"] = users
    deployed.faults.scripts["20_sessions.hql"] = StepScript(chunks=SESSIONS)
    console = Watched(b"users: 42 rows\n", users.gate)

    result = run_cli(deployed, DeployedRequest("start", (DATE,)), stdout=console)

    assert result.code == 0, result.stderr.decode(errors="replace")[-2000:]
    assert users.reached_gate.is_set() and users.gate.is_set()
    assert result.stdout == expected(USERS, "stdout") + expected(SESSIONS, "stdout")
    assert result.step_stderr() == expected(USERS, "stderr") + expected(SESSIONS, "stderr")
    notices = result.notices
    assert notices[0] == f"run nightly-{DATE} started"
    in_order = [
        "cluster j-",
        "stage 10 started",
        "10_users.sql: started (spark-sql)",
        "10_users.sql: succeeded in",
        "10_users.sql: finished with exit code 0",
        "stage 20 started",
        "20_sessions.hql: finished with exit code 0",
        "stage 30 started",
        "terminating cluster j-",
        "run cost $",
        "run succeeded after",
    ]
    positions = [next(i for i, n in enumerate(notices) if n.startswith(prefix)) for prefix in in_order]
    assert positions == sorted(positions), notices
    assert any(n.startswith("cluster j-") and "ready after" in n for n in notices)
    table = notices[notices.index(next(n for n in notices if n.startswith("step "))) :]
    assert [row.split()[0] for row in table[1:]] == [
        "10_events.sql", "10_users.sql", "20_sessions.hql", "30_funnel.sql", "30_segments.sql",
    ]  # fmt: skip
    assert all(" succeeded " in row for row in table[1:])
    (cluster,) = deployed.clusters()
    assert cluster["Status"]["State"] == "TERMINATED"


def test_a_failing_step_gives_the_runs_exit_code_with_its_retries(deployed: Harness) -> None:
    deployed.faults.exit_codes["30_funnel.sql"] = 3
    deployed.faults.scripts["30_funnel.sql"] = StepScript(
        chunks=[("stderr", b"ERROR: table funnel is locked\n")]
    )

    result = run_cli(deployed, DeployedRequest("start", (DATE,)))

    assert result.code == 3
    # Three attempts (retries = 2), each with its own task and log stream, printed in turn.
    assert result.step_stderr() == b"ERROR: table funnel is locked\n" * 3
    notices = result.notices
    assert "30_funnel.sql: retrying (attempt 2 of 3)" in notices
    assert "30_funnel.sql: retrying (attempt 3 of 3)" in notices
    assert notices.count("30_funnel.sql: failed with exit code 3") == 3
    assert any(
        n.startswith("run failed after") and n.endswith("30_funnel.sql exited with code 3") for n in notices
    )
    rows = {
        row.split()[0]: row for row in notices if row.split()[0].endswith((".sql", ".hql")) and "  " in row
    }
    assert "failed (exit 3)" in rows["30_funnel.sql"]
    assert "succeeded" in rows["20_sessions.hql"]
    assert [c["Status"]["State"] for c in deployed.clusters()] == ["TERMINATED"]


def test_follow_without_a_date_attaches_to_the_running_run(deployed: Harness) -> None:
    users = StepScript(chunks=[("stdout", b"first\n"), ("stdout", b"second\n")], gate_after=1)
    deployed.faults.scripts["10_users.sql"] = users
    start_directly(deployed, DATE)
    assert users.reached_gate.wait(30)
    console = Watched(b"first\n", users.gate)

    result = run_cli(deployed, DeployedRequest("follow"), stdout=console)

    assert result.code == 0
    assert result.stdout == b"first\nsecond\n"
    assert result.notices[0] == f"following run nightly-{DATE}"


def test_ctrl_c_detaches_and_leaves_the_run_running(deployed: Harness) -> None:
    users = StepScript(chunks=[("stdout", b"working\n")], gate_after=1, gate_timeout=60)
    deployed.faults.scripts["10_users.sql"] = users
    arn = start_directly(deployed, DATE)
    interrupt = threading.Event()
    console = Watched(b"working\n", interrupt)

    sender = ctrl_c_when(interrupt)

    result = run_cli(deployed, DeployedRequest("follow", (DATE,)), stdout=console)
    sender.join()

    assert result.code == 130
    assert result.stdout == b"working\n"
    hint = result.notices[-1]
    assert hint.startswith(f"detached; nightly-{DATE} goes on in AWS.")
    assert f"--deployed --follow --run-date {DATE}" in hint and f"--deployed --stop --run-date {DATE}" in hint
    assert deployed.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_finished_run_is_shown_again_with_its_exit_code(deployed: Harness) -> None:
    deployed.faults.scripts["10_events.sql"] = StepScript(chunks=[("stdout", b"events loaded\n")])
    deployed.faults.failing_steps.add("20_sessions.hql")
    execution = deployed.run(DATE)
    assert execution["status"] == "FAILED"

    result: Result = run_cli(deployed, DeployedRequest("follow", (DATE,)))

    assert result.code == 1
    assert result.stdout == b"events loaded\n"
    assert result.notices[0] == f"run nightly-{DATE} failed; its output:"
    assert any("20_sessions.hql" in row and "failed (exit 1)" in row for row in result.notices)
    assert any("30_funnel.sql" in row and "not run" in row for row in result.notices)


def test_a_run_whose_cluster_never_starts_exits_69_after_its_launch_retries(deployed: Harness) -> None:
    def fail_every_launch(payload: dict, result: dict) -> None:
        deployed.fail_cluster(result["cluster_id"], "BOOTSTRAP_FAILURE", "bootstrap action 1 returned 1")

    deployed.faults.after["lambdas.create_cluster"] = fail_every_launch

    result = run_cli(deployed, DeployedRequest("start", (DATE,)))

    assert result.code == 69
    assert deployed.faults.steps_run == []
    notices = result.notices
    retried = [n for n in notices if "launch retried" in n]
    assert [n.rsplit("(", 1)[-1] for n in retried] == ["attempt 2)", "attempt 3)"]
    assert "failed to start (" in retried[0]
    (failure,) = [n for n in notices if n.startswith("run failed after")]
    assert "ClusterFailedToStart: attempt 1 (j-" in failure
    assert all(
        row.split()[2:4] == ["not", "run"] for row in notices if row.split()[0].endswith((".sql", ".hql"))
    )
    assert {c["Status"]["State"] for c in deployed.clusters()} <= {"TERMINATED", "TERMINATED_WITH_ERRORS"}


# --- a date of a batch: every stage in ONE `Run stages` task, its one stream told apart by `step` ---

STAGES_TOML = """
[steps]
retries = 2
retry_interval_seconds = 30
"""
STAGES_STEPS = {
    "10_events.sql": "SELECT 1;",
    "10_users.sql": "SELECT 2;",
    "20_sessions.hql": "SELECT 3;",
    "20_sessions_valid.check.sql": "SELECT 1 WHERE false",
    "30_funnel.sql": "SELECT 4;",
    "30_funnel_steps.check.sql": "SELECT 1 WHERE false",
}
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/nightshift/0123456789abcdef0123456789abcdef"
LOG_GROUP = "/nightshift/Nightshift/nightly/runner"
BATCH_ARN = (
    "arn:aws:states:us-east-1:123456789012:execution:Nightshift-nightly:nightly-batch-2025-06-01-2025-06-03"
)


@pytest.fixture
def stages_pipeline(tmp_path: Path) -> Pipeline:
    folder = tmp_path / "nightly"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(STAGES_TOML)
    for name, text in STAGES_STEPS.items():
        (folder / name).write_text(text)
    return load_pipeline(folder)


@pytest.fixture
def runner_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    """moto's CloudWatch Logs with the runner's log group: where a `Run stages` task's stream goes."""
    set_moto_env(monkeypatch)
    with mock_aws():
        logs = boto3.client("logs", region_name=REGION)
        logs.create_log_group(logGroupName=LOG_GROUP)
        clients = Clients(REGION, sfn=None, logs=logs, emr=None)
        machine = f"arn:aws:states:{REGION}:123456789012:stateMachine:Nightshift-nightly"
        yield Deployment("nightly", "Nightshift", machine, LOG_GROUP, clients)


class StagesStream:
    """A date's `Run stages` task writing its one stream, as helper B's runner writes it (the contract):
    each step's output records (the runner's JsonOutput, steps of a stage interleaved as their threads
    write them), `step_started`/`step_ended`/`step_retry` notices, check results between a stage's
    checks' start and end."""

    def __init__(self) -> None:
        self.records: list[str] = []
        self.started_at = datetime(2025, 6, 2, 3, 0, tzinfo=UTC)

    def _time(self, seconds: float) -> str:
        return (self.started_at + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")

    def _notice(self, step: str, line: str, **fields: Any) -> None:
        record = {"time": self._time(fields.pop("at", 0)), "pipeline": "nightly", "step": step,
                  "run_id": "nightly-2025-06-02", "run_date": "2025-06-02", "stream": "nightshift",
                  "line": line, **fields}  # fmt: skip
        self.records.append(json.dumps(record))

    def started(self, file_name: str, attempt: int = 1, at: float = 0) -> None:
        step = file_name.split(".", maxsplit=1)[0]
        self._notice(step, f"{file_name}: started (spark-sql)", event="step_started", attempt=attempt, at=at)

    def ended(self, file_name: str, status: str, code: int | None, seconds: float, attempt: int = 1,
              attempts: int = 3, at: float = 0) -> None:  # fmt: skip
        step = file_name.split(".", maxsplit=1)[0]
        said = "succeeded" if status == "succeeded" else f"{status} (exit {code})"
        self._notice(step, f"{file_name}: {said} in {seconds:.1f} s", event="step_ended", status=status,
                     exit_code=code, seconds=seconds, attempt=attempt, attempts=attempts, at=at)  # fmt: skip

    def runner_line(self, line: str) -> None:
        """A line of the runner itself, of no step (a folder run's header, its table)."""
        self._notice("", line)

    def retry(self, file_name: str, attempt: int) -> None:
        self._notice(file_name.split(".", maxsplit=1)[0], f"{file_name}: attempt {attempt} of 3 in 30 s", event="step_retry",
                     attempt=attempt)  # fmt: skip

    def output(self, *steps: tuple[str, list[tuple[str, bytes]]]) -> None:
        """Each step's chunks through the runner's JsonOutput, their records interleaved one by one."""
        each = []
        for file_name, chunks in steps:
            buffer = io.BytesIO()
            json_output = JsonOutput(buffer)
            json_output.begin("nightly", "nightly-2025-06-02", run_date="2025-06-02")
            out = json_output.for_step("nightly", file_name.split(".")[0], "nightly-2025-06-02", file_name)
            for stream, chunk in chunks:
                out.feed(stream, chunk)  # type: ignore[arg-type]
            out.close()
            each.append(buffer.getvalue().decode().splitlines())
        for row in itertools.zip_longest(*each):
            self.records += [record for record in row if record is not None]

    def check(self, label: str, stage: int, status: str) -> None:
        record = {"time": self._time(0), "pipeline": "nightly", "run_id": "nightly-2025-06-02", "stream": "check",
                  "check": label, "stage": stage, "severity": "error", "status": status, "count": 0,
                  "sample": []}  # fmt: skip
        self.records.append(json.dumps(record))

    def ship(self, deployment: Deployment) -> None:
        stream = deployment.log_stream(TASK_ARN)
        logs = deployment.clients.logs
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        stamp = int(time.time() * 1000)  # CloudWatch Logs rejects events more than 14 days old
        for first in range(0, len(self.records), 50):
            batch = self.records[first : first + 50]
            events = [{"timestamp": stamp, "message": message} for message in batch]
            logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)


def stages_history(given: dict[str, Any], exit_code: int | None, end: str) -> list[dict[str, Any]]:
    """A date's history as Step Functions writes it around its `Run stages` task (GetExecutionHistory):
    the task's exit code (None: still running), then how the execution ended ("" : it has not)."""
    at = datetime(2025, 6, 2, 3, 0, tzinfo=UTC)
    events: list[dict[str, Any]] = [
        {"type": "ExecutionStarted", "executionStartedEventDetails": {"input": json.dumps(given)}},
        {"type": "TaskStateEntered", "stateEnteredEventDetails": {"name": RUN_STAGES_STATE, "input": "{}"}},
        {"type": "TaskScheduled", "taskScheduledEventDetails": {"resource": "runTask.sync"}},
        {"type": "TaskStarted", "taskStartedEventDetails": {}},
        {"type": "TaskSubmitted",
         "taskSubmittedEventDetails": {"output": json.dumps({"Tasks": [{"TaskArn": TASK_ARN}]})}},
    ]  # fmt: skip
    task = {"TaskArn": TASK_ARN, "Containers": [{"Name": "runner", "ExitCode": exit_code}]}
    if exit_code == 0:
        events.append({"type": "TaskSucceeded", "taskSucceededEventDetails": {"output": json.dumps(task)}})
    elif exit_code is not None:
        details = {"error": "States.TaskFailed", "cause": json.dumps(task)}
        events.append({"type": "TaskFailed", "taskFailedEventDetails": details})
    if end == "FAILED":
        events.append(
            {
                "type": "ExecutionFailed",
                "executionFailedEventDetails": {"error": "States.TaskFailed", "cause": "{}"},
            }
        )
    elif end == "ABORTED":
        events.append({"type": "ExecutionAborted", "executionAbortedEventDetails": {}})
    for number, event in enumerate(events, 1):
        event.update(id=number, previousEventId=number - 1, timestamp=at + timedelta(seconds=number))
    return events


class ScriptedHistory:
    """The history above, given to the follower at its first poll (as HistoryReader.new_events gives it)."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def new_events(self) -> list[dict[str, Any]]:
        fresh, self.events = self.events, []
        return fresh


def follow_stages(deployment: Deployment, pipeline: Pipeline, history: list[dict[str, Any]]) -> Result:
    out, err = io.BytesIO(), io.BytesIO()
    output = TextOutput(out, err)
    arn = deployment.execution_arn("nightly-2025-06-02")
    follower = Follower(deployment, pipeline, arn, output, FAST, threading.Event())
    follower.history = ScriptedHistory(history)  # type: ignore[assignment]
    tracker = follower.run()
    report = tracker.report(now())
    for line in summary_lines(report):
        output.notice(line)
    return Result(report.exit_code, out.getvalue(), err.getvalue())


def table_rows(result: Result) -> dict[str, list[str]]:
    start = result.notices.index(next(n for n in result.notices if n.startswith("step ")))
    return {
        cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", n.strip()) for n in result.notices[start + 1 :])
    }


def test_a_date_of_a_batch_shows_each_step_of_its_one_stages_task_as_a_night_does(
    runner_logs: Deployment, stages_pipeline: Pipeline
) -> None:
    """One stream, every step: stage 10's two steps interleaved record by record (a line longer than
    one record among them) come out as each step's bytes; a stage's checks' result; 30_funnel.sql fails
    three times (two retries, as a night's), and the run's exit code is its 3, as a night's."""
    stream = StagesStream()
    stream.runner_line("nightly: stages 10, 20, 30 for 2025-06-02")
    events_out = [("stderr", b"INFO events loaded\n"), ("stderr", b"WARN late partition\n")]
    users_out = [("stdout", b"users: 42 rows\n"), ("stdout", LONG_LINE), ("stdout", b"no newline at the end")]
    stream.started("10_events.sql")
    stream.started("10_users.sql")
    stream.output(("10_events.sql", events_out), ("10_users.sql", users_out))
    stream.ended("10_events.sql", "succeeded", 0, 2.5, at=2.5)
    stream.ended("10_users.sql", "succeeded", 0, 4.0, at=4.0)
    stream.started("20_sessions.hql", at=4.0)
    stream.output(("20_sessions.hql", [("stdout", b"\nsessions: 7 rows\n")]))
    stream.ended("20_sessions.hql", "succeeded", 0, 6.0, at=10.0)
    stream.started("20_checks", at=10.0)
    stream.check("20_sessions_valid.check.sql", 20, "passed")
    stream.ended("20_checks", "succeeded", 0, 3.0, at=13.0)
    for attempt in (1, 2, 3):
        stream.started("30_funnel.sql", attempt, at=13.0 + 40 * (attempt - 1))
        stream.output(("30_funnel.sql", [("stderr", b"ERROR: table funnel is locked\n")]))
        stream.ended("30_funnel.sql", "failed", 3, 8.0, attempt, at=21.0 + 40 * (attempt - 1))
        if attempt < 3:
            stream.retry("30_funnel.sql", attempt + 1)
    # The runner's own table of its folder run: the follower prints one, its own, as after a night.
    for line in (
        "step  stage  status  duration",
        "10_events.sql  10  succeeded  2.5 s",
        "check 20_sessions_valid.check.sql  20  passed  3.0 s",
        "30_funnel.sql  30  failed (exit 3)  88.0 s",
    ):
        stream.runner_line(line)  # fmt: skip
    stream.ship(runner_logs)
    given = {"run_date": "2025-06-02", "batch": BATCH_ARN, "cluster": {"cluster_id": "j-1"}}

    result = follow_stages(runner_logs, stages_pipeline, stages_history(given, 3, "FAILED"))

    assert result.code == 3, result.notices
    assert result.stdout == b"users: 42 rows\n" + LONG_LINE + b"no newline at the end\nsessions: 7 rows\n"
    assert result.step_stderr() == (
        b"INFO events loaded\nWARN late partition\n" + b"ERROR: table funnel is locked\n" * 3
    )
    notices = result.notices
    in_order = [
        "nightly: stages 10, 20, 30 for 2025-06-02",
        "stage 10 started",
        "10_events.sql: started (spark-sql)",
        "10_users.sql: started (spark-sql)",
        "10_events.sql: succeeded in 2.5 s",
        "10_events.sql: finished with exit code 0",
        "10_users.sql: finished with exit code 0",
        "stage 20 started",
        "20_sessions.hql: finished with exit code 0",
        "stage 20's checks started",
        "20_sessions_valid.check.sql: passed",
        "20_checks: finished with exit code 0",
        "stage 30 started",
        "30_funnel.sql: retrying (attempt 2 of 3)",
        "30_funnel.sql: retrying (attempt 3 of 3)",
        "run failed after",
        "step ",
    ]
    positions = [next(i for i, n in enumerate(notices) if n.startswith(prefix)) for prefix in in_order]
    assert positions == sorted(positions), notices
    assert notices.count("30_funnel.sql: failed with exit code 3") == 3
    assert not any("output incomplete" in n for n in notices), notices
    assert [n for n in notices if n.startswith("step ")] == [notices[positions[-1]]]  # one table
    (failed,) = [n for n in notices if n.startswith("run failed after")]
    assert failed.endswith(": 30_funnel.sql exited with code 3")
    rows = table_rows(result)
    assert list(rows) == [
        "10_events.sql", "10_users.sql", "20_sessions.hql", "check 20_sessions_valid.check.sql",
        "30_funnel.sql", "check 30_funnel_steps.check.sql",
    ]  # fmt: skip
    assert rows["10_events.sql"] == ["10", "succeeded", "2.5 s"]
    assert rows["10_users.sql"] == ["10", "succeeded", "4.0 s"]
    assert rows["check 20_sessions_valid.check.sql"] == ["20", "passed", "3.0 s"]
    # From its first start to its last end: three attempts and the two retry intervals between.
    assert rows["30_funnel.sql"] == ["30", "failed (exit 3)", "88.0 s"]
    assert rows["check 30_funnel_steps.check.sql"] == ["30", "not run", "-"]


def test_a_date_from_a_later_stage_stopped_in_a_step_shows_skipped_stopped_and_not_run(
    runner_logs: Deployment, stages_pipeline: Pipeline
) -> None:
    """--from-stage 20 in the date's input: stage 10's steps get no records and are skipped; the run
    stopped while 20_sessions.hql ran (a start, no end): it is stopped, stage 30 not run, exit 143."""
    stream = StagesStream()
    stream.runner_line("stage 10 skipped (--from-stage 20): 10_events.sql, 10_users.sql")
    stream.started("20_sessions.hql")
    stream.output(("20_sessions.hql", [("stdout", b"sessions: half")]))
    stream.ship(runner_logs)
    given = {"run_date": "2025-06-02", "batch": BATCH_ARN, "cluster": {"cluster_id": "j-1"}, "from_stage": 20}

    result = follow_stages(runner_logs, stages_pipeline, stages_history(given, None, "ABORTED"))

    assert result.code == 143, result.notices
    assert result.stdout == b"sessions: half"  # a line cut short stays as far as it came
    notices = result.notices
    assert notices[:4] == [
        "stage 10 skipped (--from-stage 20): 10_events.sql, 10_users.sql",  # the runner's line, said once
        "stage 20 started",
        "20_sessions.hql: started (spark-sql)",
        "run stopped after 0.1 min",
    ]
    rows = table_rows(result)
    assert [rows[name][1] for name in rows] == [
        "skipped",
        "skipped",
        "stopped",
        "not run",
        "not run",
        "not run",
    ]


def test_a_dates_line_in_a_range_names_the_step_that_failed_it(
    runner_logs: Deployment, stages_pipeline: Pipeline
) -> None:
    """What the range's line of an ended date reads (read_stages): the history says only that the one
    runner task failed with 65; its stream says stage 20's checks failed it, as a night's history says."""
    stream = StagesStream()
    stream.started("10_events.sql")
    stream.ended("10_events.sql", "succeeded", 0, 1.0)
    stream.started("10_users.sql")
    stream.ended("10_users.sql", "succeeded", 0, 1.0)
    stream.started("20_sessions.hql")
    stream.ended("20_sessions.hql", "timed out", None, 1.0)
    stream.ship(runner_logs)
    given = {"run_date": "2025-06-02", "batch": BATCH_ARN, "cluster": {"cluster_id": "j-1"}}
    tracker = RunTracker(stages_pipeline)
    for event in stages_history(given, 124, "FAILED"):
        tracker.apply(event)
    assert tracker.failing_step() is None and tracker.exit_code() == 124  # the task's code alone

    read_stages(runner_logs, tracker, lambda _api: None)

    failing = tracker.failing_step()
    assert failing is not None and failing.step.file_name == "20_sessions.hql"
    assert (tracker.exit_code(), failing.status.value) == (124, "timed out")
    assert tracker.failure == "20_sessions.hql exited with code 124"


def test_the_runners_own_step_records_are_read_as_the_contract_says(stages_pipeline: Pipeline) -> None:
    """The records as the runner's JsonOutput writes them (StepOutput.started/ended/retrying), not as
    this file's StagesStream does: a retried step, a timed-out one, a stage's checks, a stopped one."""
    buffer = io.BytesIO()
    json_output = JsonOutput(buffer)
    json_output.begin("nightly", "nightly-2025-06-02", run_date="2025-06-02")

    def step(file_name: str) -> Any:
        return json_output.for_step("nightly", file_name.split(".", 1)[0], "nightly-2025-06-02", file_name)

    events = step("10_events.sql")
    events.started("started (spark-sql)", 1)
    events.ended("failed (exit 2) in 1.0 s", StepEnd("failed", 2, 1.0, 1, 3))
    events.retrying("attempt 2 of 3 in 30 s", 2)
    events.started("started (spark-sql)", 2)
    events.ended("succeeded in 1.5 s", StepEnd("succeeded", 0, 1.5, 2, 3))
    users = step("10_users.sql")
    users.started("started (spark-sql)", 1)
    users.ended("timed out in 60.0 s", StepEnd("timed out", 124, 60.0, 1, 1))
    checks = step("20_checks")
    checks.started("started", in_text=False)
    checks.ended("failed (exit 65) in 2.0 s", StepEnd("failed", 65, 2.0), in_text=False)
    sessions = step("20_sessions.hql")
    sessions.started("started (spark-sql)", 1)
    sessions.ended("stopped in 3.0 s", StepEnd("stopped", 143, 3.0, 1, 3))
    tracker = RunTracker(stages_pipeline)

    said = [
        line
        for record in buffer.getvalue().splitlines()
        for line in tracker.take_stages_record(json.loads(record))
    ]

    assert "10_events.sql: retrying (attempt 2 of 3)" in said
    assert "10_users.sql: failed with exit code 124" in said
    assert "20_checks: failed with exit code 65" in said
    runs = {run.step.file_name: run for run in [*tracker.steps.values(), *tracker.checks.values()]}
    assert [(a.number, a.exit_code) for a in runs["10_events.sql"].attempts] == [(1, 2), (2, 0)]
    assert {name: run.status.value for name, run in runs.items()} == {
        "10_events.sql": "succeeded", "10_users.sql": "timed out", "20_sessions.hql": "stopped",
        "30_funnel.sql": "not run", "20_checks": "failed", "30_checks": "not run",
    }  # fmt: skip
