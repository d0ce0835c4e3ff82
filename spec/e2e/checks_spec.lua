-- End-to-end specs of checks (DESIGN.md "Checks"): the real binary judging
-- its own runs, read back through the JSONL, the summary and JUnit.
local h = require "helper"

local EVENTS = [[
local orch = require "orch"
local M = {}
-- 100 ms, but 500 ms from t = 20 s to t = 40 s (description time)
function M.lat(result_reporter)
  local t = orch.now()
  result_reporter:metric("latency_ms", (t >= 20 and t < 40) and 500 or 100, { host = "a" })
end
-- dies `deaths` times: odd deaths as error results, even ones as failures
function M.chaos(result_reporter, event, deaths)
  local k = event.iteration
  if k >= 1 and k <= deaths then
    if k % 2 == 1 then result_reporter:error("server died", { k = k }) else error("server crashed") end
  end
end
-- memory in MB: base + growth_mb_h per hour + uniform noise +-noise_mb, and
-- spikes of spike_mb at the given iterations
local rng = 12345
local function uniform()
  rng = (rng * 1103515245 + 12345) % 2147483648
  return rng / 2147483648
end
function M.mem(result_reporter, event, growth_mb_h, noise_mb, spikes, spike_mb)
  local t = orch.now()
  local v = 500 + growth_mb_h * t / 3600 + (uniform() * 2 - 1) * noise_mb
  for _, k in ipairs(spikes) do if event.iteration == k then v = v + spike_mb end end
  result_reporter:metric("rss_mb", v)
end
function M.flaky(event)
  if event.iteration >= 3 and event.iteration <= 5 then error("flaky") end
end
function M.quiet() end
function M.hang(kill_switch) kill_switch:wait() end
return M
]]

local function project(descs)
  local files = { ["events/ck.lua"] = EVENTS }
  for name, text in pairs(descs) do files["descriptions/" .. name .. ".json"] = text end
  return h.project(files)
end

local function checks_of(recs, name)
  local out = {}
  for _, r in ipairs(recs) do
    if r.type == "check" and r.name == name then out[#out + 1] = r end
  end
  return out
end

local function final_of(recs, name)
  local list = checks_of(recs, name)
  return list[#list]
end

describe("checks", function()
  local dir
  after_each(function() h.rm(dir); dir = nil end)

  describe("a windowed p99 on a metric", function()
    it("fails while the window holds the slow samples, recovers after, and ends failed", function()
      dir = project({ win = [[
{ "test_name": "win", "total_hours": 0.0167,
  "events": [ { "name": "lat", "interval_sec": 1 } ],
  "checks": [ { "name": "p99 latency", "metric": "latency_ms", "where": { "host": "a" },
                "stat": "p99", "max": 250, "window_sec": 10 } ] }
]] })
      local code, out = h.run("run win -q --time-scale 20 --report r.jsonl", dir)
      assert.equal(1, code)
      local recs = h.jsonl(dir .. "/r.jsonl")
      local states = {}
      for _, r in ipairs(checks_of(recs, "p99 latency")) do
        states[#states + 1] = r.status .. (r.final and " (final)" or "")
      end
      -- a first judgement that passes is no change: no record
      assert.same({ "fail", "pass", "fail (final)" }, states)
      local list = checks_of(recs, "p99 latency")
      -- the breach is seen as the first slow sample comes, the recovery
      -- once the window (10 s, in steps of 0.5 s) no longer holds one
      -- (judged on ticks every 2 s here, anchored at t0)
      assert.is_true(list[1].t >= 20 and list[1].t < 22.5, "breach at " .. list[1].t)
      assert.is_true(list[2].t >= 49 and list[2].t < 52.5, "recovery at " .. list[2].t)
      assert.equal(500, list[1].value)
      assert.equal(100, list[2].value)
      assert.equal(250, list[1].max)
      assert.equal("fail", list[1].action)
      assert.is_string(list[1].ts)
      assert.equal(500, list[3].value)   -- the worst value judged
      assert.truthy(out:find("  p99 latency  p99     500  <= 250  fail\n", 1, true), out)
      assert.truthy(out:find("exit 1: 0 failed invocations, 0 error results, 0 run errors, 1 failed check", 1, true), out)
    end)
  end)

  describe("an abort check", function()
    it("stops the run in order within one evaluation period of the breach", function()
      dir = project({ ab = [[
{ "test_name": "ab", "total_hours": 1,
  "events": [ { "name": "lat", "interval_sec": 1 }, { "name": "hang" } ],
  "checks": [ { "name": "guard", "metric": "latency_ms", "stat": "max", "max": 250, "action": "abort" } ] }
]] })
      local code, out = h.run("run ab -q --time-scale 20 --report r.jsonl", dir)
      assert.equal(1, code)
      local recs = h.jsonl(dir .. "/r.jsonl")
      local fail = checks_of(recs, "guard")[1]
      assert.equal("fail", fail.status)
      -- period: 1 s of description time, at most ten times a real second
      -- (here 2 s), on ticks anchored at t0; the breach is the first 500
      -- (at 20 s): judged at the next tick, within one period (and the
      -- tick's own lateness on this loaded loop: 0.5 s is 25 ms real)
      local breach
      for _, r in ipairs(h.select(recs, "result")) do
        if not breach and r.data.value == 500 then breach = r end
      end
      local tick = math.ceil(breach.t / 2) * 2
      assert.is_true(fail.t >= tick and fail.t < tick + 0.5, ("abort judged at %s, breach at %s"):format(fail.t, breach.t))
      assert.is_true(fail.t - breach.t < 2 + 0.5, ("abort judged at %s, breach at %s"):format(fail.t, breach.t))
      local run_end = h.select(recs, "run_end")[1]
      assert.equal('check "guard" failed (max 500, limit <= 250)', run_end.reason)
      assert.is_true(run_end.t < 25, "ended at " .. run_end.t)
      -- in order: the kill switch reached the hanging event, which returned
      local hang = h.select(recs, "invocation", "id", "hang")[1]
      assert.equal("ok", hang.status)
      assert.truthy(out:find("stopping: check \"guard\" failed", 1, true), out)
    end)
  end)

  describe("silence_sec", function()
    it("fires when nothing at all is reported", function()
      dir = project({ sil = [[
{ "test_name": "sil", "total_hours": 1,
  "events": [ { "name": "hang" } ],
  "checks": [ { "name": "heartbeat", "metric": "heartbeat", "stat": "silence_sec", "max": 30,
                "action": "abort" } ] }
]] })
      local code = h.run("run sil -q --time-scale 60 --report r.jsonl", dir)
      assert.equal(1, code)
      local recs = h.jsonl(dir .. "/r.jsonl")
      local fail = checks_of(recs, "heartbeat")[1]
      assert.equal("fail", fail.status)
      assert.is_true(fail.value > 30 and fail.value <= 36, "silence " .. fail.value)
    end)
  end)

  describe("slope_per_hour", function()
    local function leak(growth, noise, spikes, spike)
      return ([[
{ "test_name": "leak", "total_hours": 24,
  "events": [ { "name": "mem", "interval_sec": 60,
                "params": { "growth_mb_h": %s, "noise_mb": %s, "spikes": %s, "spike_mb": %s } } ],
  "checks": [ { "name": "no leak", "metric": "rss_mb", "stat": "slope_per_hour", "max": 0.5 } ] }
]]):format(growth, noise, spikes, spike)
    end

    it("catches 1 MB/h of growth under +-20 MB of noise over 24 hours", function()
      dir = project({ leak = leak(1, 20, "[]", 0) })
      local code, out = h.run("run leak -q --time-scale 14400 --report r.jsonl", dir)
      assert.equal(1, code, out)
      local final = final_of(h.jsonl(dir .. "/r.jsonl"), "no leak")
      assert.equal("fail", final.status)
      assert.is_true(final.value > 0.6 and final.value < 1.4, "slope " .. final.value)
    end)

    it("does not take a flat series with a few huge spikes for a leak", function()
      dir = project({ leak = leak(0, 1, "[100, 500, 900, 1300]", 5000) })
      local code, out = h.run("run leak -q --time-scale 14400 --report r.jsonl", dir)
      assert.equal(0, code, out)
      local final = final_of(h.jsonl(dir .. "/r.jsonl"), "no leak")
      assert.equal("pass", final.status)
      assert.is_true(math.abs(final.value) < 0.2, "slope " .. final.value)
    end)
  end)

  describe("errors owned by a check on their event", function()
    local function chaos(deaths)
      return ([[
{ "test_name": "chaos", "total_hours": 0.0028,
  "events": [ { "name": "chaos", "interval_sec": 1, "params": { "deaths": %d } } ],
  "checks": [ { "name": "expected deaths", "event": "chaos", "stat": "errors", "max": 3 } ] }
]]):format(deaths)
    end

    it("pass the run when within the check's limit (3 deaths, max 3)", function()
      dir = project({ chaos = chaos(3) })
      local code, out = h.run("run chaos -q --time-scale 10 --report r.jsonl --junit j.xml", dir)
      assert.equal(0, code, out)
      local final = final_of(h.jsonl(dir .. "/r.jsonl"), "expected deaths")
      assert.same({ "pass", 3 }, { final.status, final.value })
      -- the summary's errors column: 1 failure + 2 error results
      assert.truthy(out:find("\n  chaos    11     1       3     0      0", 1, true), out)
      assert.truthy(out:find("  chaos: 3 errors (1 failure, 2 error results), first: error result: server died\n", 1, true), out)
      assert.truthy(out:find("exit 0: every check passed: 3 errors owned by checks, within their limits", 1, true), out)
      local xml = h.read(dir .. "/j.xml")
      assert.falsy(xml:find('name="(run)"', 1, true), xml)
      assert.truthy(xml:find('<testcase classname="chaos.checks" name="expected deaths" time="0">\n'
        .. '    <system-out>errors 3, limit &lt;= 3: pass (action fail)</system-out>', 1, true), xml)
    end)

    it("fail the run past it (4 deaths, max 3), and the event's JUnit case has the messages", function()
      dir = project({ chaos = chaos(4) })
      local code, out = h.run("run chaos -q --time-scale 10 --report r.jsonl --junit j.xml", dir)
      assert.equal(1, code, out)
      local recs = h.jsonl(dir .. "/r.jsonl")
      local list = checks_of(recs, "expected deaths")
      assert.same({ "fail", 4 }, { list[#list].status, list[#list].value })
      -- judged at once when the fourth death came (iteration 4, t = 4 s)
      local breach
      for _, r in ipairs(list) do if r.status == "fail" and not breach then breach = r end end
      assert.is_true(breach.t >= 4 and breach.t < 4.5, "breach at " .. breach.t)
      assert.truthy(out:find("exit 1: 2 failed invocations, 0 error results, 0 run errors, 1 failed check", 1, true), out)
      local xml = h.read(dir .. "/j.xml")
      assert.truthy(xml:find('<failure message="errors 4, limit &lt;= 3: fail" type="check">', 1, true), xml)
    end)

    it("without a check, fail the event's own JUnit testcase with the first messages", function()
      dir = project({ chaos = [[
{ "test_name": "chaos", "total_hours": 0.0028,
  "events": [ { "name": "chaos", "interval_sec": 1, "params": { "deaths": 3 } } ] }
]] })
      local code, out = h.run("run chaos -q --time-scale 10 --junit j.xml --report r.jsonl", dir)
      assert.equal(1, code, out)
      local xml = h.read(dir .. "/j.xml")
      assert.falsy(xml:find('name="(run)"', 1, true), xml)
      assert.truthy(xml:find('<failure message="1 of 11 invocations failed, 2 error results" type="error">'
        .. 'error result: server died\n\n', 1, true), xml)
      -- orchlua report prints the same numbers with the same words
      local _, rout = h.run("report r.jsonl", dir)
      assert.truthy(rout:find("  event  runs  fail  errors  skip  tmout", 1, true), rout)
      assert.truthy(rout:find("\n  chaos    11     1       3     0      0", 1, true), rout)
    end)
  end)

  describe("checks on an event's failures", function()
    it("count the longest run of failures and the error rate", function()
      dir = project({ fl = [[
{ "test_name": "fl", "total_hours": 0.0028,
  "events": [ { "name": "flaky", "interval_sec": 1 } ],
  "checks": [ { "name": "streak", "event": "flaky", "stat": "consecutive_failures", "max": 2 },
              { "name": "rate", "event": "flaky", "stat": "error_rate", "max": 0.5 },
              { "name": "runs", "event": "flaky", "series": "invocations", "stat": "count", "min": 11 } ] }
]] })
      local code, out = h.run("run fl -q --time-scale 10 --report r.jsonl", dir)
      assert.equal(1, code, out)
      local recs = h.jsonl(dir .. "/r.jsonl")
      local streak, rate, runs = final_of(recs, "streak"), final_of(recs, "rate"), final_of(recs, "runs")
      assert.same({ "fail", 3 }, { streak.status, streak.value })
      assert.equal("pass", rate.status)
      assert.is_true(math.abs(rate.value - 3 / 11) < 1e-9, "error_rate " .. rate.value)
      assert.same({ "pass", 11 }, { runs.status, runs.value })
      -- the error_rate check owns the errors: the streak check fails the run
      assert.truthy(out:find("exit 1: 3 failed invocations, 0 error results, 0 run errors, 1 failed check", 1, true), out)
    end)
  end)

  describe("more checks than the summary lists", function()
    it("list the ones not passing, with the count of them all", function()
      local checks = {}
      for i = 1, 58 do
        checks[i] = ('{ "name": "ok%d", "event": "flaky", "stat": "error_rate", "max": 0.9 }'):format(i)
      end
      checks[59] = '{ "name": "streak", "event": "flaky", "stat": "consecutive_failures", "max": 2 }'
      checks[60] = '{ "name": "runs", "event": "flaky", "series": "invocations", "stat": "count", "min": 100 }'
      dir = project({ many = ([[
{ "test_name": "many", "total_hours": 0.0028,
  "events": [ { "name": "flaky", "interval_sec": 1 } ],
  "checks": [ %s ] }
]]):format(table.concat(checks, ",\n")) })
      local code, out = h.run("run many -q --time-scale 10 --report r.jsonl", dir)
      assert.equal(1, code, out)
      assert.truthy(out:find("checks: 60, 2 not passing (2 shown)\n", 1, true), out)
      assert.truthy(out:find("\n  streak  consecutive_failures      3    <= 2  fail\n", 1, true), out)
      assert.truthy(out:find("\n  runs    count                    11  >= 100  fail\n", 1, true), out)
      assert.falsy(out:find("ok1", 1, true), out)
      local finals = 0
      for _, r in ipairs(h.jsonl(dir .. "/r.jsonl")) do
        if r.type == "check" and r.final then finals = finals + 1 end
      end
      assert.equal(60, finals)
    end)
  end)

  describe("a series that never had a sample", function()
    local function nodata(allow)
      return ([[
{ "test_name": "nd", "total_hours": 0.001,
  "events": [ { "name": "quiet", "interval_sec": 1 } ],
  "checks": [ { "name": "misspelt", "metric": "latncy_ms", "stat": "max", "max": 250, "allow_no_data": %s } ] }
]]):format(allow)
    end

    it("ends no_data and fails the run", function()
      dir = project({ nd = nodata("false") })
      local code, out = h.run("run nd -q --time-scale 10 --report r.jsonl", dir)
      assert.equal(1, code, out)
      local final = final_of(h.jsonl(dir .. "/r.jsonl"), "misspelt")
      assert.same({ "no_data", true }, { final.status, final.final })
      assert.truthy(out:find("  misspelt  max       -  <= 250  no_data\n", 1, true), out)
      local _, rout = h.run("report r.jsonl", dir)
      assert.truthy(rout:find("checks:\n  check     stat  value   limit  verdict\n", 1, true), rout)
      assert.truthy(rout:find("  misspelt  max       -  <= 250  no_data\n", 1, true), rout)
    end)

    it("passes with allow_no_data", function()
      dir = project({ nd = nodata("true") })
      local code, out = h.run("run nd -q --time-scale 10 --report r.jsonl", dir)
      assert.equal(0, code, out)
      assert.equal("pass", final_of(h.jsonl(dir .. "/r.jsonl"), "misspelt").status)
    end)
  end)

  describe("bad checks", function()
    local BAD = [[
{
  "test_name": "bad",
  "total_hours": 1,
  "events": [ { "name": "quiet", "interval_sec": 10 } ],
  "checks": [
    { "event": "quiet", "stat": "p100", "max": 1 },
    { "event": "quit", "stat": "errors", "max": 3 },
    { "metric": "m", "stat": "p99", "max": "abc", "windw_sec": 5 },
    { "metric": "m", "stat": "mean", "min": 5, "max": 3 },
    { "event": "quiet", "series": "duration", "stat": "p99.9", "max": 1, "window_sec": 5 },
    { "metric": "m", "series": "duration", "stat": "last", "max": 1 },
    { "name": "both", "metric": "m", "event": "quiet", "stat": "mean", "max": 1 },
    { "stat": "mean", "max": 1 },
    { "name": "x", "metric": "m", "stat": "errors", "max": 1, "where": 3, "action": "abrt", "after_sec": -1 },
    { "metric": "m", "stat": "meen" },
    { "event": "quiet", "stat": "p99", "max": 1 },
    "not a check"
  ]
}
]]
    local EXPECTED = [[
orchlua: descriptions/bad.json:6:33: checks[0].stat: expected a stat (count, rate, mean, min, max, last, pNN, errors, error_rate, consecutive_failures, silence_sec, slope_per_hour), found "p100" (a percentile pNN needs 0 < NN < 100)
orchlua: descriptions/bad.json:7:7: checks[1].event: no event with id "quit" (did you mean "quiet"?)
orchlua: descriptions/bad.json:8:44: checks[2].max: expected a number, found "abc"
orchlua: descriptions/bad.json:8:51: checks[2].windw_sec: unknown key "windw_sec" (did you mean "window_sec"?)
orchlua: descriptions/bad.json:9:38: checks[3].min: min 5 is above max 3: no value could pass
orchlua: descriptions/bad.json:10:74: checks[4].window_sec: window_sec 5 is shorter than the interval of event "quiet" (10s): a window would hold one invocation at most
orchlua: descriptions/bad.json:11:22: checks[5].series: "series" goes with "event", not "metric" (a metric is its own series)
orchlua: descriptions/bad.json:12:38: checks[6].event: only one of "metric", "event" may be given, found "metric" and "event"
orchlua: descriptions/bad.json:13:5: checks[7]: expected "metric" or "event" (what the check judges), found neither
orchlua: descriptions/bad.json:14:35: checks[8].stat: stat "errors" needs an "event" without "series", found a "metric"
orchlua: descriptions/bad.json:14:72: checks[8].where: expected an object, found 3
orchlua: descriptions/bad.json:14:85: checks[8].action: expected one of "fail", "abort", "warn", found "abrt" (did you mean "abort"?)
orchlua: descriptions/bad.json:14:106: checks[8].after_sec: expected a number >= 0, found -1
orchlua: descriptions/bad.json:15:5: checks[9]: expected "max" or "min" (the limit the check holds to), found neither
orchlua: descriptions/bad.json:15:30: checks[9].stat: expected a stat (count, rate, mean, min, max, last, pNN, errors, error_rate, consecutive_failures, silence_sec, slope_per_hour), found "meen" (did you mean "mean"?)
orchlua: descriptions/bad.json:16:25: checks[10].stat: stat "p99" needs a "metric", or an "event" with "series": "duration" or "lateness", found an "event" without "series"
orchlua: descriptions/bad.json:17:5: checks[11]: expected an object (a check), found "not a check"
orchlua: descriptions/bad.json: 17 problems
]]

    it("are every one reported at once, located, by `orchlua check` (exit 2)", function()
      dir = project({ bad = BAD })
      local code, out, err = h.run("check bad", dir)
      assert.equal(2, code)
      assert.equal("", out)
      assert.equal(EXPECTED, err)
    end)

    it("stop `orchlua run` before anything runs (exit 2)", function()
      dir = project({ bad = BAD })
      local code, out, err = h.run("run bad --report r.jsonl", dir)
      assert.equal(2, code)
      assert.equal("", out)
      assert.equal(EXPECTED, err)
      assert.is_nil(h.read(dir .. "/r.jsonl"))
    end)
  end)

  describe("the example description", function()
    it("rehearses in seconds and passes: 3 expected deaths, no leak, no stall", function()
      local code, out = h.run("run checks_demo --time-scale 600 -q --descriptions descriptions "
        .. "--sources events/checks_demo.lua")
      assert.equal(0, code, out)
      assert.truthy(out:find("exit 0: every check passed: 3 errors owned by checks, within their limits", 1, true), out)
    end)
  end)

  describe("orchlua plan", function()
    it("lists the checks", function()
      dir = project({ pl = [[
{ "test_name": "pl", "total_hours": 1,
  "events": [ { "name": "quiet", "interval_sec": 60 } ],
  "checks": [
    { "metric": "latency_ms", "where": { "host": "a" }, "stat": "p99.9", "max": 250, "window_sec": 600 },
    { "name": "deaths", "event": "quiet", "stat": "errors", "max": 3, "action": "abort", "after_sec": 120 },
    { "event": "quiet", "series": "duration", "stat": "mean", "min": 0, "max": 2, "action": "warn",
      "allow_no_data": true } ] }
]] })
      local code, out = h.run("plan pl", dir)
      assert.equal(0, code)
      assert.truthy(out:find([[

checks (3):
  latency_ms p99.9/600s: metric latency_ms where host=a p99.9 <= 250, over 600s windows, fail
  deaths: event quiet errors <= 3, over the whole run, from 0:02:00.000, abort
  quiet.duration mean: event quiet duration mean >= 0 and <= 2, over the whole run, warn, no data allowed
]], 1, true), out)
    end)
  end)
end)
