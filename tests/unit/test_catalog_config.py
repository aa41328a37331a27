"""[catalog] and [cluster.configurations]: what the loader accepts, refuses, and what the cluster is given."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.validate import ParamValidator
from pydantic import ValidationError

from lambdas.shared import catalog as lambda_catalog
from lambdas.shared.cluster_spec import run_job_flow_request
from lambdas.shared.models import CreateClusterRequest
from runner import catalog as runner_catalog
from runner.config import parse_config
from runner.errors import ConfigError
from tests.conftest import run_cli
from tests.lambda_support import CREATE_PAYLOAD, STACK

GLUE = "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
TUNED = """
[catalog]
databases = ["sales", "sales_staging"]
warehouse = "s3://lake/warehouse/"

[cluster.configurations.spark-defaults]
"spark.sql.shuffle.partitions" = "64"
"spark.dynamicAllocation.enabled" = "true"

[cluster.configurations.spark-hive-site]
"hive.exec.dynamic.partition.mode" = "nonstrict"

[cluster.configurations.spark-env.export]
PYSPARK_PYTHON = "/usr/bin/python3"
"""


def _parse(text: str) -> Any:
    return parse_config(text, Path("pipeline.toml"))


def _request(toml: str) -> CreateClusterRequest:
    """The CreateCluster request the state machine sends for `toml` (as infra/workflow.py builds it)."""
    config = _parse(toml)
    payload: dict[str, Any] = copy.deepcopy(CREATE_PAYLOAD)
    payload["cluster"]["metastore"] = config.cluster.metastore
    payload["cluster"]["configurations"] = [c.as_emr() for c in config.cluster.configurations]
    if config.catalog is not None:
        payload["cluster"]["warehouse"] = config.catalog.warehouse
    return CreateClusterRequest.model_validate(payload)


def _by_classification(params: Any) -> dict[str, Any]:
    return {c["Classification"]: c for c in params.get("Configurations", [])}


def test_the_runner_and_the_lambda_hold_the_same_rules() -> None:
    assert runner_catalog.CATALOG_PROPERTIES == lambda_catalog.CATALOG_PROPERTIES
    assert runner_catalog.EMR_CLASSIFICATIONS == lambda_catalog.EMR_CLASSIFICATIONS
    assert runner_catalog.GLUE_CLIENT_FACTORY == lambda_catalog.GLUE_CLIENT_FACTORY == GLUE
    assert runner_catalog.METASTORES == (lambda_catalog.METASTORE_GLUE, lambda_catalog.METASTORE_CLUSTER)


def test_a_cluster_uses_the_glue_catalog_by_default_with_the_warehouse_in_s3() -> None:
    """Amazon EMR Release Guide, "Use AWS Glue Data Catalog catalog with Spark on Amazon EMR"
    (https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-spark-glue.html) and "Using the AWS Glue
    Data Catalog as the metastore for Hive"
    (https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-hive-metastore-glue.html): the factory
    class in spark-hive-site and hive-site makes Glue the metastore of Spark SQL and of Hive.
    """
    params = run_job_flow_request(_request(TUNED), stack=STACK)
    found = _by_classification(params)
    for name in ("hive-site", "spark-hive-site"):
        assert found[name]["Properties"]["hive.metastore.client.factory.class"] == GLUE
        assert found[name]["Properties"]["hive.metastore.warehouse.dir"] == "s3://lake/warehouse/"
    assert found["spark-defaults"]["Properties"] == {
        "spark.sql.shuffle.partitions": "64",
        "spark.dynamicAllocation.enabled": "true",
        "spark.sql.warehouse.dir": "s3://lake/warehouse/",
    }
    # The pipeline's own spark-hive-site setting is kept beside Nightshift's, in one classification.
    assert found["spark-hive-site"]["Properties"]["hive.exec.dynamic.partition.mode"] == "nonstrict"
    assert found["spark-env"] == {
        "Classification": "spark-env",
        "Properties": {},
        "Configurations": [
            {"Classification": "export", "Properties": {"PYSPARK_PYTHON": "/usr/bin/python3"}}
        ],
    }
    assert len(params["Configurations"]) == len(found), "one entry per classification"


def test_the_configurations_are_valid_for_emr() -> None:
    params = run_job_flow_request(_request(TUNED), stack=STACK)
    shape = boto3.client("emr", region_name="us-east-1").meta.service_model.operation_model("RunJobFlow")
    assert shape.input_shape is not None
    report = ParamValidator().validate(params, shape.input_shape)
    assert not report.has_errors(), report.generate_report()


def test_without_a_catalog_table_glue_is_still_the_metastore_but_no_warehouse_is_set() -> None:
    found = _by_classification(run_job_flow_request(_request(""), stack=STACK))
    assert set(found) == {"hive-site", "spark-hive-site"}
    assert found["hive-site"]["Properties"] == {"hive.metastore.client.factory.class": GLUE}


def test_a_per_cluster_metastore_is_an_explicit_choice_and_the_loader_says_what_it_means() -> None:
    config = _parse('[cluster]\nmetastore = "cluster"\n')
    assert config.cluster.metastore == "cluster"
    (notice,) = config.notices
    assert "tables end with the cluster" in notice
    assert "--from-stage" in notice
    assert "Configurations" not in run_job_flow_request(
        _request('[cluster]\nmetastore = "cluster"\n'), stack=STACK
    )
    assert _parse("").notices == ()


def test_a_per_cluster_metastore_lets_the_pipeline_set_the_warehouse_itself() -> None:
    toml = '[cluster]\nmetastore = "cluster"\n[cluster.configurations.spark-defaults]\n"spark.sql.warehouse.dir" = "s3://x/"\n'
    found = _by_classification(run_job_flow_request(_request(toml), stack=STACK))
    assert found == {
        "spark-defaults": {
            "Classification": "spark-defaults",
            "Properties": {"spark.sql.warehouse.dir": "s3://x/"},
        }
    }


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[cluster.configurations.spark-hive-site]\n"hive.metastore.client.factory.class" = "x"\n',
            r"\[cluster.configurations.spark-hive-site\] hive.metastore.client.factory.class: set by Nightshift",
        ),
        (
            '[cluster.configurations.hive-site]\n"hive.metastore.warehouse.dir" = "hdfs:///w"\n',
            r"\[cluster.configurations.hive-site\] hive.metastore.warehouse.dir: set by Nightshift",
        ),
        (
            '[cluster.configurations.spark-defaults]\n"spark.sql.warehouse.dir" = "hdfs:///w"\n',
            r"\[cluster.configurations.spark-defaults\] spark.sql.warehouse.dir: set by Nightshift",
        ),
        (
            '[cluster.configurations.spark-default]\n"spark.sql.shuffle.partitions" = "8"\n',
            r"\[cluster.configurations.spark-default\]: not an EMR 7 .* \(did you mean spark-defaults\?\)",
        ),
        (
            '[cluster.configurations.spark-defaults]\n"spark.sql.shuffle.partitions" = 8\n',
            r"\[cluster.configurations.spark-defaults\] spark.sql.shuffle.partitions: expected a string value .* got 8",
        ),
        (
            '[cluster.configurations.spark-defaults.export]\nX = "1"\n',
            r"\[cluster.configurations.spark-defaults\] export: spark-defaults has no nested classifications",
        ),
        (
            '[cluster.configurations.spark-env]\nPYSPARK_PYTHON = "python3"\n',
            r"\[cluster.configurations.spark-env\] PYSPARK_PYTHON: an -env classification takes its variables in",
        ),
        (
            "[cluster.configurations.yarn-env.export]\nHEAP = 2048\n",
            r"\[cluster.configurations.yarn-env.export\] HEAP: expected a string value",
        ),
        (
            "[cluster]\nconfigurations = 3\n",
            r"\[cluster.configurations\]: expected a table of classifications",
        ),
        ('[cluster]\nmetastore = "hdfs"\n', r"\[cluster\] metastore: expected one of 'glue', 'cluster'"),
        (
            '[catalog]\ndatabases = []\nwarehouse = "s3://lake/w/"\n',
            r"\[catalog\] databases: expected a non-empty",
        ),
        (
            '[catalog]\ndatabases = ["Sales"]\nwarehouse = "s3://lake/w/"\n',
            r"\[catalog\] databases: expected lower-case",
        ),
        (
            '[catalog]\ndatabases = ["a", "a"]\nwarehouse = "s3://lake/w/"\n',
            r"\[catalog\] databases: a database is listed twice",
        ),
        ('[catalog]\ndatabases = ["a"]\n', r"\[catalog\] warehouse: expected s3://bucket/"),
        (
            '[catalog]\ndatabases = ["a"]\nwarehouse = "s3://lake/w"\n',
            r"\[catalog\] warehouse: expected .*ending in '/'",
        ),
        (
            '[catalog]\ndatabases = ["a"]\nwarehouse = "s3://lake/${out}/"\n',
            r"\[catalog\] warehouse: expected .*no variables",
        ),
        (
            '[catalog]\ndatabases = ["a"]\nwarehouse = "s3://lake/w/"\nlocation = "x"\n',
            r"\[catalog\] location: unknown key",
        ),
        (
            '[cluster]\nmetastore = "cluster"\n[catalog]\ndatabases = ["a"]\nwarehouse = "s3://lake/w/"\n',
            r"\[catalog\]: the Glue catalog's databases need \[cluster\] metastore = 'glue'",
        ),
    ],
)
def test_refused_at_load_with_the_key_named(toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^pipeline.toml: " + message):
        _parse(toml)


@pytest.mark.parametrize(
    "cluster",
    [
        {
            "configurations": [
                {"classification": "spark-defaults", "properties": {"spark.sql.warehouse.dir": "x"}}
            ]
        },
        {"configurations": [{"classification": "not-emr"}]},
        {"configurations": [{"classification": "export", "properties": {"A": "1"}}]},
        {
            "configurations": [
                {"classification": "spark-defaults", "configurations": [{"classification": "export"}]}
            ]
        },
        {"configurations": [{"classification": "spark-defaults", "properties": {"n": 8}}]},
        {"metastore": "cluster", "warehouse": "s3://lake/w/"},
        {"warehouse": "hdfs:///w/"},
    ],
)
def test_the_create_cluster_lambda_refuses_what_the_loader_refuses(cluster: dict[str, Any]) -> None:
    payload: dict[str, Any] = copy.deepcopy(CREATE_PAYLOAD)
    payload["cluster"].update(cluster)
    with pytest.raises(ValidationError):
        CreateClusterRequest.model_validate(payload)


def test_the_command_line_says_what_a_per_cluster_metastore_means(tmp_path: Path) -> None:
    folder = tmp_path / "nightly"
    folder.mkdir()
    (folder / "pipeline.toml").write_text('[cluster]\nmetastore = "cluster"\n')
    (folder / "10_a.sql").write_text("SELECT 1;\n")
    result = run_cli(folder, "--dry-run", "--run-date", "2025-06-01")
    assert result.returncode == 0, result.stderr
    assert (
        b"nightshift: [cluster] metastore = 'cluster': on a cluster, tables end with the cluster"
        in result.stderr
    )


def test_the_command_line_refuses_an_override_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "nightly"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(
        '[cluster.configurations.hive-site]\n"hive.metastore.warehouse.dir" = "/w"\n'
    )
    (folder / "10_a.sql").write_text("SELECT 1;\n")
    result = run_cli(folder, "--dry-run", "--run-date", "2025-06-01")
    assert result.returncode == 2
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "[cluster.configurations.hive-site] hive.metastore.warehouse.dir: set by Nightshift" in lines[0]
