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
