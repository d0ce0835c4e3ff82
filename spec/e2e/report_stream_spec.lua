-- End-to-end specs of `orchlua report` on generated files: the exit status
-- (the run's verdict, 2 for bad input with file and line), a rotated set read
-- as one run, records of other workstreams (check, seq, run_id, unknown
-- types), long series in bounded statistics, and the comparison's options
-- (instance labels, --ignore-label, --only/--exclude, --threshold NAME=PCT,
-- --threshold-file, error results and check verdicts).
local h = require "helper"
local cjson = require "cjson"

-- A run's records: n firings of each event in evs at 1 s, with a metric per
-- firing; opts.status (run_end, nil: none), opts.metric(i, ev) -> value,
-- fields; opts.extra(i, add) adds records; opts.fail(i, ev) -> message.
local function records(evs, n, opts)
  opts = opts or {}
  local out = {}
  local seq = 0
  local function add(r)
    seq = seq + 1
    r.seq = seq
    out[#out + 1] = cjson.encode(r)
  end
  add({ type = "run_start", t = 0, ts = "2026-12-01T00:00:00.000Z", test_name = opts.name or "gen",
        total_hours = n / 3600, time_scale = 1, run_id = "3f1c0a52-0000-4000-8000-000000000001",
        labels = { site = "lab" }, version = "spec" })
  for i = 1, n do
    for _, ev in ipairs(evs) do
      local msg = opts.fail and opts.fail(i, ev)
      add({ type = "invocation", t = i + 0.01, ts = "x", event = ev, id = ev, iteration = i, phase = "interval",
            scheduled = i, started = i, duration = 0.01, lateness = 0.001,
            status = msg and "error" or "ok", error = msg })
      local v, fields = 10, nil
      if opts.metric then v, fields = opts.metric(i, ev) end
      add({ type = "result", t = i + 0.01, ts = "x", event = ev, level = "metric",
            data = { metric = "lat_ms", value = v, fields = fields } })
    end
    if opts.extra then opts.extra(i, add) end
  end
  if opts.status then add({ type = "run_end", t = n + 1, status = opts.status, reason = "end of run" }) end
  return out
end

local function write(dir, name, lines, tail)
  h.write(dir .. "/" .. name, table.concat(lines, "\n") .. "\n" .. (tail or ""))
end

describe("orchlua report on one file", function()
  local dir
  setup(function() dir = h.tmpdir() end)
  teardown(function() h.rm(dir) end)

  it("exits with the run's own verdict: 0, 1, and 1 for a run that never finished", function()
    write(dir, "ok.jsonl", records({ "a" }, 5, { status = 0 }))
    write(dir, "bad.jsonl", records({ "a" }, 5, { status = 1, fail = function(i) return i == 3 and "boom" or nil end }))
    write(dir, "killed.jsonl", records({ "a" }, 5))
    local code, out = h.run("report ok.jsonl", dir)
    assert.equal(0, code)
    assert.matches("\nexit 0: every invocation succeeded", out)
    code, out = h.run("report bad.jsonl", dir)
    assert.equal(1, code)
    assert.matches("\nerrors: 1 in 1 distinct message %(first: 0:00:03.010 a: boom%)\n", out)
    assert.matches("\nexit 1: 1 failed invocation, 0 error results\n$", out)
    code, out = h.run("report killed.jsonl", dir)
    assert.equal(1, code)
    assert.matches("the run did not finish %(no run_end record: killed%?%)\n$", out)
  end)

  it("accepts a torn last line and says so; a line that is not JSON elsewhere is an error with its number", function()
    write(dir, "torn.jsonl", records({ "a" }, 3, { status = 0 }), '{"type":"invocation","t":3')
    local code, out, err = h.run("report torn.jsonl", dir)
    assert.equal(0, code, err)
    assert.matches("\ntorn.jsonl:9: the last line is torn %(a run killed mid%-write%?%): left out\n", out)
    local lines = records({ "a" }, 3, { status = 0 })
    table.insert(lines, 4, "this is not json")
    write(dir, "mid.jsonl", lines)
    code, out, err = h.run("report mid.jsonl", dir)
    assert.equal(2, code)
    assert.equal("", out)
    assert.matches("^orchlua: mid.jsonl:4: not JSON %(.-%), found this is not json\n$", err)
  end)

  it("exits 2 with the file, the line and what is wrong for schema-invalid records", function()
    local cases = {
      { { type = "invocation", id = "a", duration = "slow" }, 'invocation record: "duration" should be a number, found string slow' },
      { { type = "result", level = "metric", data = { metric = "m" } },
        'metric result: "data" should be {"metric": string, "value": number}, found {"metric":"m"}' },
      { { type = "result", level = "metric", data = { metric = "m", value = 1, fields = { 1, 2 } } },
        'metric result: "fields" should be an object, found [1,2]' },
      { { type = "run_start", time_scale = 0 }, 'run_start record: "time_scale" should be > 0, found 0' },
      { { type = "invocation", duration = 1 }, 'invocation record without "id" or "event"' },
      { { id = "a" }, 'expected a record with a string "type", found {"id":"a"}' },
      { { 1, 2 }, "expected a JSON object, found [1,2]" },
      { { type = "check", name = { "x" }, status = "fail" }, 'check record: "name" should be a string, found table ["x"]' },
    }
    for i, c in ipairs(cases) do
      local lines = records({ "a" }, 2, { status = 0 })
      table.insert(lines, 3, cjson.encode(c[1]))
      write(dir, "s" .. i .. ".jsonl", lines)
      local code, out, err = h.run("report s" .. i .. ".jsonl", dir)
      assert.equal(2, code, err)
      assert.equal("", out)
      assert.equal(("orchlua: s%d.jsonl:3: %s\n"):format(i, c[2]), err)
    end
  end)

  it("exits 2 for a missing file, a directory, an endless line and a binary file", function()
    local code, _, err = h.run("report nothere.jsonl", dir)
    assert.equal(2, code)
    assert.equal("orchlua: nothere.jsonl: No such file or directory\n", err)
    code, _, err = h.run("report " .. h.q(dir), dir)
    assert.equal(2, code)
    assert.equal("orchlua: " .. dir .. ": is a directory, not a JSONL report\n", err)
    code, _, err = h.run("report /dev/zero", dir)
    assert.equal(2, code)
    assert.equal("orchlua: /dev/zero:1: a line longer than 32 MiB: not an orchlua report\n", err)
    code, _, err = h.run("report /bin/sh", dir)
    assert.equal(2, code)
    assert.matches("^orchlua: /bin/sh:1: not JSON ", err)
    h.write(dir .. "/empty.jsonl", "")
    code, _, err = h.run("report empty.jsonl", dir)
    assert.equal(2, code)
    assert.equal("orchlua: empty.jsonl: empty, not an orchlua --report file\n", err)
  end)

  it("reads a rotated set FILE.jsonl, FILE.1.jsonl, ... as one run", function()
    local lines = records({ "a", "b" }, 30, { status = 0 })
    local parts = { {}, {}, {} }
    for i, l in ipairs(lines) do table.insert(parts[math.min(3, (i - 1) // 40 + 1)], l) end
    write(dir, "rot.jsonl", parts[1])
    write(dir, "rot.1.jsonl", parts[2])
    write(dir, "rot.2.jsonl", parts[3])
    write(dir, "whole.jsonl", lines)
    local code, out, err = h.run("report rot.jsonl", dir)
    assert.equal(0, code, err)
    assert.matches("\nread as one run: 3 files %(rot.jsonl ... rot.2.jsonl%)\n", out)
    assert.matches("\n  a +30 +0 ", out)
    assert.matches("\nresults: 60 %(0 errors, 60 metric values in 1 series%)\n", out)
    local _, whole = h.run("report whole.jsonl", dir)
    assert.equal(whole:gsub("^.-\n\nsummary", ""), out:gsub("^.-\n\nsummary", ""))
  end)

  it("reads check records, unknown types and fields, and groups error results by message", function()
    local lines = records({ "a" }, 20, { status = 1, extra = function(i, add)
      if i % 2 == 0 then add({ type = "result", t = i, event = "a", level = "error", data = { error = "disk full" } }) end
      if i == 5 then add({ type = "check", t = i, name = "p99 < 1s", status = "fail", value = 2, max = 1 }) end
      if i == 9 then add({ type = "check", t = i, name = "p99 < 1s", status = "pass", value = 0.5, max = 1 }) end
      if i == 7 then add({ type = "gap", t = i, from = 6, to = 7, future_field = { 1 } }) end
      add({ type = "something_new", t = i, x = "y" })
    end })
    write(dir, "mixed.jsonl", lines)
    local code, out, err = h.run("report mixed.jsonl", dir)
    assert.equal(1, code, err)
    assert.matches("\nerrors: 10 in 1 distinct message %(first: 0:00:02.000 a: disk full%)\n", out)
    assert.matches("\n +10 x disk full %(0:00:02.000 .. 0:00:20.000%)\n", out)
    assert.matches("\nchecks:\n  check +stat +value +limit +verdict\n", out)
  end)

  it("prints control bytes from the run's messages as \\xNN, never raw to the terminal", function()
    write(dir, "ctl.jsonl", records({ "a" }, 3, { status = 1, fail = function(i)
      return i == 2 and "red \27[31malert\7" or nil
    end }))
    local code, out = h.run("report ctl.jsonl", dir)
    assert.equal(1, code)
    assert.is_nil(out:find("\27", 1, true))
    assert.matches("a: red \\x1b%[31malert\\x07%)", out)
  end)

  it("keeps long series in bounded statistics: exact summary numbers, a small HTML", function()
    local lines = records({ "a", "b" }, 6000, { status = 0, metric = function(i) return i % 100 end })
    write(dir, "long.jsonl", lines)
    local code, out, err = h.run("report long.jsonl --html long.html", dir)
    assert.equal(0, code, err)
    assert.matches("\n  a +6000 +0 +0 +0 +0 +10.0ms +10.0ms +10.0ms +1.0ms +1.0ms\n", out)
    assert.matches("\nresults: 12000 %(0 errors, 12000 metric values in 1 series%)\n", out)
    local page = h.read(dir .. "/long.html")
    local data = cjson.decode(page:match('<script type="application/json" id="orch%-data">(.-)</script>'))
    assert.is_true(data.duration.bars)
    assert.is_true(#data.duration.series[1].x <= 1024)
    assert.is_true(data.metrics[1].bars)
    assert.is_true(#page < 600 * 1024, #page)
  end)
end)

describe("orchlua report A.jsonl B.jsonl on generated runs", function()
  local dir
  setup(function()
    dir = h.tmpdir()
    -- B: a new pid per restart, lat_ms 20% up on a, error results and a failing check
    write(dir, "a.jsonl", records({ "a", "b" }, 50, { status = 0, metric = function(_, ev)
      return ev == "a" and 10 or 50, { pid = 100, role = ev }
    end, extra = function(i, add)
      if i == 10 then add({ type = "check", t = i, name = "slo", status = "pass" }) end
    end }))
    write(dir, "b.jsonl", records({ "a", "b" }, 50, { status = 1, metric = function(i, ev)
      return ev == "a" and 12 or 50, { pid = 200 + i // 10, role = ev }
    end, extra = function(i, add)
      if i % 10 == 0 then add({ type = "result", t = i, event = "b", level = "error", data = "refused" }) end
      if i == 10 then add({ type = "check", t = i, name = "slo", status = "fail", value = 3, max = 1 }) end
    end }))
  end)
  teardown(function() h.rm(dir) end)

  it("matches series without the pid, compares error results and check verdicts", function()
    local code, out, err = h.run("report a.jsonl b.jsonl", dir)
    assert.equal(1, code, err)
    assert.matches("\n  metric lat_ms{role=a}\n    count +50 +50 ", out)
    assert.is_nil(out:find("pid=", 1, true))
    assert.matches("\n    err results +0 +5 +new +REGRESSION: appeared\n", out)
    assert.matches("\n  check slo\n    verdict +pass +fail +REGRESSION: now fails\n", out)
    assert.matches("\n4 regressions beyond 10%%:\n", out)
    for line in out:gmatch("[^\n]+") do assert.is_true(#line <= 80, line) end
  end)

  it("takes --ignore-label, --only, --exclude, --threshold NAME=PCT and --threshold-file", function()
    local code, out = h.run("report a.jsonl b.jsonl --ignore-label role", dir)
    assert.equal(1, code)
    assert.matches("\n  metric lat_ms\n", out)
    code, out = h.run("report a.jsonl b.jsonl --only 'lat_*'", dir)
    assert.equal(1, code)
    assert.matches("\n2 regressions beyond 10%%:\n  metric lat_ms{role=a} mean", out)
    assert.is_nil(out:find("\n  b\n", 1, true))
    code, out = h.run("report a.jsonl b.jsonl --only 'lat_*' --threshold 'lat_ms=25'", dir)
    assert.equal(0, code)
    assert.matches("\nno regression beyond 10%%\n$", out)
    code, out = h.run("report a.jsonl b.jsonl --exclude 'lat_*' --exclude slo --exclude b", dir)
    assert.equal(0, code, out)
    h.write(dir .. "/thr.txt", "# per metric\nlat_ms = 25\n5\n")
    code, out = h.run("report a.jsonl b.jsonl --only 'lat_*' --threshold-file thr.txt", dir)
    assert.equal(0, code, out)
    assert.matches("\nno regression beyond 5%%\n$", out)
    code, out = h.run("report a.jsonl b.jsonl --only 'lat_*' --threshold-file thr.txt --threshold lat_ms=1", dir)
    assert.equal(1, code, out)
  end)
end)
