-- orch.output.atomic: an output file written whole or not at all.  The
-- text goes to a temporary file beside it, renamed over it once written
-- and closed: a full disk leaves the old file (or none), never a 0-byte
-- or cut one.
local M = {}

-- Writes text straight to path (a device such as /dev/full, a fifo, or a
-- link, which a rename would replace rather than write through).
local function direct(path, text)
  local f, e = io.open(path, "wb")
  if not f then return nil, e end
  local ok, e2 = f:write(text)
  local ok2, e3 = f:close()
  if not ok or not ok2 then return nil, ("%s: %s"):format(path, tostring(e2 or e3)) end
  return true
end

-- Writes text to path; returns true or nil, message.  Only a regular file
-- (or none yet) is replaced by a rename.
function M.write(path, text)
  local kind = require("orch.fs").file_kind(path)
  if kind and kind ~= "file" then return direct(path, text) end
  local tmp = ("%s.%d.tmp"):format(path, math.random(1, 1e9))
  local f, e = io.open(tmp, "wb")
  if not f then return nil, ("%s: %s"):format(path, tostring(e):match(":%s*([^:]*)$") or e) end
  local ok, e2 = f:write(text)
  local ok2, e3 = f:close()
  if not ok or not ok2 then
    os.remove(tmp)
    return nil, ("%s: %s"):format(path, tostring(e2 or e3))
  end
  local ok3, e4 = os.rename(tmp, path)
  if not ok3 then
    os.remove(tmp)
    return nil, e4
  end
  return true
end

-- Whether path can be written, checked before the run without leaving a
-- file behind: true or nil, message.
function M.check(path)
  local existed = io.open(path, "rb")
  if existed then existed:close() end
  local f, err = io.open(path, "ab")
  if not f then return nil, err end
  f:close()
  if not existed then os.remove(path) end
  return true
end

return M
