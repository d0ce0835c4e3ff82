-- orch.helpers.sample: turn orch.sys figures into metrics, periodically.
--
--   local sample = require "orch.helpers.sample"
--   -- a periodic event (interval_sec: 10); the sampler lives in a fixture
--   -- so that CPU use is measured between two firings
--   orch.fixture("sampler", function(streamer)
--     return sample.new({ processes = { streamer = streamer } })
--   end)
--   function M.sample(sampler, result_reporter) sampler:sample(result_reporter) end
--
--   -- or one event for the whole run
--   function M.sampling(kill_switch, result_reporter)
--     sample.run(kill_switch, result_reporter, { interval = 10 })
--   end
--
-- sample.new([opts]) -> sampler
--   opts.system     sample the machine (default true)
--   opts.processes  { name = pid | orch process | fn() -> pid or process }
--   opts.prefix     metric prefix for the machine (default "sys"); a
--                   process's metrics are "proc.<name>.*"
--   opts.missing    "info" (default) or "error": the result when a
--                   process is not there (not started, exited, or a
--                   zombie not yet reaped: "proc.<name>: not running",
--                   never a sample of zeros).  A process caught between
--                   fork and exec (still a copy of orchlua) is skipped,
--                   with no result: it has no figures of its own yet
-- sampler:sample(result_reporter) -> figures
--   reports, as metrics:
--     sys.cpu.percent, sys.cpu.user, sys.cpu.system, sys.cpu.iowait
--                     (percent of all CPUs since the previous sample)
--     sys.mem.used, sys.mem.available (bytes), sys.mem.percent,
--     sys.swap.used (bytes), sys.load1, sys.load5, sys.load15
--     proc.<name>.rss, proc.<name>.vms (bytes), proc.<name>.threads,
--     proc.<name>.fds, proc.<name>.cpu_percent (of one CPU, since the
--                     previous sample of the same pid)
--   CPU figures are rates: they start with the second sample.  Returns
--   { cpu =, memory =, load = { l1, l5, l15 }, processes = { name = ... } }
--   with orch.sys's tables, whether reported or not.
-- sample.run(kill_switch, result_reporter, [opts]) -> sampler
--   opts as for new, plus opts.interval (seconds, default 10): samples
--   at once, then every interval until the kill switch is set.
--
-- Needs orch.sys, i.e. the orchlua host; outside it, new() says so.
local orch = require "orch"

local M = {}

local Sampler = {}
Sampler.__index = Sampler

local KNOWN = { system = true, processes = true, prefix = true, missing = true, interval = true }

local function argerror(msg, depth)
  error("orch.helpers.sample: " .. msg, 3 + (depth or 0))
end

local function get_sys()
  local ok, sys = pcall(function() return orch.sys end)
  if not ok or type(sys) ~= "table" then
    error("orch.helpers.sample needs orch.sys, which only the orchlua host provides " ..
          "(run the event with orchlua)", 4)
  end
  return sys
end

local function new(opts, depth)
  opts = opts or {}
  if type(opts) ~= "table" then argerror(("opts must be a table, got %s"):format(type(opts)), depth) end
  for k in pairs(opts) do
    if not KNOWN[k] then argerror(("unknown option %s"):format(tostring(k)), depth) end
  end
  local missing = opts.missing or "info"
  if missing ~= "info" and missing ~= "error" then
    argerror(("missing must be \"info\" or \"error\", got %s"):format(tostring(missing)), depth)
  end
  local procs = {}
  for name, target in pairs(opts.processes or {}) do
    local ty = type(target)
    if type(name) ~= "string" or not (ty == "number" or ty == "function" or ty == "table" or ty == "userdata") then
      argerror(("processes.%s: a pid, a process or a function expected, got %s"):format(tostring(name), ty), depth)
    end
    procs[#procs + 1] = { name = name, target = target }
  end
  table.sort(procs, function(a, b) return a.name < b.name end)
  local sys = get_sys()
  local me = sys.process(sys.pid())
  return setmetatable({
    sys = sys,
    own_name = me and me.name,
    system = opts.system ~= false,
    procs = procs,
    prefix = opts.prefix or "sys",
    missing = missing,
    prev_cpu = nil,       -- the machine's previous cpu_times
    prev_proc = {},       -- name -> previous reading
  }, Sampler)
end

function M.new(opts) return new(opts, 1) end

-- CPU use between two cpu_times readings, in percent of all CPUs.
local function cpu_delta(a, b)
  local total = b.total - a.total
  if total <= 0 then return nil end
  local k = 100 / total
  return {
    percent = (b.busy - a.busy) * k,
    user = ((b.user + b.nice) - (a.user + a.nice)) * k,
    system = ((b.system + b.irq + b.softirq) - (a.system + a.irq + a.softirq)) * k,
    iowait = (b.iowait - a.iowait) * k,
    interval = b.time - a.time,
  }
end

function Sampler:_system(rr, out)
  local sys, p = self.sys, self.prefix
  local times = sys.cpu_times()
  if times then
    if self.prev_cpu then
      local c = cpu_delta(self.prev_cpu, times)
      if c then
        out.cpu = c
        rr:metric(p .. ".cpu.percent", c.percent)
        rr:metric(p .. ".cpu.user", c.user)
        rr:metric(p .. ".cpu.system", c.system)
        rr:metric(p .. ".cpu.iowait", c.iowait)
      end
    end
    self.prev_cpu = times
  end
  local mem = sys.memory()
  if mem then
    out.memory = mem
    rr:metric(p .. ".mem.used", mem.used)
    rr:metric(p .. ".mem.available", mem.available)
    rr:metric(p .. ".mem.percent", mem.percent)
    rr:metric(p .. ".swap.used", mem.swap_total - mem.swap_free)
  end
  local l1, l5, l15 = sys.loadavg()
  if l1 then
    out.load = { l1, l5, l15 }
    rr:metric(p .. ".load1", l1)
    rr:metric(p .. ".load5", l5)
    rr:metric(p .. ".load15", l15)
  end
end

function Sampler:_process(rr, entry, out)
  local target = entry.target
  if type(target) == "function" then target = target() end
  local pid = type(target) == "number" and target or (target ~= nil and target.pid)
  local name = entry.name
  local fig, err
  if pid then
    fig, err = self.sys.process(pid)
  else
    err = "not running"
  end
  if fig and (fig.state == "Z" or fig.state == "X") then
    -- just killed, not yet reaped: its zeros are no figures
    fig, err = nil, "not running (exited)"
  elseif fig and fig.name == self.own_name and fig.pid ~= self.sys.pid() then
    -- forked, not yet exec'd: orchlua's copy, not the program
    self.prev_proc[name] = nil
    return
  end
  if not fig then
    self.prev_proc[name] = nil
    if pid and not tostring(err):find("not running", 1, true) then err = "not running (" .. tostring(err) .. ")" end
    rr[self.missing](rr, ("proc.%s: %s"):format(name, err), { process = name, pid = pid })
    return
  end
  local prev = self.prev_proc[name]
  if prev and prev.pid == fig.pid and fig.time > prev.time then
    fig.cpu_percent = math.max(0, (fig.cpu_time - prev.cpu_time) * 100 / (fig.time - prev.time))
  else
    fig.cpu_percent = nil   -- a rate needs two readings of the same process
  end
  self.prev_proc[name] = fig
  out.processes[name] = fig
  local p, fields = "proc." .. name, { pid = fig.pid }
  rr:metric(p .. ".rss", fig.rss, fields)
  rr:metric(p .. ".vms", fig.vms, fields)
  rr:metric(p .. ".threads", fig.threads, fields)
  if fig.fds then rr:metric(p .. ".fds", fig.fds, fields) end
  if fig.cpu_percent then rr:metric(p .. ".cpu_percent", fig.cpu_percent, fields) end
end

function Sampler:sample(result_reporter)
  if result_reporter == nil then error("orch.helpers.sample: sample(result_reporter) needs the reporter", 2) end
  local out = { processes = {} }
  if self.system then self:_system(result_reporter, out) end
  for _, entry in ipairs(self.procs) do self:_process(result_reporter, entry, out) end
  return out
end

function M.run(kill_switch, result_reporter, opts)
  opts = opts or {}
  local interval = type(opts) == "table" and opts.interval or 10
  if type(interval) ~= "number" or interval ~= interval or interval <= 0 then
    argerror(("interval must be a number > 0, got %s"):format(tostring(interval)))
  end
  local s = new(opts, 1)
  repeat
    s:sample(result_reporter)
  until kill_switch:wait(interval)
  return s
end

M.Sampler = Sampler
return M
