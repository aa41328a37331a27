-- The canary's first stage: a table of its own in the pipeline's catalog database (never a user's),
-- a row for this run date, read back. On a cluster the catalog is the pipeline's (Glue by default),
-- so this proves the cluster's metastore, warehouse and their permissions.
--
-- STORED AS PARQUET (a Hive format table with Hive's Parquet SerDe), not USING parquet: the next
-- stage reads the row on hive. Spark documents the Hive format table as the one Hive reads (Spark SQL
-- Guide, "Hive Tables", "Specifying storage format for Hive tables",
-- https://spark.apache.org/docs/latest/sql-data-sources-hive-tables.html). A USING parquet data
-- source table is kept Hive-readable only when Spark manages to (SPARK-6923: one path, no partitions,
-- a provider with a Hive SerDe), else "in Spark SQL specific format, which is NOT compatible with
-- Hive" (Spark's own warning): an implementation detail, not a promise a canary should rest on.
-- A canary left by a failed run (its last stage drops the table) is dropped first, so every canary
-- creates its table anew in this format.
DROP TABLE IF EXISTS ${canary_database}.nightshift_canary;

CREATE TABLE ${canary_database}.nightshift_canary (
  run_date STRING,
  written_at TIMESTAMP
) STORED AS PARQUET;

INSERT INTO ${canary_database}.nightshift_canary VALUES ('${run_date}', current_timestamp());

SELECT run_date, written_at
FROM ${canary_database}.nightshift_canary
WHERE run_date = '${run_date}';
