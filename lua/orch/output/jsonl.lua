-- orch.output.jsonl: the --report file.  One record per line; the writer
-- is flushed by the core before the loop waits, so a run killed at any
-- moment keeps every line it completed.
local core = require "orch.core"
local json = require "orch.output.json"

local M = {}
M.__index = M

-- Opens path for writing (mode "a": appending, for a resumed run);
-- returns the writer or nil, message.
function M.open(path, mode)
  local w, err = core.writer(path, mode)
  if not w then return nil, err end
  return setmetatable({ w = w, path = path }, M)
end

-- The C encoder writes the record; a record holding what JSON cannot say
-- (a function, a cycle) goes through orch.output.json's placeholders.
function M:write(rec, type_)
  local ok, err = self.w:record(rec, type_)
  if ok == false then
    -- placeholders for what JSON cannot say, then the same encoder (which
    -- also keeps every line valid UTF-8)
    ok, err = self.w:record(json.sanitize(rec), type_)
    if ok == false then
      -- still over the encoder's 16 MiB: its big fields (data, an error)
      -- cut to 128 KiB each (under 1 MiB of JSON however much escaping it
      -- takes); the envelope (event, level, t, ts ...) kept whole
      local cut = {}
      for k, v in pairs(rec) do
        if type(v) == "table" or (type(v) == "string" and #v > 4096) then
          cut[k] = json.sanitize({ v }, 128 * 1024)[1]
        else
          cut[k] = v
        end
      end
      ok, err = self.w:record(json.sanitize(cut), type_)
    end
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
