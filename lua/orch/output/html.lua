-- orch.output.html: the HTML report of a run, one self-contained file that
-- opens offline: `orchlua run ... --html FILE.html` and `orchlua report
-- RUN.jsonl --html FILE.html` (orch.report reads the JSONL).
--
-- The page holds:
--   * the summary table (the console's numbers) and the errors with their
--     tracebacks, as plain HTML;
--   * charts drawn by dygraphs (Debian's libjs-dygraphs, compiled into the
--     binary by the Makefile as the modules orch.assets.dygraph_js/_css):
--     the timeline of invocations per event (a bar from start for its
--     duration, coloured by status, skipped firings and failures marked,
--     the teardown phase shaded), the duration and the lateness of each
--     event over time, and one chart per metric name with a line per
--     fields combination.
-- The data goes in as JSON; long runs are thinned first (adjacent ok
-- invocations merge into one bar, long series become min/mean/max per time
-- bucket), so a week-long report stays a few megabytes.
--
-- Once drawn, the page writes what each chart holds (labels, rows, points
-- per series, bars drawn) and any script error into #orch-selfcheck, which
-- the specs read back from headless Chromium.
local json = require "orch.output.json"
local report = require "orch.report"
local plan = require "orch.plan"

local M = {}

local RAW_POINTS = 4000       -- per series; beyond, every series of the chart is bucketed
local BUCKETS = 600
local MAX_BARS = 40000        -- timeline bars (ok ones merged further beyond)
local MAX_MARKS = 20000       -- failed invocations and skipped firings drawn one by one
local MAX_ERRORS = 500        -- listed with their tracebacks

local DYGRAPHS_DIR = "/usr/share/javascript/dygraphs"

-- The embedded copy of a dygraphs file, or Debian's (development builds
-- reading lua/ from disk, plain lua5.4).
local function asset(module, file)
  local ok, s = pcall(require, module)
  if ok and type(s) == "string" then return s end
  local dir = os.getenv("ORCHLUA_DYGRAPHS_DIR") or DYGRAPHS_DIR
  local f = io.open(dir .. "/" .. file, "rb")
  if f then
    s = f:read("a")
    f:close()
    return s
  end
  return nil, ("dygraphs is not compiled into this orchlua and %s/%s is missing "
    .. "(Debian's libjs-dygraphs; `make deps` installs it)"):format(dir, file)
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
  return (json.encode(v):gsub("<", "\\u003c"))
end

-- Checks that path can be written, before the run starts.
function M.check(path)
  local okw, err = require("orch.output.atomic").check(path)  -- leaves no file
  if not okw then return nil, err end
  local ok, e = asset("orch.assets.dygraph_js", "dygraph.min.js")
  if not ok then return nil, e end
  return true
end

-- ---- thinning ----------------------------------------------------------

-- A chart's series: {label, points = {{x, y}...}} -> {label, points} with
-- points raw or, when any series is long, {x, {min, mean, max}} per bucket.
local function series_spec(list, span)
  local long = false
  for _, s in ipairs(list) do if #s.points > RAW_POINTS then long = true end end
  if not long then return { bars = false, series = list } end
  local width = math.max(span, 1e-9) / BUCKETS
  local out = {}
  for i, s in ipairs(list) do
    local b = {}
    local order = {}
    for _, p in ipairs(s.points) do
      local k = math.floor(p[1] / width)
      local c = b[k]
      if not c then
        c = { n = 0, sum = 0, min = p[2], max = p[2] }
        b[k] = c
        order[#order + 1] = k
      end
      c.n, c.sum = c.n + 1, c.sum + p[2]
      if p[2] < c.min then c.min = p[2] end
      if p[2] > c.max then c.max = p[2] end
    end
    table.sort(order)
    local pts = {}
    for j, k in ipairs(order) do
      local c = b[k]
      local mean = math.min(math.max(c.sum / c.n, c.min), c.max)   -- no rounding outside the band
      pts[j] = { (k + 0.5) * width, { c.min, mean, c.max } }
    end
    out[i] = { label = s.label, points = pts, n = #s.points }
  end
  return { bars = true, series = out, bucket = width }
end

local STATUS = { ok = 0, error = 1, timeout = 2, cancelled = 3 }

-- Timeline bars: {start, duration, event index, status code, iteration,
-- merged count, error index or -1}.
local function timeline(rep, errors_index)
  local span = math.max(rep.end_t, rep.total, 1e-9)
  local bars, marks, skips = {}, 0, {}
  local ok_lists = {}
  for ei, ev in ipairs(rep.events) do
    local oks = {}
    for _, inv in ipairs(ev.invocations) do
      if inv.status == "ok" then
        oks[#oks + 1] = inv
      elseif marks < MAX_MARKS then
        marks = marks + 1
        bars[#bars + 1] = { inv.started, inv.duration, ei - 1, STATUS[inv.status] or 1, inv.iteration, 1,
                            errors_index[inv] or -1 }
      end
    end
    table.sort(oks, function(a, b) return a.started < b.started end)
    ok_lists[ei] = oks
    for _, s in ipairs(ev.skips) do
      if #skips < MAX_MARKS then skips[#skips + 1] = { s.t, ei - 1, s.iteration, s.reason } end
    end
  end
  -- ok bars: merged while they touch at the chart's resolution
  local gap = span / 3000
  local merged
  repeat
    merged = {}
    for ei, oks in ipairs(ok_lists) do
      local cur
      for _, inv in ipairs(oks) do
        local e = inv.started + inv.duration
        if cur and inv.started <= cur.e + gap then
          if e > cur.e then cur.e = e end
          cur.n = cur.n + 1
        else
          cur = { s = inv.started, e = e, n = 1, it = inv.iteration, ei = ei }
          merged[#merged + 1] = cur
        end
      end
    end
    gap = gap * 2
  until #merged + #bars <= MAX_BARS
  for _, m in ipairs(merged) do
    bars[#bars + 1] = { m.s, m.e - m.s, m.ei - 1, 0, m.it, m.n, -1 }
  end
  table.sort(bars, function(a, b) return a[1] < b[1] end)
  table.sort(skips, function(a, b) return a[1] < b[1] end)
  return { bars = bars, skips = skips, marks_dropped = marks >= MAX_MARKS }
end

-- Everything the page's script draws.
function M.data(rep)
  local span = math.max(rep.end_t, rep.total, 1e-9)
  local ids = {}
  for i, ev in ipairs(rep.events) do ids[i] = ev.id end
  -- a failed invocation's bar points at its message
  local msgs, errors_index = {}, {}
  for _, ev in ipairs(rep.events) do
    for _, inv in ipairs(ev.invocations) do
      if inv.status ~= "ok" then
        msgs[#msgs + 1] = inv.error or ""
        errors_index[inv] = #msgs - 1
      end
    end
  end
  local durs, lates = {}, {}
  for _, ev in ipairs(rep.events) do
    local d, l = {}, {}
    local sorted = {}
    for i, inv in ipairs(ev.invocations) do sorted[i] = inv end
    table.sort(sorted, function(a, b) return a.started < b.started end)
    for i, inv in ipairs(sorted) do
      d[i] = { inv.started, inv.duration }
      l[i] = { inv.started, inv.lateness / rep.scale * 1000 }   -- real ms, as the summary
    end
    durs[#durs + 1] = { label = ev.id, points = d }
    lates[#lates + 1] = { label = ev.id, points = l }
  end
  -- metrics: one chart per name, a series per fields combination
  local metrics, by_name = {}, {}
  for _, m in ipairs(rep.metrics) do
    local c = by_name[m.name]
    if not c then
      c = { name = m.name, list = {}, stats = {} }
      by_name[m.name] = c
      metrics[#metrics + 1] = c
    end
    local pts = {}
    for i = 1, #m.values do pts[i] = { m.ts[i], m.values[i] } end
    table.sort(pts, function(a, b) return a[1] < b[1] end)
    c.list[#c.list + 1] = { label = m.fields ~= "" and m.fields or m.name, points = pts }
    c.stats[#c.stats + 1] = { key = m.key, n = m.stats.n, mean = m.stats.mean, p99 = m.stats.p99,
                              min = m.stats.min, max = m.stats.max, last = m.stats.last }
  end
  table.sort(metrics, function(a, b) return a.name < b.name end)
  local mcharts = {}
  for i, c in ipairs(metrics) do
    local spec = series_spec(c.list, span)
    spec.name, spec.stats = c.name, c.stats
    mcharts[i] = spec
  end
  local rs = rep.run_start
  local failures = 0
  for _, ev in ipairs(rep.events) do failures = failures + ev.failures end
  return {
    meta = { test_name = rep.test_name, file = rs.file, version = rs.version, ts = rs.ts, total = rep.total,
             scale = rep.scale, status = rep.status, reason = rep.reason, end_t = rep.end_t, stop_t = rep.stop_t,
             path = rep.path,
             exit_reason = rep.status and report.exit_reason(rep.status, { failures = failures,
               error_results = rep.error_results }) or report.exit_reason(nil) },
    events = ids,
    timeline = timeline(rep, errors_index),
    messages = msgs,
    duration = series_spec(durs, span),
    lateness = series_spec(lates, span),
    metrics = mcharts,
    metric_keys = (function()
      local k = {}
      for i, m in ipairs(rep.metrics) do k[i] = m.key end
      return k
    end)(),
    errors_total = #rep.errors,
  }
end

-- ---- the page ----------------------------------------------------------

local CSS = [[
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 24px 40px; color: #222; }
h1 { font-size: 22px; margin: 18px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 3px; }
.meta { color: #555; }
.status-0 { color: #1a7f37; font-weight: 600; }
.status-bad { color: #c62828; font-weight: 600; }
table.summary, table.errors, table.mstats { border-collapse: collapse; margin: 6px 0; }
table.summary th, table.summary td, table.mstats th, table.mstats td { padding: 3px 10px; text-align: right;
  border-bottom: 1px solid #eee; font-variant-numeric: tabular-nums; }
table.summary th:first-child, table.summary td:first-child, table.mstats td:first-child { text-align: left; }
table.summary tr.total td { border-top: 2px solid #ccc; font-weight: 600; }
td.bad { color: #c62828; font-weight: 600; }
td.warn { color: #b26a00; }
table.errors td { padding: 3px 8px; vertical-align: top; border-bottom: 1px solid #eee; }
table.errors pre { margin: 4px 0; font-size: 12px; background: #f6f6f6; padding: 6px; white-space: pre-wrap; }
.chart { width: 100%; margin: 4px 0 10px; }
.legend { font-size: 12px; min-height: 1.4em; color: #333; }
.keys span { display: inline-block; margin-right: 14px; font-size: 12px; }
.keys i { display: inline-block; width: 12px; height: 10px; margin-right: 4px; vertical-align: middle; }
.note { color: #777; font-size: 12px; }
]]

local SCRIPT = [==[
(function () {
  "use strict";
  // the JSON comes from Lua tables: an empty list arrives as {}
  function lists(v) {
    if (v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return v.map(lists);
    var keys = Object.keys(v);
    if (keys.length === 0) return [];
    keys.forEach(function (k) { v[k] = lists(v[k]); });
    return v;
  }
  var D = lists(JSON.parse(document.getElementById("orch-data").textContent));
  var check = { charts: [], errors: [], events: D.events, metrics: D.metric_keys };
  window.addEventListener("error", function (e) { check.errors.push(String(e.message)); });
  var COLORS = { 0: "#2e9e44", 1: "#d62728", 2: "#ff7f0e", 3: "#7f7f7f" };
  var NAMES = { 0: "ok", 1: "error", 2: "timeout", 3: "cancelled" };

  function clock(s) {
    var neg = s < 0; s = Math.abs(s);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s - h * 3600 - m * 60;
    var ss = x.toFixed(x < 10 && (h + m) === 0 ? 3 : 1);
    if (x < 10) ss = "0" + ss;
    return (neg ? "-" : "") + h + ":" + (m < 10 ? "0" : "") + m + ":" + ss;
  }
  function secs(v) {
    if (v === null || v === undefined || isNaN(v)) return "-";
    return v < 1 ? (v * 1000).toFixed(1) + "ms" : v.toFixed(2) + "s";
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in (attrs || {})) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // time ticks at round steps of description time
  var STEPS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
               7200, 10800, 21600, 43200, 86400, 172800, 604800];
  function timeTicker(min, max, pixels) {
    var want = Math.max(2, Math.floor(pixels / 95)), step = STEPS[STEPS.length - 1];
    for (var i = 0; i < STEPS.length; i++) if ((max - min) / STEPS[i] <= want) { step = STEPS[i]; break; }
    var ticks = [];
    for (var v = Math.ceil(min / step) * step; v <= max + 1e-9; v += step) {
      ticks.push({ v: v, label: tickLabel(v, step) });
    }
    return ticks;
  }
  function tickLabel(v, step) {
    if (step >= 1) {
      var s = Math.round(v), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
      return h + ":" + (m < 10 ? "0" : "") + m + ":" + (x < 10 ? "0" : "") + x;
    }
    return clock(v);
  }
  var xAxis = { ticker: timeTicker, valueFormatter: function (v) { return clock(v); }, axisLabelWidth: 70 };

  // the teardown phase and the end of the run as described, under every chart
  function underlay(ctx, area, g) {
    var m = D.meta;
    if (m.stop_t !== null && m.stop_t !== undefined) {
      var x0 = g.toDomXCoord(m.stop_t), x1 = g.toDomXCoord(Math.max(m.end_t, m.stop_t));
      ctx.fillStyle = "rgba(255, 200, 80, 0.18)";
      ctx.fillRect(x0, area.y, Math.max(x1 - x0, 2), area.h);
    }
    if (m.total > 0) {
      var xt = g.toDomXCoord(m.total);
      ctx.strokeStyle = "rgba(0,0,0,0.35)"; ctx.setLineDash([4, 4]);
      ctx.beginPath(); ctx.moveTo(xt, area.y); ctx.lineTo(xt, area.y + area.h); ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  // merges series of [x, y] points into dygraphs' rows
  function table(series) {
    var xs = {}, list = [];
    series.forEach(function (s) {
      s.points.forEach(function (p) { if (!(p[0] in xs)) { xs[p[0]] = 1; list.push(p[0]); } });
    });
    list.sort(function (a, b) { return a - b; });
    var index = {};
    list.forEach(function (x, i) { index[x] = i; });
    var rows = list.map(function (x) { var r = [x]; for (var i = 0; i < series.length; i++) r.push(null); return r; });
    series.forEach(function (s, j) { s.points.forEach(function (p) { rows[index[p[0]]][j + 1] = p[1]; }); });
    return rows;
  }

  function record(id, kind, title, g, extra) {
    var labels = g.getLabels(), points = {};
    for (var c = 1; c < labels.length; c++) {
      var n = 0;
      for (var r = 0; r < g.numRows(); r++) {
        var v = g.getValue(r, c);
        if (v !== null && !(typeof v === "number" && isNaN(v))) n++;
      }
      points[labels[c]] = n;
    }
    var rec = { id: id, kind: kind, title: title, labels: labels, rows: g.numRows(), points: points };
    for (var k in (extra || {})) rec[k] = extra[k];
    check.charts.push(rec);
    return rec;
  }

  // a log scale when the values span more than two decades
  function spread(spec) {
    var lo = Infinity, hi = -Infinity;
    spec.series.forEach(function (s) { s.points.forEach(function (p) {
      var v = Array.isArray(p[1]) ? p[1][1] : p[1];
      if (v > 0 && v < lo) lo = v; if (v > hi) hi = v; if (v <= 0) lo = -Infinity;
    }); });
    return lo > 0 && hi / lo > 100;
  }

  function lineChart(parent, id, title, ylabel, spec, fmt, allowLog) {
    var log = allowLog && spread(spec);
    if (allowLog) {
      var label = el("label", { "class": "note" });
      var cb = el("input", { type: "checkbox" }); cb.checked = log;
      label.appendChild(cb); label.appendChild(document.createTextNode(" log scale"));
      parent.appendChild(label);
      cb.addEventListener("change", function () { g.updateOptions({ logscale: cb.checked }); });
    }
    var box = el("div", { id: id, "class": "chart" }); parent.appendChild(box);
    var legend = el("div", { "class": "legend" }); parent.appendChild(legend);
    if (spec.bars) parent.appendChild(el("p", { "class": "note" },
      "long series: each point is the mean over " + clock(spec.bucket) + " with its min and max as a band"));
    var rows = table(spec.series);
    var labels = ["t"].concat(spec.series.map(function (s) { return s.label; }));
    var g = new Dygraph(box, rows, {
      labels: labels, title: title, ylabel: ylabel, height: 260, drawPoints: !spec.bars, pointSize: 2,
      strokeWidth: 1.2, connectSeparatedPoints: true, customBars: spec.bars, labelsDiv: legend, logscale: log,
      labelsSeparateLines: false, legend: "always", includeZero: false,
      axes: { x: xAxis, y: { valueFormatter: fmt, axisLabelFormatter: fmt, axisLabelWidth: 76 } },
      dateWindow: [0, Math.max(D.meta.end_t, D.meta.total) * 1.01],   // every chart on the same time axis
      underlayCallback: underlay
    });
    record(id, "series", title, g);
    return g;
  }

  // ---- the timeline: a bar per invocation, a row per event ----
  function timelineChart(parent) {
    var T = D.timeline, n = D.events.length;
    var box = el("div", { id: "chart-timeline", "class": "chart" }); parent.appendChild(box);
    var legend = el("div", { "class": "legend" }); parent.appendChild(legend);
    var keys = el("div", { "class": "keys" });
    [["ok", COLORS[0]], ["error", COLORS[1]], ["timeout", COLORS[2]], ["cancelled", COLORS[3]],
     ["skipped firing", "#9467bd"], ["teardown and shutdown", "rgba(255,200,80,0.5)"]].forEach(function (k) {
      var s = el("span"); var i = el("i"); i.style.background = k[1]; s.appendChild(i);
      s.appendChild(document.createTextNode(k[0])); keys.appendChild(s);
    });
    parent.appendChild(keys);
    if (T.marks_dropped) {
      parent.appendChild(el("p", { "class": "note" }, "only the first failures and skipped firings are marked"));
    }
    // rows: [x, ok, error, timeout, cancelled, skipped]; info per row
    var rows = [], info = [];
    T.bars.forEach(function (b) {
      var r = [b[0], null, null, null, null, null]; r[1 + b[3]] = b[2];
      rows.push(r); info.push({ bar: b });
    });
    T.skips.forEach(function (s) {
      var r = [s[0], null, null, null, null, s[1]];
      rows.push(r); info.push({ skip: s });
    });
    var order = rows.map(function (r, i) { return i; });
    order.sort(function (a, b) { return rows[a][0] - rows[b][0] || a - b; });
    rows = order.map(function (i) { return rows[i]; });
    info = order.map(function (i) { return info[i]; });
    if (rows.length === 0) rows.push([0, null, null, null, null, null]), info.push({});
    var drawn = { bars: 0, skips: 0 };
    var longest = D.events.reduce(function (m, id) { return Math.max(m, id.length); }, 4);
    var barH = Math.max(6, Math.min(18, 180 / Math.max(n, 1)));
    function barPlotter(e) {
      var ctx = e.drawingContext, g = e.dygraph;
      e.points.forEach(function (p) {
        if (p.yval === null || isNaN(p.canvasy)) return;
        var b = info[p.idx] && info[p.idx].bar; if (!b) return;
        var x0 = p.canvasx, x1 = g.toDomXCoord(b[0] + b[1]);
        ctx.fillStyle = COLORS[b[3]];
        ctx.fillRect(x0, p.canvasy - barH / 2, Math.max(x1 - x0, 2), barH);
        if (b[3] !== 0) {   // a failure: marked above its bar
          ctx.beginPath(); ctx.moveTo(x0, p.canvasy - barH / 2 - 2); ctx.lineTo(x0 - 4, p.canvasy - barH / 2 - 9);
          ctx.lineTo(x0 + 4, p.canvasy - barH / 2 - 9); ctx.closePath(); ctx.fill();
        }
        drawn.bars++;
      });
    }
    function skipPlotter(e) {
      var ctx = e.drawingContext;
      ctx.strokeStyle = "#9467bd"; ctx.lineWidth = 2;
      e.points.forEach(function (p) {
        if (p.yval === null || isNaN(p.canvasy)) return;
        var x = p.canvasx, y = p.canvasy, d = Math.min(5, barH / 2);
        ctx.beginPath(); ctx.moveTo(x - d, y - d); ctx.lineTo(x + d, y + d);
        ctx.moveTo(x + d, y - d); ctx.lineTo(x - d, y + d); ctx.stroke();
        drawn.skips++;
      });
    }
    var series = {};
    ["ok", "error", "timeout", "cancelled"].forEach(function (s, i) {
      series[s] = { plotter: barPlotter, color: COLORS[i] };
    });
    series.skipped = { plotter: skipPlotter, color: "#9467bd" };
    var g = new Dygraph(box, rows, {
      labels: ["t", "ok", "error", "timeout", "cancelled", "skipped"], title: "Invocations per event",
      height: Math.max(170, 34 * n + 90), series: series, valueRange: [-0.7, n - 0.3],
      labelsDiv: legend, legend: "always", highlightCircleSize: 0,
      axes: { x: xAxis, y: { axisLabelWidth: Math.min(240, 16 + 7 * longest), drawGrid: false,
        ticker: function () { return D.events.map(function (id, i) { return { v: i, label: id }; }); },
        valueFormatter: function (v) { return D.events[v] || ""; } } },
      dateWindow: [0, Math.max(D.meta.end_t, D.meta.total) * 1.01],
      underlayCallback: underlay,
      legendFormatter: function (d) {
        if (d.x === undefined || !info[d.i]) return "hover a bar: event, iteration, status, duration";
        var it = info[d.i];
        if (it.skip) {
          return clock(it.skip[0]) + "  " + D.events[it.skip[1]] + " #" + it.skip[2] + " skipped: " +
            (it.skip[3] || "");
        }
        var b = it.bar; if (!b) return "";
        var s = clock(b[0]) + "  " + D.events[b[2]] + " #" + b[4] + " " + NAMES[b[3]] + " " + secs(b[1]);
        if (b[5] > 1) s += " (" + b[5] + " ok invocations drawn as one bar)";
        if (b[6] >= 0) s += ": " + D.messages[b[6]];
        return s.replace(/&/g, "&amp;").replace(/</g, "&lt;");
      }
    });
    record("chart-timeline", "timeline", "Invocations per event", g, { bars_drawn: drawn.bars, skips_drawn: drawn.skips,
      bars: T.bars.length, skips: T.skips.length, y_labels: D.events.slice() });
  }

  var root = document.getElementById("charts");
  try {
    var sec = el("section"); root.appendChild(sec);
    sec.appendChild(el("h2", {}, "Timeline"));
    timelineChart(sec);
    sec = el("section"); root.appendChild(sec);
    sec.appendChild(el("h2", {}, "Duration of each event (description time)"));
    lineChart(sec, "chart-duration", "Duration per invocation", "duration", D.duration, secs, true);
    sec.appendChild(el("h2", {}, "Lateness of each event (real time)"));
    lineChart(sec, "chart-lateness", "Lateness of each firing", "ms late",
      D.lateness, function (v) { return v === null ? "-" : v.toFixed(2) + "ms"; });
    sec = el("section", { id: "metrics" }); root.appendChild(sec);
    sec.appendChild(el("h2", {}, "Metrics (" + D.metrics.length + ")"));
    if (D.metrics.length === 0) {
      sec.appendChild(el("p", { "class": "note" }, "no metric was reported (result_reporter:metric)"));
    }
    D.metrics.forEach(function (m, i) {
      lineChart(sec, "chart-metric-" + i, m.name, m.name, m,
        function (v) {
          if (v === null) return "-";
          var a = Math.abs(v);
          return (a >= 1e5 || (a < 1e-3 && v !== 0)) ? v.toExponential(3) : +v.toFixed(4) + "";
        });
      var t = el("table", { "class": "mstats" });
      var h = el("tr");
      ["series", "count", "mean", "p99", "min", "max", "last"].forEach(function (c) {
        h.appendChild(el("th", {}, c));
      });
      t.appendChild(h);
      m.stats.forEach(function (s) {
        var tr = el("tr");
        [s.key, s.n, s.mean, s.p99, s.min, s.max, s.last].forEach(function (v, j) {
          tr.appendChild(el("td", {}, j > 1 && typeof v === "number" ? String(+v.toPrecision(6)) : String(v)));
        });
        t.appendChild(tr);
      });
      sec.appendChild(t);
    });
  } catch (e) {
    check.errors.push(String(e && e.stack || e));
  }
  check.done = true;
  document.getElementById("orch-selfcheck").textContent = JSON.stringify(check);
  document.body.setAttribute("data-orch-rendered", check.errors.length === 0 ? "ok" : "errors");
})();
]==]

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
        if (ci == 3 or ci == 5) and c ~= "0" and c ~= "" then k = ' class="bad"' end
        if ci == 4 and c ~= "0" and c ~= "" then k = ' class="warn"' end
        cells[ci] = "<td" .. k .. ">" .. esc(c) .. "</td>"
      end
    end
    out[#out + 1] = "<tr" .. cls .. ">" .. table.concat(cells) .. "</tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

local function errors_html(rep)
  if #rep.errors == 0 then return '<p class="note">no failed invocation and no error result</p>' end
  local out = { '<table class="errors"><tr><th>t</th><th>event</th><th>status</th><th>message</th></tr>' }
  for i, e in ipairs(rep.errors) do
    if i > MAX_ERRORS then
      out[#out + 1] = ('<tr><td colspan="4" class="note">%d more not listed</td></tr>'):format(#rep.errors - MAX_ERRORS)
      break
    end
    -- cjson reads 12 as 12.0: an iteration is shown as the integer it is
    local what = esc(e.event) .. (e.iteration and (" #" .. esc(math.tointeger(e.iteration) or e.iteration)) or "")
      .. (e.phase and (" " .. esc(e.phase)) or "")
    local msg = esc(e.message)
    if e.traceback and e.traceback ~= "" then
      msg = msg .. "<details><summary>traceback</summary><pre>" .. esc(e.traceback) .. "</pre></details>"
    end
    out[#out + 1] = ('<tr><td>%s</td><td>%s</td><td class="bad">%s</td><td>%s</td></tr>'):format(
      esc(plan.clock(e.t)), what, esc(e.status), msg)
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

-- The page, as a string; nil, message when dygraphs is nowhere.
function M.render(rep)
  local js, e1 = asset("orch.assets.dygraph_js", "dygraph.min.js")
  if not js then return nil, e1 end
  local css = asset("orch.assets.dygraph_css", "dygraph.min.css") or ""
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
    "<style>" .. css .. "\n" .. CSS .. "</style>",
    "<script>" .. script_safe(js) .. "</script>",
    "</head><body>",
    "<h1>" .. esc(m.test_name or "?") .. "</h1>",
    ('<p class="meta">%s &middot; %g h%s &middot; started %s &middot; orchlua %s &middot; report %s</p>'):format(
      esc(m.file or "?"), rep.total / 3600, rep.scale ~= 1 and (" at time scale " .. esc(rep.scale)) or "",
      esc(m.ts or "?"), esc(m.version or "?"), esc(rep.path)),
    ('<p class="%s" id="exit">%s</p>'):format(status_cls,
      m.status and esc(("exit %d: %s (%s after %s)"):format(m.status, m.exit_reason, m.reason or "?",
        plan.clock(rep.end_t))) or esc(m.exit_reason)),
    "<h2>Summary</h2>",
    rep.scale ~= 1 and ("<p class=\"note\">durations in description time (time scale %g: each record's "
      .. "duration_real is the wall clock's), lateness in real milliseconds</p>"):format(rep.scale)
      or "<p class=\"note\">durations and lateness in real time</p>",
    summary_html(rep),
    ('<p>results: %d (%d error%s), %d metric series</p>'):format(rep.results, rep.error_results,
      rep.error_results == 1 and "" or "s", #rep.metrics),
    '<div id="charts"></div>',
    ("<h2>Errors (%d)</h2>"):format(#rep.errors),
    errors_html(rep),
    '<pre id="orch-selfcheck" hidden></pre>',
    '<script type="application/json" id="orch-data">' .. json_safe(d) .. "</script>",
    "<script>" .. script_safe(SCRIPT) .. "</script>",
    "</body></html>", "",
  }
  return table.concat(parts, "\n")
end

-- Writes the page of a loaded report to path.
function M.write(path, rep)
  local page, err = M.render(rep)
  if not page then return nil, err end
  return require("orch.output.atomic").write(path, page)  -- whole or not at all
end

-- From a JSONL file (the run's own records) to path; shown: the report
-- file's name on the page (nil: a temporary file, not kept); run_end: the
-- record the run is about to write (the page is made before it, so that a
-- page that cannot be written is in the run's status).
function M.from_report(jsonl_path, path, shown, run_end)
  local rep, err = report.load(jsonl_path, { points = true, run_end = run_end })
  if not rep then return nil, err end
  rep.path = shown or "(no --report file)"
  return M.write(path, rep)
end

return M
