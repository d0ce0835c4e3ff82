-- spec/fuzz/description.lua: the description fuzzer's check.  Returns
-- function(text) that loads text as a description, as `orchlua check` and
-- `orchlua plan` do, and raises on a finding:
--   - decode raising at all (it must return a description or errors);
--   - errors that are not clean validation results: no message, a position
--     outside the text, not sorted, format_error failing;
--   - a description accepted that breaks what the engine relies on (a name
--     that is not an identifier, a non-finite interval, duplicate ids ...);
--   - the plan of an accepted description failing, or taking too long
--     (libFuzzer's -timeout catches a hang).
-- Plain Lua: spec/e2e/fuzz_regress_spec.lua runs the kept inputs through it
-- under busted, and the fuzzer (spec/fuzz/harness.c) in the real host.
local description = require "orch.description"
local plan = require "orch.plan"
local json = require "orch.jsonc"

local FILE = "fuzz.json"

local function fail(fmt, ...)
  error("finding: " .. fmt:format(...), 0)
end

local function check_errors(text, errs)
  if type(errs) ~= "table" or #errs == 0 then
    fail("rejected without an error list (%s)", type(errs))
  end
  local nlines = select(2, text:gsub("\n", "")) + 1
  local last_line, last_col = 0, 0
  for i, e in ipairs(errs) do
    if type(e) ~= "table" then fail("error %d is a %s", i, type(e)) end
    if type(e.message) ~= "string" or e.message == "" then
      fail("error %d has no message", i)
    end
    if e.file ~= FILE then fail("error %d names file %s", i, tostring(e.file)) end
    if e.line ~= nil then
      if math.type(e.line) ~= "integer" or e.line < 1 or e.line > nlines then
        fail("error %d: line %s outside the text (%d lines): %s", i, tostring(e.line), nlines, e.message)
      end
      if math.type(e.col) ~= "integer" or e.col < 1 then
        fail("error %d: column %s: %s", i, tostring(e.col), e.message)
      end
      if e.line < last_line or (e.line == last_line and e.col < last_col) then
        fail("errors not sorted by position at %d", i)
      end
      last_line, last_col = e.line, e.col
    end
    if e.path ~= nil and type(e.path) ~= "string" then fail("error %d: path is a %s", i, type(e.path)) end
    local line = description.format_error(e)
    if type(line) ~= "string" or not line:find(e.message, 1, true) then
      fail("format_error lost the message of error %d", i)
    end
  end
end

local function finite_positive(x)
  return type(x) == "number" and x > 0 and x < math.huge
end

local function is_identifier(s)
  return type(s) == "string" and s:match("^[A-Za-z_][A-Za-z0-9_]*$") ~= nil
end

local CONCURRENCY = { forbid = true, allow = true, replace = true }

local function check_description(desc)
  if desc.test_name ~= "fuzz" then fail("test_name %q accepted for %s", tostring(desc.test_name), FILE) end
  if not finite_positive(desc.total_hours) then fail("total_hours %s accepted", tostring(desc.total_hours)) end
  if type(desc.unref_setup_fixtures) ~= "table" then fail("unref_setup_fixtures is a %s", type(desc.unref_setup_fixtures)) end
  for i, name in ipairs(desc.unref_setup_fixtures) do
    if not is_identifier(name) then fail("unref_setup_fixtures[%d] %q accepted", i - 1, tostring(name)) end
  end
  if type(desc.events) ~= "table" or #desc.events == 0 then fail("no events accepted") end
  local ids = {}
  for i, ev in ipairs(desc.events) do
    if not is_identifier(ev.name) then fail("events[%d].name %q accepted", i - 1, tostring(ev.name)) end
    if type(ev.id) ~= "string" or ev.id == "" then fail("events[%d].id %q", i - 1, tostring(ev.id)) end
    if ids[ev.id] then fail("duplicate id %q accepted", ev.id) end
    ids[ev.id] = true
    if ev.interval ~= nil and not finite_positive(ev.interval) then
      fail("events[%d] interval %s accepted", i - 1, tostring(ev.interval))
    end
    if ev.timeout ~= nil and not finite_positive(ev.timeout) then
      fail("events[%d] timeout %s accepted", i - 1, tostring(ev.timeout))
    end
    if type(ev.at_startup) ~= "boolean" or type(ev.at_teardown) ~= "boolean" then
      fail("events[%d] at_startup/at_teardown not booleans", i - 1)
    end
    if not CONCURRENCY[ev.concurrency] then fail("events[%d] concurrency %s", i - 1, tostring(ev.concurrency)) end
    if type(ev.params) ~= "table" then fail("events[%d] params is a %s", i - 1, type(ev.params)) end
    if ev.index ~= i then fail("events[%d] index %s", i - 1, tostring(ev.index)) end
  end
  -- what `orchlua plan` and the engine compute next
  local total = desc.total_hours * 3600
  for i, ev in ipairs(desc.events) do
    local c = plan.counts(ev, total)
    if math.type(c.total) ~= "integer" or c.total < 0 then
      fail("events[%d]: plan count %s is not a count", i - 1, tostring(c.total))
    end
    if ev.interval then
      local k = plan.last_k(ev.interval, total)
      if math.type(k) ~= "integer" then fail("events[%d]: last_k %s is not an integer", i - 1, tostring(k)) end
    end
  end
  local text = plan.render(desc, desc.total_hours, 30)
  if type(text) ~= "string" then fail("plan.render returned a %s", type(text)) end
end

return function(text)
  local desc, errs = description.decode(text, FILE)
  if desc == nil then
    check_errors(text, errs)
  else
    if errs ~= nil then fail("a description and errors") end
    check_description(desc)
  end
  -- the comment stripper keeps every offset
  local stripped = json.strip_comments(text)
  if stripped and #stripped ~= #text then fail("strip_comments changed the length") end
end
