"""Running a data check: a generated file counts the check's rows and samples a few, through the engine."""

from __future__ import annotations

import difflib
import json
import re
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.checks.spec import ChecksConfig, CheckStatus, DataCheck, sql_literal
from runner.errors import UsageError
from runner.output import LineBuffer, StepOutput, Stream

#: EX_DATAERR of sysexits.h: the data is wrong, the engine did not fail.
EXIT_DATA = 65
#: The view the check's query becomes inside the generated file.
FAILURES_VIEW = "nightshift_failures"
#: A sample line longer than this is cut: a sample shows what failed, it does not carry the data.
MAX_SAMPLE_LINE_BYTES = 64 * 1024
#: The end of a check's stderr kept to show when its engine fails (Spark's error is at the end).
MAX_STDERR_BYTES = 64 * 1024
#: A value wider than this is cut in the console's sample table (JSON lines keep it as parsed).
MAX_CELL_CHARS = 40
#: The sample's share of a check's JSON record: on Fargate the record is one CloudWatch Logs event
#: (256 KiB at most; awslogs cuts a longer line into pieces that are not JSON, and the alert, the
#: run record and --follow read it whole), so rows past this many bytes are left out, and counted.
MAX_RECORD_SAMPLE_BYTES = 128 * 1024
_TRAILING = re.compile(r"[\s;]+$")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class FailuresTable:
    """[checks] failures_table of a run: where a failing check's rows are appended, and how many at most."""

    #: as pipeline.toml names it, ${variables} and all: the engine puts their values in
    table: str
    max_rows: int
    run_id: str
    pipeline: str
    #: the table's name with the run's variables in it, as the console says it
    name: str

    def query(self, check: DataCheck) -> str:
        """The query that reads back the rows `check` stored in this run: the alert and --history say it."""
        return (
            f"SELECT * FROM {self.name} WHERE run_id = {sql_literal(self.run_id)}"
            f" AND `check` = {sql_literal(check.label)}"
        )


def failures_table(
    config: ChecksConfig, run_id: str, pipeline: str, variables: Mapping[str, str]
) -> FailuresTable | None:
    """The run's failures table, or None when [checks] has no failures_table (off by default).

    A ${name} no variable defines is refused: spark-sql would put an empty string there.
    """
    if config.failures_table is None:
        return None
    for match in _VARIABLE.finditer(config.failures_table):
        if match[1] not in variables:
            near = difflib.get_close_matches(match[1], list(variables), n=1)
            raise UsageError(
                f"[checks] failures_table: {match[0]} is not defined, spark-sql would put an empty string"
                f" there (--var {match[1]}=VALUE or [variables])"
                + (f"; did you mean ${{{near[0]}}}?" if near else "")
            )
    name = _VARIABLE.sub(lambda match: variables[match[1]], config.failures_table)
    return FailuresTable(config.failures_table, config.failures_max_rows, run_id, pipeline, name)


def failures_table_sql(store: FailuresTable) -> str:
    """The statement that makes the failures table when it is missing.

    Parquet (USING parquet): Spark writes it to its local metastore and to the Glue catalog alike.
    """
    return (
        f"-- nightshift data checks: the table of failing rows (generated)\n"
        f"CREATE TABLE IF NOT EXISTS {store.table} (\n"
        "  run_id STRING, run_date DATE, pipeline STRING, `check` STRING, stage INT, severity STRING,\n"
        "  `row` STRING, recorded_at TIMESTAMP\n"
        ") USING parquet;\n"
    )


def store_sql(check: DataCheck, store: FailuresTable) -> str:
    """The statement that appends at most store.max_rows of `check`'s rows, in the sample's order."""
    query = _TRAILING.sub("", check.query)
    # Only a check that does not pass stores rows: with warn_above N, up to N rows are a pass.
    above = check.thresholds.warn_above
    when = f"\n  WHERE (SELECT count(*) FROM {FAILURES_VIEW}) > {above}" if above else ""
    return (
        f"-- nightshift data check {check.label}: at most {store.max_rows} of its rows stored (generated)\n"
        f"WITH {FAILURES_VIEW} AS ({query}\n)\n"
        f"INSERT INTO {store.table}\n"
        f"SELECT {sql_literal(store.run_id)}, to_date('${{run_date}}'), {sql_literal(store.pipeline)},"
        f" {sql_literal(check.label)}, {check.stage}, {sql_literal(str(check.severity))}, failure,"
        " current_timestamp()\n"
        "FROM (\n"
        "  SELECT to_json(struct(*), map('ignoreNullFields', 'false')) AS failure"
        f" FROM {FAILURES_VIEW}{when}\n"
        # The same order as the sample's: the same rows are stored wherever the check runs.
        f"  ORDER BY failure LIMIT {store.max_rows}\n"
        ") nightshift_stored;\n"
    )


def check_sql(check: DataCheck, sample_rows: int, marker: str) -> str:
    """The file the engine runs for `check`: its failing-row count and a sorted sample, one row each.

    The query goes in as it is, inside a CTE, so it is read once by the engine's own parser. Each
    output row starts with `marker` (unique to this run), and a sample row is one JSON object, so a
    NULL, a tab or a newline in a value cannot be mistaken for the layout of spark-sql's output.
    """
    query = _TRAILING.sub("", check.query)
    # The newline before ')' ends a trailing '--' comment of the query.
    return (
        f"-- nightshift data check {check.label}: the count and a sample of its rows (generated)\n"
        # The query starts on the first line the engine counts, so its errors name the check file's lines.
        f"WITH {FAILURES_VIEW} AS ({query}\n)\n"
        f"SELECT '{marker}-count', CAST(count(*) AS STRING) FROM {FAILURES_VIEW}\n"
        "UNION ALL\n"
        f"SELECT '{marker}-row', failure FROM (\n"
        f"  SELECT to_json(struct(*), map('ignoreNullFields', 'false')) AS failure FROM {FAILURES_VIEW}\n"
        # Sorted, so the sample is the same rows wherever the check runs; Spark keeps only the first
        # rows of each partition for this (a top-K), never all of them.
        f"  ORDER BY failure LIMIT {sample_rows}\n"
        ") nightshift_sample;\n"
    )


@dataclass
class CheckCount:
    """What the engine's output said: the number of failing rows and the sample rows, in order."""

    count: int | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)


def _row(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, object_pairs_hook=dict)
    except ValueError:
        # Cut at MAX_SAMPLE_LINE_BYTES: shown as the text it is.
        return {"row": text}
    return value if isinstance(value, dict) else {"row": value}


def parse_check_output(lines: list[bytes], marker: str) -> CheckCount:
    """The count and sample from the engine's stdout lines; lines without `marker` are not the check's."""
    count = CheckCount()
    rows: list[str] = []
    count_prefix, row_prefix = f"{marker}-count\t".encode(), f"{marker}-row\t".encode()
    for raw in lines:
        line = raw.rstrip(b"\r\n")
        if line.startswith(count_prefix) and line[len(count_prefix) :].isdigit():
            count.count = int(line[len(count_prefix) :])
        elif line.startswith(row_prefix):
            rows.append(line[len(row_prefix) :].decode("utf-8", "replace"))
    # ORDER BY in the query sorts the sample, but UNION ALL may hand the rows on in any order.
    count.sample = [_row(text) for text in sorted(rows, key=lambda text: text.encode())]
    return count


class CaptureOutput(StepOutput):
    """A check's output: stdout's marked lines and stderr's end kept (bounded), notices passed on.

    A passing or failing check says one line, not spark-sql's "Time taken ... Fetched 11 row(s)";
    its stderr is shown only when the engine failed (`finish`).
    """

    def __init__(self, inner: StepOutput, marker: str, lines: int) -> None:
        super().__init__(inner.notice)
        self._inner = inner
        self._marker = marker.encode()
        #: the most marked lines the engine's answer has: a count and a sample per check
        self._keep = lines
        self._partial = bytearray()
        self._stdout = LineBuffer()
        self._stderr = bytearray()
        self.lines: list[bytes] = []

    def feed(self, stream: Stream, chunk: bytes) -> None:
        if stream == "stderr":
            self._stderr += chunk
            del self._stderr[: max(0, len(self._stderr) - MAX_STDERR_BYTES)]
            return
        block = self._stdout.feed(chunk)
        if block:
            self.emit(stream, block)

    def emit(self, stream: Stream, block: bytes) -> None:
        for piece in block.splitlines(keepends=True):
            if len(self._partial) < MAX_SAMPLE_LINE_BYTES:
                self._partial += piece[: MAX_SAMPLE_LINE_BYTES - len(self._partial)]
            if piece.endswith(b"\n"):
                self._line()

    def _line(self) -> None:
        if self._partial.startswith(self._marker) and len(self.lines) < self._keep:
            self.lines.append(bytes(self._partial))
        self._partial.clear()

    def close(self) -> None:
        rest = self._stdout.rest()
        if rest:
            self.emit("stdout", rest)
        if self._partial:
            self._line()

    def finish(self, *, show_stderr: bool) -> None:
        """Pass the end of stderr on when the engine failed (its error is the news), and end the output."""
        if show_stderr and self._stderr:
            self._inner.feed("stderr", bytes(self._stderr))
        self._inner.close()


def new_marker() -> str:
    return f"nightshift-check-{secrets.token_hex(6)}"


def check_file(
    folder: Path,
    name: str,
    checks: Sequence[DataCheck],
    sample_rows: int,
    marker: str,
    *,
    store: FailuresTable | None = None,
) -> Path:
    """Write the generated file of `checks` into `folder`: a statement each, marked `marker`-N (N from 0).

    With `store`, the file first makes the failures table if it is missing, and appends each check's
    rows after every check has counted: a check the engine cannot run stops the file before anything
    is stored, so when each check then runs alone (run_checks), no row is stored twice in one run.
    """
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    path = folder / f"{safe}.check.sql"
    text = failures_table_sql(store) if store else ""
    text += "".join(check_sql(check, sample_rows, f"{marker}-{n}") for n, check in enumerate(checks))
    text += "".join(store_sql(check, store) for check in checks) if store else ""
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class CheckReport:
    """How one check ended: its status, the failing-row count and sample, or the engine's exit code."""

    check: DataCheck
    #: a CheckStatus, "not run", or "failed (exit N)" when the engine failed
    status: str = "not run"
    count: int | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int = 0
    seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)
    #: the failures table's name when [checks] failures_table is set
    failures_table: str | None = None
    #: the rows appended to it: a check that did not pass stores its rows, at most failures_max_rows
    stored: int = 0
    #: the query that reads this run's stored rows back (None when none were stored)
    failures_query: str | None = None

    def stored_in(self, store: FailuresTable | None) -> None:
        """Note what the generated file appended to `store` for this check (judged from its count)."""
        if store is None:
            return
        self.failures_table = store.name
        failed = self.count is not None and self.status in (CheckStatus.WARNED, CheckStatus.FAILED)
        self.stored = min(self.count or 0, store.max_rows) if failed else 0
        self.failures_query = store.query(self.check) if self.stored else None

    @property
    def line(self) -> str:
        """`passed`, `warned: 3 rows`, `failed: 1,204 rows`, or how the engine failed."""
        if self.count is None or self.status == CheckStatus.PASSED:
            return self.status
        return f"{self.status}: {self.count:,} row{'' if self.count == 1 else 's'}"

    def record(self, sample_rows: int) -> dict[str, Any]:
        """The check's JSON record (without pipeline and run, which the output adds).

        Its sample is bounded in bytes (MAX_RECORD_SAMPLE_BYTES); `sample_cut` counts the rows left out.
        """
        sample, size = [], 0
        for row in self.sample:
            size += len(json.dumps(row, ensure_ascii=False).encode("utf-8", "backslashreplace")) + 2
            if size > MAX_RECORD_SAMPLE_BYTES:
                break
            sample.append(row)
        cut = len(self.sample) - len(sample)
        return {
            "check": self.check.label,
            "stage": self.check.stage,
            "severity": str(self.check.severity),
            "status": self.status,
            "count": self.count,
            "sample": sample,
            "sample_rows": sample_rows,
            **({"sample_cut": cut} if cut else {}),
            **({"failures_table": self.failures_table, "stored": self.stored} if self.failures_table else {}),
            **({"failures_query": self.failures_query} if self.failures_query else {}),
            **({"exit_code": self.exit_code} if self.exit_code else {}),
        }


def report_of(check: DataCheck, record: Mapping[str, Any]) -> CheckReport:
    """A check's report from its JSON record (a deployed run's, read back from its task's log)."""
    count = record.get("count")
    sample = record.get("sample")
    exit_code = record.get("exit_code")
    table, stored, query = record.get("failures_table"), record.get("stored"), record.get("failures_query")
    return CheckReport(
        check,
        status=str(record.get("status", "not run")),
        count=count if isinstance(count, int) and not isinstance(count, bool) else None,
        sample=[row for row in sample if isinstance(row, dict)] if isinstance(sample, list) else [],
        exit_code=exit_code if isinstance(exit_code, int) else 0,
        failures_table=table if isinstance(table, str) else None,
        stored=stored if isinstance(stored, int) and not isinstance(stored, bool) else 0,
        failures_query=query if isinstance(query, str) else None,
    )


def result_lines(report: CheckReport) -> list[str]:
    """What the console says of a check's result: its line, then the sample of its rows as a table."""
    lines = [f"{report.check.label}: {report.line}"]
    if report.count:
        shown = len(report.sample)
        lines[0] += f" (a sample of {shown})" if shown < report.count else ""
        if report.stored and report.failures_table:
            lines[0] += f"; {report.stored:,} of {report.count:,} rows in {report.failures_table}"
        lines += sample_table(report.sample)
    return lines


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    # One row per line: control characters are shown, not obeyed.
    text = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 3] + "..."


def sample_table(sample: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    """The sample as a table: a header of column names, a line per row."""
    if not sample:
        return
    columns = list(sample[0])
    rows = [columns, *([_cell(row.get(column)) for column in columns] for row in sample)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    for row in rows:
        yield "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
