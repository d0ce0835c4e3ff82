-- A soak of redis-server and nginx on loopback, with the helpers rock:
-- supervise (restarts, readiness), probe, tail, sample.  Every port is
-- picked free at start; every file lives in a temporary folder removed at
-- the end; every process is stopped (supervise, then orchlua itself).
local orch = require "orch"
local supervise = require "orch.helpers.supervise"
local probe = require "orch.helpers.probe"
local tail = require "orch.helpers.tail"
local sample = require "orch.helpers.sample"

local M = {}

-- ---- fixtures: a folder, two ports, two supervised servers ----------------

orch.fixture("workdir", function()
  -- in $TMPDIR (else /tmp)
  local ok, _, out = orch.exec({ "mktemp", "-d", "-t", "orchlua-redis-nginx.XXXXXX" })
  assert(ok, "mktemp failed")
  local dir = out:gsub("%s+$", "")
  return dir, function() orch.exec({ "rm", "-rf", dir }) end
end)

-- A loopback port nothing listens on, from a range clear of the
-- ephemeral ports (a client's source port cannot take it meanwhile).
local function free_port(taken)
  local used = {}
  for _, l in ipairs(orch.sys.listeners()) do used[l.port] = true end
  for _ = 1, 1000 do
    local port = math.random(20000, 32000)
    if not used[port] and not taken[port] then taken[port] = true return port end
  end
  error("no free port between 20000 and 32000")
end

orch.fixture("ports", function()
  math.randomseed(orch.sys.pid(), os.time())
  local taken = {}
  return { redis = free_port(taken), nginx = free_port(taken) }
end)

orch.fixture("redis", function(workdir, ports)
  return supervise.new({
    name = "redis",
    cmd = { "redis-server", "--bind", "127.0.0.1", "--port", tostring(ports.redis), "--save", "",
            "--appendonly", "no", "--dir", workdir, "--logfile", workdir .. "/redis.log" },
    ready = { tcp = ports.redis, timeout = 10 },
    backoff = 0.1, level = "info",
  })
end)

local NGINX_CONF = [[
worker_processes 2;
pid %s/nginx.pid;
error_log %s/error.log notice;
events { worker_connections 256; }
http {
  access_log %s/access.log;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  server {
    listen 127.0.0.1:%d;
    location = /health { return 200 "ok\n"; }
    location / { return 200 "hello from nginx\n"; }
  }
}
]]

orch.fixture("nginx", function(workdir, ports)
  local conf = workdir .. "/nginx.conf"
  local f = assert(io.open(conf, "w"))
  f:write((NGINX_CONF:gsub("%%s", workdir):gsub("%%d", tostring(ports.nginx))))
  f:close()
  return supervise.new({
    name = "nginx",
    -- the master stays in the foreground; its workers share its group
    cmd = { "nginx", "-p", workdir, "-c", conf, "-e", workdir .. "/error.log", "-g", "daemon off;" },
    ready = { http = ("http://127.0.0.1:%d/health"):format(ports.nginx), timeout = 10 },
    backoff = 0.1, level = "info",
  })
end)

-- ---- the servers: started first, ready once they answer -------------------

-- A death the chaos events cause is expected: an error when a check owns
-- the server's errors (`"stat": "errors"` on its event: the check's limit
-- decides), else info, so that it does not fail the run.
local function death_level(description, id)
  for _, c in ipairs(description.checks or {}) do
    if c.event == id and (c.stat == "errors" or c.stat == "error_rate") then return "error" end
  end
  return "info"
end

function M.redis_server(redis, description, event, kill_switch, result_reporter)
  redis.level = death_level(description, event.id)
  redis:run(kill_switch, result_reporter, event)
end

function M.nginx_server(nginx, description, event, kill_switch, result_reporter)
  nginx.level = death_level(description, event.id)
  nginx:run(kill_switch, result_reporter, event)
end

-- A load never starts against a server that is restarting: it waits for
-- it, at most 10 real seconds (a server that stays down is an error).
local function wait_up(server, result_reporter)
  local deadline = orch.net.clock() + 10
  while not server.up do
    if orch.net.clock() > deadline then
      result_reporter:error(server.name .. " is not up after 10 s (real)")
      return false
    end
    orch.sleep(0.05 * orch.time_scale())
  end
  return true
end

-- ---- the load: bounded, and bounded in time ------------------------------

function M.redis_bench(redis, ports, requests, clients, result_reporter)
  if not wait_up(redis, result_reporter) then return end
  -- redis-benchmark waits forever when the server dies under it: the
  -- timeout (real seconds, whatever --time-scale) bounds it
  local ok, code, out, err, why = orch.exec({ "redis-benchmark", "-h", "127.0.0.1", "-p", tostring(ports.redis),
    "-n", tostring(requests), "-c", tostring(clients), "-t", "set,get", "--csv" }, { timeout = 30 })
  if not ok then
    return result_reporter:error("redis-benchmark failed", { code = code, why = why, stderr = err })
  end
  for test, rps in out:gmatch('"(%u+)","([%d.]+)"') do
    result_reporter:metric("redis.rps", tonumber(rps), { test = test })
  end
end

function M.http_load(nginx, ports, requests, result_reporter)
  if not wait_up(nginx, result_reporter) then return end
  local url = ("http://127.0.0.1:%d/"):format(ports.nginx)
  local argv = { "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{time_total}\n" }
  for _ = 1, requests do argv[#argv + 1] = url end
  local ok, code, out, err = orch.exec(argv, { timeout = 30 })
  local n, good, total = 0, 0, 0
  for status, t in out:gmatch("(%d+) ([%d.]+)") do
    n = n + 1
    if status == "200" then good = good + 1 end
    total = total + tonumber(t)
  end
  if not ok or good < requests then
    return result_reporter:error("http load failed", { code = code, ok = good, requests = requests,
                                                       stderr = err })
  end
  result_reporter:metric("nginx.latency", total / n, { url = url })
end

-- ---- probes, logs, sampling ----------------------------------------------

function M.probe_redis(redis, ports, result_reporter)
  if not redis.up then return result_reporter:info("redis restarting: probe skipped") end
  probe.check(result_reporter, ("tcp://127.0.0.1:%d"):format(ports.redis),
    { name = "redis", timeout = 2, send = "PING\r\n", expect = "PONG" })
end

function M.probe_nginx(nginx, ports, result_reporter)
  if not nginx.up then return result_reporter:info("nginx restarting: probe skipped") end
  probe.check(result_reporter, ("http://127.0.0.1:%d/health"):format(ports.nginx),
    { name = "nginx", timeout = 2, match = "ok" })
end

function M.tail_redis(workdir, kill_switch, result_reporter)
  tail.follow(workdir .. "/redis.log", kill_switch, result_reporter, { from = "start", patterns = {
    warning = { "# WARNING", level = "info" }, oom = { "Out of memory", level = "error" } } })
end

function M.tail_nginx(workdir, kill_switch, result_reporter)
  tail.follow(workdir .. "/error.log", kill_switch, result_reporter, { from = "start", patterns = {
    emerg = { "%[emerg%]", level = "error" }, alert = { "%[alert%]", level = "error" },
    crit = { "%[crit%]", level = "error" } } })
end

orch.fixture("sampler", function(redis, nginx)
  return sample.new({ processes = { redis = function() return redis.process end,
                                    nginx = function() return nginx.process end } })
end)

function M.sample(sampler, result_reporter)
  sampler:sample(result_reporter)
end

-- ---- chaos: SIGKILL, as an OOM killer or a crash would ------------------

local function kill(server, offset_sec, result_reporter)
  orch.sleep(offset_sec)   -- into the quiet slot between two loads
  local p = server.process
  if not p then return result_reporter:info(server.name .. " not running: nothing to kill") end
  orch.exec({ "kill", "-KILL", tostring(p.pid) })
  result_reporter:info(("chaos: killed %s (pid %d) with SIGKILL"):format(server.name, p.pid),
    { name = server.name, pid = p.pid })
end

function M.chaos_redis(redis, offset_sec, result_reporter) kill(redis, offset_sec, result_reporter) end
function M.chaos_nginx(nginx, offset_sec, result_reporter) kill(nginx, offset_sec, result_reporter) end

-- ---- at the end, while the servers still run -----------------------------

function M.final_report(redis, nginx, ports, result_reporter)
  local _, _, info = orch.exec({ "redis-cli", "-h", "127.0.0.1", "-p", tostring(ports.redis), "info", "stats" },
                               { timeout = 10 })
  result_reporter:info("final report", {
    redis_restarts = redis.restarts, nginx_restarts = nginx.restarts,
    redis_commands = tonumber((info or ""):match("total_commands_processed:(%d+)")),
    redis_up = redis.up, nginx_up = nginx.up,
  })
end

return M
