-- Clean the events export: known event types only, each event once, nothing after run_date.
CREATE DATABASE IF NOT EXISTS ${database};

CREATE OR REPLACE TEMPORARY VIEW raw_events
USING csv
OPTIONS (path '${raw_path}/events.csv', header 'true');

DROP TABLE IF EXISTS ${database}.events;

CREATE TABLE ${database}.events STORED AS PARQUET AS
SELECT DISTINCT
  trim(event_id) AS event_id,
  trim(user_id) AS user_id,
  lower(trim(event_type)) AS event_type,
  CAST(event_time AS TIMESTAMP) AS event_time
FROM raw_events
WHERE lower(trim(event_type)) IN ('signup', 'page_view', 'profile_completed', 'lesson_booked', 'first_payment')
  AND to_date(CAST(event_time AS TIMESTAMP)) <= DATE'${run_date}';

SELECT 'events cleaned', count(*) FROM ${database}.events;
