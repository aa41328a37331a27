"""The canary (`--deployed --canary`): Nightshift's built-in pipeline through a deployed state machine.

It proves a deployment the way a night uses it: Preflight, CreateCluster with the deployed roles,
tags and network, the cluster's catalog, the runner task's SSH to the master, TerminateCluster and
RecordRun, on the cheapest cluster a pipeline allows (its master node alone), for cents.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
import pytest

from infra.runner_task import RunnerTask
from infra.workflow import (
    CANARY,
    PREPARE_CANARY_STATE,
    RECORD_RUN_STATE,
    canary_state_name,
)
from lambdas.shared.clusters import TAG_EMR_MANAGED_POLICIES, TAG_RUN_DATE
from lambdas.shared.preflight import is_canary
from runner.__main__ import main
from runner.canary import (
    CANARY_IMAGE_PATH,
    CANARY_TABLE,
    canary_applications,
    canary_pipeline,
    canary_run_name,
    is_canary_name,
)
from runner.checks.run import CheckReport
from runner.checks.spec import CheckStatus
from runner.deployed import canary as deployed_canary
from tests.infra.moto_harness import Harness, StepScript
from tests.infra.test_catalog import _catalog_of, _deploy_databases, _glue
from tests.support.aws import REGION, ROOT, Synthesis, definition_of

SYNTH = "test_synth"
PIPELINE = "nightly"
DATE = "2025-06-01"
STEP = CANARY_IMAGE_PATH.rsplit("/", 1)[-1]  # what the harness calls the canary's task


def _states(synth: Synthesis) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = definition_of(synth, PIPELINE)["States"]
    return states


def _arn(harness: Harness, name: str) -> str:
    return harness.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def _cli(harness: Harness, capsysbinary: pytest.CaptureFixture[bytes], *argv: str) -> tuple[int, list[str]]:
    capsysbinary.readouterr()
    code = main([str(harness.synth.pipelines_dir / PIPELINE), "--deployed", "--canary", *argv])
    return code, capsysbinary.readouterr().err.decode(errors="replace").splitlines()


def _check_record(status: CheckStatus, count: int) -> dict[str, Any]:
    """The canary check's record as the runner's JsonOutput writes it in the task's stream."""
    (check,) = canary_pipeline().checks
    sample = [{"missing_run_date": DATE}] if count else []
    exit_code = 65 if status is CheckStatus.FAILED else 0
    return CheckReport(check, status=str(status), count=count, sample=sample, exit_code=exit_code).record(10)


def _canary_in_catalog(log: list[str], *, passes: bool = True) -> Callable[[list[str]], None]:
    """What the canary's SQL does on the cluster, in moto's Glue: its first stage drops a table a
    failed canary left and creates it in the database the command names, on the warehouse the
    cluster's catalog settings give, then reads it back; its last stage (when `passes`) drops it."""

    def run(command: list[str]) -> None:
        name, _, database = command[command.index("--var") + 1].partition("=")
        assert name == "canary_database", command
        cluster_id = command[command.index("--cluster-id") + 1]
        warehouse = _catalog_of(cluster_id, "spark-sql")
        glue = _glue()
        location = glue.get_database(Name=database)["Database"]["LocationUri"]
        assert location.startswith(warehouse), (location, warehouse)
        if any(t["Name"] == CANARY_TABLE for t in glue.get_tables(DatabaseName=database)["TableList"]):
            glue.delete_table(DatabaseName=database, Name=CANARY_TABLE)
        glue.create_table(
            DatabaseName=database,
            TableInput={
                "Name": CANARY_TABLE,
                "TableType": "MANAGED_TABLE",
                "StorageDescriptor": {"Location": f"{location}{CANARY_TABLE}"},
                "Parameters": {"run_id": command[command.index("--run-id") + 1]},
            },
        )
        glue.get_table(DatabaseName=database, Name=CANARY_TABLE)
        log.append(f"{database}.{CANARY_TABLE} on {cluster_id}")
        if passes:
            glue.delete_table(DatabaseName=database, Name=CANARY_TABLE)

    return run


def _wait(harness: Harness, arn: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        answer = dict(harness.sfn.describe_execution(executionArn=arn))
        if until(answer):
            return answer
        time.sleep(0.05)
    raise AssertionError(f"{arn}: not there after 600 s: {harness.why(arn)}")


def _ended(answer: dict[str, Any]) -> bool:
    return answer["status"] != "RUNNING"


def test_a_canary_run_launches_master_only_and_runs_only_the_canary_task(test_synth: Synthesis) -> None:
    """Proceed? sends a canary to PrepareCanary (its launch plans: no core node) before CreateCluster,
    and ClusterReady? sends it to the canary's one runner task instead of the stages, then to the
    terminate; a malformed `canary` fails before any cluster. The nightly's own plans keep their cores.

    A master-only cluster is one EMR documents ("With a single-node cluster, all components run on the
    master node", Amazon EMR Management Guide, "Configure cluster hardware and networking",
    https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-plan-instances.html); with instance
    fleets it is the MASTER fleet alone (lambdas/shared/cluster_spec.py)."""
    states = _states(test_synth)
    rules = states["Proceed?"]["Choices"]
    nexts = [rule["Next"] for rule in rules]
    assert nexts.index("InvalidCanary") < nexts.index(PREPARE_CANARY_STATE) < nexts.index("Given cluster?")
    canary_rule = rules[nexts.index(PREPARE_CANARY_STATE)]
    assert f'"Variable": "{CANARY}", "BooleanEquals": true' in json.dumps(canary_rule)
    prepare = states[PREPARE_CANARY_STATE]
    assert prepare["Next"] == "CreateCluster" and prepare["ResultPath"] == "$.launch"
    plans = prepare["Parameters"]["plans"]
    assert plans and {plan["core_instance_count"] for plan in plans} == {0}
    assert prepare["Parameters"]["plan"] == plans[0]
    nightly = states["PrepareRun"]["Parameters"]["launch"]["plans"]
    assert {plan["core_instance_count"] for plan in nightly} == {2}
    cluster = states["CreateCluster"]["Parameters"]["Payload"]["cluster"]
    assert cluster["core_instance_count.$"] == "$.launch.plan.core_instance_count"
    assert cluster["applications.$"] == "$.launch.plan.applications" and "applications" not in cluster
    # nightly runs the default applications: its canary's are the same
    assert {tuple(plan["applications"]) for plan in nightly + plans} == {("Hadoop", "Hive", "Spark")}

    ready = states["ClusterReady?"]["Choices"]
    ready_nexts = [rule["Next"] for rule in ready]
    task = canary_state_name()
    assert ready_nexts.index(task) < ready_nexts.index("Stage 10?")
    run = states[task]
    assert run["Resource"].endswith(":states:::ecs:runTask.sync")
    assert run["Next"] == "Leave cluster?"
    assert [c["Next"] for c in run["Catch"]] == ["Leave cluster?"]
    assert "Retry" not in run or all("States.TaskFailed" not in r["ErrorEquals"] for r in run["Retry"])
    command = run["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]
    assert command.startswith(f"States.Array('{CANARY_IMAGE_PATH}', '--var', 'canary_database=nightly'")
    assert states["InvalidCanary"]["Type"] == "Fail"


def test_a_pipeline_without_hive_gets_hive_and_spark_on_its_canarys_cluster_only(
    test_synth: Synthesis,
) -> None:
    """The canary's stages run on spark-sql (10, 40), hive (20, and 30's DESCRIBE) and hadoop fs (30):
    a pipeline whose [cluster] applications leave them out (adhoc: Hadoop alone, for its .sh step)
    would pay for a canary's cluster that fails at stage 20. The canary's launch plans are its own, so
    its cluster gets them and the pipeline's nights keep theirs; CreateCluster takes the applications
    of the plan it launches, also on a relaunch (NextLaunch copies the plans).

    "Applications": "A case-insensitive list of applications for Amazon EMR to install and configure
    when launching the cluster" (Amazon EMR API Reference, "RunJobFlow",
    https://docs.aws.amazon.com/emr/latest/APIReference/API_RunJobFlow.html), so Hive is added only
    when no name of the pipeline's is hive in any case."""
    states: dict[str, dict[str, Any]] = definition_of(test_synth, "adhoc")["States"]
    nights = states["PrepareRun"]["Parameters"]["launch"]["plans"]
    canaries = states[PREPARE_CANARY_STATE]["Parameters"]["plans"]
    assert {tuple(plan["applications"]) for plan in nights} == {("Hadoop",)}
    assert {tuple(plan["applications"]) for plan in canaries} == {("Hadoop", "Hive", "Spark")}
    cluster = states["CreateCluster"]["Parameters"]["Payload"]["cluster"]
    assert cluster["applications.$"] == "$.launch.plan.applications"
    assert states["NextLaunch"]["Parameters"]["plans.$"] == "$.launch.plans"
    profile = replace(canary_pipeline().config.cluster, applications=("hadoop", "HIVE", "Tez"))
    assert canary_applications(profile) == ("hadoop", "HIVE", "Tez", "Spark")


def test_a_canary_of_a_pipeline_without_hive_launches_hive_and_its_night_does_not(
    adhoc: Harness, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Through the CLI and CreateCluster in moto: the canary's cluster is made with Hadoop, Hive and
    Spark, the night's with the pipeline's Hadoop alone."""
    capsysbinary.readouterr()
    code = main([str(adhoc.synth.pipelines_dir / "adhoc"), "--deployed", "--canary", "--run-date", DATE])
    lines = capsysbinary.readouterr().err.decode(errors="replace").splitlines()
    assert code == 0, "\n".join(lines)
    assert any(
        "a master-only cluster (one m5.xlarge, emr-" in line and "Hadoop, Hive, Spark)" in line
        for line in lines
    ), lines
    night = adhoc.run(DATE)
    assert night["status"] == "SUCCEEDED", adhoc.why(night["executionArn"])
    made = [payload["cluster"]["applications"] for payload in adhoc.faults.payloads["lambdas.create_cluster"]]
    assert made == [["Hadoop", "Hive", "Spark"], ["Hadoop"]]
    emr = boto3.client("emr", region_name=REGION)
    installed = [
        sorted(a["Name"] for a in emr.describe_cluster(ClusterId=c["Id"])["Cluster"]["Applications"])
        for c in sorted(adhoc.clusters(), key=lambda c: c["Status"]["Timeline"]["CreationDateTime"])
    ]
    assert installed == [["Hadoop", "Hive", "Spark"], ["Hadoop"]]


def test_the_runner_image_holds_the_canary_folder() -> None:
    """The canary's task runs `runner/nightshift_canary` from the image's WORKDIR: the Dockerfile copies
    runner/ whole and .dockerignore keeps the folder's SQL in."""
    assert "COPY runner/ runner/" in (ROOT / "runner" / "Dockerfile").read_text()
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!runner/" in ignored
    assert not [line for line in ignored if "nightshift_canary" in line or line.startswith("runner/**")]
    assert (ROOT / CANARY_IMAGE_PATH / "10_nightshift_canary.sql").is_file()


@pytest.mark.parametrize(("suffix", "canary"), [("-canary", True), ("-canary-r2", True), ("-canaryx", False)])
def test_a_canary_name_is_no_run_of_its_date_for_preflight_and_the_cli(suffix: str, canary: bool) -> None:
    """Preflight (its own copy of the rule: the Lambdas do not ship the runner) and the CLI agree on
    what a canary's execution name is; the CLI's names are canary names."""
    name = f"{PIPELINE}-{DATE}{suffix}"
    assert is_canary(name, PIPELINE) is is_canary_name(name, PIPELINE) is canary
    assert is_canary_name(canary_run_name(PIPELINE, DATE, 3), PIPELINE)
    assert not is_canary(f"{PIPELINE}-{DATE}", PIPELINE) and not is_canary(f"{PIPELINE}-{DATE}-r2", PIPELINE)


def test_the_cost_models_task_is_the_deployed_runner_task() -> None:
    assert deployed_canary.RUNNER_TASK_VCPU == RunnerTask.CPU / 1024
    assert deployed_canary.RUNNER_TASK_GB == RunnerTask.MEMORY_MIB / 1024


def test_a_canary_runs_end_to_end_on_a_master_only_cluster_and_a_night_of_its_date_still_runs(
    harness: Harness, test_synth: Synthesis, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """`--deployed --canary`: the modelled cost first, a run named `<pipeline>-<date>-canary` through
    the state machine, a master-only cluster tagged for EMR's managed policy, the canary's table in the
    pipeline's Glue database, its check's result, the cluster TERMINATED, exit 0. The night of the same
    date then starts under its own name and succeeds: the canary is no run of its date.

    The tag: "When you use this policy, you need to pass the user tag
    for-use-with-amazon-emr-managed-policies = true when provisioning the cluster" (Amazon EMR
    Management Guide, "Service role for Amazon EMR (EMR role)",
    https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-role.html). A second canary of the
    date takes `-canary-r2`: an execution name stays taken for 90 days (AWS Step Functions API
    Reference, "StartExecution", https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html)."""
    _deploy_databases(test_synth)
    log: list[str] = []
    harness.faults.step_actions[STEP] = _canary_in_catalog(log)
    harness.faults.scripts[STEP] = StepScript(
        chunks=[("stdout", f"{DATE}\t2025-06-01 03:12:00\n".encode())],
        results=[_check_record(CheckStatus.PASSED, 0)],
    )
    code, lines = _cli(harness, capsysbinary, "--run-date", DATE)
    assert code == 0, "\n".join(lines)
    name = f"{PIPELINE}-{DATE}-canary"
    (cost,) = [line for line in lines if line.startswith("nightshift: canary: about $")]
    usd = float(cost.split("$", 1)[1].split(",", 1)[0])
    assert 0 < usd < 0.10, cost
    assert "15 minutes by the model (one m6g.xlarge (master-only) for 15 min" in cost
    assert f"nightshift: run {name} started (canary)" in lines
    assert "nightshift: 10_nightshift_canary_written.check.sql: passed" in lines, lines
    # The table is the state machine's: one runner task runs every stage, so no stage shows "not run".
    (task,) = [line for line in lines if line.startswith("nightshift: 10_nightshift_canary.sql ")]
    assert task.split()[2:4] == ["10", "succeeded"], lines
    assert not [line for line in lines if "not run" in line], lines
    assert lines[-1].startswith(f"nightshift: canary passed: {name} succeeded, its cluster j-"), lines
    assert lines[-1].endswith(" TERMINATED")

    given = json.loads(harness.sfn.describe_execution(executionArn=_arn(harness, name))["input"])
    assert given == {"run_date": DATE, "canary": True}
    assert harness.faults.steps_run == [STEP]
    (cluster,) = harness.clusters()
    assert cluster["Status"]["State"] == "TERMINATED"
    emr = boto3.client("emr", region_name=REGION)
    groups = emr.list_instance_groups(ClusterId=cluster["Id"])["InstanceGroups"]
    assert [(g["InstanceGroupType"], g["InstanceType"], g["RequestedInstanceCount"]) for g in groups] == [
        ("MASTER", "m6g.xlarge", 1)
    ]
    tags = {t["Key"]: t["Value"] for t in emr.describe_cluster(ClusterId=cluster["Id"])["Cluster"]["Tags"]}
    assert tags[TAG_EMR_MANAGED_POLICIES] == "true" and tags[TAG_RUN_DATE] == DATE
    assert log == [f"nightly.{CANARY_TABLE} on {cluster['Id']}"]
    # RecordRun recorded it as a canary (its metrics are not the nights').
    recorded = [
        json.loads(e["stateExitedEventDetails"]["output"])["run_record"]
        for e in harness.history(_arn(harness, name))
        if e["type"] == "TaskStateExited" and e["stateExitedEventDetails"]["name"] == RECORD_RUN_STATE
    ]
    assert [r.get("canary") for r in recorded] == [True]

    night = harness.run(DATE)
    assert night["name"] == f"{PIPELINE}-{DATE}" and night["status"] == "SUCCEEDED", harness.why(
        night["executionArn"]
    )
    code, lines = _cli(harness, capsysbinary, "--run-date", DATE)
    assert code == 0, "\n".join(lines)
    assert f"nightshift: run {name}-r2 started (canary)" in lines


def test_a_canary_and_a_night_of_the_same_date_run_side_by_side(harness: Harness) -> None:
    """A canary is never refused nor held by a running night, and a night never by a running canary
    or its alive cluster (tagged with the same date), though the pipeline allows one run at a time."""
    users = StepScript(gate_after=0, gate_timeout=600)
    harness.faults.scripts["10_users.sql"] = users
    night = harness.sfn.start_execution(
        stateMachineArn=harness.state_machine_arn,
        name=f"{PIPELINE}-{DATE}",
        input=json.dumps({"run_date": DATE}),
    )["executionArn"]
    try:
        assert users.reached_gate.wait(300)
        canary = harness.sfn.start_execution(
            stateMachineArn=harness.state_machine_arn,
            name=canary_run_name(PIPELINE, DATE),
            input=json.dumps({"run_date": DATE, "canary": True}),
        )["executionArn"]
        assert _wait(harness, canary, _ended)["status"] == "SUCCEEDED", harness.why(canary)
    finally:
        users.gate.set()
    assert _wait(harness, night, _ended)["status"] == "SUCCEEDED", harness.why(night)

    held = StepScript(gate_after=0, gate_timeout=600)
    harness.faults.scripts[STEP] = held
    canary = harness.sfn.start_execution(
        stateMachineArn=harness.state_machine_arn,
        name=canary_run_name(PIPELINE, DATE, 2),
        input=json.dumps({"run_date": DATE, "canary": True}),
    )["executionArn"]
    try:
        assert held.reached_gate.wait(300)
        alive = [
            c
            for c in harness.clusters()
            if c["Status"]["State"] not in ("TERMINATED", "TERMINATED_WITH_ERRORS")
        ]
        assert len(alive) == 1  # the canary's, tagged with DATE
        rerun = harness.sfn.start_execution(
            stateMachineArn=harness.state_machine_arn,
            name=f"{PIPELINE}-{DATE}-r2",
            input=json.dumps({"run_date": DATE}),
        )["executionArn"]
        assert _wait(harness, rerun, _ended)["status"] == "SUCCEEDED", harness.why(rerun)
    finally:
        held.gate.set()
    assert _wait(harness, canary, _ended)["status"] == "SUCCEEDED", harness.why(canary)
    assert {c["Status"]["State"] for c in harness.clusters()} == {"TERMINATED"}


def test_a_canary_whose_check_fails_exits_65_with_the_reason(
    harness: Harness, test_synth: Synthesis, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """The row was not read back: the check's line and sample, exit 65, the cluster still terminated."""
    _deploy_databases(test_synth)
    harness.faults.exit_codes[STEP] = 65
    harness.faults.scripts[STEP] = StepScript(results=[_check_record(CheckStatus.FAILED, 1)])
    code, lines = _cli(harness, capsysbinary, "--run-date", DATE)
    assert code == 65, "\n".join(lines)
    assert "nightshift: 10_nightshift_canary_written.check.sql: failed: 1 row" in lines, lines
    assert lines[-1].startswith("nightshift: canary failed: 10_nightshift_canary.sql exited with code 65"), (
        lines
    )
    assert lines[-2].startswith(f"nightshift: canary: its table nightly.{CANARY_TABLE} (s3://"), lines
    assert lines[-1].endswith(" TERMINATED)")
    assert {c["Status"]["State"] for c in harness.clusters()} == {"TERMINATED"}


def test_a_canary_that_fails_at_stage_20_names_the_table_it_left_and_the_next_canary_removes_it(
    harness: Harness, test_synth: Synthesis, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """Stage 10 made the table and its check passed; stage 20 (hive) failed, so stage 40 never
    dropped it. The CLI exits with the task's code and, before its verdict, names the table left in
    the Glue catalog (database.table and location), that the next canary drops it, and the commands
    that remove it now. The next canary then replaces it, drops it at its end and says nothing of it.

    Both commands, because Glue's DeleteTable "Removes a table definition from the Data Catalog" and
    nothing else (AWS Glue API Reference, "DeleteTable",
    https://docs.aws.amazon.com/glue/latest/webapi/API_DeleteTable.html): the table's files in S3
    stay until removed. (A DROP TABLE through the cluster's Glue client, the next canary's stage 10,
    deletes a managed table's files too: tests/integration/local/test_canary_local.py runs it.)"""
    _deploy_databases(test_synth)
    log: list[str] = []
    harness.faults.step_actions[STEP] = _canary_in_catalog(log, passes=False)
    harness.faults.exit_codes[STEP] = 1
    harness.faults.scripts[STEP] = StepScript(
        chunks=[
            ("stdout", f"{DATE}\t2025-06-01 03:12:00\n".encode()),
            ("stderr", b"Error: ASSERT_TRUE failed: 'read_back.rows_read = 1' is not true\n"),
        ],
        results=[_check_record(CheckStatus.PASSED, 0)],
    )
    code, lines = _cli(harness, capsysbinary, "--run-date", DATE)
    assert code == 1, "\n".join(lines)
    location = f"s3://lake/curated/warehouse/nightly.db/{CANARY_TABLE}"
    folder = harness.synth.pipelines_dir / PIPELINE
    assert lines[-2] == (
        f"nightshift: canary: its table nightly.{CANARY_TABLE} ({location}) is left in the Glue catalog if"
        f" its first stage made it: the next `python -m runner {folder} --deployed --canary` drops it before"
        f" it writes; to remove it now, `aws glue delete-table --database-name nightly --name {CANARY_TABLE}`"
        f" and `aws s3 rm --recursive {location}/`"
    ), lines
    assert lines[-1].startswith("nightshift: canary failed: 10_nightshift_canary.sql exited with code 1 ("), (
        lines
    )
    assert lines[-1].endswith(" TERMINATED)"), lines
    glue = _glue()
    left = glue.get_table(DatabaseName="nightly", Name=CANARY_TABLE)["Table"]
    assert left["StorageDescriptor"]["Location"] == location
    assert left["Parameters"]["run_id"] == f"{PIPELINE}-{DATE}-canary"

    harness.faults.step_actions[STEP] = _canary_in_catalog(log, passes=True)
    del harness.faults.exit_codes[STEP]
    harness.faults.scripts[STEP] = StepScript(results=[_check_record(CheckStatus.PASSED, 0)])
    code, lines = _cli(harness, capsysbinary, "--run-date", DATE)
    assert code == 0, "\n".join(lines)
    assert lines[-1].startswith(f"nightshift: canary passed: {PIPELINE}-{DATE}-canary-r2 succeeded"), lines
    assert not [line for line in lines if "its table" in line], lines
    assert len(log) == 2
    assert [t["Name"] for t in glue.get_tables(DatabaseName="nightly")["TableList"]] == []


def test_a_canary_whose_cluster_fails_to_start_exits_69_with_emrs_reason(
    harness: Harness, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """EMR refuses the launch (not a launch failure worth another try): no task runs, exit 69, and the
    last line names EMR's reason and the cluster's end state."""
    message = "The requested instance type m6g.xlarge is not supported in the requested Availability Zone."

    def fail(payload: dict[str, Any], result: dict[str, Any]) -> None:
        harness.fail_cluster(result["cluster_id"], "VALIDATION_ERROR", message)

    harness.faults.after["lambdas.create_cluster"] = fail
    code, lines = _cli(harness, capsysbinary, "--run-date", DATE)
    assert code == 69, "\n".join(lines)
    assert harness.faults.steps_run == []
    last = lines[-1]
    assert last.startswith("nightshift: canary failed: ClusterFailedToStart: attempt 1 (j-"), last
    assert message in last and last.endswith(" TERMINATED_WITH_ERRORS)"), last
    # No task ran: no table can be left.
    assert not [line for line in lines if "its table" in line], lines


def test_dry_run_says_what_the_canary_would_do_and_starts_nothing(
    harness: Harness, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    code, lines = _cli(harness, capsysbinary, "--run-date", DATE, "--dry-run")
    assert code == 0, "\n".join(lines)
    assert lines[-3].startswith(f"nightshift: canary {PIPELINE}-{DATE}-canary: through ")
    assert "a master-only cluster (one m6g.xlarge, emr-" in lines[-3]
    assert f"nightly.{CANARY_TABLE}" in lines[-3]
    assert lines[-2].startswith("nightshift: canary: about $")
    assert lines[-1] == "nightshift: dry run: nothing started"
    assert harness.sfn.list_executions(stateMachineArn=harness.state_machine_arn)["executions"] == []
    assert harness.clusters() == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--dry-run"], "--dry-run: not with --deployed"),
        (["--canary", "--run-date", "2025-06-01..2025-06-02"], "--canary: one run date, not a range"),
        (["--canary", "--start"], "argument --start: not allowed with argument --canary"),
        (["--canary", "--checks-only"], "not with --canary"),
        (["--canary", "--rerun"], "--rerun: only when starting runs"),
    ],
)
def test_the_canarys_flags_are_refused_in_one_line_before_aws(
    argv: list[str], says: str, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    try:
        code = main([str(ROOT / "sql" / "example"), "--deployed", *argv])
    except SystemExit as exited:  # argparse's own refusals (two actions at once) exit
        code = exited.code  # type: ignore[assignment]
    assert code == 2
    err = capsysbinary.readouterr().err.decode().splitlines()
    assert len(err) == 1 and err[0].startswith("nightshift: error: ") and says in err[0], err


def test_follow_without_a_date_skips_a_running_canary_and_history_lists_it_as_one(
    harness: Harness, test_synth: Synthesis, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """`--follow` with no date follows the pipeline's runs, never a canary (it is no run of its date;
    `--canary` follows its own, and the pipeline's step table would not fit it): with a canary running
    and the night of its date done, it shows the night. `--history`, also with `--run-date`, lists
    the canary marked as one, next to the night of its date."""
    _deploy_databases(test_synth)
    night = harness.run(DATE)
    assert night["status"] == "SUCCEEDED", harness.why(night["executionArn"])
    held = StepScript(gate_after=0, gate_timeout=600)
    harness.faults.scripts[STEP] = held
    name = canary_run_name(PIPELINE, DATE)
    canary = harness.sfn.start_execution(
        stateMachineArn=harness.state_machine_arn,
        name=name,
        input=json.dumps({"run_date": DATE, "canary": True}),
    )["executionArn"]
    folder = str(harness.synth.pipelines_dir / PIPELINE)
    try:
        assert held.reached_gate.wait(300)
        capsysbinary.readouterr()
        code = main([folder, "--deployed", "--follow"])
        lines = capsysbinary.readouterr().err.decode(errors="replace").splitlines()
        assert code == 0, "\n".join(lines)
        assert lines[0] == f"nightshift: run {PIPELINE}-{DATE} succeeded; its output:", lines
        assert not [line for line in lines if name in line], lines
    finally:
        held.gate.set()
    assert _wait(harness, canary, _ended)["status"] == "SUCCEEDED", harness.why(canary)

    for argv in (["--run-date", DATE], []):
        capsysbinary.readouterr()
        code = main([folder, "--deployed", "--history", *argv])
        lines = capsysbinary.readouterr().err.decode(errors="replace").splitlines()
        assert code == 0, "\n".join(lines)
        rows = [line.split() for line in lines[1:] if f"{PIPELINE}-{DATE}" in line]
        assert [row[1:4] for row in rows] == [
            [DATE, "(canary)", name],
            [DATE, f"{PIPELINE}-{DATE}", "succeeded"],
        ], lines
        assert rows[0][4] == "succeeded", rows
