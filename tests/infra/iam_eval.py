"""A small IAM policy evaluator for the synthesized template: what AWS would decide, which moto never does.

It encodes the evaluation logic of "Policy evaluation logic" and the operators of "IAM JSON policy
elements: Condition operators" (IAM User Guide,
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html and
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html)
for identity-based policies in one account: an explicit Deny wins, then an Allow, else the request
is implicitly denied. Anything it does not know (an operator, a policy variable, an unresolved
CloudFormation function) raises instead of guessing, so no test passes by accident.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra.conftest import ACCOUNT, REGION

PARTITION = "aws"
MANAGED_POLICIES = Path(__file__).parent / "aws_managed"
Context = Mapping[str, "str | bool | tuple[str, ...]"]


class Unsupported(ValueError):
    """A policy element the evaluator does not implement: the test must not pass or fail on a guess."""


@dataclass(frozen=True)
class Request:
    """One API call as IAM authorizes it: an action, one resource ARN and the request context."""

    action: str
    resource: str
    context: Context = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: the Sids (or indexes) of the Allow statements that matched, and of the Deny ones
    allows: tuple[str, ...]
    denies: tuple[str, ...]


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    # IAM's * matches any run of characters (':' and '/' too) and ? exactly one.
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _matches(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    if "${" in pattern:
        raise Unsupported(f"policy variable in {pattern!r}")
    return _wildcard(pattern, ignore_case=ignore_case).fullmatch(value) is not None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str | int):
        raise Unsupported(f"condition value {value!r}")
    return str(value)


# base operator -> (compare(policy value, request value), negated)
_OPERATORS = {
    "StringEquals": (lambda p, r: p == r, False),
    "StringNotEquals": (lambda p, r: p == r, True),
    "StringEqualsIgnoreCase": (lambda p, r: p.lower() == r.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, r: p.lower() == r.lower(), True),
    "StringLike": (lambda p, r: _matches(p, r), False),
    "StringNotLike": (lambda p, r: _matches(p, r), True),
    "ArnEquals": (lambda p, r: _matches(p, r), False),
    "ArnLike": (lambda p, r: _matches(p, r), False),
    "ArnNotEquals": (lambda p, r: _matches(p, r), True),
    "ArnNotLike": (lambda p, r: _matches(p, r), True),
    "Bool": (lambda p, r: p.lower() == r.lower(), False),
}


def _lookup(context: Context, key: str) -> tuple[str, ...] | None:
    """The request's values of a condition key (key names are case-insensitive), None when absent."""
    wanted = key.lower()
    for name, value in context.items():
        if name.lower() == wanted:
            return tuple(_string(v) for v in value) if isinstance(value, tuple) else (_string(value),)
    return None


def _condition_holds(operator: str, key: str, policy_values: list[Any], context: Context) -> bool:
    values = [_string(v) for v in policy_values]
    present = _lookup(context, key)
    if operator == "Null":
        (expected,) = values
        return (present is None) == (expected.lower() == "true")
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in _OPERATORS:
        raise Unsupported(f"condition operator {operator}")
    compare, negated = _OPERATORS[base]
    if qualifier == "ForAllValues":
        # Every value in the request matches one in the policy; true when the key is absent or empty.
        return present is None or all(any(compare(p, r) for p in values) != negated for r in present)
    if qualifier == "ForAnyValue":
        return present is not None and any(any(compare(p, r) for p in values) != negated for r in present)
    if qualifier:
        raise Unsupported(f"condition set operator {qualifier}")
    if present is None:
        # A missing key matches only ...IfExists and the negated operators (a well-known trap).
        return if_exists or negated
    if len(present) != 1:
        raise Unsupported(f"single-valued operator {operator} on multivalued key {key}")
    matched = any(compare(p, present[0]) for p in values)
    return matched != negated


@dataclass(frozen=True)
class Principal:
    """Who calls, as a resource policy names it: a service ("Service") or an IAM role or user ("AWS")."""

    kind: str
    name: str


def _principal_matches(statement: Mapping[str, Any], principal: Principal) -> bool:
    if "NotPrincipal" in statement:
        raise Unsupported("NotPrincipal")
    named = statement["Principal"]
    if named == "*":
        return True
    if not isinstance(named, dict) or set(named) - {"Service", "AWS"}:
        raise Unsupported(f"principal {named!r}")
    if "*" in _listed(named.get("AWS", [])):
        return (
            True  # {"AWS": "*"} is "*": everyone, services included ("AWS JSON policy elements: Principal")
        )
    for value in _listed(named.get(principal.kind, [])):
        if value == "*" or value == principal.name:
            return True
        # An account (its root, or its id) stands for every principal of the account: the key or
        # resource policy then defers to their IAM policies ("Specifying a principal", IAM User Guide).
        account = value.removesuffix(":root").rsplit(":", 1)[-1]
        whole_account = value.endswith(":root") or value.isdigit()
        if principal.kind == "AWS" and whole_account and principal.name.split(":")[4] == account:
            return True
    return False


def _statement_applies(
    statement: Mapping[str, Any], request: Request, principal: Principal | None = None
) -> bool:
    if principal is None:
        if "Principal" in statement or "NotPrincipal" in statement:
            raise Unsupported("a resource policy statement in an identity policy")
    elif not _principal_matches(statement, principal):
        return False
    if "Action" in statement:
        actions = _listed(statement["Action"])
        if not any(_matches(a, request.action, ignore_case=True) for a in actions):
            return False
    else:
        if any(_matches(a, request.action, ignore_case=True) for a in _listed(statement["NotAction"])):
            return False
    if "Resource" in statement:
        if not any(_matches(r, request.resource) for r in _listed(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(_matches(r, request.resource) for r in _listed(statement["NotResource"])):
            return False
    elif principal is None:
        raise Unsupported("a statement without Resource in an identity policy")
    # else: a role's trust policy, whose statements are about the role itself
    for operator, keys in statement.get("Condition", {}).items():
        for key, policy_values in keys.items():
            if not _condition_holds(operator, key, _listed(policy_values), request.context):
                return False
    return True


def evaluate(statements: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    """AWS's decision for one request against identity-policy statements of one principal."""
    allows: list[str] = []
    denies: list[str] = []
    for index, statement in enumerate(statements):
        if _statement_applies(statement, request):
            name = str(statement.get("Sid", index))
            (allows if statement["Effect"] == "Allow" else denies).append(name)
    return Decision(bool(allows) and not denies, tuple(allows), tuple(denies))


def evaluate_resource_policy(
    statements: Iterable[Mapping[str, Any]], principal: Principal, request: Request
) -> Decision:
    """A resource policy's decision (a key, topic, queue or bucket policy) for one principal's request.

    For a service principal it is the whole decision. For a principal of the same account, an Allow
    of the account root means "as its IAM policies say" (for a KMS key, the only way they count).
    """
    allows: list[str] = []
    denies: list[str] = []
    for index, statement in enumerate(statements):
        if _statement_applies(statement, request, principal):
            name = str(statement.get("Sid", index))
            (allows if statement["Effect"] == "Allow" else denies).append(name)
    return Decision(bool(allows) and not denies, tuple(allows), tuple(denies))


@dataclass(frozen=True)
class ManagedPolicy:
    """An AWS-managed policy as pinned under aws_managed/: its document, version and date."""

    arn: str
    version: str
    date: str
    source: str
    statements: tuple[Mapping[str, Any], ...]


def managed_policy(name: str) -> ManagedPolicy:
    data = json.loads((MANAGED_POLICIES / f"{name}.json").read_text(encoding="utf-8"))
    return ManagedPolicy(
        data["Arn"],
        data["VersionId"],
        data["EditedTime"],
        data["Source"],
        tuple(_listed(data["Document"]["Statement"])),
    )


class Template:
    """A synthesized template's IAM: each role's statements, with CloudFormation values resolved."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.resources: Mapping[str, Any] = template["Resources"]

    def of_type(self, kind: str) -> dict[str, Any]:
        return {k: v for k, v in self.resources.items() if v["Type"] == kind}

    def logical_id(self, kind: str, contains: str) -> str:
        (found,) = [k for k in self.of_type(kind) if contains in k]
        return found

    # --- values -------------------------------------------------------------------------------
    def ref(self, logical: str) -> str:
        pseudo = {"AWS::Partition": PARTITION, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
        if logical in pseudo:
            return pseudo[logical]
        resource = self.resources.get(logical)
        if resource is None:
            raise Unsupported(f"Ref to {logical}, which is not a resource (a parameter?)")
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{props['StateMachineName']}"
        if kind == "AWS::SNS::Topic":
            return f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{logical}"
        if kind == "AWS::S3::Bucket":
            return logical.lower()
        if kind == "AWS::ECS::TaskDefinition":
            # The ARN of the revision this template registers (the first: a test deploys once).
            return f"arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:task-definition/{props['Family']}:1"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{logical}"
        if kind == "AWS::Logs::LogGroup":
            return str(props.get("LogGroupName", logical))
        return logical

    def arn(self, logical: str) -> str:
        kind = self.resources[logical]["Type"]
        props = self.resources[logical].get("Properties", {})
        prefix = f"arn:{PARTITION}"
        arns = {
            "AWS::KMS::Key": f"{prefix}:kms:{REGION}:{ACCOUNT}:key/{logical}",
            "AWS::S3::Bucket": f"{prefix}:s3:::{logical.lower()}",
            "AWS::IAM::Role": f"{prefix}:iam::{ACCOUNT}:role/{logical}",
            "AWS::Logs::LogGroup": (
                f"{prefix}:logs:{REGION}:{ACCOUNT}:log-group:{props.get('LogGroupName', logical)}:*"
            ),
            "AWS::SQS::Queue": f"{prefix}:sqs:{REGION}:{ACCOUNT}:{logical}",
            "AWS::Lambda::Function": f"{prefix}:lambda:{REGION}:{ACCOUNT}:function:{logical}",
            "AWS::SNS::Topic": f"{prefix}:sns:{REGION}:{ACCOUNT}:{logical}",
            "AWS::ECS::Cluster": f"{prefix}:ecs:{REGION}:{ACCOUNT}:cluster/{logical}",
        }
        if kind in ("AWS::StepFunctions::StateMachine", "AWS::ECS::TaskDefinition"):
            return self.ref(logical)
        if kind not in arns:
            raise Unsupported(f"the ARN of a {kind}")
        return arns[kind]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, str | bool | int):
            return value
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            raise Unsupported(repr(value))
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
            return {k: self.resolve(v) for k, v in value.items()}
        ((function, argument),) = value.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            logical, attribute = argument
            if attribute != "Arn":
                raise Unsupported(f"Fn::GetAtt {logical}.{attribute}")
            return self.arn(logical)
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(self.resolve(p)) for p in parts)
        if function == "Fn::Sub" and isinstance(argument, str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: self.ref(m[1]), argument)
        raise Unsupported(function)

    # --- policies -----------------------------------------------------------------------------
    def role_statements(self, role: str) -> list[Mapping[str, Any]]:
        """Every identity-policy statement of ``role``: inline policies, then attached AWS-managed ones."""
        statements: list[Mapping[str, Any]] = []
        for policy in self.resources.values():
            if policy["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                continue
            roles = policy["Properties"].get("Roles", [])
            if {"Ref": role} in roles:
                statements += _listed(self.resolve(policy["Properties"]["PolicyDocument"])["Statement"])
        role_props = self.resources[role]["Properties"]
        for arn in self.resolve(role_props.get("ManagedPolicyArns", [])):
            name = arn.rsplit("/", 1)[-1]
            pinned = managed_policy(name)
            assert pinned.arn == arn, (pinned.arn, arn)
            statements += pinned.statements
        for inline in role_props.get("Policies", []):
            statements += _listed(self.resolve(inline["PolicyDocument"])["Statement"])
        return statements

    def policy_statements(self, policy: str) -> list[Mapping[str, Any]]:
        """The statements of one policy of the template (a managed policy attached to nobody, say)."""
        document = self.resolve(self.resources[policy]["Properties"]["PolicyDocument"])
        return _listed(document["Statement"])

    def inline_statements(self, role: str) -> list[Mapping[str, Any]]:
        """The statements the stack writes for ``role`` (its inline policies), not the AWS-managed ones."""
        managed = self.resolve(self.resources[role]["Properties"].get("ManagedPolicyArns", []))
        pinned = [s for arn in managed for s in managed_policy(arn.rsplit("/", 1)[-1]).statements]
        return [s for s in self.role_statements(role) if s not in pinned]

    def tags(self, logical: str) -> dict[str, str]:
        tags = self.resources[logical].get("Properties", {}).get("Tags", [])
        return {t["Key"]: t["Value"] for t in tags}
