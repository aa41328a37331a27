"""Cron expressions of pipeline schedules: strict validation and translation to EventBridge Scheduler."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, tuple(_MONTHS), 1),
    # 7 is Sunday too, as in Vixie cron.
    _Field("day of week", 0, 7, tuple(_DAYS), 0),
)

_ATOM = re.compile(
    r"^(?P<start>\*|[A-Za-z]{3}|\d{1,2})(?:-(?P<end>[A-Za-z]{3}|\d{1,2}))?(?:/(?P<step>\d{1,2}))?$"
)


class CronError(ValueError):
    """A cron expression that is not five valid fields."""


def _value(token: str, field: _Field) -> int:
    if token.isdigit():
        number = int(token)
    elif token.upper() in field.names:
        number = field.names.index(token.upper()) + field.name_base
    else:
        raise CronError(f"{field.name}: {token!r} is not a number or a known name")
    if not field.low <= number <= field.high:
        raise CronError(f"{field.name}: {number} is outside {field.low}-{field.high}")
    return number


def _check_field(text: str, field: _Field) -> None:
    for part in text.split(","):
        match = _ATOM.match(part)
        if not match:
            raise CronError(f"{field.name}: {part!r} is not '*', a value, a range or a step")
        start, end, step = match["start"], match["end"], match["step"]
        if start == "*":
            if end:
                raise CronError(f"{field.name}: '*' cannot start a range")
        else:
            first = _value(start, field)
            if end is not None and _value(end, field) < first:
                raise CronError(f"{field.name}: range {part!r} runs backwards")
        if step is not None and int(step) == 0:
            raise CronError(f"{field.name}: a step of 0 never fires")


class OtherCronForm(CronError):
    """A schedule written in EventBridge's or Quartz's form; the message says which and the five-field one."""


_FIVE = "expected 5 fields as crontab has them (minute hour day-of-month month day-of-week)"
_YEARS = re.compile(r"^\*$|^\d{4}([-,/]\d{1,4})*$")


def _crontab_weekday(text: str) -> str:
    """EventBridge's and Quartz's day of week (1-7, Sunday 1) as crontab counts it (0-6, Sunday 0)."""
    shifted = re.sub(r"(?<![/\d])\d", lambda digit: str(int(digit[0]) - 1), text)
    return shifted.replace("?", "*")


def _other_form(expression: str) -> OtherCronForm | None:
    """Which form a six- or seven-field expression is in, with its five-field equivalent (None: neither).

    EventBridge: cron(minutes hours day-of-month month day-of-week year); Quartz: seconds minutes
    hours day-of-month month day-of-week [year]; both count the days of the week 1-7 from Sunday.
    """
    text = expression.strip()
    wrapped = text.startswith("cron(") and text.endswith(")")
    fields = text[5:-1].split() if wrapped else text.split()
    if len(fields) == 6 and (wrapped or (_YEARS.match(fields[5]) and "?" not in (fields[3], fields[5]))):
        minute, hour, day, month, weekday, year = fields
        form = "EventBridge's form (the year last)"
        leftover = "" if year == "*" else f"year {year}"
    elif not wrapped and len(fields) in (6, 7):
        second, minute, hour, day, month, weekday, *years = fields
        form = "Quartz's form (seconds first)"
        leftover = "" if second == "0" else f"second {second}"
        if years and years[0] != "*":
            leftover = f"year {years[0]}"
    else:
        return None
    given = f"{expression!r} is {form}; {_FIVE}"
    if leftover:
        return OtherCronForm(f"{given}; its {leftover} has no five-field equivalent")
    if re.search(r"[LW#]", day + weekday):
        return OtherCronForm(f"{given}; L, W and # have no five-field equivalent")
    equivalent = f"{minute} {hour} {day.replace('?', '*')} {month} {_crontab_weekday(weekday)}"
    try:
        validate_cron(equivalent)
    except CronError as error:
        return OtherCronForm(f"{given}; as five fields it would be {equivalent!r}, but {error}")
    return OtherCronForm(f"{given}: cron = {equivalent!r}")


def validate_cron(expression: str) -> str:
    """Return the expression if it is a five-field cron (minute hour day month weekday)."""
    fields = expression.split()
    if len(fields) != len(_FIELDS):
        other = _other_form(expression)
        if other is not None:
            raise other
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}")
    for text, field in zip(fields, _FIELDS, strict=True):
        _check_field(text, field)
    if fields[2] != "*" and fields[4] != "*":
        # EventBridge Scheduler cannot express "day-of-month OR day-of-week" as cron does.
        raise CronError("day of month and day of week cannot both be restricted")
    return expression


def _shift_weekday(text: str) -> str:
    def shift(token: str) -> str:
        return str(int(token) % 7 + 1) if token.isdigit() else token

    parts = []
    for part in text.split(","):
        body, _, step = part.partition("/")
        start, _, end = body.partition("-")
        if start != "*" and end and start.isdigit() and end.isdigit() and int(end) == 7:
            # 7 means Sunday; EventBridge counts 1=SUN..7=SAT, so 5-7 becomes 6-7,1.
            shifted = f"{shift(start)}-7,1" if int(start) < 7 else "1"
            parts.append(shifted + (f"/{step}" if step else ""))
            continue
        new = shift(start) if start != "*" else "*"
        if end:
            new += "-" + shift(end)
        parts.append(new + (f"/{step}" if step else ""))
    return ",".join(parts)


def to_eventbridge(expression: str) -> str:
    """Translate a validated five-field cron into EventBridge Scheduler's `cron(...)` form."""
    minute, hour, day, month, weekday = validate_cron(expression).split()
    if weekday == "*":
        weekday = "?"
    else:
        day = "?"
        weekday = _shift_weekday(weekday)
    return f"cron({minute} {hour} {day} {month} {weekday} *)"


def validate_timezone(name: str) -> str:
    """Return the name if it is an IANA time zone known to this Python (tzdata)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise CronError(f"{name!r} is not an IANA time zone such as 'Europe/Berlin'") from error
    return name


def _expand(text: str, field: _Field) -> set[int]:
    """The values a validated cron field names (day of week: 0-6, Sunday 0)."""
    values: set[int] = set()
    for part in text.split(","):
        match = _ATOM.match(part)
        if match is None:
            raise CronError(f"{field.name}: {part!r} is not '*', a value, a range or a step")
        start, end, step = match["start"], match["end"], match["step"]
        first = field.low if start == "*" else _value(start, field)
        last = (field.high if start == "*" or step else first) if end is None else _value(end, field)
        values.update(range(first, last + 1, int(step or 1)))
    return {value % 7 for value in values} if field.name == "day of week" else values


def skipped_nights(expression: str, timezone: str, start: date, days: int = 731) -> list[tuple[date, str]]:
    """The dates from `start` (for `days` days) when a time the cron names does not exist in `timezone`.

    Each comes with the first such time ("02:30"): the clocks spring forward over it, and EventBridge
    Scheduler skips such an invocation, so that night's run never starts.
    """
    zone = zoneinfo.ZoneInfo(timezone)
    minutes, hours, days_of_month, months, weekdays = (
        _expand(text, field) for text, field in zip(validate_cron(expression).split(), _FIELDS, strict=True)
    )
    restricted_day, restricted_weekday = expression.split()[2] != "*", expression.split()[4] != "*"
    found = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        after = midnight + timedelta(days=1)
        if midnight.utcoffset() == after.utcoffset():
            continue  # no change of offset that day: every local time exists
        if day.month not in months:
            continue
        if restricted_day and day.day not in days_of_month:
            continue
        if restricted_weekday and (day.weekday() + 1) % 7 not in weekdays:
            continue
        for hour in sorted(hours):
            gap = [
                m
                for m in sorted(minutes)
                if not _exists(datetime(day.year, day.month, day.day, hour, m), zone)
            ]
            if gap:
                found.append((day, f"{hour:02d}:{gap[0]:02d}"))
                break
    return found


def _exists(local: datetime, zone: zoneinfo.ZoneInfo) -> bool:
    """Whether a wall-clock time happens in `zone`: one that does not comes back changed from UTC."""
    aware = local.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local


def skipped_nights_warning(expression: str, timezone: str, start: date) -> str | None:
    """One line naming the nights of the next two years whose scheduled run never starts (None: none)."""
    nights = skipped_nights(expression, timezone, start)
    if not nights:
        return None
    dates = ", ".join(f"{day.isoformat()} ({time})" for day, time in nights)
    return (
        f"[schedule] cron {expression!r} in {timezone}: a time that does not exist when the clocks spring"
        f" forward, which EventBridge Scheduler skips, so no scheduled run starts on {dates};"
        " choose a time outside the daylight-saving change (or timezone 'UTC')"
    )
