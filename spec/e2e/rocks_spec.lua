-- End-to-end specs of the rockspecs and of module search: each rock
-- installed offline with luarocks into a temporary tree, then used from an
-- event run by the real binary with no configuration, or from plain
-- lua5.4.  Nothing is installed into the repository: luarocks runs in a
-- temporary copy of the files a rock needs (what a clean clone holds).
local h = require "helper"

-- A shell prefix that keeps the machine's own Lua settings out of the
-- runs, and makes any network access fail at once (the installs must not
-- need one).
local CLEAN_ENV = "env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_INIT -u LUA_INIT_5_4 " ..
  "http_proxy=http://127.0.0.1:9 https_proxy=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 " ..
  "HTTPS_PROXY=http://127.0.0.1:9 no_proxy= "

-- Runs a shell command line; returns status, stdout and stderr.
local function sh(cmd)
  local out, err = os.tmpname(), os.tmpname()
  local _, _, code = os.execute(("%s >%s 2>%s"):format(cmd, out, err))
  local o, e = h.read(out), h.read(err)
  os.remove(out)
  os.remove(err)
  return code, o, e
end

-- Files under dir (relative paths, sorted).
local function files(dir)
  local p = io.popen("cd " .. h.q(dir) .. " && find . -type f | sed 's|^\\./||' | sort")
  local list = {}
  for line in p:lines() do list[#list + 1] = line end
  p:close()
  return list
end

-- A copy of what a clean clone holds for the rocks: rockspec/, lua/, helpers/
-- and the C modules built for plain Lua too (src/scan.c, src/fs.c, src/columns.c).
local function clone()
  local d = h.tmpdir()
  assert(os.execute(("cd %s && tar -cf - rockspec lua helpers src/scan.c src/fs.c src/columns.c | (cd %s && tar -xf -)")
    :format(h.q(h.root), h.q(d))))
  return d
end

local function load_rockspec(path)
  local env = {}
  assert(loadfile(path, "t", env))()
  return env
end

-- The module map a rock should have: every .lua file under dir/, named as
-- require names it.
local function expected_map(base, dir)
  local map = {}
  for _, f in ipairs(files(h.root .. "/" .. base .. "/" .. dir)) do
    if f:match("%.lua$") then
      local name = (dir .. "/" .. f):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
      map[name] = base .. "/" .. dir .. "/" .. f
    end
  end
  return map
end

local MAKE = "luarocks --lua-version 5.4 --tree lua_modules make "

describe("rockspecs", function()
  it("map every module of lua/ into the orchlua rock, with a builtin build and a busted test", function()
    local r = load_rockspec(h.root .. "/rockspec/orchlua-scm-1.rockspec")
    assert.equal("orchlua", r.package)
    assert.equal("scm-1", r.version)
    assert.equal("builtin", r.build.type)
    local want = expected_map("lua", "orch")
    want["orch.scan"] = "src/scan.c"   -- the C modules: orch.report reads through it,
    want["orch.fs"] = "src/fs.c"       -- the files are found through this one,
    want["orch.columns"] = "src/columns.c"   -- and tables laid out by this one
    assert.same(want, r.build.modules)
    assert.equal("busted", r.test.type)
    assert.same({ "lua >= 5.4, < 5.5" }, r.dependencies)
  end)

  it("map every module of helpers/ into the helpers rock, and nothing of lua/", function()
    local r = load_rockspec(h.root .. "/rockspec/orchlua-helpers-scm-1.rockspec")
    assert.equal("orchlua-helpers", r.package)
    assert.equal("none", r.build.type)
    assert.same(expected_map("helpers", "orch/helpers"), r.build.install.lua)
    assert.equal("busted", r.test.type)
    assert.same({ "lua >= 5.4, < 5.5" }, r.dependencies)
  end)
end)

describe("luarocks make, offline", function()
  local src, proj, home
  local had_lua_modules
  setup(function()
    had_lua_modules = os.execute("test -e " .. h.q(h.root .. "/lua_modules"))
    src = clone()
  end)
  teardown(function()
    h.rm(src)
    -- the specs leave the repository as they found it
    assert.equal(had_lua_modules, os.execute("test -e " .. h.q(h.root .. "/lua_modules")))
  end)
  after_each(function()
    h.rm(proj)
    h.rm(home)
    proj, home = nil, nil
  end)

  it("installs the helpers rock with the issue's command: only orch/helpers/*.lua", function()
    local code, out, err = sh(("cd %s && %s%srockspec/orchlua-helpers-scm-1.rockspec"):format(h.q(src), CLEAN_ENV, MAKE))
    assert.equal(0, code, (out or "") .. (err or ""))
    local lua = {}
    for _, f in ipairs(files(src .. "/lua_modules")) do
      if f:match("^share/") then lua[#lua + 1] = f end
    end
    assert.same({ "share/lua/5.4/orch/helpers/probe.lua", "share/lua/5.4/orch/helpers/sample.lua",
                  "share/lua/5.4/orch/helpers/supervise.lua", "share/lua/5.4/orch/helpers/tail.lua" }, lua)
    code, out = sh(("cd %s && luarocks --lua-version 5.4 --tree lua_modules list --porcelain"):format(h.q(src)))
    assert.equal(0, code)
    assert.matches("orchlua%-helpers\tscm%-1\tinstalled", out)
  end)

  it("lets an event in a fresh project use a helper from its lua_modules with no configuration", function()
    proj, home = h.tmpdir(), h.tmpdir()
    -- a project with no .orchlua: the defaults, relative to where orchlua runs
    h.write(proj .. "/descriptions/rocks.json",
      '{"test_name":"rocks","total_hours":0.001,"events":[{"name":"scan"}]}')
    h.write(proj .. "/events/scan.lua", [[
      local tail = require "orch.helpers.tail"
      return { scan = function(result_reporter, kill_switch)
        local t = tail.open("app.log", { from = "start", patterns = { failure = { "ERROR (%w+)", level = "info" } } })
        t:report(result_reporter)
        result_reporter:add_result({ found = package.searchpath("orch.helpers.tail", package.path) })
        kill_switch:set()
      end }
    ]])
    h.write(proj .. "/app.log", "ok\nERROR disk\n")
    local code, out, err = sh(("cd %s && %sluarocks --lua-version 5.4 --tree %s make rockspec/orchlua-helpers-scm-1.rockspec")
      :format(h.q(src), CLEAN_ENV, h.q(proj .. "/lua_modules")))
    assert.equal(0, code, (out or "") .. (err or ""))
    code, out, err = sh(("cd %s && %sHOME=%s %s run rocks -q --report r.jsonl"):format(h.q(proj), CLEAN_ENV,
      h.q(home), h.q(h.bin)))
    assert.equal(0, code, (out or "") .. (err or ""))
    local data = {}
    for _, r in ipairs(h.jsonl(proj .. "/r.jsonl")) do
      if r.type == "result" then data[#data + 1] = r.data end
    end
    assert.equal("app.log: failure: ERROR disk", data[1].message)
    assert.equal(proj .. "/lua_modules/share/lua/5.4/orch/helpers/tail.lua", data[2].found)
  end)

  it("lets an event load a C module from the project's lua_modules", function()
    proj, home = h.tmpdir(), h.tmpdir()
    local cmod = h.tmpdir()
    assert(os.execute(("cp %s/spec/e2e/fixtures/rocks/cmod/* %s"):format(h.q(h.root), h.q(cmod))))
    local code, out, err = sh(("cd %s && %sluarocks --lua-version 5.4 --tree %s make orchtest-cmod-scm-1.rockspec")
      :format(h.q(cmod), CLEAN_ENV, h.q(proj .. "/lua_modules")))
    h.rm(cmod)
    assert.equal(0, code, (out or "") .. (err or ""))
    h.write(proj .. "/descriptions/c.json", '{"test_name":"c","total_hours":0.001,"events":[{"name":"use_c"}]}')
    h.write(proj .. "/events/c.lua", [[
      local cmod = require "orchtest.cmod"
      local lxp = require "lxp"            -- lua-expat: the system tree's C modules
      return { use_c = function(result_reporter, kill_switch)
        result_reporter:add_result({ sum = cmod.add(2, 3), system = type(lxp.new),
          found = package.searchpath("orchtest.cmod", package.cpath) })
        kill_switch:set()
      end }
    ]])
    code, out, err = sh(("cd %s && %sHOME=%s %s run c -q --report r.jsonl"):format(h.q(proj), CLEAN_ENV,
      h.q(home), h.q(h.bin)))
    assert.equal(0, code, (out or "") .. (err or ""))
    local recs = h.jsonl(proj .. "/r.jsonl")
    local res = h.select(recs, "result")[1].data
    assert.same({ sum = 5, system = "function", found = proj .. "/lua_modules/lib/lua/5.4/orchtest/cmod.so" }, res)
  end)

  it("finds rocks installed with --local in ~/.luarocks", function()
    proj, home = h.tmpdir(), h.tmpdir()
    local code, out, err = sh(("cd %s && %sHOME=%s luarocks --lua-version 5.4 --local make rockspec/orchlua-helpers-scm-1.rockspec")
      :format(h.q(src), CLEAN_ENV, h.q(home)))
    assert.equal(0, code, (out or "") .. (err or ""))
    h.write(proj .. "/descriptions/home.json", '{"test_name":"home","total_hours":0.001,"events":[{"name":"where"}]}')
    h.write(proj .. "/events/home.lua", [[
      require "orch.helpers.probe"
      return { where = function(result_reporter, kill_switch)
        result_reporter:add_result({ found = package.searchpath("orch.helpers.probe", package.path) })
        kill_switch:set()
      end }
    ]])
    code, out, err = sh(("cd %s && %sHOME=%s %s run home -q --report r.jsonl"):format(h.q(proj), CLEAN_ENV,
      h.q(home), h.q(h.bin)))
    assert.equal(0, code, (out or "") .. (err or ""))
    local res = h.select(h.jsonl(proj .. "/r.jsonl"), "result")[1].data
    assert.equal(home .. "/.luarocks/share/lua/5.4/orch/helpers/probe.lua", res.found)
  end)

  it("lists the search paths with orchlua --version -v: lua_modules, ~/.luarocks, the system trees", function()
    proj, home = h.tmpdir(), h.tmpdir()
    local code, out = sh(("cd %s && %sHOME=%s %s --version -v"):format(h.q(proj), CLEAN_ENV, h.q(home), h.q(h.bin)))
    assert.equal(0, code)
    for _, p in ipairs({ proj .. "/lua_modules/share/lua/5.4/?.lua", proj .. "/lua_modules/share/lua/5.4/?/init.lua",
                         home .. "/.luarocks/share/lua/5.4/?.lua", "/usr/local/share/lua/5.4/?.lua",
                         "/usr/share/lua/5.4/?.lua", proj .. "/lua_modules/lib/lua/5.4/?.so",
                         home .. "/.luarocks/lib/lua/5.4/?.so" }) do
      assert.is_truthy(out:find("\n  " .. p .. "\n", 1, true), p .. " in\n" .. out)
    end
  end)

  it("installs the orchlua rock, after which plain lua5.4 can require \"orch\"", function()
    local tree = h.tmpdir()
    local code, out, err = sh(("cd %s && %sluarocks --lua-version 5.4 --tree %s make rockspec/orchlua-scm-1.rockspec")
      :format(h.q(src), CLEAN_ENV, h.q(tree)))
    assert.equal(0, code, (out or "") .. (err or ""))
    -- from elsewhere than the repository, with the tree's paths only
    local script = h.tmpdir()
    h.write(script .. "/use.lua", ([[
      local orch = require "orch"
      local description = require "orch.description"
      local desc = assert(description.load(%q))
      local plan = require("orch.plan").render(desc, desc.total_hours)
      local queue = { items = {} }
      function queue:put(v) self.items[#self.items + 1] = v end
      local rr = orch.ResultReporter.new(queue)
      rr:metric("m", 1)
      local ok, err = pcall(orch.sleep, 1)
      io.write(package.searchpath("orch", package.path), "\n", desc.test_name, "\n",
        plan:match("^[^\n]*"), "\n", queue.items[1].data.metric, "\n", err, "\n")
    ]]):format(h.root .. "/descriptions/my_orchestration_test.json"))
    local inner = ("eval \"$(luarocks --lua-version 5.4 --tree %s path)\" && lua5.4 -e 'require \"orch\"' && lua5.4 use.lua")
      :format(h.q(tree))
    code, out, err = sh(("cd %s && %ssh -c %s"):format(h.q(script), CLEAN_ENV, h.q(inner)))
    h.rm(tree)
    h.rm(script)
    assert.equal(0, code, (out or "") .. (err or ""))
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal(tree .. "/share/lua/5.4/orch/init.lua", lines[1])
    assert.equal("my_orchestration_test", lines[2])
    assert.matches("^my_orchestration_test: 3 h", lines[3])
    assert.equal("m", lines[4])
    assert.matches("orch.sleep needs the orchlua host's loop %(run the event with orchlua%)$", lines[5])
  end)
end)
