-- spark-sql's own statement splitter cuts at a ';' inside backticks: the engine's behaviour,
-- which the runner must reproduce exactly (same output, same exit code), not paper over.
SELECT 'before' AS first;
SELECT `weird;name` FROM (SELECT 1 AS `weird;name`) t;
SELECT 'never reached' AS last;
