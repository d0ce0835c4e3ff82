-- bench/prof/vmcount.lua: counts the Lua VM instructions the engine runs
-- on the main thread (ticker callbacks, done callbacks: Run:fire, Run:done,
-- emit, the JSONL writer, Stats, ...) per function, with a count hook of
-- 1.  Load it as a source before the events; the run fixture `vm_count`
-- (list it in unref_setup_fixtures) starts the count and writes the table
-- when the run ends, per invocation ($BENCH_VM_INVOCATIONS).
-- Coroutines (the tasks) keep the engine's own hook: their Lua is not
-- counted here.
local orch = require "orch"

local counts = {}
local getinfo = debug.getinfo

local function hook()
  local info = getinfo(2, "S")
  local key = info.short_src .. ":" .. (info.linedefined or 0)
  counts[key] = (counts[key] or 0) + 1
end

local function name_of(key)
  return key
end

-- sources load on the main thread: the hook goes there
debug.sethook(hook, "", 1)

orch.fixture("vm_count", function()
  counts = {} -- the run starts here: forget the loading
  return true, function()
    local snapshot = counts
    counts = {}
    local invocations = tonumber(os.getenv("BENCH_VM_INVOCATIONS") or "1")
    local keys, total = {}, 0
    counts = snapshot
    for k, n in pairs(counts) do keys[#keys + 1] = k; total = total + n end
    table.sort(keys, function(a, b) return counts[a] > counts[b] end)
    local out = {}
    out[#out + 1] = ("VM instructions on the main thread per invocation (%d invocations): %.0f total")
      :format(invocations, total / invocations)
    for i = 1, math.min(#keys, 25) do
      out[#out + 1] = ("  %8.1f  %5.1f%%  %s"):format(counts[keys[i]] / invocations,
        counts[keys[i]] / total * 100, name_of(keys[i]))
    end
    local path = os.getenv("BENCH_SUMMARY")
    local f = path and io.open(path, "w") or io.stdout
    f:write(table.concat(out, "\n"), "\n")
    if f ~= io.stdout then f:close() end
  end
end)

return {}
