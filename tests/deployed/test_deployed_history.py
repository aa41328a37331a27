"""--history in moto: each finished run read from RecordRun's record, a run without one from its history."""

from __future__ import annotations

from typing import Any

import pytest

from runner.deployed import DeployedRequest
from runner.deployed.discovery import Clients
from runner.deployed.events import RecordedRun
from runner.deployed.run_states import StepStatus
from runner.deployed.runs import RECORD_EVENTS
from tests.deployed.support import run_cli, start_directly
from tests.deployed.test_deployed_runs import status_after
from tests.infra.moto_harness import Harness, StepScript


def _count_history_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Each GetExecutionHistory the CLI makes: its execution and the events AWS would send for it.

    moto answers every call with the whole history, oldest first, whatever maxResults and reverseOrder
    say; AWS sends at most maxResults (100 by default), newest first with reverseOrder ("get-execution-history",
    AWS CLI Command Reference, https://docs.aws.amazon.com/cli/latest/reference/stepfunctions/get-execution-history.html).
    """
    reads: list[tuple[str, int]] = []
    asked: dict[int, dict[str, Any]] = {}
    make = Clients.make

    def before(params: dict[str, Any], **_: Any) -> None:
        asked[0] = dict(params)

    def after(parsed: dict[str, Any], **_: Any) -> None:
        params = asked.pop(0)
        reads.append((params["executionArn"], min(len(parsed["events"]), params.get("maxResults") or 100)))

    def counted(region: str | None) -> Clients:
        clients = make(region)
        clients.sfn.meta.events.register("before-parameter-build.states.GetExecutionHistory", before)
        clients.sfn.meta.events.register("after-call.states.GetExecutionHistory", after)
        return clients

    monkeypatch.setattr(Clients, "make", counted)
    return reads


def test_history_reads_a_few_events_of_each_recorded_run_and_replays_only_a_run_without_a_record(
    deployed: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two finished runs (one succeeded, one failed in a step) are read from their records: one call of
    at most RECORD_EVENTS events each, where a replay reads every event of each. A run stopped while
    its step ran has no record (Step Functions runs no Catch on a stop, so RecordRun never ran): it is
    replayed, and a line after the table says so. The table's lines are what a replay gave."""
    assert deployed.run("2025-06-01")["status"] == "SUCCEEDED"
    deployed.faults.exit_codes["20_sessions.hql"] = 7
    deployed.faults.scripts["20_sessions.hql"] = StepScript(chunks=[("stderr", b"Error in query: boom\n")])
    failed = deployed.run("2025-06-02")
    assert failed["status"] == "FAILED"
    held = StepScript(gate_after=0, gate_timeout=600)
    deployed.faults.scripts["10_users.sql"] = held
    stopped = start_directly(deployed, "2025-06-03")
    try:
        assert held.reached_gate.wait(300)
        deployed.sfn.stop_execution(executionArn=stopped, error="Test.Stopped", cause="stopped by the test")
    finally:
        held.gate.set()
    # StopExecution answers at once; moto's interpreter ends the execution a moment later.
    assert status_after(deployed, stopped, "ABORTED") == "ABORTED"
    executions = deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]
    recorded = {e["executionArn"]: len(deployed.history(e["executionArn"])) for e in executions}
    reads = _count_history_reads(monkeypatch)

    result = run_cli(deployed, DeployedRequest("history", history_count=10))

    assert result.code == 0, result.notices
    assert len(result.notices) == 5, result.notices
    header, newest, failed_row, oldest, replayed = result.notices
    assert header.split()[:3] == ["date", "run", "status"]
    assert newest.split()[:3] == ["2025-06-03", "nightly-2025-06-03", "aborted"]
    assert failed_row.split()[:3] == ["2025-06-02", "nightly-2025-06-02", "failed"]
    assert "20_sessions.hql (exit 7)" in failed_row and " $0." in failed_row
    assert "/log-events/nightly$252Frunner$252F" in failed_row.split()[-1]
    assert oldest.split()[:3] == ["2025-06-01", "nightly-2025-06-01", "succeeded"]
    assert " $0." in oldest and " - " in oldest
    assert (
        replayed == "nightly-2025-06-03: no run record (stopped before RecordRun ran); read its whole history"
    )

    by_run: dict[str, list[int]] = {}
    for arn, events in reads:
        by_run.setdefault(arn, []).append(events)
    finished = [arn for arn in recorded if arn != stopped]
    assert len(finished) == 2
    for arn in finished:
        assert by_run[arn] == [RECORD_EVENTS], by_run
        assert recorded[arn] > RECORD_EVENTS  # what a replay of it reads
    # The stopped run: the few newest events, then all of them.
    assert by_run[stopped][0] == RECORD_EVENTS and sum(by_run[stopped][1:]) == recorded[stopped]


def test_a_record_is_read_into_step_statuses_and_an_unreadable_one_says_why() -> None:
    """A record from before step statuses (a stack not redeployed) or with a status this CLI does not
    know is refused in words --history puts on its line (the run is then replayed)."""
    with pytest.raises(ValueError, match="its record has no step statuses"):
        RecordedRun.of({"steps": {"10_users": {"seconds": 1.0, "attempts": 1}}, "cost": {"total_usd": 0.1}})
    with pytest.raises(ValueError, match="unknown step status 'paused'"):
        RecordedRun.of({"failure": None, "steps": {"10_users": {"status": "paused"}}})
    recorded = RecordedRun.of(
        {
            "failure": {"step": "20_sessions", "exit_code": None, "error": "States.Timeout"},
            "steps": {"20_sessions": {"status": "timed out", "exit_code": None, "task_arn": "arn:task/1"}},
            "cost": {"total_usd": 0.5},
        }
    )
    step = recorded.steps["20_sessions"]
    assert (recorded.failing, step.status, step.shown_exit_code) == ("20_sessions", StepStatus.TIMED_OUT, 124)
    assert (recorded.cost_usd, recorded.error) == (0.5, "States.Timeout")
