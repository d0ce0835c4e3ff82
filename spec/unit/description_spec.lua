-- luacheck: max line length 220
local description = require "orch.description"
local json = require "orch.jsonc"
local schema = require "orch.schema"

local FIXTURES = "spec/fixtures/descriptions"

-- Every error of loading `path`, formatted, in the order they are reported.
local function load_errors(path)
  local desc, errors = description.load(path)
  assert.is_nil(desc)
  local out = {}
  for i, e in ipairs(errors) do out[i] = description.format_error(e) end
  return out
end

-- The same for a description given as text, checked as if it were FILE.
local function decode_errors(text, file)
  local desc, errors = description.decode(text, file or "t.json")
  assert.is_nil(desc)
  local out = {}
  for i, e in ipairs(errors) do out[i] = description.format_error(e) end
  return out
end

-- A minimal valid description with one event whose keys are `event_json`.
local function with_event(event_json)
  return '{"test_name": "t", "total_hours": 1, "events": [\n' .. event_json .. "\n]}"
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- A fresh directory under /tmp, removed by the caller with rm_tree.
local function make_tree()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir
end

local function rm_tree(dir)
  assert(dir:match("^/tmp/"))
  os.execute("rm -rf '" .. dir .. "'")
end

local function mkdir(path)
  assert(os.execute("mkdir -p '" .. path:gsub("'", [['\'']]) .. "'"))
end

describe("orch.description", function()
  describe("load", function()
    it("loads the seed's annotated example, comments and all, as printed", function()
      local path = FIXTURES .. "/my_orchestration_test.json"
      local desc = assert(description.load(path))
      local index = desc.index
      desc.index = nil
      assert.same({
        file = path,
        checks = {},
        test_name = "my_orchestration_test",
        total_hours = 3,
        unref_setup_fixtures = { "device_with_collectd" },
        events = {
          { name = "start_playback", id = "start_playback", interval = 300,
            interval_key = "interval_sec", at_startup = true, at_teardown = false,
            params = { video_path = "/home/orch-tests/video-files/high_res_clip.mp4" },
            concurrency = "forbid", index = 1, path = "events[0]", line = 6, col = 5, after = {} },
          { name = "start_streamer", id = "start_streamer", at_startup = true,
            at_teardown = false, params = {}, concurrency = "forbid", index = 2,
            path = "events[1]", line = 15, col = 5, after = {} },
          { name = "collect_system_report", id = "collect_system_report",
            at_startup = false, at_teardown = true, params = {}, concurrency = "forbid",
            index = 3, path = "events[2]", line = 19, col = 5, after = {} },
        },
      }, desc)
      assert.same({ line = 12, col = 23, key_line = 12, key_col = 9, kind = "string" }, {
        line = index["events[0].params.video_path"].line, col = index["events[0].params.video_path"].col,
        key_line = index["events[0].params.video_path"].key_line,
        key_col = index["events[0].params.video_path"].key_col,
        kind = index["events[0].params.video_path"].kind })
    end)

    it("fills every default in a minimal description", function()
      local desc = assert(description.load(FIXTURES .. "/good/minimal.json"))
      assert.equal(0.5, desc.total_hours)
      assert.same({}, desc.unref_setup_fixtures)
      local ev = desc.events[1]
      assert.same({ "tick", "tick", true, false, "forbid", {} },
        { ev.name, ev.id, ev.at_startup, ev.at_teardown, ev.concurrency, ev.params })
      assert.is_nil(ev.interval)
      assert.is_nil(ev.interval_key)
      assert.is_nil(ev.timeout)
    end)

    it("normalizes every key: intervals to seconds, timeouts, ids", function()
      local desc = assert(description.load(FIXTURES .. "/good/every_key.json"))
      assert.equal(48, desc.total_hours)
      assert.same({ "device", "_collector2" }, desc.unref_setup_fixtures)
      local e1, e2, e3 = desc.events[1], desc.events[2], desc.events[3]
      assert.same({ "ping", "ping_fast", 0.5, "interval_sec", false, true, 2.5, "allow" },
        { e1.name, e1.id, e1.interval, e1.interval_key, e1.at_startup, e1.at_teardown, e1.timeout, e1.concurrency })
      assert.same({ "ping", "ping_slow", 600, "interval_min", "replace" },
        { e2.name, e2.id, e2.interval, e2.interval_key, e2.concurrency })
      assert.same({ "report", "report", 5400, "interval_hour" }, { e3.name, e3.id, e3.interval, e3.interval_key })
    end)

    it("passes params through, keeping null as json.null", function()
      local desc = assert(description.load(FIXTURES .. "/good/every_key.json"))
      local params = desc.events[1].params
      assert.equal(json.null, params.extra)
      assert.same({ host = "10.0.0.1", count = 3, ratio = 1.5, tags = { "a", "b" }, extra = json.null,
        nested = { deep = { {}, {} } } }, params)
      assert.equal("integer", math.type(params.count))
      -- the index tells arrays from objects, which decoded tables cannot
      assert.equal("array", desc.index["events[0].params.tags"].kind)
      assert.equal("object", desc.index["events[0].params.nested"].kind)
    end)

    it("gives events without params one shared table no one can write", function()
      local desc = assert(description.load(FIXTURES .. "/good/every_key.json"))
      local a, b = desc.events[2], desc.events[3]
      assert.equal(description.EMPTY, a.params)
      assert.equal(a.params, b.params)
      assert.equal(a.after, b.after)
      assert.has_error(function() a.params.x = 1 end)
      assert.is_nil(next(b.params))
    end)

    it("keeps // and /* inside strings and drops real comments", function()
      local desc = assert(description.load(FIXTURES .. "/good/comments.json"))
      assert.same({
        url = "http://example.com/a//b",
        glob = "/var/log/*.log",
        ["end"] = '*/ and "escaped // quotes"',
        path = "C:\\dir\\",
      }, desc.events[1].params)
      assert.same({ 7, 42 }, { desc.events[1].line, desc.events[1].col })
    end)

    it("reports every unknown key at once, with a did-you-mean", function()
      local f = FIXTURES .. "/bad/typos.json"
      assert.same({
        f .. ':1:1: missing required key "total_hours"',
        f .. ':3:3: total_hour: unknown key "total_hour" (did you mean "total_hours"?)',
        f .. ':5:33: events[0].interval_secs: unknown key "interval_secs" (did you mean "interval_sec"?)',
        f .. ':5:55: events[0].at_statup: unknown key "at_statup" (did you mean "at_startup"?)',
        f .. ':6:26: events[1].Params: unknown key "Params" (did you mean "params"?)',
        f .. ':6:40: events[1].concurency: unknown key "concurency" (did you mean "concurrency"?)',
      }, load_errors(f))
    end)

    it("reports every wrong type and range, saying what was expected and found", function()
      local f = FIXTURES .. "/bad/types.json"
      assert.same({
        f .. ':3:18: total_hours: expected a number > 0, found "3"',
        f .. ':4:27: unref_setup_fixtures: expected an array of names, found "device"',
        f .. ':7:15: events[0].name: expected a name (a Lua identifier), found "start-playback"',
        f .. ':8:23: events[0].interval_sec: expected a number > 0, found -5',
        f .. ':9:21: events[0].at_startup: expected true or false, found "yes"',
        f .. ':10:22: events[0].at_teardown: expected true or false, found null',
        f .. ':11:17: events[0].params: expected an object, found an array',
        f .. ':12:22: events[0].timeout_sec: expected a number > 0, found 0',
        f .. ':13:22: events[0].concurrency: expected one of "forbid", "allow", "replace", found "alow" (did you mean "allow"?)',
        f .. ':14:13: events[0].id: expected a non-empty string, found ""',
        f .. ':16:5: events[1]: expected an object (an event), found "collect"',
        f .. ':17:15: events[2].name: expected a name (a Lua identifier), found "end" (a Lua keyword)',
        f .. ':17:38: events[2].interval_min: expected a number > 0, found 1e400 (too large: it reads as infinity)',
      }, load_errors(f))
    end)

    it("names both interval keys when more than one is given", function()
      local f = FIXTURES .. "/bad/intervals.json"
      assert.same({
        f .. ':5:40: events[0].interval_min: only one of "interval_sec", "interval_min", "interval_hour" may be given, found "interval_sec" and "interval_min"',
        f .. ':6:40: events[1].interval_min: only one of "interval_sec", "interval_min", "interval_hour" may be given, found "interval_hour" and "interval_min"',
        f .. ':6:60: events[1].interval_sec: only one of "interval_sec", "interval_min", "interval_hour" may be given, found "interval_hour" and "interval_sec"',
      }, load_errors(f))
    end)

    it("reports duplicate event ids and duplicate JSON keys", function()
      local f = FIXTURES .. "/bad/duplicates.json"
      assert.same({
        f .. ':6:5: events[1]: duplicate event id "ping", also used by events[0] at line 5; give one of them a distinct "id"',
        f .. ':7:29: events[2].id: duplicate event id "ping", also used by events[0] at line 5; give one of them a distinct "id"',
        f .. ':8:42: events[3].interval_sec: duplicate key "interval_sec" (first at line 8, col 23)',
        f .. ':10:3: total_hours: duplicate key "total_hours" (first at line 3, col 3)',
      }, load_errors(f))
    end)

    it("requires test_name to equal the file's base name", function()
      local f = FIXTURES .. "/bad/renamed.json"
      assert.same({
        f .. ':2:16: test_name: expected "renamed" (the file is renamed.json), found "original_name"',
      }, load_errors(f))
    end)

    it("reports malformed JSON with its line and column", function()
      local f = FIXTURES .. "/bad/malformed.json"
      assert.same({ f .. ":6:5: expected ',' or ']', found '{' (is a ',' missing before it?)" }, load_errors(f))
    end)

    describe("of files that are not descriptions", function()
      local dir
      before_each(function() dir = make_tree() end)
      after_each(function() rm_tree(dir) end)

      it("reports a missing file", function()
        local f = dir .. "/none.json"
        assert.same({ f .. ": cannot open: No such file or directory" }, load_errors(f))
      end)

      it("reports a directory", function()
        mkdir(dir .. "/d.json")
        assert.same({ dir .. "/d.json: is a directory, not a description file" }, load_errors(dir .. "/d.json"))
      end)

      it("reports an empty file", function()
        write(dir .. "/empty.json", "")
        assert.same({ dir .. "/empty.json:1:1: empty file" }, load_errors(dir .. "/empty.json"))
      end)

      it("refuses a file over 16 MiB without reading it", function()
        local f = dir .. "/huge.json"
        local h = assert(io.open(f, "wb"))
        h:seek("set", 17 * 1024 * 1024 - 1)   -- a sparse file: one byte written
        h:write("}")
        h:close()
        assert.same({ f .. ": file is 17.0 MiB (17825792 bytes), over the 16 MiB limit for a description" },
          load_errors(f))
      end)

      it("reports binary garbage instead of raising", function()
        math.randomseed(7)
        for n = 1, 20 do
          local bytes = {}
          for i = 1, 4096 do bytes[i] = string.char(math.random(0, 255)) end
          local f = ("%s/garbage%d.json"):format(dir, n)
          write(f, table.concat(bytes))
          local desc, errors = description.load(f)
          assert.is_nil(desc)
          assert.equal(1, #errors)
          assert.is_number(errors[1].line)
          assert.matches("^" .. f:gsub("%p", "%%%0") .. ":%d+:%d+: .", description.format_error(errors[1]))
        end
      end)

      it("reports a PNG image by its first bytes", function()
        local f = dir .. "/image.json"
        write(f, "\137PNG\r\n\26\n\0\0\0\13IHDR")
        assert.same({ f .. ":3:1: found a NUL byte (this is not a text file)" }, load_errors(f))
      end)

      it("reports 20,000 levels of nesting without overflowing a stack", function()
        local f = dir .. "/deep.json"
        write(f, with_event('{"name": "a", "params": {"x": ' .. ("["):rep(20000) .. ("]"):rep(20000) .. "}}"))
        assert.same({ f .. ":2:1027: nesting deeper than 1000 levels" }, load_errors(f))
      end)
    end)
  end)

  describe("decode", function()
    it("gives a valid description the same table from its fast pass as from its full one", function()
      -- an empty array the fast pass cannot tell from {} sends it to the
      -- full pass (paths, positions); unref_setup_fixtures' default is []
      local body = [[
  "total_hours": 2,
  "events": [
    { "name": "a", "interval_sec": 1.5, "timeout_sec": 2, "params": { "x": 1 }, "at_startup": true },
    { "name": "b", "id": "b1", "interval_min": 2, "after": ["a"], "concurrency": "allow" },
    { "name": "c", "interval_hour": 1, "at_teardown": true }
  ],
  "checks": [
    { "event": "a", "series": "duration", "stat": "p99", "max": 1 },
    { "event": "b1", "stat": "error_rate", "max": 0.01, "action": "warn", "window_sec": 600 },
    { "name": "leak", "metric": "rss", "where": { "host": "h" }, "stat": "slope_per_hour", "max": 5,
      "after_sec": 60, "allow_no_data": true },
    { "event": "c", "series": "invocations", "stat": "count", "min": 1, "action": "abort" }
  ]
]]
      local function decoded(extra)
        local desc = assert(description.decode('{ "test_name": "t",' .. extra .. body .. "}", "t.json"))
        desc.index, desc.file = nil, nil
        local paths = {}
        for i, ev in ipairs(desc.events) do
          paths[i] = ev.path
          setmetatable(ev, nil)
          ev.line, ev.col, ev.path = nil, nil, nil   -- made when read in the fast pass
        end
        return desc, paths
      end
      local fast, fast_paths = decoded("")
      local full, full_paths = decoded(' "unref_setup_fixtures": [],')
      assert.same(full, fast)
      assert.same({ "events[0]", "events[1]", "events[2]" }, fast_paths)
      assert.same(full_paths, fast_paths)
      assert.same({ 1.5, 120, 3600 }, { fast.events[1].interval, fast.events[2].interval, fast.events[3].interval })
      assert.same({ "interval_min", "b1", 0 }, { fast.events[2].interval_key, fast.events[2].id, fast.checks[1].after })
    end)

    it("needs an object at the top", function()
      assert.same({ "t.json:1:1: expected an object (a description), found an array" }, decode_errors("[1, 2]"))
      assert.same({ "t.json:1:1: expected an object (a description), found 42" }, decode_errors("42"))
      assert.same({ "t.json:2:3: expected an object (a description), found null" }, decode_errors("\n  null"))
    end)

    it("reports every missing required key of an empty object", function()
      assert.same({
        't.json:1:1: missing required key "test_name"',
        't.json:1:1: missing required key "total_hours"',
        't.json:1:1: missing required key "events"',
      }, decode_errors("{}"))
    end)

    it("needs at least one event, in an array", function()
      assert.same({ "t.json:1:48: events: expected at least one event, found an empty array" },
        decode_errors('{"test_name": "t", "total_hours": 1, "events": []}'))
      assert.same({ "t.json:1:48: events: expected an array of events, found an object" },
        decode_errors('{"test_name": "t", "total_hours": 1, "events": {}}'))
    end)

    it("tells {} from [] where either would pass as empty", function()
      -- a valid file is checked without its index first: {} must not pass for []
      assert.same({ "t.json:1:89: unref_setup_fixtures: expected an array of names, found an object" },
        decode_errors('{"test_name": "t", "total_hours": 1, "events": [{"name": "a"}], "unref_setup_fixtures": {}}'))
      assert.same({ "t.json:1:73: events[0].params: expected an object, found an array" },
        decode_errors('{"test_name": "t", "total_hours": 1, "events": [{"name": "a", "params": []}]}'))
    end)

    it("needs a name in every event", function()
      assert.same({ 't.json:2:1: events[0]: missing required key "name"' },
        decode_errors(with_event('{"interval_sec": 5}')))
    end)

    it("needs an identifier as an event name", function()
      assert.same({ 't.json:2:10: events[0].name: expected a name (a Lua identifier), found ""' },
        decode_errors(with_event('{"name": ""}')))
      assert.same({ 't.json:2:10: events[0].name: expected a name (a Lua identifier), found "2fast"' },
        decode_errors(with_event('{"name": "2fast"}')))
      assert.same({ "t.json:2:10: events[0].name: expected a name (a Lua identifier), found 7" },
        decode_errors(with_event('{"name": 7}')))
    end)

    it("needs fixture names in unref_setup_fixtures", function()
      assert.same({
        "t.json:1:69: unref_setup_fixtures[1]: expected a name (a Lua identifier), found 3",
        't.json:1:72: unref_setup_fixtures[2]: expected a name (a Lua identifier), found "a b"',
      }, decode_errors('{"test_name": "t", "total_hours": 1, "unref_setup_fixtures": ["ok", 3, "a b"], '
        .. '"events": [{"name": "a"}]}'))
    end)

    it("needs total_hours > 0", function()
      for _, bad in ipairs { "0", "-1", "-0.0", "1e-400" } do
        assert.same({ "t.json:1:35: total_hours: expected a number > 0, found " .. bad },
          decode_errors('{"test_name": "t", "total_hours": ' .. bad .. ', "events": [{"name": "a"}]}'))
      end
    end)

    it("refuses an infinite number, as cjson reads 1e400", function()
      assert.same({ "t.json:1:35: total_hours: expected a number > 0, found 1e400 (too large: it reads as infinity)" },
        decode_errors('{"test_name": "t", "total_hours": 1e400, "events": [{"name": "a"}]}'))
      assert.same({ "t.json:1:35: total_hours: expected a number > 0, found -1e400" },
        decode_errors('{"test_name": "t", "total_hours": -1e400, "events": [{"name": "a"}]}'))
    end)

    it("refuses NaN as not JSON", function()
      assert.same({ "t.json:1:35: expected a value, found 'NaN' (JSON has no NaN or Infinity)" },
        decode_errors('{"test_name": "t", "total_hours": NaN, "events": [{"name": "a"}]}'))
    end)

    it("checks every interval key and timeout_sec", function()
      assert.same({ "t.json:2:31: events[0].interval_min: expected a number > 0, found 0" },
        decode_errors(with_event('{"name": "a", "interval_min": 0}')))
      assert.same({ 't.json:2:32: events[0].interval_hour: expected a number > 0, found "1"' },
        decode_errors(with_event('{"name": "a", "interval_hour": "1"}')))
      assert.same({ "t.json:2:30: events[0].timeout_sec: expected a number > 0, found -1" },
        decode_errors(with_event('{"name": "a", "timeout_sec": -1}')))
    end)

    it("refuses an interval that overflows once converted to seconds", function()
      assert.same({ "t.json:2:32: events[0].interval_hour: expected a number > 0, found 1e308 (too large once in seconds)" },
        decode_errors(with_event('{"name": "a", "interval_hour": 1e308}')))
    end)

    it("reports two interval keys even when one of them is also bad", function()
      assert.same({
        't.json:2:34: events[0].interval_min: only one of "interval_sec", "interval_min", "interval_hour" may be given, found "interval_sec" and "interval_min"',
        't.json:2:50: events[0].interval_min: expected a number > 0, found "x"',
      }, decode_errors(with_event('{"name": "a", "interval_sec": 1, "interval_min": "x"}')))
    end)

    it("checks the booleans", function()
      assert.same({ "t.json:2:29: events[0].at_startup: expected true or false, found 1" },
        decode_errors(with_event('{"name": "a", "at_startup": 1}')))
      assert.same({ "t.json:2:30: events[0].at_teardown: expected true or false, found an object" },
        decode_errors(with_event('{"name": "a", "at_teardown": {}}')))
    end)

    it("checks concurrency against its three values", function()
      assert.same({ 't.json:2:30: events[0].concurrency: expected one of "forbid", "allow", "replace", found "Forbid" (did you mean "forbid"?)' },
        decode_errors(with_event('{"name": "a", "concurrency": "Forbid"}')))
      assert.same({ 't.json:2:30: events[0].concurrency: expected one of "forbid", "allow", "replace", found "queue"' },
        decode_errors(with_event('{"name": "a", "concurrency": "queue"}')))
    end)

    it("needs params to be an object, of any values", function()
      assert.same({ 't.json:2:25: events[0].params: expected an object, found "x"' },
        decode_errors(with_event('{"name": "a", "params": "x"}')))
      local desc = assert(description.decode(with_event('{"name": "a", "params": {"a-b": [1, {"c": null}]}}'), "t.json"))
      assert.same({ ["a-b"] = { 1, { c = json.null } } }, desc.events[1].params)
    end)

    it("cuts a long string in a message", function()
      assert.same({ 't.json:2:10: events[0].name: expected a name (a Lua identifier), found "'
        .. ("x"):rep(39) .. '-..."' }, decode_errors(with_event('{"name": "' .. ("x"):rep(39) .. ("-"):rep(50) .. '"}')))
    end)

    it("lets two entries of one event differ by id", function()
      local desc = assert(description.decode(with_event(
        '{"name": "a", "id": "a1"},\n{"name": "a", "id": "a2"},\n{"name": "a"}'), "t.json"))
      assert.same({ "a1", "a2", "a" }, { desc.events[1].id, desc.events[2].id, desc.events[3].id })
    end)

    it("still finds duplicate ids when other keys of the event are bad", function()
      assert.same({
        "t.json:3:1: events[1]: duplicate event id \"a\", also used by events[0] at line 2; give one of them a distinct \"id\"",
        "t.json:3:30: events[1].timeout_sec: expected a number > 0, found 0",
      }, decode_errors(with_event('{"name": "a"},\n{"name": "a", "timeout_sec": 0}')))
    end)

    it("reports a duplicate key in params", function()
      assert.same({ 't.json:2:34: events[0].params.x: duplicate key "x" (first at line 2, col 26)' },
        decode_errors(with_event('{"name": "a", "params": {"x": 1, "x": 2}}')))
    end)

    it("quotes a key that is not an identifier in the path", function()
      assert.same({ 't.json:2:15: events[0]["interval sec"]: unknown key "interval sec" (did you mean "interval_sec"?)' },
        decode_errors(with_event('{"name": "a", "interval sec": 5}')))
    end)

    it("sorts the errors of several events by line and column", function()
      assert.same({
        't.json:2:15: events[0].bad: unknown key "bad"',
        't.json:3:1: events[1]: missing required key "name"',
        't.json:4:31: events[2].interval_sec: expected a number > 0, found false',
      }, decode_errors(with_event('{"name": "a", "bad": 1},\n{},\n{"name": "c", "interval_sec": false}')))
    end)

    it("checks test_name only against a file name it knows", function()
      local text = '{"test_name": "anything", "total_hours": 1, "events": [{"name": "a"}]}'
      assert.is_table(description.decode(text))
      assert.is_table(description.decode(text, "dir/anything.json"))
      assert.same({ 'dir/other.json:1:15: test_name: expected "other" (the file is other.json), found "anything"' },
        decode_errors(text, "dir/other.json"))
    end)
  end)

  describe("format_error", function()
    it("writes FILE:LINE:COL: PATH: MESSAGE", function()
      assert.equal("a.json:3:7: events[0].name: expected a string, found 1", description.format_error {
        file = "a.json", line = 3, col = 7, path = "events[0].name", message = "expected a string, found 1" })
    end)

    it("leaves out the path at the root", function()
      assert.equal("a.json:1:1: expected an object, found 1", description.format_error {
        file = "a.json", line = 1, col = 1, path = "", message = "expected an object, found 1" })
    end)

    it("leaves out the line and column when they are unknown", function()
      assert.equal("a.json: cannot open: Permission denied", description.format_error {
        file = "a.json", message = "cannot open: Permission denied" })
    end)

    it("leaves out an unknown file", function()
      assert.equal("2:5: events: boom", description.format_error { line = 2, col = 5, path = "events", message = "boom" })
    end)
  end)

  describe("list and find", function()
    local dir
    before_each(function()
      dir = make_tree()
      mkdir(dir .. "/a/nested")
      mkdir(dir .. "/b")
      mkdir(dir .. "/it's here")
      write(dir .. "/a/soak.json", "{}")
      write(dir .. "/a/nested/playback.json", "{}")
      write(dir .. "/a/notes.txt", "")
      write(dir .. "/b/soak.json", "{}")
      write(dir .. "/b/stream.json", "{}")
      write(dir .. "/it's here/quoted.json", "{}")
    end)
    after_each(function() rm_tree(dir) end)

    describe("list", function()
      it("lists every *.json under a folder, recursively, sorted by name", function()
        assert.same({
          { name = "playback", path = dir .. "/a/nested/playback.json" },
          { name = "soak", path = dir .. "/a/soak.json" },
        }, description.list(dir .. "/a"))
      end)

      it("searches a list of folders, even with a quote in a name", function()
        assert.same({
          { name = "playback", path = dir .. "/a/nested/playback.json" },
          { name = "quoted", path = dir .. "/it's here/quoted.json" },
          { name = "soak", path = dir .. "/a/soak.json" },
          { name = "soak", path = dir .. "/b/soak.json" },
          { name = "stream", path = dir .. "/b/stream.json" },
        }, description.list { dir .. "/a", dir .. "/b", dir .. "/it's here" })
      end)

      it("lists nothing for a missing folder", function()
        assert.same({}, description.list(dir .. "/none"))
      end)
    end)

    describe("find", function()
      it("finds a description by name in nested folders", function()
        assert.equal(dir .. "/a/nested/playback.json", description.find(dir .. "/a", "playback"))
        assert.equal(dir .. "/it's here/quoted.json", description.find({ dir .. "/b", dir .. "/it's here" }, "quoted"))
      end)

      it("finds the seed's example among the fixtures", function()
        assert.equal(FIXTURES .. "/my_orchestration_test.json", description.find(FIXTURES, "my_orchestration_test"))
      end)

      it("takes a name with .json or a slash as a path", function()
        assert.equal(dir .. "/b/stream.json", description.find({}, dir .. "/b/stream.json"))
        local path, err = description.find({}, "nowhere/x")
        assert.is_nil(path)
        assert.equal("nowhere/x: cannot open: No such file or directory", err)
      end)

      it("refuses a name two files share, naming both", function()
        local path, err = description.find({ dir .. "/a", dir .. "/b" }, "soak")
        assert.is_nil(path)
        assert.equal(('description "soak" is ambiguous: %s/a/soak.json and %s/b/soak.json'):format(dir, dir), err)
      end)

      it("suggests a close name when there is no such description", function()
        local path, err = description.find(dir .. "/b", "strem")
        assert.is_nil(path)
        assert.equal(('no description "strem" in %s/b (did you mean "stream"?)'):format(dir), err)
      end)

      it("says when there are no descriptions at all", function()
        mkdir(dir .. "/empty")
        local _, err = description.find(dir .. "/empty", "x")
        assert.equal(('no description "x": no *.json files in %s/empty'):format(dir), err)
      end)

      it("names a folder that does not exist", function()
        local _, err = description.find({ dir .. "/b", dir .. "/none" }, "x")
        assert.equal(('no description "x" in %s/b, %s/none (not a directory: %s/none)'):format(dir, dir, dir), err)
      end)
    end)
  end)
end)

describe("orch.schema", function()
  describe("render_markdown", function()
    it("renders the README's table of keys", function()
      assert.equal(table.concat({
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        "| `test_name` | string | required | must equal the file's base name |",
        "| `total_hours` | number > 0 | required | length of the run |",
        "| `unref_setup_fixtures` | array of names | `[]` | fixtures set up at start though no event names them |",
        "| `events` | array, at least one | required | the events |",
        '| `checks` | array | `[]` | verdicts judged during the run (section "Checks") |',
        "| `self_metrics_sec` | number > 0 | none | record orchlua.self.* metrics (rss, lua_heap, fds, timers, queue, loop_lag) this often |",
        "| `events[i].name` | string (a Lua identifier) | required | the event function's name |",
        "| `events[i].interval_sec` / `interval_min` / `interval_hour` | number > 0, at most one | none | period; without one the event runs only at startup/teardown |",
        "| `events[i].at_startup` | bool | `true` | run once at t0; if false, the first run is at t0 + interval |",
        "| `events[i].at_teardown` | bool | `false` | run once more after the end time |",
        "| `events[i].params` | object | `{}` | values injected by name |",
        "| `events[i].timeout_sec` | number > 0 | none | an invocation running longer is cancelled and fails |",
        '| `events[i].concurrency` | `"forbid"`, `"allow"`, `"replace"` | `"forbid"` | a firing while the previous invocation still runs: skip it (recorded as skipped), run both, or cancel the old one |',
        "| `events[i].id` | string | `name` | distinguishes two entries of the same event with different params |",
        "| `events[i].after` | array of event ids | `[]` | this event first fires once each named event is ready; at the end it stops first |",
        "| `checks[i].name` | string | none | shown in every output; default built from the other keys |",
        "| `checks[i].metric` / `event` | string, at most one | none | what is judged: a metric series (`result_reporter:metric(name, ...)`), or an event id |",
        "| `checks[i].where` | object | none | with metric: keeps only samples whose fields match |",
        '| `checks[i].series` | `"duration"`, `"lateness"`, `"invocations"` | none | with event: what is judged; without, the stats that count failures |',
        "| `checks[i].stat` | string | required | `count`, `rate`, `mean`, `min`, `max`, `last`, `pNN`, `errors`, `error_rate`, `consecutive_failures`, `silence_sec` or `slope_per_hour` |",
        "| `checks[i].max` | number | none | the check holds while the stat is at most this |",
        "| `checks[i].min` | number | none | the check holds while the stat is at least this |",
        "| `checks[i].window_sec` | number > 0 | none | judged over a sliding window this long; without it, over the whole run |",
        "| `checks[i].after_sec` | number >= 0 | `0` | not judged before t0 + after_sec (warm-up) |",
        '| `checks[i].action` | `"fail"`, `"abort"`, `"warn"` | `"fail"` | fail: the run ends failed; abort: it stops in order, failed; warn: shown, never fails |',
        "| `checks[i].allow_no_data` | bool | `false` | a check whose series never had a sample passes (else it ends no_data, failed) |",
      }, "\n") .. "\n", schema.render_markdown())
    end)
  end)

  describe("key_names", function()
    it("lists the valid keys of an event in order", function()
      assert.same({ "name", "interval_sec", "interval_min", "interval_hour", "at_startup",
        "at_teardown", "params", "timeout_sec", "concurrency", "id", "after" }, schema.key_names(schema.event))
    end)
  end)
end)
