-- orch.report: reading a --report JSONL file back, for `orchlua report`
-- (a run made on a device, read on a workstation) and the HTML report.
--
--   report.load(path, opts)          -> rep | nil, message
--   report.render_summary(rep)       -> text;  report.verdict(rep) -> 0 | 1
--   report.summary_rows / table_lines -> the summary table (the console's too)
--   report.compare(a, b, opts)       -> cmp;  report.render_compare(cmp) -> text
--
-- The file is streamed (orch.scan, src/scan.c) into bounded statistics:
-- whatever its length, a report holds per event counts and two series
-- (duration and lateness by start time), per metric series one series, per
-- error message one group, per check its verdict: a series keeps its
-- points exactly up to SERIES_BUCKETS of them, then min/mean/max per time
-- bucket and a 1%-wide histogram for the percentiles.  A rotated set
-- (FILE.jsonl, FILE.1.jsonl, ...) is read as one run.
--
-- Bad input is refused with FILE:LINE and what is wrong; only the last line
-- of the last file may be torn (a run killed mid-write): rep.torn says so.
local cjson = require("cjson").new()
local scan = require "orch.scan"
local columns = require "orch.columns"
local records = require "orch.records"

local M = {}

local null = cjson.null
M.SERIES_BUCKETS = 1024       -- per series, a power of two: the HTML merges them by halves
M.MAX_LINE = 32 * 1024 * 1024 -- the writer cuts a result at 16 MiB
local MAX_GROUPS = 200        -- distinct error messages kept; the rest are counted together
local MAX_MARKS = 1000        -- of each kind (failures, error results, check failures, skips) placed one by one
local MAX_SERIES = 500        -- per metric name: a label unique per sample (a request id) must not grow memory

-- Labels that name an instance, not a thing: a restarted process is a new
-- pid.  The comparison matches series without them (--ignore-label adds).
M.INSTANCE_LABELS = { "pid", "ppid", "tid", "pgid", "container_id", "pod", "run_id", "seq" }

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

-- "{a=1,b=x}" from a metric's fields, keys sorted, those in ignore (a set)
-- left out; "" without fields.
function M.fields_key(fields, ignore)
  if type(fields) ~= "table" then return "" end
  local keys = {}
  for k in pairs(fields) do
    k = tostring(k)
    if not (ignore and ignore[k]) then keys[#keys + 1] = k end
  end
  if #keys == 0 then return "" end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = k .. "=" .. M.value_text(fields[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- The unit of a metric: its `unit` field, else its name's suffix.
local SUFFIX = { { "_ms", "ms" }, { "_us", "us" }, { "_ns", "ns" }, { "_seconds", "s" }, { "_sec", "s" },
                 { "_s", "s" }, { "_bytes", "bytes" }, { "_kb", "kB" }, { "_mb", "MB" }, { "_gb", "GB" },
                 { "_pct", "%" }, { "_percent", "%" }, { "_ratio", "ratio" }, { "_total", "count" } }
function M.unit_of(name, unit)
  if type(unit) == "string" and unit ~= "" then return unit end
  for _, s in ipairs(SUFFIX) do
    if name:sub(-#s[1]) == s[1] then return s[2] end
  end
  return nil
end

-- The files of a run: path, then its rotated segments while they exist
-- (named as the writer names them, writer_segment_path: FILE.n.jsonl,
-- or PATH.n for a path not ending in .jsonl).
function M.segments(path)
  local list = { path }
  local base, ext = path:match("^(.+)(%.jsonl)$")
  if not base then base, ext = path, "" end
  for i = 1, math.huge do
    local p = ("%s.%d%s"):format(base, i, ext)
    local f = io.open(p, "r")
    if not f then break end
    f:close()
    list[#list + 1] = p
  end
  return list
end

-- ---- schema ------------------------------------------------------------

-- The field types a reader relies on, per record type (null is always
-- allowed; unknown types and fields are ignored).
local function shown(v)
  local s = (type(v) == "table" or type(v) == "number") and M.value_text(v) or tostring(v)
  if #s > 40 then s = s:sub(1, 37) .. "..." end
  return s
end

-- nil, or what is wrong with a decoded record
local function invalid(r)
  if type(r) ~= "table" or r[1] ~= nil then return "expected a JSON object, found " .. shown(r) end
  if type(r.type) ~= "string" then return 'expected a record with a string "type", found ' .. shown(r) end
  local names = records.names[r.type]
  if not names then return nil end   -- a type this orchlua does not write: ignored
  for _, k in ipairs(names) do
    local v = r[k]
    if v ~= nil and v ~= null then
      local kind = records.field(r.type, k).kind
      if not records.is(kind, v) then
        return ('%s record: "%s" should be %s %s, found %s %s'):format(r.type, k,
          (kind == "integer" or kind == "object") and "an" or "a", kind, type(v), shown(v))
      end
    end
  end
  if r.type == "run_start" then
    local ts, th = clean(r.time_scale), clean(r.total_hours)
    if ts and not (ts > 0 and ts < math.huge) then
      return 'run_start record: "time_scale" should be > 0, found ' .. shown(ts)
    end
    if th and not (th >= 0 and th < math.huge) then
      return 'run_start record: "total_hours" should be >= 0, found ' .. shown(th)
    end
  elseif r.type == "invocation" or r.type == "skipped" then
    if clean(r.id) == nil and clean(r.event) == nil then return r.type .. ' record without "id" or "event"' end
  elseif r.type == "result" and clean(r.level) == "metric" then
    local d = clean(r.data)
    if type(d) ~= "table" or type(clean(d.metric)) ~= "string" or type(clean(d.value)) ~= "number" then
      return 'metric result: "data" should be {"metric": string, "value": number}, found ' .. shown(d)
    end
    local f = clean(d.fields)
    if f ~= nil and (type(f) ~= "table" or f[1] ~= nil) then
      return 'metric result: "fields" should be an object, found ' .. shown(f)
    end
  end
  return nil
end

-- ---- reading -----------------------------------------------------------

local function integral(v)
  if type(v) == "number" then return math.tointeger(v) or v end
  return v
end

local function new_rep(path, opts)
  local ignore
  if opts.ignore_labels then
    ignore = {}
    for _, k in ipairs(opts.ignore_labels) do ignore[k] = true end
  end
  return { path = path, files = {}, scale = 1, total = 0, events = {}, by_id = {}, metrics = {},
           metric_by_key = {}, groups = {}, group_by_msg = {}, other_errors = nil, error_count = 0,
           first_error = nil, results = 0, error_results = 0, lines = 0, checks = {}, check_by_name = {},
           marks = {}, marks_dropped = 0, ignore = ignore, fields_cache = {}, fields_cached = 0,
           series_per_name = {}, hot_metrics = {}, marks_per_kind = {}, nseries = 0 }
end

local function add_mark(rep, m)
  local n = (rep.marks_per_kind[m.kind] or 0) + 1
  rep.marks_per_kind[m.kind] = n
  if n <= MAX_MARKS then rep.marks[#rep.marks + 1] = m
  else rep.marks_dropped = rep.marks_dropped + 1 end
end

-- A series: SERIES_BUCKETS of them for the first MANY_SERIES, fewer beyond
-- (a chart of hundreds of series draws a few points of each anyway), so
-- that 10,000 events stay within tens of megabytes.
M.MANY_SERIES, M.FEW_BUCKETS = 256, 64
local function series(rep)
  rep.nseries = rep.nseries + 1
  local nb = rep.nseries <= M.MANY_SERIES and M.SERIES_BUCKETS or M.FEW_BUCKETS
  return scan.series(nb, rep.total > 0 and rep.total * 1.0001 / nb or nil)
end

local function new_event(rep, id, name)
  local ev = rep.by_id[id]
  if ev then return ev end
  ev = { id = id, name = name or id, runs = 0, failures = 0, skipped = 0, timeouts = 0, cancelled = 0,
         error_results = 0, duration = series(rep), lateness = series(rep), first_t = math.huge }
  rep.by_id[id] = ev
  rep.events[#rep.events + 1] = ev
  return ev
end

-- One error (a failed invocation or an error result) into its group.
local function add_error(rep, t, event, status, msg)
  local text = first_line(msg)
  rep.error_count = rep.error_count + 1
  local g = rep.group_by_msg[text]
  if not g then
    if #rep.groups >= MAX_GROUPS then
      g = rep.other_errors
      if not g then
        g = { message = "(other messages)", count = 0, first_t = t, last_t = t, events = {}, nevents = 0,
              status = {}, other = true }
        rep.other_errors = g
      end
    else
      g = { message = text, count = 0, first_t = t, last_t = t, events = {}, nevents = 0, status = {},
            traceback = tostring(msg or ""):match("^[^\n]*\n(.*)$"), first_event = event }
      rep.group_by_msg[text] = g
      rep.groups[#rep.groups + 1] = g
    end
  end
  g.count = g.count + 1
  if t < g.first_t then g.first_t = t end
  if t > g.last_t then g.last_t = t end
  if not g.events[event] and g.nevents < 20 then g.events[event] = true; g.nevents = g.nevents + 1 end
  g.status[status] = (g.status[status] or 0) + 1
  if not rep.first_error or t < rep.first_error.t then
    rep.first_error = { t = t, event = event, message = text }
  end
end

local function invocation(rep, id, event, status, duration, lateness, started, t, iteration, phase, scheduled,
                          err)
  id = id or event or "?"
  local ev = rep.by_id[id] or new_event(rep, id, event)
  duration = duration or 0
  started = started or ((t or 0) - duration)
  ev.runs = ev.runs + 1
  ev.duration:add(started, duration)
  ev.lateness:add(started, (lateness or 0) / rep.scale * 1000)   -- real ms, as the console counts it
  if started < ev.first_t then ev.first_t = started end
  if status ~= "ok" then
    status = status or "error"
    ev.failures = ev.failures + 1
    if status == "timeout" then ev.timeouts = ev.timeouts + 1 end
    if status == "cancelled" then ev.cancelled = ev.cancelled + 1 end
    add_error(rep, t or started + duration, id, status, err)
    add_mark(rep, { kind = "fail", t = started, d = duration, event = id, status = status,
                    iteration = integral(iteration), message = first_line(err) })
  end
  if phase == "teardown" and scheduled and (rep.teardown_t == nil or scheduled < rep.teardown_t) then
    rep.teardown_t = scheduled
  end
  local e = started + duration
  if e > rep.end_t then rep.end_t = e end
end

local function metric(rep, event, t, name, value, fields_key, unit)
  local key = name .. fields_key
  local m = rep.metric_by_key[key]
  if not m then
    local count = (rep.series_per_name[name] or 0) + 1
    rep.series_per_name[name] = count
    if count > MAX_SERIES then
      fields_key = "{...}"   -- the series beyond the cap, together
      key = name .. fields_key
      m = rep.metric_by_key[key]
    end
  end
  if not m then
    m = { key = key, name = name, fields = fields_key, unit = M.unit_of(name, unit), series = series(rep),
          events = {} }
    rep.metric_by_key[key] = m
    rep.metrics[#rep.metrics + 1] = m
  end
  scan.add(m.series, t or 0, value)
  if event and not m.events[event] then m.events[event] = true end
  return m
end

-- The key of a metric's raw fields object, cached: a run has few distinct ones.
local function raw_fields_key(rep, raw)
  local k = rep.fields_cache[raw]
  if k then return k end
  local ok, f = pcall(cjson.decode, raw)
  if not ok then return nil end
  k = M.fields_key(f, rep.ignore)
  if rep.fields_cached > 10000 then rep.fields_cache, rep.fields_cached = {}, 0 end
  rep.fields_cache[raw] = k
  rep.fields_cached = rep.fields_cached + 1
  return k
end

local function add_record(rep, r)
  local ty = r.type
  if ty == "invocation" then
    local status = clean(r.status) or "ok"
    invocation(rep, clean(r.id), clean(r.event), status, clean(r.duration), clean(r.lateness), clean(r.started),
      clean(r.t), clean(r.iteration), clean(r.phase), clean(r.scheduled), clean(r.error))
  elseif ty == "result" then
    rep.results = rep.results + 1
    local data = clean(r.data)
    local level = clean(r.level) or "info"
    if level == "metric" then
      metric(rep, clean(r.event), clean(r.t), data.metric, data.value, M.fields_key(clean(data.fields), rep.ignore),
        clean(data.unit))
    elseif level == "error" then
      rep.error_results = rep.error_results + 1
      local msg
      if type(data) == "table" then
        msg = clean(data.error) or clean(data.message)
        if type(msg) ~= "string" then msg = cjson.encode(data) end
      else
        msg = tostring(data)
      end
      local t, who = clean(r.t) or 0, clean(r.event) or "-"
      local ev = rep.by_id[who]
      if ev then ev.error_results = ev.error_results + 1 end
      rep.errors_by_event[who] = (rep.errors_by_event[who] or 0) + 1
      add_error(rep, t, who, "error result", msg)
      add_mark(rep, { kind = "error_result", t = t, event = who, message = first_line(msg) })
    end
  elseif ty == "skipped" then
    local id = clean(r.id) or clean(r.event) or "?"
    local ev = new_event(rep, id, clean(r.event))
    ev.skipped = ev.skipped + (math.tointeger(clean(r.count)) or 1)  -- count: firings missed at the end
    local s = clean(r.scheduled) or clean(r.t) or 0
    if s < ev.first_t then ev.first_t = s end
    add_mark(rep, { kind = "skip", t = s, event = id, iteration = integral(clean(r.iteration)),
                    reason = clean(r.reason) })
  elseif ty == "gap" then
    -- a resumed run: the firings missed while it was down count as skipped
    local missed = clean(r.missed)
    if type(missed) == "table" then
      for id, n in pairs(missed) do
        local ev = new_event(rep, tostring(id), nil)
        ev.skipped = ev.skipped + (math.tointeger(clean(n)) or 0)
      end
    end
  elseif ty == "check" then
    local name = tostring(clean(r.name) or "?")
    local c = rep.check_by_name[name]
    if not c then
      c = { name = name, fails = 0 }
      rep.check_by_name[name] = c
      rep.checks[#rep.checks + 1] = c
    end
    local status, t = clean(r.status) or "?", clean(r.t) or 0
    if status == "fail" and c.status ~= "fail" then
      c.fails = c.fails + 1
      c.first_fail_t = c.first_fail_t or t
      add_mark(rep, { kind = "check", t = t, check = name, value = clean(r.value) })
    end
    c.status, c.t, c.value, c.min, c.max, c.action = status, t, clean(r.value), clean(r.min), clean(r.max),
      clean(r.action)
    c.stat = clean(r.stat) or c.stat
  elseif ty == "run_start" then
    if not rep.run_start then
      rep.run_start = r
      rep.test_name = clean(r.test_name) or rep.test_name
      rep.scale = clean(r.time_scale) or 1
      rep.total = (clean(r.total_hours) or 0) * 3600
    end
  elseif ty == "run_end" then
    rep.run_end = r
  end
end

-- Streams one file into rep; nil, message on bad input.
local function read_file(rep, path, last)
  local rd, err = scan.open(path, M.MAX_LINE)
  if not rd then return nil, err end
  local pending   -- a line that is not JSON: an error unless it is the last
  local function fail(lineno, msg)
    rd:close()
    return nil, ("%s:%d: %s"):format(path, lineno, msg)
  end
  local add = add_record
  local by_id = rep.by_id
  local series_add = scan.add
  local next_record = rd.next
  local hot, hot_n = rep.hot_metrics, 0
  local stop, n = rep.stop, 0
  while true do
    local kind, a, b, c, d, e, f, g, _, i, j = next_record(rd)
    if kind == nil then break end
    if stop then   -- asked every 4096 lines whether to give up (a signal)
      n = n + 1
      if n & 4095 == 0 and stop() then
        rd:close()
        return nil, M.STOPPED
      end
    end
    if pending then return fail(pending[1], pending[2]) end
    if kind == "i" then
      -- an ok invocation with plain fields: the hot path
      local id = a or b or "?"
      local ev = by_id[id] or new_event(rep, id, b)
      local duration = d or 0
      local started = f or ((g or 0) - duration)
      ev.runs = ev.runs + 1
      series_add(ev.duration, started, duration)
      series_add(ev.lateness, started, (e or 0) / rep.scale * 1000)
      if started < ev.first_t then ev.first_t = started end
      local fin = started + duration
      if fin > rep.end_t then rep.end_t = fin end
      if i == "teardown" and j and (rep.teardown_t == nil or j < rep.teardown_t) then rep.teardown_t = j end
    elseif kind == "m" then
      rep.results = rep.results + 1
      -- the series of (name, raw fields), cached: the hot path concatenates nothing
      local per = hot[c]
      local m = per and per[e or ""]
      if m and not f and (not a or m.events[a]) then
        series_add(m.series, b or 0, d)
      else
        local fk = e and raw_fields_key(rep, e) or ""
        if not fk then return fail(rd:lineno(), 'metric result: "fields" is not JSON') end
        m = metric(rep, a, b, c, d, fk, f)
        if not per then
          per = {}
          hot[c] = per
          hot_n = hot_n + 1
        end
        if hot_n < 1000 then per[e or ""] = m end
      end
    elseif kind == "x" then
      local ok, r = pcall(cjson.decode, a)
      if not ok then
        pending = { rd:lineno(), "not JSON (" .. tostring(r):gsub("^.-: ", "") .. "), found " .. shown(a) }
      else
        local why = invalid(r)
        if why then return fail(rd:lineno(), why) end
        add(rep, r)
      end
    else   -- "long"
      return fail(rd:lineno(), ("a line longer than %d MiB: not an orchlua report"):format(a // (1024 * 1024)))
    end
    rep.lines = rep.lines + 1
  end
  local lines = rd:lineno()
  rd:close()
  if pending then
    if last then   -- the last line that is not blank
      rep.torn = { path = path, line = pending[1] }
      rep.lines = rep.lines + 1
    else
      return nil, ("%s:%d: %s"):format(path, pending[1], pending[2])
    end
  end
  rep.files[#rep.files + 1] = { path = path, lines = lines }
  return true
end

-- What load returns when opts.stop said to give up.
M.STOPPED = "stopped"

-- Reads a JSONL report (and its rotated segments).  opts.ignore_labels:
-- label names left out of the metric series' keys; opts.stop: a function
-- asked now and then, true to give up (nil, M.STOPPED).
function M.load(path, opts)
  opts = opts or {}
  local rep = new_rep(path, opts)
  rep.stop = opts.stop
  rep.end_t = 0
  rep.errors_by_event = {}
  local files = M.segments(path)
  for n, p in ipairs(files) do
    local ok, err = read_file(rep, p, n == #files)
    if not ok then return nil, err end
  end
  rep.bad_lines = rep.torn and 1 or 0
  if rep.run_start == nil then
    if rep.lines == 0 then return nil, path .. ": empty, not an orchlua --report file" end
    return nil, path .. ": no run_start record, not an orchlua --report file"
  end
  -- error results reported before their event first fired
  for id, n in pairs(rep.errors_by_event) do
    local ev = rep.by_id[id]
    if ev and ev.error_results < n then ev.error_results = n end
  end
  -- the order of the description as far as the file tells: first firing
  table.sort(rep.events, function(a, b)
    if a.first_t ~= b.first_t then return a.first_t < b.first_t end
    return a.id < b.id
  end)
  table.sort(rep.metrics, function(a, b) return a.key < b.key end)
  for _, m in ipairs(rep.metrics) do
    local s = m.series
    m.stats = { n = s.n, sum = s.sum, mean = s:mean(), min = s.min, max = s.max, p50 = s:percentile(50),
                p99 = s:percentile(99) }
  end
  table.sort(rep.groups, function(a, b)
    if a.count ~= b.count then return a.count > b.count end
    return a.first_t < b.first_t
  end)
  if rep.other_errors then rep.groups[#rep.groups + 1] = rep.other_errors end
  table.sort(rep.marks, function(a, b) return a.t < b.t end)
  local e = rep.run_end or opts.run_end   -- run_end: the run's own, about to be written (--html)
  if e and clean(e.t) and clean(e.t) > rep.end_t then rep.end_t = clean(e.t) end
  rep.status = e and clean(e.status) or nil
  rep.reason = e and clean(e.reason) or nil
  -- when the firing stopped: the teardown's schedule, else the end of the
  -- run as described, else (a stop without teardown events) unknown
  rep.stop_t = rep.teardown_t
  if rep.stop_t == nil and rep.reason == "end of run" then rep.stop_t = rep.total end
  rep.fields_cache = nil
  return rep
end

-- ---- the summary table -------------------------------------------------

-- fixed(v, decimals, suffix): ("%.<decimals>f"):format(v) .. suffix,
-- without snprintf (src/columns.c): five per event in the summary
local fixed = columns.format_fixed

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
  return st.failures + (st.error_results or 0)
end
M.errors_of = errors_of

-- The summary's rows, as columns.table_lines asks for them: returns
-- rows(ri) -> row ri (the header first, then one row per event, the
-- totals last, then nil), and the totals (complete once the totals row
-- was asked).  figures(i) -> the i-th event's {id=, runs=, failures=,
-- skipped=, timeouts=, duration = Stats, lateness = Stats}, or an
-- invoker's summary() (its percentiles already taken: summarised), or nil
-- after the last; the same each time it is asked (the layout asks twice).
-- first(st), when given, is called once per event, in order.  No row is
-- kept: 10,000 events' table need not exist at once.
function M.summary_source(figures, first)
  local tot = { runs = 0, failures = 0, skipped = 0, timeouts = 0, errors = 0 }
  local dmax, lmax
  local counted = 0   -- events added into tot
  -- the counts as text, each once: 10,000 rows hold a few distinct counts,
  -- and tostring makes each through snprintf
  local texts = {}
  local function count(n)
    local t = texts[n]
    if t == nil then t = tostring(n); texts[n] = t end
    return t
  end
  local function rows(ri)
    if ri == 1 then return M.SUMMARY_HEADER end
    local i = ri - 1
    local st = figures(i)
    if st == nil then
      if i ~= counted + 1 then return nil end
      return { "all", tostring(tot.runs), tostring(tot.failures), tostring(tot.errors), tostring(tot.skipped),
        tostring(tot.timeouts), "", "", dmax and sec(dmax) or "", "", lmax and ms(lmax) or "" }
    end
    local d50, d99, dmx, l99, lmx
    if st.summarised then
      d50, d99, dmx, l99, lmx = st.dur_p50, st.dur_p99, st.dur_max, st.late_p99, st.late_max
    else
      local d, l = st.duration, st.lateness
      d50, d99, dmx, l99, lmx = d:percentile(50), d:percentile(99), d.max, l:percentile(99), l.max
    end
    local nerr = errors_of(st)
    if i == counted + 1 then
      counted = i
      tot.runs, tot.failures = tot.runs + st.runs, tot.failures + st.failures
      tot.errors = tot.errors + nerr
      tot.skipped, tot.timeouts = tot.skipped + st.skipped, tot.timeouts + st.timeouts
      if dmx and (dmax == nil or dmx > dmax) then dmax = dmx end
      if lmx and (lmax == nil or lmx > lmax) then lmax = lmx end
      if first then first(st) end
    end
    return { st.id, count(st.runs), count(st.failures), count(nerr), count(st.skipped),
      count(st.timeouts), sec(d50), sec(d99), sec(dmx), ms(l99), ms(lmx) }
  end
  return rows, tot
end

-- Rows of the summary as a list (header first, totals last) and the
-- totals: list as summary_source's figures, a list or a function.
function M.summary_rows(list)
  local figures = type(list) == "function" and list or function(i) return list[i] end
  local rows_of, tot = M.summary_source(figures)
  local rows = {}
  for ri = 1, math.huge do
    local row = rows_of(ri)
    if row == nil then break end
    rows[ri] = row
  end
  return rows, tot
end

-- Text lines of a table: the first column left-aligned, the others right
-- (and those in opts.left); a rule under the header and above the last row
-- when opts.total; trailing blanks cut.  opts.paint(ri, ci, cell, text) may
-- colour a cell (after padding).  Laid out by orch.columns (src/columns.c).
-- rows: a list, or a function rows(ri) -> row ri (summary_source).
-- With opts.emit, each line goes to emit(line) and nothing is returned.
function M.table_lines(rows, opts)
  opts = opts or {}
  return columns.table_lines(rows, opts.indent or "  ", opts.left, opts.total, opts.paint, opts.emit)
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
M.check_number = check_number

-- A check's limit: "<= 3", ">= 0.5", "0.5 .. 3".
function M.check_limit(c)
  local lo, hi = type(c.min) == "number" and c.min, type(c.max) == "number" and c.max
  if lo and hi then return ("%s .. %s"):format(check_number(lo), check_number(hi)) end
  if hi then return "<= " .. check_number(hi) end
  if lo then return ">= " .. check_number(lo) end
  return "-"
end

-- Rows of the checks' table (header first): name, stat, value, limit,
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

-- The run's own verdict as `orchlua report` exits with it: 0 when it
-- finished with status 0, else 1 (failed, stopped, or never finished).
function M.verdict(rep)
  return rep.status == 0 and 0 or 1
end

-- Text from the run made safe for a terminal: control bytes as \xNN.
local function printable(s)
  return (tostring(s):gsub("%c", function(c) return ("\\x%02x"):format(c:byte()) end))
end
M.printable = printable

local function plural(n, word) return ("%d %s%s"):format(n, word, n == 1 and "" or "s") end

-- The text of `orchlua report RUN.jsonl`: the console's summary, from the file.
function M.render_summary(rep)
  local clock = require("orch.plan").clock
  local out = {}
  local rs = rep.run_start
  out[#out + 1] = ("%s: %s, %g h at time scale %g, started %s%s"):format(rep.path, rep.test_name or "?",
    rep.total / 3600, rep.scale, tostring(clean(rs.ts) or "?"),
    clean(rs.version) and (", orchlua " .. clean(rs.version)) or "")
  if #rep.files > 1 then
    out[#out + 1] = ("read as one run: %d files (%s ... %s)"):format(#rep.files, rep.files[1].path,
      rep.files[#rep.files].path)
  end
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
  if rep.error_count > 0 then
    local fe = rep.first_error
    out[#out + 1] = ("errors: %d in %s (first: %s %s: %s)"):format(rep.error_count,
      plural(#rep.groups, "distinct message"), clock(fe.t), printable(fe.event), printable(fe.message))
    for i, g in ipairs(rep.groups) do
      if i > 5 then
        out[#out + 1] = ("  ... %d more messages (the HTML report lists them)"):format(#rep.groups - 5)
        break
      end
      out[#out + 1] = ("  %6d x %s (%s .. %s)"):format(g.count, printable(g.message), clock(g.first_t),
        clock(g.last_t))
    end
  end
  local failed_checks = 0
  if #rep.checks > 0 then
    -- the table as the console's summary has it, each check's final state
    local check_rows
    check_rows, failed_checks = M.check_rows(rep.checks)
    for _, r in ipairs(check_rows) do r[1] = printable(r[1]) end
    out[#out + 1] = "checks:"
    for _, l in ipairs(M.table_lines(check_rows, { left = { [2] = true, [5] = true } })) do out[#out + 1] = l end
  end
  if rep.torn then
    out[#out + 1] = ("%s:%d: the last line is torn (a run killed mid-write?): left out"):format(rep.torn.path,
      rep.torn.line)
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

-- A shell-like pattern (* any text, ? one character) as an anchored Lua pattern.
function M.glob(p)
  return "^" .. p:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
end

local function matches_any(pats, ...)
  for _, p in ipairs(pats) do
    for i = 1, select("#", ...) do
      local s = select(i, ...)
      if s and s:find(p) then return true end
    end
  end
  return false
end

-- opts: threshold (fraction, default 0.10), thresholds (list of {pattern=
-- glob, value= fraction}, the first matching a metric's name or key, or an
-- event id, wins), higher_is_better (set of metric names), only / exclude
-- (lists of globs on event ids, metric names and keys, check names),
-- min_duration (description s; default 1 ms real), min_lateness (real ms,
-- default 10).
function M.compare(a, b, opts)
  opts = opts or {}
  local thr = opts.threshold or 0.10
  local better_up = opts.higher_is_better or {}
  local per = {}
  for i, t in ipairs(opts.thresholds or {}) do per[i] = { M.glob(t.pattern), t.value } end
  local only, exclude = {}, {}
  for i, p in ipairs(opts.only or {}) do only[i] = M.glob(p) end
  for i, p in ipairs(opts.exclude or {}) do exclude[i] = M.glob(p) end
  local function wanted(...)
    if #only > 0 and not matches_any(only, ...) then return false end
    return not matches_any(exclude, ...)
  end
  local function thr_for(...)
    for _, t in ipairs(per) do
      for i = 1, select("#", ...) do
        local s = select(i, ...)
        if s and s:find(t[1]) then return t[2] end
      end
    end
    return thr
  end
  local scale = math.max(a.scale or 1, b.scale or 1)
  local min_dur = opts.min_duration or 0.001 * scale
  local min_late = opts.min_lateness or 10
  local cmp = { a = a, b = b, threshold = thr, rows = {}, regressions = {}, notes = {} }
  local groups, by_group = {}, {}

  local function row(group, what, va, vb, kind, rule)
    local r = { group = group, what = what, a = va, b = vb, kind = kind,
                change = kind ~= "text" and rel(va, vb) or nil }
    if rule then
      local why = rule(va, vb, r.change)
      if why then r.regression = why end
    end
    local g = by_group[group]
    if not g then
      g = { name = group, rows = {} }
      by_group[group] = g
      groups[#groups + 1] = g
    end
    g.rows[#g.rows + 1] = r
    if r.regression then g.regressed = true end
    return r
  end
  -- counts that should not grow (failures, skips, timeouts), as a rate of runs
  local function rate_rule(runs_a, runs_b, t)
    return function(va, vb)
      if (vb or 0) == 0 then return nil end
      local ra = (va or 0) / math.max(runs_a, 1)
      local rb = vb / math.max(runs_b, 1)
      if ra == 0 then return "appeared" end
      if rb > ra * (1 + t) then return ("rate %+.0f%%"):format((rb / ra - 1) * 100) end
    end
  end
  local function grows(floor, t)
    return function(va, vb, change)
      if va == nil or vb == nil then return nil end
      if vb - va > floor and change > t then return ("+%.0f%% > %g%%"):format(change * 100, t * 100) end
    end
  end
  local function shrinks(t)
    return function(va, vb, change)
      if va == nil or vb == nil or va == 0 then return nil end
      if change < -t then return ("%.0f%% < -%g%%"):format(change * 100, t * 100) end
    end
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
      if not seen[ev.id] and wanted(ev.id) then seen[ev.id] = true; ids[#ids + 1] = ev.id end
    end
  end
  for _, id in ipairs(ids) do
    local ea, eb = a.by_id[id], b.by_id[id]
    local t = thr_for(id)
    if not eb then
      local r = row(id, "runs", ea.runs, nil, "count")
      r.regression = "missing in B"
      by_group[id].regressed = true
    elseif not ea then
      row(id, "runs", nil, eb.runs, "count")
      cmp.notes[#cmp.notes + 1] = ("event %s is new in B"):format(id)
    else
      -- fewer firings (runs and skips: a skip is flagged on its own) than
      -- the length of the run promises: a run that stopped early, a stall
      row(id, "runs", ea.runs, eb.runs, "count", function()
        local expect = (ea.runs + ea.skipped) * len_ratio
        local got = eb.runs + eb.skipped
        if expect > 0 and got < expect * (1 - t) then
          return ("%.0f%% fewer firings than expected"):format((1 - got / expect) * 100)
        end
      end)
      row(id, "failures", ea.failures, eb.failures, "count", rate_rule(ea.runs, eb.runs, t))
      row(id, "timeouts", ea.timeouts, eb.timeouts, "count", rate_rule(ea.runs, eb.runs, t))
      row(id, "skipped", ea.skipped, eb.skipped, "count", rate_rule(ea.runs + ea.skipped, eb.runs + eb.skipped, t))
      row(id, "err results", ea.error_results, eb.error_results, "count", rate_rule(ea.runs, eb.runs, t))
      row(id, "dur p50", ea.duration:percentile(50), eb.duration:percentile(50), "sec", grows(min_dur, t))
      row(id, "dur p99", ea.duration:percentile(99), eb.duration:percentile(99), "sec", grows(min_dur, t))
      row(id, "dur max", ea.duration.max, eb.duration.max, "sec")
      row(id, "late p99", ea.lateness:percentile(99), eb.lateness:percentile(99), "ms", grows(min_late, t))
    end
  end

  local keys, mseen = {}, {}
  for _, rep in ipairs({ a, b }) do
    for _, m in ipairs(rep.metrics) do
      if not mseen[m.key] and wanted(m.name, m.key) then mseen[m.key] = true; keys[#keys + 1] = m.key end
    end
  end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local ma, mb = a.metric_by_key[key], b.metric_by_key[key]
    local group = "metric " .. key
    if not mb then
      local r = row(group, "count", ma.stats.n, nil, "count")
      r.regression = "missing in B"
      by_group[group].regressed = true
    elseif not ma then
      row(group, "count", nil, mb.stats.n, "count")
      cmp.notes[#cmp.notes + 1] = ("metric %s is new in B"):format(key)
    else
      local t = thr_for(ma.name, key)
      local up = better_up[ma.name]
      local rule = up and shrinks(t) or grows(0, t)
      row(group, "count", ma.stats.n, mb.stats.n, "count")
      row(group, "mean", ma.stats.mean, mb.stats.mean, "num", rule)
      row(group, "p99", ma.stats.p99, mb.stats.p99, "num", rule)
      row(group, "max", ma.stats.max, mb.stats.max, "num")
    end
  end

  -- checks: a verdict that turned to fail is a regression
  local cnames, cseen = {}, {}
  for _, rep in ipairs({ a, b }) do
    for _, c in ipairs(rep.checks) do
      if not cseen[c.name] and wanted(c.name) then cseen[c.name] = true; cnames[#cnames + 1] = c.name end
    end
  end
  for _, name in ipairs(cnames) do
    local ca, cb = a.check_by_name[name], b.check_by_name[name]
    row("check " .. name, "verdict", ca and ca.status or "-", cb and cb.status or "-", "text", function(va, vb)
      if vb == "fail" and va ~= "fail" then return "now fails" end
    end)
  end

  -- the groups with a regression first, each in its order
  local order = {}
  for i = 1, #groups do order[i] = i end
  table.sort(order, function(x, y)
    local gx, gy = groups[x], groups[y]
    if (gx.regressed or false) ~= (gy.regressed or false) then return gx.regressed == true end
    return x < y
  end)
  for _, i in ipairs(order) do
    for _, r in ipairs(groups[i].rows) do
      cmp.rows[#cmp.rows + 1] = r
      if r.regression then cmp.regressions[#cmp.regressions + 1] = r end
    end
  end
  return cmp
end

-- s cut in its middle to at most n characters
local function shorten(s, n)
  if #s <= n then return s end
  if n < 6 then return s:sub(1, n) end
  local head = (n - 2) // 2 + (n - 2) % 2
  return s:sub(1, head) .. ".." .. s:sub(#s - (n - 2 - head) + 1)
end
M.shorten = shorten

M.WIDTH = 80

function M.render_compare(cmp)
  local out = {}
  local a, b = cmp.a, cmp.b
  local function who(rep)
    return ("%s (%s, %s)"):format(rep.path, rep.test_name or "?", tostring(clean(rep.run_start.ts) or "?"))
  end
  out[#out + 1] = shorten("A: " .. who(a), M.WIDTH)
  out[#out + 1] = shorten("B: " .. who(b), M.WIDTH)
  for _, n in ipairs(cmp.notes) do out[#out + 1] = "note: " .. n end
  out[#out + 1] = ""
  local function cell(v, kind)
    if kind == "text" then return tostring(v) end
    return num_text(v, kind)
  end
  -- a heading line per event, metric series or check, its rows under it
  local rows = { { "", "A", "B", "change", "" } }
  local heads, last_group = {}, nil
  for _, r in ipairs(cmp.rows) do
    if r.group ~= last_group then heads[#rows + 1] = r.group end
    last_group = r.group
    rows[#rows + 1] = { r.what, cell(r.a, r.kind), cell(r.b, r.kind), pct_text(r.change),
                        r.regression and ("REGRESSION: " .. r.regression) or "" }
  end
  -- the widest columns give way so that a line fits the terminal
  local w = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do if #c > (w[i] or 0) then w[i] = #c end end
  end
  local total = 4 + (#w - 1) * 2
  for i = 1, #w do total = total + w[i] end
  if total > M.WIDTH then
    local over = total - M.WIDTH
    for _, col in ipairs({ 5, 2, 3 }) do
      local cut = math.min(over, math.max(w[col] - 10, 0))
      if cut > 0 then
        w[col] = w[col] - cut
        over = over - cut
        for _, r in ipairs(rows) do r[col] = shorten(r[col], w[col]) end
      end
      if over <= 0 then break end
    end
  end
  local lines = M.table_lines(rows, { indent = "    ", left = { [5] = true } })
  for i, l in ipairs(lines) do
    local head = heads[i - 1]   -- line i + 1 holds row i (a rule under the header)
    if head then out[#out + 1] = "  " .. shorten(head, M.WIDTH - 2) end
    out[#out + 1] = l
  end
  out[#out + 1] = ""
  if #cmp.regressions == 0 then
    out[#out + 1] = ("no regression beyond %g%%"):format(cmp.threshold * 100)
  else
    out[#out + 1] = ("%d regression%s beyond %g%%:"):format(#cmp.regressions, #cmp.regressions == 1 and "" or "s",
      cmp.threshold * 100)
    for _, r in ipairs(cmp.regressions) do
      local tail = (" %s: %s -> %s (%s)"):format(r.what, cell(r.a, r.kind), cell(r.b, r.kind), r.regression)
      out[#out + 1] = "  " .. shorten(r.group, math.max(16, M.WIDTH - 2 - #tail)) .. tail
    end
  end
  return table.concat(out, "\n") .. "\n"
end

return M
