-- examples/redis-nginx end to end: the 2-hour soak of a real redis-server
-- and nginx (make deps installs them), its first 18 minutes at
-- --time-scale 36 (about 30 s).  It must show none of issue 19's problems:
-- no load or probe before the servers answer, the load stopped before the
-- servers, a killed master's workers ended before the restart (no bind
-- error, no restart storm), real durations beside description ones, no
-- process or folder left behind; the chaos kills are info, and it exits 0.
local h = require "helper"

local EXAMPLE = h.root .. "/examples/redis-nginx"
-- with its "checks" line, the chaos deaths are errors the checks own;
-- without it, info
local CHECKS = h.read(EXAMPLE .. "/descriptions/redis_nginx.json"):match('\n%s*"checks"') ~= nil
local DEATH = CHECKS and "error" or "info"

-- the run's TMPDIR: its own folder, so that another run of the example
-- on the machine (another checkout's suite) is none of this one's business
local tmpdir

local function list_workdirs()
  local p = io.popen("ls -d " .. h.q(tmpdir) .. "/orchlua-redis-nginx.* 2>/dev/null")
  local set = {}
  for l in p:lines() do set[l] = true end
  p:close()
  return set
end

local function count(cmd)
  local p = io.popen(cmd .. " | wc -l")
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

describe("examples/redis-nginx", function()
  local out_dir, code, out, err, recs, before
  setup(function()
    out_dir = h.tmpdir()
    tmpdir = out_dir .. "/tmp"
    os.execute("mkdir " .. h.q(tmpdir))
    before = list_workdirs()
    code, out, err = h.run(("run redis_nginx --hours 0.3 --time-scale 36 -q --report %s --html %s"):format(
      h.q(out_dir .. "/r.jsonl"), h.q(out_dir .. "/r.html")), EXAMPLE, "ORCHLUA_DEBUG_STATS=1 TMPDIR=" .. h.q(tmpdir))
    recs = h.jsonl(out_dir .. "/r.jsonl")
  end)
  teardown(function() h.rm(out_dir) end)

  local function results(level)
    local list = {}
    for _, r in ipairs(recs) do
      if r.type == "result" and (level == nil or r.level == level) then list[#list + 1] = r end
    end
    return list
  end
  local function messages(pattern)
    local list = {}
    for _, r in ipairs(results()) do
      local m = type(r.data) == "table" and r.data.message
      if m and m:match(pattern) then list[#list + 1] = r end
    end
    return list
  end

  it("exits 0: every invocation succeeded, no error result but the chaos deaths the checks own", function()
    assert.equal(0, code, out .. err)
    for _, r in ipairs(results("error")) do
      assert.is_true(CHECKS, "an error result: " .. tostring(r.data.message))
      assert.matches("^%a+ was killed by signal 9$", r.data.message)
    end
    if CHECKS then
      local last = {}
      for _, r in ipairs(h.select(recs, "check")) do last[r.name] = r.status end
      assert.is_true(next(last) ~= nil, "no check record")
      for name, status in pairs(last) do assert.equal("pass", status, name) end
    end
    for _, r in ipairs(h.select(recs, "invocation")) do assert.equal("ok", r.status, r.id) end
    assert.matches("\nexit 0: ", out)
    assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
  end)

  it("starts the load and the probes only once the servers answer", function()
    local up = {}
    for _, r in ipairs(messages("^%a+ up %(pid %d+%)$")) do
      up[r.event] = up[r.event] or r.t
    end
    assert.truthy(up.redis_server and up.nginx_server)
    for _, id in ipairs({ "redis_bench", "probe_redis" }) do
      local first = h.select(recs, "invocation", "id", id)[1]
      assert.is_true(first.started >= up.redis_server, id)
    end
    for _, id in ipairs({ "http_load", "probe_nginx" }) do
      local first = h.select(recs, "invocation", "id", id)[1]
      assert.is_true(first.started >= up.nginx_server, id)
    end
    -- a probe is skipped only while its server restarts: after the chaos
    -- killed it, before it is up again (how many depends on how loaded
    -- the machine is, not on orchlua)
    for _, name in ipairs({ "redis", "nginx" }) do
      local kill = messages("^chaos: killed " .. name .. " ")[1]
      local ups = messages("^" .. name .. " up ")
      for _, r in ipairs(messages("^" .. name .. " restarting: probe skipped$")) do
        assert.is_true(kill ~= nil and r.t >= kill.t and ups[2] ~= nil and r.t <= ups[2].t,
          ("%s: a probe skipped at %s, outside its restart"):format(name, r.t))
      end
    end
    assert.is_true(#h.select(recs, "invocation", "id", "probe_redis") >= 100)
  end)

  it("kills each server once (info), restarts it cleanly: its workers ended, no bind error, no storm", function()
    for _, name in ipairs({ "redis", "nginx" }) do
      assert.equal(1, #messages("^chaos: killed " .. name .. " %(pid %d+%) with SIGKILL$"), name)
      local deaths = messages("^" .. name .. " was killed by signal 9$")
      assert.equal(1, #deaths, name)
      assert.equal(DEATH, deaths[1].level)
      assert.equal(2, #messages("^" .. name .. " up "), name)
    end
    assert.same({}, messages("still held"))
    assert.same({}, messages("restart storm"))
    assert.same({}, messages("emerg"))
    local final = messages("^final report$")[1]
    assert.equal(1, final.data.redis_restarts)
    assert.equal(1, final.data.nginx_restarts)
    assert.is_true(final.data.redis_up and final.data.nginx_up)
  end)

  it("runs a bounded load and samples the servers", function()
    local rps, lat, rss = 0, 0, 0
    for _, r in ipairs(results("metric")) do
      if r.data.metric == "redis.rps" then rps = rps + 1 end
      if r.data.metric == "nginx.latency" then lat = lat + 1 end
      if r.data.metric == "proc.redis.rss" then rss = rss + 1 end
    end
    assert.is_true(rps >= 30, "redis.rps: " .. rps)   -- SET and GET, 18 runs
    assert.is_true(lat >= 50, "nginx.latency: " .. lat)
    assert.is_true(rss >= 30, "proc.redis.rss: " .. rss)
  end)

  it("stops the load and the tails before the servers they use", function()
    local last = {}
    for _, r in ipairs(h.select(recs, "invocation")) do last[r.id] = r.t end
    for _, id in ipairs({ "tail_redis", "redis_bench", "probe_redis", "sample", "chaos_redis" }) do
      assert.is_true(last[id] <= last.redis_server, id)
    end
    for _, id in ipairs({ "tail_nginx", "http_load", "probe_nginx", "sample", "chaos_nginx" }) do
      assert.is_true(last[id] <= last.nginx_server, id)
    end
  end)

  it("keeps both clocks: duration_real beside duration; the summary in real time", function()
    for _, r in ipairs(h.select(recs, "invocation")) do
      assert.near(r.duration / 36, r.duration_real, 1e-6)
    end
    assert.matches("times in real seconds %(description time ran 36x faster%)", out)
    -- -q's status lines fit 80 columns (the summary fits the terminal: progress_spec)
    for l in out:gmatch("[^\n]+") do
      if l:match("^%d+:%d%d:%d%d/") then assert.is_true(#l <= 80, l) end
    end
    -- the rate (per real second) when it fits
    assert.matches("\n0:%d%d:%d%d/0:18:00  %d+ runs, 0 failed[%w, ]*  %d+ results, 0 errors[%d., /srealt]*\n", out)
    local html = h.read(out_dir .. "/r.html")
    assert.truthy(html)
    assert.is_nil(html:find("#%d+%.0[^%d]"))
  end)

  it("leaves no server and no folder behind", function()
    -- its folder was made in the run's TMPDIR (the tails name the files they follow)
    local made = false
    for _, r in ipairs(results()) do
      if type(r.data) == "table" and type(r.data.file) == "string"
          and r.data.file:find(tmpdir .. "/orchlua-redis-nginx.", 1, true) == 1 then made = true end
    end
    assert.is_true(made)
    assert.equal(0, count("pgrep -f " .. h.q(tmpdir .. "/[o]rchlua-redis-nginx")))
    for _, r in ipairs(messages("^redis up ")) do
      assert.equal(0, count(("ps -o pid= -p %d"):format(r.data.pid)))
    end
    for dirname in pairs(list_workdirs()) do assert.truthy(before[dirname], dirname .. " left behind") end
  end)
end)
