"""Which deployment the Lambdas serve: clusters carry its name, and they act on no other stack's clusters."""

from __future__ import annotations

import os

# Set by infra on every lifecycle function (the CloudFormation stack name).
STACK_VARIABLE = "NIGHTSHIFT_STACK"


class MissingStackError(RuntimeError):
    """The function was deployed without its stack name: it must not guess which clusters are its own."""


def stack_name() -> str:
    """The stack these handlers belong to, from the function's environment."""
    value = os.environ.get(STACK_VARIABLE, "").strip()
    if not value:
        raise MissingStackError(f"environment variable {STACK_VARIABLE} is not set")
    return value
