"""The reconnect budget and backoff of a step's SSH session, with connections faked (no network)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any, cast

import pytest

from runner.execution import StopRequest
from runner.remote import session as session_module
from runner.remote.hostkeys import HostKeyPolicy
from runner.remote.session import BudgetExhausted, Reconnect, Session
from runner.remote.target import SSHTarget
from runner.remote.transport import Connection, ConnectSettings, Interrupted, Unreachable

TARGET = SSHTarget(alias="master", hostname="master", port=22, user="hadoop")


class _FakeConnection:
    def __init__(self) -> None:
        self.active = True

    def close(self) -> None:
        self.active = False


class _Server:
    """Answers connection attempts: each one logs in (or is refused, while `down`)."""

    def __init__(self) -> None:
        self.attempts = 0
        self.down = False

    def connect(self, *_args: Any, **_kwargs: Any) -> Connection:
        self.attempts += 1
        if self.down:
            raise Unreachable(f"{TARGET.label}: cannot connect to master:22: Connection refused")
        return cast(Connection, _FakeConnection())


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> _Server:
    fake = _Server()
    monkeypatch.setattr(session_module, "connect", fake.connect)
    return fake


def _session(notices: list[str], stop: StopRequest, *, budget: float, backoff: float = 0.01) -> Session:
    settings = ConnectSettings(policy=HostKeyPolicy((Path("/nonexistent"),)))
    return Session(
        TARGET, None, settings, Reconnect(budget, backoff, backoff * 2), notice=notices.append, stop=stop
    )


def test_reconnects_that_make_no_progress_do_not_renew_the_budget(server: _Server) -> None:
    notices: list[str] = []
    session = _session(notices, StopRequest(), budget=0.3)
    session.hint = "; run again with --run-id r to reattach"
    connection = session.open()

    started = time.monotonic()
    with pytest.raises(BudgetExhausted) as raised:
        while True:  # every connection is dropped again before anything arrives
            session.lost(connection, "the connection closed")
            connection = session.connection()

    # A budget each reconnect renewed would never end (the loop above would not); 10 s of room for a
    # thread that load 20 keeps off the cores.
    assert time.monotonic() - started < 0.3 + 10
    assert "keeps dropping: no progress within 0.3 s of the first loss" in str(raised.value)
    assert str(raised.value).endswith("; run again with --run-id r to reattach")
    assert sum("lost" in notice for notice in notices) == 1  # one loss, however many reconnects


def test_progress_renews_the_budget(server: _Server) -> None:
    # A budget of a second: a drop and its reconnect take milliseconds, and at load 20 this thread may
    # wait a few hundred more for a core (0.2 s was within reach of one such wait).
    session = _session([], StopRequest(), budget=1.0)
    connection = session.open()

    started = time.monotonic()
    while time.monotonic() - started < 3.0:  # three budgets long, with output between the drops
        session.lost(connection, "the connection closed")
        connection = session.connection()
        session.progress()

    assert connection.active


def test_a_server_that_stays_down_ends_within_the_budget(server: _Server) -> None:
    session = _session([], StopRequest(), budget=1.0)
    connection = session.open()
    server.down = True
    session.lost(connection, "the connection closed")

    with pytest.raises(BudgetExhausted, match=r"lost and not re-established within 1 s \(cannot connect"):
        session.connection()
    assert server.attempts > 2


def test_a_stop_while_backing_off_ends_the_wait_at_once(server: _Server) -> None:
    stop = StopRequest()
    session = _session([], stop, budget=300, backoff=30)
    connection = session.open()
    session.lost(connection, "the connection closed")
    stop.trigger(signal.SIGTERM)

    started = time.monotonic()
    with pytest.raises(Interrupted):
        session.connection()
    assert time.monotonic() - started < 10  # not the 30 s backoff (nor the 300 s budget)


def test_rescue_opens_a_second_connection_beside_a_live_one(server: _Server) -> None:
    session = _session([], StopRequest(), budget=1)
    live = session.open()

    beside = session.rescue(1.0, beside=True)

    assert beside is not None and beside is not live
    assert session.rescue(1.0) is beside  # the clean-up after the stop uses it too
    assert session.connection() is live
