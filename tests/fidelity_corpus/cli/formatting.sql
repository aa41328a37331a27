SELECT CAST(NULL AS INT), 1.50BD, 1e10D, TIMESTAMP'2024-01-02 03:04:05.600', DATE'2024-02-29',
  array(1, 2), map('k', named_struct('a', 1)), X'CAFE', true, 'tab\there';
SELECT id, id * 2 FROM range(0, 2000);
CREATE TABLE IF NOT EXISTS ${table} (x INT, s STRING) USING parquet;
INSERT OVERWRITE TABLE ${table} VALUES (1, 'one'), (2, NULL);
SELECT * FROM ${table} ORDER BY x;
DESCRIBE ${table};
SHOW TABLES LIKE 'fidelity*';
EXPLAIN SELECT 1;
