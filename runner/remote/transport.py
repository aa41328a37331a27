"""The SSH transport: connect (through bastions), verify the host key, authenticate, run commands."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from runner.errors import ConnectionFailure, UsageError
from runner.remote.hostkeys import HostKeyError, HostKeyPolicy
from runner.remote.target import DEFAULT_IDENTITIES, SSHTarget

# paramiko's transport thread reports a dropped connection as an ERROR traceback on stderr;
# the runner says it in one line itself, and reconnects.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

# A larger window than paramiko's 2 MiB lets sshd keep sending while this process writes a block out.
WINDOW_SIZE = 8 * 1024 * 1024
MAX_PACKET_SIZE = 32 * 1024
READ_SIZE = 1024 * 1024
POLL_SECONDS = 0.1
# A refused session is asked for again after a round trip: sshd may not have freed the last one yet.
SESSION_ATTEMPTS = 3
OPEN_TIMEOUT = 30.0
# Ciphers whose MAC is part of the mode cost one pass over the data instead of two.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


Socket = socket.socket | paramiko.Channel | paramiko.ProxyCommand

#: What a call that sends can raise once the connection is gone. A read sends too (a window adjust
#: after a tenth of the window), and paramiko raises a bare EOFError when the socket refuses a write
#: before its reader thread has seen the loss.
LOST = (paramiko.SSHException, OSError, EOFError)


def read_ready(channel: paramiko.Channel, *, stderr: bool = False) -> bytes | None:
    """What `channel` holds of one stream now (b"" when nothing); None when the connection went under it.

    The bytes of a read that fails are gone from paramiko's buffer: a caller that resumes from what
    it relayed (an offset) gets them again from the far side.
    """
    ready, recv = (
        (channel.recv_stderr_ready, channel.recv_stderr) if stderr else (channel.recv_ready, channel.recv)
    )
    try:
        return recv(READ_SIZE) if ready() else b""
    except LOST:
        return None


def close_channel(channel: paramiko.Channel) -> None:
    """Close `channel`; over a connection that is gone there is nothing left to tell the server."""
    with contextlib.suppress(*LOST):
        channel.close()


class Unreachable(ConnectionFailure):
    """The host could not be reached, or the connection broke; trying again may help."""


class AuthenticationFailure(ConnectionFailure):
    """The server refused every key offered (as ssh: 255). Trying again will not help."""


class SessionRefused(ConnectionFailure):
    """The server refused to open a session on a connection (its MaxSessions is reached, or 0)."""


class Interrupted(Exception):
    """A connection attempt or a command was abandoned because the caller's `cancel` said so."""


Cancel = Callable[[], bool]


@dataclass(frozen=True)
class ConnectSettings:
    """How to connect; the same for every hop."""

    policy: HostKeyPolicy
    key_material: str | None = None
    send_env: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 10.0
    keepalive_seconds: float = 15.0
    use_agent: bool = True


@dataclass(frozen=True)
class Pin:
    """Host keys the target must present (a cluster's published keys), and where they came from."""

    keys: tuple[paramiko.PKey, ...]
    source: str


@dataclass
class CommandResult:
    exit_status: int
    stdout: bytes
    stderr: bytes


@dataclass
class Connection:
    """An authenticated SSH connection to a target, and the bastion connections it runs through."""

    target: SSHTarget
    transport: paramiko.Transport
    hops: list[paramiko.Transport] = field(default_factory=list)
    trust: str = ""
    send_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.transport.is_active())

    def exec(self, command: str) -> paramiko.Channel:
        """Start `command` (a fixed POSIX sh script of the runner's, never step text) in a new session.

        Raises SessionRefused when the server will not open one more session on this connection
        (MaxSessions), Unreachable when the connection is gone.
        """
        for attempt in range(SESSION_ATTEMPTS):
            try:
                channel = self.transport.open_session(
                    window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE, timeout=OPEN_TIMEOUT
                )
                break
            except paramiko.ChannelException as error:
                if attempt == SESSION_ATTEMPTS - 1:
                    raise SessionRefused(
                        f"{self.target.label}: the server refused to open a session ({error.text})"
                    ) from error
                # sshd frees a closed session's slot only after it has read our close: one round trip
                # (a keepalive with a reply) later, the slot of the previous command is free.
                try:
                    self.transport.global_request("keepalive@openssh.com", wait=True)
                except LOST as error:
                    raise Unreachable(f"{self.target.label}: connection lost: {_reason(error)}") from error
                time.sleep(0.02 * attempt)
            except LOST as error:
                raise Unreachable(f"{self.target.label}: cannot start a command: {_reason(error)}") from error
        try:
            # As OpenSSH's SendEnv: the server takes what its AcceptEnv allows (LANG, LC_* on EMR).
            for name, value in self.send_env.items():
                channel.set_environment_variable(name, value)
            channel.exec_command(command)
        except LOST as error:
            close_channel(channel)
            raise Unreachable(f"{self.target.label}: cannot start a command: {_reason(error)}") from error
        return channel

    def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        timeout: float = 60.0,
        cancel: Cancel | None = None,
    ) -> CommandResult:
        """Run a short command to its end, feeding it `stdin` (then EOF), and collect its output.

        `timeout` bounds each wait for progress, not the whole command: a large stdin on a slow
        link takes as long as it takes while bytes keep moving. `cancel` abandons it (Interrupted).
        """
        channel = self.exec(command)
        try:
            if stdin is not None:
                self._send(channel, stdin, timeout, cancel)
            return self._collect(channel, timeout, cancel)
        finally:
            close_channel(channel)

    def _send(self, channel: paramiko.Channel, data: bytes, timeout: float, cancel: Cancel | None) -> None:
        # A short timeout on the channel turns a full window into a chance to look at `cancel`.
        channel.settimeout(POLL_SECONDS)
        offset = 0
        deadline = time.monotonic() + timeout
        while offset < len(data):
            if cancel is not None and cancel():
                raise Interrupted(f"{self.target.label}: command abandoned")
            if channel.exit_status_ready():
                return  # it ended without reading all of it (a refusal): its status and stderr say why
            try:
                sent = channel.send(data[offset : offset + MAX_PACKET_SIZE])
            except TimeoutError:
                sent = 0
            except LOST as error:
                if channel.exit_status_ready():
                    return
                raise Unreachable(f"{self.target.label}: connection lost: {_reason(error)}") from error
            if sent:
                offset += sent
                deadline = time.monotonic() + timeout
            elif channel.closed or not self.active:
                raise Unreachable(f"{self.target.label}: connection lost")
            elif time.monotonic() > deadline:
                raise Unreachable(f"{self.target.label}: no progress within {timeout:g} s")
        try:
            channel.shutdown_write()
        except LOST as error:
            raise Unreachable(f"{self.target.label}: connection lost: {_reason(error)}") from error

    def _collect(self, channel: paramiko.Channel, timeout: float, cancel: Cancel | None) -> CommandResult:
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            for stderr, into in ((False, out), (True, err)):
                while chunk := read_ready(channel, stderr=stderr):
                    into.extend(chunk)
                if chunk is None:
                    raise Unreachable(f"{self.target.label}: connection lost under a read")
            if channel.exit_status != -1 and (channel.eof_received or channel.closed):
                if not (channel.recv_ready() or channel.recv_stderr_ready()):
                    return CommandResult(channel.exit_status, bytes(out), bytes(err))
            elif channel.closed or not self.active:
                raise Unreachable(f"{self.target.label}: connection lost")
            if cancel is not None and cancel():
                raise Interrupted(f"{self.target.label}: command abandoned")
            if time.monotonic() > deadline:
                raise Unreachable(f"{self.target.label}: no answer within {timeout:g} s")
            if channel.eof_received:
                channel.status_event.wait(POLL_SECONDS / 2)
            else:
                select.select([channel], [], [], POLL_SECONDS / 2)

    def close(self) -> None:
        for transport in [self.transport, *reversed(self.hops)]:
            transport.close()


class _Watch:
    """Closes what a connection attempt waits on once `cancel` says so.

    paramiko's handshake, authentication and channel-open waits each end within 0.1 s once their
    transport is closed; a TCP connect is polled (see _dial). So Ctrl-C ends an attempt at once,
    not after --connect-timeout.
    """

    def __init__(self, cancel: Cancel | None) -> None:
        self._cancel = cancel
        self._closables: list[Socket | paramiko.Transport] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.fired = False
        if cancel is not None:
            threading.Thread(target=self._watch, name="nightshift-connect-watch", daemon=True).start()

    def cancelled(self) -> bool:
        return self.fired or (self._cancel is not None and self._cancel())

    def add(self, closable: Socket | paramiko.Transport) -> None:
        with self._lock:
            self._closables.append(closable)
            fired = self.fired
        if fired:
            closable.close()

    def done(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(POLL_SECONDS / 2):
            if self._cancel is not None and self._cancel():
                with self._lock:
                    self.fired = True
                    closables = list(self._closables)
                for closable in closables:
                    closable.close()
                return


def connect(
    target: SSHTarget, settings: ConnectSettings, pin: Pin | None = None, *, cancel: Cancel | None = None
) -> Connection:
    """Log in to `target` through its bastions; raise ConnectionFailure (or a subclass) when that fails.

    `cancel` is asked every 50 ms; once it says so the attempt ends at once with Interrupted.
    """
    hops: list[paramiko.Transport] = []
    watch = _Watch(cancel)
    try:
        for hop in target.jumps:
            sock = _open(hop, settings, hops[-1] if hops else None, watch)
            transport, _ = _login(hop, settings, sock, None, watch)
            hops.append(transport)
        sock = _open(target, settings, hops[-1] if hops else None, watch)
        transport, trust = _login(target, settings, sock, pin, watch)
    except BaseException as error:
        for transport in reversed(hops):
            transport.close()
        if watch.fired and not isinstance(error, Interrupted):
            raise Interrupted(f"{target.label}: connecting abandoned") from error
        raise
    finally:
        watch.done()
    if watch.fired:
        transport.close()
        raise Interrupted(f"{target.label}: connecting abandoned")
    return Connection(target, transport, hops, trust, dict(settings.send_env))


def _timeout(target: SSHTarget, settings: ConnectSettings) -> float:
    return target.connect_timeout or settings.connect_timeout


def _open(
    target: SSHTarget, settings: ConnectSettings, via: paramiko.Transport | None, watch: _Watch
) -> Socket:
    """A socket (or socket-like channel) to the target's SSH port."""
    timeout = _timeout(target, settings)
    where = f"{target.hostname}:{target.port}"
    if via is not None:
        try:
            return via.open_channel(
                "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=timeout
            )
        except (paramiko.SSHException, OSError, EOFError) as error:
            reason = _reason(error)
            raise Unreachable(f"{target.label}: the bastion could not reach {where}: {reason}") from error
    if target.proxy_command:
        try:
            proxy = paramiko.ProxyCommand(target.proxy_command)
        except (paramiko.SSHException, OSError) as error:
            raise Unreachable(f"{target.label}: ProxyCommand failed: {_reason(error)}") from error
        watch.add(proxy)
        return proxy
    try:
        sock = _dial(target.hostname, target.port, timeout, watch)
    except socket.gaierror as error:
        raise Unreachable(f"{target.label}: cannot resolve {target.hostname}: {error.strerror}") from error
    except TimeoutError as error:
        raise Unreachable(f"{target.label}: no answer from {where} within {timeout:g} s") from error
    except OSError as error:
        raise Unreachable(f"{target.label}: cannot connect to {where}: {_reason(error)}") from error
    _tcp_keepalive(sock)
    return sock


def _dial(host: str, port: int, timeout: float, watch: _Watch) -> socket.socket:
    """socket.create_connection, but polled: a blocking connect() cannot be interrupted by a stop."""
    deadline = time.monotonic() + timeout
    failure: OSError = OSError(errno.EHOSTUNREACH, "no address")
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            while code == errno.EINPROGRESS:
                if watch.cancelled():
                    raise Interrupted(f"{host}:{port}: connecting abandoned")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(errno.ETIMEDOUT, "timed out")
                _, writable, _ = select.select([], [sock], [], min(POLL_SECONDS / 2, remaining))
                if writable:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                failure = OSError(code, os.strerror(code))
                sock.close()
                continue
        except BaseException:
            sock.close()
            raise
        sock.setblocking(True)
        watch.add(sock)
        return sock
    raise failure


def _tcp_keepalive(sock: socket.socket) -> None:
    # A peer that vanished without a FIN (a terminated instance, a NAT timeout) is noticed within a
    # minute instead of after the kernel's two hours, so the runner can reconnect.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 4)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 45_000)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _login(
    target: SSHTarget, settings: ConnectSettings, sock: Socket, pin: Pin | None, watch: _Watch
) -> tuple[paramiko.Transport, str]:
    timeout = _timeout(target, settings)
    transport = paramiko.Transport(
        sock, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET_SIZE
    )
    watch.add(transport)
    try:
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        transport.auth_timeout = max(timeout, 30.0)
        options = transport.get_security_options()
        options.ciphers = _ordered(options.ciphers, PREFERRED_CIPHERS)
        policy = _policy(target, settings)
        name = target.known_hosts_name
        options.key_types = _ordered(
            options.key_types, policy.preferred_algorithms(name, pin.keys if pin else None)
        )
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise Unreachable(f"{target.label}: SSH handshake failed: {_reason(error)}") from error
        server_key = transport.get_remote_server_key()
        trust = policy.verify(
            name,
            target.label,
            server_key,
            pinned=pin.keys if pin else None,
            pinned_source=pin.source if pin else "",
        )
        _authenticate(transport, target, settings)
        transport.set_keepalive(int(settings.keepalive_seconds))
    except BaseException:
        transport.close()
        raise
    return transport, trust


def _policy(target: SSHTarget, settings: ConnectSettings) -> HostKeyPolicy:
    files = tuple(dict.fromkeys([*settings.policy.known_hosts, *target.known_hosts_files]))
    return HostKeyPolicy(files, accept_new=settings.policy.accept_new or target.accept_new)


def _ordered(available: Sequence[str], first: Sequence[str]) -> tuple[str, ...]:
    head = [name for name in first if name in available]
    return (*head, *(name for name in available if name not in head))


def load_private_key(text: str, where: str) -> paramiko.PKey:
    """A private key from its PEM or OpenSSH text (e.g. a secret in the environment)."""
    data = text.encode()
    loaded: object
    try:
        try:
            loaded = serialization.load_ssh_private_key(data, password=None)
        except ValueError:
            loaded = serialization.load_pem_private_key(data, password=None)
    except TypeError as error:
        raise UsageError(f"{where}: the private key is encrypted (load such keys into ssh-agent)") from error
    except (ValueError, paramiko.SSHException) as error:
        raise UsageError(f"{where}: not a private key in PEM or OpenSSH format") from error
    key_class: type[paramiko.PKey]
    if isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise UsageError(f"{where}: unsupported private key type {type(loaded).__name__}")
    return key_class.from_private_key(io.StringIO(text))


def _candidate_keys(
    target: SSHTarget, settings: ConnectSettings
) -> tuple[list[tuple[str, paramiko.PKey]], list[str]]:
    keys: list[tuple[str, paramiko.PKey]] = []
    skipped: list[str] = []
    if settings.key_material:
        keys.append(("the key from the environment", load_private_key(settings.key_material, "private key")))
    paths = list(target.identity_files)
    if not target.explicit_identities and not settings.key_material:
        paths += [Path(path).expanduser() for path in DEFAULT_IDENTITIES]
    for path in paths:
        if not path.is_file():
            if target.explicit_identities and path in target.identity_files:
                skipped.append(f"{path} (no such file)")
            continue
        try:
            keys.append((str(path), paramiko.PKey.from_path(path)))
        except paramiko.PasswordRequiredException:
            skipped.append(f"{path} (encrypted: add it to ssh-agent)")
        except (OSError, ValueError, TypeError, paramiko.SSHException) as error:
            skipped.append(f"{path} ({_reason(error)})")
    if settings.use_agent:
        try:
            keys += [("an ssh-agent key", key) for key in paramiko.Agent().get_keys()]
        except (paramiko.SSHException, OSError):
            skipped.append("ssh-agent (not reachable)")
    return keys, skipped


def _authenticate(transport: paramiko.Transport, target: SSHTarget, settings: ConnectSettings) -> None:
    keys, skipped = _candidate_keys(target, settings)
    tried: list[str] = []
    for description, key in keys:
        try:
            transport.auth_publickey(target.user, key)
        except paramiko.BadAuthenticationType as error:
            raise AuthenticationFailure(
                f"{target.label}: permission denied: the server accepts only {', '.join(error.allowed_types)}"
            ) from error
        except paramiko.AuthenticationException:
            tried.append(description)
            continue
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise Unreachable(f"{target.label}: connection lost during login: {_reason(error)}") from error
        if transport.is_authenticated():
            return
    offered = ", ".join(tried) if tried else "no key was available"
    extra = f"; skipped {', '.join(skipped)}" if skipped else ""
    raise AuthenticationFailure(
        f"{target.label}: permission denied (publickey) for user {target.user!r}; offered {offered}{extra}"
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip()
    return text or type(error).__name__


__all__ = [
    "LOST",
    "AuthenticationFailure",
    "Cancel",
    "CommandResult",
    "ConnectSettings",
    "Connection",
    "HostKeyError",
    "Interrupted",
    "Pin",
    "SessionRefused",
    "Unreachable",
    "close_channel",
    "connect",
    "load_private_key",
    "read_ready",
]
