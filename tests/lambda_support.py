"""What the Lambda unit and integration tests share: a valid payload, a Lambda context, credentials."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"
ACCOUNT = "123456789012"
# The stack the handlers under test belong to (infra sets NIGHTSHIFT_STACK on every function).
STACK = "Nightshift"

CREATE_PAYLOAD: dict[str, Any] = {
    "pipeline": "example",
    "run_id": "example-2024-06-01-a1b2",
    "run_date": "2024-06-01",
    "execution_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:nightshift-example:run-1",
    "cluster": {
        "release_label": "emr-7.13.0",
        "applications": ["Hive", "Spark"],
        "master_instance_type": "m7g.xlarge",
        "core_instance_type": "r7g.2xlarge",
        "core_instance_count": 2,
        "use_spot": True,
        "idle_timeout_minutes": 60,
        "step_concurrency_level": 4,
        "ebs_volume_gb": 128,
    },
    "network": {
        "subnet_ids": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"],
        "master_security_group": "sg-0aa11bb22",
        "core_security_group": "sg-0cc33dd44",
        "service_access_security_group": "sg-0ee55ff66",
        "ec2_key_name": "nightshift",
    },
    "roles": {"service_role": "nightshift-emr-service", "instance_profile": "nightshift-emr-ec2"},
    "log_uri": "s3://nightshift-logs-123456789012/emr/",
    "bootstrap_script_uri": "s3://nightshift-assets-123456789012/publish_host_keys.sh",
}


@pytest.fixture
def create_payload() -> dict[str, Any]:
    return copy.deepcopy(CREATE_PAYLOAD)


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
    monkeypatch.setenv("NIGHTSHIFT_STACK", STACK)
