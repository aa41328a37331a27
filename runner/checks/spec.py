"""What a pipeline declares about its data checks: [checks] in pipeline.toml, and each check's query."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runner.errors import ConfigError

#: NN_name.check.sql: the check belongs to stage NN and runs after that stage's steps.
CHECK_SUFFIX = ".check.sql"
CHECK_FILE = re.compile(r"^(?P<stage>\d+)_(?P<label>[^.]+)\.check\.sql$")
DEFAULT_SAMPLE_ROWS = 10
MAX_SAMPLE_ROWS = 1000
#: [checks] failures_max_rows: at most this many of a check's rows are stored per run, by default.
DEFAULT_FAILURES_MAX_ROWS = 1000
MAX_FAILURES_MAX_ROWS = 100_000
#: A table or column name a built-in check may quote into its query: an identifier, maybe qualified.
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TABLE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")
#: The whole of pipeline.toml's [checks.table.NAME] may name a ${variable} database: "${database}.users".
TABLE_TEMPLATE = re.compile(
    r"^(\$\{[A-Za-z_][A-Za-z0-9_]*\}\.|[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$"
)


class Severity(StrEnum):
    ERROR = "error"
    WARN = "warn"


class CheckStatus(StrEnum):
    PASSED = "passed"
    WARNED = "warned"
    FAILED = "failed"


@dataclass(frozen=True)
class Thresholds:
    """When a number of failing rows passes, warns or fails (dbt's warn_if/error_if, as counts)."""

    severity: Severity = Severity.ERROR
    #: more failing rows than this: warned
    warn_above: int = 0
    #: more failing rows than this: failed (severity error only)
    error_above: int = 0

    def status(self, count: int) -> CheckStatus:
        if self.severity is Severity.ERROR and count > self.error_above:
            return CheckStatus.FAILED
        if count > self.warn_above:
            return CheckStatus.WARNED
        return CheckStatus.PASSED


@dataclass(frozen=True)
class TableChecks:
    """[checks.table.NAME]: built-in checks of one table, run after stage `stage`."""

    table: str
    stage: int
    unique: tuple[str, ...] = ()
    not_null: tuple[str, ...] = ()
    accepted_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    date_column: str | None = None
    min_rows: int | None = None
    max_age_days: int | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class ChecksConfig:
    """pipeline.toml's [checks]: the sample size, each check file's thresholds, the built-in checks."""

    sample_rows: int = DEFAULT_SAMPLE_ROWS
    #: [checks.NN_name] by check name (the file name without .check.sql)
    files: Mapping[str, Thresholds] = field(default_factory=dict)
    tables: tuple[TableChecks, ...] = ()
    #: [checks] failures_table: the catalog table a failing check's rows are appended to (None: off)
    failures_table: str | None = None
    failures_max_rows: int = DEFAULT_FAILURES_MAX_ROWS


@dataclass(frozen=True)
class DataCheck:
    """One check: a query whose rows are the failures, run after its stage's steps."""

    name: str
    stage: int
    #: the query as the user wrote it (a file's text) or as a built-in check generates it
    query: str
    #: the check's name in the runner's lines: its file name, or "users.unique" for a built-in one
    label: str
    thresholds: Thresholds = field(default_factory=Thresholds)
    #: where a built-in check is declared ("pipeline.toml [checks.table.users]"); None: its own file
    declared_in: str | None = None

    @property
    def severity(self) -> Severity:
        return self.thresholds.severity


Fail = Callable[[str, str], ConfigError]


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _thresholds(section: dict[str, Any], where: str, fail: Fail) -> Thresholds:
    severity = section.pop("severity", "error")
    if severity not in tuple(Severity):
        raise fail(f"{where} severity", f"expected 'error' or 'warn', got {severity!r}")
    values = {}
    for key in ("warn_above", "error_above"):
        if key in section:
            value = section.pop(key)
            if not _count(value):
                raise fail(f"{where} {key}", f"expected a number of failing rows (0 or more), got {value!r}")
            values[key] = value
    if severity == Severity.WARN and "error_above" in values:
        raise fail(f"{where} error_above", "a 'warn' check never fails: give warn_above, or severity 'error'")
    thresholds = Thresholds(Severity(severity), **values)
    if severity == Severity.ERROR and thresholds.warn_above > thresholds.error_above:
        raise fail(
            f"{where} warn_above",
            f"{thresholds.warn_above} is above error_above ({thresholds.error_above}): it would never warn",
        )
    return thresholds


def _unknown(section: Mapping[str, Any], where: str, known: tuple[str, ...], fail: Fail) -> None:
    for key in section:
        if key not in known:
            raise fail(f"{where} {key}", f"unknown key (expected one of: {', '.join(sorted(known))})")


_THRESHOLD_KEYS = ("severity", "warn_above", "error_above")
_TABLE_KEYS = (
    *_THRESHOLD_KEYS, "stage", "unique", "not_null", "accepted_values", "date_column", "min_rows",
    "max_age_days",
)  # fmt: skip


def _columns(value: Any, where: str, fail: Fail) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail(where, f"expected a non-empty list of column names, got {value!r}")
    for name in value:
        if not IDENTIFIER.match(name):
            raise fail(where, f"{name!r} is not a column name (letters, digits and '_')")
    return tuple(value)


def _table(name: str, section: Any, fail: Fail) -> TableChecks:
    where = f"[checks.table.{name}]"
    if not isinstance(section, dict):
        raise fail(where, "expected a table ([checks.table.NAME])")
    if not TABLE_TEMPLATE.match(name):
        raise fail(
            where, "expected a table name, maybe with its database: users, db.users, ${database}.users"
        )
    section = dict(section)
    _unknown(section, where, _TABLE_KEYS, fail)
    thresholds = _thresholds(section, where, fail)
    stage = section.pop("stage", None)
    if not isinstance(stage, int) or isinstance(stage, bool) or stage < 0:
        raise fail(f"{where} stage", f"expected the stage number whose steps make the table, got {stage!r}")
    unique = _columns(section["unique"], f"{where} unique", fail) if "unique" in section else ()
    not_null = _columns(section["not_null"], f"{where} not_null", fail) if "not_null" in section else ()
    accepted: list[tuple[str, tuple[str, ...]]] = []
    if "accepted_values" in section:
        table = section["accepted_values"]
        if not isinstance(table, dict) or not table:
            raise fail(
                f"{where} accepted_values",
                "expected a table of column = [values], such as { country = ['DE'] }",
            )
        for column, values in table.items():
            at = f"{where} accepted_values.{column}"
            if not IDENTIFIER.match(column):
                raise fail(at, f"{column!r} is not a column name (letters, digits and '_')")
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                raise fail(at, f"expected a non-empty list of strings, got {values!r}")
            accepted.append((column, tuple(values)))
    date_column = section.get("date_column")
    if date_column is not None and not (isinstance(date_column, str) and IDENTIFIER.match(date_column)):
        raise fail(f"{where} date_column", f"expected a column name, got {date_column!r}")
    numbers: dict[str, int] = {}
    for key in ("min_rows", "max_age_days"):
        if key in section:
            value = section[key]
            if not _count(value) or (key == "min_rows" and value < 1):
                low = 1 if key == "min_rows" else 0
                raise fail(f"{where} {key}", f"expected an integer from {low}, got {value!r}")
            numbers[key] = value
    if "max_age_days" in numbers and date_column is None:
        raise fail(f"{where} max_age_days", "needs date_column: the column whose newest date is checked")
    if not (unique or not_null or accepted or numbers):
        raise fail(where, "no check: give unique, not_null, accepted_values, min_rows or max_age_days")
    return TableChecks(
        table=name,
        stage=stage,
        unique=unique,
        not_null=not_null,
        accepted_values=tuple(accepted),
        date_column=date_column,
        min_rows=numbers.get("min_rows"),
        max_age_days=numbers.get("max_age_days"),
        thresholds=thresholds,
    )


_CHECKS_KEYS = ("sample_rows", "failures_table", "failures_max_rows", "table")


def _failures(section: dict[str, Any], fail: Fail) -> tuple[str | None, int]:
    """[checks] failures_table and failures_max_rows, taken out of `section`."""
    table = section.pop("failures_table", None)
    if table is not None and not (isinstance(table, str) and TABLE_TEMPLATE.match(table)):
        raise fail(
            "[checks] failures_table",
            f"expected a table name, maybe with its database: check_failures, db.check_failures,"
            f" ${{database}}.check_failures; got {table!r}",
        )
    if "failures_max_rows" not in section:
        return table, DEFAULT_FAILURES_MAX_ROWS
    rows = section.pop("failures_max_rows")
    if not _count(rows) or not 1 <= rows <= MAX_FAILURES_MAX_ROWS:
        raise fail(
            "[checks] failures_max_rows",
            f"expected an integer from 1 to {MAX_FAILURES_MAX_ROWS:,}, got {rows!r}",
        )
    if table is None:
        raise fail("[checks] failures_max_rows", "needs failures_table: the table the failing rows go to")
    return table, rows


def parse_checks(data: Any, fail: Fail) -> ChecksConfig:
    """pipeline.toml's [checks], validated: any unknown key or wrong value is one ConfigError."""
    if not isinstance(data, dict):
        raise fail("[checks]", "expected a table ([checks])")
    section = dict(data)
    sample_rows = section.pop("sample_rows", DEFAULT_SAMPLE_ROWS)
    if not _count(sample_rows) or sample_rows > MAX_SAMPLE_ROWS:
        raise fail(
            "[checks] sample_rows", f"expected an integer from 0 to {MAX_SAMPLE_ROWS}, got {sample_rows!r}"
        )
    failures_table, failures_max_rows = _failures(section, fail)
    tables = section.pop("table", {})
    if not isinstance(tables, dict):
        raise fail("[checks.table]", "expected tables [checks.table.NAME]")
    files: dict[str, Thresholds] = {}
    for name, settings in section.items():
        where = f"[checks.{name}]"
        if not re.match(r"^\d+_[^.]+$", name):
            near = difflib.get_close_matches(name, _CHECKS_KEYS, n=1, cutoff=0.5)
            raise fail(
                f"[checks] {name}",
                "unknown key (expected sample_rows, table, or a check's name such as 20_unique_users"
                " for 20_unique_users.check.sql; the failing rows' table: failures_table, failures_max_rows)"
                + (f"; did you mean {near[0]!r}?" if near else ""),
            )
        if not isinstance(settings, dict):
            raise fail(where, "expected a table of severity, warn_above, error_above")
        _unknown(settings, where, _THRESHOLD_KEYS, fail)
        files[name] = _thresholds(dict(settings), where, fail)
    return ChecksConfig(
        sample_rows=sample_rows,
        files=files,
        tables=tuple(_table(name, table, fail) for name, table in tables.items()),
        failures_table=failures_table,
        failures_max_rows=failures_max_rows,
    )


def sql_literal(value: str) -> str:
    # Spark and Hive read a backslash in a string literal as an escape.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _toml_key(name: str) -> str:
    """A table's name as a key of pipeline.toml: quoted unless it is a bare key."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else '"' + name + '"'


def builtin_checks(table: TableChecks) -> list[DataCheck]:
    """The checks [checks.table.NAME] declares, each a query whose rows are the failures."""
    name, stage, thresholds = table.table, table.stage, table.thresholds
    checks: list[tuple[str, str]] = []
    if table.unique:
        columns = ", ".join(table.unique)
        checks.append((
            "unique",
            f"SELECT {columns}, count(*) AS nightshift_rows\nFROM {name}\n"
            f"GROUP BY {columns}\nHAVING count(*) > 1",
        ))  # fmt: skip
    if table.not_null:
        condition = " OR ".join(f"{column} IS NULL" for column in table.not_null)
        checks.append(("not_null", f"SELECT *\nFROM {name}\nWHERE {condition}"))
    if table.accepted_values:
        condition = "\n   OR ".join(
            f"({column} IS NOT NULL AND {column} NOT IN ({', '.join(map(sql_literal, values))}))"
            for column, values in table.accepted_values
        )
        checks.append(("accepted_values", f"SELECT *\nFROM {name}\nWHERE {condition}"))
    if table.min_rows is not None:
        where = f"\nWHERE {table.date_column} = '${{run_date}}'" if table.date_column else ""
        checks.append((
            "min_rows",
            f"SELECT count(*) AS nightshift_rows, {table.min_rows} AS nightshift_expected\n"
            f"FROM {name}{where}\nHAVING count(*) < {table.min_rows}",
        ))  # fmt: skip
    if table.max_age_days is not None:
        column = table.date_column
        checks.append((
            "max_age_days",
            f"SELECT max({column}) AS nightshift_newest, '${{run_date}}' AS nightshift_run_date\n"
            f"FROM {name}\nHAVING max({column}) IS NULL"
            f" OR to_date(max({column})) < date_sub(to_date('${{run_date}}'), {table.max_age_days})",
        ))  # fmt: skip
    short = name.rsplit(".", 1)[-1]
    return [
        DataCheck(
            name=f"{stage}_{short}.{kind}",
            stage=stage,
            query=query,
            label=f"{short}.{kind}",
            thresholds=thresholds,
            declared_in=f"pipeline.toml [checks.table.{_toml_key(name)}]",
        )
        for kind, query in checks
    ]
