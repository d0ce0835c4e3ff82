-- End-to-end specs of orch.spawn and orch.exec: the real binary runs
-- events that spawn real processes; results come back through the JSONL
-- report, and /proc is searched afterwards for anything left behind.
local H = require "helper"
local U = require "e2e.fixtures.process.util"

local function ev(name, params, extra)
  local e = { name = name, params = params }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

-- Runs one description made of events for `sec` description seconds.
local function run_events(events, sec, args, opts)
  local dir = U.project({ t = U.desc("t", sec / 3600, events) }, opts)
  local code, out, err, recs = U.run(dir, "t", args)
  return { code = code, out = out, err = err, recs = recs, dir = dir }
end

local function assert_no_leaks(r)
  local s = U.stats(r.err)
  assert.is_table(s, "no stats line in stderr:\n" .. tostring(r.err))
  assert.same({ handles = 0, tasks = 0, refs = 0 }, s)
end

local function assert_nothing_left(r, allow_zombies)
  local groups = U.reported_groups(r.recs)
  local left = U.wait_groups_gone(groups, 1000, allow_zombies)
  assert.same({}, left, "left behind in the reported groups")
  return groups
end

local function invocation(r, event)
  return U.invocations(r.recs, event)[1]
end

describe("orch.spawn", function()
  local dirs = {}
  local function keep(r) dirs[#dirs + 1] = r.dir; return r end
  teardown(function() for _, d in ipairs(dirs) do H.rm(d) end end)

  describe("line callbacks", function()
    it("deliver stdout and stderr line by line, with a partial last line", function()
      local r = keep(run_events({ ev("lines", { script = "echo one; echo two >&2; printf 'a\\nb\\n\\nc'; printf tail >&2" }) }, 1))
      assert.equal(0, r.code)
      local d = U.result(r.recs, "lines")
      assert.same({ "one", "a", "b", "", "c" }, d.out)
      assert.same({ "two", "tail" }, d.err)
      assert.same({ false, false, false, false, false }, d.partial)
      assert.equal(0, d.code)
      assert_no_leaks(r)
    end)

    it("deliver a 1 MB line whole, and a missing final newline too", function()
      local script = "head -c 1048576 /dev/zero | tr '\\0' x; echo; head -c 1048576 /dev/zero | tr '\\0' x"
      local r = keep(run_events({ ev("lines", { script = script }) }, 1))
      local d = U.result(r.recs, "lines")
      assert.equal(2, #d.out)
      assert.same({ len = 1048576, all_x = true, head = "xxxxxxxxxx" }, d.out[1])
      assert.same({ len = 1048576, all_x = true, head = "xxxxxxxxxx" }, d.out[2])
      assert.same({ false, false }, d.partial)
      assert_no_leaks(r)
    end)

    it("split a line longer than max_line into pieces marked partial, never losing bytes", function()
      local r = keep(run_events({ ev("lines", { script = "printf 'abcdefghij\\nxy\\n'", max_line = 4 }) }, 1))
      local d = U.result(r.recs, "lines")
      assert.same({ "abcd", "efgh", "ij", "xy" }, d.out)
      assert.same({ true, true, false, false }, d.partial)
    end)

    it("report a failing callback, switch it off and make wait() raise it", function()
      local r = keep(run_events({ ev("callback_error") }, 1))
      assert.equal(1, r.code)
      local d = U.result(r.recs, "callback_error_wait")
      assert.is_false(d.ok)
      assert.equal(2, d.seen, "the callback is not called again after its error")
      assert.matches("^on_stdout callback of \"sh\" %(pid %d+%) failed: [^\n]*procs%.lua:%d+: bad line two\n", d.err)
      assert.matches("stack traceback", d.err)
      local inv = invocation(r, "callback_error")
      assert.equal("error", inv.status)
      assert.matches("^[^\n]*procs%.lua:%d+: on_stdout callback of \"echo\" %(pid %d+%) failed: [^\n]*uncaught in callback\n", inv.error)
      assert.matches("error: on_stdout callback of \"sh\" %(pid %d+%) failed: [^\n]*bad line two %(callback switched off%)\n", r.out)
      assert_no_leaks(r)
    end)
  end)

  describe("exit codes and signals", function()
    it("wait() returns the exit code, or nil and the terminating signal", function()
      local r = keep(run_events({ ev("status") }, 1))
      assert.equal(0, r.code, r.out)
      local d = U.result(r.recs, "status")
      assert.same({ 0 }, d.zero)
      assert.same({ 3 }, d.three)
      assert.same({ "exited", 3 }, d.three_status)
      assert.same({ 3 }, d.three_again)
      assert.same({ nil, 9 }, d.self_killed)
      assert.is_true(d.running)
      assert.same({ "running" }, d.running_status)
      assert.same({ true }, d.kill)
      assert.same({ nil, 15 }, d.term)
      assert.is_false(d.after)
      assert.is_nil(d.kill_again[1])
      assert.matches("^process %d+: has exited$", d.kill_again[2])
      assert.same({ nil, 10 }, d.usr1)
      assert.same({ nil, 9 }, d.sigkill)
      assert.same({ nil, 2 }, d.sigint)
      assert.same({ nil, 9 }, d.stubborn, "terminate escalates to SIGKILL")
      assert.is_true(d.stubborn_sec >= 0.45 and d.stubborn_sec < 2, "after about 500 ms: " .. d.stubborn_sec)
      assert.matches("^orch%.Process %(sh, pid %d+, killed by signal 9%)$", d.str)
      assert_no_leaks(r)
    end)
  end)

  describe("wait", function()
    it("returns nil, \"timeout\" when the timeout passes, and the process runs on", function()
      local r = keep(run_events({ ev("wait_timeout") }, 1))
      local d = U.result(r.recs, "wait_timeout")
      assert.same({ nil, "timeout" }, d.timed)
      assert.is_true(d.took >= 0.29 and d.took < 3, "waited " .. d.took)  -- its timeout, not the process
      assert.is_true(d.running)
      assert.same({ nil, "timeout" }, d.zero)
      assert.same({ 7 }, d.in_time)
      assert.same({ nil, 15 }, d.after_kill)
      assert_no_leaks(r)
    end)

    it("wakes every task waiting for the same process", function()
      local r = keep(run_events({ ev("two_waiters") }, 1))
      local d = U.result(r.recs, "two_waiters")
      assert.same({ { 4 }, { 4 }, { 4 } }, d.got)
      assert_no_leaks(r)
    end)
  end)

  describe("<close>", function()
    it("terminates a to-be-closed process at the end of its scope", function()
      local r = keep(run_events({ ev("close_var") }, 1))
      local d = U.result(r.recs, "close_var")
      assert.is_false(d.alive)
      assert_no_leaks(r)
    end)
  end)

  describe("env, cwd and argv", function()
    it("merges env over the environment, unsets with false, replaces it with clear_env; cwd; no fd leaks", function()
      local r = keep(run_events({ ev("env_cwd", { dir = "/tmp" }) }, 1))
      local d = U.result(r.recs, "env_cwd")
      assert.same({ true, 0, "a value|42|" .. os.getenv("HOME") }, d.merged)
      assert.equal("unset|x", d.unset)
      assert.equal("ONLY=this\n", d.cleared)
      assert.equal("/tmp\n", d.cwd)
      assert.equal("0 1 2 3 ", d.fds, "a child inherits stdin, stdout and stderr only (3: the listing's own)")
      assert.equal("/", d.spawn_cwd)
      assert_no_leaks(r)
    end)

    it("passes arguments with shell metacharacters literally", function()
      local r = keep(run_events({ ev("literal_args") }, 1))
      local d = U.result(r.recs, "literal_args")
      local want = {}
      for _, a in ipairs(d.expected) do want[#want + 1] = "<" .. a .. ">\n" end
      assert.same({ true, 0 }, { d.ok, d.code })
      assert.equal(table.concat(want), d.out)
    end)

    it("writes to stdin and closes it", function()
      local r = keep(run_events({ ev("stdin") }, 1))
      local d = U.result(r.recs, "stdin")
      assert.same({ "first", "second", "third" }, d.lines)
      assert.equal(0, d.code)
      assert.same({ nil, "stdin is not a pipe (spawn with stdin = true) or is closed" }, d.no_pipe)
      assert_no_leaks(r)
    end)
  end)

  describe("bad input", function()
    local function fails_with(kind, msg)
      local r = keep(run_events({ ev("bad", { kind = kind }) }, 0.5))
      assert.equal(1, r.code, "exit status: " .. tostring(r.out) .. tostring(r.err))
      local inv = invocation(r, "bad")
      assert.equal("error", inv.status)
      local first = inv.error:match("^[^\n]*")
      assert.equal(msg, first)
      assert_no_leaks(r)
    end
    local SRC = U.events_dir .. "/procs.lua"
    local function at(line, msg) return ("%s:%d: %s"):format(SRC, line, msg) end
    local lines = {}
    do
      local n = 0
      for l in io.lines(SRC) do
        n = n + 1
        local kind = l:match("^  ([%w_]+) = function%(%)")
        if kind then lines[kind] = n end
      end
    end

    it("a cmd that is a string: commands are argv lists", function()
      fails_with("string", at(lines.string, "bad argument #1 to 'orch.spawn' (cmd: list of strings expected, got string " ..
        "(commands are argv lists, never shell strings: use {\"sh\", \"-c\", \"ls -l /\"} to run a shell))"))
    end)
    it("a cmd that is not a table", function()
      fails_with("number", at(lines.number, "bad argument #1 to 'orch.spawn' (cmd: list of strings expected, got number)"))
    end)
    it("an empty cmd", function()
      fails_with("empty", at(lines.empty, "bad argument #1 to 'orch.spawn' (cmd: non-empty list expected, got an empty list)"))
    end)
    it("a non-string argument", function()
      fails_with("nonstring", at(lines.nonstring, "bad argument #1 to 'orch.spawn' (cmd[2]: string expected, got number)"))
    end)
    it("a cmd that is not a list", function()
      fails_with("hash", at(lines.hash, "bad argument #1 to 'orch.spawn' (cmd: list of strings expected, got a table with the key \"x\")"))
    end)
    it("options that are not a table", function()
      fails_with("noopts", at(lines.noopts, "bad argument #1 to 'orch.spawn' (table expected, got string)"))
    end)
    it("an option of the wrong type", function()
      fails_with("badopt", at(lines.badopt, "bad argument #1 to 'orch.spawn' (on_stdout: function expected, got string)"))
    end)
    it("an unknown option", function()
      fails_with("unknown", at(lines.unknown, "bad argument #1 to 'orch.spawn' (unknown option \"stdout\" (known: capture, " ..
        "clear_env, cmd, cwd, env, max_line, on_stderr, on_stdout, owner, stdin))"))
    end)
    it("orch.exec with a shell string or an empty list", function()
      fails_with("exec_string", at(lines.exec_string, "bad argument #1 to 'orch.exec' (list of strings expected, got string " ..
        "(commands are argv lists, never shell strings: use {\"sh\", \"-c\", \"ls -l\"} to run a shell))"))
      fails_with("exec_empty", at(lines.exec_empty, "bad argument #1 to 'orch.exec' (non-empty list expected, got an empty list)"))
    end)
    it("a program that does not exist", function()
      fails_with("missing", at(lines.missing, "orch.spawn: cannot run \"orchlua-no-such-program\": no such file or directory"))
    end)
    it("a cwd that does not exist, or is not a directory", function()
      fails_with("bad_cwd", at(lines.bad_cwd, "orch.spawn: cannot run \"pwd\": cwd \"/orchlua/no/such/dir\": no such file or directory"))
      fails_with("not_dir", at(lines.not_dir, "orch.spawn: cannot run \"pwd\": cwd \"/etc/passwd\": not a directory"))
    end)
    it("a file that is not executable", function()
      fails_with("no_exec", at(lines.no_exec, "orch.spawn: cannot run \"/etc/passwd\": permission denied"))
    end)
  end)
end)

describe("orch.exec", function()
  it("returns ok, code, stdout, stderr; false and the signal or \"timeout\"; nil and a message", function()
    local r = run_events({ ev("exec_cases") }, 2)
    assert.equal(0, r.code, r.out)
    local d = U.result(r.recs, "exec_cases")
    assert.same({ true, 0, "out\n", "err\n" }, d.ok)
    assert.same({ false, 5, "partial", "" }, d.fail)
    assert.same({ false, nil, "", "", 15 }, d.signal)
    assert.same({ true, 0, "HELLO\nWORLD\n", "" }, d.stdin)
    assert.same({ false, nil, "started\n", "", "timeout" }, d.timeout)
    assert.is_true(d.timeout_sec >= 0.29 and d.timeout_sec < 3, "timeout took " .. d.timeout_sec)
    assert.same({ nil, "orch.exec: cannot run \"orchlua-no-such-program\": no such file or directory" }, d.missing)
    assert.same({ nil, "orch.exec: cannot run \"pwd\": cwd \"/orchlua/no/such/dir\": no such file or directory" }, d.bad_cwd)
    assert.equal(3000000, d.big)
    assert_no_leaks(r)
    H.rm(r.dir)
  end)
end)

describe("nothing outlives the run", function()
  -- groups an event wrote to pgids.txt (when the report queue is not drained)
  local function file_groups(r)
    local groups = {}
    for g in (H.read(r.dir .. "/pgids.txt") or ""):gmatch("%d+") do groups[#groups + 1] = tonumber(g) end
    return groups
  end
  local HOLD2 = function(mode, extra) return ev("hold", { n = 2, mode = mode }, extra) end

  it("at the normal end: processes nobody waits for are stopped", function()
    local r = run_events({ HOLD2("return") }, 0.5)
    assert.equal(0, r.code, r.out)
    local groups = assert_nothing_left(r)
    assert.equal(2, #groups)
    assert_no_leaks(r)
    H.rm(r.dir)
  end)

  it("after an event error", function()
    local r = run_events({ HOLD2("error") }, 0.5)
    assert.equal(1, r.code)
    assert.equal(2, #assert_nothing_left(r))
    assert_no_leaks(r)
    H.rm(r.dir)
  end)

  it("when an invocation times out: at once, while the run goes on", function()
    local r = run_events({ HOLD2("wait", { timeout_sec = 0.3 }),
                           ev("check_gone", nil, { at_startup = false, at_teardown = true }) }, 1.5)
    assert.equal(1, r.code)
    assert.equal("timeout", invocation(r, "hold").status)
    local d = U.result(r.recs, "check_gone")
    assert.equal(2, d.checked)
    assert.same({}, d.alive)
    assert_nothing_left(r)
    assert_no_leaks(r)
    H.rm(r.dir)
  end)

  it("when an invocation is replaced, but not the processes the run owns", function()
    local r = run_events({ HOLD2("run_owned", { interval_sec = 0.5, concurrency = "replace" }),
                           ev("check_gone", nil, { at_startup = false, at_teardown = true }) }, 1.2)
    local invs = U.invocations(r.recs, "hold")
    assert.is_true(#invs >= 2)
    assert.equal("cancelled", invs[1].status)
    local d = U.result(r.recs, "check_gone")
    -- the last invocation's two groups still run at teardown; the others were killed
    assert.equal(#U.results(r.recs, "hold") * 2, d.checked)
    assert.is_true(#d.alive <= 2, "alive: " .. table.concat(d.alive, " "))
    assert.is_true(d.run_owned_alive, "a process owned by the run outlives its invocation")
    assert_nothing_left(r)
    assert_no_leaks(r)
    H.rm(r.dir)
  end)

  it("at the kill switch, after grace, on --fail-fast", function()
    local r = run_events({ HOLD2("wait"), ev("bad", { kind = "empty" }, { at_startup = false, interval_sec = 0.3 }) }, 30,
                         "--fail-fast", { grace = 0.3 })
    assert.equal(1, r.code)
    assert.equal("cancelled", invocation(r, "hold").status)
    assert.equal(2, #assert_nothing_left(r))
    assert_no_leaks(r)
    H.rm(r.dir)
  end)

  local function by_signal(signals, want_rc)
    local dir = U.project({ t = U.desc("t", 1, { HOLD2("wait") }) }, { grace = 0.3 })
    local bg = U.start(dir, "t")
    local recs = bg.wait_for("hold", 1, 5000)
    assert.is_table(recs, "the event did not report its processes")
    for _, sig in ipairs(signals) do bg.signal(sig); os.execute("sleep 0.05") end
    local rc = bg.wait(5000)
    assert.equal(want_rc, rc)
    local r = { recs = bg.records(), err = bg.err() }
    assert.equal(2, #assert_nothing_left(r))
    H.rm(dir)
    return r
  end

  it("on SIGTERM", function()
    local r = by_signal({ "TERM" }, 143)
    assert_no_leaks(r)
  end)

  it("on SIGINT", function()
    local r = by_signal({ "INT" }, 130)
    assert_no_leaks(r)
  end)

  it("on a second SIGTERM", function()
    local r = by_signal({ "TERM", "TERM" }, 143)
    assert_no_leaks(r)
  end)

  it("on exit() called behind the host's back (require(\"os\").exit, a C module's exit())", function()
    local r = run_events({ HOLD2("exit") }, 1)
    assert.equal(7, r.code)
    local groups = file_groups(r)
    assert.equal(2, #groups)
    assert.same({}, U.wait_groups_gone(groups, 1000))
    H.rm(r.dir)
  end)

  it("on the host's exit path, when the loop ended early", function()
    local r = run_events({ HOLD2("stop_loop") }, 1)
    local s = U.stats(r.err)
    assert.is_true(s.refs > 0, "the processes were still there when the loop stopped")
    local groups = file_groups(r)
    assert.equal(2, #groups)
    assert.same({}, U.wait_groups_gone(groups, 1000))
    H.rm(r.dir)
  end)

  it("for a descendant that left its group (setsid), at the end and on exit()", function()
    for _, mode in ipairs({ "return", "exit" }) do
      local r = run_events({ ev("escape", { mode = mode }) }, 0.5)
      assert.equal(0, r.code, r.out)
      local pids = mode == "exit" and file_groups(r) or { U.result(r.recs, "escape").pgids[1], U.result(r.recs, "escape").escaped }
      assert.equal(2, #pids)
      local left
      for _ = 1, 20 do
        left = {}
        for _, pid in ipairs(pids) do
          local f = io.open("/proc/" .. math.tointeger(pid) .. "/stat")
          if f then left[#left + 1] = f:read("l"); f:close() end
        end
        if #left == 0 then break end
        os.execute("sleep 0.05")
      end
      assert.same({}, left, mode)
      H.rm(r.dir)
    end
  end)

  it("on a crash (SIGSEGV)", function()
    local r = by_signal({ "SEGV" }, 139)
    assert.is_nil(U.stats(r.err))
  end)

  it("on orchlua's own SIGKILL, for direct children (PR_SET_PDEATHSIG)", function()
    local dir = U.project({ t = U.desc("t", 1, { ev("many_running", { n = 3 }) }) })
    local bg = U.start(dir, "t")
    local recs = bg.wait_for("many_running", 1, 5000)
    assert.is_table(recs)
    local d = U.result(recs, "many_running")
    bg.signal("KILL")
    assert.equal(137, bg.wait(5000))
    assert.equal(3, #d.pgids)
    assert.same({}, U.wait_groups_gone(d.pgids, 1000, true))
    H.rm(dir)
  end)
end)

describe("many processes", function()
  it("spawns and reaps 200 processes in one run, leaving no zombie", function()
    local r = run_events({ ev("many", { n = 200 }) }, 5)
    assert.equal(0, r.code, r.out)
    local d = U.result(r.recs, "many")
    assert.same({ n = 200, codes_ok = true, lines = 200, zombies = 0, listed = 0 },
                { n = d.n, codes_ok = d.codes_ok, lines = d.lines, zombies = d.zombies, listed = d.listed })
    local sum = 0
    for i = 1, 200 do sum = sum + i % 7 end
    assert.equal(sum, d.sum)
    assert_no_leaks(r)
    H.rm(r.dir)
  end)

  it("stops 1,000 running processes at the end of the run and exits within 2 s", function()
    -- 8 s and grace 30: spawning 1,000 under the sanitizers on a busy
    -- machine takes seconds (past T + 1 s the watchdog would stop the
    -- spawning event); the processes left running are stopped at the end
    -- without waiting for the grace
    local dir = U.project({ t = U.desc("t", 8 / 3600, {
      ev("many_running", { n = 1000 }),
      ev("mark_end", nil, { at_startup = false, at_teardown = true }) }) }, { grace = 30 })
    local code, _, err, recs = U.run(dir, "t")
    local exit_wall = (function()
      local p = io.popen("date +%s.%N"); local s = p:read("l"); p:close(); return tonumber(s)
    end)()
    assert.equal(0, code)
    local d = U.result(recs, "many_running")
    local stop = exit_wall - U.result(recs, "end").wall
    io.stderr:write(("\n# 1,000 running processes: end of run to orchlua's exit %.0f ms\n"):format(stop * 1000))
    assert.is_true(stop < 2, ("took %.3f s"):format(stop))
    assert.equal(1000, #d.pgids)
    assert.same({}, U.wait_groups_gone(d.pgids, 1000))
    assert.same({ handles = 0, tasks = 0, refs = 0 }, U.stats(err))
    H.rm(dir)
  end)
end)

describe("the seed example", function()
  it("runs with real stand-in processes, and none remains afterwards", function()
    local dir = H.tmpdir()
    local report = dir .. "/seed.jsonl"
    -- --grace: at 3600x the project's 10 s grace is 2.8 ms of real time,
    -- less than the stand-in shell may take to see EOF and exit on a loaded
    -- machine (an ASan build in CI had start_streamer cancelled); an hour
    -- of description time is 1 s, and a run that ends in order never waits it
    local code, out, err = H.run(("run my_orchestration_test --time-scale 3600 --grace 3600 -q --report %s")
                                 :format(H.q(report)), H.root, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(0, code, out .. err)
    local recs = H.jsonl(report)
    local plays = {}
    for _, d in ipairs(U.results(recs)) do
      if type(d) == "table" and d.video then plays[#plays + 1] = d end
    end
    -- 36 firings; on a loaded machine a play (a real process, 30 s of
    -- description time = 8 ms real) can outlast 300 s (83 ms real) and the
    -- next firing is then skipped, as concurrency "forbid" says
    local skipped = 0
    for _, r in ipairs(recs) do
      if r.type == "skipped" and r.id == "start_playback" then skipped = skipped + 1 end
    end
    assert.equal(36, #plays + skipped)
    assert.is_true(#plays >= 30, "plays: " .. #plays)
    for _, p in ipairs(plays) do
      assert.equal("/home/orch-tests/video-files/high_res_clip.mp4", p.video)
      assert.is_true(p.frames >= 0 and p.frames % 25 == 0)
    end
    local kbps = 0
    for _, r in ipairs(recs) do
      if r.type == "result" and type(r.data) == "table" and r.data.metric == "stream_kbps" then kbps = kbps + 1 end
    end
    assert.is_true(kbps > 100, "stream_kbps metrics: " .. kbps)
    assert.same({}, U.wait_groups_gone(U.reported_groups(recs), 1000))
    for _, p in ipairs(U.ps()) do
      local f = io.open("/proc/" .. p.pid .. "/cmdline")
      local cmd = f and f:read("a") or ""
      if f then f:close() end
      assert.is_nil(cmd:find("orchlua-stand-in", 1, true), "left: " .. cmd:gsub("%z", " "))
    end
    assert.same({ handles = 0, tasks = 0, refs = 0 }, U.stats(err))
    H.rm(dir)
  end)
end)
