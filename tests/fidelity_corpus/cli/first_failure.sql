SELECT 'before';
SELECT * FROM no_such_table;
SELECT 'never';
