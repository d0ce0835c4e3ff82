-- End-to-end specs of the live view (`run --listen`, lua/orch/live.lua,
-- src/http.c, src/metrics.c): the real binary serving while it runs,
-- scraped by curl, by raw sockets (spec/e2e/fixtures/live/client.lua, luv)
-- and by Debian's Prometheus, started here on a free loopback port.
local h = require "helper"
local cl = require "e2e.fixtures.live.client"
local cjson = require "cjson"

local EVENTS = [[
return {
  tick = function(result_reporter, event)
    result_reporter:metric("latency_ms", 10 + event.iteration, { host = "a-1", ["bad-key"] = 'x"y' })
    result_reporter:add_result({ n = event.iteration })
    result_reporter:add_result({ again = event.iteration })
  end,
  boom = function(result_reporter)
    result_reporter:add_result({ before = "the error" })
    error("boom")
  end,
}
]]

-- A project whose run lasts `hours` (description) with the given grace.
local function project(hours, grace, extra_cfg)
  local desc = { test_name = "t", total_hours = hours, events = {
    { name = "tick", interval_sec = 1 }, { name = "boom", interval_sec = 5 } } }
  return h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/t.json"] = cjson.encode(desc),
    [".orchlua"] = ("return { sources = { \"events/*.lua\" }, grace_sec = %g%s }\n"):format(grace, extra_cfg or "") })
end

local function count(recs, ty, field, value, status)
  local n = 0
  for _, r in ipairs(recs) do
    if r.type == ty and r[field] == value and (status == nil or r.status == status) then n = n + 1 end
  end
  return n
end

-- The value of the sample `series` (name and labels as written) in a
-- /metrics body.
local function sample(body, series)
  for line in body:gmatch("[^\n]+") do
    local s, v = line:match("^(.-) (%S+)$")
    if s == series then return tonumber(v) end
  end
end

local function promtool_ok(body)
  local f = os.tmpname()
  h.write(f, body)
  local p = io.popen("promtool check metrics < " .. h.q(f) .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  os.remove(f)
  return out
end

describe("run --listen", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("serves /metrics in Prometheus's text format while the run goes on, then its final figures", function()
    dir = project(0.005, 20)
    local port = cl.free_port()
    local job = cl.start(dir, ("run t -q --time-scale 6 --report r.jsonl --listen %d"):format(port))
    local base = "http://127.0.0.1:" .. port
    assert.is_true(cl.wait_up(base .. "/metrics"))
    cl.sleep(1)
    local code, body = cl.get(base .. "/metrics")
    assert.equal(200, code)
    -- promtool's own reading of the format: no error (exit 0, or 3 for
    -- lint notes such as the user's "latency_ms" abbreviating a unit)
    assert.matches("rc=[03]\n$", promtool_ok(body))
    for _, fam in ipairs({ "orchlua_invocations_total counter", "orchlua_skipped_total counter",
                           "orchlua_results_total counter", "orchlua_invocation_duration_seconds summary",
                           "orchlua_lateness_seconds summary", "orchlua_run_elapsed_seconds gauge",
                           "orchlua_info gauge", "orch_latency_ms gauge" }) do
      assert.truthy(body:find("# TYPE " .. fam .. "\n", 1, true), fam)
    end
    assert.equal(1, sample(body, 'orchlua_info{test_name="t",version="' .. body:match('version="([^"]*)"') .. '"}'))
    assert.truthy(sample(body, 'orchlua_invocations_total{event="tick",status="ok"}') >= 1)
    assert.truthy(sample(body, 'orchlua_invocations_total{event="boom",status="error"}') >= 1)
    assert.truthy(sample(body, 'orchlua_lateness_seconds{event="tick",quantile="0.99"}') >= 0)
    -- field names made label names, values escaped
    assert.truthy(body:find('orch_latency_ms{event="tick",bad_key="x\\"y",host="a-1"} ', 1, true))
    -- /status
    local scode, status = cl.get(base .. "/status")
    assert.equal(200, scode)
    local st = cjson.decode(status)
    assert.equal("t", st.test_name)
    assert.equal(18, st.total)
    assert.is_false(st.ended)
    assert.same({}, st.failing_checks)
    assert.truthy(st.events.tick.runs >= 1)
    -- / : the report so far, reloading itself
    local pcode, page = cl.get(base .. "/")
    assert.equal(200, pcode)
    assert.truthy(page:find('<meta http-equiv="refresh" content="10">', 1, true))
    assert.truthy(page:find("<h1>t</h1>", 1, true))
    assert.equal(404, (cl.get(base .. "/nope")))
    -- the final figures: the linger serves one more scrape after the end
    local final
    for _ = 1, 200 do
      local c2, b2 = cl.get(base .. "/metrics")
      if c2 ~= 200 then break end
      final = b2
      cl.sleep(0.05)
    end
    local rc, _, err = cl.wait(job)
    assert.equal(1, rc, err)   -- boom fails
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal(count(recs, "invocation", "event", "tick", "ok"),
                 sample(final, 'orchlua_invocations_total{event="tick",status="ok"}'))
    assert.equal(count(recs, "invocation", "event", "boom", "error"),
                 sample(final, 'orchlua_invocations_total{event="boom",status="error"}'))
    local function results(event)
      local n = 0
      for _, r in ipairs(recs) do
        if r.type == "result" and r.level == "info" and r.event == event then n = n + 1 end
      end
      return n
    end
    assert.equal(2 * count(recs, "invocation", "event", "tick"), results("tick"))
    assert.equal(results("tick"), sample(final, 'orchlua_results_total{event="tick",level="info"}'))
    assert.equal(results("boom"), sample(final, 'orchlua_results_total{event="boom",level="info"}'))
    assert.equal(count(recs, "invocation", "event", "tick"),
                 sample(final, 'orchlua_results_total{event="tick",level="metric"}'))
  end)

  it("puts the run's --labels on every series, escaped, and renames one that clashes", function()
    dir = project(0.003, 10)
    local port = cl.free_port()
    local job = cl.start(dir, ("run t -q --time-scale 6 --listen %d --label site=lab-1 --label note='a \"b\"' "
      .. "--label event=x"):format(port))
    local url = ("http://127.0.0.1:%d/metrics"):format(port)
    assert.is_true(cl.wait_up(url))
    cl.sleep(0.5)
    local code, body = cl.get(url)
    assert.equal(200, code)
    local labels = ',label_event="x",note="a \\"b\\"",site="lab-1"'
    local samples = 0
    for line in body:gmatch("[^\n]+") do
      if not line:match("^#") then
        samples = samples + 1
        assert.truthy(line:find(labels .. "}", 1, true) or line:find("{" .. labels:sub(2) .. "}", 1, true)
          or line:find(labels .. ",quantile=", 1, true) or line:find(labels .. ",status=", 1, true), line)
      end
    end
    assert.truthy(samples > 20)
    assert.truthy(body:find('orchlua_run_elapsed_seconds{' .. labels:sub(2) .. '} ', 1, true))
    assert.truthy(body:find('orch_latency_ms{event="tick",bad_key="x\\"y",host="a-1"' .. labels .. '} ', 1, true))
    local _, status = cl.get((url:gsub("/metrics$", "/status")))
    assert.same({ event = "x", note = 'a "b"', site = "lab-1" }, cjson.decode(status).labels)
    assert.equal(1, (cl.wait(job)))
  end)

  it("exports each check of run.checks:snapshot() as orchlua_check_ok, 0 once it fails", function()
    -- orch.live's /metrics text over a run whose checks say pass and fail
    -- (the checks themselves are another module's: a stand-in here)
    local src = [[
      local live, core = require "orch.live", require "orch.core"
      return { probe = function(result_reporter, kill_switch)
        local checks = { snapshot = function()
          return { { name = "p99 ok", stat = "p99", status = "pass" },
                   { name = 'no "errors"', stat = "errors", status = "fail", value = 3, max = 0 },
                   { name = "quiet", stat = "count", status = "no_data" } }
        end }
        local self = setmetatable({ labels = ',site="a"', invokers = {}, labelsets = {}, tally = core.tally(10),
          run = { desc = { test_name = "x" }, opts = { version = "v" }, console = {}, t0_ns = 1, checks = checks } }, live)
        self.tally:set_labels(self.labels, { "site" })
        result_reporter:add_result({ text = self:metrics():text() })
        kill_switch:set()
      end }
    ]]
    dir = h.project({ ["events/ev.lua"] = src, ["descriptions/c.json"] = cjson.encode({ test_name = "c",
      total_hours = 1, events = { { name = "probe", at_startup = true } } }) })
    local code, _, err = h.run("run c -q --report r.jsonl", dir)
    assert.equal(0, code, err)
    local text = h.select(h.jsonl(dir .. "/r.jsonl"), "result")[1].data.text
    assert.truthy(text:find('# HELP orchlua_check_ok 1 while a check holds, 0 once it fails.\n'
      .. '# TYPE orchlua_check_ok gauge\n'
      .. 'orchlua_check_ok{check="p99 ok",site="a"} 1\n'
      .. 'orchlua_check_ok{check="no \\"errors\\"",site="a"} 0\n'
      .. 'orchlua_check_ok{check="quiet",site="a"} 1\n', 1, true), text)
    assert.matches("rc=[03]\n$", promtool_ok(text))
  end)

  it("asks for the bearer token when ORCHLUA_LISTEN_TOKEN is set", function()
    dir = project(0.003, 1)
    local port = cl.free_port()
    local job = cl.start(dir, ("run t -q --time-scale 6 --listen 127.0.0.1:%d"):format(port),
                         "ORCHLUA_LISTEN_TOKEN=s3cret-token")
    local url = ("http://127.0.0.1:%d/metrics"):format(port)
    assert.is_true(cl.wait_up(url))
    local code, body = cl.get(url)
    assert.equal(401, code)
    assert.equal("401 unauthorized: this orchlua wants Authorization: Bearer <ORCHLUA_LISTEN_TOKEN>\n", body)
    assert.equal(401, (cl.get(url, { "Authorization: Bearer s3cret-tokex" })))
    assert.equal(401, (cl.get(url, { "Authorization: Bearer s3cret-token-and-more" })))
    assert.equal(401, (cl.get(url, { "Authorization: Basic czNjcmV0LXRva2Vu" })))
    assert.equal(200, (cl.get(url, { "Authorization: Bearer s3cret-token" })))
    assert.equal(200, (cl.get(url:gsub("/metrics$", "/status"), { "Authorization: Bearer s3cret-token" })))
    assert.equal(1, (cl.wait(job)))
  end)

  it("refuses a bad address or port with exit 2 and the whole message, before anything runs", function()
    dir = project(0.003, 1)
    local code, out, err, _ = h.run("run t -q --report r.jsonl --listen nope:abc", dir)
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal('orchlua: --listen expects [ADDR:]PORT (ADDR a numeric IPv4 address, [IPv6] or localhost; '
      .. 'PORT 0-65535), found "nope:abc"\n', err)
    assert.is_nil(h.read(dir .. "/r.jsonl"))
    code, _, err = h.run("run t -q --listen 70000", dir)
    assert.equal(2, code)
    assert.equal('orchlua: --listen expects a port 0-65535, found 70000 in "70000"\n', err)
    code, _, err = h.run("run t -q --listen 300.1.1.1:80", dir)
    assert.equal(2, code)
    assert.equal('orchlua: --listen expects [ADDR:]PORT (ADDR a numeric IPv4 address, [IPv6] or localhost; '
      .. 'PORT 0-65535), found "300.1.1.1:80"\n', err)
    code, _, err = h.run("run t -q --listen", dir)
    assert.equal(2, code)
    assert.matches("%-%-listen needs a value", err)
    code, _, err = h.run("run t -q --listen 0", dir, "ORCHLUA_LISTEN_TOKEN=")
    assert.equal(2, code)
    assert.equal("orchlua: ORCHLUA_LISTEN_TOKEN is set but empty: unset it or give it a token\n", err)
    -- from .orchlua, named as such
    h.write(dir .. "/.orchlua", 'return { sources = { "events/*.lua" }, grace_sec = 1, listen = "x" }\n')
    code, _, err = h.run("run t -q", dir)
    assert.equal(2, code)
    assert.equal(('orchlua: %s/.orchlua: listen expects [ADDR:]PORT (ADDR a numeric IPv4 address, [IPv6] or '
      .. 'localhost; PORT 0-65535), found "x"\n'):format(dir), err)
  end)

  it("refuses a port in use with exit 2", function()
    dir = project(0.003, 1)
    local holder, port = cl.hold_port()
    local code, out, err = h.run(("run t -q --report r.jsonl --listen 127.0.0.1:%d"):format(port), dir)
    cl.release(holder)
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal(("orchlua: --listen 127.0.0.1:%d: cannot listen: address already in use\n"):format(port), err)
    assert.is_nil(h.read(dir .. "/r.jsonl"))
  end)

  it("listens on the address given with the config's listen", function()
    dir = project(0.003, 1)
    local port = cl.free_port()
    h.write(dir .. "/.orchlua", ('return { sources = { "events/*.lua" }, grace_sec = 1, listen = ":%d" }\n'):format(port))
    local job = cl.start(dir, "run t -q --time-scale 6")
    assert.is_true(cl.wait_up(("http://127.0.0.1:%d/status"):format(port)))
    assert.equal(200, (cl.get(("http://127.0.0.1:%d/status"):format(port))))
    assert.equal(1, (cl.wait(job)))
  end)

  describe("bad clients", function()
    local port, job
    before_each(function()
      dir = project(0.008, 1)
      port = cl.free_port()
      job = cl.start(dir, ("run t -q --time-scale 3 --report r.jsonl --listen %d"):format(port))
      assert.is_true(cl.wait_up(("http://127.0.0.1:%d/status"):format(port)))
    end)

    -- the run went on and lost nothing: every firing of tick is there
    local function run_intact()
      local rc, _, err = cl.wait(job)
      assert.equal(1, rc, err)
      local recs = h.jsonl(dir .. "/r.jsonl")
      local ks = {}
      for _, r in ipairs(recs) do
        if r.type == "invocation" and r.event == "tick" then ks[#ks + 1] = r.iteration end
      end
      table.sort(ks)
      local want = {}
      for k = 0, 28 do want[k + 1] = k end
      assert.same(want, ks)
      assert.equal(0, count(recs, "skipped", "event", "tick"))
    end

    it("answers a request line of 1 MB with 414 and closes", function()
      local got, how = cl.exchange(port, { "GET /" .. ("a"):rep(1024 * 1024) .. " HTTP/1.1\r\nHost: x\r\n\r\n" })
      assert.equal("eof", how)
      assert.matches("^HTTP/1.1 414 URI Too Long\r\n", got)
      assert.matches("Connection: close\r\n", got)
      assert.equal(200, (cl.get(("http://127.0.0.1:%d/metrics"):format(port))))
      run_intact()
    end)

    it("answers garbage with 400 and closes; a header too large with 431; a POST with 405", function()
      local got, how = cl.exchange(port, { "\0\1\2\255 garbage \r\n\r\n" })
      assert.equal("eof", how)
      assert.matches("^HTTP/1.1 400 Bad Request\r\n", got)
      got, how = cl.exchange(port, { "GET /metrics HTTP/1.1\r\nX-Big: " .. ("b"):rep(20000) .. "\r\n\r\n" })
      assert.equal("eof", how)
      assert.matches("^HTTP/1.1 431 ", got)
      got, how = cl.exchange(port, { "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" })
      assert.equal("eof", how)
      assert.matches("^HTTP/1.1 405 Method Not Allowed\r\n", got)
      assert.matches("Allow: GET, HEAD\r\n", got)
      run_intact()
    end)

    it("keeps a connection alive over several requests", function()
      local reqs = { "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "GET /status HTTP/1.1\r\nHost: x\r\n\r\n",
                     "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" }
      -- the next request once the previous response is whole
      local function responses(s)
        local n, at = 0, 1
        while true do
          local hs, he = s:find("\r\n\r\n", at, true)
          if not hs then return n end
          local head = s:sub(at, he)
          local len = tonumber(head:match("Content%-Length: (%d+)")) or 0
          if head:match("^HEAD") or n == 2 then len = 0 end   -- the third answers a HEAD
          if #s < he + len then return n end
          n, at = n + 1, he + len + 1
        end
      end
      local got, how = cl.exchange(port, reqs, { keep_open_ok = true,
        until_fn = function(s, i) return responses(s) >= i end })
      assert.equal("open", how)
      local n = 0
      for status in got:gmatch("HTTP/1.1 (%d+)") do
        n = n + 1
        assert.equal(({ "200", "200", "200", "404" })[n], status)
      end
      assert.equal(4, n)
      local _, ka = got:gsub("Connection: keep%-alive\r\n", "")
      assert.equal(4, ka)
      -- pipelined: three requests in one write, three answers in order
      got, how = cl.exchange(port, { reqs[2] .. reqs[4] .. "GET /status HTTP/1.1\r\nConnection: close\r\n\r\n" })
      assert.equal("eof", how)
      local statuses = {}
      for status in got:gmatch("HTTP/1.1 (%d+)") do statuses[#statuses + 1] = status end
      assert.same({ "200", "404", "200" }, statuses)
      run_intact()
    end)

    it("answers other clients while one sends half a request and stops, or pipelines without reading", function()
      local uv = require "luv"
      local slow = uv.new_tcp()
      slow:connect("127.0.0.1", port, function(err)
        assert(not err, err)
        slow:write("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Half: ")
      end)
      local flood = uv.new_tcp()
      flood:connect("127.0.0.1", port, function(err)
        assert(not err, err)
        flood:write(("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"):rep(200))   -- never read
      end)
      uv.run("once"); uv.run("once")
      cl.sleep(0.3)
      for _ = 1, 3 do
        local code, body = cl.get(("http://127.0.0.1:%d/metrics"):format(port))
        assert.equal(200, code)
        assert.truthy(body:find("orchlua_invocations_total", 1, true))
      end
      slow:close(); flood:close(); uv.run("nowait")
      run_intact()
    end)

    it("goes on with 10,000 idle connections open, and still answers a scraper", function()
      local conns, ok = cl.open_idle(port, 10000)
      assert.truthy(ok >= 9000, ("%d of 10000 connected"):format(ok))
      local code, body = cl.get(("http://127.0.0.1:%d/metrics"):format(port))
      assert.equal(200, code)
      assert.truthy(body:find("orchlua_invocations_total", 1, true))
      cl.close_all(conns)
      run_intact()
    end)
  end)
end)

describe("run --listen scraped by Prometheus", function()
  local dir, prom

  after_each(function()
    if prom then os.execute("kill " .. prom .. " 2>/dev/null"); prom = nil end
    h.rm(dir)
  end)

  -- Prometheus's HTTP API: the query's only value, as a number.
  local function query(pport, q)
    local code, body = cl.get(("http://127.0.0.1:%d/api/v1/query?query=%s"):format(pport,
      q:gsub("[^%w_]", function(c) return ("%%%02X"):format(c:byte()) end)))
    assert.equal(200, code, body)
    local res = cjson.decode(body).data.result
    assert.equal(1, #res, q .. ": " .. body)
    return tonumber(res[1].value[2])
  end

  it("holds the run's counts and its reported metric, as the JSONL has them", function()
    dir = project(0.01, 20)
    local port, pport = cl.free_port(), cl.free_port()
    h.write(dir .. "/prom/prometheus.yml", ([[
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: orchlua
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: ["127.0.0.1:%d"]
]]):format(port))
    local p = io.popen(("cd %s && /usr/bin/prometheus --config.file=prom/prometheus.yml "
      .. "--storage.tsdb.path=prom/data --web.listen-address=127.0.0.1:%d --log.level=warn "
      .. ">prom/log 2>&1 & echo $!"):format(h.q(dir), pport))
    prom = p:read("l")
    p:close()
    -- no Prometheus, no pass: this spec never skips
    local up = false
    for _ = 1, 300 do
      if cl.get(("http://127.0.0.1:%d/-/ready"):format(pport)) == 200 then up = true break end
      cl.sleep(0.1)
    end
    assert.is_true(up, "Prometheus (/usr/bin/prometheus, `make deps`) did not start: "
      .. tostring(h.read(dir .. "/prom/log")))
    local job = cl.start(dir, ("run t -q --time-scale 6 --report r.jsonl --listen 127.0.0.1:%d"):format(port))
    local rc, _, err = cl.wait(job)
    assert.equal(1, rc, err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    -- the last sample each series had (a scrape that fails after the exit
    -- marks them stale; a range keeps the samples before)
    local function last(series) return query(pport, ("last_over_time(%s[5m])"):format(series)) end
    assert.equal(count(recs, "invocation", "event", "tick", "ok"),
                 last('orchlua_invocations_total{event="tick",status="ok"}'))
    assert.equal(count(recs, "invocation", "event", "boom", "error"),
                 last('orchlua_invocations_total{event="boom",status="error"}'))
    local metric
    for _, r in ipairs(recs) do
      if r.type == "result" and r.level == "metric" then metric = r.data.value end
    end
    assert.equal(metric, last('orch_latency_ms{event="tick",host="a-1"}'))
    assert.truthy(last('orchlua_run_elapsed_seconds') >= 35)
    -- every query of the Grafana dashboard is one Prometheus accepts, and
    -- the per-event ones find the run
    local dash = cjson.decode(h.read(h.root .. "/deploy/grafana/orchlua.json"))
    local n = 0
    for _, panel in ipairs(dash.panels) do
      for _, t in ipairs(panel.targets or {}) do
        local expr = t.expr:gsub("%$job", ".*"):gsub("%$event", ".*")
        local code, body = cl.get(("http://127.0.0.1:%d/api/v1/query?query=%s"):format(pport,
          expr:gsub("[^%w_]", function(c) return ("%%%02X"):format(c:byte()) end)))
        assert.equal(200, code, expr .. ": " .. tostring(body))
        assert.equal("success", cjson.decode(body).status, expr)
        n = n + 1
      end
    end
    assert.truthy(n >= 10)
  end)
end)

describe("deploy/grafana/orchlua.json", function()
  it("is a JSON dashboard over the live view's metrics", function()
    local text = h.read(h.root .. "/deploy/grafana/orchlua.json")
    assert.truthy(text, "deploy/grafana/orchlua.json is missing")
    local d = cjson.decode(text)
    assert.equal("orchlua", d.title)
    local exprs = {}
    for _, p in ipairs(d.panels) do
      for _, t in ipairs(p.targets or {}) do exprs[#exprs + 1] = t.expr end
    end
    local all = table.concat(exprs, "\n")
    for _, name in ipairs({ "orchlua_invocations_total", "orchlua_lateness_seconds",
                            "orchlua_invocation_duration_seconds", "orchlua_check_ok", "orch_" }) do
      assert.truthy(all:find(name, 1, true), name)
    end
  end)
end)
