-- End-to-end specs of the end-of-run summary and `orchlua report`: the
-- summary's numbers against the JSONL the same run wrote, the summary read
-- back from the file, and the comparison of two known runs
-- (spec/fixtures/reports) flagging the regressions planted in the second.
local h = require "helper"
local cjson = require "cjson"

local EVENTS = [[
local orch = require "orch"
local M = {}
function M.tick(result_reporter, event)
  result_reporter:metric("load", 0.5 + event.iteration % 3 * 0.1, { cpu = 0 })
  result_reporter:metric("mem_mb", 100 + event.iteration)
end
function M.boom(event)
  if event.iteration == 2 then error("kaboom at " .. event.iteration) end
end
function M.slowpoke(seconds) orch.sleep(seconds) end
function M.final(result_reporter) result_reporter:info("bye") end
return M
]]

local DESC = [[
{ "test_name": "t", "total_hours": 0.005,
  "events": [
    { "name": "tick", "interval_sec": 1 },
    { "name": "boom", "interval_sec": 3 },
    { "name": "slowpoke", "interval_sec": 2, "timeout_sec": 0.2, "params": { "seconds": 3 } },
    { "name": "final", "at_startup": false, "at_teardown": true }
  ] }
]]

local FIX = h.root .. "/spec/fixtures/reports/"

-- nearest rank, as orch.Stats (stats.c) while exact
local function pct(list, p)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[math.max(1, math.ceil(p / 100 * #s))]
end
local function sec(v)
  if v == nil then return "-" end
  if v < 1 then return ("%.1fms"):format(v * 1000) end
  return ("%.2fs"):format(v)
end
local function ms(v) return v == nil and "-" or ("%.1fms"):format(v) end

-- The rows of a summary table in text: id -> list of cells.
local function table_rows(text)
  local rows = {}
  local inside = false
  for line in text:gmatch("[^\n]*") do
    if line:match("^  event +runs +fail") then inside = true
    elseif inside and line:match("^  [%w_]") then
      local cells = {}
      for c in line:gmatch("%S+") do cells[#cells + 1] = c end
      rows[cells[1]] = cells
      if cells[1] == "all" then break end
    end
  end
  return rows
end

describe("the summary", function()
  local dir, code, out, err, recs
  setup(function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/t.json"] = DESC })
    code, out, err = h.run("run t --time-scale 12 --report r.jsonl --junit j.xml", dir)
    recs = h.jsonl(dir .. "/r.jsonl")
  end)
  teardown(function() h.rm(dir) end)

  it("has the JSONL's numbers, per event and in total", function()
    assert.equal(1, code, err)
    local scale = recs[1].time_scale
    local per = {}
    for _, r in ipairs(recs) do
      if r.type == "invocation" or r.type == "skipped" then
        local e = per[r.id] or { runs = 0, fail = 0, skip = 0, tmout = 0, dur = {}, late = {} }
        per[r.id] = e
        if r.type == "skipped" then
          e.skip = e.skip + 1
        else
          e.runs = e.runs + 1
          if r.status ~= "ok" then e.fail = e.fail + 1 end
          if r.status == "timeout" then e.tmout = e.tmout + 1 end
          e.dur[#e.dur + 1] = r.duration_real   -- the summary's durations are real time
          e.late[#e.late + 1] = r.lateness / scale * 1000
        end
      end
    end
    local rows = table_rows(out)
    local tot = { 0, 0, 0, 0 }
    for _, id in ipairs({ "tick", "boom", "slowpoke", "final" }) do
      local e, row = per[id], rows[id]
      assert.truthy(row, "no summary row for " .. id .. " in:\n" .. out)
      -- errors: the failures (none of these events reports an error result)
      assert.same({ id, tostring(e.runs), tostring(e.fail), tostring(e.fail), tostring(e.skip), tostring(e.tmout),
        sec(pct(e.dur, 50)), sec(pct(e.dur, 99)), sec(pct(e.dur, 100)), ms(pct(e.late, 99)), ms(pct(e.late, 100)) },
        row)
      tot[1], tot[2], tot[3], tot[4] = tot[1] + e.runs, tot[2] + e.fail, tot[3] + e.skip, tot[4] + e.tmout
    end
    -- what the run was made to do
    assert.equal("1", rows.boom[3])
    assert.is_true(tonumber(rows.slowpoke[5]) >= 1 and tonumber(rows.slowpoke[6]) >= 1)
    assert.same({ "all", tostring(tot[1]), tostring(tot[2]), tostring(tot[2]), tostring(tot[3]), tostring(tot[4]) },
      { rows.all[1], rows.all[2], rows.all[3], rows.all[4], rows.all[5], rows.all[6] })
    local last = recs[#recs]
    assert.equal("run_end", last.type)
    assert.equal(tot[1], last.invocations)
    assert.equal(tot[2], last.failures)
  end)

  it("says why the exit status is what it is, the first errors and where the reports are", function()
    assert.matches("\nsummary of t %(end of run after 0:00:1%d of 0:00:18%):\n", out)
    assert.matches("\n  boom: 1 failure, first: events/ev.lua:8: kaboom at 2\n", out)
    -- timeout_sec is real time, whatever --time-scale (3 s of sleep are 0.25 s real at 12x)
    assert.matches("\n  slowpoke: %d failures?, first: timed out after 0.2s %(timeout_sec, real time: "
      .. "%-%-time%-scale does not shorten it%)\n", out)
    assert.matches("\nreport: r.jsonl\njunit: j.xml\n", out)
    local fails = table_rows(out).all[3]
    assert.matches("\nexit 1: " .. fails .. " failed invocations, 0 error results, 0 run errors\n$", out)
  end)

  it("has no colour and no status area when stdout is not a terminal", function()
    assert.is_nil(out:find("\27", 1, true))
    assert.is_nil(out:find("no errors", 1, true))
  end)

  it("is printed again by `orchlua report RUN.jsonl`, with the same numbers", function()
    local c2, out2 = h.run("report r.jsonl", dir)
    assert.equal(1, c2)   -- the run's own verdict
    assert.matches("^r.jsonl: t, 0.005 h at time scale 12, started ", out2)
    assert.same(table_rows(out), table_rows(out2))
    assert.matches("\nresults: %d+ %(0 errors, %d+ metric values in 2 series%)\n", out2)
    assert.matches("\nexit 1: %d failed invocations, 0 error results\n$", out2)
  end)
end)

describe("orchlua report A.jsonl B.jsonl", function()
  local function report(args)
    return h.run("report " .. args, FIX)
  end

  it("flags the regressions planted in the second run and exits 1", function()
    local code, out = report("base.jsonl regressed.jsonl")
    assert.equal(1, code)
    assert.matches("^A: base.jsonl %(soak, 2026%-01%-10T08:00:00.000Z%)\nB: regressed.jsonl ", out)
    assert.matches("\n  upload\n    runs +6 +5 +%-16.7%%\n", out)   -- a skip: flagged as such, not as fewer runs
    assert.matches("\n    skipped +0 +1 +new +REGRESSION: appeared\n", out)
    assert.matches("\n    dur p99 +2.50s +3.50s +%+40.0%% +REGRESSION: %+40%% > 10%%\n", out)
    assert.matches("\n  metric rss_mb{proc=streamer}\n    count +36 +36 +%+0.0%%\n    mean +117.5 +152.8 +%+30.0%% +REGRESSION", out)
    assert.matches("\n  metric latency_ms\n    count[^\n]*\n    mean +12.75 +12.76 +%+0.1%%\n", out)
    assert.matches("\n6 regressions beyond 10%%:\n", out)
    -- the events and series with a regression first, every line within 80 columns
    assert.is_true(out:find("\n  upload\n", 1, true) < out:find("\n  final_report\n", 1, true))
    assert.is_true(out:find("\n  metric rss_mb{proc=streamer}\n", 1, true) < out:find("\n  final_report\n", 1, true))
    for line in out:gmatch("[^\n]+") do assert.is_true(#line <= 80, line) end
  end)

  it("exits 0 when nothing changed beyond the threshold", function()
    local code, out = report("base.jsonl base.jsonl")
    assert.equal(0, code)
    assert.matches("\nno regression beyond 10%%\n$", out)
    code, out = report("base.jsonl regressed.jsonl --threshold 60")
    assert.equal(1, code)
    assert.matches("\n2 regressions beyond 60%%:\n  ping failures: 0 %-> 2 %(appeared%)\n  upload skipped: 0 %-> 1 %(appeared%)\n$", out)
  end)

  it("takes the metrics where more is better", function()
    local code, out = report("base.jsonl regressed.jsonl --higher-is-better fps,frames")
    assert.equal(1, code)
    assert.matches("\n  metric fps mean: 30.5 %-> 24.5 %(%-20%% < %-10%%%)\n", out)
    assert.matches("\n8 regressions beyond 10%%:\n", out)
  end)

  it("exits 2 on a file that is not a report, and on misuse", function()
    local code, _, err = report("base.jsonl nothere.jsonl")
    assert.equal(2, code)
    assert.matches("^orchlua: nothere.jsonl: No such file or directory\n$", err)
    code, _, err = report(h.q(h.root .. "/descriptions/demo.json"))
    assert.equal(2, code)
    assert.matches("demo.json:1: not JSON %(.*%), found // The demo", err)
    code, _, err = report("a b c")
    assert.equal(2, code)
    assert.matches("^orchlua: report needs one JSONL report, or two to compare, found 3\n", err)
    code, _, err = report("base.jsonl regressed.jsonl --html x.html")
    assert.equal(2, code)
    assert.matches("^orchlua: %-%-html takes one report, found two\n", err)
    code, _, err = report("base.jsonl --threshold 5")
    assert.equal(2, code)
    assert.matches("^orchlua: %-%-threshold compares two reports, found one\n", err)
    code, _, err = report("base.jsonl --ignore-label pid")
    assert.equal(2, code)
    assert.matches("^orchlua: %-%-ignore%-label compares two reports, found one\n", err)
    code, _, err = report("base.jsonl regressed.jsonl --threshold x=y")
    assert.equal(2, code)
    assert.matches('^orchlua: %-%-threshold expects PCT or NAME=PCT %(a number >= 0%), found "x=y"\n', err)
    code, _, err = h.run("run demo --threshold 5")
    assert.equal(2, code)
    assert.matches("^orchlua: %-%-threshold does not apply to run\n", err)
  end)

  it("has a help page", function()
    local code, out = h.run("help report")
    assert.equal(0, code)
    assert.matches("^orchlua report RUN.jsonl %[%-%-html FILE.html%]", out)
    assert.matches("\norchlua report A.jsonl B.jsonl %[%-%-threshold %[NAME=%]PCT%]%.%.%. ", out)
    assert.matches("\n +%[%-%-ignore%-label NAME%]%.%.%. %[%-%-only GLOB%]", out)
    for line in out:gmatch("[^\n]+") do assert.is_true(#line <= 80, line) end
  end)

  it("reads a report as JSON lines a person can also decode", function()
    for line in io.lines(FIX .. "regressed.jsonl") do
      assert.equal("table", type(cjson.decode(line)))
    end
  end)
end)

-- report.table_lines has two layouts of one table: orch.core's in C
-- (src/columns.c: no paint, as in every run whose stdout is not a terminal)
-- and the Lua one (paint, plain lua5.4).  An event in the real binary lays
-- out random tables both ways; any line that differs fails the run.
describe("the summary's table layout", function()
  local LAYOUT = [[
local report = require "orch.report"
local M = {}
local WORDS = { "", "", "0", "7", "e12", "12.5ms", "  x", "y\t", "long cell text here", "a%sb", "\0z", "é" }
local function random_rows(rnd)
  local rows, ncol = {}, rnd(1, 9)
  for ri = 1, rnd(0, 12) do
    local r = {}
    for i = 1, rnd(0, ncol) do r[i] = WORDS[rnd(#WORDS)] end
    if rnd(6) == 1 then r[#r + 2] = WORDS[rnd(#WORDS)] end  -- a cell after a hole
    rows[ri] = r
  end
  return rows
end
function M.layout(result_reporter)
  local rnd = math.random
  math.randomseed(42)
  local tables, differ = 0, 0
  for _ = 1, 3000 do
    local rows = random_rows(rnd)
    local opts = { total = rnd(2) == 1, indent = ({ "  ", "", "%d " })[rnd(3)],
                   left = rnd(3) == 1 and { [2] = true, [rnd(9)] = true } or nil }
    local c = report.table_lines(rows, opts)
    opts.paint = function() end  -- the Lua layout, nothing painted
    local l = report.table_lines(rows, opts)
    tables = tables + 1
    if table.concat(c, "\n") ~= table.concat(l, "\n") or #c ~= #l then
      differ = differ + 1
      if differ == 1 then
        result_reporter:error("first difference", { c = table.concat(c, "|"), l = table.concat(l, "|") })
      end
    end
  end
  -- a cell that is not a string is an error in both
  local bad = { { "a", "b" }, { "c", 5 } }
  local ok_c = pcall(report.table_lines, bad)
  local ok_l = pcall(report.table_lines, bad, { paint = function() end })
  result_reporter:info("layouts", { tables = tables, differ = differ, c_raises = not ok_c, lua_raises = not ok_l })
end
-- core.format_fixed against string.format, on random magnitudes, exact
-- ties (x.x5 in binary: 0.25, 2.125), -0, NaN, infinities and huge values
function M.numbers(result_reporter)
  local core = require "orch.core"
  local rnd = math.random
  math.randomseed(7)
  local special = { 0.0, -0.0, 0.25, -0.25, 0.125, 2.125, 0.05, 0.15, 0.45, 1e12, -1e12, 999999999999.95,
                    1e300, -1e300, 5e-324, 1 / 0, -1 / 0, 0 / 0, 7, -3, math.maxinteger, 2 ^ 53 + 1 }
  local n, differ, first = 0, 0, nil
  local function check(v, d)
    n = n + 1
    local want = ("%." .. d .. "f"):format(v) .. "ms"
    local got = core.format_fixed(v, d, "ms")
    if got ~= want then
      differ = differ + 1
      first = first or ("%q: %s, not %s"):format(v, got, want)
    end
  end
  for _, v in ipairs(special) do for d = 0, 3 do check(v, d) end end
  for _ = 1, 200000 do
    local v = (rnd() - 0.3) * 10 ^ rnd(-8, 13)
    check(v, rnd(0, 3))
    -- ties of the binary: multiples of 1/8, 1/16, 1/32
    local t = rnd(-100000, 100000) / 2 ^ rnd(1, 5)
    check(t, rnd(0, 3))
  end
  result_reporter:info("numbers", { n = n, differ = differ, first = first })
end
return M
]]
  local dir
  teardown(function() h.rm(dir) end)

  it("is the same in C and in Lua, for random tables with holes, blanks and wide cells; numbers as printf", function()
    dir = h.project({ ["events/layout.lua"] = LAYOUT, ["descriptions/l.json"] =
      '{ "test_name": "l", "total_hours": 0.001, "events": [ { "name": "layout" }, { "name": "numbers" } ] }' })
    local code, out, err = h.run("run l -q --time-scale 100 --report r.jsonl", dir)
    assert.equal(0, code, out .. err)
    local recs = h.select(h.jsonl(dir .. "/r.jsonl"), "result")
    assert.equal(2, #recs, out)
    local d = h.select(recs, "result", "event", "layout")[1].data
    assert.same({ 3000, 0, true, true }, { d.tables, d.differ, d.c_raises, d.lua_raises })
    d = h.select(recs, "result", "event", "numbers")[1].data
    assert.same({ 400088, 0 }, { d.n, d.differ }, d.first)
  end)
end)
