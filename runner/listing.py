"""The pipelines of a folder of pipeline folders (`python -m runner sql/`), one row each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runner.checks.spec import CHECK_SUFFIX
from runner.config import CONFIG_FILE
from runner.errors import NightshiftError
from runner.model import EXTENSIONS, STEP_FILE, load_pipeline


def _has_steps(folder: Path) -> bool:
    return any(
        path.is_file()
        and STEP_FILE.match(path.name) is not None
        and path.suffix.lower() in EXTENSIONS
        and not path.name.lower().endswith(CHECK_SUFFIX)
        for path in folder.iterdir()
    )


def pipeline_folders(folder: Path) -> list[Path]:
    """The pipeline folders inside `folder` when it is a folder of pipelines, not one; else [].

    Hidden folders and those starting with '_' are left out, as the stack's synth leaves them out.
    """
    if not folder.is_dir() or (folder / CONFIG_FILE).is_file() or _has_steps(folder):
        return []
    return [
        child
        for child in sorted(folder.iterdir())
        if child.is_dir()
        and not child.name.startswith((".", "_"))
        and ((child / CONFIG_FILE).is_file() or _has_steps(child))
    ]


@dataclass(frozen=True)
class PipelineRow:
    """One pipeline as the listing shows it; `problem` instead when its folder does not load."""

    name: str
    stages: str = ""
    steps: int = 0
    checks: int = 0
    schedule: str = ""
    problem: str = ""


def _row(folder: Path) -> PipelineRow:
    try:
        pipeline = load_pipeline(folder)
    except NightshiftError as error:
        return PipelineRow(folder.name, problem=str(error))
    schedule = pipeline.config.schedule
    if schedule is None:
        when = "none (run by hand)"
    else:
        when = f"{schedule.cron} {schedule.timezone}" + ("" if schedule.enabled else " (enabled = false)")
    stages = " ".join(str(stage.number) for stage in pipeline.stages if stage.number is not None)
    return PipelineRow(pipeline.name, stages, len(pipeline.steps), len(pipeline.checks), when)


def listing_lines(folders: list[Path]) -> list[str]:
    """A table of the pipelines: name, stages, steps, checks and schedule (or why one does not load)."""
    rows = [_row(folder) for folder in folders]
    table = [("pipeline", "stages", "steps", "checks", "schedule")]
    table += [
        (row.name, row.stages, str(row.steps), str(row.checks), row.schedule)
        for row in rows
        if not row.problem
    ]
    widths = [max(len(cells[column]) for cells in table) for column in range(4)]
    # The schedule, last, is not padded: a line ends where its text does.
    lines = [
        "  ".join([*(cell.ljust(width) for cell, width in zip(cells[:4], widths, strict=True)), cells[4]])
        for cells in table
    ]
    lines += [f"{row.name}: does not load: {row.problem}" for row in rows if row.problem]
    return lines
