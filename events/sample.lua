-- events/sample.lua: process and machine figures, sampled while another
-- event runs a program.
--
--   run_program(cmd, name)     runs cmd (an argv list) until it ends or the
--                              run does; registers it as `name` in the
--                              `programs` fixture while it runs
--   sample_process(target)     every interval: the figures of the program
--                              registered as `target` (or of the pid
--                              `target`) and of the machine, reported with
--                              result_reporter:metric
--
-- A description pairs them:
--   { "name": "run_program", "params": { "cmd": ["sh", "-c", "..."], "name": "load" } },
--   { "name": "sample_process", "interval_sec": 10, "params": { "target": "load" } }
--
-- CPU percentages are over the time since the previous sample (the
-- sampler keeps the last reading), so they cover the whole interval
-- without the event waiting; the first sample of a process is its average
-- since it started, the first machine sample the average since boot.
local orch = require "orch"

local M = {}

-- name -> running orch.Process
orch.fixture("programs", function() return {} end)

-- the previous readings: pid -> process reading, and the machine's
orch.fixture("samples", function() return { processes = {} } end)

-- Polls the program and the kill switch every poll_sec (description time).
local POLL_SEC = 1

function M.run_program(cmd, name, programs, kill_switch, result_reporter)
  local lines, last_err = 0, nil
  local p = orch.spawn{
    cmd = cmd,
    on_stdout = function() lines = lines + 1 end,
    on_stderr = function(line) last_err = line end,
  }
  programs[name] = p
  result_reporter:info("program started", { name = name, pid = p.pid })
  local code, sig
  repeat
    code, sig = p:wait(POLL_SEC)
  until code ~= nil or math.type(sig) == "integer" or kill_switch:is_set()
  if code == nil and sig == "timeout" then   -- the run is ending: stop it
    p:terminate()
    code, sig = p:wait()
  end
  programs[name] = nil
  result_reporter:info("program ended", { name = name, pid = p.pid, code = code, signal = sig,
                                          stdout_lines = lines, last_stderr = last_err })
end

local function rate(now, before, field)
  local dt = now.time - before.time
  if dt <= 0 then return 0 end
  return (now[field] - before[field]) / dt * 100
end

function M.sample_process(target, programs, samples, result_reporter)
  local sys = orch.sys
  local proc = programs[target] or (math.type(target) == "integer" and target) or nil
  -- the machine, whatever runs
  local ct = sys.cpu_times()
  if ct then
    local before = samples.machine
    local pct
    if before and ct.total > before.total then
      pct = (ct.busy - before.busy) / (ct.total - before.total) * 100
    else
      pct = ct.busy / ct.total * 100
    end
    samples.machine = ct
    result_reporter:metric("system.cpu_percent", pct, { ncpu = ct.ncpu })
  end
  local mem = sys.memory()
  if mem then
    result_reporter:metric("system.mem_total_bytes", mem.total)
    result_reporter:metric("system.mem_available_bytes", mem.available)
  end
  local l1, l5, l15 = sys.loadavg()
  if l1 then result_reporter:metric("system.load1", l1, { load5 = l5, load15 = l15 }) end
  if proc == nil then
    result_reporter:info("sample_process: nothing to sample", { target = target })
    return
  end
  local r, err = sys.process(proc)
  if not r then
    result_reporter:info("sample_process: " .. err, { target = target })
    return
  end
  local before = samples.processes[r.pid]
  local cpu = before and rate(r, before, "cpu_time") or r.cpu_percent
  samples.processes[r.pid] = r
  local fields = { target = target, pid = r.pid, name = r.name }
  result_reporter:metric("process.cpu_percent", cpu, fields)
  result_reporter:metric("process.rss_bytes", r.rss, fields)
  result_reporter:metric("process.threads", r.threads, fields)
  if r.fds then result_reporter:metric("process.fds", r.fds, fields) end
end

return M
