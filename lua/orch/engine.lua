-- orch.engine: what a run means.  The C core gives timers, fixed-rate
-- tickers, tasks (one coroutine per invocation), flags and the queue; this
-- module decides when events fire, what they receive, and how a run ends:
--
--   1. unref_setup_fixtures, in order        (setup task)
--   2. at_startup events at t0               (description order)
--   3. interval events at t0 + k*interval    (tickers, no drift)
--   4. at T: stop firing, teardown events, wait for them
--   5. kill switch set; grace_sec; cancel what still runs
--   6. finalise fixtures, drain the queue, close outputs, summary
--
-- A first signal starts at step 4, a second jumps to step 6.
local core = require "orch.core"
local registry = require "orch.registry"
local resolve = require "orch.resolve"
local plan = require "orch.plan"
local order = require "orch.order"

local M = {}

local unpack = table.unpack

-- coroutines kept for reuse once the startup firings are over: enough for
-- the invocations that wait (sleep, a process) at any one time in most runs
local THREADS_KEPT = 256

-- overdue firings of an "allow" event fired at the end, at most
local FLUSH_MAX = 1000

-- the arguments (and `event` positions) of an event that takes none:
-- shared, never written (invoker:set_args copies what it is given)
local NO_ARGS = setmetatable({}, { __newindex = function() error("NO_ARGS is read-only", 2) end })

-- 3.0 -> 3 in the records: description times read as they were written
local function num(x) return math.tointeger(x) or x end

local Run = {}
Run.__index = Run

-- ---- kill switch -------------------------------------------------------

local KillSwitch = {}
KillSwitch.__index = KillSwitch

function KillSwitch:is_set() return self.flag:is_set() end

-- wait([timeout_sec]) -> true when set, false on timeout; yields.
function KillSwitch:wait(timeout)
  return self.flag:wait(timeout)
end

-- set(): ends the run early, in order (teardown, then the rest) as at T.
function KillSwitch:set()
  self.flag:set()
  self.run:stop("kill switch set by " .. (self.run:current_name() or "a fixture"))
end

-- ---- log -----------------------------------------------------------------

local function make_log(run)
  local log = {}
  for _, level in ipairs({ "debug", "info", "warn", "error" }) do
    log[level] = function(...)
      local n = select("#", ...)
      local parts = {}
      for i = 1, n do parts[i] = tostring((select(i, ...))) end
      run.console:log(level, run:current_name(), table.concat(parts, " "))
    end
  end
  return log
end

-- ---- fixtures at run time ------------------------------------------------

-- Finds the definition for a fixture name: a user one overrides a built-in.
local function fixture_def(name)
  return registry.user[name] or registry.builtin_fixtures[name]
end

-- Resolves one name for invocation inv (nil inv: a run-level setup).
-- May yield (fixture setup runs in the calling task).
function Run:value(name, inv)
  local params = inv and inv.ev.params
  if params then
    local v = params[name]
    if v ~= nil then return v end
  end
  local def = fixture_def(name)
  if def then return self:fixture(def, inv) end
  if name == "kill_switch" and inv and self.order then
    local own = self.order:switch_of(inv.ev)   -- `after`: stops after its dependents
    if own then return own end
  end
  local b = self.builtins[name]
  if b ~= nil then return b end
  if name == "event" then
    if not inv then return nil end
    local info = inv.event_info
    if not info then
      info = setmetatable({ name = inv.ev.name, id = inv.id, iteration = inv.iteration, phase = inv.phase,
                            scheduled = inv.scheduled }, self.event_mt)
      inv.event_info = info
    end
    return info
  end
  -- its own table: an event without params may still fill it
  if name == "params" then return (params and next(params) ~= nil) and params or {} end
  error(("%q is not a param, a fixture or a built-in"):format(name), 0)
end

function Run:args(names, inv)
  local n = #names
  local args = {}
  for i = 1, n do args[i] = self:value(names[i], inv) end
  return args, n
end

-- Calls a fixture's function: returns value, finaliser.
function Run:setup(def, inv)
  local args, n = self:args(def.params, inv)
  local value, fin = def.fn(unpack(args, 1, n))
  if fin ~= nil and type(fin) ~= "function" then
    error(("fixture %q returned a finaliser that is a %s, not a function"):format(def.name, type(fin)), 0)
  end
  return value, fin
end

function Run:fixture(def, inv)
  if def.scope == "invocation" and inv then
    local cache = inv.fixtures
    if cache == nil then cache = { list = {} }; inv.fixtures = cache end
    local got = cache[def.name]
    if got then return got.value end
    local value, fin = self:setup(def, inv)
    got = { name = def.name, value = value, fin = fin }
    cache[def.name] = got
    cache.list[#cache.list + 1] = got
    return value
  end
  local f = self.fixtures[def.name]
  while f and f.pending do
    -- another task is setting it up: wait for it, then look again
    f.pending:wait()
    f = self.fixtures[def.name]
  end
  if f then return f.value end
  f = { name = def.name, pending = core.flag(), owner = inv }
  self.fixtures[def.name] = f
  local ok, value, fin = pcall(self.setup, self, def, inv)
  local flag = f.pending
  f.pending = nil
  if not ok then
    self.fixtures[def.name] = nil
    flag:set()
    error(("fixture %q failed: %s"):format(def.name, tostring(value)), 0)
  end
  f.value, f.fin = value, fin
  self.created[#self.created + 1] = f
  flag:set()
  return value
end

-- ---- records and outputs -------------------------------------------------

function Run:emit(rec)
  rec.t = rec.t or core.now()
  rec.ts = rec.ts or core.ts(rec.t)
  if self.jsonl then self:write_report(rec) end
end

-- A report file that fails mid-run (a full disk) is said once, fails the
-- run, and the console goes on showing everything.
function Run:write_report(rec, type_)
  local ok, err = self.jsonl:write(rec, type_)
  if not ok and not self.report_failed then
    self.report_failed = true
    self.failed = true
    self.errors[#self.errors + 1] = "--report " .. tostring(err)
    self.console:error(("--report %s; the run goes on, the console still shows every result"):format(err))
  end
end

function Run:current_name()
  local inv = core.current()
  if type(inv) == "table" then return inv.id end
  return nil
end

-- ---- invocations ---------------------------------------------------------

local function invoke(run, inv)
  local ev = inv.ev
  if ev.names then
    local args, n = run:args(ev.names, inv)
    ev.fn(unpack(args, 1, n))
  else
    -- a C function: one ctx table resolving names lazily
    local ctx = setmetatable({}, { __index = function(t, k)
      local v = run:value(k, inv)
      rawset(t, k, v)
      return v
    end })
    ev.fn(ctx)
  end
end

function Run:skip(ev, phase, k, scheduled, reason)
  local invoker = self.per_event[ev.id]
  invoker.skipped = invoker.skipped + 1
  self:emit({ type = "skipped", event = ev.name, id = ev.id, iteration = k, phase = phase,
              scheduled = scheduled, reason = reason })
  self.console:skipped(ev, k, phase, scheduled, reason)
end

-- Firings first .. first+count-1 of ev passed over at the end of the run
-- (the loop was behind): one record with `count`.
function Run:skip_missed(ev, first, count)
  local invoker = self.per_event[ev.id]
  invoker.skipped = invoker.skipped + count
  local reason = "overdue at the end of the run (the loop was behind)"
  self:emit({ type = "skipped", event = ev.name, id = ev.id, iteration = first, phase = "interval",
              scheduled = num(first * ev.interval), count = count, last_iteration = first + count - 1,
              reason = reason })
  self.console:skipped(ev, first, "interval", num(first * ev.interval), ("%s: %d firings"):format(reason, count))
end

-- Starts an invocation of ev.  late_ns: how late the firing is, real time.
function Run:fire(ev, phase, k, scheduled, late_ns)
  if self.stopping and phase ~= "teardown" then return end
  if self.order and not self.order:may_fire(ev, phase, k, scheduled) then return end
  local running = ev.running   -- tasks of the engine's: made at the first
  if running == nil then running = {}; ev.running = running end
  local invoker = self.per_event[ev.id]
  if next(running) ~= nil or invoker.running_fast > 0 then
    if ev.concurrency == "forbid" then
      return self:skip(ev, phase, k, scheduled, "previous invocation still running")
    elseif ev.concurrency == "replace" then
      for task in pairs(running) do task:cancel("cancelled") end
      invoker:cancel_all()
    end
  end
  local inv = {
    ev = ev, id = ev.id, phase = phase, iteration = k, scheduled = scheduled,
    late_ns = late_ns or 0, started = core.now(),
  }
  local task = core.go(invoke, self.on_done, inv, self, inv)
  running[task] = inv
  self.nrunning = self.nrunning + 1
  invoker.lua_running = invoker.lua_running + 1
  if ev.timeout then task:set_timeout(ev.timeout) end
  return task
end

-- Whether every name ev receives is the same value at every firing
-- (params, built-ins, run-scope fixtures already set up), or `event`,
-- which the invoker makes: then the invoker can fire it without this
-- module (invoker.c).  Returns args, n, the positions of `event`.
function Run:constant_args(ev)
  if not ev.names or not self.fast then return nil end
  if #ev.names == 0 then return NO_ARGS, 0, NO_ARGS end
  local params = ev.params
  local event_at = {}
  for i, name in ipairs(ev.names) do
    if not (params and params[name] ~= nil) then
      local def = fixture_def(name)
      if def then
        local f = self.fixtures[def.name]
        if def.scope == "invocation" or not f or f.pending then return nil end
      elseif name == "event" then
        if #event_at == 8 then return nil end
        event_at[#event_at + 1] = i
      elseif self.builtins[name] == nil and name ~= "params" then
        return nil
      end
    end
  end
  local args, n = self:args(ev.names, { ev = ev })
  for _, i in ipairs(event_at) do args[i] = false end   -- made at each firing
  return args, n, event_at
end

-- Hands ev's constant arguments to its invoker, once they are known.
function Run:try_fast(ev)
  if self.fast_set[ev.index] then return end
  if self.order and not self.order:fast_ok(ev) then return end
  local args, n, event_at = self:constant_args(ev)
  if args then
    self.per_event[ev.id]:set_args(args, n, event_at)
    self.fast_set[ev.index] = true
  end
end

-- The done callback of every invocation task; task is nil for an
-- invoker's own task (it ended in error: invoker.c does the rest).
function Run:done(task, status, inv, err)
  local ev = inv.ev
  local invoker = self.per_event[ev.id]
  if task then
    ev.running[task] = nil
    self.nrunning = self.nrunning - 1
    invoker.lua_running = invoker.lua_running - 1
  end
  local t = core.now()
  local duration = t - inv.started
  invoker.runs = invoker.runs + 1
  invoker.duration:add(duration)
  invoker.lateness:add(inv.late_ns / 1e6)             -- real milliseconds
  if inv.fixtures then self:finalise_invocation(inv) end
  if status == "ok" then
    if self.checks then self.checks:invocation(ev.id, t, duration, inv.late_ns / 1e9, true) end
    if self.order then self.order:mark_ready(ev.id) end
    if self.jsonl or self.console.level >= 1 then
      local rec = { type = "invocation", t = t, event = ev.name, id = ev.id, iteration = inv.iteration,
                    phase = inv.phase, scheduled = inv.scheduled, started = inv.started,
                    duration = duration, lateness = inv.late_ns / 1e9 * self.scale, status = status }
      -- under --time-scale, what the work took on the wall clock too
      if self.scale ~= 1 then rec.duration_real = duration / self.scale end
      self:emit(rec)
      self.console:invocation(rec)
    end
    if not self.fast_set[ev.index] and not inv.fixtures then self:try_fast(ev) end
    if self.stopping then self:progress() end
    return
  end
  invoker.failures = invoker.failures + 1
  -- after the counts: a check judges the failure at once
  if self.checks then self.checks:invocation(ev.id, t, duration, inv.late_ns / 1e9, false) end
  -- a check on the event's errors owns them: its verdict decides
  if not (self.checks and self.checks:owns(ev.id)) then self.failed = true end
  local trace = tostring(err or ""):match("\n.*$") or ""
  if status == "timeout" then
    invoker.timeouts = invoker.timeouts + 1
    err = ("timed out after %gs (timeout_sec%s)%s"):format(ev.timeout or 0,
      self.scale > 1 and ", real time: --time-scale does not shorten it" or "", trace)
  elseif status == "cancelled" then
    err = ("cancelled (%s)%s"):format(self:cancel_reason_for(ev), trace)
  end
  local errors = invoker.messages   -- made at the first failure
  if errors == nil then errors = {}; invoker.messages = errors end
  if #errors < 100 then errors[#errors + 1] = err end
  local rec = { type = "invocation", t = t, event = ev.name, id = ev.id, iteration = inv.iteration,
                phase = inv.phase, scheduled = inv.scheduled, started = inv.started,
                duration = duration, lateness = inv.late_ns / 1e9 * self.scale, status = status,
                error = err }
  if self.scale ~= 1 then rec.duration_real = duration / self.scale end
  self:emit(rec)
  self.console:invocation(rec)
  for name, f in pairs(self.fixtures) do
    -- a run fixture whose setup died with its task: let waiters retry
    if f.pending and f.owner == inv then
      self.fixtures[name] = nil
      f.pending:set()
    end
  end
  if self.opts.fail_fast and not self.stopping and not (self.checks and self.checks:owns(ev.id)) then
    self:stop("fail-fast: " .. ev.id .. " " .. status)
  end
  if self.stopping then self:progress() end
end

-- Invocations alive: the engine's tasks and the invokers' (invoker.c).
function Run:running()
  return self.nrunning + core.invoker_running()
end

function Run:cancel_reason_for(ev)
  if self.cancelled_reason then return self.cancelled_reason end
  if ev.concurrency == "replace" and not self.stopping then return "replaced by a newer firing" end
  return "run stopping"
end

function Run:finalise_invocation(inv)
  local list = inv.fixtures.list
  inv.fixtures = nil
  local fins = {}
  for i = #list, 1, -1 do
    if list[i].fin then fins[#fins + 1] = list[i] end
  end
  if #fins == 0 then return end
  local task = self:background("finalise " .. inv.id, function()
    for _, f in ipairs(fins) do
      local ok, e = pcall(f.fin)
      if not ok then self:internal_error(("finaliser of fixture %q: %s"):format(f.name, tostring(e))) end
    end
  end)
  task:set_timeout(self:work_bound())
end

-- How long finalisers get, description seconds: the grace, but never
-- tighter than real time (a rehearsal must not fail where the run passes)
-- and at least a second.
function Run:work_bound()
  return math.max(self.grace * self.scale, 1)
end

-- A task the run waits for before it ends (setup, finalisers).
function Run:background(name, fn, after)
  self.nbackground = self.nbackground + 1
  local task
  task = core.go(fn, function(_, status, _, err)
    self.bg[task] = nil
    self.nbackground = self.nbackground - 1
    if status == "timeout" then
      err = ("still running after %gs (the grace period): stopped"):format(self:work_bound())
    end
    if status ~= "ok" then self:internal_error(("%s: %s"):format(name, tostring(err))) end
    if after then after(status) end
    self:progress()
  end, { id = name })
  self.bg[task] = name
  return task
end

-- A resumed run (orch.resume): the report's records counted again, seq
-- going on, and one gap record for what was missed while it was down.
function Run:resumed(resume)
  self.jsonl.w:seq(resume.last_seq)
  local seen, stop = require("orch.resume").replay(self, resume.files, resume.last_t)
  self.resume_stop = stop   -- an abort check that had failed: start_schedule stops
  local missed, any = {}, false
  for _, ev in ipairs(self.events) do
    if ev.interval then
      local upto = math.min(self.first_k[ev.id] - 1, plan.last_k(ev.interval, self.total))
      local n = upto - (seen[ev.id] or 0)
      if n > 0 then
        missed[ev.id] = n
        any = true
        local invoker = self.per_event[ev.id]
        invoker.skipped = invoker.skipped + n
      end
    end
  end
  self:emit({ type = "gap", from = num(resume.last_t), to = num(self.resume_t), missed = missed,
              firings_missed = any, torn_bytes = resume.torn })
  self.console:phase(("resumed %s at %s (t0 %s): %d records before the gap"):format(resume.path,
    plan.clock(self.resume_t), core.iso8601(resume.start.t0_unix), resume.lines))
end

-- An output that could not be written at the end: said, and fails the run.
function Run:output_failed(msg)
  self.errors[#self.errors + 1] = msg
  self.failed = true
  self.console:error(msg)
end

-- An error that is no event's: counted, shown, and fails the run.
function Run:internal_error(msg)
  self.errors[#self.errors + 1] = msg
  self.failed = true
  self.console:error(msg)
  self:emit({ type = "result", event = nil, level = "error", data = { error = msg } })
end

-- ---- the schedule --------------------------------------------------------

function Run:start_schedule()
  if self.stopping then return self:progress() end
  -- after unref_setup_fixtures, more events may have constant arguments
  if self.unref_setup then
    for _, ev in ipairs(self.events) do self:try_fast(ev) end
  end
  -- thousands of events may start together: a loop over their invokers
  -- alone (each event's table and id are cold memory)
  local list = self.startup_list
  local fire_startup = list[1] and list[1].fire_startup
  for i = 1, #list do
    local invoker = list[i]
    if self.resume_t then   -- a resumed run: startup again, at the resume
      self:fire(invoker.ev, "startup", 0, num(self.resume_t), 0)
    elseif not fire_startup(invoker) then
      self:fire(invoker.ev, "startup", 0, 0, core.hrtime() - self.t0_ns)
    end
  end
  -- after the startup invocations, which are ready before it: their
  -- bodies need not wait for every ticker to be made; and the
  -- coroutines they needed at once go (interval firings run one after
  -- another, see invoker.c)
  self:background("the schedule", function()
    core.trim_threads(THREADS_KEPT)
    if not self.end_timer and not self.stopping then self:make_tickers() end
  end)
  if self.resume_t and self.resume_t >= self.total then self:stop("end of run (resumed after it)") end
  if self.resume_stop then self:stop(self.resume_stop) end
  self:progress()
end

-- The interval schedule and the end.  Made before t0 when nothing is set
-- up first (the core arms them at t0): they are not made in the startup
-- firings' time.
function Run:make_tickers()
  local last_k = plan.last_k_of(self.total)
  for _, ev in ipairs(self.events) do
    if ev.interval then
      local last = last_k[ev.interval]
      local first = self.first_k and self.first_k[ev.id] or 1   -- a resumed run goes on on its grid
      if last >= first then
        local n = #self.tickers + 1
        self.tickers[n] = core.ticker(ev.interval, first, last, self.per_event[ev.id])
        self.ticker_events[n] = ev
      end
    end
  end
  -- the end is a one-firing ticker: anchored at t0 and never early
  if self.resume_t and self.resume_t >= self.total then return end   -- resumed after T: start_schedule stops
  self.end_timer = core.ticker(self.total, 1, 1, function() self:stop("end of run") end)
end

-- Step 4: stop firing; teardown events; then the kill switch.
function Run:stop(reason)
  if self.stopping then return end
  if reason == "end of run" then
    -- firings due before the end happen even if the loop was behind; but
    -- one loop turn at a time: a backlog of millions (a 1 ms interval
    -- rehearsed at 3600x) is one skipped record, not millions of firings
    -- (under forbid or replace all but one would be skipped anyway)
    for i, t in ipairs(self.tickers) do
      local ev = self.ticker_events[i]
      local missed, first = t:flush(ev.concurrency == "allow" and FLUSH_MAX or 1)
      if missed > 0 then self:skip_missed(ev, first, missed) end
    end
  end
  self.stopping = true
  self.stop_reason = reason
  if self.order then self.order:on_stop() end
  for _, invoker in pairs(self.per_event) do invoker:set_notify(true) end
  self.console:phase("stopping: " .. reason)
  require("orch.health").stop(self.health)
  for _, t in ipairs(self.tickers) do t:close() end
  if self.end_timer then self.end_timer:close() end
  self.teardown_t = core.now()
  local last_k = plan.last_k_of(self.total)
  for _, ev in ipairs(self.events) do
    if ev.at_teardown then
      local last = ev.interval and last_k[ev.interval] or 0
      -- scheduled at the end, or at the stop when the run ends early
      local task = self:fire(ev, "teardown", last + 1, num(math.min(self.total, self.teardown_t)))
      if task then self.teardown[task] = true end
    end
  end
  self:progress()
end

-- Step 5 once the teardown invocations are done.
function Run:kill()
  if self.killed then return end
  self.killed = true
  self.kill_switch.flag:set()
  if self:running() > 0 or self.nbackground > 0 then
    self.grace_timer = core.timer(function() self:grace_over() end)
    self.grace_timer:start(self.grace)
    core.set_hard_deadline(self.grace)
  end
  self:progress()
end

-- The grace is over: cancel what still runs; with `after`, the events
-- that held up a dependency's kill switch first, and the dependencies
-- get one more grace to stop on their own.
function Run:grace_over()
  if self.order and self.order:release() then
    for ev in pairs(self.order:force()) do
      for task in pairs(ev.running or {}) do task:cancel("cancelled") end
      self.per_event[ev.id]:cancel_all()
    end
    self.cancelled_reason = "grace period over"
    self.grace_timer:start(self.grace)
    return
  end
  self:cancel_all("grace period over")
end

function Run:cancel_all(why)
  if self.grace_timer then self.grace_timer:close(); self.grace_timer = nil end
  if self.order then self.order:force() end
  self.cancelled_reason = why
  for _, ev in ipairs(self.events) do
    local tasks = {}
    for task in pairs(ev.running or {}) do tasks[#tasks + 1] = task end
    for _, task in ipairs(tasks) do task:cancel("cancelled") end
    self.per_event[ev.id]:cancel_all()
  end
  -- a fixture setup or an invocation's finalisers that still wait
  for task in pairs(self.bg) do
    if task ~= self.finalise_task then task:cancel("cancelled") end
  end
  core.kill_processes()  -- every spawned process group: SIGTERM, SIGKILL 500 ms later
end

-- Step 6: finalise run fixtures in reverse order of creation.
function Run:finalise()
  if self.finalising then return end
  self.finalising = true
  if self.grace_timer then self.grace_timer:close(); self.grace_timer = nil end
  core.set_hard_deadline(nil)
  core.set_end(nil)   -- the finalisers' own bound is their task's timeout
  local list = self.created
  self.created = {}
  self.finalise_task = self:background("finalise fixtures", function()
    for i = #list, 1, -1 do
      local f = list[i]
      if f.fin and f.name ~= "result_reporter" then
        local ok, e = pcall(f.fin)
        if not ok then self:internal_error(("finaliser of fixture %q: %s"):format(f.name, tostring(e))) end
      end
    end
  end, function()
    self.fixtures_done = true
    self.queue:close()     -- the reporter drains what is left, then ends
    self:progress()
  end)
  self.finalise_task:set_timeout(self:work_bound())
end

-- Moves the run along its steps whenever something finished.
function Run:progress()
  if not self.stopping then return end
  if self.killed and self.order then self.order:release() end
  if not self.killed then
    for task in pairs(self.teardown) do
      if task:status() == "done" then self.teardown[task] = nil end
    end
    if next(self.teardown) == nil then self:kill() end
  end
  if self.killed and self:running() == 0 and self.nbackground == 0 and not self.finalising then
    self:finalise()
  end
end

local function signal_name(signum)
  return ({ [2] = "SIGINT", [15] = "SIGTERM", [1] = "SIGHUP" })[signum] or ("signal " .. signum)
end

function Run:on_signal(signum, count)
  local name = signal_name(signum)
  self.signal = self.signal or signum
  if count == 1 then
    self.console:phase(("%s: send it again to skip the teardown and the grace period"):format(name))
    self:stop(name)
  elseif self.finalising then
    -- the finalisers had their chance: the queue is drained now
    self.console:phase(name .. " again: stopping the finalisers, draining the report queue")
    if self.finalise_task and self.bg[self.finalise_task] then self.finalise_task:cancel("cancelled") end
  else
    self.console:phase(name .. " again: cancelling everything, draining the report queue")
    self.stopping = true
    for _, invoker in pairs(self.per_event) do invoker:set_notify(true) end
    self.killed = true
    self.kill_switch.flag:set()
    for _, t in ipairs(self.tickers) do t:close() end
    if self.end_timer then self.end_timer:close() end
    self:cancel_all(name .. " twice")
    self.teardown = {}
    self:progress()
  end
end

-- ---- the run -------------------------------------------------------------

-- opts: desc, events (bound), hours, scale, grace, jsonl, console, junit,
-- fail_fast.  Returns the exit status and the run.  Each step below is a
-- Run method; the order is the contract (each needs what the ones before
-- it made).
function M.run(opts)
  local run = Run.new(opts)
  run:make_invokers()
  run:make_queue()
  run:attach_checks_and_live()
  run:make_builtins()
  run:plan_firings()
  run:start_clock()
  run:attach_health_and_console()
  run:start_reporter()
  run:start_setup()
  core.run()
  return run:finish()
end

-- The run's table, before anything is made for it; the collector and the
-- grace period set for the run.
function Run.new(opts)
  local desc = opts.desc
  local run = setmetatable({
    opts = opts, desc = desc, events = opts.events, scale = opts.scale or 1,
    total = (opts.hours or desc.total_hours) * 3600, grace = opts.grace or 60,
    jsonl = opts.jsonl, console = opts.console,
    fixtures = {}, created = {}, builtins = {}, tickers = {}, fast_set = {},
    ticker_events = {},   -- ticker_events[i]: the event of tickers[i]
    teardown = {}, errors = {}, nrunning = 0, nbackground = 0, error_results = 0, bg = {},
    results = 0, owned_error_results = 0,
    -- fleets (orch.fleet): the run's id and --label's, in run_start
    run_id = opts.run_id or require("orch.fleet").uuid(), labels = opts.labels or {},
  }, Run)
  run.on_done = function(task, status, inv, err) run:done(task, status, inv, err) end
  -- the fast path writes what Run:done would: only when the console shows
  -- no invocation (-q, no progress area)
  run.fast = run.console.level < 1 and not run.console.progress

  -- what is built from here to t0 (invokers, tickers, checks) lives as
  -- long as the run and leaves little garbage: the collector waits for
  -- t0 (Run:start_clock), where one full pass makes it all old, instead
  -- of walking the growing heap on the way
  collectgarbage("stop")
  desc.index = nil   -- positions were for error messages; the run needs none
  core.set_grace(run.grace)
  return run
end

-- run.per_event[id]: one invoker per event (counts, statistics, the fast
-- path: invoker.c), sharing one fire/done/progress callback set.
function Run:make_invokers()
  local run = self
  local function progress() run:progress() end
  -- what an invoker calls back, with its tag first: one function for
  -- every event, not two closures per event
  local function fire(tag, k, late_ns)
    local ev = tag.ev
    run:fire(ev, "interval", k, num(k * (ev.interval or 0)), late_ns)
  end
  local function done(tag, status, err, k, late_ns, started, phase)
    local ev = tag.ev
    run:done(nil, status, { ev = ev, id = ev.id, phase = phase, iteration = k,
                            scheduled = num(k * (ev.interval or 0)), late_ns = late_ns, started = started }, err)
  end
  -- the `event` built-in's methods: event:ready() (order.lua)
  run.event_mt = { __index = { ready = function(info)
    if run.order then run.order:mark_ready(info.id) end
  end } }
  -- one call for every event: the tag (what core.current() gives inside
  -- the event: {id =, ev =}) also holds the invoker's other fields
  run.per_event = core.invokers({ fire = fire, done = done, progress = progress, event_mt = run.event_mt,
                                  writer = run.jsonl and run.jsonl.w or nil }, run.events)
end

-- run.queue: the results' queue, writing into the --report file.
function Run:make_queue()
  self.queue = core.queue()
  if self.jsonl then
    self.queue:set_writer(self.jsonl.w, function(rec) self:write_report(rec, "result") end)
  end
end

-- run.checks (nil without checks) and --listen's live view, before t0.
function Run:attach_checks_and_live()
  self.checks = require("orch.checks").new(self)
  if self.opts.live then self.opts.live:attach(self) end   -- --listen (orch.live)
end

-- The kill switches and `after` order, the built-ins, orch.log's sink and
-- the signal handler.
function Run:make_builtins()
  local run = self
  run.kill_switch = setmetatable({ flag = core.flag(), run = run }, KillSwitch)
  run.order = order.new(run, function() return setmetatable({ flag = core.flag(), run = run }, KillSwitch) end)
  run.builtins.kill_switch = run.kill_switch
  run.builtins.report_queue = run.queue
  run.builtins.log = make_log(run)
  run.builtins.description = run.desc
  require("orch").set_log_sink(function(level, msg) run.console:log(level, run:current_name(), msg) end)
  core.on_signal(function(signum, count) run:on_signal(signum, count) end)
end

-- Before t0: the fast path's arguments, the startup list, under --resume
-- the grid's first k per event, and the tickers when no setup comes first.
function Run:plan_firings()
  -- events that need no fixture set up first go to their invokers now,
  -- not in the startup firings' time
  self.startup_list = {}   -- the invokers of the startup events, in order
  for _, ev in ipairs(self.events) do
    self:try_fast(ev)
    if ev.at_startup then self.startup_list[#self.startup_list + 1] = self.per_event[ev.id] end
  end
  local resume = self.opts.resume
  if resume then
    -- the same t0 and T: where the grid stands now, and what it missed
    self.resume_t = math.max(0, (core.wall() - resume.start.t0_unix) * self.scale)
    self.first_k = {}
    local last_k = plan.last_k_of(self.resume_t)
    for _, ev in ipairs(self.events) do
      if ev.interval then self.first_k[ev.id] = last_k[ev.interval] + 1 end
    end
  end
  if #(self.desc.unref_setup_fixtures or {}) == 0 then self:make_tickers() end
end

-- t0 (the resumed run's under --resume), checks' clock, run_start (or the
-- resume's records) on disk, and T.
function Run:start_clock()
  local opts, desc, resume = self.opts, self.desc, self.opts.resume
  -- a big, stable heap (events, fixtures, stats) and many short-lived
  -- objects (one invocation each): what generational collection is for
  -- (incremental mode re-marked the whole heap over and over).  Entering
  -- it is one full pass, after which all that is here is old: the young
  -- passes over the firings' objects need not look at it again.
  collectgarbage("restart")   -- stopped since Run.new
  if collectgarbage("generational") == "generational" then collectgarbage("collect") end
  self.t0_wall = core.start_clock(self.scale, resume and resume.start.t0_unix)
  self.t0_ns = core.hrtime()
  if self.checks then self.checks:start() end

  if resume then
    self:resumed(resume)
  else
    self:emit({ type = "run_start", t = 0, test_name = desc.test_name, file = desc.file,
                total_hours = self.total / 3600, time_scale = self.scale, grace_sec = self.grace,
                events = #self.events, version = opts.version, run_id = self.run_id, labels = self.labels,
                params = require("orch.fleet").params_in_force(self.events),
                t0_unix = self.t0_wall, description_hash = opts.description_hash,
                report_max_bytes = opts.report_max_bytes })
  end
  -- on disk before any event runs: a startup event that never yields, then
  -- a SIGKILL, still leaves a report that says which run it was
  if self.jsonl then self.jsonl.w:flush() end
  -- resumed after T: the run ends now (the replay done), its grace from
  -- now, not from a T long past (which would cancel the reporter draining
  -- the last results)
  core.set_end(resume and math.max(self.total, core.now()) or self.total)
end

-- run.health (self-metrics, loop lag) and the console's progress.
function Run:attach_health_and_console()
  self.health = require("orch.health").start(self, { self_metrics_sec = self.desc.self_metrics_sec,
                                                     loop_lag_sec = self.opts.loop_lag_sec })
  self.console:start(self)
end

-- The reporter's hooks.deliver: a record that needs the engine, an error
-- or one the --report file does not have yet.  run.queue counts what is
-- taken from it (queue:counts, added up at the end); a reporter over a
-- queue of its own delivers every value, so each is counted here.
function Run:result_hook(own_queue)
  local run = self
  return function(r, written, err)
    if not own_queue then run.results = run.results + 1 end
    if not err and r.level == "error" then
      -- put as a table rather than reported: queue:report flags its own
      err = true
      run.error_results = run.error_results + 1
    end
    if err then
      -- errors count against the event that reported them (summary `errors`)
      local invoker = r.event ~= nil and run.per_event[r.event]
      if invoker then
        invoker.error_results = (invoker.error_results or 0) + 1
        local msgs = invoker.messages
        if msgs == nil then msgs = {}; invoker.messages = msgs end
        if #msgs < 100 then
          local d = r.data
          msgs[#msgs + 1] = "error result: " .. tostring(type(d) == "table" and (d.error or d.message) or d)
        end
      end
      if run.checks then run.checks:error_result(r.event, r.t) end
      if run.checks and run.checks:owns(r.event) then
        run.owned_error_results = run.owned_error_results + 1
      else
        run.failed = true
        if run.opts.fail_fast and not run.stopping then run:stop("fail-fast: error result") end
      end
    end
    -- the record itself, as on_result gets it: {event, level, t, ts, data};
    -- queue:report wrote it already unless the encoder refused its data
    if run.jsonl and not written then run:write_report(r, "result") end
  end
end

-- The reporter task ended (status from core.go): nothing left to stop; a
-- reporter that failed has what is left drained straight to the report.
function Run:reporter_ended(status, err)
  self.reporter_done = true
  core.on_signal(nil)   -- nothing is left to stop: let the loop end
  if self.checks then self.checks:stop_timer() end
  if self.console.stop_timers then self.console:stop_timers() end
  if status ~= "ok" then
    self:internal_error("the reporter stopped: " .. tostring(err))
    -- nothing may be lost: drain what is left straight to the report file
    while true do
      local r, written = self.queue:get_nowait()
      if r == nil then break end
      if self.jsonl and not written then
        self.jsonl:write(type(r) == "table" and { type = "result", t = r.t, ts = r.ts,
          event = r.event, level = r.level, data = r.data } or { type = "result", data = r })
      end
      self.console:result(type(r) == "table" and r or { level = "info", data = r })
    end
    if not self.stopping then self:stop("the reporter stopped") end
  end
end

-- The reporter task: resolve result_reporter (maybe a user fixture), attach
-- the engine's hooks (ResultReporter:attach), then monitor until the queue
-- is closed and drained.
function Run:start_reporter()
  local run = self
  run.reporter_task = core.go(function()
    local reporter = run:value("result_reporter", nil)
    if type(reporter) ~= "table" or type(reporter.monitor) ~= "function" then
      error("the result_reporter fixture must return a ResultReporter (with monitor/on_result), got "
        .. type(reporter), 0)
    end
    local own_queue = reporter.queue == run.queue
    local attach = reporter.attach or require("orch.result_reporter").attach
    attach(reporter, {
      console = run.console,
      deliver = run:result_hook(own_queue),
      on_result_error = function(e) run:internal_error("on_result failed: " .. tostring(e)) end,
    })
    reporter:monitor()
  end, function(_, status, _, err) run:reporter_ended(status, err) end, { id = "reporter" })
end

-- Step 1: the unreferenced setup fixtures in a background task, then the
-- schedule (at once when there are none).
function Run:start_setup()
  local names = self.desc.unref_setup_fixtures
  if #(names or {}) > 0 then
    self.unref_setup = true
    self:background("unref_setup_fixtures", function()
      for _, name in ipairs(names) do self:value(name, nil) end
    end, function(status)
      if status ~= "ok" then self:stop("unref_setup_fixtures failed") else self:start_schedule() end
    end)
  else
    self:start_schedule()
  end
end

-- After the loop: the final counts, checks' end, run_end and the summary.
-- Returns the exit status and the run.
function Run:finish()
  local opts = self.opts
  core.on_signal(nil)
  self.signals_at_end = core.signals()   -- more from here: Run:interrupted
  require("orch.health").close(self.health)
  local taken, taken_errors = self.queue:counts()
  self.results = self.results + taken
  self.error_results = self.error_results + taken_errors
  for _, invoker in pairs(self.per_event) do invoker:close() end
  self.ended = true   -- the figures are final: count keeps its totals
  if os.getenv("ORCHLUA_DEBUG_STATS") then
    -- what the run left alive; the specs assert all zero
    local s = core.stats()
    io.stderr:write(("orchlua-stats: handles=%d tasks=%d refs=%d fast_lines=%d pooled=%d watch_looks=%d\n")
      :format(s.handles, s.tasks, s.refs, s.fast_lines, s.pooled, s.watch_looks))
  end

  if self.checks then self.checks:finish() end
  if opts.before_end then opts.before_end(self) end   -- outputs the status must count (cli: --junit)
  self:interrupted()   -- a signal during them: the exit status says so
  local t_end = core.now()
  self:emit({ type = "run_end", t = t_end, status = self:exit_status(), reason = self.stop_reason,
              invocations = self:count("runs"), failures = self:count("failures"),
              skipped = self:count("skipped"), results = self.results, error_results = self.error_results })
  local status = self:exit_status()
  self.console:summary(self, status)
  return status, self
end

-- A signal since the loop ended, during the final writes (JUnit, HTML),
-- polled: no loop delivers it now.  Its number or nil; the first one is
-- said once and makes the exit status, as a signal during the run does.
-- The writes ask before each output and now and then during the HTML's
-- reading: the one running stops (no file: they are written whole or not
-- at all), those after it are skipped, run_end and the summary follow.
function Run:interrupted()
  local n, signum = core.signals()
  if not self.signals_at_end or n <= self.signals_at_end then return nil end
  if not self.final_signal then
    self.final_signal = signum
    if not self.signal then self.signal, self.signal_at_end = signum, true end
    self.console:phase(signal_name(signum) .. " during the final writes: stopping them")
  end
  return signum
end

-- An output the final writes left out for a signal (Run:interrupted):
-- flag ("--junit", "--html") and path; the summary does not list it.
function Run:output_interrupted(flag, path, hint)
  self.unwritten = self.unwritten or {}
  self.unwritten[flag] = true
  self.console:phase(("%s %s not written%s"):format(flag, path, hint or ""))
end

-- An event's figures at the end of the run (invoker:summary()): made for
-- each asker and not kept, so that the end of a run of 10,000 events does
-- not hold 10,000 of them at once.
function Run:summary_of(id)
  return self.per_event[id]:summary()
end

-- The total of a counter over the events; once the run has ended, the
-- four totals in one pass, kept.
function Run:count(field)
  if self.ended then
    if not self.totals then
      local t = { runs = 0, failures = 0, skipped = 0, timeouts = 0 }
      for _, invoker in pairs(self.per_event) do
        t.runs, t.failures = t.runs + invoker.runs, t.failures + invoker.failures
        t.skipped, t.timeouts = t.skipped + invoker.skipped, t.timeouts + invoker.timeouts
      end
      self.totals = t
    end
    return self.totals[field]
  end
  local n = 0
  for _, invoker in pairs(self.per_event) do n = n + invoker[field] end
  return n
end

function Run:exit_status()
  if self.signal then return 128 + self.signal end
  if self.failed or self.error_results > self.owned_error_results then return 1 end
  if self.checks and self.checks:failed() then return 1 end
  return 0
end

M.Run = Run
M.resolve = resolve
return M
