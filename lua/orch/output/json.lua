-- orch.output.json: encodes any Lua value to one line of JSON, never
-- failing.  cjson does the work; values it refuses (functions, userdata,
-- cycles, mixed keys) are first turned into something printable.
local cjson = require("cjson").new()
cjson.encode_sparse_array(true)
cjson.encode_invalid_numbers("null")
cjson.encode_max_depth(64)

local M = {}

local function sanitize(v, seen, depth)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" or v == nil or v == cjson.null then return v end
  if t ~= "table" then return "<" .. tostring(v) .. ">" end
  if seen[v] then return "<cycle>" end
  if depth > 48 then return "<too deep>" end
  seen[v] = true
  local out, n, is_array = {}, #v, true
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then is_array = false break end
  end
  if is_array then
    for i = 1, n do out[i] = sanitize(v[i], seen, depth + 1) end
  else
    for k, x in pairs(v) do out[tostring(k)] = sanitize(x, seen, depth + 1) end
  end
  seen[v] = nil
  return out
end

function M.encode(v)
  local ok, s = pcall(cjson.encode, v)
  if ok then return s end
  return cjson.encode(sanitize(v, {}, 0))
end

M.null = cjson.null
return M
