-- Sessions: a user's events with no gap longer than 30 minutes. HiveQL, so it runs on Hive on EMR.
DROP TABLE IF EXISTS ${hivevar:database}.sessions;

CREATE TABLE ${hivevar:database}.sessions STORED AS PARQUET AS
SELECT
  user_id,
  session_number,
  min(event_time) AS started_at,
  max(event_time) AS ended_at,
  count(*) AS events
FROM (
  SELECT
    user_id,
    event_time,
    sum(new_session) OVER (PARTITION BY user_id ORDER BY event_time, event_id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_number
  FROM (
    SELECT
      e.user_id,
      e.event_id,
      e.event_time,
      CASE
        WHEN lag(e.event_time) OVER (PARTITION BY e.user_id ORDER BY e.event_time, e.event_id) IS NULL THEN 1
        WHEN unix_timestamp(e.event_time)
             - unix_timestamp(lag(e.event_time) OVER (PARTITION BY e.user_id ORDER BY e.event_time, e.event_id))
             > 30 * 60 THEN 1
        ELSE 0
      END AS new_session
    FROM ${hivevar:database}.events e
    JOIN ${hivevar:database}.users u ON u.user_id = e.user_id
  ) marked
) numbered
GROUP BY user_id, session_number;

SELECT 'sessions built', count(*) FROM ${hivevar:database}.sessions;
