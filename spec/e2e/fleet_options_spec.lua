-- End-to-end specs of the fleet options that need no database: seq and
-- run_id in the report, --label/ORCHLUA_LABEL_*, --param/ORCHLUA_PARAM_*
-- (and their errors), --report-max-mb segments, and the sink URL and ship
-- input checked before anything runs (exit 2).
local h = require "helper"
local cjson = require "cjson"

local EVENTS = [[
local M = {}
function M.probe(result_reporter, params)
  result_reporter:info(params)
end
function M.chatty(result_reporter, lines)
  for i = 1, lines do result_reporter:info({ i = i, pad = string.rep("x", 100) }) end
end
return M
]]

local DESC = [[
{ "test_name": "f", "total_hours": 0.0005,
  "events": [
    { "name": "probe", "params": { "device": "none", "count": 1 } },
    { "name": "probe", "id": "probe2", "params": { "device": "none", "count": 2, "mode": "a" } },
    { "name": "chatty", "params": { "lines": 300 } }
  ] }
]]

describe("fleet options", function()
  local dir
  setup(function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/f.json"] = DESC })
  end)
  teardown(function() h.rm(dir) end)

  local function infos(recs)
    local by = {}
    for _, r in ipairs(h.select(recs, "result")) do
      if r.event == "probe" or r.event == "probe2" then by[r.event] = r.data.message end
    end
    return by
  end

  it("numbers every record 1, 2, ... and gives run_start a run_id, labels and params", function()
    local code, _, err = h.run("run f -q --report r.jsonl", dir)
    assert.are.equal(0, code, err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.is_true(#recs > 300)
    for i, r in ipairs(recs) do assert.are.equal(i, r.seq) end
    local rs = recs[1]
    assert.are.equal("run_start", rs.type)
    assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$", rs.run_id)
    assert.are.same({}, rs.labels)
    assert.are.same({ probe = { device = "none", count = 1 }, probe2 = { device = "none", count = 2, mode = "a" },
                      chatty = { lines = 300 } }, rs.params)
    -- every line starts with its seq, whatever wrote it (C fast paths or Lua)
    local i = 0
    for line in io.lines(dir .. "/r.jsonl") do
      i = i + 1
      assert.are.equal(('{"seq":%d,'):format(i), line:sub(1, #tostring(i) + 8))
    end
    -- two runs, two ids
    h.run("run f -q --report r2.jsonl", dir)
    assert.are_not.equal(rs.run_id, h.jsonl(dir .. "/r2.jsonl")[1].run_id)
  end)

  it("takes labels from --label and ORCHLUA_LABEL_<KEY> (the flag wins)", function()
    local code, _, err = h.run("run f -q --report r.jsonl --label device=dev-7 --label rack=r1", dir,
      "ORCHLUA_LABEL_RACK=r0 ORCHLUA_LABEL_SITE=lab2")
    assert.are.equal(0, code, err)
    assert.are.same({ device = "dev-7", rack = "r1", site = "lab2" }, h.jsonl(dir .. "/r.jsonl")[1].labels)
  end)

  it("overrides params: NAME= for every event that has it, ID.NAME= for one (it wins), JSON or a bare word", function()
    local code, _, err = h.run([[run f -q --report r.jsonl --param probe2.device=special --param device=dev3 ]]
      .. [[--param count=42 --param 'mode={"x":[1,2]}' --param chatty.lines=2]], dir, "ORCHLUA_PARAM_COUNT=5")
    assert.are.equal(0, code, err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    local by = infos(recs)
    assert.are.same({ device = "dev3", count = 42 }, by.probe)
    assert.are.same({ device = "special", count = 42, mode = { x = { 1, 2 } } }, by.probe2)
    assert.are.same({ lines = 2 }, recs[1].params.chatty)
    assert.are.equal(2, #h.select(recs, "result", "event", "chatty"))
  end)

  it("takes params from ORCHLUA_PARAM_<NAME>, in any case", function()
    local code, _, err = h.run("run f -q --report r.jsonl", dir, "ORCHLUA_PARAM_DEVICE=dev9 ORCHLUA_PARAM_count=3")
    assert.are.equal(0, code, err)
    local by = infos(h.jsonl(dir .. "/r.jsonl"))
    assert.are.same({ device = "dev9", count = 3 }, by.probe)
  end)

  it("refuses a param no event has (exit 2, did you mean), in run, check and plan", function()
    for _, cmd in ipairs({ "run f -q", "check f", "plan f" }) do
      local code, _, err = h.run(cmd .. " --param devise=x", dir)
      assert.are.equal(2, code, cmd)
      assert.matches('no event has a param "devise" %(did you mean "device"%?%)', err)
    end
    local code, _, err = h.run("run f -q --param probe.mode=x", dir)
    assert.are.equal(2, code)
    assert.matches('event "probe" has no param "mode"', err)
    code, _, err = h.run("run f -q --param prbe2.mode=x", dir)
    assert.are.equal(2, code)
    assert.matches('did you mean the event "probe2"', err)
    code, _, err = h.run("run f -q --param novalue", dir)
    assert.are.equal(2, code)
    assert.matches("NAME=VALUE", err)
    code, _, err = h.run("check f", dir, "ORCHLUA_PARAM_DEVISE=x")
    assert.are.equal(2, code)
    assert.matches("environment ORCHLUA_PARAM_DEVISE", err)
    assert.are.equal(0, (h.run("check f --param count=3", dir)))
  end)

  it("refuses a label name Prometheus would not take", function()
    local code, _, err = h.run("run f -q --label dev-ice=1", dir)
    assert.are.equal(2, code)
    assert.matches("label name", err)
    code, _, err = h.run("run f -q --label device", dir)
    assert.are.equal(2, code)
    assert.matches("KEY=VALUE", err)
  end)

  it("rotates the report: FILE.jsonl, FILE.1.jsonl, ... whole lines, seq going on", function()
    local code, _, err = h.run("run f -q --param chatty.lines=3000 --report rot.jsonl --report-max-mb 0.1", dir)
    assert.are.equal(0, code, err)
    local seq, files = 0, 0
    for n = 0, 100 do
      local path = dir .. (n == 0 and "/rot.jsonl" or ("/rot.%d.jsonl"):format(n))
      local f = io.open(path)
      if not f then break end
      files = files + 1
      local size = f:seek("end")
      f:close()
      assert.is_true(size <= 0.1 * 1048576, path .. " is " .. size .. " bytes")
      for line in io.lines(path) do
        seq = seq + 1
        assert.are.equal(seq, cjson.decode(line).seq)
      end
    end
    assert.is_true(files >= 4, "segments: " .. files)
    assert.are.equal("run_end", cjson.decode(h.read(dir .. ("/rot.%d.jsonl"):format(files - 1)):match("([^\n]+)\n$")).type)
    code, _, err = h.run("run f -q --report-max-mb 1", dir)
    assert.are.equal(2, code)
    assert.matches("needs %-%-report", err)
    code, _, err = h.run("run f -q --report x.jsonl --report-max-mb lots", dir)
    assert.are.equal(2, code)
    assert.matches("number", err)
  end)

  it("checks a sink URL before the run: unknown scheme, malformed (exit 2, nothing run)", function()
    local code, _, err = h.run("run f -q --report s.jsonl --sink postgresq://localhost/db", dir)
    assert.are.equal(2, code)
    assert.matches('unknown sink scheme "postgresq://" %(did you mean postgresql://%?%)', err)
    code, _, err = h.run("run f -q --report s.jsonl --sink mysql://u@h/db", dir)
    assert.are.equal(2, code)
    assert.matches("orchlua knows postgresql://", err)
    code, _, err = h.run("run f -q --report s.jsonl --sink localhost:5432", dir)
    assert.are.equal(2, code)
    assert.matches("expected a URL such as postgresql://", err)
    code, _, err = h.run("run f -q --report s.jsonl --sink 'postgresql://u:secret@[::1/db'", dir)
    assert.are.equal(2, code)
    assert.matches("postgresql://u:%*%*%*@", err)
    assert.not_matches("secret", err)
    assert.is_nil(io.open(dir .. "/s.jsonl"))
    -- the config's sinks are checked the same way
    h.write(dir .. "/bad/.orchlua", 'return { sinks = "postgress://x/y", sources = { "../events/*.lua" },'
      .. ' descriptions = { "../descriptions" } }\n')
    code, _, err = h.run("run f -q --report s.jsonl", dir .. "/bad")
    assert.are.equal(2, code)
    assert.matches("did you mean postgresql://", err)
  end)

  it("says which package to install when libpq is missing (exit 2 before the run)", function()
    local code, _, err = h.run("run f -q --report l.jsonl --sink postgresql:///db", dir,
      "ORCHLUA_LIBPQ=/nonexistent/libpq.so.5")
    assert.are.equal(2, code)
    assert.matches("needs libpq .-install the package libpq5", err)
    assert.is_nil(io.open(dir .. "/l.jsonl"))
    h.run("run f -q --report l.jsonl", dir)
    code, _, err = h.run("ship l.jsonl --sink postgresql:///db", dir, "ORCHLUA_LIBPQ=/nonexistent/libpq.so.5")
    assert.are.equal(2, code)
    assert.matches("libpq5", err)
  end)

  it("ship: exit 2 for what is not a report or not there", function()
    h.write(dir .. "/junk.jsonl", "hello\n")
    local code, _, err = h.run("ship junk.jsonl --sink postgresql:///x", dir)
    assert.are.equal(2, code)
    assert.matches("expected a run_start record", err)
    code, _, err = h.run("ship missing.jsonl --sink postgresql:///x", dir)
    assert.are.equal(2, code)
    assert.matches("cannot read", err)
    code, _, err = h.run("ship", dir)
    assert.are.equal(2, code)
    assert.matches("ship needs one JSONL report", err)
    h.run("run f -q --report ok.jsonl", dir)
    code, _, err = h.run("ship ok.jsonl", dir)
    assert.are.equal(2, code)
    assert.matches("ship needs %-%-sink", err)
    code, _, err = h.run("ship ok.jsonl --sink pg://x", dir)
    assert.are.equal(2, code)
    assert.matches("unknown sink scheme", err)
  end)
end)
