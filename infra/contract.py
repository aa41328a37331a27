"""The synth-time half of the CreateCluster contract: the payload must pass the Lambda's own model."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import Token
from pydantic import ValidationError

from lambdas.shared.models import CreateClusterRequest

# Payload fields that come from pipeline.toml, by their key there.
_TOML_KEYS = {"cluster": "[cluster]"}


class ContractError(ValueError):
    """What the state machine would send a Lambda is what that Lambda refuses; names folder and key."""


def _known_only_at_run_time(value: Any) -> bool:
    # JsonPath references ($.run_date) and CloudFormation values (subnet ids, role names) are tokens
    # at synth: the model can only judge them when the run sends them.
    return isinstance(value, str | int | float | list) and Token.is_unresolved(value)


def _where(loc: tuple[int | str, ...], renamed: Mapping[str, str]) -> str:
    fields = [str(part) for part in loc if isinstance(part, str)]
    if len(fields) >= 2 and fields[0] in _TOML_KEYS:
        key = renamed.get(fields[1], fields[1])
        return f"pipeline.toml {_TOML_KEYS[fields[0]]} {key}"
    return "CreateCluster payload field " + ".".join(fields)


def check_create_cluster_payload(
    folder: Path, payload: Mapping[str, Any], *, renamed: Mapping[str, str] | None = None
) -> None:
    """Validate ``payload`` with CreateClusterRequest; raise ContractError naming folder and key.

    ``renamed`` maps a payload field to the pipeline.toml key it came from when the names differ
    (a launch attempt's ``core_instance_type`` comes from ``core_instance_types``).
    """
    try:
        CreateClusterRequest.model_validate(payload)
    except ValidationError as exc:
        problems = [
            f"{_where(error['loc'], renamed or {})}: {error['msg']}"
            + ("" if error["type"] == "missing" else f" (got {error['input']!r})")
            for error in exc.errors()
            if error["type"] == "missing" or not _known_only_at_run_time(error["input"])
        ]
        if problems:
            raise ContractError(
                f"{folder}: the CreateCluster Lambda would refuse this pipeline's nightly run: "
                + "; ".join(problems)
            ) from exc
