-- A UTF-8 byte-order mark starts this file.
SELECT 'bom' AS kind, 'Grüße' AS greeting;
SELECT 1 + 1;
