"""The warm engine's protocol: JSON lines over a Unix socket in the state dir, one connection per step."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from runner.errors import StateDirInUse

PROTOCOL_VERSION = 1
SOCKET_NAME = "engine.sock"
LOCK_NAME = "engine.lock"  # held by the engine for its whole life: free means no engine
START_LOCK_NAME = "start.lock"  # held by a runner while it checks for an engine and starts one
LOG_NAME = "engine.log"
STEP_DIR_PREFIX = "step-"  # a runner's private folder for one step's FIFOs, in the engine's folder
# sun_path holds 108 bytes; a longer socket path is reached through the folder's descriptor.
MAX_SOCKET_PATH = 100

Message = dict[str, Any]


def engine_dir(state_dir: Path) -> Path:
    """The engine's own folder in the state dir: its socket, locks and log (mode 0700)."""
    return state_dir / "engine"


def make_engine_dir(state_dir: Path) -> Path:
    folder = engine_dir(state_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = folder.stat().st_uid
    if owner != os.getuid():
        # Made by another user (a state dir in a shared folder): its socket and locks are not ours.
        raise StateDirInUse(not_ours(state_dir, f"its engine folder belongs to uid {owner}"))
    os.chmod(folder, 0o700)
    return folder


def not_ours(state_dir: Path, found: str) -> str:
    """The one line that says a state dir is another user's, with what showed it."""
    return f"--state-dir {state_dir} is another user's ({found}): use a state dir of your own"


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An address for bind/connect that fits sun_path, however deep the state dir is."""
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, as the kernel saw it connect."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid


def send(sock: socket.socket, message: Message) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


class Reader:
    """Cuts what a socket delivers into messages, one JSON object per line."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[Message]:
        lines = (self._tail + data).split(b"\n")
        self._tail = lines.pop()
        return [json.loads(line) for line in lines if line.strip()]


def receive(sock: socket.socket, reader: Reader) -> list[Message] | None:
    """The messages that have arrived (blocking per the socket's timeout); None at end of stream."""
    data = sock.recv(65536)
    if not data:
        return None
    return reader.feed(data)
