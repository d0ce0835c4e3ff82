-- What the fuzzers found (make fuzz), kept: every input in
-- spec/fuzz/regress/<target>/ goes through the same check the fuzzer runs
-- (spec/fuzz/<target>.lua), here without clang: the description check in
-- plain Lua, the writer check in an event of the real binary (it needs
-- orch.core), so that `make check-asan` replays them under the sanitizers.
-- Each finding also has a readable spec below.
local h = require "helper"

local REGRESS = h.root .. "/spec/fuzz/regress/"

local function files(dir)
  local p = io.popen("ls " .. h.q(dir) .. " 2>/dev/null")
  local out = {}
  for name in p:lines() do out[#out + 1] = name end
  p:close()
  return out
end

local function clock()
  return os.clock()
end

describe("fuzz findings", function()
  describe("descriptions", function()
    local check = dofile(h.root .. "/spec/fuzz/description.lua")
    local description = require "orch.description"
    local plan = require "orch.plan"

    it("every kept input passes the fuzzer's check", function()
      local names = files(REGRESS .. "description")
      assert.is_true(#names >= 4)
      for _, name in ipairs(names) do
        local text = assert(h.read(REGRESS .. "description/" .. name))
        local ok, err = pcall(check, text)
        assert(ok, name .. ": " .. tostring(err))
      end
    end)

    it("place an unknown key at the key, when its value is on the next line", function()
      local _, errs = description.decode('{ "test_name": "k", "total_hours": 1,\n'
        .. '  "events": [ { "name": "a",\n    "interval_secs":\n       5 } ] }', "k.json")
      assert.equal('k.json:3:5: events[0].interval_secs: unknown key "interval_secs" (did you mean "interval_sec"?)',
        description.format_error(errs[1]))
    end)

    it("refuse a total_hours that is infinite once in seconds", function()
      local _, errs = description.decode('{"test_name":"k","total_hours":1e305,"events":[{"name":"a"}]}', "k.json")
      assert.equal("k.json:1:32: total_hours: expected a number > 0, found 1e305 (too large once in seconds)",
        description.format_error(errs[1]))
    end)

    it("plan more than 2^53 firings at once, as 2^53", function()
      local t = clock()
      assert.equal(2 ^ 53, plan.last_k(1, 3600 * 1e15))
      assert.equal(2 ^ 53, plan.last_k(1e-300, 3600))
      assert.equal(11, plan.last_k(0.3, 3.6))
      assert.is_true(clock() - t < 1)
    end)

    it("refuse a run of 1e304 hours, and render clocks past 1e12 s (no h:mm:ss there)", function()
      local desc, errs = description.decode('{"test_name":"k","total_hours":1e304,"events":[{"name":"a","interval_sec":1}]}', "k.json")
      assert.is_nil(desc)
      assert.equal("expected at most 100000 (11 years), found 1e304", errs[1].message)
      assert.equal("3.6e+307 s", plan.clock(3.6e307))
      assert.equal("-1e+12 s", plan.clock(-1e12))
      assert.equal("277777777:46:39.000", plan.clock(1e12 - 1))
    end)

    it("render the plan of an event id longer than 99 bytes", function()
      local id = ("x"):rep(120)
      local desc = assert(description.decode(('{"test_name":"k","total_hours":1,"events":[{"name":"a","id":"%s","interval_sec":600,"at_teardown":true}]}')
        :format(id), "k.json"))
      local text = plan.render(desc, 1, 30)
      assert.matches("\n" .. id .. "        600s         1         5         1         7\n", text, 1, true)
      assert.matches("  1:00:00.000  " .. id .. " teardown #6", text, 1, true)
    end)
  end)

  describe("writers", function()
    local dir
    after_each(function() h.rm(dir) end)

    -- an event that runs spec/fuzz/writer.lua on each kept input, in the host
    local EVENTS = ([[
local M = {}
function M.replay(result_reporter)
  package.path = %q .. "/spec/fuzz/?.lua;" .. package.path
  local check = dofile(%q .. "/spec/fuzz/writer.lua")
  local p = io.popen("ls " .. %q)
  for name in p:lines() do
    local f = assert(io.open(%q .. name, "rb"))
    local input = f:read("a")
    f:close()
    local t = os.clock()
    local ok, err = pcall(check, input)
    result_reporter:add_result({ input = name, ok = ok, err = ok and nil or tostring(err),
                                 cpu = os.clock() - t })
  end
  p:close()
end
return M
]]):format(h.root, h.root, REGRESS .. "writer", REGRESS .. "writer/")

    it("every kept input passes the fuzzer's check in the real binary", function()
      dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/w.json"] =
        '{"test_name":"w","total_hours":0.0001,"events":[{"name":"replay"}]}' })
      local code, out, err = h.run("run w -q --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
      assert.equal(0, code, out .. err)
      assert.matches("handles=0 tasks=0 refs=0", err)
      local n = 0
      for _, r in ipairs(h.jsonl(dir .. "/r.jsonl")) do
        if r.type == "result" and r.data.input then
          n = n + 1
          assert(r.data.ok, r.data.input .. ": " .. tostring(r.data.err))
        end
      end
      assert.equal(#files(REGRESS .. "writer"), n)
    end)

    it("write a record of many big fields whose cut, field by field, would still pass the cap", function()
      -- (found by make fuzz: 64 fields of 128 KiB each, escaped 6 times, are
      -- 48 MiB; the cut now shares one budget among them)
      dir = h.project({ ["events/ev.lua"] = [[
local jsonl = require "orch.output.jsonl"
local M = {}
function M.wide(result_reporter)
  local w = assert(jsonl.open("wide.jsonl"))
  local rec, c = { event = "wide", level = "info", t = 1.5 }, ("\1"):rep(200 * 1024)
  for i = 1, 64 do rec["f" .. i] = c .. i end
  local ok, err = w:write(rec, "result")
  assert(w:close())
  result_reporter:add_result({ ok = ok, err = err })
end
return M
]], ["descriptions/w.json"] = '{"test_name":"w","total_hours":0.0001,"events":[{"name":"wide"}]}' })
      local code, out, err = h.run("run w -q --report r.jsonl", dir)
      assert.equal(0, code, out .. err)
      local r = h.select(h.jsonl(dir .. "/r.jsonl"), "result")[1]
      assert.is_true(r.data.ok, tostring(r.data.err))
      local line = h.read(dir .. "/wide.jsonl")
      assert.is_true(#line < 1024 * 1024)
      local rec = require("cjson").decode(line)
      assert.same({ "result", "wide", "info", 1.5 }, { rec.type, rec.event, rec.level, rec.t })
    end)

    it("write a shared table met 2^44 times, a 20 MiB string and a quoted type in bounded time", function()
      dir = h.project({ ["events/ev.lua"] = [[
local M = {}
function M.big(result_reporter, report_queue)
  local a = {}
  for _ = 1, 44 do a = { a, a } end
  result_reporter:add_result({ dag = a, f = print })        -- the fallback path
  result_reporter:add_result({ dag = a })                   -- the C encoder's cap
  result_reporter:add_result({ big = ("x"):rep(20 * 1024 * 1024), f = print })
end
return M
]], ["descriptions/b.json"] = '{"test_name":"b","total_hours":0.0001,"events":[{"name":"big"}]}' })
      local t = os.time()
      local code, out, err = h.run("run b --report r.jsonl", dir)
      assert.equal(0, code, out .. err)
      assert.is_true(os.time() - t < 30)
      local recs = {}
      for _, r in ipairs(h.select(h.jsonl(dir .. "/r.jsonl"), "result")) do
        if not r.data.loop_lag then recs[#recs + 1] = r end   -- the encoding may hold the loop: said apart
      end
      assert.equal(3, #recs)
      -- repeats past the budget are cut; the first copy of each table is not
      local s1 = require("cjson").encode(recs[1].data)
      assert.matches('"<repeat>"', s1, 1, true)
      assert.is_true(#s1 < 4 * 1024 * 1024)
      -- the third: over the encoder's 16 MiB even after placeholders: cut
      assert.matches("<cut>$", recs[3].data.big)
      assert.is_true(#recs[3].data.big < 1024 * 1024)
    end)
  end)
end)
