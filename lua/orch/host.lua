-- orch.host: the one place that asks whether this Lua runs inside orchlua.
-- `core` is orch.core there, nil in plain lua5.4 (the unit specs, tools),
-- where the modules that can run without the host take their Lua path.
local ok, core = pcall(require, "orch.core")

local M = { core = ok and type(core) == "table" and core or nil }

--- orch.core, or an error naming orch.NAME, which needs the host's loop,
-- at the caller of the function that asked (level 3).
function M.need(name)
  if not M.core then
    error(("orch.%s needs the orchlua host's loop (run the event with orchlua)"):format(name), 3)
  end
  return M.core
end

return M
