-- orch.helpers.supervise with a real server (redis-server, from make deps)
-- on a free loopback port: readiness probes mark the event ready for the
-- events `after` it; a killed master's group is ended before the restart;
-- a listener that escaped the group is found, reported and ended; a
-- restart storm is reported as one growing error; uptimes and back-off
-- are real time under --time-scale.
local h = require "helper"
local cjson = require "cjson"
local uv = require "luv"

local HELPERS = h.root .. "/helpers"

local function free_port()
  local s = uv.new_tcp()
  assert(s:bind("127.0.0.1", 0))
  local port = s:getsockname().port
  s:close()
  uv.run("nowait")
  return port
end

local dir
after_each(function() h.rm(dir); dir = nil end)

local function run(src, events, hours, args)
  local desc = { test_name = "t", total_hours = hours, events = events }
  dir = h.project({
    ["events/ev.lua"] = src,
    ["descriptions/t.json"] = cjson.encode(desc),
    [".orchlua"] = ('return { sources = { "events/*.lua" }, grace_sec = 3, lua_path = { %q } }\n')
      :format(HELPERS .. "/?.lua"),
  })
  local code, _, err = h.run("run t -q --report r.jsonl " .. (args or ""), dir, "ORCHLUA_DEBUG_STATS=1")
  return code, h.jsonl(dir .. "/r.jsonl"), err
end

local function messages(recs, level)
  local out = {}
  for _, r in ipairs(recs) do
    if r.type == "result" and (level == nil or r.level == level) and type(r.data) == "table" and r.data.message then
      out[#out + 1] = r.data.message
    end
  end
  return out
end

local function find(list, pattern)
  for i, s in ipairs(list) do if s:match(pattern) then return i, s end end
  return nil
end

-- redis-server processes of this spec still alive (by their port)
local function alive(port)
  local p = io.popen("pgrep -f '[r]edis-server.*:" .. port .. "' | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

local REDIS = [[
local orch = require "orch"
local supervise = require "orch.helpers.supervise"
local M = {}
local PORT = %d
local function argv(prefix)
  local cmd = "exec redis-server --bind 127.0.0.1 --port " .. PORT .. " --save '' --appendonly no"
  if prefix ~= "" then cmd = prefix .. " redis-server --bind 127.0.0.1 --port " .. PORT ..
    " --save '' --appendonly no & wait" end
  return { "sh", "-c", cmd }
end
orch.fixture("redis", function()
  return supervise.new({ name = "redis", cmd = argv(%q), ready = { tcp = PORT }, backoff = 0.2,
                         level = "info" })
end)
function M.server(redis, event, kill_switch, result_reporter)
  redis:run(kill_switch, result_reporter, event)
end
function M.ping(result_reporter)
  -- down while chaos restarts it: expected, said as info
  local conn, err = orch.net.connect("127.0.0.1", PORT, { timeout = 2 })
  if not conn then return result_reporter:info("ping failed: " .. err) end
  conn:write("PING\r\n")
  local reply = conn:read(2)
  conn:close()
  result_reporter:info("ping " .. tostring(reply):gsub("%%s+$", ""))
end
function M.chaos(redis, result_reporter)
  orch.sleep(0.5)
  local pid = redis.process.pid
  orch.exec({ "kill", "-9", tostring(pid) })
  result_reporter:info("killed the master " .. pid)
end
return M
]]

describe("supervise with redis-server", function()
  it("marks its event ready once the TCP probe passes; the events after it start then", function()
    local port = free_port()
    local code, recs, err = run(REDIS:format(port, ""), {
      { name = "server" },
      { name = "ping", interval_sec = 0.2, after = { "server" } },
    }, 1.5 / 3600)
    assert.equal(0, code, err)
    local msgs = messages(recs)
    local up = find(msgs, "^redis up %(pid %d+%)$")
    local ping = find(msgs, "^ping %+PONG$")
    assert.truthy(up, table.concat(msgs, "\n"))
    assert.truthy(ping)
    assert.is_true(up < ping)
    assert.is_nil(find(messages(recs, "error"), "."))
    assert.equal(0, alive(port))
    assert.matches("handles=0 tasks=0 refs=0", err)
  end)

  it("ends a killed master's group (its workers) before the restart", function()
    local port = free_port()
    local code, recs, err = run(REDIS:format(port, "nohup"), {
      { name = "server" },
      { name = "chaos", after = { "server" } },
      { name = "ping", interval_sec = 0.25, after = { "server" } },
    }, 3 / 3600)
    local msgs = messages(recs)
    assert.equal(0, code, err .. table.concat(msgs, "\n"))
    -- the worker (redis) was in the master's group: ended, the port free
    assert.truthy(find(msgs, "^redis was killed by signal 9$"), table.concat(msgs, "\n"))
    local ups = 0
    for _, m in ipairs(msgs) do if m:match("^redis up") then ups = ups + 1 end end
    assert.equal(2, ups)
    assert.is_nil(find(msgs, "still held"))
    assert.is_nil(find(messages(recs, "error"), "."))
    assert.equal(0, alive(port))
  end)

  it("finds a listener that left the group, reports it with its pid and ends it", function()
    local port = free_port()
    local code, recs, err = run(REDIS:format(port, "setsid"), {
      { name = "server" },
      { name = "chaos", after = { "server" } },
    }, 3 / 3600)
    -- the orphan is an error result: the run fails, saying why
    assert.equal(1, code, err)
    local _, held = find(messages(recs, "error"),
      "^redis: port " .. port .. " is still held by pid %d+ %(redis%-server%) %(orphans of the dead process: ended%)$")
    assert.truthy(held, table.concat(messages(recs), "\n"))
    local ups = 0
    for _, m in ipairs(messages(recs)) do if m:match("^redis up") then ups = ups + 1 end end
    assert.equal(2, ups)
    assert.equal(0, alive(port))
  end)
end)

describe("supervise's readiness probes", function()
  it("a log line: ready once the server says so on stdout; an HTTP URL that never answers: an error and a restart", function()
    local port = free_port()
    local code, recs, err = run(([[
local orch = require "orch"
local supervise = require "orch.helpers.supervise"
local PORT = %d
return {
  server = function(event, kill_switch, result_reporter)
    supervise.run({ name = "redis", cmd = { "redis-server", "--bind", "127.0.0.1", "--port", tostring(PORT),
                    "--save", "", "--appendonly", "no" }, ready = { log = "Ready to accept connections" } },
                  kill_switch, result_reporter, event)
  end,
  ping = function(result_reporter)
    local conn = assert(orch.net.connect("127.0.0.1", PORT, { timeout = 2 }))
    conn:write("PING\r\n")
    result_reporter:info("ping " .. tostring(conn:read(2)):gsub("%%s+$", ""))
    conn:close()
  end,
  deaf = function(event, kill_switch, result_reporter)
    -- listens nowhere: the HTTP probe never passes
    supervise.run({ name = "deaf", cmd = { "sleep", "100" }, ready = { http = "http://127.0.0.1:1/", timeout = 0.3 },
                    max_restarts = 1, backoff = 0.05 }, kill_switch, result_reporter, event)
  end,
}
]]):format(port), {
      { name = "server" },
      { name = "ping", after = { "server" } },
      { name = "deaf" },
    }, 2 / 3600)
    assert.equal(1, code, err)
    local msgs = messages(recs)
    local up, ping = find(msgs, "^redis up "), find(msgs, "^ping %+PONG$")
    assert.truthy(up and ping, table.concat(msgs, "\n"))
    assert.is_true(up < ping)
    local errors = messages(recs, "error")
    assert.truthy(find(errors, "^deaf: not ready after 0%.3s %(real%): .+: restarting it$"), table.concat(errors, "\n"))
    assert.is_nil(find(msgs, "^deaf up"))
    assert.equal(0, alive(port))
  end)
end)

describe("supervise under --time-scale", function()
  it("measures uptime and waits its back-off in real time; a storm is one growing error", function()
    local code, recs, err = run([[
local supervise = require "orch.helpers.supervise"
return { keep = function(kill_switch, result_reporter)
  local s = supervise.run({ name = "quick", cmd = { "sleep", "0.1" }, backoff = 0.1, max_backoff = 0.1,
                            reset_after = 1 }, kill_switch, result_reporter)
  local max = 0
  for _, d in ipairs(s.history) do max = math.max(max, d.uptime) end
  result_reporter:info("deaths", { deaths = #s.history, max_uptime = max })
end }
]], { { name = "keep" } }, 200 / 3600, "--time-scale 100")
    assert.equal(1, code, err)
    local info
    for _, r in ipairs(recs) do
      if r.type == "result" and r.data.message == "deaths" then info = r.data end
    end
    -- 2 s real: about 10 lives of 0.1 s real and 0.1 s of back-off each
    assert.is_true(info.deaths >= 4 and info.deaths <= 12, "deaths " .. info.deaths)
    assert.is_true(info.max_uptime < 1, "uptime in real seconds: " .. info.max_uptime)
    local errors = messages(recs, "error")
    -- reported at 1, 2, 4, 8 deaths: never one error per death
    assert.is_true(#errors < info.deaths, #errors .. " errors for " .. info.deaths .. " deaths")
    assert.equal("quick exited with code 0", errors[1])
    assert.matches("^quick: restart storm: 2 deaths in a row", errors[2])
    if errors[3] then assert.matches("^quick: restart storm: 4 deaths in a row", errors[3]) end
  end)
end)
