-- bench/sink.lua - w3s: w3a (one event, BENCH_RESULTS add_result calls in
-- one burst, --report) with a PostgreSQL sink on this machine, in turns
-- with the same run without one (BENCH_FLOOD_ROUNDS rounds each).  Prints
-- results/s of both (best round), their ratio (target >= 85 %), the sink's
-- shipping rate (records/s while its batches ran; target 200,000 with
-- COPY), how many records it was behind when the run ended and how long
-- it took to catch up; checks that the rows equal the report's lines.
-- The PostgreSQL is a throwaway one (tools/pgtmp.sh) in a temporary folder.
-- Run by bench/run.sh (make bench), or alone: lua5.4 bench/sink.lua
local cjson = require "cjson"

local OUT = os.getenv("BENCH_OUT") or "bench/out"
local ORCHLUA = os.getenv("BENCH_ORCHLUA") or (io.open("bench/out/orchlua") and "bench/out/orchlua" or "./orchlua")
local N = math.tointeger(tonumber(os.getenv("BENCH_RESULTS") or "1000000"))
local ROUNDS = math.tointeger(tonumber(os.getenv("BENCH_FLOOD_ROUNDS") or "3"))

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local p = io.popen(cmd)
  local s = p:read("a")
  p:close()
  return s
end
local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
local function log(fmt, ...) io.stderr:write(os.date("!%H:%M:%S "), fmt:format(...), "\n") end

local dir = sh("mktemp -d /tmp/orchlua-bench-pg.XXXXXX"):match("%S+")
local url = sh("tools/pgtmp.sh start " .. q(dir)):match("%S+")
if not url then
  io.stderr:write("bench/sink.lua: PostgreSQL did not start (see tools/pgtmp.sh)\n")
  os.exit(1)
end
local function psql(sql)
  return sh(("psql -qAt %s -c %s 2>&1"):format(q(url), q(sql)))
end

os.execute("mkdir -p " .. q(OUT .. "/sink/descriptions"))
do
  local f = assert(io.open(OUT .. "/sink/descriptions/bench_w3s.json", "w"))
  f:write(cjson.encode({ test_name = "bench_w3s", total_hours = 1,
                         events = { { name = "flood", params = { n = N, batch = 0 } } } }))
  f:close()
end

local function run_once(with_sink, round)
  local report = ("%s/sink/w3s.%s.%d.jsonl"):format(OUT, with_sink and "sink" or "plain", round)
  local summary = report .. ".summary.json"
  os.remove(summary)
  local cmd = ("BENCH_SUMMARY=%s ORCHLUA_SINK_WAIT=300 %s run bench_w3s --descriptions %s --sources"
    .. " bench/events/flood.lua -q --report %s %s >/dev/null 2>%s.stderr"):format(q(summary), q(ORCHLUA),
    q(OUT .. "/sink/descriptions"), q(report), with_sink and ("--sink " .. q(url)) or "", q(report))
  log("w3s %s, round %d", with_sink and "with a PostgreSQL sink" or "without a sink", round)
  os.execute(cmd)
  local s = read(summary)
  local r = { }
  if s then
    local d = cjson.decode(s)
    r.results_per_s = d.n / d.elapsed
  end
  local err = read(report .. ".stderr") or ""
  if with_sink then
    local rate, behind, took = err:match("([%d.]+) records/s while shipping; (%d+) behind at the run's end,"
      .. " caught up in ([%d.]+) s")
    r.ship_rate, r.behind, r.catch_up = tonumber(rate), tonumber(behind), tonumber(took)
    r.lines = tonumber(sh("wc -l < " .. q(report)))
    local run_id = sh("head -1 " .. q(report)):match('"run_id":"([^"]+)"')
    r.rows = tonumber(psql(("SELECT count(*) FROM orchlua_records WHERE run_id = '%s'"):format(run_id)))
    r.stderr = err
  end
  os.remove(report)
  os.remove(report .. ".stderr")
  return r
end

local best = {}
for round = 1, ROUNDS do
  for _, with_sink in ipairs({ false, true }) do
    local r = run_once(with_sink, round)
    local k = with_sink and "sink" or "plain"
    best[k] = best[k] or {}
    table.insert(best[k], r)
  end
end
os.execute("tools/pgtmp.sh stop " .. q(dir) .. "; rm -rf " .. q(dir))

local function top(list, field)
  local b
  for _, r in ipairs(list) do if r[field] and (b == nil or r[field] > b[field]) then b = r end end
  return b or {}
end
local plain, sink = top(best.plain, "results_per_s"), top(best.sink, "results_per_s")
local ship = top(best.sink, "ship_rate")
local ok_rows = true
for _, r in ipairs(best.sink) do
  if r.rows ~= r.lines then ok_rows = false end
end
local out = {
  ("w3s  w3a (%d results, one burst, --report) with a PostgreSQL sink, best of %d rounds"):format(N, ROUNDS),
  ("  results/s without a sink             %10.0f/s"):format(plain.results_per_s or 0),
  ("  results/s with the sink              %10.0f/s  (%.0f %% of without; target >= 85 %%)")
    :format(sink.results_per_s or 0, 100 * (sink.results_per_s or 0) / (plain.results_per_s or 1)),
  ("  sink shipping rate (COPY)            %10.0f records/s  (target 200,000)"):format(ship.ship_rate or 0),
  ("  behind at the run's end              %10d records, caught up in %.2f s"):format(sink.behind or -1,
    sink.catch_up or -1),
  ("  rows = report lines, every round     %10s"):format(ok_rows and "yes" or "NO"),
}
local text = table.concat(out, "\n") .. "\n"
io.stdout:write(text)
local f = io.open(OUT .. "/sink.json", "w")
if f then
  f:write(cjson.encode({ plain = best.plain, sink = best.sink }), "\n")
  f:close()
end
if not ok_rows then
  for _, r in ipairs(best.sink) do io.stderr:write(r.stderr or "", "\n") end
  os.exit(1)
end
