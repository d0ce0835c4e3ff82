-- The host's state (struct orch_core in src/core.h) is grouped by concern,
-- and each group's comment names the files that may touch it: the owner,
-- then the Lua faces that set it and the hot paths that read it.  This
-- holds every C file to those lists, so that a group stays its owner's.
local h = require "spec.helper"

local ROOT = h.root or "."

local function read(path)
  return assert(h.read(path), "cannot read " .. path)
end

-- { {name =, files = {["x.c"] = true}}, ... } from struct orch_core
local function groups_of(header)
  local body = assert(header:match("struct orch_core {(.-)\n};"), "struct orch_core not found in src/core.h")
  local groups, open = {}, nil
  for line in body:gmatch("[^\n]*") do
    if line:match("^  struct {") then
      open = { text = line }
    elseif open and not line:match("^  } [%w_]+;") then
      if not open.closed then open.text = open.text .. "\n" .. line end
    end
    if open and not open.closed and open.text:find("*/", 1, true) then open.closed = true end
    local name = line:match("^  } ([%w_]+);")
    if open and name then
      local files = {}
      local comment = open.text:match("/%*(.-)%*/") or ""
      for f in comment:gmatch("([%w_]+%.c)") do files[f] = true end
      groups[#groups + 1] = { name = name, files = files }
      open = nil
    end
  end
  return groups
end

describe("the host's state", function()
  local header = read(ROOT .. "/src/core.h")
  local groups = groups_of(header)

  it("names in each group of struct orch_core the files that may touch it", function()
    local names = {}
    for _, g in ipairs(groups) do
      names[#names + 1] = g.name
      assert.is_true(next(g.files) ~= nil, "group " .. g.name .. " names no file")
    end
    table.sort(names)
    assert.same({ "bound", "clock", "inv", "live", "pool", "sig", "tick", "watch" }, names)
  end)

  it("is touched by no file a group does not name", function()
    local p = assert(io.popen("ls " .. ROOT .. "/src/*.c"))
    local sources = {}
    for path in p:lines() do sources[#sources + 1] = path end
    p:close()
    assert.is_true(#sources > 10)
    local strays = {}
    for _, path in ipairs(sources) do
      local file = path:match("([^/]+)$")
      local text = read(path)
      for _, g in ipairs(groups) do
        if not g.files[file] and text:find("->" .. g.name .. ".", 1, true) then
          strays[#strays + 1] = ("%s touches orch_core.%s"):format(file, g.name)
        end
      end
    end
    assert.same({}, strays)
  end)
end)
