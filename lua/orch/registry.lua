-- orch.registry: fixtures declared by sources with orch.fixture, and the
-- built-in fixtures.  The sources loader sets `current_source` while a
-- source runs, so that every fixture knows where it was declared.
local M = {}

M.user = {}          -- name -> fixture definition
M.order = {}         -- names in declaration order
M.current_source = nil

local SCOPES = { run = true, invocation = true }

-- Parameter names of a Lua function, or nil for a C function (which gets
-- a ctx table instead).
function M.param_names(fn)
  local info = debug.getinfo(fn, "uS")
  if info.what == "C" then return nil end
  local names = {}
  for i = 1, info.nparams do names[i] = debug.getlocal(fn, i) end
  return names
end

-- orch.fixture(name, [opts], fn)
function M.fixture(name, opts, fn)
  if fn == nil and type(opts) == "function" then opts, fn = {}, opts end
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
    error(("orch.fixture: name must be an identifier, got %s"):format(
      type(name) == "string" and ("%q"):format(name) or type(name)), 2)
  end
  if type(opts) ~= "table" then
    error(("orch.fixture(%q): options must be a table, got %s"):format(name, type(opts)), 2)
  end
  if type(fn) ~= "function" then
    error(("orch.fixture(%q): a function is expected, got %s"):format(name, type(fn)), 2)
  end
  for k in pairs(opts) do
    if k ~= "scope" then
      error(("orch.fixture(%q): unknown option %q (only \"scope\")"):format(name, tostring(k)), 2)
    end
  end
  local scope = opts.scope or "run"
  if not SCOPES[scope] then
    error(("orch.fixture(%q): scope must be \"run\" or \"invocation\", got %q"):format(name, tostring(scope)), 2)
  end
  local info = debug.getinfo(fn, "S")
  local def = {
    name = name, fn = fn, scope = scope,
    params = M.param_names(fn) or {},
    file = M.current_source or info.short_src,
    line = info.linedefined,
  }
  -- first declaration wins, as sources are searched in order
  if M.user[name] then return M.user[name] end
  M.user[name] = def
  M.order[#M.order + 1] = name
  return def
end

function M.reset()
  M.user, M.order, M.current_source = {}, {}, nil
end

-- Built-in names.  result_reporter is a fixture (so a user fixture of that
-- name overrides it); the others are values the engine provides.
M.BUILTINS = {
  kill_switch = true, result_reporter = true, report_queue = true,
  event = true, log = true, params = true, description = true,
}

M.builtin_fixtures = {
  result_reporter = {
    name = "result_reporter", scope = "run", params = { "report_queue" },
    file = "(built-in)", line = 0,
    fn = function(report_queue)
      return require("orch.result_reporter").new(report_queue)
    end,
  },
}

return M
