-- bench/bench.lua: the benchmark harness (run by bench/run.sh from the
-- repository root, under lua5.4).  Runs every workload for orchlua and for
-- the two baselines doing the same work, bench/floor (libuv alone) and
-- bench/purelua.lua (luv + coroutines + cjson), one after the other, each
-- under bench/out/measure; prints one table and writes bench/results.json.
--
-- Environment:
--   BENCH_SECONDS=20        length of workloads 1 and 2 (the issue's 20 s)
--   BENCH_RESULTS=1000000   add_result calls in workload 3
--   BENCH_SOAK=1000000      invocations in workload 5
--   BENCH_STARTUP_RUNS=20   repetitions of workloads 4 and 1t (the median is shown)
--   BENCH_SPAWN=1000        processes in workload 6
--   BENCH_ONLY=w1a,w3b      run only these workloads (ids as in the table)
--   BENCH_PROGRAMS=orchlua,floor,purelua   run only these programs
--   BENCH_QUIET_WAIT=120    seconds to wait before each run for a quiet machine
--   BENCH_KEEP=1            keep the JSONL reports
--   BENCH_ORCHLUA=path      another orchlua binary (default bench/out/orchlua)
--   BENCH_OUT=dir           another output folder (default bench/out)
-- A partial run (BENCH_ONLY, BENCH_PROGRAMS, BENCH_OUT) writes its results
-- into the output folder, never into bench/results.json.
local cjson = require "cjson"

local OUT = os.getenv("BENCH_OUT") or "bench/out"
local ORCHLUA = os.getenv("BENCH_ORCHLUA") or "bench/out/orchlua"
local DESC = OUT .. "/descriptions"
local MEASURE = "bench/out/measure"
local SECONDS = tonumber(os.getenv("BENCH_SECONDS") or "20")
local RESULTS_N = math.tointeger(tonumber(os.getenv("BENCH_RESULTS") or "1000000"))
local SOAK_N = math.tointeger(tonumber(os.getenv("BENCH_SOAK") or "1000000"))
local STARTUP_RUNS = math.tointeger(tonumber(os.getenv("BENCH_STARTUP_RUNS") or "20"))
local SPAWN_N = math.tointeger(tonumber(os.getenv("BENCH_SPAWN") or "1000"))
local KEEP = os.getenv("BENCH_KEEP") == "1"

local function set_of(s)
  if not s or s == "" then return nil end
  local t = {}
  for w in s:gmatch("[^,%s]+") do t[w] = true end
  return t
end
local ONLY = set_of(os.getenv("BENCH_ONLY"))
os.execute("mkdir -p '" .. DESC .. "'")
local PROGRAMS = set_of(os.getenv("BENCH_PROGRAMS")) or { orchlua = true, floor = true, purelua = true }
local PROGRAM_ORDER = { "orchlua", "floor", "purelua" }

-- ---- helpers ---------------------------------------------------------------

local function q(s)
  s = tostring(s)
  if s:match("^[%w%./_,=:%-]+$") then return s end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function log(...)
  io.stderr:write(os.date("%H:%M:%S "), string.format(...), "\n")
end

local function read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

local function decode_file(path)
  local s = read(path)
  if not s or s == "" then return nil end
  local ok, v = pcall(cjson.decode, s)
  return ok and v or nil
end

-- CPU seconds the whole machine spent busy so far (/proc/stat), to tell
-- how much else ran while a program was measured (the machine is shared).
local function machine_busy_s()
  local f = io.open("/proc/stat", "r")
  if not f then return nil end
  local l = f:read("l")
  f:close()
  local v = {}
  for x in l:gmatch("%d+") do v[#v + 1] = tonumber(x) end
  -- user nice system idle iowait irq softirq steal
  return (v[1] + v[2] + v[3] + v[6] + v[7] + (v[8] or 0)) / 100
end

-- Waits (up to BENCH_QUIET_WAIT seconds, default 120) until the rest of the
-- machine is quiet: less than a fifth of a core busy over a second.
local QUIET_WAIT = tonumber(os.getenv("BENCH_QUIET_WAIT") or "120")
local function wait_quiet()
  local waited = 0
  while waited < QUIET_WAIT do
    local b0 = machine_busy_s()
    if not b0 then return end
    os.execute("sleep 1")
    local busy = machine_busy_s() - b0
    if busy < 0.2 then return end
    if waited == 0 then log("waiting for the machine to be quiet (%.0f%% of a core busy)", busy * 100) end
    waited = waited + 1
  end
end

-- Runs argv under measure.  o: name, watch (report file), env (table),
-- timeout (s).  Returns the measure record with .stdout, .stderr, .summary
-- (the $BENCH_SUMMARY JSON, if written).
local function measure(o, argv)
  local base = OUT .. "/" .. o.name
  local summary = base .. ".summary.json"
  os.remove(summary)
  local env = { "BENCH_SUMMARY=" .. q(summary) }
  for k, v in pairs(o.env or {}) do env[#env + 1] = k .. "=" .. q(v) end
  local cmd = { "env", table.concat(env, " "), MEASURE, "-o", q(base .. ".measure.json"),
                "-s", tostring(o.sample_ms or 100) }
  if o.watch then cmd[#cmd + 1] = "-w"; cmd[#cmd + 1] = q(o.watch) end
  if o.timeout then cmd[#cmd + 1] = "-t"; cmd[#cmd + 1] = tostring(o.timeout) end
  cmd[#cmd + 1] = "--"
  for _, a in ipairs(argv) do cmd[#cmd + 1] = q(a) end
  local line = table.concat(cmd, " ") .. " >" .. q(base .. ".stdout") .. " 2>" .. q(base .. ".stderr")
  write(base .. ".cmd", line .. "\n")
  if not o.no_wait then wait_quiet() end
  local busy0 = machine_busy_s()
  os.execute(line)
  local busy1 = machine_busy_s()
  local m = decode_file(base .. ".measure.json") or { failed = true }
  if busy0 and busy1 and m.wall_ms then
    -- busy CPU time not spent by the measured program, as a share of one core
    local other = (busy1 - busy0) - ((m.user_us or 0) + (m.sys_us or 0)) / 1e6
    m.other_load = math.max(0, other) / (m.wall_ms / 1000)
  end
  m.stdout = read(base .. ".stdout") or ""
  m.stderr = read(base .. ".stderr") or ""
  m.summary = decode_file(summary)
  m.cmd = line
  return m
end

local function sorted_pct(s, p)
  if #s == 0 then return nil end
  return s[math.max(1, math.ceil(p / 100 * #s))]
end

-- Reads a JSONL report: invocation lateness values (sorted, seconds) and
-- counts per record type.
local function read_report(path)
  local lat, counts = {}, {}
  local f = io.open(path, "r")
  if not f then return nil end
  for line in f:lines() do
    local ty = line:match('"type":"(%a+)"')
    if ty then
      counts[ty] = (counts[ty] or 0) + 1
      if ty == "invocation" then
        local l = line:match('"lateness":([%deE%.%-+]+)')
        if l then lat[#lat + 1] = tonumber(l) end
      end
    end
  end
  f:close()
  table.sort(lat)
  return { lateness = lat, counts = counts }
end

local function count_lines(path, pattern)
  local p = io.popen("grep -c " .. q(pattern) .. " " .. q(path) .. " 2>/dev/null")
  local n = tonumber(p:read("a")) or 0
  p:close()
  return n
end

local function cpu_us(m) return (m.user_us or 0) + (m.sys_us or 0) end

-- CPU after startup: on-CPU time of the main thread from t0 (the report's
-- first bytes, run_start) to the exit (schedstat), per invocation, less the probe's own
-- summary at the end (its sort of every sample: 0.1-0.25 s in Lua, ~20 ms
-- in the floor's C), which is the harness's work, not the scheduler's.
local function cpu_per(m, n)
  if not n or n == 0 or not m.exit_cpu_us then return nil end
  local probe_us = (m.summary and m.summary.summary_cpu or 0) * 1e6
  local net = m.exit_cpu_us - (m.first_write_cpu_us or 0) - probe_us
  return net / n, (cpu_us(m) - probe_us) / n
end

local function desc_file(name, tbl)
  tbl.test_name = name
  write(DESC .. "/" .. name .. ".json", cjson.encode(tbl))
  return DESC .. "/" .. name .. ".json"
end

local function orchlua_argv(name, sources, extra)
  -- -qq: failures only, no periodic status line (-q has one)
  local a = { ORCHLUA, "run", name, "--descriptions", DESC, "--sources", sources, "-qq" }
  for _, x in ipairs(extra or {}) do a[#a + 1] = x end
  return a
end

local function purelua_argv(name, sources, extra)
  local a = { "lua5.4", "bench/purelua.lua", DESC .. "/" .. name .. ".json", "--sources", sources, "-q" }
  for _, x in ipairs(extra or {}) do a[#a + 1] = x end
  return a
end

-- The command line of prog for a workload: orchlua and pure Lua run the
-- description `name` with the event sources and extra flags; the floor
-- takes floor_argv (its own flags for the same work), then extra.
local function program_argv(prog, name, sources, extra, floor_argv)
  if prog == "orchlua" then return orchlua_argv(name, sources, extra) end
  if prog == "purelua" then return purelua_argv(name, sources, extra) end
  local a = { "bench/floor" }
  for _, x in ipairs(floor_argv) do a[#a + 1] = x end
  for _, x in ipairs(extra or {}) do a[#a + 1] = x end
  return a
end

-- Flags a run during which the rest of the machine kept more than a
-- fifth of a core busy (make test in another tree, say).
local function load_note(r, m)
  r.other_load = m.other_load
  if m.other_load and m.other_load > 0.2 then
    local n = ("other processes used %.0f%% of a core meanwhile"):format(m.other_load * 100)
    r.note = r.note and (r.note .. "; " .. n) or n
  end
end

local function status_ok(m, prog)
  if m.failed then return false, "measure failed" end
  if m.signal then return false, "killed by signal " .. math.tointeger(m.signal) end
  if m.timed_out then return false, "timed out" end
  if m.exit ~= 0 then
    local first = m.stderr:match("[^\n]+") or m.stdout:match("[^\n]+$") or ""
    return false, ("%s exited %d: %s"):format(prog, m.exit, first)
  end
  return true
end

-- ---- workloads -------------------------------------------------------------

local results = {}     -- id -> { title, runs = { prog -> metrics }, notes }
local order = {}

local function want(id) return ONLY == nil or ONLY[id] end

local function record(id, title, runs, extra)
  local w = { id = id, title = title, runs = runs }
  for k, v in pairs(extra or {}) do w[k] = v end
  results[id] = w
  order[#order + 1] = id
end

-- Workloads 1 and 2: n events at `interval` for SECONDS, trivial or probe.
-- With report = false (w1c) no --report is written: the CPU figure is the
-- scheduler's alone, and the probe's start marker stands for the first write.
-- checks (optional): function(events) -> the description's checks; such a
-- workload is orchlua's alone (the baselines judge nothing).
local function ticks(id, title, n, interval, probe, report_on, checks)
  if not want(id) then return end
  local name = ("bench_%s"):format(id)
  local events = {}
  for i = 1, n do
    events[i] = { name = probe and "probe" or "trivial", id = "e" .. i, interval_sec = interval }
  end
  desc_file(name, { total_hours = SECONDS / 3600, events = events,
                    unref_setup_fixtures = probe and { "probe_sink" } or nil,
                    checks = checks and checks(events) or nil })
  local src = probe and "bench/events/probe.lua" or "bench/events/trivial.lua"
  local per_event = math.floor(SECONDS / interval + 0.5)  -- startup + (last_k) firings
  local expected = n * per_event
  local runs = {}
  for _, prog in ipairs(PROGRAM_ORDER) do
    if PROGRAMS[prog] and (prog == "orchlua" or not checks) then
      local report = ("%s/%s.%s.jsonl"):format(OUT, id, prog)
      local mark = ("%s/%s.%s.mark"):format(OUT, id, prog)
      local rep_args = report_on and { "--report", report } or {}
      local argv
      if prog == "orchlua" then
        argv = orchlua_argv(name, src, rep_args)
      elseif prog == "purelua" then
        argv = purelua_argv(name, src, rep_args)
      else
        argv = { "bench/floor", "ticks", "--events", tostring(n), "--interval", tostring(interval),
                 "--seconds", tostring(SECONDS) }
        for _, a in ipairs(rep_args) do argv[#argv + 1] = a end
        if probe then argv[#argv + 1] = "--probe" end
      end
      log("%s %s: %s", id, prog, title)
      local m = measure({ name = id .. "." .. prog, watch = report_on and report or mark,
                          env = { BENCH_MARK = mark }, timeout = SECONDS * 4 + 120 }, argv)
      local ok, why = status_ok(m, prog)
      local r = { ok = ok, error = why, wall_ms = m.wall_ms, maxrss_kb = m.maxrss_kb,
                  startup_ms = m.first_write_ms, cpu_total_us = cpu_us(m), expected = expected,
                  report = report_on }
      local rep = report_on and read_report(report)
      if rep then
        r.invocations = rep.counts.invocation or 0
        r.skipped = rep.counts.skipped or 0
        r.late_p50 = sorted_pct(rep.lateness, 50)
        r.late_p99 = sorted_pct(rep.lateness, 99)
        r.late_max = rep.lateness[#rep.lateness]
      end
      if probe and m.summary then
        r.body_p50, r.body_p99, r.body_max = m.summary.p50, m.summary.p99, m.summary.max
        r.invocations = r.invocations or m.summary.n
      end
      r.cpu_per_inv_us, r.cpu_per_inv_gross_us = cpu_per(m, r.invocations)
      -- steady state: from t0 (the report's first bytes: run_start,
      -- flushed at t0) to the scheduled end (the last sample before it),
      -- so what a run does once at its end (summary, outputs, lua_close:
      -- per event, not per firing) is left out, for every workload alike:
      -- the firings and what judges them as they come (checks' whole-run
      -- passes come every 30 s: none in a 20 s run)
      if r.invocations and r.invocations > 0 and m.first_write_ms and m.first_write_cpu_us then
        local cpu_end
        for _, smp in ipairs(m.samples or {}) do
          if smp[1] <= m.first_write_ms + SECONDS * 1000 - 50 then cpu_end = smp[3] end
        end
        if cpu_end and cpu_end > m.first_write_cpu_us then
          r.cpu_steady_us = (cpu_end - m.first_write_cpu_us) / r.invocations
        end
      end
      if r.invocations and r.invocations ~= expected then
        r.note = ("%d invocations, %d expected (%d skipped)"):format(r.invocations, expected, r.skipped or 0)
      end
      load_note(r, m)
      runs[prog] = r
      if not KEEP then os.remove(report) end -- they are large; the figures are kept
      os.remove(mark)
    end
  end
  record(id, title, runs, { kind = probe and "probe" or "ticks", events = n, interval = interval,
                            seconds = SECONDS, report = report_on })
end

-- Workload 1s: w1b's 10,000 events with --listen, /metrics scraped once a
-- second by bench/scrape.lua (one keep-alive connection, as Prometheus),
-- next to the same run unscraped just before it: the lateness p99 of both
-- and the scrapes' own times (request sent to last byte).
local function free_port()
  local uv = require "luv"
  local s = uv.new_tcp()
  assert(s:bind("127.0.0.1", 0))
  local port = s:getsockname().port
  s:close()
  uv.run()
  return port
end

local function scraped(id, title)
  if not want(id) then return end
  local n, name = 10000, "bench_" .. id
  local events = {}
  for i = 1, n do events[i] = { name = "trivial", id = "e" .. i, interval_sec = 1 } end
  desc_file(name, { total_hours = SECONDS / 3600, events = events })
  local r = {}
  for _, mode in ipairs({ "plain", "scraped" }) do
    local report = ("%s/%s.%s.jsonl"):format(OUT, id, mode)
    local extra = { "--report", report }
    local port, scrape_out
    if mode == "scraped" then
      port = free_port()
      scrape_out = ("%s/%s.scrapes.json"):format(OUT, id)
      os.remove(scrape_out)
      extra[#extra + 1] = "--listen"
      extra[#extra + 1] = tostring(port)
      -- the scraper waits for the port, then scrapes for the run's length
      os.execute(("lua5.4 bench/scrape.lua %d %d %s >/dev/null 2>&1 &"):format(port, SECONDS, q(scrape_out)))
    end
    log("%s orchlua (%s): %s", id, mode, title)
    local m = measure({ name = id .. "." .. mode, watch = report, timeout = SECONDS * 4 + 120 },
      orchlua_argv(name, "bench/events/trivial.lua", extra))
    local ok, why = status_ok(m, "orchlua")
    local rep = read_report(report)
    r[mode .. "_ok"], r.error = ok and r.error == nil, r.error or why
    r[mode .. "_p99"] = rep and sorted_pct(rep.lateness, 99)
    r[mode .. "_max"] = rep and rep.lateness[#rep.lateness]
    load_note(r, m)
    if not KEEP then os.remove(report) end
    if mode == "scraped" then
      for _ = 1, 100 do   -- the scraper ends a moment after the run
        if read(scrape_out) then break end
        os.execute("sleep 0.2")
      end
      local sc = decode_file(scrape_out) or { times_ms = {}, sizes = {} }
      local t = sc.times_ms
      table.sort(t)
      r.scrapes = #t
      r.scrape_p50_ms, r.scrape_max_ms = sorted_pct(t, 50), t[#t]
      r.body_mb = sc.sizes[#sc.sizes] and sc.sizes[#sc.sizes] / 1048576
    end
  end
  r.ok = r.plain_ok and r.scraped_ok
  if r.plain_p99 and r.scraped_p99 and r.plain_p99 > 0 then r.late_ratio = r.scraped_p99 / r.plain_p99 end
  record(id, title, { orchlua = r }, { kind = "scraped", events = n, seconds = SECONDS })
end

-- Workload 3: one event calling add_result n times (batch: yield every
-- `batch` results; 0 = one burst).  The programs take turns, FLOOD_ROUNDS
-- times: this machine's speed changes by up to 2x from one second to the
-- next (a plain Lua loop shows it too, see BENCHMARKS.md), so each program
-- is shown with its best round (the least disturbed) and its median.
local FLOOD_ROUNDS = math.tointeger(tonumber(os.getenv("BENCH_FLOOD_ROUNDS") or "3"))

local function flood_once(id, prog, title, batch, name)
  local report = ("%s/%s.%s.jsonl"):format(OUT, id, prog)
  local sources = "bench/events/flood.lua"
  local argv = program_argv(prog, name, sources, { "--report", report },
    { "flood", "--n", tostring(RESULTS_N), "--batch", tostring(batch) })
  log("%s %s: %s", id, prog, title)
  local m = measure({ name = id .. "." .. prog, watch = report, timeout = 600 }, argv)
  local ok, why = status_ok(m, prog)
  local r = { ok = ok, error = why, wall_ms = m.wall_ms, maxrss_kb = m.maxrss_kb,
              cpu_total_us = cpu_us(m) }
  r.lines = count_lines(report, '"type":"result"')
  r.lost = RESULTS_N - r.lines
  local s = m.summary
  if s and s.elapsed and s.elapsed > 0 then
    r.delivered = s.n
    r.results_per_s = s.n / s.elapsed
    r.lat_p50, r.lat_p99, r.lat_max = s.lat_p50, s.lat_p99, s.lat_max
  elseif ok then
    r.ok, r.error = false, "no summary written (on_result did not see every result)"
  end
  if m.first_write_cpu_us and m.exit_cpu_us and r.lines > 0 then
    r.cpu_per_result_us = (m.exit_cpu_us - m.first_write_cpu_us) / r.lines
  end
  load_note(r, m)
  if not KEEP then os.remove(report) end
  return r
end

-- opts.metric: the flood reports result_reporter:metric("flood", i)
-- instead of add_result; opts.checks: the description's checks.  Either
-- makes the workload orchlua's alone.
local function flood(id, title, batch, opts)
  if not want(id) then return end
  opts = opts or {}
  local name = "bench_" .. id
  desc_file(name, { total_hours = 1,
                    events = { { name = opts.metric and "flood_metric" or "flood",
                                 params = { n = RESULTS_N, batch = batch } } },
                    checks = opts.checks })
  local rounds = {}
  for round = 1, FLOOD_ROUNDS do
    for _, prog in ipairs(PROGRAM_ORDER) do
      if PROGRAMS[prog] and (prog ~= "purelua" or round == 1) and (prog == "orchlua" or not opts.metric) then
        -- pure Lua takes ~10 s a round and is 10x off: one round is plenty
        rounds[prog] = rounds[prog] or {}
        table.insert(rounds[prog], flood_once(id, prog, title, batch, name))
      end
    end
  end
  local runs = {}
  for prog, list in pairs(rounds) do
    -- the best round stands for the program; every round must be whole
    local best, rates = nil, {}
    for _, r in ipairs(list) do
      if r.results_per_s then rates[#rates + 1] = r.results_per_s end
      if best == nil or (r.results_per_s or 0) > (best.results_per_s or 0) then best = r end
    end
    for _, r in ipairs(list) do
      if not r.ok then best = r end
      if r.lost ~= 0 then best.lost = math.max(best.lost or 0, r.lost) end
    end
    table.sort(rates)
    best.rounds = #list
    best.rates = rates
    best.results_per_s_median = rates[math.ceil(#rates / 2)]
    runs[prog] = best
  end
  record(id, title, runs, { kind = "flood", n = RESULTS_N, batch = batch, rounds = FLOOD_ROUNDS })
end

-- Workload 4: exec to the first invocation of the seed example, taken as
-- the report's first bytes: orchlua's run_start, flushed at t0 just before
-- the loop pass that fires the startup events; the floor and pure Lua
-- flush their report at the same point, or when they start the first
-- invocation.  The run is shortened (--hours 0.01 at
-- --time-scale 3600: 10 ms).
-- Workload 1t: the same at 10,000 events (w1b's description, a run of
-- 1 s): one run's startup on a shared machine varies by a third, so the
-- target is judged on the median of STARTUP_RUNS.
-- argv_of(prog, report) -> the command line.
local function startup(id, title, argv_of)
  if not want(id) then return end
  local runs = {}
  for _, prog in ipairs(PROGRAM_ORDER) do
    if PROGRAMS[prog] then
      local report = ("%s/%s.%s.jsonl"):format(OUT, id, prog)
      local argv = argv_of(prog, report)
      log("%s %s: %s x%d", id, prog, title, STARTUP_RUNS)
      local firsts, walls, rss, cpus, err = {}, {}, {}, {}, nil
      for i = 1, STARTUP_RUNS do
        local m = measure({ name = id .. "." .. prog, watch = report, timeout = 60, no_wait = i > 1 }, argv)
        local ok, why = status_ok(m, prog)
        if not ok then err = why end
        if m.first_write_ms then firsts[#firsts + 1] = m.first_write_ms end
        walls[#walls + 1] = m.wall_ms
        rss[#rss + 1] = m.first_write_rss_kb
        cpus[#cpus + 1] = m.first_write_cpu_us
        if i == 1 then
          local rep = read_report(report)
          if not rep or (rep.counts.invocation or 0) == 0 then err = err or "no invocation in the report" end
        end
      end
      table.sort(firsts); table.sort(walls); table.sort(rss); table.sort(cpus)
      runs[prog] = { ok = err == nil, error = err, startup_ms = sorted_pct(firsts, 50),
                     startup_min_ms = firsts[1], startup_max_ms = firsts[#firsts],
                     startup_cpu_us = sorted_pct(cpus, 50),
                     wall_ms = sorted_pct(walls, 50), rss_at_start_kb = sorted_pct(rss, 50),
                     runs = #firsts }
      if not KEEP then os.remove(report) end
    end
  end
  record(id, title, runs, { kind = "startup" })
end

-- Workload 5: SOAK_N invocations, time-scaled: 100 events at 1 s, each
-- firing SOAK_N/100 times, at --time-scale 100: a 10 ms real interval,
-- 10,000 invocations a second (100 s for a million), a pace all three
-- programs sustain without skipping.  RSS is sampled every 100 ms.
local function soak(id, title)
  if not want(id) then return end
  local n_events = 100
  local firings = SOAK_N // n_events
  local scale = 100
  local real_s = firings / scale
  local name = "bench_" .. id
  local events = {}
  for i = 1, n_events do events[i] = { name = "trivial", id = "e" .. i, interval_sec = 1 } end
  desc_file(name, { total_hours = firings / 3600, events = events })
  local runs = {}
  for _, prog in ipairs(PROGRAM_ORDER) do
    if PROGRAMS[prog] then
      local argv
      local report = ("%s/%s.%s.jsonl"):format(OUT, id, prog)
      -- the report (about 250 bytes an invocation) is counted, then removed
      if prog == "floor" then
        argv = program_argv(prog, name, nil, { "--report", report }, { "ticks", "--events",
          tostring(n_events), "--interval", "1", "--seconds", tostring(firings), "--scale", tostring(scale) })
      else
        argv = program_argv(prog, name, "bench/events/trivial.lua",
          { "--time-scale", tostring(scale), "--report", report })
      end
      log("%s %s: %s", id, prog, title)
      local m = measure({ name = id .. "." .. prog, watch = report, timeout = real_s * 6 + 120 }, argv)
      local ok, why = status_ok(m, prog)
      local r = { ok = ok, error = why, wall_ms = m.wall_ms, maxrss_kb = m.maxrss_kb,
                  rss_start_kb = m.first_write_rss_kb, expected = SOAK_N }
      -- RSS at the end of the firing window (before the shutdown work), and
      -- after a tenth of it (warm-up: stats buckets, GC pacing, malloc arenas)
      local t_start = m.first_write_ms or 0
      local t_end = t_start + real_s * 1000
      for _, s in ipairs(m.samples or {}) do
        if s[1] <= t_end then r.rss_end_kb = s[2] end
        if not r.rss_warm_kb and s[1] >= t_start + real_s * 100 then r.rss_warm_kb = s[2] end
        if not r.rss_half_kb and s[1] >= t_start + real_s * 500 then r.rss_half_kb = s[2] end
      end
      if r.rss_half_kb and r.rss_end_kb then r.growth_second_half_kb = r.rss_end_kb - r.rss_half_kb end
      if r.rss_start_kb and r.rss_end_kb then r.growth_kb = r.rss_end_kb - r.rss_start_kb end
      if r.rss_warm_kb and r.rss_end_kb then r.growth_after_warmup_kb = r.rss_end_kb - r.rss_warm_kb end
      local rep = read_report(report)
      if rep then
        r.invocations = rep.counts.invocation or 0
        r.skipped = rep.counts.skipped or 0
        r.cpu_per_inv_us, r.cpu_per_inv_gross_us = cpu_per(m, r.invocations)
        -- description seconds at --time-scale: real seconds = / scale
        r.late_p99 = sorted_pct(rep.lateness, 99) and sorted_pct(rep.lateness, 99) / scale
        r.late_max = rep.lateness[#rep.lateness] and rep.lateness[#rep.lateness] / scale
      end
      load_note(r, m)
      runs[prog] = r
      if not KEEP then os.remove(report) end
    end
  end
  record(id, title, runs, { kind = "soak", invocations = SOAK_N, events = n_events, scale = scale,
                            real_seconds = real_s })
end

local function survivors()
  local p = io.popen("pgrep -x -f 'sleep 9999.25' 2>/dev/null")
  local pids = {}
  for l in p:lines() do pids[#pids + 1] = tonumber(l) end
  p:close()
  return pids
end

local function kill_survivors(pids)
  if #pids > 0 then os.execute("kill -9 " .. table.concat(pids, " ") .. " 2>/dev/null") end
end

-- Workload 6: stop with SPAWN_N spawned processes still running.
local function spawn(id, title)
  if not want(id) then return end
  local T = 5
  local name = "bench_" .. id
  desc_file(name, { total_hours = T / 3600, events = { { name = "spawner", params = { n = SPAWN_N } } } })
  desc_file("bench_spawn_probe", { total_hours = 1 / 3600, events = { { name = "spawn_probe" } } })
  kill_survivors(survivors())
  local runs = {}
  for _, prog in ipairs(PROGRAM_ORDER) do
    if PROGRAMS[prog] then
      local report = ("%s/%s.%s.jsonl"):format(OUT, id, prog)
      local argv, skip
      if prog == "orchlua" then
        local m = measure({ name = id .. ".orchlua-probe", timeout = 30 },
          orchlua_argv("bench_spawn_probe", "bench/events/spawn.lua"))
        if m.exit ~= 0 then
          local why = (m.stdout .. "\n" .. m.stderr):match("([^\n]*orch%.process[^\n]*)")
            or (m.stdout .. "\n" .. m.stderr):match("([^\n]*spawn[^\n]*)") or "orch.spawn failed"
          skip = "orch.spawn not available in this build (" .. why:gsub("^%s+", ""):sub(1, 120) .. ")"
        end
      end
      argv = program_argv(prog, name, "bench/events/spawn.lua", { "--report", report },
        { "spawn", "--n", tostring(SPAWN_N), "--seconds", tostring(T) })
      if skip then
        log("%s %s: skipped: %s", id, prog, skip)
        runs[prog] = { ok = false, unavailable = true, error = skip }
      else
        log("%s %s: %s", id, prog, title)
        local m = measure({ name = id .. "." .. prog, watch = report, timeout = 120 }, argv)
        local ok, why = status_ok(m, prog)
        local left = survivors()
        kill_survivors(left)
        local outlived = #left > 0 and (#left .. " processes outlived the run") or nil
        local r = { ok = ok and #left == 0, error = why or outlived,
                    wall_ms = m.wall_ms, maxrss_kb = m.maxrss_kb, survivors = #left,
                    cpu_total_us = cpu_us(m), other_load = m.other_load }
        local s = m.summary
        if s and s.t0_mono_ms and m.exit_mono_ms then
          r.spawn_s = s.spawn_s
          -- when the run decided to stop: floor knows; the others' spawner
          -- invocation ends on the kill switch, its record's t is that moment
          local stop_at = s.stop_at_s
          if not stop_at then
            local f = io.open(report, "r")
            for line in (f and f:lines() or function() end) do
              if line:find('"type":"invocation"', 1, true) then
                stop_at = tonumber(line:match('"t":([%deE%.%-+]+)'))
              end
            end
            if f then f:close() end
          end
          if stop_at then
            r.stop_late_ms = (stop_at - T) * 1000
            r.stop_exit_ms = m.exit_mono_ms - (s.t0_mono_ms + stop_at * 1000)
          end
          r.stop_ms = m.exit_mono_ms - (s.t0_mono_ms + T * 1000)
        end
        runs[prog] = r
      end
      if not KEEP then os.remove(report) end
    end
  end
  record(id, title, runs, { kind = "spawn", n = SPAWN_N, seconds = T })
end

-- ---- run -------------------------------------------------------------------

local t_begin = os.time()
ticks("w1a", ("1,000 events @1 s for %g s, trivial body, --report"):format(SECONDS), 1000, 1, false, true)
ticks("w1b", ("10,000 events @1 s for %g s, trivial body, --report"):format(SECONDS), 10000, 1, false, true)
scraped("w1s", ("10,000 events @1 s for %g s, --report, --listen, /metrics scraped every second"):format(SECONDS))
ticks("w1c", ("10,000 events @1 s for %g s, probe body, no report"):format(SECONDS), 10000, 1, true, false)
ticks("w2", ("100 events @10 ms for %g s, probe body, --report"):format(SECONDS), 100, 0.01, true, true)
flood("w3a", ("1 event, %d x add_result in one burst"):format(RESULTS_N), 0)
-- checks (issue 15): w1b with a p99 duration and an error_rate check on
-- each of its 10,000 events; a metric flood with and without 20 checks
ticks("w1b-checks", ("w1b with a p99 and an error_rate check per event (20,000 checks)"), 10000, 1, false, true,
  function(events)
    local checks = {}
    for _, ev in ipairs(events) do
      checks[#checks + 1] = { event = ev.id, series = "duration", stat = "p99", max = 1 }
      checks[#checks + 1] = { event = ev.id, stat = "error_rate", max = 0.01 }
    end
    return checks
  end)
local METRIC_CHECKS = {}
for i, st in ipairs({ "p50", "p90", "p95", "p99", "p99.9", "max", "min", "mean", "count", "last" }) do
  -- two windows: the whole run and a sliding minute
  METRIC_CHECKS[#METRIC_CHECKS + 1] = { name = "whole " .. i, metric = "flood", stat = st, max = 1e12 }
  METRIC_CHECKS[#METRIC_CHECKS + 1] = { name = "minute " .. i, metric = "flood", stat = st, max = 1e12,
                                        window_sec = 60 }
end
flood("w3m", ("1 event, %d x metric in one burst"):format(RESULTS_N), 0, { metric = true })
flood("w3m-checks", ("w3m with 20 checks on the flooded metric"), 0, { metric = true, checks = METRIC_CHECKS })
flood("w3b", ("1 event, %d x add_result, yielding every 1,000"):format(RESULTS_N), 1000)
startup("w4", "startup of the seed example (exec to first invocation)", function(prog, report)
  if prog == "orchlua" then
    return { ORCHLUA, "run", "my_orchestration_test", "--hours", "0.01", "--time-scale", "3600",
             "-qq", "--report", report }
  elseif prog == "purelua" then
    return { "lua5.4", "bench/purelua.lua", "descriptions/my_orchestration_test.json", "--sources",
             "events/demo.lua,events/playback.lua", "--hours", "0.01", "--time-scale", "3600",
             "-q", "--report", report }
  end
  return { "bench/floor", "ticks", "--events", "3", "--interval", "300", "--seconds", "36",
           "--scale", "3600", "--setup-spawn", "--report", report }
end)
if want("w1t") then
  local events = {}
  for i = 1, 10000 do events[i] = { name = "trivial", id = "e" .. i, interval_sec = 1 } end
  desc_file("bench_w1t", { total_hours = 1 / 3600, events = events })
end
startup("w1t", "startup at 10,000 events (w1b's, a 1 s run; exec to t0)", function(prog, report)
  if prog == "orchlua" then return orchlua_argv("bench_w1t", "bench/events/trivial.lua", { "--report", report }) end
  if prog == "purelua" then return purelua_argv("bench_w1t", "bench/events/trivial.lua", { "--report", report }) end
  return { "bench/floor", "ticks", "--events", "10000", "--interval", "1", "--seconds", "1", "--report", report }
end)
soak("w5", ("%d invocations, time-scaled (100 events @1 s, scale 100)"):format(SOAK_N))
spawn("w6", ("stop with %d spawned processes running"):format(SPAWN_N))

-- ---- the table ---------------------------------------------------------------

local function fmt_ms(s) return s and ("%.2f ms"):format(s * 1000) or "-" end
local function fmt_us(v) return v and ("%.2f us"):format(v) or "-" end
local function fmt_mb(kb) return kb and ("%.1f MB"):format(kb / 1024) or "-" end
local function fmt_rate(v) return v and ("%.0f/s"):format(v) or "-" end
local function fmt_kb(kb) return kb and ("%+.2f MB"):format(kb / 1024) or "-" end
local function fmt_pms(ms) return ms and ("%.2f ms"):format(ms) or "-" end
local function fmt_s(v) return v and ("%.3f s"):format(v) or "-" end

local rows = {}
local function ratio(a, b)
  if type(a) ~= "number" or type(b) ~= "number" or b == 0 then return "-" end
  return ("%.2fx"):format(a / b)
end

-- one table row: label, metric, getter, formatter
local function row(w, metric, get, f)
  local v = {}
  for _, prog in ipairs(PROGRAM_ORDER) do
    local r = w.runs[prog]
    if r then
      if r.unavailable then v[prog] = "n/a" else v[prog] = get(r) end
    end
  end
  rows[#rows + 1] = { w.id, metric, v, f }
end

for _, id in ipairs(order) do
  local w = results[id]
  rows[#rows + 1] = { "title", w.id .. "  " .. w.title }
  if w.kind == "ticks" or w.kind == "probe" then
    if w.report then
      row(w, "lateness p50 (report)", function(r) return r.late_p50 end, fmt_ms)
      row(w, "lateness p99 (report)", function(r) return r.late_p99 end, fmt_ms)
      row(w, "lateness max (report)", function(r) return r.late_max end, fmt_ms)
    end
    if w.kind == "probe" then
      row(w, "body-start late p50", function(r) return r.body_p50 end, fmt_ms)
      row(w, "body-start late p99", function(r) return r.body_p99 end, fmt_ms)
      row(w, "body-start late max", function(r) return r.body_max end, fmt_ms)
    end
    row(w, "CPU per invocation", function(r) return r.cpu_per_inv_us end, fmt_us)
    row(w, "CPU per inv., t0 to T (steady)", function(r) return r.cpu_steady_us end, fmt_us)
    row(w, "CPU per inv. (incl. startup)", function(r) return r.cpu_per_inv_gross_us end, fmt_us)
    row(w, "peak RSS", function(r) return r.maxrss_kb end, fmt_mb)
    row(w, "startup (exec to t0)", function(r) return r.startup_ms end, fmt_pms)
  elseif w.kind == "scraped" then
    row(w, "lateness p99, not scraped", function(r) return r.plain_p99 end, fmt_ms)
    row(w, "lateness p99, scraped", function(r) return r.scraped_p99 end, fmt_ms)
    row(w, "lateness max, scraped", function(r) return r.scraped_max end, fmt_ms)
    row(w, "p99 scraped / not scraped", function(r) return r.late_ratio end,
      function(x) return ("%.2fx"):format(x) end)
    row(w, "scrapes (body size)", function(r)
      return r.scrapes and ("%d (%.1f MB)"):format(r.scrapes, r.body_mb or 0) end, tostring)
    row(w, "scrape time p50", function(r) return r.scrape_p50_ms end, fmt_pms)
    row(w, "scrape time max", function(r) return r.scrape_max_ms end, fmt_pms)
  elseif w.kind == "flood" then
    row(w, "results/s, best round", function(r) return r.results_per_s end, fmt_rate)
    row(w, "results/s, median round", function(r) return r.results_per_s_median end, fmt_rate)
    row(w, "push->on_result p50", function(r) return r.lat_p50 end, fmt_ms)
    row(w, "push->on_result p99", function(r) return r.lat_p99 end, fmt_ms)
    row(w, "push->on_result max", function(r) return r.lat_max end, fmt_ms)
    row(w, "CPU per result", function(r) return r.cpu_per_result_us end, fmt_us)
    row(w, "JSONL result lines (lost)", function(r) return r.lines and (r.lines .. " (" .. r.lost .. ")") end, tostring)
    row(w, "peak RSS", function(r) return r.maxrss_kb end, fmt_mb)
  elseif w.kind == "startup" then
    row(w, "exec to 1st invocation (t0), median", function(r) return r.startup_ms end, fmt_pms)
    row(w, "exec to 1st invocation (t0), min", function(r) return r.startup_min_ms end, fmt_pms)
    row(w, "exec to 1st invocation (t0), max", function(r) return r.startup_max_ms end, fmt_pms)
    row(w, "CPU until then, median", function(r) return r.startup_cpu_us and r.startup_cpu_us / 1000 end, fmt_pms)
    row(w, "whole run, median wall", function(r) return r.wall_ms end, fmt_pms)
    row(w, "RSS at first invocation", function(r) return r.rss_at_start_kb end, fmt_mb)
  elseif w.kind == "soak" then
    row(w, "invocations (skipped)",
      function(r) return r.invocations and (r.invocations .. " (" .. r.skipped .. ")") end, tostring)
    row(w, "RSS at start", function(r) return r.rss_start_kb end, fmt_mb)
    row(w, "RSS after 10% (warm)", function(r) return r.rss_warm_kb end, fmt_mb)
    row(w, "RSS at end", function(r) return r.rss_end_kb end, fmt_mb)
    row(w, "RSS growth start->end", function(r) return r.growth_kb end, fmt_kb)
    row(w, "RSS growth warm->end", function(r) return r.growth_after_warmup_kb end, fmt_kb)
    row(w, "RSS growth, second half", function(r) return r.growth_second_half_kb end, fmt_kb)
    row(w, "CPU per invocation", function(r) return r.cpu_per_inv_us end, fmt_us)
    row(w, "lateness p99 (real time)", function(r) return r.late_p99 end, fmt_ms)
    row(w, "lateness max (real time)", function(r) return r.late_max end, fmt_ms)
  elseif w.kind == "spawn" then
    row(w, "time to spawn them", function(r) return r.spawn_s end, fmt_s)
    row(w, "stop decided after T (late by)", function(r) return r.stop_late_ms end, fmt_pms)
    row(w, "stop decided -> exit (all reaped)", function(r) return r.stop_exit_ms end, fmt_pms)
    row(w, "scheduled end T -> exit", function(r) return r.stop_ms end, fmt_pms)
    row(w, "processes left behind", function(r) return r.survivors end, tostring)
    row(w, "peak RSS", function(r) return r.maxrss_kb end, fmt_mb)
  end
end

local header = { "metric", "orchlua", "floor", "pure-Lua", "o/floor", "o/pLua" }
local lines = {}
local widths = { 32, 14, 12, 12, 8, 8 }
local function cells_line(c)
  local s = {}
  for i, x in ipairs(c) do
    s[i] = i == 1 and (x .. (" "):rep(widths[i] - #x)) or ((" "):rep(math.max(0, widths[i] - #x)) .. x)
  end
  return "  " .. table.concat(s, " ")
end
lines[#lines + 1] = cells_line(header)
lines[#lines + 1] = "  " .. ("-"):rep(92)
for _, r in ipairs(rows) do
  if r[1] == "title" then
    lines[#lines + 1] = r[2]
  else
    local v, f = r[3], r[4]
    local function cell(prog)
      local x = v[prog]
      if x == nil then return PROGRAMS[prog] and "-" or "" end
      if x == "n/a" then return "n/a" end
      return f(x)
    end
    lines[#lines + 1] = cells_line({ r[2], cell("orchlua"), cell("floor"), cell("purelua"),
      ratio(v.orchlua, v.floor), ratio(v.orchlua, v.purelua) })
  end
end

-- ---- targets -------------------------------------------------------------------

local targets = {}
local function target(text, w_id, get, limit, cmp, rel)
  local w = results[w_id]
  if not w then return end
  local o = w.runs.orchlua
  local t = { target = text, workload = w_id }
  if not o or o.unavailable then
    t.verdict = "not measured"
    t.detail = o and o.error or "orchlua not run"
  else
    local v = get(o)
    t.value = v
    if v == nil then
      t.verdict = "not measured"
      t.detail = o.error
    else
      local ok = cmp == "<=" and v <= limit or cmp == "<" and v < limit or cmp == ">=" and v >= limit
      t.ok = ok
      local parts = {}
      for _, rr in ipairs(rel or {}) do
        local base = w.runs[rr.prog]
        local bv = base and not base.unavailable and get(base)
        if bv and bv ~= 0 then
          local x = v / bv
          local name = rr.prog == "floor" and "floor" or "pure-Lua"
          if rr.limit then
            local pass = (rr.cmp == "<" and x < rr.limit) or (rr.cmp ~= "<" and x <= rr.limit)
            if not pass then t.ok = false end
            parts[#parts + 1] = ("%.2fx %s (limit %s%gx: %s)"):format(x, name, rr.cmp or "<=", rr.limit,
              pass and "met" or "missed")
          else
            parts[#parts + 1] = ("%.2fx %s"):format(x, name)
          end
        end
      end
      t.ratios = table.concat(parts, ", ")
      t.verdict = t.ok and "MET" or "MISSED"
    end
  end
  targets[#targets + 1] = t
end

target("lateness p99 at 10,000 events <= 60 ms (body-start, w1c), within 3x floor", "w1c",
  function(r) return r.body_p99 and r.body_p99 * 1000 end, 60, "<=",
  { { prog = "floor", limit = 3 }, { prog = "purelua" } })
target("lateness p99 with /metrics scraped every second within 1.2x of the unscraped run (w1s)", "w1s",
  function(r) return r.late_ratio end, 1.2, "<=")
target("/metrics scrape at 10,000 events < 50 ms, median (w1s)", "w1s",
  function(r) return r.scrape_p50_ms end, 50, "<")
target("lateness p99 at 10,000 events <= 60 ms (as reported, w1b), within 3x floor", "w1b",
  function(r) return r.late_p99 and r.late_p99 * 1000 end, 60, "<=",
  { { prog = "floor", limit = 3 }, { prog = "purelua" } })
target("CPU per trivial invocation <= 5 us, <= 4x floor, below pure-Lua (w1b)", "w1b",
  function(r) return r.cpu_per_inv_us end, 5, "<=",
  { { prog = "floor", limit = 4 }, { prog = "purelua", limit = 1, cmp = "<" } })
target("CPU per trivial invocation <= 5 us, <= 4x floor, below pure-Lua (w1a)", "w1a",
  function(r) return r.cpu_per_inv_us end, 5, "<=",
  { { prog = "floor", limit = 4 }, { prog = "purelua", limit = 1, cmp = "<" } })
target("CPU per trivial invocation <= 5 us, <= 4x floor, below pure-Lua (no report, probe body, w1c)", "w1c",
  function(r) return r.cpu_per_inv_us end, 5, "<=",
  { { prog = "floor", limit = 4 }, { prog = "purelua", limit = 1, cmp = "<" } })
target(">= 1,000,000 results/s into on_result + JSONL (burst, w3a)", "w3a",
  function(r) return r.results_per_s end, 1e6, ">=", { { prog = "floor" }, { prog = "purelua" } })
target(">= 500,000 results/s (issue 3's figure; burst, w3a)", "w3a",
  function(r) return r.results_per_s end, 5e5, ">=", { { prog = "floor" }, { prog = "purelua" } })
target(">= 1,000,000 results/s (yielding every 1,000, w3b)", "w3b",
  function(r) return r.results_per_s end, 1e6, ">=", { { prog = "floor" }, { prog = "purelua" } })
-- a workload with checks against the same without (issue 15)
local function target_pair(text, with_id, without_id, get, limit, cmp, info)
  local a, b = results[with_id], results[without_id]
  if not a or not b then return end
  local va, vb = get(a.runs.orchlua or {}), get(b.runs.orchlua or {})
  local t = { target = text, workload = with_id }
  if va and vb and vb ~= 0 then
    t.value = va / vb
    t.ok = (cmp == "<=" and t.value <= limit) or (cmp == ">=" and t.value >= limit)
    t.verdict = info and "INFO" or t.ok and "MET" or "MISSED"
    if info then t.ok = nil end
    t.ratios = ("%.3g with, %.3g without"):format(va, vb)
  else
    t.verdict = "not measured"
  end
  targets[#targets + 1] = t
end
-- judged in steady state (t0 to T): what checks cost each invocation of a
-- long run; their fixed cost (built before t0, judged and written once at
-- the end) is the whole-run line below it, printed with no verdict
target_pair("checks: CPU per invocation, t0 to T, within 1.2x of w1b (w1b-checks / w1b)", "w1b-checks", "w1b",
  function(r) return r.cpu_steady_us end, 1.2, "<=")
target_pair("checks: CPU per invocation, t0 to exit (shown, not judged)", "w1b-checks", "w1b",
  function(r) return r.cpu_per_inv_us end, 1.2, "<=", true)
target_pair("checks: lateness p99 within 1.2x of w1b (w1b-checks / w1b)", "w1b-checks", "w1b",
  function(r) return r.late_p99 end, 1.2, "<=")
target_pair("checks: >= 85% of the metric flood's results/s with 20 checks (w3m-checks / w3m)",
  "w3m-checks", "w3m", function(r) return r.results_per_s_median end, 0.85, ">=")
target("zero results lost (w3a: JSONL result lines = add_result calls)", "w3a",
  function(r) return r.lost end, 0, "<=", {})
target("zero results lost (w3b)", "w3b", function(r) return r.lost end, 0, "<=", {})
target("100 events @10 ms: lateness p99 <= 5 ms (body-start, w2)", "w2",
  function(r) return r.body_p99 and r.body_p99 * 1000 end, 5, "<=", { { prog = "floor" }, { prog = "purelua" } })
target("100 events @10 ms: lateness p99 <= 5 ms (as reported, w2)", "w2",
  function(r) return r.late_p99 and r.late_p99 * 1000 end, 5, "<=", { { prog = "floor" }, { prog = "purelua" } })
target("RSS growth < 2 MB over 1,000,000 invocations (start->end, w5)", "w5",
  function(r) return r.growth_kb and r.growth_kb / 1024 end, 2, "<", {})
target("RSS growth < 2 MB over 1,000,000 invocations (after warm-up, w5)", "w5",
  function(r) return r.growth_after_warmup_kb and r.growth_after_warmup_kb / 1024 end, 2, "<", {})
target("startup < 10 ms (median exec to first invocation, w4)", "w4",
  function(r) return r.startup_ms end, 10, "<", { { prog = "floor" }, { prog = "purelua" } })
target("stop with 1,000 processes running: none left behind (w6)", "w6",
  function(r) return r.survivors end, 0, "<=", {})
target("startup < 100 ms at 10,000 events (median exec to t0, w1t)", "w1t",
  function(r) return r.startup_ms end, 100, "<", { { prog = "floor" }, { prog = "purelua" } })
target("peak RSS < 30 MB at 10,000 events (w1b)", "w1b",
  function(r) return r.maxrss_kb and r.maxrss_kb / 1024 end, 30, "<", { { prog = "floor" }, { prog = "purelua" } })

lines[#lines + 1] = ""
lines[#lines + 1] = "targets (orchlua):"
for _, t in ipairs(targets) do
  local v = t.value
  local vs = type(v) == "number" and (math.abs(v) >= 1000 and ("%.0f"):format(v) or ("%.3g"):format(v)) or "-"
  lines[#lines + 1] = ("  %-7s %-78s value %s%s%s"):format(t.verdict == "not measured" and "N/A" or t.verdict,
    t.target, vs, t.ratios and t.ratios ~= "" and ("; " .. t.ratios) or "",
    t.detail and ("; " .. t.detail) or "")
end

local notes = {}
for _, id in ipairs(order) do
  for _, prog in ipairs(PROGRAM_ORDER) do
    local r = results[id].runs[prog]
    if r and (r.error or r.note) then
      notes[#notes + 1] = ("  %s %s: %s"):format(id, prog, r.error or r.note)
    end
  end
end
if #notes > 0 then
  lines[#lines + 1] = ""
  lines[#lines + 1] = "notes:"
  for _, n in ipairs(notes) do lines[#lines + 1] = n end
end

print(table.concat(lines, "\n"))

-- ---- results.json -------------------------------------------------------------------

local function sh1(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local s = p and p:read("a") or ""
  if p then p:close() end
  return (s:gsub("%s+$", ""))
end

local machine = {
  cpu = sh1("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"):gsub("^%s+", ""),
  cores = tonumber(sh1("nproc")),
  kernel = sh1("uname -r"),
  memory_mb = math.floor((tonumber(sh1("awk '/MemTotal/ {print $2}' /proc/meminfo")) or 0) / 1024),
  libuv = sh1("dpkg-query -W -f='${Version}' libuv1-dev"),
  lua = sh1("dpkg-query -W -f='${Version}' liblua5.4-dev"),
  luv = sh1("lua5.4 -e 'print(require(\"luv\").version_string())'"),
}
local doc = {
  generated = os.date("!%Y-%m-%dT%H:%M:%SZ"),
  orchlua = sh1(ORCHLUA .. " --version"),
  git = sh1("git describe --tags --always --dirty"),
  machine = machine,
  settings = { seconds = SECONDS, results = RESULTS_N, soak = SOAK_N, startup_runs = STARTUP_RUNS,
               spawn = SPAWN_N, only = os.getenv("BENCH_ONLY"), programs = os.getenv("BENCH_PROGRAMS") },
  duration_s = os.time() - t_begin,
  workloads = {},
  targets = targets,
  table = table.concat(lines, "\n"),
}
for _, id in ipairs(order) do doc.workloads[#doc.workloads + 1] = results[id] end
-- a partial run (BENCH_ONLY or BENCH_PROGRAMS) leaves bench/results.json alone
local partial = ONLY ~= nil or os.getenv("BENCH_PROGRAMS") ~= nil or os.getenv("BENCH_OUT") ~= nil
local path = os.getenv("BENCH_RESULTS_JSON") or (partial and OUT .. "/results.json" or "bench/results.json")
write(path, cjson.encode(doc) .. "\n")
io.stderr:write("results: ", path, "\n")
