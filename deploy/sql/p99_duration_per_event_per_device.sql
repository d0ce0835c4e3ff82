-- Duration p50/p99/max (seconds) of each event's invocations, per device.
SELECT r.labels->>'device' AS device,
       rec.event,
       count(*) AS invocations,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (rec.record->>'duration')::float8) AS p50_sec,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY (rec.record->>'duration')::float8) AS p99_sec,
       max((rec.record->>'duration')::float8) AS max_sec
FROM orchlua_runs r
JOIN orchlua_records rec ON rec.run_id = r.run_id
WHERE rec.type = 'invocation'
GROUP BY 1, 2
ORDER BY 1, 2;
