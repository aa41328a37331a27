-- Clean the users export: one row per user (earliest sign-up wins), normalised labels.
-- Locally this makes the database in --state-dir's metastore; on a cluster the stack has made it
-- in the Glue catalog ([catalog] in pipeline.toml), and this only finds it there.
CREATE DATABASE IF NOT EXISTS ${database};

CREATE OR REPLACE TEMPORARY VIEW raw_users
USING csv
OPTIONS (path '${raw_path}/users.csv', header 'true');

DROP TABLE IF EXISTS ${database}.users;

-- STORED AS PARQUET makes a Hive table, so the .hql step can read it with Hive on the cluster.
CREATE TABLE ${database}.users STORED AS PARQUET AS
SELECT
  user_id,
  signed_up_at,
  signup_source,
  country,
  device
FROM (
  SELECT
    trim(user_id) AS user_id,
    CAST(signed_up_at AS TIMESTAMP) AS signed_up_at,
    coalesce(nullif(lower(trim(signup_source)), ''), 'unknown') AS signup_source,
    coalesce(nullif(upper(trim(country)), ''), 'unknown') AS country,
    CASE WHEN lower(trim(device)) IN ('ios', 'android', 'web') THEN lower(trim(device)) ELSE 'other' END AS device,
    row_number() OVER (PARTITION BY trim(user_id) ORDER BY CAST(signed_up_at AS TIMESTAMP)) AS nth
  FROM raw_users
  WHERE nullif(trim(user_id), '') IS NOT NULL
) ranked
WHERE nth = 1
  AND to_date(signed_up_at) <= DATE'${run_date}';

SELECT 'users cleaned', count(*) FROM ${database}.users;
