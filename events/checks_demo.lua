-- events/checks_demo.lua: the events of descriptions/checks_demo.json, a
-- soak that judges itself: a streamer's latency, its memory (a leak would
-- show as a slope) and a server that chaos kills three times.
local M = {}

-- a small deterministic generator: the demo passes on every run
local seed = 42
local function noise()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648 * 2 - 1
end

-- latency around 120 ms, memory flat around 300 MB with noise
function M.stream_probe(result_reporter)
  result_reporter:metric("latency_ms", 120 + 30 * noise(), { stream = "main" })
  result_reporter:metric("rss_mb", 300 + 5 * noise(), { proc = "streamer" })
end

-- the chaos monkey: kills the server at its 2nd, 4th and 6th pass (the
-- server's supervisor reports each death as an error result)
function M.chaos(event, result_reporter)
  if event.iteration == 2 or event.iteration == 4 or event.iteration == 6 then
    result_reporter:error("server killed by chaos", { pass = event.iteration })
  end
end

return M
