"""The failures table's DDL as the Glue catalog gets it: Spark's Hive table for USING parquet, made in moto's Glue."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from runner.checks.run import FailuresTable, failures_table, failures_table_sql
from runner.dates import date_variables
from runner.model import load_pipeline
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.spark

EXAMPLE = ROOT / "sql" / "example"
REGION = "us-east-1"
#: Spark's spark.sql.sources.schemaStringLengthThreshold (its default): a longer schema is split in parts
SCHEMA_THRESHOLD = 4000


def _store() -> tuple[FailuresTable, str]:
    """sql/example with `[checks] failures_table = "${database}.check_failures"`, and its S3 warehouse."""
    pipeline = load_pipeline(EXAMPLE)
    checks = replace(pipeline.config.checks, failures_table="${database}.check_failures")
    variables = {**pipeline.config.variables, **date_variables("2025-06-01")}
    store = failures_table(checks, "example-2025-06-01", pipeline.name, variables)
    assert store is not None and pipeline.config.catalog is not None
    return store, str(pipeline.config.catalog.warehouse)


def _described(stdout: str) -> tuple[list[tuple[str, str]], dict[str, str], list[tuple[str, str]], str]:
    """DESCRIBE FORMATTED's rows (col_name TAB data_type TAB comment), then SHOW CREATE TABLE's text:
    the columns, the "# Detailed Table Information" fields, the partition columns, the statement."""
    rows: list[list[str]] = []
    statement: list[str] = []
    for line in stdout.splitlines():
        if "\t" in line and not statement:
            rows.append([cell.strip() for cell in line.split("\t")])
        elif line.strip():
            statement.append(line)
    columns: list[tuple[str, str]] = []
    partitions: list[tuple[str, str]] = []
    details: dict[str, str] = {}
    section = columns
    for name, value, *_ in rows:
        if name == "# Partition Information":
            section = partitions
        elif name == "# Detailed Table Information":
            section = []
        elif name.startswith("#") or not name:
            continue
        elif section is columns or section is partitions:
            section.append((name, value))
        else:
            details[name] = value
    # A partitioned table lists its partition columns among the columns too, then under their heading.
    columns = [column for column in columns if column not in partitions]
    return columns, details, partitions, "\n".join(statement)


def _table_input(
    columns: list[tuple[str, str]],
    details: dict[str, str],
    partitions: list[tuple[str, str]],
    local_warehouse: str,
    warehouse: str,
) -> dict[str, Any]:
    """What the Glue Data Catalog client for Hive sends as CreateTable's TableInput for the table Spark
    hands the metastore: GlueInputConverter.convertToTableInput(HiveToCatalogConverter.convertTable(t)),
    a field by field copy (awslabs/aws-glue-data-catalog-client-for-apache-hive-metastore), of the Hive
    table HiveExternalCatalog.createDataSourceTable makes of a USING parquet table (Spark 3.5,
    sql/hive/.../HiveExternalCatalog.scala): the provider, the Spark version and the schema's JSON in
    the table's parameters (the schema split in parts above spark.sql.sources.schemaStringLengthThreshold),
    the location also as the storage's "path" (kept for older Spark), and for a provider with a Hive SerDe
    (parquet's) the SerDe and formats DESCRIBE FORMATTED shows; HiveClientImpl.toHiveTable then makes a
    MANAGED table Hive's MANAGED_TABLE on Hive's empty Table (serialization.format 1, no buckets: -1).
    On a cluster the warehouse is the pipeline's S3 one; here it is the engine's, so the location is
    moved there."""
    from pyspark.sql import types  # noqa: PLC0415 - Spark's schema JSON, with no JVM

    # DESCRIBE's type names (Hive's) as Spark's types; a type of another table would be a KeyError here.
    spark_type = {
        "string": types.StringType(), "int": types.IntegerType(), "bigint": types.LongType(),
        "date": types.DateType(), "timestamp": types.TimestampType(), "double": types.DoubleType(),
    }  # fmt: skip

    def located(path: str) -> str:
        return warehouse + path.removeprefix(local_warehouse).lstrip("/")

    location = located(details["Location"])
    # DESCRIBE shows no nullability: the DDL's columns have no NOT NULL. Python's JSON of a schema is
    # Scala's with its keys sorted: the same length, which is what Glue's limits are about.
    fields = [types.StructField(n, spark_type[t], True) for n, t in columns + partitions]
    schema = types.StructType(fields).json()
    parts = [schema[i : i + SCHEMA_THRESHOLD] for i in range(0, len(schema), SCHEMA_THRESHOLD)]
    schema_parameters = (
        {"spark.sql.sources.schema": schema}
        if len(parts) == 1
        else {"spark.sql.sources.schema.numParts": str(len(parts))}
        | {f"spark.sql.sources.schema.part.{i}": part for i, part in enumerate(parts)}
    )
    properties = details.get("Table Properties", "[]").strip("[]")
    own = dict(item.split("=", 1) for item in properties.split(", ") if item)
    table_type = {"MANAGED": "MANAGED_TABLE", "EXTERNAL": "EXTERNAL_TABLE"}[details["Type"]]
    return {
        "Name": details["Table"],
        "Owner": details["Owner"],
        "Retention": 0,
        "TableType": table_type,
        "PartitionKeys": [{"Name": n, "Type": t} for n, t in partitions],
        "Parameters": {
            **own,
            "spark.sql.create.version": details["Created By"].removeprefix("Spark "),
            **schema_parameters,
            "spark.sql.sources.provider": details["Provider"],
        },
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t} for n, t in columns],
            "Location": location,
            "InputFormat": details["InputFormat"],
            "OutputFormat": details["OutputFormat"],
            "Compressed": False,
            "NumberOfBuckets": -1,
            "BucketColumns": [],
            "SerdeInfo": {
                "SerializationLibrary": details["Serde Library"],
                "Parameters": {"serialization.format": "1", "path": location},
            },
            "Parameters": {},
            "StoredAsSubDirectories": False,
        },
    }


def test_the_failures_tables_ddl_is_a_table_glue_accepts_and_other_engines_read(
    shared_warm_state: Path,
) -> None:
    """CREATE TABLE ... USING parquet becomes a Hive-compatible table: Spark's own provider and schema
    in its parameters, and Hive's Parquet SerDe and formats, so Hive on the cluster and Athena read
    it too. It meets the Glue API's documented limits, which moto does not enforce: table and
    database names in lower case for Hive, 1..255 bytes; parameter keys 1..255 bytes, values at most
    512,000; column names 1..255 bytes; and PartitionKeys at least an empty list for Athena.
    moto's Glue creates it and reads it back as given.

    The statement runs on the session's shared warm engine (Spark with Hive support, the path spark-sql
    takes on a cluster, where the metastore client is Glue's), in a database of this test's own; the
    table Spark keeps is read back with DESCRIBE FORMATTED and SHOW CREATE TABLE.

    "TableInput", AWS Glue API Reference:
    https://docs.aws.amazon.com/glue/latest/webapi/API_TableInput.html
    "Table API" (Table, Column, StorageDescriptor, SerDeInfo), AWS Glue Developer Guide:
    https://docs.aws.amazon.com/glue/latest/dg/aws-glue-api-catalog-tables.html
    "Use the AWS Glue Data Catalog with Spark on Amazon EMR" (Spark's Hive metastore client is
    Glue's, so a Spark SQL CREATE TABLE becomes a Glue table), Amazon EMR Release Guide:
    https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-spark-glue.html
    """
    store, warehouse = _store()
    _, name = store.name.split(".")
    # A database of its own in the engine every worker shares: no other test's table of that name.
    database = f"failures_glue_{uuid.uuid4().hex[:8]}"
    # The statement as the generated check file has it; ${database} as spark-sql's --hivevar gives it.
    ddl = failures_table_sql(store).replace("${database}", database)
    statements = [
        f"CREATE DATABASE {database}",
        ddl.rstrip().rstrip(";"),
        f"DESCRIBE FORMATTED {database}.{name}",
        f"SHOW CREATE TABLE {database}.{name}",
        f"DROP DATABASE {database} CASCADE",
    ]
    result = run_cli(EXAMPLE, "--state-dir", shared_warm_state, "-e", ";\n".join(statements))
    assert result.returncode == 0, result.stderr.decode()
    columns, details, partitions, statement = _described(result.stdout.decode())
    # The engine's warehouse: the state dir's (runner.local), where a database's folder is <name>.db.
    local_warehouse = f"file:{shared_warm_state / 'warehouse'}"
    assert details["Database"] == database and details["Type"] == "MANAGED", details
    # Spark's own statement for the table: its provider, and neither partitions nor buckets.
    assert statement.startswith(f"CREATE TABLE spark_catalog.{database}.{name} ("), statement
    assert statement.splitlines()[-1] == "USING parquet", statement
    assert not re.search(r"PARTITIONED BY|CLUSTERED BY", statement), statement
    given = _table_input(columns, details, partitions, local_warehouse, warehouse)

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
