"""Fixtures for the lifecycle Lambdas without AWS: a context, payloads, clients that must not be called."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.lambda_payloads import ACCOUNT, CREATE_PAYLOAD, REGION


@dataclass
class FakeLambdaContext:
    """The attributes Powertools' Logger reads from a real Lambda context."""

    function_name: str = "nightshift-lifecycle"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:nightshift-lifecycle"
    aws_request_id: str = "5f1c2d3e-0000-4000-8000-000000000000"


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Nightshift")


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


@pytest.fixture
def create_payload() -> dict[str, Any]:
    return copy.deepcopy(CREATE_PAYLOAD)


def pytest_configure(config):
    # Powertools warns when an invocation emitted no metric (a cluster that is merely WAITING,
    # a sweep that found nothing); that is normal here.
    config.addinivalue_line("filterwarnings", "ignore:No application metrics to publish:UserWarning")
