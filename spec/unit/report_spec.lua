-- orch.report (reading a --report JSONL file back, comparing two runs) and
-- the data orch.output.html hands to its charts, on the known files in
-- spec/fixtures/reports: base.jsonl, and regressed.jsonl, the same soak
-- run with regressions planted (ping fails twice, upload is 1 s slower and
-- skips a firing, rss_mb{proc=streamer} is 30% higher, fps 20% lower,
-- latency_ms 2% higher: within the threshold).
local report = require "orch.report"

local DIR = "spec/fixtures/reports/"

local function load(name, opts)
  local rep, err = report.load(DIR .. name, opts)
  assert(rep, err)
  return rep
end

local function regressions(cmp)
  local out = {}
  for _, r in ipairs(cmp.regressions) do out[#out + 1] = r.group .. " " .. r.what end
  table.sort(out)
  return out
end

describe("orch.report", function()
  describe("load", function()
    it("counts per event in the order the events first fired", function()
      local rep = load("base.jsonl")
      assert.equal("soak", rep.test_name)
      assert.equal(360, rep.total)
      assert.equal(1, rep.scale)
      assert.equal(0, rep.status)
      assert.equal("end of run", rep.reason)
      local ids = {}
      for i, ev in ipairs(rep.events) do ids[i] = ev.id end
      assert.same({ "ping", "upload", "final_report" }, ids)
      local ping = rep.by_id.ping
      assert.equal(36, ping.runs)
      assert.equal(0, ping.failures)
      assert.equal(0.012, ping.duration:percentile(50))
      assert.equal(0.014, ping.duration.max)
      assert.near(0.9, ping.lateness.max, 1e-9)           -- real ms
      assert.equal(6, rep.by_id.upload.runs)
      assert.equal(360, rep.stop_t)                        -- the teardown's schedule
    end)

    it("keeps failures with their tracebacks, and skipped firings", function()
      local rep = load("regressed.jsonl", { points = true })
      local ping, upload = rep.by_id.ping, rep.by_id.upload
      assert.equal(2, ping.failures)
      assert.equal(1, upload.skipped)
      assert.equal(5, upload.runs)
      assert.equal(2, #rep.errors)
      assert.equal("events/soak.lua:12: connection refused", rep.errors[1].message)
      assert.matches("^stack traceback:", rep.errors[1].traceback)
      assert.equal(7, rep.errors[1].iteration)
      assert.equal(36, #ping.invocations)
      assert.equal(1, #upload.skips)
      assert.equal(180, upload.skips[1].t)
    end)

    it("groups metrics by name and fields, with exact statistics", function()
      local rep = load("base.jsonl")
      local keys = {}
      for i, m in ipairs(rep.metrics) do keys[i] = m.key end
      assert.same({ "fps", "latency_ms", "rss_mb{proc=player}", "rss_mb{proc=streamer}" }, keys)
      local rss = rep.metric_by_key["rss_mb{proc=streamer}"]
      assert.equal("rss_mb", rss.name)
      assert.equal("{proc=streamer}", rss.fields)
      assert.equal(36, rss.stats.n)
      assert.equal(117.5, rss.stats.mean)
      assert.equal(135, rss.stats.max)
      assert.equal(135, rss.stats.p99)
      assert.equal(100, rss.stats.min)
    end)

    it("skips a torn last line and refuses what is not a report", function()
      local tmp = os.tmpname()
      local f = assert(io.open(tmp, "w"))
      for line in io.lines(DIR .. "base.jsonl") do f:write(line, "\n") end
      f:write('{"type":"invocation","t":3')              -- killed mid-write
      f:close()
      local rep = assert(report.load(tmp))
      assert.equal(1, rep.bad_lines)
      assert.equal(36, rep.by_id.ping.runs)
      f = assert(io.open(tmp, "w")); f:write('{"test_name": "x"}\n'); f:close()
      local none, err = report.load(tmp)
      assert.is_nil(none)
      assert.matches("no run_start record, not an orchlua %-%-report file", err)
      os.remove(tmp)
      none, err = report.load("/nonexistent/r.jsonl")
      assert.is_nil(none)
      assert.matches("No such file", err)
    end)
  end)

  it("writes field keys sorted, whatever the order they came in", function()
    assert.equal("{a=1,b=x}", report.fields_key({ b = "x", a = 1 }))
    assert.equal("", report.fields_key(nil))
    assert.equal("", report.fields_key({}))
  end)

  it("renders the summary table as the console does", function()
    local text = report.render_summary(load("regressed.jsonl"))
    assert.matches("\n  ping +36 +2 +2 +0 +0 +12%.0ms +14%.0ms +14%.0ms +0%.9ms +0%.9ms\n", text)
    assert.matches("\n  upload +5 +0 +0 +1 +0 +3%.20s +3%.50s +3%.50s +0%.7ms +0%.7ms\n", text)
    assert.matches("\n  all +42 +2 +2 +1 +0 ", text)
    assert.matches("exit 1: 2 failed invocations, 0 error results", text)
  end)

  describe("compare", function()
    it("flags the planted regressions, and only them", function()
      local cmp = report.compare(load("base.jsonl"), load("regressed.jsonl"), { threshold = 0.10 })
      assert.same({
        "metric rss_mb{proc=streamer} mean", "metric rss_mb{proc=streamer} p99",
        "ping failures", "upload dur p50", "upload dur p99", "upload skipped",
      }, regressions(cmp))
      local text = report.render_compare(cmp)
      assert.matches("6 regressions beyond 10%%:", text)
      assert.matches("upload dur p50: 2%.20s %-> 3%.20s %(%+45%% > 10%%%)", text)
      assert.matches("ping failures: 0 %-> 2 %(appeared%)", text)
    end)

    it("treats a drop as the regression for metrics where more is better", function()
      local cmp = report.compare(load("base.jsonl"), load("regressed.jsonl"),
        { threshold = 0.10, higher_is_better = { fps = true } })
      local got = regressions(cmp)
      assert.truthy(table.concat(got, ","):find("metric fps mean", 1, true))
      assert.truthy(table.concat(got, ","):find("metric fps p99", 1, true))
    end)

    it("tolerates changes within the threshold", function()
      local cmp = report.compare(load("base.jsonl"), load("regressed.jsonl"), { threshold = 0.5 })
      assert.same({ "ping failures", "upload skipped" }, regressions(cmp))
      cmp = report.compare(load("base.jsonl"), load("base.jsonl"))
      assert.same({}, regressions(cmp))
      assert.matches("no regression beyond 10%%", report.render_compare(cmp))
    end)

    it("flags an event or a metric gone from the second run", function()
      local a, b = load("base.jsonl"), load("base.jsonl")
      -- drop upload and fps from b
      for i, ev in ipairs(b.events) do if ev.id == "upload" then table.remove(b.events, i) break end end
      b.by_id.upload = nil
      for i, m in ipairs(b.metrics) do if m.key == "fps" then table.remove(b.metrics, i) break end end
      b.metric_by_key.fps = nil
      local cmp = report.compare(a, b)
      assert.same({ "metric fps count", "upload runs" }, regressions(cmp))
      assert.equal("missing in B", cmp.regressions[1].regression)
    end)
  end)
end)

describe("orch.output.html data", function()
  local html = require "orch.output.html"

  it("holds a bar per invocation, the skipped firings and every metric series", function()
    local d = html.data(load("regressed.jsonl", { points = true }))
    assert.same({ "ping", "upload", "final_report" }, d.events)
    -- ok invocations far apart stay one bar each; failures are their own
    assert.equal(36 + 5 + 1, #d.timeline.bars)
    local failed = 0
    for _, b in ipairs(d.timeline.bars) do
      if b[4] ~= 0 then
        failed = failed + 1
        assert.equal("events/soak.lua:12: connection refused", d.messages[b[7] + 1])
      end
    end
    assert.equal(2, failed)
    assert.equal(1, #d.timeline.skips)
    assert.equal(360, d.meta.stop_t)
    assert.equal(3, #d.duration.series)
    assert.is_false(d.duration.bars)
    local names = {}
    for _, m in ipairs(d.metrics) do
      local labels = {}
      for _, s in ipairs(m.series) do labels[#labels + 1] = s.label .. "=" .. #s.points end
      names[#names + 1] = m.name .. ":" .. table.concat(labels, ",")
    end
    assert.same({ "fps:fps=36", "latency_ms:latency_ms=36", "rss_mb:{proc=player}=36,{proc=streamer}=36" }, names)
  end)

  it("turns long series into min/mean/max buckets and merges touching ok bars", function()
    local rep = load("base.jsonl", { points = true })
    local ping = rep.by_id.ping
    local many = {}
    for i = 1, 10000 do
      many[i] = { started = i * 0.01, duration = 0.009, lateness = 0, status = "ok", iteration = i }
    end
    ping.invocations = many
    local d = html.data(rep)
    assert.is_true(d.duration.bars)
    local s = d.duration.series[1]
    assert.equal("ping", s.label)
    assert.is_true(#s.points <= 600)
    local p = s.points[1]
    assert.equal("table", type(p[2]))
    assert.is_true(p[2][1] <= p[2][2] and p[2][2] <= p[2][3])
    local bars = 0
    for _, b in ipairs(d.timeline.bars) do if b[3] == 0 then bars = bars + 1 end end
    assert.is_true(bars < 100, bars)
  end)
end)
