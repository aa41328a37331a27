"""A shared-cluster backfill's payloads (issue 22): a batch is one run of at most MAX_BATCH_DATES days."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from lambdas.shared.models import PreflightRequest
from lambdas.shared.run_models import RecordRunRequest
from lambdas.shared.run_states import MAX_BATCH_DATES

ARN = "arn:aws:states:us-east-1:123456789012:execution:nightshift-example:example-batch-2025-06-01-2025-06-03"
FIRST = date(2025, 6, 1)


def _preflight(**extra: Any) -> dict[str, Any]:
    return {
        "pipeline": "example",
        "execution_arn": ARN,
        "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:nightshift-example",
        "run_date": FIRST.isoformat(),
        **extra,
    }


def _days(count: int) -> list[str]:
    return [(FIRST + timedelta(days=n)).isoformat() for n in range(count)]


def test_a_batch_of_the_most_dates_is_taken_and_one_more_is_refused() -> None:
    assert PreflightRequest.model_validate(_preflight(batch_dates=_days(MAX_BATCH_DATES))).batch_dates
    with pytest.raises(ValidationError, match=f"at most {MAX_BATCH_DATES} items"):
        PreflightRequest.model_validate(_preflight(batch_dates=_days(MAX_BATCH_DATES + 1)))
    runs = [f"example-{day}" for day in _days(MAX_BATCH_DATES + 1)]
    record = {"pipeline": "example", "execution_arn": ARN, "run": {"run_date": FIRST.isoformat()}}
    with pytest.raises(ValidationError, match=f"at most {MAX_BATCH_DATES} items"):
        RecordRunRequest.model_validate({**record, "batch_runs": runs})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"batch_dates": ["2025-06-01", "2025-06-03"]}, "batch_dates is not one run of days: 2025-06-03"),
        ({"batch_dates": ["2025-06-02", "2025-06-03"]}, "batch_dates starts 2025-06-02, not at run_date"),
        ({"batch_dates": ["2025-06-01"], "batch_arn": ARN}, "a run is a batch .* or one of a batch's dates"),
    ],
)
def test_a_batch_that_is_no_one_range_from_its_run_date_is_refused(
    extra: dict[str, Any], message: str
) -> None:
    # Its name and its cluster's tag carry one range: any other set of dates would be misread.
    with pytest.raises(ValidationError, match=message):
        PreflightRequest.model_validate(_preflight(**extra))


def test_a_night_sends_nulls_for_the_batch_fields() -> None:
    # The state machine sends every field on every path; a night's are null.
    request = PreflightRequest.model_validate(_preflight(batch_dates=None, batch_arn=None))
    assert (request.batch_dates, request.batch_arn) == (None, None)
