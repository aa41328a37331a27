"""The first hour (issue 20): the built-in date variables, the same in the runner and the deployed [inputs]."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from infra.config import DataAccess, S3Path
from infra.inputs import deployed_inputs
from lambdas.shared import models
from lambdas.shared.inputs import date_values, resolve
from runner.config import RESERVED_VARIABLES, expand_input
from runner.dates import DATE_VARIABLES, date_variables, run_header, shown_variables
from runner.errors import ConfigError
from runner.model import load_pipeline
from runner.schedule import skipped_nights

# Month and year ends, leap days (2024 is a leap year, 2100 is not), the first day of the calendar.
DATES = ["2025-06-04", "2025-01-01", "2024-12-31", "2024-02-29", "2024-03-01", "2100-03-01", "2023-03-01"]
ALL_DATES = "s3://lake/raw/" + "/".join(f"{name}=${{{name}}}" for name in DATE_VARIABLES) + "/_SUCCESS"


@pytest.mark.parametrize("run_date", DATES)
def test_prev_and_next_date_cross_month_year_and_leap_day(run_date: str) -> None:
    values = date_variables(run_date)
    assert values["run_date"] == run_date
    assert values["run_date_nodash"] == run_date.replace("-", "")
    expected = {
        "2025-06-04": ("2025-06-03", "2025-06-05"),
        "2025-01-01": ("2024-12-31", "2025-01-02"),
        "2024-12-31": ("2024-12-30", "2025-01-01"),
        "2024-02-29": ("2024-02-28", "2024-03-01"),
        "2024-03-01": ("2024-02-29", "2024-03-02"),
        "2100-03-01": ("2100-02-28", "2100-03-02"),
        "2023-03-01": ("2023-02-28", "2023-03-02"),
    }[run_date]
    assert (values["prev_date"], values["next_date"]) == expected
    assert values["prev_date_nodash"] == expected[0].replace("-", "")
    assert values["next_date_nodash"] == expected[1].replace("-", "")


@pytest.mark.parametrize("run_date", DATES)
def test_the_deployed_inputs_check_resolves_every_date_as_the_runner_does(
    tmp_path: Path, run_date: str
) -> None:
    """Two implementations (the Lambda does not ship the runner), held equal: names, values, paths."""
    assert models.DATE_VARIABLES == DATE_VARIABLES
    assert date_values(run_date) == date_variables(run_date)
    (tmp_path / "pipeline.toml").write_text(f'[inputs]\nobjects = ["{ALL_DATES}"]\n')
    (tmp_path / "10_a.sql").write_text("SELECT 1;")
    access = DataAccess(read=(S3Path("lake", "raw/"),))
    (deployed,) = deployed_inputs(load_pipeline(tmp_path), access)
    assert "${" not in deployed.template  # CloudFormation would read ${...} in the definition
    assert deployed.listable == S3Path("lake", "raw/run_date=")  # fixed up to the first date
    assert resolve(deployed.template, run_date) == expand_input(ALL_DATES, date_variables(run_date))


def test_date_names_are_the_runners_and_cannot_be_set(tmp_path: Path) -> None:
    assert set(DATE_VARIABLES) <= RESERVED_VARIABLES
    (tmp_path / "pipeline.toml").write_text('[variables]\nprev_date = "2020-01-01"\n')
    (tmp_path / "10_a.sql").write_text("SELECT 1;")
    with pytest.raises(ConfigError, match=r"\[variables\] prev_date: 'prev_date' is set by the runner"):
        load_pipeline(tmp_path)


def test_the_header_masks_values_of_secret_looking_names(tmp_path: Path) -> None:
    shown = {"db": "analytics", "API_KEY": "k1", "db_password": "p", "slack_token": "t", "my_secret": "s"}
    assert shown_variables({**shown, **date_variables("2025-06-04")}) == (
        "db=analytics, API_KEY=***, db_password=***, slack_token=***, my_secret=***"
    )
    (tmp_path / "pipeline.toml").write_text('[schedule]\ncron = "30 2 * * *"\ntimezone = "Asia/Tokyo"\n')
    (tmp_path / "10_a.sql").write_text("SELECT 1;")
    pipeline = load_pipeline(tmp_path)
    assert run_header(pipeline, ["2025-06-04"], given=False, variables={}) == (
        f"{tmp_path.name}: run date 2025-06-04 (today in Asia/Tokyo, the schedule's time zone); variables: none"
    )


# The spring-forward nights of 2027 and 2028: New York (second Sunday of March, 02:00 -> 03:00),
# Berlin (last Sunday of March, 02:00 -> 03:00), Lord Howe (first Sunday of October, 02:00 -> 02:30).
@pytest.mark.parametrize(
    ("cron", "zone", "nights"),
    [
        ("30 2 * * *", "America/New_York", [("2027-03-14", "02:30"), ("2028-03-12", "02:30")]),
        ("*/20 1-3 * * *", "America/New_York", [("2027-03-14", "02:00"), ("2028-03-12", "02:00")]),
        ("30 2 * * 1-6", "America/New_York", []),  # Monday to Saturday: never the Sunday of the change
        ("30 2 * 4-12 *", "America/New_York", []),
        ("0 3 * * *", "Europe/Berlin", []),  # 03:00 is the first time after the gap: it exists
        ("59 2 * * *", "Europe/Berlin", [("2027-03-28", "02:59"), ("2028-03-26", "02:59")]),
        ("15 2 * * *", "Australia/Lord_Howe", [("2027-10-03", "02:15"), ("2028-10-01", "02:15")]),
        ("45 2 * * *", "Australia/Lord_Howe", []),
        ("30 2 * * *", "UTC", []),
    ],
)
def test_the_nights_a_scheduled_time_does_not_exist(
    cron: str, zone: str, nights: list[tuple[str, str]]
) -> None:
    found = skipped_nights(cron, zone, date(2026, 12, 6))
    assert [(day.isoformat(), time) for day, time in found] == nights
