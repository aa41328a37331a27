"""Default AWS clients for the handlers, created on first use so importing needs no credentials."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_stepfunctions import SFNClient

# A few quick SDK retries absorb a blip; sustained throttling surfaces as TransientAwsError and
# the state machine retries with longer backoff than a Lambda's timeout could afford.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)
# RunJobFlow is not idempotent: an SDK retry after a 5xx or timeout can make a second cluster.
_NO_RETRY = Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=60)


@functools.cache
def emr() -> EMRClient:
    return boto3.client("emr", config=_CONFIG)


@functools.cache
def emr_for_create() -> EMRClient:
    """EMR client without SDK retries, for the non-idempotent RunJobFlow and nothing else."""
    return boto3.client("emr", config=_NO_RETRY)


@functools.cache
def ssm() -> SSMClient:
    return boto3.client("ssm", config=_CONFIG)


@functools.cache
def sfn() -> SFNClient:
    return boto3.client("stepfunctions", config=_CONFIG)


@functools.cache
def s3() -> S3Client:
    return boto3.client("s3", config=_CONFIG)


@functools.cache
def logs() -> Any:  # the alert reads a failed check task's records; no CloudWatch Logs stubs either
    return boto3.client("logs", config=_CONFIG)


@functools.cache
def sns() -> Any:  # no SNS stubs in the dev dependencies
    return boto3.client("sns", config=_CONFIG)
