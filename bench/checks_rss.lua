-- bench/checks_rss.lua: memory of checks over a long run (issue 15).  A
-- 72-hour description with 100 checks over 10-minute windows (10 events
-- at 10 s reporting two metrics each), rehearsed at --time-scale 3600
-- (72 s); the RSS of orchlua is read from /proc at each tenth of the run.
-- Usage (from the repository root): lua5.4 bench/checks_rss.lua [orchlua]
local bin = arg[1] or "./orchlua"
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)
local events, checks = {}, {}
for k = 1, 10 do
  events[k] = { name = "report_metrics", id = "m" .. k, interval_sec = 10, params = { k = k } }
end
local stats = { "p99", "p50", "max", "min", "mean", "last", "count", "rate", "slope_per_hour", "silence_sec" }
for i = 1, 100 do
  local k = (i - 1) % 10 + 1
  local st = stats[(i - 1) // 10 + 1]
  checks[i] = { name = ("c%d %s k=%d"):format(i, st, k), metric = (i % 2 == 0) and "rss_mb" or "latency_ms",
                where = { k = k }, stat = st, max = 1e9, window_sec = 600 }
end
local cjson = require "cjson"
local f = assert(io.open(dir .. "/checks_rss.json", "w"))
f:write(cjson.encode({ test_name = "checks_rss", total_hours = 72, events = events, checks = checks }))
f:close()
local scale, real = 3600, 72
local p = io.popen(("%s run %s/checks_rss.json --sources bench/events/checks.lua -q --time-scale %d "
  .. ">%s/out.txt 2>&1 & echo $!"):format(bin, dir, scale, dir))
local pid = p:read("l")
p:close()
local function rss()
  local s = io.open("/proc/" .. pid .. "/status")
  if not s then return nil end
  local t = s:read("a")
  s:close()
  return tonumber(t:match("VmRSS:%s*(%d+)"))
end
local t0 = os.time()
for tenth = 1, 9 do
  os.execute(("sleep %g"):format(real / 10))
  print(("hour %4.1f (real %3ds): RSS %s kB"):format(72 * tenth / 10, os.time() - t0, tostring(rss())))
end
os.execute("while kill -0 " .. pid .. " 2>/dev/null; do sleep 0.5; done")
local o = io.open(dir .. "/out.txt"):read("a")
print((o:match("(exit %d+:[^\n]*)")) or o)
os.execute("rm -rf " .. dir)
