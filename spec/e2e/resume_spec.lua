-- --resume: a run killed with SIGKILL goes on from its report (orch.resume):
-- the same t0 and T, fixtures and startup events again, interval events on
-- the original grid, one gap record, seq going on, the summary counting the
-- whole run; refusals leave the file untouched.
local h = require "helper"
local plan = require "orch.plan"

local EVENTS = [[
local orch = require "orch"
orch.fixture("conn", function(result_reporter)
  result_reporter:info("conn set up")
  return {}
end)
return {
  hello = function(result_reporter) result_reporter:info("hello") end,
  tick = function(conn) end,
}
]]
local DESC = '{"test_name":"r","total_hours":0.002,"unref_setup_fixtures":["conn"],'
  .. '"events":[{"name":"hello","at_startup":true},{"name":"tick","interval_sec":0.5,"at_startup":false}]}'

local function start_and_kill(dir, after, name)
  os.execute(("cd %s && (%s run %s -q --report r.jsonl >out 2>err & echo $! > pid; sleep %s; kill -9 $(cat pid)) ")
    :format(h.q(dir), h.q(h.bin), name or "r", after))
  os.execute("sleep 0.3")
end

describe("--resume", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("continues a killed run on its grid, with one gap record, to the original end", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/r.json"] = DESC })
    local t0 = os.time()
    start_and_kill(dir, 2)
    os.execute("sleep 1")
    local code, _, err = h.run("run r -q --resume r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
    assert.equal(0, code, err)
    assert.matches("handles=0 tasks=0 refs=0", err)
    assert.is_true(os.time() - t0 <= 12, "the resumed run kept the original T")
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.is_nil(h.nonconforming(recs))
    for i, r in ipairs(recs) do assert.equal(i, r.seq) end
    assert.equal(1, #h.select(recs, "run_start"))
    assert.equal("run_end", recs[#recs].type)
    local gaps = h.select(recs, "gap")
    assert.equal(1, #gaps)
    assert.is_true(gaps[1].to > gaps[1].from)
    local missed = gaps[1].missed.tick or 0
    assert.is_true(missed >= 1, "missed " .. tostring(missed))
    -- fixtures and startup events again
    local setups, hellos = 0, 0
    for _, r in ipairs(h.select(recs, "result")) do
      if r.data.message == "conn set up" then setups = setups + 1 end
      if r.data.message == "hello" then hellos = hellos + 1 end
    end
    assert.equal(2, setups)
    assert.equal(2, hellos)
    -- every firing of the grid once: run before the kill, missed, or run after
    local ks, runs = {}, 0
    for _, r in ipairs(h.select(recs, "invocation", "id", "tick")) do
      assert.is_nil(ks[r.iteration], "iteration " .. r.iteration .. " twice")
      ks[r.iteration] = true
      assert.equal(r.iteration * 0.5, r.scheduled)
      runs = runs + 1
    end
    local want = plan.last_k(0.5, 7.2)
    assert.equal(want, runs + missed)
    local run_end = recs[#recs]
    assert.equal(want + 2, run_end.invocations + run_end.skipped)   -- and hello twice
    assert.equal(4, run_end.results)
  end)

  it("refuses a finished run, a changed description and a file that is not a report, leaving them untouched", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/r.json"] = DESC:gsub('"total_hours":0.002', '"total_hours":0.0002') })
    local code = h.run("run r -q --report r.jsonl", dir)
    assert.equal(0, code)
    local before = h.read(dir .. "/r.jsonl")
    local _, err
    code, _, err = h.run("run r -q --resume r.jsonl", dir)
    assert.equal(2, code)
    assert.matches("orchlua: %-%-resume r.jsonl: the run finished %(run_end at line %d+%): there is nothing to resume", err)
    assert.equal(before, h.read(dir .. "/r.jsonl"))

    start_and_kill(dir, 0.5)
    before = h.read(dir .. "/r.jsonl")
    h.write(dir .. "/descriptions/r.json", DESC:gsub("0.5", "0.25"))
    code, _, err = h.run("run r -q --resume r.jsonl", dir)
    assert.equal(2, code)
    assert.matches("the description changed since the run started %(descriptions/r.json is not the file it was%): "
      .. "%-%-force resumes it anyway", err)
    assert.equal(before, h.read(dir .. "/r.jsonl"))

    h.write(dir .. "/other.jsonl", '{"hello":1}\n')
    code, _, err = h.run("run r -q --resume other.jsonl", dir)
    assert.equal(2, code)
    assert.matches("not an orchlua report", err)
    assert.equal('{"hello":1}\n', h.read(dir .. "/other.jsonl"))
  end)

  it("with --resume-if-exists, starts when the report is not there and resumes when it is", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/r.json"] = DESC })
    start_and_kill(dir, 1)
    local code, _, err = h.run("run r -q --report r.jsonl --resume-if-exists", dir)
    assert.equal(0, code, err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal(1, #h.select(recs, "run_start"))
    assert.equal(1, #h.select(recs, "gap"))
    code = h.run("run r -q --report fresh.jsonl --resume-if-exists --hours 0.0002", dir)
    assert.equal(0, code)
    assert.equal(0, #h.select(h.jsonl(dir .. "/fresh.jsonl"), "gap"))
  end)
end)

describe("orchlua report on a resumed run", function()
  it("counts the whole run: runs before and after the gap, the missed firings as skipped", function()
    local dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/r.json"] = DESC })
    start_and_kill(dir, 1.5)
    os.execute("sleep 1")
    local code = h.run("run r -q --resume r.jsonl", dir)
    assert.equal(0, code)
    local recs = h.jsonl(dir .. "/r.jsonl")
    local run_end = recs[#recs]
    local out
    code, out = h.run("report r.jsonl", dir)
    assert.equal(0, code)
    local runs, skipped = out:match("\n%s*tick%s+(%d+)%s+%d+%s+%d+%s+(%d+)")  -- runs, fail, errors, skip
    local s = 0
    for _, r in ipairs(h.select(recs, "invocation", "id", "tick")) do s = s + (r and 1 or 0) end
    assert.equal(s, tonumber(runs))
    assert.equal(run_end.skipped, tonumber(skipped))
    h.rm(dir)
  end)
end)

-- --report-max-mb: the run's files are one report (FILE.jsonl, FILE.1.jsonl,
-- ...); a resume reads them all and goes on in the newest, rotating on.
describe("--resume of a rotated report", function()
  local ROT_EVENTS = [[
return {
  tick = function(result_reporter) result_reporter:info(("x"):rep(300)) end,
}
]]
  local ROT_DESC = '{"test_name":"rot","total_hours":0.002,"events":[{"name":"tick","interval_sec":0.1,"at_startup":false}]}'
  local dir
  after_each(function() h.rm(dir) end)

  local function segments()
    local list = { dir .. "/r.jsonl" }
    for i = 1, 1000 do
      local p = ("%s/r.%d.jsonl"):format(dir, i)
      if not h.read(p) then break end
      list[#list + 1] = p
    end
    return list
  end
  local function all_records()
    local recs = {}
    for _, p in ipairs(segments()) do
      for _, r in ipairs(h.jsonl(p)) do recs[#recs + 1] = r end
    end
    return recs
  end

  it("reads every segment as one run, appends to the newest with seq going on and rotates on", function()
    dir = h.project({ ["events/ev.lua"] = ROT_EVENTS, ["descriptions/rot.json"] = ROT_DESC })
    os.execute(("cd %s && (%s run rot -q --report r.jsonl --report-max-mb 0.004 >out 2>err & echo $! > pid; "
      .. "sleep 2; kill -9 $(cat pid))"):format(h.q(dir), h.q(h.bin)))
    os.execute("sleep 0.3")
    local before = #segments()
    assert.is_true(before >= 3, "segments before the kill: " .. before)
    -- the kill may cut the newest line short: a torn tail, as a kill mid-write leaves
    local last = segments()[before]
    local f = assert(io.open(last, "ab")); f:write('{"seq":99999,"type":"invoc'); f:close()
    -- a resume refused (here: --junit into a missing folder) leaves it all as it was
    local kept = h.read(last)
    local refused, _, rerr = h.run("run rot -q --resume r.jsonl --junit nowhere/j.xml", dir)
    assert.equal(2, refused, rerr)
    assert.equal(kept, h.read(last))
    -- without --report-max-mb: the run's own size (run_start) goes on
    local code, _, err = h.run("run rot -q --resume r.jsonl", dir)
    assert.equal(0, code, err)
    local after = segments()
    assert.is_true(#after > before, ("segments: %d before, %d after"):format(before, #after))
    for _, p in ipairs(after) do
      local size = #h.read(p)
      assert.is_true(size <= 4194 + 1024, p .. ": " .. size .. " bytes")
    end
    local recs = all_records()   -- every line valid JSON: the torn tail was cut
    assert.is_nil(h.nonconforming(recs))   -- report_max_bytes, torn_bytes as orch.records says
    for i, r in ipairs(recs) do assert.equal(i, r.seq) end
    assert.equal(1, #h.select(recs, "run_start"))
    assert.equal("run_end", recs[#recs].type)
    local gaps = h.select(recs, "gap")
    assert.equal(1, #gaps)
    assert.equal(#'{"seq":99999,"type":"invoc', gaps[1].torn_bytes)
    -- the summary counts the whole run: every firing of the grid once, run or missed
    local ks, runs = {}, 0
    for _, r in ipairs(h.select(recs, "invocation", "id", "tick")) do
      assert.is_nil(ks[r.iteration], "iteration " .. r.iteration .. " twice")
      ks[r.iteration] = true
      runs = runs + 1
    end
    local run_end = recs[#recs]
    assert.equal(runs, run_end.invocations)
    assert.equal(plan.last_k(0.1, 7.2), run_end.invocations + run_end.skipped)
    assert.equal(runs, run_end.results)
    -- and orchlua report reads the same set as one run
    local out
    code, out = h.run("report r.jsonl", dir)
    assert.equal(0, code, out)
    assert.matches("\n%s*tick%s+" .. runs .. "%s", out)
  end)
end)

-- Checks count the whole run: the report's records replayed into them
-- before the resumed run's loop starts.
describe("--resume and checks", function()
  local CK_EVENTS = [[
local orch = require "orch"
return {
  -- 900 at t = 0.5 s only, then 100
  mem = function(result_reporter) result_reporter:metric("mem", orch.now() < 0.8 and 900 or 100) end,
}
]]
  local CK_DESC = [[
{ "test_name": "ck", "total_hours": 0.002,
  "events": [ { "name": "mem", "interval_sec": 0.5, "at_startup": false } ],
  "checks": [ { "name": "peak", "metric": "mem", "stat": "max", "max": 500 },
              { "name": "window", "metric": "mem", "stat": "max", "max": 500, "window_sec": 1 },
              { "name": "calm", "metric": "mem", "stat": "max", "max": 1000 } ] }
]]
  local dir
  after_each(function() h.rm(dir) end)

  it("fail at the end for a breach before the kill: whole-run and windowed, recovered or not", function()
    dir = h.project({ ["events/ev.lua"] = CK_EVENTS, ["descriptions/ck.json"] = CK_DESC })
    start_and_kill(dir, 2.6, "ck")
    local recs = h.jsonl(dir .. "/r.jsonl")
    -- before the kill: the window breached at its first tick, then recovered
    local states = {}
    for _, r in ipairs(h.select(recs, "check", "name", "window")) do states[#states + 1] = r.status end
    assert.same({ "fail", "pass" }, states)
    local before = #recs
    local code, out, err = h.run("run ck -q --resume r.jsonl", dir)
    assert.equal(1, code, out .. err)
    recs = h.jsonl(dir .. "/r.jsonl")
    for i, r in ipairs(recs) do assert.equal(i, r.seq) end
    local finals, after = {}, {}
    for i, r in ipairs(recs) do
      if r.type == "check" and r.final then finals[r.name] = r end
      if r.type == "check" and r.name == "window" and not r.final and i > before then after[#after + 1] = r end
    end
    -- nothing breached after the resume: only the replay knows of the 900
    assert.equal("fail", finals.peak.status)
    assert.equal(900, finals.peak.value)
    assert.equal("fail", finals.window.status)
    assert.equal(900, finals.window.value)   -- the worst value judged, before the kill
    assert.equal("pass", finals.calm.status)
    -- the replay wrote no check record (the report has them), and the
    -- window, recovered before the kill, stayed so
    assert.same({}, after)
    assert.truthy(out:find("2 failed checks", 1, true), out)
  end)

  it("stop at once when an abort check had failed before the kill (killed during the teardown)", function()
    local events = CK_EVENTS:gsub("return {", 'return {\n  slow = function() orch.sleep(3) end,', 1)
    local desc = CK_DESC:gsub('"total_hours": 0.002', '"total_hours": 0.01', 1)
      :gsub('"at_startup": false } ]', '"at_startup": false }, '
      .. '{ "name": "slow", "at_startup": false, "at_teardown": true } ]', 1)
      :gsub('"max": 500 },', '"max": 500, "action": "abort" },', 1)
    dir = h.project({ ["events/ev.lua"] = events, ["descriptions/ck.json"] = desc,
                      [".orchlua"] = 'return { sources = { "events/*.lua" }, grace_sec = 60 }\n' })
    start_and_kill(dir, 2.5, "ck")
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal(1, #h.select(recs, "check", "name", "peak"))   -- failed, then the teardown waited
    assert.equal(0, #h.select(recs, "run_end"))
    local code, out, err = h.run("run ck -q --resume r.jsonl --grace 1", dir)
    assert.equal(1, code, out .. err)
    assert.truthy(out:find('stopping: check "peak" failed (max 900, limit <= 500)', 1, true), out)
    recs = h.jsonl(dir .. "/r.jsonl")
    local run_end = recs[#recs]
    assert.equal("run_end", run_end.type)
    assert.equal('check "peak" failed (max 900, limit <= 500)', run_end.reason)
    assert.is_true(run_end.t < 20, "ended at " .. run_end.t)   -- not at T (36 s)
  end)

  it("pass at the end when nothing breached, before the kill or after", function()
    dir = h.project({ ["events/ev.lua"] = CK_EVENTS:gsub("900", "400"), ["descriptions/ck.json"] = CK_DESC })
    start_and_kill(dir, 2, "ck")
    local code, out, err = h.run("run ck -q --resume r.jsonl", dir)
    assert.equal(0, code, out .. err)
    local finals = {}
    for _, r in ipairs(h.select(h.jsonl(dir .. "/r.jsonl"), "check")) do
      if r.final then finals[r.name] = r end
    end
    assert.equal("pass", finals.peak.status)
    assert.equal(400, finals.peak.value)
    assert.equal("pass", finals.window.status)
  end)
end)
