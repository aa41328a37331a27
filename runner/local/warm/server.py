"""The warm engine's process: a Unix socket, a queue of steps and an idle timer around one JVM."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import queue
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runner.local.warm import protocol
from runner.local.warm.jvm import CliEngine, RunCold, launch

CANCEL_EVERY_SECONDS = 0.25
ACCEPT_POLL_SECONDS = 0.2
JVM_STOP_SECONDS = 30.0
#: an engine failure's text on the step's stderr is cut here: one line, not a py4j dump
ERROR_CHARS = 300


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    sys.stderr.write(f"{stamp} nightshift engine[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


class Job:
    """One step handed over by a runner: its file, variables and the two FIFOs of its output."""

    def __init__(self, request: protocol.Message, client_pid: int) -> None:
        self.script = Path(request["file"])
        self.variables: dict[str, str] = dict(request["variables"])
        self.stdout = Path(request["stdout"])
        self.stderr = Path(request["stderr"])
        # The environment a cold spark-sql of this step would have: the JVM's is the engine's own.
        self.environment: dict[str, str] | None = request.get("environment")
        self.client_pid = client_pid
        self.started = threading.Event()
        self.done = threading.Event()
        self.cancelled = False
        #: the runner is gone: nobody reads the step's output, the engine drains and discards it
        self.abandoned = False
        self.code: int | None = None
        self.unavailable: str | None = None
        #: why the step failed in the engine, not in Spark (a JVM that died, a py4j or Python error):
        #: one line for the step's stderr, which would otherwise say nothing
        self.error: str | None = None
        #: why the step needs a JVM of its own (`quit`, `ADD JAR`, `!cmd`): the runner runs it cold
        self.runs_cold: str | None = None
        self._lock = threading.Lock()
        self._readers: list[int] = []

    def finish(self, code: int | None, unavailable: str | None = None, error: str | None = None) -> None:
        self.code, self.unavailable, self.error = code, unavailable, error
        self.done.set()

    def hold_outputs(self) -> None:
        """Open a reader of the engine's own on both FIFOs, before the JVM opens them to write.

        A FIFO's writer blocks in open() until it has a reader: with the runner's readers only, a
        runner killed after handing over its step would hold the JVM in that open() for good.
        OSError when a FIFO is gone (its runner ended and cleaned up).
        """
        with self._lock:
            for path in (self.stdout, self.stderr):
                self._readers.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))

    def drain(self) -> None:
        """Read and drop what the step wrote: a full FIFO would block the JVM's next write."""
        with self._lock:
            for fd in self._readers:
                with contextlib.suppress(OSError):
                    while os.read(fd, 1 << 16):
                        pass

    def release_outputs(self) -> None:
        with self._lock:
            for fd in self._readers:
                os.close(fd)
            self._readers = []

    def remove_outputs(self, folder: Path) -> None:
        """Remove the FIFOs' folder that a runner made in the engine's folder and could not remove."""
        step_dir = self.stdout.parent
        if step_dir.parent == folder and step_dir.name.startswith(protocol.STEP_DIR_PREFIX):
            shutil.rmtree(step_dir, ignore_errors=True)


class Server:
    """Serves steps one at a time, in the order they arrive, until idle, stopped, or its JVM dies."""

    def __init__(
        self,
        state_dir: Path,
        fingerprint: str,
        *,
        idle_seconds: float,
        spark_submit: str,
        submit_args: list[str],
    ) -> None:
        self.folder = protocol.make_engine_dir(state_dir)
        self.fingerprint = fingerprint
        self.idle_seconds = idle_seconds
        self.spark_submit = spark_submit
        self.submit_args = submit_args
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.lock = threading.Lock()
        self.pending: list[Job] = []
        #: connections accepted and not yet closed: a runner that has its hello is about to ask for a step
        self.connections = 0
        self.last_active = time.monotonic()
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.start_error: str | None = None
        self.engine: CliEngine | None = None
        self.process: Any = None
        self.started_at = time.time()

    # The main thread: accept connections, end when idle, stopped, or the JVM is gone.
    def serve(self) -> int:
        lock_fd = os.open(self.folder / protocol.LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        # Blocks while an engine that is ending still holds the metastore.
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        path = self.folder / protocol.SOCKET_NAME
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window in which others may connect
        try:
            with protocol.socket_address(path) as address:
                listener.bind(address)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        # Step folders that runners of an earlier engine left (a runner killed after making them).
        for stale in self.folder.glob(protocol.STEP_DIR_PREFIX + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        listener.listen(64)
        listener.settimeout(ACCEPT_POLL_SECONDS)
        log(f"listening on {path}")
        threading.Thread(target=self._work, name="steps", daemon=True).start()
        try:
            while not self._should_end():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                # Counted here, on the thread that decides to end, so no idle check falls between the
                # accept and the count: an engine never ends under a runner that it has said hello to.
                with self.lock:
                    self.connections += 1
                threading.Thread(target=self._serve_counted, args=(conn,), daemon=True).start()
        finally:
            path.unlink(missing_ok=True)
            listener.close()
            self._shutdown()
            os.close(lock_fd)
        return 0

    def _should_end(self) -> bool:
        with self.lock:
            busy = bool(self.pending) or self.connections > 0
            idle_for = time.monotonic() - self.last_active
        if busy:
            # Even with its JVM gone: each step still waiting is answered first (failed or run cold).
            return False
        if self.process is not None and self.process.poll() is not None:
            log(f"the JVM ended (exit {self.process.returncode})")
            return True
        if self.stopping.is_set():
            log("stopping, as asked")
            return True
        if self.start_error is not None:
            return True
        if self.ready.is_set() and idle_for > self.idle_seconds:
            log(f"idle for {idle_for:.0f} s: stopping")
            return True
        return False

    def _shutdown(self) -> None:
        process, engine = self.process, self.engine
        if process is None:
            return
        if engine is not None and process.poll() is None:
            with contextlib.suppress(Exception):
                engine.stop()
            with contextlib.suppress(Exception):
                engine.gateway.shutdown()
        with contextlib.suppress(OSError):
            process.stdin.close()  # the gateway server exits at the end of its stdin
        try:
            process.wait(JVM_STOP_SECONDS)
        except Exception:
            process.kill()
            process.wait()
        log("ended")

    # The steps thread: the only Python thread (so the only JVM thread) that runs steps.
    def _work(self) -> None:
        try:
            with open(self.folder / protocol.LOG_NAME, "ab") as jvm_log:
                self.process, gateway = launch(
                    self.spark_submit, self.submit_args, os.environ, self.folder, log=jvm_log
                )
            engine = CliEngine(gateway)
            engine.start()
            self.engine = engine
            log(f"ready: JVM pid {self.process.pid}")
        except Exception as error:
            self.start_error = " ".join(str(error).split()) or type(error).__name__
            log(f"could not start: {self.start_error}")
            self.ready.set()
            while True:
                self.jobs.get().finish(None, unavailable=self.start_error)
        self.ready.set()
        while True:
            job = self.jobs.get()
            if job.cancelled:
                job.finish(None)
                continue
            if self.process.poll() is not None:
                # The runner runs the step in a JVM of its own, as when no engine could start.
                job.finish(
                    None, unavailable=f"the warm engine's JVM ended ({_ended(self.process.returncode)})"
                )
                continue
            try:
                job.hold_outputs()
            except OSError as error:
                job.release_outputs()
                log(f"step {job.script} not run: its runner is gone ({error.strerror})")
                # Said to a runner that is still there (its step's folder removed under it).
                job.finish(
                    None,
                    error=(
                        f"nightshift: the warm engine could not run the step: its output pipe "
                        f"{error.filename} is gone ({error.strerror}); see the engine's log {self._log}"
                    ),
                )
                continue
            job.started.set()
            failure: str | None = None
            try:
                code = engine.run_file(job.script, job.variables, job.stdout, job.stderr, job.environment)
            except RunCold as error:
                job.runs_cold = str(error)
                job.finish(None)
                continue
            except Exception as error:
                code = self._lost_code()
                log(f"step {job.script} failed in the engine: {error!r}")
                failure = self._failure(error)
            finally:
                job.release_outputs()
            job.finish(code, error=failure)

    def _failure(self, error: Exception) -> str:
        """The step's stderr line for a failure inside the engine: the error, the JVM's state, the log."""
        text = " ".join(str(error).split())[:ERROR_CHARS] or "no message"
        process = self.process
        jvm = (
            f"its JVM ended ({_ended(process.returncode)})"
            if process is not None and process.poll() is not None
            else "its JVM still runs"
        )
        return (
            f"nightshift: the warm engine failed the step: {type(error).__name__}: {text}; {jvm}; "
            f"see the engine's log {self._log}"
        )

    @property
    def _log(self) -> Path:
        return self.folder / protocol.LOG_NAME

    def _lost_code(self) -> int:
        """A step whose JVM died reports what a cold spark-sql killed the same way would: 128+signal."""
        process = self.process
        if process is not None and not _is_connected(self.engine):
            with contextlib.suppress(Exception):
                # A JVM that dropped the gateway is on its way out: give it time to be reaped (at load 20
                # too), so that the step's code and line say how it ended.
                returncode = process.wait(JVM_STOP_SECONDS)
                return 128 - returncode if returncode < 0 else returncode or 1
        return 1

    def _serve_counted(self, conn: socket.socket) -> None:
        try:
            self._serve_client(conn)
        finally:
            with self.lock:
                self.connections -= 1
                self.last_active = time.monotonic()

    # One thread per connection: one step, or a stop request.
    def _serve_client(self, conn: socket.socket) -> None:
        with conn:
            pid, uid, _ = protocol.peer_credentials(conn)
            if uid != os.getuid():
                log(f"refused a connection from uid {uid} (pid {pid})")
                with contextlib.suppress(OSError):
                    protocol.send(conn, {"event": "refused", "reason": "not the engine's user"})
                return
            protocol.send(conn, self._hello())
            reader = protocol.Reader()
            conn.settimeout(60)
            request: protocol.Message | None = None
            while request is None:
                messages = protocol.receive(conn, reader)
                if messages is None:
                    return
                if messages:  # else only part of the request has arrived yet
                    request = messages[0]
            if request.get("op") == "stop":
                self.stopping.set()
                protocol.send(conn, {"event": "stopping"})
            elif request.get("op") == "run":
                self._run(conn, reader, request, pid)

    def _hello(self) -> protocol.Message:
        return {
            "event": "hello",
            "protocol": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "fingerprint": self.fingerprint,
            "ready": self.ready.is_set() and self.start_error is None,
            "started_at": self.started_at,
        }

    def _run(self, conn: socket.socket, reader: protocol.Reader, request: protocol.Message, pid: int) -> None:
        if self.stopping.is_set():
            protocol.send(conn, {"event": "stopping"})
            return
        job = Job(request, pid)
        self.idle_seconds = float(request.get("idle_seconds", self.idle_seconds))
        with self.lock:
            ahead = [other.client_pid for other in self.pending]
            self.pending.append(job)
        try:
            if ahead:
                protocol.send(conn, {"event": "queued", "ahead": len(ahead), "holder": ahead[0]})
            self.jobs.put(job)
            self._follow(conn, reader, job)
            if job.abandoned:
                return
            if job.runs_cold is not None:
                protocol.send(conn, {"event": "cold", "reason": job.runs_cold})
            elif job.unavailable is not None:
                protocol.send(conn, {"event": "unavailable", "reason": job.unavailable})
            elif job.error is not None:
                protocol.send(conn, {"event": "exit", "code": job.code, "error": job.error})
            else:
                protocol.send(conn, {"event": "exit", "code": job.code})
        except OSError:
            self._abandon(job)
        finally:
            with self.lock:
                self.pending.remove(job)
                self.last_active = time.monotonic()

    def _follow(self, conn: socket.socket, reader: protocol.Reader, job: Job) -> None:
        """Wait for the step; cancel its Spark jobs if the runner asks, abandon it if the runner is gone."""
        conn.settimeout(CANCEL_EVERY_SECONDS)
        while not job.done.is_set():
            try:
                messages = protocol.receive(conn, reader)
            except TimeoutError:
                continue
            if messages is None:
                self._abandon(job)
            elif any(m.get("op") == "cancel" for m in messages):
                job.cancelled = True
                self._cancel_until_done(job)

    def _abandon(self, job: Job) -> None:
        """The runner is gone (killed, out of memory): stop its step and clean up after it."""
        if not job.abandoned:
            log(f"the runner of step {job.script} (pid {job.client_pid}) is gone: abandoning the step")
        job.cancelled = job.abandoned = True
        self._cancel_until_done(job)
        job.remove_outputs(self.folder)

    def _cancel_until_done(self, job: Job) -> None:
        # Cancelling is repeated: a statement may start a new job between two cancels.
        while not job.done.wait(CANCEL_EVERY_SECONDS):
            if job.abandoned:
                job.drain()
            if job.started.is_set() and self.engine is not None:
                with contextlib.suppress(Exception):
                    self.engine.cancel()


def _ended(returncode: int) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def _is_connected(engine: CliEngine | None) -> bool:
    try:
        return engine is not None and bool(engine.jvm.System.currentTimeMillis())
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.local.warm.server")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--idle-seconds", type=float, required=True)
    parser.add_argument("--spark-submit", required=True)
    parser.add_argument("submit_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    submit_args = args.submit_args[1:] if args.submit_args[:1] == ["--"] else args.submit_args
    server = Server(
        args.state_dir,
        args.fingerprint,
        idle_seconds=args.idle_seconds,
        spark_submit=args.spark_submit,
        submit_args=submit_args,
    )
    signal.signal(signal.SIGTERM, lambda _n, _f: server.stopping.set())
    return server.serve()


if __name__ == "__main__":
    sys.exit(main())
