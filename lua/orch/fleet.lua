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

-- What `orchlua run` needs from the fleet options: { labels =, run_id = }
-- or nil, message (a usage error: exit 2).
function M.run_options(o, desc)
  local _ = desc
  local labels, e = M.labels(o.label)
  if not labels then return nil, e end
  return { labels = labels, run_id = M.uuid() }
end

return M
