-- bench/events/spawn.lua: workload 6, stopping a run while its event still
-- has n spawned processes running (`sleep 9999.25`, a marker the harness
-- looks for afterwards).  spawn_probe tells whether orch.spawn exists.
local orch = require "orch"

local M = {}

function M.spawn_probe()
  local p = assert(orch.spawn({ cmd = { "true" } }))
  p:wait()
end

-- Spawns n processes, writes {t0_mono_ms, spawn_s} to $BENCH_SUMMARY, then
-- waits for the kill switch and returns, leaving them to the engine.
function M.spawner(n, kill_switch)
  local core = require "orch.core"
  local t_ns = core.hrtime()
  local t0_mono_ms = t_ns / 1e6 - orch.now() * 1000
  for _ = 1, n do assert(orch.spawn({ cmd = { "sleep", "9999.25" } })) end
  local path = os.getenv("BENCH_SUMMARY")
  if path then
    local f = assert(io.open(path, "w"))
    f:write(('{"kind":"spawn","n":%d,"t0_mono_ms":%.3f,"spawn_s":%.6f}\n'):format(
      n, t0_mono_ms, (core.hrtime() - t_ns) / 1e9))
    f:close()
  end
  kill_switch:wait()
end

return M
