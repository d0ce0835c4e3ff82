-- The bundled 72-hour soak (descriptions/soak_72h.json, events/soak.lua)
-- rehearsed at --time-scale 10000: 26 s for 414,586 firings.  (Under the
-- sanitizers: its first 12 hours, below.)  It must end
-- with exactly the counts of the plan (orch.plan, the arithmetic `orchlua
-- plan` prints), every invocation ok, the results its events report, RSS
-- flat, and as many descriptors, children and processes at the end as at
-- the start.
--
-- At this scale the 1 s event fires every 0.1 ms, below libuv's 1 ms timer
-- resolution, so the loop runs behind and catches up (lorch_core.c, the
-- tickers): a firing is never lost, but one due while the loop was behind
-- may be skipped by "forbid" at the end of the run (the catch-up of the
-- last firings comes at once).  So a firing counts once: run or skipped.
local h = require "helper"
local plan = require "orch.plan"
local description = require "orch.description"

-- A sanitized build (make check-asan sets ORCHLUA_BIN) forks slowly (each
-- spawn copies ASan's page tables: 50 ms), so at 10000 the loop would run
-- hours behind: there it rehearses the first 12 hours at 2000 (22 s), and
-- skips the RSS check (ASan's quarantine and shadow are most of its RSS).
local sanitized = os.getenv("ORCHLUA_BIN") ~= nil
local HOURS = sanitized and 12 or 72
local SCALE = sanitized and 2000 or 10000

-- results each invocation of an event reports (events/soak.lua)
local RESULTS = { soak_beat = 1, soak_info = 1, soak_queue = 1, soak_compute = 1,
                  soak_c_ping = 1, soak_table = 1, soak_lines = 1, soak_sample = 1 }

describe("the 72-hour soak", function()
  local dir
  local desc = assert(description.load(h.root .. "/descriptions/soak_72h.json"))
  local total = HOURS * 3600
  local code, err, elapsed
  local runs, bad, skipped, results, metrics = {}, {}, {}, 0, {}
  local run_end

  setup(function()
    -- the repository's events, descriptions and C module; a grace long
    -- enough for the firings caught up at the end (10 min of description
    -- time is 60 ms here)
    dir = h.project({ [".orchlua"] = ("return { descriptions = %q, sources = { %q, %q }, grace_sec = 600 }\n")
      :format(h.root .. "/descriptions", h.root .. "/events/soak.lua", h.root .. "/events/cevents.so") })
    local t = os.time()
    local _
    code, _, err = h.run(("run soak_72h --hours %d --time-scale %d -q --report r.jsonl"):format(HOURS, SCALE),
      dir, "ORCHLUA_DEBUG_STATS=1")
    elapsed = os.time() - t
    -- 470,000 lines: counted with patterns, only the few records the
    -- checks read are decoded
    local cjson = require "cjson"
    local find, match = string.find, string.match
    for line in io.lines(dir .. "/r.jsonl") do
      if find(line, '"type":"invocation"', 1, true) then
        local id = match(line, '"id":"([^"]*)"')
        if find(line, '"status":"ok"', 1, true) then
          runs[id] = (runs[id] or 0) + 1
        else
          bad[#bad + 1] = line
        end
      elseif find(line, '"type":"skipped"', 1, true) then
        local id = match(line, '"id":"([^"]*)"')
        skipped[id] = (skipped[id] or 0) + (tonumber(match(line, '"count":(%d+)')) or 1)
      elseif find(line, '"type":"result"', 1, true) then
        results = results + 1
        if find(line, '"metric":"soak.', 1, true) then
          local r = cjson.decode(line)
          metrics[#metrics + 1] = r.data
        end
      elseif find(line, '"type":"run_end"', 1, true) then
        run_end = cjson.decode(line)
      end
    end
  end)

  teardown(function() h.rm(dir) end)

  it("ends in order, on time, with nothing left behind", function()
    assert.equal(0, code, err)
    assert.matches("handles=0 tasks=0 refs=0", err)
    assert.equal("end of run", run_end.reason)
    -- 26 s on schedule; a loop that fell hours behind would take far more
    -- (the bound is loose: other work may share the machine's 2 cores)
    if not sanitized then assert.is_true(elapsed <= 180, "took " .. elapsed .. " s") end
  end)

  it("fires every event exactly as the plan says, every invocation ok", function()
    assert.same({}, bad)
    local want_total, want_results = 0, 2   -- soak.start and soak.end
    for _, ev in ipairs(desc.events) do
      local c = plan.counts(ev, total)
      local got = (runs[ev.id] or 0) + (skipped[ev.id] or 0)
      assert.equal(c.total, got, ev.id .. ": runs + skipped")
      -- catch-up skips only: never more than a sliver of the run
      if not sanitized then
        assert.is_true((skipped[ev.id] or 0) <= c.total // 100, ev.id .. ": skipped " .. tostring(skipped[ev.id]))
      end
      want_total = want_total + c.total
      want_results = want_results + (RESULTS[ev.id] or 0) * (runs[ev.id] or 0)
    end
    if HOURS == 72 then assert.equal(414586, want_total) end
    assert.equal(want_total, math.tointeger(run_end.invocations + run_end.skipped))
    assert.equal(want_results, math.tointeger(run_end.results))
    assert.equal(want_results, results)
    assert.equal(0, run_end.error_results)
  end)

  local function metric(name)
    local out = {}
    for _, m in ipairs(metrics) do if m.metric == name then out[#out + 1] = m end end
    return out
  end

  it("holds as many descriptors, children and processes at the end as at the start", function()
    local start, stop = metric("soak.start")[1], metric("soak.end")[1]
    assert.is_table(start)
    assert.is_table(stop)
    assert.equal(start.fields.fds, stop.fields.fds)
    assert.equal(2, start.fields.children)          -- the device and orchlua's guardian
    assert.equal(start.fields.children, stop.fields.children)
    assert.equal(start.fields.processes, stop.fields.processes)
    assert.equal(start.fields.threads, stop.fields.threads)
    -- the fixtures saw every invocation: each scratch was finalised
    assert.equal(runs.soak_tick, stop.fields.ticks)
    assert.equal(runs.soak_scratch, stop.fields.scratch_made)
    assert.equal(stop.fields.scratch_made, stop.fields.scratch_done)
  end)

  it("keeps its memory flat", function()
    local samples = metric("soak.rss")
    assert.equal(HOURS + 1, #samples)
    if sanitized then return end   -- 12 hours of a build whose memory is ASan's
    -- hourly samples after a full GC: the Lua heap and RSS of hours 12 to
    -- 24 (the first hours fill the duration statistics' buckets) against
    -- the last 24 hours
    local warm_rss, warm_lua, late_rss, late_lua = 0, 0, 0, 0
    for _, s in ipairs(samples) do
      local hour = s.fields.iteration
      if hour >= 12 and hour <= 24 then
        warm_rss, warm_lua = math.max(warm_rss, s.value), math.max(warm_lua, s.fields.lua_kb)
      elseif hour >= 48 then
        late_rss, late_lua = math.max(late_rss, s.value), math.max(late_lua, s.fields.lua_kb)
      end
    end
    assert.is_true(late_lua - warm_lua < 512, ("Lua heap %d kB -> %d kB"):format(warm_lua, late_lua))
    if not sanitized then   -- ASan's quarantine and shadow make RSS meaningless
      assert.is_true(late_rss - warm_rss < 2 * 1024 * 1024,
        ("RSS %.1f MB -> %.1f MB"):format(warm_rss / 1048576, late_rss / 1048576))
    end
  end)
end)
