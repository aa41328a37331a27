"""A command's run plans: the options checked against the pipeline, the RunPlans, the undefined variables."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from runner.dates import parse_run_dates
from runner.errors import UsageError
from runner.execution import RunPlan, check_from_stage
from runner.model import Engine, Pipeline, Step, UndefinedVariable, undefined_variables


@dataclass(frozen=True)
class PlanOptions:
    """What a command asks of a run, as typed: the flags that shape its plans."""

    #: --run-date as typed: a date, a range A..B, or None for today in the schedule's time zone
    run_date: str | None = None
    run_id: str | None = None
    #: here (the local engine), not on a cluster: [variables.local] apply
    local: bool = True
    #: --var, already checked
    overrides: Mapping[str, str] = field(default_factory=dict)
    engine: Engine | None = None
    from_stage: int | None = None
    checks_only: bool = False
    checks_stage: int | None = None
    dry_run: bool = False
    #: --strict: an undefined ${name} is an error (so is pipeline.toml's strict_variables)
    strict: bool = False


@dataclass(frozen=True)
class Plans:
    """The plans of a run, one a date in order, and the ${name}s no variable defines in what they run."""

    plans: list[RunPlan]
    #: the warnings of a run that is not strict (a strict one raised instead)
    undefined: list[UndefinedVariable]

    @property
    def dates(self) -> list[str]:
        return [plan.variables["run_date"] for plan in self.plans]


def plan_runs(pipeline: Pipeline, options: PlanOptions, *, whole: bool) -> Plans:
    """The run plans of `pipeline` (a whole folder, or one step file); a UsageError for options it refuses."""
    if whole and options.engine and not options.engine.is_sql:
        raise UsageError(f"--engine {options.engine.value}: only spark-sql or hive apply to a whole folder")
    if options.from_stage is not None:
        check_from_stage(pipeline, options.from_stage, whole_pipeline=whole)
    check_checks_options(
        pipeline,
        checks_only=options.checks_only,
        stage=options.checks_stage,
        from_stage=options.from_stage,
        dry_run=options.dry_run,
        whole=whole,
    )
    dates = parse_run_dates(options.run_date, pipeline)
    plans = [
        RunPlan.make(
            pipeline,
            run_date=run_date,
            run_id=run_id_of(options.run_id, run_date, in_range=len(dates) > 1),
            local=options.local,
            overrides=options.overrides,
            engine_override=options.engine,
            whole_pipeline=whole,
            from_stage=options.from_stage,
        )
        for run_date in dates
    ]
    if options.checks_only:
        plans = [replace(plan, checks_only=True, checks_stage=options.checks_stage) for plan in plans]
    undefined = plans[0].undefined_variables()
    if undefined and (options.strict or pipeline.config.strict_variables):
        more = f" (and {len(undefined) - 1} more)" if len(undefined) > 1 else ""
        raise UsageError(f"{undefined[0]}{more}")
    return Plans(plans, undefined)


def plan_statement(pipeline: Pipeline, options: PlanOptions) -> tuple[RunPlan, Engine]:
    """-e: the plan its statements run in (one date), and the engine they ask for (the pipeline's default)."""
    engine = options.engine or Engine(pipeline.config.default_engine)
    if not engine.is_sql:
        raise UsageError(f"-e: --engine {engine.value}: only spark-sql or hive run statements")
    [run_date] = parse_run_dates(options.run_date, pipeline)
    plan = RunPlan.make(
        pipeline,
        run_date=run_date,
        run_id=run_id_of(options.run_id, run_date, in_range=False),
        local=options.local,
        overrides=options.overrides,
    )
    return plan, engine


def statement_undefined(step: Step, plan: RunPlan, *, strict: bool) -> list[UndefinedVariable]:
    """-e's undefined ${name}s, to warn about; with --strict (or strict_variables) a UsageError."""
    undefined = undefined_variables([step], plan.variables)
    if undefined and (strict or plan.pipeline.config.strict_variables):
        raise UsageError(statement_problem(undefined[0], step))
    return undefined


def statement_problem(problem: UndefinedVariable, step: Step) -> str:
    """An undefined variable's line, about -e rather than the file its statements were written to."""
    return "-e" + str(problem).removeprefix(step.path.name)


def run_id_of(given: str | None, run_date: str, *, in_range: bool) -> str:
    """The run id: --run-id, or one generated; each date of a range gets ID-<date>."""
    # Each date of a range is a run of its own: one id would mix their logs and run directories.
    if given is None:
        return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    return f"{given}-{run_date}" if in_range else given


def check_checks_options(
    pipeline: Pipeline,
    *,
    checks_only: bool,
    stage: int | None,
    from_stage: int | None,
    dry_run: bool,
    whole: bool,
) -> None:
    """--checks-only needs a folder with checks; --stage N goes with it and names a stage with checks."""
    if stage is not None and not checks_only:
        raise UsageError(
            f"--stage {stage}: only with --checks-only (to run the steps from a stage: --from-stage)"
        )
    if not checks_only:
        return
    if from_stage is not None or dry_run:
        raise UsageError(
            "--checks-only: not with --from-stage or --dry-run (use --stage N for one stage's checks)"
        )
    if not whole:
        raise UsageError("--checks-only: only for a pipeline folder, not a single step file")
    if not pipeline.checks:
        raise UsageError(
            f"--checks-only: {pipeline.name} has no data checks (NN_name.check.sql, [checks.table])"
        )
    if stage is not None:
        numbers = [s.number for s in pipeline.stages if s.checks]
        if stage not in numbers:
            raise UsageError(
                f"--stage {stage}: {pipeline.name} has no checks in stage {stage}"
                f" (stages with checks: {', '.join(map(str, numbers))})"
            )
