"""RecordRun's payload: a malformed one is refused naming the field, before any AWS call."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from lambdas import record_run
from lambdas.shared.run_models import RecordRunRequest

PAYLOAD: dict[str, Any] = {
    "pipeline": "example",
    "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:Nightshift-example:example-2025-06-01",
    "run": {"run_date": "2025-06-01", "cluster": {"cluster_id": "j-ABC123"}, "launch": {"attempt": 1}},
    "runner_task": {"cpu": 256, "memory_mib": 512},
}


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("run", "run_date"), "yesterday", "run.run_date"),
        (("run", "cluster", "cluster_id"), "cluster-1", "run.cluster.cluster_id"),
        (("execution_arn",), "arn:aws:states:::nope", "execution_arn"),
        (("runner_task", "cpu"), 100, "runner_task.cpu"),
        (("pipeline",), "-bad", "pipeline"),
    ],
)
def test_a_bad_payload_names_the_field(
    path: tuple[str, ...], value: Any, field: str, untouchable: Any, lambda_context: Any
) -> None:
    bad = copy.deepcopy(PAYLOAD)
    target = bad
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValidationError) as caught:
        record_run.handler(bad, lambda_context, emr=untouchable.emr, sfn=untouchable.sfn)
    assert any(".".join(str(p) for p in error["loc"]) == field for error in caught.value.errors())
    assert untouchable.calls == []


def test_a_failed_run_state_keeps_its_error_for_the_record() -> None:
    request = RecordRunRequest.model_validate(
        {**PAYLOAD, "run": {**PAYLOAD["run"], "error": {"Error": "States.TaskFailed", "Cause": "{}"}}}
    )
    assert request.run.error is not None and request.run.error.Error == "States.TaskFailed"
