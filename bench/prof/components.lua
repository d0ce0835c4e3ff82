-- bench/prof/components.lua: what one invocation's and one result's parts
-- cost inside orchlua.  One event times, N times each, the pieces the
-- engine runs per invocation and per result (engine internals, required
-- from the embedded modules) with the inputs a trivial invocation gives
-- them, and prints CPU microseconds per call (os.clock).  A piece the
-- build does not have is skipped.  Run by bench/profile.sh; expect a few
-- percent of noise, more on a busy machine.
local orch = require "orch"
local core = require "orch.core"
local jsonl = require "orch.output.jsonl"
local cjson = require "cjson"

local M = {}

local N = tonumber(os.getenv("BENCH_COMPONENT_N") or "100000")

local function time(name, fn)
  for i = 1, N // 10 do fn(i) end -- warm up (buffers, caches)
  collectgarbage()
  collectgarbage()
  local t = os.clock()
  for i = 1, N do fn(i) end
  local dt = os.clock() - t
  print(("  %-60s %7.3f us"):format(name, dt / N * 1e6))
end

local function maybe(name, fn, probe)
  if probe == nil then return print(("  %-60s %s"):format(name, "(not in this build)")) end
  time(name, fn)
end

function M.components(kill_switch)
  print(("components (%d calls each, CPU microseconds per call):"):format(N))
  local rec = { type = "invocation", t = 12.001234567, event = "trivial", id = "e123", iteration = 12,
                phase = "interval", scheduled = 12, started = 12.001187654, duration = 4.6913e-05,
                lateness = 0.0011876543, status = "ok" }
  rec.ts = core.ts(rec.t)
  time("core.now()", function() return core.now() end)
  time("core.ts(t)  (ISO 8601 time of a record)", function(i) return core.ts(i * 1e-3) end)
  maybe("core.stamp()  (t and ts at once)", function() return core.stamp() end, core.stamp)
  time("an invocation record: table of 11 fields", function(i)
    return { type = "invocation", t = i, event = "trivial", id = "e123", iteration = i, phase = "interval",
             scheduled = 12, started = 12.0012, duration = 4.6e-05, lateness = 0.0012, status = "ok" }
  end)
  time("cjson.encode(rec)  (reference: 13 fields, 6 numbers)", function() return cjson.encode(rec) end)
  time("string.format('%.14g', x)  (one double, as printf does it)",
    function() return ("%.14g"):format(12.001234567) end)
  local w = assert(jsonl.open("/dev/null"))
  time("jsonl:write(rec)  (the --report writer, to /dev/null)", function() return w:write(rec, "invocation") end)
  w:close()
  local st = core.new_stats()
  for i = 1, 5000 do st:add(i * 1e-6) end
  time("Stats:add(v)  (past the exact samples)", function(i) st:add(i * 1e-6) end)
  local q = core.queue()
  maybe("queue:report('info', data)  (a result, built in C)", function(i) q:report("info", i) end, q.report)
  time("queue:put(v) then queue:get_nowait()", function(i) q:put(i); q:get_nowait() end)
  while q:get_nowait() ~= nil do end
  q:close()
  -- a task on the real scheduler: core.go, resume, finish, done callback
  local done_n = 0
  local function body() end
  local function done() done_n = done_n + 1 end
  local t = os.clock()
  for _ = 1, N do core.go(body, done, true) end
  local t_go = os.clock() - t
  while done_n < N do orch.sleep(0) end
  local t_all = os.clock() - t
  print(("  %-60s %7.3f us"):format("core.go(fn, done, tag) alone", t_go / N * 1e6))
  print(("  %-60s %7.3f us"):format("core.go + resume + finish + done (empty fn and done)", t_all / N * 1e6))
  kill_switch:set()
end

return M
