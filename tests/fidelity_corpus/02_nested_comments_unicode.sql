/* outer comment /* nested comment; with ; semicolons */ still the outer comment */
SELECT 'Grüße aus Köln' AS greeting, 'naïve café' AS words, '東京' AS city, '🙂' AS face;
SELECT upper('straße'), length('日本語'), 'Ünïcödé' = 'Ünïcödé' AS same;
-- a comment with 'quotes" and `backticks` and ${dollar} and \backslash
SELECT "mixed 'quotes' here" AS q, 'more "quotes" there' AS r;
