"""The --deployed command: its flags checked, the request for run_deployed, a question on the terminal."""

from __future__ import annotations

import argparse
import sys
from typing import Literal

from runner.dates import parse_run_dates
from runner.deployed import DeployedRequest, run_deployed
from runner.errors import UsageError
from runner.execution import check_from_stage
from runner.model import Pipeline, load_pipeline
from runner.output import Output
from runner.plans import check_checks_options


def check_deployed_options(args: argparse.Namespace) -> None:
    """The values of the deployed flags argparse cannot check; every refusal is one line."""
    if args.canary and args.run_date is not None and ".." in args.run_date:
        raise UsageError(f"--canary: one run date, not a range ({args.run_date})")
    if args.check and (args.run_date is not None or args.rerun):
        raise UsageError("--check looks at the deployment, not at a date: leave out --run-date and --rerun")
    if args.history is not None and args.history < 1:
        raise UsageError(f"--history {args.history}: expected 1 or more runs")
    if args.concurrency is not None and args.concurrency < 1:
        raise UsageError(f"--concurrency {args.concurrency}: expected 1 or more runs at once")


def _deployed_action(
    args: argparse.Namespace,
) -> Literal["start", "follow", "stop", "history", "check", "status", "canary"]:
    if args.canary:
        return "canary"
    if args.start or args.checks_only:
        return "start"
    if args.check:
        return "check"
    if args.follow:
        return "follow"
    if args.stop:
        return "stop"
    return "history" if args.history is not None else "status"


def deployed_request(args: argparse.Namespace, pipeline: Pipeline) -> DeployedRequest:
    """The request for runner.deployed from validated flags (a UsageError for what argparse cannot see)."""
    if args.path is not None and not args.path.is_dir():
        raise UsageError(f"--deployed: {args.path} is a step file; give its pipeline folder")
    if args.from_stage is not None:
        check_from_stage(pipeline, args.from_stage, whole_pipeline=True)
    limit = pipeline.config.max_concurrent_runs
    if args.concurrency is not None and args.concurrency > limit:
        # Preflight would refuse the runs beyond the limit, each after its execution started.
        raise UsageError(
            f"--concurrency {args.concurrency}: {pipeline.name} allows {limit} run(s) at once"
            f" (max_concurrent_runs in pipeline.toml; raise it there and deploy)"
        )
    action = _deployed_action(args)
    # Without --run-date a start is today's run; --follow and --stop pick the running (or latest) one.
    given = args.run_date is not None or action in ("start", "canary")
    run_dates = tuple(parse_run_dates(args.run_date, pipeline)) if given else ()
    return DeployedRequest(
        action=action,
        run_dates=run_dates,
        rerun=args.rerun,
        from_stage=args.from_stage,
        concurrency=args.concurrency,
        # --history's N arrives as typed (the command line moves a PATH typed after it to PATH first).
        history_count=int(args.history) if args.history is not None else DeployedRequest.history_count,
        stack=args.stack,
        region=args.region,  # None: runner.deployed takes AWS_REGION or the usual AWS settings
        as_deployed=args.as_deployed,
        yes=args.yes,
        checks_only=args.checks_only,
        checks_stage=args.stage,
        dry_run=args.dry_run,
        one_cluster_per_date=args.one_cluster_per_date,
    )


def run_deployed_command(args: argparse.Namespace, output: Output) -> int:
    """--deployed: the pipeline of PATH, the request its flags make, run_deployed's exit code."""
    if args.checks_only:
        _check_deployed_checks(args)
    if args.path is None:
        raise UsageError("PATH is required: the pipeline folder of the deployed runs")
    pipeline = load_pipeline(args.path)
    check_checks_options(
        pipeline,
        checks_only=args.checks_only,
        stage=args.stage,
        from_stage=args.from_stage,
        dry_run=args.dry_run,
        whole=args.path.is_dir(),
    )
    request = deployed_request(args, pipeline)
    for line in pipeline.config.notices:
        output.notice(line)
    # No signal handlers: Ctrl-C detaches from a deployed run (run_deployed says how to come back).
    on_terminal = sys.stdin.isatty() and sys.stderr.isatty()
    return run_deployed(pipeline, request, output, confirm=_ask if on_terminal else None)


def _ask(question: str) -> bool:
    """A yes/no question on the terminal; anything but y or yes is no."""
    sys.stderr.write(f"nightshift: {question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _check_deployed_checks(args: argparse.Namespace) -> None:
    """--deployed --checks-only starts checks-only runs: the flags that look at runs are refused."""
    looks = [
        flag
        for flag, given in (
            ("--follow", args.follow),
            ("--stop", args.stop),
            ("--check", args.check),
            ("--canary", args.canary),
            ("--history", args.history is not None),
            ("--rerun", args.rerun),
        )
        if given
    ]
    if looks:
        raise UsageError(
            f"--checks-only --deployed starts a checks-only run (a name of its own each time):"
            f" not with {', '.join(looks)}"
        )
