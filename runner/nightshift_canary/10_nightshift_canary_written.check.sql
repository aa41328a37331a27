-- The row the step wrote must be there, read back by a new session: no row of the run date is one
-- failing row.
SELECT '${run_date}' AS missing_run_date
FROM (
  SELECT count(*) AS written
  FROM ${canary_database}.nightshift_canary
  WHERE run_date = '${run_date}'
) AS canary
WHERE written = 0
