"""Command line of the runner: parse argv, wire executor and output, turn results into exit codes."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

from runner import __version__
from runner.completion import CompletionAction
from runner.config import RESERVED_VARIABLES, VARIABLE_NAME, variable_problem
from runner.dates import (
    MASK,
    SECRET_NAME,
    run_header,
)
from runner.errors import NightshiftError, UsageError
from runner.execution import (
    Executor,
    Outcome,
    RunPlan,
    StopRequest,
)
from runner.inputs import LocalInputs, gate_mode, input_paths
from runner.listing import listing_lines, pipeline_folders
from runner.local.executor import LocalExecutor, LocalSpark
from runner.model import (
    Engine,
    Pipeline,
    Step,
    load_pipeline,
    project_root,
)
from runner.output import JsonOutput, Output, TextOutput
from runner.plans import PlanOptions, plan_runs, plan_statement, statement_problem, statement_undefined
from runner.ranges import run_one_date, run_planned_range

PROG = "python -m runner"
EXIT_USAGE = 2
DEFAULT_STATE_DIR = Path(".nightshift")
PRIVATE_KEY_VARIABLE = "NIGHTSHIFT_SSH_PRIVATE_KEY"
IDLE_MINUTES_VARIABLE = "NIGHTSHIFT_ENGINE_IDLE_MINUTES"
DEFAULT_IDLE_MINUTES = 15.0
DEFAULT_HISTORY = 10
DEFAULT_REMOTE_DIR = "~/.nightshift/runs"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_RECONNECT_TIMEOUT = 300.0
#: the file -e's statements are written to, for the engine to read as it reads a step's
STATEMENT_FILE = "statement.sql"

DESCRIPTION = """\
Run a Nightshift step or pipeline.

  PATH is a step file   run that one step          python -m runner sql/example/20_sessions.hql
  PATH is a folder      run the whole pipeline,    python -m runner sql/example/
                        stage by stage (10_*, then 20_*, ...)

Three places to run:
  here (default)        the embedded local engine (Spark SQL from pyspark), whose warehouse and
                        metastore live in --state-dir, so a later step sees the tables an earlier
                        one made
  on a cluster          --host or --cluster-id: over SSH, the file is uploaded and run detached,
                        its output streamed back live, surviving dropped connections (docs/ssh.md)
  deployed              --deployed: alone, the status of the deployed pipeline's runs; --start,
                        --follow, --stop, --history act on its runs in AWS (its state machine; the
                        step output comes from CloudWatch Logs); --check checks the deployment,
                        --canary proves it with a built-in run on a master-only cluster.
                        Ctrl-C detaches from a deployed run, it never stops it

  --run-date A..B       every date from A to B (inclusive, at most 366): here and on a cluster one
                        after another, each a run of its own; a failed date does not stop the later
                        ones (a backfill keeps going); a line as each date ends, a table at the end
  --from-stage N        skip the stages before stage N (in every mode)
  --checks-only         run only the data checks (NN_name.check.sql, [checks.table.NAME] in
                        pipeline.toml) against the tables as they are; --stage N: stage N's only

.sql runs on spark-sql (or the pipeline's default_engine), .hql on hive (locally: Spark SQL's
HiveQL support), .py on spark-submit, .sh on bash. SQL steps read variables as ${name} or
${hivevar:name}; .py and .sh steps get them as environment variables. run_date is always set.

stdout and stderr of each step pass through unchanged, line by line; the runner's own messages
go to stderr prefixed 'nightshift:'. Exit code: the failing step's own; 2 for a usage error;
124 for a step timeout; 130/143 after SIGINT/SIGTERM (the step is stopped first); 255 when the
cluster cannot be reached or authenticated; 75 when an input the pipeline.toml's [inputs] names
is missing (nothing ran: a folder checks them first; --wait waits for them, --no-wait skips it);
65 when a data check of severity error failed (the data is wrong; later stages did not start).
A range of dates exits 0 when every date succeeded, else with the first failed date's code
(128 + the signal's number when a signal stopped it).
With --deployed: the run's own code as here; 3 when there is nothing to act on (no credentials,
region, deployment or run of that date); 4 when refused (the date already ran and --rerun is not
given, or it is running); 69 when the run failed outside a step; 124 when the execution timed
out; 143 when it was stopped (--stop or the console); 130 after Ctrl-C detached (the run goes on);
1 when --check found a problem (every check passed: 0), or --canary's run succeeded but its cluster
was not terminated within 20 minutes;
255 when AWS cannot be reached; 1 for any other AWS error, or a stopped run's cluster not gone
after 20 minutes.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # The runner's one prefix, for argparse's refusals too.
        self.exit(EXIT_USAGE, f"nightshift: error: {message} (see {self.prog} --help)\n")


def _prog() -> str:
    """How the command was typed: the `nightshift` console script, or `python -m runner`."""
    return "nightshift" if Path(sys.argv[0]).name == "nightshift" else PROG


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=_prog(), description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"nightshift {__version__}")
    parser.add_argument(
        "--completion", action=CompletionAction, choices=["bash"],
        help="print a bash completion script for the nightshift command and exit"
        " (in ~/.bashrc: eval \"$(nightshift --completion bash)\"; zsh: bashcompinit first)",
    )  # fmt: skip
    parser.add_argument("path", nargs="?", type=Path, help="a step file or a pipeline folder")
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE",
        help="set a variable (repeatable); overrides pipeline.toml",
    )  # fmt: skip
    parser.add_argument(
        "--run-date", metavar="DATE",
        help="the run_date variable, YYYY-MM-DD, or a range YYYY-MM-DD..YYYY-MM-DD (inclusive) run date"
        " after date (default: today in the pipeline's schedule time zone, or in UTC without a schedule)",
    )  # fmt: skip
    parser.add_argument(
        "--from-stage", type=int, metavar="N",
        help="skip the stages before stage N (a stage number of the pipeline folder)",
    )  # fmt: skip
    parser.add_argument(
        "--checks-only", action="store_true",
        help="run no step, only the pipeline's data checks, against the tables as they are",
    )  # fmt: skip
    parser.add_argument(
        "--stage", type=int, metavar="N", help="with --checks-only: only the checks of stage N"
    )  # fmt: skip
    parser.add_argument(
        "--engine", choices=[e.value for e in Engine],
        help="run on this engine instead of the one the extension picks"
        " (for a folder: SQL engines only, applied to .sql and .hql steps)",
    )  # fmt: skip
    parser.add_argument(
        "-e", "--execute", metavar="STATEMENTS",
        help="run these statements (as spark-sql -e) with the pipeline's variables, on the engine a step"
        " of PATH (a pipeline folder) would use: here warm or --cold, or --host/--cluster-id; stdout and"
        " exit code are the engine's",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true",
        help="run nothing: each step's command line on stdout, after a line on stderr naming its stage,"
        " where it would run and whether warm or cold; the checks under their stage; secrets masked;"
        " with --deployed --start of a range: its batches and the modelled cost and time, nothing started",
    )  # fmt: skip
    parser.add_argument(
        "--strict", action="store_true",
        help="a ${name} in a SQL step that no variable defines is an error (exit 2), not a warning"
        " (pipeline.toml: strict_variables = true)",
    )  # fmt: skip
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument(
        "--wait", action="store_true",
        help="wait for the pipeline's [inputs] up to its wait_minutes, checking every poll_minutes"
        " (default for a folder: check once, exit 75 if one is missing)",
    )  # fmt: skip
    inputs.add_argument("--no-wait", action="store_true", help="do not check the pipeline's [inputs]")
    parser.add_argument(
        "--step-retries", action="store_true",
        help="retry as the deployed pipeline does: a step that failed or timed out runs again, up to"
        " pipeline.toml's [steps] retries more times, retry_interval_seconds after; a step file too"
        " (its one step); a stopped run is never retried, nor are data checks (not with --checks-only"
        " or --keep-remote; default: a step runs once)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text",
        help="text (default), or one JSON object per output line for CloudWatch Logs Insights",
    )  # fmt: skip
    parser.add_argument(
        "--run-id", help="identifies this run in JSON logs (default: generated; with a range: ID-<date>)"
    )
    local = parser.add_argument_group("local engine")
    local.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR,
        help="folder of the local warehouse and metastore (default: .nightshift in the project root, the"
        " nearest folder holding .git or cdk.json, from which local runs resolve every relative path)",
    )  # fmt: skip
    local.add_argument(
        "--cold", action="store_true",
        help="start a JVM for every SQL step, as spark-sql -f does, instead of using the warm engine",
    )  # fmt: skip
    local.add_argument(
        "--engine-idle-minutes", type=float, metavar="MINUTES",
        help=f"end the warm engine after this long without a step (default: ${IDLE_MINUTES_VARIABLE} or 15)",
    )  # fmt: skip
    local.add_argument(
        "--stop-engine", action="store_true", help="end the warm engine of --state-dir (alone: only that)"
    )
    local.add_argument(
        "--reset", action="store_true",
        help="delete the local warehouse and metastore first (alone: only that)",
    )  # fmt: skip
    _add_cluster_options(parser)
    _add_deployed_options(parser)
    return parser


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    cluster = parser.add_argument_group(
        "cluster", "run on a cluster's master node over SSH instead (see docs/ssh.md)"
    )
    where = cluster.add_mutually_exclusive_group()
    where.add_argument("--host", help="the master node: a name, an address or a ~/.ssh/config Host alias")
    where.add_argument(
        "--cluster-id", metavar="j-XXXX",
        help="an EMR cluster: its master's address comes from the EMR API (waits while it starts)",
    )  # fmt: skip
    cluster.add_argument(
        "--region",
        help="AWS region of --cluster-id or --deployed (default: AWS_REGION, else AWS_DEFAULT_REGION)",
    )
    cluster.add_argument("--user", help="SSH login (default: User from ~/.ssh/config, else hadoop)")
    cluster.add_argument("--port", type=int, help="SSH port (default: Port from ~/.ssh/config, else 22)")
    cluster.add_argument(
        "--key", type=Path, metavar="FILE",
        help=f"private key (default: ${PRIVATE_KEY_VARIABLE}, IdentityFile from ~/.ssh/config,"
        " ssh-agent, ~/.ssh/id_*)",
    )  # fmt: skip
    cluster.add_argument(
        "--known-hosts", type=Path, metavar="FILE",
        help="known host keys, read before ~/.ssh/known_hosts (and where --accept-new-host-key records)",
    )  # fmt: skip
    cluster.add_argument(
        "--accept-new-host-key", action="store_true",
        help="trust a host key seen for the first time and record it (a changed key is always refused)",
    )  # fmt: skip
    cluster.add_argument(
        "--remote-dir", default=DEFAULT_REMOTE_DIR, metavar="DIR",
        help="where run directories go on the master (default: ~/.nightshift/runs)",
    )  # fmt: skip
    cluster.add_argument(
        "--keep-remote", action="store_true", help="keep the run directory on the master after the run"
    )
    cluster.add_argument(
        "--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT, metavar="SECONDS",
        help="give up connecting after this long (default: 10)",
    )  # fmt: skip
    cluster.add_argument(
        "--reconnect-timeout", type=float, default=DEFAULT_RECONNECT_TIMEOUT, metavar="SECONDS",
        help="after a dropped connection, keep reconnecting this long (default: 300)",
    )  # fmt: skip


def _add_deployed_options(parser: argparse.ArgumentParser) -> None:
    deployed = parser.add_argument_group(
        "deployed", "the runs of the pipeline deployed in AWS (the stack of app.py; see README, Production)"
    )
    deployed.add_argument(
        "--deployed", action="store_true",
        help="alone: the status of the deployed pipeline's latest and today's runs (or --run-date's); it"
        " starts nothing",
    )  # fmt: skip
    action = deployed.add_mutually_exclusive_group()
    action.add_argument(
        "--start", action="store_true",
        help="start the run of --run-date (default: today; a range backfills) and follow it; Ctrl-C detaches",
    )  # fmt: skip
    action.add_argument(
        "--follow", action="store_true",
        help="attach to the run of --run-date, or to the running (else the latest) run",
    )  # fmt: skip
    action.add_argument(
        "--stop", action="store_true",
        help="stop the run of --run-date (or the running one); returns when its cluster is gone",
    )  # fmt: skip
    action.add_argument(
        "--check", action="store_true",
        help="check the deployment on the account (read-only, free): IAM, EMR, network, key pair, data,"
        " catalog, alerts, and that the local folder is the deployed one; one line per check",
    )  # fmt: skip
    action.add_argument(
        "--canary", action="store_true",
        help="prove the deployment end to end (minutes, cents): Nightshift's built-in canary (a table written"
        " and read back in the pipeline's catalog, and a check) through this pipeline's state machine on a"
        " master-only cluster; prints its modelled cost first; exit 0 when it succeeded and its cluster is"
        " terminated; with --dry-run: what it would do",
    )  # fmt: skip
    action.add_argument(
        "--history", nargs="?", const=DEFAULT_HISTORY, metavar="N",
        help=f"list the last N runs (default: {DEFAULT_HISTORY}); with --run-date, those of its dates",
    )  # fmt: skip
    deployed.add_argument(
        "--rerun", action="store_true",
        help="start a date that already ran again (as <pipeline>-<date>-r2, -r3, ...)",
    )  # fmt: skip
    deployed.add_argument(
        "--as-deployed", action="store_true",
        help="start even though the local folder differs from the deployed one (the deployed files run)",
    )  # fmt: skip
    deployed.add_argument(
        "--yes", action="store_true",
        help="start a date after the next scheduled run without asking (needed when not on a terminal)",
    )  # fmt: skip
    deployed.add_argument(
        "--concurrency", type=int, metavar="N",
        help="runs of a range at once (default: max_concurrent_runs of pipeline.toml, else 1)",
    )  # fmt: skip
    deployed.add_argument(
        "--one-cluster-per-date", action="store_true",
        help="a range of dates: each date its own execution and cluster, as before shared clusters"
        " (default: shared clusters, each running a contiguous batch of the dates one after another)",
    )  # fmt: skip
    deployed.add_argument(
        "--stack", metavar="NAME", help="the stack to use when the account holds several deployments"
    )


def parse_variables(pairs: list[str]) -> dict[str, str]:
    variables: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not VARIABLE_NAME.match(name):
            raise UsageError(f"--var {pair!r}: expected NAME=VALUE with NAME of letters, digits, '_'")
        if name in RESERVED_VARIABLES:
            raise UsageError(f"--var {pair!r}: set {name} with --run-date")
        problem = variable_problem(name, value)
        if problem is not None:
            raise UsageError(f"--var {pair!r}: {problem}")
        variables[name] = value
    return variables


def _plan_options(args: argparse.Namespace, *, local: bool, overrides: dict[str, str]) -> PlanOptions:
    """The flags that shape a run's plans (runner.plans), from the command line."""
    return PlanOptions(
        run_date=args.run_date,
        run_id=args.run_id,
        local=local,
        overrides=overrides,
        engine=Engine(args.engine) if args.engine else None,
        from_stage=args.from_stage,
        checks_only=args.checks_only,
        checks_stage=args.stage,
        dry_run=args.dry_run,
        strict=args.strict,
    )


def _history_count(args: argparse.Namespace) -> None:
    """--history's optional N: a PATH typed right after it (`--history sql/example/`) is the PATH."""
    value = args.history
    if value is None or isinstance(value, int):
        return
    try:
        args.history = int(value)
    except ValueError:
        if args.path is not None:
            raise UsageError(f"--history {value!r}: expected a number of runs") from None
        args.path, args.history = Path(value), DEFAULT_HISTORY


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output: Output = (
        JsonOutput(sys.stdout.buffer) if args.log_format == "json"
        else TextOutput(sys.stdout.buffer, sys.stderr.buffer)
    )  # fmt: skip
    return exit_code_of(lambda: _run(args, output), output)


def exit_code_of(command: Callable[[], int], output: Output) -> int:
    """Run `command`: its exit code, or a NightshiftError's line and code (the one place that maps them)."""
    try:
        return command()
    except NightshiftError as error:
        output.notice(f"error: {error}")
        return error.exit_code


def _remote_executor(args: argparse.Namespace, output: Output) -> Executor:
    # Imported here: a local run does not pay for paramiko (or boto3).
    from runner.remote import RemoteSettings, SSHExecutor  # noqa: PLC0415

    # On Fargate the key arrives as an ECS secret in the environment; --key wins over it.
    key_material = None if args.key else os.environ.get(PRIVATE_KEY_VARIABLE) or None
    if args.key is not None and not args.key.expanduser().is_file():
        raise UsageError(f"--key {args.key}: no such file")
    settings = RemoteSettings(
        host=args.host,
        cluster_id=args.cluster_id,
        user=args.user,
        port=args.port,
        key_file=args.key,
        key_material=key_material,
        # The locale travels as with OpenSSH's default SendEnv, so the engine decodes UTF-8 the same.
        send_env={name: value for name, value in os.environ.items() if name.startswith(("LANG", "LC_"))},
        known_hosts=args.known_hosts,
        accept_new_host_key=args.accept_new_host_key,
        remote_dir=args.remote_dir,
        keep_remote=args.keep_remote,
        connect_timeout=args.connect_timeout,
        reconnect_timeout=args.reconnect_timeout,
        # botocore reads only AWS_DEFAULT_REGION; ECS and most shells set AWS_REGION.
        region=args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )
    return SSHExecutor(settings)


def _local_executor(args: argparse.Namespace, spark: LocalSpark) -> LocalExecutor:
    # Imported here: the image that runs steps on a cluster never loads the warm engine.
    from runner.local.warm.steps import WarmSteps  # noqa: PLC0415

    minutes, given = args.engine_idle_minutes, "--engine-idle-minutes"
    if minutes is None:
        text = os.environ.get(IDLE_MINUTES_VARIABLE) or ""
        given = f"${IDLE_MINUTES_VARIABLE}={text!r}"
        try:
            minutes = float(text) if text else DEFAULT_IDLE_MINUTES
        except ValueError:
            minutes = math.nan
    if not (0 < minutes < math.inf):
        raise UsageError(f"{given}: expected a positive number of minutes")
    return LocalExecutor(spark, warm=WarmSteps(spark, cold=args.cold, idle_minutes=minutes))


#: Where a flag applies: here (the local engine), on a cluster (--host, --cluster-id), deployed
#: (--deployed), or only when starting deployed runs (--deployed --start). The one table every
#: refusal of a flag given in the wrong place is read from; a flag not in it applies everywhere.
HERE, CLUSTER, DEPLOYED, STARTING = "here", "cluster", "deployed", "starting"


@dataclass(frozen=True)
class FlagModes:
    """A flag, whether the command line gave it, and the modes it applies in."""

    name: str
    given: Callable[[argparse.Namespace], bool]
    modes: frozenset[str]


def _flag(name: str, given: Callable[[argparse.Namespace], bool], *modes: str) -> FlagModes:
    return FlagModes(name, given, frozenset(modes))


FLAG_MODES = (
    _flag("--host", lambda a: a.host is not None, CLUSTER),
    _flag("--cluster-id", lambda a: a.cluster_id is not None, CLUSTER),
    _flag("--region", lambda a: a.region is not None, CLUSTER, DEPLOYED, STARTING),
    _flag("--user", lambda a: a.user is not None, CLUSTER),
    _flag("--port", lambda a: a.port is not None, CLUSTER),
    _flag("--key", lambda a: a.key is not None, CLUSTER),
    _flag("--known-hosts", lambda a: a.known_hosts is not None, CLUSTER),
    _flag("--accept-new-host-key", lambda a: a.accept_new_host_key, CLUSTER),
    _flag("--remote-dir", lambda a: a.remote_dir != DEFAULT_REMOTE_DIR, HERE, CLUSTER),
    _flag("--keep-remote", lambda a: a.keep_remote, CLUSTER),
    _flag("--connect-timeout", lambda a: a.connect_timeout != DEFAULT_CONNECT_TIMEOUT, HERE, CLUSTER),
    _flag("--reconnect-timeout", lambda a: a.reconnect_timeout != DEFAULT_RECONNECT_TIMEOUT, HERE, CLUSTER),
    _flag("--state-dir", lambda a: a.state_dir != DEFAULT_STATE_DIR, HERE),
    _flag("--reset", lambda a: a.reset, HERE),
    _flag("--cold", lambda a: a.cold, HERE),
    _flag("--stop-engine", lambda a: a.stop_engine, HERE),
    _flag("--engine-idle-minutes", lambda a: a.engine_idle_minutes is not None, HERE),
    _flag("--var", lambda a: bool(a.var), HERE, CLUSTER),
    _flag("--engine", lambda a: a.engine is not None, HERE, CLUSTER),
    _flag("--execute", lambda a: a.execute is not None, HERE, CLUSTER),
    _flag("--dry-run", lambda a: a.dry_run, HERE, CLUSTER),
    _flag("--wait", lambda a: a.wait, HERE, CLUSTER),
    _flag("--no-wait", lambda a: a.no_wait, HERE, CLUSTER),
    _flag("--run-id", lambda a: a.run_id is not None, HERE, CLUSTER),
    _flag("--step-retries", lambda a: a.step_retries, HERE, CLUSTER),
    _flag("--start", lambda a: a.start, DEPLOYED, STARTING),
    _flag("--follow", lambda a: a.follow, DEPLOYED),
    _flag("--stop", lambda a: a.stop, DEPLOYED),
    _flag("--check", lambda a: a.check, DEPLOYED),
    _flag("--canary", lambda a: a.canary, DEPLOYED),
    _flag("--history", lambda a: a.history is not None, DEPLOYED),
    _flag("--rerun", lambda a: a.rerun, STARTING),
    _flag("--from-stage", lambda a: a.from_stage is not None, HERE, CLUSTER, STARTING),
    _flag("--concurrency", lambda a: a.concurrency is not None, STARTING),
    _flag("--as-deployed", lambda a: a.as_deployed, STARTING),
    _flag("--yes", lambda a: a.yes, STARTING),
    _flag("--one-cluster-per-date", lambda a: a.one_cluster_per_date, STARTING),
    _flag("--stack", lambda a: a.stack is not None, DEPLOYED, STARTING),
)


def _given(args: argparse.Namespace, applies: Callable[[frozenset[str]], bool]) -> list[str]:
    """The flags given whose modes `applies` picks, in FLAG_MODES' order."""
    return [flag.name for flag in FLAG_MODES if applies(flag.modes) and flag.given(args)]


def _check_flag_modes(args: argparse.Namespace) -> None:
    """Every flag given where it applies (FLAG_MODES); a refusal names the flags and where they go."""
    deployed = {DEPLOYED, STARTING}
    if not args.deployed:
        given = _given(args, lambda modes: modes <= deployed)
        if given:
            raise UsageError(f"{', '.join(given)}: only with --deployed")
    else:
        given = _given(args, lambda modes: not modes & deployed)
        if args.canary or (args.start and args.run_date is not None and ".." in args.run_date):
            # The canary's dry run: what it would start (runner/deployed/canary.py); a range's: its
            # batches and both plans' modelled cost (runner/deployed/backfill.py).
            given = [flag for flag in given if flag != "--dry-run"]
        if given:
            raise UsageError(
                f"{', '.join(given)}: not with --deployed (a deployed run has the variables, engine and"
                " cluster it was deployed with, and its execution name as run id)"
            )
        # --checks-only starts a checks-only run.
        given = (
            []
            if args.start or args.checks_only
            else _given(args, lambda modes: DEPLOYED not in modes and STARTING in modes)
        )
        if given:
            raise UsageError(f"{', '.join(given)}: only when starting runs (add --start)")
        return
    if args.host or args.cluster_id:
        if _given(args, lambda modes: modes == {HERE}):
            raise UsageError(
                "--reset and --state-dir apply to the local engine only (not with a cluster),"
                " as do --cold, --stop-engine and --engine-idle-minutes"
            )
        return
    given = _given(args, lambda modes: CLUSTER in modes and HERE not in modes)
    if given:
        also = " (--region also with --deployed)" if "--region" in given else ""
        raise UsageError(f"{', '.join(given)}: only with --host or --cluster-id{also}")


def _check_target_options(args: argparse.Namespace) -> None:
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: expected 1 to 65535")
    if args.connect_timeout <= 0 or args.reconnect_timeout < 0:
        raise UsageError("--connect-timeout must be positive and --reconnect-timeout not negative")


def _enter_project(args: argparse.Namespace) -> None:
    """Work from the project root (runner.model.project_root), whatever folder the command was typed in.

    Paths the user typed (PATH, --state-dir) keep meaning what they meant where they were typed.
    """
    given = args.path.absolute() if args.path is not None and args.path.exists() else None
    start = Path.cwd() if given is None else given if given.is_dir() else given.parent
    root = project_root(start)
    if root is None or root == Path.cwd():
        return
    if given is not None:
        args.path = given
    if args.state_dir != DEFAULT_STATE_DIR:
        args.state_dir = args.state_dir.absolute()
    os.chdir(root)


def _list_pipelines(args: argparse.Namespace, folders: list[Path], output: Output) -> int:
    """PATH holds pipeline folders: their table on stdout; with anything to do but list, a usage error."""
    sys.stdout.write("".join(line + "\n" for line in listing_lines(folders)))
    sys.stdout.flush()
    example = shlex.quote(str(args.path / folders[0].name)) + "/"
    defaults = vars(build_parser().parse_args([]))
    listing_only = {"path", "log_format", "state_dir"}
    given = [
        name for name, value in vars(args).items() if name not in listing_only and value != defaults[name]
    ]
    if given:
        raise UsageError(
            f"{args.path}: a folder of pipelines, not a pipeline; nothing ran: give one of them,"
            f" such as {example}"
        )
    count = f"{len(folders)} pipeline{'s' if len(folders) > 1 else ''}"
    output.notice(f"{args.path}: a folder of {count}; run one: {_prog()} {example}")
    return 0


def _run(args: argparse.Namespace, output: Output) -> int:
    _history_count(args)
    if args.execute is not None:
        _check_statement_options(args)
    _check_flag_modes(args)
    if args.deployed:
        # Imported here: only the deployed mode needs boto3 (and a local run must not pay for it).
        from runner.deployed.cli import check_deployed_options, run_deployed_command  # noqa: PLC0415

        check_deployed_options(args)
    _check_target_options(args)
    folders = pipeline_folders(args.path) if args.path is not None else []
    if folders:
        return _list_pipelines(args, folders, output)
    if args.deployed:
        return run_deployed_command(args, output)
    if not (args.host or args.cluster_id):
        _enter_project(args)
    spark = LocalSpark(args.state_dir)
    if args.stop_engine:
        from runner.local.warm.client import stop_engine  # noqa: PLC0415 - the cluster path never loads it

        if stop_engine(spark.state_dir):
            output.notice(f"warm engine of {spark.state_dir} ended")
        if args.path is None and not args.reset:
            return 0
    if args.reset:
        spark.reset()
        output.notice(f"local warehouse and metastore in {spark.state_dir} deleted")
        if args.path is None:
            return 0
    if args.path is None:
        raise UsageError("PATH is required: a step file or a pipeline folder")
    overrides = parse_variables(args.var)
    pipeline = load_pipeline(args.path)
    if args.execute is not None:
        return _run_statement(args, pipeline, spark, output)
    whole = args.path.is_dir()
    is_local = not (args.host or args.cluster_id)
    planned = plan_runs(pipeline, _plan_options(args, local=is_local, overrides=overrides), whole=whole)
    plans, dates, undefined = planned.plans, planned.dates, planned.undefined
    if args.step_retries:
        if args.checks_only:
            raise UsageError("--step-retries: not with --checks-only (data checks are never retried)")
        if args.keep_remote:
            # A retry finds the kept run directory of the same run id and step, and reattaches to it.
            raise UsageError(
                "--step-retries: not with --keep-remote (a retry would reattach to the kept attempt)"
            )
        plans = [replace(plan, step_retries=True) for plan in plans]
    one_step = pipeline.steps[0].name if len(pipeline.steps) == 1 else ""
    running = [step for stage in pipeline.stages if not plans[0].skips(stage) for step in stage.steps]
    output.begin(pipeline.name, plans[0].run_id, one_step, run_date=dates[0] if len(dates) == 1 else "")
    for line in pipeline.config.notices:
        output.notice(line)
    executor = _local_executor(args, spark) if is_local else _remote_executor(args, output)

    if args.dry_run:
        output.notice(
            run_header(pipeline, dates, given=args.run_date is not None, variables=plans[0].variables)
        )
        for problem in undefined:
            output.notice(f"warning: {problem}")
        _dry_run(plans, executor, output, args)
        return 0
    if isinstance(executor, LocalExecutor):
        checks = {Engine.SPARK_SQL} if pipeline.checks else set()
        executor.check({plan.engine(step) for plan in plans[:1] for step in pipeline.steps} | checks)
    # Checks read tables the pipeline made, not its inputs: --checks-only does not wait for them.
    gate = gate_mode(wait=args.wait, no_wait=args.no_wait or args.checks_only, whole_pipeline=whole)
    inputs = pipeline.config.inputs
    if is_local and gate != "skip" and inputs is not None:
        # An input path the local engine cannot check (s3://) is refused here, in one line.
        LocalInputs().missing(input_paths(inputs, dict(plans[0].variables)), StopRequest())
    # After the checks that refuse to start (no Java, such an input): a refusal stays one line.
    output.notice(run_header(pipeline, dates, given=args.run_date is not None, variables=plans[0].variables))
    for problem in undefined:
        output.notice(f"warning: {problem}")
    stop = StopRequest()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stop.trigger(number))
    if len(plans) > 1:
        code = run_planned_range(plans, executor, output, stop, whole=whole, gate=gate)
    else:
        report = run_one_date(plans[0], executor, output, stop, whole=whole, gate=gate)
        if stop.is_set():
            output.notice(f"stopped by signal {stop.signum}")
        code = report.exit_code
    # Only a run with SQL (steps or checks) may have started the engine: a bash run says nothing of it.
    sql = bool(pipeline.checks) or any(plans[0].engine(step).is_sql for step in running)
    if isinstance(executor, LocalExecutor) and sql:
        _engine_stays_up(executor, args, output)
    return code


def _where(args: argparse.Namespace, engine: Engine) -> str:
    """Where a step of `engine` would run, and whether warm or cold, in the words of a run's notices."""
    if args.host or args.cluster_id:
        cluster = f"--host {args.host}" if args.host else f"--cluster-id {args.cluster_id}"
        return f"{engine.value} on the cluster ({cluster}) over SSH"
    if engine is Engine.BASH:
        return "bash here, a process of its own"
    if not engine.is_sql:
        return f"{engine.value} here, cold: a JVM of its own (a warm engine ends first)"
    hiveql = " (here: Spark SQL's HiveQL support)" if engine is Engine.HIVE else " here"
    if args.cold:
        return f"{engine.value}{hiveql}, cold (--cold): a JVM of its own"
    return f"{engine.value}{hiveql}, warm: the engine of {args.state_dir} (started if none is up)"


def _dry_run(plans: list[RunPlan], executor: Executor, output: Output, args: argparse.Namespace) -> None:
    """Each date's stages in order: a label per step (stage, where, warm or cold), its command, its checks.

    The labels go where the runner's lines go and the commands to stdout, so `2>/dev/null` leaves
    the commands alone; secret-looking values are masked in both.
    """
    for number, plan in enumerate(plans, 1):
        run_date = plan.variables["run_date"]
        if len(plans) > 1:
            output.notice(f"run date {run_date} ({number} of {len(plans)}), run id {plan.run_id}:")
        masked = {name: MASK if SECRET_NAME.search(name) else value for name, value in plan.variables.items()}
        for stage in plan.pipeline.stages:
            where = "" if stage.number is None else f"stage {stage.number}, "
            if plan.skips(stage):
                names = ", ".join(step.file_name for step in stage.steps)
                output.notice(f"stage {stage.number} skipped (--from-stage {plan.from_stage}): {names}")
                continue
            for step in stage.steps:
                invocation = replace(plan.invocation(step), variables=masked)
                output.notice(f"{where}step {step.file_name}: {_where(args, invocation.engine)}")
                sys.stdout.write(executor.describe(invocation) + "\n")
                sys.stdout.flush()
            for check in stage.checks:
                output.notice(f"{where}check {check.label} ({check.severity.value}), after the stage's steps")


def _engine_stays_up(executor: LocalExecutor, args: argparse.Namespace, output: Output) -> None:
    """After a local run: one line saying the warm engine stays up, and how to end it."""
    from runner.local.warm.client import engine_alive  # noqa: PLC0415 - the cluster path never loads it
    from runner.local.warm.steps import WarmSteps  # noqa: PLC0415

    if not isinstance(executor.warm, WarmSteps) or not engine_alive(executor.spark.state_dir):
        return
    state = "" if args.state_dir == DEFAULT_STATE_DIR else f" --state-dir {shlex.quote(str(args.state_dir))}"
    minutes = f"{executor.warm.idle_seconds / 60:g}"
    output.notice(
        f"the warm engine stays up for the next run (it ends after {minutes} min without a step);"
        f" end it now: {_prog()}{state} --stop-engine"
    )


#: Flags of a pipeline run that a statement has no use for: -e refuses them rather than ignore them.
_NOT_WITH_STATEMENT = (
    ("--deployed", lambda a: a.deployed),
    ("--from-stage", lambda a: a.from_stage is not None),
    ("--checks-only", lambda a: a.checks_only),
    ("--stage", lambda a: a.stage is not None),
    ("--dry-run", lambda a: a.dry_run),
    ("--wait", lambda a: a.wait),
    ("--no-wait", lambda a: a.no_wait),
    ("--step-retries", lambda a: a.step_retries),
)


def _check_statement_options(args: argparse.Namespace) -> None:
    """-e runs statements in one pipeline's state: one date, a folder, no flag of a whole run."""
    given = [name for name, is_given in _NOT_WITH_STATEMENT if is_given(args)]
    if given:
        cluster = " (on a deployed run's cluster: --cluster-id j-...)" if args.deployed else ""
        raise UsageError(f"-e: not with {', '.join(given)}: it runs the statements and nothing else{cluster}")
    if args.run_date is not None and ".." in args.run_date:
        raise UsageError(f"-e: one run date, not a range ({args.run_date})")
    if not args.execute.strip():
        raise UsageError("-e: no statement given")
    if args.path is None:
        raise UsageError("-e: PATH is required: the pipeline folder whose variables and tables it uses")
    if args.path.is_file():
        raise UsageError(f"-e: {args.path} is a step file; give its pipeline folder")


def _run_statement(args: argparse.Namespace, pipeline: Pipeline, spark: LocalSpark, output: Output) -> int:
    """-e: the statements as a step of their own, in the pipeline's variables, state and engine.

    They reach the engine as a file it reads, as a step's do (no shell, no quoting); its stdout
    passes through byte for byte and its exit code is the run's.
    """
    is_local = not (args.host or args.cluster_id)
    plan, engine = plan_statement(
        pipeline, _plan_options(args, local=is_local, overrides=parse_variables(args.var))
    )
    run_date = plan.variables["run_date"]
    with tempfile.TemporaryDirectory(prefix="nightshift-e-") as folder:
        path = Path(folder) / STATEMENT_FILE
        # The bytes as typed: argv's undecodable bytes come back through surrogateescape.
        path.write_bytes(args.execute.encode("utf-8", "surrogateescape"))
        # There is no hive here: Spark SQL's HiveQL support, as for a .hql step.
        step = Step(path, None, Engine.SPARK_SQL if is_local else engine)
        undefined = statement_undefined(step, plan, strict=args.strict)
        executor = _local_executor(args, spark) if is_local else _remote_executor(args, output)
        if isinstance(executor, LocalExecutor):
            executor.check({step.engine})
        output.begin(pipeline.name, plan.run_id, step.name, run_date=run_date)
        for line in pipeline.config.notices:
            output.notice(line)
        output.notice(
            run_header(pipeline, [run_date], given=args.run_date is not None, variables=plan.variables)
        )
        instead = (
            "; not hive: there is no hive here (on a cluster: hive)"
            if is_local and engine is Engine.HIVE
            else ""
        )
        output.notice(f"-e on {_where(args, step.engine)}{instead}")
        for problem in undefined:
            output.notice(f"warning: {statement_problem(problem, step)}")
        stop = StopRequest()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, _frame: stop.trigger(number))
        invocation = plan.invocation(step)
        step_output = output.for_step(pipeline.name, step.name, plan.run_id, "-e")
        try:
            result = executor.run(invocation, step_output, stop)
        finally:
            step_output.close()
    if stop.is_set():
        output.notice(f"stopped by signal {stop.signum}")
    elif result.outcome is not Outcome.FINISHED:
        output.notice(f"-e: {result.outcome} (exit {result.exit_code})")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
