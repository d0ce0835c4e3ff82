-- bench/events/probe.lua: body-start lateness.  The first line of the body
-- reads the clock and subtracts the firing's scheduled time, so the figure
-- includes everything between the due instant and the body running (timer
-- wake-up, the firing, the ready queue, the resume), which the report's
-- `lateness` (taken when the scheduler sees the firing) does not.
--
-- The values stay in memory; the finaliser of the run fixture `probe_sink`
-- (listed in unref_setup_fixtures) writes p50/p99/max in seconds to
-- $BENCH_SUMMARY as one JSON line.  Its setup writes a line to $BENCH_MARK
-- when the run starts, for runs without a --report file to watch.
local orch = require "orch"

local M = {}

local lat, n = {}, 0

local function pct(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(p / 100 * #sorted))]
end

orch.fixture("probe_sink", function()
  -- a marker for the harness (bench/measure -w): the run has started
  local mark = os.getenv("BENCH_MARK")
  if mark then
    local f = io.open(mark, "w")
    if f then f:write("start\n"); f:close() end
  end
  return true, function()
    local path = os.getenv("BENCH_SUMMARY")
    if not path then return end
    -- the probe's own work (sorting 200,000 samples in Lua takes 0.1-0.25 s),
    -- which the harness takes off the CPU figure, as the floor's qsort
    local c0 = os.clock()
    table.sort(lat)
    local p50, p99 = pct(lat, 50), pct(lat, 99)
    local f = assert(io.open(path, "w"))
    f:write(('{"kind":"probe","n":%d,"p50":%.9g,"p99":%.9g,"max":%.9g,"summary_cpu":%.6f}\n'):format(
      n, p50, p99, lat[n] or 0, os.clock() - c0))
    f:close()
  end
end)

function M.probe(event)
  local late = orch.now() - event.scheduled
  n = n + 1
  lat[n] = late
end

return M
