-- luacheck: max line length 220
local json = require "orch.jsonc"

-- The decode error for `text`, as "LINE:COL: MESSAGE".
local function decode_error(text)
  local value, err = json.decode(text)
  assert.is_nil(value)
  return ("%s:%s: %s"):format(err.line, err.col, err.message)
end

describe("orch.jsonc", function()
  describe("strip_comments", function()
    it("blanks a line comment up to, not including, the newline", function()
      assert.equal('{"a": 1} ' .. (" "):rep(12) .. "\n", json.strip_comments('{"a": 1} // a comment\n'))
    end)

    it("blanks a block comment and keeps the newlines inside it", function()
      assert.equal('{   \n      "a": 1}', json.strip_comments('{/* \n   */ "a": 1}'))
    end)

    it("keeps every byte offset", function()
      local text = '{ // one\n "a": /* two */ 1 /* three\n four */ }\n// five'
      local stripped = json.strip_comments(text)
      assert.equal(#text, #stripped)
      assert.equal('{       \n "a":           1         \n         }\n       ', stripped)
    end)

    it("leaves // and /* inside strings alone", function()
      local text = '{"url": "http://x/a//b", "glob": "/var/*.log", "end": "*/"}'
      assert.equal(text, json.strip_comments(text))
    end)

    it("sees an escaped quote as part of the string", function()
      local text = '{"a": "x\\"//y"} // real'
      assert.equal('{"a": "x\\"//y"}        ', json.strip_comments(text))
    end)

    it("ends a string at a quote after an escaped backslash", function()
      local text = '{"a": "x\\\\"} // real'
      assert.equal('{"a": "x\\\\"}        ', json.strip_comments(text))
    end)

    it("ends a line comment at the end of the text", function()
      assert.equal("1    ", json.strip_comments("1 //x"))
    end)

    it("leaves a lone slash for the decoder to judge", function()
      assert.equal("[1 / 2]", json.strip_comments("[1 / 2]"))
    end)

    it("returns the text unchanged when there is no comment", function()
      assert.equal('{"a": [1, 2]}', json.strip_comments('{"a": [1, 2]}'))
    end)

    it("reports an unterminated block comment with its offset", function()
      local text, err = json.strip_comments('{"a": 1 /* never closed\n}')
      assert.is_nil(text)
      assert.same({ offset = 9, message = "unterminated /* comment" }, err)
    end)
  end)

  describe("position", function()
    it("counts lines and byte columns from 1", function()
      local text = "ab\ncd\n\nef"
      assert.same({ 1, 1 }, { json.position(text, 1) })
      assert.same({ 1, 3 }, { json.position(text, 3) })
      assert.same({ 2, 1 }, { json.position(text, 4) })
      assert.same({ 3, 1 }, { json.position(text, 7) })
      assert.same({ 4, 2 }, { json.position(text, 9) })
    end)

    it("places an offset past the end just after the last byte", function()
      assert.same({ 2, 3 }, { json.position("a\nbc", 5) })
      assert.same({ 2, 3 }, { json.position("a\nbc", 99) })
    end)

    it("counts bytes, not characters, in a column", function()
      assert.same({ 1, 4 }, { json.position("é:x", 4) })
    end)
  end)

  describe("decode", function()
    it("decodes JSON with comments", function()
      local value = json.decode('{ "a": [1, "two", true] /* c */ } // c')
      assert.same({ a = { 1, "two", true } }, value)
    end)

    it("returns integral numbers as Lua integers and the others as floats", function()
      local value = json.decode('[3, 3.0, 1e2, 0.5, -7]')
      assert.same({ "integer", "integer", "integer", "float", "integer" },
        { math.type(value[1]), math.type(value[2]), math.type(value[3]),
          math.type(value[4]), math.type(value[5]) })
    end)

    it("decodes null as json.null, deep inside values too", function()
      local value = json.decode('{"a": null, "b": [null, {"c": null}]}')
      assert.equal(json.null, value.a)
      assert.equal(json.null, value.b[1])
      assert.equal(json.null, value.b[2].c)
    end)

    it("accepts any value at the top", function()
      assert.same({ 1, 2 }, (json.decode("[1, 2]")))
      assert.equal("x", (json.decode('"x"')))
      assert.equal(false, (json.decode("false")))
      assert.equal(json.null, (json.decode("null")))
    end)

    it("accepts a UTF-8 byte order mark", function()
      assert.same({ a = 1 }, (json.decode('\239\187\191{"a": 1}')))
    end)

    it("accepts 1000 levels of nesting", function()
      local value = json.decode(("["):rep(1000) .. ("]"):rep(1000))
      assert.is_table(value)
    end)

    describe("errors", function()
      it("reports an empty file", function()
        assert.equal("1:1: empty file", decode_error(""))
      end)

      it("reports a file of blanks and comments as ending too early", function()
        assert.equal("3:1: expected a value, found end of file", decode_error("  \n// nothing\n"))
      end)

      it("locates a missing comma between two objects", function()
        assert.equal("3:3: expected ',' or ']', found '{' (is a ',' missing before it?)",
          decode_error('[\n  {"a": 1}\n  {"b": 2}\n]'))
      end)

      it("locates a missing comma between two members", function()
        assert.equal([[2:3: expected ',' or '}', found "b" (is a ',' missing before it?)]],
          decode_error('{"a": 1\n  "b": 2}'))
      end)

      it("points a trailing comma out", function()
        assert.equal("1:10: expected a key (a string in double quotes), found '}' (JSON allows no trailing comma)",
          decode_error('{"a": 1, }'))
        assert.equal("3:1: expected a value, found ']' (JSON allows no trailing comma)",
          decode_error('[1, // one\n  2, /* two */\n]'))
      end)

      it("reports a missing colon", function()
        assert.equal("1:6: expected ':', found 1", decode_error('{"a" 1}'))
      end)

      it("reports a key that is not a string", function()
        assert.equal("1:2: expected a key (a string in double quotes), found 'a'", decode_error('{a: 1}'))
      end)

      it("reports single quotes", function()
        assert.equal("1:2: expected a key (a string in double quotes), found a single quote (JSON strings take double quotes)",
          decode_error("{'a': 1}"))
      end)

      it("reports what follows the value", function()
        assert.equal("1:9: expected end of file, found '}'", decode_error('{"a": 1}}'))
        assert.equal("2:1: expected end of file, found 'garbage'", decode_error('{"a": 1}\ngarbage'))
      end)

      it("reports a misspelt literal", function()
        assert.equal("1:7: expected a value, found 'tru'", decode_error('{"a": tru}'))
      end)

      it("refuses NaN and Infinity", function()
        assert.equal("1:7: expected a value, found 'NaN' (JSON has no NaN or Infinity)",
          decode_error('{"a": NaN}'))
        assert.equal("1:7: expected a value, found '-Infinity' (JSON has no NaN or Infinity)",
          decode_error('{"a": -Infinity}'))
      end)

      it("refuses numbers JSON does not have", function()
        assert.equal("1:2: expected a value, found '0x10' (not a valid JSON number)", decode_error("[0x10]"))
        assert.equal("1:2: expected a value, found 01 (not a valid JSON number)", decode_error("[01]"))
        assert.equal("1:2: expected a value, found '+1' (not a valid JSON number)", decode_error("[+1]"))
        assert.equal("1:2: expected a value, found '.5' (not a valid JSON number)", decode_error("[.5]"))
      end)

      it("reports an unterminated string at its opening quote", function()
        assert.equal('2:8: unterminated string', decode_error('{"a": 1,\n  "b": "never closed}\n'))
      end)

      it("reports a bad escape in a string", function()
        assert.equal([[1:9: invalid escape \x in a string]], decode_error([[{"a": "a\x"}]]))
        assert.equal([[1:8: invalid unicode escape \ud800 in a string]], decode_error([[{"a": "\ud800"}]]))
      end)

      it("reports an unterminated block comment where it opens", function()
        assert.equal("2:3: unterminated /* comment", decode_error('{"a": 1,\n  /* "b": 2\n}'))
      end)

      it("refuses a NUL byte, which cjson would take for the end", function()
        assert.equal("1:3: found a NUL byte (this is not a text file)", decode_error("{}\0garbage"))
      end)

      it("describes binary garbage by its bytes", function()
        assert.equal("1:1: expected a value, found byte 0xFF (is this a JSON text file?)",
          decode_error("\255\254\253"))
        assert.equal("1:1: expected a value, found byte 0x0C", decode_error("\f{}"))
      end)

      it("never raises on random bytes", function()
        math.randomseed(20240601)
        for _ = 1, 200 do
          local bytes = {}
          for i = 1, math.random(1, 300) do bytes[i] = string.char(math.random(0, 255)) end
          local ok, value, err = pcall(json.decode, table.concat(bytes))
          assert.is_true(ok)
          if value == nil then
            assert.is_string(err.message)
            assert.is_number(err.line)
            assert.is_number(err.col)
          end
        end
      end)

      it("reports 20,000 levels of nesting at the level that is too deep", function()
        local text = '{"a": ' .. ("[\n"):rep(20000) .. ("]"):rep(20000) .. "}"
        assert.equal("1000:1: nesting deeper than 1000 levels", decode_error(text))
      end)

      it("reports 20,000 levels of objects the same way", function()
        local text = ('{"a":'):rep(20000) .. "1" .. ("}"):rep(20000)
        assert.equal("1:5001: nesting deeper than 1000 levels", decode_error(text))
      end)
    end)

    describe("index", function()
      local text = table.concat({
        '{',                                            -- 1
        '  "test_name": "x", // "not//a key"',          -- 2
        '  "events": [',                                -- 3
        '    { "name": "a", "params": { "video_path": "/v", "n": [1, {}, []],',
        '      "video-path": null } },',                -- 5
        '    2.5, true',                                -- 6
        '  ]',                                          -- 7
        '}',                                            -- 8
      }, "\n")
      local _, index = json.decode(text)

      it("maps the root to the empty path", function()
        assert.same({ line = 1, col = 1, kind = "object", offset = 1, finish = #text }, index[""])
      end)

      it("records where a member's value and its key start", function()
        local e = index.test_name
        assert.same({ 2, 16, 2, 3, "string" }, { e.line, e.col, e.key_line, e.key_col, e.kind })
      end)

      it("names array elements with 0-based indices", function()
        assert.same({ 4, 5, "object" }, { index["events[0]"].line, index["events[0]"].col, index["events[0]"].kind })
        assert.same({ 6, 5, "number" }, { index["events[1]"].line, index["events[1]"].col, index["events[1]"].kind })
        assert.same({ 6, 10, "boolean" }, { index["events[2]"].line, index["events[2]"].col, index["events[2]"].kind })
      end)

      it("builds dotted paths into nested objects", function()
        local e = index["events[0].params.video_path"]
        assert.same({ 4, 46, "string" }, { e.line, e.col, e.kind })
      end)

      it("tells an empty object from an empty array", function()
        assert.equal("object", index["events[0].params.n[1]"].kind)
        assert.equal("array", index["events[0].params.n[2]"].kind)
      end)

      it("brackets keys that are not identifiers", function()
        assert.equal("null", index['events[0].params["video-path"]'].kind)
      end)

      it("gives the extent of scalars and containers", function()
        local e = index["events[1]"]
        assert.equal("2.5", text:sub(e.offset, e.finish))
        e = index["events[0].params.n"]
        assert.equal("[1, {}, []]", text:sub(e.offset, e.finish))
      end)

      it("holds only paths", function()
        local paths = {}
        for path in pairs(index) do paths[#paths + 1] = path end
        table.sort(paths)
        assert.same({ "", "events", "events[0]", "events[0].name", "events[0].params",
          "events[0].params.n", "events[0].params.n[0]", "events[0].params.n[1]",
          "events[0].params.n[2]", "events[0].params.video_path",
          'events[0].params["video-path"]', "events[1]", "events[2]", "test_name" }, paths)
      end)

      it("finds no duplicates in a clean text", function()
        assert.same({}, json.duplicates(index))
        assert.same({}, index.__duplicates)
      end)

      it("lists duplicate keys with both positions, at any depth", function()
        local _, idx = json.decode('{"a": 1,\n "b": {"c": [{"d": 1, "d": 2}]},\n "a": 3}')
        assert.same({
          { path = "b.c[0].d", key = "d", line = 2, col = 23, first_line = 2, first_col = 15 },
          { path = "a", key = "a", line = 3, col = 2, first_line = 1, first_col = 2 },
        }, json.duplicates(idx))
      end)

      it("indexes the value cjson kept for a duplicate key", function()
        local value, idx = json.decode('{"a": {"x": 1}, "a": [2]}')
        assert.same({ 2 }, value.a)
        assert.equal("array", idx.a.kind)
        assert.is_nil(idx["a.x"])
        assert.equal("number", idx["a[0]"].kind)
      end)

      it("decodes escapes in keys", function()
        local _, idx = json.decode('{"\\u0041b": 1}')
        assert.equal("number", idx.Ab.kind)
      end)

      it("keeps a key named __duplicates apart from the duplicate list", function()
        local _, idx = json.decode('{"__duplicates": 1, "x": 1, "x": 2}')
        assert.equal("number", idx.__duplicates.kind)
        assert.equal(1, #json.duplicates(idx))
      end)

      it("stops recording below max_depth but still finds duplicates there", function()
        local _, idx = json.decode('{"a": {"b": {"c": 1, "c": 2}}}', { max_depth = 1 })
        assert.is_not_nil(idx.a)
        assert.is_nil(idx["a.b"])
        assert.same({ { path = "a.b.c", key = "c", line = 1, col = 22, first_line = 1, first_col = 14 } },
          json.duplicates(idx))
      end)

      it("indexes 1000 levels without recursion", function()
        local _, idx = json.decode(("[\n"):rep(1000) .. ("]"):rep(1000))
        local path = ("[0]"):rep(999)
        assert.same({ 1000, 1, "array" }, { idx[path].line, idx[path].col, idx[path].kind })
      end)
    end)

    describe("lazy (built at its first read)", function()
      -- texts where ':' in strings, escapes and comments could hide or fake a repeated key
      local texts = {
        '{"a": 1, "a": 2}', '{"a": "x:y", "b": "::"}', '{"a:b": "c:d", "a:b": 1}',
        '{"a": "\\u003a", "b": 1}', '{"a": "\\u003A", "a": 1}', '{"a": "\\\\u003a", "b": 1}',
        '{"x": {"a": 1, "a": {"b": 1}}}', '[{"a": 1}, {"a": 1}]', '{"a": [], "b": {}}', '"a:b"',
        '{"k": "v", // c: d\n "k2": 1 /* e: f */}', '{"a": {"q:": "::"}, "a": {"q:": "::"}}',
        '{"1": 1, "1": 2}', '{"a": {"b": {"c": 1, "c": 2}}}',
      }

      it("finds the same duplicates as the eager index", function()
        for _, text in ipairs(texts) do
          local _, eager = json.decode(text, { max_depth = 1 })
          local _, lazy = json.decode(text, { max_depth = 1, lazy = true })
          assert.same(json.duplicates(eager), json.duplicates(lazy), text)
        end
      end)

      it("reads, and pairs over, the entries the eager index has", function()
        local text = '{"test_name": "t",\n "events": [{"name": "a", "params": {"n": [1, 2]}}, {}]}'
        local _, eager = json.decode(text)
        local _, lazy = json.decode(text, { lazy = true })
        assert.same({ 2, 12, "array" }, { lazy.events.line, lazy.events.col, lazy.events.kind })
        local a, b = {}, {}
        for path, e in pairs(eager) do a[path] = { e.kind, e.line, e.col, e.offset, e.finish } end
        for path, e in pairs(lazy) do b[path] = { e.kind, e.line, e.col, e.offset, e.finish } end
        assert.same(a, b)
      end)
    end)
  end)

  describe("join", function()
    it("joins identifiers with dots and brackets the rest", function()
      assert.equal("a", json.join("", "a"))
      assert.equal("a.b", json.join("a", "b"))
      assert.equal('a["b c"]', json.join("a", "b c"))
      assert.equal('a["q\\"uote"]', json.join("a", 'q"uote'))
    end)
  end)

  describe("quote", function()
    it("quotes and escapes a string", function()
      assert.equal([["a\"b\\c\n"]], json.quote('a"b\\c\n'))
    end)

    it("cuts a long string", function()
      assert.equal('"' .. ("x"):rep(40) .. '..."', json.quote(("x"):rep(100)))
    end)
  end)
end)
