-- orch.output.console: what a person watching the run reads.  Levels:
-- 0 (-q) failures, errors and the summary; 1 (default) one line per
-- invocation and per result; 2 (-v) also debug logs and tracebacks of
-- every failure in full.
local core = require "orch.core"
local json = require "orch.output.json"
local plan = require "orch.plan"

local M = {}
M.__index = M

function M.new(opts)
  local self = setmetatable({ level = opts.level or 1, out = core.stdio("stdout"),
                              err = core.stdio("stderr") }, M)
  return self
end

function M:line(s) self.out:write(s, "\n") end

function M:start(run)
  self.run = run
  if self.level >= 1 then
    self:line(("orchlua: %s: %g h, %d event%s%s, started %s"):format(
      run.desc.test_name, run.total / 3600, #run.events, #run.events == 1 and "" or "s",
      run.scale ~= 1 and (", time scale %g"):format(run.scale) or "", core.iso8601(run.t0_wall)))
  end
end

function M:phase(msg)
  self:line(("%s  orchlua: %s"):format(plan.clock(core.now()), msg))
end

local function first_line(s)
  s = tostring(s or "")
  return s:match("^[^\n]*")
end

function M:invocation(r)
  if r.status == "ok" then
    if self.level < 1 then return end
    self:line(("%s  %s #%d %s ok %.3fs"):format(plan.clock(r.scheduled), r.id, r.iteration, r.phase, r.duration))
    return
  end
  self:line(("%s  %s #%d %s %s after %.3fs: %s"):format(plan.clock(r.scheduled), r.id, r.iteration,
    r.phase, r.status:upper(), r.duration, first_line(r.error)))
  if self.level >= 2 or (r.error and r.status == "error") then
    local rest = tostring(r.error or ""):match("^[^\n]*\n(.*)$")
    if rest and self.level >= 2 then
      self:line("    " .. rest:gsub("\n", "\n    "))
    end
  end
end

function M:skipped(ev, k, phase, scheduled, reason)
  if self.level < 1 then return end
  self:line(("%s  %s #%d %s skipped: %s"):format(plan.clock(scheduled), ev.id, k, phase, reason))
end

function M:result(r)
  if r.level ~= "error" and self.level < 1 then return end
  local data = r.data
  if type(data) ~= "string" then data = json.encode(data) end
  self:line(("%s  %s [%s] %s"):format(plan.clock(r.t or 0), r.event or "-", r.level or "info", data))
end

function M:log(level, who, msg)
  if level == "debug" and self.level < 2 then return end
  if level == "info" and self.level < 1 then return end
  self:line(("%s  %s %s: %s"):format(plan.clock(core.now()), who or "-", level, msg))
end

function M:error(msg)
  self.err:write("orchlua: ", tostring(msg), "\n")
end

local function ms(v)
  if v == nil then return "-" end
  return ("%.1fms"):format(v)
end

local function sec(v)
  if v == nil then return "-" end
  if v < 1 then return ("%.1fms"):format(v * 1000) end
  return ("%.2fs"):format(v)
end

function M:summary(run, status)
  local rows = { { "event", "runs", "fail", "skip", "tmout", "dur p50", "dur p99", "dur max", "late p99", "late max" } }
  local tot = { runs = 0, failures = 0, skipped = 0, timeouts = 0 }
  for _, ev in ipairs(run.events) do
    local st = run.per_event[ev.id]
    rows[#rows + 1] = { ev.id, tostring(st.runs), tostring(st.failures), tostring(st.skipped), tostring(st.timeouts),
      sec(st.duration:percentile(50)), sec(st.duration:percentile(99)), sec(st.duration.max),
      ms(st.lateness:percentile(99)), ms(st.lateness.max) }
    for k in pairs(tot) do tot[k] = tot[k] + st[k] end
  end
  rows[#rows + 1] = { "all", tostring(tot.runs), tostring(tot.failures), tostring(tot.skipped), tostring(tot.timeouts),
    "", "", "", "", "" }
  local w = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do w[i] = math.max(w[i] or 0, #c) end
  end
  self:line("")
  self:line(("summary of %s (%s, lateness in real ms):"):format(run.desc.test_name, run.stop_reason or "ended"))
  for ri, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(r) do
      cells[i] = i == 1 and (c .. (" "):rep(w[i] - #c)) or ((" "):rep(w[i] - #c) .. c)
    end
    self:line("  " .. table.concat(cells, "  "))
    if ri == 1 or ri == #rows - 1 then
      local dash = {}
      for i = 1, #w do dash[i] = ("-"):rep(w[i]) end
      self:line("  " .. table.concat(dash, "  "))
    end
  end
  self:line(("results: %d (%d error%s)"):format(run.results, run.error_results, run.error_results == 1 and "" or "s"))
  for _, e in ipairs(run.errors) do self:line("run error: " .. first_line(e)) end
  local why
  if status == 0 then why = "every invocation succeeded and no error was reported"
  elseif status == 1 then why = ("%d failed invocation%s, %d error result%s, %d run error%s"):format(
    tot.failures, tot.failures == 1 and "" or "s", run.error_results, run.error_results == 1 and "" or "s",
    #run.errors, #run.errors == 1 and "" or "s")
  else why = "stopped by signal " .. (status - 128) end
  if run.opts.report_path then self:line("report: " .. run.opts.report_path) end
  if run.opts.junit_path then self:line("junit: " .. run.opts.junit_path) end
  self:line(("exit %d: %s"):format(status, why))
end

function M:close()
  self.out:flush()
  self.err:flush()
end

return M
