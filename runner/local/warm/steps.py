"""Which local steps run on the warm engine; a cold JVM and the engine never share the metastore."""

from __future__ import annotations

from runner.execution import StepResult, StopRequest
from runner.local.executor import ColdReason, LocalSpark, LocalStep, RunsCold, _spark_home
from runner.local.warm.client import (
    DEFAULT_IDLE_MINUTES,
    EngineUnavailable,
    StepNeedsOwnJvm,
    WarmEngine,
    engine_alive,
    stop_engine,
)
from runner.local.warm.jvm import CLI_DRIVER
from runner.model import Engine
from runner.output import StepOutput


class WarmSteps:
    """SQL steps go to the state dir's warm engine; other Spark steps end it first.

    A step that starts a JVM of its own (a cold spark-sql, spark-submit) needs the engine gone:
    Derby admits one process at a time.
    """

    def __init__(
        self, spark: LocalSpark, *, cold: bool = False, idle_minutes: float = DEFAULT_IDLE_MINUTES
    ) -> None:
        self.spark = spark
        self.state_dir = spark.state_dir
        self.cold = cold
        self.idle_seconds = idle_minutes * 60
        self._engine: WarmEngine | None = None

    def run(self, step: LocalStep, output: StepOutput, stop: StopRequest) -> StepResult | RunsCold:
        """The step's result when it ran warm; else why it runs cold, said, and the metastore freed for it."""
        routed = self._run(step, output, stop)
        if isinstance(routed, RunsCold):
            if routed.notice is not None:
                output.notice(routed.notice)
            if routed.reason is not ColdReason.NOT_SPARK:
                self.release(output)
        return routed

    def _run(self, step: LocalStep, output: StepOutput, stop: StopRequest) -> StepResult | RunsCold:
        invocation = step.invocation
        if invocation.engine is Engine.BASH:
            return RunsCold(ColdReason.NOT_SPARK)
        if not invocation.engine.is_sql:
            return RunsCold(ColdReason.OWN_JVM)
        if self.cold:
            return RunsCold(ColdReason.ASKED)
        try:
            return self._warm_engine(step).run(
                invocation.step.path, invocation.variables, output, stop, invocation.timeout_seconds,
                environment=step.env,
            )  # fmt: skip
        except StepNeedsOwnJvm as error:
            return RunsCold(ColdReason.STEP, str(error))
        except EngineUnavailable as error:
            return RunsCold(ColdReason.UNAVAILABLE, str(error))

    def _warm_engine(self, step: LocalStep) -> WarmEngine:
        if self._engine is None:
            self._engine = WarmEngine(
                self.state_dir,
                spark_submit=self.spark.binaries()[Engine.SPARK_SUBMIT],
                submit_args=[*self.spark.engine_args(), "--name", CLI_DRIVER],
                # The runner's own per-step variables (NIGHTSHIFT_*) are not the engine's.
                env={k: v for k, v in step.env.items() if not k.startswith("NIGHTSHIFT_")},
                java_home=step.java_home,
                spark_home=_spark_home(),
                idle_seconds=self.idle_seconds,
            )
        return self._engine

    def release(self, output: StepOutput) -> None:
        """End the warm engine, if one runs on this state dir, so that a cold JVM can open the metastore."""
        if engine_alive(self.state_dir):
            output.notice("ending the warm engine first: a JVM of its own needs the metastore to itself")
            stop_engine(self.state_dir)
