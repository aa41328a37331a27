SELECT 'ok';
SELEC 1;
SELECT 'never';
