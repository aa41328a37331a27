"""Data checks in the nightly run: one task per stage's checks on the run's cluster, the alert naming them."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from infra.runner_task import CONTAINER_NAME
from infra.workflow import checks_state_name
from lambdas import alert as alert_lambda
from lambdas.shared import alerting, run_states
from lambdas.shared.run_metrics import CHECK_DIMENSION, CHECK_FAILING_ROWS, NAMESPACE, PIPELINE_DIMENSION
from runner.__main__ import main
from runner.checks.run import CheckReport, FailuresTable
from runner.checks.spec import CheckStatus
from runner.model import load_pipeline
from tests.infra.iam_eval import Request, Template, evaluate
from tests.infra.moto_harness import Harness, StepScript
from tests.infra.test_catalog import example_synth  # noqa: F401 - the shared sql/ synth in moto
from tests.infra.test_cost_stack import dashboard_body, graphs
from tests.infra.test_run_record import emf_blobs, value
from tests.lambda_support import AlertInbox, FakeLambdaContext, alert_inbox
from tests.support.aws import ACCOUNT, REGION, ROOT, Synthesis, definition_of, states_of

SYNTH = "example_synth"
PIPELINE = "example"
EXAMPLE = ROOT / "sql" / "example"
#: users.unique's failing rows as the runner's check query returns them (planted duplicates)
DUPLICATES = [{"user_id": 7, "n": 2}, {"user_id": 19, "n": 3}, {"user_id": 23, "n": 2}]


def test_each_stage_runs_its_checks_in_one_task_after_its_steps_and_before_the_next_stage(
    example_synth: Synthesis,  # noqa: F811
) -> None:
    """sql/example has checks in stages 10, 20 and 30: after each stage's Parallel, one Fargate task
    runs `--checks-only --stage N` on the run's cluster as the run (its date, id, JSON lines); it then
    goes on to the next stage's Choice, and a failure goes to TerminateCluster as a step's does."""
    states = states_of(definition_of(example_synth, PIPELINE))
    pipeline = load_pipeline(EXAMPLE)
    following: dict[int | None, str] = {10: "Stage 20?", 20: "Stage 30?", 30: "Leave cluster?"}
    for stage in pipeline.stages:
        assert stage.checks, stage.number
        name = checks_state_name(stage)
        assert states[f"Stage {stage.number}"]["Next"] == name
        task = states[name]
        assert task["Resource"].endswith(":states:::ecs:runTask.sync")
        assert task["Next"] == following[stage.number]
        (override,) = task["Parameters"]["Overrides"]["ContainerOverrides"]
        assert override["Command.$"] == (
            f"States.Array('sql/example', '--checks-only', '--stage', '{stage.number}', "
            "'--cluster-id', $.cluster.cluster_id, '--run-date', $.run_date, "
            "'--run-id', $$.Execution.Name, '--log-format', 'json')"
        )
        assert task["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Leave cluster?"}
        ]
        # The same tables give the same count: a failed check is not retried as a failed step is.
        retried = {error for retry in task.get("Retry", []) for error in retry["ErrorEquals"]}
        assert "States.TaskFailed" not in retried and "ECS.ThrottlingException" in retried
    # Its network, task definition and timeout are a step's.
    run_users, check_10 = states["Run 10_users"], states["Check Stage 10"]
    for key in ("Cluster", "TaskDefinition", "NetworkConfiguration", "LaunchType", "PlatformVersion"):
        assert check_10["Parameters"][key] == run_users["Parameters"][key], key
    assert check_10["TimeoutSeconds"] == run_users["TimeoutSeconds"]


def test_a_pipeline_without_checks_has_no_checks_states(test_synth: Synthesis) -> None:
    assert not [name for name in states_of(definition_of(test_synth, "nightly")) if name.startswith("Check ")]


def test_the_alert_names_the_state_the_workflow_gives_a_stages_checks() -> None:
    """The alert finds a checks failure by its state's name: the two sides name it alike."""
    for stage in load_pipeline(EXAMPLE).stages:
        assert checks_state_name(stage).startswith(run_states.CHECKS_PREFIX)


def test_the_alert_formatter_may_read_the_runner_streams_and_no_other_log(example_synth: Synthesis) -> None:  # noqa: F811
    """GetLogEvents on a log stream is authorized against the log group's ARN with the trailing
    ':*' (the form IAM policies use for every CloudWatch Logs action but the tag ones): the formatter
    may read any stream of the pipeline's runner log group, and no other log group.

    "Overview of managing access permissions to your CloudWatch Logs resources", Amazon CloudWatch
    Logs User Guide: https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/iam-access-control-overview-cwl.html
    """
    template = Template(example_synth.template)
    role = template.logical_id("AWS::IAM::Role", "AlertsFormatterServiceRole")
    statements = template.role_statements(role)
    group = template.arn(template.logical_id("AWS::Logs::LogGroup", "RunnerLogsExample")).removesuffix(":*")
    stream = f"{group}:log-stream:example/{CONTAINER_NAME}/0123456789abcdef0123456789abcdef"
    assert evaluate(statements, Request("logs:GetLogEvents", stream)).allowed
    other = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/someone-else:log-stream:x"
    assert not evaluate(statements, Request("logs:GetLogEvents", other)).allowed
    assert not evaluate(statements, Request("logs:FilterLogEvents", f"{group}:*")).allowed


def _check_records(
    failing: str, count: int, sample: list[dict[str, Any]], store: FailuresTable | None = None
) -> list[dict[str, Any]]:
    """Stage 10's check records as the runner writes them: `failing` failed, the others passed; with
    `store` ([checks] failures_table), the failing one's rows were kept there."""
    (stage,) = [s for s in load_pipeline(EXAMPLE).stages if s.number == 10]
    records = []
    for check in stage.checks:
        if check.label == failing:
            report = CheckReport(
                check, status=str(CheckStatus.FAILED), count=count, sample=sample, exit_code=65
            )
        else:
            report = CheckReport(check, status=str(CheckStatus.PASSED), count=0)
        report.stored_in(store)
        records.append(report.record(10))
    return records


def _alert_inbox(monkeypatch: pytest.MonkeyPatch, harness: Harness) -> AlertInbox:
    """The alert topic's inbox (what an e-mail would receive), and the formatter's settings for the harness."""
    inbox = alert_inbox(monkeypatch)
    machine = harness.state_machine_arn.rsplit(":", 1)[-1]
    monkeypatch.setenv(
        "NIGHTSHIFT_PIPELINES", json.dumps({machine: [PIPELINE, harness.runner_log_group, CONTAINER_NAME]})
    )
    return inbox


def test_a_failing_check_fails_the_nightly_run_terminates_the_cluster_and_the_alert_shows_its_sample(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stage 10's checks find duplicated users: their task exits 65, the run fails before stage 20,
    the cluster is terminated, and the alert (the real formatter, reading the task's stream) names
    the check, its count and its sample."""
    records = _check_records("users.unique", 1204, DUPLICATES)
    harness.faults.exit_codes["10_checks"] = 65
    harness.faults.scripts["10_checks"] = StepScript(results=records)
    execution = harness.run("2025-06-01")
    assert execution["status"] == "FAILED", harness.why(execution["executionArn"])
    assert execution["error"] == "States.TaskFailed"
    assert sorted(harness.faults.steps_run) == ["10_checks", "10_events.sql", "10_users.sql"]
    entered = harness.states_entered(execution["executionArn"])
    assert "Check Stage 10" in entered and "Stage 20" not in entered
    assert entered[entered.index("Check Stage 10") + 1 : entered.index("Check Stage 10") + 3] == [
        "Leave cluster?",
        "TerminateCluster",
    ]
    assert {c["Status"]["State"] for c in harness.clusters()} == {"TERMINATED"}

    inbox = _alert_inbox(monkeypatch, harness)
    detail = {key: execution[key] for key in ("executionArn", "stateMachineArn", "name", "status")}
    answer = alert_lambda.handler({"detail": detail}, FakeLambdaContext())
    assert answer["subject"] == "Nightshift: example-2025-06-01 FAILED: check users.unique failed"
    (message,) = inbox.messages()
    body = message["Message"]
    lines = body.splitlines()
    assert "Failing state: Check Stage 10" in lines
    assert "  users.unique (error): failed, 1,204 rows; a sample of 3:" in lines
    assert '    {"user_id": 7, "n": 2}' in lines and '    {"user_id": 23, "n": 2}' in lines
    assert "  users.not_null (error): passed" in lines

    # RecordRun kept each check's result for the history and the metrics.
    recorded = _recorded_checks(harness, execution["executionArn"])
    assert recorded["users.unique"] == {"stage": 10, "severity": "error", "status": "failed", "count": 1204}
    assert recorded["events.not_null"]["status"] == "passed" and len(recorded) == 6
    # ... and emitted each check's failing rows as a metric (EMF: namespace, pipeline and check).
    blobs = {b[CHECK_DIMENSION]: b for b in emf_blobs(capsys.readouterr().out) if CHECK_FAILING_ROWS in b}
    assert sorted(blobs) == sorted(recorded)
    unique = blobs["users.unique"]
    assert unique["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert unique["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[PIPELINE_DIMENSION, CHECK_DIMENSION]]
    assert unique[PIPELINE_DIMENSION] == PIPELINE
    assert (
        value(unique, CHECK_FAILING_ROWS) == 1204 and value(blobs["users.min_rows"], CHECK_FAILING_ROWS) == 0
    )


def test_the_dashboard_graphs_each_checks_failing_rows(example_synth: Synthesis) -> None:  # noqa: F811
    """One line per check of the pipeline, with the names and dimensions RecordRun's blobs carry."""
    row = graphs(dashboard_body(example_synth), PIPELINE)
    lines = row["failing rows of its data checks"]["metrics"]
    labels = [check.label for check in load_pipeline(EXAMPLE).checks]
    # The dashboard's JSON lists a metric's dimensions in its own order: compared as pairs.
    found = sorted((m[0], m[1], dict(zip(m[2:6:2], m[3:6:2], strict=True))[CHECK_DIMENSION]) for m in lines)
    assert found == sorted((NAMESPACE, CHECK_FAILING_ROWS, label) for label in labels)
    assert all(dict(zip(m[2:6:2], m[3:6:2], strict=True))[PIPELINE_DIMENSION] == PIPELINE for m in lines)
    assert {m[6]["stat"] for m in lines} == {"Maximum"} and {m[6]["period"] for m in lines} == {86400}


def _recorded_checks(harness: Harness, arn: str) -> dict[str, Any]:
    (output,) = [
        json.loads(e["stateExitedEventDetails"]["output"])
        for e in harness.history(arn)
        if e["type"] == "TaskStateExited" and e["stateExitedEventDetails"]["name"] == "RecordRun"
    ]
    checks: dict[str, Any] = output["run_record"]["checks"]
    return checks


def test_follow_and_history_show_a_deployed_runs_checks(
    harness: Harness, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """`--deployed --follow` prints the checks task's results as a local run does, the summary lists
    each check, and the exit code is the data's (65); `--history` has a checks column."""
    harness.faults.exit_codes["10_checks"] = 65
    harness.faults.scripts["10_checks"] = StepScript(results=_check_records("users.unique", 1204, DUPLICATES))
    execution = harness.run("2025-06-01")
    assert execution["status"] == "FAILED", harness.why(execution["executionArn"])

    capsysbinary.readouterr()
    code = main([str(EXAMPLE), "--deployed", "--follow", "--run-date", "2025-06-01"])
    lines = capsysbinary.readouterr().err.decode().splitlines()
    assert code == 65, lines
    assert "nightshift: stage 10's checks started" in lines
    assert "nightshift: users.unique: failed: 1,204 rows (a sample of 3)" in lines
    assert "nightshift: users.not_null: passed" in lines
    assert "nightshift: 10_checks: failed with exit code 65" in lines
    summary = [" ".join(line.split()[1:4]) for line in lines]
    assert "check users.unique 10" in summary and "check 30_funnel_steps.check.sql 30" in summary
    (row,) = [line for line in lines if line.split()[1:3] == ["check", "users.unique"]]
    assert "failed: 1,204 rows" in row
    (later,) = [line for line in lines if line.split()[1:3] == ["check", "30_funnel_steps.check.sql"]]
    assert "not run" in later

    code = main([str(EXAMPLE), "--deployed", "--history"])
    lines = capsysbinary.readouterr().err.decode().splitlines()
    assert code == 0, lines
    assert "checks" in lines[0].split()
    assert "5 passed, 1 failed (users.unique: 1,204 rows)" in lines[1], lines


def test_the_alert_and_history_say_where_a_failing_checks_rows_were_kept(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """With [checks] failures_table, the checks task kept 1,000 of users.unique's 1,204 rows (its
    failures_max_rows) under the run's id: the alert and `--history` name the table and the query that
    reads this run's rows back, the one a user pastes into `-e` or spark-sql."""
    name = f"{PIPELINE}-2025-06-01"
    table = "nightshift_example.check_failures"
    store = FailuresTable("${database}.check_failures", 1000, name, PIPELINE, table)
    harness.faults.exit_codes["10_checks"] = 65
    harness.faults.scripts["10_checks"] = StepScript(
        results=_check_records("users.unique", 1204, DUPLICATES, store)
    )
    execution = harness.run("2025-06-01")
    assert execution["status"] == "FAILED", harness.why(execution["executionArn"])
    query = f"SELECT * FROM {table} WHERE run_id = '{name}' AND `check` = 'users.unique'"

    inbox = _alert_inbox(monkeypatch, harness)
    detail = {key: execution[key] for key in ("executionArn", "stateMachineArn", "name", "status")}
    alert_lambda.handler({"detail": detail}, FakeLambdaContext())
    (message,) = inbox.messages()
    lines = message["Message"].splitlines()
    kept = lines.index(f"    1,000 of 1,204 rows kept in {table}: {query}")
    assert lines[kept - 1] == '    {"user_id": 23, "n": 2}'  # after the check's sample
    assert "  users.not_null (error): passed" in lines  # a passing check kept nothing

    recorded = _recorded_checks(harness, execution["executionArn"])
    assert recorded["users.unique"]["failures_query"] == query
    assert "failures_table" not in recorded["users.not_null"]
    capsysbinary.readouterr()
    code = main([str(EXAMPLE), "--deployed", "--history"])
    lines = capsysbinary.readouterr().err.decode().splitlines()
    assert code == 0, lines
    assert f"5 passed, 1 failed (users.unique: 1,204 rows; 1,000 in {table})" in lines[1], lines
    assert lines[-1] == f"nightshift: {name}: users.unique's failing rows: {query}", lines


def _wait(harness: Harness, arn: str) -> dict[str, Any]:
    """The execution once it has stopped (moto's interpreter runs it in a thread of its own)."""
    for _ in range(6000):
        answer = harness.sfn.describe_execution(executionArn=arn)
        if answer["status"] != "RUNNING":
            return dict(answer)
        time.sleep(0.05)
    raise AssertionError(f"{arn} still running")


def test_a_rerun_from_a_stage_runs_the_checks_of_the_stages_it_runs(harness: Harness) -> None:
    arn = harness.sfn.start_execution(
        stateMachineArn=harness.state_machine_arn,
        name="example-2025-06-01-r2",
        input=json.dumps({"run_date": "2025-06-01", "from_stage": 20}),
    )["executionArn"]
    execution = _wait(harness, arn)
    assert execution["status"] == "SUCCEEDED", harness.why(arn)
    assert sorted(harness.faults.steps_run) == [
        "20_checks",
        "20_sessions.hql",
        "30_checks",
        "30_funnel.sql",
        "30_segments.sql",
    ]
    # Each stage's steps, then its checks, then the next stage.
    assert harness.faults.steps_run.index("20_checks") < harness.faults.steps_run.index("30_funnel.sql")


def test_the_alert_stays_within_snss_message_size_however_large_the_samples() -> None:
    """A check's sample rows may each be 64 KiB (the runner's cap) and a stage may have many checks;
    the alert must still publish: SNS takes at most 256 KiB per message.

    "Publish", Amazon SNS API Reference (Message: "up to 256 KB"):
    https://docs.aws.amazon.com/sns/latest/api/API_Publish.html
    """
    wide = {"payload": "x" * 64 * 1024}
    records = [
        {"stream": "check", "check": f"t{n}.unique", "severity": "error", "status": "failed", "count": 10**6,
         "sample": [wide] * 10}
        for n in range(40)
    ]  # fmt: skip
    lines = alerting.check_lines(records)
    failure = alerting.Failure("Check Stage 10", "States.TaskFailed", "x" * 10_000, "arn:task/abc")
    detail = {
        "executionArn": "arn",
        "stateMachineArn": "arn:m:Nightshift-example",
        "name": "r",
        "status": "FAILED",
    }
    subject, body = alerting.render(detail, failure, {}, REGION, None, checks=lines, failed_check="t0.unique")
    assert len(body.encode()) < 64 * 1024 and len(subject) <= alerting.SUBJECT_LIMIT
    assert "  ... and 30 more failed checks in the step log" in body.splitlines()


def test_a_success_message_names_the_checks_that_warned() -> None:
    """A `warn` check does not fail the run; with notify = "always" the success e-mail says it warned."""
    record = {
        "run_date": "2025-06-01",
        "run_seconds": 600.0,
        "cost": {"total_usd": 0.1},
        "checks": {
            "users.unique": {"stage": 10, "severity": "error", "status": "passed", "count": 0},
            "20_sessions_valid.check.sql": {"stage": 20, "severity": "warn", "status": "warned", "count": 3},
        },
    }
    detail = {
        "executionArn": "arn",
        "stateMachineArn": "arn:m:Nightshift-example",
        "name": "r",
        "status": "SUCCEEDED",
    }
    _subject, body = alerting.render_success(detail, record, {})
    assert "Checks: users.unique passed, 20_sessions_valid.check.sql warned (3 rows)" in body.splitlines()


def test_the_alert_says_where_every_checks_kept_rows_are_when_all_were_kept() -> None:
    """All of a failed check's rows kept: no "of N"; a warned check (the run failed elsewhere) that
    kept rows says how many and where on its one line."""
    query = "SELECT * FROM db.check_failures WHERE run_id = 'r' AND `check` = 'users.unique'"
    records = [
        {"stream": "check", "check": "users.unique", "severity": "error", "status": "failed", "count": 2,
         "sample": [], "failures_table": "db.check_failures", "stored": 2, "failures_query": query},
        {"stream": "check", "check": "events.not_null", "severity": "warn", "status": "warned", "count": 3,
         "sample": [], "failures_table": "db.check_failures", "stored": 3, "failures_query": "SELECT 1"},
        {"stream": "check", "check": "users.min_rows", "severity": "error", "status": "passed", "count": 0,
         "sample": [], "failures_table": "db.check_failures", "stored": 0},
    ]  # fmt: skip
    assert alerting.check_lines(records) == [
        "Failed checks:",
        "  users.unique (error): failed, 2 rows",
        f"    2 rows kept in db.check_failures: {query}",
        "  events.not_null (warn): warned: 3 rows; 3 kept in db.check_failures",
        "  users.min_rows (error): passed",
    ]
