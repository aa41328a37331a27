"""Fidelity: SQL that is hard to pass through shells gives the same bytes via the runner and spark-sql -f."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support.spark import CORPUS, SparkSqlReference, fidelity_args, fidelity_hivevars

pytestmark = pytest.mark.spark


def test_corpus_covers_the_hard_cases() -> None:
    data = b"".join(path.read_bytes() for path in CORPUS)
    for needle in (b"'\\\\d+'", b"'\\\\w+thy'", b"'it''s'", b'"double \\"quoted\\""', b"$HOME", b"`",
                   b"'semi;colon'", b"/* outer comment /* nested", "Grüße".encode(), b"\r\n", b"\xef\xbb\xbf"):  # fmt: skip
        assert needle in data, needle


@pytest.mark.parametrize("step", CORPUS, ids=[p.name for p in CORPUS])
def test_same_stdout_as_bare_spark_sql(
    step: Path, shared_warm_state: Path, spark_sql_reference: SparkSqlReference
) -> None:
    # The session's one bare spark-sql of the file (the warm and SSH tests compare with it too), and
    # the runner on the session's warm engine: a step needs no engine of its own to show its bytes.
    bare = spark_sql_reference(step, fidelity_hivevars())
    runner = run_cli(step, "--state-dir", shared_warm_state, *fidelity_args())
    assert runner.stdout == bare.stdout
    assert runner.returncode == bare.returncode
    if step.name not in ("04_bom.sql", "05_cli_quirk.sql", "07_error_mid_file.sql"):
        assert runner.returncode == 0 and runner.stdout  # the statements really ran
