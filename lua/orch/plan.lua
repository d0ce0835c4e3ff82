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

-- last[interval]: M.last_k(interval, total), worked out once per interval
-- (10,000 events share a few).
function M.last_k_of(total)
  return setmetatable({}, { __index = function(t, interval)
    local k = M.last_k(interval, total)
    t[interval] = k
    return k
  end })
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
  local last = M.last_k_of(total)
  for _, ev in ipairs(desc.events) do
    n = n + (ev.at_startup and 1 or 0) + (ev.at_teardown and 1 or 0) + (ev.interval and last[ev.interval] or 0)
  end
  if n > M.MAX_FIRINGS then
    return ("%s: %.0f firings, more than orchlua runs in one run (%d)"):format(desc.test_name, n, M.MAX_FIRINGS)
  end
  return nil
end

-- Calls fn(t, ev, k, phase) for every firing before the end, in time
-- order (ties in description order), until fn returns false.  A heap of
-- the events' next firings: O(log events) a firing, nothing expanded, so
-- `plan --all` can walk millions.
function M.each_firing(events, total, fn)
  local heap, n = {}, 0
  local function less(a, b) return a.t < b.t or (a.t == b.t and a.i < b.i) end
  local function push(c)
    n = n + 1
    local j = n
    while j > 1 do
      local parent = j // 2
      if not less(c, heap[parent]) then break end
      heap[j] = heap[parent]
      j = parent
    end
    heap[j] = c
  end
  local function pop()
    local top, last = heap[1], heap[n]
    heap[n] = nil
    n = n - 1
    if n > 0 then
      local j = 1
      while true do
        local l, r, m = 2 * j, 2 * j + 1, nil
        if l <= n and less(heap[l], last) then m = l end
        if r <= n and less(heap[r], m and heap[m] or last) then m = r end
        if not m then break end
        heap[j] = heap[m]
        j = m
      end
      heap[j] = last
    end
    return top
  end
  for i, ev in ipairs(events) do
    local c = { i = i, ev = ev, k = ev.at_startup and 0 or 1,
                last = ev.interval and M.last_k(ev.interval, total) or 0 }
    if c.k == 0 or c.k <= c.last then
      c.t = c.k * (ev.interval or 0)
      push(c)
    end
  end
  while n > 0 do
    local c = pop()
    if fn(c.t, c.ev, c.k, c.k == 0 and "startup" or "interval") == false then return end
    c.k = c.k + 1
    if c.ev.interval and c.k <= c.last then
      c.t = c.k * c.ev.interval
      push(c)
    end
  end
end

-- The first `limit` firings in time order: {t=, event=, k=, phase=}.
function M.timeline(events, total, limit)
  local out = {}
  if limit < 1 then return out end
  M.each_firing(events, total, function(t, ev, k, phase)
    out[#out + 1] = { t = t, event = ev, k = k, phase = phase }
    return #out < limit
  end)
  return out
end

-- `plan --all` prints at most this many firings: past it the text is
-- gigabytes that no one reads (a 72 h run of 100 one-second events is 26
-- million lines), and --hours shortens the span.
M.MAX_ALL = 10000000

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

-- Text of `orchlua plan`.  opts: a number (the timeline's length, 30 by
-- default) or { limit =, all = true, write = fn(s) }.  With write, the
-- text goes to it in pieces (--all: millions of lines are never one
-- string) and nothing is returned.  With all, nil, message when the plan
-- has more than MAX_ALL firings.
function M.render(desc, hours, opts)
  if type(opts) ~= "table" then opts = { limit = opts } end
  local limit = opts.limit or 30
  local total = hours * 3600
  local lines = {}
  local function add(...) lines[#lines + 1] = string.format(...) end
  local function flush()
    if opts.write and #lines > 0 then
      opts.write(table.concat(lines, "\n") .. "\n")
      lines = {}
    end
  end
  local all = 0
  for _, ev in ipairs(desc.events) do
    local c = M.counts(ev, total)
    all = all + c.startup + c.interval
  end
  if opts.all then
    if all > M.MAX_ALL then
      return nil, ("plan --all: %s has %.0f firings in %g h, more than the %d lines --all prints; "
        .. "plan a part of it with --hours H"):format(desc.test_name, all, hours, M.MAX_ALL)
    end
    limit = all
  end
  add("%s: %g h (%g s), %d event%s, from %s", desc.test_name, hours, total, #desc.events,
      #desc.events == 1 and "" or "s", desc.file)
  add("")
  add("timeline (description time from t0):")
  local shown = 0
  if limit >= 1 then
    M.each_firing(desc.events, total, function(t, ev, k, phase)
      add("  %s  %s %s #%d", M.clock(t), pad(ev.id, 28), phase, k)
      shown = shown + 1
      if #lines >= 4096 then flush() end
      return shown < limit
    end)
  end
  if all > shown then
    add("  ... %.0f more firing%s until %s", all - shown, all - shown == 1 and "" or "s", M.clock(total))
    add("      (--all prints every firing)")
  end
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
  if desc.checks and #desc.checks > 0 then M.render_checks(desc.checks, add) end
  if opts.write then return flush() end
  return table.concat(lines, "\n") .. "\n"
end

-- The checks part of `orchlua plan`: what each judges, its limit, window,
-- warm-up and action.
function M.render_checks(checks, add)
  add("")
  add("checks (%d):", #checks)
  for _, c in ipairs(checks) do
    local what = c.metric and ("metric %s"):format(c.metric) or ("event %s%s"):format(c.event,
      c.series and (" " .. c.series) or "")
    if c.where then
      local keys = {}
      for k in pairs(c.where) do keys[#keys + 1] = k end
      table.sort(keys)
      for i, k in ipairs(keys) do keys[i] = k .. "=" .. tostring(c.where[k]) end
      what = what .. " where " .. table.concat(keys, ",")
    end
    local limit = {}
    if c.min then limit[#limit + 1] = (">= %g"):format(c.min) end
    if c.max then limit[#limit + 1] = ("<= %g"):format(c.max) end
    add("  %s: %s %s %s, %s%s, %s%s", c.name, what, c.stat, table.concat(limit, " and "),
      c.window and ("over %gs windows"):format(c.window) or "over the whole run",
      (c.after or 0) > 0 and (", from %s"):format(M.clock(c.after)) or "", c.action,
      c.allow_no_data and ", no data allowed" or "")
  end
end

return M
