-- `after` and event:ready(): validation, the start order (skipped firings
-- say what they waited for) and the stop order (a load stops before the
-- server it loads), with the real binary, on the fast path and off it.
local h = require "helper"
local cjson = require "cjson"

local dir
after_each(function() h.rm(dir); dir = nil end)

local function project(src, events, hours, extra)
  local desc = { test_name = "t", total_hours = hours or 0.001, events = events }
  dir = h.project({
    ["events/ev.lua"] = src,
    ["descriptions/t.json"] = extra or cjson.encode(desc),
    [".orchlua"] = 'return { sources = { "events/*.lua" }, grace_sec = 2 }\n',
  })
end

local function run(args)
  local code, out, err = h.run("run t --report r.jsonl " .. (args or "-q"), dir, "ORCHLUA_DEBUG_STATS=1")
  return code, h.jsonl(dir .. "/r.jsonl"), out, err
end

-- The log file events append to: "what t" per line, in order.
local LOG = [[
local orch = require "orch"
local M = {}
local function log(s)
  local f = assert(io.open("order.log", "a")); f:write(s, " ", string.format("%.3f", orch.now()), "\n"); f:close()
end
]]

local function lines(path)
  local out = {}
  for l in io.lines(path) do out[#out + 1] = l:match("^(%S+)") end
  return out
end

describe("after: validation", function()
  it("refuses unknown ids with a did-you-mean, self-reference and cycles, exit 2, all at once", function()
    project("return { a = function() end, b = function() end, c = function() end }", nil, nil, [[
{ "test_name": "t", "total_hours": 1,
  "events": [
    { "name": "a", "after": ["serverr"] },
    { "name": "b", "id": "server", "after": ["c"] },
    { "name": "c", "after": ["server", "c"] }
  ] }
]])
    local code, out, err = h.run("check t", dir)
    assert.equal(2, code, out .. err)
    local text = out .. err
    assert.matches('events%[0%]%.after%[0%]: unknown event id "serverr" %(did you mean "server"%?%)', text)
    assert.matches('events%[2%]%.after%[1%]: event "c" cannot run after itself', text)
    assert.matches('t.json:5:29: events%[2%]%.after: a cycle in "after": server %-> c %-> server', text)
    assert.matches("t.json:3:30:", text)
  end)

  it("refuses an after that is not an array of ids", function()
    project("return { a = function() end }", nil, nil,
      '{ "test_name": "t", "total_hours": 1, "events": [ { "name": "a", "after": "a" } ] }')
    local code, out, err = h.run("check t", dir)
    assert.equal(2, code)
    assert.matches('events%[0%]%.after: expected an array of event ids, found "a"', out .. err)
  end)
end)

describe("after: start order", function()
  it("skips firings due before the server is ready, saying what they waited for, then fires", function()
    -- the server becomes ready 1.0 s (description) after t0 through event:ready()
    project(LOG .. [[
function M.server(event, kill_switch)
  orch.sleep(1.0)
  log("ready"); event:ready(); event:ready()
  kill_switch:wait()
  log("server_stop")
end
function M.load(event)
  log("load")
end
return M
]], {
      { name = "server" },
      { name = "load", interval_sec = 0.3, after = { "server" } },
    }, 3 / 3600)
    local code, recs, _, err = run()
    assert.equal(0, code, err)
    local skipped = h.select(recs, "skipped", "id", "load")
    assert.equal(3, #skipped)   -- 0.3, 0.6, 0.9
    for _, s in ipairs(skipped) do assert.equal("waiting for server", s.reason) end
    local l = lines(dir .. "/order.log")
    assert.equal("ready", l[1])
    assert.equal("load", l[2])   -- the startup firing, at the moment it was ready
    local startup = h.select(recs, "invocation", "id", "load")[1]
    assert.equal("startup", startup.phase)
    assert.is_true(startup.started >= 1.0)
    assert.matches("handles=0 tasks=0 refs=0", err)
  end)

  it("a dependency is ready once an invocation returned; at the end the load stops first", function()
    -- setup (a one-off) then server (waits for setup); load waits for server
    project(LOG .. [[
function M.setup() log("setup") end
function M.server(event, kill_switch)
  log("server_start"); event:ready()
  kill_switch:wait()
  log("server_stop")
end
function M.load(kill_switch)
  log("load_start")
  kill_switch:wait()
  orch.sleep(0.3)   -- still working after the kill switch: the server must still be up
  log("load_stop")
end
return M
]], {
      { name = "setup" },
      { name = "server", after = { "setup" } },
      { name = "load", after = { "server" } },
    }, 1 / 3600)
    local code, _, _, err = run()
    assert.equal(0, code, err)
    assert.same({ "setup", "server_start", "load_start", "load_stop", "server_stop" }, lines(dir .. "/order.log"))
  end)

  it("works with the fast path: interval firings of ready events go without the engine", function()
    project(LOG .. [[
function M.server(event, kill_switch) event:ready(); kill_switch:wait() end
function M.tick(event) if event.iteration % 50 == 0 then event:ready() end end
return M
]], {
      { name = "server" },
      { name = "tick", interval_sec = 0.01, after = { "server" } },
    }, 2 / 3600)
    local code, recs, _, err = run()
    assert.equal(0, code, err)
    assert.is_true(#h.select(recs, "invocation", "id", "tick") >= 150)
    assert.matches("fast_lines=[1-9]", err)
  end)

  it("a startup firing still waiting at the end is recorded as skipped; the grace ends a server that will not stop", function()
    project(LOG .. [[
function M.server(kill_switch) orch.sleep(100) end
function M.load() log("load") end
return M
]], {
      { name = "server" },
      { name = "load", after = { "server" } },
    }, 0.5 / 3600)
    local code, recs = run()
    assert.equal(1, code)
    local s = h.select(recs, "skipped", "id", "load")
    assert.equal(1, #s)
    assert.equal("startup", s[1].phase)
    assert.equal("waiting for server", s[1].reason)
    assert.is_nil(h.read(dir .. "/order.log"))
    assert.equal("cancelled", h.select(recs, "invocation", "id", "server")[1].status)
  end)

  it("after the grace, a load that will not stop is cancelled and the server gets its switch", function()
    project(LOG .. [[
function M.server(event, kill_switch)
  event:ready(); kill_switch:wait(); log("server_stop")
end
function M.load() orch.sleep(1000) end
return M
]], {
      { name = "server" },
      { name = "load", after = { "server" } },
    }, 0.5 / 3600)
    local code, recs = run("-q --grace 0.5")
    assert.equal(1, code)
    assert.equal("cancelled", h.select(recs, "invocation", "id", "load")[1].status)
    assert.equal("ok", h.select(recs, "invocation", "id", "server")[1].status)
    assert.same({ "server_stop" }, lines(dir .. "/order.log"))
  end)
end)
