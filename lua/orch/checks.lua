-- orch.checks: what a description's checks mean while the run goes on.
--
-- Each check judges one series (orch.Series, series.c): a metric's samples
-- (fed by the report queue in C, queue:set_taps), or an event's
-- invocations (fed by its invoker in C at each fast end, invoker:tap, and
-- by the engine here at the others) and error results.  Checks on the same
-- source, window and warm-up share one series.  A check is judged on a
-- ticker: abort checks at every tick (the evaluation period), windowed
-- ones (and silence_sec) at every tick as long as judging them takes
-- under 0.5% of a core, whole-run ones every WHOLE_RUN_SEC at most (their
-- verdict is their value at the end; the live view lags that much); at
-- once when the engine feeds a failure or an error result; and at the
-- end.  Only a change of state makes a record.
--
-- Verdicts: a windowed check (and silence_sec) that was out of its limits
-- at any judgement after its warm-up ends "fail" ("warn" for action warn),
-- even if it came back: every window must pass.  A whole-run check ends as
-- its value at the end says (its early values rest on few samples: a slope
-- over the first minutes is noise).  A check whose series never had a
-- sample ends "no_data", which fails unless allow_no_data.  An abort check
-- stops the run (Run:stop) when it fails, and stays failed.
local core = require "orch.core"
local report = require "orch.report"

local M = {}

local Checks = {}
Checks.__index = Checks

-- A full pass comes at most once per BUDGET times its own cost (0.5% of a
-- core): 20,000 checks on 10,000 events must not cost the firings their
-- CPU or their lateness.  Abort checks are judged at every tick.
local BUDGET = 200
local WHOLE_RUN_SEC = 30   -- real seconds between two passes over whole-run checks

-- The stats an invoker's own figures answer, per event series kind
-- (invoker:tap(series, true)).
local DERIVABLE = {
  duration = { count = true, rate = true, mean = true, min = true, max = true, pNN = true },
  lateness = { count = true, rate = true, mean = true, min = true, max = true, pNN = true },
  status = { errors = true, error_rate = true },
}

-- A where table as a stable string: checks with equal filters share.
local function where_key(where)
  if not where then return "" end
  local keys = {}
  for k in pairs(where) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = k .. "=" .. tostring(where[k]) end
  return table.concat(keys, "\0")
end

-- Whether check def keeps its worst state: a window, silence or abort.
local function sticky(def)
  return def.window ~= nil or def.stat == "silence_sec" or def.action == "abort"
end

--- The judge of run's checks, or nil when the description has none.  The
-- run gives: desc.checks, per_event (the invokers), queue, total (s),
-- scale, and emit(rec) / stop(reason).
--
-- A check is an index i into desc.checks (self.def[i], read as validated)
-- and into arrays of its state (self.status[i], ...: nil until first
-- judged), a shared series a group g into others, and an event's checks
-- and series are chains through them: 20,000 checks on 10,000 events add
-- a few dozen tables, not 100,000 for the collector to walk at every cycle.
local build

function M.new(run)
  local defs = run.desc.checks
  if not defs or #defs == 0 then return nil end
  -- built while the engine holds the collector (Run.new to t0)
  return build(run, defs)
end

function build(run, defs)
  local n = #defs
  local self = setmetatable({ run = run, n = n, def = defs, aborts = {}, windowed = {}, whole = {}, owned = {},
    -- per check: its series, then its state
    series = {}, status = {}, value = {}, worst = {}, breached = {},
    ev_next = {},     -- the next check of the same event, in judging order
    -- per event id: the first of its checks, of its series fed by the
    -- engine (not derived) and of its status series; gseries[g] the
    -- series, fed_next / status_next the event's next group
    ev_check = {}, ev_fed = {}, ev_status = {}, gseries = {}, fed_next = {}, status_next = {},
  }, Checks)
  -- groups: checks on the same source, window, warm-up and filter share a
  -- series; a source's groups are a chain (gsame) from by_src[source]
  local by_src, gsame, gdef, gwhere, ghist, gslope, gderivable, gfirst, glast, gnext =
    {}, {}, {}, {}, {}, {}, {}, {}, {}, {}
  local ng = 0
  local aborts, windowed, whole, owned, ev_next = self.aborts, self.windowed, self.whole, self.owned, self.ev_next
  for i = 1, n do
    local def = defs[i]
    local src, kind, window, after = def.metric or def.event, def.kind, def.window, def.after
    local wk = def.where and where_key(def.where) or ""
    local g = by_src[src]
    while g do
      local d = gdef[g]
      if d.kind == kind and d.window == window and d.after == after and gwhere[g] == wk then break end
      g = gsame[g]
    end
    if not g then
      ng = ng + 1
      g = ng
      gsame[g], by_src[src] = by_src[src] or false, g
      gdef[g], gwhere[g], ghist[g], gslope[g], gderivable[g], gfirst[g] = def, wk, false, false, true, i
    else
      gnext[glast[g]] = i
    end
    glast[g] = i
    if def.p then ghist[g] = true end
    if def.stat == "slope_per_hour" then gslope[g] = true end
    if gderivable[g] then
      local d = DERIVABLE[kind]
      gderivable[g] = d ~= nil and (d[def.stat] or (def.p ~= nil and d.pNN)) or false
    end
    ev_next[i] = false
    local list = def.action == "abort" and aborts or sticky(def) and windowed or whole
    list[#list + 1] = i
    if def.event and (def.stat == "errors" or def.stat == "error_rate") then owned[def.event] = true end
  end
  local taps, ev_last, fed_last, status_last = {}, {}, {}, {}
  local gseries, fed_next, status_next = self.gseries, self.fed_next, self.status_next
  local spec = { span = run.total }   -- one table for every series: core.series reads it then
  local series, per_event = self.series, run.per_event
  local tap
  for g = 1, ng do
    local def = gdef[g]
    -- what the invoker counts already is read there, not fed again (nor
    -- kept in a histogram of the series' own)
    local derived = def.event ~= nil and not def.window and (def.after or 0) == 0 and gderivable[g]
    spec.window, spec.from, spec.kind, spec.hist = def.window, def.after, def.kind, ghist[g] and not derived
    spec.slope, spec.where = gslope[g], def.where
    local s = core.series(spec)
    if not self.stat_fn then
      -- the methods once: a lookup through the userdata's __index is a C call
      self.stat_fn, self.feed, self.feed_error = s.stat, s.invocation, s.error_result
    end
    gseries[g], fed_next[g], status_next[g] = s, false, false
    local i = gfirst[g]
    while i do
      series[i] = s
      i = gnext[i]
    end
    if def.metric then
      local l = taps[def.metric] or {}
      taps[def.metric] = l
      l[#l + 1] = s
    else
      local id = def.event
      local inv = per_event[id]
      tap = tap or inv.tap
      tap(inv, s, derived)
      if not derived then
        if fed_last[id] then fed_next[fed_last[id]] = g else self.ev_fed[id] = g end
        fed_last[id] = g
      end
      if def.kind == "status" then
        if status_last[id] then status_next[status_last[id]] = g else self.ev_status[id] = g end
        status_last[id] = g
      end
      i = gfirst[g]
      while i do
        if ev_last[id] then ev_next[ev_last[id]] = i else self.ev_check[id] = i end
        ev_last[id] = i
        i = gnext[i]
      end
    end
  end
  if next(taps) then run.queue:set_taps(taps) end
  return self
end

--- Whether a check owns the event's errors: its verdict decides, not "any
-- error fails the run".
function Checks:owns(id)
  return id ~= nil and self.owned[id] == true
end

-- Check i as a table (the snapshot's fields).
function Checks:view(i)
  local def = self.def[i]
  return { name = def.name, stat = def.stat, status = self.status[i] or "no_data", value = self.value[i],
           min = def.min, max = def.max, action = def.action }
end

-- A check record as DESIGN.md "Checks" says, and the console's line.
function Checks:record(i, t, final, ts)
  local st, def = self.status[i], self.def[i]
  self.run:emit({ type = "check", name = def.name, stat = def.stat, status = st,
                  value = self.value[i], min = def.min, max = def.max,
                  action = def.action, final = final or nil, t = t, ts = ts })
  if not final and st ~= "pass" and st ~= "no_data" and self.run.console.check then
    self.run.console:check(self:view(i))
  end
end

-- Judges check i at description time now.
function Checks:judge(i, now)
  local def = self.def[i]
  if def.after and now < def.after then return end
  local p = def.p
  local v = self.stat_fn(self.series[i], p and "pct" or def.stat, now, p)
  local max, min, action = def.max, def.min, def.action
  local status
  if v == nil then
    status = "no_data"
  elseif (max and v > max) or (min and v < min) then
    status = action == "warn" and "warn" or "fail"
    -- the worst value judged: what the summary shows for a breach
    local worst = self.worst[i]
    if worst == nil or (max and v > max and v > worst) or (min and v < min and v < worst) then
      self.worst[i] = v
    end
    self.breached[i] = true
  else
    status = "pass"
  end
  self.value[i] = v
  local old = self.status[i]
  if status ~= old then
    -- the first judgement passing (or finding nothing yet) changes nothing
    -- worth a record: 20,000 checks would write 20,000 lines at once
    local first = old == nil and (status == "pass" or status == "no_data")
    self.status[i] = status
    -- replaying a resumed run's report: its records are there already
    if not first and not self.replay then self:record(i, now) end
    if status == "fail" and action == "abort" then
      local why = ("check %q failed (%s %s, limit %s)"):format(def.name, def.stat, M.number(v),
        M.limit({ min = min, max = max }))
      if self.replay then self.replay.stop = self.replay.stop or why else self.run:stop(why) end
    end
  end
end

--- One tick: the abort checks, the windowed ones when the budget allows,
-- the whole-run ones every WHOLE_RUN_SEC.
function Checks:tick()
  local now = core.now()
  for _, i in ipairs(self.aborts) do self:judge(i, now) end
  local t0 = core.hrtime()
  if #self.windowed > 0 and t0 >= self.next_windowed then
    for _, i in ipairs(self.windowed) do self:judge(i, now) end
    self.next_windowed = t0 + (core.hrtime() - t0) * BUDGET
  end
  if #self.whole > 0 and t0 >= self.next_whole then
    for _, i in ipairs(self.whole) do self:judge(i, now) end
    self.next_whole = t0 + math.max(WHOLE_RUN_SEC * 1e9, (core.hrtime() - t0) * BUDGET)
  end
end

--- Starts judging on a fixed-rate ticker (anchored at t0: a loaded loop
-- makes a tick late, never the next ones): every second of description
-- time, at most ten times a real second, until stop_timer.
function Checks:start()
  local period = math.max(1, 0.1 * (self.run.scale or 1))
  self.period = period
  self.next_windowed = 0
  self.next_whole = core.hrtime() + WHOLE_RUN_SEC * 1e9
  self.timer = core.ticker(period, 1, 1 << 40, function() self:tick() end)
end

--- An invocation of event id ended (the engine's ends; invoker.c feeds the
-- fast ones itself).  A failure is judged at once.
function Checks:invocation(id, t, duration, late_s, ok)
  local i = self.ev_check[id]
  if not i then return end
  local g = self.ev_fed[id]
  while g do
    self.feed(self.gseries[g], t, duration, late_s, ok)
    g = self.fed_next[g]
  end
  if not ok then
    while i do
      self:judge(i, t)
      i = self.ev_next[i]
    end
  end
end

--- An error result reported by an invocation of event id.
function Checks:error_result(id, t)
  local i = id and self.ev_check[id]
  if not i then return end
  local g = self.ev_status[id]
  while g do
    self.feed_error(self.gseries[g], t)
    g = self.status_next[g]
  end
  while i do
    self:judge(i, t)
    i = self.ev_next[i]
  end
end

--- A resumed run's report is replayed before its loop starts
-- (orch.resume): its records feed the series through the entry points the
-- live run feeds (the queue's taps, invocation, error_result), and before
-- each one replay_to(t) judges the abort and windowed checks on the
-- ticks' grid up to t, as the run did (a stretch without records: its
-- first tick and its last), writing no record and stopping nothing.  upto:
-- the report's last t.  At most about REPLAY_JUDGED judgements in all: a
-- long run with many checks is judged on a coarser grid (a multiple of the
-- period), where a breach shorter than its step may pass unseen.
local REPLAY_JUDGED = 2e6
function Checks:replay_begin(upto)
  local period = self.period or 1
  local passes = math.max(100, REPLAY_JUDGED // math.max(1, #self.aborts + #self.windowed))
  local step = math.max(1, math.ceil((upto or 0) / passes / period)) * period
  self.replay = { next_tick = step, step = step }
end

function Checks:replay_to(t)
  local r = self.replay
  if type(t) ~= "number" or t < r.next_tick then return end
  local period = r.step
  local last = r.next_tick + (t - r.next_tick) // period * period
  local at = r.next_tick
  while true do
    for _, i in ipairs(self.aborts) do self:judge(i, at) end
    for _, i in ipairs(self.windowed) do self:judge(i, at) end
    if at >= last then break end
    at = last
  end
  r.next_tick = last + period
end

--- The replay is over: the reason to stop at once when an abort check
-- had failed before the gap, or nil.
function Checks:replay_end(t)
  self:replay_to(t)
  local why = self.replay.stop
  self.replay = nil
  return why
end

--- No more ticks (the reporter is done: the loop may end).
function Checks:stop_timer()
  if self.timer then self.timer:close(); self.timer = nil end
end

--- The end: a last judgement and the verdicts, one final record each.
function Checks:finish()
  self:stop_timer()
  local now = core.now()
  local ts = core.ts(now)
  local status, value, breached, worst, series, def = self.status, self.value, self.breached, self.worst,
    self.series, self.def
  local run = self.run
  -- one record table for all (the writer encodes it at once): 20,000
  -- tables here were garbage the collector then walked with the heap
  local rec = { type = "check", final = true, t = now, ts = ts }
  for i = 1, self.n do
    self:judge(i, now)
    local d = def[i]
    local st = status[i]
    if breached[i] and sticky(d) then
      st = d.action == "warn" and "warn" or "fail"
      value[i] = worst[i]
    elseif st ~= "fail" and st ~= "warn" then
      st = series[i].total == 0 and d.stat ~= "silence_sec" and not d.allow_no_data and "no_data" or "pass"
    end
    status[i] = st
    rec.name, rec.stat, rec.status, rec.action = d.name, d.stat, st, d.action
    rec.value, rec.min, rec.max = value[i], d.min, d.max
    rec.t, rec.ts = now, ts
    run:emit(rec)
  end
  self.finished = true
end

--- Whether a check failed the run: fail or abort out of its limits, or
-- no data where some was required.
function Checks:failed()
  local status, def, final = self.status, self.def, self.finished
  for i = 1, self.n do
    local st = status[i]
    if def[i].action ~= "warn" and (st == "fail" or (final and st == "no_data")) then
      return true
    end
  end
  return false
end

--- The checks now (BRIEF's interface): an array of {name, stat, status,
-- value, min, max, action}; status "no_data" until first judged.
function Checks:snapshot()
  local out = {}
  for i = 1, self.n do out[i] = self:view(i) end
  return out
end

--- The summary's checks: every one when there are no more than max, else
-- the first max not passing, as snapshot() tables; and how many are not
-- passing, and how many fail the run.
function Checks:listing(max)
  local status, def, n = self.status, self.def, self.n
  local listed, failing, failed = {}, 0, 0
  for i = 1, n do
    local st = status[i] or "no_data"
    local bad = st ~= "pass"
    if bad then failing = failing + 1 end
    if def[i].action ~= "warn" and (st == "fail" or st == "no_data") then failed = failed + 1 end
    if n <= max or (bad and #listed < max) then listed[#listed + 1] = self:view(i) end
  end
  return listed, failing, failed
end

--- The checks failing now (fail or warn): how many, and the first max of
-- them as snapshot() tables.
function Checks:failing(max)
  local status, out, count = self.status, {}, 0
  for i = 1, self.n do
    local st = status[i]
    if st == "fail" or st == "warn" then
      count = count + 1
      if count <= max then out[count] = self:view(i) end
    end
  end
  return count, out
end

-- The outputs' words for values and limits (orch.report's, one policy).
M.number = report.check_number
M.limit = report.check_limit

return M
