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

-- The series' stat name and argument for a check's stat.
local function stat_of(def)
  if def.p then return "pct", def.p end
  return def.stat, nil
end

--- The judge of run's checks, or nil when the description has none.  The
-- run gives: desc.checks, per_event (the invokers), queue, total (s),
-- scale, and emit(rec) / stop(reason).
function M.new(run)
  local defs = run.desc.checks
  if not defs or #defs == 0 then return nil end
  local self = setmetatable({ run = run, list = {}, aborts = {}, windowed = {}, whole = {},
                              by_event = {}, owned = {} }, Checks)
  local shared, order = {}, {}
  for _, def in ipairs(defs) do
    local key = table.concat({ def.kind, def.metric or def.event, where_key(def.where),
                               tostring(def.window or ""), tostring(def.after) }, "\1")
    local sh = shared[key]
    if not sh then
      sh = { def = def, checks = {} }
      shared[key] = sh
      order[#order + 1] = sh
    end
    sh.hist = sh.hist or def.p ~= nil
    sh.slope = sh.slope or def.stat == "slope_per_hour"
    local d = DERIVABLE[def.kind]
    sh.derivable = sh.derivable ~= false and d ~= nil and (d[def.stat] or (def.p ~= nil and d.pNN)) or false
    local stat, p = stat_of(def)
    local c = { def = def, name = def.name, stat = def.stat, sname = stat, p = p, min = def.min,
                max = def.max, action = def.action, after = def.after or 0, sh = sh,
                sticky = def.window ~= nil or def.stat == "silence_sec" or def.action == "abort" }
    sh.checks[#sh.checks + 1] = c
    self.list[#self.list + 1] = c
    if def.action == "abort" then
      self.aborts[#self.aborts + 1] = c
    elseif c.sticky then
      self.windowed[#self.windowed + 1] = c
    else
      self.whole[#self.whole + 1] = c
    end
    if def.event and (def.stat == "errors" or def.stat == "error_rate") then self.owned[def.event] = true end
  end
  local taps = {}
  for _, sh in ipairs(order) do
    local def = sh.def
    local s = core.series({ window = def.window, from = def.after, kind = def.kind, hist = sh.hist,
                            slope = sh.slope, span = run.total, where = def.where })
    for _, c in ipairs(sh.checks) do c.series, c.stat_fn = s, s.stat end
    if def.metric then
      local l = taps[def.metric] or {}
      taps[def.metric] = l
      l[#l + 1] = s
    else
      -- what the invoker counts already is read there, not fed again
      local derived = not def.window and (def.after or 0) == 0 and sh.derivable
      run.per_event[def.event]:tap(s, derived)
      local l = self.by_event[def.event] or { series = {}, status = {}, checks = {} }
      self.by_event[def.event] = l
      if not derived then l.series[#l.series + 1] = s end
      if def.kind == "status" then l.status[#l.status + 1] = s end
      for _, c in ipairs(sh.checks) do l.checks[#l.checks + 1] = c end
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

-- A check record as DESIGN.md "Checks" says, and the console's line.
function Checks:record(c, t, final)
  self.run:emit({ type = "check", name = c.name, stat = c.stat, status = c.status, value = c.value,
                  min = c.min, max = c.max, action = c.action, final = final or nil, t = t })
  if not final and c.status ~= "pass" and c.status ~= "no_data" and self.run.console.check then
    self.run.console:check(c)
  end
end

-- Judges check c at description time now.
function Checks:judge(c, now)
  if now < c.after then return end
  local v = c.stat_fn(c.series, c.sname, now, c.p)
  local status
  if v == nil then
    status = "no_data"
  elseif (c.max and v > c.max) or (c.min and v < c.min) then
    status = c.action == "warn" and "warn" or "fail"
    -- the worst value judged: what the summary shows for a breach
    if c.worst == nil or (c.max and v > c.max and v > c.worst) or (c.min and v < c.min and v < c.worst) then
      c.worst = v
    end
    c.breached = true
  else
    status = "pass"
  end
  c.value = v
  if status ~= c.status then
    -- the first judgement passing (or finding nothing yet) changes nothing
    -- worth a record: 20,000 checks would write 20,000 lines at once
    local first = c.status == nil and (status == "pass" or status == "no_data")
    c.status = status
    if not first then self:record(c, now) end
    if status == "fail" and c.action == "abort" then
      self.run:stop(("check %q failed (%s %s, limit %s)"):format(c.name, c.stat, M.number(v), M.limit(c)))
    end
  end
end

--- One tick: the abort checks, the windowed ones when the budget allows,
-- the whole-run ones every WHOLE_RUN_SEC.
function Checks:tick()
  local now = core.now()
  for _, c in ipairs(self.aborts) do self:judge(c, now) end
  local t0 = core.hrtime()
  if #self.windowed > 0 and t0 >= self.next_windowed then
    for _, c in ipairs(self.windowed) do self:judge(c, now) end
    self.next_windowed = t0 + (core.hrtime() - t0) * BUDGET
  end
  if #self.whole > 0 and t0 >= self.next_whole then
    for _, c in ipairs(self.whole) do self:judge(c, now) end
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
  local l = self.by_event[id]
  if not l then return end
  for _, s in ipairs(l.series) do s:invocation(t, duration, late_s, ok) end
  if not ok then
    for _, c in ipairs(l.checks) do self:judge(c, t) end
  end
end

--- An error result reported by an invocation of event id.
function Checks:error_result(id, t)
  local l = id and self.by_event[id]
  if not l then return end
  for _, s in ipairs(l.status) do s:error_result(t) end
  for _, c in ipairs(l.checks) do self:judge(c, t) end
end

--- No more ticks (the reporter is done: the loop may end).
function Checks:stop_timer()
  if self.timer then self.timer:close(); self.timer = nil end
end

--- The end: a last judgement and the verdicts, one final record each.
function Checks:finish()
  self:stop_timer()
  local now = core.now()
  for _, c in ipairs(self.list) do
    self:judge(c, now)
    local status
    if c.sticky and c.breached then
      status = c.action == "warn" and "warn" or "fail"
      c.value = c.worst
    elseif c.status == "fail" or c.status == "warn" then
      status = c.status
    elseif c.series.total == 0 and c.stat ~= "silence_sec" and not c.def.allow_no_data then
      status = "no_data"
    else
      status = "pass"
    end
    c.status = status
    c.final = true
    self:record(c, now, true)
  end
end

--- Whether a check failed the run: fail or abort out of its limits, or
-- no data where some was required.
function Checks:failed()
  for _, c in ipairs(self.list) do
    if c.action ~= "warn" and (c.status == "fail" or (c.final and c.status == "no_data")) then
      return true
    end
  end
  return false
end

--- The checks now (BRIEF's interface): an array of {name, stat, status,
-- value, min, max, action}; status "no_data" until first judged.
function Checks:snapshot()
  local out = {}
  for i, c in ipairs(self.list) do
    out[i] = { name = c.name, stat = c.stat, status = c.status or "no_data", value = c.value,
               min = c.min, max = c.max, action = c.action }
  end
  return out
end

-- The outputs' words for values and limits (orch.report's, one policy).
M.number = report.check_number
M.limit = report.check_limit

return M
