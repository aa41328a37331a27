SELECT 1; SELECT 2;SELECT 'a;b', "c;d" -- one; comment
;
SELECT 3 /* block; comment */;
-- whole line; comment
SELECT 4
;

;
SELECT 'no semicolon at the end'