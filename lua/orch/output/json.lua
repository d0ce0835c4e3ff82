-- orch.output.json: encodes any Lua value to one line of JSON, never
-- failing.  cjson does the work; values it refuses (functions, userdata,
-- cycles, mixed keys) are first turned into something printable.  Like the
-- report's C encoder (src/jsonw.c), it keeps its output valid UTF-8: each
-- byte that is not part of a valid UTF-8 sequence becomes U+FFFD.
local cjson = require("cjson").new()
cjson.encode_sparse_array(true)
cjson.encode_invalid_numbers("null")
cjson.encode_max_depth(64)

local M = {}

--- s, with every byte that is not part of valid UTF-8 (a stray byte, a
-- truncated or overlong sequence, a UTF-16 surrogate, beyond U+10FFFF)
-- replaced by U+FFFD.  A valid string comes back as is, at the cost of one
-- utf8.len.
local function fix_chunk(c)   -- a lead byte and the continuation bytes after it
  if utf8.len(c) then return c end
  local out, n, i = {}, 0, 1
  while true do
    local ok, bad = utf8.len(c, i)
    if ok then break end
    n = n + 1; out[n] = c:sub(i, bad - 1)
    n = n + 1; out[n] = "\239\191\189"
    i = bad + 1
  end
  n = n + 1; out[n] = c:sub(i)
  return table.concat(out, "", 1, n)
end

local function valid_utf8(s)
  if utf8.len(s) then return s end
  -- bytes that never appear in UTF-8 first, without a call per byte; then
  -- each lead byte with its continuation bytes
  s = s:gsub("[\192\193\245-\255]", "\239\191\189")
  return (s:gsub("[\128-\255][\128-\191]*", fix_chunk))
end
M.valid_utf8 = valid_utf8

-- tostring that cannot raise: a reported value's __tostring or __name is
-- its own code, and may fail or return something else than a string.
local function safe_tostring(v)
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return type(v)
end

-- Placeholders for what JSON cannot say.  Tables are read raw (next,
-- rawlen, rawget): a value's __pairs, __len or __index is not run, so a
-- hostile or broken class instance is written as the data it holds.
--
-- Size.  The first copy of each table is free: it is as big as the value
-- the caller holds.  A table met again (shared, not a cycle) is copied
-- again, and that is what can explode: {t, t} nested 40 deep is 2^40
-- copies.  Repeated copies draw on a budget (REPEAT_BUDGET = 256 Ki units: 8 per
-- value, plus a string's length); past it, a repeated table becomes
-- "<repeat>".  With `max`, every value draws on a budget of max units, and
-- what is past it becomes "<cut>" (a string is cut short).
local REPEAT_BUDGET = 256 * 1024

local function sanitize(v, st, depth)
  local t = type(v)
  if t == "string" then
    if st.limited then
      local cost = 8 + #v
      if st.budget < cost then
        local keep = math.max(0, st.budget - 8)
        st.budget = 0
        return v:sub(1, keep) .. "<cut>"
      end
      st.budget = st.budget - cost
    end
    return v
  end
  if t == "number" or t == "boolean" or v == nil or v == cjson.null then
    if st.limited then st.budget = st.budget - 8 end
    return v
  end
  if t ~= "table" then return "<" .. safe_tostring(v) .. ">" end
  if st.seen[v] then return "<cycle>" end
  if depth > 48 then return "<too deep>" end
  local was_limited = st.limited
  if st.copied[v] and not st.limited then st.limited = true end   -- a repeat: on the budget
  if st.limited then
    if st.budget < 8 then
      st.limited = was_limited
      return st.max and "<cut>" or "<repeat>"
    end
    st.budget = st.budget - 8
  end
  st.seen[v] = true
  st.copied[v] = true
  local out, n, is_array = {}, rawlen(v), true
  for k in next, v do
    if math.type(k) ~= "integer" or k < 1 or k > n then is_array = false break end
  end
  if is_array then
    for i = 1, n do out[i] = sanitize(rawget(v, i), st, depth + 1) end
  else
    for k, x in next, v do
      local key = type(k) == "string" and k or type(k) == "number" and tostring(k) or "<" .. safe_tostring(k) .. ">"
      if st.limited then   -- a key is a string too
        if st.budget < 8 + #key then break end
        st.budget = st.budget - (8 + #key)
      end
      out[key] = sanitize(x, st, depth + 1)
    end
  end
  st.seen[v] = nil
  st.limited = was_limited
  return out
end

--- A copy of v that cjson and the C encoder can write: placeholders for
-- functions, userdata, threads ("<function: 0x...>"), cycles ("<cycle>"),
-- nesting past 48 ("<too deep>"), repeats past the budget ("<repeat>");
-- keys as strings.  max: bound the whole copy (about max bytes of JSON
-- before escaping), cutting what is past it.
function M.sanitize(v, max)
  return sanitize(v, { seen = {}, copied = {}, max = max, limited = max ~= nil,
                       budget = max or REPEAT_BUDGET }, 0)
end

--- One line of JSON for any value, never raising.  Tables go through
-- sanitize first: cjson would follow a shared table as often as it is
-- met, and has no bound on the size of what it writes.
function M.encode(v)
  local s
  if type(v) == "table" then
    s = cjson.encode(M.sanitize(v))
  else
    local ok, e = pcall(cjson.encode, v)
    s = ok and e or cjson.encode(M.sanitize(v))
  end
  -- invalid bytes can only be inside strings: U+FFFD keeps them strings
  return valid_utf8(s)
end

M.null = cjson.null
return M
