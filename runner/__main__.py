"""Command line of the runner: parse argv, wire executor and output, turn results into exit codes."""

from __future__ import annotations

import argparse
import math
import os
import re
import secrets
import signal
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NoReturn
from zoneinfo import ZoneInfo

from runner.config import RESERVED_VARIABLES, VARIABLE_NAME, variable_problem
from runner.errors import NightshiftError, UsageError
from runner.execution import Executor, RunPlan, StopRequest, run_pipeline, summary_lines
from runner.local import LocalExecutor, LocalSpark
from runner.model import Engine, Pipeline, load_pipeline
from runner.output import JsonOutput, Output, TextOutput

PROG = "python -m runner"
EXIT_USAGE = 2
DEFAULT_STATE_DIR = Path(".nightshift")
PRIVATE_KEY_VARIABLE = "NIGHTSHIFT_SSH_PRIVATE_KEY"
IDLE_MINUTES_VARIABLE = "NIGHTSHIFT_ENGINE_IDLE_MINUTES"
DEFAULT_IDLE_MINUTES = 15.0

DESCRIPTION = """\
Run a Nightshift step or pipeline.

  PATH is a step file   run that one step          python -m runner sql/example/20_sessions.hql
  PATH is a folder      run the whole pipeline,    python -m runner sql/example/
                        stage by stage (10_*, then 20_*, ...)

By default steps run on the embedded local engine (Spark SQL from pyspark), whose warehouse and
metastore live in --state-dir, so a later step sees the tables an earlier one made. With --host
or --cluster-id they run on a cluster over SSH: the file is uploaded and run detached, its output
streamed back live, surviving dropped connections (see docs/ssh.md).
.sql runs on spark-sql (or the pipeline's default_engine), .hql on hive (locally: Spark SQL's
HiveQL support), .py on spark-submit, .sh on bash. SQL steps read variables as ${name} or
${hivevar:name}; .py and .sh steps get them as environment variables. run_date is always set.

stdout and stderr of each step pass through unchanged, line by line; the runner's own messages
go to stderr prefixed 'nightshift:'. Exit code: the failing step's own; 2 for a usage error;
124 for a step timeout; 130/143 after SIGINT/SIGTERM (the step is stopped first); 255 when the
cluster cannot be reached or authenticated.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", type=Path, help="a step file or a pipeline folder")
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE",
        help="set a variable (repeatable); overrides pipeline.toml",
    )  # fmt: skip
    parser.add_argument(
        "--run-date", metavar="YYYY-MM-DD",
        help="the run_date variable (default: today in the pipeline's schedule time zone,"
        " or in UTC when it has no schedule)",
    )  # fmt: skip
    parser.add_argument(
        "--engine", choices=[e.value for e in Engine],
        help="run on this engine instead of the one the extension picks"
        " (for a folder: SQL engines only, applied to .sql and .hql steps)",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true", help="print the command lines that would run; run nothing"
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text",
        help="text (default), or one JSON object per output line for CloudWatch Logs Insights",
    )  # fmt: skip
    parser.add_argument("--run-id", help="identifies this run in JSON logs (default: generated)")
    local = parser.add_argument_group("local engine")
    local.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR,
        help="folder of the local warehouse and metastore (default: .nightshift)",
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
        "--region", help="AWS region of --cluster-id (default: AWS_REGION, else AWS_DEFAULT_REGION)"
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
        "--remote-dir", default="~/.nightshift/runs", metavar="DIR",
        help="where run directories go on the master (default: ~/.nightshift/runs)",
    )  # fmt: skip
    cluster.add_argument(
        "--keep-remote", action="store_true", help="keep the run directory on the master after the run"
    )
    cluster.add_argument(
        "--connect-timeout", type=float, default=10.0, metavar="SECONDS",
        help="give up connecting after this long (default: 10)",
    )  # fmt: skip
    cluster.add_argument(
        "--reconnect-timeout", type=float, default=300.0, metavar="SECONDS",
        help="after a dropped connection, keep reconnecting this long (default: 300)",
    )  # fmt: skip


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


def parse_run_date(text: str | None, pipeline: Pipeline) -> str:
    if text is None:
        schedule = pipeline.config.schedule
        zone = ZoneInfo(schedule.timezone) if schedule else UTC
        return datetime.now(zone).date().isoformat()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise UsageError(f"--run-date {text!r}: expected YYYY-MM-DD")
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as error:
        raise UsageError(f"--run-date {text!r}: {error}") from error


def _new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output: Output = (
        JsonOutput(sys.stdout.buffer) if args.log_format == "json"
        else TextOutput(sys.stdout.buffer, sys.stderr.buffer)
    )  # fmt: skip
    try:
        return _run(args, output)
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
    from runner.warm.steps import WarmSteps  # noqa: PLC0415

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
    return LocalExecutor(spark, warm=WarmSteps(spark.state_dir, cold=args.cold, idle_minutes=minutes))


def _check_target_options(args: argparse.Namespace) -> None:
    remote = bool(args.host or args.cluster_id)
    local_only = args.reset or args.state_dir != DEFAULT_STATE_DIR or args.cold or args.stop_engine
    if remote and (local_only or args.engine_idle_minutes is not None):
        raise UsageError(
            "--reset and --state-dir apply to the local engine only (not with a cluster),"
            " as do --cold, --stop-engine and --engine-idle-minutes"
        )
    cluster_only = {
        "--region": args.region is not None,
        "--user": args.user is not None,
        "--port": args.port is not None,
        "--key": args.key is not None,
        "--known-hosts": args.known_hosts is not None,
        "--accept-new-host-key": args.accept_new_host_key,
        "--keep-remote": args.keep_remote,
    }
    given = [flag for flag, used in cluster_only.items() if used]
    if given and not remote:
        raise UsageError(f"{', '.join(given)}: only with --host or --cluster-id")
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: expected 1 to 65535")
    if args.connect_timeout <= 0 or args.reconnect_timeout < 0:
        raise UsageError("--connect-timeout must be positive and --reconnect-timeout not negative")


def _run(args: argparse.Namespace, output: Output) -> int:
    _check_target_options(args)
    spark = LocalSpark(args.state_dir)
    if args.stop_engine:
        from runner.warm.client import stop_engine  # noqa: PLC0415 - the cluster path never loads it

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
    whole = args.path.is_dir()
    if whole and args.engine and not Engine(args.engine).is_sql:
        raise UsageError(f"--engine {args.engine}: only spark-sql or hive apply to a whole folder")
    is_local = not (args.host or args.cluster_id)
    plan = RunPlan.make(
        pipeline,
        run_date=parse_run_date(args.run_date, pipeline),
        run_id=args.run_id or _new_run_id(),
        local=is_local,
        overrides=overrides,
        engine_override=Engine(args.engine) if args.engine else None,
        whole_pipeline=whole,
    )
    output.begin(pipeline.name, plan.run_id, pipeline.steps[0].name if len(pipeline.steps) == 1 else "")
    executor = _local_executor(args, spark) if is_local else _remote_executor(args, output)

    if args.dry_run:
        lines = [executor.describe(plan.invocation(step)) for step in pipeline.steps]
        sys.stdout.write("".join(line + "\n" for line in lines))
        return 0
    if isinstance(executor, LocalExecutor):
        executor.check({plan.engine(step) for step in pipeline.steps})

    stop = StopRequest()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: stop.trigger(number))
    report = run_pipeline(plan, executor, output, stop)
    if whole:
        for line in summary_lines(report):
            output.notice(line)
    if stop.is_set():
        output.notice(f"stopped by signal {stop.signum}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
