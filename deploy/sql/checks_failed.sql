-- Checks that failed across the fleet: per check, the runs and devices
-- where it went to "fail", and when it did last.
SELECT rec.record->>'name' AS check_name,
       count(DISTINCT rec.run_id) AS runs,
       count(DISTINCT r.labels->>'device') AS devices,
       string_agg(DISTINCT r.labels->>'device', ',' ORDER BY r.labels->>'device') AS device_list,
       max(rec.ts) AS last_failed
FROM orchlua_records rec
JOIN orchlua_runs r ON r.run_id = rec.run_id
WHERE rec.type = 'check' AND rec.record->>'status' = 'fail'
GROUP BY 1
ORDER BY runs DESC, check_name;
