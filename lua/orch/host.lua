-- orch.host: the one place that asks whether this Lua runs inside orchlua.
-- `core` is orch.core there, nil in plain lua5.4 (the unit specs, tools),
-- where the modules that can run without the host take their Lua path.
local ok, core = pcall(require, "orch.core")
return { core = ok and type(core) == "table" and core or nil }
