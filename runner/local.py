"""The embedded local engine: Spark SQL from the pyspark package, run as a child process."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from runner.engines import Command, engine_command
from runner.errors import UsageError
from runner.execution import Invocation, StepResult, StopRequest
from runner.java import find_java_home
from runner.model import Engine
from runner.output import StepOutput, Stream
from runner.relay import Offsets, Pumped, Stopper, pump

READ_SIZE = 256 * 1024
LOG_CONFIG = Path(__file__).with_name("local-log4j2.properties")
KILL_GRACE_SECONDS = 5.0


def _spark_home() -> Path:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise UsageError(
            "pyspark is not installed: run `make setup` (or pip install -r requirements-local.txt)"
        )
    return Path(spec.origin).parent


class LocalSpark:
    """Local Spark whose warehouse and Derby metastore live in one folder, shared by every step."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()

    @property
    def warehouse(self) -> Path:
        return self.state_dir / "warehouse"

    @property
    def metastore(self) -> Path:
        return self.state_dir / "metastore_db"

    def reset(self) -> None:
        """Forget every table: remove the warehouse and the metastore."""
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def binaries(self) -> dict[Engine, str]:
        bin_dir = _spark_home() / "bin"
        return {
            Engine.SPARK_SQL: str(bin_dir / "spark-sql"),
            # There is no Hive here: Spark SQL's HiveQL support stands in for it.
            Engine.HIVE: str(bin_dir / "spark-sql"),
            Engine.SPARK_SUBMIT: str(bin_dir / "spark-submit"),
            Engine.BASH: "bash",
        }

    def engine_args(self) -> tuple[str, ...]:
        metastore_url = f"jdbc:derby:;databaseName={self.metastore};create=true"
        return (
            "--master", "local[*]",
            "--conf", "spark.ui.enabled=false",
            "--conf", f"spark.sql.warehouse.dir={self.warehouse}",
            "--conf", f"spark.hadoop.javax.jdo.option.ConnectionURL={metastore_url}",
            "--conf", (
                f"spark.driver.extraJavaOptions=-Dderby.system.home={self.state_dir}"
                f" -Dlog4j2.configurationFile={LOG_CONFIG}"
            ),
            # Sample data is small; 200 shuffle partitions would only add scheduling time.
            "--conf", "spark.sql.shuffle.partitions=4",
        )  # fmt: skip

    def command(self, invocation: Invocation) -> Command:
        engine = invocation.engine
        args = self.engine_args() if engine is not Engine.BASH else ()
        return engine_command(
            engine,
            str(invocation.step.path),
            invocation.variables,
            binaries=self.binaries(),
            engine_args=args,
        )

    def environ(self, java_home: Path | None) -> dict[str, str]:
        env = {
            "SPARK_HOME": str(_spark_home()),
            # Without it Spark warns on every start that the hostname resolves to loopback.
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,
        }
        if java_home is not None:
            env["JAVA_HOME"] = str(java_home)
        return env


class ProcessSource:
    """A local child process seen through the relay loop's primitives: its two pipes and its exit."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.process = process
        self._open: dict[Stream, int] = {"stdout": process.stdout.fileno(), "stderr": process.stderr.fileno()}
        for fd in self._open.values():
            os.set_blocking(fd, False)

    def _read(self, stream: Stream) -> bytes:
        fd = self._open.get(stream)
        if fd is None:
            return b""
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return b""
        if not chunk:
            del self._open[stream]
        return chunk

    def read_stdout(self) -> bytes:
        return self._read("stdout")

    def read_stderr(self) -> bytes:
        return self._read("stderr")

    def ended(self) -> bool:
        return not self._open and self.process.poll() is not None

    def lost(self) -> bool:
        return False

    def wait(self, seconds: float) -> None:
        if self._open:
            select.select(list(self._open.values()), [], [], seconds)
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(seconds)


class LocalExecutor:
    """Runs steps as child processes of the runner; one at a time (Derby admits one engine)."""

    parallel = False

    def __init__(self, spark: LocalSpark, environ: Mapping[str, str] | None = None) -> None:
        self.spark = spark
        self._environ = dict(os.environ if environ is None else environ)
        self._java_home: Path | None = None

    def check(self, engines: set[Engine]) -> None:
        """Fail before anything starts when Spark would not run (no Java, no pyspark)."""
        if engines - {Engine.BASH}:
            _spark_home()
            self._java_home = find_java_home(self._environ)

    def describe(self, invocation: Invocation) -> str:
        return self.spark.command(invocation).display()

    def run(self, invocation: Invocation, output: StepOutput, stop: StopRequest) -> StepResult:
        if invocation.step.path.suffix.lower() == ".hql" and invocation.engine is Engine.HIVE:
            output.notice(
                "runs on Spark SQL's HiveQL support locally,"
                " not on Hive itself (on a cluster it runs on hive)"
            )
        command = self.spark.command(invocation)
        self.spark.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**self._environ, **self.spark.environ(self._java_home), **command.env}
        process = subprocess.Popen(
            command.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            # Own session: stopping the step stops the JVM and everything it started.
            start_new_session=True,
        )
        stopper = Stopper(stop, invocation.timeout_seconds, KILL_GRACE_SECONDS)
        try:
            code = _follow(ProcessSource(process), output, stopper)
        finally:
            if process.poll() is None:
                _signal_group(process, signal.SIGKILL)
            process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        if stopper.reason is not None:
            return StepResult(stopper.exit_code(code), stopper.reason)
        return StepResult(128 - code if code < 0 else code)


def _follow(source: ProcessSource, output: StepOutput, stopper: Stopper) -> int:
    """Relay until the process and its pipes end; on a stop or timeout, TERM its group, then KILL."""
    offsets, interrupt = Offsets(), stopper.interrupt
    while pump(source, output, offsets, interrupt) is Pumped.INTERRUPTED:
        if stopper.drained:
            _signal_group(source.process, signal.SIGKILL)
            interrupt = _never  # after the KILL only what the pipes still hold is left to relay
        else:
            _signal_group(source.process, signal.SIGTERM)
    return source.process.wait()


def _never() -> bool:
    return False


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
