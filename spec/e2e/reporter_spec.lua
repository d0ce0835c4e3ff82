-- ResultReporter:add_result in the host is a C function (src/queue.c,
-- l_add_result) for a reporter over the host's queue, and the Lua method
-- for any other queue.  Both must say the same levels, keep the report
-- order, and the Lua one may yield.
local h = require "helper"

local EVENTS = [[
local orch = require "orch"
local M = {}

-- a queue of the user's own: a table with put
local Mine = {}
Mine.__index = Mine
function Mine:put(v)
  orch.sleep(0)               -- the fallback may yield
  self.got[#self.got + 1] = v
end

local Loud = orch.ResultReporter:extend()
function Loud:add_result(v) return orch.ResultReporter.add_result(self, { wrapped = v }) end

function M.levels(result_reporter, report_queue)
  result_reporter:add_result({ n = 1 })
  result_reporter:add_result({ error = "disk full" })
  result_reporter:add_result({ error = false })        -- a field that is there: an error
  result_reporter:add_result("a string")
  result_reporter:add_result(42)
  local mine = setmetatable({ got = {} }, Mine)
  local rr = orch.ResultReporter.new(mine)
  rr:add_result({ n = 2 })
  rr:add_result({ error = "x" })
  local levels = {}
  for i, r in ipairs(mine.got) do levels[i] = r.level .. ":" .. tostring(r.event) end
  Loud.new(report_queue):add_result(7)
  result_reporter:add_result({ mine = table.concat(levels, " "),
                               c = type(orch.ResultReporter.add_result) == "function"
                                   and debug.getinfo(orch.ResultReporter.add_result, "S").what })
end
return M
]]

describe("add_result", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("says the levels, in order, for the host's queue and for one of the user's own", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/l.json"] =
      '{"test_name":"l","total_hours":0.0001,"events":[{"name":"levels","at_startup":true}]}' })
    local code, _, err = h.run("run l -q --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(1, code, err)   -- the error results fail the run
    local got = {}
    for _, r in ipairs(h.jsonl(dir .. "/r.jsonl")) do
      if r.type == "result" then got[#got + 1] = r end
    end
    assert.equal(7, #got)
    local levels = {}
    for i, r in ipairs(got) do
      levels[i] = r.level
      assert.equal("levels", r.event)
    end
    assert.same({ "info", "error", "error", "info", "info", "info", "info" }, levels)
    assert.same({ n = 1 }, got[1].data)
    assert.equal("a string", got[4].data)
    assert.equal(42, got[5].data)
    assert.same({ wrapped = 7 }, got[6].data)   -- a subclass's add_result
    assert.equal("info:levels error:levels", got[7].data.mine)
    assert.equal("C", got[7].data.c)            -- the host's own, in C
    assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
  end)
end)
