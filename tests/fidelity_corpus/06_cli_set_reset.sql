-- The CLI's SET and RESET, comments holding ';', an undefined ${env:...}: what spark-sql prints.
SET spark.sql.ansi.enabled=true;   -- a trailing comment; with a semicolon
SET spark.sql.ansi.enabled;
RESET spark.sql.ansi.enabled;
SET spark.sql.ansi.enabled;
SELECT 'one statement; not two' AS s /* a block comment; with a semicolon */;
-- a whole-line comment; with a semicolon
SET nightshift.own.key=${env:NIGHTSHIFT_NO_SUCH_VARIABLE};
SET nightshift.own.key;
RESET;
SET nightshift.own.key;
