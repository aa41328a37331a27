-- The canary's last stage, after the first stage's check has read the row: the table goes, and with it
-- its data (a managed table's files are deleted with it), so a canary leaves nothing in the catalog.
DROP TABLE ${canary_database}.nightshift_canary;

SHOW TABLES IN ${canary_database} LIKE 'nightshift_canary';
