"""The stack's cost pieces synthesized: the dashboard, notify = "always", the late check (across DST), prices."""

from __future__ import annotations

import json
import re
import time
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from moto.stepfunctions.responses import get_backend

from lambdas import alert, late_check
from lambdas.shared.cost import PRICES_VARIABLE
from lambdas.shared.run_metrics import (
    CLUSTER_READY_TIME,
    NAMESPACE,
    PIPELINE_DIMENSION,
    RUN_COST,
    RUN_DURATION,
    RUN_METRICS,
    STEP_DIMENSION,
    STEP_DURATION,
)
from tests.infra import test_lint
from tests.infra.conftest import (
    ACCOUNT,
    NIGHTLY_STEPS,
    REGION,
    SECRET_ARN,
    SUBNETS,
    Synthesis,
    base_context,
    resolve_join,
    synthesize,
)
from tests.infra.moto_harness import FakeContext, Harness, StepScript
from tests.lambda_support import alert_inbox

# Like tests/infra/conftest.py's nightly, with a success e-mail and a deadline.
NIGHTLY_TOML = """
notify = "always"

[schedule]
cron = "0 3 * * *"
timezone = "Europe/Berlin"
expected_by = "07:30"

[cluster]
master_instance_type = "m6g.xlarge"
core_instance_count = 2
use_spot = true
core_instance_types = ["r7g.2xlarge", "r6g.2xlarge", "m6g.2xlarge"]

[steps]
retries = 2
"""
# Defaults: notify = "failures", and no deadline.
QUIET_TOML = """
[schedule]
cron = "0 5 * * *"
"""
PRICES = {"eu-west-1": {"ec2": {"m5.xlarge": 0.2}}}
STEP_NAMES = [name.rsplit(".", 1)[0] for name in NIGHTLY_STEPS]


@pytest.fixture(scope="session")
def cost_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    folder = tmp_path_factory.mktemp("cost-pipelines")
    nightly = folder / "nightly"
    nightly.mkdir()
    (nightly / "pipeline.toml").write_text(NIGHTLY_TOML)
    for name, text in NIGHTLY_STEPS.items():
        (nightly / name).write_text(text)
    quiet = folder / "quiet"
    quiet.mkdir()
    (quiet / "pipeline.toml").write_text(QUIET_TOML)
    (quiet / "10_a.sql").write_text("SELECT 1;")
    context = {
        **base_context(),
        "ssh_key_secret_arn": SECRET_ARN,
        "vpc": {
            "vpc_id": "vpc-0123456789abcdef0",
            "availability_zones": [f"{REGION}a", f"{REGION}b"],
            "private_subnet_ids": SUBNETS,
        },
        "prices": PRICES,
    }
    return synthesize(tmp_path_factory.mktemp("cost-cdk.out"), context, folder)


def dashboard_body(synth: Synthesis) -> dict[str, Any]:
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == f"{synth.stack.stack_name}-runs"
    # A state machine's ARN (a Ref) becomes its logical id; other tokens "TOKEN".
    body: dict[str, Any] = json.loads(
        resolve_join(dashboard["Properties"]["DashboardBody"], lambda token: token.get("Ref", "TOKEN"))
    )
    return body


def graphs(body: dict[str, Any], pipeline: str) -> dict[str, dict[str, Any]]:
    return {
        w["properties"]["title"].split(": ", 1)[1]: w["properties"]
        for w in body["widgets"]
        if w["type"] == "metric" and w["properties"]["title"].startswith(f"{pipeline}: ")
    }


def test_the_dashboard_graphs_what_record_run_emits(cost_synth: Synthesis) -> None:
    body = dashboard_body(cost_synth)
    for pipeline in ("nightly", "quiet"):
        row = graphs(body, pipeline)
        assert set(row) == {
            "run duration (s)",
            "cluster ready after (s)",
            "cost per night (USD, Spot at On-Demand)",
            "failures",
            "step durations (s)",
        }
        # One definition: the names, namespace and dimensions RecordRun publishes (run_metrics.py).
        for title, name in (
            ("run duration (s)", RUN_DURATION),
            ("cluster ready after (s)", CLUSTER_READY_TIME),
            ("cost per night (USD, Spot at On-Demand)", RUN_COST),
        ):
            (metric,) = row[title]["metrics"]
            assert metric[:4] == [NAMESPACE, name, PIPELINE_DIMENSION, pipeline], title
            assert metric[4]["period"] == 86400
            assert name in RUN_METRICS
        assert row["cost per night (USD, Spot at On-Demand)"]["metrics"][0][4]["stat"] == "Sum"
        assert {p["view"] for p in row.values()} == {"timeSeries"}
    # The steps' lines, one per step, with the dimensions of RecordRun's step blobs.
    steps = graphs(body, "nightly")["step durations (s)"]["metrics"]
    assert sorted(m[:6] for m in steps) == sorted(
        [NAMESPACE, STEP_DURATION, PIPELINE_DIMENSION, "nightly", STEP_DIMENSION, step] for step in STEP_NAMES
    )
    # Failures come from Step Functions' own metrics of the pipeline's state machine: every failure counts.
    failures = graphs(body, "nightly")["failures"]["metrics"]
    expression = next(m for m in failures if "expression" in m[0])
    assert expression[0]["expression"] == "failed + timedout + aborted"
    names = {m[1] for m in failures if m[0] == "AWS/States"}
    assert names == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    assert all(
        m[2] == "StateMachineArn" and m[3].startswith("NightlyWorkflowStateMachine")
        for m in failures
        if m[0] == "AWS/States"
    )


def test_the_dashboard_covers_thirty_days(cost_synth: Synthesis) -> None:
    assert dashboard_body(cost_synth)["start"] == "-P30D"


def success_rules(synth: Synthesis) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for r in synth.resources("AWS::Events::Rule").values()
        if r["Properties"].get("EventPattern", {}).get("detail", {}).get("status") == ["SUCCEEDED"]
    ]


def test_notify_always_adds_a_success_rule_to_the_alert_formatter(cost_synth: Synthesis) -> None:
    (rule,) = success_rules(cost_synth)
    (machine,) = rule["EventPattern"]["detail"]["stateMachineArn"]
    assert machine["Ref"].startswith("NightlyWorkflowStateMachine")
    (target,) = rule["Targets"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("AlertsFormatter")


def test_default_notify_sends_no_success_mail(test_synth: Synthesis) -> None:
    assert success_rules(test_synth) == []


def late_schedules(synth: Synthesis) -> list[dict[str, Any]]:
    return [
        r["Properties"]
        for k, r in synth.resources("AWS::Scheduler::Schedule").items()
        if k.startswith("AlertsNightlyLateCheck") or "LateCheck" in k
    ]


def test_expected_by_schedules_one_late_check_in_the_pipeline_time_zone(cost_synth: Synthesis) -> None:
    (schedule,) = late_schedules(cost_synth)
    assert schedule["ScheduleExpression"] == "cron(30 7 * * ? *)"
    assert schedule["ScheduleExpressionTimezone"] == "Europe/Berlin"
    target = schedule["Target"]
    assert target["Arn"]["Fn::GetAtt"][0].startswith("AlertsLateCheck")
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 1
    given = json.loads(resolve_join(target["Input"]))
    assert {k: given[k] for k in ("pipeline", "timezone", "expected_by")} == {
        "pipeline": "nightly",
        "timezone": "Europe/Berlin",
        "expected_by": "07:30",
    }
    assert given["scheduled_time"] == "<aws.scheduler.scheduled-time>"
    (function,) = [
        r for k, r in cost_synth.resources("AWS::Lambda::Function").items() if k.startswith("AlertsLateCheck")
    ]
    assert function["Properties"]["Handler"] == "lambdas.late_check.handler"


def test_no_expected_by_no_late_check(test_synth: Synthesis) -> None:
    assert late_schedules(test_synth) == []


def test_price_overrides_reach_record_run(cost_synth: Synthesis) -> None:
    (function,) = [
        r for r in cost_synth.resources("AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == "lambdas.record_run.handler"
    ]  # fmt: skip
    assert json.loads(function["Properties"]["Environment"]["Variables"][PRICES_VARIABLE]) == PRICES


# --- the late check across daylight saving time, against moto ------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")


# The `harness` fixture (tests/support/aws.py) runs this synth's nightly pipeline.
SYNTH = "cost_synth"


def scheduled_times(harness: Harness, days: list[date]) -> list[str]:
    """When Scheduler fires the late check: the schedule as the template gives it, read back from moto."""
    (schedule,) = late_schedules(harness.synth)
    scheduler = boto3.client("scheduler", region_name=REGION)
    scheduler.create_schedule(
        Name="nightly-late-check",
        ScheduleExpression=schedule["ScheduleExpression"],
        ScheduleExpressionTimezone=schedule["ScheduleExpressionTimezone"],
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:late",
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/s",
        },
    )
    stored = scheduler.get_schedule(Name="nightly-late-check")
    minute, hour = re.fullmatch(r"cron\((\d+) (\d+) \* \* \? \*\)", stored["ScheduleExpression"]).groups()  # type: ignore[union-attr]
    zone = ZoneInfo(stored["ScheduleExpressionTimezone"])
    return [
        datetime(d.year, d.month, d.day, int(hour), int(minute), tzinfo=zone)
        .astimezone(ZoneInfo("UTC"))
        .isoformat()
        for d in days
    ]


def check(harness: Harness, scheduled_time: str) -> dict[str, Any]:
    event = {
        "pipeline": "nightly",
        "state_machine_arn": harness.state_machine_arn,
        "timezone": "Europe/Berlin",
        "expected_by": "07:30",
        "scheduled_time": scheduled_time,
    }
    return late_check.handler(
        event, FakeContext("LateCheck"), sfn=harness.sfn, sns=boto3.client("sns", region_name=REGION)
    )


def test_the_late_check_across_the_spring_change(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = alert_inbox(monkeypatch)
    # Berlin goes from UTC+1 to UTC+2 in the night to Sunday 2025-03-30: 07:30 is 06:30, then 05:30 UTC.
    saturday, sunday = scheduled_times(harness, [date(2025, 3, 29), date(2025, 3, 30)])
    assert (saturday, sunday) == ("2025-03-29T06:30:00+00:00", "2025-03-30T05:30:00+00:00")

    assert harness.run("2025-03-29")["status"] == "SUCCEEDED"
    assert check(harness, saturday) == {"run_date": "2025-03-29", "late": False}
    assert inbox.messages() == []

    # Sunday's run never started.
    answer = check(harness, sunday)
    assert answer["run_date"] == "2025-03-30" and answer["reason"] == "not started"
    (message,) = inbox.messages()
    assert message["Subject"] == "Nightshift: nightly 2025-03-30 not done by 07:30: not started"
    assert "the run of 2025-03-30 had not succeeded by 07:30 (Europe/Berlin)" in message["Message"]
    assert "No run of this date has started." in message["Message"]


def test_the_late_check_across_the_autumn_change(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = alert_inbox(monkeypatch)
    # Back from UTC+2 to UTC+1 in the night to Sunday 2025-10-26: 07:30 is 05:30, then 06:30 UTC.
    saturday, sunday = scheduled_times(harness, [date(2025, 10, 25), date(2025, 10, 26)])
    assert (saturday, sunday) == ("2025-10-25T05:30:00+00:00", "2025-10-26T06:30:00+00:00")

    # Saturday's run failed in stage 20.
    harness.faults.failing_steps.add("20_sessions.hql")
    assert harness.run("2025-10-25")["status"] == "FAILED"
    harness.faults.failing_steps.clear()
    answer = check(harness, saturday)
    assert (answer["run_date"], answer["reason"]) == ("2025-10-25", "failed")
    (message,) = inbox.messages()
    assert "Run nightly-2025-10-25 (started " in message["Message"]
    assert "failed (States.TaskFailed: " in message["Message"]

    # Sunday's run is still in stage 20 at 07:30.
    script = StepScript(chunks=[("stdout", b"working\n")], gate_after=1, gate_timeout=60)
    harness.faults.scripts["20_sessions.hql"] = script
    arn = harness.sfn.start_execution(
        stateMachineArn=harness.state_machine_arn,
        name="nightly-2025-10-26",
        input=json.dumps({"run_date": "2025-10-26"}),
    )["executionArn"]
    assert script.reached_gate.wait(60)
    stage_entered = next(
        e["timestamp"] for e in harness.history(arn)
        if e.get("stateEnteredEventDetails", {}).get("name") == "Stage 20"
    )  # fmt: skip
    answer = check(harness, sunday)
    assert (answer["run_date"], answer["reason"]) == ("2025-10-26", "still running")
    (message,) = inbox.messages()
    since = stage_entered.astimezone(BERLIN).strftime("%H:%M")
    assert f"is still running: in stage 20 since {since}." in message["Message"]
    script.gate.set()
    deadline = time.monotonic() + 600
    while (
        harness.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    # Once it has succeeded, the same check (Scheduler retrying, say) stays quiet.
    assert check(harness, sunday) == {"run_date": "2025-10-26", "late": False}
    assert inbox.messages() == []


def test_inputs_late_and_a_later_rerun(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = alert_inbox(monkeypatch)
    (scheduled,) = scheduled_times(harness, [date(2025, 6, 2)])
    harness.faults.failing_steps.add("10_users.sql")
    failed = harness.run("2025-06-02")
    assert failed["status"] == "FAILED"
    # The input gate's failure (owner "inputs"): error InputsLate with the missing paths as cause.
    execution = get_backend(ACCOUNT, REGION).describe_execution(failed["executionArn"])
    execution.error = "InputsLate"
    execution.cause = (
        "inputs still missing after 120 minutes (25 checks): s3://lake/raw/dt=2025-06-02/_SUCCESS"
    )
    answer = check(harness, scheduled)
    assert answer["reason"] == "inputs late"
    (message,) = inbox.messages()
    assert "gave up waiting: inputs still missing after 120 minutes" in message["Message"]
    # A rerun that succeeded counts for its date.
    harness.faults.failing_steps.clear()
    rerun = harness.sfn.start_execution(
        stateMachineArn=harness.state_machine_arn,
        name="nightly-2025-06-02-r2",
        input=json.dumps({"run_date": "2025-06-02"}),
    )["executionArn"]
    # Generous: moto's interpreter runs the whole rerun, slow at load 20 (60 s ran out in CI).
    deadline = time.monotonic() + 600
    while (
        harness.sfn.describe_execution(executionArn=rerun)["status"] == "RUNNING"
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert harness.sfn.describe_execution(executionArn=rerun)["status"] == "SUCCEEDED", harness.why(rerun)
    assert check(harness, scheduled) == {"run_date": "2025-06-02", "late": False}


@pytest.mark.parametrize(
    "check",
    [
        "test_cfn_lint_finds_no_errors_and_only_accepted_warnings",
        "test_cdk_nag_has_no_unacknowledged_findings",
        "test_every_cdk_nag_acknowledgment_says_why",
        "test_checkov_has_no_unacknowledged_findings",
    ],
)
def test_the_late_check_and_success_rule_pass_the_template_checks(cost_synth: Synthesis, check: str) -> None:
    """test_lint's own checks over this synth, the only one with a late check and a success rule."""
    getattr(test_lint, check)(cost_synth)


@pytest.mark.parametrize("failing", [False, True], ids=["success", "failure"])
def test_the_alert_formatter_reads_the_record_from_a_real_history(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, failing: bool
) -> None:
    """notify = "always" and the failure alert, from the history moto's interpreter wrote."""
    inbox = alert_inbox(monkeypatch)
    monkeypatch.setenv(
        "NIGHTSHIFT_PIPELINES", json.dumps({f"{harness.synth.stack.stack_name}-nightly": ["nightly", "", ""]})
    )
    if failing:
        harness.faults.failing_steps.add("30_funnel.sql")
    execution = harness.run("2025-06-03")
    detail = {
        "executionArn": execution["executionArn"],
        "stateMachineArn": harness.state_machine_arn,
        "name": "nightly-2025-06-03",
        "status": execution["status"],
    }
    alert.handler(
        {"detail": detail},
        FakeContext("Formatter"),
        sfn=harness.sfn,
        sns=boto3.client("sns", region_name=REGION),
    )
    (message,) = inbox.messages()
    body = message["Message"]
    assert "Run date: 2025-06-03" in body
    assert re.search(
        r"^Cost: \$0\.0\d \(EC2 \$0\.\d\d, EMR fee \$0\.\d\d, Fargate \$0\.\d{3}; us-east-1", body, re.M
    )
    assert "Spot instances are priced at the On-Demand rate" in body
    if failing:
        assert message["Subject"] == "Nightshift: nightly-2025-06-03 FAILED at Run 30_funnel"
        assert body.index("Failing state: Run 30_funnel") < body.index("Run date: 2025-06-03")
        assert "  30_funnel: " in body and "(3 attempts)" in body
    else:
        assert message["Subject"].startswith("Nightshift: nightly-2025-06-03 SUCCEEDED in ")
        assert "Stages: 10 " in body
