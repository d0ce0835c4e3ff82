-- Runs per label value: how many runs each device (rack, build...) made,
-- how many passed, failed or are still going (or were killed: no end).
SELECT l.key AS label, l.value,
       count(*) AS runs,
       count(*) FILTER (WHERE r.exit_status = 0) AS passed,
       count(*) FILTER (WHERE r.exit_status <> 0) AS failed,
       count(*) FILTER (WHERE r.ended IS NULL) AS unfinished
FROM orchlua_runs r, jsonb_each_text(r.labels) AS l(key, value)
GROUP BY l.key, l.value
ORDER BY l.key, l.value;
