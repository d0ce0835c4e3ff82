-- Specs of the helpers rock (helpers/orch/helpers/*.lua): each helper used
-- from events run by the real binary, with the helpers found through the
-- project's lua_path (rocks_spec.lua covers installing them with luarocks);
-- the tailer's file logic also in plain Lua.
local h = require "helper"
local peer_mod = require "e2e.fixtures.rocks.peer"
local cjson = require "cjson"

local HELPERS = h.root .. "/helpers"

local dir
local function project(src, events, hours)
  local desc = { test_name = "t", total_hours = hours or 0.0002, events = events }
  dir = h.project({
    ["events/ev.lua"] = src,
    ["descriptions/t.json"] = cjson.encode(desc),
    [".orchlua"] = ('return { sources = { "events/*.lua" }, grace_sec = 1, lua_path = { %q } }\n')
      :format(HELPERS .. "/?.lua"),
  })
  return dir
end

-- Runs the project; returns status, records, stderr.
local function run(src, events, hours)
  project(src, events, hours)
  local code, _, err = h.run("run t -q --report r.jsonl", dir, "ORCHLUA_DEBUG_STATS=1")
  return code, h.jsonl(dir .. "/r.jsonl"), err
end

local function results(recs, level)
  local out = {}
  for _, r in ipairs(recs) do
    if r.type == "result" and (level == nil or r.level == level) then out[#out + 1] = r.data end
  end
  return out
end

local function metrics(recs, name)
  local out = {}
  for _, d in ipairs(results(recs, "metric")) do
    if d.metric == name then out[#out + 1] = d end
  end
  return out
end

local function messages(recs, level)
  local out = {}
  for _, d in ipairs(results(recs, level)) do out[#out + 1] = d.message end
  return out
end

local function invocation(recs, id)
  for _, r in ipairs(recs) do
    if r.type == "invocation" and r.id == id then return r end
  end
end

local function no_leaks(err)
  assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
end

-- processes whose command line holds `marker` (the bracket keeps pgrep's
-- own shell, whose command line holds the pattern, from matching)
local function alive(marker)
  local p = io.popen("pgrep -f " .. h.q("[" .. marker:sub(1, 1) .. "]" .. marker:sub(2)) .. " 2>/dev/null")
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

describe("orch.helpers", function()
  after_each(function() h.rm(dir) end)

  describe("probe", function()
    local peer
    setup(function() peer = peer_mod.start() end)
    teardown(function() peer_mod.stop(peer) end)

    it("reports the latency of healthy HTTP and TCP targets as metrics", function()
      local code, recs, err = run([[
        local probe = require "orch.helpers.probe"
        return { health = function(http, echo, result_reporter, kill_switch)
          local base = "http://127.0.0.1:" .. http
          local ok = probe.check(result_reporter, base .. "/ok", { name = "api", match = "^healthy$" })
          local port = probe.check(result_reporter, "tcp://127.0.0.1:" .. echo, { name = "port" })
          local chunked = probe.http(base .. "/chunked")
          local banner = probe.tcp("127.0.0.1", echo, { send = "PING\n", expect = "^PING" })
          result_reporter:add_result({ ok = ok.ok, status = ok.status, body = ok.body,
            type = ok.headers["content-type"], port = port.ok, chunked = chunked.body,
            banner = banner.data, timed = ok.latency > 0 and ok.connect <= ok.latency })
          kill_switch:set()
        end }
      ]], { { name = "health", params = { http = peer.ports.http, echo = peer.ports.echo } } })
      assert.equal(0, code)
      no_leaks(err)
      assert.same({ ok = true, status = 200, body = "healthy", type = "text/plain", port = true,
                    chunked = "hello, world", banner = "PING\n", timed = true }, results(recs, "info")[1])
      local api = metrics(recs, "api.latency")
      assert.equal(1, #api)
      assert.same({ target = ("http://127.0.0.1:%d/ok"):format(peer.ports.http), status = 200 }, api[1].fields)
      assert.equal(1, #metrics(recs, "port.latency"))
    end)

    it("reports an error result naming the target and why the probe failed", function()
      local code, recs, err = run([[
        local probe = require "orch.helpers.probe"
        return { unhealthy = function(http, silent, result_reporter, kill_switch)
          local base = "http://127.0.0.1:" .. http
          probe.check(result_reporter, base .. "/fail", { name = "api" })
          probe.check(result_reporter, base .. "/ok", { name = "api", match = "nope" })
          probe.check(result_reporter, base .. "/ok", { name = "api", expect = { 201, 204 } })
          probe.check(result_reporter, "tcp://127.0.0.1:1")
          probe.check(result_reporter, "http://127.0.0.1:" .. silent .. "/", { name = "hung", timeout = 0.2 })
          probe.check(result_reporter, base .. "/fail", { name = "soft", level = "info" })
          kill_switch:set()
        end }
      ]], { { name = "unhealthy", params = { http = peer.ports.http, silent = peer.ports.silent } } })
      assert.equal(1, code)
      no_leaks(err)
      local base = "http://127.0.0.1:" .. peer.ports.http
      assert.same({
        ("api: %s/fail failed: status 503, expected 2xx or 3xx"):format(base),
        ("api: %s/ok failed: body does not match \"nope\": \"healthy\""):format(base),
        ("api: %s/ok failed: status 200, expected 201 or 204"):format(base),
        "probe: tcp://127.0.0.1:1 failed: 127.0.0.1:1: connection refused",
        ("hung: http://127.0.0.1:%d/ failed: no response: timeout"):format(peer.ports.silent),
      }, messages(recs, "error"))
      assert.same({ ("soft: %s/fail failed: status 503, expected 2xx or 3xx"):format(base) }, messages(recs, "info"))
      assert.same({}, metrics(recs, "api.latency"))
    end)

    it("raises at the event's line on a URL or option it cannot use", function()
      local code, recs = run([[
        local probe = require "orch.helpers.probe"
        return {
          tls = function() probe.http("https://example.com/") end,
          typo = function() probe.tcp("127.0.0.1", 1, { timout = 1 }) end,
          target = function() probe.run("udp://127.0.0.1:53") end,
        }
      ]], { { name = "tls" }, { name = "typo" }, { name = "target" } }, 0.0001)
      assert.equal(1, code)
      assert.matches("^events/ev.lua:3: orch.helpers.probe.http: https://example.com/: https is not supported " ..
        "%(orchlua has no TLS%); probe the port with probe.tcp\n", invocation(recs, "tls").error)
      assert.matches("^events/ev.lua:4: orch.helpers.probe.tcp: unknown option timout %(known: expect, level, " ..
        "name, send, timeout%)\n", invocation(recs, "typo").error)
      assert.matches("^events/ev.lua:5: orch.helpers.probe.run: expected tcp://host:port or an http:// URL, " ..
        "got \"udp://127.0.0.1:53\"\n", invocation(recs, "target").error)
    end)
  end)

  describe("tail", function()
    local tail
    setup(function()
      package.path = HELPERS .. "/?.lua;" .. package.path
      tail = require "orch.helpers.tail"
    end)

    local function append(path, text)
      local f = assert(io.open(path, "a"))
      f:write(text)
      f:close()
    end

    local function lines(matches)
      local out = {}
      for _, m in ipairs(matches) do out[#out + 1] = m.pattern .. "=" .. m.line end
      return out
    end

    it("reads only what is written after open, a line once its newline is there", function()
      dir = h.tmpdir()
      local log = dir .. "/app.log"
      append(log, "old ERROR\n")
      local t = tail.open(log, { patterns = { err = "ERROR" } })
      assert.same({}, t:poll())
      append(log, "new ERROR one\nno match\npartial ERR")
      assert.same({ "err=new ERROR one" }, lines(t:poll()))
      append(log, "OR two\n")
      assert.same({ "err=partial ERROR two" }, lines(t:poll()))
      assert.same({ err = 2 }, t.counts)
      assert.equal(3, t.lines)
    end)

    it("matches list and named patterns with their captures and levels, from the start", function()
      dir = h.tmpdir()
      local log = dir .. "/kern.log"
      append(log, "kernel: Out of memory: Killed process 42 (streamer)\r\nlink up 1000Mb/s\n")
      local t = tail.open(log, { from = "start", patterns = {
        "link up", oom = { "Killed process (%d+) %((%w+)%)", level = "error" }, any = { "(", plain = true } } })
      local m = t:poll()
      -- in pattern order: the list first, then the named ones by name
      assert.same({ "any=kernel: Out of memory: Killed process 42 (streamer)",
                    "oom=kernel: Out of memory: Killed process 42 (streamer)", "link up=link up 1000Mb/s" }, lines(m))
      assert.same({ "42", "streamer" }, m[2].captures)
      assert.equal("error", m[2].level)
      assert.equal("info", m[1].level)
    end)

    it("starts over when the file shrinks, and waits for a file that does not exist yet", function()
      dir = h.tmpdir()
      local log = dir .. "/rotating.log"
      local t = tail.open(log)
      assert.same({}, t:poll())
      append(log, "first\nsecond\n")
      assert.same({ "line=first", "line=second" }, lines(t:poll()))
      os.remove(log)
      append(log, "new\n")
      assert.same({ "line=new" }, lines(t:poll()))
    end)

    it("raises on a bad pattern or option, naming it", function()
      assert.has_error(function() tail.open("x.log", { patterns = { bad = "[" } }) end,
        "orch.helpers.tail: patterns.bad: bad pattern \"[\": malformed pattern (missing ']')")
      assert.has_error(function() tail.open("x.log", { from = "middle" }) end,
        "orch.helpers.tail: from must be \"end\" or \"start\", got middle")
      assert.has_error(function() tail.open("x.log", { pattern = "x" }) end,
        "orch.helpers.tail: unknown option pattern")
    end)

    it("follows a file from an event until the kill switch, reporting each match", function()
      local code, recs, err = run([[
        local tail = require "orch.helpers.tail"
        return {
          watch = function(kill_switch, result_reporter)
            local t = tail.follow("app.log", kill_switch, result_reporter, { interval = 0.05,
              patterns = { failure = { "ERROR (%w+)", level = "error" }, tick = "INFO" } })
            result_reporter:add_result({ counts = t.counts })
          end,
          write = function(event)
            local f = assert(io.open("app.log", "a"))
            f:write(event.iteration % 2 == 0 and "INFO tick\n" or "ERROR disk\n")
            f:close()
          end,
        }
      ]], { { name = "watch" }, { name = "write", interval_sec = 0.1, at_teardown = true } })
      assert.equal(1, code)
      no_leaks(err)
      local writes = #(function() local l = {} for _, r in ipairs(recs) do
        if r.type == "invocation" and r.id == "write" then l[#l + 1] = r end end return l end)()
      local errors, infos = messages(recs, "error"), messages(recs, "info")
      assert.equal(writes // 2, #errors)
      assert.equal("app.log: failure: ERROR disk", errors[1])
      assert.equal("app.log: tick: INFO tick", infos[1])
      local last = results(recs, "info")
      assert.same({ failure = writes // 2, tick = writes - writes // 2 }, last[#last].counts)
      assert.same({ "disk" }, results(recs, "error")[1].captures)
    end)
  end)

  describe("supervise", function()
    it("restarts a process that dies, reporting each death and the restarts", function()
      local marker = "orchlua-spec-flaky-" .. os.time()
      local code, recs, err = run(([[
        local supervise = require "orch.helpers.supervise"
        return { keep = function(kill_switch, result_reporter)
          local s = supervise.run({ name = "flaky", cmd = { "sh", "-c", "sleep 0.1; exit 3", %q },
            backoff = 0.05, max_backoff = 0.1, level = "info" }, kill_switch, result_reporter)
          result_reporter:add_result({ restarts = s.restarts, deaths = #s.history, running = s.process ~= nil })
        end }
      ]]):format(marker), { { name = "keep" } })
      assert.equal(0, code)
      no_leaks(err)
      -- quick deaths in a row are a storm: reported at 1, 2, 4, ... deaths
      local deaths = {}
      for _, d in ipairs(results(recs, "info")) do
        if d.message == "flaky exited with code 3" or (d.message or ""):match("^flaky: restart storm") then
          deaths[#deaths + 1] = d
        end
      end
      assert.is_true(#deaths >= 2, "deaths: " .. #deaths)
      assert.equal(3, deaths[1].code)
      assert.equal("flaky", deaths[1].name)
      assert.equal(0, deaths[1].restarts)
      assert.equal(1, deaths[2].restarts)
      assert.equal(2, deaths[2].deaths)
      assert.matches("^flaky: restart storm: 2 deaths in a row, each within 60s of its start %(last: flaky "
        .. "exited with code 3%)$", deaths[2].message)
      if deaths[3] then assert.equal(4, deaths[3].deaths) end
      local r = metrics(recs, "flaky.restarts")
      assert.equal(1, r[1].value)
      assert.equal(2, r[2].value)
      local summary = results(recs, "info")
      summary = summary[#summary]
      assert.equal(#r, summary.restarts)
      assert.is_false(summary.running)
      assert.equal(0, alive(marker))
    end)

    it("stops the process at the end of the run without reporting it as a death", function()
      local marker = "orchlua-spec-steady-" .. os.time()
      local code, recs, err = run(([[
        local supervise = require "orch.helpers.supervise"
        return { keep = function(kill_switch, result_reporter)
          local s = supervise.run({ cmd = { "sh", "-c", "sleep 30", %q } }, kill_switch, result_reporter)
          result_reporter:add_result({ restarts = s.restarts, deaths = #s.history })
        end }
      ]]):format(marker), { { name = "keep" } }, 0.0001)
      assert.equal(0, code)
      no_leaks(err)
      assert.same({ { restarts = 0, deaths = 0 } }, results(recs, "info"))
      assert.equal(0, alive(marker))
    end)

    it("gives up after max_restarts with an error result", function()
      local code, recs = run([[
        local supervise = require "orch.helpers.supervise"
        return { keep = function(kill_switch, result_reporter)
          supervise.run({ name = "crasher", cmd = { "sh", "-c", "exit 1" }, backoff = 0, max_restarts = 1 },
            kill_switch, result_reporter)
        end }
      ]], { { name = "keep" } }, 0.0001)
      assert.equal(1, code)
      assert.same({ "crasher exited with code 1",
        "crasher: restart storm: 2 deaths in a row, each within 60s of its start (last: crasher exited with code 1)",
        "crasher: gave up after 1 restart" }, messages(recs, "error"))
    end)

    it("fails the event when the program cannot start at all", function()
      local code, recs = run([[
        local supervise = require "orch.helpers.supervise"
        return { keep = function(kill_switch, result_reporter)
          supervise.run({ cmd = { "/nonexistent/prog" } }, kill_switch, result_reporter)
        end }
      ]], { { name = "keep" } }, 0.0001)
      assert.equal(1, code)
      assert.matches("^events/ev.lua:3: orch.helpers.supervise: prog: orch.spawn: cannot run " ..
        "\"/nonexistent/prog\": no such file or directory\n", invocation(recs, "keep").error)
    end)
  end)

  describe("sample", function()
    it("reports machine and process figures as metrics, CPU rates from the second sample on", function()
      local code, recs, err = run([[
        local orch = require "orch"
        local sample = require "orch.helpers.sample"
        orch.fixture("sampler", function()
          return sample.new({ processes = { me = orch.sys.pid(), ghost = 2147483000 } })
        end)
        return { sample = function(sampler, result_reporter) sampler:sample(result_reporter) end }
      ]], { { name = "sample", interval_sec = 0.1 } }, 0.0001)
      assert.equal(0, code)
      no_leaks(err)
      local n = #metrics(recs, "sys.mem.used")
      assert.is_true(n >= 3, "samples: " .. n)
      for _, name in ipairs({ "sys.mem.available", "sys.mem.percent", "sys.swap.used", "sys.load1", "sys.load5",
                              "sys.load15", "proc.me.rss", "proc.me.vms", "proc.me.threads", "proc.me.fds" }) do
        assert.equal(n, #metrics(recs, name), name)
      end
      for _, name in ipairs({ "sys.cpu.percent", "sys.cpu.user", "sys.cpu.system", "sys.cpu.iowait",
                              "proc.me.cpu_percent" }) do
        assert.equal(n - 1, #metrics(recs, name), name)
      end
      assert.is_true(metrics(recs, "proc.me.rss")[1].value > 0)
      assert.is_number(metrics(recs, "proc.me.rss")[1].fields.pid)
      local ghost = messages(recs, "info")
      assert.equal(n, #ghost)
      assert.equal("proc.ghost: not running (no such process: 2147483000)", ghost[1])
    end)

    it("reports a just-killed process as not running, never as zeros", function()
      local code, recs, err = run([[
        local orch = require "orch"
        local sample = require "orch.helpers.sample"
        return { chaos = function(result_reporter)
          local p = orch.spawn({ cmd = { "sleep", "100" } })
          local s = sample.new({ system = false, processes = { victim = p } })
          orch.sleep(0.1)
          s:sample(result_reporter)
          p:kill("KILL")
          -- not back on the loop yet: nobody has reaped it, it is a zombie
          local t = os.clock() + 0.05
          while os.clock() < t do end
          s:sample(result_reporter)
          p:wait()
          s:sample(result_reporter)
        end }
      ]], { { name = "chaos" } }, 0.0001)
      assert.equal(0, code, err)
      no_leaks(err)
      local rss = metrics(recs, "proc.victim.rss")
      assert.equal(1, #rss)
      assert.is_true(rss[1].value > 0)
      local gone = messages(recs, "info")
      assert.equal(2, #gone)
      for _, m in ipairs(gone) do assert.matches("^proc%.victim: not running %(", m) end
      assert.equal("proc.victim: not running (exited)", gone[1])
    end)

    it("samples in a loop until the kill switch with sample.run", function()
      local code, recs, err = run([[
        local orch = require "orch"
        local sample = require "orch.helpers.sample"
        return { sampling = function(kill_switch, result_reporter)
          sample.run(kill_switch, result_reporter, { interval = 0.1, system = false,
            processes = { me = function() return { pid = orch.sys.pid() } end } })
        end }
      ]], { { name = "sampling" } }, 0.0001)
      assert.equal(0, code)
      no_leaks(err)
      assert.is_true(#metrics(recs, "proc.me.rss") >= 3)
      assert.same({}, metrics(recs, "sys.mem.used"))
    end)
  end)
end)
