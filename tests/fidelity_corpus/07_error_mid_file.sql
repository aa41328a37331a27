-- An error in the middle of a file: spark-sql prints what came before, stops at the error with
-- exit 1, and the statement after it never runs.
SELECT 'before the error' AS s;
SELECT * FROM nightshift_no_such_table;
SELECT 'after the error: never printed' AS s;
