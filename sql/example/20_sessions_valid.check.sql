-- Sessions that cannot be: ending before they start, or without events. Each row is a failure.
SELECT user_id, session_number, started_at, ended_at, events
FROM ${database}.sessions
WHERE ended_at < started_at OR events < 1
