"""-e "SELECT ..." on a cluster over the real sshd: the pipeline's cluster variables, on its engine there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.ssh.conftest import Cli

pytestmark = [pytest.mark.sshd]


def _pipeline(cli: Cli, toml: str) -> Path:
    folder = cli.root / "shop"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(toml)
    (folder / "10_orders.sql").write_text("SELECT 1;\n")
    return folder


@pytest.mark.spark
def test_a_statement_runs_on_the_clusters_spark_sql_with_the_clusters_variables(cli: Cli) -> None:
    # [variables.local] is for runs here: on a cluster the statement sees [variables]'s value.
    folder = _pipeline(cli, '[variables]\nregion = "eu"\n\n[variables.local]\nregion = "local"\n')

    result = cli.run(
        folder, "-e", "SELECT '${region}', \"a;b\", '${prev_date}'; SELECT 'it''s ${label}'",
        "--run-date", "2024-03-01", "--var", 'label=a "$x" `y`',
    )  # fmt: skip

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b'eu\ta;b\t2024-02-29\nits a "$x" `y`\n'
    stderr = result.stderr.decode().splitlines()
    assert stderr[:2] == [
        "nightshift: shop: run date 2024-03-01 (given with --run-date); variables: region=eu,"
        " label='a \"$x\" `y`'",
        "nightshift: -e on spark-sql on the cluster (--host 127.0.0.1) over SSH",
    ]
    assert not [line for line in stderr if "succeeded" in line], stderr
    assert cli.leftovers() == []


def test_a_hive_pipelines_statement_runs_on_hive_on_the_cluster(cli: Cli) -> None:
    # The test "cluster" has spark-sql but no hive: the engine the statement was sent to says so.
    folder = _pipeline(cli, 'default_engine = "hive"\n')

    result = cli.run(folder, "-e", "SELECT 1")

    assert result.returncode == 127
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert "nightshift: -e on hive on the cluster (--host 127.0.0.1) over SSH\n" in stderr
    assert "nightshift: hive: command not found on" in stderr
    assert cli.leftovers() == []
