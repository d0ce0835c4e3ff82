-- End-to-end specs of the live status area, seen as a person sees it:
-- orchlua runs in tmux panes (real terminals) and the specs read the
-- screens with capture-pane.  Several runs go at once, in their own panes:
-- the plain one, NO_COLOR, TERM=dumb, --no-progress, many events in a small
-- terminal, and one stopped with Ctrl-C.  tmux comes from `make deps`;
-- without it the specs say so and are pending.
local h = require "helper"

local EVENTS = [[
local orch = require "orch"
local M = {}
function M.tick(result_reporter, event)
  result_reporter:metric("load", 0.5 + event.iteration % 3 * 0.1, { cpu = 0 })
end
function M.boom(event)
  if event.iteration == 2 then error("kaboom at " .. event.iteration) end
end
function M.shout(event) print("hello from print #" .. event.iteration) end
function M.slowpoke(seconds) orch.sleep(seconds) end
function M.final(result_reporter) result_reporter:info("bye") end
return M
]]

local DESC = [[
{ "test_name": "t", "total_hours": 0.01,
  "events": [
    { "name": "tick", "interval_sec": 1 },
    { "name": "boom", "interval_sec": 3 },
    { "name": "shout", "interval_sec": 4 },
    { "name": "slowpoke", "interval_sec": 2, "params": { "seconds": 3 } },
    { "name": "final", "at_startup": false, "at_teardown": true }
  ] }
]]

local function many_desc()
  local evs = {}
  for i = 1, 10 do
    evs[i] = ('{ "name": "tick", "id": "tick%02d", "interval_sec": %g }'):format(i, i <= 3 and 0.5 or 2)
  end
  return '{ "test_name": "many", "total_hours": 0.01, "events": [' .. table.concat(evs, ",\n") .. "] }"
end

local TMUX = os.execute("command -v tmux >/dev/null 2>&1")

local function sleep(s) os.execute("sleep " .. s) end

describe("the live status area", function()
  if not TMUX then
    pending("tmux is not installed: `make deps` installs it")
    return
  end

  local dir, sock
  local snap = {}      -- what the screens showed
  local function tmux(args)
    local p = io.popen(("tmux -S %s %s 2>&1"):format(h.q(sock), args))
    local s = p:read("a")
    p:close()
    return s
  end
  local function screen(name, esc) return tmux("capture-pane -p " .. (esc and "-e " or "") .. "-t " .. name) end
  -- the screen and every line scrolled off it
  local function history(name, esc) return tmux("capture-pane -p -S - " .. (esc and "-e " or "") .. "-t " .. name) end
  local function start(name, rows, cmd, cols)
    local sh = ("cd %s && %s; echo EXIT=$?; sleep 120"):format(h.q(dir), cmd)
    tmux(("-f /dev/null new-session -d -s %s -x %d -y %d %s"):format(name, cols or 100, rows, h.q(sh)))
  end
  local function lines(s)
    local t = {}
    for l in (s .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = l end
    while #t > 0 and t[#t] == "" do t[#t] = nil end
    return t
  end
  -- the header line of an area: name, elapsed / total, the bar
  local function headers(s, name)
    local found = {}
    for i, l in ipairs(lines(s)) do
      if l:match("^" .. name .. "  %d+:%d%d:%d%d / %d+:%d%d:%d%d  %[") then found[#found + 1] = i end
    end
    return found
  end
  -- a screen without its colours and trailing blanks
  local function plain(s)
    local t = {}
    for _, l in ipairs(lines((s:gsub("\27%[[%d;]*m", "")))) do t[#t + 1] = (l:gsub("%s+$", "")) end
    return table.concat(t, "\n")
  end
  local function elapsed(s, name)
    local m, sec = s:match("\n?" .. name .. "  0:(%d%d):(%d%d) / ")
    return m and (tonumber(m) * 60 + tonumber(sec)) or nil
  end

  setup(function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/t.json"] = DESC,
                      ["descriptions/many.json"] = many_desc() })
    sock = dir .. "/tmux.sock"
    local bin = h.q(h.bin)
    local env = "env LANG=C.UTF-8 ORCHLUA_DEBUG_STATS=1"
    start("main", 30, env .. " " .. bin .. " run t --time-scale 12")
    start("nocolor", 30, env .. " NO_COLOR=1 " .. bin .. " run t --time-scale 24")
    start("dumb", 30, env .. " TERM=dumb " .. bin .. " run t --time-scale 24")
    start("noprog", 30, env .. " " .. bin .. " run t --time-scale 24 --no-progress")
    start("many", 14, env .. " " .. bin .. " run many --time-scale 12")
    start("sigint", 30, env .. " " .. bin .. " run t --hours 1 --time-scale 12")
    start("small", 24, env .. " " .. bin .. " run many --time-scale 12", 80)
    start("big", 50, env .. " " .. bin .. " run many --time-scale 12", 200)
    snap.ever = {}
    local sent = false
    local t0 = os.time()
    while os.time() - t0 < 20 do
      for _, name in ipairs({ "main", "nocolor", "dumb", "noprog", "many", "sigint", "small", "big" }) do
        local s = screen(name)
        if #headers(s, name == "many" and "many" or "t") > 0 then snap.ever[name] = true end
        if not snap[name .. "_exit"] and s:find("\nEXIT=%d+") then
          snap[name .. "_exit"], snap[name .. "_exit_esc"] = history(name), history(name, true)
        end
      end
      local s = screen("main")
      local e = elapsed(s, "t")
      if e and e >= 8 and not snap.main1 then
        -- the coloured read and the history must show the same screen as
        -- the plain one: a redraw between the reads is caught at the next
        -- pass (the history ends with the screen it was read from)
        local esc, all = screen("main", true), history("main")
        local sl, al = lines(s), lines(all)
        local same = plain(esc) == plain(s) and #al >= #sl
        for i = 1, #sl do
          if al[#al - #sl + i] ~= sl[i] then same = false end
        end
        if same then
          snap.main1, snap.main1_esc, snap.main1_e, snap.main1_all = s, esc, e, all
        end
      elseif snap.main1 and not snap.main2 and e and e >= snap.main1_e + 4 then
        snap.main2 = s
      end
      local m = screen("many")
      local me = elapsed(m, "many")
      if not snap.many and me and me >= 4 then snap.many = m end
      for _, name in ipairs({ "small", "big" }) do
        local sm = screen(name)
        local se = elapsed(sm, "many")
        if not snap[name] and se and se >= 4 and #headers(sm, "many") == 1 then snap[name] = sm end
      end
      local n = screen("nocolor")
      local ne = elapsed(n, "t")
      if not snap.nocolor and ne and ne >= 8 then
        -- a second read may catch the area between two redraws: keep one
        -- that shows it whole, else try again at the next pass
        local esc = screen("nocolor", true)
        if #headers(esc, "t") == 1 then snap.nocolor = esc end
      end
      local si = elapsed(screen("sigint"), "t")   -- once: the screen moves between two reads
      if not sent and si and si >= 4 then
        tmux("send-keys -t sigint C-c")
        sent = true
      end
      local done = true
      for _, name in ipairs({ "main", "nocolor", "dumb", "noprog", "many", "sigint", "small", "big" }) do
        if not snap[name .. "_exit"] then done = false end
      end
      if done then break end
      sleep(0.1)
    end
  end)

  teardown(function()
    if sock then tmux("kill-server") end
    h.rm(dir)
  end)

  it("is one block at the bottom of the screen, with the lines scrolling above it", function()
    local s = assert(snap.main1, "the area never showed 0:00:08")
    local ls = lines(s)
    local hs = headers(s, "t")
    assert.equal(1, #hs, s)
    local top = hs[1]
    assert.matches("^t  0:00:%d%d / 0:00:36  %[[█░]+%]  +%d+%%  running$", ls[top])
    assert.matches("^  event +runs +fail +errors +skip +last$", ls[top + 1])
    assert.matches("^  tick +%d+ +0 +0 +0  ok %d", ls[top + 2])
    assert.matches("^  boom +%d+ +1 +1 +0  ", ls[top + 3])
    assert.matches("^  shout +%d+ +0 +0 +0", ls[top + 4])
    assert.matches("^  slowpoke +%d+ +0 +0 +[1-9]%d* +running [%d.]+s", ls[top + 5])
    assert.matches("^  final +0 +0 +0 +0$", ls[top + 6])
    -- the rates are live (results too), "in" says the real time beside
    assert.matches("^  next 0:00:%d%d %a+ %(in [%d.]+s, [%d.]+s real%)  |  [%d.]+ runs/s, [%d.]*[1-9][%d.]* results/s real$",
      ls[top + 7])
    assert.matches("^  %d+ runs, 1 failed, %d+ skipped, %d running$", ls[top + 8])
    assert.matches("^  last error 0:00:06%.%d+ boom #2 error: events/ev.lua:7: kaboom at 2$", ls[top + 9])
    assert.equal(top + 9, #ls, "the area is the last thing on the screen")
    -- above it: the console's lines, print()s included, none torn (the
    -- lines scrolled off the screen included)
    local all = lines(snap.main1_all)
    local atop = headers(snap.main1_all, "t")
    assert.equal(1, #atop)
    assert.equal(atop[1] + 9, #all)
    local above = table.concat(all, "\n", 1, atop[1] - 1)
    assert.matches("\n0:00:01%.000  tick #1 interval ok", above)
    -- a result as a readable line: the metric's name, value and fields
    assert.matches("\n0:00:01%.%d+  tick %[metric%] load 0%.6 cpu=0\n", above)
    assert.matches("\nhello from print #1\n", above)
    assert.matches("\n0:00:06%.000  boom #2 interval ERROR after [%d.]+s: events/ev.lua:7: kaboom at 2\n", above)
    for i = 1, atop[1] - 1 do
      assert.is_nil(all[i]:find("[█░]"), "a piece of the area above it: " .. all[i])
    end
  end)

  it("is redrawn in place as the run goes on", function()
    local s = assert(snap.main2, "no second look at the area")
    assert.equal(1, #headers(s, "t"), s)
    assert.is_true(elapsed(s, "t") > snap.main1_e)
    assert.equal(#lines(s), headers(s, "t")[1] + 9)
  end)

  it("gives way to the summary at the end", function()
    local s = assert(snap.main_exit, "the run did not end")
    assert.same({}, headers(s, "t"))
    assert.is_nil(s:find("[█░]"))
    assert.matches("\nsummary of t %(end of run after 0:00:3%d of 0:00:36%):\n  times in real seconds %(description "
      .. "time ran 12x faster%)\n", s)
    assert.matches("\n  boom +%d+ +1 +1 +0 +0 ", s)
    assert.matches("\nexit 1: 1 failed invocation, 0 error results, 0 run errors\nEXIT=1\n", s)
    assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", s)
  end)

  it("is in colour, unless NO_COLOR is set", function()
    local e = assert(snap.main1_esc)
    assert.truthy(e:find("\27[36m█", 1, true), "the bar in cyan")
    assert.truthy(e:find("\27[1m\27[31m", 1, true) or e:find("\27[31m", 1, true), "failures in red")
    local n = assert(snap.nocolor, "the NO_COLOR area never showed")
    assert.equal(1, #headers(n, "t"), n)
    assert.is_nil(n:find("\27[", 1, true))
    assert.matches("\nexit 1: ", snap.nocolor_exit)
  end)

  it("is not drawn with TERM=dumb nor with --no-progress, and the lines still are", function()
    for _, name in ipairs({ "dumb", "noprog" }) do
      assert.is_nil(snap.ever[name], name .. " drew an area")
      local s = assert(snap[name .. "_exit"], name .. " did not end")
      assert.matches("\n0:00:01%.000  tick #1 interval ok", s)
      assert.matches("\nexit 1: 1 failed invocation", s)
    end
    assert.is_nil(screen("dumb", true):find("\27[", 1, true))
    -- --no-progress keeps the colours of a terminal
    assert.truthy(assert(snap.noprog_exit_esc):find("\27[33m0:00:02.000  slowpoke #1 interval skipped", 1, true))
  end)

  it("shows the busiest events when there are too many for the terminal", function()
    local s = assert(snap.many, "the many-events area never showed")
    local ls = lines(s)
    local top = headers(s, "many")[1]
    assert.truthy(top, s)
    local rows = {}
    for i = top + 2, #ls do
      local id = ls[i]:match("^  (tick%d%d) ")
      if id then rows[#rows + 1] = id end
    end
    -- a 14-line terminal: the area takes 8 lines, 3 for events and one
    -- saying how many more
    assert.equal(2, #rows)
    assert.same({ "tick01", "tick02" }, { rows[1], rows[2] })
    assert.matches("\n  %+8 more events: %d+ runs, 0 failed, 0 skipped\n", s)
    assert.equal(#ls, top + 7)
  end)

  it("leaves a run stopped with Ctrl-C its summary", function()
    local s = assert(snap.sigint_exit, "the run did not stop")
    assert.same({}, headers(s, "t"))
    assert.matches("orchlua: SIGINT: send it again to skip the teardown and the grace period\n", s)
    assert.matches("\nsummary of t %(SIGINT after 0:00:%d%d of 1:00:00%):\n", s)
    assert.matches("\n  final +1 +0 +0 +0 ", s)
    assert.matches("\nexit 130: stopped by SIGINT %(signal 2%); stopped in order: teardown, kill switch, grace\nEXIT=130\n", s)
  end)

  it("fits 80x24: every event of ten shown in at most half the screen, no line wider than 80, nor the summary", function()
    local s = assert(snap.small, "the 80x24 area never showed")
    local ls = lines(s)
    local top = headers(s, "many")[1]
    assert.is_true(#ls - top + 1 <= 12, "the area takes " .. (#ls - top + 1) .. " lines")
    local rows = 0
    for i = top + 2, #ls do if ls[i]:match("^  tick%d%d ") then rows = rows + 1 end end
    assert.equal(6, rows)
    assert.matches("\n  %+4 more events: ", s)
    for _, l in ipairs(ls) do assert.is_true(utf8.len(l) <= 80, l) end
    local e = assert(snap.small_exit, "the 80x24 run did not end")
    local sum = e:match("\n(summary of many.*)$")
    assert.truthy(sum, e)
    for _, l in ipairs(lines(sum)) do assert.is_true(utf8.len(l) <= 80, "wider than 80: " .. l) end
    assert.matches("\n  tick10 ", sum)
  end)

  it("grows with the terminal: at 200x50 every event, and the totals on the rates' line", function()
    local s = assert(snap.big, "the 200x50 area never showed")
    local ls = lines(s)
    local top = headers(s, "many")[1]
    local ids = {}
    for i = top + 2, #ls do
      local id = ls[i]:match("^  (tick%d%d) ")
      if id then ids[#ids + 1] = id end
    end
    assert.equal(10, #ids)
    assert.is_nil(s:find("more events", 1, true))
    assert.matches("\n  next [^\n]+ results/s real  |  %d+ runs, 0 failed, 0 skipped, %d+ running\n", s)
  end)
end)
