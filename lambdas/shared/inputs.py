"""Are a run's declared inputs in S3 yet? Only the declared paths are listed, nothing is read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from lambdas.shared.errors import (
    NightshiftError,
    TransientAwsError,
    error_code,
    is_transient,
    transient_on_throttling,
)
from lambdas.shared.models import DATE_VARIABLES, CheckInputsRequest, InputToCheck

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class InputsCheckError(NightshiftError):
    """S3 refused to list a declared path (no such bucket, no permission): waiting would not help."""


@dataclass(frozen=True)
class InputsResult:
    ready: bool
    #: the missing paths, the run date in, in declaration order
    missing: list[str]
    #: the missing paths in one line, as the "inputs late" cause names them
    summary: str


def date_values(run_date: str) -> dict[str, str]:
    """The runner's date variables of `run_date` (runner/dates.py date_variables), by name."""
    day = date.fromisoformat(run_date)
    prev, next_ = day - timedelta(days=1), day + timedelta(days=1)
    values = (day.isoformat(), prev.isoformat(), next_.isoformat(), f"{day:%Y%m%d}", f"{prev:%Y%m%d}")
    return dict(zip(DATE_VARIABLES, (*values, f"{next_:%Y%m%d}"), strict=True))


def resolve(template: str, run_date: str) -> str:
    """The path of this run: the runner's `expand_input` with only the date variables ({name}) left."""
    for name, value in date_values(run_date).items():
        template = template.replace("{" + name + "}", value)
    return template


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _present(s3: S3Client, item: InputToCheck, uri: str) -> bool:
    bucket, key = _split(uri)
    # ListObjectsV2, also for a single object: it needs only s3:ListBucket on the prefix, and a
    # HeadObject without ListBucket on the whole bucket answers 403 for a missing key, not 404.
    # Keys come back in order, so the object itself, the shortest key with its prefix, is first.
    try:
        answer = s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=2)
    except ClientError as error:
        # S3 throttles with 503 SlowDown, which the EMR-minded throttling codes do not know.
        if is_transient(error):
            raise TransientAwsError(
                f"listing {uri}: S3 answered {error_code(error)}; retry with backoff"
            ) from error
        if error_code(error) in ("AccessDenied", "NoSuchBucket", "AllAccessDisabled"):
            raise InputsCheckError(
                f"{uri}: S3 answered {error_code(error)} (is the path within the pipeline's data_access?)"
            ) from error
        raise
    keys = [entry["Key"] for entry in answer.get("Contents", [])]
    if item.kind == "object":
        return bool(keys) and keys[0] == key
    # A folder marker (the key of the folder itself) is not data.
    return any(found != key for found in keys)


@transient_on_throttling
def check_inputs(request: CheckInputsRequest, *, s3: S3Client) -> InputsResult:
    """Which declared inputs of this run date are missing."""
    run_date = request.run_date.isoformat()
    missing = []
    described = []
    for item in request.inputs:
        uri = resolve(item.path, run_date)
        if not _present(s3, item, uri):
            missing.append(uri)
            described.append(f"{uri} (no file in it)" if item.kind == "prefix" else uri)
    return InputsResult(ready=not missing, missing=missing, summary=", ".join(described))
