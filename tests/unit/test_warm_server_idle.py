"""The warm engine never ends idle under a runner it has said hello to, and a runner whose engine ends
before its hello starts a new one instead of failing its step."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from runner.local.warm import protocol
from runner.local.warm.client import _connect
from runner.local.warm.server import Server


class NoJvmServer(Server):
    """The real accept loop, idle rule and connection threads; the JVM is not what is tested here."""

    def _work(self) -> None:
        self.ready.set()


def _wait(condition: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.01)


def test_an_idle_engine_waits_for_the_runner_it_said_hello_to(tmp_path: Path) -> None:
    # The race seen in the suite: the engine's idle time ran out between a runner's hello and its
    # request, the engine ended, and the runner's step failed ("the warm engine ended during the step").
    server = NoJvmServer(tmp_path, "fp", idle_seconds=3600, spark_submit="unused", submit_args=[])
    serving = threading.Thread(target=server.serve, daemon=True)
    serving.start()
    socket_path = protocol.engine_dir(tmp_path) / protocol.SOCKET_NAME
    _wait(lambda: socket_path.exists() and server.ready.is_set())
    conn, hello = _connect(socket_path)
    try:
        assert hello["event"] == "hello" and hello["ready"]
        _wait(lambda: server.connections == 1)
        with server.lock:
            server.idle_seconds, server.last_active = 0, time.monotonic() - 3600  # long idle by now
        assert server._should_end() is False
        assert serving.is_alive()
    finally:
        conn.close()
    # Once the runner has gone, the idle rule applies again: the engine ends by itself.
    with server.lock:
        server.idle_seconds = 0
    serving.join(60)
    assert not serving.is_alive() and server.connections == 0
    assert not socket_path.exists()


def test_an_engine_that_closes_before_its_hello_is_an_ending_engine_not_a_broken_one(tmp_path: Path) -> None:
    # The runner's caller waits for an engine that raised OSError to be gone and starts a new one;
    # any other error made the step run cold or fail.
    path = tmp_path / "engine.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def end_after_accept() -> None:
        conn, _ = listener.accept()
        conn.close()  # the engine's process exits: no hello

    closing = threading.Thread(target=end_after_accept, daemon=True)
    closing.start()
    with pytest.raises(OSError, match="closed before its hello"):
        _connect(path)
    closing.join(60)
    listener.close()
