-- orch.plan: the arithmetic of the schedule, shared by `orchlua plan` and
-- the engine so that the plan printed is the run performed.
--
-- An interval event fires at k*interval for k = 1 .. last_k (and at 0 when
-- at_startup); a firing at or after the end does not happen; a teardown
-- firing comes once after the end.
local M = {}

-- Largest k >= 0 with k*interval < total, as a person computes it: a
-- product within a billionth of the end counts as at the end (12 * 0.3 is
-- 3.5999999999999996 in binary, and is not a firing before 3.6).
--
-- Past 2^53 firings floats no longer tell k from k + 1 (the loops below
-- would never end: total_hours 1e15, or interval_sec 1e-12), and no run gets
-- there anyway: the count is capped at 2^53.
local MAX_K = 2 ^ 53

function M.last_k(interval, total)
  local q = total / interval
  if q >= MAX_K or q ~= q then return math.tointeger(MAX_K) end
  local limit = total - 1e-9 * math.max(total, 1)
  local k = math.floor(total / interval)
  while k > 0 and k * interval >= limit do k = k - 1 end
  while (k + 1) * interval < limit do k = k + 1 end
  return k
end

-- Counts per event: {startup=, interval=, teardown=, total=}.
function M.counts(ev, total)
  local c = { startup = ev.at_startup and 1 or 0, interval = 0, teardown = ev.at_teardown and 1 or 0 }
  if ev.interval then c.interval = M.last_k(ev.interval, total) end
  c.total = c.startup + c.interval + c.teardown
  return c
end

-- More firings than this in one run is a typo (an interval in the wrong
-- unit), not a soak: at a million firings a second it is a day of firing.
M.MAX_FIRINGS = 100000000000

-- nil, or why desc cannot run for `hours`: check, plan and run refuse it.
function M.check(desc, hours)
  local total, n = hours * 3600, 0
  for _, ev in ipairs(desc.events) do n = n + M.counts(ev, total).total end
  if n > M.MAX_FIRINGS then
    return ("%s: %.0f firings, more than orchlua runs in one run (%d)"):format(desc.test_name, n, M.MAX_FIRINGS)
  end
  return nil
end

-- The first `limit` firings in time order: {t=, event=, k=, phase=}.
-- A merge over the events' own sequences, never a full expansion.
function M.timeline(events, total, limit)
  local out, cursors = {}, {}
  for i, ev in ipairs(events) do
    cursors[i] = { k = ev.at_startup and 0 or 1, last = ev.interval and M.last_k(ev.interval, total) or 0 }
  end
  while #out < limit do
    local best, bt
    for i, ev in ipairs(events) do
      local c = cursors[i]
      if c.k == 0 or (ev.interval and c.k <= c.last) then
        local t = c.k * (ev.interval or 0)
        if bt == nil or t < bt then best, bt = i, t end
      end
    end
    if not best then break end
    local ev, c = events[best], cursors[best]
    out[#out + 1] = { t = bt, event = ev, k = c.k, phase = c.k == 0 and "startup" or "interval" }
    c.k = c.k + 1
    if c.k == 1 and not ev.interval then c.k = math.huge end
  end
  return out
end

function M.clock(sec)
  local neg = sec < 0
  sec = math.abs(sec)
  -- past 1e12 s (31,000 years) h:mm:ss.mmm has no exact digits left
  if sec >= 1e12 then return ("%s%.6g s"):format(neg and "-" or "", sec) end
  local h = math.floor(sec / 3600)
  local m = math.floor((sec % 3600) / 60)
  local s = sec - h * 3600 - m * 60
  return ("%s%d:%02d:%06.3f"):format(neg and "-" or "", h, m, s)
end

-- s padded with spaces to width w (string.format takes widths below 100
-- only, and an event id may be longer).
local function pad(s, w)
  return s .. (" "):rep(w - #s)
end

-- Text of `orchlua plan`.
function M.render(desc, hours, limit)
  limit = limit or 30
  local total = hours * 3600
  local lines = {}
  local function add(...) lines[#lines + 1] = string.format(...) end
  add("%s: %g h (%g s), %d event%s, from %s", desc.test_name, hours, total, #desc.events,
      #desc.events == 1 and "" or "s", desc.file)
  add("")
  add("timeline (description time from t0):")
  local tl = M.timeline(desc.events, total, limit)
  local all = 0
  for _, ev in ipairs(desc.events) do
    local c = M.counts(ev, total)
    all = all + c.startup + c.interval
  end
  for _, f in ipairs(tl) do
    add("  %s  %s %s #%d", M.clock(f.t), pad(f.event.id, 28), f.phase, f.k)
  end
  if all > #tl then add("  ... %d more firing%s until %s", all - #tl, all - #tl == 1 and "" or "s", M.clock(total)) end
  add("  %s  end: no firing at or after this time", M.clock(total))
  for _, ev in ipairs(desc.events) do
    if ev.at_teardown then
      local last = ev.interval and M.last_k(ev.interval, total) or 0
      add("  %s  %s teardown #%d (once, after the end)", M.clock(total), pad(ev.id, 28), last + 1)
    end
  end
  add("")
  local w = 5
  for _, ev in ipairs(desc.events) do w = math.max(w, #ev.id) end
  add("%s  %10s  %8s  %8s  %8s  %8s", pad("event", w), "every", "startup", "interval", "teardown", "total")
  local sum = 0
  for _, ev in ipairs(desc.events) do
    local c = M.counts(ev, total)
    sum = sum + c.total
    add("%s  %10s  %8d  %8d  %8d  %8d", pad(ev.id, w), ev.interval and (("%gs"):format(ev.interval)) or "-",
        c.startup, c.interval, c.teardown, c.total)
  end
  add("%s  %10s  %8s  %8s  %8s  %8d", pad("all", w), "", "", "", "", sum)
  return table.concat(lines, "\n") .. "\n"
end

return M
