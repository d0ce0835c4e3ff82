-- orch.output.progress: the live status area at the bottom of a terminal.
--
-- One block of lines, redrawn in place: the elapsed and total description
-- time with a bar, runs/failures/skipped/error results per event (every
-- one when they fit in half the terminal, else the failing, the running
-- and the busiest), the next firing (with the real time to it under
-- --time-scale), runs and results per real second, and the last error.
-- Console lines go through above(): the area is erased, the line
-- written, and the area drawn again on the next loop iteration, so
-- lines scroll above it and it never tears.  Its content is rendered at
-- most five times a second by a core.timer, which it closes itself once
-- the run's reporter is done (an open repeating timer would keep the loop,
-- and so the run, alive).
--
-- Only on a terminal: the console decides with M.terminal() (stdout a TTY,
-- TERM set and not "dumb"; colour unless NO_COLOR is set, as no-color.org
-- says) and --no-progress.
local core = require "orch.core"
local plan = require "orch.plan"
local report = require "orch.report"
local status = require "orch.output.status"

local M = {}
M.__index = M

local RENDER_SEC = 0.2   -- real seconds between two renders of the content
local TICK_SEC = 0.25    -- real seconds between ticks while running
local STOP_TICK_SEC = 0.05 -- while stopping: notices the end of the run sooner

-- ---- the terminal ------------------------------------------------------

local function env_nonempty(getenv, name)
  local v = getenv(name)
  if v == nil or v == "" then return nil end
  return v
end

-- What the terminal on stdout allows: {tty, redraw, color, utf8, cols,
-- rows}.  Asked once, before the run starts.
function M.terminal(getenv, is_tty)
  getenv = getenv or os.getenv
  local tty, rows, cols = require("orch.fs").terminal()
  if is_tty ~= nil then tty = is_tty end
  local term = env_nonempty(getenv, "TERM")
  local dumb = term == nil or term == "dumb"
  local t = { tty = tty, redraw = tty and not dumb,
              color = tty and not dumb and env_nonempty(getenv, "NO_COLOR") == nil }
  local locale = env_nonempty(getenv, "LC_ALL") or env_nonempty(getenv, "LC_CTYPE")
    or env_nonempty(getenv, "LANG") or ""
  t.utf8 = locale:upper():find("UTF%-?8") ~= nil
  t.rows, t.cols = 24, 80
  if t.redraw then
    if rows > 0 and cols > 0 then t.rows, t.cols = rows, cols end
    t.cols = tonumber(getenv("COLUMNS") or "") or t.cols
    t.rows = tonumber(getenv("LINES") or "") or t.rows
  end
  return t
end

local SGR = { bold = "1", dim = "2", red = "31", green = "32", yellow = "33", blue = "34", cyan = "36",
              boldred = "1;31", boldgreen = "1;32" }

-- Paints s in colour c when colours are on.
function M.paint(color_on, c, s)
  if not color_on or c == nil or s == "" then return s end
  return "\27[" .. SGR[c] .. "m" .. s .. "\27[0m"
end

-- ---- the area ----------------------------------------------------------

function M.new(console, term)
  return setmetatable({ console = console, out = console.out, err = console.err, term = term,
                        drawn = 0, cache = nil, rendered_ns = 0, last = {}, samples = {},
                        last_error = nil }, M)
end

local function tick_desc(run, real) return real * run.scale end

function M:start(run)
  self.run = run
  self.timer = core.timer(function() self:tick() end)
  self.period = TICK_SEC
  self.timer:start(0, tick_desc(run, self.period))
  -- a terminal's stdout is line-buffered: one write(2) per line would let
  -- the terminal show a half-drawn area (and a ^C echo land inside it).
  -- Fully buffered, the core flushes it once per loop iteration.
  io.stdout:setvbuf("full", 1 << 16)
  -- a print() from an event is a line like any other
  self.saved_print = print
  _G.print = function(...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    self:above(table.concat(parts, "\t"))
  end
end

-- The escape sequence that erases the drawn area and leaves the cursor
-- where its first line was.
function M:erase_seq()
  if self.drawn == 0 then return "" end
  return "\r" .. (self.drawn > 1 and ("\27[" .. (self.drawn - 1) .. "A") or "") .. "\27[J"
end

function M:erase()
  if self.drawn > 0 then
    self.out:write(self:erase_seq())
    self.drawn = 0
  end
end

-- Draws again on the next loop iteration (after the lines written in this one).
function M:soon()
  if self.soon_armed or not self.timer then return end
  self.soon_armed = true
  self.timer:start(0, tick_desc(self.run, self.period))
end

-- A console line: above the area.
function M:above(s)
  if self.drawn > 0 then
    self.out:write(self:erase_seq(), s, "\n")
    self.drawn = 0
  else
    self.out:write(s, "\n")
  end
  self:soon()
end

-- Something is about to go to stderr: the area leaves stdout first.
function M:before_stderr()
  if self.drawn > 0 then
    self:erase()
    self.out:flush()
  end
end

function M:after_stderr()
  self.err:flush()
  self:soon()
end

-- What the console saw: the last invocation of each event, the last error.
function M:note_invocation(r)
  self.last[r.id] = { status = r.status, duration = r.duration }
  if r.status ~= "ok" then
    self.last_error = { t = r.t or core.now(), text = ("%s #%s %s: %s"):format(r.id, tostring(r.iteration),
      r.status, tostring(r.error or ""):match("^[^\n]*")) }
  end
end

function M:note_error(who, msg, t)
  self.last_error = { t = t or core.now(), text = (who and (who .. ": ") or "") .. tostring(msg):match("^[^\n]*") }
end

function M:tick()
  self.soon_armed = false
  local run = self.run
  if run.reporter_done then return self:finish() end
  local now_ns = core.hrtime()
  if self.cache == nil or now_ns - self.rendered_ns >= RENDER_SEC * 1e9 * 0.9 then
    self.cache = self:render()
    self.rendered_ns = now_ns
    self.fresh = true
  end
  if self.drawn == 0 or self.fresh then
    self.fresh = false
    local s = self:erase_seq() .. table.concat(self.cache, "\n")
    self.out:write(s)
    self.drawn = #self.cache
  end
  if run.reporter_done then
    -- nothing is left to report: the run ends once this timer is closed,
    -- and the summary takes the area's place
    self:finish()
  elseif run.stopping and self.period ~= STOP_TICK_SEC then
    self.period = STOP_TICK_SEC
    self.timer:start(tick_desc(run, self.period), tick_desc(run, self.period))
  end
end

function M:close_timer()
  if self.timer then
    self.timer:close()
    self.timer = nil
  end
end

-- The end: the timer closed, the area erased, print given back.
function M:finish()
  self:close_timer()
  self:erase()
  if self.saved_print then
    _G.print = self.saved_print
    self.saved_print = nil
  end
  self.out:flush()
  io.stdout:setvbuf("line")
end

-- ---- what the area says ------------------------------------------------

local function hms(sec)
  sec = math.max(0, math.floor(sec + 0.5))
  return ("%d:%02d:%02d"):format(sec // 3600, sec % 3600 // 60, sec % 60)
end
M.hms = hms

-- "1m20s", "3h05m", "12s", "0.4s": a short duration for "in ..."
local function short(sec)
  if sec < 10 then return ("%.1fs"):format(sec) end
  if sec < 60 then return ("%ds"):format(math.floor(sec + 0.5)) end
  if sec < 3600 then return ("%dm%02ds"):format(sec // 60, math.floor(sec % 60)) end
  return ("%dh%02dm"):format(sec // 3600, math.floor(sec % 3600 / 60))
end
M.short = short

local function dur(v)
  if v == nil then return "" end
  if v < 1 then return ("%.1fms"):format(v * 1000) end
  return ("%.2fs"):format(v)
end

-- A rate per second, in the unit that reads best.
local function rate(per_sec, what)
  if per_sec == nil then return "- " .. what .. "/s" end
  if per_sec >= 0.05 or per_sec == 0 then return ("%.1f %s/s"):format(per_sec, what) end
  if per_sec * 60 >= 0.05 then return ("%.1f %s/min"):format(per_sec * 60, what) end
  return ("%.1f %s/h"):format(per_sec * 3600, what)
end

-- Display width of s (UTF-8 aware) and s cut to w columns.
local function width(s) return utf8.len(s) or #s end
local function cut(s, w)
  if width(s) <= w then return s end
  if w <= 0 then return "" end
  local off = utf8.offset(s, w + 1)
  return off and s:sub(1, off - 1) or s
end

-- A line made of {text, colour} segments, cut to the terminal's width.
function M:line(segs)
  -- two columns spare: a ^C echoed after the last line must not wrap it
  local room = math.max(10, self.term.cols - 3)
  local out = {}
  for _, seg in ipairs(segs) do
    local text = type(seg) == "table" and seg[1] or seg
    local c = type(seg) == "table" and seg[2] or nil
    text = cut(text, room)
    room = room - width(text)
    out[#out + 1] = M.paint(self.term.color, c, text)
    if room <= 0 then break end
  end
  return table.concat(out)
end

-- When ev's oldest running invocation started (description time), or nil.
function M:running_since(ev)
  local since
  for _, inv in pairs(ev.running or {}) do
    if type(inv) == "table" and inv.started and (since == nil or inv.started < since) then since = inv.started end
  end
  return since
end

-- Counts per real second over the last few real seconds.
function M:rates(runs, results)
  local now = core.hrtime()
  local s = self.samples
  s[#s + 1] = { ns = now, runs = runs, results = results }
  while #s > 2 and now - s[1].ns > 60e9 do table.remove(s, 1) end
  -- the most recent sample at least 10 runs (or 5 s) back; else the oldest
  local base = s[1]
  for i = #s - 1, 1, -1 do
    if runs - s[i].runs >= 10 and now - s[i].ns >= 2e9 or now - s[i].ns >= 5e9 then base = s[i] break end
  end
  -- per real second: what the person watching sees go by
  local dt = (now - base.ns) / 1e9
  if dt <= 0 then return nil, nil end
  return (runs - base.runs) / dt, (results - base.results) / dt
end

function M:next_firing(now)
  local run = self.run
  if run.stopping then return nil end
  local best, who
  for _, ev in ipairs(run.events) do
    if ev.interval then
      ev._last_k = ev._last_k or plan.last_k(ev.interval, run.total)
      local k = math.floor(now / ev.interval) + 1
      if k <= ev._last_k then
        local t = k * ev.interval
        if best == nil or t < best then best, who = t, ev.id end
      end
    end
  end
  return best, who
end

function M:state_text()
  local run = self.run
  if not run.stopping then return "running", "green" end
  local why = run.stop_reason or "stopping"
  if run.reporter_done then return "done (" .. why .. ")", "bold" end
  if run.finalising then return "finalising fixtures, draining results (" .. why .. ")", "yellow" end
  if run.killed then
    return ("kill switch set, %d still running (%s)"):format(run:running(), why), "yellow"
  end
  return ("teardown, %d running (%s)"):format(run:running(), why), "yellow"
end

-- The area's lines, coloured and cut to the terminal's width.
function M:render()
  local run = self.run
  local now = core.now()
  local total = run.total
  local lines = {}
  local utf = self.term.utf8

  -- header: name, elapsed/total, bar, percent, state
  local frac = total > 0 and math.min(1, math.max(0, now / total)) or 1
  local state, state_c = self:state_text()
  local head = ("%s  %s / %s  "):format(run.desc.test_name, hms(math.min(now, total)), hms(total))
  local tail = ("  %3d%%  "):format(math.floor(frac * 100))
  local barw = math.max(10, math.min(40, self.term.cols - 3 - width(head) - width(tail) - 2 - math.min(20, #state)))
  local fill = math.floor(frac * barw + 0.5)
  local on, off = utf and "█" or "#", utf and "░" or "-"
  lines[#lines + 1] = self:line({ { head, "bold" }, "[", { on:rep(fill), "cyan" }, { off:rep(barw - fill), "dim" },
                                  "]", tail, { state, state_c } })

  -- per event: the busiest few when there are many
  local list, tot = {}, { runs = 0, failures = 0, skipped = 0, running = 0 }
  for i, ev in ipairs(run.events) do
    local st = run.per_event[ev.id]
    local running = st.running_fast or 0
    for _ in pairs(ev.running or {}) do running = running + 1 end
    list[#list + 1] = { i = i, ev = ev, st = st, running = running }
    tot.runs, tot.failures, tot.skipped = tot.runs + st.runs, tot.failures + st.failures, tot.skipped + st.skipped
    tot.running = tot.running + running
  end
  -- the area takes at most half the terminal (at least 8 lines): every
  -- event when they fit, the busiest ones and a "+N more" line otherwise
  local room = math.max(3, math.max(8, self.term.rows // 2) - 5)
  local shown = list
  if #list > room then
    shown = {}
    local sorted = {}
    for i, e in ipairs(list) do sorted[i] = e end
    local errs = self.console.ev_errors or {}
    table.sort(sorted, function(a, b)
      if a.st.failures ~= b.st.failures then return a.st.failures > b.st.failures end
      local ea, eb = errs[a.ev.id] or 0, errs[b.ev.id] or 0
      if ea ~= eb then return ea > eb end
      -- a long-running invocation (a supervised server) stays in view
      if (a.running > 0) ~= (b.running > 0) then return a.running > 0 end
      local ba, bb = a.st.runs + a.st.skipped + a.running, b.st.runs + b.st.skipped + b.running
      if ba ~= bb then return ba > bb end
      return a.i < b.i
    end)
    for i = 1, room - 1 do shown[i] = sorted[i] end
    table.sort(shown, function(a, b) return a.i < b.i end)
  end
  local idw = 5
  for _, e in ipairs(shown) do idw = math.max(idw, math.min(28, width(e.ev.id))) end
  local fmt = "  %-" .. idw .. "s %7s %6s %6s %6s  %s"
  lines[#lines + 1] = self:line({ { fmt:format("event", "runs", "fail", "errors", "skip", "last"), "dim" } })
  local ev_restarts = self.console.ev_restarts or {}
  for _, e in ipairs(shown) do
    local st = e.st
    -- errors: failed invocations plus the error results they reported
    local nerr = st.failures + (st.error_results or 0)
    local last = self.last[e.ev.id]
    local lt, lc = "", nil
    if last then
      lt = (last.status == "ok" and "ok " or (last.status:upper() .. " ")) .. dur(last.duration)
      lc = last.status ~= "ok" and "red" or nil
    end
    if e.running > 0 then
      -- a long-running invocation (a supervised server): for how long,
      -- and its restarts
      local since = self:running_since(e.ev)
      lt = (e.running == 1 and "running" or ("running x" .. e.running))
        .. (since and (" " .. short(math.max(0, now - since))) or "")
        .. (ev_restarts[e.ev.id] and (", %d restart%s"):format(ev_restarts[e.ev.id],
          ev_restarts[e.ev.id] == 1 and "" or "s") or "")
        .. (lt ~= "" and (", last " .. lt) or "")
      lc = lc or "cyan"
    end
    local id = cut(e.ev.id, idw)
    lines[#lines + 1] = self:line({
      ("  %s %7d "):format(id .. (" "):rep(idw - width(id)), st.runs),
      { ("%6d"):format(st.failures), st.failures > 0 and "boldred" or nil }, " ",
      { ("%6d"):format(nerr), nerr > 0 and "boldred" or nil }, " ",
      { ("%6d"):format(st.skipped), st.skipped > 0 and "yellow" or nil }, "  ",
      { lt, lc } })
  end
  if #shown < #list then
    local r, f, s = 0, 0, 0
    local seen = {}
    for _, e in ipairs(shown) do seen[e] = true end
    for _, e in ipairs(list) do
      if not seen[e] then r, f, s = r + e.st.runs, f + e.st.failures, s + e.st.skipped end
    end
    lines[#lines + 1] = self:line({ { ("  +%d more events: %d runs, %d failed, %d skipped"):format(
      #list - #shown, r, f, s), "dim" } })
  end

  -- next firing, rates, totals
  local r_runs, r_res = self:rates(tot.runs, (status.results(run)))
  local nt, who = self:next_firing(now)
  local next_text
  -- "in 20s" is description time: under --time-scale, the wall clock's too
  local function inn(sec)
    sec = math.max(0, sec)
    if run.scale == 1 then return ("in %s"):format(short(sec)) end
    return ("in %s, %s real"):format(short(sec), short(sec / run.scale))
  end
  if nt then
    next_text = ("next %s %s (%s)"):format(hms(nt), who, inn(nt - now))
  elseif not run.stopping then
    next_text = ("end at %s (%s)"):format(hms(total), inn(total - now))
  else
    next_text = "no more firings"
  end
  local totals = { ("%d runs, "):format(tot.runs),
    { ("%d failed"):format(tot.failures), tot.failures > 0 and "boldred" or nil },
    (", %d skipped, %d running"):format(tot.skipped, tot.running) }
  local res_text = rate(r_res, "results") .. (run.scale ~= 1 and " real" or "")
  local first = { "  ", next_text, { "  |  ", "dim" }, rate(r_runs, "runs"), ", ", res_text }
  local wide = 2 + width(next_text) + 5 + width(rate(r_runs, "runs")) + 2 + width(res_text) + 5
    + width(totals[1] .. totals[2][1] .. totals[3])
  if wide <= self.term.cols - 3 then
    -- a wide terminal: one line
    first[#first + 1] = { "  |  ", "dim" }
    for _, seg in ipairs(totals) do first[#first + 1] = seg end
    lines[#lines + 1] = self:line(first)
  else
    -- 80 columns: the totals on a line of their own, nothing cut off
    lines[#lines + 1] = self:line(first)
    table.insert(totals, 1, "  ")
    lines[#lines + 1] = self:line(totals)
  end

  -- the checks failing now (the first three of them)
  if run.checks then
    local n, listed = run.checks:failing(3)
    local failing = {}
    for i, c in ipairs(listed) do failing[i] = ("%s %s %s"):format(c.name, c.status, report.check_number(c.value)) end
    if n > 0 then
      lines[#lines + 1] = self:line({ { ("  checks failing (%d): "):format(n), "boldred" },
        { table.concat(failing, "; ") .. (n > 3 and "; ..." or ""), "red" } })
    end
  end

  -- the last error
  if self.last_error then
    lines[#lines + 1] = self:line({ { "  last error ", "red" }, plan.clock(self.last_error.t), " ",
                                    { self.last_error.text, "red" } })
  else
    lines[#lines + 1] = self:line({ { "  no errors", "dim" } })
  end
  return lines
end

return M
