"""A TCP relay in front of the test sshd that cuts, slows or turns away connections, as a bad network does."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

CHUNK = 16 * 1024


@dataclass
class TcpProxy:
    """Relays 127.0.0.1:`port` to 127.0.0.1:`target`; what it does to each connection can change at any time."""

    target: int
    #: accept new connections and close them at once (a master that is down, its port still open)
    turn_away: bool = False
    #: cut each connection this many seconds after it was accepted
    lifetime: float | None = None
    #: bytes per second from the client to the server (an upload over a slow link)
    upload_rate: float | None = None
    #: bytes per second from the server to the client (output over a slow link)
    download_rate: float | None = None
    #: pass a side's end of sending on to the other side; False is a middlebox that keeps the far side
    #: open, so a client whose socket can no longer send still reads as if nothing happened
    pass_half_close: bool = True
    port: int = field(init=False)
    accepted: int = field(init=False, default=0)
    #: when (time.monotonic()) each connection was cut at the end of its lifetime
    cut_at: list[float] = field(init=False, default_factory=list)
    _listener: socket.socket = field(init=False)
    _open: list[socket.socket] = field(init=False, default_factory=list)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _closed: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Cut every relayed connection now, as a network failure would."""
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.turn_away:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            threading.Thread(target=self._relay, args=(client, server, self.upload_rate), daemon=True).start()
            threading.Thread(
                target=self._relay, args=(server, client, self.download_rate), daemon=True
            ).start()
            if self.lifetime is not None:
                timer = threading.Timer(self.lifetime, self._cut_pair, (client, server))
                timer.daemon = True
                timer.start()

    def _cut_pair(self, *pair: socket.socket) -> None:
        self.cut_at.append(time.monotonic())
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _relay(self, source: socket.socket, sink: socket.socket, rate: float | None) -> None:
        try:
            while data := source.recv(CHUNK):
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        if self.pass_half_close:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def tcp_proxy(target: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target)
    try:
        yield proxy
    finally:
        proxy.close()


@dataclass
class MuteListener:
    """A port that accepts TCP connections and never says a word of SSH: a hung server."""

    port: int
    held: list[socket.socket] = field(default_factory=list)


@contextlib.contextmanager
def mute_listener() -> Iterator[MuteListener]:
    listener = socket.create_server(("127.0.0.1", 0))
    mute = MuteListener(listener.getsockname()[1])

    def hold() -> None:
        while True:
            try:
                mute.held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=hold, daemon=True).start()
    try:
        yield mute
    finally:
        listener.close()
        for sock in mute.held:
            sock.close()
