"""Stage and step durations, attempts and Fargate task time from an execution history as AWS writes it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from lambdas.shared.cost import TaskUsage
from lambdas.shared.run_record import read_timeline
from lambdas.shared.run_states import StepStatus

T0 = datetime(2025, 3, 30, 1, 0, tzinfo=UTC)


def millis(seconds: float) -> int:
    """Step Functions passes ECS task times on as epoch milliseconds."""
    return int((T0 + timedelta(seconds=seconds)).timestamp() * 1000)


class History:
    """Events with ids, previous ids and timestamps, the way GetExecutionHistory returns them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def add(self, kind: str, at: float, previous: int | None, **details: Any) -> int:
        event: dict[str, Any] = {
            "id": len(self.events) + 1,
            "type": kind,
            "timestamp": T0 + timedelta(seconds=at),
        }
        if previous is not None:
            event["previousEventId"] = previous
        if details:
            key = kind[0].lower() + kind[1:]
            key = {"taskStateEntered": "stateEntered", "parallelStateEntered": "stateEntered",
                   "choiceStateEntered": "stateEntered", "taskStateExited": "stateExited",
                   "parallelStateExited": "stateExited"}.get(key, key)  # fmt: skip
            event[f"{key}EventDetails"] = details
        self.events.append(event)
        return int(event["id"])

    def task(self, previous: int, at: float, pulled: float, stopped: float, *, ok: bool) -> int:
        """One attempt of a step's Fargate task: scheduled, started, submitted, then its end."""
        task = {
            "TaskArn": "arn:aws:ecs:us-east-1:123456789012:task/runner/abc",
            "Cpu": "512",
            "Memory": "1024",
        }
        scheduled = self.add("TaskScheduled", at, previous)
        started = self.add("TaskStarted", at + 1, scheduled)
        submitted = self.add("TaskSubmitted", at + 2, started, output=json.dumps({"Tasks": [task]}))
        ended = {**task, "PullStartedAt": millis(pulled), "StoppedAt": millis(stopped)}
        if ok:
            return self.add("TaskSucceeded", stopped + 1, submitted, output=json.dumps(ended))
        return self.add(
            "TaskFailed", stopped + 1, submitted, error="States.TaskFailed", cause=json.dumps(ended)
        )


def test_a_retried_step_in_a_stage() -> None:
    history = History()
    start = history.add("ExecutionStarted", 0, None)
    stage = history.add("ParallelStateEntered", 600, start, name="Stage 10")
    branches = history.add("ParallelStateStarted", 600, stage)
    step = history.add("TaskStateEntered", 600, branches, name="Run 10_a")
    failed = history.task(step, 600, pulled=605, stopped=699, ok=False)
    succeeded = history.task(failed, 730, pulled=735, stopped=898, ok=True)
    exited = history.add("TaskStateExited", 900, succeeded, name="Run 10_a")
    done = history.add("ParallelStateSucceeded", 900, exited)
    left = history.add("ParallelStateExited", 901, done, name="Stage 10")
    history.add("ChoiceStateEntered", 901, left, name="Stage 20?")

    timeline = read_timeline(history.events, T0 + timedelta(seconds=1000))
    assert timeline.started == T0
    assert timeline.stages == {"10": 301}
    (record,) = timeline.steps.values()
    assert list(timeline.steps) == ["10_a"]
    # The failed first attempt is retried: the step succeeded, its last attempt's task is the record's.
    assert (record.seconds, record.attempts, record.status) == (300, 2, StepStatus.SUCCEEDED)
    assert record.task_arn is not None and record.reason == ""
    # From the image pull to the stop, each attempt; 512 CPU units and 1024 MiB.
    assert timeline.tasks == (TaskUsage("10_a", 0.5, 1.0, 94), TaskUsage("10_a", 0.5, 1.0, 163))


def test_a_failing_step_ends_its_stage_without_an_exit_event() -> None:
    history = History()
    start = history.add("ExecutionStarted", 0, None)
    stage = history.add("ParallelStateEntered", 100, start, name="Stage 20")
    branches = history.add("ParallelStateStarted", 100, stage)
    step = history.add("TaskStateEntered", 100, branches, name="Run 20_b")
    failed = history.task(step, 100, pulled=110, stopped=400, ok=False)
    history.add("ParallelStateFailed", 402, failed)

    timeline = read_timeline(history.events, T0 + timedelta(seconds=500))
    (record,) = timeline.steps.values()
    assert list(timeline.steps) == ["20_b"]
    assert (record.seconds, record.attempts, record.status) == (301, 1, StepStatus.FAILED)
    assert record.reason == "States.TaskFailed" and record.task_arn is not None
    assert timeline.stages == {"20": 302}
    assert [task.seconds for task in timeline.tasks] == [290]


def test_tasks_without_their_size_take_the_runner_task_size() -> None:
    history = History()
    start = history.add("ExecutionStarted", 0, None)
    step = history.add("TaskStateEntered", 10, start, name="Run 10_a")
    scheduled = history.add("TaskScheduled", 10, step)
    submitted = history.add("TaskSubmitted", 11, scheduled, output=json.dumps({"Tasks": [{"TaskArn": "t"}]}))
    history.add("TaskSucceeded", 71, submitted, output=json.dumps({"TaskArn": "t"}))
    timeline = read_timeline(history.events, T0 + timedelta(seconds=100), task_size=(256, 512))
    # No pull or stop time either: what Step Functions saw, from submission to the end.
    assert timeline.tasks == (TaskUsage("10_a", 0.25, 0.5, 60),)
