-- orch.resolve: binds every event of a description to its function and
-- checks, before anything runs, that every parameter name resolves:
-- the event's params, then user fixtures, then the built-ins.  Fixture
-- dependencies are followed, and a cycle is named.
local registry = require "orch.registry"
local sources = require "orch.sources"
local suggest = require "orch.suggest"

local M = {}

-- Where a name comes from for an event with `params`: "param", "fixture"
-- (with its definition) or "builtin"; nil when nothing provides it.
function M.lookup(name, params)
  if params and params[name] ~= nil then return "param" end
  local def = registry.user[name]
  if def then return "fixture", def end
  def = registry.builtin_fixtures[name]
  if def then return "fixture", def end
  if registry.BUILTINS[name] then return "builtin" end
  return nil
end

local function candidates(params)
  local c = {}
  for k in pairs(params or {}) do c[#c + 1] = k end
  for k in pairs(registry.user) do c[#c + 1] = k end
  for k in pairs(registry.BUILTINS) do c[#c + 1] = k end
  return c
end

local function where(file, line)
  if line then return ("%s:%d"):format(file, line) end
  return file
end

-- The text naming a fixture in a message, made only when one is written.
local function fixture_who(name, def)
  return function() return ("fixture %q (%s)"):format(name, where(def.file, def.line)) end
end

-- Checks the names a fixture or event needs; appends problems to errs.
-- who: the needer as a message says it, or a function making that text
-- (only a problem needs it: a description of 10,000 events has none).
-- chain: fixture names being resolved (for cycles).
local function check_names(names, params, who, errs, chain, seen_ok)
  for _, name in ipairs(names) do
    local kind, def = M.lookup(name, params)
    if kind == nil then
      if type(who) == "function" then who = who() end
      errs[#errs + 1] = ("%s needs %q, which is not a param of the event, a fixture or a built-in%s")
        :format(who, name, suggest.hint(name, candidates(params)))
    elseif kind == "fixture" and not seen_ok[def] then
      for i, c in ipairs(chain) do
        if c == name then
          local cyc = {}
          for j = i, #chain do cyc[#cyc + 1] = chain[j] end
          cyc[#cyc + 1] = name
          errs[#errs + 1] = ("fixture cycle: %s (%s)"):format(table.concat(cyc, " -> "),
            where(def.file, def.line))
          return
        end
      end
      chain[#chain + 1] = name
      check_names(def.params, params, fixture_who(name, def), errs, chain, seen_ok)
      chain[#chain] = nil
      seen_ok[def] = true
    end
  end
end

-- Binds desc's events to srcs (each gets fn, file, fn_line, names and
-- index).  Returns the bound events or nil, errors
-- (a list of messages).
function M.bind(desc, srcs)
  local errs, bound = {}, {}
  local names = sources.all_names(srcs)
  for i, ev in ipairs(desc.events) do
    local fn_info = sources.find(srcs, ev.name)
    if not fn_info then
      local at = where(desc.file, ev.line)
      local files = {}
      for _, s in ipairs(srcs) do files[#files + 1] = s.file end
      errs[#errs + 1] = ("%s: event %q is not defined in any source (%s)%s"):format(
        at, ev.name, #files > 0 and table.concat(files, ", ") or "no sources",
        suggest.hint(ev.name, names))
    else
      -- the description's event itself, with its function: 10,000 events
      -- are then 10,000 tables the run keeps, not 30,000 (a table and a
      -- metatable over each), which every collection and the exit walk
      ev.fn, ev.file, ev.fn_line, ev.names, ev.index = fn_info.fn, fn_info.file, fn_info.line,
        fn_info.params, i
      if ev.names and #ev.names > 0 then
        check_names(ev.names, ev.params, function()
          return ("%s: event %q (%s)"):format(where(fn_info.file, fn_info.line), ev.name, where(desc.file, ev.line))
        end, errs, {}, {})
      end
      bound[#bound + 1] = ev
    end
  end
  for i, name in ipairs(desc.unref_setup_fixtures or {}) do
    local kind, def = M.lookup(name, nil)
    if kind ~= "fixture" then
      local fx = {}
      for k in pairs(registry.user) do fx[#fx + 1] = k end
      errs[#errs + 1] = ("%s: unref_setup_fixtures[%d]: %q is not a fixture%s"):format(
        desc.file, i - 1, name, suggest.hint(name, fx))
    else
      check_names(def.params, nil, fixture_who(name, def), errs, { name }, {})
    end
  end
  if #errs > 0 then return nil, errs end
  return bound
end

return M
