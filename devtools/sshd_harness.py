"""A throw-away OpenSSH sshd on 127.0.0.1 that plays the EMR master node in tests and benchmarks."""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
INSTALL_HINT = "install OpenSSH's server: apt-get install -y openssh-server (provides /usr/sbin/sshd)"
# No Hadoop here: a stand-in for the two `hadoop fs` commands the runner's [inputs] check uses on a
# master node, over this machine's files (file:// or plain paths), with hadoop's exit codes and
# -count's columns (DIRS FILES BYTES PATH).
FAKE_HADOOP = """#!/bin/bash
[ "$1" = fs ] || { echo "hadoop (test stand-in): only fs" >&2; exit 2; }
local_path() { printf '%s' "${1#file://}"; }
case "$2" in
  -test)
    p=$(local_path "$4")
    case "$3" in -f) [ -f "$p" ] ;; -e) [ -e "$p" ] ;; -d) [ -d "$p" ] ;; *) exit 2 ;; esac ;;
  -count)
    p=$(local_path "$3")
    [ -e "$p" ] || { echo "count: '$3': No such file or directory" >&2; exit 1; }
    printf '%12d %12d %18d %s\\n' "$(find "$p" -type d | wc -l)" "$(find "$p" -type f | wc -l)" 0 "$3" ;;
  *) echo "hadoop (test stand-in): fs $2 is not faked" >&2; exit 2 ;;
esac
"""


def _spark_bin() -> Path:
    return Path(pyspark.__file__).parent / "bin"


def _java_home() -> Path | None:
    java = subprocess.run(["sh", "-c", "command -v java"], capture_output=True, text=True).stdout.strip()
    return Path(java).resolve().parent.parent if java else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


@dataclass
class Sshd:
    """A running sshd: where it listens, who may log in with which key, and its host key."""

    root: Path
    port: int
    user: str
    user_key: Path
    host_key: Path
    spark_conf: Path
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "sshd.log"

    @property
    def host_public_key(self) -> str:
        """The host key as 'TYPE BASE64' (what known_hosts and the SSM parameter hold)."""
        kind, blob = (self.root / "host_ed25519.pub").read_text().split()[:2]
        return f"{kind} {blob}"

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}\n"

    def ssh_argv(self, known_hosts: Path) -> list[str]:
        """OpenSSH's client pointed at this server, for side-by-side benchmarks."""
        return [
            "ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.user_key),
            "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=yes", f"{self.user}@127.0.0.1",
        ]  # fmt: skip

    def start(self) -> None:
        if not SSHD.exists():
            raise RuntimeError(f"{SSHD} is missing: {INSTALL_HINT}")
        # sshd refuses to start as root without its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.root / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.process.returncode}: {self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port}: {self.log.read_text()}")

    def connection_pids(self) -> list[int]:
        """The per-connection sshd processes (each serves one client connection)."""
        assert self.process is not None
        return [pid for pid in _descendants(self.process.pid) if _comm(pid) == "sshd"]

    def drop_connections(self) -> int:
        """Kill every sshd process that serves a connection, as a network failure would; the listener stays."""
        pids = self.connection_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        if self.process is None:
            return
        for pid in self.connection_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = _children(pid)
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(_children(child))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Shape:
    """How this server differs from the friendly default: real masters differ in each of these."""

    #: serve the SFTP subsystem (some hardened images ship without it)
    sftp: bool = True
    #: sessions (channels) allowed per connection; OpenSSH's default is 10, 1 on hardened hosts
    max_sessions: int = 200
    #: take the client's LANG and LC_* (EMR does; many servers accept no client environment)
    accept_env: bool = True


FRIENDLY = Shape()


def make_sshd(root: Path, shape: Shape = FRIENDLY) -> Sshd:
    """Write keys and a config for an sshd whose sessions find spark-sql like an EMR master does."""
    root.mkdir(parents=True, exist_ok=True)
    host_key, user_key = root / "host_ed25519", root / "user_ed25519"
    _keygen(host_key, "nightshift-test-host")
    _keygen(user_key, "nightshift-test-user")
    (root / "authorized_keys").write_text((root / "user_ed25519.pub").read_text())
    spark_conf = root / "spark-conf"
    spark_state = root / "spark-state"
    spark_conf.mkdir()
    spark_state.mkdir()
    # The cluster's spark-defaults: a warehouse and metastore of its own, never the home folder.
    (spark_conf / "spark-defaults.conf").write_text(
        "\n".join(
            [
                "spark.master local[1]",
                "spark.ui.enabled false",
                f"spark.sql.warehouse.dir {spark_state / 'warehouse'}",
                "spark.hadoop.javax.jdo.option.ConnectionURL "
                f"jdbc:derby:;databaseName={spark_state / 'metastore_db'};create=true",
                f"spark.driver.extraJavaOptions -Dderby.system.home={spark_state}",
                "spark.sql.shuffle.partitions 2",
                "",
            ]
        )
    )
    port = free_port()
    fake_bin = root / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "hadoop").write_text(FAKE_HADOOP)
    (fake_bin / "hadoop").chmod(0o755)
    spark_bin = _spark_bin()
    java_home = _java_home()
    path = os.pathsep.join(
        [
            str(spark_bin),
            *([str(java_home / "bin")] if java_home else []),
            "/usr/local/bin",
            "/usr/bin",
            "/bin",
            str(fake_bin),
        ]
    )
    # A home of its own: the login user's dotfiles (here, a .bashrc that starts pyenv) are not the
    # cluster's, and would add their start-up time to every session.
    remote_home = root / "remote-home"
    remote_home.mkdir()
    environment = {
        "HOME": str(remote_home),
        "PATH": path,
        "SPARK_HOME": str(spark_bin.parent),
        "SPARK_CONF_DIR": str(spark_conf),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "NIGHTSHIFT_TEST_CLUSTER": "1",
    }
    if java_home:
        environment["JAVA_HOME"] = str(java_home)
    if "SPARK_SUBMIT_OPTS" in os.environ:  # the JVM options of the caller's (the tests': C1 alone)
        environment["SPARK_SUBMIT_OPTS"] = os.environ["SPARK_SUBMIT_OPTS"]
    set_env = " ".join(f'"{name}={value}"' for name, value in environment.items())
    (root / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {root / 'sshd.pid'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                "StrictModes no",
                "UsePAM no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes",
                "MaxStartups 200",
                f"MaxSessions {shape.max_sessions}",
                "LogLevel ERROR",
                *(["AcceptEnv LANG LC_*"] if shape.accept_env else []),
                *([f"Subsystem sftp {SFTP_SERVER}"] if shape.sftp else []),
                f"SetEnv {set_env}",
                "",
            ]
        )
    )
    return Sshd(
        root=root,
        port=port,
        user=getpass.getuser(),
        user_key=user_key,
        host_key=host_key,
        spark_conf=spark_conf,
    )
