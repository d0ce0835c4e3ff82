-- orch.process: orch.spawn and orch.exec, the policy over core.spawn.
--
--   orch.spawn{ cmd = {...}, env =, clear_env =, cwd =, on_stdout = fn(line, partial),
--               on_stderr = fn(line, partial), stdin =, capture =, max_line =, owner = }
--     -> process: p.pid, p:wait([timeout]), p:kill([signal]), p:terminate(),
--        p:is_running(), p:status(), p:write(s...), p:close_stdin(), p:output()
--   orch.exec(argv, [opts]) -> ok, code, stdout, stderr[, why]
--
-- Commands are argv lists, never shell strings ({"sh", "-c", script} runs a
-- shell when one is wanted).  Errors:
--   * misuse (cmd not a list, empty, a non-string argument, an option of the
--     wrong type) raises "bad argument #1 to 'orch.spawn' (...)" at the
--     caller's line, for both functions;
--   * a process that cannot start (no such program, no such cwd) makes
--     orch.spawn raise `orch.spawn: cannot run "prog": no such file or
--     directory` in the calling event (its invocation fails with that
--     reason), while orch.exec returns nil, message: exec is the "run it and
--     tell me" helper, spawn the "I need this process" one.
--
-- Line callbacks run on the loop, outside the event's coroutine: they may
-- not wait.  An error in one is reported at once on the console (log level
-- error, naming the process), the callback is switched off for the rest of
-- that process (lines are still read, so the process never blocks on a
-- full pipe), and the next p:wait() raises it, so the event that waits for
-- the process fails with the callback's error and traceback.
local core = require("orch.host").core
local host = require("orch.host").need

local M = {}

local function argerror(fname, msg, level)
  error(("bad argument #1 to '%s' (%s)"):format(fname, msg), level + 1)
end

-- Checks an argv list; `what` names it in messages ("cmd" or nil).
local function check_argv(fname, argv, what, level)
  local pre = what and (what .. ": ") or ""
  local at = what or "argv"
  level = level + 1
  if type(argv) == "string" then
    argerror(fname, ("%slist of strings expected, got string (commands are argv lists, never shell " ..
      "strings: use {\"sh\", \"-c\", %q} to run a shell)"):format(pre, argv), level)
  elseif type(argv) ~= "table" then
    argerror(fname, ("%slist of strings expected, got %s"):format(pre, type(argv)), level)
  end
  local n = #argv
  for k in pairs(argv) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      argerror(fname, ("%slist of strings expected, got a table with the key %s"):format(
        pre, type(k) == "string" and ("%q"):format(k) or tostring(k)), level)
    end
  end
  if n == 0 then argerror(fname, ("%snon-empty list expected, got an empty list"):format(pre), level) end
  for i = 1, n do
    if type(argv[i]) ~= "string" then
      argerror(fname, ("%s[%d]: string expected, got %s"):format(at, i, type(argv[i])), level)
    elseif argv[i]:find("\0", 1, true) then
      argerror(fname, ("%s[%d]: holds a NUL byte (the process would get it cut there)"):format(at, i), level)
    end
  end
end

local SPAWN_OPTS = {
  cmd = true, env = "table", clear_env = "boolean", cwd = "string", on_stdout = "function",
  on_stderr = "function", stdin = true, capture = "boolean", max_line = "number", owner = "string",
}
local EXEC_OPTS = { env = "table", clear_env = "boolean", cwd = "string", timeout = "number",
                    stdin = "string", owner = "string" }

local function check_opts(fname, opts, known, level)
  level = level + 1
  for k, v in pairs(opts) do
    local want = known[k]
    if want == nil then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      argerror(fname, ("unknown option %s (known: %s)"):format(
        type(k) == "string" and ("%q"):format(k) or tostring(k), table.concat(names, ", ")), level)
    elseif want ~= true and type(v) ~= want then
      argerror(fname, ("%s: %s expected, got %s"):format(k, want, type(v)), level)
    end
  end
  if opts.stdin ~= nil and type(opts.stdin) ~= "string" and type(opts.stdin) ~= "boolean" then
    argerror(fname, ("stdin: true, false or a string expected, got %s"):format(type(opts.stdin)), level)
  end
  if type(opts.cwd) == "string" and opts.cwd:find("\0", 1, true) then
    argerror(fname, "cwd: holds a NUL byte (the process would get it cut there)", level)
  end
  if opts.owner ~= nil and opts.owner ~= "invocation" and opts.owner ~= "run" then
    argerror(fname, ("owner: \"invocation\" or \"run\" expected, got %q"):format(opts.owner), level)
  end
  if opts.timeout ~= nil and (opts.timeout ~= opts.timeout or opts.timeout <= 0) then
    argerror(fname, ("timeout: a number > 0 expected, got %s"):format(tostring(opts.timeout)), level)
  end
  if opts.max_line ~= nil and (math.type(opts.max_line) ~= "integer" or opts.max_line <= 0) then
    argerror(fname, ("max_line: an integer > 0 expected, got %s"):format(tostring(opts.max_line)), level)
  end
  if opts.env then
    for k, v in pairs(opts.env) do
      if type(k) ~= "string" or k == "" or k:find("=", 1, true) then
        argerror(fname, ("env: variable names must be strings without '=', got %s"):format(
          type(k) == "string" and ("%q"):format(k) or type(k)), level)
      end
      if type(v) ~= "string" and type(v) ~= "number" and v ~= false then
        argerror(fname, ("env.%s: string, number or false expected, got %s"):format(k, type(v)), level)
      end
      if k:find("\0", 1, true) or (type(v) == "string" and v:find("\0", 1, true)) then
        argerror(fname, ("env.%s: holds a NUL byte (the process would get it cut there)")
          :format((k:gsub("%z", "\\0"))), level)
      end
    end
  end
end

-- ---- callback errors -----------------------------------------------------

local failures = setmetatable({}, { __mode = "k" })  -- process -> message

local function log_error(msg)
  local orch = package.loaded["orch"]
  if orch and orch.log then orch.log.error(msg) else io.stderr:write("orchlua: ", msg, "\n") end
end

-- Wraps a user callback: it never raises into the loop.
local function guard(fn, which, state)
  -- the invocation that spawned the process: what its callbacks report is
  -- that invocation's (its event, not "-")
  local tag = core and core.current()
  return function(line, partial)
    if state.off then return end
    if tag ~= nil then core.set_context(tag) end
    local ok, err = xpcall(fn, debug.traceback, line, partial)
    if tag ~= nil then core.set_context(nil) end
    if not ok then
      state.off = true
      local p = state.p
      local msg = ("%s callback of %q (pid %s) failed: %s"):format(which, state.name, p and p.pid or "?", tostring(err))
      if p then failures[p] = failures[p] or msg end
      log_error((msg:gsub("\n.*", "") .. " (callback switched off)"))
    end
  end
end

if core then
  local Process = core.Process   -- the methods of orch.Process
  local c_wait = Process.wait
  -- process:wait([timeout_sec]) -> code, nil | nil, signal | nil, "timeout"
  function Process.wait(self, timeout)
    local a, b = c_wait(self, timeout)
    local failed = failures[self]
    if failed then
      failures[self] = nil
      error(failed, 2)
    end
    return a, b
  end
end

-- ---- orch.spawn ------------------------------------------------------------

-- orch.spawn(opts) -> process.  Raises when the process cannot start.
function M.spawn(opts)
  local c = host("spawn")
  if type(opts) ~= "table" then
    argerror("orch.spawn", ("table expected, got %s"):format(type(opts)), 2)
  end
  check_argv("orch.spawn", opts.cmd, "cmd", 2)
  check_opts("orch.spawn", opts, SPAWN_OPTS, 2)
  local state = { name = opts.cmd[1] }
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if opts.on_stdout then o.on_stdout = guard(opts.on_stdout, "on_stdout", state) end
  if opts.on_stderr then o.on_stderr = guard(opts.on_stderr, "on_stderr", state) end
  local p, err = c.spawn(o, "orch.spawn")
  if not p then error(err, 2) end
  state.p = p
  return p
end

-- ---- orch.exec -------------------------------------------------------------

-- orch.exec(argv, [opts]) -> ok, code, stdout, stderr[, why]
--   exited:            ok = (code == 0), code, stdout, stderr
--   killed by signal:  false, nil, stdout, stderr, signal number
--   timeout:           false, nil, stdout, stderr, "timeout" (the process
--                      group got SIGTERM, then SIGKILL, and was waited for)
--   could not start:   nil, message
-- opts: env, clear_env, cwd, timeout (seconds of real time at least,
-- whatever --time-scale), stdin (text
-- written to the process, then closed), owner.
function M.exec(argv, opts)
  local c = host("exec")
  check_argv("orch.exec", argv, nil, 2)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #2 to 'orch.exec' (table expected, got %s)"):format(type(opts)), 2)
  end
  opts = opts or {}
  check_opts("orch.exec", opts, EXEC_OPTS, 2)
  local p, err = c.spawn({ cmd = argv, env = opts.env, clear_env = opts.clear_env, cwd = opts.cwd,
                           stdin = opts.stdin, owner = opts.owner, capture = true }, "orch.exec")
  if not p then return nil, err end
  -- a bound on real work: --time-scale does not shorten it
  local code, sig = p:wait(opts.timeout and opts.timeout * math.max(1, c.time_scale()))
  if code == nil and sig == "timeout" then
    p:terminate()
    p:wait()
    local out, errout = p:output()
    return false, nil, out, errout, "timeout"
  end
  local out, errout = p:output()
  if code == nil then return false, nil, out, errout, sig end
  return code == 0, code, out, errout
end

return M
