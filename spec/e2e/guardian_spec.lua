-- The guardian (src/guardian.c): nothing outlives orchlua, even its
-- SIGKILL.  A stopped grandchild is continued and ended, and the undo
-- actions registered with orch.on_abandon run; a run that ends in order
-- runs none of them.
local h = require "helper"

local EVENTS = [[
local orch = require "orch"
local M = {}
-- a grandchild that says when SIGTERM reached it (a stopped one could not)
local INNER = 'trap "echo continued > %s; exit 0" TERM; echo $$ > %s; while :; do sleep 0.05; done'
function M.stopper(result_reporter, dir)
  local p = orch.spawn{ cmd = { "sh", "-c", "sh -c '" .. INNER:format(dir .. "/cont", dir .. "/inner") .. "' & wait" } }
  local pid
  for _ = 1, 200 do
    local f = io.open(dir .. "/inner")
    pid = f and f:read("n")
    if f then f:close() end
    if pid then break end
    orch.sleep(0.02)
  end
  orch.exec({ "kill", "-STOP", tostring(pid) })
  orch.on_abandon({ "rm", "-f", dir .. "/sentinel" })
  result_reporter:info("ready", { pid = pid })
  p:wait()
end
function M.registers(dir)
  orch.on_abandon({ "rm", "-f", dir .. "/sentinel" })
end
function M.bad_argv() orch.on_abandon({ "rm", 3 }) end
return M
]]

-- a process's state letter; nil once it is gone (a zombie is gone too:
-- a container's PID 1 may never reap it)
local function state(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("a"); f:close()
  s = s:match("^%d+ %b() (%a)")
  if s == "Z" then return nil end
  return s
end

describe("the guardian", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("continues and ends a stopped grandchild and runs the undo actions when orchlua is killed", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS })
    h.write(dir .. "/descriptions/g.json", ('{"test_name":"g","total_hours":1,"events":[{"name":"stopper","params":{"dir":%q}}]}'):format(dir))
    h.write(dir .. "/sentinel", "x")
    os.execute(("cd %s && (%s run g -q --report r.jsonl >out 2>err & echo $! > orchlua.pid)"):format(h.q(dir), h.q(h.bin)))
    local pid, ready
    for _ = 1, 500 do
      local txt = h.read(dir .. "/r.jsonl") or ""
      ready = txt:match('"ready".-"pid":(%d+)') or txt:match('"pid":(%d+)[^\n]*"ready"')
      if ready then break end
      os.execute("sleep 0.02")
    end
    assert.truthy(ready, "the event never said it was ready: " .. tostring(h.read(dir .. "/err")))
    for _ = 1, 100 do
      if state(ready) == "T" then break end
      os.execute("sleep 0.01")
    end
    assert.equal("T", state(ready))
    pid = h.read(dir .. "/orchlua.pid"):match("%d+")
    os.execute("kill -9 " .. pid)
    -- within a second: continued (its TERM trap ran), ended, the file gone
    local gone = false
    for _ = 1, 100 do
      if state(ready) == nil and h.read(dir .. "/sentinel") == nil and h.read(dir .. "/cont") then gone = true break end
      os.execute("sleep 0.01")
    end
    assert.is_true(gone, ("state %s, sentinel %s, cont %s"):format(tostring(state(ready)),
      tostring(h.read(dir .. "/sentinel")), tostring(h.read(dir .. "/cont"))))
    assert.equal("continued\n", h.read(dir .. "/cont"))
  end)

  it("runs no undo action when the run ends in order", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS })
    h.write(dir .. "/descriptions/n.json", ('{"test_name":"n","total_hours":0.0001,"events":[{"name":"registers","params":{"dir":%q}}]}'):format(dir))
    h.write(dir .. "/sentinel", "x")
    local code, _, err = h.run("run n -q", dir)
    assert.equal(0, code, err)
    os.execute("sleep 0.2")
    assert.equal("x", h.read(dir .. "/sentinel"))
  end)

  it("refuses an argv that is not a list of strings", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/b.json"] = '{"test_name":"b","total_hours":0.0001,"events":[{"name":"bad_argv"}]}' })
    local code = h.run("run b -q --report r.jsonl", dir)
    assert.equal(1, code)
    local inv = h.select(h.jsonl(dir .. "/r.jsonl"), "invocation")[1]
    assert.matches("^events/ev.lua:%d+: orch.on_abandon: argv%[2%] is a number, expected a string", inv.error)
  end)
end)
