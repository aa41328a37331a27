"""Fidelity: SQL that is hard to pass through shells gives the same bytes via the runner and spark-sql -f."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.spark import CORPUS, CORPUS_RUN_ORDER, SparkSqlReference, fidelity_args, fidelity_hivevars

pytestmark = pytest.mark.spark


def test_corpus_covers_the_hard_cases() -> None:
    data = b"".join(path.read_bytes() for path in CORPUS)
    for needle in (b"'\\\\d+'", b"'\\\\w+thy'", b"'it''s'", b'"double \\"quoted\\""', b"$HOME", b"`",
                   b"'semi;colon'", b"/* outer comment /* nested", "Grüße".encode(), b"\r\n", b"\xef\xbb\xbf"):  # fmt: skip
        assert needle in data, needle


@pytest.mark.parametrize("step", CORPUS_RUN_ORDER, ids=[p.name for p in CORPUS_RUN_ORDER])
def test_same_stdout_as_bare_spark_sql(
    step: Path, spark_sql_reference: SparkSqlReference, tmp_path: Path
) -> None:
    # The runner cold, in a JVM and a metastore of its own (test_warm_fidelity runs the corpus on the
    # session's warm engine), started before the session's one bare spark-sql of the file is asked
    # for (the warm and SSH tests compare with it too), so that the two run at once.
    with ThreadPoolExecutor(1) as beside:
        running = beside.submit(run_cli, step, "--cold", "--state-dir", tmp_path / "state", *fidelity_args())
        bare = spark_sql_reference(step, fidelity_hivevars())
        runner = running.result()
    assert b"runs cold (--cold)" in runner.stderr, runner.stderr[-2000:]
    assert runner.stdout == bare.stdout
    assert runner.returncode == bare.returncode
    if step.name not in ("04_bom.sql", "05_cli_quirk.sql", "07_error_mid_file.sql"):
        assert runner.returncode == 0 and runner.stdout  # the statements really ran
