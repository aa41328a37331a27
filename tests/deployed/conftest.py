"""The deployed command line's tests: runner.deployed against moto's interpreter of the synthesized app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.moto_harness import Harness
from tests.support.aws import pipeline_in_moto

PIPELINE = "nightly"


@pytest.fixture
def deployed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """The nightly pipeline's state machine in moto's interpreter, tagged as the template tags it."""
    yield from pipeline_in_moto(request, "test_synth", PIPELINE, monkeypatch)


@pytest.fixture(scope="module")
def deployed_once(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """`deployed`, made once for a module whose tests only read it or put back what they change (a
    harness is seconds to build, more under load)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield from pipeline_in_moto(request, "test_synth", PIPELINE, monkeypatch)
