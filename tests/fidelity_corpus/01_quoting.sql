-- Regexes with backslashes, both quote kinds, $, backticks; ';' inside strings and comments.
SELECT regexp_extract('order 12345 shipped', '\\d+', 0) AS digits;
SELECT 'healthy' RLIKE '\\w+thy' AS matches, regexp_replace('a.b.c', '\\.', '\\\\') AS escaped;
SELECT 'it''s', "double \"quoted\"", 'single ''inside'' single', "it's fine";
SELECT '$HOME', '$(date)', '`uname`', 'cost: $5; tax: $1' AS dollars;
SELECT `weird col` FROM (SELECT 1 AS `weird col`) t;
SELECT 'semi;colon' AS a, "also;here" AS b; -- trailing comment; with a semicolon
/* a block comment; with a semicolon */
SELECT '--not a comment' AS c, '/* not a comment */' AS d;
SELECT concat('back', '\\', 'slash'), length('\\\\'), 'tab\there', 'new\nline';
