-- orch.config: the project configuration, `.orchlua`, found in the current
-- directory or its parents.  Its folder is the project root; relative
-- paths in it are relative to that root.
local suggest = require "orch.suggest"

local M = {}

M.DEFAULTS = {
  descriptions = { "descriptions" },
  sources = { "events/*.lua" },
  grace_sec = 60,
  loop_lag_sec = 1,
  lua_path = {},
  lua_cpath = {},
}

local KEYS = { descriptions = "string or list", sources = "string or list",
               grace_sec = "number >= 0", loop_lag_sec = "number >= 0", lua_path = "list", lua_cpath = "list",
               sinks = "string or list", listen = "string" }

local fs = require "orch.fs"

local cached_cwd
local function cwd()
  if cached_cwd then return cached_cwd end
  local here = fs.cwd()
  if here then cached_cwd = here return here end
  return os.getenv("PWD") or "."
end
M.cwd = cwd

local function readable(path)
  local f = io.open(path, "r")
  if f then f:close() return true end
  return false
end

-- A .orchlua found by the search runs as whoever runs orchlua: one that
-- another user could have written is refused, as git refuses a repository
-- another user owns (CVE-2022-24765, safe.directory).  The file and every
-- folder from its own up to / must be owned by us or root, and none
-- writable by others (a folder with the sticky bit, /tmp, excepted).
-- ORCHLUA_SAFE_DIRECTORY (a folder, or "*") trusts it anyway; --config
-- FILE names a file explicitly and is not checked.
function M.unsafe(path, dir)
  local safe = os.getenv("ORCHLUA_SAFE_DIRECTORY")
  if safe == "*" or safe == dir then return nil end
  local function bad(p, is_dir)
    local uid, mode, me = fs.file_owner(p)
    if not uid then return nil end
    if uid ~= me and uid ~= 0 then return ("%s is owned by uid %d, not by you (uid %d) or root"):format(p, uid, me) end
    local sticky = is_dir and mode & 512 ~= 0
    if mode & 18 ~= 0 and not sticky then   -- 0022: group or world writable
      return ("%s is writable by %s"):format(p, mode & 2 ~= 0 and "every user" or "its group")
    end
  end
  local why = bad(path, false)
  if why then return why end
  local d = dir
  while d and d ~= "" do
    why = bad(d, true)
    if why then return why end
    if d == "/" then break end
    d = d:match("^(.*)/[^/]*$")
    if d == "" then d = "/" end
  end
  return nil
end

function M.find(start)
  local dir = start or cwd()
  while true do
    local p = dir .. "/.orchlua"
    if readable(p) then return p, dir end
    local parent = dir:match("^(.*)/[^/]+$")
    if parent == nil or parent == dir then break end
    if parent == "" then
      if readable("/.orchlua") then return "/.orchlua", "/" end
      break
    end
    dir = parent
  end
  return nil
end

local function as_list(v)
  if type(v) == "string" then return { v } end
  return v
end

local function is_list_of_strings(v)
  if type(v) ~= "table" then return false end
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" or type(x) ~= "string" then return false end
  end
  return true
end

-- Loads the configuration.  path: an explicit --config file, or nil to
-- search.  Returns cfg (with root) or nil, message.
function M.load(path)
  local root
  if path then
    local f = io.open(path, "r")
    if not f then return nil, ("--config %s: cannot read the file"):format(path) end
    f:close()
    root = path:match("^(.*)/[^/]*$") or "."
    if root == "" then root = "/" end
    if not root:match("^/") then root = cwd() .. "/" .. root end
  else
    path, root = M.find()
    if not path then root = cwd() end
    local why = path and M.unsafe(path, root)
    if why then
      return nil, ("%s: not loaded: %s (set ORCHLUA_SAFE_DIRECTORY=%s to trust it, or name it with --config)")
        :format(path, why, root)
    end
  end
  local cfg = {}
  for k, v in pairs(M.DEFAULTS) do cfg[k] = v end
  cfg.root = root
  cfg.file = path
  if not path then return cfg end
  local chunk, err = loadfile(path, "t", {})
  if not chunk then return nil, err end
  local ok, t = pcall(chunk)
  if not ok then return nil, ("%s: %s"):format(path, tostring(t)) end
  if type(t) ~= "table" then
    return nil, ("%s: expected the file to return a table, found %s"):format(path, type(t))
  end
  local valid = {}
  for k in pairs(KEYS) do valid[#valid + 1] = k end
  for k, v in pairs(t) do
    if not KEYS[k] then
      return nil, ("%s: unknown key %q%s"):format(path, tostring(k), suggest.hint(tostring(k), valid))
    end
    local want = KEYS[k]
    local good
    if want == "string or list" then good = type(v) == "string" or is_list_of_strings(v)
    elseif want == "list" then good = is_list_of_strings(v)
    elseif want == "string" then good = type(v) == "string"
    else good = type(v) == "number" and v >= 0 and v == v and v < math.huge end
    if not good then
      return nil, ("%s: %s: expected a %s, found %s"):format(path, k, want,
        type(v) == "string" and ("%q"):format(v) or type(v))
    end
    cfg[k] = v
  end
  cfg.descriptions = as_list(cfg.descriptions)
  cfg.sources = as_list(cfg.sources)
  cfg.sinks = as_list(cfg.sinks)
  return cfg
end

function M.abs(root, p)
  if p:match("^/") then return p end
  return root .. "/" .. p
end

-- The search paths a project's events see: its lua_modules tree (luarocks
-- --tree lua_modules), the user's ~/.luarocks, the config's extras, then
-- the system trees already in package.path.
function M.search_paths(cfg)
  local home = os.getenv("HOME")
  local path, cpath = {}, {}
  local function tree(t)
    path[#path + 1] = t .. "/share/lua/5.4/?.lua"
    path[#path + 1] = t .. "/share/lua/5.4/?/init.lua"
    cpath[#cpath + 1] = t .. "/lib/lua/5.4/?.so"
  end
  for _, p in ipairs(cfg.lua_path or {}) do path[#path + 1] = M.abs(cfg.root, p) end
  for _, p in ipairs(cfg.lua_cpath or {}) do cpath[#cpath + 1] = M.abs(cfg.root, p) end
  tree(cfg.root .. "/lua_modules")
  if home then tree(home .. "/.luarocks") end
  path[#path + 1] = cfg.root .. "/?.lua"
  path[#path + 1] = cfg.root .. "/?/init.lua"
  return path, cpath
end

function M.apply_paths(cfg)
  local path, cpath = M.search_paths(cfg)
  package.path = table.concat(path, ";") .. ";" .. package.path
  package.cpath = table.concat(cpath, ";") .. ";" .. package.cpath
end

return M
