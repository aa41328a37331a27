"""Spark for the fidelity tests: one bare `spark-sql -f` reference per step and setting, and one shared warm engine."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest
from filelock import FileLock, Timeout

from runner.local.executor import _spark_home
from runner.local.java import find_java_home
from runner.local.warm.client import engine_alive, stop_engine
from tests.conftest import ROOT, UTF8_TERMINAL
from tests.support.shared import made_once, made_once_unless_busy, session_root

#: The files whose bytes the runner must pass to spark-sql untouched, on every engine.
CORPUS = sorted((ROOT / "tests" / "fidelity_corpus").glob("*.sql"))
#: The corpus in the order its tests run: the files that sleep first. The local, warm and SSH fidelity
#: files start the suite on three workers at once (HEAVY_FILES), so their two minutes of sleeping
#: (08_two_minutes.sql) fall in the same two minutes, while the others' references are made beside
#: them, instead of three workers sleeping at the end of each file with the processor idle.
SLEEPERS = [step for step in CORPUS if b"'java.lang.Thread', 'sleep'" in step.read_bytes()]
CORPUS_RUN_ORDER = sorted(CORPUS, key=lambda step: step not in SLEEPERS)
#: The Spark SQL CLI's own behaviours beyond the corpus, each Spark's code, not the runner's: the warm
#: engine must show them as a cold spark-sql does (test_warm_fidelity).
CLI_BEHAVIOURS = sorted((ROOT / "tests" / "fidelity_corpus" / "cli").glob("*.sql"))
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
        self._guard = threading.Lock()
        self._stopping = False
        #: the reference the thread of make_ahead is making now, for stop() to end
        self._making: subprocess.Popen[bytes] | None = None
        self._ahead: threading.Thread | None = None

    def __call__(
        self, step: Path, hivevars: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
    ) -> Reference:
        folder, make = self._job(step, hivevars, env, ahead=False)
        made_once(folder, make)
        return Reference(
            stdout=(folder / "stdout").read_bytes(),
            stderr=(folder / "stderr").read_bytes(),
            returncode=int((folder / "returncode").read_text()),
        )

    def make_ahead(self, steps: Sequence[Path], hivevars: Mapping[str, str]) -> None:
        """Start making these steps' references in a thread, in this order, so that a test finds its own
        made or in progress: one at a time in the whole session (every worker's thread takes turns under
        one file lock), passing over one a test or another worker is making, until stop()."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._ahead = threading.Thread(
            target=self._make_ahead, args=(list(steps), dict(hivevars)), name="references-ahead", daemon=True
        )
        self._ahead.start()

    def stop(self) -> None:
        """End the reference being made ahead, if any: it leaves no mark, so whoever asks makes it again."""
        with self._guard:
            self._stopping = True
            if self._making is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._making.pid, signal.SIGKILL)
        if self._ahead is not None:
            self._ahead.join()

    def _make_ahead(self, steps: list[Path], hivevars: dict[str, str]) -> None:
        turn = FileLock(f"{self.root}/ahead.lock")
        for step in steps:
            folder, make = self._job(step, hivevars, None, ahead=True)
            if folder.with_name(f"{folder.name}.done").exists():
                continue
            # The turn's holder may be another worker's thread; look up now and then to see if ours ended.
            while not self._stopping:
                try:
                    turn.acquire(timeout=1)
                    break
                except Timeout:
                    continue
            else:
                return
            try:
                made_once_unless_busy(folder, make)
            except Exception:
                # It left no mark: the test that asks for it makes it again, and fails there if it fails.
                return
            finally:
                turn.release()

    def _job(
        self, step: Path, hivevars: Mapping[str, str] | None, env: Mapping[str, str] | None, *, ahead: bool
    ) -> tuple[Path, Callable[[Path], None]]:
        hivevars, env = dict(hivevars or {}), dict(env or {})
        java_home = find_java_home()
        # Everything that can change what spark-sql prints: the step (where it is and its bytes), the
        # variables, the environment it gets beyond the session's own, Spark's version and the JVM.
        setting = json.dumps(
            [str(step.resolve()), sorted(hivevars.items()), sorted({**UTF8_TERMINAL, **env}.items()),
             pyspark.__version__, str(java_home)],
        )  # fmt: skip
        digest = hashlib.sha256(setting.encode() + b"\0" + step.read_bytes()).hexdigest()[:20]
        folder = self.root / f"{step.stem[:40]}-{digest}"
        return folder, lambda cwd: self._run(step, cwd, hivevars, env, java_home, ahead=ahead)

    def _run(
        self,
        step: Path,
        cwd: Path,
        hivevars: dict[str, str],
        env: dict[str, str],
        java_home: Path,
        *,
        ahead: bool,
    ) -> None:
        environ = {
            **os.environ,
            **UTF8_TERMINAL,
            "JAVA_HOME": str(java_home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            **env,
        }
        args = [arg for name, value in hivevars.items() for arg in ("--hivevar", f"{name}={value}")]
        with self._guard:
            if ahead and self._stopping:
                raise _Stopped
            # A session of its own: the JVM that spark-sql's scripts exec into ends with its group.
            process = subprocess.Popen(
                [str(_spark_home() / "bin" / "spark-sql"), *args, "-f", str(step)],
                cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
            if ahead:
                self._making = process
        try:
            stdout, stderr = process.communicate(timeout=600)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
            if ahead:
                with self._guard:
                    self._making = None
        if ahead and self._stopping:
            raise _Stopped
        (cwd / "stdout").write_bytes(stdout)
        (cwd / "stderr").write_bytes(stderr)
        (cwd / "returncode").write_text(str(process.returncode))


class _Stopped(Exception):
    """The session ended while a reference was made ahead: what it printed is no reference."""


def corpus_asked(items: Sequence[pytest.Item]) -> list[Path]:
    """The corpus files (CLI_BEHAVIOURS too) the collected tests compare with a reference, in the order
    they run: a test's parameter is the file."""
    asked: list[Path] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "spark_sql_reference" not in getattr(item, "fixturenames", ()):
            continue
        for value in callspec.params.values():
            step = next((step for step in (*CORPUS, *CLI_BEHAVIOURS) if value == step), None)
            if step is not None and step not in asked:
                asked.append(step)
    return asked


@pytest.fixture(scope="session")
def spark_sql_reference(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[SparkSqlReference]:
    """The session's bare `spark-sql -f` references, shared by the local, warm and SSH fidelity tests.
    The corpus files' are made ahead in the background, but for the first the tests ask for: they ask
    for it at once, and a maker racing them for it would hold the session's one turn through it."""
    references = SparkSqlReference(session_root(tmp_path_factory) / "spark-sql-references")
    references.make_ahead(corpus_asked(request.session.items)[1:], fidelity_hivevars())
    yield references
    references.stop()


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
