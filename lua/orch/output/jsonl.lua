-- orch.output.jsonl: the --report file.  One record per line; the writer
-- is flushed by the core before the loop waits, so a run killed at any
-- moment keeps every line it completed.
local core = require "orch.core"
local json = require "orch.output.json"

local M = {}
M.__index = M

-- Opens path for writing (mode "a": appending, for a resumed run, to
-- its segment `segment` cut to `keep` bytes: orch.resume's check);
-- returns the writer or nil, message.
function M.open(path, mode, segment, keep)
  local w, err = core.writer(path, mode, segment, keep)
  if not w then return nil, err end
  return setmetatable({ w = w, path = path }, M)
end

-- A record still over the encoder's cap once sanitized: its envelope (up
-- to 32 short scalar fields: event, level, t, ts ...) kept whole, every
-- other field cut from one shared budget of 96 KiB, so that the line stays
-- under 1 MiB of JSON however many big fields it has and however much
-- escaping they take.
local CUT_BUDGET = 96 * 1024
function M.cut(rec)
  if type(rec) ~= "table" then return json.sanitize(rec, CUT_BUDGET) end
  local small, big, n = {}, {}, 0
  for k, v in next, rec do
    local tv = type(v)
    if n < 32 and type(k) == "string" and #k <= 64
        and (tv == "number" or tv == "boolean" or (tv == "string" and #v <= 256)) then
      small[k] = v
      n = n + 1
    else
      big[k] = v
    end
  end
  local out = json.sanitize(big, CUT_BUDGET)
  for k, v in next, small do out[k] = v end
  return out
end

-- The C encoder writes the record; a record holding what JSON cannot say
-- (a function, a cycle) goes through orch.output.json's placeholders.
function M:write(rec, type_)
  local ok, err = self.w:record(rec, type_)
  if ok == false then
    -- placeholders for what JSON cannot say, then the same encoder (which
    -- also keeps every line valid UTF-8)
    ok, err = self.w:record(json.sanitize(rec), type_)
    if ok == false then ok, err = self.w:record(M.cut(rec), type_) end
  end
  if not ok and not self.err then self.err = err end
  return ok, err
end

function M:close()
  -- the last seq written, for what reads the file after (a sink)
  if self.last_seq == nil then self.last_seq = self.w:seq() end
  local ok, err = self.w:close()
  return ok and not self.err, self.err or err
end

return M
