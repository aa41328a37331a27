"""A start or rerun of the deployed pipeline when the local folder differs from the deployed one."""

from __future__ import annotations

import boto3

from runner.deployed import DeployedRequest
from runner.deployed.check import DEPLOYED_FILES_PARAMETER
from runner.digests import encode, folder_digests
from tests.deployed.support import pipeline_of, run_cli
from tests.infra.moto_harness import Harness
from tests.support.aws import REGION

DATE = "2025-06-01"


def record(harness: Harness, digests: dict[str, str]) -> None:
    """The deployed-files parameter, as the stack writes it (tests/deployed/test_check.py holds the two equal)."""
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=DEPLOYED_FILES_PARAMETER.format(stack=harness.synth.stack.stack_name, pipeline=harness.pipeline),
        Type="String",
        Value=encode(digests),
        Overwrite=True,
    )


def test_a_start_after_a_local_change_is_refused_unless_as_deployed(deployed: Harness) -> None:
    digests = folder_digests(pipeline_of(deployed).folder)
    record(deployed, digests | {"20_sessions.hql": "0" * 16})

    refused = run_cli(deployed, DeployedRequest("start", (DATE,)))
    assert refused.code == 4
    assert refused.notices == [
        "error: the local folder differs from the deployed one (20_sessions.hql (changed)): a run would use"
        " the deployed files; deploy with `cdk deploy`, or add --as-deployed to run them anyway"
    ]
    assert deployed.sfn.list_executions(stateMachineArn=deployed.state_machine_arn)["executions"] == []

    started = run_cli(deployed, DeployedRequest("start", (DATE,), as_deployed=True))
    assert started.code == 0, started.notices
    assert started.notices[:2] == [
        "running the deployed files; the local folder differs: 20_sessions.hql (changed)",
        f"run nightly-{DATE} started",
    ]


def test_a_start_of_the_deployed_folder_says_nothing_of_it(deployed: Harness) -> None:
    record(deployed, folder_digests(pipeline_of(deployed).folder))
    started = run_cli(deployed, DeployedRequest("start", (DATE,)))
    assert started.code == 0, started.notices
    assert started.notices[0] == f"run nightly-{DATE} started"
