"""RecordRun of a date of a batch whose stages ran in ONE runner task (`Run stages`, issue 22): its record
has a night's shape, built from that task's stream in moto's CloudWatch Logs.

The stream is written as the contract says the runner writes it, by the runner's own JsonOutput:
its notices (the --from-stage skip line, the end-of-run table), step output, check records, and a
`step_started`/`step_ended` record per attempt of every step and stage's checks (`step_retry`). The history is a
child's as Step Functions writes it (an ECS .sync task: TaskScheduled, TaskSubmitted, its end).
What the task never ran (skipped by from_stage, or never reached) comes from the payload's `stages`
(the pipeline's, as the state machine puts them), not from the runner's notices.

GetLogEvents reads a stream forward from its head page by page: "If you have reached the end of the
stream, it returns the same token you passed in", and a page holds at most 1 MB or 10,000 events
(Amazon CloudWatch Logs API Reference, "GetLogEvents",
https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_GetLogEvents.html).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.stepfunctions.models import stepfunctions_backends

from lambdas import record_run
from lambdas.shared import check_results
from lambdas.shared.check_results import ForwardRead, log_stream
from lambdas.shared.run_states import RUN_STAGES_STATE, STAGES_COMMAND_STATE, StepStatus
from runner.checks.run import CheckReport
from runner.execution import RunReport, StepReport, skipped_stage_line, summary_lines
from runner.model import Pipeline, load_pipeline
from runner.output import JsonOutput, StepEnd
from tests.conftest import run_cli, write_pipeline
from tests.integration.lambdas.test_lambda_run_cost import make_cluster
from tests.lambda_support import ACCOUNT, REGION

PIPELINE = load_pipeline(Path(__file__).resolve().parents[3] / "sql" / "example")
STEPS = {step.name: step for step in PIPELINE.steps}
CHECKS = {check.stage: check for check in PIPELINE.checks}
GROUP, CONTAINER = "/nightshift/example/runner", "runner"
TASK_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/nightshift/0f1e2d3c4b5a"
BATCH = "example-batch-2025-06-01-2025-06-03"
DAY = "2025-06-02"
NAME = f"example-{DAY}"
# Fargate at 0.5 vCPU and 1 GB, as the runner task (the table is the shipped one's us-east-1 prices)
CPU, MEMORY = 512, 1024


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Stream:
    """The stages task's stream, record by record, on a clock of its own (seconds after t0)."""

    def __init__(self, t0: datetime) -> None:
        self.t0 = t0
        self.clock = 0.0
        self._buffer = io.BytesIO()
        self.out = JsonOutput(self._buffer)
        self.out.begin("example", NAME, run_date=DAY)
        self.events: list[dict[str, Any]] = []

    def at(self, seconds: float) -> Stream:
        self.clock = seconds
        return self

    def _take(self) -> None:
        """The JsonOutput's new lines, each an event at the clock's time (its `time` too)."""
        when = self.t0 + timedelta(seconds=self.clock)
        for line in self._buffer.getvalue().decode().splitlines():
            record = json.loads(line)
            record["time"] = _iso(when)
            self._event(record)
        self._buffer.seek(0)
        self._buffer.truncate()

    def _event(self, record: dict[str, Any]) -> None:
        when = self.t0 + timedelta(seconds=self.clock)
        self.events.append({"timestamp": int(when.timestamp() * 1000), "message": json.dumps(record)})

    def _sink(self, step: str) -> Any:
        label = (
            f"stage {step.split('_', maxsplit=1)[0]}'s checks" if step.endswith("_checks") else _file(step)
        )
        return self.out.for_step("example", step, NAME, label)

    def started(self, step: str, attempt: int = 1) -> Stream:
        self._sink(step).started("started (spark-sql)", attempt)
        self._take()
        return self

    def ended(
        self,
        step: str,
        status: str,
        exit_code: int | None,
        seconds: float,
        attempt: int = 1,
        attempts: int = 1,
    ) -> Stream:
        end = StepEnd(status, exit_code, seconds, attempt, attempts)
        self._sink(step).ended(f"{status} in {seconds:.1f} s", end)
        self._take()
        return self

    def retry(self, step: str, attempt: int, attempts: int, interval: int) -> Stream:
        self._sink(step).retrying(f"attempt {attempt} of {attempts} in {interval} s", attempt)
        self._take()
        return self

    def output(self, step: str, stream: str, text: str) -> Stream:
        sink = self.out.for_step("example", step, NAME, _file(step))
        sink.feed(stream, text.encode() + b"\n")  # type: ignore[arg-type]
        sink.close()
        self._take()
        return self

    def check(self, stage: int, status: str, count: int) -> Stream:
        report = CheckReport(CHECKS[stage], status, count)
        self.out.result(report.record(5), [])
        self._take()
        return self

    def notice(self, line: str) -> Stream:
        self.out.notice(line)
        self._take()
        return self

    def table(self, steps: dict[str, str], checks: dict[int, str], code: int) -> Stream:
        """The runner's end-of-run table (runner.execution.summary_lines) for these statuses."""
        reports = [StepReport(step, steps.get(step.name, "not run"), seconds=1.0) for step in PIPELINE.steps]
        checked = [CheckReport(check, checks.get(check.stage, "not run")) for check in PIPELINE.checks]
        for line in summary_lines(RunReport(reports, code, checked)):
            self.notice(line)
        return self

    def put(self, logs: Any) -> str:
        stream = log_stream("example", CONTAINER, TASK_ARN)
        logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
        for start in range(0, len(self.events), 5000):
            answer = logs.put_log_events(
                logGroupName=GROUP, logStreamName=stream, logEvents=self.events[start : start + 5000]
            )
            assert not answer.get("rejectedLogEventsInfo"), answer
        return stream


def _file(step: str) -> str:
    return STEPS[step].file_name if step in STEPS else step


def _succeeded_stage(stream: Stream, start: float, steps: list[str], stage: int, seconds: float) -> float:
    """A stage whose steps ran side by side and succeeded, then its checks (if it has any) passed."""
    stream.at(start)
    for step in steps:
        stream.started(step)
    stream.at(start + seconds)
    for step in steps:
        stream.ended(step, "succeeded", 0, seconds)
    if stage not in CHECKS:
        return start + seconds
    stream.started(f"{stage}_checks").at(start + seconds + 20).check(stage, "passed", 0)
    stream.ended(f"{stage}_checks", "succeeded", 0, 20)
    return start + seconds + 20


def _history(
    t0: datetime,
    *,
    end: str,
    pulled: float,
    stopped: float,
    exit_code: int | None,
    from_stage: int | None = None,
) -> list[dict[str, Any]]:
    """A child's history: its stages command, then its one `Run stages` ECS task, ended as `end` says."""
    task = {"TaskArn": TASK_ARN, "Cpu": str(CPU), "Memory": str(MEMORY)}

    def at(seconds: float) -> datetime:
        return t0 + timedelta(seconds=seconds)

    def millis(seconds: float) -> int:
        return int(at(seconds).timestamp() * 1000)

    given: dict[str, Any] = {"run_date": DAY, "cluster": {"cluster_id": "j-SHARED"}, "batch": {"arn": BATCH}}
    if from_stage is not None:
        given["from_stage"] = from_stage
    described: dict[str, Any] = {
        **task,
        "PullStartedAt": millis(pulled),
        "StoppedAt": millis(stopped),
        "Containers": [{"ExitCode": exit_code}] if exit_code is not None else [{}],
    }
    events: list[dict[str, Any]] = [
        {"id": 1, "type": "ExecutionStarted", "timestamp": at(-60),
         "executionStartedEventDetails": {"input": json.dumps(given)}},
        {"id": 2, "type": "PassStateEntered", "timestamp": at(-2), "previousEventId": 1,
         "stateEnteredEventDetails": {"name": STAGES_COMMAND_STATE}},
        {"id": 3, "type": "PassStateExited", "timestamp": at(-2), "previousEventId": 2,
         "stateExitedEventDetails": {"name": STAGES_COMMAND_STATE}},
        {"id": 4, "type": "TaskStateEntered", "timestamp": at(-1), "previousEventId": 3,
         "stateEnteredEventDetails": {"name": RUN_STAGES_STATE}},
        {"id": 5, "type": "TaskScheduled", "timestamp": at(-1), "previousEventId": 4},
        {"id": 6, "type": "TaskStarted", "timestamp": at(-1), "previousEventId": 5},
        {"id": 7, "type": "TaskSubmitted", "timestamp": at(0), "previousEventId": 6,
         "taskSubmittedEventDetails": {"output": json.dumps({"Tasks": [task]})}},
    ]  # fmt: skip
    if end == "succeeded":
        events.append({"id": 8, "type": "TaskSucceeded", "timestamp": at(stopped + 1), "previousEventId": 7,
                       "taskSucceededEventDetails": {"output": json.dumps(described)}})  # fmt: skip
    elif end == "timed out":  # the task's TimeoutSeconds: Step Functions stops it
        events.append({"id": 8, "type": "TaskTimedOut", "timestamp": at(stopped + 1), "previousEventId": 7,
                       "taskTimedOutEventDetails": {"error": "States.Timeout", "cause": ""}})  # fmt: skip
    elif end == "failed":
        events.append({"id": 8, "type": "TaskFailed", "timestamp": at(stopped + 1), "previousEventId": 7,
                       "taskFailedEventDetails": {"error": "States.TaskFailed",
                                                  "cause": json.dumps(described)}})  # fmt: skip
    else:  # StopExecution while the task ran: no end of the task, the execution aborted
        events.append({"id": 8, "type": "ExecutionAborted", "timestamp": at(stopped + 1), "previousEventId": 7,
                       "executionAbortedEventDetails": {}})  # fmt: skip
        return events
    events.append({"id": 9, "type": "TaskStateExited", "timestamp": at(stopped + 1), "previousEventId": 8,
                   "stateExitedEventDetails": {"name": RUN_STAGES_STATE}})  # fmt: skip
    return events


@pytest.fixture
def t0() -> datetime:
    # CloudWatch Logs takes events of the last 14 days only: the run is an hour ago.
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def logs(aws) -> Any:
    client = boto3.client("logs", region_name=REGION)
    client.create_log_group(logGroupName=GROUP)
    return client


@pytest.fixture
def child(sfn, state_machine_arn, monkeypatch) -> Iterator[Any]:
    """Start the date's execution; `child(history)` gives it that history and answers its ARN."""

    def make(history: list[dict[str, Any]]) -> str:
        arn = str(
            sfn.start_execution(stateMachineArn=state_machine_arn, name=NAME, input=json.dumps({}))[
                "executionArn"
            ]
        )
        backend = stepfunctions_backends[ACCOUNT][REGION]
        for execution in backend.describe_state_machine(state_machine_arn).executions:
            if execution.name == NAME:
                monkeypatch.setattr(execution, "get_execution_history", lambda role_arn: history)
        return arn

    yield make


def _stages(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The payload's `stages`, as the state machine puts them (infra.workflow.stages_payload)."""
    return [
        {"stage": stage.number, "steps": [step.name for step in stage.steps], "checks": bool(stage.checks)}
        for stage in pipeline.stages
    ]


def _record(
    arn: str,
    lambda_context: Any,
    sfn: Any,
    emr: Any,
    logs: Any,
    now: datetime,
    pipeline: Pipeline | None = PIPELINE,
    **error: str,
) -> Any:
    """RecordRun of the child; `pipeline` None: an older deployment's payload, without `stages`."""
    payload: dict[str, Any] = {
        "pipeline": pipeline.name if pipeline is not None else "example",
        "execution_arn": arn,
        "run": {
            "run_date": DAY,
            "cluster": {"cluster_id": "j-SHARED"},
            **({"error": error} if error else {}),
        },
        "runner_task": {"cpu": CPU, "memory_mib": MEMORY},
        "batch_arn": arn.rsplit(":", 1)[0] + f":{BATCH}",
        "runner_log": {"log_group": GROUP, "container": CONTAINER},
    }
    if pipeline is not None:
        payload["stages"] = _stages(pipeline)
    return record_run.handler(payload, lambda_context, emr=emr, sfn=sfn, now=now, logs=logs)


def _whole_run(t0: datetime) -> Stream:
    stream = Stream(t0).at(0).notice("nightshift: example for 2025-06-02")
    end = _succeeded_stage(stream, 40, ["10_users", "10_events"], 10, 100)
    end = _succeeded_stage(stream, end, ["20_sessions"], 20, 200)
    end = _succeeded_stage(stream, end, ["30_funnel", "30_segments"], 30, 60)
    steps = dict.fromkeys(STEPS, "succeeded")
    return stream.at(end + 1).table(steps, dict.fromkeys(CHECKS, "passed"), 0)


def test_a_date_that_succeeded_has_every_step_its_checks_and_one_task_priced(
    child, sfn, emr, logs, t0, lambda_context
) -> None:
    stream = _whole_run(t0)
    stream.put(logs)
    arn = child(_history(t0, end="succeeded", pulled=5, stopped=470, exit_code=0))

    record = _record(arn, lambda_context, sfn, emr, logs, t0 + timedelta(seconds=500))

    assert (record["outcome"], record["failure"], record["cluster"]) == (
        "succeeded",
        None,
        {"shared_in": BATCH},
    )
    steps = record["steps"]
    assert list(steps) == ["10_users", "10_events", "20_sessions", "30_funnel", "30_segments"]
    assert {StepStatus.parse(s["status"]) for s in steps.values()} == {StepStatus.SUCCEEDED}
    assert {(s["attempts"], s["exit_code"], s["task_arn"]) for s in steps.values()} == {(1, 0, TASK_ARN)}
    assert [steps[name]["seconds"] for name in steps] == [100, 100, 200, 60, 60]
    assert {name: (s["status"], s["seconds"]) for name, s in record["checks_tasks"].items()} == {
        "10_checks": ("succeeded", 20),
        "20_checks": ("succeeded", 20),
        "30_checks": ("succeeded", 20),
    }
    # A stage from its first step's start to its checks' end, as a night's stage is.
    assert record["stages"] == {"10": 120, "20": 220, "30": 80}
    assert {label: (c["stage"], c["status"], c["count"]) for label, c in record["checks"].items()} == {
        CHECKS[10].label: (10, "passed", 0),
        CHECKS[20].label: (20, "passed", 0),
        CHECKS[30].label: (30, "passed", 0),
    }
    assert record["skipped_stages"] == []
    # The one task, from its image pull to its stop (465 s), priced once; no cluster of its own.
    cost = record["cost"]
    assert cost["fargate_task_seconds"] == 465
    assert (cost["ec2_usd"], cost["emr_usd"], record["clusters"]) == (0, 0, [])
    assert record["stages_log"]["complete"] is True
    assert record["stages_log"]["events"] == len(stream.events)


def test_a_date_whose_middle_stage_failed_names_its_step_and_error_and_the_later_stages_not_run(
    child, sfn, emr, logs, t0, lambda_context, capsys
) -> None:
    stream = Stream(t0)
    # Stage 10's steps say "exception" on stderr too: the failure's line is the failed step's own.
    stream.at(40).started("10_users").started("10_events")
    stream.at(50).output("10_events", "stderr", "WARN an exception in the shuffle was retried")
    stream.at(140).ended("10_users", "succeeded", 0, 100).ended("10_events", "succeeded", 0, 100)
    stream.started("10_checks").check(10, "passed", 0).ended("10_checks", "succeeded", 0, 1)
    stream.at(141).started("20_sessions").at(150).output("20_sessions", "stdout", "no error here: stdout")
    stream.output("20_sessions", "stderr", "26/06/02 01:00:00 INFO starting")
    stream.at(160).output(
        "20_sessions", "stderr", "FAILED: SemanticException Line 3 Table not found 'events'"
    )
    stream.output("20_sessions", "stderr", "Error: a later line")
    stream.at(171).ended("20_sessions", "failed", 3, 30)
    statuses = {"10_users": "succeeded", "10_events": "succeeded", "20_sessions": "failed (exit 3)"}
    stream.at(172).table(statuses, {10: "passed"}, 3)
    stream.put(logs)
    arn = child(_history(t0, end="failed", pulled=5, stopped=175, exit_code=3))

    record = _record(
        arn,
        lambda_context,
        sfn,
        emr,
        logs,
        t0 + timedelta(seconds=200),
        Error="States.TaskFailed",
        Cause="{}",
    )

    assert (record["outcome"], record["error"]) == ("failed", "States.TaskFailed")
    assert record["failure"] == {
        "step": "20_sessions",
        "exit_code": 3,
        "error": "States.TaskFailed",
        "line": "FAILED: SemanticException Line 3 Table not found 'events'",
        "task_arn": TASK_ARN,
    }
    steps = record["steps"]
    assert {name: (s["status"], s["attempts"]) for name, s in steps.items()} == {
        "10_users": ("succeeded", 1),
        "10_events": ("succeeded", 1),
        "20_sessions": ("failed", 1),
        "30_funnel": ("not run", 0),
        "30_segments": ("not run", 0),
    }
    # Stage 20's checks never ran (its step failed), nor stage 30's.
    assert {name: s["status"] for name, s in record["checks_tasks"].items()} == {
        "10_checks": "succeeded",
        "20_checks": "not run",
        "30_checks": "not run",
    }
    assert list(record["checks"]) == [CHECKS[10].label]
    assert record["cost"]["fargate_task_seconds"] == 170
    # Step metrics (EMF on stdout) for the steps that ran only: a step never run has no time.
    graphed = [
        json.loads(line).get("step") for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    assert sorted(step for step in graphed if step) == ["10_events", "10_users", "20_sessions"]


def test_a_retried_step_has_its_attempts_and_its_time_from_the_first_start(
    child, sfn, emr, logs, t0, lambda_context
) -> None:
    stream = Stream(t0).at(40).started("10_users").started("10_events")
    stream.at(60).output("10_events", "stderr", "ERROR: connection reset")
    stream.at(70).ended("10_events", "failed", 1, 30, attempt=1, attempts=3).retry("10_events", 2, 3, 30)
    stream.at(100).started("10_users", 1).started("10_events", 2)
    stream.at(140).ended("10_users", "succeeded", 0, 100).at(160).ended("10_events", "succeeded", 0, 60, 2, 3)
    end = _succeeded_stage(stream, 161, ["20_sessions"], 20, 100)
    end = _succeeded_stage(stream, end, ["30_funnel", "30_segments"], 30, 50)
    stream.at(end).table(dict.fromkeys(STEPS, "succeeded"), dict.fromkeys(CHECKS, "passed"), 0).put(logs)
    arn = child(_history(t0, end="succeeded", pulled=5, stopped=end + 2, exit_code=0))

    record = _record(arn, lambda_context, sfn, emr, logs, t0 + timedelta(seconds=end + 10))

    assert record["outcome"] == "succeeded" and record["failure"] is None
    retried = record["steps"]["10_events"]
    assert (retried["status"], retried["attempts"], retried["exit_code"]) == ("succeeded", 2, 0)
    assert retried["seconds"] == 120  # its first start (40 s) to its last end (160 s), the wait included
    assert record["steps"]["10_users"]["attempts"] == 1


def test_a_date_from_stage_30_calls_the_stages_before_it_skipped(
    child, sfn, emr, logs, t0, lambda_context
) -> None:
    stream = Stream(t0).at(0)
    for stage in PIPELINE.stages:
        if (stage.number or 0) < 30:
            stream.notice(skipped_stage_line(stage, 30))
    end = _succeeded_stage(stream, 30, ["30_funnel", "30_segments"], 30, 60)
    steps = {name: "skipped" if (STEPS[name].stage or 0) < 30 else "succeeded" for name in STEPS}
    stream.at(end).table(steps, {10: "skipped", 20: "skipped", 30: "passed"}, 0).put(logs)
    arn = child(_history(t0, end="succeeded", pulled=5, stopped=end + 2, exit_code=0, from_stage=30))

    record = _record(arn, lambda_context, sfn, emr, logs, t0 + timedelta(seconds=end + 10))

    assert record["outcome"] == "succeeded"
    assert record["skipped_stages"] == [10, 20]
    assert {name: (s["status"], s["attempts"]) for name, s in record["steps"].items()} == {
        "10_users": ("skipped", 0),
        "10_events": ("skipped", 0),
        "20_sessions": ("skipped", 0),
        "30_funnel": ("succeeded", 1),
        "30_segments": ("succeeded", 1),
    }
    assert {name: s["status"] for name, s in record["checks_tasks"].items()} == {
        "10_checks": "skipped",
        "20_checks": "skipped",
        "30_checks": "succeeded",
    }
    assert list(record["stages"]) == ["30"]


def test_a_stopped_date_calls_its_running_step_stopped_and_one_killed_under_it_failed(
    child, sfn, emr, logs, t0, lambda_context
) -> None:
    stream = Stream(t0)
    end = _succeeded_stage(stream, 40, ["10_users", "10_events"], 10, 100)
    # Stage 20 started and its task ended with no step_ended record (no table either).
    stream.at(end + 1).started("20_sessions").at(end + 30).output("20_sessions", "stdout", "working").put(
        logs
    )
    now = t0 + timedelta(seconds=end + 60)

    stopped = _record(child(_history(t0, end="aborted", pulled=5, stopped=end + 40, exit_code=None)),
                      lambda_context, sfn, emr, logs, now)  # fmt: skip

    steps = stopped["steps"]
    assert {name: s["status"] for name, s in steps.items()} == {
        "10_users": "succeeded",
        "10_events": "succeeded",
        "20_sessions": "stopped",
        "30_funnel": "not run",
        "30_segments": "not run",
    }
    # Its task never ended: no pull-to-stop time, no Fargate line of the record (it cost, unseen).
    assert stopped["stages_log"]["complete"] is True


def test_a_runner_killed_before_its_table_leaves_the_later_stages_not_run(
    child, sfn, emr, logs, t0, lambda_context
) -> None:
    """The runner's container killed between stages (exit 137): no skip line, no table, its stream
    ends after stage 10's records; the pipeline's stages in the payload name what never ran."""
    stream = Stream(t0)
    end = _succeeded_stage(stream, 40, ["10_users", "10_events"], 10, 100)
    stream.put(logs)
    arn = child(_history(t0, end="failed", pulled=5, stopped=end + 5, exit_code=137))
    now = t0 + timedelta(seconds=end + 60)

    record = _record(arn, lambda_context, sfn, emr, logs, now, Error="States.TaskFailed")
    older = _record(arn, lambda_context, sfn, emr, logs, now, pipeline=None, Error="States.TaskFailed")

    assert {name: (s["status"], s["attempts"]) for name, s in record["steps"].items()} == {
        "10_users": ("succeeded", 1),
        "10_events": ("succeeded", 1),
        "20_sessions": ("not run", 0),
        "30_funnel": ("not run", 0),
        "30_segments": ("not run", 0),
    }
    assert {name: s["status"] for name, s in record["checks_tasks"].items()} == {
        "10_checks": "succeeded",
        "20_checks": "not run",
        "30_checks": "not run",
    }
    assert (record["outcome"], record["skipped_stages"]) == ("failed", [])
    # An older deployment's payload has no stages: only what the stream names is in its record.
    assert list(older["steps"]) == ["10_users", "10_events"]
    assert list(older["checks_tasks"]) == ["10_checks"]


def test_a_step_left_unended_when_its_task_failed_failed_with_the_tasks_exit_code(
    child, sfn, emr, logs, t0, lambda_context
) -> None:
    stream = Stream(t0)
    end = _succeeded_stage(stream, 40, ["10_users", "10_events"], 10, 100)
    stream.at(end + 1).started("20_sessions").at(end + 30).output("20_sessions", "stdout", "working").put(
        logs
    )
    arn = child(_history(t0, end="failed", pulled=5, stopped=end + 40, exit_code=137))

    record = _record(
        arn, lambda_context, sfn, emr, logs, t0 + timedelta(seconds=end + 60), Error="States.TaskFailed"
    )

    failed = record["steps"]["20_sessions"]
    assert (failed["status"], failed["exit_code"]) == ("failed", 137)
    assert failed["seconds"] == 40  # its start to its task's end
    assert record["failure"]["step"] == "20_sessions"
    assert record["failure"]["line"] == "exit code 137"


def test_a_step_the_runner_stopped_at_its_tasks_timeout_timed_out(
    child, sfn, emr, logs, t0, lambda_context
) -> None:
    stream = Stream(t0)
    end = _succeeded_stage(stream, 40, ["10_users", "10_events"], 10, 100)
    stream.at(end + 1).started("20_sessions").at(end + 30).ended("20_sessions", "stopped", None, 29)
    stream.table(
        {"10_users": "succeeded", "10_events": "succeeded", "20_sessions": "stopped"}, {10: "passed"}, 143
    )
    stream.put(logs)
    arn = child(_history(t0, end="timed out", pulled=5, stopped=end + 31, exit_code=None))

    record = _record(
        arn, lambda_context, sfn, emr, logs, t0 + timedelta(seconds=end + 60), Error="States.Timeout"
    )

    assert {name: s["status"] for name, s in record["steps"].items()} == {
        "10_users": "succeeded",
        "10_events": "succeeded",
        "20_sessions": "timed out",
        "30_funnel": "not run",
        "30_segments": "not run",
    }
    assert (record["failure"]["step"], record["failure"]["error"]) == ("20_sessions", "States.Timeout")


def test_a_stream_past_the_bound_is_read_to_the_bound_and_the_record_says_so(
    child, sfn, emr, logs, t0, lambda_context, monkeypatch
) -> None:
    stream = Stream(t0).at(40).started("10_users").started("10_events")
    for second in range(50, 170):
        stream.at(second).output("10_events", "stdout", f"row {second}")
    stream.at(170).ended("10_users", "succeeded", 0, 130).ended("10_events", "succeeded", 0, 130)
    end = _succeeded_stage(stream, 171, ["20_sessions"], 20, 100)
    end = _succeeded_stage(stream, end, ["30_funnel", "30_segments"], 30, 50)
    stream.at(end).table(dict.fromkeys(STEPS, "succeeded"), dict.fromkeys(CHECKS, "passed"), 0).put(logs)
    arn = child(_history(t0, end="succeeded", pulled=5, stopped=end + 2, exit_code=0))
    now = t0 + timedelta(seconds=end + 10)

    whole = _record(arn, lambda_context, sfn, emr, logs, now)
    monkeypatch.setattr(check_results, "STAGES_PAGES", 2)
    monkeypatch.setattr(check_results, "STAGES_PAGE_EVENTS", 50)
    cut = _record(arn, lambda_context, sfn, emr, logs, now)

    assert whole["stages_log"]["complete"] is True and len(whole["steps"]) == 5
    assert cut["stages_log"]["complete"] is False
    assert cut["stages_log"]["events"] == 100
    assert "read the first 100 events" in cut["stages_log"]["note"]
    # What the first 100 events said: both steps of stage 10 running, nothing of the rest.
    assert {name: s["status"] for name, s in cut["steps"].items()} == {
        "10_users": "running",
        "10_events": "running",
    }
    assert cut["checks"] == {} and cut["outcome"] == "succeeded"


def test_forward_read_ends_on_the_repeated_token_and_stops_at_its_bound(logs, t0) -> None:
    stream = Stream(t0)
    for second in range(25):
        stream.at(second).notice(f"line {second}")
    name = stream.put(logs)

    whole = ForwardRead(logs, GROUP, name, pages=10, limit=10)
    lines = [record["line"] for record, _ in whole]
    assert lines == [f"line {second}" for second in range(25)]
    assert (whole.complete, whole.events) == (True, 25)
    part = ForwardRead(logs, GROUP, name, pages=2, limit=10)
    assert len(list(part)) == 20
    assert (part.complete, part.events) == (False, 20)


def test_the_batch_prices_its_dates_stages_task_and_its_shares_add_up(
    child, sfn, emr, emr_backend, logs, t0, lambda_context, state_machine_arn
) -> None:
    _whole_run(t0).put(logs)
    arn = child(_history(t0, end="succeeded", pulled=5, stopped=470, exit_code=0))
    backend = stepfunctions_backends[ACCOUNT][REGION]
    for execution in backend.describe_state_machine(state_machine_arn).executions:
        if execution.name == NAME:
            execution.start_date, execution.stop_date = (
                t0 - timedelta(seconds=60),
                t0 + timedelta(seconds=480),
            )
            execution.status = "SUCCEEDED"
    batch_arn = sfn.start_execution(stateMachineArn=state_machine_arn, name=BATCH)["executionArn"]
    cluster_id = make_cluster(emr, emr_backend, master_seconds=1800, core_seconds=1800)
    emr.add_tags(ResourceId=cluster_id, Tags=[{"Key": "nightshift:execution-arn", "Value": batch_arn}])
    now = t0 + timedelta(seconds=600)
    own = _record(arn, lambda_context, sfn, emr, logs, now)

    batch = record_run.handler(
        {
            "pipeline": "example",
            "execution_arn": batch_arn,
            "run": {"run_date": "2025-06-01", "cluster": {"cluster_id": cluster_id}},
            "runner_task": {"cpu": CPU, "memory_mib": MEMORY},
            "batch_runs": [NAME],
        },
        lambda_context,
        emr=emr,
        sfn=sfn,
        now=now,
        logs=logs,
    )

    [date] = batch["dates"]
    assert date["tasks_usd"] == pytest.approx(own["cost"]["fargate_usd"], abs=1e-4)
    assert date["tasks_usd"] > 0
    assert batch["cost"]["fargate_task_seconds"] == 465
    assert date["own_usd"] + date["start_share_usd"] == pytest.approx(batch["cost"]["total_usd"], abs=1e-3)


BASH_STEPS = {
    "10_users.sh": "echo users done\n",
    # Fails its first attempt (no mark yet), succeeds its second.
    "10_events.sh": 'if [ ! -f "$MARK" ]; then touch "$MARK"; echo "ERROR: first try" >&2; exit 1; fi\necho events\n',
    "20_sessions.sh": 'echo "WARN the shuffle was slow" >&2\necho "ERROR: no table events" >&2\nexit 3\n',
    "30_funnel.sh": "echo funnel\n",
}


def _runner_stream(logs: Any, folder: Path, *args: str, mark: Path) -> tuple[int, str]:
    """The real runner on a folder of bash steps (no JVM) as a stages task runs it; its stdout, a
    record an event (awslogs sends each line), into the stages task's stream."""
    ran = run_cli(
        folder, "--log-format", "json", "--step-retries", "--run-date", DAY, *args, env={"MARK": str(mark)}
    )
    events = []
    for line in ran.stdout.decode().splitlines():
        when = datetime.fromisoformat(json.loads(line)["time"].replace("Z", "+00:00"))
        events.append({"timestamp": int(when.timestamp() * 1000), "message": line})
    stream = log_stream(folder.name, CONTAINER, TASK_ARN)
    logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)
    logs.put_log_events(logGroupName=GROUP, logStreamName=stream, logEvents=events)
    return ran.returncode, stream


def test_the_real_runners_stream_of_a_folder_makes_the_record(
    child, sfn, emr, logs, lambda_context, tmp_path
) -> None:
    """The stream the runner itself writes (a retried step, a step failing all its attempts, a stage
    never reached), read back as the record; a second date --from-stage 30 skips stages 10 and 20."""
    folder = write_pipeline(
        tmp_path / "bashy", "[steps]\nretries = 2\nretry_interval_seconds = 1\n", BASH_STEPS
    )
    code, _ = _runner_stream(logs, folder, mark=tmp_path / "mark")
    now = datetime.now(UTC)
    arn = child(_history(now - timedelta(seconds=60), end="failed", pulled=1, stopped=50, exit_code=code))

    record = _record(
        arn, lambda_context, sfn, emr, logs, now, pipeline=load_pipeline(folder), Error="States.TaskFailed"
    )

    assert code == 3
    assert {name: (s["status"], s["attempts"], s["exit_code"]) for name, s in record["steps"].items()} == {
        "10_users": ("succeeded", 1, 0),
        "10_events": ("succeeded", 2, 0),
        "20_sessions": ("failed", 3, 3),
        "30_funnel": ("not run", 0, None),
    }
    assert record["failure"]["step"] == "20_sessions"
    assert record["failure"]["line"] == "ERROR: no table events"
    assert record["stages_log"]["complete"] is True


def test_the_real_runners_stream_from_stage_30(child, sfn, emr, logs, lambda_context, tmp_path) -> None:
    folder = write_pipeline(
        tmp_path / "bashy", "[steps]\nretries = 2\nretry_interval_seconds = 1\n", BASH_STEPS
    )
    code, _ = _runner_stream(logs, folder, "--from-stage", "30", mark=tmp_path / "mark")
    now = datetime.now(UTC)
    history = _history(
        now - timedelta(seconds=60), end="succeeded", pulled=1, stopped=50, exit_code=code, from_stage=30
    )

    record = _record(child(history), lambda_context, sfn, emr, logs, now, pipeline=load_pipeline(folder))

    assert (code, record["outcome"], record["skipped_stages"]) == (0, "succeeded", [10, 20])
    assert {name: (s["status"], s["attempts"]) for name, s in record["steps"].items()} == {
        "10_users": ("skipped", 0),
        "10_events": ("skipped", 0),
        "20_sessions": ("skipped", 0),
        "30_funnel": ("succeeded", 1),
    }
