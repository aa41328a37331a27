"""The canary's definition: Nightshift's own four-stage pipeline, its run names and its database."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from runner.config import ClusterProfile
from runner.model import Pipeline, load_pipeline

#: the canary pipeline's folder, also in the runner image (its WORKDIR holds runner/)
CANARY_FOLDER = Path(__file__).with_name("nightshift_canary")
#: where the runner image's task finds it: relative to the image's WORKDIR, as sql/ is
CANARY_IMAGE_PATH = "runner/nightshift_canary"
#: the execution input's flag (`{"run_date": ..., "canary": true}`)
CANARY_INPUT = "canary"
#: the canary's variable naming the catalog database its table goes in
DATABASE_VARIABLE = "canary_database"
#: the database of a pipeline without a [catalog] (its cluster's own metastore)
DEFAULT_DATABASE = "default"
#: the one table the canary writes: its own, never one of the pipeline's
CANARY_TABLE = "nightshift_canary"
#: what the canary's stages run on: spark-sql (10, 40), hive (20, and 30's DESCRIBE) and hadoop fs (30)
CANARY_APPLICATIONS = ("Hadoop", "Hive", "Spark")
#: a canary execution name after `<pipeline>-<date>` (lambdas/shared/preflight.py has its own copy)
CANARY_SUFFIX = re.compile(r"-canary(?:-r\d+)?")


def canary_pipeline() -> Pipeline:
    """The built-in canary: a row written on spark-sql and checked, read on hive, listed, dropped."""
    return load_pipeline(CANARY_FOLDER)


def canary_as_deployed() -> Pipeline:
    """The canary as its state machine sees it: one runner task (its first step's state) for all stages.

    A deployed canary's table then has that task's row and the checks its stream reports, not a row
    "not run" for each later stage that ran inside the task.
    """
    pipeline = canary_pipeline()
    return replace(pipeline, stages=pipeline.stages[:1])


def canary_run_name(pipeline: str, run_date: str, attempt: int = 1) -> str:
    """`<pipeline>-<date>-canary`, then `-canary-r2`, ...: never a nightly run's name."""
    base = f"{pipeline}-{run_date}-canary"
    return base if attempt == 1 else f"{base}-r{attempt}"


def is_canary_name(name: str, pipeline: str) -> bool:
    """A canary run's execution name: it counts as no run of its date."""
    return bool(re.fullmatch(re.escape(pipeline) + r"-\d{4}-\d{2}-\d{2}" + CANARY_SUFFIX.pattern, name))


def canary_date_of(name: str, pipeline: str) -> str | None:
    """The run date of a canary's execution name, None for any other name."""
    match = re.fullmatch(re.escape(pipeline) + r"-(\d{4}-\d{2}-\d{2})" + CANARY_SUFFIX.pattern, name)
    return match[1] if match else None


def canary_database(pipeline: Pipeline) -> str:
    """The catalog database the canary writes in: the pipeline's first, else the cluster's default."""
    catalog = pipeline.config.catalog
    if catalog is not None and catalog.databases:
        return catalog.databases[0]
    return DEFAULT_DATABASE


def canary_applications(profile: ClusterProfile) -> tuple[str, ...]:
    """The canary cluster's EMR applications: the pipeline's, and those of CANARY_APPLICATIONS it lacks.

    The canary's cluster is its own (master-only, its own launch plans): a pipeline that leaves Hive
    out still gets a canary whose hive stage can run, instead of one that fails at stage 20 after the
    cluster's start has been paid for. Names compare case-insensitively, as the deployment check's do.
    """
    have = {name.lower() for name in profile.applications}
    return (*profile.applications, *(name for name in CANARY_APPLICATIONS if name.lower() not in have))
