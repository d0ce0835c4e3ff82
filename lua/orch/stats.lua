-- orch.stats: bounded-memory summaries for durations and lateness.  A run
-- of a million invocations must not keep a million numbers: the first
-- EXACT samples are kept as they are (percentiles exact), later ones go to
-- log-spaced buckets 1% wide (percentiles within 1%).  count, sum and max
-- are always exact.
local M = {}
M.__index = M

local EXACT = 64     -- per statistic: 10,000 events keep 2 x 64 numbers each
local LOG_STEP = math.log(1.01)
local FLOOR = 1e-6   -- values below a microsecond share one bucket

function M.new()
  return setmetatable({ n = 0, sum = 0, max = nil, min = nil, exact = {}, buckets = nil }, M)
end

local function bucket_of(v)
  if v <= FLOOR then return 0 end
  return math.floor(math.log(v / FLOOR) / LOG_STEP) + 1
end

local function bucket_value(b)
  if b == 0 then return 0 end
  return FLOOR * math.exp((b - 0.5) * LOG_STEP)
end

function M:add(v)
  self.n = self.n + 1
  self.sum = self.sum + v
  if self.max == nil or v > self.max then self.max = v end
  if self.min == nil or v < self.min then self.min = v end
  if self.buckets == nil then
    local e = self.exact
    e[#e + 1] = v
    if #e < EXACT then return end
    -- switch to buckets
    self.buckets = {}
    for i = 1, #e do self:_bucket(e[i]) end
    self.exact = nil
    return
  end
  self:_bucket(v)
end

function M:_bucket(v)
  local b = bucket_of(v)
  self.buckets[b] = (self.buckets[b] or 0) + 1
end

-- p in [0, 100]; nil when empty.  Nearest-rank definition.
function M:percentile(p)
  if self.n == 0 then return nil end
  local rank = math.max(1, math.ceil(p / 100 * self.n))
  if self.buckets == nil then
    local s = {}
    for i = 1, #self.exact do s[i] = self.exact[i] end
    table.sort(s)
    return s[rank]
  end
  local keys = {}
  for b in pairs(self.buckets) do keys[#keys + 1] = b end
  table.sort(keys)
  local seen = 0
  for _, b in ipairs(keys) do
    seen = seen + self.buckets[b]
    if seen >= rank then return math.min(bucket_value(b), self.max) end
  end
  return self.max
end

function M:mean()
  if self.n == 0 then return nil end
  return self.sum / self.n
end

return M
