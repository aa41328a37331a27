"""The deployed mode through the real command line (`python -m runner ... --deployed`) against moto."""

from __future__ import annotations

import re

import pytest

from runner.__main__ import main
from tests.deployed.support import pipeline_of
from tests.infra.moto_harness import Harness

DATE = "2025-06-01"


def cli(
    harness: Harness, capsysbinary: pytest.CaptureFixture[bytes], *argv: str
) -> tuple[int, bytes, list[str]]:
    capsysbinary.readouterr()
    code = main([str(pipeline_of(harness).folder), "--deployed", *argv])
    stdout, stderr = capsysbinary.readouterr()
    # moto runs the Lambdas in this process: their JSON logs and EMF metrics are not the CLI's output.
    ours = b"".join(line for line in stdout.splitlines(keepends=True) if not line.startswith(b'{"'))
    return code, ours, stderr.decode(errors="replace").splitlines()


def test_a_rerun_from_a_stage_through_the_command_line(
    deployed: Harness, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    first = deployed.run(DATE)
    assert first["status"] == "SUCCEEDED"

    code, stdout, lines = cli(deployed, capsysbinary, "--start", "--run-date", DATE, "--from-stage", "30")
    assert (code, stdout) == (4, b"")
    assert lines == [
        f"nightshift: error: {DATE} already ran (nightly-{DATE}: succeeded);"
        f" add --rerun to run it again as nightly-{DATE}-r2"
    ]

    code, stdout, lines = cli(
        deployed, capsysbinary, "--start", "--run-date", DATE, "--from-stage", "30", "--rerun"
    )
    assert (code, stdout) == (0, b""), "\n".join(lines)
    shown = [
        re.sub(
            r"\$\d+\.\d+",
            "$X",
            re.sub(r"j-[0-9A-Z]+", "j-ID", re.sub(r"\d+\.\d (min|s)\b", r"N \1", re.sub(" +", " ", line))),
        )
        for line in lines
    ]
    skipped = [line for line in shown if " skipped" in line and line.startswith("nightshift: stage ")]
    assert [line.split(" skipped")[0] for line in skipped] == ["nightshift: stage 10", "nightshift: stage 20"]
    rest = [line for line in shown if line not in skipped]
    # Stage 30's two steps are parallel branches: either may finish first, so their lines are
    # compared in order of name (both must be there, once each, between the stage and the teardown).
    rest[5:7] = sorted(rest[5:7])
    assert rest == [
        f"nightshift: run nightly-{DATE}-r2 started",
        f"nightshift: following run nightly-{DATE}-r2",
        "nightshift: cluster j-ID requested",
        "nightshift: cluster j-ID ready after N min",
        "nightshift: stage 30 started",
        "nightshift: 30_funnel.sql: finished with exit code 0",
        "nightshift: 30_segments.sql: finished with exit code 0",
        "nightshift: terminating cluster j-ID",
        "nightshift: run cost $X (EMR, EC2 and Fargate; Spot at the On-Demand price)",
        "nightshift: run succeeded after N min",
        "nightshift: step stage status duration",
        "nightshift: 10_events.sql 10 skipped -",
        "nightshift: 10_users.sql 10 skipped -",
        "nightshift: 20_sessions.hql 20 skipped -",
        "nightshift: 30_funnel.sql 30 succeeded N s",
        "nightshift: 30_segments.sql 30 succeeded N s",
    ]
    rerun = deployed.sfn.describe_execution(
        executionArn=first["executionArn"].replace(f"nightly-{DATE}", f"nightly-{DATE}-r2")
    )
    assert rerun["status"] == "SUCCEEDED"
    assert '"from_stage": 30' in rerun["input"]
    entered = deployed.states_entered(rerun["executionArn"])
    assert "Skip Stage 10" in entered and "Skip Stage 20" in entered and "Stage 30" in entered
    assert "Stage 10" not in entered and "Stage 20" not in entered
    (_, cluster) = sorted(deployed.clusters(), key=lambda c: c["Status"]["Timeline"]["CreationDateTime"])
    assert cluster["Status"]["State"] == "TERMINATED"

    code, stdout, lines = cli(deployed, capsysbinary, "--history")
    assert (code, stdout) == (0, b"")
    assert [line.split()[1:4] for line in lines] == [
        ["date", "run", "status"],
        [DATE, f"nightly-{DATE}-r2", "succeeded"],
        [DATE, f"nightly-{DATE}", "succeeded"],
    ]


def test_deployed_alone_looks_and_starts_nothing(
    deployed: Harness, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    folder = pipeline_of(deployed).folder
    code, stdout, lines = cli(deployed, capsysbinary)
    assert (code, stdout) == (0, b""), lines
    assert lines[0] == "nightshift: no runs of nightly yet in us-east-1"
    assert lines[1].startswith("nightshift: no run of ")
    assert lines[1].endswith(f" yet; start it: python -m runner {folder} --deployed --start")
    assert deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"] == []

    assert deployed.run(DATE)["status"] == "SUCCEEDED"
    code, stdout, lines = cli(deployed, capsysbinary, "--run-date", DATE)
    assert (code, stdout) == (0, b""), lines
    assert [line.split()[1:4] for line in lines] == [
        ["date", "run", "status"],
        [DATE, f"nightly-{DATE}", "succeeded"],
    ]
    assert len(deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]) == 1
