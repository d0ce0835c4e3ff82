-- orch.result_reporter: ResultReporter, as in the seed.  Events report through
-- add_result/info/error/metric; monitor() runs as the reporter task and
-- hands each queued record to on_result.  The engine sees every record
-- before on_result (for the --report file and the counts), so a custom
-- on_result cannot lose one.
local class = require("orch.class").class
local core = require("orch.host").core

local ResultReporter = class()

local function now()
  return core and core.now() or 0
end

local function need_host(what)
  if not core then error(what .. " needs the orchlua host (run it with orchlua)", 3) end
end

function ResultReporter:init(report_queue)
  if report_queue == nil then error("ResultReporter.new: report_queue expected", 3) end
  self.queue = report_queue
end

-- The event reporting: the running invocation's id, when there is one.
local function current_event()
  local inv = core and core.current()
  if type(inv) == "table" then return inv.id end
  return inv
end


local stamp = core and core.stamp or function() return 0, os.date("!%Y-%m-%dT%H:%M:%SZ") end

-- Queues a record {event, level, t, ts, data}.
function ResultReporter:put(level, data)
  local q = self.queue
  if q.report then return q:report(level, data) end  -- the host's queue builds it in C
  local t, ts = stamp()
  q:put({ event = current_event(), level = level, t = t, ts = ts, data = data })
end

-- add_result(value): a table with an `error` field is an error result.
function ResultReporter:add_result(value)
  local q = self.queue
  local level = type(value) == "table" and rawget(value, "error") ~= nil and "error" or "info"
  if q.report then return q:report(level, value) end
  return self:put(level, value)
end
-- In the host, the same in C for a reporter over the host's queue (the
-- hot path of a chatty event); any other queue goes to the method above.
if core and core.queue_add_result then
  ResultReporter.add_result = core.queue_add_result(ResultReporter.add_result)
end

function ResultReporter:info(msg, fields)
  local data = { message = msg }
  if fields then for k, v in pairs(fields) do data[k] = v end end
  self:put("info", data)
end

function ResultReporter:error(msg, fields)
  local data = { message = msg, error = msg }
  if fields then for k, v in pairs(fields) do data[k] = v end end
  self:put("error", data)
end

function ResultReporter:metric(name, value, fields)
  if type(name) ~= "string" then error("metric: name must be a string", 2) end
  if type(value) ~= "number" then
    error(("metric %q: value must be a number, got %s"):format(name, type(value)), 2)
  end
  self:put("metric", { metric = name, value = value, fields = fields })
end

-- attach(hooks): the engine's hooks, kept as self.hooks, before monitor:
-- hooks.console (what the default on_result prints on), hooks.deliver(r,
-- written, err) (a record that needs the engine: an error, a line not yet
-- in the --report file), hooks.on_result_error(e, r) (on_result raised).
-- The engine calls ResultReporter.attach on a reporter without the method.
function ResultReporter:attach(hooks)
  self.hooks = hooks
end

-- Runs as the reporter task until the queue is closed and empty.
function ResultReporter:monitor()
  need_host("ResultReporter:monitor")
  local hooks = self.hooks or {}
  local q, deliver, on_error = self.queue, hooks.deliver, hooks.on_result_error
  -- the host's queue hands the records that need nothing from the engine
  -- to on_result itself, in C (queue:deliver); get takes the others
  local in_c = type(q) == "userdata" and q.deliver ~= nil
  while true do
    if in_c then q:deliver(self.on_result, self, on_error) end
    -- written: the --report file has its line; err: an error record
    local r, written, err = q:get()
    if r == nil then return end
    if not written or err then
      if type(r) ~= "table" then
        -- a string pushed by C code on another thread
        local t = now()
        r = { event = nil, level = "info", t = t, ts = core.ts(t), data = r }
      end
      if deliver then deliver(r, written, err) end
    end
    local ok, e = pcall(self.on_result, self, r)
    if not ok and on_error then on_error(e, r) end
  end
end

-- The default on_result prints the record; the engine already wrote it to
-- the --report file.
function ResultReporter:on_result(result)
  local hooks = self.hooks
  local console = hooks and hooks.console
  if console then console:result(result) end
end

return ResultReporter
