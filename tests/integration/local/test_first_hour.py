"""The first hour of a newcomer (issue 20), through the real command line: what a run says and does."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import runner
from tests.conftest import run_cli
from tests.conftest import write_pipeline as pipeline


def test_every_run_starts_with_its_pipeline_date_source_and_variables_secrets_masked(tmp_path: Path) -> None:
    folder = pipeline(
        tmp_path / "orders",
        '[schedule]\ncron = "30 2 * * *"\ntimezone = "Pacific/Kiritimati"\n[variables]\ndb = "shop"\n',
        {"10_a.sh": 'echo "$run_date"\n'},
    )
    before = datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    result = run_cli(folder, "--var", "api_token=hunter2", cwd=tmp_path)
    after = datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    assert result.returncode == 0, result.stderr.decode()
    header = result.stderr.decode().splitlines()[0]
    ran = result.stdout.decode().strip()
    assert ran in (before, after)  # UTC+14: a different date from UTC's for 14 hours a day
    assert header == (
        f"nightshift: orders: run date {ran} (today in Pacific/Kiritimati, the schedule's time zone);"
        " variables: db=shop, api_token=***"
    )
    assert b"hunter2" not in result.stderr

    given = run_cli(folder, "--run-date", "2025-06-04", cwd=tmp_path)
    assert given.stderr.decode().splitlines()[0] == (
        "nightshift: orders: run date 2025-06-04 (given with --run-date); variables: db=shop"
    )


def test_json_records_carry_the_run_date(tmp_path: Path) -> None:
    step = tmp_path / "job.sh"
    step.write_text("echo hi\n")
    result = run_cli(step, "--run-date", "2025-06-04", "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == b""
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert {record["run_date"] for record in records} == {"2025-06-04"}
    assert [r["stream"] for r in records] == ["nightshift", "nightshift", "stdout", "nightshift"]
    assert records[0]["line"] == "job: run date 2025-06-04 (given with --run-date); variables: none"


def test_a_shell_step_gets_yesterday_and_the_compact_forms(tmp_path: Path) -> None:
    step = tmp_path / "job.sh"
    step.write_text('echo "$prev_date $next_date $run_date_nodash $prev_date_nodash $next_date_nodash"\n')
    result = run_cli(step, "--run-date", "2024-03-01", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"2024-02-29 2024-03-02 20240301 20240229 20240302\n"


def test_inputs_wait_for_yesterdays_export(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    folder = pipeline(
        tmp_path / "nightly",
        f'[inputs]\nobjects = ["{exports}/${{prev_date_nodash}}/_SUCCESS"]\n',
        {"10_load.sh": 'echo "loading $prev_date"\n'},
    )
    missing = run_cli(folder, "--run-date", "2025-01-01", cwd=tmp_path)
    assert missing.returncode == 75
    assert missing.stdout == b""
    assert f"inputs missing for 2025-01-01: {exports}/20241231/_SUCCESS".encode() in missing.stderr
    (exports / "20241231").mkdir(parents=True)
    (exports / "20241231" / "_SUCCESS").touch()
    ready = run_cli(folder, "--run-date", "2025-01-01", cwd=tmp_path)
    assert ready.returncode == 0, ready.stderr.decode()
    assert ready.stdout == b"loading 2024-12-31\n"


TYPO = "SELECT '${prev_date}', '${next_date_nodash}', '${env:HOME}' <> '', '${dbb}';\n"


@pytest.mark.spark
def test_a_sql_step_gets_the_dates_and_an_undefined_name_is_a_warning(
    tmp_path: Path, shared_warm_state: Path
) -> None:
    folder = pipeline(
        tmp_path / "shop", '[variables]\ndb = "shop"\n', {"10_a.sql": "-- reads ${db}\n" + TYPO}
    )
    result = run_cli(folder, "--run-date", "2024-03-01", "--state-dir", shared_warm_state)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"2024-02-29\t20240302\ttrue\t\n"  # ${dbb}: spark-sql's empty string
    warnings = [line for line in result.stderr.decode().splitlines() if "warning" in line]
    assert warnings == [
        "nightshift: warning: 10_a.sql line 2: ${dbb} is not defined, spark-sql would put an empty string there"
        " (defined: db; the dates run_date, prev_date, next_date, *_nodash); did you mean ${db}?"
    ]


@pytest.mark.parametrize("strict", [["--strict"], []], ids=["flag", "pipeline.toml"])
def test_strict_makes_an_undefined_name_an_error_and_runs_nothing(tmp_path: Path, strict: list[str]) -> None:
    toml = ("" if strict else "strict_variables = true\n") + '[variables]\ndb = "shop"\n'
    folder = pipeline(tmp_path / "shop", toml, {"10_mark.sh": "touch ran\n", "20_a.sql": TYPO})
    result = run_cli(folder, *strict, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "nightshift: error: 20_a.sql line 1: ${dbb} is not defined, spark-sql would put an empty string there"
        " (defined: db; the dates run_date, prev_date, next_date, *_nodash); did you mean ${db}?"
    ]
    assert not (tmp_path / "ran").exists()


def test_an_unknown_key_names_the_sections_and_the_nearest(tmp_path: Path) -> None:
    folder = pipeline(tmp_path / "shop", 'variable = "x"\n', {"10_a.sh": "true\n"})
    result = run_cli(folder, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [
        f"nightshift: error: {folder}/pipeline.toml: variable: unknown key (expected one of: default_engine,"
        " description, max_concurrent_runs, notify, queue_minutes, strict_variables; sections: [schedule],"
        " [variables], [cluster], [steps], [inputs], [catalog], [checks]); did you mean 'variables'?"
    ]


def test_relative_paths_resolve_from_the_project_root_whatever_the_working_folder(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    folder = pipeline(
        project / "pipelines" / "daily",
        '[variables.local]\nraw = "data/in"\n',
        {"10_read.sh": 'cat "$raw/orders.csv"\n'},
    )
    (project / "cdk.json").write_text("{}\n")
    (project / "data" / "in").mkdir(parents=True)
    (project / "data" / "in" / "orders.csv").write_text("1,book\n")
    inside = run_cli(".", "--reset", cwd=folder)  # from inside the pipeline folder
    root = run_cli(folder, cwd=project)
    elsewhere = run_cli(folder, cwd=tmp_path)
    for result in (inside, root, elsewhere):
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == b"1,book\n"
    deleted = f"nightshift: local warehouse and metastore in {project / '.nightshift'} deleted"
    assert inside.stderr.decode().splitlines()[0] == deleted


def test_a_schedule_time_lost_to_daylight_saving_is_a_warning_at_load(tmp_path: Path) -> None:
    folder = pipeline(
        tmp_path / "nightly",
        '[schedule]\ncron = "30 2 * * *"\ntimezone = "America/New_York"\n',
        {"10_a.sh": "echo ran\n"},
    )
    result = run_cli(folder, "--run-date", "2025-06-04", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == b"ran\n"
    (warning,) = [line for line in result.stderr.decode().splitlines() if "warning" in line]
    assert warning.startswith(
        "nightshift: warning: [schedule] cron '30 2 * * *' in America/New_York: a time that does not exist"
        " when the clocks spring forward, which EventBridge Scheduler skips, so no scheduled run starts on "
    )
    # The second Sunday of March of the next two years (the rule since 2007).
    today = datetime.now(ZoneInfo("UTC")).date()
    sundays = [
        day
        for year in (today.year, today.year + 1, today.year + 2)
        for day in [date(year, 3, 8 + (6 - date(year, 3, 8).weekday()) % 7)]
        if today <= day < today + timedelta(days=731)
    ]
    assert warning.count("(02:30)") == len(sundays) >= 1
    assert all(f"{day.isoformat()} (02:30)" in warning for day in sundays)


def test_the_summary_repeats_a_failed_steps_first_error_line(tmp_path: Path) -> None:
    noise = "".join(f"INFO line {n} of the engine's log\n" for n in range(120))
    folder = pipeline(
        tmp_path / "nightly",
        "",
        {
            "10_ok.sh": "echo ok\n",
            "20_load.sh": f"cat >&2 <<'EOF'\nERROR: no such table shop.orderz\n{noise}EOF\nexit 4\n",
        },
    )
    result = run_cli(folder, "--run-date", "2025-06-04", cwd=tmp_path)
    assert result.returncode == 4
    table = [line.split() for line in result.stderr.decode().splitlines()[-3:]]
    assert table[0] == ["nightshift:", "step", "stage", "status", "duration", "first", "error", "line"]
    assert table[1][:4] == ["nightshift:", "10_ok.sh", "10", "succeeded"]
    assert table[2][:5] == ["nightshift:", "20_load.sh", "20", "failed", "(exit"]
    assert table[2][-5:] == ["ERROR:", "no", "such", "table", "shop.orderz"]


def test_the_nightshift_command_version_and_one_error_prefix(tmp_path: Path) -> None:
    nightshift = Path(sys.executable).parent / "nightshift"  # the console script (make setup installs it)
    version = subprocess.run([nightshift, "--version"], capture_output=True, check=False)
    assert (version.returncode, version.stdout) == (0, f"nightshift {runner.__version__}\n".encode())
    typo = subprocess.run([nightshift, "--rundate"], capture_output=True, check=False)
    assert typo.returncode == 2
    assert typo.stderr.decode().splitlines() == [
        "nightshift: error: unrecognized arguments: --rundate (see nightshift --help)"
    ]
    missing = run_cli("--run-date", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.decode().splitlines() == [
        "nightshift: error: argument --run-date: expected one argument (see python -m runner --help)"
    ]


def test_history_takes_the_path_typed_right_after_it(tmp_path: Path) -> None:
    # The path is read before AWS is asked: a missing folder is the error, not "invalid int value".
    after = run_cli("--deployed", "--history", tmp_path / "nowhere", cwd=tmp_path)
    assert after.returncode == 2
    assert after.stderr.decode().splitlines() == [
        f"nightshift: error: {tmp_path / 'nowhere'}: no such file or folder"
    ]
    counted = run_cli("--deployed", "--history", "3", tmp_path / "nowhere", cwd=tmp_path)
    assert counted.stderr == after.stderr
    both = run_cli(tmp_path, "--deployed", "--history", "many", cwd=tmp_path)
    assert both.returncode == 2
    assert both.stderr.decode().splitlines() == [
        "nightshift: error: --history 'many': expected a number of runs"
    ]


@pytest.mark.spark
def test_after_a_local_sql_run_one_line_says_the_engine_stays_up(
    tmp_path: Path, shared_warm_state: Path
) -> None:
    step = tmp_path / "one.sql"
    step.write_text("SELECT 1;\n")
    result = run_cli(step, "--state-dir", shared_warm_state)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode().splitlines()[-1] == (
        "nightshift: the warm engine stays up for the next run (it ends after 1 min without a step);"
        f" end it now: python -m runner --state-dir {shared_warm_state} --stop-engine"
    )
