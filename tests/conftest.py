"""Shared test helpers: the project root, a way to run the CLI as a user does, no engine left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.spark_jvm import jvm_options
from runner.local.warm import protocol
from runner.local.warm.client import stop_engine

# Fixtures more than one tier uses, visible to every test (a conftest only reaches its own folder).
pytest_plugins = ["tests.support.aws", "tests.support.spark"]

ROOT = Path(__file__).resolve().parent.parent
#: A warm engine a test started ends by itself a minute after its last step, even if a test dies.
TEST_IDLE_MINUTES = "1"
#: The environment of runs that must find the same engine up however long the machine makes them
#: wait (a minute passes between two runs at load 20): each run sets its engine's idle time, and the
#: test's fixture ends the engine. Every run of such a test passes it, as the last run's idle counts.
HOLD_ENGINE = {"NIGHTSHIFT_ENGINE_IDLE_MINUTES": "30"}
#: The environment of a reference `spark-sql` a test compares the runner with: a user at a UTF-8
#: terminal, as on EMR. CI may run the tests under LC_ALL=C, where a bare JVM reads the step as ASCII;
#: the runner gives its engines UTF-8 whatever the caller's locale (test_local_spark, test_ssh_locale).
UTF8_TERMINAL = {"LC_ALL": "C.UTF-8"}
#: Every JVM the tests start (warm engines, cold and reference spark-sql, the SSH "cluster"'s) runs with
#: devtools/spark_jvm.py's options: C1 alone, and Spark's classes from a class-data archive made once per
#: Java and pyspark (in .test-cache/, kept between sessions). A spark-sql start's CPU: about half with C1
#: alone, a third with the archive too (bench/jvm_bench.py). Neither changes a byte a query prints;
#: the product's own JVMs keep Java's defaults. The first process sets them; xdist's workers inherit them.
if "NIGHTSHIFT_TEST_JVM_OPTIONS" not in os.environ:
    os.environ["NIGHTSHIFT_TEST_JVM_OPTIONS"] = jvm_options(ROOT / ".test-cache")
    os.environ["SPARK_SUBMIT_OPTS"] = " ".join(
        filter(None, (os.environ.get("SPARK_SUBMIT_OPTS"), os.environ["NIGHTSHIFT_TEST_JVM_OPTIONS"]))
    )


#: Each test's tier, by the folder it is in: `pytest -m TIER` (or `make test-TIER`) runs one tier.
TIERS = {
    "unit": "unit",
    "integration/local": "local",
    "integration/warm": "warm",
    "integration/ssh": "ssh",
    "integration/lambdas": "lambdas",
    "infra": "infra",
    "deployed": "deployed",
}


def tier_of(path: Path) -> str:
    """The tier of a test file; a folder with no tier is a usage error, so no test escapes every tier."""
    relative = path.resolve().relative_to(ROOT / "tests").as_posix()
    for folder, tier in TIERS.items():
        if relative.startswith(f"{folder}/"):
            return tier
    raise pytest.UsageError(f"{relative}: not in a tier's folder ({', '.join(TIERS)}): add it to TIERS")


#: The files that take minutes (each test a JVM or two; seconds from CI's --durations under -n 3),
#: heaviest first. pytest-xdist hands a worker a whole file (--dist loadfile) in the order of the
#: collection when told --no-loadscope-reorder (the Makefile does; by default it puts the files with
#: the most tests first), so these start at once instead of running alone at the end of the suite.
HEAVY_FILES = (
    # The three fidelity files sleep 08_two_minutes.sql's two minutes first and at once, while the
    # other references are made beside them (tests/support/spark.py): 222-227 s each at load 15.
    "integration/warm/test_warm_fidelity.py",  # 15 tests
    "integration/local/test_fidelity_local.py",  # the same corpus, cold
    "integration/ssh/test_ssh_spark.py",  # the same corpus, over SSH
    "integration/warm/test_warm_cli_state.py",  # 354-459 s in one test before it was split
    "integration/warm/test_warm_lifecycle.py",  # 167 s at load 3 (nine engine starts)
    "integration/warm/test_warm_isolation.py",  # 103-167 s
    "integration/local/test_local_spark.py",  # 116 s at load 3 (four engine starts)
    "integration/local/test_local_statement.py",  # 143 s
)


def _heaviness(item: pytest.Item) -> int:
    relative = item.path.resolve().relative_to(ROOT / "tests").as_posix()
    return HEAVY_FILES.index(relative) if relative in HEAVY_FILES else len(HEAVY_FILES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(item.path))
    missing = [name for name in HEAVY_FILES if not (ROOT / "tests" / name).is_file()]
    if missing:
        raise pytest.UsageError(f"HEAVY_FILES in tests/conftest.py names no file: {', '.join(missing)}")
    # A stable sort: a file's tests stay together and in order, so its module fixtures are made once.
    items.sort(key=_heaviness)


def _cli(args: tuple[str | Path, ...], env: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-m", "runner", *map(str, args)], {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NIGHTSHIFT_ENGINE_IDLE_MINUTES": TEST_IDLE_MINUTES,
        **(env or {}),
    }


def write_pipeline(folder: Path, toml: str, steps: dict[str, str]) -> Path:
    """A pipeline folder: its pipeline.toml and step files, as a user writes them."""
    folder.mkdir(parents=True)
    (folder / "pipeline.toml").write_text(toml)
    for name, text in steps.items():
        (folder / name).write_text(text)
    return folder


def run_cli(
    *args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m runner ARGS` in a child process, capturing stdout and stderr as bytes."""
    argv, environ = _cli(args, env)
    return subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, timeout=timeout, check=False)


def start_cli(
    *args: str | Path, cwd: Path = ROOT, stderr: int = subprocess.PIPE, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `python -m runner ARGS` and return at once, to watch its output while it runs."""
    argv, environ = _cli(args, env)
    return subprocess.Popen(argv, cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=stderr)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A fresh local warehouse/metastore folder for one test."""
    return tmp_path / "state"


@pytest.fixture(scope="session", autouse=True)
def no_engine_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the session, end every warm engine of a state dir the tests made."""
    yield
    for lock in sorted(tmp_path_factory.getbasetemp().glob(f"**/{protocol.LOCK_NAME}")):
        stop_engine(lock.parent.parent)
