"""Fixtures for the SSH executor: a real sshd on 127.0.0.1 as the cluster, and the runner as a user runs it."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.sshd_harness import FRIENDLY, INSTALL_HINT, SSHD, Shape, Sshd, make_sshd

ROOT = Path(__file__).resolve().parents[3]


def start_sshd(tmp_path_factory: pytest.TempPathFactory, shape: Shape = FRIENDLY) -> Sshd:
    if not SSHD.exists():
        pytest.fail(f"{SSHD} is missing: {INSTALL_HINT}", pytrace=False)
    server = make_sshd(tmp_path_factory.mktemp("sshd"), shape)
    server.start()
    return server


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """One OpenSSH server for the whole session, with throw-away host and user keys."""
    server = start_sshd(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(
    scope="session",
    params=[Shape(sftp=False), Shape(max_sessions=1), Shape(accept_env=False)],
    ids=["no-sftp", "max-sessions-1", "no-client-env"],
)
def hostile_sshd(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """Each unfriendly shape of a real server in turn; a test using it runs once per shape."""
    server = start_sshd(tmp_path_factory, request.param)
    yield server
    server.stop()


@pytest.fixture
def hostile_cli(hostile_sshd: Sshd, tmp_path: Path) -> Iterator[Cli]:
    """The runner pointed at one of the unfriendly servers."""
    yield from _cli(hostile_sshd, tmp_path)


@dataclass
class Cli:
    """`python -m runner` pointed at the test sshd, with a HOME (so ~/.ssh) of its own."""

    sshd: Sshd
    root: Path
    home: Path = field(init=False)
    remote_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        (self.home / ".ssh").mkdir(parents=True, mode=0o700)
        self.remote_dir = self.root / "remote"
        self.trust_host()

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    def trust_host(self) -> None:
        self.known_hosts.write_text(self.sshd.known_hosts_line())

    def target_args(self) -> list[str]:
        return [
            "--host", "127.0.0.1", "--port", str(self.sshd.port), "--user", self.sshd.user,
            "--key", str(self.sshd.user_key), "--remote-dir", str(self.remote_dir),
        ]  # fmt: skip

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        environ = {
            key: value
            for key, value in os.environ.items()
            if key not in {"SSH_AUTH_SOCK", "NIGHTSHIFT_SSH_PRIVATE_KEY"}
        }
        return {**environ, "HOME": str(self.home), "PYTHONPATH": str(ROOT), **(extra or {})}

    def argv(self, *args: str | Path, target: bool = True) -> list[str]:
        return [sys.executable, "-m", "runner", *map(str, args), *(self.target_args() if target else [])]

    def run(
        self,
        *args: str | Path,
        target: bool = True,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(*args, target=target),
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def start(
        self, *args: str | Path, target: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(*args, target=target),
            cwd=self.root,
            env=self.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def step(self, name: str, text: str | bytes) -> Path:
        folder = self.root / "job"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def leftovers(self, within: float = 30.0) -> list[str]:
        """Processes that belong to this test's run directories (launcher, followers) and still run
        after up to `within` seconds: one that is ending (its connection just closed) may take a
        moment at load 20; one that stays is left behind."""
        deadline = time.monotonic() + within
        while (found := processes_mentioning(str(self.remote_dir))) and time.monotonic() < deadline:
            time.sleep(0.05)
        return found


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def process_group_alive(pgid: int, *, within: float = 60.0) -> bool:
    """Whether a process of the group still runs after `within` seconds (zombies do not count)."""
    deadline = time.monotonic() + within
    while True:
        alive = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            # After the command name: state, ppid, pgrp.
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive = True
                break
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


@pytest.fixture
def cli(sshd: Sshd, tmp_path: Path) -> Iterator[Cli]:
    yield from _cli(sshd, tmp_path)


def _cli(sshd: Sshd, tmp_path: Path) -> Iterator[Cli]:
    client = Cli(sshd, tmp_path)
    yield client
    # Whatever a test left behind on the "cluster" must not outlive it.
    for line in client.leftovers(within=0):
        pid = int(line.split(":", 1)[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class OtherUser:
    """A second, unprivileged local user of the master: someone who shares /tmp with the login."""

    name: str
    uid: int
    gid: int

    def run(self, script: str) -> subprocess.CompletedProcess[bytes]:
        """Run `script` with sh as this user, as their own shell session would."""
        return subprocess.run(
            ["sh", "-c", script],
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd="/",
            capture_output=True,
            timeout=60,
            check=True,
        )


@pytest.fixture(scope="session")
def other_user() -> OtherUser:
    """The local user `nightshift-other`, created when missing (the SSH tests run as root)."""
    name = "nightshift-other"
    if subprocess.run(["id", "-u", name], capture_output=True, check=False).returncode != 0:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", name],
            capture_output=True,
            check=True,
        )
    entry = pwd.getpwnam(name)
    return OtherUser(name, entry.pw_uid, entry.pw_gid)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory like /tmp: mode 1777, every local user may create entries, only in their own name."""
    path = Path(tempfile.mkdtemp(prefix="nightshift-shared-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def no_env_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A server that accepts no client environment: sessions there have no LANG at all."""
    server = start_sshd(tmp_path_factory, Shape(accept_env=False))
    yield server
    server.stop()


@pytest.fixture
def no_env_cli(no_env_sshd: Sshd, tmp_path: Path) -> Iterator[Cli]:
    yield from _cli(no_env_sshd, tmp_path)
