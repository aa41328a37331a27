"""Fixtures for the lifecycle Lambdas without AWS: a context, payloads, clients that must not be called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.lambda_support import (  # noqa: F401 - fixtures shared by the Lambda tests
    ACCOUNT,
    CREATE_PAYLOAD,
    REGION,
    FakeLambdaContext,
    aws_credentials,
    create_payload,
    lambda_context,
)


@dataclass
class Untouchable:
    """Real botocore clients behind Stubbers with no responses, recording every call attempted."""

    emr: Any
    ssm: Any
    sfn: Any
    calls: list[str]


@pytest.fixture
def untouchable():
    calls: list[str] = []
    made = {name: boto3.client(name, region_name=REGION) for name in ("emr", "ssm", "stepfunctions")}
    stubbers = []
    for client in made.values():
        client.meta.events.register(
            "provide-client-params", lambda model, **_: calls.append(model.name), unique_id="calls"
        )
        stubber = Stubber(client)
        stubber.activate()
        stubbers.append(stubber)
    yield Untouchable(made["emr"], made["ssm"], made["stepfunctions"], calls)
    for stubber in stubbers:
        stubber.deactivate()
