-- require "orch" from plain lua5.4 (this busted process), as the orchlua
-- rock installs it: no orch.core, no loop.  What makes sense outside the
-- host works; what needs the loop says so, whole message asserted.
-- (rocks_spec.lua runs the same from a real lua5.4 on an installed tree.)
package.path = "helpers/?.lua;" .. package.path

local orch = require "orch"

local function message(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return (tostring(err):gsub("^[^:]+:%d+: ", ""))
end

-- a queue as a plain Lua table: what a spec of an event can hand a reporter
local function fake_queue()
  local q = { items = {} }
  function q:put(v) self.items[#self.items + 1] = v end
  return q
end

describe("require \"orch\" outside the orchlua host", function()
  it("loads without orch.core", function()
    assert.is_false((pcall(require, "orch.core")))
    assert.is_nil(require("orch.host").core)
    assert.is_string(orch.version)
    assert.is_function(orch.fixture)
    assert.is_table(orch.ResultReporter)
  end)

  describe("the helpers that wait", function()
    it("say that they need the host's loop", function()
      assert.equal("orch.sleep needs the orchlua host's loop (run the event with orchlua)", message(orch.sleep, 1))
      assert.equal("orch.now needs the orchlua host's loop (run the event with orchlua)", message(orch.now))
      assert.equal("orch.spawn needs the orchlua host's loop (run the event with orchlua)",
        message(orch.spawn, { cmd = { "true" } }))
      assert.equal("orch.exec needs the orchlua host's loop (run the event with orchlua)",
        message(orch.exec, { "true" }))
    end)

    it("include orch.net, which loads but cannot connect", function()
      local net = require "orch.net"
      assert.equal(net.connect, orch.net.connect)
      assert.equal("orch.net.connect needs the orchlua host's loop (run the event with orchlua)",
        message(net.connect, "127.0.0.1", 80))
      assert.equal("orch.net.clock needs the orchlua host's loop (run the event with orchlua)", message(net.clock))
    end)
  end)

  describe("ResultReporter", function()
    it("queues records on any queue with put()", function()
      local q = fake_queue()
      local rr = orch.ResultReporter.new(q)
      rr:add_result({ n = 1 })
      rr:add_result({ error = "disk full" })
      rr:info("hello", { k = 2 })
      rr:metric("latency", 0.5, { target = "x" })
      local levels, data = {}, {}
      for i, r in ipairs(q.items) do levels[i], data[i] = r.level, r.data end
      assert.same({ "info", "error", "info", "metric" }, levels)
      assert.same({ { n = 1 }, { error = "disk full" }, { message = "hello", k = 2 },
                    { metric = "latency", value = 0.5, fields = { target = "x" } } }, data)
      assert.equal(0, q.items[1].t)
    end)

    it("checks metrics, and needs the host to monitor", function()
      local rr = orch.ResultReporter.new(fake_queue())
      assert.equal("metric \"m\": value must be a number, got string", message(rr.metric, rr, "m", "x"))
      assert.equal("ResultReporter:monitor needs the orchlua host (run it with orchlua)", message(rr.monitor, rr))
    end)

    it("can be subclassed as a custom reporter", function()
      local Mine = orch.ResultReporter:extend()
      local seen = {}
      function Mine:on_result(r) seen[#seen + 1] = r end
      local mine = Mine.new(fake_queue())
      mine:on_result({ level = "info" })
      assert.equal(1, #seen)
    end)
  end)

  describe("descriptions", function()
    it("load, validate and plan", function()
      local description = require "orch.description"
      local desc = assert(description.load("descriptions/my_orchestration_test.json"))
      assert.equal("my_orchestration_test", desc.test_name)
      local plan = require("orch.plan").render(desc, desc.total_hours)
      assert.matches("^my_orchestration_test: 3 h", plan)
    end)

    it("report problems with their JSON path", function()
      local description = require "orch.description"
      local dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. dir)
      local f = assert(io.open(dir .. "/bad.json", "w"))
      f:write('{"test_name":"bad","total_hours":1,"events":[{"name":"x","interval_secs":5}]}')
      f:close()
      local desc, errors = description.load(dir .. "/bad.json")
      os.execute("rm -rf " .. dir)
      assert.is_nil(desc)
      assert.matches("events%[0%]%.interval_secs", description.format_error(errors[1]))
      assert.matches("did you mean", description.format_error(errors[1]))
    end)
  end)

  describe("the helpers rock", function()
    it("loads, and its helpers that wait say they need the host", function()
      local probe = require "orch.helpers.probe"
      local supervise = require "orch.helpers.supervise"
      local sample = require "orch.helpers.sample"
      require "orch.helpers.tail"
      assert.equal("orch.helpers.probe.tcp needs the orchlua host's loop (run the event with orchlua)",
        message(probe.tcp, "127.0.0.1", 80))
      assert.equal("orch.helpers.probe.http needs the orchlua host's loop (run the event with orchlua)",
        message(probe.http, "http://127.0.0.1/"))
      assert.equal("orch.helpers.sample needs orch.sys, which only the orchlua host provides " ..
        "(run the event with orchlua)", message(sample.new))
      local ks = { is_set = function() return false end, wait = function() return true end }
      assert.equal("orch.helpers.supervise: sh: orch.spawn needs the orchlua host's loop " ..
        "(run the event with orchlua)", message(supervise.run, { cmd = { "sh" } }, ks, orch.ResultReporter.new(fake_queue())))
    end)
  end)
end)
