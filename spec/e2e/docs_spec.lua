-- The reference manual (man/*.[135]) against the code: every description
-- key of lua/orch/schema.lua, every function and built-in the real host's
-- require "orch" gives, every flag and command of lua/orch/cli.lua is
-- documented; the pages render without a groff warning; `orchlua help
-- TOPIC` shows them; `orchlua plan --all` prints every firing.
--
-- A branch that adds a key, a function or a flag without its entry in the
-- pages fails here: that is the point.
local h = require "helper"

local MAN = h.root .. "/man/"

-- A man page's source, as lines.
local function page_lines(name)
  local text = assert(h.read(MAN .. name), "cannot read man/" .. name)
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines
end

-- A troff line as the reader sees it: escapes and font changes gone.
local function plain(line)
  line = line:gsub("^%.[A-Z][A-Z]?%s*", "")       -- the macro (.B, .BR, .TP ...)
  line = line:gsub("\\%(dq", '"'):gsub("\\%(rs", "\\"):gsub("\\%(mu", "x")
  line = line:gsub("\\f[BIRP]", ""):gsub("\\%-", "-"):gsub("\\&", ""):gsub("\\e", "\\")
  return (line:gsub('"', ""))
end

-- The words a page defines: the tags of .TP/.TQ entries and the .SH/.SS
-- headings, as tokens ("--hours", "orch.sys.cpu", "p:wait", "timeout_sec").
local function defined(name)
  local set, lines = {}, page_lines(name)
  local function add(line)
    for word in plain(line):gmatch("[%w_%.:%-]+") do
      set[word] = true
      set[(word:gsub("[%.:]+$", ""))] = true      -- "orch.now." at a sentence's end
    end
  end
  for i, line in ipairs(lines) do
    if (line == ".TP" or line == ".TQ") and lines[i + 1] then add(lines[i + 1]) end
    if line:match("^%.S[HS] ") or line:match("^%.IP ") then add(line) end
  end
  return set
end

-- The plain text of the entry whose tag holds `tag`: from its .TP to the
-- next entry at the same level (.TP, .SH, .SS).
local function entry_text(name, tag)
  local lines = page_lines(name)
  for i, line in ipairs(lines) do
    if line == ".TP" and lines[i + 1] and plain(lines[i + 1]):match("^" .. tag .. "%f[^%w_]") then
      local out = {}
      for j = i + 1, #lines do
        if j > i + 1 and (lines[j] == ".TP" or lines[j]:match("^%.S[HS] ")) then break end
        out[#out + 1] = plain(lines[j])
      end
      return table.concat(out, " ")
    end
  end
  return nil
end

local function missing(words, set)
  local out = {}
  for _, w in ipairs(words) do
    if not set[w] then out[#out + 1] = w end
  end
  table.sort(out)
  return out
end

-- What the real host's require "orch" holds, listed by an event.
local ENUMERATE = [[
local orch = require "orch"
local M = {}
local function add(out, t, prefix)
  for k, v in pairs(t) do
    if type(k) == "string" and not k:match("^_") and k ~= "__index" then out[#out + 1] = prefix .. k end
  end
end
function M.enumerate(out_path, kill_switch, result_reporter, report_queue, event, log, params, description)
  local _ = orch.sys                             -- loaded on first use
  local out = {}
  add(out, orch, "orch.")
  add(out, orch.log, "orch.log.")
  add(out, orch.sys, "orch.sys.")
  local net = require "orch.net"
  for k, v in pairs(net) do
    if type(v) == "function" then out[#out + 1] = "orch.net." .. k end
  end
  for k, v in pairs(net.Conn) do
    if type(v) == "function" and not k:match("^_") then out[#out + 1] = "conn:" .. k end
  end
  for k, v in pairs(require("orch.core").Process) do
    if type(v) == "function" then out[#out + 1] = "p:" .. k end
  end
  for k, v in pairs(orch.ResultReporter) do
    if type(v) == "function" and not k:match("^_") and k ~= "init" and k ~= "new" and k ~= "extend" then
      out[#out + 1] = "rr:" .. k
    end
  end
  local ks = getmetatable(kill_switch)
  local methods = type(ks) == "table" and type(ks.__index) == "table" and ks.__index or kill_switch
  for k, v in pairs(type(methods) == "table" and methods or {}) do
    if type(v) == "function" then out[#out + 1] = "kill_switch:" .. k end
  end
  for k in pairs(require("orch.registry").BUILTINS) do out[#out + 1] = "builtin " .. k end
  for k in pairs(event) do out[#out + 1] = "event " .. k end
  local f = assert(io.open(out_path, "w"))
  f:write(table.concat(out, "\n"), "\n")
  f:close()
end
return M
]]

describe("the reference manual", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("renders every page with groff without a warning", function()
    for _, name in ipairs({ "orchlua.1", "orchlua-description.5", "orch.3" }) do
      local p = io.popen("groff -man -Tutf8 -ww " .. h.q(MAN .. name) .. " 2>&1 >/dev/null")
      local warnings = p:read("a")
      p:close()
      assert.equal("", warnings, name)
    end
  end)

  it("keeps every section marker the workstreams insert below", function()
    local markers = {
      ["orchlua.1"] = { "commands: core", "commands: fleet (ship)", "end of commands", "run options: core",
        "run options: checks", "run options: fleet (param, label, sink)", "run options: live view (listen)",
        "run options: reports (rotation)", "run options: resilience (resume)", "end of run options",
        "report options", "end of report options", "environment", "environment: fleet",
        "environment: live view", "end of environment" },
      ["orchlua-description.5"] = { "top-level keys", "end of top-level keys", "event keys",
        "end of event keys", "checks", "end of checks" },
      ["orch.3"] = { "functions", "end of functions", "built-in fixtures", "end of built-in fixtures",
        "result reporter", "end of result reporter", "helpers", "end of helpers" },
    }
    for name, list in pairs(markers) do
      local text = h.read(MAN .. name)
      for _, m in ipairs(list) do
        assert.truthy(text:find('\n.\\" == ' .. m .. ' ==\n', 1, true), name .. ": " .. m)
      end
    end
  end)

  it("documents every description key of the validator's schema in orchlua-description(5)", function()
    local schema = require "orch.schema"
    -- every key list the schema holds, whoever added it
    local keys, seen = {}, {}
    local function collect(list)
      if seen[list] then return end
      seen[list] = true
      for _, entry in ipairs(list) do
        keys[#keys + 1] = entry.key
        local t = entry.type
        if t.keys then collect(t.keys) end
        if t.items and t.items.keys then collect(t.items.keys) end
      end
    end
    collect(schema.top)
    collect(schema.event)
    for _, t in pairs(schema.types) do
      if t.keys then collect(t.keys) end
    end
    assert.is_true(#keys >= 14)
    assert.same({}, missing(keys, defined("orchlua-description.5")))
  end)

  it("documents every function of require \"orch\" in the real host, and the built-ins, in orch(3)", function()
    dir = h.project({
      ["events/enum.lua"] = ENUMERATE,
      ["descriptions/enum.json"] = '{"test_name":"enum","total_hours":0.0001,'
        .. '"events":[{"name":"enumerate","params":{"out_path":"names.txt"}}]}',
    })
    local code, _, err = h.run("run enum -q --no-progress", dir)
    assert.equal(0, code, err)
    local names, builtins, fields = {}, {}, {}
    for line in io.lines(dir .. "/names.txt") do
      local b = line:match("^builtin (.*)$")
      local f = line:match("^event (.*)$")
      if b then builtins[#builtins + 1] = b
      elseif f then fields[#fields + 1] = f
      else names[#names + 1] = line end
    end
    assert.truthy(#names >= 30, table.concat(names, " "))
    local set = defined("orch.3")
    assert.same({}, missing(names, set))
    assert.same({}, missing(builtins, set))
    -- the event built-in's fields, in its entry (or an entry of their own:
    -- event:ready())
    local text = assert(entry_text("orch.3", "event"))
    local absent = {}
    for _, f in ipairs(fields) do
      if not (text:find("%f[%w_]" .. f .. "%f[^%w_]") or set["event:" .. f] or set["event." .. f]) then
        absent[#absent + 1] = f
      end
    end
    assert.same({}, absent)
    assert.truthy(#fields >= 5)
  end)

  it("documents every function and option of the helpers rock in orch(3)", function()
    -- the page's text per helper subsection (.SS orch.helpers.NAME)
    local sections, current = {}, nil
    for _, line in ipairs(page_lines("orch.3")) do
      local name = line:match("^%.SS orch%.helpers%.(%w+)")
      if name then
        current = name
        sections[name] = {}
      elseif line:match("^%.S[HS] ") or line:match("^%.\\\" == end of helpers") then
        current = nil
      elseif current then
        local t = sections[current]
        t[#t + 1] = plain(line)
      end
    end
    local absent = {}
    for _, name in ipairs({ "supervise", "tail", "sample", "probe" }) do
      local text = " " .. table.concat(assert(sections[name], "no section for " .. name), " ") .. " "
      -- a function whole ("tail.open"), an option as a word ("interval" in "opts.interval")
      local function want(word)
        local before = word:find("[.:]") and "%f[%w_%.:]" or "%f[%w_]"
        if not text:find(before .. word:gsub("[%.%-]", "%%%0") .. "%f[^%w_]") then
          absent[#absent + 1] = name .. ": " .. word
        end
      end
      local src = assert(h.read(h.root .. "/helpers/orch/helpers/" .. name .. ".lua"))
      -- the module's functions, its objects' methods
      for fn in src:gmatch("\nfunction M%.([%a][%w_]*)%(") do want(name .. "." .. fn) end
      for cls, m in src:gmatch("\nfunction (%u%l+)[:.]([%a][%w_]*)%(") do want(cls:lower() .. ":" .. m) end
      -- its options: the tables of known option names
      for tbl in src:gmatch("\nlocal [%u_]*[KO][NP][OT][WS]N?S? = (%b{})") do
        for opt in tbl:gmatch("([%a_][%w_]*) = true") do want(opt) end
      end
    end
    assert.same({}, absent)
  end)

  it("documents every flag and command of the command line in orchlua(1)", function()
    local cli = require "orch.cli"
    local words = {}
    for flag in pairs(cli.FLAGS) do words[#words + 1] = flag end
    for flag in pairs(cli.COMMAND_FLAGS) do words[#words + 1] = flag end
    for _, c in ipairs(cli.COMMANDS) do words[#words + 1] = c end
    assert.same({}, missing(words, defined("orchlua.1")))
  end)

  it("documents the environment variables the code reads in orchlua(1)", function()
    local set = defined("orchlua.1")
    local vars = {}
    local p = io.popen("cd " .. h.q(h.root) .. " && grep -rhoE 'getenv\\(\"[A-Z_]+\"' lua src | sort -u")
    for v in p:read("a"):gmatch('getenv%("([A-Z_]+)"') do
      if v ~= "PWD" then vars[#vars + 1] = v end
    end
    p:close()
    assert.truthy(#vars >= 5)
    assert.same({}, missing(vars, set))
  end)
end)

describe("orchlua help", function()
  it("lists the commands and the manual's topics", function()
    local code, out = h.run("help")
    assert.equal(0, code)
    assert.matches("^usage: orchlua run", out)
    assert.matches("\nhelp topics %(orchlua help TOPIC%):\n", out)
    assert.matches("\n  orchlua +commands, options, exit status, environment %(orchlua%(1%)%)\n", out)
    assert.matches("\n  description +[^\n]+%(orchlua%-description%(5%)%)\n", out)
    assert.matches("\n  orch +[^\n]+%(orch%(3%)%)\n", out)
  end)

  it("shows each manual page as plain text, as groff renders it", function()
    for topic, page in pairs({ orchlua = "orchlua.1", description = "orchlua-description.5", orch = "orch.3",
                               ["orchlua-description"] = "orchlua-description.5", api = "orch.3" }) do
      local code, out, err = h.run("help " .. topic)
      assert.equal(0, code, err)
      assert.equal("", err)
      local p = io.popen("groff -man -rHY=0 -Tascii -P-cbou " .. h.q(MAN .. page) .. " 2>/dev/null")
      local want = p:read("a"):gsub("^([^\n]*\n)\n\n+", "%1\n")
      p:close()
      assert.equal(want, out, topic)
      assert.is_nil(out:find("\b", 1, true))     -- no overstrike left
    end
  end)

  it("pages a manual page on a terminal through PAGER", function()
    -- script(1) gives orchlua a terminal; the "pager" keeps the page's third line
    local p = io.popen("script -qec " .. h.q("PAGER='sed -n 3p' " .. h.q(h.bin) .. " help orch") .. " /dev/null")
    local out = p:read("a")
    p:close()
    assert.equal("NAME\r\n", out)
  end)

  it("keeps the short help of each command", function()
    local code, out = h.run("help plan")
    assert.equal(0, code)
    assert.matches("^orchlua plan NAME %[%-%-hours H%] %[%-%-all%]\n", out)
  end)

  it("exits 2 with a suggestion for an unknown topic", function()
    local code, out, err = h.run("help descripton")
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal('orchlua: no help for "descripton" (did you mean "description"?)', err:match("^[^\n]*"))
  end)
end)

describe("orchlua plan --all", function()
  local dir
  after_each(function() h.rm(dir) end)

  local function project(desc)
    return h.project({ ["events/ev.lua"] = "local M = {}\nfunction M.a() end\nfunction M.b() end\nreturn M\n",
                       ["descriptions/p.json"] = desc })
  end

  it("prints every firing, in time order, where plan shows the first 30", function()
    dir = project('{"test_name":"p","total_hours":1,"events":[{"name":"a","interval_sec":7},'
      .. '{"name":"b","interval_min":1,"at_startup":false,"at_teardown":true}]}')
    local code, out = h.run("plan p", dir)
    assert.equal(0, code)
    assert.matches("\n  %.%.%. 544 more firings until 1:00:00.000\n      %(%-%-all prints every firing%)\n", out)
    code, out = h.run("plan p --all", dir)
    assert.equal(0, code)
    local firings, last = {}, -1
    for clock, id, phase, k in out:gmatch("\n  (%d+:%d%d:%d%d%.%d%d%d)  (%a) +(%a+) #(%d+)") do
      local hh, mm, ss = clock:match("(%d+):(%d+):(.*)")
      local t = hh * 3600 + mm * 60 + tonumber(ss)
      if phase ~= "teardown" then
        assert.is_true(t >= last)
        last = t
        firings[#firings + 1] = id .. k
      end
    end
    -- a: t0 and 514 intervals (7 * 514 = 3598 s); b: 59 intervals
    assert.equal(1 + 514 + 59, #firings)
    assert.equal("a0", firings[1])
    assert.is_nil(out:find("more firing", 1, true))
    assert.matches("\n  1:00:00.000  b +teardown #60 %(once, after the end%)\n", out)
    assert.matches("\nall +575\n", out)
  end)

  it("follows --hours", function()
    dir = project('{"test_name":"p","total_hours":1,"events":[{"name":"a","interval_sec":60}]}')
    local code, out = h.run("plan p --all --hours 2", dir)
    assert.equal(0, code)
    assert.matches("\n  1:59:00.000  a +interval #119\n  2:00:00.000  end", out)
  end)

  it("refuses more than 10,000,000 firings, saying how many there are", function()
    dir = project('{"test_name":"p","total_hours":72,"events":[{"name":"a","interval_sec":0.02}]}')
    local code, out, err = h.run("plan p --all", dir)
    assert.equal(2, code)
    assert.equal("", out)
    assert.equal("orchlua: plan --all: p has 12960000 firings in 72 h, more than the 10000000 lines "
      .. "--all prints; plan a part of it with --hours H\n", err)
    code, out = h.run("plan p --all --hours 0.01", dir)
    assert.equal(0, code)
    assert.matches("\nall +1800\n", out)
  end)

  it("is a flag of plan only", function()
    local code, _, err = h.run("check --all")
    assert.equal(2, code)
    assert.equal("orchlua: --all does not apply to check", err:match("^[^\n]*"))
  end)
end)
