-- orch.output.html: the HTML report of a run, one self-contained file that
-- opens offline: `orchlua run ... --html FILE.html` and `orchlua report
-- RUN.jsonl --html FILE.html` (orch.report reads the JSONL).
--
-- The page holds the summary table, the checks and the errors grouped by
-- message as plain HTML (a table of contents on top), and charts drawn by
-- dygraphs (Debian's libjs-dygraphs) and lua/orch/assets/report.js, both
-- compiled into the binary by the Makefile (orch.assets.*): the timeline
-- of invocations per event with failures, error results, skipped firings
-- and check failures marked; the duration and lateness of each event; a
-- chart per metric name (collapsed beyond the first few, drawn on opening).
-- orch.report's series are exact when short, min/mean/max per time bucket
-- when long; here a chart's buckets are merged further so that it holds at
-- most CHART_POINTS points, and a week-long report stays a few megabytes.
local report = require "orch.report"
local plan = require "orch.plan"
local cjson = require("cjson").new()
cjson.encode_number_precision(6)
cjson.encode_invalid_numbers("null")

local M = {}

local CHART_POINTS = 40000    -- per chart, all its series together
local MIN_BUCKETS = 64        -- per series, whatever the number of series
local OPEN_METRICS = 8        -- metric charts drawn open; the others on demand
local MAX_BARS = 20000        -- timeline bars
local MAX_ROWS = 200          -- timeline rows (events); the others are in their sections
local MAX_LINES = 100         -- series in the duration and lateness charts: the slowest

local DYGRAPHS_DIR = "/usr/share/javascript/dygraphs"
local HERE = (debug.getinfo(1, "S").source:match("^@(.*)/output/[^/]*$") or "lua/orch")

-- The embedded copy of an asset, or the file (development builds reading
-- lua/ from disk, plain lua5.4).
local function asset(module, dir, file)
  local ok, s = pcall(require, module)
  if ok and type(s) == "string" then return s end
  local f = io.open(dir .. "/" .. file, "rb")
  if f then
    s = f:read("a")
    f:close()
    return s
  end
  return nil, ("%s is not compiled into this orchlua and %s/%s is missing"):format(module, dir, file)
end

local function dygraphs(file)
  local s, e = asset("orch.assets.dygraph_" .. file:match("%.(%a+)$"),
    os.getenv("ORCHLUA_DYGRAPHS_DIR") or DYGRAPHS_DIR, file)
  if not s then return nil, e .. " (Debian's libjs-dygraphs; `make deps` installs it)" end
  return s
end

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                                         ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- Text safe inside <script>: no "</script", no "<!--".
local function script_safe(s)
  return (s:gsub("</([sS][cC][rR][iI][pP][tT])", "<\\/%1"):gsub("<!%-%-", "<\\!--"))
end

-- JSON safe inside <script type="application/json">: "<" only in strings.
local function json_safe(v)
  return (cjson.encode(v):gsub("<", "\\u003c"))
end

-- Checks that path can be written, before the run starts.
function M.check(path)
  local okw, err = require("orch.output.atomic").check(path)  -- leaves no file
  if not okw then return nil, err end
  local ok, e = dygraphs("dygraph.min.js")
  if not ok then return nil, e end
  return true
end

-- ---- thinning ----------------------------------------------------------

-- A series' points (orch.report's) as {x, y} or, bucketed at width w (a
-- multiple of its own), {x, lo, y, hi}.
local function columns(pts, w)
  if pts.t then
    local idx = {}
    for i = 1, #pts.t do idx[i] = i end
    table.sort(idx, function(a, b) return pts.t[a] < pts.t[b] end)
    local x, y = {}, {}
    for i, k in ipairs(idx) do x[i], y[i] = pts.t[k], pts.v[k] end
    if not w then return { x = x, y = y } end
    pts = { width = w, i = {}, n = {}, min = {}, mean = {}, max = {} }
    for i = 1, #x do
      pts.i[i], pts.n[i], pts.min[i], pts.mean[i], pts.max[i] = math.floor(x[i] / w), 1, y[i], y[i], y[i]
    end
    pts.width = w
  end
  w = w or pts.width
  local out = { x = {}, lo = {}, y = {}, hi = {}, n = {} }
  local cur, n, sum, lo, hi
  local function flush()
    if cur == nil then return end
    local k = #out.x + 1
    out.x[k], out.lo[k], out.hi[k], out.n[k] = (cur + 0.5) * w, lo, hi, n
    out.y[k] = math.min(math.max(sum / n, lo), hi)
  end
  for i = 1, #pts.i do
    local b = math.floor((pts.i[i] + 0.5) * pts.width / w)
    if b ~= cur then
      flush()
      cur, n, sum, lo, hi = b, 0, 0, pts.min[i], pts.max[i]
    end
    n, sum = n + pts.n[i], sum + pts.mean[i] * pts.n[i]
    if pts.min[i] < lo then lo = pts.min[i] end
    if pts.max[i] > hi then hi = pts.max[i] end
  end
  flush()
  return out
end

-- A chart of series {label=, series= orch.scan series}: exact when every
-- series is, else all bucketed alike within the chart's point budget.
local function chart(list, span)
  local bucketed, width, total = false, 0, 0
  for _, s in ipairs(list) do
    local w = s.series.width
    if w then bucketed = true; width = math.max(width, w) end
    total = total + s.series.n
  end
  -- one series' points at a time: 100 series of 1024 buckets are megabytes
  local out = {}
  if not bucketed and total <= CHART_POINTS then
    for i, s in ipairs(list) do
      local c = columns(s.series:points())
      c.label = s.label
      out[i] = c
    end
    return { bars = false, series = out }
  end
  if width == 0 then width = math.max(span, 1e-9) / report.SERIES_BUCKETS end
  local per = math.max(MIN_BUCKETS, CHART_POINTS // math.max(#list, 1))
  while span / width > per do width = width * 2 end
  for i, s in ipairs(list) do
    local c = columns(s.series:points(), width)
    c.label = s.label
    out[i] = c
  end
  return { bars = true, series = out, bucket = width }
end

local STATUS = { ok = 0, error = 1, timeout = 2, cancelled = 3 }
local KIND = { fail = 1, skip = 2, error_result = 3, check = 4 }

-- Timeline: bars {start, length, event index, invocations} from each
-- event's duration series (exact: one per invocation; bucketed: one per run
-- of adjacent buckets in use); marks {t, kind, event index or -1, status,
-- iteration, text}.
local function timeline(rep, index, span)
  local bars, bucketed, bucket = {}, false, nil
  local rows = math.min(#rep.events, MAX_ROWS)
  local per = math.max(4, MAX_BARS // math.max(rows, 1))
  for ei = 1, rows do
    local ev = rep.events[ei]
    local p = ev.duration:points()
    if p.t and #p.t <= per then
      for i = 1, #p.t do bars[#bars + 1] = { p.t[i], p.v[i], ei - 1, 1 } end
    else
      bucketed = true
      local w = p.width or math.max(span, 1e-9) / report.SERIES_BUCKETS
      while span / w > per do w = w * 2 end
      bucket = math.max(bucket or 0, w)
      local c = columns(p, w)
      local cur
      for i = 1, #c.x do
        local s = c.x[i] - w / 2
        if cur and s <= cur[1] + cur[2] + w / 2 then
          cur[2] = s + w - cur[1]
        else
          cur = { s, w, ei - 1, 0 }
          bars[#bars + 1] = cur
        end
        cur[4] = cur[4] + c.n[i]
      end
    end
  end
  -- marks of an event beyond the rows are left out; those of no event
  -- (checks, error results from outside an event) go on a last row
  local marks, other_row, dropped = {}, false, rep.marks_dropped
  for _, m in ipairs(rep.marks) do
    local ei = m.event and index[m.event]
    if ei and ei > rows then
      dropped = dropped + 1
    else
      if not ei then other_row = true end
      marks[#marks + 1] = { m.t, KIND[m.kind], ei and ei - 1 or -1, STATUS[m.status] or 1, m.iteration,
                            m.message or m.reason or m.check }
    end
  end
  table.sort(bars, function(a, b) return a[1] < b[1] end)
  return { bars = bars, marks = marks, marks_dropped = dropped, bucketed = bucketed, bucket = bucket,
           rows = rows, other_row = other_row }
end

-- Everything the page's script draws.
function M.data(rep)
  local span = math.max(rep.end_t, rep.total, 1e-9)
  local ids, index = {}, {}
  for i, ev in ipairs(rep.events) do ids[i] = ev.id; index[ev.id] = i end
  -- the duration and lateness charts: every event, or the slowest beyond MAX_LINES
  local shown = {}
  for i = 1, #rep.events do shown[i] = i end
  if #shown > MAX_LINES then
    table.sort(shown, function(a, b)
      local x, y = rep.events[a].duration.max or 0, rep.events[b].duration.max or 0
      if x ~= y then return x > y end
      return a < b
    end)
    for i = MAX_LINES + 1, #shown do shown[i] = nil end
    table.sort(shown)
  end
  local durs, lates, line_of = {}, {}, {}
  for k, i in ipairs(shown) do
    local ev = rep.events[i]
    durs[k] = { label = ev.id, series = ev.duration }
    lates[k] = { label = ev.id, series = ev.lateness }
    line_of[i] = k - 1
  end
  -- metrics: one chart per name, a series per fields combination
  local metrics, by_name = {}, {}
  for _, m in ipairs(rep.metrics) do
    local c = by_name[m.name]
    if not c then
      c = { name = m.name, unit = m.unit, list = {}, stats = {} }
      by_name[m.name] = c
      metrics[#metrics + 1] = c
    end
    c.list[#c.list + 1] = { label = m.fields ~= "" and m.fields or m.name, series = m.series }
    local st = m.stats
    c.stats[#c.stats + 1] = { key = m.key, n = st.n, mean = st.mean, p50 = st.p50, p99 = st.p99, min = st.min,
                              max = st.max }
  end
  table.sort(metrics, function(a, b) return a.name < b.name end)
  local mcharts = {}
  for i, c in ipairs(metrics) do
    local spec = chart(c.list, span)
    spec.name, spec.unit, spec.stats = c.name, c.unit, c.stats
    mcharts[i] = spec
  end
  local keys = {}
  for i, m in ipairs(rep.metrics) do keys[i] = m.key end
  local rs = rep.run_start
  local failures = 0
  for _, ev in ipairs(rep.events) do failures = failures + ev.failures end
  local function str(v) return type(v) == "string" and v or nil end
  return {
    meta = { test_name = str(rep.test_name), file = str(rs.file), version = str(rs.version), ts = str(rs.ts),
             total = rep.total, scale = rep.scale, status = rep.status, reason = rep.reason, end_t = rep.end_t,
             stop_t = rep.stop_t, path = rep.path,
             exit_reason = rep.status and report.exit_reason(rep.status, { failures = failures,
               error_results = rep.error_results }) or report.exit_reason(nil) },
    events = ids,
    timeline = timeline(rep, index, span),
    duration = chart(durs, span),
    lateness = chart(lates, span),
    lines_of = #rep.events,
    metrics = mcharts,
    open_metrics = OPEN_METRICS,
    per_event = (function()
      local list = {}
      for i, ev in ipairs(rep.events) do
        local d, l = ev.duration, ev.lateness
        list[i] = { id = ev.id, line = line_of[i] or -1, runs = ev.runs, failures = ev.failures, skipped = ev.skipped,
                    timeouts = ev.timeouts, errors = report.errors_of(ev),
                    d50 = d:percentile(50), d99 = d:percentile(99),
                    dmax = d.max, l99 = l:percentile(99), lmax = l.max }
      end
      return list
    end)(),
    metric_keys = keys,
    errors_total = rep.error_count,
  }
end

-- ---- the page ----------------------------------------------------------

local function summary_html(rep)
  local rows = report.summary_rows(rep.events)
  local out = { '<table class="summary">' }
  for ri, r in ipairs(rows) do
    local cls = ri == #rows and ' class="total"' or ""
    local cells = {}
    for ci, c in ipairs(r) do
      if ri == 1 then
        cells[ci] = "<th>" .. esc(c) .. "</th>"
      else
        local k = ""
        if (ci == 3 or ci == 4 or ci == 6) and c ~= "0" and c ~= "" then k = ' class="bad"' end
        if ci == 5 and c ~= "0" and c ~= "" then k = ' class="warn"' end
        cells[ci] = "<td" .. k .. ">" .. esc(c) .. "</td>"
      end
    end
    out[#out + 1] = "<tr" .. cls .. ">" .. table.concat(cells) .. "</tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

local function errors_html(rep)
  if rep.error_count == 0 then return '<p class="note">no failed invocation and no error result</p>' end
  local out = { ('<p>%d errors, %d distinct messages, most frequent first</p>'):format(rep.error_count, #rep.groups),
    '<table class="groups"><tr><th>count</th><th>first</th><th>last</th><th>events</th><th>status</th>'
    .. '<th>message</th></tr>' }
  for _, g in ipairs(rep.groups) do
    local evs = {}
    for e in pairs(g.events) do evs[#evs + 1] = e end
    table.sort(evs)
    local st = {}
    for k, n in pairs(g.status) do st[#st + 1] = ("%s %d"):format(k, n) end
    table.sort(st)
    local msg = esc(g.message)
    if g.traceback and g.traceback ~= "" then
      msg = msg .. "<details><summary>traceback (first)</summary><pre>" .. esc(g.traceback) .. "</pre></details>"
    end
    out[#out + 1] = ('<tr><td class="n">%d</td><td>%s</td><td>%s</td><td>%s</td><td class="bad">%s</td>'
      .. '<td>%s</td></tr>')
      :format(g.count, esc(plan.clock(g.first_t)), esc(plan.clock(g.last_t)), esc(table.concat(evs, ", ")),
        esc(table.concat(st, ", ")), msg)
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

local function checks_html(rep)
  if #rep.checks == 0 then return '<p class="note">no check records</p>' end
  local out = { '<table class="checks"><tr><th>check</th><th>verdict</th><th>value</th><th>bounds</th>'
    .. '<th>times failed</th><th>first failure</th></tr>' }
  for _, c in ipairs(rep.checks) do
    local bounds = {}
    if c.min ~= nil then bounds[#bounds + 1] = "min " .. report.value_text(c.min) end
    if c.max ~= nil then bounds[#bounds + 1] = "max " .. report.value_text(c.max) end
    out[#out + 1] = ('<tr><td>%s</td><td class="%s">%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td></tr>'):format(
      esc(c.name), c.status == "fail" and "bad" or (c.status == "warn" and "warn" or ""), esc(c.status),
      c.value ~= nil and esc(report.value_text(c.value)) or "-", esc(table.concat(bounds, ", ")), c.fails,
      c.first_fail_t and esc(plan.clock(c.first_fail_t)) or "-")
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

local function toc_html(rep, d)
  local out = { '<nav class="toc"><a href="#summary">Summary</a>',
    '<a href="#checks">Checks (' .. #rep.checks .. ')</a>',
    '<a href="#timeline">Timeline</a>', ('<a href="#errors">Errors (%d)</a>'):format(rep.error_count),
    '<a href="#durations">Durations</a>', '<a href="#lateness">Lateness</a>',
    ('<a href="#metrics">Metrics (%d)</a>'):format(#d.metrics),
    ('<a href="#events">Events (%d)</a>'):format(#d.events) }
  if #d.metrics > 0 then
    out[#out + 1] = "<br>metrics:"
    for i, m in ipairs(d.metrics) do
      out[#out + 1] = ('<a href="#metric-%d">%s</a>'):format(i - 1, esc(m.name))
    end
  end
  out[#out + 1] = "</nav>"
  return table.concat(out, "\n")
end

-- The page, as a string; nil, message when an asset is missing.
function M.render(rep)
  local js, e1 = dygraphs("dygraph.min.js")
  if not js then return nil, e1 end
  local css = dygraphs("dygraph.min.css") or ""
  local own_js, e2 = asset("orch.assets.report_js", HERE .. "/assets", "report.js")
  if not own_js then return nil, e2 end
  local own_css = asset("orch.assets.report_css", HERE .. "/assets", "report.css") or ""
  -- the source maps are not shipped: no request for them
  js = js:gsub("\n//# sourceMappingURL=[^\n]*", "\n")
  css = css:gsub("/%*# sourceMappingURL=[^*]*%*/", "")
  local d = M.data(rep)
  local m = d.meta
  local status_cls = m.status == 0 and "status-0" or "status-bad"
  local title = ("%s: orchlua report"):format(m.test_name or "?")
  local parts = {
    "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>" .. esc(title) .. "</title>",
    "<style>" .. css .. "\n" .. own_css .. "</style>",
    "<script>" .. script_safe(js) .. "</script>",
    "</head><body>",
    "<h1>" .. esc(m.test_name or "?") .. "</h1>",
    ('<p class="meta">%s &middot; %g h%s &middot; started %s &middot; orchlua %s &middot; report %s</p>'):format(
      esc(m.file or "?"), rep.total / 3600,
      rep.scale ~= 1 and (" at time scale " .. esc(("%g"):format(rep.scale))) or "",
      esc(m.ts or "?"), esc(m.version or "?"), esc(rep.path)),
    ('<p class="%s" id="exit">%s</p>'):format(status_cls,
      m.status and esc(("exit %d: %s (%s after %s)"):format(m.status, m.exit_reason, tostring(m.reason or "?"),
        plan.clock(rep.end_t))) or esc(m.exit_reason)),
    rep.torn and ('<p class="note">%s:%d: the last line is torn (a run killed mid-write?): left out</p>'):format(
      esc(rep.torn.path), rep.torn.line) or "",
    toc_html(rep, d),
    '<h2 id="summary">Summary</h2>',
    rep.scale ~= 1 and ("<p class=\"note\">durations in description time (time scale %g: each record's "
      .. "duration_real is the wall clock's), lateness in real milliseconds</p>"):format(rep.scale)
      or "<p class=\"note\">durations and lateness in real time</p>",
    summary_html(rep),
    ('<p>results: %d (%d error%s), %d metric series</p>'):format(rep.results, rep.error_results,
      rep.error_results == 1 and "" or "s", #rep.metrics),
    ('<h2 id="checks">Checks (%d)</h2>'):format(#rep.checks),
    checks_html(rep),
    '<section id="timeline"><h2>Timeline</h2></section>',
    ('<h2 id="errors">Errors (%d)</h2>'):format(rep.error_count),
    errors_html(rep),
    '<section id="durations"><h2>Duration of each event (description time)</h2></section>',
    '<section id="lateness"><h2>Lateness of each event (real time)</h2></section>',
    ('<section id="metrics"><h2>Metrics (%d)</h2></section>'):format(#d.metrics),
    ('<section id="events"><h2>Events (%d)</h2></section>'):format(#d.events),
    '<div id="charts"></div>',
    '<pre id="orch-selfcheck" hidden></pre>',
    '<script type="application/json" id="orch-data">' .. json_safe(d) .. "</script>",
    "<script>" .. script_safe(own_js) .. "</script>",
    "</body></html>", "",
  }
  return table.concat(parts, "\n")
end

-- Writes the page of a loaded report to path; stop (optional): asked once
-- the page is made, true gives up (nil, report.STOPPED) writing nothing.
function M.write(path, rep, stop)
  local page, err = M.render(rep)
  if not page then return nil, err end
  if stop and stop() then return nil, report.STOPPED end
  return require("orch.output.atomic").write(path, page)  -- whole or not at all
end

-- A page made from a big report takes seconds: said first, so that a run
-- that has not exited yet says why and how to stop it.
local SLOW_BYTES = 16 * 1048576
function M.announce(console, jsonl_path)
  local bytes = 0
  for _, p in ipairs(report.segments(jsonl_path)) do
    local f = io.open(p, "rb")
    if f then
      bytes = bytes + (f:seek("end") or 0)
      f:close()
    end
  end
  if bytes >= SLOW_BYTES then
    console:phase(("writing the HTML page from %d MiB of records (a signal stops it)"):format(bytes // 1048576))
    console.out:flush()   -- no loop flushes it now
  end
end

-- From a JSONL file (the run's own records) to path; shown: the report
-- file's name on the page (nil: a temporary file, not kept); run_end: the
-- record the run is about to write (the page is made before it, so that a
-- page that cannot be written is in the run's status); stop: asked now and
-- then, true gives up (nil, report.STOPPED) before anything is written.
function M.from_report(jsonl_path, path, shown, run_end, stop)
  local rep, err = report.load(jsonl_path, { run_end = run_end, stop = stop })
  if not rep then return nil, err end
  if stop and stop() then return nil, report.STOPPED end
  rep.path = shown or "(no --report file)"
  return M.write(path, rep, stop)
end

return M
