-- End-to-end specs of --sink postgresql:// and orchlua ship against a real
-- PostgreSQL started here (spec/pg.lua): rows equal the report's lines,
-- ship twice stores nothing twice, a rotated report ships as one run, and
-- what goes wrong at run time (a server away at the start, a role that
-- cannot log in, a schema it may not write) is said once and harms
-- neither the run nor the report.  Every row carries its run's labels.
local h = require "helper"
local pg = require "pg"

local EVENTS = [[
local M = {}
function M.tick(result_reporter, event, size)
  result_reporter:metric("tick", event.iteration, { pad = string.rep("y", size) })
end
function M.odd(event)
  if event.iteration % 2 == 1 then error("odd iteration " .. event.iteration) end
end
return M
]]

-- 6 description seconds at --time-scale 3: 2 s real
local DESC = [[
{ "test_name": "s", "total_hours": 0.0016667,
  "events": [
    { "name": "tick", "interval_sec": 0.05, "params": { "size": 10 } },
    { "name": "odd", "interval_sec": 1 }
  ] }
]]

local function lines_of(path)
  local n = 0
  for _ in io.lines(path) do n = n + 1 end
  return n
end

describe("postgresql sink", function()
  local dir, db
  setup(function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/s.json"] = DESC })
    db = pg.start()
  end)
  teardown(function()
    pg.clean(db)
    h.rm(dir)
  end)

  local function rows(run_id)
    return tonumber(pg.value(db, ("SELECT count(*) FROM orchlua_records WHERE run_id = '%s'"):format(run_id)))
  end
  local function dups()
    return tonumber(pg.value(db, "SELECT count(*) FROM (SELECT run_id, seq FROM orchlua_records"
      .. " GROUP BY 1, 2 HAVING count(*) > 1) d"))
  end

  it("stores every record of the run once, and the run's row", function()
    local code, _, err = h.run(("run s -q --time-scale 3 --report a.jsonl --label device=d1 --param size=3 --sink %s")
      :format(h.q(db.url)), dir)
    assert.are.equal(1, code, err)   -- odd fails: the verdict is the run's
    assert.matches("sink postgresql:///postgres%?host=.-: all %d+ records stored", err)
    local recs = h.jsonl(dir .. "/a.jsonl")
    local id = recs[1].run_id
    assert.are.equal(#recs, rows(id))
    assert.are.equal(0, dups())
    local run = pg.query(db, ("SELECT test_name, labels->>'device', params->'tick'->>'size', exit_status,"
      .. " ended IS NOT NULL FROM orchlua_runs WHERE run_id = '%s'"):format(id))
    assert.are.same({ "s|d1|3|1|t" }, run)
    -- the columns come from the record
    local r = pg.query(db, ("SELECT seq, type, event, t, ts = (record->>'ts')::timestamptz FROM orchlua_records"
      .. " WHERE run_id = '%s' AND seq = %d"):format(id, #recs))
    assert.matches("^" .. #recs .. "|run_end||[%d.]+|t$", r[1])
    -- every row: t and ts as the record says them, the run's labels
    assert.are.same({ "0" }, pg.query(db, ("SELECT count(*) FROM orchlua_records WHERE run_id = '%s' AND"
      .. " (t IS DISTINCT FROM (record->>'t')::float8 OR ts IS DISTINCT FROM (record->>'ts')::timestamptz"
      .. " OR labels <> '{\"device\": \"d1\"}')"):format(id)))
    -- ship afterwards: nothing new, nothing twice
    local code2, out = h.run(("ship a.jsonl --sink %s"):format(h.q(db.url)), dir)
    assert.are.equal(0, code2)
    assert.matches("0 records stored now", out)
    assert.are.equal(#recs, rows(id))
  end)

  it("every row carries the run's labels, also in a table an older orchlua made without the column", function()
    pg.query(db, "CREATE DATABASE olddb")
    local old = { url = (db.url:gsub("/postgres%?", "/olddb?")) }
    -- the tables as orchlua made them before labels were in every row, a row in them
    local gone = "5e1f4a3b-1111-4222-8333-444455556666"
    pg.query(old, "CREATE TABLE orchlua_runs (run_id uuid PRIMARY KEY, test_name text,"
      .. " labels jsonb NOT NULL DEFAULT '{}', params jsonb NOT NULL DEFAULT '{}', started timestamptz,"
      .. " ended timestamptz, exit_status integer);"
      .. " CREATE TABLE orchlua_records (run_id uuid NOT NULL, seq bigint NOT NULL, type text, event text,"
      .. " t double precision, ts timestamptz, record jsonb NOT NULL, UNIQUE (run_id, seq));"
      .. (" INSERT INTO orchlua_records VALUES ('%s', 1, 'run_start', NULL, 0, now(), '{}')"):format(gone))
    local code, _, err = h.run(("run s -q --time-scale 3 --report lab.jsonl --label device=d7 --label site=lab-3"
      .. " --sink %s"):format(h.q(old.url)), dir)
    assert.are.equal(1, code, err)
    assert.matches("all %d+ records stored", err)
    local function labelled(id, labels)
      return tonumber(pg.value(old, ("SELECT count(*) FROM orchlua_records WHERE run_id = '%s' AND labels = '%s'")
        :format(id, labels)))
    end
    local recs = h.jsonl(dir .. "/lab.jsonl")
    assert.are.equal(#recs, labelled(recs[1].run_id, '{"device": "d7", "site": "lab-3"}'))
    assert.are.equal(1, labelled(gone, "{}"))   -- rows stored before: {}
    -- a role that may insert but not create: the column is there, it ships
    pg.query(old, "CREATE ROLE inserter LOGIN; GRANT SELECT, INSERT ON orchlua_records TO inserter;"
      .. " GRANT SELECT, INSERT, UPDATE ON orchlua_runs TO inserter")
    code, _, err = h.run("run s -q --time-scale 3 --report lab2.jsonl --label device=d8", dir)
    assert.are.equal(1, code, err)
    local c, out, e = h.run(("ship lab2.jsonl --sink %s"):format(h.q(old.url:gsub("user=orch", "user=inserter"))), dir)
    assert.are.equal(0, c, e)
    local recs2 = h.jsonl(dir .. "/lab2.jsonl")
    assert.matches(#recs2 .. " records stored now", out)
    assert.are.equal(#recs2, labelled(recs2[1].run_id, '{"device": "d8"}'))
  end)

  it("ship uploads a run made without a sink, twice gives the same rows; a rotated report is one run", function()
    local code, _, err = h.run("run s -q --time-scale 3 --param tick.size=400 --report b.jsonl --report-max-mb 0.02", dir)
    assert.are.equal(1, code, err)
    assert.is_not_nil(io.open(dir .. "/b.2.jsonl"), "rotated at least twice")
    local total, n = 0, 0
    while true do
      local p = dir .. (n == 0 and "/b.jsonl" or ("/b.%d.jsonl"):format(n))
      if not io.open(p) then break end
      total, n = total + lines_of(p), n + 1
    end
    local id = h.jsonl(dir .. "/b.jsonl")[1].run_id
    for _ = 1, 2 do
      local c, out, e = h.run(("ship b.jsonl --sink %s"):format(h.q(db.url)), dir)
      assert.are.equal(0, c, e)
      assert.matches("complete up to seq " .. total, out)
      assert.are.equal(total, rows(id))
    end
    assert.are.equal(0, dups())
    assert.are.same({ "1" }, pg.query(db, ("SELECT exit_status FROM orchlua_runs WHERE run_id = '%s'"):format(id)))
    -- the tail lost (a store restored from an older backup): ship puts it back
    pg.query(db, ("DELETE FROM orchlua_records WHERE run_id = '%s' AND seq > %d"):format(id, total - 5))
    local c, out = h.run(("ship b.jsonl --sink %s"):format(h.q(db.url)), dir)
    assert.are.equal(0, c)
    assert.matches("5 records stored now", out)
    assert.are.equal(total, rows(id))
    -- holes below the max (rows deleted, a backup restored): ship fills them
    pg.query(db, ("DELETE FROM orchlua_records WHERE run_id = '%s' AND seq BETWEEN 10 AND 20"):format(id))
    c, out = h.run(("ship b.jsonl --sink %s"):format(h.q(db.url)), dir)
    assert.are.equal(0, c)
    assert.matches("11 records stored now", out)
    assert.are.equal(total, rows(id))
    assert.are.equal(0, dups())
  end)

  it("follows a rotating report from segment to segment while the run goes on", function()
    local code, _, err = h.run(("run s -q --time-scale 3 --param tick.size=400 --report r.jsonl --report-max-mb 0.02"
      .. " --sink %s"):format(h.q(db.url)), dir)
    assert.are.equal(1, code, err)
    assert.is_not_nil(io.open(dir .. "/r.2.jsonl"), "rotated at least twice")
    assert.matches("all %d+ records stored", err)
    local total = 0
    for n = 0, 1000 do
      local p = dir .. (n == 0 and "/r.jsonl" or ("/r.%d.jsonl"):format(n))
      if not io.open(p) then break end
      total = total + lines_of(p)
    end
    assert.are.equal(total, rows(h.jsonl(dir .. "/r.jsonl")[1].run_id))
  end)

  it("stores odd records whole: escapes, a NUL escape, a nested type, no ts, odd times", function()
    h.write(dir .. "/odd.jsonl", table.concat({
      '{"seq":1,"type":"run_start","run_id":"6f0e2f1c-1111-4222-8333-444455556666","t":0,'
        .. '"ts":"2026-12-07T00:00:00.000Z","labels":{},"params":{}}',
      [==[{"seq":2,"t":1.5,"data":{"type":"fake","s":"tab\t quote\" back\\ nul\u0000"},"type":"result",]==]
        .. [==["event":"e\"x","ts":"2026-12-07T00:00:01.500Z"}]==],
      '{"seq":3,"type":"result","t":null,"ts":"yesterday","event":{"id":"x"}}',
      '{"seq":4,"type":"result","t":1e999,"ts":"2028-02-29T23:59:59.99999951Z"}',
      '{"seq":5,"type":"result","t":-2.5e-3,"ts":"2026-02-30T00:00:00.000Z"}',
      '{"seq":6,"type":"result","t":3,"ts":"2026-12-07T00:00:01.123456Z","type":"metric"}',
      '{"seq":7,"type":"run_end","status":0,"t":2,"ts":"2026-12-07T00:00:02.000Z"}',
      '{"seq":8,"type":"resu',
    }, "\n"))
    local code, out, err = h.run(("ship odd.jsonl --sink %s"):format(h.q(db.url)), dir)
    assert.are.equal(0, code, err)
    assert.matches("complete up to seq 7 %(an unfinished last line", out)
    local got = pg.query(db, "SELECT seq, type, coalesce(event, '-'), coalesce(t::text, '-'), ts IS NULL,"
      .. " record->'data'->>'s' FROM orchlua_records WHERE run_id = '6f0e2f1c-1111-4222-8333-444455556666'"
      .. " ORDER BY seq")
    assert.are.equal('1|run_start|-|0|f|', got[1])
    assert.are.equal('2|result|e\\"x|1.5|f|tab\t quote" back\\ nul\u{FFFD}', got[2])
    assert.are.equal('3|result|{"id":"x"}|-|t|', got[3])
    assert.are.equal(7, #got)
    -- t out of a double's range: none; ts as the server reads it (rounded
    -- to microseconds, a leap day), none for a day no month has; of two
    -- equal keys the last, in the column as in the record
    local times = pg.query(db, "SELECT seq, type, coalesce(t::text, '-'), ts IS NULL,"
      .. " CASE WHEN seq = 5 THEN ts IS NULL ELSE ts = (record->>'ts')::timestamptz END, record->>'type'"
      .. " FROM orchlua_records WHERE run_id = '6f0e2f1c-1111-4222-8333-444455556666' AND seq BETWEEN 4 AND 6"
      .. " ORDER BY seq")
    assert.are.same({ "4|result|-|f|t|result", "5|result|-0.0025|t|t|result", "6|metric|3|f|t|metric" }, times)
    assert.are.same({ "0" }, pg.query(db, "SELECT exit_status FROM orchlua_runs"
      .. " WHERE run_id = '6f0e2f1c-1111-4222-8333-444455556666'"))
  end)

  it("two ships of one run at once: each row once (the second meets the first's rows and skips them)", function()
    local id = "0b7c9a4e-2222-4333-8444-555566667777"
    local f = io.open(dir .. "/big.jsonl", "w")
    f:write(('{"seq":1,"type":"run_start","run_id":"%s","t":0,"ts":"2026-12-07T00:00:00.000Z"}\n'):format(id))
    for i = 2, 120000 do
      f:write(('{"seq":%d,"type":"result","event":"e","level":"info","t":%d,"ts":"2026-12-07T00:00:01.000Z",'
        .. '"data":{"i":%d}}\n'):format(i, i, i))
    end
    f:close()
    local cmd = ("cd %s && %s ship big.jsonl --sink %s"):format(h.q(dir), h.q(h.bin), h.q(db.url))
    os.execute(("(%s > s1.out 2>&1; echo $? > s1.rc) & (%s > s2.out 2>&1; echo $? > s2.rc) & wait")
      :format(cmd, cmd))
    assert.are.equal("0", h.read(dir .. "/s1.rc"):match("%d+"), h.read(dir .. "/s1.out"))
    assert.are.equal("0", h.read(dir .. "/s2.rc"):match("%d+"), h.read(dir .. "/s2.out"))
    assert.are.equal(120000, rows(id))
    assert.are.equal(0, dups())
    assert.are.same({ "120000" }, pg.query(db, ("SELECT max(seq) FROM orchlua_records WHERE run_id = '%s'"):format(id)))
  end)

  it("a database that lost the run's rows (restored from a backup) gets them again when the sink reconnects", function()
    -- 2 s into the run: its rows deleted and the sink's session ended
    -- (two commands: the deletion committed before the session ends; the
    -- sink may store a batch between them, leaving a hole below its max)
    local del = "DELETE FROM orchlua_records WHERE run_id IN (SELECT run_id FROM orchlua_runs WHERE test_name = 'lost')"
    local term = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'orchlua'"
    os.execute(("(sleep 2; psql -X -q %s -c %s -c %s) >/dev/null 2>&1 &"):format(h.q(db.url), h.q(del), h.q(term)))
    h.write(dir .. "/descriptions/lost.json", (DESC:gsub('"s"', '"lost"'):gsub("0.0016667", "0.0033333")))
    local code, _, err = h.run(("run lost -q --time-scale 3 --report l.jsonl --sink %s"):format(h.q(db.url)), dir,
      "ORCHLUA_SINK_WAIT=30")
    assert.are.equal(1, code, err)
    assert.matches("all %d+ records stored", err)
    local recs = h.jsonl(dir .. "/l.jsonl")
    assert.are.equal(#recs, rows(recs[1].run_id))
    assert.are.equal(0, dups())
  end)

  it("ship: a database it cannot reach is exit 1, and the error says why", function()
    local code, _, err = h.run(("ship b.jsonl --sink %s"):format(h.q("postgresql:///postgres?host=" .. dir
      .. "/nowhere&user=orch")), dir)
    assert.are.equal(1, code)
    assert.matches("cannot connect", err)
  end)

  it("a server down at the start: the run goes on, the sink stores everything once it is up", function()
    local db2 = pg.start()
    pg.stop(db2)
    local url = db2.url
    -- start the server again while the run goes on (4 s real)
    local bg = ("(sleep 1.5; %s restart %s) >/dev/null 2>&1 &"):format(h.q(h.root .. "/tools/pgtmp.sh"), h.q(db2.dir))
    os.execute(bg)
    local code, _, err = h.run(("run s -q --time-scale 1.5 --report c.jsonl --sink %s"):format(h.q(url)), dir,
      "ORCHLUA_SINK_WAIT=30")
    local ok, e = pcall(function()
      assert.are.equal(1, code, err)
      local _, said = err:gsub("cannot connect[^\n]-retrying", "")
      assert.are.equal(1, said, err)   -- said once, however many retries
      assert.matches("connected again", err)
      assert.matches("all %d+ records stored", err)
      local recs = h.jsonl(dir .. "/c.jsonl")
      local n = tonumber(pg.value(db2, ("SELECT count(*) FROM orchlua_records WHERE run_id = '%s'")
        :format(recs[1].run_id)))
      assert.are.equal(#recs, n)
    end)
    pg.clean(db2)
    assert(ok, e)
  end)

  it("a role that cannot log in or may not create the tables: said once, the run and its report unharmed", function()
    pg.query(db, "CREATE ROLE weak LOGIN")
    -- a fresh database, whose public schema weak may not write (PostgreSQL 15)
    pg.query(db, "CREATE DATABASE weakdb")
    local weak = db.url:gsub("user=orch", "user=weak"):gsub("/postgres%?", "/weakdb?")
    local code, _, err = h.run(("run s -q --time-scale 3 --report d.jsonl --sink %s"):format(h.q(weak)), dir,
      "ORCHLUA_SINK_WAIT=1")
    assert.are.equal(1, code, err)
    local _, said = err:gsub("permission denied[^\n]-retrying", "")
    assert.are.equal(1, said, err)
    assert.matches("records not stored yet", err)
    assert.matches("orchlua ship .-d%.jsonl", err)
    assert.are.equal(lines_of(dir .. "/d.jsonl"), #h.jsonl(dir .. "/d.jsonl"))
    local nobody = db.url:gsub("user=orch", "user=nobody")
    code, _, err = h.run(("run s -q --time-scale 3 --report e.jsonl --sink %s"):format(h.q(nobody)), dir,
      "ORCHLUA_SINK_WAIT=1")
    assert.are.equal(1, code, err)
    local _, said2 = err:gsub("role \"nobody\" does not exist[^\n]-retrying", "")
    assert.are.equal(1, said2, err)
    -- a wrong password: the role pw must give one (scram), and gives the wrong one
    local hba = db.dir .. "/data/pg_hba.conf"
    h.write(hba, "local all pw scram-sha-256\n" .. h.read(hba))
    pg.query(db, "CREATE ROLE pw LOGIN PASSWORD 'right'")
    pg.query(db, "SELECT pg_reload_conf()")
    local wrong = db.url:gsub("user=orch", "user=pw&password=wrong")
    code, _, err = h.run(("run s -q --time-scale 3 --report w.jsonl --sink %s"):format(h.q(wrong)), dir,
      "ORCHLUA_SINK_WAIT=1")
    assert.are.equal(1, code, err)
    local _, said3 = err:gsub("password authentication failed[^\n]-retrying", "")
    assert.are.equal(1, said3, err)
    assert.not_matches("wrong", err)   -- the password is never shown
    assert.are.equal(lines_of(dir .. "/w.jsonl"), #h.jsonl(dir .. "/w.jsonl"))
    -- shipped later, by a role that may
    local c2, _, e2 = h.run(("ship e.jsonl --sink %s"):format(h.q(db.url)), dir)
    assert.are.equal(0, c2, e2)
    assert.are.equal(lines_of(dir .. "/e.jsonl"), rows(h.jsonl(dir .. "/e.jsonl")[1].run_id))
  end)

  it("a table locked for a minute: the run ends without waiting, says how far behind the sink is, ship catches up", function()
    -- the tables made (by a ship), then locked for a minute from a
    -- session of its own, ended
    -- once the run is over
    h.write(dir .. "/tiny.jsonl", '{"seq":1,"type":"run_start","run_id":"7a3e5d2c-3333-4444-8555-666677778888",'
      .. '"t":0,"ts":"2026-12-07T00:00:00.000Z"}\n')
    assert.are.equal(0, (h.run(("ship tiny.jsonl --sink %s"):format(h.q(db.url)), dir)))
    local hold = ("(psql -X -q %s -c 'BEGIN' -c 'LOCK TABLE orchlua_records' -c 'SELECT pg_sleep(60)' -c 'COMMIT')"
      .. " >/dev/null 2>&1 &"):format(h.q(db.url .. "&application_name=locker"))
    os.execute(hold)
    os.execute("sleep 0.5")
    local code, _, err = h.run(("run s -q --time-scale 3 --report g.jsonl --sink %s"):format(h.q(db.url)), dir,
      "ORCHLUA_SINK_WAIT=1")
    assert.are.equal(1, code, err)
    -- it ended while the lock was held: it did not wait for the database
    assert.matches("records not stored yet", err)
    pg.query(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'locker'")
    local c, out, e = h.run(("ship g.jsonl --sink %s"):format(h.q(db.url)), dir)
    assert.are.equal(0, c, e)
    local recs = h.jsonl(dir .. "/g.jsonl")
    assert.matches("complete up to seq " .. #recs, out)
    assert.are.equal(#recs, rows(recs[1].run_id))
  end)

  it("without --report, a sink ships from a report file it names", function()
    local code, _, err = h.run(("run s -q --time-scale 3 --sink %s"):format(h.q(db.url)), dir)
    assert.are.equal(1, code, err)
    local path = err:match("without %-%-report it is (%S+%.jsonl)")
    assert.is_not_nil(path, err)
    local recs = h.jsonl(dir .. "/" .. path)
    assert.are.equal(#recs, rows(recs[1].run_id))
  end)
end)
