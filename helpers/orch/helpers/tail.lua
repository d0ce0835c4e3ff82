-- orch.helpers.tail: follow a log file and report the lines that match.
--
--   local tail = require "orch.helpers.tail"
--   -- a long-running event: reports matches until the kill switch is set
--   function M.watch_syslog(kill_switch, result_reporter)
--     tail.follow("/var/log/syslog", kill_switch, result_reporter, {
--       patterns = { oom = { "Out of memory", level = "error" }, restart = "systemd.*Started" },
--     })
--   end
--
--   -- or poll from a periodic event, keeping the tailer in a fixture
--   orch.fixture("applog", function() return tail.open("app.log", { patterns = { "ERROR" } }) end)
--   function M.scan(applog, result_reporter) applog:report(result_reporter) end
--
-- tail.open(path, [opts]) -> tailer
--   opts.patterns  { name = pattern | { pattern, level = "error"|"info", plain = bool } }
--                  or a list of patterns (named by their text); Lua patterns
--                  unless plain = true.  Without patterns every line matches.
--   opts.from      "end" (default: only lines written from now on) or "start"
--   opts.level     the level of a match with none of its own ("info")
--   opts.max_read  bytes read per poll at most (default 4 MiB), so one poll
--                  of a huge file cannot hold the loop for long
-- tailer:poll() -> list of { line =, pattern = name, captures = {...},
--                  level = } for every new complete line that matches
-- tailer:report(result_reporter) -> matches: poll, and one result per
--   match: result_reporter:info or :error("<file>: <name>: <line>",
--   { file =, pattern =, line =, captures = })
-- tailer.counts  name -> matches so far; tailer.lines: lines read so far
-- tail.follow(path, kill_switch, result_reporter, [opts]) -> tailer
--   opts as for open, plus opts.interval (seconds between polls, default
--   1, description time); reports until the kill switch is set, then polls
--   once more so the last lines written before the end are seen.
--
-- A file that does not exist yet is waited for (and then read from its
-- start); a file that shrinks (truncated, or rotated by rename and
-- re-created) is read again from its start.  A line is reported once its
-- "\n" has been written.  Reading a regular file is quick, but it is not
-- done on the loop's thread pool: keep max_read modest for slow disks.
local M = {}

local Tailer = {}
Tailer.__index = Tailer

-- Raises at the user's line: `depth` counts the frames between argerror
-- and the user's code (1: the caller of argerror was called by the user).
local function argerror(msg, depth)
  error("orch.helpers.tail: " .. msg, depth + 2)
end

local KNOWN = { patterns = true, from = true, level = true, max_read = true, interval = true }

-- patterns -> list of { name, pattern, plain, level }, in order: the list
-- part first, then the named ones sorted by name.
local function compile(patterns, default_level, depth)
  local list = {}
  if patterns == nil then return list end
  if type(patterns) ~= "table" then
    argerror(("patterns must be a table, got %s"):format(type(patterns)), depth + 1)
  end
  local function add(name, p)
    local spec = type(p) == "table" and p or { p }
    local pat = spec[1] or spec.pattern
    name = tostring(name or pat)
    if type(pat) ~= "string" then
      argerror(("patterns.%s: a pattern string expected, got %s"):format(name, type(pat)), depth + 2)
    end
    local lv = spec.level or default_level
    if lv ~= "info" and lv ~= "error" then
      argerror(("patterns.%s: level must be \"info\" or \"error\", got %s"):format(name, tostring(lv)),
        depth + 2)
    end
    if not spec.plain then
      local ok, err = pcall(string.find, "", pat)
      if not ok then
        argerror(("patterns.%s: bad pattern %q: %s"):format(name, pat, (tostring(err):gsub("^.-:%d+: ", ""))),
          depth + 2)
      end
    end
    list[#list + 1] = { name = name, pattern = pat, plain = spec.plain and true or false, level = lv }
  end
  for _, p in ipairs(patterns) do add(type(p) == "table" and p.name or nil, p) end
  local names = {}
  for k in pairs(patterns) do
    if math.type(k) ~= "integer" then names[#names + 1] = k end
  end
  table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(names) do add(k, patterns[k]) end
  return list
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  f:close()
  return size
end

local function open(path, opts, depth)
  if type(path) ~= "string" or path == "" then
    argerror(("path must be a non-empty string, got %s"):format(tostring(path)), depth + 1)
  end
  opts = opts or {}
  if type(opts) ~= "table" then argerror(("opts must be a table, got %s"):format(type(opts)), depth + 1) end
  for k in pairs(opts) do
    if not KNOWN[k] then argerror(("unknown option %s"):format(tostring(k)), depth + 1) end
  end
  local from = opts.from or "end"
  if from ~= "end" and from ~= "start" then
    argerror(("from must be \"end\" or \"start\", got %s"):format(tostring(from)), depth + 1)
  end
  local level = opts.level or "info"
  if level ~= "info" and level ~= "error" then
    argerror(("level must be \"info\" or \"error\", got %s"):format(tostring(level)), depth + 1)
  end
  local interval = opts.interval or 1
  if type(interval) ~= "number" or interval ~= interval or interval <= 0 then
    argerror(("interval must be a number > 0, got %s"):format(tostring(interval)), depth + 1)
  end
  local t = setmetatable({
    path = path,
    patterns = compile(opts.patterns, level, depth + 1),
    max_read = opts.max_read or 4 * 1024 * 1024,
    interval = interval,
    offset = 0,
    partial = "",
    counts = {},
    lines = 0,
  }, Tailer)
  if from == "end" then t.offset = file_size(path) or 0 end
  return t
end

function M.open(path, opts) return open(path, opts, 1) end

-- The new bytes of the file, from the saved offset.
function Tailer:_read()
  local f = io.open(self.path, "rb")
  if not f then return "" end
  local size = f:seek("end")
  if size < self.offset then
    -- truncated or replaced by a shorter file: start over
    self.offset = 0
    self.partial = ""
  end
  if size == self.offset then f:close() return "" end
  f:seek("set", self.offset)
  local data = f:read(math.min(size - self.offset, self.max_read)) or ""
  f:close()
  self.offset = self.offset + #data
  return data
end

function Tailer:_match(line, out)
  if #self.patterns == 0 then
    out[#out + 1] = { line = line, pattern = "line", captures = {}, level = "info" }
    self.counts.line = (self.counts.line or 0) + 1
    return
  end
  for _, p in ipairs(self.patterns) do
    local found = { line:find(p.pattern, 1, p.plain) }
    if found[1] then
      out[#out + 1] = { line = line, pattern = p.name, captures = { table.unpack(found, 3) }, level = p.level }
      self.counts[p.name] = (self.counts[p.name] or 0) + 1
    end
  end
end

function Tailer:poll()
  local out = {}
  local data = self:_read()
  if data == "" then return out end
  data = self.partial .. data
  local start = 1
  while true do
    local nl = data:find("\n", start, true)
    if not nl then break end
    local line = data:sub(start, nl - 1):gsub("\r$", "")
    self.lines = self.lines + 1
    self:_match(line, out)
    start = nl + 1
  end
  self.partial = data:sub(start)
  return out
end

function Tailer:report(result_reporter)
  local matches = self:poll()
  for _, m in ipairs(matches) do
    result_reporter[m.level](result_reporter, ("%s: %s: %s"):format(self.path, m.pattern, m.line),
      { file = self.path, pattern = m.pattern, line = m.line,
        captures = #m.captures > 0 and m.captures or nil })
  end
  return matches
end

function M.follow(path, kill_switch, result_reporter, opts)
  local t = open(path, opts, 1)
  while true do
    t:report(result_reporter)
    if kill_switch:wait(t.interval) then break end
  end
  t:report(result_reporter)
  return t
end

M.Tailer = Tailer
return M
