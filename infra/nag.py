"""cdk-nag suppressions in one place, each with the reason it is acceptable here."""

from __future__ import annotations

from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct


def suppress(construct: IConstruct, rule: str, reason: str, *, applies_to: list[str] | None = None) -> None:
    """Suppress one AwsSolutions rule on a construct and its children, with the reason."""
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=rule, reason=reason, applies_to=applies_to)],  # type: ignore[arg-type]
        apply_to_children=True,
    )
