-- orch.output.console: what a person watching the run reads.  Levels:
-- 0 (-qq) failures, errors and the summary; -q the same plus a one-line
-- status now and then (brief, orch.output.status); 1 (default) one line per
-- invocation and per result; 2 (-v) also debug logs and tracebacks of
-- every failure in full.
--
-- On a terminal the lines scroll above a live status area (see
-- orch.output.progress), and failures are in colour.  Not a TTY: no area,
-- no colour.  NO_COLOR: no colour.  TERM=dumb: neither.  --no-progress:
-- no area.
local core = require "orch.core"
local json = require "orch.output.json"
local plan = require "orch.plan"
local report = require "orch.report"
local Progress = require "orch.output.progress"
local words = require "orch.output.lines"
local live = require "orch.output.status"

local M = {}
M.__index = M

-- opts: level, progress (false: --no-progress), term (what
-- Progress.terminal() says; asked here when not given).
function M.new(opts)
  local term = opts.term or Progress.terminal()
  local self = setmetatable({ level = opts.level or 1, brief = opts.brief, out = core.stdio("stdout"),
                              err = core.stdio("stderr"), term = term, color = term.color,
                              want_progress = opts.progress ~= false }, M)
  return self
end

function M:paint(c, s) return Progress.paint(self.color, c, s) end

-- What events say, shown with control bytes as \xNN: an escape sequence
-- in a message must not drive the user's terminal (tabs and newlines stay).
local function shown(s)
  return (tostring(s):gsub("[%z\1-\8\11-\31\127]", function(c) return ("\\x%02x"):format(c:byte()) end))
end

function M:line(s)
  if self.progress then
    self.progress:above(s)
  else
    self.out:write(s, "\n")
  end
end

function M:start(run)
  self.run = run
  if self.level >= 1 then
    self:line(("orchlua: %s: %g h, %d event%s%s, started %s"):format(
      run.desc.test_name, run.total / 3600, #run.events, #run.events == 1 and "" or "s",
      run.scale ~= 1 and (", time scale %g"):format(run.scale) or "", core.iso8601(run.t0_wall)))
  end
  if self.want_progress and self.term.redraw then
    self.progress = Progress.new(self, self.term)
    self.progress:start(run)
  end
  if self.brief and not self.progress then live.start(self, run) end
end

-- The reporter is done: nothing of the console's may keep the loop.
function M:stop_timers()
  live.stop(self)
end

function M:phase(msg)
  self:line(self:paint("bold", ("%s  orchlua: %s"):format(plan.clock(core.now()), msg)))
end

local function first_line(s)
  s = tostring(s or "")
  return s:match("^[^\n]*")
end

function M:invocation(r)
  if self.progress then self.progress:note_invocation(r) end
  if r.status == "ok" then
    if self.level < 1 then return end
    self:line(("%s  %s #%d %s ok %.3fs"):format(plan.clock(r.scheduled), r.id, r.iteration, r.phase, r.duration))
    return
  end
  self:line(self:paint("red", ("%s  %s #%d %s %s after %.3fs: %s"):format(plan.clock(r.scheduled), r.id,
    r.iteration, r.phase, r.status:upper(), r.duration, shown(first_line(r.error)))))
  if self.level >= 2 then
    local rest = tostring(r.error or ""):match("^[^\n]*\n(.*)$")
    if rest then self:line("    " .. shown(rest):gsub("\n", "\n    ")) end
  end
end

function M:skipped(ev, k, phase, scheduled, reason)
  if self.level < 1 then return end
  self:line(self:paint("yellow", ("%s  %s #%d %s skipped: %s"):format(plan.clock(scheduled), ev.id, k, phase, reason)))
end

function M:result(r)
  live.note_result(self, r)
  if r.level == "error" and self.progress then
    local d = r.data
    self.progress:note_error(r.event or "-", type(d) == "table" and (d.error or d.message or json.encode(d))
      or tostring(d), r.t)
  end
  if r.level ~= "error" and self.level < 1 then return end
  local s = ("%s  %s"):format(plan.clock(r.t or 0), shown(words.result_text(r)))
  self:line(r.level == "error" and self:paint("red", s) or s)
end

function M:log(level, who, msg)
  if level == "debug" and self.level < 2 then return end
  if level == "info" and self.level < 1 then return end
  local s = ("%s  %s %s: %s"):format(plan.clock(core.now()), shown(who or "-"), level, shown(msg))
  if level == "error" then
    if self.progress then self.progress:note_error(who, msg) end
    s = self:paint("red", s)
  elseif level == "warn" then
    s = self:paint("yellow", s)
  end
  self:line(s)
end

function M:error(msg)
  local p = self.progress
  if p then
    p:note_error("orchlua", msg)
    p:before_stderr()
  end
  self.err:write("orchlua: ", shown(msg), "\n")
  if p then p:after_stderr() end
end

-- the summary lists every check up to this many, else the failing ones
local MAX_CHECKS = 50

local function plural(n, word) return ("%d %s%s"):format(n, word, n == 1 and "" or "s") end

-- The end of the run: the table per event, totals, errors, where the
-- reports are, and why the exit status is what it is.
function M:summary(run, status)
  if self.progress then
    self.progress:finish()
    self.progress = nil
  end
  -- one event's figures at a time, made as the layout asks for its row
  -- (twice: widths, then text), the line written as soon as it is made:
  -- at the end of a large run no table of its rows exists (its peak RSS).
  -- Only the figures of events with errors are kept (their first
  -- messages, the errors checks own).
  local list = {}
  local function figures(i)
    local ev = run.events[i]
    if not ev then return nil end
    local st = words.real_durations(run:summary_of(ev.id), run.scale)
    st.id = ev.id
    if i % 512 == 0 then collectgarbage("step") end   -- the figures are garbage once in their row
    return st
  end
  local rows, tot = report.summary_source(figures, function(st)
    if st.errors > 0 then list[#list + 1] = st end
  end)
  -- on a terminal, within its width (no wrapped rows): fitted as a whole;
  -- a pipe keeps them whole
  if self.term.redraw then
    local all = {}
    for ri = 1, math.huge do
      local row = rows(ri)
      if not row then break end
      all[ri] = row
    end
    rows = words.fit_rows(all, math.max(60, self.term.cols) - 1)
  end
  local now = core.now()
  self:line("")
  self:line(self:paint("bold", ("summary of %s (%s after %s of %s):"):format(
    run.desc.test_name, run.stop_reason or "ended", Progress.hms(now), Progress.hms(run.total))))
  -- every duration says its clock (DESIGN, --time-scale)
  self:line(run.scale ~= 1 and ("  times in real seconds (description time ran %gx faster)"):format(run.scale)
    or "  times in real seconds")
  -- without colour there is nothing to paint: no call per cell
  report.table_lines(rows, { total = true, emit = function(l) self:line(l) end,
                             paint = self.color and function(ri, ci, cell, c)
    if ri == 1 then return self:paint("bold", cell) end
    if (ci == 3 or ci == 4 or ci == 6) and c ~= "0" and c ~= "" then return self:paint("boldred", cell) end
    if ci == 5 and c ~= "0" and c ~= "" then return self:paint("yellow", cell) end
  end or nil })
  self:line(("results: %d (%s)"):format(run.results, plural(run.error_results, "error")))
  -- the first error of each failing event, and the run's own
  for _, st in ipairs(list) do
    if st.errors > 0 and st.messages and st.messages[1] then
      local results = st.errors - st.failures
      local what = results == 0 and plural(st.failures, "failure")
        or st.failures == 0 and plural(results, "error result")
        or ("%s (%s, %s)"):format(plural(st.errors, "error"), plural(st.failures, "failure"),
          plural(results, "error result"))
      self:line(self:paint("red", ("  %s: %s, first: %s"):format(st.id, what, shown(first_line(st.messages[1])))))
    end
  end
  for _, e in ipairs(run.errors) do self:line(self:paint("red", "run error: " .. shown(first_line(e)))) end
  local failed_checks, owned_errors = 0, 0
  if run.checks then
    for _, st in ipairs(list) do
      if run.checks:owns(st.id) then owned_errors = owned_errors + st.errors end
    end
    failed_checks = self:checks_table(run.checks)
  end
  local o = run.opts
  if o.report_path then self:line("report: " .. o.report_path) end
  local unwritten = run.unwritten or {}   -- left out for a signal (Run:interrupted)
  if o.junit_path and not unwritten["--junit"] then self:line("junit: " .. o.junit_path) end
  if o.html_path and not unwritten["--html"] then self:line("html: " .. o.html_path) end
  -- error results a check owns are judged by it, not counted as a cause
  local why = report.exit_reason(status, { failures = tot.failures,
                                           error_results = run.error_results - (run.owned_error_results or 0),
                                           run_errors = #run.errors, failed_checks = failed_checks,
                                           owned_errors = owned_errors })
  if status > 128 then
    local twice = tostring(run.cancelled_reason or ""):find("twice", 1, true)
    why = why .. (run.signal_at_end and "; it came during the final writes, after the run had ended"
      or twice and "; a second signal skipped the teardown and the grace period"
      or "; stopped in order: teardown, kill switch, grace")
  end
  self:line(self:paint(status == 0 and "boldgreen" or "boldred", ("exit %d: %s"):format(status, why)))
end

-- The summary's checks: every one up to MAX_CHECKS, else the failing ones
-- and a count (one per event of 10,000).  Returns how many failed the run.
function M:checks_table(checks)
  local listed, failing, failed = checks:listing(MAX_CHECKS)
  self:line(#listed < checks.n and ("checks: %d, %d not passing (%d shown)"):format(checks.n, failing, #listed)
    or "checks:")
  if #listed == 0 then return failed end
  local paint = self.color and function(ri, ci, cell, c)
    if ri == 1 then return self:paint("bold", cell) end
    if ci == 5 then
      if c:find("^pass") then return self:paint("green", cell) end
      if c:find("^warn") then return self:paint("yellow", cell) end
      return self:paint("boldred", cell)
    end
  end or nil
  local rows = report.check_rows(listed)
  for _, l in ipairs(report.table_lines(rows, { left = { [2] = true, [5] = true }, paint = paint })) do
    self:line(l)
  end
  return failed
end

-- A check changed to a failing state (fail, warn), while the run goes on.
function M:check(c)
  if self.level < 0 then return end
  local s = ("check %s: %s (%s %s, limit %s)"):format(c.name, c.status, c.stat,
    report.check_number(c.value), report.check_limit(c))
  local p = self.progress
  if p and p.note_error and c.status == "fail" then p:note_error("check", s) end
  self:line(self:paint(c.status == "fail" and "red" or "yellow", s))
end

function M:close()
  if self.progress then
    self.progress:finish()
    self.progress = nil
  end
  self.out:flush()
  self.err:flush()
end

return M
