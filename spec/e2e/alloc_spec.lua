-- The Lua state runs on orchlua's own allocator (src/alloc.c) unless a
-- memory checker is watching or ORCHLUA_ALLOC=malloc asks for malloc.  The
-- state must behave the same on both: the same records, warn() as the
-- stand-alone lua has it, nothing left at exit.
local h = require "helper"

local EVENTS = [[
local orch = require "orch"
local M = {}

local iteration = 0
function M.churn(result_reporter)
  iteration = iteration + 1
  -- tables, strings and coroutines of every size class and beyond
  local keep = {}
  for i = 1, 3000 do
    local t = { seq = i, name = ("x"):rep(i % 700), list = { i, i + 1, i + 2 } }
    local co = coroutine.wrap(function(v) coroutine.yield(#v.name) end)
    keep[i % 50 + 1] = { t, co(t) }
  end
  local n = 0
  for _, v in ipairs(keep) do n = n + v[2] end
  result_reporter:add_result({ iteration = iteration, n = n })
end

function M.warns()
  warn("hidden")
  warn("@on")
  warn("a", "b", "c")
  warn("d")
  warn("@off")
  warn("hidden too")
end
return M
]]

-- startup and teardown firings only: the same number of results however
-- slow the build (ASan)
local DESC = [[{"test_name":"a","total_hours":0.0001,"events":[
  {"name":"churn","id":"c1","at_startup":true},
  {"name":"churn","id":"c2","at_startup":true},
  {"name":"churn","id":"c3","at_startup":false,"at_teardown":true},
  {"name":"warns","at_startup":true}]}]]

describe("the Lua state's allocator", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("gives the same run as malloc, with warn() as in lua", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/a.json"] = DESC })
    local got = {}
    for _, env in ipairs({ "", "ORCHLUA_ALLOC=malloc" }) do
      local code, _, err = h.run("run a -q --report r.jsonl", dir,
                                 env .. " ORCHLUA_DEBUG_STATS=1")
      assert.equal(0, code, err)
      local ns = {}
      for _, r in ipairs(h.jsonl(dir .. "/r.jsonl")) do
        if r.type == "result" then ns[#ns + 1] = r.data.iteration .. ":" .. r.data.n end
      end
      assert.equal(3, #ns, env)
      got[#got + 1] = table.concat(ns, " ")
      assert.matches("Lua warning: abc\nLua warning: d\n", err, 1, true)
      assert.not_matches("hidden", err)
      assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
    end
    assert.equal(got[1], got[2])
  end)
end)
