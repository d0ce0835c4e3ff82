-- events/soak.lua: the events of descriptions/soak_72h.json, a 72-hour
-- soak of orchlua itself: 20 events from every second to every hour,
-- fixtures of both scopes, a C event, processes spawned, run and killed,
-- and a sampler reporting orchlua's own RSS, descriptors and children.
-- Rehearsed with --time-scale 10000 (26 s) by spec/e2e/soak_spec.lua, which
-- checks the exact counts of the plan, a flat RSS, and as many descriptors
-- and children at the end as at the start.
--
-- Every event is deterministic: an invocation reports a fixed number of
-- results (the spec counts them), and fails (an error) only when what it
-- checks is wrong.
local orch = require "orch"

local M = {}

-- ---- fixtures ------------------------------------------------------------

-- orchlua's own figures: RSS, descriptors, threads, children, Lua heap
local function self_figures()
  collectgarbage()   -- the live heap, not the garbage of the last hour
  local sys = orch.sys
  local pid = sys.pid()
  local me = assert(sys.process(pid))
  local n, f = 0, io.open(("/proc/%d/task/%d/children"):format(pid, pid), "r")
  if f then
    for _ in (f:read("a") or ""):gmatch("%d+") do n = n + 1 end
    f:close()
  else
    n = -1
  end
  return me.rss, { fds = me.fds, threads = me.threads, children = n,
                   lua_kb = math.floor(collectgarbage("count")),
                   processes = require("orch.core").processes() }
end

-- run scope, set up at start (unref_setup_fixtures): a stand-in device, a
-- process that lives the whole run, stopped by its finaliser, the last one
-- (fixtures are finalised in reverse order of creation).  Reports what
-- orchlua holds once it runs: the start of the soak.
orch.fixture("soak_device", function(result_reporter)
  -- libuv reserves a descriptor per loop (for EMFILE) with the first pipe
  -- it makes: a process run with its output read makes that happen now,
  -- before the start is measured, as every process with pipes does later
  assert(orch.exec({ "true" }), "true")
  local p = orch.spawn{ cmd = { "sh", "-c", "while :; do sleep 3600; done", "orchlua-soak-device" },
                        owner = "run" }
  local rss, fields = self_figures()
  result_reporter:metric("soak.start", rss, fields)
  return { pid = p.pid, proc = p }, function()
    p:terminate()
    p:wait()
  end
end)

-- run scope: counts what the fast events did.  Its finaliser runs once
-- every invocation has ended (the device still runs): the end of the soak.
orch.fixture("soak_counter", function(result_reporter)
  local c = { ticks = 0, scratch_made = 0, scratch_done = 0 }
  return c, function()
    local rss, fields = self_figures()
    fields.ticks, fields.scratch_made, fields.scratch_done = c.ticks, c.scratch_made, c.scratch_done
    result_reporter:metric("soak.end", rss, fields)
  end
end)

-- invocation scope: made for each invocation, finalised when it ends
orch.fixture("soak_scratch", { scope = "invocation" }, function(event, soak_counter)
  soak_counter.scratch_made = soak_counter.scratch_made + 1
  local s = { id = event.id .. "#" .. event.iteration, buf = {} }
  return s, function() soak_counter.scratch_done = soak_counter.scratch_done + 1 end
end)

-- ---- the events (intervals in descriptions/soak_72h.json) -----------------

function M.soak_tick(soak_counter)                               -- 1 s
  soak_counter.ticks = soak_counter.ticks + 1
end

function M.soak_beat(soak_counter, result_reporter)              -- 5 s: 1 result
  result_reporter:metric("soak.ticks", soak_counter.ticks)
end

function M.soak_scratch(soak_scratch, event)                     -- 7 s
  soak_scratch.buf[#soak_scratch.buf + 1] = event.iteration
  assert(soak_scratch.id == event.id .. "#" .. event.iteration, "scratch made for another invocation")
end

function M.soak_params(label, n, params)                         -- 10 s
  assert(label == "soak" and n == 3 and params.label == "soak", "params not injected")
end

function M.soak_iteration(event)                                 -- 15 s
  assert(event.phase ~= "interval" or event.scheduled == event.iteration * 15, "wrong schedule")
end

function M.soak_sleep()                                          -- 30 s, allow
  orch.sleep(3)
end

function M.soak_wait(kill_switch)                                -- 60 s, allow
  local set = kill_switch:wait(5)
  assert(set == false or kill_switch:is_set(), "kill switch wait")
end

function M.soak_info(soak_counter, result_reporter)              -- 90 s: 1 result
  result_reporter:info("alive", { ticks = soak_counter.ticks })
end

function M.soak_queue(report_queue)                              -- 120 s: 1 result
  report_queue:put("a raw queue value")
end

function M.soak_compute(result_reporter)                         -- 180 s: 1 result
  local s = 0
  for i = 1, 2000 do s = s + i % 7 end
  result_reporter:add_result({ sum = s })
end

function M.soak_table(event, result_reporter)                    -- 300 s: 1 result
  local t = {}
  for i = 1, 50 do t[i] = { i = i, s = ("v%d"):format(i), f = i / 3 } end
  result_reporter:add_result({ iteration = event.iteration, rows = t, text = "tab\t\"quote\" \1 caf\195\169" })
end

function M.soak_garbage()                                        -- 450 s: GC churn
  local parts = {}
  for i = 1, 2000 do parts[i] = ("%d-%s"):format(i, ("x"):rep(i % 97)) end
  assert(#table.concat(parts) > 0)
end

function M.soak_exec()                                           -- 600 s
  local ok, code, out = orch.exec({ "sh", "-c", "echo soak" })
  assert(ok and code == 0 and out == "soak\n", "exec")
end

function M.soak_lines(result_reporter)                           -- 900 s: 1 result
  local lines = {}
  local p = orch.spawn{ cmd = { "sh", "-c", "echo one; echo two >&2; echo three" },
                        on_stdout = function(l) lines[#lines + 1] = l end,
                        on_stderr = function(l) lines[#lines + 1] = "err:" .. l end }
  local code = p:wait()
  assert(code == 0 and #lines == 3, "spawned process lines")
  result_reporter:info("lines", { n = #lines })
end

function M.soak_stdin()                                          -- 1200 s
  local p = orch.spawn{ cmd = { "cat" }, stdin = "in\nput\n", capture = true }
  local code = p:wait()
  assert(code == 0 and p:output() == "in\nput\n", "stdin round trip")
end

function M.soak_kill()                                           -- 1800 s
  local p = orch.spawn{ cmd = { "sleep", "1000" } }
  p:terminate()
  local code, sig = p:wait()
  assert(code == nil and sig == 15, "terminate")
end

function M.soak_device_check(soak_device)                        -- 2400 s
  assert(soak_device.proc:is_running(), "the device process died")
end

function M.soak_log(log)                                         -- 2700 s
  log.debug("soak log line")
end

-- 3600 s, at_teardown: 1 result, orchlua's RSS and the rest
function M.soak_sample(event, result_reporter)
  local rss, fields = self_figures()
  fields.phase, fields.iteration = event.phase, event.iteration
  result_reporter:metric("soak.rss", rss, fields)
end

return M
