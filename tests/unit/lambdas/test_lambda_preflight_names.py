"""The run date Preflight reads from an execution's name: the schedule's, the CLI's and its reruns'."""

from __future__ import annotations

import pytest

from lambdas.shared.preflight import batch_range_of_name, date_of_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example-2025-06-01", "2025-06-01"),
        ("example-2025-06-01-r2", "2025-06-01"),
        ("example-2025-06-01-r12", "2025-06-01"),
        # Another pipeline whose name starts like this one's is not this pipeline's run.
        ("example-eu-2025-06-01", None),
        ("example-2025-06-01-rerun-1", None),
        ("example-2025-06-01-r", None),
        ("example-2025-02-30", None),
        ("example-20250601", None),
        ("example", None),
        ("billing-2025-06-01", None),
    ],
)
def test_date_of_name(name: str, expected: str | None) -> None:
    assert date_of_name(name, "example") == expected


def test_a_pipeline_name_with_a_date_like_tail_is_not_misread() -> None:
    assert date_of_name("v2.orders-2025-06-01-r3", "v2.orders") == "2025-06-01"
    assert date_of_name("v2xorders-2025-06-01", "v2.orders") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example-batch-2025-06-01-2025-06-03", ("2025-06-01", "2025-06-03")),
        ("example-batch-2025-06-01-2025-06-03-r2", ("2025-06-01", "2025-06-03")),
        ("example-batch-2025-06-01-2025-06-01", ("2025-06-01", "2025-06-01")),
        ("example-batch-2025-06-03-2025-06-01", None),  # backwards: no range
        ("example-batch-2025-06-01", None),
        ("example-batch-2025-06-01-2025-06-03-checks", None),
        ("example-2025-06-01", None),
        ("billing-batch-2025-06-01-2025-06-03", None),
    ],
)
def test_batch_range_of_name(name: str, expected: tuple[str, str] | None) -> None:
    found = batch_range_of_name(name, "example")
    assert (None if found is None else (found.first.isoformat(), found.last.isoformat())) == expected


def test_a_batch_name_is_no_run_of_its_first_date() -> None:
    # Read as its first date only, a batch would let a night of its second date run beside it.
    assert date_of_name("example-batch-2025-06-01-2025-06-03", "example") is None


@pytest.mark.parametrize("attempt", [1, 2, 12])
@pytest.mark.parametrize(
    ("pipeline", "first", "last"),
    [("example", "2025-06-01", "2025-07-01"), ("v2.orders", "2024-12-31", "2025-01-02")],
)
def test_preflight_reads_the_range_of_every_batch_name_the_cli_makes(
    pipeline: str, first: str, last: str, attempt: int
) -> None:
    # The CLI names a batch, Preflight reads what it holds from that name alone: the two must agree.
    from runner.deployed.backfill import batch_name, batch_range  # noqa: PLC0415 - the CLI's side

    name = batch_name(pipeline, first, last, attempt)
    found = batch_range_of_name(name, pipeline)
    assert found is not None and (found.first.isoformat(), found.last.isoformat()) == batch_range(
        pipeline, name
    )
    assert date_of_name(name, pipeline) is None
