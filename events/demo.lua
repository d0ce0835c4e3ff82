-- events/demo.lua: the demo description's events.
local orch = require "orch"

local M = {}

orch.fixture("counter", function()
  local c = { n = 0 }
  return c, function() orch.log.info(("counter finalised at %d"):format(c.n)) end
end)

orch.fixture("scratch", { scope = "invocation" }, function(event)
  return { made_for = event.id .. "#" .. event.iteration }
end)

function M.heartbeat(counter, result_reporter)
  counter.n = counter.n + 1
  result_reporter:metric("heartbeat", counter.n)
end

function M.slow_check(scratch, seconds, result_reporter)
  orch.sleep(seconds)
  result_reporter:info("check done", { scratch = scratch.made_for })
end

function M.final_report(counter, result_reporter)
  result_reporter:add_result({ heartbeats = counter.n })
end

return M
