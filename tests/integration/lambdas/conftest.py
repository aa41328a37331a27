"""Fixtures for the lifecycle Lambdas against moto: credentials, clients, payloads, a context."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.emr.models import emr_backends

from tests.lambda_support import (  # noqa: F401 - fixtures shared by the Lambda tests
    ACCOUNT,
    CREATE_PAYLOAD,
    REGION,
    FakeLambdaContext,
    aws_credentials,
    create_payload,
    lambda_context,
)


@pytest.fixture
def aws():
    # aws_credentials is autouse, so the fake credentials are set before the mock starts.
    with mock_aws():
        yield


@pytest.fixture
def emr(aws):
    return boto3.client("emr", region_name=REGION)


@pytest.fixture
def ssm(aws):
    return boto3.client("ssm", region_name=REGION)


@pytest.fixture
def sfn(aws):
    return boto3.client("stepfunctions", region_name=REGION)


@pytest.fixture
def emr_backend(aws):
    """moto's in-memory EMR, to put clusters into states moto never reaches by itself."""
    return emr_backends[ACCOUNT][REGION]


@pytest.fixture
def state_machine_arn(sfn) -> str:
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    response = sfn.create_state_machine(
        name="nightshift-example",
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/nightshift-sfn",
    )
    return str(response["stateMachineArn"])


@pytest.fixture
def start_execution(sfn, state_machine_arn):
    """Start an execution (moto keeps it RUNNING until stopped) and return its ARN."""

    def start(name: str) -> str:
        return str(sfn.start_execution(stateMachineArn=state_machine_arn, name=name)["executionArn"])

    return start


def alive_clusters(emr) -> list[dict[str, Any]]:
    """Clusters a user would be billed for right now, described with their tags."""
    alive = emr.list_clusters(ClusterStates=["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"])
    return [emr.describe_cluster(ClusterId=c["Id"])["Cluster"] for c in alive["Clusters"]]


@pytest.fixture
def alive():
    return alive_clusters
