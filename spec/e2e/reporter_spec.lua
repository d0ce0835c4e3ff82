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

-- The run's result counts are kept by the queue (queue:counts) for records
-- the engine need not see; the ones it must see (errors, lines the report
-- lacks) still go through the engine, each counted once.
local COUNTED = [[
local orch = require "orch"
local M = {}
function M.mixed(result_reporter, report_queue)
  result_reporter:add_result({ n = 1 })               -- info, line written in C
  result_reporter:add_result({ error = "x" })         -- error, flagged in C
  result_reporter:error("boom")                       -- error through queue:report
  result_reporter:info("fine")
  report_queue:put({ level = "error", data = "by hand" })  -- a table put as is
  report_queue:put("plain")                           -- wrapped by the reporter
  result_reporter:add_result({ f = function() end })  -- the encoder refuses it
end
function M.first_error(result_reporter, kill_switch)
  result_reporter:add_result({ n = 1 })
  result_reporter:add_result({ error = "stop here" })
  kill_switch:wait(30)
  result_reporter:add_result({ late = true })
end
return M
]]

describe("the result counts", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("count every result and every error once, however it came", function()
    dir = h.project({ ["events/ev.lua"] = COUNTED, ["descriptions/c.json"] =
      '{"test_name":"c","total_hours":0.0001,"events":[{"name":"mixed","at_startup":true}]}' })
    local code, out, err = h.run("run c --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(1, code, err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    local lines, errors = 0, 0
    for _, r in ipairs(recs) do
      if r.type == "result" then
        lines = lines + 1
        if r.level == "error" then errors = errors + 1 end
      end
    end
    assert.equal(7, lines)
    assert.equal(3, errors)
    local run_end = recs[#recs]
    assert.equal("run_end", run_end.type)
    assert.equal(7, run_end.results)
    assert.equal(3, run_end.error_results)
    assert.matches("results: 7 %(3 errors%)", out)
    assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
  end)

  it("--fail-fast stops the run at the first error result from add_result", function()
    dir = h.project({ ["events/ev.lua"] = COUNTED, ["descriptions/f.json"] =
      '{"test_name":"f","total_hours":1,"events":[{"name":"first_error","at_startup":true}]}' })
    local code, _, err = h.run("run f -q --fail-fast --report r.jsonl", dir)
    assert.equal(1, code, err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    local run_end = recs[#recs]
    assert.equal("fail-fast: error result", run_end.reason)
    assert.equal(1, run_end.error_results)
    assert.is_true(run_end.t < 60, "stopped long before the hour: " .. run_end.t)
  end)
end)

-- The host's queue hands plain records to on_result from C
-- (queue:deliver); on_result may still yield and raise there.
local YIELDING = [[
local orch = require "orch"
local M = {}
local seen = {}
local Slow = orch.ResultReporter:extend()
function Slow:on_result(r)
  if type(r.data) == "table" and r.data.seq then
    seen[#seen + 1] = r.data.seq
    if r.data.seq % 100 == 0 then orch.sleep(0.001) end   -- yields inside deliver
    -- 1500 raises after a yield (the continuation), 1501 without one
    if r.data.seq == 1500 or r.data.seq == 1501 then error("on_result refuses " .. r.data.seq) end
  end
  if type(r.data) == "table" and r.data.done then
    local ok = #seen == 3001
    for i = 1, #seen do if seen[i] ~= i then ok = false end end
    orch.log.info("seen in order: " .. tostring(ok) .. " " .. #seen)
  end
end
orch.fixture("result_reporter", function(report_queue) return Slow.new(report_queue) end)
function M.burst(result_reporter)
  for i = 1, 3001 do
    if i % 1000 == 0 then result_reporter:add_result({ seq = i, error = "every 1000th" })
    else result_reporter:add_result({ seq = i }) end
  end
  result_reporter:add_result({ done = true })
end
return M
]]

describe("on_result called from the queue", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("gets every record in order, may yield, and its error is the run's", function()
    dir = h.project({ ["events/ev.lua"] = YIELDING, ["descriptions/y.json"] =
      '{"test_name":"y","total_hours":0.0003,"events":[{"name":"burst","at_startup":true}]}' })
    local code, out, err = h.run("run y --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(1, code, err)
    assert.matches("seen in order: true 3001", out, 1, true)
    assert.matches("on_result failed: [^\n]*on_result refuses 1500", out .. err)
    assert.matches("on_result failed: [^\n]*on_result refuses 1501", out .. err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    local run_end = recs[#recs]
    assert.equal(3002, run_end.results)
    assert.equal(3, run_end.error_results)
    assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
  end)
end)

-- queue.c keeps the last event id's JSON and the last ts's Lua string for
-- the next result: three events reporting by turns (one id that needs
-- escapes, one too long to keep) must still each get their own id, and
-- every record its own ts, the same as its line's.
local TURNS = [[
local orch = require "orch"
local core = require "orch.core"
local M = {}
local seen, bad = 0, {}
local Check = orch.ResultReporter:extend()
function Check:on_result(r)
  seen = seen + 1
  if r.ts ~= core.ts(r.t) and #bad < 5 then bad[#bad + 1] = r.ts .. " for t " .. r.t end
  if type(r.data) == "table" and r.data.who and r.data.who ~= r.event and #bad < 5 then
    bad[#bad + 1] = tostring(r.event) .. " for " .. r.data.who
  end
end
orch.fixture("result_reporter", function(report_queue)
  return Check.new(report_queue)
end)
function M.turns(result_reporter, event)
  for i = 1, 300 do
    result_reporter:add_result({ who = event.id, i = i })
    if i % 7 == 0 then orch.sleep(i % 2 == 0 and 0 or 0.001) end
  end
end
function M.last(result_reporter, kill_switch)
  orch.sleep(0.2)
  result_reporter:add_result({ seen = seen, bad = table.concat(bad, "; ") })
  kill_switch:set()
end
return M
]]

describe("the last event id and ts kept for the next result", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("never give a result another event's id or another moment's ts", function()
    local long = ("x"):rep(70)
    dir = h.project({ ["events/ev.lua"] = TURNS, ["descriptions/t.json"] = ([[
{"test_name":"t","total_hours":0.001,"events":[
 {"name":"turns","id":"plain","at_startup":true},
 {"name":"turns","id":"say \"h\u00e9\"\\","at_startup":true},
 {"name":"turns","id":"%s","at_startup":true},
 {"name":"last","at_startup":true}]}]]):format(long) })
    local code, _, err = h.run("run t -q --report r.jsonl", dir)
    assert.equal(0, code, err)
    local n, last, prev = {}, nil, nil
    for _, r in ipairs(h.jsonl(dir .. "/r.jsonl")) do
      if r.type == "result" then
        if r.data.who then
          assert.equal(r.data.who, r.event)
          n[r.event] = (n[r.event] or 0) + 1
          -- ts never goes back, and moves on when t does by a millisecond
          if prev then
            assert.is_true(r.ts >= prev.ts, r.ts .. " after " .. prev.ts)
            if r.t - prev.t > 0.0011 then assert.are_not.equal(prev.ts, r.ts) end
          end
          prev = r
        else
          last = r.data
        end
      end
    end
    assert.same({ plain = 300, ['say "hé"\\'] = 300, [long] = 300 }, n)
    assert.equal(900, last.seen)
    assert.equal("", last.bad)
  end)
end)

-- A put yields while the queue holds QUEUE_HIGH (64) values, so that an
-- event reporting in a loop that never yields costs memory for a few
-- dozen records, not for all of them.
local BURST = [[
local M = {}
function M.burst(result_reporter, report_queue)
  local most = 0
  for i = 1, 20000 do
    result_reporter:add_result({ i = i })
    local n = report_queue:size()
    if n > most then most = n end
  end
  result_reporter:add_result({ most = most })
end
return M
]]

describe("a burst of results", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("waits for the reporter whenever the queue holds 64", function()
    dir = h.project({ ["events/ev.lua"] = BURST, ["descriptions/b.json"] =
      '{"test_name":"b","total_hours":0.0001,"events":[{"name":"burst","at_startup":true}]}' })
    local code, _, err = h.run("run b -q --report r.jsonl", dir)
    assert.equal(0, code, err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    local last = h.select(recs, "result")
    assert.equal(20001, #last)
    -- the put that makes 64 returns once the reporter has taken them all
    assert.equal(63, last[#last].data.most)
  end)
end)

-- The engine's hooks reach a reporter through ResultReporter:attach (kept
-- as rr.hooks): a subclass may override attach and still call the parent;
-- a reporter of the user's own without attach gets them the same way.
local ATTACH = [[
local orch = require "orch"
local M = {}
local Seen = orch.ResultReporter:extend()
local got = "none"
function Seen:attach(hooks)
  got = type(hooks.console) .. " " .. type(hooks.deliver) .. " " .. type(hooks.on_result_error)
  orch.ResultReporter.attach(self, hooks)
end
local which = os.getenv("ATTACH_KIND")
orch.fixture("result_reporter", function(report_queue)
  if which == "subclass" then return Seen.new(report_queue) end
  -- duck-typed: the default monitor and on_result, no attach of its own
  return { queue = report_queue, monitor = orch.ResultReporter.monitor,
           on_result = function(self, r)
             if type(r.data) == "table" and r.data.refuse then error("refused here") end
             return orch.ResultReporter.on_result(self, r)
           end }
end)
function M.report(report_queue)
  orch.sleep(0.05)   -- the reporter task has attached by then
  local rr = orch.ResultReporter.new(report_queue)   -- the duck has no add_result
  rr:info("hooked " .. got)
  rr:error("an error result")
  rr:add_result({ refuse = true })
end
return M
]]

describe("the reporter's hooks (ResultReporter:attach)", function()
  local dir
  after_each(function() h.rm(dir) end)

  for _, kind in ipairs({ "subclass", "duck" }) do
    it("reach a " .. kind .. " reporter: console, error counts, on_result's error", function()
      dir = h.project({ ["events/ev.lua"] = ATTACH, ["descriptions/a.json"] =
        '{"test_name":"a","total_hours":0.0001,"events":[{"name":"report","at_startup":true}]}' })
      local code, out, err = h.run("run a --report r.jsonl", dir, "ATTACH_KIND=" .. kind)
      assert.equal(1, code, err)   -- the error result fails the run
      if kind == "subclass" then
        assert.matches("hooked table function function", out, 1, true)
      else
        assert.matches("hooked none", out, 1, true)
        assert.matches("on_result failed: [^\n]*refused here", out .. err)
      end
      local recs = h.jsonl(dir .. "/r.jsonl")
      local run_end = recs[#recs]
      assert.equal("run_end", run_end.type)
      assert.equal(3, run_end.results)
      assert.equal(1, run_end.error_results)
    end)
  end
end)
