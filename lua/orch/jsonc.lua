-- orch.jsonc: JSON with comments, decoded by lua-cjson, plus a position index.
--
-- Descriptions are JSON that may carry `//` and `/* */` comments (the seed's
-- annotated example must load as printed). Comments are blanked out with
-- spaces, byte for byte, so every offset, line and column cjson or we report
-- still points into the file the user wrote.
--
-- cjson does the decoding: it is fast, strict (we turn off its NaN/Infinity/
-- hex extension) and bounds nesting at 1000 levels. It cannot say where a
-- value came from, nor see duplicate keys, so once cjson has accepted the
-- text a small scanner walks it again and builds an *index*: JSON path ->
-- where the value starts and what kind it is.
--
-- Paths read the way a JavaScript user writes them, and array indices are
-- 0-BASED everywhere (paths, messages): "" is the root, then `test_name`,
-- `events`, `events[0]`, `events[2].interval_sec`, `events[2].params.video_path`.
-- A key that is not an identifier is bracketed: `params["video-path"]`.
--
-- Two error channels, as in cjson.safe: decode never raises on bad input; it
-- returns nil and {line =, col =, message =}.

local cjson_safe = require "cjson.safe"

local json = {}

-- A private cjson instance, so our strictness does not leak into other users
-- of require "cjson" in the same state (user event code may load it too).
local cjson = cjson_safe.new()
cjson.decode_invalid_numbers(false)   -- reject NaN, Infinity, 0x10: not JSON

--- The value cjson decodes `null` to (one lightuserdata shared by every
-- cjson instance, so `v == json.null` works whoever decoded v).
json.null = cjson.null

-- cjson's nesting limit; its message for it is rewritten below.
json.MAX_DEPTH = 1000

local byte, find, sub, match = string.byte, string.find, string.sub, string.match

local B_QUOTE, B_SLASH, B_STAR = 34, 47, 42
local B_LBRACE, B_RBRACE, B_LBRACKET, B_RBRACKET = 123, 125, 91, 93
local B_COMMA, B_COLON = 44, 58

-- Offset of the closing quote of the string literal whose opening quote is at
-- `pos`, or nil when the text ends first. Escapes are skipped two bytes at a
-- time, so `"a\"//b"` ends where it should.
local function string_end(text, pos)
  local p = pos + 1
  while true do
    local q = find(text, '["\\]', p)
    if not q then return nil end
    if byte(text, q) == B_QUOTE then return q end
    p = q + 2
  end
end

--- Blanks out comments, keeping every byte offset (newlines stay newlines).
-- Returns the new text, or nil, {offset =, message =} for an unterminated
-- block comment. `//` and `/*` inside string literals are left alone. An
-- unterminated string is left for the decoder to report.
function json.strip_comments(text)
  -- a comment starts with // or /*: a text with neither has none
  if not find(text, "//", 1, true) and not find(text, "/*", 1, true) then return text end
  local out, n = {}, 0
  local done = 1          -- text before this offset is already in `out`
  local p = 1
  while true do
    local s = find(text, '["/]', p)
    if not s then break end
    if byte(text, s) == B_QUOTE then
      local e = string_end(text, s)
      if not e then break end
      p = e + 1
    else
      local nxt = byte(text, s + 1)
      local e     -- last byte of the comment
      if nxt == B_SLASH then
        e = (find(text, "\n", s + 2, true) or #text + 1) - 1
      elseif nxt == B_STAR then
        local close = find(text, "*/", s + 2, true)
        if not close then
          return nil, { offset = s, message = "unterminated /* comment" }
        end
        e = close + 1
      end
      if e then
        n = n + 1; out[n] = sub(text, done, s - 1)
        n = n + 1; out[n] = (sub(text, s, e):gsub("[^\r\n]", " "))
        done, p = e + 1, e + 1
      else
        p = s + 1   -- a lone '/': not ours to judge, cjson will
      end
    end
  end
  if done == 1 then return text end
  n = n + 1; out[n] = sub(text, done)
  return table.concat(out, "", 1, n)
end

--- Line and column (1-based; the column counts bytes) of byte `offset`.
-- An offset past the end is the position just after the last byte.
function json.position(text, offset)
  if offset > #text + 1 then offset = #text + 1 end
  local line, line_start, p = 1, 1, 1
  while true do
    local nl = find(text, "\n", p, true)
    if not nl or nl >= offset then break end
    line, line_start, p = line + 1, nl + 1, nl + 1
  end
  return line, offset - line_start + 1
end

-- Quotes a string for a message or a path, JSON style. Long strings are cut
-- so that one bad value cannot flood the console.
local function quote(s, max)
  max = max or 40
  local cut = #s > max
  if cut then s = sub(s, 1, max) end
  s = s:gsub('[%c"\\]', function(c)
    if c == '"' or c == "\\" then return "\\" .. c end
    if c == "\n" then return "\\n" end
    if c == "\t" then return "\\t" end
    return ("\\u%04x"):format(byte(c))
  end)
  return '"' .. s .. (cut and '..."' or '"')
end
json.quote = quote

-- key -> whether it reads as a plain name in a path. Keys repeat ("name",
-- "params" in every event), so remembering the answer pays on big files;
-- the memo is dropped when it grows, as strings never leave a weak table.
local plain_memo, plain_count = {}, 0
local function plain_key(key)
  local plain = plain_memo[key]
  if plain == nil then
    plain = match(key, "^[%a_][%w_]*$") ~= nil
    if plain_count >= 4096 then plain_memo, plain_count = {}, 0 end
    plain_memo[key], plain_count = plain, plain_count + 1
  end
  return plain
end

--- The path of member `key` of the value at `parent`.
function json.join(parent, key)
  if plain_key(key) then
    return parent == "" and key or parent .. "." .. key
  end
  return parent .. "[" .. quote(key, math.huge) .. "]"
end

--- The path of element `i` (0-based) of the array at `parent`.
function json.element(parent, i)
  return parent .. "[" .. i .. "]"
end

-- ---------------------------------------------------------------------------
-- Readable errors from cjson's messages.
--
-- cjson says "Expected <what> but found <token> at character <N>", N being the
-- 1-based offset of the offending token. We keep its judgement and rewrite
-- the words: what was expected in JSON terms, what was found as the user
-- wrote it, and where as line:col.

local EXPECTED = {
  ["value"] = "a value",
  ["object key string"] = "a key (a string in double quotes)",
  ["colon"] = "':'",
  ["comma or object end"] = "',' or '}'",
  ["comma or array end"] = "',' or ']'",
  ["the end"] = "end of file",
}

-- What the text holds at `offset`, described for a message: a word or number
-- as written, a punctuation mark in single quotes, a string as a short quote.
local function describe_at(text, offset)
  local c = byte(text, offset)
  if not c then return "end of file" end
  if c == B_QUOTE then
    local e = string_end(text, offset) or #text
    local inner = sub(text, offset + 1, math.min(e - 1, offset + 40))
    return '"' .. inner .. (e - 1 > offset + 40 and '..."' or '"')
  end
  local word = match(text, "^[%w_%.%+%-]+", offset)
  if word then
    if #word > 40 then word = sub(word, 1, 40) .. "..." end
    -- a value as written stays bare (found 2); anything else is quoted
    if word == "true" or word == "false" or word == "null"
        or match(word, "^%-?%d+%.?%d*[eE]?[%+%-]?%d*$") then
      return word
    end
    return "'" .. word .. "'"
  end
  if c == 39 then return "a single quote" end
  if c < 32 or c > 126 then return ("byte 0x%02X"):format(c) end
  return "'" .. string.char(c) .. "'"
end

-- The last non-blank byte before `offset` (comments are blank by now).
local function byte_before(text, offset)
  for i = offset - 1, 1, -1 do
    local c = byte(text, i)
    if c ~= 32 and c ~= 9 and c ~= 10 and c ~= 13 then return c end
  end
end

-- Hints for mistakes people make when JSON is not their first language.
local function hint_for(text, offset, found)
  local word = match(found, "^'(.*)'$") or found
  if word == "NaN" or word == "nan" or match(word, "^[%-%+]?Infinity$")
      or match(word, "^[%-%+]?inf$") then
    return " (JSON has no NaN or Infinity)"
  end
  if match(word, "^[%+%.]%d") then return " (not a valid JSON number)" end
  if found == "a single quote" then return " (JSON strings take double quotes)" end
  local c = byte(text, offset)
  if (c == B_RBRACE or c == B_RBRACKET) and byte_before(text, offset) == B_COMMA then
    return " (JSON allows no trailing comma)"
  end
  if found:match("^byte 0x") and c >= 128 then
    return " (is this a JSON text file?)"
  end
  return ""
end

-- The opening quote of the string that runs to the end of the text. Everything
-- before the failure was valid JSON, so outside strings there is no quote.
local function unterminated_string_start(text)
  local p = 1
  while true do
    local s = find(text, '"', p, true)
    if not s then return nil end
    local e = string_end(text, s)
    if not e then return s end
    p = e + 1
  end
end

local function decode_error(text, offset, message)
  local line, col = json.position(text, offset)
  return { line = line, col = col, offset = offset, message = message }
end

local function translate(text, msg)
  local depth, at = match(msg, "^Found too many nested data structures %((%d+)%) at character (%d+)")
  if depth then
    return decode_error(text, tonumber(at),
      ("nesting deeper than %d levels"):format(json.MAX_DEPTH))
  end
  local exp, token, at2 = match(msg, "^Expected (.-) but found (.-) at character (%d+)$")
  if not exp then
    return { message = msg }   -- a cjson message we do not know: pass it on
  end
  local offset = tonumber(at2)
  if token == "unexpected end of string" then
    local s = unterminated_string_start(text) or offset
    return decode_error(text, s, "unterminated string")
  end
  if token == "invalid escape code" or token == "invalid unicode escape code" then
    local esc = match(text, "^\\u%x?%x?%x?%x?", offset) or sub(text, offset, offset + 1)
    -- a lone UTF-16 surrogate is reported on its first escape: show the pair
    local pair = match(text, "^\\u%x%x%x%x\\u%x%x%x%x", offset)
    local what = token == "invalid escape code" and "invalid escape " or "invalid unicode escape "
    return decode_error(text, offset, what .. (pair or esc) .. " in a string")
  end
  local found = describe_at(text, offset)
  local hint = hint_for(text, offset, found)
  if hint == "" and token == "invalid number" then
    hint = " (not a valid JSON number)"
  elseif hint == "" and exp:match("^comma or") and token ~= "T_END"
      and match(text, '^[%[{"%-%dtfn]', offset) then
    -- a value where a ',' should be: the comma after the previous one is missing
    hint = " (is a ',' missing before it?)"
  end
  return decode_error(text, offset, ("expected %s, found %s%s"):format(
    EXPECTED[exp] or exp, found, hint))
end

-- ---------------------------------------------------------------------------
-- The index scanner. It runs only on text cjson accepted, so it can trust the
-- grammar and only needs to follow it; an explicit stack keeps 1000 levels
-- (or any depth) away from the C and Lua stacks.

local KIND_OF_BYTE = {
  [B_LBRACE] = "object", [B_LBRACKET] = "array", [B_QUOTE] = "string",
  [byte "t"] = "boolean", [byte "f"] = "boolean", [byte "n"] = "null",
}

local function key_text(text, s, e)
  local raw = sub(text, s + 1, e - 1)
  if not find(raw, "\\", 1, true) then return raw end
  return cjson.decode(sub(text, s, e))   -- escapes: let cjson decode them
end

-- Drops the entries at `path` and below it (rare: only for duplicate keys).
local function forget(index, path)
  local n = #path
  for p in pairs(index) do
    if sub(p, 1, n) == path then
      local c = byte(p, n + 1)
      if c == nil or c == byte "." or c == B_LBRACKET then index[p] = nil end
    end
  end
end

-- Builds the index for `text` (comment-stripped, valid JSON).
-- opts.max_depth: record values only down to this depth (the root is depth 0);
-- duplicate keys are still found at every depth. Keeps memory and time
-- bounded for callers that only look near the top (a 16 MiB array of numbers
-- would otherwise cost a table and a path string per number).
local function build_index(text, opts)
  local max_depth = opts and opts.max_depth or math.huge
  local index, duplicates = {}, {}

  -- An entry keeps offsets; its line and column are worked out when read
  -- (messages and the events' positions read them, most values never), from
  -- the offsets where lines start, found once, at the first read.
  local starts
  local function pos_of(p)
    if not starts then
      starts = { 1 }
      local q = find(text, "\n", 1, true)
      while q do
        starts[#starts + 1] = q + 1
        q = find(text, "\n", q + 1, true)
      end
    end
    local lo, hi = 1, #starts   -- the last line starting at or before p
    while lo < hi do
      local mid = (lo + hi + 1) // 2
      if starts[mid] <= p then lo = mid else hi = mid - 1 end
    end
    return lo, p - starts[lo] + 1
  end
  local entry_mt = { __index = function(e, k)
    if k == "line" then return (pos_of(e.offset))
    elseif k == "col" then return select(2, pos_of(e.offset))
    elseif k == "key_line" then return e.key_at and (pos_of(e.key_at))
    elseif k == "key_col" then return e.key_at and select(2, pos_of(e.key_at))
    end
  end }

  -- One frame per open container: { object =, depth =, path =, n =, key =,
  -- key_at =, keys = }. `path` is its own path, kept only down to max_depth
  -- (building a path string per value is most of the cost otherwise); the
  -- current member is `key` (objects) or `n` (arrays, 0-based).
  local stack, top = {}, nil

  -- The path of the member `top` is at, or of the root.
  local function member_path()
    if not top then return "" end
    local base = top.path
    if not base then
      -- below max_depth: only a duplicate key asks, so rebuild it from the stack
      base = ""
      for i = 1, #stack do
        local f = stack[i]
        base = f.path or base
        local nxt = stack[i + 1]
        if not nxt then break end
        if not nxt.path then
          base = f.object and json.join(base, f.key) or json.element(base, f.n)
        end
      end
    end
    return top.object and json.join(base, top.key) or json.element(base, top.n)
  end

  -- Records the value starting at `s` (and ending at `e`, for scalars).
  local function record(kind, s, e)
    local depth = top and top.depth + 1 or 0
    if depth > max_depth then return nil end
    local path = member_path()
    local entry = setmetatable({ kind = kind, offset = s, finish = e,
                                 key_at = top and top.object and top.key_at or nil }, entry_mt)
    index[path] = entry
    return path
  end

  local p = 1
  local want_key = false
  while true do
    local c = byte(text, p)
    if c == 32 or c == 9 or c == 10 or c == 13 then   -- blanks: skip them at once
      p = find(text, "[^ \t\r\n]", p)
      if not p then break end
      c = byte(text, p)
    elseif not c then
      break
    end
    if c == B_LBRACE or c == B_LBRACKET then
      local path = record(KIND_OF_BYTE[c], p)
      top = { object = c == B_LBRACE, depth = top and top.depth + 1 or 0,
              path = path, n = 0 }
      stack[#stack + 1] = top
      if top.object then top.keys = {} end
      want_key = top.object
      p = p + 1
    elseif c == B_RBRACE or c == B_RBRACKET then
      -- the container's extent, for callers that want its source text
      local entry = top.path and index[top.path]
      if entry then entry.finish = p end
      stack[#stack] = nil
      top = stack[#stack]
      want_key = false
      p = p + 1
    elseif c == B_COMMA then
      if top.object then want_key = true else top.n = top.n + 1 end
      p = p + 1
    elseif c == B_COLON then
      p = p + 1
    elseif c == B_QUOTE then
      local e = string_end(text, p)
      if want_key then
        local key = key_text(text, p, e)
        top.key, top.key_at = key, p
        local first = top.keys[key]
        if first then
          local path = member_path()
          local l, col = json.position(text, p)
          local fl, fc = json.position(text, first)
          duplicates[#duplicates + 1] = { path = path, key = key, line = l,
            col = col, first_line = fl, first_col = fc }
          -- cjson keeps the last value: forget what the first one indexed
          if top.depth < max_depth then forget(index, path) end
        else
          top.keys[key] = p
        end
        want_key = false
      else
        record("string", p, e)
      end
      p = e + 1
    else
      local e = select(2, find(text, "^[%w%.%+%-]+", p))
      record(KIND_OF_BYTE[c] or "number", p, e)
      p = e + 1
    end
  end

  -- The duplicates sit behind the metatable so that pairs(index) yields only
  -- paths and a JSON key named "__duplicates" cannot hide them.
  return setmetatable(index, { __index = { __duplicates = duplicates } })
end

--- The duplicate keys the index found: a list of {path =, key =, line =,
-- col = (of the repeated key), first_line =, first_col =}, in text order.
-- (Also reachable as index.__duplicates.)
function json.duplicates(index)
  local mt = getmetatable(index)
  return mt.duplicates or mt.__index.__duplicates
end

local function colons_in(s)
  -- plain finds: gsub would copy a whole description to count them
  local n, p = 0, find(s, ":", 1, true)
  while p do
    n = n + 1
    p = find(s, ":", p + 1, true)
  end
  return n
end

-- cjson hands every number back as a float; a Lua user expects `3`, not `3.0`,
-- from `"total_hours": 3`. Walks iteratively: the value may be 1000 deep.
-- Also returns the members of the value's objects, which with the ':' in
-- the text tell whether a key was repeated (see no_duplicates).
local type, next, tointeger = type, next, math.tointeger
local function integralize(value)
  if type(value) == "number" then return tointeger(value) or value, 0 end
  if type(value) ~= "table" then return value, 0 end
  local members = 0
  local todo, n = { value }, 1
  while n > 0 do
    local t = todo[n]
    todo[n], n = nil, n - 1
    for k, v in next, t do
      if type(k) == "string" then members = members + 1 end   -- cjson gives objects string keys only
      local tv = type(v)
      if tv == "table" then
        n = n + 1; todo[n] = v
      elseif tv == "number" then
        local i = tointeger(v)
        if i then t[k] = i end
      end
    end
  end
  return value, members
end

-- The ':' in the value's strings (keys and values), each string counted
-- once: keys and values repeat from object to object.
local function colons_in_strings(value)
  if type(value) == "string" then return colons_in(value) end
  if type(value) ~= "table" then return 0 end
  local colons, counted = 0, {}
  local function count(s)
    local k = counted[s]
    if not k then k = colons_in(s); counted[s] = k end
    return k
  end
  local todo, n = { value }, 1
  while n > 0 do
    local t = todo[n]
    todo[n], n = nil, n - 1
    for k, v in pairs(t) do
      if type(k) == "string" then colons = colons + count(k) end
      if type(v) == "table" then
        n = n + 1; todo[n] = v
      elseif type(v) == "string" then
        colons = colons + count(v)
      end
    end
  end
  return colons
end

-- Whether `text` (stripped, decoded by cjson into `value` with `members`
-- object members) repeats no key.  Outside its strings a JSON text has one
-- ':' per member it writes; cjson keeps one member per key, so a repeated
-- key leaves the text with more ':' than the value.  A text with exactly
-- one ':' per member has none in its strings either (both only add):
-- only a text with more looks at the strings.  Only an escaped colon
-- (\u003a) can make a string's ':' differ between text and value: such a
-- text takes the scan.
local function no_duplicates(text, value, members)
  -- plain finds: a pattern tries every offset of a big text
  local p = find(text, "\\u003", 1, true)
  while p do
    local c = byte(text, p + 5)
    if c == 97 or c == 65 then return false end   -- a, A
    p = find(text, "\\u003", p + 5, true)
  end
  local colons = colons_in(text)
  if colons == members then return true end
  return colons == members + colons_in_strings(value)
end

-- An index built at its first read: a description that validates reads
-- none, and the scan and its ~5 entries per value are most of a big
-- description's load otherwise.  Used only when the text repeats no key.
local NO_DUPLICATES = setmetatable({}, { __newindex = function() error("read-only", 2) end })
local function lazy_index(text, opts)
  local real
  local function get()
    if not real then real = build_index(text, opts) end
    return real
  end
  return setmetatable({}, {
    __index = function(_, k) return get()[k] end,
    __newindex = function(_, k, v) get()[k] = v end,
    __pairs = function() return next, get(), nil end,
    duplicates = NO_DUPLICATES,
  })
end

--- Decodes JSON-with-comments.
-- Returns value, index; or nil, {line =, col =, offset =, message =}.
-- The value is cjson's (null is json.null; {} and [] are both empty tables:
-- ask index[path].kind), except that integral numbers are Lua integers.
-- index[path] = {line =, col =, kind =, offset =, finish =, key_line =, key_col =}
-- where kind is "object", "array", "string", "number", "boolean" or "null",
-- line/col is where the value starts and key_line/key_col where its key does
-- (those four are worked out when read).
-- opts.max_depth limits which values get an index entry (see build_index);
-- opts.lazy builds the index at its first read when no key is repeated
-- (pairs works on it; rawget and next do not).
function json.decode(text, opts)
  if #text == 0 then
    return nil, { line = 1, col = 1, offset = 1, message = "empty file" }
  end
  -- Blank a UTF-8 byte order mark, which some editors add; cjson refuses it.
  if sub(text, 1, 3) == "\239\187\191" then text = "   " .. sub(text, 4) end
  -- cjson stops at a NUL as if the text ended there: "{}\0junk" would pass.
  local nul = find(text, "\0", 1, true)
  if nul then
    return nil, decode_error(text, nul, "found a NUL byte (this is not a text file)")
  end
  local stripped, serr = json.strip_comments(text)
  if not stripped then
    return nil, decode_error(text, serr.offset, serr.message)
  end
  local value, msg = cjson.decode(stripped)
  if value == nil then
    return nil, translate(stripped, msg)
  end
  local members
  value, members = integralize(value)
  if opts and opts.lazy and no_duplicates(stripped, value, members) then
    return value, lazy_index(stripped, opts)
  end
  return value, build_index(stripped, opts)
end

return json
