"""Fidelity: SQL that is hard to pass through shells gives the same bytes via the runner and spark-sql -f."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runner.local.executor import _spark_home
from runner.local.java import find_java_home
from tests.conftest import ROOT, UTF8_TERMINAL, run_cli

pytestmark = pytest.mark.spark

CORPUS = sorted((ROOT / "tests" / "fidelity_corpus").glob("*.sql"))


def bare_spark_sql(step: Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, **UTF8_TERMINAL, "JAVA_HOME": str(find_java_home()), "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.run(
        [str(_spark_home() / "bin" / "spark-sql"), "-f", str(step)],
        cwd=cwd, env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip


def test_corpus_covers_the_hard_cases() -> None:
    data = b"".join(path.read_bytes() for path in CORPUS)
    for needle in (b"'\\\\d+'", b"'\\\\w+thy'", b"'it''s'", b'"double \\"quoted\\""', b"$HOME", b"`",
                   b"'semi;colon'", b"/* outer comment /* nested", "Grüße".encode(), b"\r\n", b"\xef\xbb\xbf"):  # fmt: skip
        assert needle in data, needle


@pytest.mark.parametrize("step", CORPUS, ids=[p.name for p in CORPUS])
def test_same_stdout_as_bare_spark_sql(step: Path, tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    bare = bare_spark_sql(step, tmp_path / "bare")
    runner = run_cli(step, "--state-dir", tmp_path / "state")
    assert runner.stdout == bare.stdout
    assert runner.returncode == bare.returncode
    if step.name not in ("04_bom.sql", "05_cli_quirk.sql", "07_error_mid_file.sql"):
        assert runner.returncode == 0 and runner.stdout  # the statements really ran
