"""Data checks without an engine: pipeline.toml's [checks], check files, the generated file, its output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.checks.run import (
    MAX_SAMPLE_LINE_BYTES,
    CaptureOutput,
    CheckReport,
    check_sql,
    parse_check_output,
    sample_table,
)
from runner.checks.spec import CheckStatus, DataCheck, Severity, Thresholds
from runner.config import parse_config
from runner.errors import ConfigError, PipelineError
from runner.model import load_pipeline
from runner.output import StepOutput, Stream

MARKER = "nightshift-check-0123456789ab"


def _config(text: str) -> None:
    parse_config(text, Path("pipeline.toml"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[checks]\nsample = 5\n",
            "[checks] sample: unknown key (expected sample_rows, table, or a check's name",
        ),
        ("[checks]\nsample_rows = -1\n", "[checks] sample_rows: expected an integer from 0 to 1000, got -1"),
        (
            "[checks.10_a]\nseverity = 'fatal'\n",
            "[checks.10_a] severity: expected 'error' or 'warn', got 'fatal'",
        ),
        ("[checks.10_a]\nwarn_if = 3\n", "[checks.10_a] warn_if: unknown key (expected one of: error_above"),
        (
            "[checks.10_a]\nwarn_above = 5\nerror_above = 2\n",
            "[checks.10_a] warn_above: 5 is above error_above (2)",
        ),
        (
            "[checks.10_a]\nseverity = 'warn'\nerror_above = 2\n",
            "[checks.10_a] error_above: a 'warn' check never",
        ),
        (
            "[checks.10_a]\nerror_above = true\n",
            "[checks.10_a] error_above: expected a number of failing rows",
        ),
        ("[checks.table.t]\nunique = ['id']\n", "[checks.table.t] stage: expected the stage number"),
        ("[checks.table.t]\nstage = 10\n", "[checks.table.t]: no check: give unique, not_null"),
        ("[checks.table.t]\nstage = 10\nunique = ['id; DROP']\n", "'id; DROP' is not a column name"),
        ("[checks.table.t]\nstage = 10\nunqiue = ['id']\n", "[checks.table.t] unqiue: unknown key"),
        ("[checks.table.t]\nstage = 10\nmax_age_days = 1\n", "max_age_days: needs date_column"),
        (
            "[checks.table.'a b']\nstage = 10\nunique = ['id']\n",
            "expected a table name, maybe with its database",
        ),
        (
            "[checks.table.t]\nstage = 10\nmin_rows = 0\n",
            "[checks.table.t] min_rows: expected an integer from 1",
        ),
    ],
)
def test_checks_settings_are_strictly_validated(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _config(text)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_thresholds_pass_warn_and_fail_on_the_count() -> None:
    default = Thresholds()
    assert [default.status(n) for n in (0, 1)] == [CheckStatus.PASSED, CheckStatus.FAILED]
    warn = Thresholds(Severity.WARN)
    assert [warn.status(n) for n in (0, 1, 10**9)] == [CheckStatus.PASSED, *[CheckStatus.WARNED] * 2]
    # dbt's warn_if/error_if: 1 to 100 rows warn, more fail; up to 5 pass, then warn.
    banded = Thresholds(warn_above=5, error_above=100)
    assert [banded.status(n) for n in (0, 5, 6, 100, 101)] == [
        CheckStatus.PASSED, CheckStatus.PASSED, CheckStatus.WARNED, CheckStatus.WARNED, CheckStatus.FAILED,
    ]  # fmt: skip


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "pipe"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_a_check_file_belongs_to_its_stage_with_its_settings(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {
        "10_make.sql": "SELECT 1;",
        "10_ids.check.sql": "\ufeffSELECT id FROM t WHERE id IS NULL;",
        "20_next.sql": "SELECT 2;",
        "pipeline.toml": "[checks.10_ids]\nseverity = 'warn'\n"
        "[checks.table.'${db}.t']\nstage = 20\nunique = ['a', 'b']\naccepted_values = { c = ['x', \"it's\"] }\n",
    })  # fmt: skip
    pipeline = load_pipeline(folder)
    first, second = pipeline.stages
    assert [step.file_name for step in first.steps] == ["10_make.sql"]
    assert [(c.label, c.severity, c.query) for c in first.checks] == [
        ("10_ids.check.sql", Severity.WARN, "SELECT id FROM t WHERE id IS NULL;")
    ]
    assert [c.label for c in second.checks] == ["t.unique", "t.accepted_values"]
    unique, accepted = second.checks
    assert "FROM ${db}.t\nGROUP BY a, b\nHAVING count(*) > 1" in unique.query
    assert "c NOT IN ('x', 'it\\'s')" in accepted.query


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"10_a.sql": "SELECT 1;", "20_b.check.sql": "SELECT 1"}, "stage 20 has no steps"),
        (
            {"10_a.sql": "SELECT 1;", "10_b.x.check.sql": "SELECT 1"},
            "check files are named NN_name.check.sql",
        ),
        ({"10_a.sql": "SELECT 1;", "10_b.check.sql": "  \n"}, "the step file is empty"),
        (
            {"10_a.sql": "SELECT 1;", "pipeline.toml": "[checks.10_b]\nseverity = 'warn'\n"},
            "no check file 10_b.check.sql",
        ),
        (
            {"10_a.sql": "SELECT 1;", "pipeline.toml": "[checks.table.t]\nstage = 30\nunique = ['id']\n"},
            "[checks.table.t] stage: 30 has no steps (stages: 10)",
        ),
    ],
)
def test_a_check_that_cannot_run_is_refused_at_load(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    with pytest.raises(PipelineError) as raised:
        load_pipeline(_folder(tmp_path, files))
    assert message in str(raised.value)


def test_the_generated_file_holds_the_query_as_it_is() -> None:
    query = "-- odd ones\nSELECT 'a;b' AS s, \"${x}\" FROM t -- the end ;\n;\n  \n"
    text = check_sql(DataCheck("10_a", 10, query, "10_a.check.sql"), 7, MARKER)
    # Verbatim but for the trailing semicolons; the query's first line is the file's first counted line.
    assert (
        "WITH nightshift_failures AS (-- odd ones\nSELECT 'a;b' AS s, \"${x}\" FROM t -- the end\n)\n" in text
    )
    assert f"'{MARKER}-count'" in text and f"'{MARKER}-row'" in text
    assert "ORDER BY failure LIMIT 7" in text
    assert text.count(";") == 2  # the query's own, and the file's one statement's end


def test_the_output_is_parsed_by_its_marker_whatever_the_values_hold() -> None:
    rows = [{"id": 2, "name": "tab\there\nand a newline"}, {"id": 1, "name": None}]
    lines = [
        b"some other output\n",
        f"{MARKER}-row\t{json.dumps(rows[0])}\n".encode(),
        f"{MARKER}-count\t1204\n".encode(),
        f"{MARKER}-row\t{json.dumps(rows[1])}\n".encode(),
        b"nightshift-check-ffffffffffff-count\t7\n",  # another run's marker
    ]
    counted = parse_check_output(lines, MARKER)
    assert counted.count == 1204
    assert counted.sample == [rows[1], rows[0]]  # sorted as the query sorts them: by their JSON text


def test_no_count_line_means_the_engine_failed() -> None:
    assert parse_check_output([b"Error in query\n"], MARKER).count is None
    # A count line cut short (the engine killed mid-line) is no count either, not a crash.
    assert (
        parse_check_output([f"{MARKER}-count\t12x".encode(), f"{MARKER}-count\t".encode()], MARKER).count
        is None
    )


class _Inner(StepOutput):
    def __init__(self) -> None:
        super().__init__()
        self.stderr = bytearray()
        self.closed = False

    def emit(self, stream: Stream, block: bytes) -> None:
        self.stderr += block

    def close(self) -> None:
        super().close()
        self.closed = True


def test_the_capture_keeps_a_bounded_part_of_a_huge_output() -> None:
    inner = _Inner()
    capture = CaptureOutput(inner, MARKER, lines=4)
    row = f'{MARKER}-row\t{{"v": "{"x" * 100}"}}\n'.encode()
    for _ in range(10_000):
        capture.feed("stdout", row * 10)
    capture.feed("stdout", f'{MARKER}-row\t{{"v": "'.encode() + b"y" * (3 * MAX_SAMPLE_LINE_BYTES))
    capture.feed("stderr", b"e" * (1 << 20) + b"\nthe error\n")
    capture.close()
    assert len(capture.lines) == 4 and all(len(line) <= MAX_SAMPLE_LINE_BYTES for line in capture.lines)
    capture.finish(show_stderr=True)
    assert inner.closed and inner.stderr.endswith(b"\nthe error\n") and len(inner.stderr) <= 64 * 1024


def test_a_passing_check_shows_no_stderr() -> None:
    inner = _Inner()
    capture = CaptureOutput(inner, MARKER, lines=4)
    capture.feed("stderr", b"Time taken: 1.2 seconds, Fetched 1 row(s)\n")
    capture.close()
    capture.finish(show_stderr=False)
    assert inner.closed and not inner.stderr


def test_the_console_line_and_sample_table() -> None:
    check = DataCheck("10_a", 10, "SELECT 1", "10_a.check.sql")
    report = CheckReport(check, status="failed", count=1204)
    assert report.line == "failed: 1,204 rows"
    assert CheckReport(check, status="warned", count=1).line == "warned: 1 row"
    assert CheckReport(check, status="passed", count=0).line == "passed"
    table = list(sample_table([{"id": 1, "name": None}, {"id": 22, "name": "a\tb" + "c" * 50}]))
    assert table == [
        "  id  name",
        "  1   NULL",
        "  22  a\\tb" + "c" * 33 + "...",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stage", "10"], "--stage 10: only with --checks-only"),
        (
            ["--checks-only", "--stage", "20"],
            "--stage 20: pipe has no checks in stage 20 (stages with checks: 10)",
        ),
        (["--checks-only", "--from-stage", "10"], "--checks-only: not with --from-stage or --dry-run"),
        (
            ["--checks-only", "--deployed", "--follow"],
            "starts a checks-only run (a name of its own each time): not with --follow",
        ),
        (["--checks-only", "--deployed", "--rerun"], "not with --rerun"),
        (["--deployed", "--stage", "10"], "--stage 10: only with --checks-only"),
        (["--deployed", "--checks-only", "--stage", "20"], "--stage 20: pipe has no checks in stage 20"),
    ],
)
def test_checks_only_flags_that_do_not_fit_are_one_line(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], args: list[str], message: str
) -> None:
    from runner.__main__ import main  # noqa: PLC0415

    folder = _folder(
        tmp_path, {"10_a.sql": "SELECT 1;", "10_a.check.sql": "SELECT 1", "20_b.sql": "SELECT 2;"}
    )
    state = [] if "--deployed" in args else ["--state-dir", str(tmp_path / "state")]
    assert main([str(folder), *state, *args]) == 2
    lines = capsysbinary.readouterr().err.decode().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "state").exists()  # nothing started


def test_checks_only_needs_checks(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    from runner.__main__ import main  # noqa: PLC0415

    folder = _folder(tmp_path, {"10_a.sql": "SELECT 1;"})
    assert main([str(folder), "--checks-only", "--state-dir", str(tmp_path / "state")]) == 2
    assert b"--checks-only: pipe has no data checks" in capsysbinary.readouterr().err


def test_the_summary_lists_each_check_after_its_stages_steps() -> None:
    from runner.execution import SKIPPED, RunReport, StepReport, failure_detail, summary_lines  # noqa: PLC0415
    from runner.model import Engine, Step  # noqa: PLC0415

    def step(name: str, stage: int) -> Step:
        return Step(Path(name), stage, Engine.SPARK_SQL)

    def check(name: str, stage: int) -> DataCheck:
        return DataCheck(name, stage, "SELECT 1", f"{name}.check.sql")

    run = RunReport(
        [StepReport(step("05_a.sql", 5), SKIPPED), StepReport(step("10_b.sql", 10), "succeeded", 0, 1.0),
         StepReport(step("20_c.sql", 20))],
        65,
        [CheckReport(check("05_x", 5), SKIPPED), CheckReport(check("10_y", 10), "failed", 1204, [], 65, 2.5),
         CheckReport(check("20_z", 20))],
    )  # fmt: skip
    assert [line.split() for line in summary_lines(run)] == [
        ["step", "stage", "status", "duration"],
        ["05_a.sql", "5", "skipped", "-"],
        ["check", "05_x.check.sql", "5", "skipped", "-"],
        ["10_b.sql", "10", "succeeded", "1.0", "s"],
        ["check", "10_y.check.sql", "10", "failed:", "1,204", "rows", "2.5", "s"],
        ["20_c.sql", "20", "not", "run", "-"],
        ["check", "20_z.check.sql", "20", "not", "run", "-"],
    ]
    assert failure_detail(run) == "check 10_y.check.sql failed: 1,204 rows"


def test_a_check_file_as_path_is_one_check(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {
        "10_make.sql": "SELECT 1;",
        "10_ids.check.sql": "SELECT 1 AS id",
        "pipeline.toml": "[checks]\nsample_rows = 3\n[checks.10_ids]\nseverity = 'warn'\n",
    })  # fmt: skip
    pipeline = load_pipeline(folder / "10_ids.check.sql")
    assert pipeline.name == "pipe" and pipeline.steps == ()
    assert [(c.label, c.stage, c.severity) for c in pipeline.checks] == [
        ("10_ids.check.sql", 10, Severity.WARN)
    ]
    assert pipeline.config.checks.sample_rows == 3
