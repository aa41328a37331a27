"""CLI parsing: variables, run dates, the engine override and which flags go together, starting nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from moto import mock_aws

from runner.__main__ import build_parser, main, parse_variables
from runner.dates import parse_run_dates
from runner.deployed import DeployedRequest
from runner.deployed.cli import deployed_request
from runner.errors import UsageError
from runner.execution import RunPlan
from runner.model import Engine, load_pipeline
from tests.conftest import ROOT


def test_variables_keep_everything_after_the_first_equals_sign() -> None:
    assert parse_variables(["a=1", "path=s3://b/k=v", "empty=", "a=2"]) == {
        "a": "2",
        "path": "s3://b/k=v",
        "empty": "",
    }


@pytest.mark.parametrize("pair", ["novalue", "=x", "1a=x", "a-b=x", "run_date=2026-01-01"])
def test_malformed_variables_are_usage_errors(pair: str) -> None:
    with pytest.raises(UsageError, match="--var"):
        parse_variables([pair])


def test_run_date_defaults_to_today_in_the_schedule_time_zone(tmp_path: Path) -> None:
    (tmp_path / "pipeline.toml").write_text(
        "[schedule]\ncron = '0 3 * * *'\ntimezone = 'Pacific/Kiritimati'\n"
    )
    (tmp_path / "10_a.sql").write_text("SELECT 1;")
    pipeline = load_pipeline(tmp_path)
    # UTC+14: on most of every UTC day, Kiritimati's date is already tomorrow's.
    assert parse_run_dates(None, pipeline) == [
        datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    ]
    (tmp_path / "pipeline.toml").unlink()
    assert parse_run_dates(None, load_pipeline(tmp_path)) == [datetime.now(UTC).date().isoformat()]


@pytest.mark.parametrize("text", ["2026-2-3", "20260203", "2026-02-30", "yesterday"])
def test_bad_run_dates_are_usage_errors(tmp_path: Path, text: str) -> None:
    (tmp_path / "job.sql").write_text("SELECT 1;")
    with pytest.raises(UsageError, match="--run-date"):
        parse_run_dates(text, load_pipeline(tmp_path / "job.sql"))


def test_engine_override_applies_to_sql_steps_of_a_folder_only(tmp_path: Path) -> None:
    for name in ("10_a.sql", "20_b.sh"):
        (tmp_path / name).write_text("x\n")
    pipeline = load_pipeline(tmp_path)
    sql, bash = pipeline.steps

    def engine(step, override, *, whole_pipeline):
        plan = RunPlan.make(
            pipeline, run_date="2026-01-01", run_id="r", local=True, overrides={},
            engine_override=override, whole_pipeline=whole_pipeline,
        )  # fmt: skip
        return plan.invocation(step).engine

    assert engine(sql, Engine.HIVE, whole_pipeline=True) is Engine.HIVE
    assert engine(bash, Engine.HIVE, whole_pipeline=True) is Engine.BASH
    assert engine(bash, Engine.SPARK_SUBMIT, whole_pipeline=False) is Engine.SPARK_SUBMIT
    assert engine(sql, None, whole_pipeline=False) is Engine.SPARK_SQL


def test_run_date_wins_and_local_overrides_apply_only_locally(tmp_path: Path) -> None:
    (tmp_path / "pipeline.toml").write_text(
        '[variables]\nraw = "s3://b"\nx = "1"\n[variables.local]\nraw = "data"\n'
    )
    (tmp_path / "10_a.sql").write_text("SELECT 1;")
    pipeline = load_pipeline(tmp_path)
    local = RunPlan.make(pipeline, run_date="2026-01-02", run_id="r", local=True, overrides={"x": "2"})
    remote = RunPlan.make(pipeline, run_date="2026-01-02", run_id="r", local=False, overrides={})
    dates = {"run_date": "2026-01-02", "prev_date": "2026-01-01", "next_date": "2026-01-03"}
    dates |= {"run_date_nodash": "20260102", "prev_date_nodash": "20260101", "next_date_nodash": "20260103"}
    assert local.variables == {"raw": "data", "x": "2", **dates}
    assert remote.variables == {"raw": "s3://b", "x": "1", **dates}


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["sql/example/"])
    assert (args.log_format, args.dry_run, args.var, args.engine) == ("text", False, [], None)
    assert args.state_dir == Path(".nightshift")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in ("10_load.sh", "20_report.sh"):
        (tmp_path / name).write_text("touch ran\n")
    return tmp_path


REFUSED = {
    "deployed-only flags": (
        ["--follow", "--stack", "s"], "--follow, --stack: only with --deployed"
    ),
    "history without --deployed": (["--history"], "--history: only with --deployed"),
    "rerun without --deployed": (["--rerun", "--concurrency", "2"], "--rerun, --concurrency: only with --deployed"),
    "deployed and a host": (
        ["--deployed", "--host", "h"],
        "--host: not with --deployed (a deployed run has the variables, engine and cluster it was deployed"
        " with, and its execution name as run id)",
    ),
    "deployed and local-only flags": (
        ["--deployed", "--cluster-id", "j-1", "--cold", "--state-dir", "s", "--var", "a=1", "--dry-run"],
        "--cluster-id, --state-dir, --cold, --var, --dry-run: not with --deployed",
    ),
    "deployed and ssh flags": (
        ["--deployed", "--user", "u", "--connect-timeout", "3", "--run-id", "x"],
        "--user, --connect-timeout, --run-id: not with --deployed",
    ),
    "two actions": (["--deployed", "--follow", "--stop"], "argument --stop: not allowed with argument --follow"),
    "rerun while following": (
        ["--deployed", "--follow", "--rerun", "--from-stage", "20"],
        "--rerun, --from-stage: only when starting runs (add --start)",
    ),
    "concurrency with history": (
        ["--deployed", "--history", "3", "--concurrency", "2"],
        "--concurrency: only when starting runs",
    ),
    "rerun without start": (["--deployed", "--rerun"], "--rerun: only when starting runs (add --start)"),
    "check of a date": (["--deployed", "--check", "--run-date", "2025-06-01"], "--check looks at the deployment"),
    "history of no run": (["--deployed", "--history", "0"], "--history 0: expected 1 or more runs"),
    "history not a number": (["--deployed", "--history", "x"], "--history 'x': expected a number of runs"),
    "no concurrency": (["--deployed", "--start", "--concurrency", "0"], "--concurrency 0: expected 1 or more runs at once"),
    "more at once than the pipeline allows": (
        ["--deployed", "--start", "--concurrency", "2", "--run-date", "2025-06-01..2025-06-07"],
        "allows 1 run(s) at once (max_concurrent_runs in pipeline.toml; raise it there and deploy)",
    ),
    "deployed from-stage not a stage": (
        ["--deployed", "--start", "--from-stage", "30"], "has no stage 30 (its stages: 10, 20)"
    ),
    "deployed bad range": (
        ["--deployed", "--run-date", "2025-06-07..2025-06-01"],
        "--run-date '2025-06-07..2025-06-01': the range ends before it starts",
    ),
    "region alone": (["--region", "eu-west-1"], "--region: only with --host or --cluster-id (--region also with --deployed)"),
    "local from-stage not a stage": (["--from-stage", "15"], "has no stage 15 (its stages: 10, 20)"),
    "local bad range": (["--run-date", "2025-06-01..2025-6-2"], "--run-date '2025-06-01..2025-6-2': expected YYYY-MM-DD"),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_flags_that_do_not_go_together_are_one_line_usage_errors(
    folder: Path, case: tuple[list[str], str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    argv, message = case
    try:
        code = main([str(folder), *argv])
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code  # type: ignore[assignment]
    stdout, stderr = capsysbinary.readouterr()
    assert code == 2
    assert stdout == b""
    assert stderr.count(b"\n") == 1, stderr
    assert message in stderr.decode()
    assert not (folder / "ran").exists()


def test_from_stage_of_a_single_step_file_is_a_usage_error(
    folder: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main([str(folder / "20_report.sh"), "--from-stage", "20"]) == 2
    assert capsysbinary.readouterr().err == (
        b"nightshift: error: --from-stage 20: only for a pipeline folder, not a single step file\n"
    )
    assert main([str(folder / "20_report.sh"), "--deployed"]) == 2
    assert (
        capsysbinary.readouterr().err
        == (
            f"nightshift: error: --deployed: {folder / '20_report.sh'} is a step file; give its pipeline folder\n"
        ).encode()
    )


def deployed_argv(folder: Path, *argv: str) -> DeployedRequest:
    args = build_parser().parse_args([str(folder), "--deployed", *argv])
    return deployed_request(args, load_pipeline(folder))


def test_deployed_flags_become_the_request_for_runner_deployed(tmp_path: Path) -> None:
    (tmp_path / "pipeline.toml").write_text(
        "max_concurrent_runs = 3\n[schedule]\ncron = '0 3 * * *'\ntimezone = 'Pacific/Kiritimati'\n"
    )
    for name in ("10_load.sh", "20_report.sh", "30_publish.sh"):
        (tmp_path / name).write_text("true\n")
    today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    # Looking is the default; starting is explicit.
    assert deployed_argv(tmp_path) == DeployedRequest(action="status")
    assert deployed_argv(tmp_path, "--start") == DeployedRequest(action="start", run_dates=(today,))
    assert deployed_argv(tmp_path, "--run-date", "2025-06-01") == DeployedRequest(
        action="status", run_dates=("2025-06-01",)
    )
    assert deployed_argv(tmp_path, "--check") == DeployedRequest(action="check")
    assert deployed_argv(
        tmp_path, "--start", "--run-date", "2025-06-01..2025-06-03", "--concurrency", "3", "--stack", "Prod",
        "--region", "eu-west-1",
    ) == DeployedRequest(
        action="start", run_dates=("2025-06-01", "2025-06-02", "2025-06-03"), concurrency=3, stack="Prod",
        region="eu-west-1",
    )  # fmt: skip
    assert deployed_argv(
        tmp_path, "--start", "--run-date", "2025-06-01", "--rerun", "--from-stage", "30"
    ) == (DeployedRequest(action="start", run_dates=("2025-06-01",), rerun=True, from_stage=30))
    assert deployed_argv(tmp_path, "--start", "--as-deployed") == DeployedRequest(
        action="start", run_dates=(today,), as_deployed=True
    )
    assert deployed_argv(tmp_path, "--follow") == DeployedRequest(action="follow")
    assert deployed_argv(tmp_path, "--follow", "--run-date", "2025-06-01") == DeployedRequest(
        action="follow", run_dates=("2025-06-01",)
    )
    assert deployed_argv(tmp_path, "--stop", "--run-date", "2025-06-02") == DeployedRequest(
        action="stop", run_dates=("2025-06-02",)
    )
    assert deployed_argv(tmp_path, "--history") == DeployedRequest(action="history", history_count=10)
    assert deployed_argv(tmp_path, "--history", "3") == DeployedRequest(action="history", history_count=3)
    assert deployed_argv(tmp_path, "--history", "--run-date", "2025-06-01..2025-06-02") == DeployedRequest(
        action="history", run_dates=("2025-06-01", "2025-06-02")
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    for name in ("AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


def test_deployed_without_a_deployment_says_what_is_missing_in_one_line(
    folder: Path, aws: None, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    code = main([str(folder), "--deployed", "--history", "--region", "eu-west-1"])
    stdout, stderr = capsysbinary.readouterr()
    assert code == 3, stderr
    assert stdout == b""
    assert (
        stderr
        == (
            f"nightshift: error: no deployment of pipeline {folder.name} in eu-west-1 (no state machine tagged"
            f" nightshift:pipeline={folder.name}); deploy it with `cdk deploy`, or check --region/--stack\n"
        ).encode()
    )
    assert not (folder / "ran").exists()


def test_a_local_run_loads_neither_boto3_nor_the_deployed_mode(folder: Path) -> None:
    probe = (
        "import sys\nfrom runner.__main__ import main\n"
        f"code = main([{str(folder / '10_load.sh')!r}])\n"
        "print(code, 'boto3' in sys.modules, 'runner.deployed' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=folder, capture_output=True, check=False, env={**os.environ,
        "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.stdout == b"0 False False\n", result.stderr
    assert (folder / "ran").exists()
