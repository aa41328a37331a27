"""Where each statement of a SQL step starts, as spark-sql splits a file, and which one failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.output import ErrorLine, StepOutput, Stream
from runner.statements import statement_start_lines


class Kept(StepOutput):
    """The step's output as it was passed on."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[tuple[Stream, bytes]] = []

    def emit(self, stream: Stream, block: bytes) -> None:
        self.blocks.append((stream, block))


def starts(tmp_path: Path, text: str) -> list[int] | None:
    path = tmp_path / "10_step.sql"
    path.write_text(text)
    return statement_start_lines(path)


def test_each_statement_starts_on_its_first_line_outside_blanks_and_comments(tmp_path: Path) -> None:
    text = (
        "-- a comment line with a ; and a '\n"  # 1: Hive's CLI drops it before splitting
        "CREATE VIEW v AS SELECT 1;\n"  # 2
        "\n"
        "  /* a; nested /* comment */ ; still one */\n"  # 4
        '  SELECT \'a;b\', "c;\\"d"\n'  # 5: quoted and escaped semicolons
        "  FROM v; -- ; after the statement\n"
        "SELECT 1\\;\n"  # 7: a piece ending in a backslash runs with the next one
        "SELECT 2;;\n"
        "SELECT 3"  # 9: the last statement needs no semicolon
    )
    assert starts(tmp_path, text) == [2, 5, 7, 9]


def test_windows_line_ends_and_a_byte_order_mark_count_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "10_step.sql"
    path.write_bytes(b"\xef\xbb\xbfSELECT 1;\r\n\r\nSELECT 2;\r\n")
    assert statement_start_lines(path) == [1, 3]


@pytest.mark.parametrize(
    "statement", ["dfs -ls /tmp", "source other.sql", "!echo hi", "SET hive.session.silent=true", "quit"]
)
def test_statements_that_print_no_time_taken_make_the_count_unknown(tmp_path: Path, statement: str) -> None:
    assert starts(tmp_path, f"SELECT 1;\n{statement};\nSELECT 2;\n") is None


def test_the_failing_statement_is_the_one_after_those_that_said_time_taken() -> None:
    output = ErrorLine(Kept())
    output.feed("stderr", b"WARN some warning\nSpark master: local[*], Application Id: local-1\n")
    output.feed(
        "stderr", b"Time taken: 1.2 seconds\n[Stage 0:>  (0 + 1) / 1]\r   Time taken: 0.5 seconds, Fetched"
    )
    output.feed("stderr", b" 1 row(s)\n[TABLE_OR_VIEW_NOT_FOUND] The table or view `x` cannot be found.\n")
    output.feed("stderr", b"Time taken: 9 seconds\n")  # a later statement (hive.cli.errors.ignore)
    output.close()
    assert output.statements_done == 2
    assert output.line.startswith("[TABLE_OR_VIEW_NOT_FOUND]")


@pytest.mark.parametrize(
    "stderr",
    [
        # Before spark-sql reached the file (an init file's statement, a start-up failure).
        b"[TABLE_OR_VIEW_NOT_FOUND] in an init file\nSpark master: local[*]\n",
        # A line that reads as an error but is not one spark-sql prints for a statement.
        b"Spark master: local[*]\nTime taken: 1 seconds\nERROR something else\n",
    ],
)
def test_without_spark_sqls_own_statement_error_the_statement_is_unknown(stderr: bytes) -> None:
    output = ErrorLine(Kept())
    output.feed("stderr", stderr)
    output.close()
    assert output.statements_done is None
