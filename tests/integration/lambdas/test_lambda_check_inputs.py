"""check_inputs against moto S3: markers and folders there or not, the run date filled in, S3's refusals."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdas import check_inputs
from lambdas.shared.errors import TransientAwsError
from lambdas.shared.inputs import InputsCheckError
from tests.lambda_support import REGION

BUCKET = "lake"
EXECUTION = f"arn:aws:states:{REGION}:123456789012:execution:Nightshift-nightly:nightly-2025-06-01"


def request(*inputs: tuple[str, str], run_date: str = "2025-06-01") -> dict[str, Any]:
    return {
        "pipeline": "nightly",
        "run_date": run_date,
        "execution_arn": EXECUTION,
        "inputs": [{"kind": kind, "path": path} for kind, path in inputs],
    }


MARKER = ("object", "s3://lake/raw/events/dt={run_date}/_SUCCESS")
USERS = ("prefix", "s3://lake/raw/users/dt={run_date}/")


@pytest.fixture
def s3(aws):
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def put(s3, key: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")


def test_everything_there_is_ready(s3, lambda_context):
    put(s3, "raw/events/dt=2025-06-01/_SUCCESS")
    put(s3, "raw/users/dt=2025-06-01/part-00000.parquet")

    answer = check_inputs.handler(request(MARKER, USERS), lambda_context, s3=s3)

    assert answer == {"ready": True, "missing": [], "summary": ""}


def test_nothing_there_names_every_path_with_the_run_date(s3, lambda_context):
    answer = check_inputs.handler(request(MARKER, USERS), lambda_context, s3=s3)

    assert answer["ready"] is False
    assert answer["missing"] == [
        "s3://lake/raw/events/dt=2025-06-01/_SUCCESS",
        "s3://lake/raw/users/dt=2025-06-01/",
    ]
    assert answer["summary"] == (
        "s3://lake/raw/events/dt=2025-06-01/_SUCCESS, s3://lake/raw/users/dt=2025-06-01/ (no file in it)"
    )


def test_another_dates_data_does_not_count(s3, lambda_context):
    put(s3, "raw/events/dt=2025-05-31/_SUCCESS")
    put(s3, "raw/users/dt=2025-05-31/part-0")

    answer = check_inputs.handler(request(MARKER, USERS), lambda_context, s3=s3)

    assert answer["ready"] is False and len(answer["missing"]) == 2


def test_a_key_that_only_starts_like_the_marker_is_not_the_marker(s3, lambda_context):
    put(s3, "raw/events/dt=2025-06-01/_SUCCESS.tmp")

    answer = check_inputs.handler(request(MARKER), lambda_context, s3=s3)

    assert answer["missing"] == ["s3://lake/raw/events/dt=2025-06-01/_SUCCESS"]


def test_an_empty_folder_marker_is_not_data(s3, lambda_context):
    # The console's "Create folder" makes a zero-byte object named like the folder itself.
    put(s3, "raw/users/dt=2025-06-01/")

    assert check_inputs.handler(request(USERS), lambda_context, s3=s3)["ready"] is False

    put(s3, "raw/users/dt=2025-06-01/nested/part-0")
    assert check_inputs.handler(request(USERS), lambda_context, s3=s3)["ready"] is True


def test_missing_bucket_is_an_error_not_a_wait(aws, lambda_context):
    client = boto3.client("s3", region_name=REGION)

    with pytest.raises(
        InputsCheckError, match=r"s3://lake/raw/events/dt=2025-06-01/_SUCCESS: .*NoSuchBucket"
    ):
        check_inputs.handler(request(MARKER), lambda_context, s3=client)


def test_s3_throttling_is_retried_by_the_state_machine(lambda_context):
    client = boto3.client("s3", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("list_objects_v2", service_error_code="SlowDown", http_status_code=503)
        stub.add_client_error("list_objects_v2", service_error_code="ThrottlingException")
        with pytest.raises(TransientAwsError, match="SlowDown"):
            check_inputs.handler(request(MARKER), lambda_context, s3=client)
        with pytest.raises(TransientAwsError, match="Throttling"):
            check_inputs.handler(request(MARKER), lambda_context, s3=client)


@pytest.mark.parametrize(
    "bad",
    [
        {"inputs": []},
        {"inputs": [{"kind": "file", "path": "s3://lake/x"}]},
        {"inputs": [{"kind": "object", "path": "/data/raw/_SUCCESS"}]},
        {"inputs": [{"kind": "object", "path": "s3://lake/raw/*/_SUCCESS"}]},
        {"run_date": "2025-6-1"},
        {"extra": 1},
    ],
)
def test_bad_payload_is_refused_before_any_call(bad, lambda_context):
    client = boto3.client("s3", region_name=REGION)
    with Stubber(client), pytest.raises(Exception, match="validation error"):
        check_inputs.handler({**request(MARKER), **bad}, lambda_context, s3=client)
