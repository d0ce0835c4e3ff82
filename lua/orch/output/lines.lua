-- orch.output.lines: how the console words things a person reads: a result
-- as one readable line (`event [level] message key=value ...`, JSON only
-- for nested values), the summary table fitted to the terminal's width,
-- and the one-line status of `-q`.
local json = require "orch.output.json"

local M = {}

-- JSON as a person reads it: no escaped slashes ("tcp://", not "tcp:\/\/").
-- cjson writes every "/" as "\/" and every "\" as "\\", so a "\/" pair
-- after an even run of backslashes is always an escaped slash.
local function readable_json(v)
  return (json.encode(v):gsub("\\/", "/"))
end
M.json = readable_json

local function scalar(v)
  local t = type(v)
  if t == "string" then
    if v == "" or v:find("[%s\"=]") then return readable_json(v) end
    return v
  elseif math.type(v) == "integer" then
    return tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    return ("%.6g"):format(v)
  elseif t == "boolean" or t == "nil" then
    return tostring(v)
  end
  return readable_json(v)
end
M.scalar = scalar

local function sorted_keys(t, skip)
  local keys = {}
  for k in pairs(t) do
    if not skip[k] then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function key_values(out, t, skip)
  for _, k in ipairs(sorted_keys(t, skip)) do
    out[#out + 1] = tostring(k) .. "=" .. scalar(t[k])
  end
end

-- The reported value as words: a message first, then key=value pairs; a
-- metric as "name value" and its fields.
function M.data_text(data)
  if type(data) == "string" then return data end
  if type(data) ~= "table" then return scalar(data) end
  if data[1] ~= nil then
    return readable_json(data)
  end
  local out = {}
  if data.metric ~= nil and data.value ~= nil then
    out[1] = tostring(data.metric)
    out[2] = scalar(data.value)
    if type(data.fields) == "table" then key_values(out, data.fields, {}) end
    key_values(out, data, { metric = true, value = true, fields = true })
    return table.concat(out, " ")
  end
  local skip = {}
  local msg = data.message
  if msg == nil and type(data.error) == "string" then msg = data.error end
  if type(msg) == "string" then
    out[1] = msg
    skip.message = true
    if data.error == msg then skip.error = true end
  end
  key_values(out, data, skip)
  return table.concat(out, " ")
end

-- "event [level] ..." without the clock (the console puts it first).
function M.result_text(r)
  return ("%s [%s] %s"):format(r.event or "-", r.level or "info", M.data_text(r.data))
end

-- ---- the summary -----------------------------------------------------------

-- A copy of an invoker's summary with its durations in real seconds
-- (description seconds / scale: the two clocks run in a fixed ratio).
function M.real_durations(st, scale)
  if scale == 1 or not st.summarised then return st end
  local copy = {}
  for k, v in pairs(st) do copy[k] = v end
  for _, k in ipairs({ "dur_p50", "dur_p99", "dur_max" }) do
    if copy[k] then copy[k] = copy[k] / scale end
  end
  return copy
end

-- A list of events' figures (Stats or summaries) with durations in real
-- seconds, for report.summary_rows: `orchlua report` prints what the
-- console printed.
function M.real_list(list, scale)
  if scale == 1 then return list end
  local out = {}
  for i, st in ipairs(list) do
    if st.summarised then
      out[i] = M.real_durations(st, scale)
    else
      local d, l = st.duration, st.lateness
      out[i] = { id = st.id, runs = st.runs, failures = st.failures, skipped = st.skipped,
                 timeouts = st.timeouts, summarised = true,
                 errors = st.errors, error_results = st.error_results,
                 dur_p50 = d.n > 0 and d:percentile(50) / scale or nil,
                 dur_p99 = d.n > 0 and d:percentile(99) / scale or nil,
                 dur_max = d.n > 0 and d.max / scale or nil,
                 late_p99 = l.n > 0 and l:percentile(99) or nil, late_max = l.n > 0 and l.max or nil }
    end
  end
  return out
end

local function width(s) return utf8.len(s) or #s end

-- The widest cell of each column.
local function widths(rows)
  local w = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do w[i] = math.max(w[i] or 0, width(cell)) end
  end
  return w
end

local function table_width(rows)
  local n = 2
  for _, w in ipairs(widths(rows)) do n = n + w + 2 end
  return n - 2
end

-- rows fitted to cols columns: ids cut first (to no fewer than 12
-- characters, the cut marked with "~"), then the p50 and p99 of the
-- lateness go (the max stays), then the duration's p50.
function M.fit_rows(rows, cols)
  if table_width(rows) <= cols then return rows end
  local w = widths(rows)
  local over = table_width(rows) - cols
  local idw = math.max(12, w[1] - over)
  if idw < w[1] then
    for _, row in ipairs(rows) do
      local id = row[1]
      if width(id) > idw then
        local off = utf8.offset(id, idw) or idw
        row[1] = id:sub(1, off - 1) .. "~"
      end
    end
  end
  for _, drop in ipairs({ "late p99", "dur p50" }) do
    if table_width(rows) <= cols then break end
    local at
    for i, h in ipairs(rows[1]) do if h == drop then at = i end end
    if at then
      for _, row in ipairs(rows) do table.remove(row, at) end
    end
  end
  return rows
end

return M
