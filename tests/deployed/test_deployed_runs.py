"""Deployed runs in moto: backfill with concurrency, rerun names, from-stage, stop, history, discovery."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from moto import mock_aws
from moto.emr.models import ElasticMapReduceBackend

from runner.__main__ import exit_code_of
from runner.deployed import DeployedRequest, run_deployed
from runner.model import load_pipeline
from runner.output import TextOutput
from tests.deployed.support import (
    FAST,
    Watched,
    ctrl_c_when,
    run_cli,
    start_directly,
)
from tests.infra.moto_harness import Harness, StepScript, set_moto_env
from tests.support.aws import REGION, Synthesis

DATE = "2025-06-01"


def status_after(harness: Harness, arn: str, wanted: str, timeout: float = 120.0) -> str:
    """The execution's status once it is `wanted`, or after `timeout` (moto has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while (status := harness.sfn.describe_execution(executionArn=arn)["status"]) != wanted:
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return str(status)


def test_backfill_runs_at_most_max_concurrent_runs_dates_at_once(adhoc: Harness) -> None:
    # Each run's step takes a moment, so runs started together overlap.
    adhoc.faults.scripts["10_export.sh"] = StepScript(chunks=[("stdout", b"exported\n")], hold_seconds=0.3)
    dates = ("2025-06-01", "2025-06-02", "2025-06-03")

    result = run_cli(adhoc, DeployedRequest("start", dates))

    assert result.code == 0, result.notices
    # Seen from moto at each step's start: never two runs of one date, never more than two runs.
    seen = adhoc.faults.running_at_steps
    assert len(seen) == 3
    assert max(len(running) for running in seen) == 2
    for running in seen:
        assert len({name.removeprefix("adhoc-")[:10] for name in running}) == len(running)
    names = sorted(
        e["name"] for e in adhoc.sfn.list_executions(stateMachineArn=adhoc.state_machine_arn)["executions"]
    )
    assert names == [f"adhoc-{d}" for d in dates]
    notices = result.notices
    # adhoc keeps its tables in the cluster's own metastore: one cluster per date, and the line says why.
    assert notices[0] == (
        'backfill of 3 dates, at most 2 at once, one cluster per date: metastore = "cluster" keeps the tables'
        " in the cluster's own metastore, and a shared cluster would carry one date's tables into the next"
    )
    ended = [n for n in notices if n.startswith("run date 20")]
    assert len(ended) == 3
    assert all(": succeeded in " in n for n in ended)
    assert notices[-1] == "3 dates: 3 succeeded, 0 failed"
    assert b"exported" not in result.stdout  # a range prints per-date lines, not interleaved step output
    assert {c["Status"]["State"] for c in adhoc.clusters()} == {"TERMINATED"}


def test_ctrl_c_during_a_backfill_leaves_the_started_dates_running_and_says_what_was_not_started(
    adhoc: Harness,
) -> None:
    adhoc.faults.scripts["10_export.sh"] = StepScript(gate_after=0, gate_timeout=60)
    interrupt = threading.Event()
    stderr = Watched(b"run adhoc-2025-06-01 started", interrupt)

    sender = ctrl_c_when(interrupt)
    dates = ("2025-06-01", "2025-06-02", "2025-06-03")
    result = run_cli(adhoc, DeployedRequest("start", dates, concurrency=1), stderr=stderr)
    sender.join()

    assert result.code == 130
    (execution,) = adhoc.sfn.list_executions(stateMachineArn=adhoc.state_machine_arn)["executions"]
    assert (execution["name"], execution["status"]) == ("adhoc-2025-06-01", "RUNNING")
    assert result.notices[-2] == "3 dates: 0 succeeded, 0 failed, 3 not run"
    folder = _shown(adhoc)
    assert result.notices[-1] == (
        f"detached; adhoc-2025-06-01 goes on in AWS. Reattach: python -m runner {folder} --deployed --follow "
        f"--run-date 2025-06-01; stop it: python -m runner {folder} --deployed --stop --run-date 2025-06-01; "
        f"not started: 2025-06-02..2025-06-03 (start: python -m runner {folder} --deployed --start "
        "--run-date 2025-06-02..2025-06-03)"
    )


def _shown(harness: Harness) -> str:
    from runner.deployed import _shown_path  # noqa: PLC0415

    return _shown_path(harness.synth.pipelines_dir / harness.pipeline)


def test_backfill_reports_a_failed_date_and_exits_non_zero(adhoc: Harness) -> None:
    adhoc.faults.exit_codes["10_export.sh"] = 5

    result = run_cli(adhoc, DeployedRequest("start", ("2025-06-01", "2025-06-02"), concurrency=1))

    assert result.code == 5
    assert "run date 2025-06-01: failed (exit 5)" in "\n".join(result.notices)
    assert any(n.endswith("10_export.sh failed (exit 5)") for n in result.notices)
    assert result.notices[-1] == "2 dates: 0 succeeded, 2 failed"
    seen = adhoc.faults.running_at_steps
    assert all(len(running) == 1 for running in seen)


def test_following_a_range_gives_a_line_per_date_and_the_table(adhoc: Harness) -> None:
    adhoc.faults.exit_codes["10_export.sh"] = 4
    assert adhoc.run("2025-06-01")["status"] == "FAILED"
    adhoc.faults.exit_codes.clear()
    assert adhoc.run("2025-06-02")["status"] == "SUCCEEDED"

    result = run_cli(adhoc, DeployedRequest("follow", ("2025-06-01", "2025-06-02")))

    assert result.code == 4
    assert result.stdout == b""
    first, second = [n for n in result.notices if n.startswith("run date 20")]
    assert first.startswith("run date 2025-06-01: failed (exit 4) in ")
    assert first.endswith(": 10_export.sh failed (exit 4)")
    assert second.startswith("run date 2025-06-02: succeeded in ")
    assert result.notices[-1] == "2 dates: 1 succeeded, 1 failed"


def test_a_date_that_ran_is_refused_unless_rerun_which_takes_the_next_name(deployed: Harness) -> None:
    assert run_cli(deployed, DeployedRequest("start", (DATE,))).code == 0

    again = run_cli(deployed, DeployedRequest("start", (DATE,)))
    assert again.code == 4
    assert again.notices == [
        f"error: {DATE} already ran (nightly-{DATE}: succeeded); add --rerun to run it again as nightly-{DATE}-r2"
    ]
    assert run_cli(deployed, DeployedRequest("start", (DATE,), rerun=True)).code == 0
    third = run_cli(deployed, DeployedRequest("start", (DATE,), rerun=True))
    assert third.code == 0
    assert third.notices[0] == f"run nightly-{DATE}-r3 started"
    names = {
        e["name"]
        for e in deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]
    }
    assert names == {f"nightly-{DATE}", f"nightly-{DATE}-r2", f"nightly-{DATE}-r3"}


def test_a_running_date_is_refused_even_with_rerun(deployed: Harness) -> None:
    users = StepScript(gate_after=0)
    deployed.faults.scripts["10_users.sql"] = users
    start_directly(deployed, DATE)
    assert users.reached_gate.wait(30)

    result = run_cli(deployed, DeployedRequest("start", (DATE,), rerun=True))

    assert result.code == 4
    assert result.notices[0].startswith(f"error: nightly-{DATE} is running")
    assert len(deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]) == 1


def test_from_stage_skips_the_earlier_stages_and_still_terminates_the_cluster(deployed: Harness) -> None:
    result = run_cli(deployed, DeployedRequest("start", (DATE,), from_stage=30))

    assert result.code == 0, result.notices
    assert sorted(deployed.faults.steps_run) == ["30_funnel.sql", "30_segments.sql"]
    (execution,) = deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"]
    assert json.loads(deployed.sfn.describe_execution(executionArn=execution["executionArn"])["input"]) == {
        "run_date": DATE,
        "from_stage": 30,
    }
    entered = deployed.states_entered(execution["executionArn"])
    assert "Skip Stage 10" in entered and "Skip Stage 20" in entered
    assert "Stage 10" not in entered and "Stage 20" not in entered and "Stage 30" in entered
    assert "stage 10 skipped" in result.notices and "stage 20 skipped" in result.notices
    rows = {
        row.split()[0]: row for row in result.notices if row.split()[0].endswith(".sql") or ".hql " in row
    }
    assert " skipped" in rows["10_users.sql"] and " skipped" in rows["20_sessions.hql"]
    assert " succeeded " in rows["30_funnel.sql"]
    assert [c["Status"]["State"] for c in deployed.clusters()] == ["TERMINATED"]


def test_from_stage_after_the_last_stage_is_a_usage_error(deployed: Harness) -> None:
    result = run_cli(deployed, DeployedRequest("start", (DATE,), from_stage=40))

    assert result.code == 2
    # The rule of every mode (runner.execution.check_from_stage), as main gives it before this.
    assert result.notices == ["error: --from-stage 40: nightly has no stage 40 (its stages: 10, 20, 30)"]
    assert deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"] == []


def test_stop_ends_the_run_and_returns_when_its_cluster_is_gone(deployed: Harness) -> None:
    users = StepScript(chunks=[("stdout", b"long query\n")], gate_after=1, gate_timeout=60)
    deployed.faults.scripts["10_users.sql"] = users
    arn = start_directly(deployed, DATE)
    assert users.reached_gate.wait(30)
    (cluster,) = deployed.clusters()
    assert cluster["Status"]["State"] == "WAITING"

    result = run_cli(deployed, DeployedRequest("stop", (DATE,)))

    assert result.code == 0, result.notices
    assert deployed.sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    assert [c["Status"]["State"] for c in deployed.clusters()] == ["TERMINATED"]
    # Step Functions runs no Catch on a stopped run: the command terminated the cluster itself.
    assert deployed.faults.calls["lambdas.terminate_cluster"] == 0
    assert result.notices == [
        f"run nightly-{DATE} stopped",
        f"terminating cluster {cluster['Id']}",
        f"cluster {cluster['Id']} terminated",
    ]
    # Stopping again finds nothing left to do.
    again = run_cli(deployed, DeployedRequest("stop", (DATE,)))
    assert again.code == 0
    assert again.notices == [
        f"run nightly-{DATE} is not running (aborted); checking its cluster",
        f"no cluster of nightly-{DATE} is alive",
    ]


def test_stop_while_the_cluster_is_being_requested_waits_for_it_and_terminates_it(
    deployed: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested, release = threading.Event(), threading.Event()
    run_job_flow = ElasticMapReduceBackend.run_job_flow

    def slow_run_job_flow(*args: Any, **kwargs: Any) -> Any:
        requested.set()
        release.wait(30)  # EMR answers only after the run was stopped
        return run_job_flow(*args, **kwargs)

    monkeypatch.setattr(ElasticMapReduceBackend, "run_job_flow", slow_run_job_flow)
    arn = start_directly(deployed, DATE)
    assert requested.wait(30)
    stderr = Watched(b"waiting for it to appear", release)

    # moto reports ABORTED only once the blocked Lambda returns (AWS does at once): a short wait for it.
    result = run_cli(
        deployed, DeployedRequest("stop", (DATE,)), stderr=stderr, polling=replace(FAST, cluster_wait=1.0)
    )

    assert result.code == 0, result.notices
    assert status_after(deployed, arn, "ABORTED") == "ABORTED"
    (cluster,) = deployed.clusters()
    assert cluster["Status"]["State"] == "TERMINATED"
    assert result.notices == [
        f"run nightly-{DATE} stopped",
        f"nightly-{DATE} was requesting its cluster; waiting for it to appear",
        f"terminating cluster {cluster['Id']}",
        f"cluster {cluster['Id']} terminated",
    ]


def test_history_lists_runs_newest_first_with_the_failing_step_and_its_log(deployed: Harness) -> None:
    assert deployed.run("2025-06-01")["status"] == "SUCCEEDED"
    deployed.faults.exit_codes["20_sessions.hql"] = 7
    deployed.faults.scripts["20_sessions.hql"] = StepScript(chunks=[("stderr", b"boom\n")])
    failed = deployed.run("2025-06-02")
    assert failed["status"] == "FAILED"

    result = run_cli(deployed, DeployedRequest("history", history_count=10))

    assert result.code == 0
    header, newest, oldest = result.notices
    assert header.split() == [
        "date", "run", "status", "started", "(Europe/Berlin)", "duration", "cost", "failed", "step", "log",
    ]  # fmt: skip
    # RecordRun's cost of each run (a moto cluster's seconds at the shipped prices: cents).
    assert re.search(r" \$0\.\d\d ", newest) and re.search(r" \$0\.\d\d ", oldest)
    assert newest.split()[:3] == ["2025-06-02", "nightly-2025-06-02", "failed"]
    assert "20_sessions.hql (exit 7)" in newest, failed.get("cause")
    started = failed["startDate"].astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M")
    assert started in newest
    link = newest.split()[-1]
    group = deployed.runner_log_group.replace("/", "$252F")
    assert link.startswith(f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}#logsV2:")
    assert f"log-group/{group}/log-events/nightly$252Frunner$252F" in link
    streams = boto3.client("logs", region_name=REGION).describe_log_streams(
        logGroupName=deployed.runner_log_group
    )
    task_id = link.rsplit("$252F", 1)[-1]
    assert f"nightly/runner/{task_id}" in {s["logStreamName"] for s in streams["logStreams"]}
    assert oldest.split()[:3] == ["2025-06-01", "nightly-2025-06-01", "succeeded"]
    assert " - " in oldest  # no failing step

    one = run_cli(deployed, DeployedRequest("history", history_count=1))
    assert len(one.notices) == 2 and "nightly-2025-06-02" in one.notices[1]
    of_date = run_cli(deployed, DeployedRequest("history", ("2025-06-01",)))
    assert [row.split()[1] for row in of_date.notices[1:]] == ["nightly-2025-06-01"]


def _cli_without_harness(synth: Synthesis, request: DeployedRequest) -> tuple[int, list[str]]:
    err = io.BytesIO()
    pipeline = load_pipeline(synth.pipelines_dir / "nightly")
    output = TextOutput(io.BytesIO(), err)
    code = exit_code_of(lambda: run_deployed(pipeline, request, output, polling=FAST), output)
    return code, [line.removeprefix("nightshift: ") for line in err.getvalue().decode().splitlines()]


def test_no_deployment_no_region_no_credentials_each_one_line(
    test_synth: Synthesis, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    set_moto_env(monkeypatch)
    with mock_aws():
        code, lines = _cli_without_harness(test_synth, DeployedRequest("follow"))
        assert (code, lines) == (
            3,
            [
                "error: no deployment of pipeline nightly in us-east-1 (no state machine tagged "
                "nightshift:pipeline=nightly); deploy it with `cdk deploy`, or check --region/--stack"
            ],
        )
        sfn = boto3.client("stepfunctions", region_name=REGION)
        for stack in ("NightshiftDev", "NightshiftProd"):
            sfn.create_state_machine(
                name=f"{stack}-nightly",
                definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
                roleArn="arn:aws:iam::123456789012:role/sfn",
                tags=[
                    {"key": "nightshift:stack", "value": stack},
                    {"key": "nightshift:pipeline", "value": "nightly"},
                    {"key": "nightshift:runner-log-group", "value": f"/{stack}/runner"},
                ],
            )
        code, lines = _cli_without_harness(test_synth, DeployedRequest("history"))
        assert code == 3
        assert lines == [
            "error: pipeline nightly is deployed by several stacks in us-east-1: NightshiftDev, "
            "NightshiftProd; choose one with --stack"
        ]
        code, lines = _cli_without_harness(test_synth, DeployedRequest("history", stack="NightshiftProd"))
        assert (code, lines) == (0, ["no runs of nightly yet in us-east-1"])
        code, lines = _cli_without_harness(
            test_synth, DeployedRequest("follow", (DATE,), stack="NightshiftProd")
        )
        assert (code, lines) == (3, [f"error: no run of nightly for {DATE} in us-east-1"])

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    code, lines = _cli_without_harness(test_synth, DeployedRequest("follow"))
    assert (code, lines) == (
        3,
        ["error: no AWS region: pass --region or set AWS_REGION (or a profile's region)"],
    )

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, lines = _cli_without_harness(test_synth, DeployedRequest("follow", region="eu-west-1"))
    assert code == 3
    assert lines == [
        "error: no AWS credentials: set AWS_PROFILE, run `aws sso login`, or export AWS_ACCESS_KEY_ID"
    ]


def test_execution_names_match_the_schedules_and_preflights() -> None:
    """The CLI names a date's run as StartRun does, and preflight reads the date back from a rerun's name."""
    from lambdas.shared.preflight import date_of_name  # noqa: PLC0415
    from lambdas.shared.scheduling import execution_name  # noqa: PLC0415
    from runner.deployed.runs import date_of, run_name  # noqa: PLC0415

    assert run_name("nightly", DATE) == execution_name("nightly", DATE)
    for attempt in (1, 2, 12):
        name = run_name("nightly", DATE, attempt)
        assert date_of("nightly", name) == DATE == date_of_name(name, "nightly")


def test_a_start_refused_mid_backfill_ends_as_ctrl_c_does(
    adhoc: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colleague starts the second date between the CLI's check and its start: the range ends with the
    table so far, how to reattach to and stop the date it started, and the command for the rest."""
    from runner.deployed.discovery import Clients  # noqa: PLC0415

    adhoc.faults.scripts["10_export.sh"] = StepScript(gate_after=0, gate_timeout=60)
    make = Clients.make.__func__  # type: ignore[attr-defined]

    def with_a_colleague(cls: type[Clients], region: str | None) -> Clients:
        made: Clients = make(cls, region)

        def colleague(params: dict[str, Any], model: Any, **_: Any) -> None:
            if model.name == "StartExecution" and params.get("name") == "adhoc-2025-06-02":
                # Another input than the CLI's: StartExecution is idempotent only for the same input.
                adhoc.sfn.start_execution(
                    stateMachineArn=adhoc.state_machine_arn,
                    name="adhoc-2025-06-02",
                    input=json.dumps({"run_date": "2025-06-02", "by": "a colleague"}),
                )

        made.sfn.meta.events.register("provide-client-params", colleague)
        return made

    monkeypatch.setattr(Clients, "make", classmethod(with_a_colleague))
    dates = ("2025-06-01", "2025-06-02", "2025-06-03", "2025-06-04")
    result = run_cli(adhoc, DeployedRequest("start", dates, concurrency=2))

    assert result.code == 4, result.notices
    folder = _shown(adhoc)
    notices = result.notices
    error = "error: adhoc-2025-06-02 was started meanwhile by someone else: follow it with --follow"
    assert notices[1:3] == ["run adhoc-2025-06-01 started", error]
    # The table so far (every date a row), then how to reattach, stop, and start the rest.
    assert [n.split()[0] for n in notices[4:8]] == ["2025-06-01", "2025-06-02", "2025-06-03", "2025-06-04"]
    assert notices[-2:] == [
        "4 dates: 0 succeeded, 0 failed, 4 not run",
        f"detached; adhoc-2025-06-01 goes on in AWS. Reattach: python -m runner {folder} --deployed --follow "
        # The colleague's date is running too: reattach and stop name it with the CLI's own.
        f"--run-date 2025-06-01..2025-06-02; stop it: python -m runner {folder} --deployed --stop "
        "--run-date 2025-06-01..2025-06-02; "
        f"not started: 2025-06-03..2025-06-04 (start: python -m runner {folder} --deployed --start "
        "--run-date 2025-06-03..2025-06-04)",
    ]
    names = {
        e["name"] for e in adhoc.sfn.list_executions(stateMachineArn=adhoc.state_machine_arn)["executions"]
    }
    assert names == {"adhoc-2025-06-01", "adhoc-2025-06-02"}
