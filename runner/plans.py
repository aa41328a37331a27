"""A command's run plans: the options checked against the pipeline, the RunPlans, the undefined variables."""

from __future__ import annotations

from runner.errors import UsageError
from runner.model import Pipeline


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
