-- The sign-up -> first payment funnel by sign-up week and source, with the drop-off at each stage.
DROP TABLE IF EXISTS ${database}.funnel;

CREATE TABLE ${database}.funnel STORED AS PARQUET AS
WITH reached AS (
  SELECT
    u.user_id,
    to_date(date_trunc('week', u.signed_up_at)) AS signup_week,
    u.signup_source,
    max(CASE WHEN e.event_type = 'profile_completed' THEN 1 ELSE 0 END) AS profile_completed,
    max(CASE WHEN e.event_type = 'lesson_booked' THEN 1 ELSE 0 END) AS lesson_booked,
    max(CASE WHEN e.event_type = 'first_payment' THEN 1 ELSE 0 END) AS first_payment
  FROM ${database}.users u
  LEFT JOIN ${database}.events e ON e.user_id = u.user_id
  GROUP BY u.user_id, to_date(date_trunc('week', u.signed_up_at)), u.signup_source
),
counted AS (
  SELECT
    signup_week,
    signup_source,
    count(*) AS signed_up,
    sum(profile_completed) AS profile_completed,
    sum(lesson_booked) AS lesson_booked,
    sum(first_payment) AS first_payment
  FROM reached
  GROUP BY signup_week, signup_source
)
SELECT
  signup_week,
  signup_source,
  signed_up,
  profile_completed,
  lesson_booked,
  first_payment,
  round(100.0 - 100.0 * profile_completed / signed_up, 1) AS drop_profile_pct,
  round(100.0 - 100.0 * lesson_booked / nullif(profile_completed, 0), 1) AS drop_lesson_pct,
  round(100.0 - 100.0 * first_payment / nullif(lesson_booked, 0), 1) AS drop_payment_pct
FROM counted;

INSERT OVERWRITE DIRECTORY '${out_path}/funnel/run_date=${run_date}'
STORED AS PARQUET
SELECT * FROM ${database}.funnel;

SELECT 'week', 'source', 'signed up', 'profile', 'lesson', 'paid',
       'drop profile %', 'drop lesson %', 'drop payment %';
SELECT * FROM ${database}.funnel ORDER BY signup_week, signup_source;
