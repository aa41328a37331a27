"""Pipeline runs: stage order, a failed step fails the run after its stage, and the summary table."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from runner.errors import UsageError
from runner.execution import (
    Invocation,
    Outcome,
    RunPlan,
    StepResult,
    StopRequest,
    check_from_stage,
    failure_detail,
    run_pipeline,
    summary_lines,
)
from runner.model import Pipeline, load_pipeline
from runner.output import StepOutput, TextOutput


class ScriptedExecutor:
    """Stands in for a cluster: each step prints its name and exits with a scripted code."""

    parallel = False

    def __init__(self, codes: dict[str, int], stop_after: str = "") -> None:
        self.codes = codes
        self.ran: list[str] = []
        self.stop_after = stop_after

    def describe(self, invocation: Invocation) -> str:
        return invocation.step.name

    def run(self, invocation: Invocation, output: StepOutput, stop: StopRequest) -> StepResult:
        self.ran.append(invocation.step.name)
        output.feed("stdout", f"{invocation.step.name}\n".encode())
        if invocation.step.name == self.stop_after:
            stop.trigger(15)
            return StepResult(stop.exit_code, Outcome.STOPPED)
        return StepResult(self.codes.get(invocation.step.name, 0))


def pipeline(tmp_path: Path) -> Pipeline:
    for name in ("10_a.sql", "10_b.sql", "20_c.sql", "20_d.sql", "30_e.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    return load_pipeline(tmp_path)


def run(tmp_path: Path, executor: ScriptedExecutor):
    p = pipeline(tmp_path)
    stdout, stderr = io.BytesIO(), io.BytesIO()

    plan = RunPlan.make(p, run_date="2026-01-01", run_id="r1", local=True, overrides={})
    report = run_pipeline(plan, executor, TextOutput(stdout, stderr), StopRequest())
    return report, stdout.getvalue().decode(), stderr.getvalue().decode()


def test_all_stages_run_in_order(tmp_path: Path) -> None:
    executor = ScriptedExecutor({})
    report, stdout, _ = run(tmp_path, executor)
    assert executor.ran == ["10_a", "10_b", "20_c", "20_d", "30_e"]
    assert stdout == "10_a\n10_b\n20_c\n20_d\n30_e\n"
    assert report.exit_code == 0
    assert [r.status for r in report.reports] == ["succeeded"] * 5


def test_failed_step_finishes_its_stage_then_stops_the_run(tmp_path: Path) -> None:
    executor = ScriptedExecutor({"20_c": 3, "20_d": 4})
    report, _, stderr = run(tmp_path, executor)
    assert executor.ran == ["10_a", "10_b", "20_c", "20_d"]
    assert report.exit_code == 3  # the first failing step's own exit code
    assert [r.status for r in report.reports] == [
        "succeeded", "succeeded", "failed (exit 3)", "failed (exit 4)", "not run"
    ]  # fmt: skip
    assert "nightshift: 20_c.sql: failed (exit 3) in" in stderr
    table = summary_lines(report)
    assert table[0].split() == ["step", "stage", "status", "duration"]
    assert table[3].split()[:4] == ["20_c.sql", "20", "failed", "(exit"]
    assert table[5].split() == ["30_e.sql", "30", "not", "run", "-"]


def test_stop_request_ends_the_run_with_the_signal_code(tmp_path: Path) -> None:
    executor = ScriptedExecutor({}, stop_after="10_a")
    report, _, _ = run(tmp_path, executor)
    assert executor.ran == ["10_a"]
    assert report.exit_code == 143
    assert [r.status for r in report.reports] == ["stopped"] + ["not run"] * 4


def test_from_stage_skips_the_stages_before_it_and_says_so(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    stdout, stderr = io.BytesIO(), io.BytesIO()
    executor = ScriptedExecutor({})
    plan = RunPlan.make(p, run_date="2026-01-01", run_id="r1", local=True, overrides={}, from_stage=20)
    report = run_pipeline(plan, executor, TextOutput(stdout, stderr), StopRequest())
    assert executor.ran == ["20_c", "20_d", "30_e"]
    assert report.exit_code == 0
    assert stderr.getvalue().decode().splitlines()[0] == (
        "nightshift: stage 10 skipped (--from-stage 20): 10_a.sql, 10_b.sql"
    )
    assert [r.status for r in report.reports] == ["skipped"] * 2 + ["succeeded"] * 3
    table = summary_lines(report)
    assert table[1].split() == ["10_a.sql", "10", "skipped", "-"]
    assert table[2].split() == ["10_b.sql", "10", "skipped", "-"]
    assert failure_detail(report) == ""


def test_failure_detail_names_the_first_step_that_failed(tmp_path: Path) -> None:
    report, _, _ = run(tmp_path, ScriptedExecutor({"20_d": 4}))
    assert failure_detail(report) == "20_d.sql failed (exit 4)"
    stopped, _, _ = run(tmp_path, ScriptedExecutor({}, stop_after="10_a"))
    assert failure_detail(stopped) == "10_a.sql stopped"


def test_from_stage_must_be_a_stage_of_a_pipeline_folder(tmp_path: Path) -> None:
    p = pipeline(tmp_path)
    check_from_stage(p, 30, whole_pipeline=True)
    with pytest.raises(UsageError) as caught:
        check_from_stage(p, 25, whole_pipeline=True)
    assert str(caught.value) == f"--from-stage 25: {p.name} has no stage 25 (its stages: 10, 20, 30)"
    single = load_pipeline(tmp_path / "20_c.sql")
    with pytest.raises(UsageError) as caught:
        check_from_stage(single, 20, whole_pipeline=False)
    assert str(caught.value) == "--from-stage 20: only for a pipeline folder, not a single step file"
