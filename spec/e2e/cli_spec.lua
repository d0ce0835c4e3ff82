-- End-to-end specs of orchlua's command line: list, check, plan, help,
-- and every bad input exiting 2 with a message that names the problem.
local h = require "helper"

local EV = [[
local orch = require "orch"
orch.fixture("player", function(kill_switch) return {} end)
orch.fixture("a", function(b) return 1 end)
orch.fixture("b", function(a) return 2 end)
local M = {}
function M.play(player, video_path, result_reporter) end
function M.needs_typo(video_pth) end
function M.loops(a) end
return M
]]

local function project(descs, extra)
  local files = { ["events/ev.lua"] = EV }
  for name, text in pairs(descs) do files["descriptions/" .. name .. ".json"] = text end
  for k, v in pairs(extra or {}) do files[k] = v end
  return h.project(files)
end

local GOOD = [[{"test_name":"good","total_hours":1,"events":[
  {"name":"play","interval_sec":600,"params":{"video_path":"/v.mp4"}}]}]]

describe("orchlua command line", function()
  local dir
  after_each(function() h.rm(dir) end)

  describe("usage errors", function()
    local cases = {
      { "", "orchlua: a command is needed" },
      { "frobnicate", 'orchlua: unknown command "frobnicate"' },
      { "chek", 'orchlua: unknown command "chek" (did you mean "check"?)' },
      { "run good --fail-fsat", 'orchlua: unknown flag --fail-fsat (did you mean "--fail-fast"?)' },
      { "run", "orchlua: run needs one description name or file, found 0" },
      { "plan", "orchlua: plan needs one description name, found 0" },
      { "plan good --hours abc", 'orchlua: --hours expects a number, found "abc"' },
      { "plan good --hours -2", "orchlua: --hours expects a number > 0, found -2" },
      { "run good --time-scale 0", "orchlua: --time-scale expects a number > 0, found 0" },
      { "run good --hours", "orchlua: --hours needs a value" },
      { "check --time-scale 2", "orchlua: --time-scale does not apply to check" },
      { "run good -q -v", "orchlua: -q and -v cannot be combined" },
      { "help nothing", 'orchlua: no help for "nothing"' },
    }
    for _, c in ipairs(cases) do
      it(("exits 2 for `orchlua %s`"):format(c[1]), function()
        dir = project({ good = GOOD })
        local code, out, err = h.run(c[1], dir)
        assert.equal(2, code)
        assert.equal("", out)
        assert.equal(c[2], err:match("^[^\n]*"))
        assert.matches("\nusage: orchlua run", err)
      end)
    end
  end)

  describe("help and version", function()
    it("prints the usage with --help and a command's help with help COMMAND", function()
      local code, out = h.run("--help")
      assert.equal(0, code)
      assert.matches("^usage: orchlua run NAME|FILE.json", out)
      code, out = h.run("help plan")
      assert.equal(0, code)
      assert.matches("^orchlua plan NAME %[%-%-hours H%]", out)
      code, out = h.run("run --help")
      assert.equal(0, code)
      assert.matches("^orchlua run NAME|FILE.json", out)
    end)

    it("prints the version, and the module search paths with -v", function()
      local code, out = h.run("--version")
      assert.equal(0, code)
      assert.matches("^orchlua %S+ %(Lua 5.4", out)
      dir = project({ good = GOOD })
      code, out = h.run("--version -v", dir)
      assert.equal(0, code)
      assert.matches("/lua_modules/share/lua/5.4/%?%.lua", out)
      assert.matches("/.luarocks/lib/lua/5.4/%?%.so", out)
      local seen = {}
      for line in out:gmatch("\n  ([^\n]+)") do
        assert.is_nil(seen[line], line .. " listed twice")
        seen[line] = true
      end
    end)
  end)

  describe("check", function()
    it("accepts the bundled descriptions", function()
      local code, out = h.run("check")
      assert.equal(0, code)
      assert.matches("ok  my_orchestration_test %(descriptions/my_orchestration_test.json%): 3 events, 3 h", out)
      assert.matches("ok  demo ", out)
    end)

    it("accepts --load-orch as an alias", function()
      local code = h.run("--load-orch")
      assert.equal(0, code)
    end)

    it("names an event that no source defines, with a did-you-mean", function()
      dir = project({ x = [[{"test_name":"x","total_hours":1,"events":[
        {"name":"play","params":{"video_path":"v"}},
        {"name":"plya"}]}]] })
      local code, _, err = h.run("check x", dir)
      assert.equal(2, code)
      assert.equal('orchlua: descriptions/x.json:3: event "plya" is not defined in any source (events/ev.lua) (did you mean "play"?)\n'
        .. "orchlua: descriptions/x.json: 1 unresolved name\n", err)
    end)

    it("names a parameter that resolves to nothing, where it is asked for", function()
      dir = project({ x = [[{"test_name":"x","total_hours":1,"events":[
        {"name":"needs_typo","params":{"video_path":"v"}}]}]] })
      local code, _, err = h.run("check x", dir)
      assert.equal(2, code)
      assert.equal('orchlua: events/ev.lua:7: event "needs_typo" (descriptions/x.json:2) needs "video_pth", '
        .. 'which is not a param of the event, a fixture or a built-in (did you mean "video_path"?)\n'
        .. "orchlua: descriptions/x.json: 1 unresolved name\n", err)
    end)

    it("names a fixture whose own parameter resolves to nothing, for an event and for unref_setup_fixtures", function()
      dir = project({ x = [[{"test_name":"x","total_hours":1,"unref_setup_fixtures":["lost"],
        "events":[{"name":"wants_lost"}]}]] }, { ["events/fx.lua"] = table.concat({
          'local orch = require "orch"',
          'orch.fixture("lost", function(nowhere) return 1 end)',
          "return { wants_lost = function(lost) end }", "" }, "\n") })
      local code, _, err = h.run("check x", dir)
      assert.equal(2, code)
      assert.equal('orchlua: fixture "lost" (events/fx.lua:2) needs "nowhere", '
        .. "which is not a param of the event, a fixture or a built-in\n"
        .. 'orchlua: fixture "lost" (events/fx.lua:2) needs "nowhere", '
        .. "which is not a param of the event, a fixture or a built-in\n"
        .. "orchlua: descriptions/x.json: 2 unresolved names\n", err)
    end)

    it("names a fixture cycle", function()
      dir = project({ x = [[{"test_name":"x","total_hours":1,"events":[{"name":"loops"}]}]] })
      local code, _, err = h.run("check x", dir)
      assert.equal(2, code)
      assert.matches('fixture cycle: a %-> b %-> a %(events/ev.lua:3%)', err)
    end)

    it("reports a syntax error in a source with its file and line", function()
      dir = project({ good = GOOD }, { ["events/zz.lua"] = "local M = {}\nfunction M.x(\nreturn M\n" })
      local code, _, err = h.run("check good", dir)
      assert.equal(2, code)
      assert.matches("^orchlua: events/zz.lua:3: ", err)
    end)

    it("reports every problem of a description at once", function()
      dir = project({ bad = [[{
  "test_name": "bad",
  "total_hours": 0,
  "events": [ {"name": "play", "interval_secs": 3, "at_startup": "yes"} ]
}]] })
      local code, _, err = h.run("check bad", dir)
      assert.equal(2, code)
      assert.equal(table.concat({
        "orchlua: descriptions/bad.json:3:18: total_hours: expected a number > 0, found 0",
        'orchlua: descriptions/bad.json:4:32: events[0].interval_secs: unknown key "interval_secs" (did you mean "interval_sec"?)',
        'orchlua: descriptions/bad.json:4:66: events[0].at_startup: expected true or false, found "yes"',
        "orchlua: descriptions/bad.json: 3 problems", "" }, "\n"), err)
    end)

    local hostile = {
      { "empty", "", "descriptions/empty.json:1:1: empty file" },
      { "arr", "[1, 2]", "descriptions/arr.json:1:1: expected an object (a description), found an array" },
      { "mal", '{"a": [1,\n2', "descriptions/mal.json:2:2: expected ',' or ']', found end of file" },
    }
    for _, c in ipairs(hostile) do
      it("exits 2 on " .. c[1] .. " input", function()
        dir = project({ [c[1]] = c[2] })
        local code, _, err = h.run("check " .. c[1], dir)
        assert.equal(2, code)
        assert.equal("orchlua: " .. c[3], err:match("^[^\n]*"))
      end)
    end

    it("exits 2 on binary garbage and 20,000-deep nesting, never crashing", function()
      dir = project({})
      math.randomseed(7)
      local t = {}
      for i = 1, 4096 do t[i] = string.char(math.random(0, 255)) end
      h.write(dir .. "/descriptions/garbage.json", table.concat(t))
      h.write(dir .. "/descriptions/deep.json", ("["):rep(20000))
      for _, name in ipairs({ "garbage", "deep" }) do
        local code, _, err = h.run("check " .. name, dir)
        assert.equal(2, code)
        assert.matches("^orchlua: descriptions/" .. name .. ".json:%d+:%d+: ", err)
      end
    end)
  end)

  describe("plan", function()
    it("reports 36 firings of start_playback for the seed's example", function()
      local code, out = h.run("plan my_orchestration_test")
      assert.equal(0, code)
      assert.matches("\nstart_playback +300s +1 +35 +0 +36\n", out)
      assert.matches("\ncollect_system_report +%- +0 +0 +1 +1\n", out)
      assert.matches("\n  0:05:00.000  start_playback +interval #1\n", out)
    end)

    it("follows --hours", function()
      local code, out = h.run("plan my_orchestration_test --hours 1")
      assert.equal(0, code)
      assert.matches("\nstart_playback +300s +1 +11 +0 +12\n", out)
    end)
  end)

  describe("list", function()
    it("lists descriptions with hours and event counts", function()
      local code, out = h.run("list")
      assert.equal(0, code)
      assert.matches("\nmy_orchestration_test +3 +3  descriptions/my_orchestration_test.json\n", out)
    end)
  end)

  describe("the binary", function()
    it("links Lua and libuv statically", function()
      local p = io.popen("ldd " .. h.q(h.bin))
      local out = p:read("a")
      p:close()
      assert.is_nil(out:find("liblua"))
      assert.is_nil(out:find("libuv"))
    end)

    it("works when copied alone into another folder", function()
      dir = project({ good = GOOD })
      os.execute("cp " .. h.q(h.bin) .. " " .. h.q(dir .. "/orchlua-copy"))
      local p = io.popen("cd " .. h.q(dir) .. " && ./orchlua-copy check good 2>&1; echo rc=$?")
      local out = p:read("a")
      p:close()
      assert.matches("ok  good %(descriptions/good.json%)", out)
      assert.matches("rc=0", out)
    end)
  end)
end)
