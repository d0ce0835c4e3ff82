-- orchlua's engine as a rock: the Lua modules orch and orch.*, for code that
-- runs outside the orchlua binary (plain lua5.4, busted specs of events,
-- tools that read descriptions).  The binary itself is built by `make`, and
-- it never needs this rock: its own copies of these modules are compiled in.
--
-- What works outside the host: require "orch", loading and validating
-- descriptions (orch.description, orch.jsonc, orch.schema), plans
-- (orch.plan), orch.fixture, orch.ResultReporter (add_result/info/error/
-- metric on any queue), orch.config, orch.cli's parsing.  What does not:
-- everything that waits on the loop.  orch.sleep, orch.now, orch.spawn,
-- orch.exec, orch.net.connect and ResultReporter:monitor raise
-- "... needs the orchlua host's loop (run the event with orchlua)".
--
-- No C module is installed.  orch.core (tasks, timers, queue, TCP) and
-- orch.sys live in the host: orch.core keeps its loop in the Lua state's
-- extra space, which only orchlua sets up, so a copy built as a loadable
-- .so could do nothing in plain lua5.4 but raise "orch.core needs the
-- orchlua host".  The orch.* modules load without it and degrade as above.
--
-- lua-cjson (description loading) is not a declared dependency, so that an
-- offline `luarocks make` works: Debian's lua-cjson (apt install lua-cjson)
-- provides it system-wide, and luarocks does not see Debian packages as
-- rocks.  Online, `luarocks install lua-cjson` does the same.
--
-- Install, from the repository root, with no network:
--   luarocks --lua-version 5.4 --tree lua_modules make rockspec/orchlua-scm-1.rockspec
--   eval "$(luarocks --lua-version 5.4 --tree lua_modules path)"
--   lua5.4 -e 'print(require("orch").version)'
-- spec/e2e/rocks_spec.lua checks that the module map below names every
-- file under lua/ and nothing else.
rockspec_format = "3.0"
package = "orchlua"
version = "scm-1"
source = {
  url = "git+https://github.com/orchlua/orchlua.git",
}
description = {
  summary = "Long-running orchestrated soak tests: the orchlua engine's Lua modules",
  detailed = [[
    orchlua runs JSON-described soak, endurance and performance tests whose
    events are Lua functions on a libuv loop.  This rock installs the
    engine's Lua modules (require "orch") for use outside the orchlua
    binary: description loading and validation, plans, fixtures and the
    ResultReporter.  Helpers that wait on the loop raise a clear error
    outside the host.
  ]],
  homepage = "https://github.com/orchlua/orchlua",
  license = "MIT",
  labels = { "testing", "soak", "libuv" },
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "builtin",
  modules = {
    ["orch"] = "lua/orch/init.lua",
    ["orch.class"] = "lua/orch/class.lua",
    ["orch.cli"] = "lua/orch/cli.lua",
    ["orch.config"] = "lua/orch/config.lua",
    ["orch.checks"] = "lua/orch/checks.lua",
    ["orch.description"] = "lua/orch/description.lua",
    ["orch.engine"] = "lua/orch/engine.lua",
    ["orch.help"] = "lua/orch/help.lua",
    ["orch.fleet"] = "lua/orch/fleet.lua",
    ["orch.health"] = "lua/orch/health.lua",
    ["orch.host"] = "lua/orch/host.lua",
    ["orch.jsonc"] = "lua/orch/jsonc.lua",
    ["orch.live"] = "lua/orch/live.lua",
    ["orch.net"] = "lua/orch/net.lua",
    ["orch.order"] = "lua/orch/order.lua",
    ["orch.output.atomic"] = "lua/orch/output/atomic.lua",
    ["orch.output.console"] = "lua/orch/output/console.lua",
    ["orch.output.html"] = "lua/orch/output/html.lua",
    ["orch.output.progress"] = "lua/orch/output/progress.lua",
    ["orch.output.json"] = "lua/orch/output/json.lua",
    ["orch.output.jsonl"] = "lua/orch/output/jsonl.lua",
    ["orch.output.junit"] = "lua/orch/output/junit.lua",
    ["orch.output.lines"] = "lua/orch/output/lines.lua",
    ["orch.output.status"] = "lua/orch/output/status.lua",
    ["orch.plan"] = "lua/orch/plan.lua",
    ["orch.process"] = "lua/orch/process.lua",
    ["orch.records"] = "lua/orch/records.lua",
    ["orch.registry"] = "lua/orch/registry.lua",
    ["orch.report"] = "lua/orch/report.lua",
    ["orch.report_args"] = "lua/orch/report_args.lua",
    ["orch.resolve"] = "lua/orch/resolve.lua",
    ["orch.result_reporter"] = "lua/orch/result_reporter.lua",
    ["orch.resume"] = "lua/orch/resume.lua",
    ["orch.scan"] = "src/scan.c",   -- the report reader, C for plain Lua too
    ["orch.fs"] = "src/fs.c",       -- files and the terminal, C for plain Lua too
    ["orch.columns"] = "src/columns.c", -- tables as text, C for plain Lua too
    ["orch.schema"] = "lua/orch/schema.lua",
    ["orch.sources"] = "lua/orch/sources.lua",
    ["orch.suggest"] = "lua/orch/suggest.lua",
  },
}
-- The plain-Lua specs.  `luarocks test` fetches busted as a rock (network);
-- offline, `make test` runs these and every other suite.
test = {
  type = "busted",
  flags = { "--lua=lua5.4", "spec/unit" },
}
