"""The input gate of the synthesized state machine, run by moto's interpreter with the real CheckInputs Lambda."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.config import DataAccess, S3Path
from infra.inputs import InputsAccessError, deployed_inputs
from lambdas.shared import alerting as alert
from lambdas.shared.run_states import INPUT_STATES
from runner.model import load_pipeline
from tests.infra import test_lint
from tests.infra.conftest import (
    REGION,
    SECRET_ARN,
    SUBNETS,
    Synthesis,
    base_context,
    definition_of,
    synthesize,
)
from tests.infra.moto_harness import Harness

GATED_TOML = """
[variables]
raw_path = "s3://lake/raw"

[variables.local]
raw_path = "data/raw"

[inputs]
objects = ["${raw_path}/events/dt=${run_date}/_SUCCESS"]
prefixes = ["${raw_path}/users/dt=${run_date}/"]
wait_minutes = 10
poll_minutes = 2
"""
MARKER = "raw/events/dt=2025-06-01/_SUCCESS"
USERS = "raw/users/dt=2025-06-01/part-00000.parquet"
GATE_STATES = {"StartInputsCheck", "CheckInputs", "Inputs there?", "CountInputsPoll", "WaitForInputs"}


def write_pipelines(folder: Path) -> Path:
    for name, toml in (("gated", GATED_TOML), ("plain", "")):
        (folder / name).mkdir(parents=True)
        (folder / name / "pipeline.toml").write_text(toml)
        (folder / name / "10_load.sql").write_text("SELECT 1;")
        (folder / name / "20_report.sql").write_text("SELECT 2;")
    return folder


@pytest.fixture(scope="module")
def gated_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """A pipeline with [inputs] beside one without, in their own app (the shared one has no gate)."""
    context = {
        **base_context(),
        "ssh_key_secret_arn": SECRET_ARN,
        "vpc": {
            "vpc_id": "vpc-0123456789abcdef0",
            "availability_zones": [f"{REGION}a", f"{REGION}b"],
            "private_subnet_ids": SUBNETS,
        },
        "data_access": {"*": {"read": ["s3://lake/raw/"], "write": ["s3://lake/curated/"]}},
    }
    pipelines = write_pipelines(tmp_path_factory.mktemp("pipelines"))
    return synthesize(tmp_path_factory.mktemp("cdk.out"), context, pipelines)


SYNTH = "gated_synth"
PIPELINE = "gated"


@pytest.fixture
def harness(harness: Harness) -> Harness:
    """The gated pipeline in moto (tests/support/aws.py's harness), with the lake bucket its inputs are in."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="lake")
    return harness


def put(key: str) -> None:
    boto3.client("s3", region_name=REGION).put_object(Bucket="lake", Key=key, Body=b"")


def entered(harness: Harness, execution: dict[str, Any]) -> list[str]:
    return harness.states_entered(execution["executionArn"])


def test_inputs_on_time_run_at_once(harness: Harness) -> None:
    put(MARKER)
    put(USERS)
    execution = harness.run("2025-06-01")
    assert execution["status"] == "SUCCEEDED", execution
    states = entered(harness, execution)
    assert states[:7] == [
        "PrepareRun",
        "Batch or date?",
        "StartInputsCheck",
        "CheckInputs",
        "Inputs there?",
        "Preflight",
        "Proceed?",
    ]
    assert harness.faults.calls["lambdas.check_inputs"] == 1
    assert [c["Status"]["State"] for c in harness.clusters()] == ["TERMINATED"]
    assert sorted(harness.faults.steps_run) == ["10_load.sql", "20_report.sql"]


def test_inputs_late_run_once_they_arrive(harness: Harness) -> None:
    put(USERS)

    def arrive_after_the_second_check(_payload: dict[str, Any], result: dict[str, Any]) -> None:
        if harness.faults.calls["lambdas.check_inputs"] == 2:
            assert result["missing"] == ["s3://lake/raw/events/dt=2025-06-01/_SUCCESS"]
            put(MARKER)

    harness.faults.after["lambdas.check_inputs"] = arrive_after_the_second_check
    execution = harness.run("2025-06-01")
    assert execution["status"] == "SUCCEEDED", execution
    states = entered(harness, execution)
    assert states.count("WaitForInputs") == 2
    assert states.index("Preflight") > states.index("WaitForInputs")
    assert harness.faults.calls["lambdas.check_inputs"] == 3
    assert [c["Status"]["State"] for c in harness.clusters()] == ["TERMINATED"]
    # The Lambda was asked about this run's date, with the pipeline's own [variables].
    payload = harness.faults.payloads["lambdas.check_inputs"][0]
    assert payload["run_date"] == "2025-06-01"
    assert payload["inputs"] == [
        {"kind": "object", "path": "s3://lake/raw/events/dt={run_date}/_SUCCESS"},
        {"kind": "prefix", "path": "s3://lake/raw/users/dt={run_date}/"},
    ]


def test_inputs_never_there_fail_as_inputs_late_without_a_cluster(harness: Harness) -> None:
    put("raw/events/dt=2025-05-31/_SUCCESS")  # yesterday's export is not today's
    put("raw/users/dt=2025-06-01/")  # an empty folder is no data yet
    execution = harness.run("2025-06-01")
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == "InputsLate"
    assert execution["cause"] == (
        "inputs still missing after 10 minutes (6 checks): s3://lake/raw/events/dt=2025-06-01/_SUCCESS, "
        "s3://lake/raw/users/dt=2025-06-01/ (no file in it)"
    )
    states = entered(harness, execution)
    assert states.count("CheckInputs") == 6 and states.count("WaitForInputs") == 5  # 0, 2, ..., 10 min
    assert not {"Preflight", "CreateCluster", "TerminateCluster"} & set(states)
    assert harness.faults.calls["lambdas.create_cluster"] == 0
    assert harness.clusters() == []
    assert harness.faults.steps_run == []
    # The failure alert (the formatter's own rendering of this execution) names every missing path.
    failure = alert.find_failure(harness.history(execution["executionArn"]))
    detail = {**execution, "stateMachineArn": harness.state_machine_arn}
    subject, body = alert.render(detail, failure, {}, REGION)
    assert subject == "Nightshift: gated-2025-06-01 FAILED at InputsLate"
    assert f"Error: InputsLate\nCause: {execution['cause']}\n" in body


def test_a_check_that_cannot_list_fails_the_run_without_a_cluster(harness: Harness) -> None:
    boto3.client("s3", region_name=REGION).delete_bucket(Bucket="lake")
    execution = harness.run("2025-06-01")
    assert execution["status"] == "FAILED", execution
    assert execution["error"] == "InputsCheckError"
    assert "NoSuchBucket" in execution["cause"]
    assert "CreateCluster" not in entered(harness, execution)
    assert harness.clusters() == []


def test_the_poll_interval_and_deadline_come_from_pipeline_toml(gated_synth: Synthesis) -> None:
    states = definition_of(gated_synth, "gated")["States"]
    assert states["WaitForInputs"]["Seconds"] == 120
    choice = states["Inputs there?"]["Choices"]
    assert {"Variable": "$.inputs.polls", "NumericGreaterThanEquals": 5, "Next": "InputsMissing"} in choice
    assert states["Batch or date?"]["Default"] == "StartInputsCheck"


def test_a_pipeline_without_inputs_has_no_gate(gated_synth: Synthesis) -> None:
    states = definition_of(gated_synth, "plain")["States"]
    assert not (GATE_STATES | {"InputsLate"}) & set(states)
    assert states["Batch or date?"]["Default"] == "Preflight"


def test_the_check_may_only_list_the_declared_prefixes(gated_synth: Synthesis) -> None:
    functions = gated_synth.resources("AWS::Lambda::Function")
    checks = {
        k: f for k, f in functions.items() if f["Properties"].get("Handler") == "lambdas.check_inputs.handler"
    }
    assert len(checks) == 1, "one CheckInputs for the one pipeline with [inputs]"
    (logical,) = checks
    role = checks[logical]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = [
        p
        for p in gated_synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
    ]
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    s3 = [s for s in statements if any(str(a).startswith("s3:") for a in _actions(s))]
    assert len(s3) == 1
    (statement,) = s3
    assert statement["Action"] == "s3:ListBucket"
    assert ":s3:::lake" in json.dumps(statement["Resource"])
    assert statement["Condition"] == {"StringLike": {"s3:prefix": ["raw/events/dt=*", "raw/users/dt=*"]}}
    other = {a for s in statements for a in _actions(s)} - {"s3:ListBucket"}
    assert other <= {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, other


def test_the_gated_template_passes_cdk_nag_cfn_lint_and_checkov(gated_synth: Synthesis) -> None:
    """test_lint's own checks over the only synth with an input gate.

    Its nag check also holds that cdk-nag's is the only report: CDK's own CloudFormation validation
    warned here while the definition held a literal "${run_date}".
    """
    test_lint.test_cdk_nag_has_no_unacknowledged_findings(gated_synth)
    test_lint.test_cfn_lint_finds_no_errors_and_only_accepted_warnings(gated_synth)
    test_lint.test_checkov_has_no_unacknowledged_findings(gated_synth)


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


# --- refused at synth ------------------------------------------------------------------------------


def gated(tmp_path: Path, raw_path: str) -> Any:
    folder = tmp_path / "gated"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(GATED_TOML.replace("s3://lake/raw", raw_path, 1))
    (folder / "10_load.sql").write_text("SELECT 1;")
    return load_pipeline(folder)


READ_RAW = DataAccess(read=(S3Path("lake", "raw/"),))


def test_inputs_inside_the_read_access_are_listable_up_to_the_run_date(tmp_path: Path) -> None:
    found = deployed_inputs(gated(tmp_path, "s3://lake/raw"), READ_RAW)
    assert [(i.kind, i.template, i.listable) for i in found] == [
        ("object", "s3://lake/raw/events/dt={run_date}/_SUCCESS", S3Path("lake", "raw/events/dt=")),
        ("prefix", "s3://lake/raw/users/dt={run_date}/", S3Path("lake", "raw/users/dt=")),
    ]


@pytest.mark.parametrize(
    ("raw_path", "message"),
    [
        ("s3://lake/other", "outside what cdk.json data_access lets the pipeline read (s3://lake/raw/)"),
        ("s3://elsewhere/raw", "add its bucket and prefix to data_access.gated.read"),
        ("hdfs:///raw", "a deployed run checks its inputs in S3"),
    ],
)
def test_an_input_the_pipeline_may_not_read_fails_the_synth(
    tmp_path: Path, raw_path: str, message: str
) -> None:
    with pytest.raises(InputsAccessError) as error:
        deployed_inputs(gated(tmp_path, raw_path), READ_RAW)
    assert str(error.value).startswith(
        "pipeline 'gated': [inputs] '${raw_path}/events/dt=${run_date}/_SUCCESS'"
    )
    assert message in str(error.value)


def test_the_input_gates_states_are_the_ones_the_late_check_names(gated_synth: Synthesis) -> None:
    """The late check says a run is "waiting for its inputs" while it is in one of INPUT_STATES
    (lambdas/shared/run_states.py): each is a state of the gated pipeline's machine."""
    assert set(INPUT_STATES) <= set(definition_of(gated_synth, PIPELINE)["States"])
