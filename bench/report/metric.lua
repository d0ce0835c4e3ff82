-- bench/report/metric.lua: the event of the report workload: each firing
-- reports one metric, so the JSONL holds an invocation and a result line a
-- firing, as a soak of 100 events reporting a latency does.
local M = {}

function M.metric(result_reporter, event)
  result_reporter:metric("latency_ms", 5 + (event.iteration * 7919) % 100 / 10, { host = "h1" })
end

return M
