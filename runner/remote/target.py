"""Where to connect and as whom: command-line flags merged with ~/.ssh/config (aliases, ProxyJump, keys)."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, replace
from pathlib import Path

import paramiko

from runner.errors import UsageError
from runner.remote.hostkeys import known_hosts_name

DEFAULT_USER = "hadoop"  # the login on EMR nodes
DEFAULT_SSH_CONFIG = Path("~/.ssh/config")
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
MAX_JUMPS = 8


@dataclass(frozen=True)
class SSHTarget:
    """One host to log in to, fully resolved; `jumps` are the bastions in front of it, first hop first."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[Path, ...] = ()
    explicit_identities: bool = False
    host_key_alias: str | None = None
    known_hosts_files: tuple[Path, ...] = ()
    accept_new: bool = False
    jumps: tuple[SSHTarget, ...] = ()
    proxy_command: str | None = None
    connect_timeout: float | None = None

    @property
    def known_hosts_name(self) -> str:
        """The name its host key is filed under in known_hosts."""
        return self.host_key_alias or known_hosts_name(self.hostname, self.port)

    @property
    def label(self) -> str:
        port = "" if self.port == 22 else f":{self.port}"
        shown = self.alias if self.alias == self.hostname else f"{self.alias} ({self.hostname})"
        return f"{self.user}@{shown}{port}"


def load_ssh_config(path: Path | None = None) -> paramiko.SSHConfig:
    """The user's ssh_config, or an empty one when there is none."""
    config_path = (path or DEFAULT_SSH_CONFIG).expanduser()
    if not config_path.is_file():
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(config_path))
    except (OSError, ValueError, paramiko.SSHException) as error:
        raise UsageError(f"{config_path}: cannot read SSH config: {error}") from error


def resolve_target(
    host: str,
    config: paramiko.SSHConfig,
    *,
    user: str | None = None,
    port: int | None = None,
    identity_file: Path | None = None,
    known_hosts: Path | None = None,
    default_user: str = DEFAULT_USER,
) -> SSHTarget:
    """Merge flags (which win) with the ssh_config entry for `host`, as `ssh` would."""
    return _resolve(
        host, config, user=user, port=port, identity_file=identity_file, known_hosts=known_hosts,
        default_user=default_user, depth=0,
    )  # fmt: skip


def _resolve(
    host: str,
    config: paramiko.SSHConfig,
    *,
    user: str | None,
    port: int | None,
    identity_file: Path | None,
    known_hosts: Path | None,
    default_user: str,
    depth: int,
) -> SSHTarget:
    if depth > MAX_JUMPS:
        raise UsageError(f"ProxyJump for {host}: more than {MAX_JUMPS} hops (a loop in ~/.ssh/config?)")
    options = config.lookup(host)
    identities = (
        (identity_file.expanduser(),)
        if identity_file
        else tuple(Path(path).expanduser() for path in options.get("identityfile", []))
    )
    known_files: list[Path] = []
    if known_hosts is not None:
        known_files.append(known_hosts.expanduser())
    configured_known = options.get("userknownhostsfile")
    if configured_known:
        known_files.extend(Path(name).expanduser() for name in configured_known.split() if name != "none")
    else:
        known_files.append(DEFAULT_KNOWN_HOSTS.expanduser())
    jumps: tuple[SSHTarget, ...] = ()
    proxy_jump = options.get("proxyjump")
    if proxy_jump and proxy_jump.lower() != "none":
        jumps = tuple(
            hop for spec in proxy_jump.split(",") for hop in _jump(spec.strip(), config, known_hosts, depth)
        )
    proxy_command = options.get("proxycommand")
    timeout = options.get("connecttimeout")
    return SSHTarget(
        alias=host,
        hostname=options["hostname"],
        port=port or _port(options.get("port"), host),
        user=user or options.get("user") or default_user,
        identity_files=identities,
        explicit_identities=bool(identities),
        host_key_alias=options.get("hostkeyalias"),
        known_hosts_files=tuple(dict.fromkeys(known_files)),
        # OpenSSH's accept-new is an explicit choice; "no" (accept anything) is never honoured.
        accept_new=str(options.get("stricthostkeychecking", "")).lower() == "accept-new",
        jumps=jumps,
        proxy_command=None if not proxy_command or proxy_command.lower() == "none" else proxy_command,
        connect_timeout=float(timeout) if timeout and timeout.isdigit() else None,
    )


def _jump(spec: str, config: paramiko.SSHConfig, known_hosts: Path | None, depth: int) -> list[SSHTarget]:
    """A ProxyJump hop, [user@]host[:port] or ssh://[user@]host[:port], itself looked up in the config."""
    spec = spec.removeprefix("ssh://")
    user, _, hostport = spec.rpartition("@")
    host, port = hostport, None
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = _port(rest.removeprefix(":") or None, spec)
    elif hostport.count(":") == 1:
        host, port_text = hostport.split(":")
        port = _port(port_text, spec)
    hop = _resolve(
        host, config, user=user or None, port=port, identity_file=None, known_hosts=known_hosts,
        default_user=getpass.getuser(), depth=depth + 1,
    )  # fmt: skip
    # A hop with its own ProxyJump is reached through that one first.
    return [*hop.jumps, replace(hop, jumps=())]


def _port(value: str | None, where: str) -> int:
    if value is None:
        return 22
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise UsageError(f"{where}: port {value!r} is not a number from 1 to 65535")
    return port
