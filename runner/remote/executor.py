"""The SSH executor: upload a step, start it detached on the master, stream it, reattach, stop, clean up."""

from __future__ import annotations

import contextlib
import select
import shlex
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import paramiko

from runner.engines import Command, engine_command
from runner.errors import ConnectionFailure, NightshiftError
from runner.execution import Invocation, Outcome, StepResult, StopRequest
from runner.model import Engine
from runner.output import StepOutput
from runner.relay import Offsets, Pumped, Stopper, pump
from runner.remote.hostkeys import HostKeyPolicy
from runner.remote.rundir import FOLLOW_NO_RUN_DIRECTORY, FOLLOW_NOT_STARTED, START_WAIT_SECONDS, RunDirectory
from runner.remote.target import DEFAULT_USER, SSHTarget, load_ssh_config, resolve_target
from runner.remote.transport import READ_SIZE, Connection, ConnectSettings, Pin, Unreachable, connect

DEFAULT_REMOTE_DIR = "~/.nightshift/runs"
STOPPING_RECONNECT_SECONDS = 30.0
T = TypeVar("T")


class RemoteError(NightshiftError):
    """The cluster was reached but the step could not run there (remote disk full, run directory gone)."""


@dataclass(frozen=True)
class RemoteSettings:
    """Everything the SSH executor needs, from the command line; key material, not a path to it."""

    host: str | None = None
    cluster_id: str | None = None
    user: str | None = None
    port: int | None = None
    key_file: Path | None = None
    key_material: str | None = None
    send_env: Mapping[str, str] = field(default_factory=dict)
    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    ssh_config: Path | None = None
    remote_dir: str = DEFAULT_REMOTE_DIR
    keep_remote: bool = False
    connect_timeout: float = 10.0
    reconnect_timeout: float = 300.0
    reconnect_backoff: float = 0.5
    reconnect_backoff_max: float = 10.0
    stop_grace_seconds: float = 5.0
    binaries: Mapping[Engine, str] = field(default_factory=dict)
    region: str | None = None


class ChannelFollower:
    """A paramiko channel running the follower, seen through the streaming loop's primitives."""

    def __init__(self, channel: paramiko.Channel, connection: Connection) -> None:
        self.channel = channel
        self.connection = connection

    def read_stdout(self) -> bytes:
        return self.channel.recv(READ_SIZE) if self.channel.recv_ready() else b""

    def read_stderr(self) -> bytes:
        return self.channel.recv_stderr(READ_SIZE) if self.channel.recv_stderr_ready() else b""

    def ended(self) -> bool:
        return self.channel.exit_status != -1 and bool(self.channel.eof_received or self.channel.closed)

    def lost(self) -> bool:
        closed_without_status = self.channel.closed and self.channel.exit_status == -1
        return not self.connection.active or closed_without_status

    def wait(self, seconds: float) -> None:
        if self.channel.eof_received:
            # After EOF the channel's pipe stays readable: wait for the exit status instead.
            self.channel.status_event.wait(seconds)
        else:
            select.select([self.channel], [], [], seconds)

    @property
    def exit_status(self) -> int:
        return int(self.channel.exit_status)

    def close(self) -> None:
        self.channel.close()


class Session:
    """The connection of one step run: made once, remade with backoff whenever it drops."""

    def __init__(
        self,
        target: SSHTarget,
        pin: Pin | None,
        settings: ConnectSettings,
        remote: RemoteSettings,
        *,
        notice: Callable[[str], None],
        stop: StopRequest,
    ) -> None:
        self.target = target
        self._pin = pin
        self._settings = settings
        self._remote = remote
        self._notice = notice
        self._stop = stop
        self._connection: Connection | None = None
        self._lost_at: float | None = None
        self.reconnects = 0
        self.hint = ""

    def open(self) -> Connection:
        """The first connection: one attempt within the connect timeout, as `ssh` makes it."""
        self._connection = connect(self.target, self._settings, self._pin)
        return self._connection

    def lost(self, connection: Connection, reason: str) -> None:
        connection.close()
        if connection is not self._connection:
            return
        self._connection = None
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            self._notice(f"connection to {self.target.label} lost ({reason}); reconnecting")

    def connection(self, *, stopping: bool = False) -> Connection:
        """The live connection; after a drop, reconnect with backoff until the reconnect timeout."""
        if self._connection is not None and self._connection.active:
            return self._connection
        if self._connection is not None:
            self.lost(self._connection, "closed")
        lost_at = self._lost_at if self._lost_at is not None else time.monotonic()
        delay, attempt, last = self._remote.reconnect_backoff, 0, "no attempt yet"
        while True:
            # A stop must still reach the cluster, but a runner being stopped cannot wait for long.
            budget = self._remote.reconnect_timeout
            if stopping or self._stop.is_set():
                budget = min(budget, STOPPING_RECONNECT_SECONDS)
            waited = time.monotonic() - lost_at
            if waited >= budget:
                raise ConnectionFailure(
                    f"connection to {self.target.label} lost and not re-established within {budget:g} s "
                    f"({last}){self.hint}"
                )
            pause = min(delay, budget - waited)
            if stopping or self._stop.is_set():
                time.sleep(pause)
            else:
                self._stop.wait(pause)
            delay = min(delay * 2, self._remote.reconnect_backoff_max)
            attempt += 1
            try:
                self._connection = connect(self.target, self._settings, self._pin)
            except Unreachable as error:
                last = str(error)
                continue
            self.reconnects += 1
            self._lost_at = None
            self._notice(f"reconnected to {self.target.label} (attempt {attempt})")
            return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class ClusterSource(Protocol):
    """What the executor needs to know about an EMR cluster (runner.remote.emr.EmrClusters, or a fake)."""

    def master_address(
        self, cluster_id: str, notice: Callable[[str], None], sleep: Callable[[float], bool]
    ) -> str | None: ...

    def published_host_keys(self, cluster_id: str) -> list[paramiko.PKey] | None: ...

    def host_key_parameter(self, cluster_id: str) -> str: ...


class SSHExecutor:
    """Runs each step detached on the master node and relays its output, across dropped connections."""

    parallel = True

    def __init__(
        self,
        settings: RemoteSettings,
        notice: Callable[[str], None],
        clusters: ClusterSource | None = None,
    ) -> None:
        self.settings = settings
        self._notice = notice
        self._clusters = clusters
        self._lock = threading.Lock()
        self._resolved: tuple[SSHTarget, Pin | None] | None = None

    def run_directory(self, invocation: Invocation) -> RunDirectory:
        return RunDirectory.for_step(
            self.settings.remote_dir,
            invocation.pipeline,
            invocation.run_id,
            invocation.step.name,
            invocation.step.file_name,
        )

    def command(self, invocation: Invocation, run_directory: RunDirectory) -> Command:
        return engine_command(
            invocation.engine, run_directory.step_file, invocation.variables, binaries=self.settings.binaries
        )

    def describe(self, invocation: Invocation) -> str:
        where, user = f"<master of {self.settings.cluster_id}>", self.settings.user or DEFAULT_USER
        if self.settings.host:
            config = load_ssh_config(self.settings.ssh_config)
            settings = self.settings
            target = resolve_target(settings.host or "", config, user=settings.user, port=settings.port)
            where, user = target.alias, target.user
        run_directory = self.run_directory(invocation)
        if not run_directory.path.startswith("/"):
            run_directory = RunDirectory(f"~/{run_directory.path}", run_directory.step_file_name)
        return f"[{user}@{where}] {self.command(invocation, run_directory).display()}"

    def _target(self, stop: StopRequest) -> tuple[SSHTarget, Pin | None] | None:
        """Where every step goes; with --cluster-id, asked of EMR once (parallel steps share the answer)."""
        with self._lock:
            if self._resolved is None:
                host, pin = self.settings.host, None
                if self.settings.cluster_id:
                    host, pin = self._cluster(self.settings.cluster_id, stop)
                    if host is None:
                        return None
                assert host is not None
                target = resolve_target(
                    host,
                    load_ssh_config(self.settings.ssh_config),
                    user=self.settings.user,
                    port=self.settings.port,
                    identity_file=self.settings.key_file,
                    known_hosts=self.settings.known_hosts,
                )
                self._resolved = (target, pin)
            return self._resolved

    def _cluster(self, cluster_id: str, stop: StopRequest) -> tuple[str | None, Pin | None]:
        if self._clusters is None:
            # boto3 is imported only when a cluster id is given: --host runs start faster.
            from runner.remote.emr import EmrClusters  # noqa: PLC0415

            self._clusters = EmrClusters(region=self.settings.region)
        host = self._clusters.master_address(cluster_id, self._notice, stop.wait)
        if host is None:
            return None, None
        keys = self._clusters.published_host_keys(cluster_id)
        parameter = f"SSM parameter {self._clusters.host_key_parameter(cluster_id)}"
        if keys is None:
            self._notice(f"{parameter} not found: verifying the master's host key with known_hosts")
            return host, None
        return host, Pin(tuple(keys), parameter)

    def run(self, invocation: Invocation, output: StepOutput, stop: StopRequest) -> StepResult:
        resolved = self._target(stop)
        if resolved is None:
            return StepResult(stop.exit_code, Outcome.STOPPED)
        target, pin = resolved
        notice = output.notice
        connect_settings = ConnectSettings(
            policy=HostKeyPolicy((), accept_new=self.settings.accept_new_host_key),
            key_material=self.settings.key_material,
            send_env=self.settings.send_env,
            connect_timeout=self.settings.connect_timeout,
        )
        session = Session(target, pin, connect_settings, self.settings, notice=notice, stop=stop)
        session.open()
        try:
            return _StepRun(self, invocation, session, output, stop=stop, notice=notice).run()
        finally:
            session.close()


class _StepRun:
    """One step on the cluster, from upload to clean-up, across any number of reconnects."""

    def __init__(
        self,
        executor: SSHExecutor,
        invocation: Invocation,
        session: Session,
        output: StepOutput,
        *,
        stop: StopRequest,
        notice: Callable[[str], None],
    ) -> None:
        self.executor = executor
        self.settings = executor.settings
        self.invocation = invocation
        self.session = session
        self.output = output
        self.stop = stop
        self.notice = notice
        self.run_directory = executor.run_directory(invocation)
        self.offsets = Offsets()
        # After a stop, the step's last words may take the stop's grace period and a margin.
        self.stopper = Stopper(stop, invocation.timeout_seconds, self.settings.stop_grace_seconds + 10)
        self.stop_sent = False

    @property
    def label(self) -> str:
        return self.session.target.label

    def _retrying(self, action: Callable[[Connection], T]) -> T:
        """Run `action` on the live connection; when the connection drops, reconnect and run it again."""
        while True:
            connection = self.session.connection(stopping=self.stopper.reason is not None)
            try:
                return action(connection)
            except Unreachable as error:
                self.session.lost(connection, str(error).removeprefix(f"{self.label}: "))
            except (paramiko.SSHException, EOFError, OSError) as error:
                reason = _reason(error)
                if connection.active and not isinstance(error, TimeoutError):
                    raise RemoteError(f"{self.label}: {reason}") from error
                self.session.lost(connection, reason)

    def run(self) -> StepResult:
        follower, launched, where = self._retrying(self._start)
        self.session.hint = (
            f"; the step may still be running in {where} on {self.label}: "
            f"run again with --run-id {self.invocation.run_id} to reattach"
        )
        if launched:
            self.notice(f"already started in {where} on {self.label}: reattaching")
        status = self._follow(follower)
        if self.stopper.reason is not None and not self.stop_sent:
            self._retrying(self._send_stop)
        if status == FOLLOW_NO_RUN_DIRECTORY:
            raise RemoteError(f"the run directory {where} on {self.label} cannot be made or disappeared")
        if status == FOLLOW_NOT_STARTED and self.stopper.reason is None:
            raise RemoteError(f"the step did not start within {START_WAIT_SECONDS} s in {where}")
        code = self._retrying(self._finish)
        if self.settings.keep_remote:
            self.notice(f"run directory kept: {where} on {self.label}")
        if self.stopper.reason is not None:
            return StepResult(self.stopper.exit_code(code or 0), self.stopper.reason)
        if code is None:
            raise RemoteError(f"the step ended without an exit code on {self.label} (killed there?)")
        return StepResult(code)

    def _start(self, connection: Connection) -> tuple[ChannelFollower, bool, str]:
        """Start the follower, then upload while its shell starts; it launches the step once uploaded."""
        run_directory = self.run_directory
        follower = ChannelFollower(connection.exec(run_directory.follow_command(0, 0)), connection)
        try:
            sftp = connection.sftp()
            launched = _exists(sftp, run_directory.file("launched"))
            if not launched:
                self._upload(connection, sftp)
            where = sftp.normalize(run_directory.path)
        except BaseException:
            follower.close()
            raise
        return follower, launched, where

    def _upload(self, connection: Connection, sftp: paramiko.SFTPClient) -> None:
        run_directory = self.run_directory
        command = self.executor.command(self.invocation, run_directory)
        label = f"{self.invocation.pipeline}/{run_directory.step_file_name}, run {self.invocation.run_id}"
        launcher = run_directory.launcher_script(command, label=label).encode()
        # Read now: an edit saved before the run is what runs.
        step_text = self.invocation.step.path.read_bytes()
        staged = run_directory.file("launch.sh.tmp")
        try:
            _makedirs(sftp, run_directory.path)
            _put(sftp, run_directory.step_file, step_text)
            # The launcher appears whole or not at all: the follower starts the step when it sees it.
            _put(sftp, staged, launcher)
            sftp.posix_rename(staged, run_directory.launcher)
        except OSError as error:
            if not connection.active or isinstance(error, TimeoutError):
                raise
            message = self._upload_failure(connection, error, len(step_text) + len(launcher))
            self._discard(sftp)
            raise RemoteError(message) from error

    def _upload_failure(self, connection: Connection, error: OSError, size: int) -> str:
        reason = _reason(error)
        where = f"{self.run_directory.path} on {self.label}"
        message = f"cannot upload {self.run_directory.step_file_name} to {where}"
        try:
            probe = connection.run(f"df -Pk {shlex.quote(self.run_directory.path)}", timeout=15)
            free_kib = int(probe.stdout.decode().splitlines()[-1].split()[3])
        except (NightshiftError, ValueError, IndexError, OSError, paramiko.SSHException):
            return f"{message}: {reason}"
        if free_kib * 1024 < size + 64 * 1024:
            return f"{message}: the remote disk is full ({free_kib} KiB free; SFTP said {reason!r})"
        return f"{message}: {reason}"

    def _discard(self, sftp: paramiko.SFTPClient) -> None:
        """Remove a half-made run directory; the waiting follower sees it go and exits."""
        with contextlib.suppress(OSError):
            _remove_tree(sftp, self.run_directory.path)

    def _send_stop(self, connection: Connection) -> None:
        grace = self.settings.stop_grace_seconds
        result = connection.run(self.run_directory.stop_command(grace), timeout=grace + 30)
        if result.exit_status != 0:
            detail = result.stderr.decode(errors="replace").strip()
            raise RemoteError(f"could not stop the step on {self.label}: {detail}")
        self.stop_sent = True

    def _follow(self, follower: ChannelFollower | None) -> int:
        """Relay output until the follower ends; returns the follower's own exit status."""
        while True:
            if self.stopper.reason is not None and not self.stop_sent:
                self._retrying(self._send_stop)
            if follower is None:
                connection = self.session.connection(stopping=self.stopper.reason is not None)
                command = self.run_directory.follow_command(self.offsets.stdout, self.offsets.stderr)
                try:
                    follower = ChannelFollower(connection.exec(command), connection)
                except Unreachable as error:
                    self.session.lost(connection, str(error).removeprefix(f"{self.label}: "))
                    continue
            pumped = pump(follower, self.output, self.offsets, self.stopper.interrupt)
            if pumped is Pumped.ENDED:
                follower.close()
                return follower.exit_status
            if pumped is Pumped.LOST:
                follower.close()
                self.session.lost(follower.connection, "the connection closed")
                follower = None
            elif self.stopper.drained:
                # The step's last words did not come within the grace period: stop waiting for them.
                follower.close()
                return 0
            else:
                why = "stop requested" if self.stopper.reason is Outcome.STOPPED else "timed out"
                self.notice(f"{why}: stopping the step's process group on {self.label}")
                # The next turn sends the stop and keeps reading this follower.

    def _finish(self, connection: Connection) -> int | None:
        """The step's exit code (None without one); the run directory goes unless --keep-remote."""
        sftp = connection.sftp()
        try:
            with sftp.open(self.run_directory.file("exit"), "rb") as handle:
                text = handle.read().decode(errors="replace").strip()
        except FileNotFoundError:
            text = ""
        if not self.settings.keep_remote:
            _remove_tree(sftp, self.run_directory.path)
            for parent in self.run_directory.parents:
                try:
                    sftp.rmdir(parent)
                except OSError:
                    break  # another step of the run is still there
        return int(text) if text.isdigit() else None


def _exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
    except FileNotFoundError:
        return False
    return True


def _is_dir(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        mode = sftp.stat(path).st_mode
    except FileNotFoundError:
        return False
    return mode is not None and stat.S_ISDIR(mode)


def _makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    """Mkdir -p, private, trying the deepest directory first (it usually is the only one missing)."""
    try:
        sftp.mkdir(path, 0o700)
        return
    except OSError:
        if _is_dir(sftp, path):
            return
    parent = path.rsplit("/", 1)[0] if "/" in path.strip("/") else ""
    if parent and parent not in {".", "/"}:
        _makedirs(sftp, parent)
    try:
        sftp.mkdir(path, 0o700)
    except OSError:
        if not _is_dir(sftp, path):
            raise


def _put(sftp: paramiko.SFTPClient, path: str, data: bytes) -> None:
    # Not pipelined: paramiko drops the errors of pipelined writes (a full disk would go unnoticed).
    with sftp.open(path, "wb") as handle:
        handle.write(data)
    sftp.chmod(path, 0o600)
    size = sftp.stat(path).st_size
    if size != len(data):
        raise OSError(f"{path}: {size} of {len(data)} bytes written")


def _remove_tree(sftp: paramiko.SFTPClient, path: str) -> None:
    try:
        entries = sftp.listdir_attr(path)
    except FileNotFoundError:
        return
    for entry in entries:
        child = f"{path}/{entry.filename}"
        if entry.st_mode is not None and stat.S_ISDIR(entry.st_mode):
            _remove_tree(sftp, child)
        else:
            sftp.remove(child)
    sftp.rmdir(path)


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).strip() or type(error).__name__
