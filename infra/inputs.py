"""A pipeline's [inputs] as its deployed run checks them: S3 paths within its data_access."""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import ceil

from infra.config import S3_PATH, DataAccess, S3Path
from lambdas.shared.models import DATE_VARIABLES, CheckInputsRequest
from runner.config import expand_input
from runner.model import Pipeline

# Each check is a Lambda call of a second or so, and some may be retried.
INPUTS_CHECK_SLACK_MINUTES = 5
#: where the first date of the run goes in a template: what comes before it is fixed at synth
_DATE_REFERENCE = re.compile("|".join(re.escape("{" + name + "}") for name in DATE_VARIABLES))


class InputsAccessError(ValueError):
    """An [inputs] path the deployed run could not check: not in S3, or outside the pipeline's read access."""


@dataclass(frozen=True)
class DeployedInput:
    kind: str
    #: the path with [variables] in, the run's dates left for the CheckInputs Lambda ({run_date}...)
    template: str
    #: what IAM may let the Lambda list: the path up to where the run date goes
    listable: S3Path


def deployed_inputs(pipeline: Pipeline, access: DataAccess) -> list[DeployedInput]:
    """The pipeline's inputs with its [variables] (never [variables.local]); refused outside `access`."""
    inputs = pipeline.config.inputs
    if inputs is None:
        return []
    readable = (*access.read, *access.write)
    values = {**pipeline.config.variables, **{name: "{" + name + "}" for name in DATE_VARIABLES}}
    found = []
    for kind, declared in inputs.paths:
        template = expand_input(declared, values)
        where = f"pipeline {pipeline.name!r}: [inputs] {declared!r} (deployed: {template})"
        match = S3_PATH.match(template)
        if match is None or not match["prefix"]:
            raise InputsAccessError(
                f"{where}: a deployed run checks its inputs in S3: expected s3://bucket/key"
            )
        static = _DATE_REFERENCE.split(template, 1)[0]
        bucket, _, key = static.removeprefix("s3://").partition("/")
        if not any(path.bucket == bucket and key.startswith(path.prefix) for path in readable):
            granted = ", ".join(path.uri for path in readable) or "nothing"
            raise InputsAccessError(
                f"{where}: outside what cdk.json data_access lets the pipeline read ({granted});"
                f" add its bucket and prefix to data_access.{pipeline.name}.read"
            )
        found.append(DeployedInput(kind, template, S3Path(bucket, key)))
    return found


def check_inputs_payload(pipeline: Pipeline, inputs: list[DeployedInput]) -> dict[str, object]:
    """The CheckInputs payload without the run's own fields, checked against the Lambda's model."""
    payload: dict[str, object] = {
        "pipeline": pipeline.name,
        "inputs": [{"kind": item.kind, "path": item.template} for item in inputs],
    }
    # As the Lambda will parse it: a template it refuses fails the synth, not the night.
    CheckInputsRequest.model_validate({**payload, "run_date": "2025-01-01"})
    return payload


def inputs_wait_minutes(pipeline: Pipeline) -> int:
    """How long the input gate may hold a run before Preflight: the deadline, a last poll, the checks."""
    inputs = pipeline.config.inputs
    if inputs is None:
        return 0
    return ceil(inputs.wait_minutes + inputs.poll_minutes) + INPUTS_CHECK_SLACK_MINUTES
