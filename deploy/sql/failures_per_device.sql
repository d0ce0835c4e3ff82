-- Failed invocations (status error, timeout or cancelled) per device, over
-- every run stored; error results beside them.  Every row carries its
-- run's labels: one site only, add AND labels @> '{"site": "lab-3"}'.
-- (Rows stored by an orchlua older than that have {}: their labels are in
-- orchlua_runs, joined on run_id.)
SELECT labels->>'device' AS device,
       count(*) FILTER (WHERE type = 'invocation') AS invocations,
       count(*) FILTER (WHERE type = 'invocation' AND record->>'status' <> 'ok') AS failures,
       count(*) FILTER (WHERE type = 'result' AND record->>'level' = 'error') AS error_results
FROM orchlua_records
WHERE type IN ('invocation', 'result')
GROUP BY 1
ORDER BY 1;
