-- orch.helpers.supervise: keep a process running for the whole soak run,
-- restarting it when it dies and reporting every restart.
--
--   local supervise = require "orch.helpers.supervise"
--   function M.streamer(event, kill_switch, result_reporter)   -- at_startup
--     supervise.run({ name = "streamer", cmd = { "./streamer", "--port", "9000" },
--                     ready = { tcp = 9000 } },
--                   kill_switch, result_reporter, event)
--   end
--
-- supervise.new(opts) -> supervisor
--   opts.cmd           argv list (required); opts.env, opts.cwd,
--                      opts.on_stdout, opts.on_stderr: as for orch.spawn
--   opts.name          names the process in results and metrics (default:
--                      the program's base name)
--   opts.ready         a readiness probe, run after each start: { tcp =
--                      port | "host:port", http = "http://...", log =
--                      a Lua pattern a stdout/stderr line must match,
--                      timeout = seconds (default 30) }.  Once it passes
--                      (at once without one) the event given to run() is
--                      marked ready (event:ready(): the events `after` it
--                      start) and "<name> up" is reported (info; without
--                      a probe, only after a restart).  A probe
--                      that never passes: an error, and a restart
--   opts.port          a TCP port the process listens on (default: the
--                      ready probe's): checked before each start for a
--                      listener left behind (an orphan of a dead process)
--   opts.backoff       seconds before the first restart (default 1); each
--                      quick death doubles it, up to opts.max_backoff (30)
--   opts.reset_after   a process that ran this long restarts after
--                      `backoff` again, and ends a restart storm (60)
--   opts.max_restarts  give up after this many restarts (default: never):
--                      reports an error and run() returns
--   opts.level         "error" (default) or "info": the level of the
--                      result for each death.  An error result fails the
--                      run, which is usually what a soak test wants
--   opts.stop_timeout  seconds a process gets to exit after SIGTERM (when
--                      the run ends, or its group after a death), before
--                      SIGKILL (default 5)
--   opts.poll          seconds between looks at the kill switch while the
--                      process runs (default 1; description time, as the
--                      grace is)
-- supervisor:run(kill_switch, result_reporter, [event]) -> restarts
--   starts the process and keeps it running until the kill switch is set
--   (or supervisor:stop(), or max_restarts), then stops it.
-- supervisor.restarts, supervisor.process (the running orch process, or
-- nil), supervisor.up (true from its readiness to its death: events that
-- load it may wait for it through a restart), supervisor.history (one { code =, signal =, uptime =, t = } per
-- death, uptime in real seconds, t in description seconds since t0).
-- supervise.run(opts, kill_switch, result_reporter, [event]) -> supervisor
--
-- A restart is clean: what is left of the dead process's group (workers
-- of a killed master) gets SIGTERM, then SIGKILL after stop_timeout, and
-- a listener still on opts.port (a process that left the group) is
-- reported with its pid, and ended when it is orchlua's (adopted).
--
-- A death reports "<name> exited with code N" (or "killed by signal N"),
-- with { name, pid, code, signal, uptime, restarts, stderr (its last
-- line) } and the metric "<name>.restarts".  Quick deaths in a row (each
-- within reset_after of its start) are a restart storm: reported once,
-- then again at 2, 4, 8, ... deaths ("<name>: restart storm: N deaths in
-- a row"), not once per death; "<name> recovered" (info) ends it.
--
-- Every bound here (not poll) is real time, whatever --time-scale: back-off,
-- reset_after, stop_timeout, the readiness timeout and the uptime measured
-- (a rehearsal must not turn a 2-second life into 100 s of uptime).
local orch = require "orch"

local M = {}

local Supervisor = {}
Supervisor.__index = Supervisor

-- Raises at the user's call of new or run (depth: frames below new).
local function argerror(msg, depth)
  error("orch.helpers.supervise: " .. msg, 4 + (depth or 0))
end

local KNOWN = { cmd = true, env = true, cwd = true, on_stdout = true, on_stderr = true, name = true,
                backoff = true, max_backoff = true, reset_after = true, max_restarts = true,
                level = true, stop_timeout = true, poll = true, ready = true, port = true }
local READY_KNOWN = { tcp = true, http = true, log = true, timeout = true }

local function positive(opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < 0 then
    argerror(("%s must be a number >= 0, got %s"):format(key, tostring(v)), 1)
  end
  return v
end

-- host, port of a "host:port" or a port number (loopback)
local function host_port(v)
  if math.type(v) == "integer" then return "127.0.0.1", v end
  if type(v) == "string" then
    local host, port = v:match("^%[?([^%]]*)%]?:(%d+)$")
    if host then return host, tonumber(port) end
  end
  return nil
end

local function check_ready(ready)
  if ready == nil then return nil end
  if type(ready) ~= "table" then argerror(("ready must be a table, got %s"):format(type(ready)), 1) end
  for k in pairs(ready) do
    if not READY_KNOWN[k] then
      argerror(("ready: unknown option %s (known: http, log, tcp, timeout)"):format(tostring(k)), 1)
    end
  end
  local n = (ready.tcp and 1 or 0) + (ready.http and 1 or 0) + (ready.log and 1 or 0)
  if n ~= 1 then argerror("ready needs one of tcp, http or log", 1) end
  if ready.tcp and not host_port(ready.tcp) then
    argerror(("ready.tcp must be a port or \"host:port\", got %s"):format(tostring(ready.tcp)), 1)
  end
  if ready.http and (type(ready.http) ~= "string" or not ready.http:match("^http://")) then
    argerror(("ready.http must be an http:// URL, got %s"):format(tostring(ready.http)), 1)
  end
  if ready.log and type(ready.log) ~= "string" then
    argerror(("ready.log must be a Lua pattern, got %s"):format(type(ready.log)), 1)
  end
  return ready
end

-- The port of the ready probe, if it has one.
local function ready_port(ready)
  if not ready then return nil end
  if ready.tcp then return select(2, host_port(ready.tcp)) end
  if ready.http then
    local port = ready.http:match("^http://[^/]-:(%d+)")
    return tonumber(port or 80)
  end
  return nil
end

local function new(opts)
  if type(opts) ~= "table" then argerror(("opts must be a table, got %s"):format(type(opts))) end
  for k in pairs(opts) do
    if not KNOWN[k] then argerror(("unknown option %s"):format(tostring(k))) end
  end
  if type(opts.cmd) ~= "table" or type(opts.cmd[1]) ~= "string" then
    argerror("cmd must be an argv list such as { \"prog\", \"arg\" }")
  end
  local level = opts.level or "error"
  if level ~= "error" and level ~= "info" then
    argerror(("level must be \"error\" or \"info\", got %s"):format(tostring(level)))
  end
  local max_restarts = opts.max_restarts
  if max_restarts ~= nil and (math.type(max_restarts) ~= "integer" or max_restarts < 0) then
    argerror(("max_restarts must be an integer >= 0, got %s"):format(tostring(max_restarts)))
  end
  local ready = check_ready(opts.ready)
  if opts.port ~= nil and math.type(opts.port) ~= "integer" then
    argerror(("port must be an integer, got %s"):format(tostring(opts.port)))
  end
  local self = setmetatable({
    cmd = opts.cmd, env = opts.env, cwd = opts.cwd,
    user_stdout = opts.on_stdout, user_stderr = opts.on_stderr,
    name = opts.name or opts.cmd[1]:match("([^/]+)$"),
    backoff = positive(opts, "backoff", 1),
    max_backoff = positive(opts, "max_backoff", 30),
    reset_after = positive(opts, "reset_after", 60),
    stop_timeout = positive(opts, "stop_timeout", 5),
    poll = positive(opts, "poll", 1),
    max_restarts = max_restarts,
    level = level,
    ready = ready,
    ready_timeout = ready and positive(ready, "timeout", 30),
    port = opts.port or ready_port(ready),
    restarts = 0,
    storm = 0,          -- quick deaths in a row
    history = {},
  }, Supervisor)
  -- the last stderr line goes with a death; a log readiness probe reads both
  self.on_stdout = function(line, partial)
    if self.ready_log and not self.log_seen and line:find(self.ready_log) then self.log_seen = true end
    if self.user_stdout then self.user_stdout(line, partial) end
  end
  self.on_stderr = function(line, partial)
    if line ~= "" then self.last_stderr = line end
    if self.ready_log and not self.log_seen and line:find(self.ready_log) then self.log_seen = true end
    if self.user_stderr then self.user_stderr(line, partial) end
  end
  self.ready_log = ready and ready.log
  return self
end

function M.new(opts) return new(opts) end

-- Real seconds as description seconds (the clock of every orch wait).
local function real(sec) return sec * orch.time_scale() end

-- Starts the process; nil, message when it cannot start.
function Supervisor:_start()
  self.last_stderr, self.log_seen, self.up = nil, false, false
  local ok, p = pcall(orch.spawn, { cmd = self.cmd, env = self.env, cwd = self.cwd,
                                    on_stdout = self.on_stdout, on_stderr = self.on_stderr })
  if not ok then return nil, (tostring(p):gsub("^.-:%d+: ", "")) end
  self.process = p
  self.started = orch.now()
  self.started_real = orch.net.clock()
  return p
end

-- Ends what is left of p's process group (p itself exited or not):
-- SIGTERM, then SIGKILL once stop_timeout (real) has passed.
function Supervisor:_end_group(p)
  local sys = orch.sys
  if #sys.group(p.pid) == 0 and not p:is_running() then return end
  p:kill("TERM")
  local deadline = orch.net.clock() + self.stop_timeout
  while orch.net.clock() < deadline do
    if not p:is_running() and #sys.group(p.pid) == 0 then return end
    if p:is_running() then
      p:wait(real(0.05))
    else
      orch.sleep(real(0.05))
    end
  end
  p:kill("KILL")
  p:wait(real(1))
end

-- Stops the running process: SIGTERM, then SIGKILL after stop_timeout.
function Supervisor:_kill()
  local p = self.process
  self.up = false
  if not p then return end
  self:_end_group(p)
  self.process = nil
end

-- A listener left on self.port by a dead process's descendants: reported,
-- and ended when it is orchlua's (an orphan adopted by orchlua).  Returns
-- whether the port is free.
function Supervisor:_check_port(result_reporter)
  if not self.port then return true end
  local sys = orch.sys
  local me = sys.pid()
  local held = {}
  for _, l in ipairs(sys.listeners(self.port)) do
    for _, pid in ipairs(l.pids) do held[#held + 1] = pid end
  end
  if #held == 0 then return true end
  local texts, ours = {}, {}
  for _, pid in ipairs(held) do
    local f = sys.process(pid)
    texts[#texts + 1] = f and ("%d (%s)"):format(pid, f.name) or tostring(pid)
    if f and f.ppid == me then ours[#ours + 1] = tostring(pid) end
  end
  result_reporter:error(("%s: port %d is still held by pid %s%s"):format(self.name, self.port,
    table.concat(texts, ", "), #ours > 0 and " (orphans of the dead process: ended)" or
    " (not orchlua's: the restart will fail)"), { name = self.name, port = self.port, pids = held })
  if #ours > 0 then
    orch.exec({ "kill", "-TERM", table.unpack(ours) })
    local deadline = orch.net.clock() + self.stop_timeout
    while orch.net.clock() < deadline and #sys.listeners(self.port) > 0 do orch.sleep(real(0.05)) end
    if #sys.listeners(self.port) > 0 then orch.exec({ "kill", "-KILL", table.unpack(ours) }) end
  end
  return false
end

-- Waits for the readiness probe: true, or nil, why (the process died,
-- the kill switch, the timeout).
function Supervisor:_wait_ready(p, kill_switch)
  local r = self.ready
  if not r then return true end
  local deadline = orch.net.clock() + self.ready_timeout
  local why
  local host, port
  if r.tcp then host, port = host_port(r.tcp) end
  while true do
    if r.log then
      if self.log_seen then return true end
      why = ("no line matching %q"):format(r.log)
    elseif r.tcp then
      local conn, err = orch.net.connect(host, port, { timeout = 1 })
      if conn then conn:close() return true end
      why = err
    else
      local res = require("orch.helpers.probe").http(r.http, { timeout = 1 })
      if res.ok then return true end
      why = res.error
    end
    if not p:is_running() then return nil, "exited before it was ready" end
    if kill_switch:is_set() or self.stopping then return nil, "stopping" end
    if orch.net.clock() >= deadline then
      return nil, ("not ready after %gs (real): %s"):format(self.ready_timeout, tostring(why))
    end
    p:wait(real(0.05))
  end
end

-- Asks run() to stop the process and return (from another event).
function Supervisor:stop() self.stopping = true end

local function died_text(name, code, signal)
  if code ~= nil then return ("%s exited with code %d"):format(name, code) end
  return ("%s was killed by signal %s"):format(name, tostring(signal))
end

local function is_power_of_two(n) return n > 0 and n & (n - 1) == 0 end

-- A death: one result, or in a storm one at 1, 2, 4, 8, ... deaths.
function Supervisor:_report_death(result_reporter, p, code, signal, uptime)
  local quick = uptime < self.reset_after
  self.storm = quick and self.storm + 1 or 1
  local fields = { name = self.name, pid = p.pid, code = code, signal = signal, uptime = uptime,
                   restarts = self.restarts, stderr = self.last_stderr }
  local text = died_text(self.name, code, signal)
  if self.storm == 1 then
    return result_reporter[self.level](result_reporter, text, fields)
  end
  if is_power_of_two(self.storm) then
    fields.deaths = self.storm
    result_reporter[self.level](result_reporter,
      ("%s: restart storm: %d deaths in a row, each within %gs of its start (last: %s%s)"):format(
        self.name, self.storm, self.reset_after, text, self.last_stderr and (": " .. self.last_stderr) or ""), fields)
  end
end

-- The loop of supervisor:run and supervise.run; an error is raised at the
-- line that called either (level 3: run, then its public caller).
local function run(self, kill_switch, result_reporter, event)
  if kill_switch == nil or result_reporter == nil then
    error("orch.helpers.supervise: run(kill_switch, result_reporter) needs both", 3)
  end
  local delay = self.backoff
  local first = true
  while not (kill_switch:is_set() or self.stopping) do
    self:_check_port(result_reporter)
    local p, err = self:_start()
    if not p then
      if first then error(("orch.helpers.supervise: %s: %s"):format(self.name, err), 3) end
      result_reporter:error(("%s: cannot restart: %s"):format(self.name, err), { name = self.name })
    else
      first = false
      local ok, why = self:_wait_ready(p, kill_switch)
      if ok then
        self.up = true
        if self.ready or self.restarts > 0 then
          result_reporter:info(("%s up (pid %d)"):format(self.name, p.pid),
            { name = self.name, pid = p.pid, ready_after = orch.net.clock() - self.started_real })
        end
        if event and event.ready then event:ready() end
      elseif why ~= "stopping" and p:is_running() then
        result_reporter:error(("%s: %s: restarting it"):format(self.name, why), { name = self.name, pid = p.pid })
        self:_end_group(p)
      end
      -- wait for the process, looking at the kill switch every `poll`
      local code, signal
      local recovered = false
      while true do
        -- poll is a schedule (description time): the kill switch is seen
        -- within the grace, however compressed
        code, signal = p:wait(self.poll)
        if not (code == nil and signal == "timeout") then break end
        if kill_switch:is_set() or self.stopping then
          self:_kill()
          return self.restarts
        end
        local up = orch.net.clock() - self.started_real
        if not recovered and self.storm > 1 and up >= self.reset_after then
          recovered = true
          result_reporter:info(("%s recovered after a restart storm of %d deaths"):format(self.name, self.storm),
            { name = self.name, deaths = self.storm })
          self.storm = 0
        end
      end
      self.up = false
      -- the dead process's group may live on (workers of a killed master)
      self:_end_group(p)
      self.process = nil
      local uptime = orch.net.clock() - self.started_real
      self.history[#self.history + 1] = { code = code, signal = signal, uptime = uptime, t = orch.now() }
      if kill_switch:is_set() or self.stopping then break end
      self:_report_death(result_reporter, p, code, signal, uptime)
      if uptime >= self.reset_after then delay = self.backoff end
    end
    if self.max_restarts and self.restarts >= self.max_restarts then
      result_reporter:error(("%s: gave up after %d restart%s"):format(self.name, self.restarts,
        self.restarts == 1 and "" or "s"), { name = self.name, restarts = self.restarts })
      return self.restarts
    end
    -- wait before the restart (real time); the kill switch ends it at once
    if kill_switch:wait(real(delay)) or self.stopping then break end
    delay = math.min(delay * 2, self.max_backoff)
    self.restarts = self.restarts + 1
    result_reporter:metric(self.name .. ".restarts", self.restarts, { name = self.name })
  end
  self:_kill()
  return self.restarts
end

function Supervisor:run(kill_switch, result_reporter, event)
  local restarts = run(self, kill_switch, result_reporter, event)
  return restarts
end

function M.run(opts, kill_switch, result_reporter, event)
  local s = new(opts)
  run(s, kill_switch, result_reporter, event)
  return s
end

M.Supervisor = Supervisor
return M
