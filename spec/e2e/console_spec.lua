-- The console without a live area: results as readable lines, and the
-- three levels below -v: the default, -q (failures, errors and a one-line
-- status now and then) and -qq (failures and errors only).
local h = require "helper"
local cjson = require "cjson"

local dir
after_each(function() h.rm(dir); dir = nil end)

local SRC = [[
local M = {}
function M.probe(result_reporter, event)
  result_reporter:info("probe ok", { target = "tcp://127.0.0.1:6379", latency = 0.00125, tags = { "a/b", "c" } })
  result_reporter:metric("redis.rps", 81234.5, { test = "SET" })
  if event.iteration == 3 then result_reporter:error("connection reset", { target = "tcp://127.0.0.1:6379" }) end
end
function M.boom(event) if event.iteration == 2 then error("kaboom") end end
return M
]]

local function run(args)
  local desc = { test_name = "t", total_hours = 6 / 3600,
                 events = { { name = "probe", interval_sec = 1 }, { name = "boom", interval_sec = 1.5 } } }
  dir = h.project({ ["events/ev.lua"] = SRC, ["descriptions/t.json"] = cjson.encode(desc) })
  -- 6 s of description time in 3 s: -q's status line comes every 0.3 s,
  -- at least 1 s real apart
  return h.run("run t --time-scale 2 " .. args, dir)
end

describe("the console", function()
  it("prints results as `event [level] message key=value`, JSON only for nested values, slashes as they are", function()
    local code, out = run("")
    assert.equal(1, code)
    assert.matches("\n0:00:01%.%d+  probe %[info%] probe ok latency=0%.00125 tags=%[\"a/b\",\"c\"%] "
      .. "target=tcp://127%.0%.0%.1:6379\n", out)
    assert.matches("\n0:00:01%.%d+  probe %[metric%] redis%.rps 81234%.5 test=SET\n", out)
    assert.matches("\n0:00:03%.%d+  probe %[error%] connection reset target=tcp://127%.0%.0%.1:6379\n", out)
    assert.is_nil(out:find("\\/", 1, true))
    assert.is_nil(out:find("{\"", 1, true))
    assert.matches("\n0:00:01%.000  probe #1 interval ok", out)
  end)

  it("-q: failures, errors and a one-line status now and then; no line per invocation or info", function()
    local code, out = run("-q")
    assert.equal(1, code)
    assert.is_nil(out:find("interval ok", 1, true))
    assert.is_nil(out:find("[info]", 1, true))
    assert.matches("probe %[error%] connection reset", out)
    assert.matches("boom #2 interval ERROR", out)
    local n = 0
    for l in out:gmatch("[^\n]+") do
      if l:match("^0:00:0%d/0:00:06  %d+ runs, %d+ failed  %d+ results, %d+ errors?, [%d.]+/s real$") then
        n = n + 1
      end
    end
    assert.is_true(n >= 1, out)
    assert.matches("\nexit 1: ", out)
  end)

  for _, flag in ipairs({ "-qq", "-q -q" }) do
    it(flag .. ": failures and errors only", function()
      local code, out = run(flag)
      assert.equal(1, code)
      assert.is_nil(out:find("/0:00:06  ", 1, true))
      assert.is_nil(out:find("interval ok", 1, true))
      assert.matches("probe %[error%] connection reset", out)
      assert.matches("boom #2 interval ERROR", out)
    end)
  end

  it("-qq and -v cannot be combined", function()
    local code, _, err = run("-qq -v")
    assert.equal(2, code)
    assert.matches("%-q and %-v cannot be combined", err)
  end)
end)
