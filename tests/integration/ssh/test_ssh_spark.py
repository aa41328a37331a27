"""Fidelity over SSH: the cluster's spark-sql gives the same bytes as a bare local `spark-sql -f`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyspark
import pytest

from devtools.sshd_harness import Sshd
from tests.conftest import UTF8_TERMINAL
from tests.integration.ssh.conftest import ROOT, Cli

pytestmark = [pytest.mark.sshd, pytest.mark.spark]

CORPUS = sorted((ROOT / "tests" / "fidelity_corpus").glob("*.sql"))


def _bare_spark_sql(sshd: Sshd, step: Path, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """spark-sql -f on this machine, with the same Spark configuration the "cluster" has."""
    spark_home = Path(pyspark.__file__).parent
    env = {
        **os.environ,
        **UTF8_TERMINAL,
        "SPARK_HOME": str(spark_home),
        "SPARK_CONF_DIR": str(sshd.spark_conf),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    return subprocess.run(
        [str(spark_home / "bin" / "spark-sql"), "-f", str(step)],
        cwd=cwd, env=env, capture_output=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_corpus_is_there() -> None:
    assert len(CORPUS) >= 3


@pytest.mark.parametrize("step", CORPUS, ids=[path.name for path in CORPUS])
def test_same_stdout_over_ssh_as_bare_spark_sql(cli: Cli, step: Path) -> None:
    bare = _bare_spark_sql(cli.sshd, step, cli.root)
    # A copy outside the repository, so the pipeline is the file itself, as a user's would be.
    copy = cli.step(step.name, step.read_bytes())

    remote = cli.run(copy)

    assert remote.stdout == bare.stdout
    assert remote.returncode == bare.returncode


def test_variables_reach_spark_sql_through_hivevar(cli: Cli) -> None:
    step = cli.step("10_vars.sql", "SELECT '${hivevar:run_date}' AS d, '${label}' AS l;\n")

    result = cli.run(step, "--run-date", "2024-02-29", "--var", 'label=a "$test"; `x` Grüße')

    assert result.returncode == 0, result.stderr
    assert result.stdout == '2024-02-29\ta "$test"; `x` Grüße\n'.encode()
