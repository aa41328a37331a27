EXPLAIN EXTENDED WITH c AS (SELECT id % 3 AS a FROM range(10)) SELECT a, count(*) FROM c GROUP BY a;
EXPLAIN FORMATTED SELECT transform(array(1, 2), x -> x + 1), (SELECT max(id) FROM range(3));
