"""The embedded local engine: Spark SQL from the pyspark package, run as a child process."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from runner.engines import Command, engine_command, utf8_locale
from runner.errors import UsageError
from runner.execution import Invocation, StepResult, StopRequest
from runner.local.java import find_java_home
from runner.model import Engine
from runner.output import StepOutput
from runner.relay import Pipes, Stopper, relay

LOG_CONFIG = Path(__file__).with_name("log4j2.properties")
KILL_GRACE_SECONDS = 5.0
#: Exported into each step's environment; every process that carries it belongs to the step.
STEP_TOKEN_VARIABLE = "NIGHTSHIFT_STEP_TOKEN"
#: After a KILL, how long a process may take to go (one stuck in the kernel may never go).
KILLED_WAIT_SECONDS = 1.0


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
        """Forget every table: end the warm engine, remove the warehouse and the metastore."""
        from runner.local.warm.client import stop_engine  # noqa: PLC0415 - the cluster path never loads it

        stop_engine(self.state_dir)
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
            "--conf", "spark.driver.extraJavaOptions=" + java_options(
                f"-Dderby.system.home={self.state_dir}", f"-Dlog4j2.configurationFile={LOG_CONFIG}"
            ),
            # No spark.sql.shuffle.partitions: Spark's 200, as a bare spark-sql has them. The rows of
            # an aggregate without ORDER BY come in the order of those partitions (adaptive execution
            # coalesces them, so small data costs little).
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


def java_options(*options: str) -> str:
    """Options for `spark.driver.extraJavaOptions`, each kept whole however odd the path it holds.

    Spark splits the value like a shell (the launcher's CommandBuilderUtils.parseOptionString, and
    Utils.splitCommandString): inside double quotes a backslash keeps the next character as it is.
    """
    return " ".join('"' + option.replace("\\", "\\\\").replace('"', '\\"') + '"' for option in options)


class StepProcesses:
    """Everything a step started, also what left its process group (`setsid`, daemons).

    A process group is not enough: a daemon leaves it. The environment is inherited by default, so
    the step's processes are found by a token in their environment, among this user's processes.
    """

    def __init__(self, process: subprocess.Popen[bytes], token: str, grace_seconds: float) -> None:
        self.process = process
        self._entry = f"{STEP_TOKEN_VARIABLE}={token}".encode()
        self._grace = grace_seconds
        self._termed_at: float | None = None
        self._killed_at: float | None = None

    def find(self) -> list[int]:
        """The pids of this user's processes that carry the step's token (zombies carry nothing)."""
        uid, found = os.getuid(), []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != uid:
                    continue
                with open(f"/proc/{entry.name}/environ", "rb") as environ:
                    entries = environ.read().split(b"\0")
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if self._entry in entries:
                found.append(int(entry.name))
        return found

    def signal(self, sig: int) -> None:
        """Signal the step's process group and every process that carries its token."""
        _signal_group(self.process, sig)
        for pid in self.find():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def ending(self) -> bool:
        """One step of ending them, without waiting: TERM, KILL after the grace; true once none is left."""
        now = time.monotonic()
        if self._termed_at is None:
            self._termed_at = now
            self.signal(signal.SIGTERM)
        elif self._killed_at is None and now - self._termed_at > self._grace:
            self._killed_at = now
            self.signal(signal.SIGKILL)
        elif self._killed_at is not None and now - self._killed_at > KILLED_WAIT_SECONDS:
            return True
        return not self.find()

    def end(self) -> None:
        """End whatever is left of the step, waiting at most the grace (and a little after the KILL)."""
        while not self.ending():
            time.sleep(0.05)


class ProcessSource:
    """A local child process seen through the relay loop's primitives: its two pipes and its exit."""

    def __init__(self, process: subprocess.Popen[bytes], leftovers: StepProcesses) -> None:
        assert process.stdout is not None and process.stderr is not None
        self.process = process
        self.leftovers = leftovers
        self._pipes = Pipes(process.stdout.fileno(), process.stderr.fileno())

    def read_stdout(self) -> bytes:
        return self._pipes.read("stdout")

    def read_stderr(self) -> bytes:
        return self._pipes.read("stderr")

    def ended(self) -> bool:
        if self.process.poll() is None:
            return False
        if not self._pipes.fds:
            return True
        # The step has exited but something it started still holds a pipe open (a daemon, a
        # `setsid` child): end it instead of waiting for it, then stop waiting for the pipes, which
        # a process that shed the token could hold forever.
        return self.leftovers.ending()

    def lost(self) -> bool:
        return False

    def wait(self, seconds: float) -> None:
        if self._pipes.fds:
            self._pipes.wait(seconds)
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(seconds)

    def stop(self) -> None:
        self.leftovers.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.leftovers.signal(signal.SIGKILL)


@dataclass(frozen=True)
class LocalStep:
    """A step about to run locally: what it is, its command, and the environment a process of it gets."""

    invocation: Invocation
    command: Command
    env: Mapping[str, str]
    #: in the environment of every process the step starts (STEP_TOKEN_VARIABLE)
    token: str
    java_home: Path | None


class ColdReason(Enum):
    """Why a step runs in a process of its own rather than on the warm engine."""

    NOT_SPARK = "not a Spark step"  # bash: the engine is neither used nor ended
    OWN_JVM = "a JVM of its own"  # spark-submit: the engine ends first (Derby admits one process)
    ASKED = "--cold"
    STEP = "the step needs a JVM of its own"  # quit, ADD JAR, !cmd: the detail names the statement
    UNAVAILABLE = "the warm engine is unavailable"


@dataclass(frozen=True)
class RunsCold:
    """The warm engine's answer for a step it does not run: why, in the words of the step's notice."""

    reason: ColdReason
    detail: str = ""

    @property
    def notice(self) -> str | None:
        """What the step's output says about it; None where a cold run is a matter of course."""
        if self.reason is ColdReason.ASKED:
            return "runs cold (--cold): a JVM of its own"
        if self.reason is ColdReason.STEP:
            return f"runs cold: {self.detail}"
        if self.reason is ColdReason.UNAVAILABLE:
            return f"runs cold: {self.reason.value}: {self.detail}"
        return None


class LocalSteps(Protocol):
    """A way to run local steps: each in a process of its own (ColdSteps), or on the warm engine."""

    def run(self, step: LocalStep, output: StepOutput, stop: StopRequest) -> StepResult | RunsCold:
        """The step's result, or why it is to run cold (having said so in its output)."""
        ...


class ColdSteps:
    """Each step in a process of its own, as `spark-sql -f`, `spark-submit` and `bash` run it."""

    def run(self, step: LocalStep, output: StepOutput, stop: StopRequest) -> StepResult:
        process = subprocess.Popen(
            step.command.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(step.env),
            # Own session: stopping the step stops the JVM and everything it started.
            start_new_session=True,
        )
        stopper = Stopper(stop, step.invocation.timeout_seconds, KILL_GRACE_SECONDS)
        leftovers = StepProcesses(process, step.token, KILL_GRACE_SECONDS)
        try:
            relay(ProcessSource(process, leftovers), output, stopper)
            code = process.wait()
        finally:
            if process.poll() is None:
                leftovers.signal(signal.SIGKILL)
            process.wait()
            # Also after a normal exit: nothing the step started outlives it.
            leftovers.end()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        if stopper.reason is not None:
            return StepResult(stopper.exit_code(code), stopper.reason)
        return StepResult(128 - code if code < 0 else code)


class LocalExecutor:
    """Runs steps on this machine, one at a time (Derby admits one engine): warm where it can, else cold."""

    parallel = False

    def __init__(
        self, spark: LocalSpark, environ: Mapping[str, str] | None = None, *, warm: LocalSteps | None = None
    ) -> None:
        self.spark = spark
        #: SQL steps run on the state dir's warm engine; None: every step starts its own JVM
        self.warm = warm
        self.cold = ColdSteps()
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
        step = self._step(invocation)
        if self.warm is not None:
            routed = self.warm.run(step, output, stop)
            if isinstance(routed, StepResult):
                return routed
        return self.cold.run(step, output, stop)

    def _step(self, invocation: Invocation) -> LocalStep:
        command = self.spark.command(invocation)
        self.spark.state_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(16)
        env = {
            **self._environ,
            # Steps are UTF-8 text: an engine without a UTF-8 locale would garble them.
            **utf8_locale(self._environ),
            **self.spark.environ(self._java_home),
            **command.env,
            STEP_TOKEN_VARIABLE: token,
        }
        return LocalStep(invocation, command, env, token, self._java_home)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
