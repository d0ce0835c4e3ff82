-- orch.order: the start and stop order that `after` asks for.
--
-- An event named in another's `after` is ready once one of its invocations
-- returned successfully, or when a running one called event:ready().  Until
-- all of an event's dependencies are ready, its firings are skipped
-- ("waiting for <id>"), except its startup firing, which waits and fires at
-- the moment they are (it is skipped only if the run ends first).
--
-- At the end the order reverses: an event others depend on gets a kill
-- switch of its own, set only once every event that depends on it has
-- finished (or when the grace is over), so a load stops before the server
-- it loads.
--
-- Events waiting, and dependencies not yet ready, stay off the invoker's
-- fast path (invoker.c): their firings and their first success must come
-- through the engine.
local core = require "orch.core"

local M = {}
M.__index = M

-- run: the engine's Run; make_switch() -> a new KillSwitch.  Returns nil
-- when no event has `after` (nothing to order).
function M.new(run, make_switch)
  local any = false
  for _, ev in ipairs(run.events) do
    if ev.after and #ev.after > 0 then any = true break end
  end
  if not any then return nil end
  local by_id = {}
  for _, ev in ipairs(run.events) do by_id[ev.id] = ev end
  local self = setmetatable({ run = run, by_id = by_id, ready = {}, waiting = {}, dependents = {},
                              pending_startup = {}, switches = {} }, M)
  for _, ev in ipairs(run.events) do
    for _, id in ipairs(ev.after or {}) do
      local deps = self.dependents[id]
      if not deps then deps = {}; self.dependents[id] = deps end
      deps[#deps + 1] = ev
      self.waiting[ev] = true
    end
  end
  for id in pairs(self.dependents) do self.switches[id] = make_switch() end
  return self
end

-- The first dependency of ev not ready yet, or nil.
function M:waiting_for(ev)
  if not self.waiting[ev] then return nil end
  for _, id in ipairs(ev.after) do
    if not self.ready[id] then return id end
  end
  self.waiting[ev] = nil
  return nil
end

-- Whether the invoker may fire ev without the engine.
function M:fast_ok(ev)
  if self.waiting[ev] then return false end
  return self.dependents[ev.id] == nil or self.ready[ev.id] == true
end

-- The kill switch ev's invocations receive, when it has one of its own.
function M:switch_of(ev)
  return self.switches[ev.id]
end

-- A firing of ev is due: true when it may go ahead; otherwise it was
-- skipped (or, at startup, put off until ev's dependencies are ready).
function M:may_fire(ev, phase, k, scheduled)
  local id = self:waiting_for(ev)
  if id == nil then return true end
  if phase == "startup" then
    self.pending_startup[ev] = true
  else
    self.run:skip(ev, phase, k, scheduled, "waiting for " .. id)
  end
  return false
end

-- ev is ready: the events waiting only for it start.
function M:mark_ready(id)
  if self.ready[id] or not self.dependents[id] then return end
  self.ready[id] = true
  local run = self.run
  if run.console.level >= 1 then run.console:log("info", id, "ready") end
  run:try_fast(self.by_id[id])
  for _, ev in ipairs(self.dependents[id]) do
    if self:waiting_for(ev) == nil then
      run:try_fast(ev)
      if self.pending_startup[ev] then
        self.pending_startup[ev] = nil
        if not run.stopping then run:fire(ev, "startup", 0, 0, core.hrtime() - run.t0_ns) end
      end
    end
  end
end

-- At the stop: startup firings that never came are skipped.
function M:on_stop()
  for _, ev in ipairs(self.run.events) do
    if self.pending_startup[ev] then
      self.pending_startup[ev] = nil
      self.run:skip(ev, "startup", 0, 0, "waiting for " .. (self:waiting_for(ev) or "?"))
    end
  end
end

local function is_set(self, ev)
  local sw = self.switches[ev.id]
  if sw then return sw.flag:is_set() end
  return self.run.kill_switch.flag:is_set()
end

local function busy(run, ev)
  return (ev.running ~= nil and next(ev.running) ~= nil) or run.per_event[ev.id].running_fast > 0
end

-- After the run's kill switch: sets each event's own switch once every
-- event depending on it has its switch set and nothing running.  Returns
-- whether an own switch is still unset.
function M:release()
  local run, left = self.run, false
  repeat
    local changed = false
    for _, ev in ipairs(run.events) do
      local sw = self.switches[ev.id]
      if sw and not sw.flag:is_set() then
        local done = true
        for _, d in ipairs(self.dependents[ev.id]) do
          if not is_set(self, d) or busy(run, d) then done = false break end
        end
        if done then sw.flag:set(); changed = true end
      end
    end
  until not changed
  for _, sw in pairs(self.switches) do
    if not sw.flag:is_set() then left = true end
  end
  return left
end

-- The grace is over while some own switches are unset: they are set now,
-- and the events that held them up are returned (to be cancelled).
function M:force()
  local late = {}
  for _, ev in ipairs(self.run.events) do
    local sw = self.switches[ev.id]
    if sw and not sw.flag:is_set() then
      for _, d in ipairs(self.dependents[ev.id]) do late[d] = true end
    end
  end
  for _, sw in pairs(self.switches) do sw.flag:set() end
  return late
end

return M
