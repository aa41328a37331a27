"""The failures table's DDL as the Glue catalog gets it: Spark's Hive table for USING parquet, made in moto's Glue."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runner.checks.run import FailuresTable, failures_table, failures_table_sql
from runner.dates import date_variables
from runner.local.executor import _spark_home
from runner.local.java import find_java_home
from runner.model import load_pipeline
from tests.conftest import ROOT

pytestmark = pytest.mark.spark

EXAMPLE = ROOT / "sql" / "example"
REGION = "us-east-1"


def _store() -> tuple[FailuresTable, str]:
    """sql/example with `[checks] failures_table = "${database}.check_failures"`, and its S3 warehouse."""
    pipeline = load_pipeline(EXAMPLE)
    checks = replace(pipeline.config.checks, failures_table="${database}.check_failures")
    variables = {**pipeline.config.variables, **date_variables("2025-06-01")}
    store = failures_table(checks, "example-2025-06-01", pipeline.name, variables)
    assert store is not None and pipeline.config.catalog is not None
    return store, str(pipeline.config.catalog.warehouse)


def _column(field: Any) -> dict[str, str]:
    return {"Name": field.getName(), "Type": field.getType()}


def _table_input(table: Any, local_warehouse: str, warehouse: str) -> dict[str, Any]:
    """What the Glue Data Catalog client for Hive sends as CreateTable's TableInput for Hive's table:
    GlueInputConverter.convertToTableInput(HiveToCatalogConverter.convertTable(table)), a field by
    field copy (awslabs/aws-glue-data-catalog-client-for-apache-hive-metastore). On a cluster the
    warehouse is the pipeline's S3 one; here it is the test's folder, so the location is moved there."""
    sd, serde = table.getSd(), table.getSd().getSerdeInfo()

    def located(path: str) -> str:
        return warehouse + path.removeprefix(local_warehouse).lstrip("/")

    return {
        "Name": table.getTableName(),
        "Owner": table.getOwner(),
        "Retention": table.getRetention(),
        "TableType": table.getTableType(),
        "PartitionKeys": [_column(field) for field in table.getPartitionKeys()],
        "Parameters": dict(table.getParameters()),
        "StorageDescriptor": {
            "Columns": [_column(field) for field in sd.getCols()],
            "Location": located(sd.getLocation()),
            "InputFormat": sd.getInputFormat(),
            "OutputFormat": sd.getOutputFormat(),
            "Compressed": sd.isCompressed(),
            "NumberOfBuckets": sd.getNumBuckets(),
            "BucketColumns": list(sd.getBucketCols()),
            "SerdeInfo": {
                "SerializationLibrary": serde.getSerializationLib(),
                "Parameters": {
                    key: located(value) if key == "path" else value
                    for key, value in dict(serde.getParameters()).items()
                },
            },
            "Parameters": dict(sd.getParameters()),
            "StoredAsSubDirectories": sd.isStoredAsSubDirectories(),
        },
    }


@pytest.fixture(scope="module")
def hive_table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """The runner's CREATE TABLE for the failures table, run by Spark with Hive support (the path
    spark-sql takes on a cluster, where the metastore client is Glue's): the Hive table it hands the
    metastore client, and the local warehouse it is in. One JVM for the module, ended at its end."""
    from pyspark import SparkContext  # noqa: PLC0415 - only this module starts a JVM in the test process
    from pyspark.sql import SparkSession  # noqa: PLC0415

    folder = tmp_path_factory.mktemp("failures-glue")
    warehouse = folder / "warehouse"
    store, _ = _store()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAVA_HOME", str(find_java_home()))
        patch.setenv("SPARK_HOME", str(_spark_home()))
        spark = (
            SparkSession.builder.master("local[1]")
            .appName("nightshift-failures-glue")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.warehouse.dir", str(warehouse))
            .config(
                "spark.hadoop.javax.jdo.option.ConnectionURL",
                f"jdbc:derby:;databaseName={folder / 'metastore'};create=true",
            )
            .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={folder}")
            .enableHiveSupport()
            .getOrCreate()
        )
    gateway = SparkContext._gateway
    try:
        database, name = store.name.split(".")
        spark.sql(f"CREATE DATABASE {database}")
        # The statement as the generated check file has it; ${database} as spark-sql's --hivevar gives it.
        spark.sql(failures_table_sql(store).replace("${database}", database))
        client = spark._jsparkSession.sharedState().externalCatalog().unwrapped().client()
        yield client.getRawHiveTable(database, name).rawTable().getTTable(), f"file:{warehouse}"
    finally:
        spark.stop()
        if gateway is not None:
            gateway.shutdown()
            gateway.proc.stdin.close()  # the JVM ends when its stdin closes
            gateway.proc.wait(60)
        SparkContext._gateway = SparkContext._jvm = None


def test_the_failures_tables_ddl_is_a_table_glue_accepts_and_other_engines_read(
    hive_table: tuple[Any, str],
) -> None:
    """CREATE TABLE ... USING parquet becomes a Hive-compatible table: Spark's own provider and schema
    in its parameters, and Hive's Parquet SerDe and formats, so Hive on the cluster and Athena read
    it too. It meets the Glue API's documented limits, which moto does not enforce: table and
    database names in lower case for Hive, 1..255 bytes; parameter keys 1..255 bytes, values at most
    512,000; column names 1..255 bytes; and PartitionKeys at least an empty list for Athena.
    moto's Glue creates it and reads it back as given.

    "TableInput", AWS Glue API Reference:
    https://docs.aws.amazon.com/glue/latest/webapi/API_TableInput.html
    "Table API" (Table, Column, StorageDescriptor, SerDeInfo), AWS Glue Developer Guide:
    https://docs.aws.amazon.com/glue/latest/dg/aws-glue-api-catalog-tables.html
    "Use the AWS Glue Data Catalog with Spark on Amazon EMR" (Spark's Hive metastore client is
    Glue's, so a Spark SQL CREATE TABLE becomes a Glue table), Amazon EMR Release Guide:
    https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-spark-glue.html
    """
    table, local_warehouse = hive_table
    store, warehouse = _store()
    database, name = store.name.split(".")
    given = _table_input(table, local_warehouse, warehouse)

    assert given["Name"] == name == name.lower() and database == database.lower()
    assert 1 <= len(name.encode()) <= 255 and 1 <= len(database.encode()) <= 255
    assert given["PartitionKeys"] == []
    parameters = {**given["Parameters"], **given["StorageDescriptor"]["Parameters"]}
    assert all(1 <= len(key.encode()) <= 255 and len(v.encode()) <= 512_000 for key, v in parameters.items())
    sd = given["StorageDescriptor"]
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        ("run_id", "string"), ("run_date", "date"), ("pipeline", "string"), ("check", "string"),
        ("stage", "int"), ("severity", "string"), ("row", "string"), ("recorded_at", "timestamp"),
    ]  # fmt: skip
    assert given["Parameters"]["spark.sql.sources.provider"] == "parquet"
    assert (
        sd["SerdeInfo"]["SerializationLibrary"]
        == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    )
    assert sd["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert sd["OutputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    assert sd["Location"] == f"{warehouse}{database}.db/{name}"

    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            patch.setenv(key, "testing")
        glue = boto3.client("glue", region_name=REGION)
        glue.create_database(DatabaseInput={"Name": database, "LocationUri": f"{warehouse}{database}.db"})
        glue.create_table(DatabaseName=database, TableInput=given)
        stored = glue.get_table(DatabaseName=database, Name=name)["Table"]
    assert stored["TableType"] == given["TableType"] == "MANAGED_TABLE"
    assert stored["StorageDescriptor"]["Columns"] == sd["Columns"]
    assert stored["StorageDescriptor"]["SerdeInfo"] == sd["SerdeInfo"]
    assert stored["Parameters"] == given["Parameters"]
    assert stored["StorageDescriptor"]["Location"] == sd["Location"]
