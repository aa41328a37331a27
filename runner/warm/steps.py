"""Which local steps run on the warm engine; a cold JVM and the engine never share the metastore."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from runner.execution import Invocation, StepResult, StopRequest
from runner.model import Engine
from runner.output import StepOutput
from runner.warm.client import DEFAULT_IDLE_MINUTES, EngineUnavailable, WarmEngine, engine_alive, stop_engine
from runner.warm.jvm import CLI_DRIVER


class WarmSteps:
    """SQL steps go to the state dir's warm engine; other Spark steps end it first.

    A step that starts a JVM of its own (a cold spark-sql, spark-submit) needs the engine gone:
    Derby admits one process at a time.
    """

    def __init__(
        self, state_dir: Path, *, cold: bool = False, idle_minutes: float = DEFAULT_IDLE_MINUTES
    ) -> None:
        self.state_dir = state_dir
        self.cold = cold
        self.idle_seconds = idle_minutes * 60
        self._engine: WarmEngine | None = None

    def run(
        self,
        invocation: Invocation,
        output: StepOutput,
        stop: StopRequest,
        *,
        engine_args: Sequence[str],
        binaries: Mapping[Engine, str],
        env: Mapping[str, str],
        java_home: Path | None,
        spark_home: Path,
    ) -> StepResult | None:
        """The step's result when it ran warm; None when it is to run cold (the engine is ended first)."""
        if invocation.engine is Engine.BASH:
            return None
        if invocation.engine.is_sql and not self.cold:
            if self._engine is None:
                self._engine = WarmEngine(
                    self.state_dir,
                    spark_submit=binaries[Engine.SPARK_SUBMIT],
                    submit_args=[*engine_args, "--name", CLI_DRIVER],
                    # The runner's own per-step variables (NIGHTSHIFT_*) are not the engine's.
                    env={k: v for k, v in env.items() if not k.startswith("NIGHTSHIFT_")},
                    java_home=java_home,
                    spark_home=spark_home,
                    idle_seconds=self.idle_seconds,
                )
            try:
                return self._engine.run(
                    invocation.step.path, invocation.variables, output, stop, invocation.timeout_seconds,
                    environment=env,
                )  # fmt: skip
            except EngineUnavailable as error:
                output.notice(f"runs cold: the warm engine is unavailable: {error}")
        elif invocation.engine.is_sql:
            output.notice("runs cold (--cold): a JVM of its own")
        self.release(output)
        return None

    def release(self, output: StepOutput) -> None:
        """End the warm engine, if one runs on this state dir, so that a cold JVM can open the metastore."""
        if engine_alive(self.state_dir):
            output.notice("ending the warm engine first: a JVM of its own needs the metastore to itself")
            stop_engine(self.state_dir)
