"""Typed errors the state machine can tell apart by errorType, and throttling translation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

P = ParamSpec("P")
R = TypeVar("R")

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)


class NightshiftError(Exception):
    """Base of every error the lifecycle Lambdas raise on purpose."""


class TransientAwsError(NightshiftError):
    """AWS throttled us; nothing was changed, so the state machine retries with backoff."""


class ClusterCreationError(NightshiftError):
    """The cluster could not be created; anything half-made was terminated before raising."""


class ClusterTerminationError(NightshiftError):
    """A cluster could not be terminated (for example protected and not ours)."""


# Not ...Error: a Lambda's errorType is the class name, and the state machine catches "ClusterGone".
class ClusterGone(NightshiftError):
    """The cluster a run was given is another execution's (a child's must be its batch's): no stage runs."""


class SweepIncompleteError(NightshiftError):
    """The sweeper terminated what it could but at least one orphan is still alive."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message", ""))


def is_throttling(exc: BaseException) -> bool:
    """True for the throttling answers of EMR, Step Functions and SSM."""
    if not isinstance(exc, ClientError):
        return False
    # EMR answers "Rate exceeded" under ThrottlingException, but some endpoints have been seen
    # to use other codes with the same message.
    return error_code(exc) in THROTTLING_CODES or "rate exceeded" in error_message(exc).lower()


# Server-side failures after which the same call may well succeed.
SERVER_ERROR_CODES = frozenset(
    {"InternalServerError", "InternalFailure", "InternalServerException", "ServiceUnavailable"}
)


def is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx answer, or no answer at all (connection failure, timeout)."""
    if isinstance(exc, BotoCoreError):
        return True
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return is_throttling(exc) or error_code(exc) in SERVER_ERROR_CODES or status >= 500


def transient_on_throttling(func: Callable[P, R]) -> Callable[P, R]:
    """Re-raise AWS throttling from ``func`` as TransientAwsError, keeping the original cause."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ClientError as exc:
            if is_throttling(exc):
                operation = exc.operation_name or "AWS call"
                raise TransientAwsError(
                    f"{operation} was throttled ({error_code(exc)}: {error_message(exc)}); retry with backoff"
                ) from exc
            raise

    return wrapper
