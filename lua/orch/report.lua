-- orch.report: reading a --report JSONL file back, for `orchlua report`
-- (a run made on a device, read on a workstation) and the HTML report.
--
--   report.load(path, {points = true}) -> rep | nil, message
--   report.summary_lines(rows, opts)   -> the summary table (the console's too)
--   report.compare(a, b, opts)         -> cmp;  report.render_compare(cmp) -> text
--
-- rep.events is the list of event ids in the order they first fired; each
-- is {id, name, runs, failures, skipped, timeouts, cancelled, duration =
-- Stats (description seconds), lateness = Stats (real milliseconds, as
-- the console's), errors = {...}}.  rep.metrics lists one series per metric
-- name and fields ("cpu{core=0}"), with the values' exact statistics.
-- Lines that are not JSON (the last line of a run killed mid-write) are
-- counted in rep.bad_lines, not fatal.
local cjson = require("cjson").new()
local Stats = require "orch.stats"
local has_core, core = pcall(require, "orch.core")

local M = {}

local null = cjson.null

local function clean(v)
  if v == null then return nil end
  return v
end

local function first_line(s)
  return (tostring(s or ""):match("^[^\n]*"))
end

-- A field's value as a person wrote it: JSON numbers come back as floats
-- (0 -> 0.0), integral ones are shown as integers.
function M.value_text(v)
  if v == null then return "null" end
  if type(v) == "table" then return cjson.encode(v) end
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2^53 then
    return ("%d"):format(v)
  end
  return tostring(v)
end

-- "name{a=1,b=x}" from a metric's fields, keys sorted; "" without fields.
function M.fields_key(fields)
  if type(fields) ~= "table" then return "" end
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = tostring(k) end
  if #keys == 0 then return "" end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = fields[k]
    parts[i] = k .. "=" .. M.value_text(v)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Exact statistics of a list of numbers (metrics may be negative, and a
-- report is read once: sorting is fine).
local function exact_stats(values)
  local n = #values
  if n == 0 then return { n = 0 } end
  local s = {}
  local sum = 0
  for i = 1, n do s[i] = values[i]; sum = sum + values[i] end
  table.sort(s)
  local function pct(p) return s[math.max(1, math.ceil(p / 100 * n))] end
  return { n = n, sum = sum, mean = sum / n, min = s[1], max = s[n], p50 = pct(50), p99 = pct(99),
           last = values[n] }
end
M.exact_stats = exact_stats

local function new_event(rep, id, name)
  local ev = rep.by_id[id]
  if ev then return ev end
  ev = { id = id, name = name or id, runs = 0, failures = 0, skipped = 0, timeouts = 0, cancelled = 0,
         duration = Stats.new(), lateness = Stats.new(), errors = {}, invocations = {}, skips = {},
         first_t = math.huge }
  rep.by_id[id] = ev
  rep.events[#rep.events + 1] = ev
  return ev
end

local function add_record(rep, r, keep)
  local ty = r.type
  if ty == "run_start" then
    rep.run_start = r
    rep.test_name = clean(r.test_name) or rep.test_name
    rep.scale = tonumber(clean(r.time_scale)) or 1
    rep.total = (tonumber(clean(r.total_hours)) or 0) * 3600
  elseif ty == "run_end" then
    rep.run_end = r
  elseif ty == "check" then
    -- the last record of each check is its state at the end
    local name = clean(r.name)
    if type(name) == "string" then
      local c = rep.check_by_name[name]
      if not c then
        c = { name = name }
        rep.check_by_name[name] = c
        rep.checks[#rep.checks + 1] = c
      end
      c.stat, c.status, c.value = clean(r.stat), clean(r.status), clean(r.value)
      c.min, c.max, c.action = clean(r.min), clean(r.max), clean(r.action)
    end
  elseif ty == "invocation" then
    local id = clean(r.id) or clean(r.event) or "?"
    local ev = new_event(rep, id, clean(r.event))
    local status = clean(r.status) or "ok"
    local duration = tonumber(clean(r.duration)) or 0
    local lateness = tonumber(clean(r.lateness)) or 0
    ev.runs = ev.runs + 1
    ev.duration:add(duration)
    ev.lateness:add(lateness / rep.scale * 1000)     -- real ms, as the console counts it
    local started = tonumber(clean(r.started)) or ((tonumber(clean(r.t)) or 0) - duration)
    if started < ev.first_t then ev.first_t = started end
    if status ~= "ok" then
      ev.failures = ev.failures + 1
      if status == "timeout" then ev.timeouts = ev.timeouts + 1 end
      if status == "cancelled" then ev.cancelled = ev.cancelled + 1 end
      local e = { t = tonumber(clean(r.t)) or 0, event = id, iteration = clean(r.iteration),
                  phase = clean(r.phase), status = status, message = first_line(clean(r.error)),
                  traceback = tostring(clean(r.error) or ""):match("^[^\n]*\n(.*)$") }
      ev.errors[#ev.errors + 1] = e
      rep.errors[#rep.errors + 1] = e
    end
    if keep then
      ev.invocations[#ev.invocations + 1] = {
        started = started, duration = duration, lateness = lateness, status = status,
        iteration = clean(r.iteration), phase = clean(r.phase), scheduled = tonumber(clean(r.scheduled)),
        error = status ~= "ok" and first_line(clean(r.error)) or nil }
    end
    if r.phase == "teardown" then
      local s = tonumber(clean(r.scheduled))
      if s and (rep.teardown_t == nil or s < rep.teardown_t) then rep.teardown_t = s end
    end
  elseif ty == "gap" then
    -- a resumed run: the firings missed while it was down count as skipped
    if type(r.missed) == "table" then
      for id, n in pairs(r.missed) do
        local ev = new_event(rep, clean(id) or "?", nil)
        ev.skipped = ev.skipped + (math.tointeger(clean(n)) or 0)
      end
    end
  elseif ty == "skipped" then
    local id = clean(r.id) or clean(r.event) or "?"
    local ev = new_event(rep, id, clean(r.event))
    ev.skipped = ev.skipped + (math.tointeger(clean(r.count)) or 1)  -- count: firings missed at the end
    local s = tonumber(clean(r.scheduled)) or tonumber(clean(r.t)) or 0
    if s < ev.first_t then ev.first_t = s end
    if keep then
      ev.skips[#ev.skips + 1] = { t = s, iteration = clean(r.iteration), reason = clean(r.reason) }
    end
  elseif ty == "result" then
    rep.results = rep.results + 1
    local data = clean(r.data)
    local level = clean(r.level) or "info"
    if level == "metric" and type(data) == "table" and type(clean(data.metric)) == "string"
        and type(clean(data.value)) == "number" then
      local fields = clean(data.fields)
      local key = data.metric .. M.fields_key(fields)
      local m = rep.metric_by_key[key]
      if not m then
        m = { key = key, name = data.metric, fields = M.fields_key(fields), values = {}, ts = {}, events = {} }
        rep.metric_by_key[key] = m
        rep.metrics[#rep.metrics + 1] = m
      end
      local n = #m.values + 1
      m.values[n] = data.value
      m.ts[n] = tonumber(clean(r.t)) or 0
      local who = clean(r.event)
      if who then m.events[who] = true end
    elseif level == "error" then
      rep.error_results = rep.error_results + 1
      local msg
      if type(data) == "table" then
        msg = clean(data.error) or clean(data.message)
        if type(msg) ~= "string" then msg = cjson.encode(data) end
      else
        msg = tostring(data)
      end
      local e = { t = tonumber(clean(r.t)) or 0, event = clean(r.event) or "-", status = "error result",
                  message = first_line(msg), traceback = msg:match("^[^\n]*\n(.*)$") }
      rep.errors[#rep.errors + 1] = e
      local who = clean(r.event)
      if type(who) == "string" then
        local ev = new_event(rep, who)
        ev.error_results = (ev.error_results or 0) + 1
      end
    end
  end
end

-- Reads a JSONL report.  opts.points keeps every invocation (for charts).
function M.load(path, opts)
  opts = opts or {}
  local f, err = io.open(path, "r")
  if not f then return nil, err end
  local rep = { path = path, scale = 1, total = 0, events = {}, by_id = {}, metrics = {}, metric_by_key = {},
                errors = {}, results = 0, error_results = 0, bad_lines = 0, lines = 0,
                checks = {}, check_by_name = {} }
  for line in f:lines() do
    if line:find("%S") then
      rep.lines = rep.lines + 1
      local ok, r = pcall(cjson.decode, line)
      if ok and type(r) == "table" and type(r.type) == "string" then
        add_record(rep, r, opts.points)
      else
        rep.bad_lines = rep.bad_lines + 1
      end
    end
  end
  f:close()
  if rep.run_start == nil then
    if rep.lines == 0 then return nil, path .. ": empty, not an orchlua --report file" end
    return nil, path .. ": no run_start record, not an orchlua --report file"
  end
  -- the order of the description as far as the file tells: first firing
  table.sort(rep.events, function(a, b)
    if a.first_t ~= b.first_t then return a.first_t < b.first_t end
    return a.id < b.id
  end)
  table.sort(rep.metrics, function(a, b) return a.key < b.key end)
  for _, m in ipairs(rep.metrics) do m.stats = exact_stats(m.values) end
  local e = rep.run_end or opts.run_end   -- run_end: the run's own, about to be written (--html)
  rep.end_t = e and tonumber(clean(e.t)) or 0
  for _, ev in ipairs(rep.events) do
    for _, inv in ipairs(ev.invocations) do
      rep.end_t = math.max(rep.end_t, inv.started + inv.duration)
    end
  end
  rep.status = e and tonumber(clean(e.status)) or nil
  rep.reason = e and clean(e.reason) or nil
  -- when the firing stopped: the teardown's schedule, else the end of the
  -- run as described, else (a stop without teardown events) unknown
  rep.stop_t = rep.teardown_t
  if rep.stop_t == nil and rep.reason == "end of run" then rep.stop_t = rep.total end
  return rep
end

-- ---- the summary table -------------------------------------------------

-- fixed(v, decimals, suffix): ("%.<decimals>f"):format(v) .. suffix; orch.core
-- writes it without snprintf (src/columns.c), which the summary of 10,000
-- events did 50,000 times
local fixed = has_core and core.format_fixed or function(v, decimals, suffix)
  return ("%." .. decimals .. "f"):format(v) .. suffix
end

local function ms(v)
  if v == nil then return "-" end
  return fixed(v, 1, "ms")
end

local function sec(v)
  if v == nil then return "-" end
  if v < 1 then return fixed(v * 1000, 1, "ms") end
  return fixed(v, 2, "s")
end
M.fmt_ms, M.fmt_sec = ms, sec

M.SUMMARY_HEADER = { "event", "runs", "fail", "errors", "skip", "tmout", "dur p50", "dur p99", "dur max",
                     "late p99", "late max" }

-- An event's errors: its failed invocations plus the error results its
-- invocations reported (an invoker's summary has the count already).
local function errors_of(st)
  if type(st.errors) == "number" then return st.errors end
  if type(st.errors) == "table" and st.error_results == nil then return math.max(st.failures, #st.errors) end
  return st.failures + (st.error_results or 0)
end
M.errors_of = errors_of

-- Rows of the summary: list of {id=, runs=, failures=, skipped=, timeouts=,
-- duration = Stats, lateness = Stats}, or an invoker's summary() (its
-- percentiles already taken: summarised).  Returns rows of strings (header
-- first, totals last) and the totals.
function M.summary_rows(list)
  local rows = { M.SUMMARY_HEADER }
  local tot = { runs = 0, failures = 0, skipped = 0, timeouts = 0, errors = 0 }
  local dmax, lmax
  -- the counts as text, each once: 10,000 rows hold a few distinct counts,
  -- and tostring makes each through snprintf
  local texts = {}
  local function count(n)
    local t = texts[n]
    if t == nil then t = tostring(n); texts[n] = t end
    return t
  end
  for _, st in ipairs(list) do
    local d50, d99, dmx, l99, lmx
    if st.summarised then
      d50, d99, dmx, l99, lmx = st.dur_p50, st.dur_p99, st.dur_max, st.late_p99, st.late_max
    else
      local d, l = st.duration, st.lateness
      d50, d99, dmx, l99, lmx = d:percentile(50), d:percentile(99), d.max, l:percentile(99), l.max
    end
    local nerr = errors_of(st)
    rows[#rows + 1] = { st.id, count(st.runs), count(st.failures), count(nerr), count(st.skipped),
      count(st.timeouts), sec(d50), sec(d99), sec(dmx), ms(l99), ms(lmx) }
    tot.runs, tot.failures = tot.runs + st.runs, tot.failures + st.failures
    tot.errors = tot.errors + nerr
    tot.skipped, tot.timeouts = tot.skipped + st.skipped, tot.timeouts + st.timeouts
    if dmx and (dmax == nil or dmx > dmax) then dmax = dmx end
    if lmx and (lmax == nil or lmx > lmax) then lmax = lmx end
  end
  rows[#rows + 1] = { "all", tostring(tot.runs), tostring(tot.failures), tostring(tot.errors), tostring(tot.skipped),
    tostring(tot.timeouts), "", "", dmax and sec(dmax) or "", "", lmax and ms(lmax) or "" }
  return rows, tot
end

-- Text lines of a table: the first column left-aligned, the others right
-- (and those in opts.left); a rule under the header and above the last row
-- when opts.total; trailing blanks cut.  opts.paint(ri, ci, cell, text) may
-- colour a cell (after padding).
--
-- Without paint the lines come from orch.core (src/columns.c), the same
-- lines as below (spec/e2e/report_spec.lua compares them): the summary of
-- 10,000 events took ~35 ms in Lua (BENCHMARKS.md).  This layout is for
-- paint and plain lua5.4.
local BLANK = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }

function M.table_lines(rows, opts)
  opts = opts or {}
  local indent, paint, left = opts.indent or "  ", opts.paint, opts.left
  if has_core and not paint then return core.table_lines(rows, indent, left, opts.total) end
  local w = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do
      if #c > (w[i] or -1) then w[i] = #c end
    end
  end
  local lines = {}
  local function rule()
    local dash = {}
    for i = 1, #w do dash[i] = ("-"):rep(w[i]) end
    lines[#lines + 1] = indent .. table.concat(dash, "  ")
  end
  local cells = {}
  for ri, r in ipairs(rows) do
    local last = 0   -- the last cell with text: the blanks after it are cut
    for i = 1, #w do
      local c = r[i] or ""
      local pad = (" "):rep(w[i] - #c)
      local cell = (i == 1 or (left and left[i])) and (c .. pad) or (pad .. c)
      cells[i] = paint and paint(ri, i, cell, c) or cell
      if c ~= "" then last = i end
    end
    local line = indent .. table.concat(cells, "  ", 1, last)
    local n = #line
    while n > 0 and BLANK[line:byte(n)] do n = n - 1 end
    lines[#lines + 1] = n < #line and line:sub(1, n) or line
    if ri == 1 or (opts.total and ri == #rows - 1) then rule() end
  end
  return lines
end

local SIGNALS = { [1] = "SIGHUP", [2] = "SIGINT", [3] = "SIGQUIT", [9] = "SIGKILL", [15] = "SIGTERM" }

-- Why a run ended with status (as the console says it).
function M.exit_reason(status, counts)
  if status == nil then return "the run did not finish (no run_end record: killed?)" end
  if status == 0 and (counts.owned_errors or 0) > 0 then
    return ("every check passed: %d error%s owned by checks, within their limits"):format(counts.owned_errors,
      counts.owned_errors == 1 and "" or "s")
  end
  if status == 0 then return "every invocation succeeded and no error was reported" end
  if status == 1 then
    local function n(k, word)
      local v = counts[k] or 0
      return ("%d %s%s"):format(v, word, v == 1 and "" or "s")
    end
    local s = ("%s, %s"):format(n("failures", "failed invocation"), n("error_results", "error result"))
    -- a report file cannot tell run errors apart: they are error results there
    if counts.run_errors then s = s .. ", " .. n("run_errors", "run error") end
    if (counts.failed_checks or 0) > 0 then s = s .. ", " .. n("failed_checks", "failed check") end
    return s
  end
  if status == 2 then return "usage, configuration or description error" end
  if status > 128 then
    local s = status - 128
    return ("stopped by %s (signal %d)"):format(SIGNALS[s] or "a signal", s)
  end
  return "status " .. tostring(status)
end

-- A value as a check prints it.
local function check_number(v)
  if type(v) ~= "number" then return "-" end
  if v == math.floor(v) and math.abs(v) < 1e15 then return ("%d"):format(v) end
  return ("%.6g"):format(v)
end

-- A check's limit: "<= 3", ">= 0.5", "0.5 .. 3".
function M.check_limit(c)
  local lo, hi = type(c.min) == "number" and c.min, type(c.max) == "number" and c.max
  if lo and hi then return ("%s .. %s"):format(check_number(lo), check_number(hi)) end
  if hi then return "<= " .. check_number(hi) end
  if lo then return ">= " .. check_number(lo) end
  return "-"
end
M.check_number = check_number

--- Rows of the checks' table (header first): name, stat, value, limit,
-- verdict (and the action when not "fail"); and how many failed the run.
function M.check_rows(list)
  local rows, failed = { { "check", "stat", "value", "limit", "verdict" } }, 0
  for _, c in ipairs(list) do
    local verdict = tostring(c.status or "-")
    if (c.action == "abort" or c.action == "warn") and c.status ~= c.action then
      verdict = verdict .. " (" .. c.action .. ")"
    end
    rows[#rows + 1] = { tostring(c.name), tostring(c.stat or "-"), check_number(c.value), M.check_limit(c), verdict }
    if c.action ~= "warn" and (c.status == "fail" or c.status == "no_data") then failed = failed + 1 end
  end
  return rows, failed
end

-- The text of `orchlua report RUN.jsonl`: the console's summary, from the file.
function M.render_summary(rep)
  local out = {}
  local rs = rep.run_start
  out[#out + 1] = ("%s: %s, %g h at time scale %g, started %s%s"):format(rep.path, rep.test_name or "?",
    rep.total / 3600, rep.scale, tostring(clean(rs.ts) or "?"),
    clean(rs.version) and (", orchlua " .. clean(rs.version)) or "")
  out[#out + 1] = ""
  out[#out + 1] = ("summary of %s (%s):"):format(rep.test_name or "?", rep.reason or "no run_end")
  out[#out + 1] = rep.scale ~= 1 and ("  times in real seconds (description time ran %gx faster)"):format(rep.scale)
    or "  times in real seconds"
  local rows = M.summary_rows(require("orch.output.lines").real_list(rep.events, rep.scale))
  for _, l in ipairs(M.table_lines(rows, { total = true })) do out[#out + 1] = l end
  local nm = 0
  for _, m in ipairs(rep.metrics) do nm = nm + m.stats.n end
  out[#out + 1] = ("results: %d (%d error%s, %d metric value%s in %d series)"):format(rep.results,
    rep.error_results, rep.error_results == 1 and "" or "s", nm, nm == 1 and "" or "s", #rep.metrics)
  if #rep.errors > 0 then
    out[#out + 1] = ("errors: %d (first: %s %s: %s)"):format(#rep.errors, require("orch.plan").clock(rep.errors[1].t),
      rep.errors[1].event, rep.errors[1].message)
  end
  local failed_checks = 0
  if #rep.checks > 0 then
    local check_rows
    check_rows, failed_checks = M.check_rows(rep.checks)
    out[#out + 1] = "checks:"
    for _, l in ipairs(M.table_lines(check_rows, { left = { [2] = true, [5] = true } })) do out[#out + 1] = l end
  end
  if rep.bad_lines > 0 then
    out[#out + 1] = ("%d line%s not JSON (skipped)"):format(rep.bad_lines, rep.bad_lines == 1 and "" or "s")
  end
  local failures = 0
  for _, ev in ipairs(rep.events) do failures = failures + ev.failures end
  local status = rep.status
  out[#out + 1] = status and ("exit %d: %s"):format(status, M.exit_reason(status,
      { failures = failures, error_results = rep.error_results, failed_checks = failed_checks }))
    or M.exit_reason(nil)
  return table.concat(out, "\n") .. "\n"
end

-- ---- comparing two runs ------------------------------------------------

-- Relative change from a to b, nil when not comparable.
local function rel(a, b)
  if a == nil or b == nil then return nil end
  if a == 0 then
    if b == 0 then return 0 end
    return math.huge * (b > 0 and 1 or -1)
  end
  return (b - a) / math.abs(a)
end

local function pct_text(r)
  if r == nil then return "" end
  if r == math.huge then return "new" end
  if r == -math.huge then return "-inf" end
  return ("%+.1f%%"):format(r * 100)
end

local function num_text(v, kind)
  if v == nil then return "-" end
  if kind == "sec" then return sec(v) end
  if kind == "ms" then return ms(v) end
  if kind == "count" then return tostring(math.tointeger(v) or v) end
  if v == math.floor(v) and math.abs(v) < 1e15 then return ("%d"):format(v) end
  return ("%.4g"):format(v)
end

-- opts: threshold (fraction, default 0.10), higher_is_better (set of
-- metric names), min_duration (description s; default 1 ms real),
-- min_lateness (real ms, default 10).
function M.compare(a, b, opts)
  opts = opts or {}
  local thr = opts.threshold or 0.10
  local better_up = opts.higher_is_better or {}
  local scale = math.max(a.scale or 1, b.scale or 1)
  local min_dur = opts.min_duration or 0.001 * scale
  local min_late = opts.min_lateness or 10
  local cmp = { a = a, b = b, threshold = thr, rows = {}, regressions = {}, notes = {} }

  local function row(group, what, va, vb, kind, rule)
    local r = { group = group, what = what, a = va, b = vb, kind = kind, change = rel(va, vb) }
    if rule then
      local why = rule(va, vb, r.change)
      if why then
        r.regression = why
        cmp.regressions[#cmp.regressions + 1] = r
      end
    end
    cmp.rows[#cmp.rows + 1] = r
    return r
  end
  -- counts that should not grow (failures, skips, timeouts), as a rate of runs
  local function rate_rule(runs_a, runs_b)
    return function(va, vb)
      if (vb or 0) == 0 then return nil end
      local ra = (va or 0) / math.max(runs_a, 1)
      local rb = vb / math.max(runs_b, 1)
      if ra == 0 then return "appeared" end
      if rb > ra * (1 + thr) then return ("rate %+.0f%%"):format((rb / ra - 1) * 100) end
    end
  end
  local function grows(floor)
    return function(va, vb, change)
      if va == nil or vb == nil then return nil end
      if vb - va > floor and change > thr then return ("+%.0f%% > %g%%"):format(change * 100, thr * 100) end
    end
  end
  local function shrinks(va, vb, change)
    if va == nil or vb == nil or va == 0 then return nil end
    if change < -thr then return ("%.0f%% < -%g%%"):format(change * 100, thr * 100) end
  end

  if a.total ~= b.total then
    cmp.notes[#cmp.notes + 1] = ("the runs differ in length: %g h and %g h (counts are compared as rates)")
      :format(a.total / 3600, b.total / 3600)
  end
  if a.scale ~= b.scale then
    cmp.notes[#cmp.notes + 1] = ("the runs differ in time scale: %g and %g"):format(a.scale, b.scale)
  end
  -- runs expected per hour: counts scale with the runs' lengths
  local len_ratio = (a.total > 0 and b.total > 0) and (b.total / a.total) or 1

  local ids, seen = {}, {}
  for _, rep in ipairs({ a, b }) do
    for _, ev in ipairs(rep.events) do
      if not seen[ev.id] then seen[ev.id] = true; ids[#ids + 1] = ev.id end
    end
  end
  for _, id in ipairs(ids) do
    local ea, eb = a.by_id[id], b.by_id[id]
    if not eb then
      local r = row(id, "runs", ea.runs, nil, "count")
      r.regression = "missing in B"
      cmp.regressions[#cmp.regressions + 1] = r
    elseif not ea then
      row(id, "runs", nil, eb.runs, "count")
      cmp.notes[#cmp.notes + 1] = ("event %s is new in B"):format(id)
    else
      -- fewer firings (runs and skips: a skip is flagged on its own) than
      -- the length of the run promises: a run that stopped early, a stall
      row(id, "runs", ea.runs, eb.runs, "count", function()
        local expect = (ea.runs + ea.skipped) * len_ratio
        local got = eb.runs + eb.skipped
        if expect > 0 and got < expect * (1 - thr) then
          return ("%.0f%% fewer firings than expected"):format((1 - got / expect) * 100)
        end
      end)
      row(id, "failures", ea.failures, eb.failures, "count", rate_rule(ea.runs, eb.runs))
      row(id, "timeouts", ea.timeouts, eb.timeouts, "count", rate_rule(ea.runs, eb.runs))
      row(id, "skipped", ea.skipped, eb.skipped, "count", rate_rule(ea.runs + ea.skipped, eb.runs + eb.skipped))
      row(id, "dur p50", ea.duration:percentile(50), eb.duration:percentile(50), "sec", grows(min_dur))
      row(id, "dur p99", ea.duration:percentile(99), eb.duration:percentile(99), "sec", grows(min_dur))
      row(id, "dur max", ea.duration.max, eb.duration.max, "sec")
      row(id, "late p99", ea.lateness:percentile(99), eb.lateness:percentile(99), "ms", grows(min_late))
    end
  end

  local keys, mseen = {}, {}
  for _, rep in ipairs({ a, b }) do
    for _, m in ipairs(rep.metrics) do
      if not mseen[m.key] then mseen[m.key] = true; keys[#keys + 1] = m.key end
    end
  end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local ma, mb = a.metric_by_key[key], b.metric_by_key[key]
    local group = "metric " .. key
    if not mb then
      local r = row(group, "count", ma.stats.n, nil, "count")
      r.regression = "missing in B"
      cmp.regressions[#cmp.regressions + 1] = r
    elseif not ma then
      row(group, "count", nil, mb.stats.n, "count")
      cmp.notes[#cmp.notes + 1] = ("metric %s is new in B"):format(key)
    else
      local up = better_up[ma.name]
      local rule = up and shrinks or grows(0)
      row(group, "count", ma.stats.n, mb.stats.n, "count")
      row(group, "mean", ma.stats.mean, mb.stats.mean, "num", rule)
      row(group, "p99", ma.stats.p99, mb.stats.p99, "num", rule)
      row(group, "max", ma.stats.max, mb.stats.max, "num")
    end
  end
  return cmp
end

function M.render_compare(cmp)
  local out = {}
  local a, b = cmp.a, cmp.b
  local function who(rep)
    return ("%s (%s, %s)"):format(rep.path, rep.test_name or "?", tostring(clean(rep.run_start.ts) or "?"))
  end
  out[#out + 1] = "A: " .. who(a)
  out[#out + 1] = "B: " .. who(b)
  for _, n in ipairs(cmp.notes) do out[#out + 1] = "note: " .. n end
  out[#out + 1] = ""
  local rows = { { "event / metric", "", "A", "B", "change", "" } }
  local last_group
  for _, r in ipairs(cmp.rows) do
    local g = r.group ~= last_group and r.group or ""
    last_group = r.group
    rows[#rows + 1] = { g, r.what, num_text(r.a, r.kind), num_text(r.b, r.kind), pct_text(r.change),
                        r.regression and ("REGRESSION: " .. r.regression) or "" }
  end
  for _, l in ipairs(M.table_lines(rows, { left = { [2] = true, [6] = true } })) do out[#out + 1] = l end
  out[#out + 1] = ""
  if #cmp.regressions == 0 then
    out[#out + 1] = ("no regression beyond %g%%"):format(cmp.threshold * 100)
  else
    out[#out + 1] = ("%d regression%s beyond %g%%:"):format(#cmp.regressions, #cmp.regressions == 1 and "" or "s",
      cmp.threshold * 100)
    for _, r in ipairs(cmp.regressions) do
      out[#out + 1] = ("  %s %s: %s -> %s (%s)"):format(r.group, r.what, num_text(r.a, r.kind),
        num_text(r.b, r.kind), r.regression)
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
