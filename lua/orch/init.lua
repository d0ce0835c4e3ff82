-- orch: what events and fixtures use (require "orch").
--
-- Helpers that wait (sleep, process waits) need the orchlua host's loop;
-- outside it (plain lua5.4, busted) they raise a clear error, while
-- description loading, plan and ResultReporter work anywhere.
local registry = require "orch.registry"

local M = {}

local core = require("orch.host").core
local host = require("orch.host").need

M.fixture = registry.fixture
M.ResultReporter = require "orch.result_reporter"

-- orch.sleep(sec): yields the calling event; description time.
function M.sleep(sec)
  return host("sleep").sleep(sec)
end

-- orch.now(): seconds since t0, description time.  Under the host it is
-- core.now itself: events and reporters read the clock per result.
function M.now()
  return host("now").now()
end
if core then M.now = core.now end

-- orch.time_scale(): --time-scale (1 without it).  Description seconds
-- times it are real seconds' worth of schedule; helpers use it to keep
-- bounds on real work (back-offs, uptimes) in real time.
function M.time_scale()
  return host("time_scale").time_scale()
end

-- orch.log: console lines tagged with the calling event, through the sink
-- the host sets for the run (orch.set_log_sink); stderr without one.
local log_sink = nil

-- orch.set_log_sink(fn): fn(level, msg) takes orch.log's lines (nil: stderr).
function M.set_log_sink(fn)
  if fn ~= nil and type(fn) ~= "function" then
    error("orch.set_log_sink: a function or nil expected, got " .. type(fn), 2)
  end
  log_sink = fn
end

M.log = {}
for _, level in ipairs({ "debug", "info", "warn", "error" }) do
  M.log[level] = function(...)
    local n = select("#", ...)
    local parts = {}
    for i = 1, n do parts[i] = tostring((select(i, ...))) end
    local msg = table.concat(parts, " ")
    if log_sink then return log_sink(level, msg) end
    io.stderr:write(level, ": ", msg, "\n")
  end
end

-- orch.on_abandon(argv): an undo action (an argv list, "SIGCONT the process
-- I stopped", "remove the netem rule I added") that orchlua's guardian runs
-- if orchlua dies without finishing (SIGKILL, the OOM killer); a run that
-- ends in order runs none (its finalisers undo).  guardian.c
function M.on_abandon(argv)
  return host("on_abandon").on_abandon(argv)
end
if core then M.on_abandon = core.on_abandon end  -- errors name the caller's line

M.spawn = function(...) return require("orch.process").spawn(...) end
M.exec = function(...) return require("orch.process").exec(...) end
setmetatable(M, { __index = function(t, k) if k == "sys" then t.sys = require "orch.sys"; return t.sys end end })
M.net = setmetatable({}, { __index = function(_, k) return require("orch.net")[k] end }) -- TCP, loaded on first use

M.version = "0.1.0"
return M
