"""What the Lambda tests share: a valid payload, a Lambda context, credentials, the alert topic's inbox."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from lambdas.shared.stack import TOPIC_VARIABLE

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


@dataclass(frozen=True)
class AlertInbox:
    """The alert topic with a queue subscribed to it: what an e-mail subscriber would receive."""

    topic: str
    sqs: Any
    queue: str

    def messages(self) -> list[dict[str, Any]]:
        """The SNS envelopes (Subject, Message, ...) that came since the last call, each read once."""
        found = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        for message in found:
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(message["Body"]) for message in found]


def alert_inbox(monkeypatch: pytest.MonkeyPatch) -> AlertInbox:
    """Inside moto: the alert topic, a queue subscribed to it, and the topic in the Lambdas' environment."""
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # Not raw: the queue gets SNS's JSON envelope, so a test reads the subject as an e-mail shows it.
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "false"})
    monkeypatch.setenv(TOPIC_VARIABLE, topic)
    return AlertInbox(topic, sqs, queue)
