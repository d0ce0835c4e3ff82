-- The self-soak (descriptions/self_soak_72h.json): orchlua measuring its
-- own health through a time-scaled rehearsal.  Its first 12 hours at
-- 10000x: every orchlua.self.* series has its sample every 10 minutes of
-- description time, every invocation succeeds, and orchlua's own figures
-- stay within sight of where they started (its slope_per_hour checks pass).
local h = require "helper"
local plan = require "orch.plan"

describe("the self-soak", function()
  it("records orchlua's own health on its grid through a rehearsal", function()
    local dir = h.project({ [".orchlua"] = ("return { descriptions = %q, sources = { %q, %q }, grace_sec = 600 }\n")
      :format(h.root .. "/descriptions", h.root .. "/events/soak.lua", h.root .. "/events/cevents.so") })
    local sanitized = os.getenv("ORCHLUA_BIN") ~= nil
    local code, _, err = h.run(("run self_soak_72h --hours %d --time-scale %d -q --report r.jsonl")
      :format(sanitized and 2 or 12, sanitized and 2000 or 10000), dir, "ORCHLUA_DEBUG_STATS=1")
    -- under the sanitizers RSS grows by design (ASan's quarantine keeps
    -- freed memory): there the rss check fails and the run exits 1
    local finals = {}
    for _, r in ipairs(h.select(h.jsonl(dir .. "/r.jsonl"), "check")) do
      if r.final then finals[r.name] = r end
    end
    assert.equal((sanitized and finals["orchlua rss flat"].status == "fail") and 1 or 0, code, err)
    assert.matches("handles=0 tasks=0 refs=0", err)
    local series = {}
    local cjson = require "cjson"
    for line in io.lines(dir .. "/r.jsonl") do
      if line:find('"orchlua.self.', 1, true) then
        local r = cjson.decode(line)
        local s = series[r.data.metric] or {}
        series[r.data.metric] = s
        s[#s + 1] = r.data.value
      end
    end
    local want = plan.last_k(600, (sanitized and 2 or 12) * 3600)
    for _, name in ipairs({ "rss", "lua_heap", "fds", "timers", "queue", "loop_lag" }) do
      local s = series["orchlua.self." .. name]
      assert.is_table(s, name)
      assert.equal(want, #s, name)
    end
    -- descriptors: as many at the end as after the first hour (a leak of
    -- one per firing would be thousands)
    local fds = series["orchlua.self.fds"]
    assert.is_true(fds[#fds] <= fds[7] + 4, ("fds %d then %d"):format(fds[7], fds[#fds]))
    -- the description's own verdicts: a slope_per_hour check on each figure
    -- that could leak, every one judged and passing at the end (rss but
    -- under the sanitizers, above)
    for _, name in ipairs({ "orchlua rss flat", "orchlua heap flat", "orchlua fds flat", "orchlua timers flat" }) do
      assert.is_table(finals[name], name)
      if not (sanitized and name == "orchlua rss flat") then
        assert.same({ "pass", "slope_per_hour" }, { finals[name].status, finals[name].stat }, name)
      end
    end
    h.rm(dir)
  end)
end)
