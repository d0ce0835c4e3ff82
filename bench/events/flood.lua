-- bench/events/flood.lua: workload 3, one event calling add_result n times
-- (yielding with orch.sleep(0) every `batch` results when batch > 0), and a
-- reporter whose on_result measures push-to-on_result latency.  The event
-- sets the kill switch when it is done, so the run lasts as long as the
-- work (the description's total_hours is only an upper bound).
--
-- When the n-th result reaches on_result, it writes to $BENCH_SUMMARY:
-- n, elapsed (first add_result to the n-th on_result, seconds) and the
-- latency p50/p99/max (seconds).  The engine writes each record to the
-- --report file before on_result sees it, so elapsed covers both.
--
-- on_result reads the clock for every result but keeps every 8th latency
-- (the max of all): a Lua array of a million numbers, written into on
-- every result, cost as much as the work it measured (each collection
-- walks it again).  125,000 samples still give the p50 and p99.
local orch = require "orch"

local M = {}

local SAMPLE = 8
local expected, first_put
local lat, nlat, count, max = {}, 0, 0, 0

local function pct(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(p / 100 * #sorted))]
end

local BenchReporter = orch.ResultReporter:extend()

function BenchReporter:on_result(r)
  local t = orch.now()
  local l = t - r.t
  count = count + 1
  if l > max then max = l end
  if count % SAMPLE == 0 then
    nlat = nlat + 1
    lat[nlat] = l
  end
  if count == expected then
    local elapsed = t - first_put
    local path = os.getenv("BENCH_SUMMARY")
    if not path then return end
    table.sort(lat)
    local f = assert(io.open(path, "w"))
    f:write(('{"kind":"flood","n":%d,"elapsed":%.9g,"lat_p50":%.9g,"lat_p99":%.9g,"lat_max":%.9g}\n')
      :format(count, elapsed, pct(lat, 50), pct(lat, 99), max))
    f:close()
  end
end

orch.fixture("result_reporter", function(report_queue)
  return BenchReporter.new(report_queue)
end)

function M.flood(result_reporter, kill_switch, n, batch)
  expected = n
  first_put = orch.now()
  for i = 1, n do
    result_reporter:add_result({ seq = i })
    if batch > 0 and i % batch == 0 then orch.sleep(0) end
  end
  -- the run ends now, in order: the reporter drains the queue, then exit
  kill_switch:set()
end

-- the same with metric values (the checks workloads judge them)
function M.flood_metric(result_reporter, kill_switch, n, batch)
  expected = n
  first_put = orch.now()
  for i = 1, n do
    result_reporter:metric("flood", i)
    if batch > 0 and i % batch == 0 then orch.sleep(0) end
  end
  kill_switch:set()
end

return M
