"""cdk-nag acknowledgments: each names the AwsSolutions finding and why it is acceptable here."""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def suppress(construct: IConstruct, rule: str, reason: str, *, applies_to: list[str] | None = None) -> None:
    """Acknowledge a finding on a construct and its children (cdk-nag v3: one id per finding)."""
    ids = [f"{PACK}::{rule}[{finding}]" for finding in applies_to] if applies_to else [f"{PACK}::{rule}"]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=rule_id, reason=reason) for rule_id in ids))


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
