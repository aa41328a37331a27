"""Engine command lines: how a step file is handed to spark-sql, hive, spark-submit or bash."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runner.model import Engine

UTF8_LOCALE = "C.UTF-8"  # no language, no formats: only the UTF-8 codeset


def locale_is_utf8(environ: Mapping[str, str]) -> bool:
    """Whether a process with `environ` reads text as UTF-8: the codeset of LC_ALL, else LC_CTYPE, else LANG.

    That is POSIX's order for the character type; an empty value counts as unset.
    """
    value = environ.get("LC_ALL") or environ.get("LC_CTYPE") or environ.get("LANG") or ""
    codeset = value.partition(".")[2].partition("@")[0]
    return codeset.lower().replace("-", "") == "utf8"


def utf8_locale(environ: Mapping[str, str]) -> dict[str, str]:
    """What to add to `environ` so an engine reads and writes UTF-8: nothing when it already does."""
    return {} if locale_is_utf8(environ) else {"LC_ALL": UTF8_LOCALE}


@dataclass(frozen=True)
class Command:
    """A process to start: argv plus the environment variables it adds. The step is a file in argv."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def display(self) -> str:
        """The command as a shell would need it typed, for --dry-run."""
        prefix = [f"{name}={shlex.quote(value)}" for name, value in self.env.items()]
        return " ".join([*prefix, shlex.join(self.argv)])


def engine_command(
    engine: Engine,
    script: str,
    variables: Mapping[str, str],
    *,
    binaries: Mapping[Engine, str] | None = None,
    engine_args: Sequence[str] = (),
) -> Command:
    """Build the command that runs `script` on `engine`.

    SQL engines get variables through their own substitution (`--hivevar name=value`, read as
    `${hivevar:name}` or `${name}`); spark-submit and bash steps get them as environment variables.
    """
    binary = (binaries or {}).get(engine, engine.value)
    if engine.is_sql:
        hivevars = [arg for name, value in variables.items() for arg in ("--hivevar", f"{name}={value}")]
        return Command((binary, *engine_args, *hivevars, "-f", script))
    if engine is Engine.SPARK_SUBMIT:
        return Command((binary, *engine_args, script), dict(variables))
    return Command((binary, script), dict(variables))
