-- Duration p50/p99/max (seconds) of each event's invocations, per device.
-- One build only, add AND labels @> '{"build": "1.4.2"}' (every row
-- carries its run's labels).
SELECT labels->>'device' AS device,
       event,
       count(*) AS invocations,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (record->>'duration')::float8) AS p50_sec,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY (record->>'duration')::float8) AS p99_sec,
       max((record->>'duration')::float8) AS max_sec
FROM orchlua_records
WHERE type = 'invocation'
GROUP BY 1, 2
ORDER BY 1, 2;
