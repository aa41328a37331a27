"""The daylight-saving gap at synth (issue 20): a scheduled time that does not exist is a warning."""

from __future__ import annotations

import json

import pytest

from tests.support.aws import REGION, SECRET_ARN, SUBNETS, base_context, synthesize


@pytest.fixture(scope="module")
def dst_warnings(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The synth's warnings for a pipeline at 02:30 New York time (one synth for the module)."""
    pipelines = tmp_path_factory.mktemp("pipelines")
    folder = pipelines / "early"
    folder.mkdir()
    (folder / "pipeline.toml").write_text('[schedule]\ncron = "30 2 * * *"\ntimezone = "America/New_York"\n')
    (folder / "10_a.sql").write_text("SELECT 1;")
    context = {
        **base_context(),
        "ssh_key_secret_arn": SECRET_ARN,
        "vpc": {
            "vpc_id": "vpc-0123456789abcdef0",
            "availability_zones": [f"{REGION}a", f"{REGION}b"],
            "private_subnet_ids": SUBNETS,
        },
        "data_access": {"*": {"read": ["s3://lake/raw/"]}},
    }
    synth = synthesize(tmp_path_factory.mktemp("cdk.out"), context, pipelines)
    metadata = json.loads((synth.outdir / f"{synth.stack.stack_name}.metadata.json").read_text())
    return [
        str(e["data"]) for entries in metadata.values() for e in entries if e["type"] == "aws:cdk:warning"
    ]


def test_a_schedule_time_lost_when_clocks_spring_forward_warns_at_synth(dst_warnings: list[str]) -> None:
    """EventBridge Scheduler skips a cron time that does not exist on the spring-forward night.

    "Schedule types in EventBridge Scheduler", Daylight savings time:
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html ("When the time shifts
    forward in Spring, if a cron expression falls on a non-existent date and time, your schedule
    invocation is skipped.")
    """
    found = [line for line in dst_warnings if "EventBridge Scheduler skips" in line]
    assert len(found) == 1, dst_warnings
    warning = found[0]
    assert warning.startswith(
        "warning: [schedule] cron '30 2 * * *' in America/New_York: a time that does not"
    )
    assert "-03-" in warning and "(02:30)" in warning
