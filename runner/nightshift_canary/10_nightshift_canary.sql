-- The canary's one step: a table of its own in the pipeline's catalog database (never a user's),
-- a row for this run date, read back. On a cluster the catalog is the pipeline's (Glue by default),
-- so this proves the cluster's metastore, warehouse and their permissions.
CREATE TABLE IF NOT EXISTS ${canary_database}.nightshift_canary (
  run_date STRING,
  written_at TIMESTAMP
) USING parquet;

INSERT INTO ${canary_database}.nightshift_canary VALUES ('${run_date}', current_timestamp());

SELECT run_date, written_at
FROM ${canary_database}.nightshift_canary
WHERE run_date = '${run_date}'
ORDER BY written_at DESC
LIMIT 1;
