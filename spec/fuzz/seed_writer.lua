-- spec/fuzz/seed_writer.lua OUT FILE...: writer seeds.  Each JSON value in
-- the FILEs (a .json file, or each line of a .jsonl file) becomes a program
-- of spec/fuzz/writer.lua's bytecode that builds the same Lua value; a few
-- hand-written programs add what JSON cannot hold (the hostile values of
-- spec/e2e/hostile_spec.lua: cycles, functions, NaN, infinity, bad UTF-8).
local cjson = require "cjson"

local out_dir = assert(arg[1], "usage: seed_writer.lua OUT FILE...")

-- opcodes (writer.lua: op = byte % 20)
-- (all of writer.lua's opcodes are named, the seeds use some of them)
-- luacheck: push ignore 211
local STR, INT, FLT, SPECIAL, BOOL, NULL, FUNC, TABLE, APPEND, SET, SETIDX, DEEP, CYCLE, DUP, META, BIG, TYPE =
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
-- luacheck: pop

local function str(buf, s)
  s = s:sub(1, 255)
  buf[#buf + 1] = string.char(STR, #s) .. s
end

local function value(buf, v, depth)
  local t = type(v)
  if v == cjson.null or v == nil then
    buf[#buf + 1] = string.char(NULL)
  elseif t == "string" then
    str(buf, v)
  elseif t == "boolean" then
    buf[#buf + 1] = string.char(BOOL, v and 1 or 0)
  elseif math.type(v) == "integer" or (t == "number" and v == math.floor(v) and math.abs(v) < 2 ^ 62) then
    buf[#buf + 1] = string.char(INT) .. string.pack("<i8", math.tointeger(v) or 0)
  elseif t == "number" then
    buf[#buf + 1] = string.char(FLT) .. string.pack("<d", v)
  elseif t == "table" and depth < 6 then
    buf[#buf + 1] = string.char(TABLE)
    if #v > 0 then
      for _, x in ipairs(v) do value(buf, x, depth + 1); buf[#buf + 1] = string.char(APPEND) end
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      for _, k in ipairs(keys) do
        str(buf, k); value(buf, v[k], depth + 1); buf[#buf + 1] = string.char(SET)
      end
    end
  else
    buf[#buf + 1] = string.char(NULL)
  end
end

local n = 0
local function emit(program)
  n = n + 1
  local f = assert(io.open(("%s/seed-%03d"):format(out_dir, n), "wb"))
  f:write(program)
  f:close()
end

-- the descriptions' comments go as orchlua itself strips them
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local strip_comments = require("orch.jsonc").strip_comments

for i = 2, #arg do
  local f = assert(io.open(arg[i], "rb"))
  local text = f:read("a")
  f:close()
  local docs = {}
  if arg[i]:match("%.jsonl$") then
    for line in text:gmatch("[^\n]+") do docs[#docs + 1] = line end
  else
    docs[1] = strip_comments(text) or text
  end
  for j = 1, math.min(#docs, 40) do
    local ok, v = pcall(cjson.decode, docs[j])
    if ok then
      local buf = {}
      value(buf, v, 0)
      emit(table.concat(buf))
    end
  end
end

-- the hostile values of spec/e2e/hostile_spec.lua, and a few more
local P = string.char
emit(P(TABLE) .. P(STR, 4) .. "name" .. P(STR, 4) .. "loop" .. P(SET) .. P(CYCLE, 0, 0))        -- t.self = t
emit(P(TABLE) .. P(STR, 1) .. "f" .. P(FUNC, 0) .. P(SET) .. P(STR, 1) .. "n" .. P(SPECIAL, 0) .. P(SET)
  .. P(STR, 3) .. "big" .. P(SPECIAL, 2) .. P(SET) .. P(STR, 3) .. "bad" .. P(STR, 3) .. "\255\0x" .. P(SET))
emit(P(FUNC, 0))
emit(P(STR, 6) .. "a\"b\\c\n" .. P(STR, 5) .. "\237\160\128\192\128" .. P(SPECIAL, 4) .. P(SPECIAL, 5))
emit(P(STR, 1) .. "x" .. P(DEEP, 40, 40))                                                          -- 80 deep
emit(P(TABLE) .. P(META, 0, 0) .. P(STR, 1) .. "k" .. P(TABLE) .. P(META, 3, 0) .. P(SET))
emit(P(TYPE, 5) .. "res\"t" .. P(TABLE) .. P(STR, 1) .. "a" .. P(INT) .. string.pack("<i8", 1) .. P(SET))
emit(P(TABLE) .. P(STR, 1) .. "x" .. P(SETIDX, 99) .. P(BIG, 0, 1, 200))
io.stderr:write(("seed_writer: %d programs in %s\n"):format(n, out_dir))
