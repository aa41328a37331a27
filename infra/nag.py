"""cdk-nag and checkov acknowledgments: each names the finding and why it is acceptable here."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def suppress(construct: IConstruct, rule: str, reason: str, *, applies_to: list[str] | None = None) -> None:
    """Acknowledge a finding on a construct and its children (cdk-nag v3: one id per finding)."""
    ids = [f"{PACK}::{rule}[{finding}]" for finding in applies_to] if applies_to else [f"{PACK}::{rule}"]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=rule_id, reason=reason) for rule_id in ids))


def checkov_skip(construct: IConstruct, check_id: str, reason: str) -> None:
    """Acknowledge a checkov finding on the construct's CloudFormation resource, with its reason."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    assert isinstance(resource, CfnResource)
    metadata = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"] = [entry for entry in metadata["skip"] if entry["id"] != check_id]
    metadata["skip"].append({"id": check_id, "comment": reason})
    resource.add_metadata("checkov", metadata)


def arn_finding(resource: IConstruct, suffix: str = "") -> str:
    """cdk-nag's spelling of a resource's ARN (`<LogicalId.Arn>`) in a wildcard finding."""
    child = resource if isinstance(resource, CfnResource) else resource.node.default_child
    assert isinstance(child, CfnResource)
    stack = Stack.of(child)
    return f"Resource::<{stack.resolve(child.logical_id)}.Arn>{suffix}"


def acknowledge_lambda_defaults(function: IConstruct) -> None:
    """The two findings every Lambda here shares: its runtime choice and its logs-only managed policy."""
    suppress(
        function,
        "AwsSolutions-L1",
        "Python 3.12, the Powertools layer's build and the version the project tests.",
    )
    suppress(
        function,
        "AwsSolutions-IAM4",
        "AWSLambdaBasicExecutionRole only lets the function write its own logs.",
        applies_to=["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
    )
    checkov_skip(
        function,
        "CKV_AWS_116",
        "No DLQ: Step Functions invokes the lifecycle functions synchronously and catches their errors; "
        "the asynchronous ones (sweeper, alert, StartRun) are retried by EventBridge or Scheduler "
        "and alarm on Errors.",
    )
    checkov_skip(
        function,
        "CKV_AWS_117",
        "Only calls AWS APIs (EMR, SSM, Step Functions, SNS); in the VPC it would need the NAT gateway or "
        "interface endpoints for each, and gain no isolation.",
    )
    checkov_skip(
        function,
        "CKV_AWS_115",
        "A few invocations per run and an hourly sweep: reserved concurrency would only take capacity "
        "from the account's pool.",
    )
    checkov_skip(
        function,
        "CKV_AWS_173",
        "The environment holds no secrets (service and stack names, a topic ARN, log group names); "
        "Lambda encrypts it at rest with its own key.",
    )
