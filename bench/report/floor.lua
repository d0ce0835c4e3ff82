-- bench/report/floor.lua FILE...: the decode-only floor of `orchlua
-- report`: lua5.4 + lua-cjson decoding every line, nothing else.
local cjson = require "cjson"
local n = 0
for _, path in ipairs(arg) do
  for line in io.lines(path) do
    local r = cjson.decode(line)
    if r.type then n = n + 1 end
  end
end
print(n)
