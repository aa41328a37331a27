"""The embedded local engine: Spark SQL from the pyspark package, run as a child process."""

from __future__ import annotations

import importlib.util
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from runner.engines import Command, engine_command
from runner.errors import UsageError
from runner.execution import EXIT_TIMEOUT, Invocation, StopRequest
from runner.java import find_java_home
from runner.model import Engine
from runner.output import StepOutput, Stream

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


class LocalExecutor:
    """Runs steps as child processes of the runner; one at a time (Derby admits one engine)."""

    parallel = False

    def __init__(
        self,
        spark: LocalSpark,
        notice: Callable[[str], None],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.spark = spark
        self._notice = notice
        self._environ = dict(os.environ if environ is None else environ)
        self._java_home: Path | None = None

    def check(self, engines: set[Engine]) -> None:
        """Fail before anything starts when Spark would not run (no Java, no pyspark)."""
        if engines - {Engine.BASH}:
            _spark_home()
            self._java_home = find_java_home(self._environ)

    def describe(self, invocation: Invocation) -> str:
        return self.spark.command(invocation).display()

    def run(self, invocation: Invocation, output: StepOutput, stop: StopRequest) -> int:
        if invocation.step.path.suffix.lower() == ".hql" and invocation.engine is Engine.HIVE:
            self._notice(
                f"{invocation.step.file_name}: runs on Spark SQL's HiveQL support locally,"
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
        deadline = time.monotonic() + invocation.timeout_seconds if invocation.timeout_seconds else None
        timed_out = _pump(process, output, stop, deadline)
        code = process.wait()
        if timed_out:
            return EXIT_TIMEOUT
        return 128 - code if code < 0 else code


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(KILL_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue


def _pump(
    process: subprocess.Popen[bytes],
    output: StepOutput,
    stop: StopRequest,
    deadline: float | None,
) -> bool:
    """Relay both pipes until they close; stop the process group on request or timeout."""
    streams: dict[int, Stream] = {}
    selector = selectors.DefaultSelector()
    pipes: list[tuple[IO[bytes] | None, Stream]] = [
        (process.stdout, "stdout"),
        (process.stderr, "stderr"),
    ]
    for pipe, stream in pipes:
        assert pipe is not None
        selector.register(pipe.fileno(), selectors.EVENT_READ)
        streams[pipe.fileno()] = stream
    timed_out = stopped = False
    try:
        while streams:
            for key, _ in selector.select(timeout=0.1):
                fd = int(key.fd)
                chunk = os.read(fd, READ_SIZE)
                if chunk:
                    output.feed(streams[fd], chunk)
                else:
                    selector.unregister(fd)
                    del streams[fd]
            if stopped:
                continue
            if stop.is_set():
                stopped = True
            elif deadline is not None and time.monotonic() > deadline:
                stopped = timed_out = True
            if stopped:
                _stop_group(process)
    finally:
        selector.close()
        if process.poll() is None:
            _stop_group(process)
    return timed_out
