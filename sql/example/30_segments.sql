-- User segments (sign-up source x device): size, sessions per user and conversion to paying.
DROP TABLE IF EXISTS ${database}.segments;

CREATE TABLE ${database}.segments STORED AS PARQUET AS
SELECT
  u.signup_source,
  u.device,
  count(*) AS users,
  sum(CASE WHEN p.user_id IS NOT NULL THEN 1 ELSE 0 END) AS paying_users,
  round(100.0 * sum(CASE WHEN p.user_id IS NOT NULL THEN 1 ELSE 0 END) / count(*), 1) AS conversion_pct,
  round(avg(coalesce(s.sessions, 0)), 2) AS sessions_per_user
FROM ${database}.users u
LEFT JOIN (SELECT DISTINCT user_id FROM ${database}.events WHERE event_type = 'first_payment') p
  ON p.user_id = u.user_id
LEFT JOIN (SELECT user_id, count(*) AS sessions FROM ${database}.sessions GROUP BY user_id) s
  ON s.user_id = u.user_id
GROUP BY u.signup_source, u.device;

INSERT OVERWRITE DIRECTORY '${out_path}/segments/run_date=${run_date}'
STORED AS PARQUET
SELECT * FROM ${database}.segments;

SELECT 'source', 'device', 'users', 'paying', 'conversion %', 'sessions/user';
SELECT * FROM ${database}.segments ORDER BY users DESC, signup_source, device;
