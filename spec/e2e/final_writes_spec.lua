-- A signal during the final writes (after the loop: JUnit, the HTML page
-- made from the report, run_end, the summary) is not swallowed: the write
-- running stops without leaving a file, the summary says what was not
-- written, run_end records the signal's status and orchlua exits with it.
local h = require "helper"
local cjson = require "cjson"

-- ~1.2 M metric results: ~190 MB of report, a page that takes a while to make
local EVENTS = [[
local orch = require "orch"
return {
  flood = function(result_reporter, kill_switch)
    for i = 1, 1200000 do
      result_reporter:metric("m" .. (i % 50), i % 977, { k = i % 7 })
      if i % 1000 == 0 then orch.sleep(0) end
    end
    kill_switch:set()   -- the run ends when the flood is in, however slow the machine
  end,
}
]]
local DESC = '{ "test_name": "big", "total_hours": 0.05, "events": [ { "name": "flood" } ] }'

local function last_line(path)
  local f = assert(io.open(path, "rb"))
  local size = f:seek("end")
  f:seek("set", math.max(0, size - 4096))
  local tail = f:read("a")
  f:close()
  return tail:match("([^\n]+)\n?$")
end

describe("a signal during the final writes", function()
  local dir
  after_each(function() h.rm(dir) end)

  it("stops the HTML page (no file), says so, and exits with the signal's status", function()
    dir = h.project({ ["events/ev.lua"] = EVENTS, ["descriptions/big.json"] = DESC })
    -- SIGINT once orchlua says it is writing the page (it flushes that line first)
    os.execute(("cd %s && { %s run big -q --report r.jsonl --junit r.xml --html r.html >out 2>err & p=$!; "
      .. "i=0; while [ $i -lt 30000 ] && ! grep -qs 'a signal stops it' out; do sleep 0.01; i=$((i+1)); done; "
      .. "kill -INT $p; wait $p; echo $? > code; }"):format(h.q(dir), h.q(h.bin)))
    local out, err = h.read(dir .. "/out"), h.read(dir .. "/err")
    assert.matches("writing the HTML page from %d+ MiB of records %(a signal stops it%)", out)
    assert.equal("130", h.read(dir .. "/code"):match("%d+"), out .. err)
    assert.truthy(out:find("orchlua: SIGINT during the final writes: stopping them\n", 1, true), out)
    assert.truthy(out:find("orchlua: --html r.html not written (`orchlua report r.jsonl --html r.html` makes it)\n",
      1, true), out)
    assert.truthy(out:find("\nexit 130: stopped by SIGINT", 1, true), out)
    assert.truthy(out:find("it came during the final writes, after the run had ended", 1, true), out)
    assert.falsy(out:find("\nhtml: r.html", 1, true), out)
    assert.truthy(out:find("\njunit: r.xml", 1, true), out)   -- written before the signal
    -- no page, whole or cut, and no temporary file left beside it
    local p = io.popen("ls -A " .. h.q(dir))
    local names = p:read("a")
    p:close()
    assert.equal(".orchlua\ncode\ndescriptions\nerr\nevents\nout\nr.jsonl\nr.xml\n", names)
    -- the report is whole and ends the run with the signal's status
    local run_end = cjson.decode(last_line(dir .. "/r.jsonl"))
    assert.equal("run_end", run_end.type)
    assert.equal(130, run_end.status)
    assert.equal(1200000, run_end.results)
    -- and the page can be made from it afterwards
    local code
    code, out = h.run("report r.jsonl --html r.html", dir)
    assert.is_true(code == 0 or code == 1, out)
    assert.truthy(h.read(dir .. "/r.html"):find("</html>", 1, true))
  end)
end)
