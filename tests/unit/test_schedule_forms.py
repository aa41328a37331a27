"""A schedule written in EventBridge's or Quartz's six-field form: which form it is and its five-field equivalent.

EventBridge's fields, from "Schedule types in EventBridge Scheduler" (EventBridge Scheduler User
Guide, https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html) and "Using cron
and rate expressions to schedule rules in Amazon EventBridge"
(https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-scheduled-rule-pattern.html):
cron(minutes hours day-of-month month day-of-week year), day-of-week 1-7 or SUN-SAT, '?' in one of
the two day fields. Quartz's, from its "CronTrigger Tutorial"
(https://www.quartz-scheduler.org/documentation/quartz-2.5.x/tutorials/crontrigger.html): seconds
minutes hours day-of-month month day-of-week [year], day-of-week 1-7 or SUN-SAT.
"""

from __future__ import annotations

import pytest

from runner.schedule import CronError, OtherCronForm, to_eventbridge, validate_cron


@pytest.mark.parametrize(
    ("given", "form", "five"),
    [
        ("0 30 2 * * ?", "Quartz's form (seconds first)", "30 2 * * *"),
        ("0 0 4 ? * 2-6 *", "Quartz's form (seconds first)", "0 4 * * 1-5"),  # Monday to Friday
        ("0 0 12 ? * 1,3,5", "Quartz's form (seconds first)", "0 12 * * 0,2,4"),  # Sunday is 1 there
        ("0 30 2 ? * MON-FRI", "Quartz's form (seconds first)", "30 2 * * MON-FRI"),
        ("cron(30 2 * * ? *)", "EventBridge's form (the year last)", "30 2 * * *"),
        ("30 2 * * ? *", "EventBridge's form (the year last)", "30 2 * * *"),
        ("cron(0 4 ? * 1 *)", "EventBridge's form (the year last)", "0 4 * * 0"),
        ("0 6 1,15 * ? *", "EventBridge's form (the year last)", "0 6 1,15 * *"),
    ],
)
def test_a_six_field_form_is_named_with_its_five_field_equivalent(given: str, form: str, five: str) -> None:
    with pytest.raises(OtherCronForm) as raised:
        validate_cron(given)
    assert str(raised.value) == (
        f"{given!r} is {form}; expected 5 fields as crontab has them"
        f" (minute hour day-of-month month day-of-week): cron = {five!r}"
    )
    # The equivalent is accepted, and EventBridge gets back what the user first wrote (as EventBridge).
    assert validate_cron(five) == five
    if form.startswith("EventBridge"):
        inner = given.removeprefix("cron(").removesuffix(")")
        assert to_eventbridge(five) == f"cron({inner})"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("15 30 2 * * ?", "its second 15 has no five-field equivalent"),
        ("cron(0 3 * * ? 2026)", "its year 2026 has no five-field equivalent"),
        ("cron(0 3 L * ? *)", "L, W and # have no five-field equivalent"),
        ("0 0 3 ? * 6#3", "L, W and # have no five-field equivalent"),
        ("cron(0 3 1 * 2 *)", "but day of month and day of week cannot both be restricted"),
    ],
)
def test_a_six_field_form_without_an_equivalent_says_why(given: str, why: str) -> None:
    with pytest.raises(OtherCronForm, match="expected 5 fields") as raised:
        validate_cron(given)
    assert str(raised.value).endswith(why)


@pytest.mark.parametrize("given", ["0 3 * *", "@daily", "1 2 3 4 5 6 7 8"])
def test_other_field_counts_keep_the_plain_message(given: str) -> None:
    with pytest.raises(CronError, match=r"^expected 5 fields .*, got \d$"):
        validate_cron(given)
