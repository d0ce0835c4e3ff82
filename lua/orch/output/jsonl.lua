-- orch.output.jsonl: the --report file.  One record per line; the writer
-- is flushed by the core before the loop waits, so a run killed at any
-- moment keeps every line it completed.
local core = require "orch.core"
local json = require "orch.output.json"

local M = {}
M.__index = M

-- Opens path for writing; returns the writer or nil, message.
function M.open(path)
  local w, err = core.writer(path)
  if not w then return nil, err end
  return setmetatable({ w = w, path = path }, M)
end

-- Field order is not significant in JSON, but people read these files:
-- type, t and ts come first.
function M:write(rec)
  local ty, t, ts = rec.type, rec.t, rec.ts
  rec.type, rec.t, rec.ts = nil, nil, nil
  local body = json.encode(rec)
  rec.type, rec.t, rec.ts = ty, t, ts
  local head = ('{"type":%s,"t":%s,"ts":%s'):format(json.encode(ty), json.encode(t), json.encode(ts))
  local ok, err
  if body == "{}" then
    ok, err = self.w:write(head, "}\n")
  else
    ok, err = self.w:write(head, ",", body:sub(2), "\n")
  end
  if not ok and not self.err then self.err = err end
  return ok, err
end

function M:close()
  local ok, err = self.w:close()
  return ok and not self.err, self.err or err
end

return M
