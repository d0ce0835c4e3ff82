-- bench/events/checks.lua: the events of bench/checks_rss.lua's 72-hour
-- rehearsal: each reports a latency and a memory figure, tagged with its k.
local M = {}

local seed = 7
local function uniform()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
end

function M.report_metrics(result_reporter, k)
  result_reporter:metric("latency_ms", 100 + 50 * uniform(), { k = k })
  result_reporter:metric("rss_mb", 300 + 10 * uniform(), { k = k })
end

return M
