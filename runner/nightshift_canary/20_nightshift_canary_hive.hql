-- The canary's second stage, on hive (locally: Spark SQL's HiveQL support): the row Spark wrote, read
-- back through the same catalog by the other engine. assert_true (a built-in of Hive and of Spark)
-- fails the step when the row is not there: Hive then exits non-zero, and the run fails here.
SELECT read_back.run_date, read_back.rows_read, assert_true(read_back.rows_read = 1) AS read_by_hive
FROM (
  SELECT '${run_date}' AS run_date, count(*) AS rows_read
  FROM ${canary_database}.nightshift_canary
  WHERE run_date = '${run_date}'
) AS read_back;
