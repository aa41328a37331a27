"""Run dates: one date or an inclusive range A..B, and the report of a range shared by every mode."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from runner.errors import UsageError

if TYPE_CHECKING:
    from runner.model import Pipeline

#: the longest range one command accepts: a year and a day covers any yearly backfill; longer is a typo
MAX_RANGE_DATES = 366
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: The variables the runner sets from the run date, in every step and in [inputs]. A nightly run
#: processes the day before its run date (as Airflow's `ds` is the start of the data interval):
#: that is prev_date; the _nodash forms are YYYYMMDD, as many exports name their folders.
DATE_VARIABLES = (
    "run_date", "prev_date", "next_date", "run_date_nodash", "prev_date_nodash", "next_date_nodash"
)  # fmt: skip
#: A variable whose name holds one of these (any case) has its value masked in the run header.
SECRET_NAME = re.compile(r"password|passwd|secret|token|key|credential", re.IGNORECASE)
MASK = "***"


def date_variables(run_date: str) -> dict[str, str]:
    """The built-in date variables of a run of `run_date` (YYYY-MM-DD), named as DATE_VARIABLES."""
    day = date.fromisoformat(run_date)
    prev, next_ = day - timedelta(days=1), day + timedelta(days=1)
    return {
        "run_date": day.isoformat(),
        "prev_date": prev.isoformat(),
        "next_date": next_.isoformat(),
        "run_date_nodash": f"{day:%Y%m%d}",
        "prev_date_nodash": f"{prev:%Y%m%d}",
        "next_date_nodash": f"{next_:%Y%m%d}",
    }


def shown_variables(variables: Mapping[str, str]) -> str:
    """`name=value` pairs for the run header, the built-in dates left out and secret-looking values masked."""
    pairs = [
        f"{name}={MASK if SECRET_NAME.search(name) else shlex.quote(value)}"
        for name, value in variables.items()
        if name not in DATE_VARIABLES
    ]
    return ", ".join(pairs) if pairs else "none"


def run_header(pipeline: Pipeline, dates: Sequence[str], *, given: bool, variables: Mapping[str, str]) -> str:
    """The first line of every run: the pipeline, its run date(s) and where they came from, its variables."""
    when = f"run date {dates[0]}" if len(dates) == 1 else f"run dates {dates[0]} to {dates[-1]}"
    schedule = pipeline.config.schedule
    if given:
        source = "given with --run-date"
    elif schedule is not None:
        source = f"today in {schedule.timezone}, the schedule's time zone"
    else:
        source = "today in UTC: pipeline.toml has no [schedule]"
    return f"{pipeline.name}: {when} ({source}); variables: {shown_variables(variables)}"


def today(pipeline: Pipeline) -> str:
    """Today in the pipeline's schedule time zone, or in UTC when it has no schedule."""
    schedule = pipeline.config.schedule
    zone = ZoneInfo(schedule.timezone) if schedule else UTC
    return datetime.now(zone).date().isoformat()


def _one_date(text: str, given: str) -> date:
    if not _ISO_DATE.fullmatch(text):
        raise UsageError(
            f"--run-date {given!r}: expected YYYY-MM-DD or an inclusive range YYYY-MM-DD..YYYY-MM-DD"
        )
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise UsageError(f"--run-date {given!r}: {text}: {error}") from error


def parse_run_dates(text: str | None, pipeline: Pipeline) -> list[str]:
    """The ISO dates of --run-date in order: `D`, or every date from A to B inclusive (`A..B`).

    Default: today in the pipeline's schedule time zone (UTC when it has none). A range that ends
    before it starts, or that holds more than MAX_RANGE_DATES dates, is a UsageError.
    """
    if text is None:
        return [today(pipeline)]
    first_text, sep, last_text = text.partition("..")
    first = _one_date(first_text.strip(), text)
    if not sep:
        return [first.isoformat()]
    last = _one_date(last_text.strip(), text)
    if last < first:
        raise UsageError(f"--run-date {text!r}: the range ends before it starts (write A..B with A <= B)")
    count = (last - first).days + 1
    if count > MAX_RANGE_DATES:
        raise UsageError(
            f"--run-date {text!r}: {count} dates; at most {MAX_RANGE_DATES} in one command (split it)"
        )
    return [(first + timedelta(days=n)).isoformat() for n in range(count)]


@dataclass(frozen=True)
class DateResult:
    """How the run of one date ended: its exit code (0: succeeded), how long it took, and why it failed.

    `detail` is empty on success; on failure it names the failing step and its exit code (e.g.
    "20_sessions.sql failed (exit 3)"), or what else ended the run ("stopped by signal 15").
    """

    run_date: str
    exit_code: int
    seconds: float
    detail: str = ""

    @property
    def status(self) -> str:
        return "succeeded" if self.exit_code == 0 else f"failed (exit {self.exit_code})"


def format_duration(seconds: float) -> str:
    """12.3 s, 4 min 05 s, 2 h 03 min: precise for a short run, readable for a night's."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def date_line(result: DateResult) -> str:
    """The runner's line as a date of a range ends (Output.notice adds the 'nightshift: ' prefix)."""
    line = f"run date {result.run_date}: {result.status} in {format_duration(result.seconds)}"
    return f"{line}: {result.detail}" if result.detail else line


def range_summary_lines(
    results: Iterable[DateResult], planned: Sequence[str] = (), pending: Mapping[str, str] | None = None
) -> list[str]:
    """The table at the end of a range: one row per date, then a count.

    Dates in `planned` without a result (a signal stopped the range first) show as "not run", or as
    `pending` says (a date waiting in a shared cluster's batch).
    """
    done = {result.run_date: result for result in results}
    order = list(planned) + [d for d in done if d not in planned]
    rows = [("run date", "status", "duration", "detail")]
    for run_date in order:
        result = done.get(run_date)
        if result is None:
            rows.append((run_date, (pending or {}).get(run_date, "not run"), "-", ""))
        else:
            rows.append((run_date, result.status, format_duration(result.seconds), result.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    failed = sum(1 for result in done.values() if result.exit_code != 0)
    counts = f"{len(order)} dates: {len(done) - failed} succeeded, {failed} failed"
    not_run = len(order) - len(done)
    lines.append(counts + (f", {not_run} not run" if not_run else ""))
    return lines


def range_exit_code(results: Iterable[DateResult]) -> int:
    """A range's exit code: the first failed date's own (0 when every date succeeded)."""
    return next((result.exit_code for result in results if result.exit_code != 0), 0)
