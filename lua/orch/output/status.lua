-- orch.output.status: what the console counts per event from the results
-- it sees (error results, a supervised process's restarts), the live
-- results total, and the periodic one-line status of `-q` (no live area:
-- failures and errors as they come, and this line now and then).
local core = require "orch.core"

local M = {}

local TICK_SEC = 0.25   -- real seconds between looks at the clock
local EVERY_MAX = 60    -- real seconds between two status lines, at most
local EVERY_MIN = 1     -- and at least

-- Per event: error results and the last "<name>.restarts" metric (the
-- supervise helper's), read by the live area and the status line.
function M.note_result(console, r)
  local id = r.event
  if id == nil then return end
  if r.level == "error" then
    local e = console.ev_errors
    if not e then e = {}; console.ev_errors = e end
    e[id] = (e[id] or 0) + 1
  elseif r.level == "metric" then
    local d = r.data
    if type(d) == "table" and type(d.metric) == "string" and d.metric:sub(-9) == ".restarts" then
      local rs = console.ev_restarts
      if not rs then rs = {}; console.ev_restarts = rs end
      rs[id] = d.value
    end
  end
end

-- Results so far, while the run goes on: the queue counts what it hands
-- out (the engine adds it to run.results only at the end).
function M.results(run)
  if run.ended or not run.queue then return run.results or 0, run.error_results or 0 end
  local taken, errors = run.queue:counts()
  return (run.results or 0) + taken, (run.error_results or 0) + errors
end

local function hms(sec)
  sec = math.max(0, math.floor(sec + 0.5))
  return ("%d:%02d:%02d"):format(sec // 3600, sec % 3600 // 60, sec % 60)
end

-- One line: elapsed/total, runs, failures, skipped, results, the rate.
function M.line(run, last)
  local now = core.now()
  local runs, failures, skipped = 0, 0, 0
  for _, st in pairs(run.per_event) do
    runs, failures, skipped = runs + st.runs, failures + st.failures, skipped + st.skipped
  end
  local results, errors = M.results(run)
  local rate
  if last then
    local dt = (core.hrtime() - last.ns) / 1e9
    if dt > 0 then rate = (results - last.results) / dt end
  end
  -- the counts that are not zero, failures and errors always
  local text = ("%s/%s  %d runs, %d failed%s  %d results, %d error%s"):format(
    hms(math.min(now, run.total)), hms(run.total), runs, failures,
    skipped > 0 and (", %d skipped"):format(skipped) or "", results, errors, errors == 1 and "" or "s")
  -- within 80 columns: the rate says its clock when there is room
  if rate then
    for _, fmt in ipairs({ ", %.1f/s real", ", %.1f/s" }) do
      local r = fmt:format(rate)
      if #text + #r <= 80 then text = text .. r; break end
    end
  end
  return text, { ns = core.hrtime(), results = results }
end

-- -q: a status line every tenth of the run's real length (between 1 and
-- 60 real seconds).  The timer closes when the run stops, or at the latest
-- when the reporter is done (M.stop), so it never holds the loop.
function M.start(console, run)
  local every = math.max(EVERY_MIN, math.min(EVERY_MAX, run.total / run.scale / 10))
  local next_ns = core.hrtime() + every * 1e9
  local last = select(2, M.line(run))
  local timer
  timer = core.timer(function()
    if run.stopping or run.reporter_done then timer:close() return end
    if core.hrtime() < next_ns then return end
    next_ns = next_ns + every * 1e9
    local text
    text, last = M.line(run, last)
    console:line(text)
  end)
  timer:start(TICK_SEC * run.scale, TICK_SEC * run.scale)
  console.status_timer = timer
end

function M.stop(console)
  if console.status_timer then console.status_timer:close(); console.status_timer = nil end
end

return M
