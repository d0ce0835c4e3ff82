-- orch.fleet: what makes one description serve many devices: params and
-- labels from the command line or the environment, the run's id, and the
-- sinks that stream its records to a store (orch.sink does the shipping).
local suggest = require "orch.suggest"

local M = {}

-- A UUID v4 from the kernel's random bytes.
function M.uuid()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(16)
  if f then f:close() end
  if not b or #b < 16 then
    -- no /dev/urandom (a chroot): time and address still tell runs apart
    math.randomseed(os.time(), math.floor(os.clock() * 1e6))
    local t = {}
    for i = 1, 16 do t[i] = string.char(math.random(0, 255)) end
    b = table.concat(t)
  end
  local x = { b:byte(1, 16) }
  x[7] = (x[7] & 0x0f) | 0x40   -- version 4
  x[9] = (x[9] & 0x3f) | 0x80   -- RFC 4122 variant
  local h = {}
  for i = 1, 16 do h[i] = ("%02x"):format(x[i]) end
  local s = table.concat(h)
  return s:sub(1, 8) .. "-" .. s:sub(9, 12) .. "-" .. s:sub(13, 16) .. "-" .. s:sub(17, 20) .. "-" .. s:sub(21)
end

-- The environment as a list of {name, value}, sorted by name (os.getenv
-- cannot list it).
local function environ()
  local list = {}
  local f = io.open("/proc/self/environ", "rb")
  if not f then return list end
  local text = f:read("a") or ""
  f:close()
  for entry in text:gmatch("([^%z]+)") do
    local k, v = entry:match("^([^=]+)=(.*)$")
    if k then list[#list + 1] = { k, v } end
  end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  return list
end
M.environ = environ

-- ---- labels ----------------------------------------------------------------

-- labels from ORCHLUA_LABEL_<KEY> (key lowercased), then --label KEY=VALUE
-- (wins).  Returns labels (key -> string) or nil, message.
function M.labels(flags, env)
  local labels = {}
  for _, kv in ipairs(env or environ()) do
    local key = kv[1]:match("^ORCHLUA_LABEL_(.+)$")
    if key then
      key = key:lower()
      if not key:match("^[%a_][%w_]*$") then
        return nil, ("environment %s: a label name is letters, digits and _, found %q"):format(kv[1], key)
      end
      labels[key] = kv[2]
    end
  end
  for _, s in ipairs(flags or {}) do
    local key, value = s:match("^([^=]*)=(.*)$")
    if not key then return nil, ("--label expects KEY=VALUE, found %q"):format(s) end
    if not key:match("^[%a_][%w_]*$") then
      return nil, ("--label %s: a label name is letters, digits and _ (as Prometheus has them), found %q")
        :format(s, key)
    end
    labels[key] = value
  end
  return labels
end

-- ---- params ----------------------------------------------------------------

-- A --param value: JSON, or a bare word as a string.
local function param_value(text)
  local cjson = require "cjson.safe"
  local v = cjson.decode(text)
  if v == nil or v == cjson.null then
    -- not JSON (or a bare null): the text itself
    return text
  end
  -- cjson reads every number as a float: 3 stays an integer (a count)
  if math.type(v) == "float" and math.tointeger(v) then return math.tointeger(v) end
  return v
end
M.param_value = param_value

-- The overrides asked for: { {id = event id or nil, name =, value =, from =} },
-- the environment's first (ORCHLUA_PARAM_<NAME>), then --param's in order,
-- so that a later one wins.  Returns the list or nil, message.
function M.param_overrides(flags, env)
  local list = {}
  for _, kv in ipairs(env or environ()) do
    local name = kv[1]:match("^ORCHLUA_PARAM_(.+)$")
    if name then
      list[#list + 1] = { name = name, value = param_value(kv[2]), from = "environment " .. kv[1], env = true }
    end
  end
  for _, s in ipairs(flags or {}) do
    local key, text = s:match("^([^=]+)=(.*)$")
    if not key then return nil, ("--param expects NAME=VALUE or ID.NAME=VALUE, found %q"):format(s) end
    list[#list + 1] = { key = key, value = param_value(text), from = "--param " .. s }
  end
  return list
end

-- Applies the overrides to desc.events[i].params (before the events are
-- bound).  NAME= sets every event whose params has NAME; ID.NAME= one
-- event's, and wins over NAME= whatever their order.  A name from the
-- environment also matches a param of another case (ORCHLUA_PARAM_VIDEO_PATH
-- sets video_path).  Returns true or nil, message (with a did-you-mean).
function M.apply_params(desc, overrides)
  if #overrides == 0 then return true end
  local ids, names = {}, {}
  for _, ev in ipairs(desc.events) do
    ids[ev.id] = ev
    for k in pairs(ev.params or {}) do names[k] = true end
  end
  local function find_name(name, env)
    if names[name] then return name end
    if env then
      for k in pairs(names) do if k:upper() == name:upper() then return k end end
    end
    return nil
  end
  local per_event = {}
  for _, o in ipairs(overrides) do
    if o.key then
      -- ID.NAME: the longest event id the key starts with
      local best
      for id in pairs(ids) do
        if o.key:sub(1, #id + 1) == id .. "." and (best == nil or #id > #best) then best = id end
      end
      if best then o.id, o.name = best, o.key:sub(#best + 2) else o.name = o.key end
    end
    if o.id then
      local ev = ids[o.id]
      if not (ev.params and ev.params[o.name] ~= nil) then
        local have = {}
        for k in pairs(ev.params or {}) do have[#have + 1] = k end
        return nil, ("%s: event %q has no param %q%s (its params: %s)"):format(o.from, o.id, o.name,
          suggest.hint(o.name, have), #have > 0 and table.concat(have, ", ") or "none")
      end
      per_event[#per_event + 1] = o
    else
      local name = find_name(o.name, o.env)
      if not name then
        local have, all = {}, {}
        for k in pairs(names) do have[#have + 1] = k end
        for id in pairs(ids) do all[#all + 1] = id end
        local hint = suggest.hint(o.name, have)
        if hint == "" and o.name:find(".", 1, true) then
          hint = suggest.hint(o.name:match("^(.-)%."), all):gsub("did you mean ", "did you mean the event ")
        end
        table.sort(have)
        return nil, ("%s: no event has a param %q%s (params: %s)"):format(o.from, o.name, hint,
          #have > 0 and table.concat(have, ", ") or "none")
      end
      for _, ev in ipairs(desc.events) do
        if ev.params and ev.params[name] ~= nil then ev.params[name] = o.value end
      end
    end
  end
  for _, o in ipairs(per_event) do ids[o.id].params[o.name] = o.value end
  return true
end

-- The params in force, per event id (run_start's `params`).
function M.params_in_force(events)
  local t = {}
  for _, ev in ipairs(events) do t[ev.id] = ev.params or {} end
  return t
end

-- Reads --param and ORCHLUA_PARAM_* for a command and applies them to desc;
-- returns true or nil, message.
function M.params_for(desc, flags)
  local list, e = M.param_overrides(flags)
  if not list then return nil, e end
  return M.apply_params(desc, list)
end

-- ---- sinks -----------------------------------------------------------------

local SCHEMES = { "postgresql", "postgres" }

-- The URL as messages show it: no password.
function M.display(url)
  local shown = url:gsub("^(%a[%w+.-]*://[^:/@?]*):[^@/?]*@", "%1:***@")
  shown = shown:gsub("([?&]password=)[^&]*", "%1***")
  return shown
end

-- Checks a sink URL before the run: its scheme, and that libpq can parse
-- it (libpq is loaded here, so a machine without it is told now).
-- Returns true or nil, message.
function M.check_url(url, where)
  where = where or "--sink"
  local scheme = url:match("^(%a[%w+.-]*)://")
  if not scheme then
    return nil, ("%s %s: expected a URL such as postgresql://user@host:5432/db"
      .. " (or postgresql:///db?host=/run/postgresql)")
      :format(where, M.display(url))
  end
  local known = false
  for _, k in ipairs(SCHEMES) do if scheme:lower() == k then known = true end end
  if not known then
    local hint = suggest.hint(scheme:lower(), SCHEMES)
    if hint == "" then hint = " (orchlua knows postgresql://)" else hint = " (did you mean postgresql://?)" end
    return nil, ("%s %s: unknown sink scheme %q%s"):format(where, M.display(url), scheme .. "://", hint)
  end
  local ok, e = require("orch.sink").check(url)
  if not ok then
    -- libpq quotes the URL: not its password
    local at = e:find(url, 1, true)
    if at then e = e:sub(1, at - 1) .. M.display(url) .. e:sub(at + #url) end
    return nil, ("%s %s: %s"):format(where, M.display(url), e)
  end
  return true
end

-- The sinks asked for: --sink's, else the config's `sinks`.
local function sink_urls(o, cfg)
  if o.sink and #o.sink > 0 then return o.sink, "--sink" end
  if cfg and cfg.sinks and #cfg.sinks > 0 then return cfg.sinks, (cfg.file or ".orchlua") .. ": sinks" end
  return nil
end

local Fleet = {}
Fleet.__index = Fleet

-- What `orchlua run` needs from the fleet options: { labels =, run_id =,
-- sinks = (URLs) } or nil, message (a usage error: exit 2).  A sink needs
-- the report file it ships from: without --report one is made here
-- (o.report is set).
function M.run_options(o, desc, cfg)
  local labels, e = M.labels(o.label)
  if not labels then return nil, e end
  local f = setmetatable({ labels = labels, run_id = M.uuid() }, Fleet)
  if o.report_max_mb then
    local mb = tonumber(o.report_max_mb)
    if not mb or mb <= 0 or mb ~= mb or mb == math.huge then
      return nil, ("--report-max-mb expects a number > 0, found %q"):format(o.report_max_mb)
    end
    f.max_bytes = math.max(4096, math.floor(mb * 1048576))
  end
  local urls, where = sink_urls(o, cfg)
  if urls then
    for _, url in ipairs(urls) do
      local ok, e2 = M.check_url(url, where)
      if not ok then return nil, e2 end
    end
    f.sinks = urls
    if not o.report then
      o.report = ("%s-%s.jsonl"):format(desc.test_name, f.run_id)
      io.stderr:write(("orchlua: --sink ships from the report file: without --report it is %s\n"):format(o.report))
    end
  elseif f.max_bytes and not o.report then
    return nil, "--report-max-mb needs --report FILE.jsonl"
  end
  return f
end

-- The report is open: rotation set, the sinks' threads started.
function Fleet:start(jsonl, path)
  if not jsonl then return end
  if self.max_bytes then jsonl.w:rotate(self.max_bytes) end
  self.jsonl, self.path = jsonl, path
  if not self.sinks then return end
  local sink = require "orch.sink"
  self.running = {}
  for _, url in ipairs(self.sinks) do
    self.running[#self.running + 1] = { name = M.display(url), s = sink.start(url, path, M.display(url)) }
  end
end

-- The run is over and the report closed: each sink gets a few seconds to
-- store the rest, then orchlua says how far behind it is.  The exit status
-- is the run's: a sink behind is caught up by `orchlua ship`.
function Fleet:finish(status)
  if not self.running then return status end
  local core = require "orch.core"
  local wait = tonumber(os.getenv("ORCHLUA_SINK_WAIT") or "") or 5
  local last = self.jsonl.last_seq or 0
  local t0 = core.hrtime()
  for _, r in ipairs(self.running) do
    local behind = last - r.s:state().stored
    local left = math.max(0.2, wait - (core.hrtime() - t0) / 1e9)
    local st = r.s:finish(left)
    local took = (core.hrtime() - t0) / 1e9
    local rate = st.busy > 0 and st.records / st.busy or 0
    if st.stored >= last then
      io.stderr:write(("orchlua: sink %s: all %d records stored (%d sent by this run, %.0f records/s while shipping;"
        .. " %d behind at the run's end, caught up in %.2f s)\n"):format(r.name, last, st.records, rate, behind, took))
    else
      io.stderr:write(("orchlua: sink %s: %d of %d records not stored yet (stored up to seq %d%s); "
        .. "`orchlua ship %s --sink URL` catches up\n")
        :format(r.name, last - st.stored, last, st.stored, st.error and ("; last error: " .. st.error) or "",
                self.path))
    end
  end
  return status
end

-- ---- ship ------------------------------------------------------------------

-- orchlua ship RUN.jsonl --sink URL: 0 stored, 1 a database error, 2 bad input.
function M.ship(path, o, cfg)
  local urls, where = sink_urls(o, cfg)
  if not urls then return nil, "ship needs --sink URL (or sinks in .orchlua)" end
  local f = io.open(path, "rb")
  if not f then return nil, ("%s: cannot read the file"):format(path) end
  local first = f:read("l")
  f:close()
  local ok, rec = pcall(require("cjson").decode, first or "")
  if not ok or type(rec) ~= "table" or rec.type ~= "run_start" then
    return nil, ("%s:1: expected a run_start record (an orchlua --report file), found %s"):format(path,
      first == nil and "an empty file" or "something else")
  end
  if type(rec.run_id) ~= "string" then
    return nil, ("%s:1: the run_start has no run_id (a report from an orchlua before fleets)"):format(path)
  end
  for _, url in ipairs(urls) do
    local good, e = M.check_url(url, where)
    if not good then return nil, e end
  end
  local status = 0
  local retry = tonumber(os.getenv("ORCHLUA_SHIP_RETRY") or "") or 0
  for _, url in ipairs(urls) do
    local st = require("orch.sink").ship(url, path, M.display(url), retry)
    if st.error then
      io.stderr:write(("orchlua: ship %s to %s: %s (stored up to seq %d)\n")
        :format(path, M.display(url), st.error, st.stored))
      status = 1
    else
      io.stdout:write(("shipped %s to %s: %d records stored now, run %s complete up to seq %d%s\n"):format(path,
        M.display(url), st.records, rec.run_id, st.stored,
        st.partial > 0 and (" (an unfinished last line of %d bytes, cut by the kill, left out)")
          :format(st.partial) or ""))
    end
  end
  return status
end

return M
