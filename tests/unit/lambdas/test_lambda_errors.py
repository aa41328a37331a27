"""Throttling becomes TransientAwsError, the errorType the state machine retries on."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from lambdas.shared.errors import TransientAwsError, is_throttling, transient_on_throttling
from lambdas.shared.hostkeys import host_key_parameter_name


def _error(code: str, message: str = "slow down") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeCluster")


@pytest.mark.parametrize(
    "error",
    [
        _error("ThrottlingException", "Rate exceeded"),
        _error("Throttling"),
        _error("RequestLimitExceeded"),
        _error("TooManyRequestsException"),
        _error("SomethingNew", "Rate exceeded"),
    ],
    ids=["emr-rate-exceeded", "throttling", "request-limit", "too-many-requests", "rate-exceeded-message"],
)
def test_throttling_is_transient(error):
    @transient_on_throttling
    def call():
        raise error

    assert is_throttling(error)
    with pytest.raises(TransientAwsError) as raised:
        call()
    assert raised.value.__cause__ is error
    # Lambda reports the class name as errorType; the state machine's Retry matches on it.
    assert type(raised.value).__name__ == "TransientAwsError"


def test_other_errors_pass_through_unchanged():
    error = _error("AccessDeniedException", "not allowed")

    @transient_on_throttling
    def call():
        raise error

    with pytest.raises(ClientError) as raised:
        call()
    assert raised.value is error


def test_host_key_parameter_name_is_the_shared_convention():
    assert host_key_parameter_name("j-2AXXXXXXGAPLF") == "/nightshift/host-keys/j-2AXXXXXXGAPLF"
