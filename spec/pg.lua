-- spec/pg.lua: a throwaway PostgreSQL for the fleet specs (tools/pgtmp.sh:
-- initdb in a temporary folder, a Unix socket there, no port).  start()
-- fails the spec when the server cannot start: never a skip.
local h = require "helper"

local M = {}

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local s = p:read("a")
  local ok = p:close()
  return s, ok
end

-- Returns { dir =, url = }.
function M.start()
  local dir = h.tmpdir()
  local out, ok = sh(h.q(h.root .. "/tools/pgtmp.sh") .. " start " .. h.q(dir))
  local url = out:match("(postgresql://%S+)")
  assert(ok and url, "PostgreSQL did not start (tools/pgtmp.sh): " .. out)
  return { dir = dir, url = url }
end

function M.stop(pg)
  local out, ok = sh(h.q(h.root .. "/tools/pgtmp.sh") .. " stop " .. h.q(pg.dir))
  assert(ok, "pg_ctl stop: " .. out)
end

function M.restart(pg)
  local out, ok = sh(h.q(h.root .. "/tools/pgtmp.sh") .. " restart " .. h.q(pg.dir))
  assert(ok, "pg_ctl start: " .. out)
end

-- Stops the server (if running) and removes its folder.
function M.clean(pg)
  if not pg then return end
  sh(h.q(h.root .. "/tools/pgtmp.sh") .. " stop " .. h.q(pg.dir))
  h.rm(pg.dir)
end

-- psql's unaligned rows, as a list of lines; SQL from a string or a file.
function M.query(pg, sql, file)
  local cmd = ("psql -X -qAt -v ON_ERROR_STOP=1 %s %s"):format(h.q(pg.url),
    file and ("-f " .. h.q(file)) or ("-c " .. h.q(sql)))
  local out, ok = sh(cmd)
  assert(ok, "psql: " .. out)
  local rows = {}
  for line in out:gmatch("[^\n]+") do rows[#rows + 1] = line end
  return rows
end

function M.value(pg, sql)
  return M.query(pg, sql)[1]
end

return M
