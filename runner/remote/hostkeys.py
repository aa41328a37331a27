"""Host-key checks as OpenSSH makes them: known_hosts, keys a cluster published, accept-new; never blind."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys

from runner.errors import ConnectionFailure

# An RSA host key is negotiated under these algorithm names.
_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}
_WRITE_LOCK = threading.Lock()


class HostKeyError(ConnectionFailure):
    """The server's host key is unknown, changed, or not the one the cluster published (as ssh: 255)."""


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256:... as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def describe_key(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {fingerprint(key)}"


def known_hosts_name(hostname: str, port: int) -> str:
    """How known_hosts names a host: bare on port 22, [host]:port elsewhere."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


def parse_public_keys(text: str) -> list[paramiko.PKey]:
    """Keys from lines of "TYPE BASE64 [comment]" (an SSM parameter, a .pub file); other lines are skipped."""
    keys: list[paramiko.PKey] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or line.lstrip().startswith("#"):
            continue
        try:
            keys.append(paramiko.PKey.from_type_string(fields[0], base64.b64decode(fields[1], validate=True)))
        except (ValueError, paramiko.SSHException):
            continue
    return keys


def _name_matches(patterns: Sequence[str], name: str) -> bool:
    matched = False
    for written in patterns:
        negated = written.startswith("!")
        pattern = written.removeprefix("!")
        if pattern.startswith("|1|"):
            hit = hmac.compare_digest(HostKeys.hash_host(name, pattern), pattern)
        elif "*" in pattern or "?" in pattern:
            hit = fnmatch.fnmatchcase(name.lower(), pattern.lower())
        else:
            hit = pattern.lower() == name.lower()
        if hit and negated:
            return False
        matched = matched or hit
    return matched


@dataclass(frozen=True)
class KnownKey:
    key: paramiko.PKey
    where: str
    #: an `@revoked` line: this key must never be accepted for the host, whatever else says so
    revoked: bool = False


def _read_known_hosts(path: Path, name: str) -> list[KnownKey]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise HostKeyError(f"cannot read known hosts file {path}: {error.strerror}") from error
    found: list[KnownKey] = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        revoked = line.startswith("@revoked ") or line.startswith("@revoked\t")
        if revoked:
            line = line.removeprefix("@revoked").strip()
        # Host certificates (@cert-authority) are an OpenSSH feature this runner does not take part in.
        if not line or line.startswith(("#", "@")):
            continue
        try:
            entry = HostKeyEntry.from_line(line, number)
        except (paramiko.SSHException, ValueError):
            continue
        if entry is None or not entry.valid or not _name_matches(entry.hostnames, name):
            continue
        found.append(KnownKey(entry.key, f"{path}:{number}", revoked))
    return found


@dataclass(frozen=True)
class HostKeyPolicy:
    """Which host keys to trust. The first known-hosts file is where accept-new records a key."""

    known_hosts: tuple[Path, ...]
    accept_new: bool = False

    def known_keys(self, name: str) -> list[KnownKey]:
        """Keys known for `name`; revoked ones are not among them."""
        return [known for known in self._entries(name) if not known.revoked]

    def _entries(self, name: str) -> list[KnownKey]:
        return [known for path in self.known_hosts for known in _read_known_hosts(path, name)]

    def preferred_algorithms(self, name: str, pinned: Sequence[paramiko.PKey] | None) -> list[str]:
        """Host-key algorithms to offer first, so the server shows the kind of key already known."""
        keys = list(pinned) if pinned is not None else [known.key for known in self.known_keys(name)]
        preferred: list[str] = []
        for key in keys:
            for algorithm in _ALGORITHMS.get(key.get_name(), (key.get_name(),)):
                if algorithm not in preferred:
                    preferred.append(algorithm)
        return preferred

    def verify(
        self,
        name: str,
        label: str,
        key: paramiko.PKey,
        *,
        pinned: Sequence[paramiko.PKey] | None = None,
        pinned_source: str = "",
    ) -> str:
        """Accept `key` for the host known as `name`, or raise HostKeyError. Returns how it was trusted."""
        entries = self._entries(name)
        # As OpenSSH: a revoked key is refused before anything else is asked, pinned or new alike.
        for entry in entries:
            if entry.revoked and _same(key, entry.key):
                raise HostKeyError(
                    f"host key of {label} ({describe_key(key)}) is REVOKED "
                    f"({entry.where} marks it @revoked): refusing to connect"
                )
        if pinned is not None:
            if any(_same(key, candidate) for candidate in pinned):
                return f"host key {describe_key(key)} matches {pinned_source}"
            published = ", ".join(describe_key(candidate) for candidate in pinned)
            raise HostKeyError(
                f"host key of {label} ({describe_key(key)}) is not the one {pinned_source} holds "
                f"({published}): refusing to connect (someone may be intercepting the connection)"
            )
        known = [entry for entry in entries if not entry.revoked]
        if any(_same(key, candidate.key) for candidate in known):
            return f"host key {describe_key(key)} found in known hosts"
        same_type = [candidate for candidate in known if candidate.key.get_name() == key.get_name()]
        if same_type:
            raise HostKeyError(
                f"host key of {label} has CHANGED: it is now {describe_key(key)}, but {same_type[0].where} "
                f"holds another one. Someone may be intercepting the connection; if the host was rebuilt, "
                f"remove the old key with: ssh-keygen -R '{name}' -f {same_type[0].where.rsplit(':', 1)[0]}"
            )
        if not self.accept_new:
            target = self.known_hosts[0] if self.known_hosts else Path("~/.ssh/known_hosts")
            raise HostKeyError(
                f"host key of {label} is not known ({describe_key(key)}). Check the fingerprint, then run "
                f"again with --accept-new-host-key to record it in {target}, or add it yourself: "
                f"ssh-keyscan -p {_port_of(name)} {_host_of(name)} >> {target}"
            )
        return self._record(name, key)

    def _record(self, name: str, key: paramiko.PKey) -> str:
        if not self.known_hosts:
            raise HostKeyError("--accept-new-host-key: no known hosts file to record the key in")
        path = self.known_hosts[0]
        # Parallel steps reach the same new host at once: record it once.
        with _WRITE_LOCK:
            if any(_same(key, known.key) and not known.revoked for known in _read_known_hosts(path, name)):
                return f"host key {describe_key(key)} recorded by a parallel step"
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                existing = path.read_bytes() if path.exists() else b""
                with path.open("ab") as file:
                    if existing and not existing.endswith(b"\n"):
                        file.write(b"\n")
                    file.write(f"{name} {key.get_name()} {key.get_base64()}\n".encode())
            except OSError as error:
                raise HostKeyError(f"cannot record the host key in {path}: {error.strerror}") from error
        return f"accepted new host key {describe_key(key)} for {name} and recorded it in {path}"


def _same(a: paramiko.PKey, b: paramiko.PKey) -> bool:
    return a.get_name() == b.get_name() and a.asbytes() == b.asbytes()


def _host_of(name: str) -> str:
    return name[1:].rsplit("]:", 1)[0] if name.startswith("[") else name


def _port_of(name: str) -> str:
    return name.rsplit("]:", 1)[1] if name.startswith("[") else "22"
