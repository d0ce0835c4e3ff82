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

-- orch.columns (src/columns.c) is the one layout of every table orchlua
-- prints.  Held here to a reference layout in Lua (the rules in a few
-- lines) on random tables with holes, blanks and wide cells, with and
-- without paint; an event in the real binary does the same with the
-- preloaded module.
local function reference_lines(rows, indent, left, total, paint)
  local BLANK = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }
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
  for ri, r in ipairs(rows) do
    local last, cells = 0, {}
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
    lines[#lines + 1] = line:sub(1, n)
    if ri == 1 or (total and ri == #rows - 1) then rule() end
  end
  return lines
end

local function compare_layouts(table_lines)
  local WORDS = { "", "", "0", "7", "e12", "12.5ms", "  x", "y\t", "long cell text here", "a%sb", "\0z", "é" }
  local rnd = math.random
  math.randomseed(42)
  local tables, differ, first = 0, 0, nil
  for k = 1, 3000 do
    local rows, ncol = {}, rnd(1, 9)
    for ri = 1, rnd(0, 12) do
      local r = {}
      for i = 1, rnd(0, ncol) do r[i] = WORDS[rnd(#WORDS)] end
      if rnd(6) == 1 then r[#r + 2] = WORDS[rnd(#WORDS)] end  -- a cell after a hole
      rows[ri] = r
    end
    local indent, total = ({ "  ", "", "%d " })[rnd(3)], rnd(2) == 1
    local left = rnd(3) == 1 and { [2] = true, [rnd(9)] = true } or nil
    -- every other table painted: odd columns bracketed, a blank cell kept blank
    local paint = k % 2 == 0 and function(_, ci, cell) if ci % 2 == 1 and cell:find("%S") then return "[" .. cell .. "]" end end or nil
    local got = table_lines(rows, indent, left, total, paint)
    local want = reference_lines(rows, indent, left, total, paint)
    tables = tables + 1
    if table.concat(got, "\n") ~= table.concat(want, "\n") or #got ~= #want then
      differ = differ + 1
      first = first or table.concat(got, "|") .. " <> " .. table.concat(want, "|")
    end
  end
  return tables, differ, first
end

describe("the table layout (orch.columns)", function()
  it("is the reference layout, painted or not, for random tables with holes, blanks and wide cells", function()
    local columns = require "orch.columns"
    local tables, differ, first = compare_layouts(columns.table_lines)
    assert.equal(3000, tables)
    assert.equal(0, differ, first)
  end)

  it("refuses a cell that is not a string, and passes on an error of paint", function()
    local columns = require "orch.columns"
    assert.has_error(function() columns.table_lines({ { "a", "b" }, { "c", 5 } }, "  ") end,
      "table_lines: row 2 column 2 is a number, not a string")
    assert.has_error(function() columns.table_lines({ { "a" } }, "  ", nil, false, function() error("paint", 0) end) end,
      "paint")
  end)
end)

local FIXED_ROWS = { { "event", "runs", "dur p99" }, { "a", "12", "1.5ms" }, { "long_name", "", "" },
                     { "b", "7" }, { "all", "19", "1.5ms" } }
local function bracket(_, ci, cell) if ci == 2 then return "[" .. cell .. "]" end end

describe("the summary's table in the real binary", function()
  local LAYOUT = [[
local report = require "orch.report"
local M = {}
function M.layout(result_reporter)
  local rows = require("cjson").decode(']] .. require("cjson").encode(FIXED_ROWS) .. [[')

  result_reporter:info("layout", {
    plain = report.table_lines(rows, { total = true }),
    painted = report.table_lines(rows, { total = true, left = { [3] = true },
      paint = function(_, ci, cell) if ci == 2 then return "[" .. cell .. "]" end end }),
  })
end
-- columns.format_fixed against string.format, on random magnitudes, exact
-- ties (x.x5 in binary: 0.25, 2.125), -0, NaN, infinities and huge values
function M.numbers(result_reporter)
  local columns = require "orch.columns"
  local rnd = math.random
  math.randomseed(7)
  local special = { 0.0, -0.0, 0.25, -0.25, 0.125, 2.125, 0.05, 0.15, 0.45, 1e12, -1e12, 999999999999.95,
                    1e300, -1e300, 5e-324, 1 / 0, -1 / 0, 0 / 0, 7, -3, math.maxinteger, 2 ^ 53 + 1 }
  local n, differ, first = 0, 0, nil
  local function check(v, d)
    n = n + 1
    local want = ("%." .. d .. "f"):format(v) .. "ms"
    local got = columns.format_fixed(v, d, "ms")
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

  it("is the reference layout, painted or not; numbers as printf", function()
    dir = h.project({ ["events/layout.lua"] = LAYOUT, ["descriptions/l.json"] =
      '{ "test_name": "l", "total_hours": 0.001, "events": [ { "name": "layout" }, { "name": "numbers" } ] }' })
    local code, out, err = h.run("run l -q --time-scale 100 --report r.jsonl", dir)
    assert.equal(0, code, out .. err)
    local recs = h.select(h.jsonl(dir .. "/r.jsonl"), "result")
    assert.equal(2, #recs, out)
    local d = h.select(recs, "result", "event", "layout")[1].data
    assert.same(reference_lines(FIXED_ROWS, "  ", nil, true), d.plain)
    assert.same(reference_lines(FIXED_ROWS, "  ", { [3] = true }, true, bracket), d.painted)
    d = h.select(recs, "result", "event", "numbers")[1].data
    assert.same({ 400088, 0 }, { d.n, d.differ }, d.first)
  end)
end)
