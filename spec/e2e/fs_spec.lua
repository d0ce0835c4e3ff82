-- src/fs.c (orch.fs): what the engine asks the system without a child
-- process (fs.cwd, fs.glob, fs.find_files, fs.terminal), in orchlua and,
-- the same file as build/lua/orch/fs.so, in plain lua5.4.  Each must
-- answer what the shell commands it replaced (`pwd -P`, the shell's glob,
-- `find -L`, `test -t 1`) answer, on a tree with symlinks, a symlink loop,
-- nested folders and names with spaces and glob characters.
local h = require "helper"

local EVENTS = [[
local fs = require "orch.fs"
local M = {}

local function lines(cmd)
  local p = io.popen(cmd)
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  table.sort(out)
  return out
end

function M.compare(result_reporter)
  local found = fs.find_files("tree", ".json")
  table.sort(found)
  local globbed = fs.glob("tree/*.json")
  local odd = fs.glob("tree/we rd \\[x\\]/*")   -- escaped: the folder's brackets are literal
  local tty, rows, cols = fs.terminal()
  result_reporter:add_result({
    cwd = fs.cwd(), pwd = lines("pwd -P")[1],
    found = found, find = lines("find -L tree -type f -name '*.json' 2>/dev/null"),
    globbed = globbed, shell_glob = lines("for f in tree/*.json; do [ -e \"$f\" ] && echo \"$f\"; done"),
    odd = odd, none = fs.glob("tree/*.nothing"),
    tty = tty, rows = rows, cols = cols,
  })
end
return M
]]

describe("startup without child processes (fs.c)", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("lists, globs and finds what the shell commands did", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS,
      ["descriptions/f.json"] = '{"test_name":"f","total_hours":0.0001,"events":[{"name":"compare"}]}',
      ["tree/a.json"] = "{}", ["tree/b.json"] = "{}", ["tree/c.txt"] = "",
      ["tree/sub/deep/d.json"] = "{}", ["tree/we rd [x]/e.json"] = "{}", ["tree/we rd [x]/f.lua"] = "",
      ["elsewhere/g.json"] = "{}" })
    assert(os.execute(("cd %s && ln -s ../elsewhere tree/link && ln -s .. tree/sub/loop && ln -s nowhere.json tree/dangling.json")
      :format(h.q(dir))))
    local code, out, err = h.run("run f -q --report r.jsonl", dir)
    assert.equal(0, code, out .. err)
    local d = h.select(h.jsonl(dir .. "/r.jsonl"), "result")[1].data
    assert.equal(d.pwd, d.cwd)
    assert.same(d.find, d.found)
    assert.same({ "tree/a.json", "tree/b.json", "tree/link/g.json", "tree/sub/deep/d.json",
                  "tree/we rd [x]/e.json" }, d.found)
    assert.same(d.shell_glob, d.globbed)
    assert.same({ "tree/a.json", "tree/b.json" }, d.globbed)   -- not the dangling link
    assert.same({ "tree/we rd [x]/e.json", "tree/we rd [x]/f.lua" }, d.odd)
    assert.same({}, d.none)
    assert.is_false(d.tty)   -- stdout is a file here
    assert.equal(0, d.rows)
  end)

  it("finds descriptions and sources through them, from a folder with spaces and brackets", function()
    dir = h.project({ ["my [events]/ev.lua"] = "local M = {} function M.a() end return M",
      [".orchlua"] = 'return { sources = { "my [events]/*.lua" } }\n',
      ["descriptions/nested/deeper/n.json"] = '{"test_name":"n","total_hours":0.0001,"events":[{"name":"a"}]}' })
    local code, out, err = h.run("run n -q --report r.jsonl", dir)
    assert.equal(0, code, out .. err)
    assert.equal(1, #h.select(h.jsonl(dir .. "/r.jsonl"), "invocation"))
  end)
end)
