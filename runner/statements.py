"""Where each statement of a SQL step starts, as spark-sql's command line splits the file."""

from __future__ import annotations

import re
from pathlib import Path

# Hive's command processors that run without spark-sql's "Time taken" line, and commands that run
# other statements or end the file: after one of them the count of finished statements says nothing.
_UNCOUNTED = frozenset({"dfs", "crypto", "reload", "compile", "source", "quit", "exit"})
_NEWLINE = re.compile(r"\r\n|\r|\n")


def _kept_lines(text: str) -> tuple[str, list[int]]:
    """The text spark-sql -f splits, and the file's line number of each of its lines.

    Hive 2.3's CliDriver.processReader, which spark-sql 3.5 uses, reads the file line by line and
    leaves out each line that starts with "--".
    """
    kept, numbers = [], []
    for number, line in enumerate(_NEWLINE.split(text), 1):
        if not line.startswith("--"):
            kept.append(line + "\n")
            numbers.append(number)
    return "".join(kept), numbers


def _split(line: str) -> list[tuple[int, int]]:
    """(first, end) of each statement, as SparkSQLCLIDriver.splitSemiColon (Spark 3.5) cuts `line`.

    `first` is the statement's first character outside blanks and comments (or its start).

    Quotes, backslash escapes, -- and nested /* */ comments hide a ';'; a piece with only blanks
    and comments is no statement.
    """
    single = double = simple_comment = escape = statement = leaving_bracket = False
    bracket_level = begin = 0
    first: int | None = None
    pieces: list[tuple[int, int]] = []
    for index, char in enumerate(line):
        split = False
        if leaving_bracket:
            bracket_level -= 1
            leaving_bracket = False
        in_comment = simple_comment or bracket_level > 0
        if char == "'" and not in_comment:
            if not escape and not double:
                single = not single
        elif char == '"' and not in_comment:
            if not escape and not single:
                double = not double
        elif char == "-":
            if not (double or single or in_comment) and index + 1 < len(line) and line[index + 1] == "-":
                simple_comment = True
        elif char == ";":
            if not (single or double or in_comment):
                if statement:
                    pieces.append((begin if first is None else first, index))
                begin, statement, first, split = index + 1, False, None, True
        elif char == "\n":
            if not escape:
                simple_comment = False
        elif char == "/" and not simple_comment and not (single or double):
            if bracket_level > 0 and line[index - 1] == "*":
                leaving_bracket = True
            elif index + 1 < len(line) and line[index + 1] == "*":
                bracket_level += 1
        if escape:
            escape = False
        elif char == "\\":
            escape = True
        in_comment = simple_comment or bracket_level > 0
        statement = statement or (not in_comment and index > begin and not char.isspace())
        if first is None and not split and not in_comment and not char.isspace():
            first = index
    end_of_bracket = leaving_bracket and bracket_level == 1
    if not end_of_bracket and (statement or bracket_level > 0):
        pieces.append((begin if first is None else first, len(line)))
    return pieces


def _first_token(text: str) -> str:
    words = text.strip().split(maxsplit=1)
    return words[0].lower() if words else ""


def statement_start_lines(path: Path) -> list[int] | None:
    """The file line on which each statement spark-sql would run starts (its first non-blank line).

    None when the statements cannot be counted by their "Time taken" lines: the file runs dfs,
    source, ! and the like, or may set the CLI silent.
    """
    text = path.read_bytes().decode("utf-8", errors="replace").removeprefix("\ufeff")
    if "silent" in text.lower():
        return None
    kept, numbers = _kept_lines(text)
    starts: list[int] = []
    pending: int | None = None  # a piece ending in a backslash runs joined to the next one
    for start, end in _split(kept):
        first = pending if pending is not None else start
        if kept[start:end].endswith("\\"):
            pending = first
            continue
        pending = None
        command = kept[first:end]
        if not command.strip():
            continue
        if _first_token(command) in _UNCOUNTED or command.strip().startswith("!"):
            return None
        starts.append(numbers[kept.count("\n", 0, first)])
    return starts
