"""The first hour, the rest of issue 20, through the real command line: dry-run labels, a folder of pipelines."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli
from tests.conftest import write_pipeline as pipeline


def test_a_dry_run_labels_each_step_with_its_stage_and_where_it_would_run(tmp_path: Path) -> None:
    folder = pipeline(
        tmp_path / "orders",
        '[variables]\ndb = "shop"\napi_token = "hunter2"\n\n[checks.20_no_orphans]\nseverity = "warn"\n',
        {
            "10_load.sh": "echo load\n",
            "20_orders.sql": "SELECT 1;\n",
            "20_no_orphans.check.sql": "SELECT 1 WHERE false;\n",
            "30_model.py": "print(1)\n",
        },
    )
    state = tmp_path / "state"
    result = run_cli(folder, "--dry-run", "--run-date", "2025-06-04", "--state-dir", state, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode().splitlines() == [
        "nightshift: orders: run date 2025-06-04 (given with --run-date); variables: db=shop, api_token=***",
        "nightshift: stage 10, step 10_load.sh: bash here, a process of its own",
        f"nightshift: stage 20, step 20_orders.sql: spark-sql here, warm: the engine of {state}"
        " (started if none is up)",
        "nightshift: stage 20, check 20_no_orphans.check.sql (warn), after the stage's steps",
        "nightshift: stage 30, step 30_model.py: spark-submit here, cold: a JVM of its own"
        " (a warm engine ends first)",
    ]
    commands = result.stdout.decode().splitlines()
    assert [line.split()[-1] for line in commands] == [
        str(folder / name) for name in ("10_load.sh", "20_orders.sql", "30_model.py")
    ]
    # A shell quotes the mask: "api_token='***'" for bash, "--hivevar 'api_token=***'" for spark-sql.
    assert all("api_token=***" in line.replace("'", "") for line in commands), commands
    assert b"hunter2" not in result.stdout + result.stderr
    assert not state.exists()


def test_a_dry_run_says_cold_and_skipped_stages_for_every_date_of_a_range(tmp_path: Path) -> None:
    folder = pipeline(tmp_path / "daily", "", {"10_a.sql": "SELECT 1;\n", "20_b.hql": "SELECT 2;\n"})
    result = run_cli(
        folder, "--dry-run", "--cold", "--run-date", "2025-06-01..2025-06-02", "--from-stage", "20",
        "--run-id", "r", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    date_lines = [
        "nightshift: stage 10 skipped (--from-stage 20): 10_a.sql",
        "nightshift: stage 20, step 20_b.hql: hive (here: Spark SQL's HiveQL support), cold (--cold):"
        " a JVM of its own",
    ]
    assert result.stderr.decode().splitlines() == [
        "nightshift: daily: run dates 2025-06-01 to 2025-06-02 (given with --run-date); variables: none",
        "nightshift: run date 2025-06-01 (1 of 2), run id r-2025-06-01:",
        *date_lines,
        "nightshift: run date 2025-06-02 (2 of 2), run id r-2025-06-02:",
        *date_lines,
    ]
    commands = result.stdout.decode().splitlines()
    assert len(commands) == 2
    assert "--hivevar run_date=2025-06-01 " in commands[0]
    assert "--hivevar run_date=2025-06-02 " in commands[1]


def test_a_folder_of_pipelines_lists_them_instead_of_saying_no_steps(tmp_path: Path) -> None:
    pipelines = tmp_path / "sql"
    pipeline(
        pipelines / "orders",
        '[schedule]\ncron = "30 2 * * *"\ntimezone = "Europe/Berlin"\n',
        {"10_load.sh": "echo\n", "20_model.sql": "SELECT 1;\n", "20_model_rows.check.sql": "SELECT 1;\n"},
    )
    pipeline(pipelines / "adhoc", "", {"10_report.sql": "SELECT 1;\n"})
    pipeline(pipelines / "broken", "[shedule]\n", {"10_a.sql": "SELECT 1;\n"})
    pipeline(pipelines / "_shared", "", {"10_lib.sql": "SELECT 1;\n"})  # not a pipeline: the synth skips it
    (pipelines / "notes").mkdir()
    result = run_cli("sql", "--state-dir", tmp_path / "state", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    *table, broken = result.stdout.decode().splitlines()
    assert table == [
        "pipeline  stages  steps  checks  schedule",
        "adhoc     10      1      0       none (run by hand)",
        "orders    10 20   2      1       30 2 * * * Europe/Berlin",
    ]
    assert broken.startswith(f"broken: does not load: {pipelines / 'broken' / 'pipeline.toml'}: shedule:")
    assert broken.endswith("did you mean 'schedule'?")
    assert result.stderr.decode().splitlines() == [
        "nightshift: sql: a folder of 3 pipelines; run one: python -m runner sql/adhoc/"
    ]
    assert not (tmp_path / "state").exists()

    # Asked to run something, the folder of pipelines runs nothing and says why in one line.
    refused = run_cli("sql", "--dry-run", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.decode().splitlines() == [
        "nightshift: error: sql: a folder of pipelines, not a pipeline; nothing ran: give one of them,"
        " such as sql/adhoc/"
    ]


def test_a_quartz_schedule_is_refused_in_one_line_with_the_five_field_one_that_works(tmp_path: Path) -> None:
    """Quartz's fields: its "CronTrigger Tutorial"
    (https://www.quartz-scheduler.org/documentation/quartz-2.5.x/tutorials/crontrigger.html)."""
    folder = pipeline(
        tmp_path / "nightly", '[schedule]\ncron = "0 30 2 ? * MON-FRI"\n', {"10_a.sql": "SELECT 1;\n"}
    )
    refused = run_cli(folder, "--dry-run", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stdout == b""
    assert refused.stderr.decode().splitlines() == [
        f"nightshift: error: {folder / 'pipeline.toml'}: [schedule] cron: '0 30 2 ? * MON-FRI' is Quartz's"
        " form (seconds first); expected 5 fields as crontab has them (minute hour day-of-month month"
        " day-of-week): cron = '30 2 * * MON-FRI'"
    ]
    # What the line says to write is accepted.
    (folder / "pipeline.toml").write_text("[schedule]\ncron = '30 2 * * MON-FRI'\n")
    assert run_cli(folder, "--dry-run", cwd=tmp_path).returncode == 0


def test_a_failed_sql_step_names_the_line_its_failing_statement_starts_on(
    tmp_path: Path, shared_warm_state: Path
) -> None:
    folder = pipeline(tmp_path / "shop", "", {})
    (folder / "10_orders.sql").write_text(
        "-- the orders of the day; a comment with a ' and a ;\n"
        "CREATE TEMPORARY VIEW orders AS SELECT 1 AS id;\n"
        "\n"
        "SELECT id\n"
        "  FROM orders;  /* a; comment */\n"
        "SELECT 'a;b' AS text\n"
        "  FROM orders;\n"
        "\n"
        "SELECT *\n"
        "  FROM order_lines\n"
        " WHERE id = 1;\n"
        "SELECT 'never';\n"
    )
    result = run_cli(folder, "--state-dir", shared_warm_state, "--run-date", "2025-06-04")
    assert result.returncode == 1, result.stderr.decode()
    assert result.stdout == b"1\na;b\n"
    row = next(
        line for line in result.stderr.decode().splitlines() if line.startswith("nightshift: 10_orders.sql ")
    )
    # The statement that failed is the fourth; it starts on line 9 of the file (spark-sql itself says
    # "line 2 pos 7", counted from the end of the statement before).
    assert "failed (exit 1)" in row
    assert row.split(" s ", 1)[1].lstrip().startswith("10_orders.sql line 9: [TABLE_OR_VIEW_NOT_FOUND]"), row
