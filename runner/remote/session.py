"""The connection of one step run: made once, remade with backoff after a drop, within a reconnect budget."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from runner.errors import ConnectionFailure
from runner.execution import StopRequest
from runner.remote.target import SSHTarget
from runner.remote.transport import (
    Cancel,
    CommandResult,
    Connection,
    ConnectSettings,
    Interrupted,
    Pin,
    SessionRefused,
    Unreachable,
    connect,
)


@dataclass(frozen=True)
class Reconnect:
    """How long and how often to try again after a dropped connection (--reconnect-timeout)."""

    timeout: float = 300.0
    backoff: float = 0.5
    backoff_max: float = 10.0


class BudgetExhausted(Unreachable):
    """The connection stayed lost, with no progress, for the whole reconnect budget."""


def reason(error: BaseException, label: str) -> str:
    """An error's message without the host label the transport puts in front of it."""
    return str(error).removeprefix(f"{label}: ")


class Session:
    """The connection of one step run; after a drop, reconnects with backoff until the budget runs out.

    The budget counts from the first loss and starts afresh only when the step made progress
    (output or its exit code, see `progress`): a server that accepts every connection and drops
    it again before anything arrives ends the run within the budget instead of looping.
    A second connection is opened only when the server refuses one more session on the first
    (MaxSessions 1 while a follower holds the only one), and only for that command.
    """

    def __init__(
        self,
        target: SSHTarget,
        pin: Pin | None,
        settings: ConnectSettings,
        reconnect: Reconnect,
        *,
        notice: Callable[[str], None],
        stop: StopRequest,
    ) -> None:
        self.target = target
        self._pin = pin
        self._settings = settings
        self._reconnect = reconnect
        self._notice = notice
        self._stop = stop
        self._connection: Connection | None = None
        self._side: Connection | None = None
        self._lost_at: float | None = None
        self._delay = reconnect.backoff
        self._reconnects = 0
        self._last = ""
        #: said after "not re-established": where the step may still run and how to reattach
        self.hint = ""

    @property
    def label(self) -> str:
        return self.target.label

    def _connect(self, cancel: Cancel) -> Connection:
        return connect(self.target, self._settings, self._pin, cancel=cancel)

    def open(self) -> Connection:
        """The first connection: one attempt within the connect timeout, as `ssh` makes it; a stop ends it."""
        self._connection = self._connect(self._stop.is_set)
        return self._connection

    def progress(self) -> None:
        """Output or the exit code arrived: the next loss starts a new reconnect budget."""
        self._lost_at = None

    def lost(self, connection: Connection, why: str) -> None:
        connection.close()
        if connection is self._side:
            self._side = None
            return
        if connection is not self._connection:
            return
        self._connection = None
        self._last = why
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            self._delay = self._reconnect.backoff
            self._reconnects = 0
            self._notice(f"connection to {self.label} lost ({why}); reconnecting")

    def discard(self, connection: Connection) -> None:
        """Close a connection that is fine but no longer usable (an upload cut short); no notice."""
        connection.close()
        if connection is self._connection:
            self._connection = None

    def connection(self) -> Connection:
        """The live connection, reconnecting after a loss; BudgetExhausted, or Interrupted on a stop."""
        if self._connection is not None and self._connection.active:
            return self._connection
        if self._connection is not None:
            self.lost(self._connection, "the connection closed")
        lost_at = self._lost_at if self._lost_at is not None else time.monotonic()
        budget = self._reconnect.timeout
        while True:
            waited = time.monotonic() - lost_at
            if waited >= budget:
                raise BudgetExhausted(self._exhausted(budget))
            pause = min(self._delay, budget - waited)
            if self._stop.wait(pause):
                raise Interrupted(f"{self.label}: reconnecting abandoned")
            self._delay = min(self._delay * 2, self._reconnect.backoff_max)
            try:
                connection = self._connect(partial(self._given_up, lost_at + budget))
            except Unreachable as error:
                self._last = reason(error, self.label)
                continue
            except Interrupted:
                if self._stop.is_set():
                    raise
                continue  # the budget ran out during the attempt: said on the next turn
            self._reconnects += 1
            self._connection = connection
            self._notice(f"reconnected to {self.label} (attempt {self._reconnects})")
            return connection

    def _given_up(self, deadline: float) -> bool:
        return self._stop.is_set() or time.monotonic() > deadline

    def _exhausted(self, budget: float) -> str:
        if self._reconnects:
            what = (
                f"connection to {self.label} keeps dropping: no progress within {budget:g} s of the first "
                f"loss ({self._reconnects} reconnects; last: {self._last})"
            )
        else:
            what = (
                f"connection to {self.label} lost and not re-established within {budget:g} s ({self._last})"
            )
        return what + self.hint

    def rescue(self, seconds: float, *, beside: bool = False) -> Connection | None:
        """For a stopping runner: a connection within `seconds`, or None when there is none.

        A second connection opened for the stop is used first; with `beside` (a follower still runs
        on the live connection) one is opened next to it, which neither MaxSessions 1 nor the
        output still in flight on the live one can hold up. Otherwise the live connection, or one
        new attempt when it is gone.
        """
        deadline = time.monotonic() + seconds
        if self._side is not None and self._side.active:
            return self._side
        live = self._connection is not None and self._connection.active
        if live and not beside:
            return self._connection
        try:
            connection = self._connect(lambda: time.monotonic() > deadline)
        except (ConnectionFailure, Interrupted) as error:
            self._last = reason(error, self.label)
            return None
        if live:
            self._side = connection
        else:
            self._connection = connection
        return connection

    def run(
        self,
        connection: Connection,
        command: str,
        *,
        stdin: bytes | None = None,
        timeout: float = 60.0,
        cancel: Cancel | None = None,
    ) -> CommandResult:
        """Run `command` on `connection`, or on a second connection when the server refuses a session there.

        SessionRefused when even a fresh connection is refused one: the server allows no session.
        """
        try:
            return connection.run(command, stdin=stdin, timeout=timeout, cancel=cancel)
        except SessionRefused as refused:
            side = self._side_connection(cancel)
            try:
                return side.run(command, stdin=stdin, timeout=timeout, cancel=cancel)
            except SessionRefused as error:
                raise SessionRefused(
                    f"{self.label}: the server refuses every session ({reason(error, self.label)}): "
                    "check MaxSessions in its sshd_config"
                ) from refused

    def _side_connection(self, cancel: Cancel | None) -> Connection:
        if self._side is None or not self._side.active:
            self._side = self._connect(cancel or self._stop.is_set)
        return self._side

    def close(self) -> None:
        for connection in (self._connection, self._side):
            if connection is not None:
                connection.close()
        self._connection = self._side = None
