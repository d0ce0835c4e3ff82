-- End-to-end spec of reports pushed from C threads: events/cevents.so's
-- c_thread_burst starts a thread that pushes strings with orch_queue_push;
-- the reporter must receive every one, in order, and the run must leave
-- nothing behind.
local H = require "helper"
local U = require "e2e.fixtures.process.util"

local function burst_run(events, sec)
  local dir = U.project({ t = U.desc("t", sec / 3600, events) }, { sources = { H.root .. "/events/cevents.so" } })
  local code, out, err, recs = U.run(dir, "t")
  H.rm(dir)
  return code, out, err, recs
end

local function thread_results(recs)
  local by_total = {}
  for _, r in ipairs(recs) do
    if r.type == "result" and type(r.data) == "string" then
      local i, n = r.data:match("^thread result (%d+)/(%d+)$")
      if i then
        local list = by_total[n] or {}
        by_total[n] = list
        list[#list + 1] = tonumber(i)
      end
    end
  end
  return by_total
end

describe("reports from C threads", function()
  it("reach the reporter, every one of 10,000, in push order", function()
    local code, out, err, recs = burst_run({ { name = "c_thread_burst", params = { count = 10000 } } }, 1)
    assert.equal(0, code, out)
    local got = thread_results(recs)["10000"] or {}
    assert.equal(10000, #got)
    for i = 1, 10000 do
      if got[i] ~= i then error(("record %d is result %s"):format(i, tostring(got[i]))) end
    end
    local run_end = H.select(recs, "run_end")[1]
    assert.equal(10000, run_end.results)
    assert.same({ handles = 0, tasks = 0, refs = 0 }, U.stats(err))
  end)

  it("from several threads at once: 4 x 10,000 records, none lost", function()
    local code, out, err, recs = burst_run({
      { name = "c_thread_burst", id = "a", params = { count = 10000 } },
      { name = "c_thread_burst", id = "b", params = { count = 10000 } },
      { name = "c_thread_burst", id = "c", params = { count = 10000 } },
      { name = "c_thread_burst", id = "d", params = { count = 10000 } },
    }, 1.5)
    assert.equal(0, code, out)
    local got = thread_results(recs)["10000"] or {}
    assert.equal(40000, #got)
    local seen = {}
    for _, i in ipairs(got) do seen[i] = (seen[i] or 0) + 1 end
    for i = 1, 10000 do assert.equal(4, seen[i], "result " .. i) end
    assert.same({ handles = 0, tasks = 0, refs = 0 }, U.stats(err))
  end)
end)
