-- Honest rehearsals: under --time-scale the schedule is compressed, but
-- bounds on real work are not (a rehearsal must never fail where the real
-- run would pass), and every duration says its clock.
local h = require "helper"
local cjson = require "cjson"

local dir
after_each(function() h.rm(dir); dir = nil end)

local function run(src, events, hours, args)
  local desc = { test_name = "t", total_hours = hours, events = events }
  dir = h.project({
    ["events/ev.lua"] = src,
    ["descriptions/t.json"] = cjson.encode(desc),
    [".orchlua"] = ('return { sources = { "events/*.lua" }, grace_sec = 5, lua_path = { %q } }\n')
      :format(h.root .. "/helpers/?.lua"),
  })
  local code, out, err = h.run("run t --no-progress --report r.jsonl " .. (args or ""), dir)
  return code, h.jsonl(dir .. "/r.jsonl"), out, err
end

describe("--time-scale", function()
  it("does not shorten timeout_sec, orch.exec's timeout or a probe's: real work keeps its real bound", function()
    -- 0.3 s of real work under bounds of 1 s; at scale 40, 1 s would be 25 ms
    local code, recs, out, err = run([[
local orch = require "orch"
local probe = require "orch.helpers.probe"
return {
  work = function() assert(orch.exec({ "sleep", "0.3" })) end,
  exec = function(result_reporter)
    local ok, code, _, _, why = orch.exec({ "sleep", "0.3" }, { timeout = 1 })
    result_reporter:info("exec", { ok = ok, code = code, why = why })
  end,
  net = function(result_reporter)
    -- a port nobody listens on: refused at once, never a timeout
    local r = probe.tcp("127.0.0.1", 1, { timeout = 1 })
    result_reporter:info("probe", { error = r.error })
  end,
}
]], { { name = "work", timeout_sec = 1 }, { name = "exec" }, { name = "net" } }, 20 / 3600, "--time-scale 40")
    assert.equal(0, code, out .. err)
    local inv = h.select(recs, "invocation", "id", "work")[1]
    assert.equal("ok", inv.status)
    -- description time: 0.3 s real at 40x; the real duration beside it
    assert.is_true(inv.duration_real >= 0.3 and inv.duration_real < 1, tostring(inv.duration_real))
    assert.near(inv.duration / 40, inv.duration_real, 1e-6)
    for _, r in ipairs(h.select(recs, "result")) do
      if r.data.message == "exec" then assert.is_true(r.data.ok) end
    end
  end)

  it("a timeout_sec still fires, after the real time it names", function()
    local code, recs = run([[
local orch = require "orch"
return { slow = function() orch.exec({ "sleep", "3" }) end }
]], { { name = "slow", timeout_sec = 0.5 } }, 40 / 3600, "--time-scale 40")
    assert.equal(1, code)
    local inv = h.select(recs, "invocation", "id", "slow")[1]
    assert.equal("timeout", inv.status)
    assert.matches("timed out after 0.5s %(timeout_sec, real time: %-%-time%-scale does not shorten it%)", inv.error)
    assert.is_true(inv.duration_real >= 0.5 and inv.duration_real < 2.5, tostring(inv.duration_real))
  end)

  it("writes duration_real on the fast path too, and none without --time-scale", function()
    local code, recs = run("return { tick = function() end }", { { name = "tick", interval_sec = 1 } },
      20 / 3600, "-q --time-scale 20")
    assert.equal(0, code)
    local invs = h.select(recs, "invocation", "id", "tick")
    assert.is_true(#invs >= 10)
    for _, inv in ipairs(invs) do assert.near(inv.duration / 20, inv.duration_real, 1e-9) end
    code, recs = run("return { tick = function() end }", { { name = "tick", interval_sec = 0.2 } }, 1 / 3600, "-q")
    assert.equal(0, code)
    for _, inv in ipairs(h.select(recs, "invocation", "id", "tick")) do assert.is_nil(inv.duration_real) end
  end)

  it("the summary says its clock: durations and lateness in real time", function()
    local code, _, out, err = run([[
local orch = require "orch"
return { work = function() orch.exec({ "sleep", "0.2" }) end }
]], { { name = "work" } }, 60 / 3600, "--time-scale 100")
    assert.equal(0, code, out .. err)
    assert.matches("times in real seconds", out)
    -- 0.2 s of real work, not 20 s of description time
    local p50 = out:match("\n  work +1 +0 +0 +0 +0 +(%S+)")
    assert.truthy(p50, out)
    assert.matches("ms$", p50)
  end)
end)
