"""A whole run's step records in JSON (step_started, step_ended, step_retry, a stage's checks) and --step-retries."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner.deployed.run_states import StepStatus, checks_step_name
from runner.execution import (
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    Invocation,
    Outcome,
    RunPlan,
    StepResult,
    StopRequest,
    attempt_status,
    checks_name,
    run_pipeline,
    summary_lines,
)
from runner.model import load_pipeline
from runner.output import JsonOutput, Output, StepOutput, TextOutput
from tests.conftest import run_cli, start_cli, write_pipeline

RUN_DATE = "2026-03-01"
_MARKER = re.compile(r"'(nightshift-check-[0-9a-f]+-\d+)-count'")


class ClusterDouble:
    """Stands in for the cluster at unit level: scripted exit codes and outcomes per step; a check
    file is answered as spark-sql answers it (a count line per check), with a scripted count."""

    parallel = False

    def __init__(
        self,
        results: dict[str, StepResult | list[StepResult]] | None = None,
        counts: dict[int, int] | None = None,
    ) -> None:
        self.results = results or {}
        #: failing rows per stage's checks (0: they pass)
        self.counts = counts or {}
        self.ran: list[str] = []

    def describe(self, invocation: Invocation) -> str:
        return invocation.step.name

    def run(self, invocation: Invocation, output: StepOutput, stop: StopRequest) -> StepResult:
        step = invocation.step
        self.ran.append(step.name)
        if step.file_name.endswith(".check.sql"):
            count = self.counts.get(step.stage or 0, 0)
            for marker in _MARKER.findall(step.path.read_text()):
                output.feed("stdout", f"{marker}-count\t{count}\n".encode())
            return StepResult(0)
        output.feed("stdout", f"{step.name} ran\n".encode())
        result = self.results.get(step.name, StepResult(0))
        if isinstance(result, list):  # one result per attempt
            result = result.pop(0)
        if result.outcome is Outcome.STOPPED:
            stop.trigger(15)
        return result


def _pipeline(tmp_path: Path) -> Path:
    folder = tmp_path / "nightly"
    folder.mkdir()
    for name in ("10_a.sql", "10_b.sql", "20_c.sql", "30_d.sql"):
        (folder / name).write_text("SELECT 1;\n")
    (folder / "20_rows.check.sql").write_text("SELECT 1 AS id WHERE false\n")
    return folder


def _run(
    tmp_path: Path,
    executor: ClusterDouble,
    output: Output,
    *,
    from_stage: int | None = None,
    retries: bool = False,
) -> int:
    folder = _pipeline(tmp_path)
    (folder / "pipeline.toml").write_text("[steps]\nretries = 1\nretry_interval_seconds = 1\n")
    pipeline = load_pipeline(folder)
    plan = RunPlan.make(
        pipeline, run_date=RUN_DATE, run_id="r1", local=False, overrides={}, from_stage=from_stage
    )
    plan = replace(plan, step_retries=retries)
    output.begin(pipeline.name, plan.run_id, run_date=RUN_DATE)
    report = run_pipeline(plan, executor, output, StopRequest())
    for line in summary_lines(report):
        output.notice(line)
    return report.exit_code


def _json_run(
    tmp_path: Path, executor: ClusterDouble, *, from_stage: int | None = None, retries: bool = False
) -> tuple[int, list[dict[str, Any]]]:
    stdout = io.BytesIO()
    code = _run(tmp_path, executor, JsonOutput(stdout), from_stage=from_stage, retries=retries)
    return code, [json.loads(line) for line in stdout.getvalue().splitlines()]


def _events(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each event record as (event, step, status or attempt, exit code) in the order written."""
    return [
        (r["event"], r["step"], r.get("status", r["attempt"]), r.get("exit_code"))
        for r in records
        if "event" in r
    ]


def test_the_status_values_are_the_state_machines_step_statuses() -> None:
    for code in (0, 1, 3, 65, EXIT_TIMEOUT, EXIT_UNREACHABLE):
        for outcome in Outcome:
            status = attempt_status(code, outcome)
            expected = StepStatus.STOPPED if outcome is Outcome.STOPPED else StepStatus.of_exit(code)
            if outcome is Outcome.TIMED_OUT:
                expected = StepStatus.TIMED_OUT
            assert StepStatus.parse(status) is expected, (code, outcome)
    assert checks_name(30) == checks_step_name(30) == "30_checks"


def test_every_step_and_the_stages_checks_start_and_end_once(tmp_path: Path) -> None:
    code, records = _json_run(tmp_path, ClusterDouble())
    assert code == 0
    assert _events(records) == [
        ("step_started", "10_a", 1, None),
        ("step_ended", "10_a", "succeeded", 0),
        ("step_started", "10_b", 1, None),
        ("step_ended", "10_b", "succeeded", 0),
        ("step_started", "20_c", 1, None),
        ("step_ended", "20_c", "succeeded", 0),
        ("step_started", "20_checks", 1, None),
        ("step_ended", "20_checks", "succeeded", 0),
        ("step_started", "30_d", 1, None),
        ("step_ended", "30_d", "succeeded", 0),
    ]
    ended = next(r for r in records if r.get("event") == "step_ended")
    assert set(ended) == {
        "time", "pipeline", "step", "run_id", "run_date", "stream", "line",
        "event", "status", "exit_code", "seconds", "attempt", "attempts",
    }  # fmt: skip
    assert (ended["pipeline"], ended["run_id"], ended["run_date"], ended["stream"]) == (
        "nightly", "r1", RUN_DATE, "nightshift",
    )  # fmt: skip
    assert re.fullmatch(r"10_a\.sql: succeeded in \d+\.\d s", ended["line"])
    assert (ended["attempt"], ended["attempts"]) == (1, 1) and isinstance(ended["seconds"], float)
    # The check's own record comes between its stage's checks' start and end, as --checks-only writes it.
    around = [
        (r.get("event"), r["stream"])
        for r in records
        if r["stream"] == "check" or (r.get("step") == "20_checks" and "event" in r)
    ]
    assert around == [("step_started", "nightshift"), (None, "check"), ("step_ended", "nightshift")]
    (check,) = [r for r in records if r["stream"] == "check"]
    assert (check["stage"], check["status"], check["count"]) == (20, "passed", 0)


def test_a_failed_step_ends_failed_and_the_later_stages_have_no_records(tmp_path: Path) -> None:
    code, records = _json_run(tmp_path, ClusterDouble({"10_b": StepResult(3)}))
    assert code == 3
    assert _events(records) == [
        ("step_started", "10_a", 1, None),
        ("step_ended", "10_a", "succeeded", 0),
        ("step_started", "10_b", 1, None),
        ("step_ended", "10_b", "failed", 3),
    ]
    assert not [r for r in records if r.get("step") in ("20_c", "20_checks", "30_d")]


def test_a_timed_out_step_ends_timed_out_with_124(tmp_path: Path) -> None:
    executor = ClusterDouble({"20_c": StepResult(EXIT_TIMEOUT, Outcome.TIMED_OUT)})
    code, records = _json_run(tmp_path, executor)
    assert code == EXIT_TIMEOUT
    (ended,) = [r for r in records if r.get("event") == "step_ended" and r["step"] == "20_c"]
    assert (ended["status"], ended["exit_code"]) == ("timed out", 124)
    assert ended["line"].startswith("20_c.sql: timed out in ")
    # The stage's checks did not run after a failed step.
    assert not [r for r in records if r.get("step") in ("20_checks", "30_d")]


def test_a_timed_out_attempt_is_retried_and_a_stopped_one_is_not(tmp_path: Path) -> None:
    timed_out = StepResult(EXIT_TIMEOUT, Outcome.TIMED_OUT)
    executor = ClusterDouble({"10_a": [timed_out, StepResult(0)], "20_c": [StepResult(143, Outcome.STOPPED)]})
    code, records = _json_run(tmp_path, executor, retries=True)
    assert code == 143
    assert executor.ran == ["10_a", "10_a", "10_b", "20_c"]
    assert [(e, step, what) for e, step, what, _ in _events(records)] == [
        ("step_started", "10_a", 1),
        ("step_ended", "10_a", "timed out"),
        ("step_retry", "10_a", 2),
        ("step_started", "10_a", 2),
        ("step_ended", "10_a", "succeeded"),
        ("step_started", "10_b", 1),
        ("step_ended", "10_b", "succeeded"),
        ("step_started", "20_c", 1),
        ("step_ended", "20_c", "stopped"),
    ]


def test_a_failed_error_check_ends_the_checks_failed_with_65(tmp_path: Path) -> None:
    code, records = _json_run(tmp_path, ClusterDouble(counts={20: 4}))
    assert code == 65
    assert _events(records)[-2:] == [
        ("step_started", "20_checks", 1, None),
        ("step_ended", "20_checks", "failed", 65),
    ]
    (ended,) = [r for r in records if r.get("event") == "step_ended" and r["step"] == "20_checks"]
    assert ended["line"].startswith("stage 20's checks: failed (exit 65) in ")
    (check,) = [r for r in records if r["stream"] == "check"]
    assert (check["status"], check["count"]) == ("failed", 4)
    assert not [r for r in records if r.get("step") == "30_d"]


def test_a_stage_skipped_by_from_stage_has_no_records(tmp_path: Path) -> None:
    code, records = _json_run(tmp_path, ClusterDouble(), from_stage=30)
    assert code == 0
    assert _events(records) == [("step_started", "30_d", 1, None), ("step_ended", "30_d", "succeeded", 0)]
    assert not [r for r in records if r.get("step") in ("10_a", "10_b", "20_c", "20_checks")]


def test_text_output_says_what_it_said_before(tmp_path: Path) -> None:
    # These lines are the runner's before step records existed, byte for byte (timings aside).
    stdout, stderr = io.BytesIO(), io.BytesIO()
    code = _run(tmp_path, ClusterDouble({"30_d": StepResult(3)}, {20: 0}), TextOutput(stdout, stderr))
    assert code == 3
    assert stdout.getvalue() == b"10_a ran\n10_b ran\n20_c ran\n30_d ran\n"
    text = re.sub(r"\d+\.\d s", "T s", stderr.getvalue().decode())
    assert text.splitlines() == [
        "nightshift: 10_a.sql: started (spark-sql)",
        "nightshift: 10_a.sql: succeeded in T s",
        "nightshift: 10_b.sql: started (spark-sql)",
        "nightshift: 10_b.sql: succeeded in T s",
        "nightshift: 20_c.sql: started (spark-sql)",
        "nightshift: 20_c.sql: succeeded in T s",
        "nightshift: 20_rows.check.sql: passed",
        "nightshift: 30_d.sql: started (spark-sql)",
        "nightshift: 30_d.sql: failed (exit 3) in T s",
        "nightshift: step                     stage  status           duration",
        "nightshift: 10_a.sql                 10     succeeded        T s",
        "nightshift: 10_b.sql                 10     succeeded        T s",
        "nightshift: 20_c.sql                 20     succeeded        T s",
        "nightshift: check 20_rows.check.sql  20     passed           T s",
        "nightshift: 30_d.sql                 30     failed (exit 3)  T s",
    ]


# --step-retries, through the command line with bash steps on the local executor (no JVM).

FLAKY = """\
#!/bin/bash
echo "attempt" >> {count}
if [ -e {mark} ]; then echo "second time lucky"; exit 0; fi
touch {mark}
echo "not yet" >&2
exit 3
"""


def _flaky_pipeline(tmp_path: Path, toml: str, flaky: str | None = None) -> Path:
    flaky = flaky or FLAKY.format(count=tmp_path / "count", mark=tmp_path / "mark")
    return write_pipeline(tmp_path / "nightly", toml, {"10_flaky.sh": flaky, "10_steady.sh": "echo steady\n"})


def _records(stdout: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def _attempts(tmp_path: Path) -> int:
    return len((tmp_path / "count").read_text().splitlines())


RETRY_TOML = "[steps]\nretries = 2\nretry_interval_seconds = 1\n"


def test_step_retries_runs_a_failed_step_again_and_says_so(tmp_path: Path) -> None:
    folder = _flaky_pipeline(tmp_path, RETRY_TOML)
    done = run_cli(
        folder, "--log-format", "json", "--step-retries", "--no-wait", "--run-date", RUN_DATE,
        "--run-id", "x", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout.decode()[-2000:]
    assert _attempts(tmp_path) == 2
    records = _records(done.stdout)
    flaky = [
        (r["event"], r.get("status"), r.get("exit_code"), r["attempt"], r.get("attempts"))
        for r in records
        if r["step"] == "10_flaky" and "event" in r
    ]
    assert flaky == [
        ("step_started", None, None, 1, None),
        ("step_ended", "failed", 3, 1, 3),
        ("step_retry", None, None, 2, None),
        ("step_started", None, None, 2, None),
        ("step_ended", "succeeded", 0, 2, 3),
    ]
    (retry,) = [r for r in records if r.get("event") == "step_retry"]
    assert retry["line"] == "10_flaky.sh: attempt 2 of 3 in 1 s"
    steady = [(r["event"], r.get("attempts")) for r in records if r["step"] == "10_steady" and "event" in r]
    assert steady == [("step_started", None), ("step_ended", 3)]
    # The summary shows the last attempt.
    row = next(r["line"] for r in records if r["line"].startswith("10_flaky.sh "))
    assert "succeeded" in row


def test_step_retries_in_text_says_each_retry_and_the_last_attempts_exit(tmp_path: Path) -> None:
    always = f"echo attempt >> {tmp_path / 'count'}\nexit 4\n"
    folder = _flaky_pipeline(tmp_path, "[steps]\nretries = 1\nretry_interval_seconds = 1\n", always)
    done = run_cli(folder, "--step-retries", "--run-date", RUN_DATE, cwd=tmp_path)
    assert done.returncode == 4
    assert _attempts(tmp_path) == 2
    lines = done.stderr.decode().splitlines()
    assert lines.count("nightshift: 10_flaky.sh: attempt 2 of 2 in 1 s") == 1
    assert (
        len([line for line in lines if line.startswith("nightshift: 10_flaky.sh: failed (exit 4) in ")]) == 2
    )
    assert not any("attempt 3" in line for line in lines)


def test_without_step_retries_a_failed_step_runs_once(tmp_path: Path) -> None:
    folder = _flaky_pipeline(tmp_path, RETRY_TOML)
    done = run_cli(folder, "--log-format", "json", "--run-date", RUN_DATE, cwd=tmp_path)
    assert done.returncode == 3
    assert _attempts(tmp_path) == 1
    records = _records(done.stdout)
    assert not [r for r in records if r.get("event") == "step_retry"]
    (ended,) = [r for r in records if r.get("event") == "step_ended" and r["step"] == "10_flaky"]
    assert (ended["attempt"], ended["attempts"]) == (1, 1)


def test_a_step_file_is_retried_too(tmp_path: Path) -> None:
    folder = _flaky_pipeline(tmp_path, RETRY_TOML)
    done = run_cli(folder / "10_flaky.sh", "--step-retries", "--run-date", RUN_DATE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    assert _attempts(tmp_path) == 2
    assert b"nightshift: 10_flaky.sh: attempt 2 of 3 in 1 s\n" in done.stderr


def _lines(process: subprocess.Popen[bytes]) -> Iterator[dict[str, Any]]:
    assert process.stdout is not None
    for line in process.stdout:
        yield json.loads(line)


def test_a_stop_during_the_retry_wait_ends_the_run_at_once(tmp_path: Path) -> None:
    folder = _flaky_pipeline(tmp_path, "[steps]\nretries = 2\nretry_interval_seconds = 3600\n")
    process = start_cli(
        folder, "--log-format", "json", "--step-retries", "--run-date", RUN_DATE, cwd=tmp_path
    )
    try:
        records = _lines(process)
        retry = next(r for r in records if r.get("event") == "step_retry")
        assert retry["attempt"] == 2
        process.send_signal(signal.SIGTERM)
        asked = time.monotonic()
        rest = list(records)
        assert process.wait(timeout=60) == 143
        # Not the hour's wait: well under it, even on a loaded machine.
        assert time.monotonic() - asked < 30
    finally:
        process.kill()
        process.wait()
    assert _attempts(tmp_path) == 1
    assert not [r for r in rest if r.get("event") in ("step_started", "step_retry")]
    assert any(r["line"] == "stopped by signal 15" for r in rest)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--checks-only"], "nightshift: error: --step-retries: not with --checks-only"),
        (["-e", "SELECT 1"], "nightshift: error: -e: not with --step-retries"),
        (["--deployed"], "nightshift: error: --step-retries: not with --deployed"),
        (
            ["--host", "127.0.0.1", "--keep-remote"],
            "nightshift: error: --step-retries: not with --keep-remote",
        ),
    ],
)
def test_step_retries_where_nothing_is_retried_is_one_line(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    folder = _flaky_pipeline(tmp_path, RETRY_TOML)
    (folder / "10_rows.check.sql").write_text("SELECT 1 AS id WHERE false\n")
    done = run_cli(folder, "--step-retries", *extra, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines
    assert not (tmp_path / "count").exists()
