-- End-to-end specs of `orchlua run`: the real binary on real descriptions,
-- checked through the JSONL it writes.
local h = require "helper"

local EVENTS = [[
local orch = require "orch"
local M = {}
local log = {}

orch.fixture("shared", function(result_reporter)
  local obj = { n = 0 }
  result_reporter:info("shared setup")
  return obj, function() result_reporter:info("shared finalised", { n = obj.n }) end
end)
orch.fixture("first", function(result_reporter)
  return 1, function() result_reporter:info("finalise first") end
end)
orch.fixture("second", function(first, result_reporter)
  orch.sleep(0.01)  -- fixtures may yield
  return first + 1, function() result_reporter:info("finalise second") end
end)
orch.fixture("per_inv", { scope = "invocation" }, function(event, result_reporter)
  local me = event.id .. "#" .. event.iteration
  return me, function() result_reporter:info("per_inv finalised", { who = me }) end
end)

function M.tick(shared, result_reporter, event)
  shared.n = shared.n + 1
  result_reporter:add_result({ k = event.iteration, phase = event.phase })
end
function M.uses_two(second, per_inv, result_reporter)
  result_reporter:add_result({ second = second, per_inv = per_inv })
end
function M.sleeper(seconds) orch.sleep(seconds) end
function M.boom() error("kaboom") end
function M.spin() while true do end end
function M.spin_pcall() while true do pcall(function() while true do end end) end end
function M.typed(count, ratio, name, flag, list, obj, result_reporter)
  result_reporter:add_result({ types = { math.type(count), math.type(ratio), type(name), type(flag),
    type(list), type(obj) } })
end
function M.burst(result_reporter, n)
  for i = 1, n do result_reporter:add_result({ i = i }) end
end
function M.last_word(result_reporter) result_reporter:add_result({ last = true }) end
function M.waiter(kill_switch, result_reporter)
  local set = kill_switch:wait()
  result_reporter:add_result({ saw_kill_switch = set })
end
function M.ender(kill_switch) kill_switch:set() end
function M.errresult(result_reporter) result_reporter:add_result({ error = "disk full" }) end
function M.builtins(event, params, description, log, report_queue, result_reporter)
  log.info("hello from", event.id)
  local before = report_queue:size()
  report_queue:put({ event = event.id, level = "info", t = orch.now(), ts = "x", data = { raw = true } })
  result_reporter:add_result({ id = event.id, phase = event.phase, k = event.iteration,
    scheduled = event.scheduled, p = params.p, test = description.test_name, qsize = report_queue:size() - before >= 0 })
end
return M
]]

-- the line of `function M.<name>` in EVENTS
local function line_of(name)
  local n = 0
  for line in (EVENTS .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find("function M." .. name .. "(", 1, true) then return n end
  end
end

local function project(descs, extra)
  local files = { ["events/ev.lua"] = EVENTS }
  for name, text in pairs(descs) do files["descriptions/" .. name .. ".json"] = text end
  for k, v in pairs(extra or {}) do files[k] = v end
  return h.project(files)
end

local function run(dir, args)
  local code, out, err = h.run("run " .. args .. " --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
  local recs = h.jsonl(dir .. "/r.jsonl")
  return code, recs, out, err
end

local function invocations(recs, id)
  local list = {}
  for _, r in ipairs(recs) do
    if r.type == "invocation" and (id == nil or r.id == id) then list[#list + 1] = r end
  end
  return list
end

local function results(recs, pred)
  local list = {}
  for _, r in ipairs(recs) do
    if r.type == "result" and (pred == nil or pred(r)) then list[#list + 1] = r end
  end
  return list
end

local function no_leaks(err)
  assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
end

describe("orchlua run", function()
  local dir
  after_each(function() h.rm(dir) end)

  describe("the schedule", function()
    it("fires startup, interval and teardown events at their times", function()
      dir = project({ s = [[{"test_name":"s","total_hours":0.0025,"events":[
        {"name":"tick","interval_sec":3},
        {"name":"tick","id":"late","interval_sec":3,"at_startup":false},
        {"name":"tick","id":"td","at_startup":false,"at_teardown":true}]}]] })
      local code, recs, _, err = run(dir, "s --time-scale 10 -q")
      assert.equal(0, code)
      no_leaks(err)
      local function sched(id)
        local t = {}
        for _, r in ipairs(invocations(recs, id)) do t[#t + 1] = ("%s@%g"):format(r.phase, r.scheduled) end
        return table.concat(t, " ")
      end
      assert.equal("startup@0 interval@3 interval@6", sched("tick"))
      assert.equal("interval@3 interval@6", sched("late"))
      assert.equal("teardown@9", sched("td"))
      assert.equal("run_start", recs[1].type)
      assert.equal("run_end", recs[#recs].type)
      assert.equal(6, recs[#recs].invocations)
    end)

    it("runs the startup invocation before the first interval firing, however long the start took", function()
      -- firing 20,000 more startup events takes longer than a's 1 ms
      -- interval: a's first firing is due before the loop has run a's
      -- startup invocation (libuv runs timers first); under forbid it must
      -- wait, not skip
      local evs = { '{"name":"tick","id":"a","interval_sec":0.001}' }
      for i = 1, 20000 do
        evs[#evs + 1] = ('{"name":"sleeper","id":"e%d","interval_sec":100,"params":{"seconds":0}}'):format(i)
      end
      dir = project({ r = ('{"test_name":"r","total_hours":0.00001,"events":[%s]}'):format(table.concat(evs, ",")) })
      local code, recs = run(dir, "r -q")
      assert.equal(0, code)
      local inv = invocations(recs, "a")
      assert.equal("startup", inv[1].phase)
      assert.is_not_nil(inv[2], "the first interval firing did not run")
      assert.equal(1, inv[2].iteration)
      for _, r in ipairs(recs) do
        if r.type == "skipped" then assert.is_true(r.iteration > 1, "iteration " .. r.iteration .. " skipped") end
      end
    end)

    it("keeps a fixed rate anchored at t0 over a long time-scaled run", function()
      -- 2 hours at 1 s, rehearsed 1200x faster: 7200 firings in 6 s
      dir = project({ d = [[{"test_name":"d","total_hours":2,"events":[{"name":"tick","interval_sec":1}]}]] })
      local code, recs = run(dir, "d --time-scale 1200 -q")
      assert.equal(0, code)
      local inv = invocations(recs, "tick")
      -- every firing once: run, or skipped under forbid when a loaded
      -- machine puts the loop behind and a catch-up firing finds the
      -- previous one still running (never lost, never twice)
      local seen = {}
      for _, r in ipairs(inv) do seen[#seen + 1] = r.iteration end
      for _, r in ipairs(h.select(recs, "skipped")) do seen[#seen + 1] = r.iteration end
      table.sort(seen)
      assert.equal(7200, #seen)
      for i = 1, 7200 do assert.equal(i - 1, seen[i]) end
      local worst = 0
      for i, r in ipairs(inv) do
        assert.equal(r.iteration, r.scheduled)
        if i > 1 then assert.is_true(r.iteration > inv[i - 1].iteration) end
        -- started is description time: the firing may be late, never early,
        -- and the lateness does not accumulate
        assert.is_true(r.started >= r.scheduled)
        worst = math.max(worst, r.started - r.scheduled)
      end
      -- at 1200x, 1 description second is 0.83 ms real: a schedule that
      -- drifted by even 1 ms of overhead per firing would end 8640 s
      -- behind; 600 s (0.5 s real) leaves room for a loaded CI machine
      assert.is_true(worst < 600, "worst lateness " .. worst)
    end)

    it("honours --hours and floating-point intervals", function()
      dir = project({ f = [[{"test_name":"f","total_hours":5,"events":[{"name":"tick","interval_sec":0.3}]}]] })
      local code, recs = run(dir, "f --hours 0.001 -q --time-scale 2")
      assert.equal(0, code)
      -- 3.6 s at 0.3 s: k*0.3 < 3.6 for k = 0..11
      assert.equal(12, #invocations(recs, "tick"))
    end)
  end)

  describe("invocations", function()
    it("isolates errors: the run goes on and exits 1 with the traceback recorded", function()
      dir = project({ e = [[{"test_name":"e","total_hours":0.001,"events":[
        {"name":"boom","interval_sec":1},{"name":"tick","interval_sec":1}]}]] })
      local code, recs, _, err = run(dir, "e --time-scale 4 -q")
      assert.equal(1, code)
      no_leaks(err)
      local booms = invocations(recs, "boom")
      assert.equal(4, #booms)
      for _, r in ipairs(booms) do
        assert.equal("error", r.status)
        assert.equal(("events/ev.lua:%d: kaboom"):format(line_of("boom")), r.error:match("^[^\n]*"))
        assert.matches("stack traceback", r.error)
      end
      assert.equal(4, #invocations(recs, "tick"))
    end)

    it("stops a CPU-bound event at its timeout, even through pcall", function()
      dir = project({ c = [[{"test_name":"c","total_hours":0.001,"events":[
        {"name":"spin","timeout_sec":0.3},{"name":"spin_pcall","id":"sp","timeout_sec":0.3},
        {"name":"tick","interval_sec":1}]}]] })
      local code, recs, _, err = run(dir, "c -q")
      assert.equal(1, code)
      no_leaks(err)
      for _, id in ipairs({ "spin", "sp" }) do
        local r = invocations(recs, id)[1]
        assert.equal("timeout", r.status)
        assert.matches("^timed out after 0.3s %(timeout_sec%)", r.error)
      end
      assert.equal(4, #invocations(recs, "tick"))
    end)

    it("times out a waiting event", function()
      dir = project({ w = [[{"test_name":"w","total_hours":0.001,"events":[
        {"name":"sleeper","timeout_sec":0.5,"params":{"seconds":100}}]}]] })
      local code, recs = run(dir, "w -q")
      assert.equal(1, code)
      local r = invocations(recs, "sleeper")[1]
      assert.equal("timeout", r.status)
      assert.is_true(r.duration >= 0.5 and r.duration < 3.6, "stopped by its timeout, not by the run's end")
    end)

    it("skips a firing while the previous one runs (forbid)", function()
      dir = project({ f = [[{"test_name":"f","total_hours":0.001,"events":[
        {"name":"sleeper","interval_sec":1,"params":{"seconds":1.5}}]}]] })
      local code, recs = run(dir, "f --time-scale 2 -q")
      assert.equal(0, code)
      -- firings at 0,1,2,3: 1 and 3 find the previous still running
      local inv = invocations(recs, "sleeper")
      local skipped = h.select(recs, "skipped")
      assert.equal(2, #inv)
      assert.equal(2, #skipped)
      assert.equal(1, skipped[1].iteration)
      assert.equal("previous invocation still running", skipped[1].reason)
    end)

    it("runs both (allow) and cancels the old one (replace)", function()
      dir = project({ a = [[{"test_name":"a","total_hours":0.001,"events":[
        {"name":"sleeper","id":"allow","interval_sec":1,"concurrency":"allow","params":{"seconds":1.5}},
        {"name":"sleeper","id":"replace","interval_sec":1,"concurrency":"replace","params":{"seconds":1.5}}]}]] })
      local code, recs = run(dir, "a --time-scale 2 -q")
      local allow = invocations(recs, "allow")
      assert.equal(4, #allow)
      for _, r in ipairs(allow) do assert.equal("ok", r.status) end
      local rep = invocations(recs, "replace")
      assert.equal(4, #rep)
      local st = {}
      for _, r in ipairs(rep) do st[#st + 1] = r.status end
      table.sort(st)
      -- three replaced by the next firing; the last one runs past the end
      -- and returns within the grace period
      assert.same({ "cancelled", "cancelled", "cancelled", "ok" }, st)
      assert.equal(1, code)
    end)
  end)

  describe("fixtures", function()
    it("shares run fixtures, makes invocation fixtures fresh, finalises in reverse order", function()
      dir = project({ x = [[{"test_name":"x","total_hours":0.001,"unref_setup_fixtures":["shared"],"events":[
        {"name":"uses_two","interval_sec":1},{"name":"tick","interval_sec":1}]}]] })
      local code, recs = run(dir, "x --time-scale 4 -q")
      assert.equal(0, code)
      local msgs = {}
      for _, r in ipairs(results(recs)) do
        if r.data.message then msgs[#msgs + 1] = r.data.message end
      end
      assert.equal("shared setup", msgs[1])
      -- created: shared, first, second -> finalised: second, first, shared
      local tail = { msgs[#msgs - 2], msgs[#msgs - 1], msgs[#msgs] }
      assert.same({ "finalise second", "finalise first", "shared finalised" }, tail)
      local fin = results(recs, function(r) return r.data.message == "per_inv finalised" end)
      assert.equal(4, #fin)
      assert.equal("uses_two#0", fin[1].data.who)
      local two = results(recs, function(r) return r.data.second ~= nil end)
      assert.equal(2, two[1].data.second)
      assert.equal("uses_two#3", two[4].data.per_inv)
      local last = results(recs, function(r) return r.data.message == "shared finalised" end)[1]
      assert.equal(4, last.data.n)
    end)

    it("passes description params with their JSON types", function()
      dir = project({ p = [[{"test_name":"p","total_hours":0.001,"events":[{"name":"typed","params":{
        "count":3,"ratio":0.5,"name":"x","flag":false,"list":[1,2],"obj":{"a":1}}}]}]] })
      local code, recs = run(dir, "p -q")
      assert.equal(0, code)
      local r = results(recs)[1]
      assert.same({ "integer", "float", "string", "boolean", "table", "table" }, r.data.types)
    end)
  end)

  describe("the reporter", function()
    it("delivers every result in order to a custom on_result, a burst and a teardown one", function()
      dir = project({ b = [[{"test_name":"b","total_hours":0.001,"events":[
        {"name":"burst","params":{"n":20000}},
        {"name":"last_word","at_startup":false,"at_teardown":true}]}]] }, {
        ["events/reporter.lua"] = [[
local orch = require "orch"
local MyReporter = orch.ResultReporter:extend()
function MyReporter:on_result(result)
  self.n = (self.n or 0) + 1
  local i = type(result.data) == "table" and result.data.i
  if i and i ~= self.n then error("out of order: " .. i .. " at " .. self.n) end
  if result.data.last then
    local f = assert(io.open("seen.txt", "w")); f:write(self.n, " ", result.event); f:close()
  end
end
orch.fixture("result_reporter", function(report_queue) return MyReporter.new(report_queue) end)
return {}
]],
        [".orchlua"] = 'return { sources = { "events/*.lua" }, grace_sec = 5 }\n',
      })
      local code, recs, _, err = run(dir, "b -q")
      assert.equal(0, code, err)
      assert.equal("20001 last_word", h.read(dir .. "/seen.txt"))
      assert.equal(20001, #results(recs))
      assert.equal(20001, recs[#recs].results)
    end)

    it("fails the run on an error result and shows it", function()
      dir = project({ r = [[{"test_name":"r","total_hours":0.001,"events":[{"name":"errresult"}]}]] })
      local code, recs, out = run(dir, "r")
      assert.equal(1, code)
      assert.equal("error", results(recs)[1].level)
      assert.matches('errresult %[error%] disk full\n', out)
    end)
  end)

  describe("the kill switch", function()
    it("is set after the teardown events, and set() ends the run early", function()
      dir = project({ k = [[{"test_name":"k","total_hours":1,"events":[
        {"name":"waiter"},{"name":"ender","at_startup":false,"interval_sec":2},
        {"name":"last_word","at_startup":false,"at_teardown":true}]}]] })
      local code, recs = run(dir, "k -q --time-scale 1")
      assert.equal(0, code)
      local r = results(recs)
      assert.is_true(r[1].data.last or r[2].data.last)
      assert.equal("kill switch set by ender", recs[#recs].reason)
      assert.equal(1, #invocations(recs, "ender"))
      local saw = results(recs, function(x) return x.data.saw_kill_switch end)
      assert.equal(1, #saw)
    end)
  end)

  describe("outputs", function()
    it("writes JUnit XML that an XML parser reads", function()
      dir = project({ j = [[{"test_name":"j","total_hours":0.001,"events":[
        {"name":"boom"},{"name":"tick","interval_sec":1}]}]] })
      local code = h.run("run j -q --junit j.xml --time-scale 4", dir)
      assert.equal(1, code)
      local lxp = require "lxp"
      local cases, failures = {}, 0
      local p = lxp.new({ StartElement = function(_, name, attrs)
        if name == "testcase" then cases[#cases + 1] = attrs.name end
        if name == "failure" then failures = failures + 1 end
      end })
      assert.truthy(p:parse(h.read(dir .. "/j.xml")))
      assert.truthy(p:parse())
      p:close()
      assert.same({ "boom", "tick" }, cases)
      assert.equal(1, failures)
    end)

    it("refuses an unwritable --report before running", function()
      dir = project({ j = [[{"test_name":"j","total_hours":0.001,"events":[{"name":"tick"}]}]] })
      local code, _, err = h.run("run j --report /nonexistent/dir/r.jsonl", dir)
      assert.equal(2, code)
      assert.equal("orchlua: --report /nonexistent/dir/r.jsonl: No such file or directory\n", err)
    end)

    it("refuses two outputs naming one file, before anything is written", function()
      dir = project({ j = [[{"test_name":"j","total_hours":0.001,"events":[{"name":"tick"}]}]] })
      h.write(dir .. "/r.jsonl", "kept\n")
      for _, args in ipairs({ "--report r.jsonl --junit ./r.jsonl", "--report x/../r.jsonl --html r.jsonl",
                              "--junit " .. dir .. "//r.jsonl --html r.jsonl" }) do
        local code, _, err = h.run("run j -q " .. args, dir)
        assert.equal(2, code, args)
        assert.matches("^orchlua: %-%-%a+ and %-%-%a+ name the same file %([^)]*r%.jsonl%): each needs its own\n", err)
        assert.equal("kept\n", h.read(dir .. "/r.jsonl"), args)
      end
      -- the report command's --html would replace the report it reads
      local code, _, err = h.run("report r.jsonl --html ./r.jsonl", dir)
      assert.equal(2, code)
      assert.matches("^orchlua: the report and %-%-html name the same file", err)
      assert.equal("kept\n", h.read(dir .. "/r.jsonl"))
      -- different files are fine
      code = h.run("run j -q --report r2.jsonl --junit j.xml --html h.html", dir)
      assert.equal(0, code)
    end)
  end)

  describe("signals", function()
    local function start(dir_, args)
      local pidf = dir_ .. "/pid"
      os.execute(("cd %s && (ORCHLUA_DEBUG_STATS=1 %s run %s --report r.jsonl >out.txt 2>err.txt & echo $! >%s)")
        :format(h.q(dir_), h.q(h.bin), args, h.q(pidf)))
      return h.read(pidf):match("%d+")
    end
    local function wait_exit(pid)
      for _ = 1, 200 do
        if not io.open("/proc/" .. pid .. "/stat") then return true end
        local st = h.read("/proc/" .. pid .. "/stat") or ""
        if st:match("^%d+ %b() Z") then return true end
        os.execute("sleep 0.05")
      end
      return false
    end
    -- waits (up to 20 s) until the report holds n complete lines with
    -- "type":"invocation": the run is under way, however loaded the machine
    local function wait_invocations(dir_, n)
      for _ = 1, 400 do
        local text = h.read(dir_ .. "/r.jsonl") or ""
        local got = 0
        for line in text:gmatch("[^\n]*\n") do
          if line:find('"type":"invocation"', 1, true) then got = got + 1 end
        end
        if got >= n then return true end
        os.execute("sleep 0.05")
      end
      return false
    end
    local desc = [[{"test_name":"g","total_hours":1,"events":[
      {"name":"waiter"},{"name":"tick","interval_sec":0.1},
      {"name":"last_word","at_startup":false,"at_teardown":true}]}]]

    it("stops in order on SIGTERM and exits 143 with every record", function()
      dir = project({ g = desc })
      local pid = start(dir, "g -q")
      assert.is_true(wait_invocations(dir, 3), "no invocation record")
      os.execute("kill -TERM " .. pid)
      assert.is_true(wait_exit(pid))
      local recs = h.jsonl(dir .. "/r.jsonl")
      local last = recs[#recs]
      assert.equal("run_end", last.type)
      assert.equal(143, last.status)
      assert.equal(1, #results(recs, function(r) return r.data.last end))
      assert.equal(1, #results(recs, function(r) return r.data.saw_kill_switch end))
      assert.matches("handles=0 tasks=0 refs=0", h.read(dir .. "/err.txt"))
    end)

    it("skips teardown and grace on a second SIGINT, still draining", function()
      dir = project({ g = [[{"test_name":"g","total_hours":1,"events":[
        {"name":"tick","interval_sec":0.1},{"name":"spin","at_startup":false,"at_teardown":true}]}]] })
      local pid = start(dir, "g -q")
      assert.is_true(wait_invocations(dir, 3), "no invocation record")
      -- the second SIGINT must find the teardown's spin running: it is, once
      -- orchlua has burnt 0.3 s of CPU more (an idle run burns next to none)
      local function cpu_ticks()
        local st = h.read("/proc/" .. pid .. "/stat") or ""
        local rest = st:match("^%d+ %b() (.*)$") or ""
        local f = {}
        for x in rest:gmatch("%S+") do f[#f + 1] = x end
        return (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)   -- utime + stime, 1/100 s
      end
      local before = cpu_ticks()
      os.execute("kill -INT " .. pid)
      for _ = 1, 400 do
        if cpu_ticks() - before >= 30 then break end
        os.execute("sleep 0.05")
      end
      os.execute("kill -INT " .. pid)
      assert.is_true(wait_exit(pid))
      local recs = h.jsonl(dir .. "/r.jsonl")
      assert.equal("run_end", recs[#recs].type)
      assert.equal(130, recs[#recs].status)
      assert.equal("cancelled", invocations(recs, "spin")[1].status)
    end)

    it("keeps every complete line written before a SIGKILL", function()
      dir = project({ g = desc })
      local pid = start(dir, "g -q")
      assert.is_true(wait_invocations(dir, 5), "no invocation record")
      os.execute("kill -KILL " .. pid)
      assert.is_true(wait_exit(pid))
      local text = h.read(dir .. "/r.jsonl")
      assert.equal("\n", text:sub(-1))
      local n = 0
      for line in text:gmatch("[^\n]+") do
        n = n + 1
        assert.truthy(require("cjson").decode(line))
      end
      assert.is_true(n >= 5)
    end)
  end)

  describe("built-ins", function()
    it("provides event, params, description, log and report_queue", function()
      dir = project({ b = [[{"test_name":"b","total_hours":0.001,"events":[
        {"name":"builtins","id":"bi","interval_sec":2,"params":{"p":"v"}}]}]] })
      local code, recs, out = run(dir, "b --time-scale 2")
      assert.equal(0, code)
      local r = results(recs, function(x) return x.data.id end)
      assert.equal(2, #r)
      assert.same({ id = "bi", phase = "interval", k = 1, scheduled = 2, p = "v", test = "b", qsize = true }, r[2].data)
      assert.equal(2, #results(recs, function(x) return x.data.raw end))
      assert.matches("bi info: hello from bi", out)
    end)
  end)

  describe("C events", function()
    it("gets a ctx table resolving params and fixtures lazily", function()
      dir = project({ c = [[{"test_name":"c","total_hours":0.001,"events":[
        {"name":"c_ping","interval_sec":2,"params":{"count":7}}]}]] },
        { [".orchlua"] = ('return { sources = { "events/*.lua", %q }, grace_sec = 5 }\n')
            :format(h.root .. "/events/cevents.so") })
      local code, recs, _, err = run(dir, "c --time-scale 2 -q")
      assert.equal(0, code, err)
      local r = results(recs)
      assert.equal(2, #r)
      assert.same({ pong = 7, from = "C" }, r[1].data)
      assert.equal("c_ping", r[1].event)
    end)
  end)

  describe("--fail-fast", function()
    it("starts the orderly stop at the first failure", function()
      dir = project({ f = [[{"test_name":"f","total_hours":1,"events":[
        {"name":"tick","interval_sec":0.1},{"name":"boom","at_startup":false,"interval_sec":0.5},
        {"name":"last_word","at_startup":false,"at_teardown":true}]}]] })
      local code, recs = run(dir, "f -q --fail-fast")
      assert.equal(1, code)
      assert.equal("fail-fast: boom error", recs[#recs].reason)
      assert.equal(1, #invocations(recs, "boom"))
      assert.equal(1, #invocations(recs, "last_word"))
      assert.is_true(recs[#recs].t < 60, "stopped long before the hour: " .. recs[#recs].t)
    end)
  end)

  describe("seed compatibility", function()
    it("reproduces the seed's test_config: 0.0025 h, events every 3 s, a shared fixture, typed params", function()
      dir = project({ test_config = [[{
        "test_name": "test_config", "total_hours": 0.0025,
        "events": [
          {"name": "tick", "interval_sec": 3},
          {"name": "tick", "id": "tick_late", "interval_sec": 3, "at_startup": false},
          {"name": "typed", "interval_sec": 3,
           "params": {"count": 1, "ratio": 1.5, "name": "n", "flag": true, "list": [1], "obj": {"k": "v"}}}
        ]}]] })
      local code, recs = run(dir, "test_config --time-scale 3 -q")
      assert.equal(0, code)
      assert.equal(3, #invocations(recs, "tick"))
      assert.equal(2, #invocations(recs, "tick_late"))
      assert.equal(3, #invocations(recs, "typed"))
      -- one shared fixture for both tick entries: set up once, finalised once
      assert.equal(1, #results(recs, function(r) return r.data.message == "shared setup" end))
      local fin = results(recs, function(r) return r.data.message == "shared finalised" end)
      assert.equal(5, fin[1].data.n)
      assert.same({ "integer", "float", "string", "boolean", "table", "table" },
        results(recs, function(r) return r.data.types end)[1].data.types)
    end)

    it("runs with --run-orch and --test-orch like run", function()
      dir = project({ s = [[{"test_name":"s","total_hours":0.0025,"events":[
        {"name":"tick","interval_sec":3},{"name":"typed","params":{"count":1,"ratio":1.5,"name":"n","flag":true,"list":[],"obj":{}}}]}]] })
      for _, flag in ipairs({ "--run-orch s", "--test-orch=s" }) do
        local code = h.run(flag .. " --time-scale 10 -q --report r.jsonl", dir)
        assert.equal(0, code)
        assert.equal(3, #invocations(h.jsonl(dir .. "/r.jsonl"), "tick"))
      end
    end)
  end)
end)
