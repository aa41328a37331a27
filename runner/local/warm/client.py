"""The runner's side of the warm engine: find or start it, hand it a step, relay the step's output."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import runner
from runner.errors import NightshiftError, StateDirInUse
from runner.execution import StepResult, StopRequest
from runner.local.warm import protocol
from runner.output import StepOutput
from runner.relay import Pipes, Stopper, relay

DEFAULT_IDLE_MINUTES = 15.0
START_TIMEOUT_SECONDS = 300.0
STOP_TIMEOUT_SECONDS = 60.0
CANCEL_GRACE_SECONDS = 5.0
CONNECT_POLL_SECONDS = 0.02
# What a JVM started now would see differently from the running one: a change starts a new engine.
ENVIRONMENT_PREFIXES = ("SPARK_", "HADOOP_", "HIVE_", "YARN_", "JAVA_", "PYSPARK_", "LANG", "LC_", "TZ")
ENVIRONMENT_IGNORED = ("_PYSPARK_DRIVER_CONN_INFO_PATH",)


class EngineUnavailable(Exception):
    """The warm engine cannot run this step; the message says why in one line."""


class StepNeedsOwnJvm(EngineUnavailable):
    """The engine is there, but the step does what only a JVM of its own may; the message says what."""


def engine_fingerprint(
    spark_home: Path, java_home: Path | None, submit_args: Sequence[str], env: Mapping[str, str], cwd: Path
) -> str:
    """What an engine was started with, in 16 hex digits; a change means a new engine.

    pyspark's and Java's versions, Spark's arguments, the environment the JVM reads, the working
    folder (relative paths in SQL resolve against it) and the engine's own code. Cheap to compute
    on every run: no JVM is started for it.
    """
    parts: dict[str, object] = {
        "protocol": protocol.PROTOCOL_VERSION,
        "spark_home": str(spark_home),
        "pyspark": _read(spark_home / "version.py"),
        "java_home": str(java_home.resolve()) if java_home else "",
        "java": _read(java_home / "release") if java_home else "",
        "args": list(submit_args),
        "env": sorted(
            (k, v)
            for k, v in env.items()
            if k.startswith(ENVIRONMENT_PREFIXES) and k not in ENVIRONMENT_IGNORED
        ),
        "cwd": str(cwd),
        "python": sys.executable,
        "code": [_read(path) for path in sorted(Path(__file__).parent.glob("*.py"))],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def engine_alive(state_dir: Path) -> bool:
    """Whether an engine holds this state dir (its lock is taken), without touching it."""
    lock_path = protocol.engine_dir(state_dir) / protocol.LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def stop_engine(state_dir: Path, timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
    """End the engine of `state_dir` after the step it runs; False when there was none.

    Returns once the engine has ended: its JVM gone, the metastore free. StateDirInUse when the
    engine is another user's; NightshiftError when it would not end.
    """
    if not engine_alive(state_dir):
        return False
    with contextlib.suppress(OSError, EngineUnavailable):
        conn, _ = _connect(protocol.engine_dir(state_dir) / protocol.SOCKET_NAME)
        with conn:
            protocol.send(conn, {"op": "stop"})
            with contextlib.suppress(OSError):
                protocol.receive(conn, protocol.Reader())
    try:
        _wait_until_ended(state_dir, timeout)
    except EngineUnavailable as error:
        raise NightshiftError(f"{error}: end its JVM, then run again") from error
    return True


def _wait_until_ended(state_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while engine_alive(state_dir):
        if time.monotonic() > deadline:
            raise EngineUnavailable(f"the warm engine of {state_dir} did not end within {timeout:.0f} s")
        time.sleep(0.05)


def _connect(path: Path) -> tuple[socket.socket, protocol.Message]:
    """Connect and read the engine's hello; refuse an engine that is not ours (SO_PEERCRED)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(30)
        with protocol.socket_address(path) as address:
            try:
                sock.connect(address)
            except PermissionError as error:
                found = f"its warm engine's socket: {error.strerror}"
                raise StateDirInUse(protocol.not_ours(path.parent.parent, found)) from error
        _, uid, _ = protocol.peer_credentials(sock)
        if uid != os.getuid():
            # Neither run on (it is not ours) nor ended, and a cold JVM would find the metastore taken.
            found = f"its warm engine belongs to uid {uid}"
            raise StateDirInUse(protocol.not_ours(path.parent.parent, found))
        messages = protocol.receive(sock, protocol.Reader())
        if messages is None:
            # Closed before its hello: the engine ended with this connection still in its backlog.
            # An OSError, so the caller waits for it to be gone and starts a new one.
            raise ConnectionResetError(errno.ECONNRESET, f"the warm engine at {path} closed before its hello")
        if not messages or messages[0].get("event") != "hello":
            raise EngineUnavailable(f"the engine at {path} refused the connection: {messages}")
        return sock, messages[0]
    except BaseException:
        sock.close()
        raise


class WarmEngine:
    """One state dir's warm engine, seen from a runner: started on first use, reused afterwards."""

    def __init__(
        self,
        state_dir: Path,
        *,
        spark_submit: str,
        submit_args: Sequence[str],
        env: Mapping[str, str],
        java_home: Path | None,
        spark_home: Path,
        idle_seconds: float = DEFAULT_IDLE_MINUTES * 60,
    ) -> None:
        self.state_dir = state_dir
        self.folder = protocol.engine_dir(state_dir)
        self.socket_path = self.folder / protocol.SOCKET_NAME
        self.spark_submit = spark_submit
        self.submit_args = list(submit_args)
        self.env = dict(env)
        self.idle_seconds = idle_seconds
        self._spawned = False
        self.fingerprint = engine_fingerprint(spark_home, java_home, self.submit_args, self.env, Path.cwd())

    def run(
        self, script: Path, variables: Mapping[str, str], output: StepOutput, stop: StopRequest,
        timeout_seconds: float | None, *, environment: Mapping[str, str] | None = None,
    ) -> StepResult:  # fmt: skip
        """Run one SQL step on the engine; raises EngineUnavailable before the step has started.

        `environment`: the one a cold spark-sql of this step would get; the step sees it, not the
        engine's (`${env:NAME}`, `!` commands).
        """
        conn, hello = self._ready_engine(output.notice)
        with conn, _Fifos(self.folder) as fifos:
            protocol.send(conn, {
                "op": "run", "file": str(script.resolve()), "variables": dict(variables),
                "stdout": str(fifos.paths[0]), "stderr": str(fifos.paths[1]),
                "idle_seconds": self.idle_seconds,
                "environment": dict(self.env if environment is None else environment),
            })  # fmt: skip
            source = WarmSource(conn, fifos, output.notice, engine_pid=int(hello["pid"]))
            stopper = Stopper(stop, timeout_seconds, CANCEL_GRACE_SECONDS)
            relay(source, output, stopper)
            if source.runs_cold is not None:
                raise StepNeedsOwnJvm(source.runs_cold)
            if source.unavailable is not None:
                raise EngineUnavailable(source.unavailable)
            if source.error is not None:
                # The engine's own failure, after all the step wrote, on a line of its own: stderr only.
                opened = source.stderr_line_open
                output.feed("stderr", (b"\n" if opened else b"") + source.error.encode() + b"\n")
        code = source.code if source.code is not None else 1
        if stopper.reason is not None:
            return StepResult(stopper.exit_code(code), stopper.reason)
        return StepResult(code)

    def _ready_engine(self, notice: Callable[[str], None]) -> tuple[socket.socket, protocol.Message]:
        """A connection to a running engine of the right fingerprint, starting one if needed."""
        protocol.make_engine_dir(self.state_dir)
        start_lock = os.open(self.folder / protocol.START_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # One runner at a time decides whether to start an engine: never two engines.
            fcntl.flock(start_lock, fcntl.LOCK_EX)
            for _attempt in range(3):
                conn, hello = self._connect_or_start(notice)
                if hello.get("fingerprint") == self.fingerprint:
                    if hello.get("ready"):
                        notice(f"runs warm (engine pid {hello['pid']}, up {_age(hello)})")
                    elif not self._spawned:
                        notice(f"runs warm (engine pid {hello['pid']}, still starting)")
                    return conn, hello
                conn.close()
                notice("the warm engine was started with another pyspark, Java or environment: restarting it")
                stop_engine(self.state_dir)
            raise EngineUnavailable("the warm engine kept the wrong versions after a restart")
        finally:
            os.close(start_lock)

    def _connect_or_start(self, notice: Callable[[str], None]) -> tuple[socket.socket, protocol.Message]:
        if engine_alive(self.state_dir):
            try:
                return _connect(self.socket_path)
            except OSError:
                _wait_until_ended(self.state_dir, STOP_TIMEOUT_SECONDS)  # it is ending: start anew
        notice(f"runs warm: starting the warm engine for {self.state_dir} (Spark's start-up, once)")
        process = self._spawn()
        self._spawned = True
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                return _connect(self.socket_path)
            except OSError as error:
                if error.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                    raise EngineUnavailable(f"cannot reach the warm engine: {error}") from error
            if process.poll() is not None:
                raise EngineUnavailable(
                    f"the warm engine exited at start (exit {process.returncode}); see {self._log}"
                )
            if time.monotonic() > deadline:
                raise EngineUnavailable(f"the warm engine did not start in {START_TIMEOUT_SECONDS:.0f} s")
            time.sleep(CONNECT_POLL_SECONDS)

    @property
    def _log(self) -> Path:
        return self.folder / protocol.LOG_NAME

    def _spawn(self) -> subprocess.Popen[bytes]:
        package_root = str(Path(runner.__file__).resolve().parent.parent)
        path = self.env.get("PYTHONPATH")
        env = {**self.env, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}
        argv = [
            sys.executable, "-m", "runner.local.warm.server",
            "--state-dir", str(self.state_dir.resolve()), "--fingerprint", self.fingerprint,
            "--idle-seconds", str(self.idle_seconds), "--spark-submit", self.spark_submit,
            "--", *self.submit_args,
        ]  # fmt: skip
        with open(self._log, "ab") as log:
            # Its own session: a Ctrl-C meant for the runner does not reach the engine.
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
            )


def _age(hello: protocol.Message) -> str:
    seconds = max(0.0, time.time() - float(hello.get("started_at", time.time())))
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


class _Fifos:
    """Two named pipes in a private folder: the JVM writes the step's stdout and stderr into them."""

    def __init__(self, folder: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=protocol.STEP_DIR_PREFIX, dir=folder))
        self.paths = (self.dir / "stdout", self.dir / "stderr")

    def __enter__(self) -> _Fifos:
        self.read_fds: list[int] = []
        self.hold_fds: list[int] = []
        for path in self.paths:
            os.mkfifo(path, 0o600)
            self.read_fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            # A writer of our own until the step's end: a FIFO without one reads as ended, and the
            # JVM opens its end only when the step starts.
            self.hold_fds.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        return self

    def release(self) -> None:
        for fd in self.hold_fds:
            os.close(fd)
        self.hold_fds = []

    def __exit__(self, *exc: object) -> None:
        self.release()
        for fd in self.read_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self.dir, ignore_errors=True)


class WarmSource:
    """A step on the warm engine seen through the relay loop's primitives: two FIFOs and a socket."""

    def __init__(
        self, conn: socket.socket, fifos: _Fifos, notice: Callable[[str], None], *, engine_pid: int
    ) -> None:
        self._conn: socket.socket | None = conn
        self._engine_pid = engine_pid
        conn.setblocking(False)
        self._fifos = fifos
        self._pipes = Pipes(fifos.read_fds[0], fifos.read_fds[1])
        self._reader = protocol.Reader()
        self._notice = notice
        self.code: int | None = None
        self.unavailable: str | None = None
        self.runs_cold: str | None = None
        #: the engine's line for a failure of its own (not Spark's): the JVM died, py4j failed
        self.error: str | None = None
        #: the step's stderr so far ends inside a line (a progress bar's carriage returns)
        self.stderr_line_open = False
        self._over = False

    def read_stdout(self) -> bytes:
        return self._pipes.read("stdout")

    def read_stderr(self) -> bytes:
        chunk = self._pipes.read("stderr")
        if chunk:
            self.stderr_line_open = not chunk.endswith(b"\n")
        return chunk

    def _poll(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            messages = protocol.receive(conn, self._reader)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            messages = None
        for message in messages or []:
            self._handle(message)
        if messages is None:
            if self.code is None and self.unavailable is None and self.runs_cold is None:
                self._notice("the warm engine ended during the step; see its log in the state dir's engine/")
            self._end()

    def _handle(self, message: protocol.Message) -> None:
        event = message.get("event")
        if event == "queued":
            self._notice(
                f"waiting for the warm engine: it is running a step of another run (pid {message['holder']})"
            )
        elif event == "exit":
            # None: the engine did not run the step (it failed before it started, or was cancelled).
            self.code = None if message.get("code") is None else int(message["code"])
            self.error = None if message.get("error") is None else str(message["error"])
            self._end()
        elif event == "cold":
            self.runs_cold = str(message["reason"])
            self._end()
        elif event in ("unavailable", "stopping"):
            self.unavailable = str(message.get("reason", "the warm engine is stopping"))
            self._end()

    def _end(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        # The JVM has closed its ends by now: once ours are closed too, the FIFOs read to their end.
        self._fifos.release()
        self._over = True

    def ended(self) -> bool:
        self._poll()
        return self._over and not self._pipes.fds

    def lost(self) -> bool:
        return False

    def wait(self, seconds: float) -> None:
        self._pipes.wait(seconds, *([self._conn.fileno()] if self._conn is not None else []))

    def stop(self) -> None:
        """Ask the engine to cancel the step's Spark jobs: its statement fails and the CLI stops at it."""
        if self._conn is not None:
            with contextlib.suppress(OSError):
                protocol.send(self._conn, {"op": "cancel"})

    def kill(self) -> None:
        """End the engine, whose step did not stop: what its pipes still hold is all that will come."""
        self._notice(
            f"the warm engine did not stop the step in {CANCEL_GRACE_SECONDS:.0f} s: ending the engine"
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._engine_pid, signal.SIGKILL)
        self._end()
