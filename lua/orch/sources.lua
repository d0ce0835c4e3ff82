-- orch.sources: loads event sources.  A Lua source is a chunk run in its
-- own environment that returns a table of event functions (and may declare
-- fixtures with orch.fixture); a .so source is a C module opened through
-- luaopen_<basename>.  Sources are searched in order, first match wins.
local registry = require "orch.registry"
local fs = require "orch.fs"

local M = {}

local function is_glob(p) return p:find("[%*%?%[]") ~= nil end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

-- Expands a glob relative to root, sorted; plain paths are returned as
-- they are when they exist.
function M.expand(pattern, root)
  local full = pattern
  if root and not pattern:match("^/") then full = root .. "/" .. pattern end
  if not is_glob(pattern) then
    return exists(full) and { full } or {}
  end
  local dir, base = full:match("^(.*)/([^/]*)$")
  if not dir then dir, base = ".", full end
  -- the folder taken as it is: only the name is a pattern
  local out = fs.glob((dir == "." and "" or dir:gsub("[%*%?%[\\]", "\\%0") .. "/")
    .. base:gsub("\\", "\\\\"))
  table.sort(out)
  return out
end

-- Environment of a user source: the standard globals, a `require` that
-- sees the project's search paths, and an error naming the variable and
-- the file when code reads a global that does not exist.
-- os.exit in an event would end orchlua on the spot: no teardown, no
-- finalisers, the report queue undrained, processes left.  In a source it
-- raises instead, so the invocation fails with a reason and the run goes on.
local safe_os = setmetatable({
  exit = function()
    error("os.exit is not allowed in an event (it would skip the teardown and lose "
      .. "queued results); use kill_switch:set() to end the run", 2)
  end,
}, { __index = os })

-- the same os behind _G.os and package.loaded.os (require("os") stays the
-- real one: what a C module's exit() is, and the guardian covers)
local function over(t, fields)
  return setmetatable(fields, { __index = t, __newindex = t })
end
local safe_G = over(_G, { os = safe_os })
local safe_package = over(package, { loaded = over(package.loaded, { os = safe_os }) })
rawset(safe_G, "package", safe_package)

-- collectgarbage("stop") in one event would grow orchlua's memory for the
-- rest of the run: refused with a warning, the collector keeps running
local warned_gc
local function safe_collectgarbage(opt, ...)
  if opt == "stop" then
    if not warned_gc then
      warned_gc = true
      local orch = package.loaded["orch"]
      local msg = 'collectgarbage("stop") ignored: orchlua\'s memory would grow for the rest of the run'
      if orch and orch.log then orch.log.warn(msg) else io.stderr:write("orchlua: ", msg, "\n") end
    end
    return 0
  end
  return collectgarbage(opt, ...)
end

local function source_env(file)
  local env = { os = safe_os, _G = safe_G, package = safe_package, collectgarbage = safe_collectgarbage }
  return setmetatable(env, {
    __index = function(_, k)
      local v = _G[k]
      if v == nil then
        error(("%s: undefined global %q"):format(file, tostring(k)), 2)
      end
      return v
    end,
  })
end

local function short(path, root)
  if root and path:sub(1, #root + 1) == root .. "/" then return path:sub(#root + 2) end
  return path
end

-- Loads one source; returns {file=, events={name -> {fn, line}}} or nil, err.
function M.load_one(path, root)
  local file = short(path, root)
  local tbl
  registry.current_source = file
  if path:match("%.so$") then
    local base = path:match("([^/]+)%.so$"):gsub("%.", "_")
    local open, err = package.loadlib(path, "luaopen_" .. base)
    if not open then
      registry.current_source = nil
      return nil, ("%s: cannot load C module: %s"):format(file, err)
    end
    local ok, res = pcall(open, base)
    if not ok then
      registry.current_source = nil
      return nil, ("%s: luaopen_%s failed: %s"):format(file, base, tostring(res))
    end
    tbl = res
  else
    local f, ferr = io.open(path, "rb")
    if not f then
      registry.current_source = nil
      return nil, ("%s: cannot read: %s"):format(file, ferr)
    end
    local text = f:read("a")
    f:close()
    -- the chunk is named by its project-relative path, as users see it
    local chunk, err = load(text, "@" .. file, "t", source_env(file))
    if not chunk then
      registry.current_source = nil
      -- loadfile's message already reads "path:line: ..."
      return nil, err
    end
    local ok, res = xpcall(chunk, debug.traceback)
    if not ok then
      registry.current_source = nil
      return nil, ("%s: error while loading: %s"):format(file, tostring(res))
    end
    tbl = res
  end
  registry.current_source = nil
  if tbl ~= nil and type(tbl) ~= "table" then
    return nil, ("%s: a source must return a table of event functions, returned %s"):format(file, type(tbl))
  end
  local src = { file = file, path = path, events = {} }
  for name, fn in pairs(tbl or {}) do
    if type(name) == "string" and type(fn) == "function" then
      local info = debug.getinfo(fn, "S")
      src.events[name] = { fn = fn, line = info.linedefined > 0 and info.linedefined or nil,
                           params = registry.param_names(fn), file = file }
    end
  end
  return src
end

-- Loads every source of the globs, in order.  Returns the list or nil and
-- a list of error messages (each names its file).
function M.load(globs, root)
  local list, errs, seen = {}, {}, {}
  for _, g in ipairs(globs) do
    local files = M.expand(g, root)
    if #files == 0 then
      errs[#errs + 1] = ("sources: %q matches no file%s"):format(g, root and (" under " .. root) or "")
    end
    for _, f in ipairs(files) do
      if not seen[f] then
        seen[f] = true
        local src, err = M.load_one(f, root)
        if src then list[#list + 1] = src else errs[#errs + 1] = err end
      end
    end
  end
  if #errs > 0 then return nil, errs end
  return list
end

-- The first source defining `name`.
function M.find(list, name)
  for _, src in ipairs(list) do
    local e = src.events[name]
    if e then return e, src end
  end
end

function M.all_names(list)
  local names, seen = {}, {}
  for _, src in ipairs(list) do
    for name in pairs(src.events) do
      if not seen[name] then seen[name] = true; names[#names + 1] = name end
    end
  end
  table.sort(names)
  return names
end

return M
