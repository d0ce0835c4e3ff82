-- orchlua under valgrind's memcheck: the seed's example and a description
-- using every feature (spec/e2e/fixtures/valgrind), time-scaled, with no
-- memcheck error and nothing definitely or indirectly lost.  Also run alone
-- by `make valgrind`.  It runs the plain build (./orchlua): a sanitized
-- build (make check-asan sets ORCHLUA_BIN) cannot run under valgrind, and
-- is skipped there.
local h = require "helper"

-- 99: memcheck found an error or a definite/indirect leak; orchlua's own
-- statuses are 0, 1, 2 and 128+N.  Forked children are silent until they
-- exec (the programs they run are not traced).
local VALGRIND = "valgrind -q --error-exitcode=99 --leak-check=full"
  .. " --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect"
  .. " --child-silent-after-fork=yes --num-callers=30"

local function have_valgrind()
  return os.execute("valgrind --version >/dev/null 2>&1") == true
end

-- Runs the plain orchlua under memcheck in dir; returns status, stdout,
-- stderr (orchlua's and memcheck's).
local function memcheck(args, dir, env)
  local out, err = os.tmpname(), os.tmpname()
  local cmd = ("cd %s && %s %s %s %s >%s 2>%s"):format(h.q(dir), env or "", VALGRIND,
    h.q(h.plain_bin), args, out, err)
  local _, _, code = os.execute(cmd)
  local o, e = h.read(out), h.read(err)
  os.remove(out); os.remove(err)
  return code, o, e
end

-- What memcheck said, without orchlua's own lines.
local function memcheck_lines(err)
  local lines = {}
  for line in err:gmatch("[^\n]+") do
    if line:match("^==%d+==") then lines[#lines + 1] = line end
  end
  return table.concat(lines, "\n")
end

local skip = not have_valgrind() or os.getenv("ORCHLUA_BIN") ~= nil

describe("under valgrind (memcheck)", function()
  local dir
  after_each(function() h.rm(dir) end)

  if skip then
    pending(os.getenv("ORCHLUA_BIN") and "a sanitized build runs without valgrind"
      or "valgrind is not installed (make deps installs it)")
    return
  end

  it("runs the seed's example without an error or a leak", function()
    -- the repository's events and descriptions, with a grace long enough
    -- for the stand-in processes to stop at valgrind's pace
    dir = h.project({ [".orchlua"] = ("return { descriptions = %q, sources = { %q }, grace_sec = 3600 }\n")
      :format(h.root .. "/descriptions", h.root .. "/events/playback.lua") })
    local code, out, err = memcheck("run my_orchestration_test --time-scale 1800 -q --report r.jsonl", dir,
      "ORCHLUA_DEBUG_STATS=1")
    assert.equal("", memcheck_lines(err))
    assert.equal(0, code, out .. err)
    assert.matches("handles=0 tasks=0 refs=0", err)
    local recs = h.jsonl(dir .. "/r.jsonl")
    assert.equal("run_end", recs[#recs].type)
    assert.equal(0, recs[#recs].failures)
    -- 36 + 1 + 1, as `orchlua plan` says (a firing due while the previous
    -- playback still runs is skipped, at valgrind's pace)
    assert.equal(38, recs[#recs].invocations + recs[#recs].skipped)
  end)

  it("runs a description using every feature without an error or a leak", function()
    dir = h.tmpdir()
    local code, _, err = memcheck(("run every_feature --time-scale 4 -q --report %s --junit %s")
      :format(h.q(dir .. "/r.jsonl"), h.q(dir .. "/r.xml")), h.root .. "/spec/e2e/fixtures/valgrind",
      "ORCHLUA_DEBUG_STATS=1")
    assert.equal("", memcheck_lines(err))
    assert.equal(1, code, err)          -- it has failing events on purpose
    assert.matches("handles=0 tasks=0 refs=0", err)
    local seen = {}
    for _, r in ipairs(h.jsonl(dir .. "/r.jsonl")) do
      local st = r.status or r.level or ""
      local key = r.type .. ":" .. tostring(r.id or r.event or "") .. ":" .. tostring(math.tointeger(st) or st)
      seen[key] = true
    end
    assert.matches("<testsuite", h.read(dir .. "/r.xml"))
    for _, want in ipairs({ "invocation:work:ok", "invocation:c_ping:ok", "invocation:processes:ok",
                            "invocation:fails:error", "invocation:slow:timeout",
                            "invocation:overlap_replace:cancelled", "skipped:overlap_forbid:",
                            "invocation:final:ok", "result:fails:error", "result::info",
                            "run_end::1" }) do
      assert(seen[want], want .. " is missing")
    end
  end)
end)
