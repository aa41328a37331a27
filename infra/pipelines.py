"""Which pipelines the stack deploys: every folder under the pipelines folder, read by the runner's model."""

from __future__ import annotations

import re
from pathlib import Path

from lambdas.shared.models import PIPELINE_NAME_PATTERN
from runner.model import Pipeline, load_pipeline

# The lifecycle Lambdas' own pattern (their payloads refuse any other name); it also starts execution names.
PIPELINE_NAME = re.compile(PIPELINE_NAME_PATTERN)
# Step Functions names are at most 80 characters: "<pipeline>-YYYY-MM-DD" must fit.
MAX_PIPELINE_NAME = 80 - len("-YYYY-MM-DD")


class PipelineFolderError(ValueError):
    """A folder under the pipelines directory that cannot become a state machine."""


def construct_id(pipeline: str) -> str:
    """A CloudFormation-safe id for the pipeline ("daily_sales" -> "DailySales")."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", pipeline) if part)


def discover_pipelines(folder: Path) -> list[Pipeline]:
    """Every non-hidden folder, in name order; a scheduled pipeline and an unscheduled one alike."""
    if not folder.is_dir():
        raise PipelineFolderError(f"{folder}: no such pipelines folder")
    pipelines = [
        load_pipeline(child)
        for child in sorted(folder.iterdir())
        if child.is_dir() and not child.name.startswith((".", "_"))
    ]
    ids: dict[str, str] = {}
    for pipeline in pipelines:
        if not PIPELINE_NAME.match(pipeline.name) or len(pipeline.name) > MAX_PIPELINE_NAME:
            raise PipelineFolderError(
                f"{pipeline.folder}: a pipeline folder name is letters, digits, '_', '.', '-' "
                f"(at most {MAX_PIPELINE_NAME} characters, starting with a letter or digit)"
            )
        key = construct_id(pipeline.name)
        if key in ids:
            raise PipelineFolderError(
                f"{pipeline.folder}: pipelines {ids[key]!r} and {pipeline.name!r} collide"
            )
        ids[key] = pipeline.name
    return pipelines
