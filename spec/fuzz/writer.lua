-- spec/fuzz/writer.lua: the writers' fuzzer check.  Returns function(input)
-- that reads input as a small bytecode building Lua values (strings with
-- control characters and invalid UTF-8, huge numbers, NaN and infinity, deep
-- tables, cycles, functions, userdata, hostile metatables), then writes them
-- the way a run does and raises on a finding:
--   - the --report writer (orch.output.jsonl over the C encoder, src/jsonw.c,
--     with orch.output.json's placeholders as its fallback) raising, or
--     refusing a record, or writing a line that is not valid JSON or not
--     valid UTF-8, or a "type" that is not the one asked for;
--   - orch.output.json's encode/sanitize raising, or producing invalid JSON
--     or invalid UTF-8;
--   - the JUnit file (orch.output.junit) not being well-formed XML (expat).
-- It needs orch.core: the fuzzer runs it in the host (spec/fuzz/harness.c),
-- spec/e2e/fuzz_regress_spec.lua in an orchlua event.
local jsonl = require "orch.output.jsonl"
local json = require "orch.output.json"
local junit = require "orch.output.junit"
local decoder = require("cjson.safe").new()
local lxp_ok, lxp = pcall(require, "lxp")

-- made once, rewritten by every input; in memory when /dev/shm is there
local TMP = os.tmpname()
do
  local shm = io.open("/dev/shm/" .. TMP:match("[^/]*$"), "w")
  if shm then
    shm:close()
    os.remove(TMP)
    TMP = "/dev/shm/" .. TMP:match("[^/]*$")
  end
end
local JUNIT = TMP .. ".xml"

local function fail(fmt, ...)
  error("finding: " .. fmt:format(...), 0)
end

local function short(s)
  s = tostring(s)
  if #s > 200 then s = s:sub(1, 200) .. "..." end
  return (s:gsub("[%c\128-\255]", function(c) return ("\\x%02x"):format(c:byte()) end))
end

-- ---- the bytecode -------------------------------------------------------

local SPECIAL = { 0 / 0, -(0 / 0), math.huge, -math.huge, math.maxinteger, math.mininteger,
  -0.0, 2 ^ 53 + 1, 2 ^ 63, 5e-324, 1e308, 0.1 + 0.2, -1, 0 }

local function co_fn() end

-- Metatables a reported object may carry: class instances, and worse.
local METAS = {
  function(s) return { __tostring = function() error("tostring raises " .. s) end } end,
  function() return { __tostring = function() return {} end } end,
  function(s) return { __name = s } end,
  function(s) return { __index = function(_, k) error("no field " .. tostring(k) .. s) end } end,
  function() return { __len = function() return 3 end } end,
  function() return { __len = function() return "x" end } end,
  function() return { __len = function() error("len raises") end } end,
  function() return { __pairs = function() error("pairs raises") end } end,
  function() return { __pairs = function(t) return function() return nil end, t, nil end } end,
  function(s) return { __index = { hidden = s } } end,
  function() return { __newindex = function() error("read-only") end } end,
  function() return { __eq = function() error("eq raises") end, __lt = function() error("lt") end } end,
}

-- Shared references (op 12) per program: {t, t} nested k deep is 2^k
-- copies, which the writers bound (the regression input dag-exponential
-- nests 44) but which costs seconds per input under the fuzzer's
-- instrumentation.  spec/fuzz/run.sh caps them to keep the fuzzer fast;
-- the kept inputs are replayed without a cap (spec/e2e/fuzz_regress_spec.lua).
local MAX_SHARED = tonumber(os.getenv("FUZZ_WRITER_MAX_SHARED") or "") or math.huge

local function run_program(input)
  local pos, n = 1, #input
  local stack, top = {}, 0
  local function byte()
    local b = input:byte(pos)
    if b then pos = pos + 1 end
    return b or 0
  end
  local function bytes(k)
    local s = input:sub(pos, pos + k - 1)
    pos = pos + #s
    return s
  end
  local function push(v)
    if top < 64 then top = top + 1; stack[top] = v end
  end
  local function pop()
    if top == 0 then return nil end
    local v = stack[top]
    stack[top] = nil
    top = top - 1
    return v
  end
  local function table_at_top()
    local t = stack[top]
    if type(t) ~= "table" then t = {}; push(t) end
    return t
  end
  local type_ = nil
  local steps, shared = 0, 0
  while pos <= n and steps < 4096 do
    steps = steps + 1
    local op = byte() % 20
    if op == 0 then            -- a string of up to 255 raw bytes
      push(bytes(byte()))
    elseif op == 1 then        -- an integer
      local s = bytes(8)
      push(#s == 8 and string.unpack("<i8", s) or #s)
    elseif op == 2 then        -- a float: every bit pattern, NaNs included
      local s = bytes(8)
      push(#s == 8 and string.unpack("<d", s) or 0.5)
    elseif op == 3 then
      push(SPECIAL[byte() % #SPECIAL + 1])
    elseif op == 4 then
      push(byte() % 2 == 1)
    elseif op == 5 then
      push(json.null)
    elseif op == 6 then        -- what JSON cannot say
      local k = byte() % 4
      push(k == 0 and print or k == 1 and co_fn or k == 2 and io.stdout or coroutine.create(co_fn))
    elseif op == 7 then
      push({})
    elseif op == 8 then        -- append to the table below
      local v = pop()
      local t = table_at_top()
      rawset(t, rawlen(t) + 1, v)
    elseif op == 9 then        -- t[k] = v, any key
      local v, k = pop(), pop()
      local t = table_at_top()
      if k ~= nil and k == k then rawset(t, k, v) end
    elseif op == 10 then       -- a sparse index
      local v = pop()
      rawset(table_at_top(), byte() + 1, v)
    elseif op == 11 then       -- deep nesting: past jsonw's 48 and cjson's 64
      local v = pop()
      for _ = 1, byte() + byte() do v = { v } end
      push(v)
    elseif op == 12 then       -- a cycle, or a table shared twice
      local t = table_at_top()
      local other = stack[(byte() % top) + 1]
      local key = byte() % 2 == 0 and "self" or rawlen(t) + 1
      shared = shared + 1
      if shared <= MAX_SHARED then rawset(t, key, other) end
    elseif op == 13 then
      push(stack[top])
    elseif op == 14 then       -- a metatable
      local t = table_at_top()
      local make = METAS[byte() % #METAS + 1]
      setmetatable(t, make(bytes(byte() % 8)))
    elseif op == 15 then       -- a long string (up to 16 KiB; a few pass the writer's 64 KiB buffer)
      local s = bytes(byte() % 16 + 1)
      push(s:rep(byte() * 4))
    elseif op == 16 then       -- the record's type
      type_ = bytes(byte() % 32)
    elseif op == 17 then       -- a table used as a key
      local v = pop()
      local t = table_at_top()
      rawset(t, {}, v)
    elseif op == 18 then       -- a float key
      local v = pop()
      rawset(table_at_top(), (byte() + 0.5) * (byte() % 2 == 0 and 1 or -1), v)
    else                       -- a large integer key
      local v = pop()
      local s = bytes(8)
      local k = #s == 8 and string.unpack("<i8", s) or 1
      rawset(table_at_top(), k, v)
    end
  end
  return stack, top, type_
end

-- ---- the checks -----------------------------------------------------------

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- One JSON line: decodes, is valid UTF-8, holds no raw newline.
local function check_json_line(line, what)
  if not utf8.len(line) then fail("%s: not valid UTF-8: %s", what, short(line)) end
  if line:find("[%z\1-\31]") then fail("%s: a raw control character: %s", what, short(line)) end
  local v, err = decoder.decode(line)
  if v == nil and err ~= nil then fail("%s: not valid JSON (%s): %s", what, err, short(line)) end
  return v
end

local function check_jsonl(values, type_)
  local w, err = jsonl.open(TMP)
  if not w then fail("cannot open %s: %s", TMP, tostring(err)) end
  local expect = {}
  for i, v in ipairs(values) do
    local ty = (i % 2 == 0) and type_ or nil
    local ok, ok2, werr = pcall(w.write, w, v, ty)
    if not ok then fail("jsonl write raised: %s", short(ok2)) end
    if not ok2 then fail("jsonl write refused record %d: %s", i, short(werr)) end
    expect[#expect + 1] = { v = v, ty = ty }
  end
  -- the engine's own record shape, with the value as data
  local ok, ok2, werr = pcall(w.write, w, { event = "fuzz", level = "info", t = 1.5, data = values[1] }, "result")
  if not ok then fail("jsonl write raised: %s", short(ok2)) end
  if not ok2 then fail("jsonl write refused the result record: %s", short(werr)) end
  expect[#expect + 1] = { ty = "result" }
  local cok, cerr = w:close()
  if not cok then fail("jsonl close failed: %s", short(cerr)) end
  local text = read_all(TMP)
  if text ~= "" and text:sub(-1) ~= "\n" then fail("the report does not end with a newline") end
  local i = 0
  for line in text:gmatch("([^\n]*)\n") do
    i = i + 1
    local e = expect[i]
    if not e then fail("more lines than records (%d)", i) end
    local v = check_json_line(line, "report line " .. i)
    -- (a table with its own "type" field repeats the key: the engine never
    -- passes one with a type)
    if e.ty and type(v) == "table" and v.type ~= nil
        and not (type(e.v) == "table" and rawget(e.v, "type") ~= nil) then
      local want = e.ty
      if utf8.len(want) and v.type ~= want then
        fail("record %d: type %s written as %s", i, short(want), short(v.type))
      end
    end
    -- what JSON can say faithfully comes back as it was
    -- (a string: as it was, each byte outside valid UTF-8 turned into
    -- U+FFFD, by the C encoder as by orch.output.json: the two agree)
    local orig = e.v
    if type(orig) == "string" and v ~= json.valid_utf8(orig) then
      fail("record %d: string %s came back as %s", i, short(orig), short(v))
    elseif math.type(orig) == "integer" and (orig < 2 ^ 53 and orig > -2 ^ 53) and v ~= orig then
      fail("record %d: integer %d came back as %s", i, orig, short(v))
    elseif type(orig) == "boolean" and v ~= orig then
      fail("record %d: boolean came back as %s", i, short(v))
    end
  end
  if i ~= #expect then fail("%d records, %d lines", #expect, i) end
end

local function check_encode(v)
  local ok, s = pcall(json.encode, v)
  if not ok then fail("orch.output.json.encode raised: %s", short(s)) end
  if type(s) ~= "string" then fail("encode returned a %s", type(s)) end
  local back = check_json_line(s, "orch.output.json.encode")
  if type(v) == "string" and back ~= json.valid_utf8(v) then
    fail("encode: string %s came back as %s", short(v), short(back))
  end
  local ok2, sv = pcall(json.sanitize, v)
  if not ok2 then fail("orch.output.json.sanitize raised: %s", short(sv)) end
end

-- Strings the JUnit file carries: suite, case ids, failure messages.
local function check_junit(strings, num)
  local s = function(i) return strings[(i - 1) % #strings + 1] or "" end
  local ids = { s(2), s(3) .. "#2" }
  local run = {
    desc = { test_name = s(1) },
    events = { { id = ids[1] }, { id = ids[2] } },
    per_event = {
      [ids[1]] = { duration = { sum = num }, failures = 2, runs = 3, skipped = 0, timeouts = 1,
                   errors = { s(4), s(5) } },
      [ids[2]] = { duration = { sum = 0.25 }, failures = 0, runs = 0, skipped = 2, timeouts = 0, errors = {} },
    },
    errors = { s(6) }, error_results = 1, total = 12.5,
  }
  local ok, wok, werr = pcall(junit.write, JUNIT, run)
  if not ok then fail("junit.write raised: %s", short(wok)) end
  if not wok then fail("junit.write failed: %s", short(werr)) end
  local xml = read_all(JUNIT)
  if not utf8.len(xml) then fail("the JUnit file is not valid UTF-8: %s", short(xml)) end
  if lxp_ok then
    local cases = 0
    local p = lxp.new({ StartElement = function(_, name) if name == "testcase" then cases = cases + 1 end end })
    local pok, perr, line, col = p:parse(xml)
    if pok then pok, perr, line, col = p:parse() end
    p:close()
    if not pok then
      fail("the JUnit file is not well-formed XML (%s at %s:%s): %s", tostring(perr), tostring(line), tostring(col), short(xml))
    end
    if cases ~= 3 then fail("the JUnit file holds %d testcases, not 3", cases) end
  end
end

return function(input)
  local stack, top, type_ = run_program(input)
  -- the last few values one by one (each is a record), then the whole stack
  local values, strings, num = {}, {}, 1.5
  for i = 1, top do
    local v = stack[i]
    if i > top - 2 then values[#values + 1] = v == nil and json.null or v end
    if type(v) == "string" then strings[#strings + 1] = v end
    if type(v) == "number" then num = v end
  end
  if #values == 0 then values[1] = input end
  values[#values + 1] = stack                  -- all of them in one table
  check_jsonl(values, type_ or "result")
  for _, v in ipairs(values) do check_encode(v) end
  if #strings == 0 then strings[1] = input end
  check_junit(strings, num)
  os.remove(TMP)
  os.remove(JUNIT)
end
