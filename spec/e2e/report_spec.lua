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
    { "name": "slowpoke", "interval_sec": 2, "timeout_sec": 2.5, "params": { "seconds": 3 } },
    { "name": "final", "at_startup": false, "at_teardown": true }
  ] }
]]

local FIX = h.root .. "/spec/fixtures/reports/"

-- nearest rank, as orch.stats while exact
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
          e.dur[#e.dur + 1] = r.duration
          e.late[#e.late + 1] = r.lateness / scale * 1000
        end
      end
    end
    local rows = table_rows(out)
    local tot = { 0, 0, 0, 0 }
    for _, id in ipairs({ "tick", "boom", "slowpoke", "final" }) do
      local e, row = per[id], rows[id]
      assert.truthy(row, "no summary row for " .. id .. " in:\n" .. out)
      assert.same({ id, tostring(e.runs), tostring(e.fail), tostring(e.skip), tostring(e.tmout),
        sec(pct(e.dur, 50)), sec(pct(e.dur, 99)), sec(pct(e.dur, 100)), ms(pct(e.late, 99)), ms(pct(e.late, 100)) },
        row)
      tot[1], tot[2], tot[3], tot[4] = tot[1] + e.runs, tot[2] + e.fail, tot[3] + e.skip, tot[4] + e.tmout
    end
    -- what the run was made to do
    assert.equal("1", rows.boom[3])
    assert.is_true(tonumber(rows.slowpoke[4]) >= 1 and tonumber(rows.slowpoke[5]) >= 1)
    assert.same({ "all", tostring(tot[1]), tostring(tot[2]), tostring(tot[3]), tostring(tot[4]) },
      { rows.all[1], rows.all[2], rows.all[3], rows.all[4], rows.all[5] })
    local last = recs[#recs]
    assert.equal("run_end", last.type)
    assert.equal(tot[1], last.invocations)
    assert.equal(tot[2], last.failures)
  end)

  it("says why the exit status is what it is, the first errors and where the reports are", function()
    assert.matches("\nsummary of t %(end of run after 0:00:1%d of 0:00:18, lateness in real ms%):\n", out)
    assert.matches("\n  boom: 1 failure, first: events/ev.lua:8: kaboom at 2\n", out)
    assert.matches("\n  slowpoke: %d failures?, first: timed out after 2.5s %(timeout_sec%)\n", out)
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
    assert.equal(0, c2)
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
    assert.matches("\n  upload +runs +6 +5 +%-16.7%%\n", out)   -- a skip: flagged as such, not as fewer runs
    assert.matches("\n +skipped +0 +1 +new +REGRESSION: appeared\n", out)
    assert.matches("\n +dur p99 +2.50s +3.50s +%+40.0%% +REGRESSION: %+40%% > 10%%\n", out)
    assert.matches("\n  metric rss_mb{proc=streamer} +count +36 +36 +%+0.0%%\n +mean +117.5 +152.8 +%+30.0%% +REGRESSION", out)
    assert.matches("\n  metric latency_ms +count[^\n]*\n +mean +12.75 +12.76 +%+0.1%%\n", out)
    assert.matches("\n6 regressions beyond 10%%:\n", out)
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
    assert.matches("no run_start record, not an orchlua %-%-report file\n$", err)
    code, _, err = report("a b c")
    assert.equal(2, code)
    assert.matches("^orchlua: report needs one JSONL report, or two to compare, found 3\n", err)
    code, _, err = report("base.jsonl regressed.jsonl --html x.html")
    assert.equal(2, code)
    assert.matches("^orchlua: %-%-html takes one report, found two\n", err)
    code, _, err = report("base.jsonl --threshold 5")
    assert.equal(2, code)
    assert.matches("^orchlua: %-%-threshold compares two reports, found one\n", err)
    code, _, err = h.run("run demo --threshold 5")
    assert.equal(2, code)
    assert.matches("^orchlua: %-%-threshold does not apply to run\n", err)
  end)

  it("has a help page", function()
    local code, out = h.run("help report")
    assert.equal(0, code)
    assert.matches("^orchlua report RUN.jsonl %[%-%-html FILE.html%]", out)
    assert.matches("\norchlua report A.jsonl B.jsonl %[%-%-threshold PCT%]", out)
  end)

  it("reads a report as JSON lines a person can also decode", function()
    for line in io.lines(FIX .. "regressed.jsonl") do
      assert.equal("table", type(cjson.decode(line)))
    end
  end)
end)
