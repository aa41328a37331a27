"""A deployed run read from its history events and log records: outcomes moto cannot produce, and odd records."""

from __future__ import annotations

import io
import json
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import botocore.exceptions
import pytest

from runner.deployed.discovery import Clients, Deployment
from runner.deployed.events import EXIT_RUN_FAILED, EXIT_RUN_STOPPED, RunTracker
from runner.deployed.follow import Follower, Polling
from runner.execution import summary_lines
from runner.model import Pipeline, load_pipeline
from runner.output import JsonOutput, TextOutput

T0 = datetime(2025, 6, 1, 3, 0, tzinfo=UTC)
TASK = "arn:aws:ecs:us-east-1:123456789012:task/runner/abc123"


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    folder = tmp_path / "nightly"
    folder.mkdir()
    (folder / "pipeline.toml").write_text("[steps]\nretries = 1\n")
    (folder / "10_load.sql").write_text("SELECT 1;\n")
    (folder / "20_report.sh").write_text("echo report\n")
    return load_pipeline(folder)


class History:
    """Events as Step Functions records them: ids in order, each naming the one before it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, after: int | None = None, **details: Any) -> int:
        number = len(self.events) + 1
        event = {"id": number, "previousEventId": number - 1 if after is None else after, "type": kind}
        event["timestamp"] = T0 + timedelta(seconds=10 * number)
        event.update(details)
        self.events.append(event)
        return number

    def state(self, kind: str, name: str, **extra: Any) -> int:
        return self.add(kind, stateEnteredEventDetails={"name": name, "input": json.dumps(extra)})

    def fold(self, pipeline: Pipeline) -> tuple[RunTracker, list[str]]:
        tracker = RunTracker(pipeline)
        said = [n.message for e in self.events for n in tracker.apply(e)]
        return tracker, said


def started(history: History, **given: Any) -> None:
    history.add(
        "ExecutionStarted",
        executionStartedEventDetails={"input": json.dumps({"run_date": "2025-06-01", **given})},
    )


def test_a_step_timed_out_by_step_functions_is_124_and_shown_as_timed_out(pipeline: Pipeline) -> None:
    history = History()
    started(history)
    history.state("TaskStateEntered", "Run 10_load")
    history.add("TaskScheduled")
    history.add(
        "TaskSubmitted", taskSubmittedEventDetails={"output": json.dumps({"Tasks": [{"TaskArn": TASK}]})}
    )
    history.add("TaskTimedOut", taskTimedOutEventDetails={"error": "States.Timeout", "cause": ""})
    history.add("ExecutionFailed", executionFailedEventDetails={"error": "States.Timeout", "cause": ""})

    tracker, said = history.fold(pipeline)

    assert tracker.exit_code() == 124
    assert "10_load.sql: failed with exit code 124" in said
    rows = summary_lines(tracker.report(T0 + timedelta(hours=1)))
    assert rows[1].split()[:4] == ["10_load.sql", "10", "timed", "out"]
    assert rows[2].split()[:4] == ["20_report.sh", "20", "not", "run"]


def test_a_task_that_never_started_has_no_code_but_its_reason(pipeline: Pipeline) -> None:
    history = History()
    started(history)
    history.state("TaskStateEntered", "Run 10_load")
    history.add("TaskScheduled")
    cause = {
        "TaskArn": TASK,
        "StoppedReason": "CannotPullContainerError: image not found",
        "Containers": [{}],
    }
    history.add(
        "TaskFailed", taskFailedEventDetails={"error": "States.TaskFailed", "cause": json.dumps(cause)}
    )
    history.add("TaskScheduled")  # the retry
    history.add(
        "TaskFailed", taskFailedEventDetails={"error": "States.TaskFailed", "cause": json.dumps(cause)}
    )
    history.add(
        "ExecutionFailed",
        executionFailedEventDetails={"error": "States.TaskFailed", "cause": json.dumps(cause)},
    )

    tracker, said = history.fold(pipeline)

    assert "10_load.sql: failed with no exit code (CannotPullContainerError: image not found)" in said
    assert "10_load.sql: retrying (attempt 2 of 2)" in said
    assert tracker.exit_code() == 1
    assert said[-1].endswith("10_load.sql exited with code 1")


@pytest.mark.parametrize(
    ("kind", "code", "line"),
    [
        ("ExecutionAborted", EXIT_RUN_STOPPED, "run stopped after"),
        ("ExecutionTimedOut", 124, "run timed out after"),
        ("ExecutionSucceeded", 0, "run succeeded after"),
    ],
)
def test_how_the_execution_ended_gives_the_exit_code(
    pipeline: Pipeline, kind: str, code: int, line: str
) -> None:
    history = History()
    started(history)
    history.add(kind)

    tracker, said = history.fold(pipeline)

    assert tracker.exit_code() == code
    assert said[-1].startswith(line)


def test_a_failure_outside_any_step_is_69_with_error_and_cause(pipeline: Pipeline) -> None:
    history = History()
    started(history)
    history.state("TaskStateEntered", "Preflight")
    history.add("TaskScheduled")
    history.add("TaskFailed", taskFailedEventDetails={"error": "TransientAwsError", "cause": "throttled"})
    history.add("TaskScheduled")  # Retry of the Lambda state
    history.add(
        "ExecutionFailed",
        executionFailedEventDetails={"error": "PreflightRefused", "cause": "nightly-2025-06-01 runs"},
    )

    tracker, said = history.fold(pipeline)

    assert tracker.exit_code() == EXIT_RUN_FAILED == 69
    assert "Preflight: retried after TransientAwsError" in said
    assert said[-1].endswith(": PreflightRefused: nightly-2025-06-01 runs")


def test_skipped_stages_show_as_skipped(pipeline: Pipeline) -> None:
    history = History()
    started(history, from_stage=20)
    history.state("PassStateEntered", "Skip Stage 10")
    history.state("ParallelStateEntered", "Stage 20")

    tracker, said = history.fold(pipeline)

    assert tracker.from_stage == 20
    assert said == ["stage 10 skipped", "stage 20 started"]
    assert summary_lines(tracker.report(T0))[1].split()[2] == "skipped"


def test_a_queued_run_says_what_it_waits_for_once_and_again_when_that_changes(pipeline: Pipeline) -> None:
    history = History()
    started(history)
    full = "1 run of pipeline 'nightly' still running and max_concurrent_runs is 1: arn:a"
    for reason in (full, full, full.replace("arn:a", "arn:b"), ""):
        history.state("TaskStateEntered", "Preflight")
        result = {"proceed": not reason, "reason": reason, "wait": bool(reason)}
        history.add(
            "TaskStateExited",
            stateExitedEventDetails={"name": "Preflight", "output": json.dumps({"preflight": result})},
        )

    _tracker, said = history.fold(pipeline)

    assert said == [
        f"waiting for a free slot: {full}",
        f"waiting for a free slot: {full.replace('arn:a', 'arn:b')}",
    ]


class FakeLogs:
    """GetLogEvents over one scripted stream: every call returns what was put since the last token."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages

    def get_log_events(self, **args: Any) -> dict[str, Any]:
        start = int(args.get("nextToken", "f/0").split("/")[1])
        page = self.messages[start:]
        return {"events": [{"message": m} for m in page], "nextForwardToken": f"f/{start + len(page)}"}


class FakeSfn:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def get_execution_history(self, **_args: Any) -> dict[str, Any]:
        return {"events": list(reversed(self.events))}


def follow_one_step(pipeline: Pipeline, messages: list[str], out: BinaryIO, err: BinaryIO) -> RunTracker:
    """Follow a run of one step, 10_load, whose log stream holds `messages`, to its end."""
    history = History()
    started(history)
    history.state("TaskStateEntered", "Run 10_load")
    history.add("TaskScheduled")
    history.add(
        "TaskSubmitted", taskSubmittedEventDetails={"output": json.dumps({"Tasks": [{"TaskArn": TASK}]})}
    )
    history.add(
        "TaskSucceeded", taskSucceededEventDetails={"output": json.dumps({"Containers": [{"ExitCode": 0}]})}
    )
    history.add("ExecutionSucceeded")
    clients = Clients("us-east-1", FakeSfn(history.events), FakeLogs(messages), None)
    deployment = Deployment(
        "nightly", "Nightshift", "arn:aws:states:us-east-1:1:stateMachine:N-nightly", "g", clients
    )
    follower = Follower(
        deployment, pipeline, "arn:aws:states:us-east-1:1:execution:N-nightly:x", TextOutput(out, err),
        Polling(interval=0.01, settle=0.0), threading.Event(),
    )  # fmt: skip
    return follower.run()


def test_interleaved_fragments_and_foreign_lines_come_back_on_their_streams(pipeline: Pipeline) -> None:
    buffer = io.BytesIO()
    step = JsonOutput(buffer).for_step("nightly", "10_load", "run", "10_load.sql")
    long_out = b"o" * 100_000
    step.feed("stdout", long_out[:50_000])
    step.feed("stderr", b"warning between two fragments\n")
    step.feed("stdout", long_out[50_000:] + b"\n")
    step.close()
    records = buffer.getvalue().decode().splitlines()
    assert sum('"part"' in r for r in records) > 2
    messages = [*records[:2], "Traceback (most recent call last): not JSON", *records[2:]]
    out, err = io.BytesIO(), io.BytesIO()

    tracker = follow_one_step(pipeline, messages, out, err)

    assert tracker.exit_code() == 0
    assert out.getvalue() == long_out + b"\n"
    lines = err.getvalue().split(b"\n")
    assert b"warning between two fragments" in lines
    assert b"Traceback (most recent call last): not JSON" in lines
    assert lines.index(b"nightshift: 10_load.sql: finished with exit code 0") > lines.index(
        b"warning between two fragments"
    )


class CountingSink(io.RawIOBase):
    """A console that keeps nothing: how many bytes it got, and how they end."""

    def __init__(self) -> None:
        self.count = 0
        self.tail = b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.count += len(data)
        self.tail = (self.tail + bytes(data))[-64:]
        return len(data)


def test_following_a_very_long_line_holds_one_fragment_of_it_not_the_line(pipeline: Pipeline) -> None:
    mib = 1024 * 1024
    buffer = io.BytesIO()
    step = JsonOutput(buffer).for_step("nightly", "10_load", "run", "10_load.sql")
    for _ in range(32):
        step.feed("stdout", b"x" * mib)
    step.feed("stdout", b"END\n")
    step.close()
    messages = buffer.getvalue().decode().splitlines()
    del buffer
    assert len(messages) > 1000  # the line came as fragments
    out, err = CountingSink(), CountingSink()

    tracemalloc.start()
    try:
        tracker = follow_one_step(pipeline, messages, cast(BinaryIO, out), cast(BinaryIO, err))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert tracker.exit_code() == 0
    assert (out.count, out.tail[-4:]) == (32 * mib + 4, b"END\n")
    # Holding the line until its end took twice its size (the fragments, then the joined bytes).
    assert peak < 4 * mib, peak


def test_a_missing_fragment_is_said_and_the_rest_of_the_line_still_printed(pipeline: Pipeline) -> None:
    buffer = io.BytesIO()
    step = JsonOutput(buffer).for_step("nightly", "10_load", "run", "10_load.sql")
    step.feed("stdout", b"a" * 100_000 + b"\nafter\n")
    step.close()
    records = buffer.getvalue().decode().splitlines()
    assert '"part": 2' in records[1]
    out, err = io.BytesIO(), io.BytesIO()

    tracker = follow_one_step(pipeline, [records[0], *records[2:]], out, err)

    assert tracker.exit_code() == 0
    lines = out.getvalue().split(b"\n")
    assert lines[-2:] == [b"after", b""]
    assert len(lines[0]) == 100_000 - len(json.loads(records[1])["line"])
    assert b"nightshift: 10_load.sql: output incomplete in " in err.getvalue()
    assert b"stdout: fragment 3 after part 1" in err.getvalue()


def test_an_unreachable_aws_endpoint_is_one_line_and_255(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.__main__ import exit_code_of  # noqa: PLC0415
    from runner.deployed import DeployedRequest, run_deployed  # noqa: PLC0415

    for name, value in {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    err = io.BytesIO()

    output = TextOutput(io.BytesIO(), err)
    code = exit_code_of(lambda: run_deployed(pipeline, DeployedRequest("history"), output), output)

    assert code == 255
    assert err.getvalue().decode().splitlines() == [
        'nightshift: error: cannot reach AWS: Could not connect to the endpoint URL: "http://127.0.0.1:9/"'
    ]


class ThrottledOnceSfn(FakeSfn):
    def __init__(self, events: list[dict[str, Any]]) -> None:
        super().__init__(events)
        self.calls = 0

    def get_execution_history(self, **args: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls == 1:
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetExecutionHistory"
            )
        return super().get_execution_history(**args)


def test_throttling_beyond_the_clients_retries_skips_a_round_and_the_follow_goes_on(
    pipeline: Pipeline,
) -> None:
    history = History()
    started(history)
    history.add("ExecutionSucceeded")
    sfn = ThrottledOnceSfn(history.events)
    clients = Clients("us-east-1", sfn, FakeLogs([]), None)
    deployment = Deployment(
        "nightly", "Nightshift", "arn:aws:states:us-east-1:1:stateMachine:N-nightly", "g", clients
    )
    err = io.BytesIO()
    follower = Follower(
        deployment, pipeline, "arn:aws:states:us-east-1:1:execution:N-nightly:x", TextOutput(io.BytesIO(), err),
        Polling(interval=0.01, settle=0.0), threading.Event(),
    )  # fmt: skip

    assert follower.run().exit_code() == 0
    assert sfn.calls == 2
    assert err.getvalue().decode().startswith("nightshift: run succeeded after")
