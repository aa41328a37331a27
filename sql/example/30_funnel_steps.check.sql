-- The funnel only narrows: no stage reached by more users than the stage before it.
SELECT signup_week, signup_source, signed_up, profile_completed, lesson_booked, first_payment
FROM ${database}.funnel
WHERE profile_completed > signed_up OR lesson_booked > profile_completed OR first_payment > lesson_booked
