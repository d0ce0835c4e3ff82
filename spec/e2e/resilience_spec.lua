-- Resilience: what a hostile or careless user found (issue 21), each
-- reproduced with the real binary: bounds on the schedule and the command
-- line, closed standard descriptors, outputs that collide, and every step
-- of a run bounded by the grace period.
local h = require "helper"

local EVENTS = [[
local orch = require "orch"
local M = {}
function M.tick() end
function M.nap() orch.sleep(0.2) end
function M.spin() while true do end end
function M.close_loop()
  local guard <close> = setmetatable({}, { __close = function() while true do end end })
  error("boom")
end
function M.tostring_loop()
  error(setmetatable({}, { __tostring = function() while true do end end }))
end
function M.gc_loop()
  setmetatable({}, { __gc = function() while true do end end })
  collectgarbage()
end
function M.spawn_lines(result_reporter)
  local p = orch.spawn{ cmd = { "sh", "-c", "echo one; echo two" },
    on_stdout = function(line) result_reporter:info("line", { line = line }) end }
  p:wait()
end
function M.huge(result_reporter, event)
  result_reporter:add_result({ blob = string.rep("x", 17 * 1024 * 1024) })
end
return M
]]

local function project(descs, extra)
  local files = { ["events/ev.lua"] = EVENTS }
  for name, text in pairs(descs) do files["descriptions/" .. name .. ".json"] = text end
  for k, v in pairs(extra or {}) do files[k] = v end
  return h.project(files)
end

local function desc(name, hours, events)
  return ('{"test_name":"%s","total_hours":%s,"events":[%s]}'):format(name, hours, events)
end

-- Runs a shell line in dir; returns status, stdout, stderr.
local function sh(line, dir)
  local out, err = os.tmpname(), os.tmpname()
  local _, _, code = os.execute(("cd %s && (%s) >%s 2>%s"):format(h.q(dir), line, out, err))
  local o, e = h.read(out), h.read(err)
  os.remove(out); os.remove(err)
  return code, o, e
end

describe("the schedule's bounds", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("refuses an interval under 1 ms in check, plan and run", function()
    dir = project({ tiny = desc("tiny", 0.0003, '{"name":"tick","interval_sec":1e-12}') })
    for _, cmd in ipairs({ "check tiny", "plan tiny", "run tiny -q" }) do
      local code, _, err = h.run(cmd, dir)
      assert.equal(2, code, cmd)
      assert.matches('events%[0%]%.interval_sec: expected at least 0%.001 s %(1 ms, the finest interval orchlua keeps%), found 1e%-12', err)
    end
  end)

  it("refuses a run of more than 1e11 firings", function()
    dir = project({ many = desc("many", 72, '{"name":"tick","interval_sec":0.001}') })
    local code, _, err = h.run("plan many --hours 90000", dir)
    assert.equal(2, code)
    assert.matches("orchlua: many: 32399999%d+ firings, more than orchlua runs in one run %(100000000000%)", err)
  end)

  it("refuses --hours and --time-scale beyond their bounds, and a huge total_hours", function()
    dir = project({ t = desc("t", 0.001, '{"name":"tick","interval_sec":1}'),
                    big = desc("big", "1e300", '{"name":"tick"}') })
    local code, _, err = h.run("run t --time-scale 1e300", dir)
    assert.equal(2, code)
    assert.matches("orchlua: %-%-time%-scale expects a number at most 1000000, found 1e300", err)
    code, _, err = h.run("run t --hours 1e300", dir)
    assert.equal(2, code)
    assert.matches("orchlua: %-%-hours expects a number at most 100000 %(11 years%), found 1e300", err)
    code, _, err = h.run("check big", dir)
    assert.equal(2, code)
    assert.matches("total_hours: expected at most 100000 %(11 years%), found 1e300", err)
  end)

  it("ends a run that fell behind on time, with the missed firings as one skipped record", function()
    -- 1 ms for 1 h at 3600x: 0.28 us a firing, far under what a loop turn costs
    dir = project({ fast = desc("fast", 1, '{"name":"tick","interval_sec":0.001}') })
    local t0 = os.time()
    local code, _, err = h.run("run fast -q --time-scale 3600 --report r.jsonl", dir)
    assert.equal(0, code, err)
    assert.is_true(os.time() - t0 <= 4, "ran " .. (os.time() - t0) .. " s")
    local recs = h.jsonl(dir .. "/r.jsonl")
    local runs, skipped, lines = 0, 0, 0
    for _, r in ipairs(recs) do
      if r.type == "invocation" then runs = runs + 1 end
      if r.type == "skipped" then
        lines = lines + 1
        skipped = skipped + (r.count or 1)
        assert.not_equal("previous invocation still running", r.reason)
      end
    end
    assert.equal(3600000, runs + skipped)
    assert.is_true(lines <= 2, lines .. " skipped lines")
    assert.equal(runs + skipped - 0, recs[#recs].invocations + recs[#recs].skipped)
  end)
end)

describe("closed standard descriptors", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("do not abort --version, list, check or a run", function()
    dir = project({ t = desc("t", 0.0001, '{"name":"tick"}') })
    local bin = h.q(h.bin)
    for _, line in ipairs({ bin .. " --version >&-", bin .. " list <&-", bin .. " check 2>&-",
                            bin .. " run t -q --report r.jsonl >&- 2>&- <&-" }) do
      local code = sh(line, dir)
      assert.equal(0, code, line)
    end
    assert.equal("run_end", h.jsonl(dir .. "/r.jsonl")[3].type)
  end)
end)

-- Runs orchlua in the background in dir, sends it `signals` (a list of
-- {delay_sec, name}) and waits: returns status, seconds it took, stderr.
local function run_signalled(dir, args, signals)
  local steps = {}
  for _, s in ipairs(signals) do steps[#steps + 1] = ("sleep %s; kill -%s $pid"):format(s[1], s[2]) end
  local script = ("%s %s >out 2>err & pid=$!; %s; wait $pid; echo $? > code"):format(h.q(h.bin), args,
    table.concat(steps, "; "))
  local t0 = os.time()
  os.execute(("cd %s && timeout 120 sh -c %s"):format(h.q(dir), h.q(script)))
  return tonumber(h.read(dir .. "/code")), os.time() - t0, h.read(dir .. "/err")
end

describe("every step is bounded", function()
  local dir
  after_each(function() h.rm(dir) end)
  -- grace 1 s: T + grace, and at most about twice that in all
  local CONFIG = 'return { sources = { "events/*.lua" }, grace_sec = 1 }\n'

  local function timed(descs, extra, args)
    extra = extra or {}
    extra[".orchlua"] = extra[".orchlua"] or CONFIG
    dir = project(descs, extra)
    local t0 = os.time()
    local code, out, err = h.run("run " .. args .. " -q --report r.jsonl", dir)
    return code, os.time() - t0, err, out
  end

  for _, case in ipairs({
    { "a <close> handler that loops", "close_loop" },
    { "an error object whose __tostring loops", "tostring_loop" },
    { "a CPU-bound event without timeout_sec", "spin" },
  }) do
    it("ends a run on time past " .. case[1], function()
      local code, took, err = timed({ b = desc("b", 0.0003, ('{"name":"%s"},{"name":"tick","interval_sec":0.1}'):format(case[2])) },
        nil, "b")
      assert.equal(1, code, err)
      assert.is_true(took <= 6, "took " .. took .. " s")
      local recs = h.jsonl(dir .. "/r.jsonl")
      assert.equal("run_end", recs[#recs].type)
      assert.equal(1, #h.select(recs, "invocation", "id", case[2]))
    end)
  end

  it("ends a CPU-bound teardown event and a CPU-bound finaliser on time", function()
    local src = [[
local orch = require "orch"
orch.fixture("stuck", function() return 1, function() while true do end end end)
return { uses = function(stuck) end }
]]
    local code, took, err = timed({ b = desc("b", 0.0003, '{"name":"spin","at_startup":false,"at_teardown":true},{"name":"uses"}') },
      { ["events/fin.lua"] = src }, "b")
    assert.equal(1, code, err)
    assert.is_true(took <= 8, "took " .. took .. " s")
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal("run_end", recs[#recs].type)
    assert.equal("cancelled", h.select(recs, "invocation", "id", "spin")[1].status)
    local found
    for _, r in ipairs(h.select(recs, "result")) do
      if r.level == "error" and tostring(r.data.error):match("^finalise fixtures: ") then found = r.data.error end
    end
    assert.matches("finalise fixtures: still running after 1s %(the grace period%): stopped", found)
  end)

  it("bounds a finaliser that waits by the grace", function()
    local src = [[
local orch = require "orch"
orch.fixture("slow", function() return 1, function() orch.sleep(30) end end)
return { uses = function(slow) end }
]]
    local code, took, err = timed({ b = desc("b", 0.0003, '{"name":"uses"}') }, { ["events/fin.lua"] = src }, "b")
    assert.equal(1, code, err)
    assert.is_true(took <= 5, "took " .. took .. " s")
  end)

  it("ends a run whose __gc loops, from the last resort", function()
    local code, took, err = timed({ b = desc("b", 0.0003, '{"name":"gc_loop"}') }, nil, "b")
    assert.equal(1, code)
    assert.is_true(took <= 10, "took " .. took .. " s")
    assert.matches("orchlua: a step never ended", err)
    assert.equal("run_start", h.jsonl(dir .. "/r.jsonl")[1].type)
  end)

  it("answers signals while a fixture setup waits", function()
    local src = [[
local orch = require "orch"
orch.fixture("slow_setup", function() orch.sleep(30) return 1 end)
return {}
]]
    dir = project({ b = '{"test_name":"b","total_hours":1,"unref_setup_fixtures":["slow_setup"],"events":[{"name":"tick"}]}' },
      { [".orchlua"] = CONFIG, ["events/fin.lua"] = src })
    local code, took = run_signalled(dir, "run b -q", { { 0.5, "INT" } })
    assert.equal(130, code)
    assert.is_true(took <= 5, "took " .. took .. " s")
  end)

  it("answers repeated signals while a finaliser waits", function()
    local src = [[
local orch = require "orch"
orch.fixture("slow", function() return 1, function() orch.sleep(30) end end)
return { uses = function(slow) end }
]]
    dir = project({ b = desc("b", 1, '{"name":"uses"}') }, { [".orchlua"] = 'return { sources = { "events/*.lua" }, grace_sec = 20 }\n',
      ["events/fin.lua"] = src })
    local code, took = run_signalled(dir, "run b -q", { { 0.5, "TERM" }, { 0.3, "TERM" }, { 0.3, "TERM" } })
    assert.equal(143, code)
    assert.is_true(took <= 5, "took " .. took .. " s")
  end)
end)

describe("a signal before the run starts", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("ends orchlua while .orchlua or a source's top level loops", function()
    dir = project({ t = desc("t", 0.001, '{"name":"tick"}') }, { [".orchlua"] = "while true do end\n" })
    local code, took, err = run_signalled(dir, "check", { { 0.5, "INT" } })
    assert.equal(130, code)
    assert.is_true(took <= 3)
    assert.equal("orchlua: stopped by a signal before the run started\n", err)
    h.rm(dir)
    dir = project({ t = desc("t", 0.001, '{"name":"tick"}') }, { ["events/loop.lua"] = "while true do end\n" })
    code, took = run_signalled(dir, "run t", { { 0.5, "TERM" } })
    assert.equal(143, code)
    assert.is_true(took <= 3)
  end)
end)

describe("the exit path", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("is bounded by the grace when a __gc loops while the state closes", function()
    dir = project({ t = desc("t", 0.0001, '{"name":"tick"}') }, {
      [".orchlua"] = 'return { sources = { "events/*.lua" }, grace_sec = 1 }\n',
      ["events/keep.lua"] = 'local keep = setmetatable({}, { __gc = function() while true do end end })\nreturn { keep_it = function() return keep end }\n' })
    local t0 = os.time()
    local code, _, err = h.run("run t -q --report r.jsonl", dir)
    assert.equal(0, code)
    assert.is_true(os.time() - t0 <= 5)
    assert.equal("orchlua: a __gc still ran at exit after the grace period: exiting\n", err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal("run_end", recs[#recs].type)
  end)
end)

describe("results", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("reported from an on_stdout callback carry the event that spawned the process", function()
    dir = project({ s = desc("s", 0.0001, '{"name":"spawn_lines"}') })
    local code, _, err = h.run("run s -q --report r.jsonl", dir)
    assert.equal(0, code, err)
    local lines = {}
    for _, r in ipairs(h.select(h.jsonl(dir .. "/r.jsonl"), "result")) do
      lines[#lines + 1] = r.event .. ":" .. r.data.line
    end
    assert.same({ "spawn_lines:one", "spawn_lines:two" }, lines)
  end)

  it("over 16 MiB keep their event, level, t and ts (the data is cut)", function()
    dir = project({ u = desc("u", 0.0001, '{"name":"huge"}') })
    local code, _, err = h.run("run u -q --report r.jsonl", dir)
    assert.equal(0, code, err)
    local r = h.select(h.jsonl(dir .. "/r.jsonl"), "result")[1]
    assert.equal("huge", r.event)
    assert.equal("info", r.level)
    assert.is_number(r.t)
    assert.is_string(r.ts)
    assert.is_table(r.data)
  end)
end)

describe("outputs", function()
  local dir
  after_each(function() h.rm(dir) end)
  local RMDIR = 'return { rm_out = function() assert(os.remove("out")) end }\n'

  it("naming one file through a link, or a description or a source, are refused before the run", function()
    dir = project({ t = desc("t", 0.0001, '{"name":"tick"}') })
    os.execute("cd " .. h.q(dir) .. " && ln -s r.jsonl j.xml && ln -s descriptions/t.json d.jsonl")
    local code, _, err = h.run("run t -q --report r.jsonl --junit j.xml", dir)
    assert.equal(2, code)
    assert.matches("orchlua: %-%-report and %-%-junit name the same file %(j.xml%): each needs its own", err)
    local before = h.read(dir .. "/descriptions/t.json")
    code, _, err = h.run("run t -q --report d.jsonl", dir)
    assert.equal(2, code)
    assert.matches("orchlua: the description and %-%-report name the same file %(d.jsonl%)", err)
    code, _, err = h.run("run t -q --html events/ev.lua", dir)
    assert.equal(2, code)
    assert.matches("orchlua: the source events/ev.lua and %-%-html name the same file", err)
    assert.equal(before, h.read(dir .. "/descriptions/t.json"))
  end)

  it("a JUnit file that cannot be written fails the run: said, in the summary, run_end and the status", function()
    dir = project({ t = desc("t", 0.0001, '{"name":"rm_out"}') }, { ["events/rm.lua"] = RMDIR })
    os.execute("mkdir " .. h.q(dir .. "/out"))
    local code, out, err = h.run("run t --no-progress --report r.jsonl --junit out/j.xml", dir)
    assert.equal(1, code)
    assert.matches("%-%-junit out/j.xml: No such file or directory", err)
    assert.not_matches("exit 0", out)
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal(1, recs[#recs].status)
    assert.is_nil(h.read(dir .. "/out/j.xml"))
  end)

  it("an HTML file that cannot be written fails the run alike, leaving no file", function()
    dir = project({ t = desc("t", 0.0001, '{"name":"rm_out"}') }, { ["events/rm.lua"] = RMDIR })
    os.execute("mkdir " .. h.q(dir .. "/out"))
    local code, out, err = h.run("run t --no-progress --report r.jsonl --html out/r.html", dir)
    assert.equal(1, code)
    assert.matches("orchlua: %-%-html out/r.html: No such file or directory", err)
    assert.not_matches("exit 0", out)
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal(1, recs[#recs].status)
  end)
end)

describe("a .orchlua found by the search", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("is refused when another user owns it or others may write its folder, unless trusted", function()
    dir = project({ t = desc("t", 0.0001, '{"name":"tick"}') })
    os.execute("chown 12345 " .. h.q(dir .. "/.orchlua"))
    local code, _, err = h.run("check", dir)
    assert.equal(2, code)
    assert.equal(("orchlua: %s/.orchlua: not loaded: %s/.orchlua is owned by uid 12345, not by you (uid 0) or root "
      .. "(set ORCHLUA_SAFE_DIRECTORY=%s to trust it, or name it with --config)\n"):format(dir, dir, dir), err)
    code = h.run("check", dir, "ORCHLUA_SAFE_DIRECTORY=" .. h.q(dir))
    assert.equal(0, code)
    code = h.run("check --config .orchlua", dir)
    assert.equal(0, code)
    os.execute("chown 0 " .. h.q(dir .. "/.orchlua") .. " && chmod 777 " .. h.q(dir))
    code, _, err = h.run("check", dir)
    assert.equal(2, code)
    assert.matches(("%s is writable by every user"):format(dir:gsub("%p", "%%%0")), err)
    os.execute("chmod 700 " .. h.q(dir))
  end)
end)

describe("the weaker findings", function()
  local dir
  after_each(function() h.rm(dir) end)
  local SRC = [[
local orch = require "orch"
local M = {}
function M.g_exit() _G.os.exit(3) end
function M.pkg_exit() package.loaded.os.exit(3) end
function M.gc_stop() collectgarbage("stop") end
function M.nul_argv() orch.exec({ "echo", "a\0b" }) end
function M.nul_env() orch.exec({ "true" }, { env = { X = "a\0b" } }) end
function M.big_exec(result_reporter)
  local _, _, out = orch.exec({ "head", "-c", "70000000", "/dev/zero" })
  result_reporter:info("got", { n = #out, tail = out:sub(-40) })
end
return M
]]

  it("trap _G.os.exit and package.loaded.os.exit, warn on collectgarbage(\"stop\"), refuse NUL, cap orch.exec", function()
    dir = project({ w = desc("w", 0.0001, '{"name":"g_exit"},{"name":"pkg_exit"},{"name":"gc_stop"},'
      .. '{"name":"nul_argv"},{"name":"nul_env"},{"name":"big_exec"}') }, { ["events/w.lua"] = SRC })
    local code, out, err = h.run("run w --no-progress --report r.jsonl", dir)
    assert.equal(1, code)
    local recs = h.jsonl(dir .. "/r.jsonl")
    local function first(id) return (h.select(recs, "invocation", "id", id)[1].error or "ok"):match("^[^\n]*") end
    assert.matches("os.exit is not allowed in an event", first("g_exit"))
    assert.matches("os.exit is not allowed in an event", first("pkg_exit"))
    assert.equal("ok", first("gc_stop"))
    assert.matches('collectgarbage%("stop"%) ignored', out .. err)
    assert.matches("bad argument #1 to 'orch.exec' %(argv%[2%]: holds a NUL byte", first("nul_argv"))
    assert.matches("env.X: holds a NUL byte", first("nul_env"))
    local got = h.select(recs, "result", "event", "big_exec")[1].data
    assert.equal(64 * 1024 * 1024 + #"\n[orchlua: output past 64 MiB not kept]\n", got.n)
  end)
end)

describe("the console", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("shows control bytes from events as \\xNN", function()
    dir = project({ c = desc("c", 0.0001, '{"name":"esc"}') }, { ["events/c.lua"] =
      'return { esc = function(result_reporter) result_reporter:info("\\27]0;owned\\7 x") error("\\27[2J") end }\n' })
    local code, out, err = h.run("run c --no-progress", dir)
    assert.equal(1, code)
    assert.not_matches("\27", out .. err)
    assert.truthy(out:find("ERROR after 0.000s: events/c.lua:1: \\x1b[2J", 1, true))
  end)
end)

describe("a descriptions folder that cannot be read", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("is said by list and check, not skipped silently", function()
    dir = project({ ok = desc("ok", 0.0001, '{"name":"tick"}') })
    h.write(dir .. "/descriptions/locked/hidden.json", desc("hidden", 0.0001, '{"name":"tick"}'))
    -- as an unprivileged user (root reads every folder)
    os.execute("chmod 755 " .. h.q(dir) .. " && chmod -R a+rX " .. h.q(dir) .. " && chmod 000 " .. h.q(dir .. "/descriptions/locked"))
    local as = "setpriv --reuid=65534 --regid=65534 --clear-groups "
    local code, out, err = sh(as .. h.q(h.bin) .. " list", dir)
    os.execute("chmod 700 " .. h.q(dir .. "/descriptions/locked"))
    assert.equal(0, code, err)
    assert.matches("ok", out)
    assert.equal("orchlua: warning: descriptions/locked: Permission denied: its descriptions are not listed\n", err)
  end)
end)
