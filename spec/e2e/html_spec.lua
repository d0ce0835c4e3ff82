-- End-to-end specs of the HTML report: `orchlua run --html` and `orchlua
-- report RUN.jsonl --html`, opened in headless Chromium with the network
-- cut off.  The page writes what each chart holds into #orch-selfcheck
-- (read back with --dump-dom); a screenshot is taken; the console must
-- stay silent.  Chromium comes from `make deps`; without it the specs fail.
-- A run whose names are HTML (`<img src=x onerror=...>` as event id,
-- skipped id, metric name, check name, message) must show them as text.
local h = require "helper"
local cjson = require "cjson"

local EVENTS = [[
local orch = require "orch"
local M = {}
function M.tick(result_reporter, event)
  result_reporter:metric("load", 0.5 + event.iteration % 3 * 0.1, { cpu = 0 })
  result_reporter:metric("load", 0.2 + event.iteration % 2 * 0.1, { cpu = 1 })
  result_reporter:metric("mem_mb", 100 + event.iteration)
end
local function deeper(n) if n == 0 then error("kaboom <b>not bold</b>") end deeper(n - 1) end
function M.boom(event)
  if event.iteration == 2 then deeper(2) end
end
function M.slowpoke(seconds) orch.sleep(seconds) end
function M.bad_result(result_reporter) result_reporter:error("disk almost full", { free_mb = 12 }) end
function M.final(result_reporter) result_reporter:metric("final_score", 42, { run = "a b" }) end
return M
]]

local DESC = [[
{ "test_name": "page", "total_hours": 0.005,
  "events": [
    { "name": "tick", "interval_sec": 1 },
    { "name": "boom", "interval_sec": 3 },
    { "name": "slowpoke", "interval_sec": 2, "timeout_sec": 0.2, "params": { "seconds": 3 } },
    { "name": "bad_result", "at_startup": false, "interval_sec": 7 },
    { "name": "final", "at_startup": false, "at_teardown": true }
  ] }
]]

local CHROMIUM = os.execute("command -v chromium >/dev/null 2>&1") and "chromium" or nil

local FLAGS = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
  .. "--disable-component-update --disable-sync --disable-extensions --hide-scrollbars "
  .. "--disable-component-update --host-resolver-rules='MAP * ~NOTFOUND' --enable-logging=stderr --v=0 "
  .. "--virtual-time-budget=3000"

-- Opens each page in its own Chromium (in parallel): {dom=, log=} per page.
local function chromium(dir, jobs)
  local cmds = {}
  for i, j in ipairs(jobs) do
    local prof = ("%s/profile%d"):format(dir, i)
    local action = j.screenshot and ("--window-size=1300,2400 --screenshot=" .. h.q(j.screenshot)) or "--dump-dom"
    cmds[i] = ("timeout 60 %s %s --user-data-dir=%s %s file://%s >%s/out%d 2>%s/log%d"):format(
      CHROMIUM, FLAGS, h.q(prof), action, h.q(j.page), dir, i, dir, i)
  end
  os.execute("(" .. table.concat(cmds, " & ") .. " & wait) </dev/null")
  local res = {}
  for i in ipairs(jobs) do
    res[i] = { dom = h.read(("%s/out%d"):format(dir, i)) or "", log = h.read(("%s/log%d"):format(dir, i)) or "" }
  end
  return res
end

local function selfcheck(dom)
  local text = dom:match('<pre id="orch%-selfcheck"[^>]*>(.-)</pre>')
  assert(text, "no #orch-selfcheck in the page:\n" .. dom:sub(1, 2000))
  text = text:gsub("&quot;", '"'):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&amp;", "&")
  return cjson.decode(text)
end

-- What the JSONL says the page must show.
local function expected(recs)
  local ev, order, runs, skips, metrics = {}, {}, {}, {}, {}
  for _, r in ipairs(recs) do
    if r.type == "invocation" or r.type == "skipped" then
      if not ev[r.id] then ev[r.id] = true; order[#order + 1] = r.id end
      if r.type == "invocation" then runs[r.id] = (runs[r.id] or 0) + 1
      else skips[#skips + 1] = r end
    elseif r.type == "result" and r.level == "metric" then
      local d = r.data
      local keys = {}
      for k in pairs(type(d.fields) == "table" and d.fields or {}) do keys[#keys + 1] = k end
      table.sort(keys)
      local parts = {}
      for i, k in ipairs(keys) do
        local v = d.fields[k]
        parts[i] = k .. "=" .. (type(v) == "number" and v == math.floor(v) and ("%d"):format(v) or tostring(v))
      end
      local label = #parts > 0 and ("{" .. table.concat(parts, ",") .. "}") or d.metric
      metrics[d.metric] = metrics[d.metric] or {}
      metrics[d.metric][label] = (metrics[d.metric][label] or 0) + 1
    end
  end
  return { ids = ev, order = order, runs = runs, skips = skips, metrics = metrics }
end

local function check_page(page, recs)
  local want = expected(recs)
  local c = selfcheck(page.dom)
  assert.same({}, c.errors)
  assert.is_true(c.done)
  local console = {}
  for line in page.log:gmatch("[^\n]+") do
    if line:find(":CONSOLE", 1, true) then console[#console + 1] = line end
  end
  assert.same({}, console)
  local by = {}
  for _, ch in ipairs(c.charts) do by[ch.id] = ch end
  -- the timeline: a row per event, a bar per invocation (short run: exact),
  -- failures, error results and skipped firings marked
  local tl = by["chart-timeline"]
  assert.truthy(tl, "no timeline chart")
  local ids = {}
  for id in pairs(want.ids) do ids[#ids + 1] = id end
  table.sort(ids)
  local got = {}
  for i, id in ipairs(tl.y_labels) do got[i] = id end
  table.sort(got)
  assert.same(ids, got)
  local runs, fails, errs = 0, 0, 0
  for _, n in pairs(want.runs) do runs = runs + n end
  for _, r in ipairs(recs) do
    if r.type == "invocation" and r.status ~= "ok" then fails = fails + 1 end
    if r.type == "result" and r.level == "error" then errs = errs + 1 end
  end
  assert.equal(runs, tl.bars)
  assert.equal(tl.bars, tl.bars_drawn)
  assert.is_true(#want.skips > 0 and fails >= 2 and errs > 0)
  assert.equal(#want.skips + fails + errs, tl.marks)
  assert.equal(tl.marks, tl.marks_drawn)
  -- duration and lateness: a series per event with a point per invocation
  for _, id in ipairs({ "chart-duration", "chart-lateness" }) do
    local ch = by[id]
    assert.truthy(ch, "no chart " .. id)
    for ev, n in pairs(want.runs) do assert.equal(n, ch.points[ev], id .. " " .. ev) end
  end
  -- a chart per metric name, a series per fields, a point per value
  local names = {}
  for _, ch in pairs(by) do
    if ch.id:match("^chart%-metric%-") then
      ch.title = ch.title:gsub(" %(%a+%)$", "")      -- the unit
      names[ch.title] = true
      assert.truthy(want.metrics[ch.title], "unexpected metric chart " .. ch.title)
      for label, n in pairs(want.metrics[ch.title]) do
        assert.equal(n, ch.points[label], ch.title .. " " .. label)
      end
    end
  end
  for name in pairs(want.metrics) do assert.truthy(names[name], "no chart for metric " .. name) end
  assert.same({ final_score = true, load = true, mem_mb = true }, names)
  assert.same({ ["{cpu=0}"] = 18, ["{cpu=1}"] = 18 }, by["chart-metric-1"].points)
  return c
end

describe("the HTML report", function()
  assert(CHROMIUM, "chromium is not installed: `make deps` installs it (Debian's chromium)")
  local dir, code, out, err, recs, pages, shot
  setup(function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/page.json"] = DESC })
    code, out, err = h.run("run page --time-scale 12 -q --report r.jsonl --html run.html", dir)
    recs = h.jsonl(dir .. "/r.jsonl")
    -- the same from the file, as on a workstation, from another folder
    os.execute(("mkdir -p %s/ws && cp %s/r.jsonl %s/ws/device.jsonl"):format(dir, dir, dir))
    h.run("report device.jsonl --html rep.html", dir .. "/ws")
    shot = h.root .. "/build/html-report.png"
    pages = chromium(dir, { { page = dir .. "/run.html" }, { page = dir .. "/ws/rep.html" },
                            { page = dir .. "/run.html", screenshot = shot } })
  end)
  teardown(function() h.rm(dir) end)

  it("is written at the end of a run with --html, and said where", function()
    assert.equal(1, code, err)
    assert.matches("\nhtml: run.html\n", out)
    local page = h.read(dir .. "/run.html")
    assert.matches("^<!DOCTYPE html>", page)
  end)

  it("is one offline file: no external script, style or image", function()
    local page = h.read(dir .. "/run.html")
    assert.is_nil(page:find("<script[^>]* src=", 1))
    assert.is_nil(page:find("<link[^>]* href=", 1))
    assert.is_nil(page:find("sourceMappingURL", 1, true))
    assert.truthy(page:find("Dygraph", 1, true))
  end)

  it("draws every chart in Chromium with the run's data and no console error", function()
    local c = check_page(pages[1], recs)
    assert.same({ "bad_result", "boom", "final", "slowpoke", "tick" },
      (function() local t = {} for i, v in ipairs(c.events) do t[i] = v end table.sort(t) return t end)())
  end)

  it("is the same from `orchlua report RUN.jsonl --html`", function()
    check_page(pages[2], recs)
    local a, b = selfcheck(pages[1].dom), selfcheck(pages[2].dom)
    assert.same(a.charts, b.charts)
  end)

  it("shows the summary and the errors with their tracebacks, escaped", function()
    local dom = pages[1].dom
    assert.matches("<th>event</th><th>runs</th><th>fail</th>", dom)
    assert.matches('<tr><td>boom</td><td>6</td><td class="bad">1</td>', dom)
    assert.matches("kaboom &lt;b&gt;not bold&lt;/b&gt;<details><summary>traceback %(first%)</summary><pre>stack traceback:", dom)
    assert.matches("in %a+ 'deeper'", dom)
    assert.matches("disk almost full", dom)
    assert.matches('<p class="status%-bad" id="exit">exit 1: ', dom)
  end)

  it("is photographed", function()
    local png = h.read(shot)
    assert.truthy(png, "no screenshot at " .. shot .. ":\n" .. pages[3].log:sub(-2000))
    assert.equal("\137PNG", png:sub(1, 4))
    assert.is_true(#png > 30000, "a blank page? " .. #png .. " bytes")
  end)

  it("has a table of contents, units from the metric names, and iterations as integers", function()
    local dom = pages[1].dom
    assert.matches('<nav class="toc"><a href="#summary">Summary</a>', dom)
    assert.matches('<a href="#metric%-1">load</a>', dom)
    assert.matches('<summary>mem_mb %(MB%): 1 series</summary>', dom)
    local c = selfcheck(dom)
    for _, ch in ipairs(c.charts) do assert.is_nil(ch.title:find("%.0[^%d]")) end
    local data = h.read(dir .. "/run.html"):match('id="orch%-data">(.-)</script>')
    assert.is_nil(data:find('"iteration"', 1, true))
    assert.is_nil(data:find("[^%d]%d+%.0[,%]}]"))    -- 3, never 3.0
    local marks = 0
    for _, m in ipairs(cjson.decode(data).timeline.marks) do
      if type(m[5]) == "number" then marks = marks + 1; assert.equal(math.floor(m[5]), m[5]) end
    end
    assert.is_true(marks > 0)
  end)
end)

describe("the HTML report of a run whose names are HTML", function()
  assert(CHROMIUM, "chromium is not installed: `make deps` installs it (Debian's chromium)")
  local EVIL = [[<img src=x onerror="document.body.setAttribute('data-pwned','1')">]]
  local dir, pages
  setup(function()
    dir = h.tmpdir()
    local lines = {}
    local function add(r) lines[#lines + 1] = cjson.encode(r) end
    add({ type = "run_start", t = 0, ts = "2026-12-01T00:00:00Z", test_name = "t " .. EVIL, total_hours = 0.01,
          time_scale = 1, file = EVIL, version = EVIL })
    for i = 1, 20 do
      add({ type = "invocation", t = i + 0.1, id = EVIL, event = EVIL, iteration = i, phase = "interval",
            scheduled = i, started = i, duration = 0.1, lateness = 0.001, status = i % 5 == 0 and "error" or "ok",
            error = i % 5 == 0 and ("boom " .. EVIL) or nil })
      add({ type = "result", t = i + 0.1, event = EVIL, level = "metric",
            data = { metric = EVIL .. "_ms", value = i, fields = { [EVIL] = EVIL } } })
      if i % 4 == 0 then
        add({ type = "skipped", t = i, id = "skip" .. EVIL, event = EVIL, iteration = i, scheduled = i, reason = EVIL })
        add({ type = "result", t = i, event = EVIL, level = "error", data = { error = EVIL } })
      end
    end
    add({ type = "check", t = 7, name = EVIL, status = "fail", value = 3, max = 1 })
    add({ type = "run_end", t = 21, status = 1, reason = EVIL })
    h.write(dir .. "/evil.jsonl", table.concat(lines, "\n") .. "\n")
    h.run("report evil.jsonl --html evil.html", dir)
    -- and a run's own --html, with a metric name, an error and a message of HTML
    h.write(dir .. "/events/ev.lua", ([[
local M = {}
function M.tick(result_reporter, event)
  result_reporter:metric(%q, event.iteration, { [%q] = %q })
  if event.iteration %% 2 == 0 then result_reporter:error(%q) end
end
return M
]]):format(EVIL, EVIL, EVIL, EVIL))
    h.write(dir .. "/descriptions/e.json", '{ "test_name": "e", "total_hours": 0.002, "events": ['
      .. '{ "name": "tick", "interval_sec": 1 } ] }')
    h.write(dir .. "/.orchlua", 'return { sources = { "events/*.lua" }, grace_sec = 5 }\n')
    h.run("run e --time-scale 12 -q --html run.html", dir)
    pages = chromium(dir, { { page = dir .. "/evil.html" }, { page = dir .. "/run.html" },
                            { page = dir .. "/evil.html#event-0" } })
  end)
  teardown(function() h.rm(dir) end)

  it("shows every event id, skipped id, metric name, check name and message as text, running none", function()
    for i, p in ipairs(pages) do
      assert.truthy(p.dom:find("orch-selfcheck", 1, true), "page " .. i .. " not loaded:\n" .. p.log:sub(-2000))
      assert.is_nil(p.dom:find('data-pwned="1"', 1, true), "page " .. i .. ": the injected script ran")
      assert.is_nil(p.dom:find("<img", 1, true), "page " .. i .. ": an <img> element was made from a name")
      local c = selfcheck(p.dom)
      assert.same({}, c.errors)
      assert.is_true(c.done)
      assert.truthy(p.dom:find("&lt;img src=x onerror=", 1, true))
    end
    local c = selfcheck(pages[1].dom)
    local ids = {}
    for _, ch in ipairs(c.charts) do
      if ch.id == "chart-timeline" then for _, id in ipairs(ch.y_labels) do ids[#ids + 1] = id end end
    end
    table.sort(ids)
    assert.same({ EVIL, "skip" .. EVIL }, ids)
  end)

  it("opens a collapsed event section named by the address, and draws its chart", function()
    local c = selfcheck(pages[3].dom)
    assert.same({}, c.errors)
    local drawn = {}
    for _, ch in ipairs(c.charts) do drawn[ch.id] = ch end
    assert.truthy(drawn["chart-event-0"], "no chart in the opened section")
    assert.equal(20, drawn["chart-event-0"].points[EVIL])
    assert.is_nil(drawn["chart-event-1"])          -- the others stay collapsed, undrawn
    assert.is_nil(pages[3].dom:find('data-pwned="1"', 1, true))
  end)
end)

describe("the HTML report of a run of many events", function()
  assert(CHROMIUM, "chromium is not installed: `make deps` installs it (Debian's chromium)")
  local dir, page, html, slowest
  setup(function()
    dir = h.tmpdir()
    -- the events in the order the report gives them: first firing, then id
    local ids = {}
    for e = 1, 400 do ids[e] = "e" .. e end
    table.sort(ids)
    for i, id in ipairs(ids) do if id == "e400" then slowest = i - 1 end end
    local lines = { cjson.encode({ type = "run_start", t = 0, test_name = "many", total_hours = 0.01, time_scale = 1 }) }
    for i = 1, 30 do
      for e = 1, 400 do
        lines[#lines + 1] = cjson.encode({ type = "invocation", t = i + 0.1, id = "e" .. e, iteration = i,
          phase = "interval", scheduled = i, started = i, duration = e / 1000, lateness = 0, status = "ok" })
      end
    end
    lines[#lines + 1] = cjson.encode({ type = "result", t = 5, event = "nobody", level = "error", data = "lost" })
    lines[#lines + 1] = cjson.encode({ type = "run_end", t = 31, status = 1, reason = "end of run" })
    h.write(dir .. "/many.jsonl", table.concat(lines, "\n") .. "\n")
    h.run("report many.jsonl --html many.html", dir)
    html = h.read(dir .. "/many.html") or ""
    page = chromium(dir, { { page = dir .. "/many.html#event-" .. slowest } })[1]
  end)
  teardown(function() h.rm(dir) end)

  it("draws the first 200 events on the timeline and the 100 slowest in the charts, each in its section", function()
    local c = selfcheck(page.dom)
    assert.same({}, c.errors)
    local by = {}
    for _, ch in ipairs(c.charts) do by[ch.id] = ch end
    assert.equal(200, #by["chart-timeline"].y_labels)
    assert.equal(200 * 30, by["chart-timeline"].bars_drawn)
    assert.equal(1, by["chart-timeline"].marks_drawn)      -- the error result of no event, on the last row
    assert.equal(101, #by["chart-duration"].labels)
    assert.equal(30, by["chart-duration"].points.e400)    -- the slowest are kept
    assert.is_nil(by["chart-duration"].points.e1)
    assert.equal(30, by["chart-event-" .. slowest].points.e400)
    assert.matches("the first 200 of 400 events are drawn", page.dom)
    assert.is_true(#html < 1024 * 1024, #html)
  end)
end)
