"""A start of a date after the next scheduled run: asked on a terminal, refused without --yes elsewhere."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from runner.__main__ import exit_code_of
from runner.deployed import DeployedRequest, next_scheduled, run_deployed
from runner.output import TextOutput
from tests.deployed.support import pipeline_of
from tests.deployed.test_deployed_cli import cli
from tests.infra.moto_harness import Harness

BERLIN = ZoneInfo("Europe/Berlin")


def next_nightly_date() -> str:
    """The date of the test pipeline's next run (cron 0 3 * * *, Europe/Berlin), worked out by hand."""
    now = datetime.now(BERLIN)
    day = now.date() if now.hour < 3 else now.date() + timedelta(days=1)
    return day.isoformat()


def refusal(later: str, scheduled: str) -> str:
    return (
        f"nightshift: error: {later} is not scheduled yet (the next scheduled run is {scheduled}'s, at 03:00"
        " Europe/Berlin): not started; add --yes to start it now"
    )


def test_a_date_after_the_next_scheduled_run_is_refused_without_yes(
    deployed: Harness, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    later = (date.today() + timedelta(days=40)).isoformat()
    before = next_nightly_date()
    code, stdout, lines = cli(deployed, capsysbinary, "--start", "--run-date", later)
    # The next run's date changes at 03:00 in Berlin: the line names the one of either side of the call.
    assert (code, stdout) == (2, b"")
    assert lines in ([refusal(later, before)], [refusal(later, next_nightly_date())]), lines
    assert deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"] == []

    code, stdout, lines = cli(deployed, capsysbinary, "--start", "--run-date", later, "--yes")
    assert code == 0, lines
    assert lines[0] == f"nightshift: run nightly-{later} started"
    (execution,) = deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]
    assert execution["name"] == f"nightly-{later}"


def test_on_a_terminal_the_user_is_asked_and_no_starts_nothing(deployed: Harness) -> None:
    later = (date.today() + timedelta(days=40)).isoformat()
    last = (date.today() + timedelta(days=41)).isoformat()
    asked: list[str] = []

    def no(question: str) -> bool:
        asked.append(question)
        return False

    err = io.BytesIO()
    output = TextOutput(io.BytesIO(), err)
    code = exit_code_of(
        lambda: run_deployed(
            pipeline_of(deployed), DeployedRequest("start", (later, last)), output, confirm=no
        ),
        output,
    )
    assert code == 2
    (question,) = asked
    assert question.startswith(f"{later}..{last} is not scheduled yet (the next scheduled run is ")
    assert question.endswith(" Europe/Berlin); start it now?")
    assert err.getvalue().decode().splitlines() == [f"nightshift: error: {later}..{last}: not started"]
    assert deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"] == []


@pytest.mark.parametrize(
    ("cron", "zone", "now", "expected"),
    [
        # Before the night's run, and after it (the next is the following night's).
        ("0 3 * * *", "Europe/Berlin", "2026-06-10T00:59:00+00:00", "2026-06-10T03:00:00+02:00"),
        ("0 3 * * *", "Europe/Berlin", "2026-06-10T01:00:00+00:00", "2026-06-11T03:00:00+02:00"),
        # 02:30 does not exist in Berlin on 2026-03-29 (the clocks spring forward): Scheduler skips it.
        ("30 2 * * *", "Europe/Berlin", "2026-03-28T23:00:00+00:00", "2026-03-30T02:30:00+02:00"),
        # Weekdays only: a Saturday's next run is Monday's.
        ("30 6 * * 1-5", "America/New_York", "2026-06-13T12:00:00+00:00", "2026-06-15T06:30:00-04:00"),
    ],
)
def test_the_next_scheduled_run(cron: str, zone: str, now: str, expected: str) -> None:
    found = next_scheduled(cron, zone, datetime.fromisoformat(now).astimezone(UTC))
    assert found is not None
    assert found == datetime.fromisoformat(expected)
    assert found.utcoffset() == datetime.fromisoformat(expected).utcoffset()
