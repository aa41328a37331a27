"""Fidelity over SSH: the cluster's spark-sql gives the same bytes as a bare local `spark-sql -f`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.ssh.conftest import Cli
from tests.support.spark import CORPUS, CORPUS_RUN_ORDER, SparkSqlReference, fidelity_args, fidelity_hivevars

pytestmark = [pytest.mark.sshd, pytest.mark.spark]


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 3


@pytest.mark.parametrize("step", CORPUS_RUN_ORDER, ids=[path.name for path in CORPUS_RUN_ORDER])
def test_same_stdout_over_ssh_as_bare_spark_sql(
    cli: Cli, step: Path, spark_sql_reference: SparkSqlReference
) -> None:
    # A copy outside the repository, so the pipeline is the file itself, as a user's would be.
    copy = cli.step(step.name, step.read_bytes())

    # The run over SSH first, then the session's one bare spark-sql of the file (the local and warm
    # tests' as well), made or in progress beside it. The "cluster"'s spark-defaults (one core, 2
    # shuffle partitions, a metastore of this worker's sshd) change no byte of the corpus: a file whose
    # rows come in the partitions' order would fail here, not pass.
    with ThreadPoolExecutor(1) as beside:
        # 08 sleeps two minutes: a bound for a hang, not for a loaded machine.
        running = beside.submit(cli.run, copy, *fidelity_args(), timeout=600)
        bare = spark_sql_reference(step, fidelity_hivevars())
        remote = running.result()

    assert remote.stdout == bare.stdout
    assert remote.returncode == bare.returncode


def test_variables_reach_spark_sql_through_hivevar(cli: Cli) -> None:
    step = cli.step("10_vars.sql", "SELECT '${hivevar:run_date}' AS d, '${label}' AS l;\n")

    result = cli.run(step, "--run-date", "2024-02-29", "--var", 'label=a "$test"; `x` Grüße')

    assert result.returncode == 0, result.stderr
    assert result.stdout == '2024-02-29\ta "$test"; `x` Grüße\n'.encode()
