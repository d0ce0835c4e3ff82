-- bench/scrape.lua PORT SECONDS OUT.json: scrapes http://127.0.0.1:PORT/metrics
-- once a second over one keep-alive connection, as Prometheus does, for
-- SECONDS (it waits for the server to come up first), and writes each
-- scrape's time (request sent to last byte read, ms) and size to OUT.json.
local uv = require "luv"
local cjson = require "cjson"

local port, seconds, out = tonumber(arg[1]), tonumber(arg[2]), arg[3]
local times, sizes, errors = {}, {}, 0
local conn, buf, sent_at, want, busy
local started

local function reset()
  if conn and not conn:is_closing() then conn:close() end
  conn, buf, busy = nil, "", false
end

-- the head is kept until whole; the body is only counted (8 MB at 10,000
-- events: concatenating it would cost the scraper more than the server)
local got = 0
local function on_data(err, chunk)
  if err or not chunk then errors = errors + 1; return reset() end
  if not want then
    buf = buf .. chunk
    local he = buf:find("\r\n\r\n", 1, true)
    if not he then return end
    want = he + 3 + tonumber(buf:match("Content%-Length: (%d+)") or 0)
    got = #buf
    buf = ""
  else
    got = got + #chunk
  end
  if got >= want then
    times[#times + 1] = (uv.hrtime() - sent_at) / 1e6
    sizes[#sizes + 1] = want
    want, busy, got = nil, false, 0
  end
end

local function scrape()
  if busy then return end
  busy = true
  local function send()
    sent_at = uv.hrtime()
    conn:write("GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
  end
  if conn then return send() end
  conn, buf, want = uv.new_tcp(), "", nil
  conn:connect("127.0.0.1", port, function(err)
    if err then return reset() end   -- not up yet: the next tick tries again
    started = started or uv.hrtime()
    conn:read_start(on_data)
    send()
  end)
end

local tick = uv.new_timer()
local deadline = uv.hrtime() + (seconds + 30) * 1e9
tick:start(0, 1000, function()
  if (started and uv.hrtime() - started > seconds * 1e9) or uv.hrtime() > deadline then
    tick:close()
    reset()
    return
  end
  scrape()
end)
uv.run()

local f = assert(io.open(out, "w"))
f:write(cjson.encode({ times_ms = times, sizes = sizes, errors = errors }))
f:close()
