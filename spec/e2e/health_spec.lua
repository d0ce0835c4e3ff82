-- orchlua watching itself (lua/orch/health.lua): orchlua.self.* metrics,
-- loop_lag results, and clock_step records when the wall clock jumps
-- (Debian's libfaketime moves it under a running orchlua).
local h = require "helper"

local EVENTS = [[
local M = {}
function M.tick() end
function M.hog()   -- holds the loop 1.2 s of CPU without a yield
  local t = os.clock()
  while os.clock() - t < 1.2 do end
end
return M
]]

local function project(descs, cfg)
  local files = { ["events/ev.lua"] = EVENTS,
    [".orchlua"] = cfg or 'return { sources = { "events/*.lua" }, grace_sec = 5 }\n' }
  for name, text in pairs(descs) do files["descriptions/" .. name .. ".json"] = text end
  return h.project(files)
end

describe("orchlua's health", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("records orchlua.self.* metrics on the description's grid", function()
    dir = project({ s = '{"test_name":"s","total_hours":1,"self_metrics_sec":60,"events":[{"name":"tick","interval_sec":10}]}' })
    local code, _, err = h.run("run s -q --time-scale 3600 --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(0, code, err)
    assert.matches("handles=0 tasks=0 refs=0", err)
    local n = {}
    for _, r in ipairs(h.select(h.jsonl(dir .. "/r.jsonl"), "result")) do
      if type(r.data) == "table" and type(r.data.metric) == "string" then
        local name = r.data.metric:match("^orchlua%.self%.(.*)$")
        if name then
          n[name] = (n[name] or 0) + 1
          assert.is_number(r.data.value)
          if name == "rss" or name == "fds" or name == "lua_heap" then assert.is_true(r.data.value > 0) end
        end
      end
    end
    -- k = 1 .. 59: a sample at 3600 s would be at the end
    assert.same({ rss = 59, lua_heap = 59, fds = 59, timers = 59, queue = 59, loop_lag = 59 }, n)
  end)

  it("reports an invocation that holds the loop as a loop_lag result against its event", function()
    dir = project({ l = '{"test_name":"l","total_hours":0.0005,"events":[{"name":"hog"},{"name":"tick","interval_sec":0.1}]}' },
      'return { sources = { "events/*.lua" }, grace_sec = 5, loop_lag_sec = 0.5 }\n')
    local code, _, err = h.run("run l -q --report r.jsonl", dir)
    assert.equal(0, code, err)
    local lags = {}
    for _, r in ipairs(h.select(h.jsonl(dir .. "/r.jsonl"), "result")) do
      if type(r.data) == "table" and r.data.loop_lag then lags[#lags + 1] = r end
    end
    assert.equal(1, #lags)
    assert.equal("hog", lags[1].event)
    assert.equal("warn", lags[1].level)
    assert.is_true(lags[1].data.loop_lag >= 0.5 and lags[1].data.loop_lag < 5)
    assert.matches("^held the loop %d%.%d%ds in one go %(more than loop_lag_sec 0%.5s%)", lags[1].data.message)
  end)

  it("writes a clock_step record when the wall clock jumps", function()
    dir = project({ c = '{"test_name":"c","total_hours":0.001,"events":[{"name":"tick","interval_sec":0.5}]}' })
    h.write(dir .. "/faketime", "+0\n")
    local env = ("LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 FAKETIME_TIMESTAMP_FILE=%s "
      .. "FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1"):format(h.q(dir .. "/faketime"))
    -- one hour forward 1.5 s into the 3.6 s run
    os.execute(("(sleep 1.5; echo '+3600' > %s) &"):format(h.q(dir .. "/faketime")))
    -- libfaketime's preload and the sanitizers' runtime both need to come
    -- first (under ASan the run hangs in its start): this one runs the plain
    -- build, which make check-asan builds too
    local bin = h.bin
    h.bin = h.root .. "/orchlua"
    local code, _, err = h.run("run c -q --report r.jsonl", dir, env)
    h.bin = bin
    assert.equal(0, code, err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.is_nil(h.nonconforming(recs))   -- clock_step as orch.records defines it
    local steps = h.select(recs, "clock_step")
    assert.equal(1, #steps)
    assert.is_true(math.abs(steps[1].step - 3600) < 5, tostring(steps[1].step))
    assert.is_true(steps[1].t > 1 and steps[1].t < 3.6)
    assert.is_string(steps[1].ts)
    assert.is_number(steps[1].seq)
    -- ts stays on the run's own clock: no jump between records
    assert.equal("run_end", recs[#recs].type)
  end)
end)

describe("a timed-out invocation", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("says where it waited and what its processes were doing", function()
    dir = h.project({ ["events/ev.lua"] = [[
local orch = require "orch"
return { stuck = function()
  local p = orch.spawn{ cmd = { "sh", "-c", "echo started; echo working >&2; sleep 100 & wait" },
    on_stdout = function() end, on_stderr = function() end }
  p:wait()
end }
]], ["descriptions/t.json"] = '{"test_name":"t","total_hours":0.001,"events":[{"name":"stuck","timeout_sec":1}]}' })
    local code, _, err = h.run("run t -q --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(1, code)
    assert.matches("handles=0 tasks=0 refs=0", err)
    local inv = h.select(h.jsonl(dir .. "/r.jsonl"), "invocation")[1]
    assert.equal("timeout", inv.status)
    local e = inv.error
    assert.matches("^timed out after 1s %(timeout_sec%)\nprocesses it spawned, still running:\n    pid %d+ %(sh%) state S, children %d+\n"
      .. "      stdout: started\n      stderr: working\n", e)
    assert.matches("stack traceback:.*events/ev.lua:5", e)
  end)
end)
