-- CRLF line endings, as an editor on Windows saves them.
SELECT 'crlf' AS kind,
       'line two' AS more;
SELECT 'a;b' AS `col1`;
