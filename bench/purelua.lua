-- bench/purelua.lua: the pure-Lua baseline.  The scheduler a Lua user
-- would write on luv in an afternoon, doing the work orchlua does for the
-- benchmark workloads: fixed-rate timers anchored at t0, a coroutine per
-- invocation, parameters injected by name, fixtures, a kill switch, a Lua
-- table as the report queue drained by a reporter coroutine into
-- on_result, and cjson lines into a JSONL file flushed before the loop
-- waits.  It is written plainly: no engine tricks, no C.
--
--   lua5.4 bench/purelua.lua DESC.json --sources A.lua[,B.lua] [--report FILE]
--          [--time-scale X] [--hours H] [--grace S] [-q]
--
-- Event sources run unchanged: `require "orch"` gets a small shim with
-- fixture, sleep, now, log, spawn and ResultReporter.
local uv = require "luv"
local cjson = require "cjson"

-- ---- arguments -------------------------------------------------------------

local opts = { sources = {}, scale = 1, grace = 10, quiet = false }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--sources" then
      i = i + 1
      for s in arg[i]:gmatch("[^,]+") do opts.sources[#opts.sources + 1] = s end
    elseif a == "--report" then i = i + 1; opts.report = arg[i]
    elseif a == "--time-scale" then i = i + 1; opts.scale = tonumber(arg[i])
    elseif a == "--hours" then i = i + 1; opts.hours = tonumber(arg[i])
    elseif a == "--grace" then i = i + 1; opts.grace = tonumber(arg[i])
    elseif a == "-q" then opts.quiet = true
    else opts.desc = a end
    i = i + 1
  end
  if not opts.desc or #opts.sources == 0 then
    io.stderr:write("usage: purelua.lua DESC.json --sources A.lua[,B.lua] [--report FILE] ",
      "[--time-scale X] [--hours H] [--grace S] [-q]\n")
    os.exit(2)
  end
end

-- ---- the description: JSON with // and /* */ comments ---------------------

local function strip_comments(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == '"' then
      local j = i + 1
      while j <= n do
        local d = s:sub(j, j)
        if d == "\\" then j = j + 2
        elseif d == '"' then break
        else j = j + 1 end
      end
      out[#out + 1] = s:sub(i, j)
      i = j + 1
    elseif s:sub(i, i + 1) == "//" then
      i = (s:find("\n", i, true) or n + 1)
    elseif s:sub(i, i + 1) == "/*" then
      i = (select(2, s:find("*/", i + 2, true)) or n) + 1
    else
      local j = s:find('[/"]', i) or n + 1
      out[#out + 1] = s:sub(i, j - 1)
      i = j
      if j <= n and s:sub(j, j) == "/" and not s:sub(j, j + 1):match("^/[/*]") then
        out[#out + 1] = "/"
        i = j + 1
      end
    end
  end
  return table.concat(out)
end

local desc
do
  local f = assert(io.open(opts.desc, "r"))
  desc = cjson.decode(strip_comments(f:read("a")))
  f:close()
end

-- ---- time ------------------------------------------------------------------

local scale = opts.scale
local t0_ns, t0_wall
local function now() return (uv.hrtime() - t0_ns) / 1e9 * scale end
local function real_ms(desc_sec) return math.floor(desc_sec * 1000 / scale + 0.5) end
local function iso(t)
  local w = t0_wall + t / scale
  local s = math.floor(w)
  local ms = math.floor((w - s) * 1000)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", ms)
end

-- ---- the report file ---------------------------------------------------------

local report, dirty = nil, false
if opts.report then
  report = assert(io.open(opts.report, "w"))
  report:setvbuf("full", 65536)
end

local function emit(rec)
  if not report then return end
  rec.t = rec.t or now()
  rec.ts = iso(rec.t)
  report:write(cjson.encode(rec), "\n")
  dirty = true
end

-- ---- tasks: a coroutine each, resumed from loop callbacks -------------------

local current            -- the task running now
local ready = {}         -- tasks to resume from the idle pass, with a value
local idle = uv.new_idle()

local function resume(task, value)
  local prev = current
  current = task
  local ok, err = coroutine.resume(task.co, value)
  current = prev
  if coroutine.status(task.co) == "dead" then task:finish(ok, err) end
end

local function run_ready()
  local batch = ready
  ready = {}
  for i = 1, #batch, 2 do resume(batch[i], batch[i + 1]) end
  if #ready == 0 and not idle:is_closing() then idle:stop() end
end

local function wake(task, value)
  local n = #ready
  if n == 0 and not idle:is_closing() then idle:start(run_ready) end
  if value == nil then value = false end
  ready[n + 1] = task
  ready[n + 2] = value
end

local Task = {}
Task.__index = Task
local function go(fn, on_done, ...)
  local args = table.pack(...)
  local task = setmetatable({ on_done = on_done }, Task)
  task.co = coroutine.create(function() return fn(table.unpack(args, 1, args.n)) end)
  return task
end
function Task:finish(ok, err)
  if self.timer then self.timer:close(); self.timer = nil end
  self.done = true
  if not ok then err = debug.traceback(self.co, tostring(err)) end
  self.on_done(self, ok, err)
end

-- yields the running task for sec (description seconds)
local function sleep(sec)
  local task = current
  if sec <= 0 then
    wake(task)
    return coroutine.yield()
  end
  if not task.timer then task.timer = uv.new_timer() end
  task.timer:start(real_ms(sec), 0, function() resume(task) end)
  return coroutine.yield()
end

-- ---- the kill switch and the report queue -------------------------------------

local KillSwitch = {}
KillSwitch.__index = KillSwitch
function KillSwitch:is_set() return self.on end
function KillSwitch:wait(timeout)
  if self.on then return true end
  local task = current
  self.waiters[task] = true
  if timeout then
    if not task.timer then task.timer = uv.new_timer() end
    task.timer:start(real_ms(timeout), 0, function()
      if self.waiters[task] then self.waiters[task] = nil; resume(task, false) end
    end)
  end
  return coroutine.yield()
end

local run -- forward: the run's state
function KillSwitch:set()
  if self.on then return end
  self.on = true
  for task in pairs(self.waiters) do
    if task.timer then task.timer:stop() end
    wake(task, true)
  end
  self.waiters = {}
  if run and not run.stopping then run.stop("kill switch set") end
end

local Queue = {}
Queue.__index = Queue
local function new_queue() return setmetatable({ items = {}, head = 1, tail = 1 }, Queue) end
function Queue:put(v)
  if self.closed then error("report_queue is closed", 2) end
  local g = self.getter
  if g then
    self.getter = nil
    wake(g, v)
  else
    self.items[self.tail] = v
    self.tail = self.tail + 1
  end
end
function Queue:get_nowait()
  if self.head < self.tail then
    local v = self.items[self.head]
    self.items[self.head] = nil
    self.head = self.head + 1
    return v
  end
end
function Queue:get()
  local v = self:get_nowait()
  if v ~= nil or self.closed then return v end
  self.getter = current
  return coroutine.yield()
end
function Queue:size() return self.tail - self.head end
function Queue:close()
  self.closed = true
  if self.getter then
    local g = self.getter
    self.getter = nil
    wake(g, false)
  end
end

-- ---- the orch shim: what event sources require --------------------------------

local fixtures_def = {}
local processes = {}

local function class(base)
  local cls = {}
  cls.__index = cls
  if base then setmetatable(cls, { __index = base }) end
  function cls.new(...)
    local self = setmetatable({}, cls)
    if self.init then self:init(...) end
    return self
  end
  function cls:extend() return class(self) end
  return cls
end

local ResultReporter = class()
function ResultReporter:init(queue) self.queue = queue end

local function current_event()
  return current and current.inv and current.inv.id or nil
end

function ResultReporter:put(level, data)
  local t = now()
  self.queue:put({ event = current_event(), level = level, t = t, ts = iso(t), data = data })
end
function ResultReporter:add_result(v)
  self:put(type(v) == "table" and v.error ~= nil and "error" or "info", v)
end
function ResultReporter:info(msg, fields)
  local data = { message = msg }
  for k, v in pairs(fields or {}) do data[k] = v end
  self:put("info", data)
end
function ResultReporter:error(msg, fields)
  local data = { message = msg, error = msg }
  for k, v in pairs(fields or {}) do data[k] = v end
  self:put("error", data)
end
function ResultReporter:metric(name, value, fields)
  self:put("metric", { metric = name, value = value, fields = fields })
end
function ResultReporter:on_result(r)
  if not opts.quiet then print(r.event, r.level, cjson.encode(r.data)) end
end
function ResultReporter:monitor()
  local q = self.queue
  while true do
    local r = q:get()
    if not r then return end
    run.results = run.results + 1
    emit({ type = "result", t = r.t, event = r.event, level = r.level, data = r.data })
    local ok, e = pcall(self.on_result, self, r)
    if not ok then io.stderr:write("on_result: ", tostring(e), "\n") end
  end
end

local Process = {}
Process.__index = Process
function Process:is_running() return self.code == nil end
function Process:wait(timeout)
  if self.code then return self.code, self.signal end
  local task = current
  self.waiter = task
  if timeout then
    if not task.timer then task.timer = uv.new_timer() end
    task.timer:start(real_ms(timeout), 0, function()
      if self.waiter == task then self.waiter = nil; resume(task, "timeout") end
    end)
  end
  if coroutine.yield() == "timeout" then return nil, "timeout" end
  return self.code, self.signal
end
function Process:kill(sig) if self.code == nil then uv.kill(-self.pid, sig or "sigterm") end end
function Process:terminate() self:kill("sigterm") end
function Process:write(...) if self.stdin then self.stdin:write(table.concat({ ... })) end end
function Process:close_stdin()
  if self.stdin and not self.stdin:is_closing() then self.stdin:close() end
end

-- A pipe read line by line into fn(line).
local function line_reader(pipe, fn)
  local buf = ""
  pipe:read_start(function(_, data)  -- a read error ends like EOF: data is nil
    if data then
      buf = buf .. data
      while true do
        local line, rest = buf:match("^([^\n]*)\n(.*)$")
        if not line then break end
        buf = rest
        if fn then pcall(fn, line) end
      end
    else
      if buf ~= "" and fn then pcall(fn, buf) end
      buf = ""
      if not pipe:is_closing() then pipe:close() end
    end
  end)
end

local function spawn(o)
  local p = setmetatable({}, Process)
  local stdin = o.stdin and uv.new_pipe(false) or nil
  local out, err = uv.new_pipe(false), uv.new_pipe(false)
  local env
  if o.env then
    env = {}
    for k, v in pairs(o.env) do env[#env + 1] = k .. "=" .. v end
  end
  local handle, pid = uv.spawn(o.cmd[1], { args = { table.unpack(o.cmd, 2) }, cwd = o.cwd, env = env,
                                           stdio = { stdin, out, err }, detached = true },
    function(code, sig)
      p.code, p.signal = code, sig
      p.handle:close()
      p:close_stdin()
      processes[p] = nil
      local w = p.waiter
      p.waiter = nil
      if w then
        if w.timer then w.timer:stop() end
        wake(w)
      end
      if run then run.progress() end
    end)
  if not handle then
    for _, h in ipairs({ stdin, out, err }) do if h then h:close() end end
    error(("orch.spawn: cannot run %q: %s"):format(o.cmd[1], tostring(pid)), 2)
  end
  p.handle, p.pid, p.stdin = handle, pid, stdin
  line_reader(out, o.on_stdout)
  line_reader(err, o.on_stderr)
  processes[p] = true
  return p
end

local function param_names(fn)
  local info = debug.getinfo(fn, "u")
  local names = {}
  for i = 1, info.nparams do names[i] = debug.getlocal(fn, i) end
  return names
end

local orch = {
  ResultReporter = ResultReporter,
  now = function() return now() end,
  sleep = sleep,
  spawn = spawn,
  sys = {
    memory = function() return { available = uv.get_free_memory(), total = uv.get_total_memory() } end,
    loadavg = function() return uv.loadavg() end,
  },
  log = {},
  fixture = function(name, o, fn)
    if fn == nil then o, fn = {}, o end
    if not fixtures_def[name] then
      fixtures_def[name] = { name = name, fn = fn, scope = o.scope or "run", params = param_names(fn) }
    end
  end,
}
for _, level in ipairs({ "debug", "info", "warn", "error" }) do
  orch.log[level] = function(...)
    if not opts.quiet then print(level, ...) end
  end
end
package.preload["orch"] = function() return orch end
package.preload["orch.core"] = function() return { hrtime = uv.hrtime } end

-- ---- sources -----------------------------------------------------------------------

local event_fns = {}
for _, path in ipairs(opts.sources) do
  local env = setmetatable({}, { __index = _G })
  local chunk = assert(loadfile(path, "t", env))
  for name, fn in pairs(chunk() or {}) do
    if type(fn) == "function" and not event_fns[name] then event_fns[name] = fn end
  end
end

-- ---- the run ---------------------------------------------------------------------

run = { results = 0, invocations = 0, skipped = 0, failures = 0, running = 0,
        fixtures = {}, created = {}, tickers = {}, teardown = 0 }
local total = (opts.hours or desc.total_hours) * 3600
local kill_switch = setmetatable({ waiters = {} }, KillSwitch)
local queue = new_queue()
local builtins = { kill_switch = kill_switch, report_queue = queue, description = desc,
                   log = orch.log }

local value
local function setup(def, inv)
  local args = {}
  for i, n in ipairs(def.params) do args[i] = value(n, inv) end
  return def.fn(table.unpack(args, 1, #def.params))
end

fixtures_def.result_reporter = fixtures_def.result_reporter or {
  name = "result_reporter", scope = "run", params = { "report_queue" },
  fn = function(q) return ResultReporter.new(q) end,
}

function value(name, inv)
  local params = inv and inv.ev.params
  if params and params[name] ~= nil then return params[name] end
  local def = fixtures_def[name]
  if def then
    if def.scope == "invocation" and inv then
      inv.fixtures = inv.fixtures or {}
      local got = inv.fixtures[name]
      if not got then
        local v, fin = setup(def, inv)
        got = { value = v, fin = fin }
        inv.fixtures[name] = got
      end
      return got.value
    end
    local f = run.fixtures[name]
    if not f then
      local v, fin = setup(def, inv)
      f = { name = name, value = v, fin = fin }
      run.fixtures[name] = f
      run.created[#run.created + 1] = f
    end
    return f.value
  end
  local b = builtins[name]
  if b ~= nil then return b end
  if name == "event" then return inv and inv.event_info end
  if name == "params" then return params or {} end
  error(("%q is not a param, a fixture or a built-in"):format(name))
end

local function invoke(inv)
  local ev = inv.ev
  local args = {}
  for i = 1, #ev.names do args[i] = value(ev.names[i], inv) end
  ev.fn(table.unpack(args, 1, #ev.names))
end

local function done(task, ok, err)
  local inv = task.inv
  local ev = inv.ev
  ev.running = ev.running - 1
  run.running = run.running - 1
  run.invocations = run.invocations + 1
  local t = now()
  if not ok then run.failures = run.failures + 1 end
  emit({ type = "invocation", t = t, event = ev.name, id = ev.id, iteration = inv.iteration,
         phase = inv.phase, scheduled = inv.scheduled, started = inv.started,
         duration = t - inv.started, lateness = inv.late_ns / 1e9 * scale,
         status = ok and "ok" or "error", error = (not ok) and err or nil })
  if not ok and not opts.quiet then io.stderr:write(err, "\n") end
  if inv.fixtures then
    for _, f in pairs(inv.fixtures) do if f.fin then pcall(f.fin) end end
  end
  if inv.phase == "teardown" then run.teardown = run.teardown - 1 end
  run.progress()
end

local function fire(ev, phase, k, scheduled, late_ns)
  if run.stopping and phase ~= "teardown" then return end
  if ev.running > 0 and (ev.concurrency or "forbid") == "forbid" then
    run.skipped = run.skipped + 1
    emit({ type = "skipped", event = ev.name, id = ev.id, iteration = k, phase = phase,
           scheduled = scheduled, reason = "previous invocation still running" })
    return
  end
  local inv = { ev = ev, id = ev.id, phase = phase, iteration = k, scheduled = scheduled,
                late_ns = late_ns, started = now() }
  inv.event_info = { name = ev.name, id = ev.id, iteration = k, phase = phase, scheduled = scheduled }
  local task = go(invoke, done, inv)
  task.inv = inv
  if not run.first_fired then
    -- a marker for the startup benchmark: the report's first bytes are on
    -- disk by the first invocation's start (orchlua flushes its run_start
    -- at t0, just before the loop pass that fires its startup events)
    run.first_fired = true
    if report then report:flush() end
  end
  ev.running = ev.running + 1
  run.running = run.running + 1
  resume(task)
  return task
end

local function last_k(interval)
  local k = math.floor(total / interval)
  while k > 0 and k * interval >= total do k = k - 1 end
  while (k + 1) * interval < total do k = k + 1 end
  return k
end

-- A fixed-rate timer: firing k is due at t0 + k*interval, never drifting.
local function ticker(interval, first, last, cb)
  local interval_ns = interval * 1e9 / scale
  local k = first
  local timer = uv.new_timer()
  local function due(j) return t0_ns + math.floor(j * interval_ns + 0.5) end
  local on_tick
  local function arm()
    local due_ms = (due(k) + 999999) // 1000000
    local now_ms = uv.now()
    timer:start(due_ms > now_ms and due_ms - now_ms or 0, 0, on_tick)
  end
  function on_tick()
    local t = uv.hrtime()
    while k <= last do
      local j = k
      local missed = j < last and t >= due(j + 1)
      k = k + 1
      cb(j, t - due(j), missed)
      if not missed then break end
    end
    if timer:is_closing() then return end
    if k <= last then arm() elseif not timer:is_closing() then timer:close() end
  end
  arm()
  return timer
end

local function close_all_tickers()
  for _, t in ipairs(run.tickers) do if not t:is_closing() then t:close() end end
  run.tickers = {}
end

local events = {}
for i, e in ipairs(desc.events) do
  local fn = assert(event_fns[e.name], "no event " .. e.name)
  events[i] = { name = e.name, id = e.id or e.name, fn = fn, names = param_names(fn),
                params = e.params or {}, interval = e.interval_sec or (e.interval_min and e.interval_min * 60)
                  or (e.interval_hour and e.interval_hour * 3600),
                at_startup = e.at_startup ~= false, at_teardown = e.at_teardown == true,
                concurrency = e.concurrency, running = 0 }
end

local prepare = uv.new_prepare()
local grace_timer

local function finish_run()
  emit({ type = "run_end", invocations = run.invocations, failures = run.failures,
         skipped = run.skipped, results = run.results })
  if report then report:close(); report = nil end
  if not prepare:is_closing() then prepare:close() end
  if not idle:is_closing() then idle:close() end
  if grace_timer and not grace_timer:is_closing() then grace_timer:close() end
end

function run.progress()
  if not run.stopping or run.finished then return end
  if not run.killed and run.teardown == 0 then
    run.killed = true
    kill_switch:set()
    if run.running > 0 then
      grace_timer = uv.new_timer()
      grace_timer:start(real_ms(opts.grace), 0, function() run.running = 0; run.progress() end)
    end
  end
  if run.killed and run.running == 0 and not run.finalised then
    run.finalised = true
    -- finalisers may wait (a process, a sleep): they run in a task of their own
    local fin_task = go(function()
      for i = #run.created, 1, -1 do
        local f = run.created[i]
        if f.fin and f.name ~= "result_reporter" then
          local ok, e = pcall(f.fin)
          if not ok then io.stderr:write("finaliser ", f.name, ": ", tostring(e), "\n") end
        end
      end
    end, function(_, ok, e)
      if not ok then io.stderr:write("finalisers: ", tostring(e), "\n") end
      -- spawned processes never outlive the run
      for p in pairs(processes) do uv.kill(-p.pid, "sigterm") end
      queue:close()
    end)
    wake(fin_task)
  end
  if run.finalised and run.reporter_done and next(processes) == nil and not run.finished then
    run.finished = true
    finish_run()
  end
end

function run.stop(reason)
  if run.stopping then return end
  run.stopping = true
  run.stop_reason = reason
  close_all_tickers()
  if run.end_timer and not run.end_timer:is_closing() then run.end_timer:close() end
  for _, ev in ipairs(events) do
    if ev.at_teardown then
      local last = ev.interval and last_k(ev.interval) or 0
      run.teardown = run.teardown + 1
      if not fire(ev, "teardown", last + 1, total, 0) then run.teardown = run.teardown - 1 end
    end
  end
  run.progress()
end

-- start -----------------------------------------------------------------------------

uv.update_time()
t0_ns = uv.hrtime()
do
  local s, us = uv.gettimeofday()
  t0_wall = s + us / 1e6
end
prepare:start(function()
  if dirty and report then report:flush() end
  dirty = false
end)
uv.unref(prepare)
emit({ type = "run_start", t = 0, test_name = desc.test_name, total_hours = total / 3600,
       time_scale = scale, events = #events })

local reporter_task = go(function()
  local reporter = value("result_reporter", nil)
  reporter:monitor()
end, function(_, ok, err)
  if not ok then io.stderr:write("reporter: ", tostring(err), "\n") end
  run.reporter_done = true
  run.progress()
end)
wake(reporter_task)

local function start_schedule()
  for _, ev in ipairs(events) do
    if ev.at_startup then fire(ev, "startup", 0, 0, uv.hrtime() - t0_ns) end
  end
  if run.stopping then return end -- a startup event ended the run already
  for _, ev in ipairs(events) do
    if ev.interval then
      local last = last_k(ev.interval)
      if last >= 1 then
        local interval = ev.interval
        run.tickers[#run.tickers + 1] = ticker(interval, 1, last, function(k, late_ns, missed)
          if missed then
            run.skipped = run.skipped + 1
            emit({ type = "skipped", event = ev.name, id = ev.id, iteration = k, phase = "interval",
                   scheduled = k * interval, reason = "missed: the loop was blocked past the next firing" })
          else
            fire(ev, "interval", k, k * interval, late_ns)
          end
        end)
      end
    end
  end
  run.end_timer = ticker(total, 1, 1, function() run.stop("end of run") end)
end

if #(desc.unref_setup_fixtures or {}) > 0 then
  local setup_task = go(function()
    for _, name in ipairs(desc.unref_setup_fixtures) do value(name, nil) end
  end, function(_, ok, err)
    if not ok then io.stderr:write("setup: ", tostring(err), "\n") end
    start_schedule()
  end)
  wake(setup_task)
else
  start_schedule()
end

uv.run()
for p in pairs(processes) do uv.kill(-p.pid, "sigkill") end
print(("purelua: %d invocations, %d skipped, %d results, %d failures"):format(
  run.invocations, run.skipped, run.results, run.failures))
os.exit(run.failures == 0 and 0 or 1)
