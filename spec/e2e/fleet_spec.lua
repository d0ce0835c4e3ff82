-- The fleet test: 8 orchlua processes at once, one per "device" (its own
-- --label device=... and --param), one PostgreSQL sink URL; the server is
-- stopped for a few seconds in the middle and started again; one process
-- is killed with SIGKILL and shipped afterwards.  Then, for every run, the
-- rows equal the JSONL lines, nothing is stored twice, and the queries of
-- deploy/sql/ give the per-device numbers the JSONL files give.
local h = require "helper"
local pg = require "pg"
local cjson = require "cjson"

-- work fails every fail_every-th iteration: each device its own count
local EVENTS = [[
local M = {}
function M.work(result_reporter, event, fail_every, device)
  result_reporter:metric("load", event.iteration % 7, { device = device })
  if event.iteration % fail_every == fail_every - 1 then error("planned failure on " .. device) end
end
function M.idle() end
return M
]]

-- 40 description seconds at --time-scale 4: 10 s real
local DESC = [[
{ "test_name": "fleet", "total_hours": 0.011111,
  "events": [
    { "name": "work", "interval_sec": 0.1, "params": { "fail_every": 5, "device": "unset" } },
    { "name": "idle", "interval_sec": 1 }
  ] }
]]

local N = 8
local KILLED = 8

local function sleep(s) os.execute("sleep " .. s) end

local function exists(path)
  local f = io.open(path)
  if f then f:close() return true end
  return false
end

describe("a fleet of 8 runs into one PostgreSQL", function()
  local dir, db
  setup(function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/fleet.json"] = DESC })
    db = pg.start()
  end)
  teardown(function()
    -- no orchlua left behind, whatever failed
    for i = 1, N do
      local pid = h.read(("%s/d%d.pid"):format(dir, i))
      if pid and pid:match("%d+") then os.execute("kill -9 " .. pid:match("%d+") .. " 2>/dev/null") end
    end
    pg.clean(db)
    h.rm(dir)
  end)

  it("stores every run exactly once through a server restart and a SIGKILL, and deploy/sql answers per device", function()
    -- each device: its own label and fail_every (2..9)
    for i = 1, N do
      local cmd = ("cd %s && echo $$ > d%d.pid && ORCHLUA_SINK_WAIT=60 exec %s run fleet -q --time-scale 4"
        .. " --report d%d.jsonl --label device=dev%d --param fail_every=%d --param work.device=dev%d --sink %s")
        :format(h.q(dir), i, h.q(h.bin), i, i, i + 1, i, h.q(db.url))
      os.execute(("(sh -c %s > %s/d%d.out 2> %s/d%d.err; echo $? > %s/d%d.rc) &")
        :format(h.q(cmd), h.q(dir), i, h.q(dir), i, h.q(dir), i))
    end
    -- 2.5 s in: the server goes away for 3 s
    sleep(2.5)
    pg.stop(db)
    sleep(1)
    -- the device killed while the server is away: what it wrote since is shipped later
    local pid = h.read(("%s/d%d.pid"):format(dir, KILLED)):match("%d+")
    os.execute("kill -9 " .. pid)
    sleep(2)
    pg.restart(db)
    -- every other run ends and its sink catches up (the runs: 10 s, the wait at most 60 s)
    for i = 1, N do
      local waited = 0
      while not exists(("%s/d%d.rc"):format(dir, i)) and waited < 120 do
        sleep(0.2)
        waited = waited + 0.2
      end
      assert.is_true(exists(("%s/d%d.rc"):format(dir, i)), "device " .. i .. " never ended")
    end
    for i = 1, N do
      local rc = tonumber(h.read(("%s/d%d.rc"):format(dir, i)))
      local err = h.read(("%s/d%d.err"):format(dir, i))
      if i == KILLED then
        assert.are.equal(137, rc)
      else
        assert.are.equal(1, rc, err)   -- planned failures: the verdict is 1
        assert.matches("all %d+ records stored", err)
        -- the server's absence was met, said, and got over
        assert.matches("retrying with back%-off", err)
        assert.matches("connected again", err)
        -- each failure said once: a restart can cut the COPY, close the
        -- connection and refuse the next connect (three different lines),
        -- but no line comes twice
        local said = {}
        for line in err:gmatch("[^\n]+") do
          if line:find("retrying with back-off", 1, true) then
            assert.is_nil(said[line], "errors said once each: " .. err)
            said[line] = true
          end
        end
      end
    end
    -- the killed run, shipped (its last line may be cut by the kill)
    local code, out, err = h.run(("ship d%d.jsonl --sink %s"):format(KILLED, h.q(db.url)), dir)
    assert.are.equal(0, code, err)
    assert.matches("shipped", out)

    -- per run: rows = complete JSONL lines, seq 1..n, nothing twice
    local expect = {}
    for i = 1, N do
      local recs, lines = {}, 0
      for line in io.lines(("%s/d%d.jsonl"):format(dir, i)) do
        lines = lines + 1
        local ok, r = pcall(cjson.decode, line)
        if ok then recs[#recs + 1] = r end
      end
      assert.is_true(#recs >= lines - 1)
      local id = recs[1].run_id
      local got = pg.query(db, ("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM orchlua_records"
        .. " WHERE run_id = '%s'"):format(id))[1]
      assert.are.equal(("%d|%d|1|%d"):format(#recs, #recs, #recs), got, "device " .. i)
      local inv, fail = 0, 0
      for _, r in ipairs(recs) do
        if r.type == "invocation" then
          inv = inv + 1
          if r.status ~= "ok" then fail = fail + 1 end
        end
      end
      assert.is_true(fail > 0 and inv > fail)
      expect[i] = { id = id, inv = inv, fail = fail, recs = recs }
    end
    assert.are.equal("0", pg.value(db, "SELECT count(*) FROM (SELECT 1 FROM orchlua_records"
      .. " GROUP BY run_id, seq HAVING count(*) > 1) d"))

    local sql = h.root .. "/deploy/sql/"
    -- runs per label: one run per device; the killed one unfinished
    local per_label = {}
    for _, row in ipairs(pg.query(db, nil, sql .. "runs_per_label.sql")) do per_label[#per_label + 1] = row end
    assert.are.equal(N, #per_label)
    for i = 1, N do
      local fin = i == KILLED and "0|0|1" or "0|1|0"
      assert.are.equal(("device|dev%d|1|%s"):format(i, fin), per_label[i])
    end
    -- failures per device, as the JSONL has them
    local fails = pg.query(db, nil, sql .. "failures_per_device.sql")
    assert.are.equal(N, #fails)
    for i = 1, N do
      local dev, inv, fail = fails[i]:match("^dev(%d)|(%d+)|(%d+)|0$")
      assert.are.equal(i, tonumber(dev))
      assert.are.equal(expect[i].inv, tonumber(inv), "device " .. i)
      assert.are.equal(expect[i].fail, tonumber(fail), "device " .. i)
    end
    -- p99 duration per event per device: two events per device, counts as the JSONL's
    local p99 = pg.query(db, nil, sql .. "p99_duration_per_event_per_device.sql")
    assert.are.equal(2 * N, #p99)
    for _, row in ipairs(p99) do
      local dev, ev, n, p50, p99v, max = row:match("^dev(%d)|(%a+)|(%d+)|([^|]+)|([^|]+)|([^|]+)$")
      local count, durs = 0, {}
      for _, r in ipairs(expect[tonumber(dev)].recs) do
        if r.type == "invocation" and r.event == ev then count = count + 1; durs[#durs + 1] = r.duration end
      end
      assert.are.equal(count, tonumber(n), row)
      table.sort(durs)
      assert.are.equal(durs[#durs], tonumber(max))
      assert.is_true(tonumber(p50) <= tonumber(p99v) and tonumber(p99v) <= tonumber(max))
    end
    -- checks failed across the fleet: a check record (as the checks
    -- workstream writes them) in two devices' reports, shipped
    for _, i in ipairs({ 3, 5 }) do
      local r = expect[i].recs[#expect[i].recs]
      local path = ("%s/d%d.jsonl"):format(dir, i)
      local text = h.read(path)
      local f = io.open(path, "a")
      if not text:match("\n$") then f:write("\n") end
      f:write(cjson.encode({ seq = r.seq + 1, type = "check", name = "battery_low", status = "fail",
                             value = 3, min = 20, t = r.t, ts = r.ts }), "\n")
      f:close()
      local c, _, e = h.run(("ship d%d.jsonl --sink %s"):format(i, h.q(db.url)), dir)
      assert.are.equal(0, c, e)
    end
    local checks = pg.query(db, nil, sql .. "checks_failed.sql")
    assert.are.equal(1, #checks)
    assert.matches("^battery_low|2|2|dev3,dev5|", checks[1])
  end)
end)
