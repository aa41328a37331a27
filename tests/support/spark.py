"""Spark for the fidelity tests: one bare `spark-sql -f` reference per step and setting, and one shared warm engine."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest
from filelock import FileLock

from runner.local.executor import _spark_home
from runner.local.java import find_java_home
from runner.local.warm.client import engine_alive, stop_engine
from tests.conftest import ROOT, UTF8_TERMINAL
from tests.support.shared import made_once, session_root

#: The files whose bytes the runner must pass to spark-sql untouched, on every engine.
CORPUS = sorted((ROOT / "tests" / "fidelity_corpus").glob("*.sql"))
#: The run date and variables of every fidelity run: quotes, `;` and a `${...}` that is no variable,
#: passed through each engine's command line (the runner's --var, spark-sql's --hivevar).
RUN_DATE = "2026-10-31"
VARIABLES = {"greeting": 'it\'s ${not} a "var"; really', "n": "3", "table": "fidelity_t"}


def fidelity_args() -> list[str]:
    """The runner's arguments for the fidelity run date and variables."""
    return [
        "--run-date",
        RUN_DATE,
        *(arg for name, value in VARIABLES.items() for arg in ("--var", f"{name}={value}")),
    ]


def fidelity_hivevars() -> dict[str, str]:
    """What spark-sql gets for fidelity_args(): the variables and the run date, as the runner passes them."""
    return {**VARIABLES, "run_date": RUN_DATE}


@dataclass(frozen=True)
class Reference:
    """What a bare `spark-sql -f` printed and how it ended."""

    stdout: bytes
    stderr: bytes
    returncode: int


class SparkSqlReference:
    """Bare `spark-sql [--hivevar N=V ...] -f STEP` as a user types it (no settings, its metastore and
    warehouse in a fresh working folder), run once per session for each step and setting; every
    pytest-xdist worker reads the same result."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(
        self, step: Path, hivevars: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
    ) -> Reference:
        hivevars, env = dict(hivevars or {}), dict(env or {})
        java_home = find_java_home()
        # Everything that can change what spark-sql prints: the step (where it is and its bytes), the
        # variables, the environment it gets beyond the session's own, Spark's version and the JVM.
        setting = json.dumps(
            [str(step.resolve()), sorted(hivevars.items()), sorted({**UTF8_TERMINAL, **env}.items()),
             pyspark.__version__, str(java_home)],
        )  # fmt: skip
        digest = hashlib.sha256(setting.encode() + b"\0" + step.read_bytes()).hexdigest()[:20]
        folder = made_once(
            self.root / f"{step.stem[:40]}-{digest}", lambda cwd: _run(step, cwd, hivevars, env, java_home)
        )
        return Reference(
            stdout=(folder / "stdout").read_bytes(),
            stderr=(folder / "stderr").read_bytes(),
            returncode=int((folder / "returncode").read_text()),
        )


def _run(step: Path, cwd: Path, hivevars: dict[str, str], env: dict[str, str], java_home: Path) -> None:
    environ = {
        **os.environ,
        **UTF8_TERMINAL,
        "JAVA_HOME": str(java_home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        **env,
    }
    args = [arg for name, value in hivevars.items() for arg in ("--hivevar", f"{name}={value}")]
    done = subprocess.run(
        [str(_spark_home() / "bin" / "spark-sql"), *args, "-f", str(step)],
        cwd=cwd, env=environ, capture_output=True, timeout=600, check=False,
    )  # fmt: skip
    (cwd / "stdout").write_bytes(done.stdout)
    (cwd / "stderr").write_bytes(done.stderr)
    (cwd / "returncode").write_text(str(done.returncode))


@pytest.fixture(scope="session")
def spark_sql_reference(tmp_path_factory: pytest.TempPathFactory) -> SparkSqlReference:
    """The session's bare `spark-sql -f` references, shared by the local, warm and SSH fidelity tests."""
    return SparkSqlReference(session_root(tmp_path_factory) / "spark-sql-references")


@pytest.fixture(scope="session")
def shared_warm_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The state dir of one warm engine for the whole session, every worker's, for the steps that only
    need Spark SQL: the engine gives each step a session of its own, so steps see no one else's
    settings, views or variables (test_warm_isolation). A test that ends, kills or holds its engine, or
    needs an empty metastore, has an engine of its own. The last worker to let go ends the engine.

    Run it from run_cli's default working folder: the folder is part of what an engine is started with
    (a cold spark-sql resolves relative paths from it), so a run from another one restarts the engine
    every worker shares, under a step of theirs."""
    folder = session_root(tmp_path_factory) / "shared-warm-engine"
    folder.mkdir(parents=True, exist_ok=True)
    users = folder / "users"
    with FileLock(f"{folder}.lock"):
        users.write_text(str(int(users.read_text()) + 1 if users.exists() else 1))
    state = folder / "state"
    yield state
    with FileLock(f"{folder}.lock"):
        left = int(users.read_text()) - 1
        users.write_text(str(left))
        if left == 0:
            stop_engine(state)
            assert not engine_alive(state)
