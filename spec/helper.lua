-- spec/helper.lua: running the real binary from specs.
local M = {}

M.root = (function()
  local p = io.popen("pwd"); local d = p:read("l"); p:close(); return d
end)()
-- ORCHLUA_BIN runs the suite against another build of the same sources
-- (make check-asan: build/asan/orchlua); a relative path is from the root.
M.bin = os.getenv("ORCHLUA_BIN") or ""
if M.bin == "" then
  M.bin = M.root .. "/orchlua"
elseif M.bin:sub(1, 1) ~= "/" then
  M.bin = M.root .. "/" .. M.bin
end
-- the plain build is the one shipped: a few specs (valgrind) need it
M.plain_bin = M.root .. "/orchlua"

function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/orchlua-spec.XXXXXX"); local d = p:read("l"); p:close(); return d
end

function M.write(path, text)
  os.execute("mkdir -p " .. M.q(path:match("^(.*)/") or "."))
  local f = assert(io.open(path, "w")); f:write(text); f:close()
end

function M.read(path)
  local f = io.open(path, "r"); if not f then return nil end
  local s = f:read("a"); f:close(); return s
end

-- Runs orchlua with args (a string of shell words) in dir; returns
-- status, stdout, stderr.  A run that hangs is killed after RUN_LIMIT
-- seconds (status 124), so that the suite fails instead of never ending.
local RUN_LIMIT = 300
function M.run(args, dir, env)
  local out, err = os.tmpname(), os.tmpname()
  local cmd = ("cd %s && %s timeout -k 10 %d %s %s >%s 2>%s"):format(M.q(dir or M.root), env or "", RUN_LIMIT,
    M.q(M.bin), args, out, err)
  local _, _, code = os.execute(cmd)
  local o, e = M.read(out), M.read(err)
  os.remove(out); os.remove(err)
  if code == 124 then e = (e or "") .. ("\n(spec helper: orchlua still ran after %d s: killed)\n"):format(RUN_LIMIT) end
  return code, o, e
end

-- Reads a JSONL file into a list of records.
function M.jsonl(path)
  local cjson = require "cjson"
  local recs = {}
  for line in io.lines(path) do recs[#recs + 1] = cjson.decode(line) end
  return recs
end

function M.select(recs, ty, field, value)
  local out = {}
  for _, r in ipairs(recs) do
    if r.type == ty and (field == nil or r[field] == value) then out[#out + 1] = r end
  end
  return out
end

-- nil when every record keeps to orch.records (lua/orch/records.lua): a
-- type it defines, no field it does not define, every required field, each
-- of its kind; else "record N (type): what is wrong".
function M.nonconforming(recs)
  local records = require "orch.records"
  local null = require("cjson").null
  for i, r in ipairs(recs) do
    local function bad(fmt, ...) return ("record %d (%s): " .. fmt):format(i, tostring(r.type), ...) end
    if not records.types[r.type] then return bad("a type orch.records does not define") end
    for k, v in pairs(r) do
      local def = records.field(r.type, k)
      if not def then return bad('a field orch.records does not define: "%s"', tostring(k)) end
      if v ~= null and not records.is(def.kind, v) then return bad('"%s" is not %s: %s', k, def.kind, tostring(v)) end
    end
    for _, k in ipairs(records.names[r.type]) do
      if records.field(r.type, k).req and r[k] == nil then return bad('no "%s"', k) end
    end
  end
  return nil
end

-- A project folder with .orchlua, descriptions and sources.
function M.project(files)
  local d = M.tmpdir()
  M.write(d .. "/.orchlua", files[".orchlua"] or 'return { sources = { "events/*.lua" }, grace_sec = 5 }\n')
  for name, text in pairs(files) do
    if name ~= ".orchlua" then M.write(d .. "/" .. name, text) end
  end
  return d
end

function M.rm(d) if d and d:match("^/tmp/orchlua%-spec") then os.execute("rm -rf " .. M.q(d)) end end

return M
