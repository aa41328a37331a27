SELECT '${hivevar:greeting}' AS g, ${n} + 1 AS n, '${run_date}' AS d, '${hivevar:undefined}' AS u;
SET hivevar:late=value;
SELECT '${late}', '${hivevar:late}';
