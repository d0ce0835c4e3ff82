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

    it("groups failures by message with their tracebacks, counts and times; marks failures and skips", function()
      local rep = load("regressed.jsonl")
      local ping, upload = rep.by_id.ping, rep.by_id.upload
      assert.equal(2, ping.failures)
      assert.equal(1, upload.skipped)
      assert.equal(5, upload.runs)
      assert.equal(2, rep.error_count)
      assert.equal(1, #rep.groups)
      local g = rep.groups[1]
      assert.equal("events/soak.lua:12: connection refused", g.message)
      assert.equal(2, g.count)
      assert.is_true(g.first_t < g.last_t)
      assert.same({ ping = true }, g.events)
      assert.matches("^stack traceback:", g.traceback)
      local kinds = {}
      for _, m in ipairs(rep.marks) do kinds[m.kind] = (kinds[m.kind] or 0) + 1 end
      assert.same({ fail = 2, skip = 1 }, kinds)
      for _, m in ipairs(rep.marks) do
        if m.kind == "fail" then assert.equal("integer", math.type(m.iteration)) end
        if m.kind == "skip" then assert.equal(180, m.t) end
      end
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
      assert.same({ path = tmp, line = 196 }, rep.torn)
      assert.equal(36, rep.by_id.ping.runs)
      f = assert(io.open(tmp, "w")); f:write('{"type": "note", "future": 1}\n'); f:close()
      local none, err = report.load(tmp)
      assert.is_nil(none)
      assert.matches("no run_start record, not an orchlua %-%-report file", err)
      f = assert(io.open(tmp, "w")); f:write('{"test_name": "x"}\n'); f:close()
      none, err = report.load(tmp)
      assert.is_nil(none)
      assert.equal(tmp .. ':1: expected a record with a string "type", found {"test_name":"x"}', err)
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

describe("orch.scan series", function()
  local scan = require "orch.scan"

  it("keeps points exactly up to its bucket count, then min/mean/max per bucket and percentiles within 1%", function()
    local s = scan.series(64, 1)
    for i = 1, 64 do s:add(i - 1, i) end
    assert.is_true(s.exact)
    assert.equal(50, s:percentile(78.125))
    local p = s:points()
    assert.equal(64, #p.t)
    s:add(64, 65)                         -- one more: bucketed, the width doubles to fit t = 64
    assert.is_false(s.exact)
    p = s:points()
    assert.equal(2, p.width)
    assert.equal(33, #p.i)
    assert.same({ 1, 2, 1.5 }, { p.min[1], p.max[1], p.mean[1] })
    assert.equal(65, s.n)
    assert.equal(1, s.min)
    assert.equal(65, s.max)
    for i = 66, 100000 do s:add(i, i) end
    assert.near(50000, s:percentile(50), 500)
    assert.near(99000, s:percentile(99), 990)
    assert.is_true(#s:points().i <= 64)
  end)

  it("takes negative values and zero in its percentiles", function()
    local s = scan.series(4)
    for i = -500, 500 do s:add(0, i) end
    assert.near(-250, s:percentile(25), 3)
    assert.near(0, s:percentile(50), 1)
    assert.equal(-500, s:percentile(0))
  end)
end)

describe("orch.scan's fast path", function()
  it("reads the same as cjson, whatever the key order, spacing and numbers", function()
    local cjson = require "cjson"
    math.randomseed(7)
    local fast, slow = {}, {}
    local function both(line, slow_line)
      fast[#fast + 1] = line
      slow[#slow + 1] = slow_line or line
    end
    both(cjson.encode({ type = "run_start", t = 0, test_name = "x", total_hours = 0.1, time_scale = 2 }))
    for i = 1, 3000 do
      local r
      if i % 2 == 0 then
        r = { type = "invocation", t = i + 0.5, id = "e" .. i % 7, event = "ev", iteration = i, phase = "interval",
              scheduled = i, started = i - math.random() * 1e-3, duration = math.random() * 10 ^ math.random(-6, 3),
              lateness = -math.random(), status = "ok", seq = i }
      else
        r = { type = "result", t = i, event = "e" .. i % 7, level = "metric",
              data = { metric = "m" .. i % 3, value = (math.random() - 0.5) * 10 ^ math.random(-9, 12),
                       fields = i % 5 == 0 and { b = i % 2, a = "x y" } or nil } }
      end
      -- keys in another order, spaces around them, exponents: as another writer might
      local line = cjson.encode(r):gsub(",", " , "):gsub(":", ": ")
      -- the same record forced through cjson: an escape in a field the fast path reads
      local forced = line:gsub('"status": "ok"', '"status": "\\u006fk"'):gsub('"metric": "m', '"metric": "\\u006d')
      both(line, forced)
    end
    both(cjson.encode({ type = "run_end", t = 4000, status = 0, reason = "end of run" }))
    local a, b = os.tmpname(), os.tmpname()
    local f = assert(io.open(a, "w")); f:write(table.concat(fast, "\n"), "\n"); f:close()
    f = assert(io.open(b, "w")); f:write(table.concat(slow, "\n"), "\n"); f:close()
    local ra, rb = assert(report.load(a)), assert(report.load(b))
    os.remove(a); os.remove(b)
    ra.path, rb.path = "x", "x"
    assert.equal(report.render_summary(ra), report.render_summary(rb))
    assert.equal(#ra.metrics, #rb.metrics)
    for i, m in ipairs(ra.metrics) do
      assert.equal(m.key, rb.metrics[i].key)
      assert.same(m.stats, rb.metrics[i].stats)
    end
  end)
end)

describe("orch.scan's numbers", function()
  it("are the doubles strtod makes of the same text", function()
    local scan = require "orch.scan"
    math.randomseed(11)
    local texts = { "0", "-0", "5", "0.1", "0.3", "-12.345", "123456789012345", "1234567890123456", "0.000001",
                    "9007199254740993", "1e5", "1.5E-3", "2.2250738585072014e-308", "0.1000000000000000055511" }
    for _ = 1, 3000 do
      local int = tostring(math.random(0, 10 ^ math.random(0, 9)))
      local frac = tostring(math.random(0, 10 ^ math.random(0, 9)))
      texts[#texts + 1] = (math.random() < 0.3 and "-" or "") .. int .. (math.random() < 0.8 and ("." .. frac) or "")
    end
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    for _, t in ipairs(texts) do
      f:write('{"type":"invocation","id":"a","status":"ok","duration":', t, "}\n")
    end
    f:close()
    local rd = assert(scan.open(path))
    for _, t in ipairs(texts) do
      local kind, _, _, _, d = rd:next()
      assert.equal("i", kind)
      local want = tonumber(t:find("[eE]") and t or (t .. "e0"))   -- as a float, through strtod
      assert.equal(want, d, t)
      assert.equal(1 / want, 1 / d, t)    -- the sign of zero too
    end
    rd:close()
    os.remove(path)
  end)
end)

describe("orch.report.glob and shorten", function()
  it("matches shell-like patterns and cuts in the middle", function()
    assert.truthy(("rss_mb{proc=a}"):find(report.glob("rss_*")))
    assert.falsy(("xrss_mb"):find(report.glob("rss_*")))
    assert.truthy(("a.b"):find(report.glob("a?b")))
    assert.equal("abc..xyz", report.shorten("abcdefghijklmnopqrstuvwxyz", 8))
    assert.equal("short", report.shorten("short", 8))
  end)
end)

describe("orch.output.html data", function()
  local html = require "orch.output.html"

  it("holds every invocation as a bar while short, the marks and every metric series", function()
    local d = html.data(load("regressed.jsonl"))
    assert.same({ "ping", "upload", "final_report" }, d.events)
    assert.equal(36 + 5 + 1, #d.timeline.bars)
    local kinds = {}
    for _, m in ipairs(d.timeline.marks) do
      kinds[m[2]] = (kinds[m[2]] or 0) + 1
      if m[2] == 1 then assert.equal("events/soak.lua:12: connection refused", m[6]) end
    end
    assert.same({ [1] = 2, [2] = 1 }, kinds)
    assert.equal(360, d.meta.stop_t)
    assert.equal(3, #d.duration.series)
    assert.is_false(d.duration.bars)
    local names = {}
    for _, m in ipairs(d.metrics) do
      local labels = {}
      for _, s in ipairs(m.series) do labels[#labels + 1] = s.label .. "=" .. #s.x end
      names[#names + 1] = m.name .. ":" .. table.concat(labels, ",")
    end
    assert.same({ "fps:fps=36", "latency_ms:latency_ms=36", "rss_mb:{proc=player}=36,{proc=streamer}=36" }, names)
    assert.equal("ms", d.metrics[2].unit)
  end)

  it("draws long series as min/mean/max buckets and the timeline as bars over buckets in use", function()
    local rep = load("base.jsonl")
    local ping = rep.by_id.ping
    local s = require("orch.scan").series(report.SERIES_BUCKETS, rep.total / report.SERIES_BUCKETS)
    for i = 1, 30000 do s:add(i * 0.01, 0.009 + (i % 10) * 0.001) end
    ping.duration = s
    local d = html.data(rep)
    assert.is_true(d.duration.bars)
    local ser = d.duration.series[1]
    assert.equal("ping", ser.label)
    assert.is_true(#ser.x <= report.SERIES_BUCKETS)
    for i = 1, #ser.x do assert.is_true(ser.lo[i] <= ser.y[i] and ser.y[i] <= ser.hi[i]) end
    local bars, n = 0, 0
    for _, b in ipairs(d.timeline.bars) do if b[3] == 0 then bars = bars + 1; n = n + b[4] end end
    assert.is_true(bars < 10, bars)       -- one stretch of 300 s, in buckets that touch
    assert.equal(30000, n)
  end)
end)
