-- orch.help: the manual pages for `orchlua help TOPIC`.  The Makefile
-- renders man/*.[135] to plain text with groff at build time and compiles
-- each in as the module orch.assets.man.<page> (orch.3 -> orch_3), so the
-- binary shows its manual on a machine with no man(1) and no groff.
local M = {}

-- topic -> page, in the order `orchlua help` lists them
M.PAGES = {
  { topic = "orchlua", page = "orchlua.1",
    about = "commands, options, exit status, environment" },
  { topic = "description", page = "orchlua-description.5",
    about = "a description's keys and defaults" },
  { topic = "orch", page = "orch.3",
    about = "the Lua API, built-in fixtures, helpers rock" },
}

-- other names a user may try for a page
local ALIASES = { ["orchlua-description"] = "description", api = "orch", lua = "orch", helpers = "orch",
                  config = "orchlua", [".orchlua"] = "orchlua" }

--- The page entry for `topic` (a topic, an alias or a page's file name),
-- or nil.
function M.find(topic)
  topic = ALIASES[topic] or topic
  for _, p in ipairs(M.PAGES) do
    if p.topic == topic or p.page == topic then return p end
  end
  return nil
end

--- Every name `find` knows, for "did you mean".
function M.names()
  local list = {}
  for _, p in ipairs(M.PAGES) do list[#list + 1] = p.topic end
  for alias in pairs(ALIASES) do list[#list + 1] = alias end
  return list
end

local function module_name(page)
  return "orch.assets.man." .. page:gsub("[%.%-]", "_")
end

--- The page's text, or nil, message.  A development build that reads lua/
-- from disk (ORCHLUA_LUA_DIR) has no embedded page: it reads the one
-- `make` rendered beside it, in build/man/.
function M.text(entry)
  local ok, s = pcall(require, module_name(entry.page))
  if not (ok and type(s) == "string") then
    local dir = os.getenv("ORCHLUA_LUA_DIR")
    local path = dir and dir ~= "" and (dir .. "/../build/man/" .. entry.page .. ".txt")
    local f = path and io.open(path, "rb")
    if not f then
      return nil, ("the manual page %s is not compiled into this orchlua%s (make renders it; " ..
        "the source is man/%s)"):format(entry.page, path and (" and " .. path .. " is missing") or "", entry.page)
    end
    s = f:read("a")
    f:close()
  end
  -- groff puts three blank lines under the page's header line; one will do
  return (s:gsub("^([^\n]*\n)\n\n+", "%1\n"))
end

--- Writes a page: through $PAGER (else less, when there is one) when
-- stdout is a terminal the page does not fit, else straight to stdout.
function M.show(text, out)
  local tty, rows = require("orch.fs").terminal()
  local _, lines = text:gsub("\n", "")
  if tty and lines >= (rows > 0 and rows or 24) then
    local pager = os.getenv("PAGER")
    if pager == nil or pager == "" then
      pager = os.execute("command -v less >/dev/null 2>&1") and "less" or nil
    end
    local p = pager and io.popen(pager, "w")
    if p then
      p:write(text)
      if p:close() then return end
    end
  end
  out(text)
end

--- The topics part of `orchlua help`.
function M.topics(commands)
  local cmds = table.concat(commands, ", ")
  local w = #cmds
  for _, p in ipairs(M.PAGES) do w = math.max(w, #p.topic) end
  local fmt = "  %-" .. w .. "s  %s"
  local lines = { "", "help topics (orchlua help TOPIC):", fmt:format(cmds, "a command's usage and options") }
  for _, p in ipairs(M.PAGES) do
    lines[#lines + 1] = fmt:format(p.topic, ("%s (%s)"):format(p.about, (p.page:gsub("%.(%d)$", "(%1)"))))
  end
  return table.concat(lines, "\n")
end

return M
