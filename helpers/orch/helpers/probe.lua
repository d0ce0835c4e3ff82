-- orch.helpers.probe: TCP and HTTP health probes for soak tests.
--
-- Built on orch.net, so a probe waits on the loop and never blocks it: a
-- dead or slow service costs its own event a timeout and nothing else.
--
--   local probe = require "orch.helpers.probe"
--   function M.api_health(result_reporter, url)          -- interval_sec: 10
--     probe.check(result_reporter, url, { timeout = 2, match = "healthy" })
--   end
--
-- probe.tcp(host, port, [opts]) -> result
--   opts.timeout  seconds for the whole probe (default 5)
--   opts.send     bytes to write once connected
--   opts.expect   a Lua pattern the bytes read back must match (a banner)
-- probe.http(url, [opts]) -> result                  (http:// only, no TLS)
--   opts.timeout  seconds for the whole probe (default 5)
--   opts.method   "GET"; opts.headers {name = value}; opts.body (a string)
--   opts.expect   a status, a list of statuses, or fn(status) -> bool
--                 (default: any 2xx or 3xx)
--   opts.match    a Lua pattern the body must match
--   opts.max_body bytes of body kept (default 1 MiB)
-- probe.run(target, [opts]) -> result: "tcp://host:port" or "http://..."
-- probe.report(result_reporter, result, [opts]) -> result.ok
--   ok: metric "<name>.latency" (seconds); failed: an error result (or
--   opts.level = "info"), with the target, the reason and what was seen.
--   opts.name defaults to "probe".
-- probe.check(result_reporter, target, [opts]) -> result: run + report.
--
-- A result: { ok = bool, target =, latency = real seconds (connect to last
-- byte), connect = real seconds to connect, status = (http),
-- headers = (http, lower-case names), body = (http), data = (tcp, with
-- expect), error = "why it failed" }.  A failed probe never raises; misuse
-- (a bad URL, a bad option) does.
--
-- Timeouts bound real work: --time-scale never shortens them; latencies
-- are real time.
local orch = require "orch"

local M = {}

local DEFAULT_TIMEOUT = 5
local MAX_BODY = 1024 * 1024

local function net() return orch.net end

-- Raises at the line that called probe.<fname>; depth: how many helper
-- frames lie between that function and argerror (0 when it calls directly).
local function argerror(fname, msg, depth)
  error(("orch.helpers.probe.%s: %s"):format(fname, msg), 3 + (depth or 0))
end

local function check_opts(fname, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerror(fname, ("opts must be a table, got %s"):format(type(opts)), 1) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      argerror(fname, ("unknown option %s (known: %s)"):format(tostring(k), table.concat(names, ", ")), 1)
    end
  end
  if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout ~= opts.timeout or opts.timeout <= 0) then
    argerror(fname, ("timeout must be a number > 0, got %s"):format(tostring(opts.timeout)), 1)
  end
  return opts
end

-- Outside the orchlua host there is no loop to wait on: say so at the
-- caller's line rather than deep inside orch.net.
local function need_host(fname)
  if not pcall(orch.now) then
    error(("orch.helpers.probe.%s needs the orchlua host's loop (run the event with orchlua)"):format(fname), 3)
  end
end

-- A deadline in real time (orch.net's timeouts are): left() is what
-- remains of it.
local function deadline(timeout)
  local start = net().clock()
  return function()
    local l = timeout - (net().clock() - start)
    return l > 0 and l or 0
  end
end

local TCP_OPTS = { timeout = true, send = true, expect = true, name = true, level = true }

function M.tcp(host, port, opts)
  opts = check_opts("tcp", opts, TCP_OPTS)
  need_host("tcp")
  local target = ("tcp://%s:%s"):format(host, tostring(port))
  local left = deadline(opts.timeout or DEFAULT_TIMEOUT)
  local t0 = net().clock()
  local r = { ok = false, target = target }
  local conn, err = net().connect(host, port, { timeout = left() })
  if not conn then
    r.error = err
    return r
  end
  r.connect = net().clock() - t0
  if opts.send then
    local ok, werr = conn:write(opts.send, left())
    if not ok then
      conn:close()
      r.error = "write: " .. werr
      return r
    end
  end
  if opts.expect then
    local seen = ""
    while not seen:find(opts.expect) do
      local chunk, rerr = conn:read(left())
      if not chunk then
        conn:close()
        r.data = seen
        r.error = ("expected %q, %s after %q"):format(opts.expect, rerr, seen:sub(1, 200))
        return r
      end
      seen = seen .. chunk
    end
    r.data = seen
  end
  conn:close()
  r.latency = net().clock() - t0
  r.ok = true
  return r
end

-- ---- HTTP -----------------------------------------------------------------

-- "http://host[:port][/path]" -> host, port, path (raises on anything else)
local function parse_url(url)
  if type(url) ~= "string" then argerror("http", ("url must be a string, got %s"):format(type(url)), 1) end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then argerror("http", ("expected a URL like http://host:port/path, got %q"):format(url), 1) end
  scheme = scheme:lower()
  if scheme == "https" then
    argerror("http", ("%s: https is not supported (orchlua has no TLS); probe the port with probe.tcp"):format(url), 1)
  elseif scheme ~= "http" then
    argerror("http", ("%s: only http:// URLs are supported"):format(url), 1)
  end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  path = path:gsub("#.*$", "")
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then argerror("http", ("%s: no host in the URL"):format(url), 1) end
  port = port ~= "" and tonumber(port) or 80
  if port < 1 or port > 65535 then argerror("http", ("%s: port must be 1..65535"):format(url), 1) end
  return host, math.tointeger(port), path, authority
end

local function status_ok(expect, status)
  if expect == nil then return status >= 200 and status < 400 end
  if type(expect) == "number" then return status == expect end
  if type(expect) == "function" then return expect(status) and true or false end
  for _, s in ipairs(expect) do if s == status then return true end end
  return false
end

local function expected_text(expect)
  if expect == nil then return "2xx or 3xx" end
  if type(expect) == "number" then return tostring(expect) end
  if type(expect) == "function" then return "a status the expect function accepts" end
  local parts = {}
  for i, s in ipairs(expect) do parts[i] = tostring(s) end
  return table.concat(parts, " or ")
end

-- Reads a chunked body from conn; returns body or nil, err.
local function read_chunked(conn, left, max)
  local parts, size = {}, 0
  while true do
    local line, err = conn:read_line(left())
    if not line then return nil, "chunk size: " .. err end
    local n = tonumber(line:match("^%s*(%x+)"), 16)
    if not n then return nil, ("bad chunk size line %q"):format(line) end
    if n == 0 then
      repeat   -- trailers, up to the empty line
        line, err = conn:read_line(left())
        if not line then return nil, "chunk trailer: " .. err end
      until line == ""
      return table.concat(parts)
    end
    local data
    data, err = conn:read_bytes(n, left())
    if not data then return nil, "chunk: " .. err end
    if size < max then parts[#parts + 1] = data:sub(1, max - size) end
    size = size + n
    line, err = conn:read_line(left())
    if not line then return nil, "chunk end: " .. err end
  end
end

local HTTP_OPTS = { timeout = true, method = true, headers = true, body = true, expect = true,
                    match = true, max_body = true, name = true, level = true }

function M.http(url, opts)
  opts = check_opts("http", opts, HTTP_OPTS)
  local host, port, path, authority = parse_url(url)
  need_host("http")
  local e = opts.expect
  if e ~= nil and type(e) ~= "number" and type(e) ~= "table" and type(e) ~= "function" then
    argerror("http", ("expect must be a status, a list of statuses or a function, got %s"):format(type(e)))
  end
  local r = { ok = false, target = url }
  local left = deadline(opts.timeout or DEFAULT_TIMEOUT)
  local max = opts.max_body or MAX_BODY
  local t0 = net().clock()
  local conn, err = net().connect(host, port, { timeout = left() })
  if not conn then
    r.error = err
    return r
  end
  r.connect = net().clock() - t0
  local function fail(why)
    conn:close()
    r.error = why
    return r
  end
  local req = { ("%s %s HTTP/1.1"):format(opts.method or "GET", path),
                "Host: " .. authority, "User-Agent: orchlua-probe", "Connection: close" }
  for k, v in pairs(opts.headers or {}) do req[#req + 1] = ("%s: %s"):format(k, v) end
  if opts.body then req[#req + 1] = "Content-Length: " .. #opts.body end
  local ok, werr = conn:write(table.concat(req, "\r\n") .. "\r\n\r\n" .. (opts.body or ""), left())
  if not ok then return fail("write: " .. werr) end
  -- status line, headers
  local line, rerr = conn:read_line(left())
  if not line then return fail("no response: " .. rerr) end
  local status = tonumber(line:match("^HTTP/%d[.%d]* (%d%d%d)"))
  if not status then return fail(("not an HTTP response: %q"):format(line:sub(1, 200))) end
  r.status = status
  r.headers = {}
  while true do
    line, rerr = conn:read_line(left())
    if not line then return fail("headers: " .. rerr) end
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then r.headers[k:lower()] = v end
  end
  -- body
  local body
  local length = tonumber(r.headers["content-length"] or "")
  if (opts.method or "GET") == "HEAD" or status == 204 or status == 304 then
    body = ""
  elseif (r.headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    body, rerr = read_chunked(conn, left, max)
  elseif length then
    body, rerr = conn:read_bytes(math.tointeger(length) or 0, left())
  else
    body, rerr = conn:read_all(left())
  end
  conn:close()
  if not body then
    r.error = "body: " .. rerr
    return r
  end
  r.latency = net().clock() - t0
  r.body = body:sub(1, max)
  if not status_ok(e, status) then
    r.error = ("status %d, expected %s"):format(status, expected_text(e))
  elseif opts.match and not r.body:find(opts.match) then
    r.error = ("body does not match %q: %q"):format(opts.match, r.body:sub(1, 200))
  else
    r.ok = true
  end
  return r
end

-- ---- run, report, check -----------------------------------------------------

function M.run(target, opts)
  if type(target) ~= "string" then argerror("run", ("target must be a string, got %s"):format(type(target))) end
  local host, port = target:match("^tcp://%[(.+)%]:(%d+)$")
  if not host then host, port = target:match("^tcp://([^:/]+):(%d+)/?$") end
  if host then return M.tcp(host, math.tointeger(tonumber(port)), opts) end
  if target:match("^https?://") then return M.http(target, opts) end
  argerror("run", ("expected tcp://host:port or an http:// URL, got %q"):format(target))
end

function M.report(result_reporter, r, opts)
  opts = opts or {}
  local name = opts.name or "probe"
  local level = opts.level or "error"
  if level ~= "error" and level ~= "info" then
    argerror("report", ("level must be \"error\" or \"info\", got %s"):format(tostring(level)))
  end
  if r.ok then
    result_reporter:metric(name .. ".latency", r.latency, { target = r.target, status = r.status })
    return true
  end
  result_reporter[level](result_reporter, ("%s: %s failed: %s"):format(name, r.target, r.error),
    { target = r.target, status = r.status, probe = name })
  return false
end

function M.check(result_reporter, target, opts)
  local r = M.run(target, opts)
  M.report(result_reporter, r, opts)
  return r
end

return M
