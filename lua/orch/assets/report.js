/* orchlua's HTML report: draws the data of #orch-data (written by
 * lua/orch/output/html.lua) with dygraphs.  dygraphs writes titles, labels,
 * ticks and legends as HTML: every text from the run goes through h() first.
 * What each chart holds and any script error go into #orch-selfcheck, which
 * the specs read back from headless Chromium. */
/* global Dygraph */
(function () {
  "use strict";
  var check = { charts: [], errors: [], done: false };
  window.addEventListener("error", function (e) { check.errors.push(String(e.message)); });

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
  check.events = D.events;
  check.metrics = D.metric_keys;
  var COLORS = { 0: "#2e9e44", 1: "#d62728", 2: "#ff7f0e", 3: "#7f7f7f" };
  var NAMES = { 0: "ok", 1: "error", 2: "timeout", 3: "cancelled" };
  var SPAN = Math.max(D.meta.end_t, D.meta.total, 1e-9);

  function h(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }
  function clock(s) {
    var neg = s < 0; s = Math.abs(s);
    var hh = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s - hh * 3600 - m * 60;
    var ss = x.toFixed(x < 10 && (hh + m) === 0 ? 3 : 1);
    if (x < 10) ss = "0" + ss;
    return (neg ? "-" : "") + hh + ":" + (m < 10 ? "0" : "") + m + ":" + ss;
  }
  function num(v) {
    if (v === null || v === undefined || isNaN(v)) return "-";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e9 || a < 1e-3)) return v.toExponential(2);
    return String(+v.toPrecision(4));
  }
  function scaled(v, steps) {
    var a = Math.abs(v), i = 0;
    while (i + 1 < steps.length && a >= steps[i + 1][0]) i++;
    return num(v / steps[i][0]) + steps[i][1];
  }
  // a value formatter for a unit
  function unitFormat(unit) {
    return function (v) {
      if (v === null || v === undefined || isNaN(v)) return "-";
      switch (unit) {
        case "s": return Math.abs(v) < 1 ? num(v * 1000) + " ms" : scaled(v, [[1, " s"], [60, " min"], [3600, " h"]]);
        case "ms": return scaled(v, [[1, " ms"], [1000, " s"]]);
        case "us": return scaled(v, [[1, " µs"], [1000, " ms"], [1e6, " s"]]);
        case "ns": return scaled(v, [[1, " ns"], [1000, " µs"], [1e6, " ms"], [1e9, " s"]]);
        case "bytes": return scaled(v, [[1, " B"], [1024, " KiB"], [1048576, " MiB"], [1073741824, " GiB"]]);
        case "kB": return scaled(v, [[1, " kB"], [1024, " MB"], [1048576, " GB"]]);
        case "MB": return scaled(v, [[1, " MB"], [1024, " GB"]]);
        case "%": return num(v) + "%";
        case null: case undefined: case "": case "count": return num(v);
        default: return num(v) + " " + unit;
      }
    };
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
    for (var v = Math.ceil(min / step) * step; v <= max + 1e-9; v += step) ticks.push({ v: v, label: tickLabel(v, step) });
    return ticks;
  }
  function tickLabel(v, step) {
    if (step >= 1) {
      var s = Math.round(v), hh = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
      return hh + ":" + (m < 10 ? "0" : "") + m + ":" + (x < 10 ? "0" : "") + x;
    }
    return clock(v);
  }
  var xAxis = { ticker: timeTicker, valueFormatter: function (v) { return clock(v); }, axisLabelWidth: 70 };

  // the teardown phase, the end of the run as described and the checks'
  // failures, under every chart
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
    ctx.strokeStyle = "rgba(214, 39, 40, 0.55)"; ctx.setLineDash([2, 3]);
    D.timeline.marks.forEach(function (k) {
      if (k[1] !== 4) return;
      var x = g.toDomXCoord(k[0]);
      ctx.beginPath(); ctx.moveTo(x, area.y); ctx.lineTo(x, area.y + area.h); ctx.stroke();
    });
    ctx.setLineDash([]);
  }

  // a series {x, y[, lo, hi]} as [x, y] or [x, [lo, y, hi]] points
  function points(s, bars) {
    var out = [];
    for (var i = 0; i < s.x.length; i++) out.push([s.x[i], bars ? [s.lo[i], s.y[i], s.hi[i]] : s.y[i]]);
    return out;
  }
  // merges series into dygraphs' rows
  function table(series, bars) {
    var xs = {}, list = [], pts = series.map(function (s) { return points(s, bars); });
    pts.forEach(function (p) { p.forEach(function (q) { if (!(q[0] in xs)) { xs[q[0]] = 1; list.push(q[0]); } }); });
    list.sort(function (a, b) { return a - b; });
    var index = {};
    list.forEach(function (x, i) { index[x] = i; });
    var rows = list.map(function (x) { var r = [x]; for (var i = 0; i < series.length; i++) r.push(null); return r; });
    pts.forEach(function (p, j) { p.forEach(function (q) { rows[index[q[0]]][j + 1] = q[1]; }); });
    if (rows.length === 0) { var r = [0]; series.forEach(function () { r.push(null); }); rows.push(r); }
    return rows;
  }

  function record(id, kind, title, g, labels, extra) {
    var pts = {};
    for (var c = 1; c < labels.length; c++) {
      var n = 0;
      for (var r = 0; r < g.numRows(); r++) {
        var v = g.getValue(r, c);
        if (v !== null && !(typeof v === "number" && isNaN(v))) n++;
      }
      pts[labels[c]] = n;
    }
    var rec = { id: id, kind: kind, title: title, labels: labels, rows: g.numRows(), points: pts };
    for (var k in (extra || {})) rec[k] = extra[k];
    check.charts.push(rec);
    return rec;
  }

  // a log scale when the values span more than two decades
  function spread(spec) {
    var lo = Infinity, hi = -Infinity;
    spec.series.forEach(function (s) { s.y.forEach(function (v) {
      if (v > 0 && v < lo) lo = v;
      if (v > hi) hi = v;
      if (v <= 0) lo = -Infinity;
    }); });
    return lo > 0 && hi / lo > 100;
  }

  // the legend: the time, then the highlighted series, else the first few
  function legendFormatter(fmt) {
    return function (d) {
      if (d.x === undefined || d.x === null) return "hover the chart: values at a time";
      var shown = d.series.filter(function (s) { return s.isHighlighted; });
      var rest = d.series.filter(function (s) { return s.isVisible && s.y !== undefined && s.y !== null && !isNaN(s.y); });
      if (shown.length === 0) shown = rest.slice(0, 6);
      var out = h(clock(d.x)) + ": " + shown.map(function (s) {
        return '<span class="hl" style="color:' + h(s.color) + '">' + h(s.label) + "</span> " + h(fmt(s.y));
      }).join(", ");
      if (rest.length > shown.length) out += " (" + (rest.length - shown.length) + " more: hover a line)";
      return out;
    };
  }

  function lineChart(parent, id, title, spec, fmt, allowLog) {
    var log = allowLog && spread(spec);
    // min/max bands only while few: a hundred of them cover each other
    var bands = spec.bars && spec.series.length <= 8;
    var g;
    if (allowLog) {
      var label = el("label", { "class": "note" });
      var cb = el("input", { type: "checkbox" }); cb.checked = log;
      label.appendChild(cb); label.appendChild(document.createTextNode(" log scale"));
      parent.appendChild(label);
      cb.addEventListener("change", function () { g.updateOptions({ logscale: cb.checked }); });
    }
    var box = el("div", { id: id, "class": "chart" }); parent.appendChild(box);
    var legend = el("div", { "class": "legend" }); parent.appendChild(legend);
    if (spec.bars) {
      parent.appendChild(el("p", { "class": "note" }, "long series: each point is the mean over " +
        clock(spec.bucket) + (bands ? " with its min and max as a band" : " (min and max in each event's section)")));
    }
    var labels = ["t"].concat(spec.series.map(function (s) { return h(s.label); }));
    g = new Dygraph(box, table(spec.series, bands), {
      labels: labels, title: h(title), height: 260, drawPoints: !spec.bars, pointSize: 2,
      strokeWidth: 1.2, connectSeparatedPoints: true, customBars: bands, labelsDiv: legend, logscale: log,
      legend: "always", includeZero: false, legendFormatter: legendFormatter(fmt),
      highlightSeriesOpts: spec.series.length > 1 ? { strokeWidth: 2.5 } : undefined,
      axes: { x: xAxis, y: { valueFormatter: fmt, axisLabelFormatter: function (v) { return h(fmt(v)); },
                             axisLabelWidth: 80 } },
      dateWindow: [0, SPAN * 1.01],   // every chart on the same time axis
      underlayCallback: underlay
    });
    record(id, "series", title, g, ["t"].concat(spec.series.map(function (s) { return s.label; })),
      { bucketed: !!spec.bars });
    return g;
  }

  // ---- the timeline: bars of invocations per event, failures marked ----
  function timelineChart(parent) {
    var T = D.timeline, n = T.rows;
    var box = el("div", { id: "chart-timeline", "class": "chart" }); parent.appendChild(box);
    var legend = el("div", { "class": "legend" }); parent.appendChild(legend);
    var keys = el("div", { "class": "keys" });
    [["invocations", COLORS[0]], ["failed invocation", COLORS[1]], ["timeout", COLORS[2]], ["cancelled", COLORS[3]],
     ["error result", "#8c0000"], ["skipped firing", "#9467bd"], ["check failed", "rgba(214,39,40,0.55)"],
     ["teardown and shutdown", "rgba(255,200,80,0.5)"]].forEach(function (k) {
      var s = el("span"); var i = el("i"); i.style.background = k[1]; s.appendChild(i);
      s.appendChild(document.createTextNode(k[0])); keys.appendChild(s);
    });
    parent.appendChild(keys);
    if (T.bucketed) {
      parent.appendChild(el("p", { "class": "note" },
        "long run: a bar covers the time buckets of " + clock(T.bucket) + " in which the event ran"));
    }
    if (T.marks_dropped > 0) {
      parent.appendChild(el("p", { "class": "note" }, "only the first 1000 failures, error results, check failures " +
        "and skipped firings of each kind are marked (" + T.marks_dropped + " more)"));
    }
    // rows: [x, bars, marks]; info per row
    var rows = [], info = [];
    T.bars.forEach(function (b) { rows.push([b[0], b[2], null]); info.push({ bar: b }); });
    T.marks.forEach(function (k) {
      rows.push([k[0], null, k[2] >= 0 ? k[2] : n]); info.push({ mark: k });
    });
    var order = rows.map(function (r, i) { return i; });
    order.sort(function (a, b) { return rows[a][0] - rows[b][0] || a - b; });
    rows = order.map(function (i) { return rows[i]; });
    info = order.map(function (i) { return info[i]; });
    if (rows.length === 0) { rows.push([0, null, null]); info.push({}); }
    var drawn = { bars: 0, marks: 0 };
    var labelsY = D.events.slice(0, n).concat(T.other_row ? ["checks, other"] : []);
    if (n < D.events.length) {
      parent.appendChild(el("p", { "class": "note" }, "the first " + n + " of " + D.events.length +
        " events are drawn; every event has its section below"));
    }
    var longest = labelsY.reduce(function (m, id) { return Math.max(m, id.length); }, 4);
    var rowPx = labelsY.length > 30 ? 12 : 30;
    var barH = Math.max(4, Math.min(18, rowPx * 0.6));
    function barPlotter(e) {
      var ctx = e.drawingContext, g = e.dygraph;
      e.points.forEach(function (p) {
        if (p.yval === null || isNaN(p.canvasy)) return;
        var b = info[p.idx] && info[p.idx].bar; if (!b) return;
        var x0 = p.canvasx, x1 = g.toDomXCoord(b[0] + b[1]);
        ctx.fillStyle = COLORS[0];
        ctx.fillRect(x0, p.canvasy - barH / 2, Math.max(x1 - x0, 2), barH);
        drawn.bars++;
      });
    }
    function markPlotter(e) {
      var ctx = e.drawingContext;
      e.points.forEach(function (p) {
        if (p.yval === null || isNaN(p.canvasy)) return;
        var k = info[p.idx] && info[p.idx].mark; if (!k) return;
        var x = p.canvasx, y = p.canvasy, d = Math.min(5, barH / 2);
        ctx.lineWidth = 2;
        if (k[1] === 1) {          // a failed invocation: a triangle above its bar
          ctx.fillStyle = COLORS[k[3]] || COLORS[1];
          ctx.beginPath(); ctx.moveTo(x, y - barH / 2 - 1); ctx.lineTo(x - 5, y - barH / 2 - 9);
          ctx.lineTo(x + 5, y - barH / 2 - 9); ctx.closePath(); ctx.fill();
        } else if (k[1] === 2) {   // a skipped firing: a cross
          ctx.strokeStyle = "#9467bd";
          ctx.beginPath(); ctx.moveTo(x - d, y - d); ctx.lineTo(x + d, y + d);
          ctx.moveTo(x + d, y - d); ctx.lineTo(x - d, y + d); ctx.stroke();
        } else if (k[1] === 3) {   // an error result: a diamond
          ctx.fillStyle = "#8c0000";
          ctx.beginPath(); ctx.moveTo(x, y - 6); ctx.lineTo(x + 5, y); ctx.lineTo(x, y + 6); ctx.lineTo(x - 5, y);
          ctx.closePath(); ctx.fill();
        } else {                   // a check turned to fail: a square on the checks row
          ctx.fillStyle = "#d62728";
          ctx.fillRect(x - 4, y - 4, 8, 8);
        }
        drawn.marks++;
      });
    }
    var KINDS = { 1: "failed", 2: "skipped", 3: "error result", 4: "check failed" };
    var g = new Dygraph(box, rows, {
      labels: ["t", "invocations", "marks"], title: "Invocations per event",
      height: Math.max(170, rowPx * labelsY.length + 90),
      series: { invocations: { plotter: barPlotter, color: COLORS[0] }, marks: { plotter: markPlotter, color: "#d62728" } },
      valueRange: [-0.7, labelsY.length - 0.3], labelsDiv: legend, legend: "always", highlightCircleSize: 0,
      axes: { x: xAxis, y: { axisLabelWidth: Math.min(240, 16 + 7 * longest), drawGrid: false,
        ticker: function () { return labelsY.map(function (id, i) { return { v: i, label: h(id) }; }); },
        valueFormatter: function (v) { return h(labelsY[v] || ""); } } },
      dateWindow: [0, SPAN * 1.01],
      underlayCallback: underlay,
      legendFormatter: function (d) {
        if (d.x === undefined || !info[d.i]) return "hover a bar or a mark: event, iteration, status, message";
        var it = info[d.i], s;
        if (it.mark) {
          var k = it.mark;
          s = clock(k[0]) + "  " + (k[2] >= 0 ? D.events[k[2]] : "check") + " " + KINDS[k[1]];
          if (k[4] !== null && k[4] !== undefined) s += " #" + k[4];
          if (k[1] === 1) s += " (" + NAMES[k[3]] + ")";
          if (k[5]) s += ": " + k[5];
          return h(s);
        }
        var b = it.bar; if (!b) return "";
        s = clock(b[0]) + " .. " + clock(b[0] + b[1]) + "  " + D.events[b[2]] + ": " + b[3] + " invocation" +
          (b[3] === 1 ? "" : "s");
        return h(s);
      }
    });
    record("chart-timeline", "timeline", "Invocations per event", g, ["t", "invocations", "marks"], {
      bars_drawn: drawn.bars, marks_drawn: drawn.marks, bars: T.bars.length, marks: T.marks.length,
      y_labels: D.events.slice(0, n) });
  }

  function statsTable(m, fmt) {
    var t = el("table", { "class": "mstats" });
    var hr = el("tr");
    ["series", "count", "mean", "p50", "p99", "min", "max"].forEach(function (c) { hr.appendChild(el("th", {}, c)); });
    t.appendChild(hr);
    m.stats.forEach(function (s) {
      var tr = el("tr");
      [s.key, s.n, s.mean, s.p50, s.p99, s.min, s.max].forEach(function (v, j) {
        tr.appendChild(el("td", {}, j === 0 ? String(v) : j === 1 ? String(v) : fmt(v)));
      });
      t.appendChild(tr);
    });
    return t;
  }

  // a <details> section whose chart is drawn when first opened
  function lazy(parent, id, summary, open, draw) {
    var d = el("details", { "class": "section", id: id });
    if (open || location.hash === "#" + id) d.setAttribute("open", "");
    d.appendChild(el("summary", {}, summary));
    parent.appendChild(d);
    var done = false;
    function go() { if (!done && d.open) { done = true; try { draw(d); } catch (e) { check.errors.push(String(e && e.stack || e)); } } }
    d.addEventListener("toggle", go);
    go();
    return d;
  }

  // a link to a collapsed section opens it
  window.addEventListener("hashchange", function () {
    var t = document.getElementById(location.hash.slice(1));
    if (t && t.tagName === "DETAILS") t.open = true;
  });
  try {
    var sec = document.getElementById("timeline");
    timelineChart(sec);
    sec = document.getElementById("durations");
    if (D.duration.series.length < D.lines_of) {
      sec.appendChild(el("p", { "class": "note" }, "the " + D.duration.series.length + " slowest of " + D.lines_of +
        " events (by their longest invocation)"));
    }
    lineChart(sec, "chart-duration", "Duration per invocation (description time)", D.duration, unitFormat("s"), true);
    sec = document.getElementById("lateness");
    lineChart(sec, "chart-lateness", "Lateness of each firing (real time)", D.lateness, unitFormat("ms"));
    sec = document.getElementById("metrics");
    if (D.metrics.length === 0) sec.appendChild(el("p", { "class": "note" }, "no metric was reported (result_reporter:metric)"));
    D.metrics.forEach(function (m, i) {
      var fmt = unitFormat(m.unit);
      lazy(sec, "metric-" + i, m.name + (m.unit ? " (" + m.unit + ")" : "") + ": " + m.series.length + " series",
        i < D.open_metrics, function (d) {
          lineChart(d, "chart-metric-" + i, m.name + (m.unit ? " (" + m.unit + ")" : ""), m, fmt, true);
          d.appendChild(statsTable(m, fmt));
        });
    });
    check.lazy_metrics = Math.max(0, D.metrics.length - D.open_metrics);
    // a section per event, collapsed: its numbers and its own durations
    sec = document.getElementById("events");
    var sfmt = unitFormat("s"), mfmt = unitFormat("ms");
    D.per_event.forEach(function (e, i) {
      var bad = e.failures + e.errors > 0;
      lazy(sec, "event-" + i, e.id + ": " + e.runs + " runs" + (bad ? ", " + e.failures + " failed, " + e.errors +
        " error results" : "") + (e.skipped > 0 ? ", " + e.skipped + " skipped" : ""), false, function (d) {
        var t = el("table", { "class": "mstats" }), hr = el("tr"), tr = el("tr");
        ["runs", "failures", "timeouts", "skipped", "error results", "dur p50", "dur p99", "dur max", "late p99",
         "late max"].forEach(function (c) { hr.appendChild(el("th", {}, c)); });
        [e.runs, e.failures, e.timeouts, e.skipped, e.errors].forEach(function (v) { tr.appendChild(el("td", {}, String(v))); });
        [sfmt(e.d50), sfmt(e.d99), sfmt(e.dmax), mfmt(e.l99), mfmt(e.lmax)].forEach(function (v) {
          tr.appendChild(el("td", {}, v));
        });
        t.appendChild(hr); t.appendChild(tr); d.appendChild(t);
        if (e.line >= 0) {
          var spec = { bars: D.duration.bars, bucket: D.duration.bucket, series: [D.duration.series[e.line]] };
          lineChart(d, "chart-event-" + i, "Duration of " + e.id, spec, sfmt, true);
        }
      });
    });
  } catch (e) {
    check.errors.push(String(e && e.stack || e));
  }
  check.done = true;
  document.getElementById("orch-selfcheck").textContent = JSON.stringify(check);
  document.body.setAttribute("data-orch-rendered", check.errors.length === 0 ? "ok" : "errors");
})();
