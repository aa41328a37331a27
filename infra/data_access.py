"""Whether a pipeline's S3 paths ([variables], [inputs], [catalog] warehouse) are within its data_access."""

from __future__ import annotations

import re
from dataclasses import dataclass

from infra.config import DEFAULT_DATA_ACCESS_KEY, ContextError, DataAccess, NightshiftConfig, S3Path
from infra.inputs import InputsAccessError, deployed_inputs
from runner.model import Pipeline

# Hadoop's S3 file systems: EMRFS (s3://) and S3A (s3a://, s3n://) all reach the same bucket.
S3_LOCATION = re.compile(r"^s3[an]?://(?P<rest>.*)$")


class DataAccessError(ContextError):
    """A path the pipeline's clusters would be denied: the night would fail with AccessDenied."""


@dataclass(frozen=True)
class Coverage:
    """What the synth says about a pipeline's paths that it can only judge at run time."""

    warnings: tuple[str, ...] = ()


def access_key(config: NightshiftConfig, pipeline: str) -> str:
    """The cdk.json data_access entry that grants the pipeline's paths (its own, else "*")."""
    if pipeline not in config.data_access and DEFAULT_DATA_ACCESS_KEY in config.data_access:
        return DEFAULT_DATA_ACCESS_KEY
    return pipeline


def _covered(bucket: str, key: str, paths: tuple[S3Path, ...]) -> bool:
    # "s3://b/raw" used as ${raw_path}/file is the folder raw/: granted by a prefix "raw/".
    return any(
        p.bucket == bucket and (key.startswith(p.prefix) or f"{key}/".startswith(p.prefix)) for p in paths
    )


def _granted(paths: tuple[S3Path, ...]) -> str:
    return ", ".join(path.uri for path in paths) or "nothing"


def check_data_access(pipeline: Pipeline, access: DataAccess, key: str) -> Coverage:
    """Raise DataAccessError for a path `access` (cdk.json data_access.`key`) does not cover."""
    name = pipeline.name
    readable = (*access.read, *access.write)
    try:
        deployed_inputs(pipeline, access)
    except InputsAccessError as error:
        raise DataAccessError(str(error)) from None
    catalog = pipeline.config.catalog
    if catalog is not None:
        bucket, _, prefix = catalog.warehouse.removeprefix("s3://").partition("/")
        if not _covered(bucket, prefix, access.write):
            raise DataAccessError(
                f"pipeline {name!r}: [catalog] warehouse {catalog.warehouse!r} is outside what cdk.json "
                f"data_access.{key}.write lets its clusters write ({_granted(access.write)}); "
                f"add it to data_access.{key}.write"
            )
    warnings = []
    for variable, value in pipeline.config.variables.items():
        match = S3_LOCATION.match(value)
        if match is None:
            continue
        static, dynamic, _ = match["rest"].partition("${")
        bucket, slash, prefix = static.partition("/")
        where = f"pipeline {name!r}: [variables] {variable} = {value!r}"
        if _covered(bucket, prefix, readable):
            continue
        if dynamic and (
            not slash or any(p.bucket == bucket and p.prefix.startswith(prefix) for p in readable)
        ):
            # The rest of the path is another variable's: only the run knows whether it is granted.
            warnings.append(
                f"{where}: only known at run time; make sure cdk.json data_access.{key} covers it"
            )
            continue
        raise DataAccessError(
            f"{where} is outside what cdk.json data_access.{key} lets its clusters read or write "
            f"({_granted(readable)}); add it to data_access.{key}.read or .write"
        )
    return Coverage(tuple(warnings))
