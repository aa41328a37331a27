"""Fixtures of the warm engine's tests: an engine of the module's own, for tests that end or hold it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.local.warm.client import engine_alive, stop_engine


@pytest.fixture(scope="module")
def warm_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One state dir (so one warm engine) for the module's tests that end, kill or hold their engine;
    ended afterwards. Steps that only need Spark SQL use the session's shared_warm_state instead."""
    state = tmp_path_factory.mktemp("warm") / "state"
    yield state
    stop_engine(state)
    assert not engine_alive(state)
