-- orchlua-helpers: event building blocks for soak tests, written on
-- orchlua's public API only (require "orch": orch.spawn, orch.sys,
-- orch.net, orch.sleep, the kill switch and the ResultReporter).
--
--   orch.helpers.supervise  a process kept running, restarted when it dies,
--                           each restart reported
--   orch.helpers.tail       a log file followed, matching lines reported
--   orch.helpers.sample     orch.sys figures (machine, processes) as metrics
--   orch.helpers.probe      TCP and HTTP health probes that never block the loop
--
-- Pure Lua: nothing to compile.  The helpers run inside the orchlua host,
-- which provides "orch" itself; orchlua finds a project's lua_modules
-- tree with no configuration.  Install, from the repository root, with no
-- network:
--   luarocks --lua-version 5.4 --tree lua_modules make rockspec/orchlua-helpers-scm-1.rockspec
-- and in a project of your own, point --tree at its lua_modules.
--
-- "orchlua" is deliberately not a declared dependency: the host carries
-- the orch modules, and a declared one would make luarocks fetch the
-- orchlua rock from a server, which an offline install cannot do.
-- Outside the host (plain lua5.4 with the orchlua rock), the helpers load,
-- and each one that waits says it needs the orchlua host when called.
rockspec_format = "3.0"
package = "orchlua-helpers"
version = "scm-1"
source = {
  url = "git+https://github.com/orchlua/orchlua.git",
}
description = {
  summary = "orchlua event helpers: supervised processes, log tailing, sampling, health probes",
  detailed = [[
    Building blocks for orchlua soak-test events: a supervised process that
    is restarted when it dies and reports its restarts; a file tailer that
    reports matching log lines; a periodic sampler that turns orch.sys
    figures into metrics; TCP and HTTP health probes on the host's loop.
  ]],
  homepage = "https://github.com/orchlua/orchlua",
  license = "MIT",
  labels = { "testing", "soak", "orchlua" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
-- The build type is "none" with an explicit module map under install.lua,
-- not "builtin": luarocks' builtin back-end also copies the whole lua/
-- folder of the directory it runs in, and this rock is made from the
-- repository root, where lua/ holds the engine.  A builtin helpers rock
-- would install a second copy of orch and orch.*, which in a project's
-- lua_modules would shadow the engine's own modules under
-- ORCHLUA_LUA_DIR.  spec/e2e/rocks_spec.lua checks that only
-- orch/helpers/*.lua is installed.
build = {
  type = "none",
  install = {
    lua = {
      ["orch.helpers.probe"] = "helpers/orch/helpers/probe.lua",
      ["orch.helpers.sample"] = "helpers/orch/helpers/sample.lua",
      ["orch.helpers.supervise"] = "helpers/orch/helpers/supervise.lua",
      ["orch.helpers.tail"] = "helpers/orch/helpers/tail.lua",
    },
  },
}
-- The helpers' specs run events in the real binary: build it first (make).
-- `luarocks test` fetches busted as a rock (network); offline, `make test`
-- runs these specs with every other suite.
test = {
  type = "busted",
  flags = { "--lua=lua5.4", "spec/e2e/helpers_spec.lua" },
}
