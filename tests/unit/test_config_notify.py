"""pipeline.toml's notify, queue_minutes and [schedule] expected_by, and cdk.json's price overrides: validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infra.config import ContextError, config_from_context
from runner.config import Schedule, parse_config
from runner.errors import ConfigError
from tests.conftest import run_cli

PATH = Path("sql/demo/pipeline.toml")


def test_notify_and_expected_by_parse() -> None:
    config = parse_config(
        "notify = 'always'\n[schedule]\ncron = '0 3 * * *'\ntimezone = 'Europe/Berlin'\nexpected_by = '07:30'\n",
        PATH,
    )
    assert config.notify == "always"
    assert config.schedule == Schedule(cron="0 3 * * *", timezone="Europe/Berlin", expected_by="07:30")


def test_defaults_notify_failures_and_no_deadline() -> None:
    config = parse_config("[schedule]\ncron = '0 3 * * *'\n", PATH)
    assert config.notify == "failures"
    assert config.queue_minutes == 240
    assert config.schedule is not None and config.schedule.expected_by is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("notify = 'never'", "notify: expected one of 'failures', 'always', got 'never'"),
        ("notify = true", "notify: expected one of 'failures', 'always', got True"),
        ("queue_minutes = -1", "queue_minutes: expected a number of minutes from 0 to 1440, got -1"),
        ("queue_minutes = 1441", "got 1441"),
        ("queue_minutes = '4h'", "got '4h'"),
        ("queue_minutes = true", "got True"),
        (
            "[schedule]\ncron = '0 3 * * *'\nexpected_by = '7:30'",
            "[schedule] expected_by: expected a time of day",
        ),
        ("[schedule]\ncron = '0 3 * * *'\nexpected_by = '24:00'", "got '24:00'"),
        ("[schedule]\ncron = '0 3 * * *'\nexpected_by = 730", "got 730"),
    ],
)
def test_each_mistake_is_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, PATH)
    assert message in str(caught.value) and str(caught.value).startswith(str(PATH))
    assert "\n" not in str(caught.value)


def test_the_cli_refuses_a_bad_notify_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "10_a.sql").write_text("SELECT 1;")
    (folder / "pipeline.toml").write_text("notify = 'sometimes'\n")
    result = run_cli(folder, "--state-dir", tmp_path / "state", cwd=tmp_path)
    stderr = result.stderr.decode()
    assert result.returncode == 2 and result.stdout == b""
    assert stderr.count("\n") == 1 and "pipeline.toml: notify: expected one of 'failures', 'always'" in stderr
    assert not (tmp_path / "state").exists()


CONTEXT: dict[str, Any] = {
    "ec2_key_name": "nightshift",
    "ssh_key_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:nightshift/ssh-key-AbCdEf",
    "notification_email": "data-team@example.com",
}


def test_price_overrides_from_cdk_json() -> None:
    prices = {"eu-west-1": {"ec2": {"m5.xlarge": 0.2}, "fargate": {"vcpu_hour": 0.05}}}
    config = config_from_context({**CONTEXT, "prices": prices}.get)
    assert config.prices == {"eu-west-1": {"ec2": {"m5.xlarge": 0.2}, "fargate": {"vcpu_hour": 0.05}}}
    assert config_from_context(CONTEXT.get).prices == {}


@pytest.mark.parametrize(
    ("prices", "message"),
    [
        (["m5.xlarge"], "'prices'"),
        ({"Ireland": {"ec2": {}}}, "'prices.Ireland'"),
        ({"eu-west-1": {"ebs": {"gp3": 0.08}}}, "'prices.eu-west-1.ebs'"),
        ({"eu-west-1": {"ec2": {"m5.xlarge": "0.2"}}}, "'prices.eu-west-1.ec2.m5.xlarge': expected a price"),
        ({"eu-west-1": {"ec2": {"m5.xlarge": -1}}}, "expected a price in USD per hour"),
        ({"eu-west-1": {"fargate": {"cpu": 0.04}}}, "'prices.eu-west-1.fargate.cpu'"),
        ({"eu-west-1": {"emr": {"xlarge": 0.04}}}, "an EC2 instance type"),
    ],
)
def test_bad_price_overrides_are_named(prices: Any, message: str) -> None:
    with pytest.raises(ContextError, match=r"cdk\.json context") as caught:
        config_from_context({**CONTEXT, "prices": prices}.get)
    assert message in str(caught.value)


@pytest.mark.parametrize("minutes", [0, 0.5, 240, 1440])
def test_queue_minutes_takes_any_number_of_minutes_up_to_a_day(minutes: float) -> None:
    assert parse_config(f"queue_minutes = {minutes}\n", PATH).queue_minutes == minutes
