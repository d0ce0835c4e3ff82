-- The tickers' shared timers (src/lorch_core.c): tickers due in the same
-- millisecond share one libuv timer, a slot.  A slot must fire its tickers
-- in the order they were armed, skip one closed by an earlier one's
-- callback, and leave no timer behind; and tickers made before t0 are
-- armed at t0 with the run's time scale.
local h = require "helper"

local EVENTS = [[
local orch = require "orch"
local core = require "orch.core"
local M = {}

function M.slots(result_reporter)
  local log, ts = {}, {}
  orch.sleep(0.001)   -- the task's own timer is in the count from here on
  local base = core.stats().handles
  -- the tickers' deadlines are anchored at t0: start 4 periods from now
  local first = math.floor(core.now() / 0.05) + 4
  for i = 1, 5 do
    ts[i] = core.ticker(0.05, first, first + 2, function(k)
      log[#log + 1] = i .. ":" .. (k - first + 1)
      if i == 2 and k == first + 1 then ts[4]:close() end   -- a later one of the same slot
    end)
  end
  ts[6] = core.ticker(0.07, first, first + 2, function() end)
  local armed = core.stats().handles - base
  orch.sleep(0.5)
  for _, t in ipairs(ts) do t:close() end
  orch.sleep(0.05)   -- the closed timers' callbacks
  result_reporter:add_result({ log = table.concat(log, " "), armed = armed,
                               after = core.stats().handles - base })
end

function M.tick() end
return M
]]

local function desc(name, hours, list)
  return ('{"test_name":"%s","total_hours":%s,"events":%s}'):format(name, hours, list)
end

describe("tickers", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("due in the same millisecond share a timer and fire in the order they were armed", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS,
                      ["descriptions/s.json"] = desc("s", "0.0003", '[{"name":"slots"}]') })
    local code, _, err = h.run("run s -q --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(0, code, err)
    assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
    local r
    for _, rec in ipairs(h.jsonl(dir .. "/r.jsonl")) do
      if rec.type == "result" and rec.event == "slots" then r = rec.data end
    end
    assert.is_not_nil(r, "no result from the event")
    -- five at 50 ms in one timer, the sixth (70 ms) in its own
    assert.equal(2, r.armed)
    -- 4 was closed by 2's second firing, before its own second
    assert.equal("1:1 2:1 3:1 4:1 5:1 1:2 2:2 3:2 5:2 1:3 2:3 3:3 5:3", r.log)
    assert.equal(0, r.after)
  end)

  it("made before t0 run on the run's time scale, in description order", function()
    -- 2,000 events at 1 s for 20 s, rehearsed 10x faster
    local list = {}
    for i = 1, 2000 do list[i] = ('{"name":"tick","id":"e%d","interval_sec":1,"at_startup":false}'):format(i) end
    dir = h.project({ ["events/ev.lua"] = EVENTS,
                      ["descriptions/m.json"] = desc("m", 20 / 3600, "[" .. table.concat(list, ",") .. "]") })
    local code, _, err = h.run("run m -q --time-scale 10 --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(0, code, err)
    assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
    local n, count, last = 0, {}, {}
    for _, rec in ipairs(h.jsonl(dir .. "/r.jsonl")) do
      if rec.type == "invocation" then
        local k, i = rec.iteration, tonumber(rec.id:sub(2))
        n = n + 1
        count[k] = (count[k] or 0) + 1
        -- an interval at the real 1 s instead of 0.1 s would start each
        -- firing 9 description seconds after its time
        assert.is_true(rec.started - rec.scheduled < 5, ("%s #%d started at %g"):format(rec.id, k, rec.started))
        -- the ids of one firing instant in description order
        assert.is_true(i > (last[k] or 0), "out of order: " .. rec.id .. " #" .. k)
        last[k] = i
      end
    end
    assert.equal(38000, n)
    for k = 1, 19 do assert.equal(2000, count[k], "firing " .. k) end
  end)
end)
