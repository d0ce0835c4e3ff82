-- Every record orchlua writes keeps to orch.records (lua/orch/records.lua),
-- the one definition of the --report file's records: the engine's Lua
-- paths (a console that shows invocations), the C fast paths (invoker.c and
-- queue.c under -q), checks, a resumed run's gap.  clock_step is held to it
-- in health_spec (faketime).
local h = require "helper"

local EVENTS = [[
local orch = require "orch"
local M = {}
function M.ok() end
function M.fails() error("on purpose") end
function M.slow() orch.sleep(1) end
function M.hang() orch.sleep(30) end   -- always past its timeout, at any --time-scale
function M.reports(result_reporter)
  result_reporter:info("hello", { n = 1 })
  result_reporter:add_result({ plain = true })
  result_reporter:error("an error result")
  result_reporter:metric("latency_ms", 12.5, { host = "a" })
end
return M
]]

local DESC = [[{"test_name":"r","total_hours":0.0004,"events":[
  {"name":"ok","interval_sec":0.25},
  {"name":"fails","interval_sec":0.5},
  {"name":"hang","interval_sec":0.2,"timeout_sec":0.5},
  {"name":"slow","id":"busy","interval_sec":0.3},
  {"name":"reports","interval_sec":0.5}],
 "checks":[{"name":"lat","metric":"latency_ms","stat":"max","max":10,"action":"warn"},
           {"name":"oks","event":"ok","series":"duration","stat":"p99","max":5}]}]]

local function types(recs)
  local seen = {}
  for _, r in ipairs(recs) do seen[r.type] = true end
  return seen
end

describe("the records of --report (orch.records)", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("keep to their definition, from the Lua paths and from the C fast paths", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/r.json"] = DESC })
    local seen = {}
    -- the console shows invocations: engine.lua writes them; -q: invoker.c and queue.c
    for _, args in ipairs({ "--no-progress --report slow.jsonl", "-q --report fast.jsonl --time-scale 2" }) do
      local code, out, err = h.run("run r " .. args, dir)
      assert.equal(1, code, out .. err)
      local recs = h.jsonl(dir .. "/" .. args:match("(%w+)%.jsonl") .. ".jsonl")
      assert.is_nil(h.nonconforming(recs))
      for ty in pairs(types(recs)) do seen[ty] = true end
      -- what each path wrote: failures, timeouts, skipped firings, every level
      local status = {}
      for _, r in ipairs(h.select(recs, "invocation")) do status[r.status] = true end
      assert.same({ ok = true, error = true, timeout = true }, status)
      local levels = {}
      for _, r in ipairs(h.select(recs, "result")) do levels[r.level] = true end
      assert.is_true(levels.info and levels.error and levels.metric, args)
    end
    assert.same({ run_start = true, invocation = true, skipped = true, result = true, check = true, run_end = true },
      seen)
  end)

  it("keep to it across a kill and a resume (the gap record)", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/g.json"] =
      '{"test_name":"g","total_hours":0.001,"events":[{"name":"ok","interval_sec":0.25}]}' })
    os.execute(("cd %s && (%s run g -q --report g.jsonl >out 2>err & echo $! > pid; "
      .. "while [ $(cat g.jsonl 2>/dev/null | wc -l) -lt 4 ]; do sleep 0.05; done; kill -9 $(cat pid))")
      :format(h.q(dir), h.q(h.bin)))
    local code, out, err = h.run("run g -q --resume g.jsonl", dir)
    assert.equal(0, code, out .. err)
    local recs = h.jsonl(dir .. "/g.jsonl")
    assert.equal(1, #h.select(recs, "gap"))
    assert.is_nil(h.nonconforming(recs))
  end)

  it("are what the manual (man/orchlua.1, OUTPUT) lists, field by field", function()
    local records = require "orch.records"
    local man = assert(h.read(h.root .. "/man/orchlua.1")):match("\n%.SH OUTPUT\n(.-\n)%.SH ") .. ".SH"
    for ty in pairs(records.types) do
      local section = man:match("\n%.B " .. ty .. "\n(.-)\n%.[TS][PH]")
      assert(section, "man/orchlua.1 has no entry for the " .. ty .. " record")
      for _, k in ipairs(records.names[ty]) do
        if not records.common[k] then
          assert(section:find("%f[%w_]" .. k .. "%f[^%w_]"), ("man/orchlua.1: the %s record does not list %s"):format(ty, k))
        end
      end
    end
    for k in pairs(records.common) do
      assert(man:find("%.B " .. k .. "\n") or man:find("%.BR " .. k .. " ,"), "man/orchlua.1 does not list " .. k)
    end
  end)
end)
