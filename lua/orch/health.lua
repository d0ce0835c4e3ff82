-- orch.health: orchlua watching itself while a run goes on.
--
--   * orchlua.self.* metrics every `self_metrics_sec` of description time
--     (a description key; none without it), on a grid anchored at t0 like an
--     event's, so a rehearsal has the samples of the real run: rss and
--     lua_heap (bytes), fds, timers (libuv handles alive), queue (results
--     waiting for the reporter), loop_lag (how late this very sample
--     fired, real seconds).  Checks judge them like any metric
--     (slope_per_hour on orchlua.self.rss: a leak of orchlua's own).
--   * clock_step records: the schedule and `ts` follow the monotonic clock
--     (ts = t0's wall time + elapsed); every real second the wall clock is
--     compared with it, and a step of more than CLOCK_STEP_SEC (NTP after a
--     power cut, a VM resumed) is written down, so that ts stays
--     explainable against the host's logs.
--   * loop_lag results: an invocation that held the loop longer than
--     `loop_lag_sec` (.orchlua, default 1 real second; 0: off) in one go,
--     found by the watchdog thread (sched.c), reported against its event.
local core = require "orch.core"

local M = {}

local CLOCK_STEP_SEC = 1

-- Starts watching run; returns the handle stop() takes.
function M.start(run, opts)
  local h = { run = run }
  local scale = run.scale
  -- the wall clock's offset from ts's clock at t0
  local function offset() return core.wall() - (run.t0_wall + core.now() / scale) end
  local base = offset()
  h.clock = core.timer(function()
    local off = offset()
    local step = off - base
    if math.abs(step) >= CLOCK_STEP_SEC then
      base = off
      run:emit({ type = "clock_step", step = step, wall = core.iso8601(core.wall()) })
    end
    h.clock:start(scale)   -- one real second
  end)
  h.clock:start(scale)

  local period = opts.self_metrics_sec
  if period and run.queue.report then
    local pid = require("orch.sys").pid()
    local function put(name, value) run.queue:report("metric", { metric = "orchlua.self." .. name, value = value }) end
    local last = require("orch.plan").last_k(period, run.total)
    h.ticker = last >= 1 and core.ticker(period, 1, last, function(_, late_ns)
      local me = require("orch.sys").process(pid) or {}
      put("rss", me.rss or 0)
      put("lua_heap", math.floor(collectgarbage("count") * 1024))
      put("fds", me.fds or 0)
      put("timers", core.stats().handles)
      put("queue", run.queue:size())
      put("loop_lag", late_ns / 1e9)
    end)
  end

  local lag = opts.loop_lag_sec or 1
  if lag > 0 then
    core.on_loop_lag(lag, function(tag, held)
      core.set_context(tag)
      run.queue:report("warn", { loop_lag = held, limit = lag,
        message = ("held the loop %.2fs in one go (more than loop_lag_sec %gs): no other event ran meanwhile")
          :format(held, lag) })
      core.set_context(nil)
    end)
  end
  return h
end

-- Stops the timers (at the stop of the run: nothing fires after T).
function M.stop(h)
  if not h or h.stopped then return end
  h.stopped = true
  h.clock:close()
  if h.ticker then h.ticker:close() end
end

-- After the loop: the loop-lag callback goes (no ref is left behind).
function M.close(h)
  M.stop(h)
  core.on_loop_lag(0, nil)
end

return M
