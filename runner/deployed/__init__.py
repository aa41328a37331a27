"""The deployed pipeline from the terminal: start, follow, backfill, stop and list its Step Functions runs."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import botocore.exceptions

from runner.dates import DateResult, today
from runner.deployed.backfill import (
    CLUSTER_METASTORE_WHY,
    METASTORE_CLUSTER,
    Batch,
    SharedRange,
    batches_of,
    cut_batches,
    name_batches,
    plan_lines,
    reattached,
    stop_batch,
)
from runner.deployed.canary import Watch, run_canary
from runner.deployed.check import CheckClients, local_changes, run_check
from runner.deployed.discovery import (
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    Clients,
    Deployment,
    Refused,
    aws_error,
    find_deployment,
)
from runner.deployed.events import EXIT_RUN_FAILED, EXIT_RUN_STOPPED, RunTracker
from runner.deployed.follow import Detached, Follower, HistoryReader, Polling, read_stages
from runner.deployed.run_states import INPUTS_MISSING_ERROR
from runner.deployed.runs import (
    Execution,
    any_date_of,
    check_checks_startable,
    check_startable,
    date_of,
    describe,
    end_clusters,
    history_lines,
    latest,
    list_runs,
    runs_of_date,
    start,
    stop_run,
)
from runner.errors import UsageError
from runner.execution import check_from_stage, summary_lines
from runner.model import Pipeline
from runner.output import Output
from runner.ranges import run_range
from runner.schedule import _FIELDS, _expand, validate_cron

__all__ = [
    "EXIT_DETACHED",
    "EXIT_NOT_FOUND",
    "EXIT_REFUSED",
    "EXIT_RUN_FAILED",
    "EXIT_RUN_STOPPED",
    "DeployedRequest",
    "Polling",
    "next_scheduled",
    "run_deployed",
]

#: Ctrl-C while following: the run goes on (as a local run stopped by SIGINT, 128 + 2)
EXIT_DETACHED = 130
#: how many of the newest runs `--history --run-date` looks through for those dates
HISTORY_SCAN = 1000


@dataclass(frozen=True)
class DeployedRequest:
    action: Literal["start", "follow", "stop", "history", "check", "status", "canary"]
    run_dates: tuple[str, ...] = ()  # ISO dates in order; () = the running/latest run
    rerun: bool = False
    from_stage: int | None = None
    concurrency: int | None = None  # None: the pipeline's max_concurrent_runs
    history_count: int = 10
    stack: str | None = None
    region: str | None = None
    #: start even when the local folder differs from the deployed one (the deployed steps run)
    as_deployed: bool = False
    #: start a date after the next scheduled run without asking
    yes: bool = False
    #: start checks-only runs (`--checks-only`): no step, the checks of every stage or of checks_stage
    checks_only: bool = False
    checks_stage: int | None = None
    #: with action "canary", or "start" of a range: say what it would do, start nothing
    dry_run: bool = False
    #: a range: each date its own execution and cluster (default: shared clusters, docs/backfill.md)
    one_cluster_per_date: bool = False


def run_deployed(
    pipeline: Pipeline,
    request: DeployedRequest,
    output: Output,
    *,
    polling: Polling | None = None,
    clients: Clients | None = None,
    count: Callable[[str], None] | None = None,
    check_clients: CheckClients | None = None,
    confirm: Callable[[str], bool] | None = None,
) -> int:
    """Do what `request` asks of the deployed pipeline; its exit code (README: "Production").

    What it cannot do is raised as a NightshiftError (botocore's errors too, as aws_error makes them).

    `confirm` asks the user a yes/no question on a terminal; None: there is no terminal to ask on.
    """
    command = _Command(pipeline, request, output, polling or Polling(), count or (lambda _api: None))
    command.check_clients = check_clients
    command.confirm = confirm
    try:
        with _ctrl_c(command.interrupted):
            deployment = find_deployment(
                pipeline.name, request.stack, clients or Clients.make(request.region)
            )
            return command.run(deployment)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        # The runner's typed error; runner.__main__ alone turns it into its line and exit code.
        raise aws_error(error) from error


@contextmanager
def _ctrl_c(interrupted: threading.Event) -> Iterator[None]:
    """SIGINT sets `interrupted` instead of raising in the middle of an AWS call."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda _number, _frame: interrupted.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Command:
    def __init__(
        self,
        pipeline: Pipeline,
        request: DeployedRequest,
        output: Output,
        polling: Polling,
        count: Callable[[str], None],
    ) -> None:
        self.pipeline = pipeline
        self.request = request
        self.output = output
        self.polling = polling
        self.count = count
        self.interrupted = threading.Event()
        #: the dates of a backfill not started yet (a detach leaves them to a later command)
        self.not_started: list[str] = []
        self.check_clients: CheckClients | None = None
        self.confirm: Callable[[str], bool] | None = None

    def say(self, message: str) -> None:
        self.output.notice(message)

    def run(self, deployment: Deployment) -> int:
        request = self.request
        action = request.action
        if action == "check":
            return run_check(self.pipeline, deployment, self.say, self.check_clients)
        if action == "status":
            return self._status(deployment)
        if action == "canary":
            canary_date = (request.run_dates or (today(self.pipeline),))[0]
            watch = Watch(self.output, self.polling, self.interrupted, self.count)
            return run_canary(self.pipeline, deployment, canary_date, watch, dry_run=request.dry_run)
        if action == "history":
            if request.run_dates:
                # Runs of those dates among the last HISTORY_SCAN (ListExecutions has no name filter).
                wanted = set(request.run_dates)
                runs = [
                    r
                    for r in list_runs(deployment, HISTORY_SCAN)
                    if any_date_of(self.pipeline.name, r.name) in wanted
                ][: request.history_count]
            else:
                runs = list(list_runs(deployment, request.history_count))
            if not runs:
                self.say(f"no runs of {self.pipeline.name} yet in {deployment.region}")
                return 0
            for line in history_lines(deployment, self.pipeline, runs):
                self.say(line)
            return 0
        if action == "stop":
            if len(request.run_dates) != 1:
                # A backfill: its batches (one date of a batch: that date's run only, below).
                batches = batches_of(deployment, request.run_dates, scan=HISTORY_SCAN)
                if batches:
                    return self._stop_batches(deployment, batches)
            dates: list[str | None] = list(request.run_dates) or [None]
            code = 0
            for run_date in dates:
                execution = latest(deployment, run_date)
                stopped = stop_run(
                    deployment,
                    self.pipeline,
                    execution,
                    self.say,
                    poll=self.polling.cluster_poll,
                    wait=self.polling.cluster_wait,
                    interrupted=self.interrupted,
                )
                code = code or stopped  # every date is stopped; the first failure is the exit code
            return code
        if action == "follow":
            if len(request.run_dates) > 1 and (
                held := batches_of(deployment, request.run_dates, scan=HISTORY_SCAN)
            ):
                # A shared backfill: its dates still waiting in a batch have no run to follow yet.
                return self._follow_shared(
                    deployment,
                    reattached(deployment, request.run_dates, held, lambda d: latest(deployment, d)),
                )
            if len(request.run_dates) > 1:
                running = [latest(deployment, d) for d in request.run_dates]
                planned = [date_of(self.pipeline.name, e.name) or e.name for e in running]
                return self._range(deployment, _DeployedRuns(self, deployment, {}), planned, running=running)
            return self._follow(
                deployment, latest(deployment, request.run_dates[0] if request.run_dates else None)
            )
        return self._start(deployment)

    def _stop_batches(self, deployment: Deployment, batches: list[Execution]) -> int:
        """Each batch stopped, then its running date, then its cluster terminated; the dates not started."""
        code = 0
        folder = _shown_path(self.pipeline.folder)
        for batch in batches:
            not_started = stop_batch(
                deployment,
                batch,
                self.say,
                poll=self.polling.cluster_poll,
                wait=self.polling.cluster_wait,
                interrupted=self.interrupted,
            )
            ended = end_clusters(
                deployment,
                self.pipeline,
                batch,
                self.say,
                poll=self.polling.cluster_poll,
                wait=self.polling.cluster_wait,
                interrupted=self.interrupted,
            )
            code = code or ended
            if not_started:
                shown = not_started[0] + (f"..{not_started[-1]}" if len(not_started) > 1 else "")
                start = f"python -m runner {folder} --deployed --start --run-date {shown}"
                self.say(f"not started: {shown} (start: {start})")
        return code

    # --- status: looking starts nothing ------------------------------------------------------

    def _status(self, deployment: Deployment) -> int:
        """The runs of the given dates (default: today) and the latest run, newest first; starts nothing."""
        folder = _shown_path(self.pipeline.folder)
        dates = list(self.request.run_dates) or [today(self.pipeline)]
        runs = [run for run_date in dates for run in runs_of_date(deployment, run_date)]
        newest = next(iter(list_runs(deployment, 1)), None)
        if newest is not None and newest.arn not in {run.arn for run in runs}:
            runs.append(newest)
        runs.sort(key=lambda run: run.started, reverse=True)
        if runs:
            for line in history_lines(deployment, self.pipeline, runs):
                self.say(line)
        else:
            self.say(f"no runs of {self.pipeline.name} yet in {deployment.region}")
        ran = {date_of(self.pipeline.name, run.name) for run in runs}
        not_run = [d for d in dates if d not in ran]
        if any(run.status == "RUNNING" for run in runs):
            self.say(f"follow a running one: python -m runner {folder} --deployed --follow")
        if not_run:
            shown = not_run[0] + (f"..{not_run[-1]}" if len(not_run) > 1 else "")
            when = "" if not self.request.run_dates else f" --run-date {shown}"
            self.say(f"no run of {shown} yet; start it: python -m runner {folder} --deployed --start{when}")
        return 0

    # --- start and backfill ------------------------------------------------------------------

    def _start(self, deployment: Deployment) -> int:
        request = self.request
        self._check_from_stage()
        dates = list(request.run_dates) or [today(self.pipeline)]
        if request.dry_run:
            return self._dry_run(deployment, dates)
        changed = local_changes(self.pipeline, deployment)
        if changed:
            # The runner image carries the steps: a start after a local fix would run the old ones.
            if not request.as_deployed:
                raise Refused(
                    f"the local folder differs from the deployed one ({', '.join(changed)}): a run would use"
                    " the deployed files; deploy with `cdk deploy`, or add --as-deployed to run them anyway"
                )
            self.say(f"running the deployed files; the local folder differs: {', '.join(changed)}")
        self._confirm_unscheduled(dates)
        # Every date is checked before any starts: a backfill does not stop half-way on a refusal.
        names = {
            run_date: check_checks_startable(deployment, run_date)
            if request.checks_only
            else check_startable(deployment, run_date, request.rerun)
            for run_date in dates
        }
        if len(dates) == 1:
            execution = self._start_one(deployment, names[dates[0]], dates[0])
            only = " (checks only: the stages' data checks on a new cluster, no step)"
            self.say(f"run {execution.name} started{only if request.checks_only else ''}")
            return self._follow(deployment, execution)
        limit = self._limit()
        why = ""
        if not request.checks_only and not request.one_cluster_per_date:
            if not self._cluster_metastore():
                return self._shared(deployment, names, dates, limit)
            why = f", one cluster per date: {CLUSTER_METASTORE_WHY}"
        self.say(f"backfill of {len(dates)} dates, at most {limit} at once{why}")
        return self._range(
            deployment, _DeployedRuns(self, deployment, names), dates, to_start=dates, at_once=limit
        )

    def _limit(self) -> int:
        limit: int = self.request.concurrency or self.pipeline.config.max_concurrent_runs
        if limit < 1:
            raise UsageError(f"--concurrency {limit}: expected 1 or more")
        return limit

    def _cluster_metastore(self) -> bool:
        return self.pipeline.config.cluster.metastore == METASTORE_CLUSTER

    def _shared(self, deployment: Deployment, names: dict[str, str], dates: list[str], limit: int) -> int:
        """A backfill on shared clusters: batches of contiguous dates, one cluster each (docs/backfill.md)."""
        batches = name_batches(deployment, cut_batches(dates, limit), names)
        self.say(_shared_line(len(dates), len(batches), limit))
        shared = SharedRange(
            deployment,
            batches,
            limit,
            self.request.from_stage,
            self.say,
            lambda execution: self._date_result(deployment, execution),
            self.interrupted.is_set,
            self._wait_range,
        )
        end = shared.run(dates)
        if end.failure is not None:
            self.say(f"error: {end.failure}")
        for line in end.summary_lines():
            self.say(line)
        if end.failure is not None or end.interrupted:
            self.not_started = end.not_started
            self._detach_hint(", ".join(e.name for e in end.running) or "none")
        return end.exit_code(interrupted=EXIT_DETACHED)

    def _follow_shared(self, deployment: Deployment, batches: list[Batch]) -> int:
        """A shared backfill followed again: a line per date as it ends, the table, as its start shows."""
        end = SharedRange(
            deployment,
            batches,
            len(batches),
            None,
            self.say,
            lambda execution: self._date_result(deployment, execution),
            self.interrupted.is_set,
            self._wait_range,
        ).run(list(self.request.run_dates))
        for line in end.summary_lines():
            self.say(line)
        if end.interrupted:
            self._detach_hint(", ".join(e.name for e in end.running) or "none")
        return end.exit_code(interrupted=EXIT_DETACHED)

    def _wait_range(self) -> None:
        self.interrupted.wait(self.polling.range_interval)

    def _dry_run(self, deployment: Deployment, dates: list[str]) -> int:
        """What a start of the range would do: its batches (or a cluster per date) and both plans' model."""
        request = self.request
        if len(dates) < 2:
            raise UsageError("--dry-run --deployed --start: a range of dates (--run-date A..B)")
        names = {run_date: check_startable(deployment, run_date, request.rerun) for run_date in dates}
        limit = self._limit()
        self.say("dry run: nothing is started")
        batches = None
        if request.one_cluster_per_date or self._cluster_metastore():
            why = f": {CLUSTER_METASTORE_WHY}" if not request.one_cluster_per_date else ""
            self.say(f"backfill of {len(dates)} dates, one cluster per date, at most {limit} at once{why}")
            for run_date in dates:
                self.say(f"{run_date}: run {names[run_date]} on a cluster of its own")
        else:
            batches = name_batches(deployment, cut_batches(dates, limit), names)
            self.say(_shared_line(len(dates), len(batches), limit))
            for batch in batches:
                first, last = batch.children[batch.dates[0]], batch.children[batch.dates[-1]]
                runs = first if first == last else f"{first} .. {last}"
                self.say(f"batch {batch.name}: {len(batch.dates)} dates on one cluster, runs {runs}")
        for line in plan_lines(self.pipeline, deployment.region, dates, limit, batches):
            self.say(line)
        flags = "".join(
            flag
            for flag, given in (
                (f" --concurrency {request.concurrency}", request.concurrency is not None),
                (" --rerun", request.rerun),
                (f" --from-stage {request.from_stage}", request.from_stage is not None),
                (" --one-cluster-per-date", request.one_cluster_per_date),
            )
            if given
        )
        folder = _shown_path(self.pipeline.folder)
        shown = f"{dates[0]}..{dates[-1]}"
        self.say(f"start it: python -m runner {folder} --deployed --start --run-date {shown}{flags}")
        return 0

    def _start_one(self, deployment: Deployment, name: str, run_date: str) -> Execution:
        request = self.request
        return start(
            deployment,
            name,
            run_date,
            request.from_stage,
            checks_only=request.checks_only,
            checks_stage=request.checks_stage,
        )

    def _confirm_unscheduled(self, dates: list[str]) -> None:
        """A date after the next scheduled run: asked on a terminal, refused elsewhere without --yes.

        Its inputs are likely not there yet, and the schedule refuses a date that already ran when its
        night comes; a typo in the year is the usual cause.
        """
        if self.request.yes:
            return
        schedule = self.pipeline.config.schedule
        now = datetime.now(UTC)
        if schedule is not None and schedule.enabled:
            upcoming = next_scheduled(schedule.cron, schedule.timezone, now)
            limit = upcoming.date() if upcoming else None
            when = (
                f"the next scheduled run is {limit.isoformat()}'s, at {upcoming:%H:%M} {schedule.timezone}"
                if upcoming and limit
                else "the schedule names no date ahead"
            )
        else:
            limit = date.fromisoformat(today(self.pipeline))
            when = f"today is {limit.isoformat()} ({schedule.timezone if schedule else 'UTC'}; no schedule)"
        later = [d for d in dates if limit is None or date.fromisoformat(d) > limit]
        if not later:
            return
        shown = later[0] + (f"..{later[-1]}" if len(later) > 1 else "")
        question = f"{shown} is not scheduled yet ({when}); start it now?"
        if self.confirm is None:
            raise UsageError(
                f"{question.removesuffix('; start it now?')}: not started; add --yes to start it now"
            )
        if not self.confirm(question):
            raise UsageError(f"{shown}: not started")

    def _check_from_stage(self) -> None:
        # The rule of every mode: N is one of the folder's stage numbers.
        if self.request.from_stage is not None:
            check_from_stage(self.pipeline, self.request.from_stage, whole_pipeline=True)

    def _range(
        self,
        deployment: Deployment,
        runs: _DeployedRuns,
        planned: list[str],
        *,
        to_start: list[str] | None = None,
        running: list[Execution] | None = None,
        at_once: int = 1,
    ) -> int:
        """Wait for each date's run (runner.ranges.run_range), one line as each ends, the table at the end.

        The step output of several dates at once would interleave into something no single run
        printed; a range shows one line per date, and `--follow --run-date D` shows one date's.
        A start refused or failing, or Ctrl-C, ends the range as a detach: the runs started go on.
        """
        end = run_range(
            runs, self.say, planned=planned, to_start=to_start or [], running=running or [], at_once=at_once
        )
        if end.failure is not None:
            self.say(f"error: {end.failure}")
        for line in end.summary_lines():
            self.say(line)
        if end.failure is not None or end.interrupted:
            # A date someone else started meanwhile: the error line names it, not "not started".
            refused = isinstance(end.failure, Refused) and end.not_started
            self.not_started = end.not_started[1:] if refused else end.not_started
            self._detach_hint(", ".join(e.name for e in end.running) or "none")
        return end.exit_code(interrupted=EXIT_DETACHED)

    def _date_result(self, deployment: Deployment, execution: Execution) -> DateResult:
        tracker = RunTracker(self.pipeline)
        for event in HistoryReader(deployment.clients.sfn, execution.arn, self.count).new_events():
            tracker.apply(event)
        read_stages(deployment, tracker, self.count)  # a date of a batch: which of its steps failed it
        code = tracker.exit_code()
        run_date = tracker.run_date or execution.name
        if code == 0:
            return DateResult(run_date, 0, execution.seconds())
        failing = tracker.failing_step()
        if tracker.error == INPUTS_MISSING_ERROR:
            # A date of a batch checks its inputs once and gives way to the next date.
            detail = "skipped: inputs missing" + (f" ({tracker.cause})" if tracker.cause else "")
            return DateResult(run_date, code, execution.seconds(), detail)
        if failing is not None and code == failing.exit_code:
            detail = f"{failing.step.file_name} failed (exit {code})"
        elif execution.status == "ABORTED":
            detail = f"{execution.name} was stopped"
        else:
            detail = f"{execution.name}: {tracker.failure}"
        return DateResult(run_date, code, execution.seconds(), detail)

    # --- follow ------------------------------------------------------------------------------

    def _follow(self, deployment: Deployment, execution: Execution) -> int:
        if execution.status != "RUNNING":
            self.say(f"run {execution.name} {execution.status.lower().replace('_', ' ')}; its output:")
        else:
            self.say(f"following run {execution.name}")
        follower = Follower(
            deployment, self.pipeline, execution.arn, self.output, self.polling, self.interrupted, self.count
        )
        try:
            tracker = follower.run()
        except Detached:
            self._detach_hint(execution.name)
            return EXIT_DETACHED
        from runner.deployed.follow import now  # noqa: PLC0415

        report = tracker.report(now())
        for line in summary_lines(report):
            self.say(line)
        return report.exit_code

    def _detach_hint(self, names: str) -> None:
        folder = _shown_path(self.pipeline.folder)
        rest = self.not_started
        dates = self.request.run_dates[: len(self.request.run_dates) - len(rest)]
        when = f" --run-date {dates[0]}" + (f"..{dates[-1]}" if len(dates) > 1 else "") if dates else ""
        goes = "go on" if "," in names else "goes on"
        line = (
            f"detached; {names} {goes} in AWS. "
            f"Reattach: python -m runner {folder} --deployed --follow{when}; "
            f"stop it: python -m runner {folder} --deployed --stop{when}"
        )
        if rest:
            later = rest[0] + (f"..{rest[-1]}" if len(rest) > 1 else "")
            start = f"python -m runner {folder} --deployed --start --run-date {later}"
            line += f"; not started: {later} (start: {start})"
        self.say(line)


class _DeployedRuns:
    """The dates of a deployed range: each an execution, started (or already running) and polled."""

    def __init__(self, command: _Command, deployment: Deployment, names: dict[str, str]) -> None:
        self.command = command
        self.deployment = deployment
        #: the execution name each date's run takes (checked for every date before any starts)
        self.names = names

    def start(self, run_date: str) -> Execution:
        try:
            execution = self.command._start_one(self.deployment, self.names[run_date], run_date)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            # StartExecution throttled past the retries: no more starts, as when refused.
            raise aws_error(error) from error
        self.command.say(f"run {execution.name} started")
        return execution

    def ended(self, execution: Execution) -> DateResult | None:
        self.command.count("DescribeExecution")
        now = describe(self.deployment, execution.name) or execution
        return None if now.status == "RUNNING" else self.command._date_result(self.deployment, now)

    def interrupted(self) -> bool:
        return self.command.interrupted.is_set()

    def wait(self) -> None:
        self.command.interrupted.wait(self.command.polling.range_interval)


def _shared_line(dates: int, clusters: int, limit: int) -> str:
    plural = "s" if clusters > 1 else ""
    return f"backfill of {dates} dates on {clusters} shared cluster{plural}, at most {limit} at once"


def _shown_path(folder: Path) -> str:
    try:
        relative = os.path.relpath(folder)
    except ValueError:
        return str(folder)
    return str(folder) if relative.startswith("..") else relative.rstrip("/") + "/"


def next_scheduled(expression: str, timezone: str, now: datetime) -> datetime | None:
    """The first time after `now` that the five-field cron names in `timezone` (within a year and a day).

    A time the clocks skip does not count (EventBridge Scheduler skips it too). Day of month and day of
    week both restricted: either matches, as crontab has it.
    """
    zone = ZoneInfo(timezone)
    fields = validate_cron(expression).split()
    minutes, hours, days, months, weekdays = (
        _expand(text, field) for text, field in zip(fields, _FIELDS, strict=True)
    )
    by_day, by_weekday = fields[2] != "*", fields[4] != "*"
    local = now.astimezone(zone)
    for offset in range(367):
        day = local.date() + timedelta(days=offset)
        day_ok, weekday_ok = day.day in days, (day.weekday() + 1) % 7 in weekdays
        if day.month not in months or not (
            (day_ok or weekday_ok) if by_day and by_weekday else (day_ok and weekday_ok)
        ):
            continue
        for hour in sorted(hours):
            for minute in sorted(minutes):
                moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                exists = moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == moment.replace(
                    tzinfo=None
                )
                if exists and moment > local:
                    return moment
    return None
