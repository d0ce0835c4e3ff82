-- orch.report_args: the comparison's options from `orchlua report A B`'s
-- flags (--threshold [NAME=]PCT..., --threshold-file, --higher-is-better,
-- --ignore-label, --only, --exclude) into orch.report.compare's opts.
local report = require "orch.report"

local M = {}

-- "PCT" or "PATTERN=PCT" -> pattern|nil, fraction | nil, nil, message
local function threshold(s, where)
  local name, v = s:match("^(.-)=([^=]*)$")
  if not name then v = s end
  local n = tonumber(v)
  if n == nil or n ~= n or n < 0 or n == math.huge then
    return nil, nil, ("%s expects PCT or NAME=PCT (a number >= 0), found %q"):format(where, s)
  end
  if name == "" then return nil, nil, ("%s: a name before = is needed, found %q"):format(where, s) end
  return name, n / 100
end

function M.compare_opts(o, usage_error)
  local opts = { threshold = 0.10, thresholds = {}, higher_is_better = {}, ignore_labels = {},
                 only = o.only or {}, exclude = o.exclude or {} }
  local cli, file = {}, {}
  local function add(list, s, where)
    local name, v, e = threshold(s, where)
    if e then usage_error("%s", e) end
    if name then list[#list + 1] = { pattern = name, value = v }
    elseif list == cli or not o.threshold_default then opts.threshold = v end
  end
  for _, s in ipairs(o.threshold or {}) do
    if not s:find("=", 1, true) then o.threshold_default = s end
  end
  if o.threshold_file then
    local f, e = io.open(o.threshold_file, "r")
    if not f then usage_error("--threshold-file %s", e) end
    local n = 0
    for line in f:lines() do
      n = n + 1
      line = line:gsub("#.*", ""):match("^%s*(.-)%s*$")
      if line ~= "" then add(file, (line:gsub("%s*=%s*", "=")), ("%s:%d:"):format(o.threshold_file, n)) end
    end
    f:close()
  end
  for _, s in ipairs(o.threshold or {}) do add(cli, s, "--threshold") end
  -- the first match wins: the command line's before the file's
  for _, t in ipairs(cli) do opts.thresholds[#opts.thresholds + 1] = t end
  for _, t in ipairs(file) do opts.thresholds[#opts.thresholds + 1] = t end
  for name in (o.higher_is_better or ""):gmatch("[^,%s]+") do opts.higher_is_better[name] = true end
  for _, k in ipairs(report.INSTANCE_LABELS) do opts.ignore_labels[#opts.ignore_labels + 1] = k end
  for _, k in ipairs(o.ignore_label or {}) do
    for name in k:gmatch("[^,%s]+") do opts.ignore_labels[#opts.ignore_labels + 1] = name end
  end
  return opts
end

return M
