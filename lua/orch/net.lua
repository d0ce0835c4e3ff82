-- orch.net: TCP connections for events, on the host's loop.  Every wait
-- (resolving, connecting, reading, writing) yields the calling event, so a
-- slow or dead peer never holds up the other events.
--
--   local net = require "orch.net"          -- or require("orch").net
--   local conn <close>, err = net.connect("device.local", 8080, { timeout = 5 })
--   if not conn then return result_reporter:error(err) end
--   conn:write("GET / HTTP/1.0\r\n\r\n")
--   local reply = conn:read_all(5)
--
-- Two error channels, as in orch.core: misuse raises; a network failure
-- returns nil, message, code (code as libuv names it: "ECONNREFUSED"), and
-- a timeout returns nil, "timeout".  Timeouts bound real work: N seconds
-- are never less than N real seconds, whatever --time-scale (a rehearsal
-- must not fail where the real run would pass); net.clock() is real time,
-- for measuring latency.
--
-- Outside the orchlua host (plain lua5.4, busted) the module loads, and
-- each function that needs the loop says so when called.
local core = require("orch.host").core
if core and core.tcp_connect == nil then core = nil end

local M = {}

local function host(what)
  if not core then
    error(("orch.net.%s needs the orchlua host's loop (run the event with orchlua)"):format(what), 3)
  end
  return core
end

local Conn = {}
Conn.__index = Conn
Conn.__name = "orch.net.Conn"

function Conn.__close(self) self:close() end
function Conn.__tostring(self) return ("orch.net.Conn (%s%s)"):format(self.peer,
  self._c:is_closed() and ", closed" or "") end

-- the time left of a timeout that started at `start` (real time, as the
-- timeouts below are)
local function left(timeout, start)
  if timeout == nil then return nil end
  local l = timeout - (core.hrtime() - start) / 1e9
  return l > 0 and l or 0
end

local function check_timeout(timeout, what)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout) then
    error(("%s: timeout must be a number of seconds >= 0, got %s"):format(what, tostring(timeout)), 3)
  end
end

-- net.connect(host, port, [opts]) -> conn | nil, message, code.
-- opts.timeout (seconds) covers resolving and connecting.
function M.connect(hostname, port, opts)
  local c = host("connect")
  if type(hostname) ~= "string" or hostname == "" then
    error(("orch.net.connect: host must be a non-empty string, got %s"):format(tostring(hostname)), 2)
  end
  if math.type(port) ~= "integer" and not (type(port) == "string" and tonumber(port)) then
    error(("orch.net.connect: port must be an integer, got %s"):format(tostring(port)), 2)
  end
  port = math.tointeger(tonumber(port))
  if port == nil or port < 1 or port > 65535 then
    error(("orch.net.connect: port must be 1..65535, got %s"):format(tostring(port)), 2)
  end
  if type(opts) == "number" then opts = { timeout = opts } end
  opts = opts or {}
  check_timeout(opts.timeout, "orch.net.connect")
  local raw, err, code = c.tcp_connect(hostname, port, opts.timeout)
  if not raw then return nil, err, code end
  return setmetatable({ _c = raw, _buf = "", peer = raw:peer() }, Conn)
end

-- conn:write(data, [timeout]) -> true | nil, message, code
function Conn:write(data, timeout)
  check_timeout(timeout, "conn:write")
  return self._c:write(data, timeout)
end

-- conn:read([timeout]) -> the bytes that have arrived (at least one),
-- waiting while none has | nil, "eof" | nil, "timeout" | nil, message, code
function Conn:read(timeout)
  check_timeout(timeout, "conn:read")
  if self._buf ~= "" then
    local s = self._buf
    self._buf = ""
    return s
  end
  return self._c:read(timeout)
end

-- Reads until want(buffer) returns a cut position; the timeout covers the
-- whole wait.
local function read_until(self, timeout, want, what)
  check_timeout(timeout, what)
  local start = timeout and core.hrtime()
  while true do
    local n = want(self._buf)
    if n then
      local s = self._buf:sub(1, n)
      self._buf = self._buf:sub(n + 1)
      return s
    end
    local chunk, err, code = self._c:read(left(timeout, start))
    if not chunk then return nil, err, code end
    self._buf = self._buf .. chunk
  end
end

-- conn:read_line([timeout]) -> the next line without its "\n" or "\r\n"
-- | nil, "eof" (a last line without "\n" is returned before the "eof")
-- | nil, "timeout" | nil, message, code
function Conn:read_line(timeout)
  local eof_seen = false
  local line, err, code = read_until(self, timeout, function(buf)
    local i = buf:find("\n", 1, true)
    if i then return i end
  end, "conn:read_line")
  if not line and err == "eof" and self._buf ~= "" then
    line, self._buf, eof_seen = self._buf, "", true
  end
  if not line then return nil, err, code end
  if not eof_seen then line = line:sub(1, -2) end
  return (line:gsub("\r$", ""))
end

-- conn:read_bytes(n, [timeout]) -> exactly n bytes | nil, "eof" | ...
function Conn:read_bytes(n, timeout)
  if math.type(n) ~= "integer" or n < 0 then
    error(("conn:read_bytes: n must be an integer >= 0, got %s"):format(tostring(n)), 2)
  end
  return read_until(self, timeout, function(buf) if #buf >= n then return n end end,
    "conn:read_bytes")
end

-- conn:read_all([timeout]) -> every byte until the peer closes
-- | nil, "timeout" | nil, message, code
function Conn:read_all(timeout)
  check_timeout(timeout, "conn:read_all")
  local start = timeout and core.hrtime()
  local parts = { self._buf }
  self._buf = ""
  while true do
    local chunk, err, code = self._c:read(left(timeout, start))
    if not chunk then
      if err == "eof" then return table.concat(parts) end
      return nil, err, code
    end
    parts[#parts + 1] = chunk
  end
end

-- conn:close(): a second close is harmless.  Also `local c <close> = ...`.
function Conn:close() self._c:close() end

function Conn:is_closed() return self._c:is_closed() end

-- net.clock() -> seconds of real, monotonic time (--time-scale does not
-- apply: network latency is real).
function M.clock()
  return host("clock").hrtime() / 1e9
end

M.Conn = Conn
return M
