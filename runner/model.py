"""The pipeline model: a folder of NN_name.ext step files grouped into stages, plus pipeline.toml."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from runner.checks.spec import CHECK_FILE, CHECK_SUFFIX, DataCheck, builtin_checks
from runner.config import CONFIG_FILE, PipelineConfig, load_config
from runner.dates import DATE_VARIABLES
from runner.errors import PipelineError, UsageError

STEP_FILE = re.compile(r"^(?P<stage>\d+)_(?P<label>[^.]+)\.(?P<ext>[^.]+)$")
UTF8_BOM = b"\xef\xbb\xbf"


class Engine(StrEnum):
    SPARK_SQL = "spark-sql"
    HIVE = "hive"
    SPARK_SUBMIT = "spark-submit"
    BASH = "bash"

    @property
    def is_sql(self) -> bool:
        return self in (Engine.SPARK_SQL, Engine.HIVE)


# None: the pipeline's default SQL engine decides.
EXTENSIONS: dict[str, Engine | None] = {
    ".sql": None,
    ".hql": Engine.HIVE,
    ".py": Engine.SPARK_SUBMIT,
    ".sh": Engine.BASH,
}


@dataclass(frozen=True)
class Step:
    """One file that runs as one engine invocation."""

    path: Path
    stage: int | None
    engine: Engine
    #: spark-sql and hive read a UTF-8 byte-order mark as part of the first statement
    starts_with_bom: bool = False

    @property
    def name(self) -> str:
        """The step's name in logs, summaries and the state machine: the file name without extension."""
        return self.path.stem

    @property
    def file_name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Stage:
    number: int | None
    steps: tuple[Step, ...]
    #: data checks, run after the stage's steps and before the next stage
    checks: tuple[DataCheck, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    """A runnable unit: a whole folder, or a single step file with its folder's settings."""

    name: str
    folder: Path
    config: PipelineConfig
    stages: tuple[Stage, ...]

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(step for stage in self.stages for step in stage.steps)

    @property
    def checks(self) -> tuple[DataCheck, ...]:
        return tuple(check for stage in self.stages for check in stage.checks)


def _known_extensions() -> str:
    names = sorted(EXTENSIONS)
    return ", ".join(names[:-1]) + " or " + names[-1]


def engine_for(path: Path, config: PipelineConfig) -> Engine:
    """The engine a file runs on, by its extension."""
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise PipelineError(
            f"{path}: unknown extension {suffix or '(none)'!r} (expected {_known_extensions()})"
        )
    return EXTENSIONS[suffix] or Engine(config.default_engine)


def check_step_file(path: Path) -> bool:
    """Refuse files that cannot be a step: unreadable, empty, or not UTF-8 text; tell whether a BOM leads."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PipelineError(f"{path}: cannot read: {error.strerror}") from error
    body = data.removeprefix(UTF8_BOM)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start + (len(data) - len(body))
        raise PipelineError(f"{path}: not UTF-8 text (invalid byte at offset {offset})") from error
    if not text.strip():
        raise PipelineError(f"{path}: the step file is empty")
    return len(body) != len(data)


def _read_check(path: Path, config: PipelineConfig) -> DataCheck:
    match = CHECK_FILE.match(path.name)
    if match is None:
        raise PipelineError(f"{path}: check files are named NN_name{CHECK_SUFFIX} (NN is the stage number)")
    check_step_file(path)
    # The BOM goes: the query is placed inside the runner's own file, not at its start.
    text = path.read_bytes().removeprefix(UTF8_BOM).decode("utf-8")
    name = path.name[: -len(CHECK_SUFFIX)]
    thresholds = config.checks.files.get(name)
    extra = () if thresholds is None else (thresholds,)
    return DataCheck(name, int(match["stage"]), text, path.name, *extra)


def _read_folder(folder: Path, config: PipelineConfig, checks: list[DataCheck]) -> list[Step]:
    steps: list[Step] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.name == CONFIG_FILE:
            continue
        if path.name.lower().endswith(CHECK_SUFFIX):
            checks.append(_read_check(path, config))
            continue
        match = STEP_FILE.match(path.name)
        if match is None:
            if path.suffix.lower() in EXTENSIONS:
                raise PipelineError(
                    f"{path}: step files are named NN_name{path.suffix} (NN is the stage number)"
                )
            continue  # READMEs, notes and data files live beside the steps
        engine = engine_for(path, config)
        if path.stem in seen:
            raise PipelineError(
                f"{folder}: two steps named {path.stem!r} ({seen[path.stem].name}, {path.name})"
            )
        seen[path.stem] = path
        bom = check_step_file(path)
        steps.append(Step(path=path, stage=int(match["stage"]), engine=engine, starts_with_bom=bom))
    return steps


def _group(steps: list[Step], checks: list[DataCheck]) -> tuple[Stage, ...]:
    numbers = sorted({step.stage for step in steps if step.stage is not None})
    return tuple(
        Stage(
            number,
            tuple(step for step in steps if step.stage == number),
            tuple(check for check in checks if check.stage == number),
        )
        for number in numbers
    )


def _all_checks(
    folder: Path, config: PipelineConfig, files: list[DataCheck], stages: list[int]
) -> list[DataCheck]:
    """The folder's check files and pipeline.toml's built-in checks, each of a stage that has steps."""
    names = {check.name for check in files}
    for name in config.checks.files:
        if name not in names:
            raise PipelineError(
                f"{folder / CONFIG_FILE}: [checks.{name}]: no check file {name}{CHECK_SUFFIX} in {folder}"
            )
    checks = list(files)
    for table in config.checks.tables:
        if table.stage not in stages:
            raise PipelineError(
                f"{folder / CONFIG_FILE}: [checks.table.{table.table}] stage: {table.stage} has no steps"
                f" (stages: {', '.join(map(str, stages))})"
            )
        checks += builtin_checks(table)
    for check in files:
        if check.stage not in stages:
            raise PipelineError(
                f"{folder / check.label}: stage {check.stage} has no steps; a check runs after its stage's"
                f" steps (stages: {', '.join(map(str, stages))})"
            )
    return checks


# The EMR application each engine runs on; a .sh step needs none beyond the cluster itself.
_APPLICATION_OF = {Engine.SPARK_SQL: "Spark", Engine.SPARK_SUBMIT: "Spark", Engine.HIVE: "Hive"}


def _check_applications(folder: Path, config: PipelineConfig, stages: tuple[Stage, ...]) -> None:
    """Refuse at load a step whose engine the cluster would not have: found at 6 pm, not at 3 a.m."""
    # RunJobFlow matches application names without regard to case.
    have = {name.lower() for name in config.cluster.applications}
    needs = [(step.file_name, _APPLICATION_OF[step.engine]) for stage in stages for step in stage.steps
             if step.engine in _APPLICATION_OF]  # fmt: skip
    # Data checks run on spark-sql, on the cluster as locally.
    needs += [(check.label, "Spark") for stage in stages for check in stage.checks]
    missing = [(file, app) for file, app in needs if app.lower() not in have]
    if missing:
        file, app = missing[0]
        raise PipelineError(
            f"{folder / CONFIG_FILE}: [cluster] applications {list(config.cluster.applications)} lack"
            f" {app}, which {file} runs on: add {app!r} to the list"
        )


def load_pipeline(target: Path) -> Pipeline:
    """Load a pipeline folder, or a single step file as a one-step pipeline."""
    if not target.exists():
        raise UsageError(f"{target}: no such file or folder")
    if target.is_dir():
        folder = target.resolve()
        config = load_config(folder)
        files: list[DataCheck] = []
        steps = _read_folder(folder, config, files)
        if not steps:
            raise PipelineError(
                f"{target}: no steps (expected files named NN_name.ext, ext {_known_extensions()})"
            )
        stages = sorted({step.stage for step in steps if step.stage is not None})
        checks = _all_checks(folder, config, files, stages)
        grouped = _group(steps, checks)
        _check_applications(folder, config, grouped)
        return Pipeline(name=folder.name, folder=folder, config=config, stages=grouped)
    path = target.resolve()
    config = load_config(path.parent)
    name = path.parent.name if (path.parent / CONFIG_FILE).is_file() else path.stem
    if path.name.lower().endswith(CHECK_SUFFIX):
        # One check, run as a check (a count and a sample), not as a step printing every failing row.
        check = _read_check(path, config)
        return Pipeline(
            name=name, folder=path.parent, config=config, stages=(Stage(check.stage, (), (check,)),)
        )
    engine = engine_for(path, config)
    bom = check_step_file(path)
    match = STEP_FILE.match(path.name)
    stage = int(match["stage"]) if match else None
    step = Step(path=path, stage=stage, engine=engine, starts_with_bom=bom)
    alone = (Stage(stage, (step,)),)
    _check_applications(path.parent, config, alone)
    return Pipeline(name=name, folder=path.parent, config=config, stages=alone)


# spark-sql's substitution: ${name} and ${hivevar:name} (${define:name} alike) are the pipeline's
# variables; ${env:X}, ${system:x}, ${hiveconf:x}, ${spark:x} and ${sparkconf:x} are the engine's own.
_REFERENCE = re.compile(r"\$\{(?:(?P<space>[A-Za-z]+):)?(?P<name>[^}:]*)\}")
_OWN_NAMESPACES = frozenset({"hivevar", "define"})
# A file may define its own: SET name=..., SET hivevar:name=...
_SET_VARIABLE = re.compile(
    r"^\s*SET\s+(?:(?:hivevar|define):)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=", re.I | re.M
)


@dataclass(frozen=True)
class UndefinedVariable:
    """A ${name} in a SQL step or a check that no variable defines: spark-sql puts an empty string there."""

    #: the step's or check's file name, or where pipeline.toml declares a built-in check
    source: str
    #: the file's line (None for a built-in check: its query is generated)
    line: int | None
    name: str
    defined: tuple[str, ...]

    def __str__(self) -> str:
        own = sorted(name for name in self.defined if name not in DATE_VARIABLES)
        known = ", ".join(own) + ("; " if own else "") + "the dates run_date, prev_date, next_date, *_nodash"
        near = difflib.get_close_matches(self.name, self.defined, n=1)
        hint = f"; did you mean ${{{near[0]}}}?" if near else ""
        where = self.source if self.line is None else f"{self.source} line {self.line}"
        return (
            f"{where}: ${{{self.name}}} is not defined, spark-sql would put"
            f" an empty string there (defined: {known}){hint}"
        )


def undefined_variables(
    steps: Iterable[Step], defined: Collection[str], checks: Iterable[DataCheck] = ()
) -> list[UndefinedVariable]:
    """Each ${name} in the SQL `steps` or `checks` that neither `defined` nor a SET in its file defines."""
    sources: list[tuple[str, str, bool]] = [
        (step.file_name, step.path.read_bytes().decode("utf-8", errors="replace"), True)
        for step in steps
        if step.engine.is_sql
    ]
    # A check file's query is its text (without a BOM): its lines are the file's.
    sources += [
        (check.declared_in or check.label, check.query, check.declared_in is None) for check in checks
    ]
    found: dict[tuple[str, int | None, str], UndefinedVariable] = {}
    for source, text, has_lines in sources:
        own = {match["name"] for match in _SET_VARIABLE.finditer(text)}
        for number, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("--"):
                continue  # a comment: the typo there changes nothing
            for match in _REFERENCE.finditer(line):
                space, name = match["space"], match["name"]
                if space is not None and space.lower() not in _OWN_NAMESPACES:
                    continue
                if name not in defined and name not in own:
                    # A table's built-in checks share its name: said once.
                    key = (source, number if has_lines else None, name)
                    found.setdefault(key, UndefinedVariable(source, key[1], name, tuple(defined)))
    return list(found.values())


#: What marks a project's root folder: a git repository, or a CDK app (cdk.json) such as this one.
PROJECT_MARKERS = (".git", "cdk.json")


def project_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds .git or cdk.json; None outside any project.

    Local runs resolve relative paths (the default state dir, [variables.local], [inputs], a step's
    own) from there, so a run from inside a pipeline folder reads what a run from the root reads.
    """
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return None
