-- orch.helpers.supervise: keep a process running for the whole soak run,
-- restarting it when it dies and reporting every restart.
--
--   local supervise = require "orch.helpers.supervise"
--   function M.streamer(kill_switch, result_reporter)     -- at_startup
--     supervise.run({ name = "streamer", cmd = { "./streamer", "--port", "9000" } },
--                   kill_switch, result_reporter)
--   end
--
-- supervise.new(opts) -> supervisor
--   opts.cmd           argv list (required); opts.env, opts.cwd,
--                      opts.on_stdout, opts.on_stderr: as for orch.spawn
--   opts.name          names the process in results and metrics (default:
--                      the program's base name)
--   opts.backoff       seconds before the first restart (default 1); each
--                      quick death doubles it, up to opts.max_backoff (30)
--   opts.reset_after   a process that ran this long restarts after
--                      `backoff` again (default 60)
--   opts.max_restarts  give up after this many restarts (default: never):
--                      reports an error and run() returns
--   opts.level         "error" (default) or "info": the level of the
--                      result for each death.  An error result fails the
--                      run, which is usually what a soak test wants
--   opts.stop_timeout  seconds a process gets to exit after SIGTERM when the
--                      run ends, before SIGKILL (default 5)
--   opts.poll          seconds between looks at the kill switch while the
--                      process runs (default 1)
-- supervisor:run(kill_switch, result_reporter) -> restarts
--   starts the process and keeps it running until the kill switch is set
--   (or supervisor:stop(), or max_restarts), then stops it.
-- supervisor.restarts, supervisor.process (the running orch process, or
-- nil), supervisor.history (one { code =, signal =, uptime =, t = } per
-- death, t in description seconds since t0).
-- supervise.run(opts, kill_switch, result_reporter) -> supervisor
--
-- Each death reports "<name> exited with code N" (or "killed by signal
-- N"), with { name, pid, code, signal, uptime, restarts } and the metric
-- "<name>.restarts".  Times are description seconds (orch.sleep's clock).
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
                level = true, stop_timeout = true, poll = true }

local function positive(opts, key, default)
  local v = opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < 0 then
    argerror(("%s must be a number >= 0, got %s"):format(key, tostring(v)), 1)
  end
  return v
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
  return setmetatable({
    cmd = opts.cmd, env = opts.env, cwd = opts.cwd,
    on_stdout = opts.on_stdout, on_stderr = opts.on_stderr,
    name = opts.name or opts.cmd[1]:match("([^/]+)$"),
    backoff = positive(opts, "backoff", 1),
    max_backoff = positive(opts, "max_backoff", 30),
    reset_after = positive(opts, "reset_after", 60),
    stop_timeout = positive(opts, "stop_timeout", 5),
    poll = positive(opts, "poll", 1),
    max_restarts = max_restarts,
    level = level,
    restarts = 0,
    history = {},
  }, Supervisor)
end

function M.new(opts) return new(opts) end

-- Starts the process; nil, message when it cannot start.
function Supervisor:_start()
  local ok, p = pcall(orch.spawn, { cmd = self.cmd, env = self.env, cwd = self.cwd,
                                    on_stdout = self.on_stdout, on_stderr = self.on_stderr })
  if not ok then return nil, (tostring(p):gsub("^.-:%d+: ", "")) end
  self.process = p
  self.started = orch.now()
  return p
end

-- Stops the running process: SIGTERM, then SIGKILL after stop_timeout.
function Supervisor:_kill()
  local p = self.process
  if not p then return end
  p:kill()
  local code, why = p:wait(self.stop_timeout)
  if code == nil and why == "timeout" then
    p:kill("KILL")
    p:wait()
  end
  self.process = nil
end

-- Asks run() to stop the process and return (from another event).
function Supervisor:stop() self.stopping = true end

local function died_text(name, code, signal)
  if code ~= nil then return ("%s exited with code %d"):format(name, code) end
  return ("%s was killed by signal %s"):format(name, tostring(signal))
end

-- The loop of supervisor:run and supervise.run; an error is raised at the
-- line that called either (level 3: run, then its public caller).
local function run(self, kill_switch, result_reporter)
  if kill_switch == nil or result_reporter == nil then
    error("orch.helpers.supervise: run(kill_switch, result_reporter) needs both", 3)
  end
  local delay = self.backoff
  local first = true
  while not (kill_switch:is_set() or self.stopping) do
    local p, err = self:_start()
    if not p then
      if first then error(("orch.helpers.supervise: %s: %s"):format(self.name, err), 3) end
      result_reporter:error(("%s: cannot restart: %s"):format(self.name, err), { name = self.name })
    else
      first = false
      -- wait for the process, looking at the kill switch every `poll`
      local code, signal
      while true do
        code, signal = p:wait(self.poll)
        if not (code == nil and signal == "timeout") then break end
        if kill_switch:is_set() or self.stopping then
          self:_kill()
          return self.restarts
        end
      end
      self.process = nil
      local uptime = orch.now() - self.started
      self.history[#self.history + 1] = { code = code, signal = signal, uptime = uptime, t = orch.now() }
      if kill_switch:is_set() or self.stopping then break end
      local fields = { name = self.name, pid = p.pid, code = code, signal = signal, uptime = uptime,
                       restarts = self.restarts }
      result_reporter[self.level](result_reporter, died_text(self.name, code, signal), fields)
      if uptime >= self.reset_after then delay = self.backoff end
    end
    if self.max_restarts and self.restarts >= self.max_restarts then
      result_reporter:error(("%s: gave up after %d restart%s"):format(self.name, self.restarts,
        self.restarts == 1 and "" or "s"), { name = self.name, restarts = self.restarts })
      return self.restarts
    end
    -- wait before the restart; the kill switch ends the wait at once
    if kill_switch:wait(delay) or self.stopping then break end
    delay = math.min(delay * 2, self.max_backoff)
    self.restarts = self.restarts + 1
    result_reporter:metric(self.name .. ".restarts", self.restarts, { name = self.name })
  end
  self:_kill()
  return self.restarts
end

function Supervisor:run(kill_switch, result_reporter)
  local restarts = run(self, kill_switch, result_reporter)
  return restarts
end

function M.run(opts, kill_switch, result_reporter)
  local s = new(opts)
  run(s, kill_switch, result_reporter)
  return s
end

M.Supervisor = Supervisor
return M
