"""Paths with spaces, quotes and non-ASCII letters through the local engine, warm and cold."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.local.executor import _spark_home
from runner.local.warm.client import stop_engine
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.spark

# What a user's folders may be called: Spark splits `spark.driver.extraJavaOptions` like a shell.
ODD = "My Dir \"q\" 'é'"
STEP = (
    "CREATE TABLE IF NOT EXISTS odd_paths (x INT, s STRING) USING parquet;\n"
    "INSERT OVERWRITE TABLE odd_paths VALUES (1, 'é');\n"
    "SELECT x, s FROM odd_paths;\n"
)


@pytest.fixture(scope="module")
def odd_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """The repository, the pyspark install, a pipeline and a state dir, each in a folder named ODD.

    The repository is a copy of runner/ (its log4j settings live there); pyspark is reached through
    a symlink, so Spark's own scripts run from SPARK_HOME at an odd path too. Yields the copy's root,
    the pipeline, and the environment that makes `python -m runner` the copy.
    """
    top = tmp_path_factory.mktemp("paths")
    repo = top / f"repo {ODD}"
    shutil.copytree(ROOT / "runner", repo / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    site = top / f"site {ODD}"
    site.mkdir()
    (site / "pyspark").symlink_to(_spark_home(), target_is_directory=True)
    pipeline = repo / "sql" / ODD
    pipeline.mkdir(parents=True)
    (pipeline / "10_odd.sql").write_text(STEP, encoding="utf-8")
    state = top / f"state {ODD}"
    yield repo, pipeline, {"PYTHONPATH": f"{repo}:{site}", "STATE": str(state)}
    stop_engine(state)


def test_a_pipeline_in_odd_folders_runs_warm_and_cold(odd_install: tuple[Path, Path, dict[str, str]]) -> None:
    repo, pipeline, env = odd_install
    state = Path(env.pop("STATE"))
    warm = run_cli(pipeline, "--state-dir", state, cwd=repo, env=env)
    assert warm.returncode == 0, warm.stderr.decode()[-3000:]
    assert b"runs warm" in warm.stderr
    cold = run_cli(pipeline, "--state-dir", state, "--cold", cwd=repo, env=env)
    assert cold.returncode == 0, cold.stderr.decode()[-3000:]
    assert b"runs cold (--cold)" in cold.stderr
    assert warm.stdout == cold.stdout == "1\té\n".encode()
    # Spark's own settings reached the JVM whole: Derby's home is the state dir (its log is there,
    # not in the working folder), and the runner's log4j settings were read (Spark did not fall
    # back to its defaults, which announce themselves on stderr).
    assert (state / "derby.log").is_file() and not (repo / "derby.log").exists()
    assert (state / "metastore_db").is_dir() and (state / "warehouse" / "odd_paths").is_dir()
    assert b"Using Spark's default log4j profile" not in cold.stderr
    engine_log = (state / "engine" / "engine.log").read_bytes()
    assert b"Using Spark's default log4j profile" not in engine_log
