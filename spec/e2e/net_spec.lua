-- End-to-end specs of orch.net (core.tcp_connect and orch.TcpConn): events
-- in the real binary talking to a test peer (fixtures/rocks/tcp_server.lua,
-- plain lua5.4 + luv) on 127.0.0.1.
local h = require "helper"
local peer_mod = require "e2e.fixtures.rocks.peer"
local cjson = require "cjson"

local peer

-- Runs one description of `events` over the source `src` (params get the
-- peer's ports); returns status, the results' data, stdout, stderr.
local dir
local function run(src, events, args)
  local desc = { test_name = "t", total_hours = 0.0003, events = events }
  dir = h.project({ ["events/ev.lua"] = src, ["descriptions/t.json"] = cjson.encode(desc),
                    [".orchlua"] = 'return { sources = { "events/*.lua" }, grace_sec = 0.2 }\n' })
  local code, out, err = h.run("run t -q --report r.jsonl " .. (args or ""), dir, "ORCHLUA_DEBUG_STATS=1")
  local data = {}
  local recs = h.jsonl(dir .. "/r.jsonl")
  for _, r in ipairs(recs) do
    if r.type == "result" then data[#data + 1] = r.data end
  end
  return code, data, out, err, recs
end

local function no_leaks(err)
  assert.matches("orchlua%-stats: handles=0 tasks=0 refs=0", err)
end

local function invocation(recs, id)
  for _, r in ipairs(recs) do
    if r.type == "invocation" and r.id == id then return r end
  end
end

describe("orch.net", function()
  setup(function() peer = peer_mod.start() end)
  teardown(function() peer_mod.stop(peer) end)
  after_each(function() h.rm(dir) end)

  describe("connect", function()
    it("connects by name, writes, and reads lines, chunks and exact byte counts back", function()
      local code, data, _, err = run([[
        local net = require("orch").net
        return { echo = function(port, result_reporter, kill_switch)
          local conn <close> = assert(net.connect("localhost", port, { timeout = 5 }))
          assert(conn:write("alpha\r\nbeta\ngam"))
          local l1, l2 = conn:read_line(5), conn:read_line(5)
          assert(conn:write("ma\n12345"))
          local l3 = conn:read_line(5)
          local five = conn:read_bytes(5, 5)
          result_reporter:add_result({ l1 = l1, l2 = l2, l3 = l3, five = five, peer = conn.peer,
                                       text = tostring(conn) })
          kill_switch:set()
        end }
      ]], { { name = "echo", params = { port = peer.ports.echo } } })
      assert.equal(0, code)
      no_leaks(err)
      assert.same({ l1 = "alpha", l2 = "beta", l3 = "gamma", five = "12345",
                    peer = "localhost:" .. peer.ports.echo,
                    text = "orch.net.Conn (localhost:" .. peer.ports.echo .. ")" }, data[1])
    end)

    it("writes more than the kernel takes at once, yielding until libuv has written it all", function()
      local code, data, _, err = run([[
        local net = require("orch").net
        return { big = function(port, result_reporter, kill_switch)
          local conn <close> = assert(net.connect("127.0.0.1", port))
          local blob = ("0123456789abcdef"):rep(512 * 1024)   -- 8 MiB
          local ok = conn:write(blob, 10)
          local back = conn:read_bytes(#blob, 10)
          result_reporter:add_result({ ok = ok, same = back == blob })
          kill_switch:set()
        end }
      ]], { { name = "big", params = { port = peer.ports.echo } } })
      assert.equal(0, code)
      no_leaks(err)
      assert.same({ ok = true, same = true }, data[1])
    end)

    it("returns nil, message, code when the connection is refused", function()
      local code, data, _, err = run([[
        local net = require("orch").net
        return { refused = function(result_reporter, kill_switch)
          result_reporter:add_result({ net.connect("127.0.0.1", 1, 5) })
          kill_switch:set()
        end }
      ]], { { name = "refused" } })
      assert.equal(0, code)
      no_leaks(err)
      assert.same({ cjson.null, "127.0.0.1:1: connection refused", "ECONNREFUSED" }, data[1])
    end)

    it("raises on misuse, naming the argument", function()
      local code, _, _, err, recs = run([[
        local net = require("orch").net
        return {
          bad_port = function() net.connect("127.0.0.1", 70000) end,
          bad_host = function() net.connect("", 80) end,
          nested = function() coroutine.wrap(function() net.connect("127.0.0.1", 1) end)() end,
        }
      ]], { { name = "bad_port" }, { name = "bad_host" }, { name = "nested" } })
      assert.equal(1, code)
      no_leaks(err)
      assert.matches("^events/ev.lua:3: orch.net.connect: port must be 1..65535, got 70000\n",
        invocation(recs, "bad_port").error)
      assert.matches("^events/ev.lua:4: orch.net.connect: host must be a non%-empty string, got \n",
        invocation(recs, "bad_host").error)
      assert.matches("orch.net.connect must be called from an event, a fixture or the reporter " ..
        "%(a task on orchlua's loop%), not from a nested coroutine", invocation(recs, "nested").error)
    end)
  end)

  describe("conn:read", function()
    it("returns nil, \"timeout\" when nothing arrives in time, and the connection stays usable", function()
      local code, data, _, err = run([[
        local net = require("orch").net
        return { quiet = function(port, echo, result_reporter, kill_switch)
          local conn <close> = assert(net.connect("127.0.0.1", port))
          local t0 = net.clock()
          local a, b = conn:read(0.2)
          local waited = net.clock() - t0
          local e <close> = assert(net.connect("127.0.0.1", echo))
          local c, d = e:read(0)
          e:write("x")
          result_reporter:add_result({ a = a, b = b, c = c, d = d, again = e:read(5),
                                       waited_enough = waited >= 0.19 and waited < 2 })
          kill_switch:set()
        end }
      ]], { { name = "quiet", params = { port = peer.ports.silent, echo = peer.ports.echo } } })
      assert.equal(0, code)
      no_leaks(err)
      assert.same({ b = "timeout", d = "timeout", again = "x", waited_enough = true }, data[1])
    end)

    it("returns nil, \"eof\" once the peer has closed, and nil, \"closed\" after close()", function()
      local code, data, _, err = run([[
        local net = require("orch").net
        return { ends = function(port, http, result_reporter, kill_switch)
          local conn = assert(net.connect("127.0.0.1", port))
          local a, b = conn:read(5)
          conn:close()
          conn:close()
          local c, d = conn:read(5)
          local w1, w2 = conn:write("late")
          local web <close> = assert(net.connect("127.0.0.1", http))
          web:write("GET /lines HTTP/1.0\r\n\r\n")
          local all = web:read_all(5)
          result_reporter:add_result({ a = a, b = b, c = c, d = d, w1 = w1, w2 = w2,
                                       body = all:match("\r\n\r\n(.*)$"), closed = conn:is_closed() })
          kill_switch:set()
        end }
      ]], { { name = "ends", params = { port = peer.ports.close, http = peer.ports.http } } })
      assert.equal(0, code)
      no_leaks(err)
      assert.same({ b = "eof", d = "closed", w2 = "closed", body = "one\ntwo\nthree\n", closed = true },
        data[1])
    end)

    it("raises when a second task reads the same connection", function()
      local code, _, _, err, recs = run([[
        local orch = require "orch"
        local shared
        return {
          first = function(port)
            local conn <close> = assert(orch.net.connect("127.0.0.1", port))
            shared = conn
            conn:read(1)
          end,
          second = function()
            while not shared do orch.sleep(0.01) end
            shared:read(1)
          end,
        }
      ]], { { name = "first", params = { port = peer.ports.silent } }, { name = "second" } })
      assert.equal(1, code)
      no_leaks(err)
      assert.matches("conn:read: 127.0.0.1:%d+ is already being read by another task",
        invocation(recs, "second").error)
    end)
  end)

  describe("waiting", function()
    it("never blocks the loop: other events keep their schedule while one waits", function()
      local code, _, _, err, recs = run([[
        local net = require("orch").net
        return {
          wait = function(port)
            local conn <close> = assert(net.connect("127.0.0.1", port))
            conn:read(0.6)
          end,
          tick = function() end,
        }
      ]], { { name = "wait", params = { port = peer.ports.silent } }, { name = "tick", interval_sec = 0.1 } })
      assert.equal(0, code)
      no_leaks(err)
      local ticks, worst = 0, 0
      for _, r in ipairs(recs) do
        if r.type == "invocation" and r.id == "tick" then
          ticks = ticks + 1
          worst = math.max(worst, r.lateness)
        end
      end
      assert.is_true(ticks >= 8, "ticks: " .. ticks)
      -- a loop held by the 0.6 s read would make a tick that late; a loaded
      -- machine's own lateness stays well below it
      assert.is_true(worst < 0.3, "worst lateness: " .. worst)
    end)

    it("leaves no handle, task or ref when a wait is cut short by a timeout or the end of the run", function()
      local code, _, _, err, recs = run([[
        local net = require("orch").net
        return {
          timed_out = function(port)
            local conn <close> = assert(net.connect("127.0.0.1", port))
            conn:read()
          end,
          cut = function(port)
            local conn <close> = assert(net.connect("127.0.0.1", port))
            conn:read()
          end,
          hurried = function(port)
            for _ = 1, 20 do
              local conn = net.connect("localhost", port, 0)
              if conn then conn:close() end
            end
          end,
        }
      ]], { { name = "timed_out", timeout_sec = 0.2, params = { port = peer.ports.silent } },
            { name = "cut", params = { port = peer.ports.silent } },
            { name = "hurried", params = { port = peer.ports.echo } } })
      assert.equal(1, code)
      no_leaks(err)
      assert.equal("timeout", invocation(recs, "timed_out").status)
      assert.equal("cancelled", invocation(recs, "cut").status)
      assert.equal("ok", invocation(recs, "hurried").status)
    end)
  end)
end)
