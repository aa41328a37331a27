-- A step that runs for two minutes, mostly waiting (issue 18's corpus): its lines must arrive and its
-- exit code hold across a long step, warm, cold and over SSH (keepalives, the engine's idle timer).
SELECT 'a step of two minutes starts';
SELECT java_method('java.lang.Thread', 'sleep', 30000L);
SELECT 'half a minute', id FROM range(2);
SELECT java_method('java.lang.Thread', 'sleep', 30000L);
SELECT 'a minute';
SELECT java_method('java.lang.Thread', 'sleep', 30000L);
SELECT 'a minute and a half';
SELECT java_method('java.lang.Thread', 'sleep', 30000L);
SELECT 'two minutes: done';
