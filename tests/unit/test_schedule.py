"""Cron validation and translation to EventBridge Scheduler's six-field form."""

from __future__ import annotations

import pytest

from runner.schedule import CronError, to_eventbridge, validate_cron, validate_timezone


@pytest.mark.parametrize(
    ("cron", "eventbridge"),
    [
        ("0 3 * * *", "cron(0 3 * * ? *)"),
        ("30 2 * * MON-FRI", "cron(30 2 ? * MON-FRI *)"),
        ("0 4 * * 1-5", "cron(0 4 ? * 2-6 *)"),  # cron counts Sunday as 0, EventBridge as 1
        ("0 4 * * 0", "cron(0 4 ? * 1 *)"),
        ("0 4 * * 7", "cron(0 4 ? * 1 *)"),
        ("0 4 * * 5-7", "cron(0 4 ? * 6-7,1 *)"),
        ("*/15 1-5 1 * *", "cron(*/15 1-5 1 * ? *)"),
        ("0 6 1,15 JAN,JUL *", "cron(0 6 1,15 JAN,JUL ? *)"),
    ],
)
def test_translation(cron: str, eventbridge: str) -> None:
    assert to_eventbridge(cron) == eventbridge


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 3 * *", "expected 5 fields"),
        ("0 3 * * * *", "expected 5 fields"),
        ("60 3 * * *", "minute: 60 is outside 0-59"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 3 0 * *", "day of month: 0 is outside 1-31"),
        ("0 3 * 13 *", "month: 13 is outside 1-12"),
        ("0 3 * * FUNDAY", r"'FUNDAY' is not '\*', a value, a range or a step"),
        ("0 3 * * XYZ", "'XYZ' is not a number or a known name"),
        ("0 5-3 * * *", "range '5-3' runs backwards"),
        ("*/0 3 * * *", "a step of 0 never fires"),
        ("0 3 1 * MON", "day of month and day of week cannot both be restricted"),
        ("@daily", "expected 5 fields"),
    ],
)
def test_malformed_cron_is_refused(cron: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        validate_cron(cron)


def test_timezones() -> None:
    assert validate_timezone("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(CronError, match="not an IANA time zone"):
        validate_timezone("CET+1")
