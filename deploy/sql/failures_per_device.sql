-- Failed invocations (status error, timeout or cancelled) per device, over
-- every run stored; error results beside them.
SELECT r.labels->>'device' AS device,
       count(*) FILTER (WHERE rec.type = 'invocation') AS invocations,
       count(*) FILTER (WHERE rec.type = 'invocation' AND rec.record->>'status' <> 'ok') AS failures,
       count(*) FILTER (WHERE rec.type = 'result' AND rec.record->>'level' = 'error') AS error_results
FROM orchlua_runs r
JOIN orchlua_records rec ON rec.run_id = r.run_id
WHERE rec.type IN ('invocation', 'result')
GROUP BY 1
ORDER BY 1;
