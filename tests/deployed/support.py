"""Helpers of the deployed command line's tests: the CLI's entry point over moto, its output, a Ctrl-C."""

from __future__ import annotations

import io
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from runner.__main__ import exit_code_of
from runner.deployed import DeployedRequest, Polling, run_deployed
from runner.model import Pipeline, load_pipeline
from runner.output import TextOutput
from tests.infra.moto_harness import Harness

PIPELINE = "nightly"
# Fast enough for moto, and every wait is on an event or a bounded poll.
FAST = Polling(
    interval=0.05, idle_max=0.2, settle=0.0, range_interval=0.05, cluster_poll=0.05, cluster_wait=5.0
)


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def notices(self) -> list[str]:
        return [
            line.removeprefix(b"nightshift: ").decode()
            for line in self.stderr.split(b"\n")
            if line.startswith(b"nightshift: ")
        ]

    def step_stderr(self) -> bytes:
        """stderr without the runner's own lines: what the steps wrote."""
        kept = [line for line in self.stderr.split(b"\n")[:-1] if not line.startswith(b"nightshift: ")]
        return b"".join(line + b"\n" for line in kept)


class Watched(io.BytesIO):
    """A console stream that opens a gate once `marker` has been written to it."""

    def __init__(self, marker: bytes | None = None, gate: threading.Event | None = None) -> None:
        super().__init__()
        self.marker = marker
        self.gate = gate

    def write(self, data: Any) -> int:
        written = super().write(data)
        if self.marker is not None and self.gate is not None and self.marker in self.getvalue():
            self.gate.set()
        return written


def ctrl_c_when(pressed: threading.Event) -> threading.Thread:
    """A user who presses Ctrl-C (SIGINT to this process) once `pressed` is set; join it afterwards."""

    def press() -> None:
        if pressed.wait(30):
            os.kill(os.getpid(), signal.SIGINT)

    user = threading.Thread(target=press)
    user.start()
    return user


def pipeline_of(harness: Harness) -> Pipeline:
    return load_pipeline(harness.synth.pipelines_dir / harness.pipeline)


def run_cli(
    harness: Harness,
    request: DeployedRequest,
    *,
    stdout: io.BytesIO | None = None,
    stderr: io.BytesIO | None = None,
    polling: Polling = FAST,
    count: Any = None,
) -> Result:
    out = stdout or io.BytesIO()
    err = stderr or io.BytesIO()
    output = TextOutput(out, err)
    code = exit_code_of(
        lambda: run_deployed(pipeline_of(harness), request, output, polling=polling, count=count), output
    )
    return Result(code, out.getvalue(), err.getvalue())


def start_directly(harness: Harness, run_date: str, name: str | None = None) -> str:
    """An execution started as the schedule starts one (not through the CLI)."""
    import json  # noqa: PLC0415

    return str(
        harness.sfn.start_execution(
            stateMachineArn=harness.state_machine_arn,
            name=name or f"{harness.pipeline}-{run_date}",
            input=json.dumps({"run_date": run_date}),
        )["executionArn"]
    )
