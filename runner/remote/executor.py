"""The SSH executor: upload a step, start it detached on the master, stream it, reattach, stop, clean up."""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Protocol

import paramiko

from runner.engines import Command, engine_command
from runner.errors import ConnectionFailure
from runner.execution import EXIT_UNREACHABLE, Invocation, Outcome, StepResult, StopRequest
from runner.model import Engine
from runner.output import StepOutput
from runner.relay import Offsets, Pumped, Stopper, pump
from runner.remote import files
from runner.remote.files import RemoteError, where
from runner.remote.hostkeys import HostKeyPolicy
from runner.remote.rundir import (
    FOLLOW_NO_RUN_DIRECTORY,
    FOLLOW_NOT_STARTED,
    FOLLOWED_ELSEWHERE,
    RUN_DIRECTORY_NOT_SAFE,
    START_WAIT_SECONDS,
    Finished,
    RunDirectory,
)
from runner.remote.session import BudgetExhausted, Reconnect, Session, reason
from runner.remote.target import DEFAULT_USER, SSHTarget, load_ssh_config, resolve_target
from runner.remote.transport import (
    Connection,
    ConnectSettings,
    Interrupted,
    Pin,
    Unreachable,
    close_channel,
    read_ready,
)

DEFAULT_REMOTE_DIR = "~/.nightshift/runs"
# After a stop (a signal or the step's timeout) the runner is done within this: the stop reaches the
# master, the step's last words are read, the run directory goes. The master finishes the TERM ->
# KILL escalation on its own, so nobody waits for the grace period here.
STOP_SECONDS = 1.5
DRAIN_SECONDS = 1.0
# A follower that stayed connected this long counts as progress even when the step was silent:
# a quiet step on a link that drops now and then must not use up the reconnect budget.
STEADY_SECONDS = 60.0

__all__ = ["DEFAULT_REMOTE_DIR", "RemoteError", "RemoteSettings", "SSHExecutor"]


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
        clusters: ClusterSource | None = None,
    ) -> None:
        self.settings = settings
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

    def _target(
        self, stop: StopRequest, notice: Callable[[str], None]
    ) -> tuple[SSHTarget, Pin | None] | None:
        """Where every step goes; with --cluster-id, asked of EMR once (parallel steps share the answer).

        The first step to ask says the cluster's progress through its own output.
        """
        with self._lock:
            if self._resolved is None:
                host, pin = self.settings.host, None
                if self.settings.cluster_id:
                    host, pin = self._cluster(self.settings.cluster_id, stop, notice)
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

    def _cluster(
        self, cluster_id: str, stop: StopRequest, notice: Callable[[str], None]
    ) -> tuple[str | None, Pin | None]:
        if self._clusters is None:
            # boto3 is imported only when a cluster id is given: --host runs start faster.
            from runner.remote.emr import EmrClusters  # noqa: PLC0415

            self._clusters = EmrClusters(region=self.settings.region)
        host = self._clusters.master_address(cluster_id, notice, stop.wait)
        if host is None:
            return None, None
        keys = self._clusters.published_host_keys(cluster_id)
        parameter = f"SSM parameter {self._clusters.host_key_parameter(cluster_id)}"
        if keys is None:
            notice(f"{parameter} not found: verifying the master's host key with known_hosts")
            return host, None
        return host, Pin(tuple(keys), parameter)

    def run(self, invocation: Invocation, output: StepOutput, stop: StopRequest) -> StepResult:
        resolved = self._target(stop, output.notice)
        if resolved is None:
            return StepResult(stop.exit_code, Outcome.STOPPED)
        target, pin = resolved
        connect_settings = ConnectSettings(
            policy=HostKeyPolicy((), accept_new=self.settings.accept_new_host_key),
            key_material=self.settings.key_material,
            send_env=self.settings.send_env,
            connect_timeout=self.settings.connect_timeout,
        )
        reconnect = Reconnect(
            self.settings.reconnect_timeout,
            self.settings.reconnect_backoff,
            self.settings.reconnect_backoff_max,
        )
        session = Session(target, pin, connect_settings, reconnect, notice=output.notice, stop=stop)
        try:
            session.open()
        except Interrupted:
            return StepResult(stop.exit_code, Outcome.STOPPED)  # nothing was started yet
        try:
            return _StepRun(self, invocation, session, output, stop).run()
        finally:
            session.close()


class ChannelFollower:
    """A paramiko channel running the follower, seen through the relay loop's primitives."""

    def __init__(self, channel: paramiko.Channel, connection: Connection) -> None:
        self.channel = channel
        self.connection = connection
        self.started = time.monotonic()
        #: a read found the connection gone before paramiko did (it may still call itself active)
        self.broken = False

    def read_stdout(self) -> bytes:
        return self._read(stderr=False)

    def read_stderr(self) -> bytes:
        return self._read(stderr=True)

    def _read(self, *, stderr: bool) -> bytes:
        if self.broken:
            return b""
        data = read_ready(self.channel, stderr=stderr)
        if data is None:
            self.broken = True  # what that read took is not counted: the next follower resumes before it
            return b""
        return data

    def ended(self) -> bool:
        # After a broken read the end is not believed: that read's bytes must come again first.
        return (
            not self.broken
            and self.channel.exit_status != -1
            and bool(self.channel.eof_received or self.channel.closed)
        )

    def lost(self) -> bool:
        closed_without_status = self.channel.closed and self.channel.exit_status == -1
        return self.broken or not self.connection.active or closed_without_status

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
        close_channel(self.channel)


class Phase(Enum):
    """Where the following of a step is; a stop, a drop and the end each mean something else in each."""

    #: relaying the step's output
    FOLLOWING = "following"
    #: a stop (signal or timeout) is due: it is sent next, once
    STOPPING = "stopping"
    #: the stop was sent: the step's last words are read until the follower ends or DRAIN_SECONDS pass
    DRAINING = "draining"


class _StepRun:
    """One step on the cluster, from upload to clean-up, across any number of reconnects."""

    def __init__(
        self,
        executor: SSHExecutor,
        invocation: Invocation,
        session: Session,
        output: StepOutput,
        stop: StopRequest,
    ) -> None:
        self.executor = executor
        self.settings = executor.settings
        self.invocation = invocation
        self.session = session
        self.output = output
        self.stop = stop
        self.run_directory = executor.run_directory(invocation)
        self.where = where(self.run_directory, session.label)
        self.offsets = Offsets()
        self.stopper = Stopper(stop, invocation.timeout_seconds, DRAIN_SECONDS)
        self.stop_due_at: float | None = None
        self.stop_sent = False
        self.follows = 0
        #: the step is on the master (uploaded or found launched): losing the way to it is an outcome now
        self.started = False

    def notice(self, message: str) -> None:
        self.output.notice(message)

    def run(self) -> StepResult:
        try:
            launched = self._start()
            self.started = True
            self.session.hint = (
                f"; the step may still be running in {self.where}: "
                f"run again with --run-id {self.invocation.run_id} to reattach"
            )
            if launched:
                self.notice(f"already started in {self.where}: reattaching")
            status = self._follow()
            if status == FOLLOWED_ELSEWHERE or self.stopper.reason is None:
                self._check_follower(status)
            if self.stopper.reason is not None:
                return self._stopped()
            finished = self._finish()
        except Interrupted:
            return self._stopped()
        except BudgetExhausted as error:
            if not self.started:
                raise  # the step was not started: an error like any failed connect
            self.notice(str(error))
            return StepResult(EXIT_UNREACHABLE, Outcome.UNREACHABLE)
        except ConnectionFailure as error:
            if not self.started:
                raise
            # A permanent refusal after the step started (a changed host key, a revoked login).
            self.notice(f"{error}{self.session.hint}")
            return StepResult(EXIT_UNREACHABLE, Outcome.UNREACHABLE)
        if self.settings.keep_remote:
            self.notice(f"run directory kept: {self.where}")
        return StepResult(self._exit_code(finished))

    # -- starting: make the run directory, upload the step and its launcher

    def _start(self) -> bool:
        """Make the run directory and upload the step file, then its launcher; True if it was launched before.

        One exec channel, then the follower's, then the clean-up's, one after another: a server
        that allows one session per connection (MaxSessions 1) and one without SFTP both work.
        """
        command = self.executor.command(self.invocation, self.run_directory)
        label = (
            f"{self.invocation.pipeline}/{self.run_directory.step_file_name}, run {self.invocation.run_id}"
        )
        launcher = self.run_directory.launcher_script(
            command, label=label, grace_seconds=self.settings.stop_grace_seconds
        ).encode()
        # Read now: an edit saved before the run is what runs.
        step_text = self.invocation.step.path.read_bytes()
        cancel = self.stop.is_set
        while True:
            connection = self.session.connection()
            try:
                return files.start(
                    self.session,
                    connection,
                    self.run_directory,
                    step=step_text,
                    launcher=launcher,
                    cancel=cancel,
                )
            except Unreachable as error:
                self.session.lost(connection, reason(error, self.session.label))
            except Interrupted:
                # An upload cut short leaves the connection full of bytes nobody will read: start afresh.
                self.session.discard(connection)
                raise

    # -- following: relay the output until the follower ends; a stop is sent from here

    def _follow(self) -> int | None:
        """Relay output until the follower ends; its own exit status, or None when a stop cut it short."""
        phase = Phase.FOLLOWING
        follower: ChannelFollower | None = None
        while True:
            if phase is Phase.STOPPING:
                self._send_stop(beside=follower is not None)
                phase = Phase.DRAINING
            if follower is None:
                if phase is Phase.DRAINING:
                    return None  # the connection went while stopping: no last words to wait for
                follower = self._new_follower()
                if follower is None:
                    continue
            before = (self.offsets.stdout, self.offsets.stderr)
            pumped = pump(follower, self.output, self.offsets, self.stopper.interrupt)
            if (self.offsets.stdout, self.offsets.stderr) != before:
                self.session.progress()
            if pumped is Pumped.ENDED:
                follower.close()
                self.session.progress()
                return follower.exit_status
            if pumped is Pumped.LOST:
                follower.close()
                if time.monotonic() - follower.started >= STEADY_SECONDS:
                    self.session.progress()
                self.session.lost(follower.connection, "the connection closed")
                follower = None
            elif phase is Phase.FOLLOWING:
                self.stop_due_at = time.monotonic()
                why = "stop requested" if self.stopper.reason is Outcome.STOPPED else "timed out"
                self.notice(f"{why}: stopping the step's process group on {self.session.label}")
                phase = Phase.STOPPING
            else:
                follower.close()  # drained: the master finishes the stop on its own
                return None

    def _new_follower(self) -> ChannelFollower | None:
        connection = self.session.connection()
        command = self.run_directory.follow_command(
            self.offsets.stdout, self.offsets.stderr, resume=self.follows > 0
        )
        try:
            channel = connection.exec(command)
        except Unreachable as error:
            self.session.lost(connection, reason(error, self.session.label))
            return None
        self.follows += 1
        return ChannelFollower(channel, connection)

    def _check_follower(self, status: int | None) -> None:
        if status == FOLLOW_NO_RUN_DIRECTORY:
            raise RemoteError(f"the run directory {self.where} cannot be made or disappeared")
        if status == FOLLOW_NOT_STARTED:
            raise RemoteError(f"the step did not start within {START_WAIT_SECONDS} s in {self.where}")
        if status == FOLLOWED_ELSEWHERE:
            # Neither stop nor finish: the run directory is the other runner's now.
            raise RemoteError(
                "the run is being followed elsewhere: another runner attached to run "
                f"{self.invocation.run_id} in {self.where}; this one stops following (the step goes on)"
            )
        if status == RUN_DIRECTORY_NOT_SAFE:
            raise RemoteError(
                f"refusing the run directory {self.where}: it is not safe (the reason is above)"
            )

    # -- the end: read the exit code, clear up

    def _finish(self) -> Finished:
        # Two commands: a connection lost while the run directory goes must not lose the exit code.
        while True:
            connection = self.session.connection()
            try:
                finished = files.finish(self.session, connection, self.run_directory, cancel=self.stop.is_set)
            except Unreachable as error:
                self.session.lost(connection, reason(error, self.session.label))
                continue
            self.session.progress()
            break
        while not self.settings.keep_remote:
            connection = self.session.connection()
            try:
                files.clear(self.session, connection, self.run_directory, cancel=self.stop.is_set)
            except Unreachable as error:
                self.session.lost(connection, reason(error, self.session.label))
                continue
            break
        return finished

    def _exit_code(self, finished: Finished) -> int:
        if finished.disk_full_kib is not None:
            # The step's writes to its output files failed: what was relayed is not all it said.
            ended = (
                f"; the step ended with exit {finished.exit_code}" if finished.exit_code is not None else ""
            )
            raise RemoteError(
                f"the remote disk is full ({finished.disk_full_kib} KiB free in {self.where}): "
                f"the step's output is incomplete{ended}"
            )
        if finished.exit_code is not None:
            return finished.exit_code
        raise RemoteError(f"the step ended without an exit code in {self.where} (killed there?)")

    # -- stopping: bounded in time, whatever the state of the connection

    def _remaining(self) -> float:
        if self.stop_due_at is None:
            self.stop_due_at = time.monotonic()
        return self.stop_due_at + STOP_SECONDS - time.monotonic()

    def _past_deadline(self) -> bool:
        return self._remaining() <= 0

    def _send_stop(self, *, beside: bool = False) -> None:
        """Send the stop once, over a connection beside the follower's, the live one, or a new one.

        Never waits for the step to end: the master escalates TERM -> KILL on its own.
        """
        if self.stop_sent:
            return
        self.stop_sent = True
        connection = self.session.rescue(max(self._remaining(), 0.1), beside=beside)
        if connection is None:
            self.notice(
                f"could not reach {self.session.label} to stop the step; it may still be running in "
                f"{self.where}: run again with --run-id {self.invocation.run_id} to reattach"
            )
            return
        # It returns at once: the master escalates TERM -> KILL on its own, detached.
        command = self.run_directory.stop_command(self.settings.stop_grace_seconds)
        try:
            result = self.session.run(connection, command, timeout=STOP_SECONDS, cancel=self._past_deadline)
        except (ConnectionFailure, Interrupted) as error:
            self.notice(f"could not stop the step in {self.where}: {reason(error, self.session.label)}")
            return
        if result.exit_status != 0:
            said = result.stderr.decode(errors="replace").strip() or f"exit {result.exit_status}"
            self.notice(f"could not stop the step in {self.where}: {said}")

    def _stopped(self) -> StepResult:
        """The end of a stopped or timed-out step: the stop sent, the run directory cleared, promptly."""
        self.stopper.interrupt()  # a stop that came while no output was being relayed
        outcome = self.stopper.reason or Outcome.STOPPED
        if not self.stop_sent:
            why = "stop requested" if outcome is Outcome.STOPPED else "timed out"
            self.notice(f"{why}: stopping the step on {self.session.label}")
        self._send_stop()
        code = 0
        connection = self.session.rescue(max(self._remaining(), 0.1))
        if connection is not None:
            try:
                deadline = self._past_deadline
                finished = files.finish(self.session, connection, self.run_directory, cancel=deadline)
                code = finished.exit_code or 0
                if not self.settings.keep_remote:
                    files.clear(self.session, connection, self.run_directory, cancel=deadline)
            except (ConnectionFailure, Interrupted, RemoteError) as error:
                self.notice(f"run directory left in {self.where}: {reason(error, self.session.label)}")
        return StepResult(self.stopper.exit_code(code), outcome)
