-- Checks that failed across the fleet: per check, the runs and devices
-- where it went to "fail", and when it did last; the devices from the
-- labels every row carries.
SELECT record->>'name' AS check_name,
       count(DISTINCT run_id) AS runs,
       count(DISTINCT labels->>'device') AS devices,
       string_agg(DISTINCT labels->>'device', ',' ORDER BY labels->>'device') AS device_list,
       max(ts) AS last_failed
FROM orchlua_records
WHERE type = 'check' AND record->>'status' = 'fail'
GROUP BY 1
ORDER BY runs DESC, check_name;
