"""Which deployment the Lambdas serve: clusters carry its name, and they act on no other stack's clusters."""

from __future__ import annotations

import json
import os
from typing import Any

# Set by infra on every lifecycle function (the CloudFormation stack name).
STACK_VARIABLE = "NIGHTSHIFT_STACK"


class MissingStackError(RuntimeError):
    """A setting infra gives the function is missing: it must not guess its clusters or its topic."""


def stack_name() -> str:
    """The stack these handlers belong to, from the function's environment."""
    value = os.environ.get(STACK_VARIABLE, "").strip()
    if not value:
        raise MissingStackError(f"environment variable {STACK_VARIABLE} is not set")
    return value


# Set by infra on the functions that publish alerts (infra/alerts.py).
TOPIC_VARIABLE = "NIGHTSHIFT_TOPIC_ARN"
# The alert formatter's map: state machine name -> [pipeline, step log group, container].
PIPELINES_VARIABLE = "NIGHTSHIFT_PIPELINES"


def alert_topic_arn() -> str:
    """The SNS topic the alerts go to, from the function's environment."""
    value = os.environ.get(TOPIC_VARIABLE, "").strip()
    if not value:
        raise MissingStackError(f"environment variable {TOPIC_VARIABLE} is not set")
    return value


def alerted_pipelines() -> dict[str, Any]:
    """Where each state machine's pipeline logs its steps, for the alert's links."""
    value = os.environ.get(PIPELINES_VARIABLE, "").strip()
    if not value:
        raise MissingStackError(f"environment variable {PIPELINES_VARIABLE} is not set")
    pipelines: dict[str, Any] = json.loads(value)
    return pipelines
