"""Following a deployed run, in moto: the lag from CloudWatch Logs to the console, and the API calls it costs.

A moto execution stays RUNNING (a Wait state) while a writer thread puts the runner's JSON
records into a log stream at a steady rate, then nothing for a while (a quiet step). The real
Follower (runner/deployed/follow.py) polls the execution's history and the stream at its default
intervals and prints to a console stream that notes when each line arrives. Reported: the lag
from put_log_events returning to the line being printed (median, p95), and GetExecutionHistory /
GetLogEvents calls per minute, while lines arrive and while the step is quiet.

moto cannot run the ECS task of a RunStep without the test harness's patches (benches do not
import tests/), so the step's start (TaskStateEntered, TaskScheduled, TaskSubmitted with its task
ARN) is handed to the follower's tracker as Step Functions would record it; everything else is
polled for real.

    .venv/bin/python bench/follow_bench.py --active-seconds 60 --idle-seconds 60 --lines-per-second 5
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import boto3
from moto import mock_aws

from runner.deployed.discovery import Clients, Deployment
from runner.deployed.follow import Follower, Polling
from runner.model import load_pipeline
from runner.output import JsonOutput, TextOutput

REGION = "us-east-1"
PIPELINE = "bench"
GROUP = "/nightshift/bench/runner"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/runner/0123456789abcdef0123456789abcdef"


class Console(io.RawIOBase):
    """A console that notes, for each line `<seq> <sent>`, how long after it was sent it was printed."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._tail = b""

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        now = time.monotonic()
        lines = (self._tail + bytes(data)).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            _seq, sent = line.split()
            self.lags.append(now - float(sent))
        return len(data)


def make_pipeline(folder: Path) -> Path:
    pipeline = folder / PIPELINE
    pipeline.mkdir()
    (pipeline / "10_step.sql").write_text("SELECT 1;\n")
    return pipeline


def step_events(started: datetime) -> list[dict[str, object]]:
    """What Step Functions records as the RunStep of 10_step starts (ids above moto's own)."""
    submitted = json.dumps({"Tasks": [{"TaskArn": TASK_ARN}]})
    return [
        {"id": 1001, "previousEventId": 0, "type": "TaskStateEntered", "timestamp": started,
         "stateEnteredEventDetails": {"name": "Run 10_step", "input": "{}"}},
        {"id": 1002, "previousEventId": 1001, "type": "TaskScheduled", "timestamp": started},
        {"id": 1003, "previousEventId": 1002, "type": "TaskSubmitted", "timestamp": started,
         "taskSubmittedEventDetails": {"output": submitted}},
    ]  # fmt: skip


def write_lines(logs: object, stream: str, stop_at: float, rate: float, sent: list[float]) -> None:
    """The runner's JSON records, one event per line as awslogs sends them, `rate` lines a second."""
    buffer = io.BytesIO()
    step = JsonOutput(buffer).for_step(PIPELINE, "10_step", "bench-run", "10_step.sql")
    seq = 0
    while time.monotonic() < stop_at:
        now = time.monotonic()
        step.feed("stdout", b"%d %.6f\n" % (seq, now))
        record = buffer.getvalue().rstrip(b"\n").decode()
        buffer.seek(0)
        buffer.truncate()
        logs.put_log_events(  # type: ignore[attr-defined]
            logGroupName=GROUP,
            logStreamName=stream,
            logEvents=[{"timestamp": int(time.time() * 1000), "message": record}],
        )
        sent.append(now)
        seq += 1
        time.sleep(max(0.0, 1 / rate - (time.monotonic() - now)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--active-seconds", type=float, default=60.0)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--lines-per-second", type=float, default=5.0)
    args = parser.parse_args()
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}.items():
        os.environ.setdefault(name, value)
    polling = Polling()
    with (
        tempfile.TemporaryDirectory() as folder,
        mock_aws(config={"stepfunctions": {"execute_state_machine": True}}),
    ):
        pipeline = load_pipeline(make_pipeline(Path(folder)))
        sfn = boto3.client("stepfunctions", region_name=REGION)
        logs = boto3.client("logs", region_name=REGION)
        total = args.active_seconds + args.idle_seconds
        machine = sfn.create_state_machine(
            name=f"Bench-{PIPELINE}",
            definition=json.dumps(
                {
                    "StartAt": "Step",
                    "States": {"Step": {"Type": "Wait", "Seconds": int(total) + 60, "End": True}},
                }
            ),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=machine, name=f"{PIPELINE}-2025-06-01", input="{}")[
            "executionArn"
        ]
        logs.create_log_group(logGroupName=GROUP)
        deployment = Deployment(PIPELINE, "Bench", machine, GROUP, Clients(REGION, sfn, logs, None))
        stream = deployment.log_stream(TASK_ARN)
        logs.create_log_stream(logGroupName=GROUP, logStreamName=stream)

        calls: Counter[tuple[str, str]] = Counter()
        phase = {"name": "active"}
        console = Console()
        follower = Follower(
            deployment,
            pipeline,
            arn,
            TextOutput(console, io.BytesIO()),  # type: ignore[arg-type]
            polling,
            threading.Event(),
            count=lambda api: calls.update([(phase["name"], api)]),
        )
        for event in step_events(datetime.now(UTC)):
            follower.notices.extend(follower.tracker.apply(event))

        begin = time.monotonic()
        sent: list[float] = []
        writer = threading.Thread(
            target=write_lines, args=(logs, stream, begin + args.active_seconds, args.lines_per_second, sent)
        )
        writer.start()

        def end_phases() -> None:
            time.sleep(args.active_seconds)
            phase["name"] = "idle"
            time.sleep(args.idle_seconds)
            phase["name"] = "end"
            sfn.stop_execution(executionArn=arn)

        threading.Thread(target=end_phases, daemon=True).start()
        follower.run()
        writer.join()

    lags = sorted(console.lags)
    p95 = lags[int(0.95 * (len(lags) - 1))]
    print(
        f"poll interval {polling.interval} s (idle: backing off x{polling.backoff} to {polling.idle_max} s)"
    )
    print(f"lines: {len(sent)} sent, {len(lags)} printed")
    print(
        f"lag put_log_events -> printed: median {statistics.median(lags):.2f} s, "
        f"p95 {p95:.2f} s, max {lags[-1]:.2f} s"
    )
    for name, seconds in (("active", args.active_seconds), ("idle", args.idle_seconds)):
        per_minute = {
            api: calls[(name, api)] * 60 / seconds for api in ("GetExecutionHistory", "GetLogEvents")
        }
        said = ", ".join(f"{api} {rate:.1f}/min" for api, rate in per_minute.items())
        print(f"{name}: {said}")


if __name__ == "__main__":
    main()
