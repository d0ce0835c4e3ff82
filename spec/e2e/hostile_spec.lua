-- Hostile events: orchlua stays up, records a clear error, and the rest of
-- the run goes on.
local h = require "helper"

local EVENTS = [[
local M = {}
function M.tick(result_reporter) result_reporter:add_result({ tick = true }) end
function M.nonstring() error({ code = 3 }) end
function M.bad_tostring() error(setmetatable({}, { __tostring = function() error("no string for you") end })) end
function M.yields() coroutine.yield() end
function M.exits() os.exit(3) end
function M.twice(kill_switch) kill_switch:set(); kill_switch:set() end
function M.cyclic(result_reporter)
  local t = { name = "loop" }; t.self = t
  result_reporter:add_result(t)
  result_reporter:add_result({ f = function() end, n = 0/0, big = math.huge, bad = "\255\0x" })
  result_reporter:add_result(print)
end
function M.global() return undefined_thing.x end
return M
]]

describe("hostile events", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("are recorded as errors while the run goes on", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/x.json"] = [[{"test_name":"x","total_hours":0.001,
      "events":[{"name":"tick","interval_sec":1},{"name":"nonstring"},{"name":"bad_tostring"},
      {"name":"yields"},{"name":"exits"},{"name":"cyclic"},{"name":"global"}]}]] })
    local code, _, err = h.run("run x -q --report r.jsonl --time-scale 2", dir, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(1, code)
    assert.matches("handles=0 tasks=0 refs=0", err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    local errs = {}
    for _, r in ipairs(recs) do
      if r.type == "invocation" and r.status ~= "ok" then errs[r.id] = r.error:match("^[^\n]*") end
    end
    assert.equal("(error object is a table value)", errs.nonstring)
    assert.equal("(error object's __tostring failed: events/ev.lua:4: no string for you)", errs.bad_tostring)
    assert.equal("yielded outside an orch helper (use orch.sleep, kill_switch:wait or a process wait to wait)", errs.yields)
    assert.equal("events/ev.lua:6: os.exit is not allowed in an event (it would skip the teardown and lose queued results); use kill_switch:set() to end the run", errs.exits)
    assert.equal('events/ev.lua:14: events/ev.lua: undefined global "undefined_thing"', errs.global)
    local ticks, cyc = 0, {}
    for _, r in ipairs(recs) do
      if r.type == "result" and r.data.tick then ticks = ticks + 1 end
      if r.type == "result" and r.event == "cyclic" then cyc[#cyc + 1] = r.data end
    end
    assert.equal(4, ticks)
    assert.equal(3, #cyc)
    assert.equal("<cycle>", cyc[1].self)
    assert.equal("loop", cyc[1].name)
    assert.matches("^<function", cyc[2].f)
    assert.equal("\239\191\189\0x", cyc[2].bad)  -- the invalid byte became U+FFFD
    assert.equal(require("cjson").null, cyc[2].n)  -- NaN: null
    assert.matches("^<function", cyc[3])
    assert.equal("run_end", recs[#recs].type)
  end)

  it("may set the kill switch twice: the run ends once, in order", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/k.json"] = [[{"test_name":"k","total_hours":1,
      "events":[{"name":"twice","at_startup":false,"interval_sec":1},{"name":"tick","at_startup":false,"at_teardown":true}]}]] })
    local code = h.run("run k -q --report r.jsonl --time-scale 2", dir)
    assert.equal(0, code)
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal("kill switch set by twice", recs[#recs].reason)
    local n = 0
    for _, r in ipairs(recs) do if r.type == "invocation" and r.id == "tick" then n = n + 1 end end
    assert.equal(1, n)
  end)

  it("keep the console going when the report file fills the disk", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/x.json"] = [[{"test_name":"x","total_hours":0.001,
      "events":[{"name":"tick","interval_sec":1}]}]] })
    local code, out, err = h.run("run x --report /dev/full --time-scale 4", dir)
    assert.equal(1, code)
    assert.equal("orchlua: --report /dev/full: No space left on device; the run goes on, the console still shows every result\n", err)
    local n = 0
    for _ in out:gmatch('%[info%] tick=true\n') do n = n + 1 end
    assert.equal(4, n)
  end)

  it("cannot stop the reporter with a hostile metatable in a result", function()
    -- a function inside sends the record to the placeholders, which read
    -- tables raw: __pairs, __len, __index and a key's __tostring never run
    dir = h.project({ ["events/ev.lua"] = [[
local M = {}
function M.hostile(result_reporter)
  result_reporter:add_result({ before = true })
  local obj = setmetatable({ f = print, 1, 2 }, {
    __pairs = function() error("no pairs") end,
    __len = function() error("no len") end,
    __index = function(_, k) error("no field " .. tostring(k)) end,
  })
  local key = setmetatable({}, { __tostring = function() error("no name") end })
  result_reporter:add_result({ obj = obj, [key] = 1 })
  result_reporter:add_result({ after = true })
end
function M.tick(result_reporter) result_reporter:add_result({ tick = true }) end
return M
]], ["descriptions/m.json"] = [[{"test_name":"m","total_hours":0.001,
      "events":[{"name":"hostile"},{"name":"tick","interval_sec":1}]}]] })
    local code, _, err = h.run("run m -q --report r.jsonl --time-scale 2", dir)
    assert.equal(0, code, err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    local data = {}
    for _, r in ipairs(recs) do if r.type == "result" then data[#data + 1] = r.data end end
    assert.equal(7, #data)               -- before, obj, after, and 4 ticks
    assert.is_true(data[1].before)
    assert.matches("^<function", data[2].obj.f)
    assert.same({ 1, 2 }, { data[2].obj["1"], data[2].obj["2"] })
    assert.equal(1, data[2]["<table>"])
    assert.is_true(data[3].after)
    assert.equal("end of run", recs[#recs].reason)
  end)

  it("refuse a report or a JUnit file in a missing folder, a folder, or a read-only place at the start", function()
    dir = h.project({ ["events/ev.lua"] = [[
local M = {}
function M.mark() io.open("ran", "w"):close() end
return M
]], ["descriptions/x.json"] = [[{"test_name":"x","total_hours":0.001,"events":[{"name":"mark"}]}]] })
    -- a place no file can be made in: a read-only folder, or for root
    -- (whom permissions do not stop) sysfs
    local ro = dir .. "/ro"
    os.execute("mkdir " .. h.q(ro) .. " && chmod 555 " .. h.q(ro))
    local probe = io.open(ro .. "/probe", "w")
    if probe then probe:close(); ro = "/sys" end
    -- the reason as the system gives it (EACCES, or EROFS where /sys is
    -- mounted read-only)
    local _, why = io.open(ro .. "/r.jsonl", "w")
    why = why:gsub("^.-: ", "")
    local cases = {
      { "--report " .. dir .. "/missing/r.jsonl", "--report " .. dir .. "/missing/r.jsonl: No such file or directory" },
      { "--junit " .. dir .. "/missing/j.xml", "--junit " .. dir .. "/missing/j.xml: No such file or directory" },
      { "--report " .. dir, "--report " .. dir .. ": Is a directory" },
      { "--junit " .. dir, "--junit " .. dir .. ": Is a directory" },
      { "--report " .. ro .. "/r.jsonl", "--report " .. ro .. "/r.jsonl: " .. why },
      { "--junit " .. ro .. "/j.xml", "--junit " .. ro .. "/j.xml: " .. why },
    }
    for _, c in ipairs(cases) do
      local code, out, err = h.run("run x -q " .. c[1], dir)
      assert.equal(2, code, c[1])
      assert.equal("orchlua: " .. c[2] .. "\n", err)
      assert.equal("", out)
      assert.is_nil(h.read(dir .. "/ran"), c[1] .. ": the run started")
    end
  end)

  it("fail the run when the JUnit file cannot be written at the end, with the report complete", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/x.json"] = [[{"test_name":"x","total_hours":0.001,
      "events":[{"name":"tick","interval_sec":1}]}]] })
    local code, _, err = h.run("run x -q --junit /dev/full --report r.jsonl --time-scale 4", dir)
    assert.equal(1, code)
    assert.equal("orchlua: --junit /dev/full: No space left on device\n", err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal(4, #h.select(recs, "result"))
    assert.equal("run_end", recs[#recs].type)
  end)

  it("refuse a report in a read-only place at the start", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/x.json"] = [[{"test_name":"x","total_hours":0.001,
      "events":[{"name":"tick"}]}]] })
    local code, _, err = h.run("run x --junit /proc/version", dir)
    assert.equal(2, code)
    assert.matches("^orchlua: %-%-junit /proc/version: ", err)
  end)
end)
