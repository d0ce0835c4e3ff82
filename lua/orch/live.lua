-- orch.live: the live view of a run (`--listen ADDR:PORT`): what each path
-- of the read-only HTTP server (src/http.c) answers while the run goes on.
--   GET /metrics  Prometheus text format 0.0.4 (the events' figures in C,
--                 core.prom_text; results and reported metrics from the
--                 result tally, src/metrics.c; checks, elapsed, info here)
--   GET /status   JSON: elapsed, total, per-event counts, failing checks
--   GET /         the HTML report of the run so far (orch.output.html),
--                 refreshing itself
-- Every series carries the run's labels (run.labels, --label).  Bodies are
-- kept for a moment, so that many scrapers share one.
local core = require "orch.core"
local json = require "orch.output.json"

local M = {}
M.__index = M

local METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
local MAX_SERIES = 50000      -- result counts and metric series kept by the tally
local METRICS_KEEP = 0.25     -- real seconds a /metrics body is reused
local STATUS_KEEP = 0.25
local PAGE_REFRESH = 10       -- seconds between the page's own reloads
-- labels the series have themselves: a run label of that name is renamed
local RESERVED = { event = true, status = true, level = true, quantile = true, check = true,
                   test_name = true, version = true }

local USAGE = "[ADDR:]PORT (ADDR a numeric IPv4 address, [IPv6] or localhost; PORT 0-65535)"

-- "9464", ":9464", "127.0.0.1:9464", "[::1]:9464", "localhost:9464" ->
-- ip, port; nil, message otherwise.  Loopback unless an address is written.
function M.parse(spec)
  local s = tostring(spec)
  local host, port = s:match("^%[([%x:.]+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:%[%]]*):(%d+)$") end
  if not host then port = s:match("^(%d+)$"); host = "" end
  local bad = ("expects %s, found %q"):format(USAGE, s)
  if not port then return nil, bad end
  local p = tonumber(port)
  if #port > 5 or p > 65535 then return nil, ("expects a port 0-65535, found %s in %q"):format(port, s) end
  if host == "" or host == "localhost" then return "127.0.0.1", p end
  if host:find(":") then return host, p end   -- IPv6, checked by the bind
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a or tonumber(a) > 255 or tonumber(b) > 255 or tonumber(c) > 255 or tonumber(d) > 255 then
    return nil, bad
  end
  return host, p
end

-- A label value as the text format wants it.
local function esc(v)
  return (tostring(v):gsub('[\\"\n]', { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end
M.escape = esc

-- A label name Prometheus accepts, not one of the series' own.
local function label_name(k)
  local n = tostring(k):gsub("[^%w_]", "_")
  if n:match("^%d") or n == "" then n = "_" .. n end
  if RESERVED[n] or n:match("^__") then n = "label_" .. n end
  return n
end

-- Opens the server.  spec: the --listen text; opts: token (nil: none),
-- write_timeout (real seconds), console.  Returns live | nil, message.
function M.open(spec, opts)
  local ip, port = M.parse(spec)
  if not ip then return nil, port end
  local self = setmetatable({ opts = opts, tally = core.tally(MAX_SERIES), cache = {} }, M)
  local server, addr, bound = core.http_listen(ip, port, function(method, path)
    return self:answer(method, path)
  end, { token = opts.token, write_timeout = opts.write_timeout })
  if not server then
    return nil, ("%s: cannot listen: %s"):format(spec, tostring(addr):gsub("^[^:]*: ", ""))
  end
  self.server, self.address, self.port = server, addr, bound
  self.url = (addr:find(":") and "http://[%s]:%d" or "http://%s:%d"):format(addr, bound)
  return self
end

-- For `orchlua run`: the server --listen (or the config's listen) asks
-- for, or nil; nil, message (exit 2) when it cannot be.  Responses still
-- being written at the end, and the wait for a last scrape, get the run's
-- grace period (real seconds), a write at most 30 s.
function M.open_for(o, cfg, scale, grace)
  local spec, where = o.listen, "--listen "
  if spec == nil then spec, where = cfg.listen, ("%s: listen "):format(cfg.file or ".orchlua") end
  if spec == nil then return nil end
  local token = os.getenv("ORCHLUA_LISTEN_TOKEN")
  if token == "" then return nil, "ORCHLUA_LISTEN_TOKEN is set but empty: unset it or give it a token" end
  local real_grace = grace / scale
  local live, e = M.open(spec, { token = token, write_timeout = math.max(1, math.min(30, real_grace)),
                                 report_path = o.report })
  if not live then return nil, where .. e end
  live.linger_sec = real_grace
  return live
end

-- The run to show: its queue gets the tally, its events their label text
-- (before t0: 10,000 events take milliseconds).
function M:attach(run)
  self.run = run
  run.live = self
  local labels, names = {}, {}
  for k in pairs(run.labels or {}) do names[#names + 1] = k end
  table.sort(names)
  local lnames = {}
  for i, k in ipairs(names) do
    lnames[i] = label_name(k)
    labels[i] = (',%s="%s"'):format(lnames[i], esc(run.labels[k]))
  end
  self.labels = table.concat(labels)
  self.tally:set_labels(self.labels, lnames)
  run.queue:set_tally(self.tally)
  self.invokers, self.labelsets = {}, {}
  for i, ev in ipairs(run.events) do
    self.invokers[i] = run.per_event[ev.id]
    self.labelsets[i] = ('event="%s"%s'):format(esc(ev.id), self.labels)
  end
  run.console:line(("orchlua: live view at %s (/metrics, /status, /)"):format(self.url))
end

-- Description seconds since t0, frozen at the end of the run.
function M:elapsed()
  local run = self.run
  if run.ended then
    self.end_t = self.end_t or core.now()
    return self.end_t
  end
  return run.t0_ns and core.now() or 0
end

local function checks_of(run)
  local ok, list = pcall(function() return run.checks and run.checks:snapshot() end)
  if ok and type(list) == "table" then return list end
  return {}
end

function M:metrics()
  local run, L = self.run, self.labels
  local parts = {
    "# HELP orchlua_info The run: its description's test name and orchlua's version.\n",
    "# TYPE orchlua_info gauge\n",
    ('orchlua_info{test_name="%s",version="%s"%s} 1\n'):format(esc(run.desc.test_name or ""),
      esc(run.opts.version or ""), L),
    "# HELP orchlua_run_elapsed_seconds Description seconds since the run started.\n",
    "# TYPE orchlua_run_elapsed_seconds gauge\n",
    ("orchlua_run_elapsed_seconds%s %.6f\n"):format(L ~= "" and "{" .. L:sub(2) .. "}" or "", self:elapsed()),
  }
  if run.checks then
    parts[#parts + 1] = "# HELP orchlua_check_ok 1 while a check holds, 0 once it fails.\n"
    parts[#parts + 1] = "# TYPE orchlua_check_ok gauge\n"
    for _, c in ipairs(checks_of(run)) do
      parts[#parts + 1] = ('orchlua_check_ok{check="%s"%s} %d\n'):format(esc(c.name), L,
        c.status == "fail" and 0 or 1)
    end
  end
  -- an orch.Body: the server sends it without a copy, the collector never sees it
  local body, size = core.prom_text(table.concat(parts), self.invokers, self.labelsets, self.tally, self.size)
  self.size = size
  if self.tally:dropped() > 0 and not self.warned then
    self.warned = true
    run.console:log("warn", "orchlua", ("--listen: more than %d result and metric series; "
      .. "new ones are not exported (the --report file has them all)"):format(MAX_SERIES))
  end
  return body
end

function M:status()
  local run = self.run
  local events = {}
  for _, ev in ipairs(run.events) do
    local st = run.per_event[ev.id]
    events[ev.id] = { runs = st.runs, failures = st.failures, skipped = st.skipped, timeouts = st.timeouts }
  end
  local failing = {}
  for _, c in ipairs(checks_of(run)) do
    if c.status == "fail" then
      failing[#failing + 1] = { name = c.name, stat = c.stat, value = c.value, min = c.min, max = c.max }
    end
  end
  local taken, taken_errors = run.queue:counts()
  local body = json.encode({
    test_name = run.desc.test_name, elapsed = self:elapsed(), total = run.total,
    ended = run.ended == true, invocations = run:count("runs"), failures = run:count("failures"),
    skipped = run:count("skipped"), results = taken, error_results = taken_errors + run.error_results,
    labels = run.labels or {}, events = events, failing_checks = failing,
  })
  -- an empty list is a JSON list
  return (body:gsub('"failing_checks":{}', '"failing_checks":[]'):gsub('"labels":%[%]', '"labels":{}'))
end

-- The report so far, from the --report file (orch.output.html's renderer).
function M:page()
  local path = self.opts.report_path
  if not path then
    return 404, "text/plain; charset=utf-8",
      "the live report reads the run's records: start the run with --report FILE.jsonl (or --html)\n"
  end
  local rep, err = require("orch.report").load(path, { points = true })
  local page = rep and require("orch.output.html").render(rep)
  if not page then return 500, "text/plain; charset=utf-8", tostring(err) .. "\n" end
  return 200, "text/html; charset=utf-8",
    (page:gsub("<head>", ('<head><meta http-equiv="refresh" content="%d">'):format(PAGE_REFRESH), 1))
end

-- A body from the cache while it is younger than keep (real seconds; an
-- expensive page is kept for ten times what it took to make).
function M:cached(path, keep, make)
  local c, now = self.cache[path], core.hrtime()
  if c and (now - c.at) / 1e9 < math.max(keep, c.took * 10) then return c[1], c[2], c[3] end
  local status, ctype, body = make()
  local done = core.hrtime()
  self.cache[path] = { status, ctype, body, at = done, took = (done - now) / 1e9 }
  return status, ctype, body
end

-- The server's handler: status, content type, body.
function M:answer(_, path)
  if not self.run then return 503, "text/plain; charset=utf-8", "the run has not started yet\n" end
  if path == "/metrics" then
    self.scraped = true
    return self:cached(path, METRICS_KEEP, function() return 200, METRICS_TYPE, self:metrics() end)
  elseif path == "/status" then
    return self:cached(path, STATUS_KEEP, function() return 200, "application/json", self:status() .. "\n" end)
  elseif path == "/" or path == "/index.html" then
    return self:cached("/", 1, function() return self:page() end)
  end
  return 404, "text/plain; charset=utf-8", "not found: orchlua serves /metrics, /status and /\n"
end

-- After the run: when someone scraped during it, answers until one more
-- /metrics is served (the final figures) or `seconds` pass; then closes.
function M:finish(seconds)
  seconds = seconds or self.linger_sec or 0
  if self.run then
    self.run.ended = true
    self.end_t = self.end_t or core.now()   -- the scrapes while lingering see the run's end
  end
  self.cache = {}
  if self.scraped and seconds > 0 then
    -- a signal ends the wait (the engine no longer listens for one)
    core.on_signal(function() self.server:stop_linger() end)
    self.server:linger(seconds, "/metrics")
    core.on_signal(nil)
  end
  self.server:close()
end

return M
