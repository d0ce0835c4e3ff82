-- orch.description: find, load and validate description files.
--
-- A description is data, never code: it is read as JSON-with-comments
-- (orch.jsonc) and checked against orch.schema. Validation reports every
-- problem of a file at once, each located by file, line, column and JSON path
-- (0-based array indices, as in orch.jsonc), saying what was expected and what
-- was found, so one `orchlua check` fixes a whole file.
--
-- Errors are records {file =, line =, col =, path =, message =}; line, col and
-- path are nil when they do not apply (an unreadable file), path is "" for the
-- root. format_error turns one into FILE:LINE:COL: PATH: MESSAGE.

local json = require "orch.jsonc"
local schema = require "orch.schema"
local suggest = require "orch.suggest"
local fs = require "orch.fs"

-- as locals: 10,000 events look them up a few times each
local type, next, ipairs, setmetatable = type, next, ipairs, setmetatable

local description = {}

--- Larger files are refused before they are read: a description is a page of
-- JSON, and a 2 GiB file given by mistake must not take the machine down.
description.MAX_SIZE = 16 * 1024 * 1024

-- The validator looks at most this deep (events[0].params.video_path is 4),
-- so the index need not hold an entry for every number in a huge params value.
local INDEX_DEPTH = 4

local LUA_KEYWORDS = {}
for word in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  LUA_KEYWORDS[word] = true
end

-- ---------------------------------------------------------------------------
-- Validation

-- ctx: { file =, text =, index =, errors = {}, fast = } for one file.
--
-- A description is validated twice only when it has a problem: first fast,
-- with no paths and no positions (ctx.fast: the paths are false and the
-- index is empty), which a valid file passes; then, when that pass found
-- an error or could not tell {} from [], again with paths and the index
-- (built then), for the messages.  The fast pass may only be stricter.

local NO_INDEX = {}

-- The value of a key absent whose default is {} (an event's params and
-- after): one table for every event, not two per event, and read-only,
-- so that no writer can give every event a param.
local EMPTY = setmetatable({}, { __newindex = function()
  error("a description's absent params or list is shared and read-only", 2)
end })
description.EMPTY = EMPTY

local function join(ctx, path, key)
  if ctx.fast then return false end
  return json.join(path, key)
end

local function element(ctx, path, i)
  if ctx.fast then return false end
  return json.element(path, i)
end

local function add_error(ctx, path, where, message)
  local errors = ctx.errors
  errors[#errors + 1] = { file = ctx.file, path = path, message = message,
    line = where and where.line, col = where and where.col, seq = #errors + 1 }
end

-- The JSON kind of `value` at `path`: the index knows {} from [], Lua does not.
local function kind_of(ctx, value, path)
  local entry = ctx.index[path]
  if entry then return entry.kind end
  if value == json.null then return "null" end
  local t = type(value)
  if t == "table" then
    -- {} or []: only the index knows
    if ctx.fast and next(value) == nil then ctx.unsure = true end
    return (next(value) == nil or value[1] ~= nil) and "array" or "object"
  end
  return t
end

-- A found value as the user wrote it: "abc" (cut if long), numbers as in the
-- source (1e400, not inf), true, null, an object, an array.
local function found(ctx, value, path)
  local kind = kind_of(ctx, value, path)
  if kind == "object" then return "an object" end
  if kind == "array" then return "an array" end
  if kind == "null" then return "null" end
  if kind == "string" then return json.quote(value) end
  local entry = ctx.index[path]
  if kind == "number" and entry and entry.finish then
    return ctx.text:sub(entry.offset, entry.finish)
  end
  return tostring(value)
end

local function mismatch(ctx, path, value, typ, extra)
  add_error(ctx, path, ctx.index[path],
    ("expected %s, found %s%s"):format(typ.expected, found(ctx, value, path), extra or ""))
end

local function is_identifier(s)
  return s:match("^[A-Za-z_][A-Za-z0-9_]*$") ~= nil and not LUA_KEYWORDS[s]
end

-- schema.percentile of a stat name, worked out once per name (20,000
-- checks name a handful of stats)
local pct_of = setmetatable({}, { __index = function(t, stat)
  local p = schema.percentile(stat) or false
  t[stat] = p
  return p
end })

-- The stat names as a set, and each list of allowed values as one.
local stat_names
local value_sets = setmetatable({}, { __mode = "k" })
local function value_set(typ)
  local set = value_sets[typ]
  if not set then
    set = {}
    for _, v in ipairs(typ.values) do set[v] = true end
    value_sets[typ] = set
  end
  return set
end

local check   -- forward: check and check_object call each other

-- Per key list, what check_object reads for every object: its key -> entry
-- map, its entries with a default_from, a maker of the normalized table
-- sized for every field at once (a table grown a field at a time is
-- rehashed four times over), and for the fast pass a maker that also holds
-- the scalar defaults (each field's first in key order) and the entries
-- an absent key still matters for (required, a table default).
local plans = setmetatable({}, { __mode = "k" })
local function plan_of(keys)
  local plan = plans[keys]
  if plan then return plan end
  local by_key, default_from, fields, absent, defaults = {}, {}, {}, {}, {}
  for _, entry in ipairs(keys) do
    by_key[entry.key] = entry
    if entry.default_from then default_from[#default_from + 1] = entry end
    local field = entry.to or entry.key
    fields[field] = true
    if entry.group then fields[entry.group .. "_key"] = true end
    if entry.required or type(entry.default) == "table" then
      absent[#absent + 1] = entry
    elseif entry.default ~= nil and defaults[field] == nil then
      defaults[field] = entry.default
    end
  end
  local slots, filled, args = {}, {}, {}
  for field in pairs(fields) do
    slots[#slots + 1] = ("_%d = nil"):format(#slots + 1)
    if defaults[field] ~= nil then
      local i = #args / 2 + 1
      filled[#filled + 1] = ("[k%d] = v%d"):format(i, i)
      args[#args + 1], args[#args + 2] = field, defaults[field]
    else
      filled[#filled + 1] = ("_%d = nil"):format(#filled + 1)
    end
  end
  -- a constructor's fields size the table; nil values are not stored
  local new = load("return function() return { " .. table.concat(slots, ", ") .. " } end")()
  local names = {}
  for i = 1, #args / 2 do names[i] = ("k%d, v%d"):format(i, i) end
  local new_defaults = load((#names > 0 and "local " .. table.concat(names, ", ") .. " = ...\n" or "")
    .. "return function() return { " .. table.concat(filled, ", ") .. " } end")(table.unpack(args))
  plan = { by_key = by_key, default_from = default_from, new = new, new_defaults = new_defaults, absent = absent }
  plans[keys] = plan
  return plan
end

-- At most this many scalars remembered per member (ctx.passed): ids,
-- all different, fill it and stop there.
local PASSED_MAX = 256

-- A group's field naming the key given ("interval" -> "interval_key").
local group_key = setmetatable({}, { __index = function(t, group)
  t[group] = group .. "_key"
  return t[group]
end })

-- One member given, at kpath: checked, scaled to seconds, stored in out
-- under its field (and its group's key); nothing stored when bad.
local function check_member(ctx, out, entry, v, kpath)
  local nv = check(ctx, v, entry.type, kpath)
  if nv ~= nil and (entry.scale or entry.unit) then
    local sec = nv * (entry.scale or entry.unit)
    if sec == math.huge then   -- finite in hours, not in seconds
      mismatch(ctx, kpath, v, entry.type, " (too large once in seconds)")
      nv = nil
    elseif entry.min_sec and sec < entry.min_sec then
      add_error(ctx, kpath, ctx.index[kpath], ("expected at least %s, found %s")
        :format(entry.min_why, found(ctx, v, kpath)))
      nv = nil
    elseif entry.max_sec and sec > entry.max_sec then
      add_error(ctx, kpath, ctx.index[kpath], ("expected at most %s, found %s")
        :format(entry.max_why, found(ctx, v, kpath)))
      nv = nil
    elseif entry.scale then
      nv = sec
    end
  end
  if nv ~= nil then
    if entry.basename and ctx.basename and nv ~= ctx.basename then
      add_error(ctx, kpath, ctx.index[kpath],
        ("expected %s (the file is %s), found %s"):format(
          json.quote(ctx.basename), ctx.filename, json.quote(nv)))
    end
    out[entry.to or entry.key] = nv
    if entry.group then out[group_key[entry.group]] = entry.key end
  end
end

-- Keys whose default is another key's value (plan.default_from), once
-- the members are in: both passes end with it.
local function defaults_from(out, plan)
  for _, entry in ipairs(plan.default_from) do
    if out[entry.to or entry.key] == nil then
      out[entry.to or entry.key] = out[entry.default_from]
    end
  end
  return out
end

-- check_object in the fast pass (no paths, no positions): the members
-- given are walked, not the schema's keys, and the defaults come with the
-- table.  The same result for a valid object; any problem is only counted
-- (the second pass says it).
local function check_object_fast(ctx, value, plan)
  local out = plan.new_defaults()
  local by_key, passed, groups = plan.by_key, ctx.passed, nil
  for key, v in next, value do
    local entry = by_key[key]
    if not entry then
      add_error(ctx, false, nil, "unknown key")
    else
      local group = entry.group
      if group then
        groups = groups or {}
        if groups[group] then add_error(ctx, false, nil, "a group's second key") end
        groups[group] = true
      end
      local seen = passed[entry]
      local nv = seen.values[v]
      if nv ~= nil then   -- this scalar passed this member's check before
        out[entry.to or entry.key] = nv
        if group then out[group_key[group]] = key end
      else
        local nerr = #ctx.errors
        check_member(ctx, out, entry, v, false)
        if type(v) ~= "table" and v == v and #ctx.errors == nerr and seen.n < PASSED_MAX then
          seen.values[v], seen.n = out[entry.to or entry.key], seen.n + 1
        end
      end
    end
  end
  for _, entry in ipairs(plan.absent) do
    if value[entry.key] == nil then
      if entry.required then
        add_error(ctx, false, nil, "a required key missing")
      else
        local field = entry.to or entry.key
        out[field] = out[field] or EMPTY
      end
    end
  end
  return defaults_from(out, plan)
end

-- Checks the members of an object against a key list; returns the normalized
-- table (field names from entry.to), without the members that were bad, so
-- that later checks (duplicate ids) still see what was good.
local function check_object(ctx, value, keys, path)
  local plan = plan_of(keys)
  if ctx.fast then return check_object_fast(ctx, value, plan) end
  local out = plan.new()
  -- unknown keys (load sorts all errors by position, so pairs order is fine)
  local by_key = plan.by_key
  for key in pairs(value) do
    if not by_key[key] then
      local kpath = join(ctx, path, key)
      local at = ctx.index[kpath]
      add_error(ctx, kpath, at and { line = at.key_line, col = at.key_col },
        ('unknown key %s%s'):format(json.quote(key), suggest.hint(key, schema.key_names(keys))))
    end
  end
  local groups   -- group name -> the entries given, in source order
  for _, entry in ipairs(keys) do
    local v = value[entry.key]
    local field = entry.to or entry.key
    if v == nil then
      if entry.required then
        add_error(ctx, path, ctx.index[path],
          ("missing required key %s"):format(json.quote(entry.key)))
      elseif type(entry.default) == "table" then
        out[field] = out[field] or EMPTY
      elseif out[field] == nil then
        out[field] = entry.default
      end
    else
      local kpath = join(ctx, path, entry.key)   -- a path only for a key given
      if entry.group then   -- given at all counts, valid or not
        groups = groups or {}
        local g = groups[entry.group] or {}
        groups[entry.group] = g
        g[#g + 1] = { entry = entry, at = ctx.index[kpath] }
      end
      check_member(ctx, out, entry, v, kpath)
    end
  end
  for name, given in pairs(groups or NO_INDEX) do
    if #given > 1 then
      -- the first key in the file stands; each later one is the mistake
      table.sort(given, function(a, b)
        return (a.at and a.at.offset or 0) < (b.at and b.at.offset or 0)
      end)
      local members = {}
      for _, entry in ipairs(keys) do
        if entry.group == name then members[#members + 1] = json.quote(entry.key) end
      end
      for i = 2, #given do
        local kpath = join(ctx, path, given[i].entry.key)
        local at = ctx.index[kpath]
        add_error(ctx, kpath, at and { line = at.key_line, col = at.key_col },
          ("only one of %s may be given, found %s and %s"):format(
            table.concat(members, ", "), json.quote(given[1].entry.key),
            json.quote(given[i].entry.key)))
      end
    end
  end
  return defaults_from(out, plan)
end

-- Checks `value` (at `path`) against type `typ`; returns the normalized value,
-- or nil after recording the errors. Containers come back with their good
-- parts only: whether the whole is valid is whether any error was recorded.
function check(ctx, value, typ, path)
  local kind = kind_of(ctx, value, path)
  if kind ~= typ.kind then
    mismatch(ctx, path, value, typ)
    return nil
  end
  if kind == "string" then
    if typ.nonempty and value == "" then
      mismatch(ctx, path, value, typ)
      return nil
    end
    if typ.identifier and not is_identifier(value) then
      mismatch(ctx, path, value, typ, LUA_KEYWORDS[value] and " (a Lua keyword)" or "")
      return nil
    end
    if typ.stat then
      if not stat_names then
        stat_names = {}
        for _, st in ipairs(schema.stats) do
          if st.name ~= "pNN" then stat_names[st.name] = true end
        end
      end
      if stat_names[value] or pct_of[value] then return value end
      if value:match("^p[%d.]+$") then
        mismatch(ctx, path, value, typ, " (a percentile pNN needs 0 < NN < 100)")
        return nil
      end
      local names = {}
      for _, st in ipairs(schema.stats) do names[#names + 1] = st.name end
      for _, p in ipairs({ "p50", "p90", "p95", "p99" }) do names[#names + 1] = p end
      mismatch(ctx, path, value, typ, suggest.hint(value, names))
      return nil
    end
    if typ.values then
      if value_set(typ)[value] then return value end
      mismatch(ctx, path, value, typ, suggest.hint(value, typ.values))
      return nil
    end
    return value
  elseif kind == "number" then
    -- value ~= value is NaN; cjson reads 1e400 as infinity
    if typ.positive and not (value > 0 and value < math.huge) then
      local extra = value == math.huge and " (too large: it reads as infinity)" or ""
      mismatch(ctx, path, value, typ, extra)
      return nil
    end
    if (typ.finite and not (value > -math.huge and value < math.huge))
        or (typ.nonnegative and (value < 0 or value ~= value)) then
      mismatch(ctx, path, value, typ)
      return nil
    end
    return value
  elseif kind == "object" then
    if typ.keys then return check_object(ctx, value, typ.keys, path) end
    return value
  elseif kind == "array" then
    if typ.min_items and #value < typ.min_items then
      add_error(ctx, path, ctx.index[path], ("expected at least %s %s, found %s"):format(
        typ.min_items == 1 and "one" or typ.min_items, typ.items.noun or "item",
        #value == 0 and "an empty array" or "only " .. #value))
      return nil
    end
    local out, items = {}, typ.items
    if ctx.fast and items.keys then
      -- the fast pass over a list of objects (10,000 events): each one
      -- that is plainly an object goes straight to its members
      local plan = plan_of(items.keys)
      for i, item in ipairs(value) do
        if type(item) == "table" and next(item) ~= nil and item[1] == nil then
          out[i] = check_object_fast(ctx, item, plan)
        else
          out[i] = check(ctx, item, items, false)
        end
      end
      return out
    end
    for i, item in ipairs(value) do
      out[i] = check(ctx, item, items, element(ctx, path, i - 1))   -- a hole when bad
    end
    return out
  end
  return value   -- boolean
end

-- Checks what the schema cannot say per key: event ids must differ. Also
-- stamps each event with where it is. `count` is the raw array's length:
-- events that failed validation left holes.
local function check_events(ctx, events, count)
  local seen = {}   -- id -> the first event with it
  for i = 1, count do
    local ev = events[i]
    -- no event or no id: its bad name or id was reported already
    if ev then
      ev.index = i
      -- a valid file's path and positions are made when asked (ev_mt), if ever
      if ctx.ev_mt then
        setmetatable(ev, ctx.ev_mt)
      else
        ev.path = json.element("events", i - 1)
        local at = ctx.index[ev.path] or NO_INDEX
        ev.line, ev.col = at.line, at.col
      end
    end
    local first = ev and ev.id and seen[ev.id]
    if first then
      local path = json.element("events", i - 1)
      local at = ctx.index[path] or NO_INDEX
      local explicit = ctx.index[path .. ".id"]
      add_error(ctx, explicit and path .. ".id" or path, explicit or at,
        ('duplicate event id %s, also used by %s at line %s; give one of them a distinct "id"')
        :format(json.quote(ev.id), first.path, first.line or "?"))
    elseif ev and ev.id then
      seen[ev.id] = ev
    end
  end
end

-- What the schema cannot say per key about checks: one source, a stat
-- that suits it, limits that leave room, an event that exists, a window
-- that holds more than one invocation.  Stamps each check with its source
-- kind ("value" for a metric; an event's series or "status"), its
-- percentile and its name.  `count`: the raw array's length.
local function check_checks(ctx, checks, count, events)
  local by_id, ids = {}, {}
  for _, ev in ipairs(events or {}) do
    if ev.id then by_id[ev.id] = ev; ids[#ids + 1] = ev.id end
  end
  local suits = {}
  for _, st in ipairs(schema.stats) do suits[st.name] = st.on end
  local names = {}
  local path, at
  local function err(key, message)
    local kpath = key and json.join(path, key) or path
    local where = ctx.index[kpath]
    if where and key then where = { line = where.key_line or where.line, col = where.key_col or where.col } end
    add_error(ctx, kpath, where or at, message)
  end
  for i = 1, count do
    local c = checks[i]
    path = json.element("checks", i - 1)
    at = ctx.index[path]
    if c then
      c.index, c.path = i, path
      if c.metric == nil and c.event == nil and not ctx.index[json.join(path, "metric")]
          and not ctx.index[json.join(path, "event")] then
        err(nil, 'expected "metric" or "event" (what the check judges), found neither')
      end
      if c.series ~= nil and c.metric ~= nil then
        err("series", '"series" goes with "event", not "metric" (a metric is its own series)')
      end
      if c.where ~= nil and c.event ~= nil then
        err("where", '"where" goes with "metric", not "event"')
      end
      local ev = c.event and by_id[c.event]
      if c.event and not ev then
        err("event", ("no event with id %s%s"):format(json.quote(c.event), suggest.hint(c.event, ids)))
      end
      if c.metric then c.kind = "value"
      elseif c.event then c.kind = c.series or "status" end
      local p = c.stat and pct_of[c.stat] or nil
      local stat = c.stat and (p and "pNN" or c.stat)
      if stat and c.kind and not suits[stat][(c.kind == "duration" or c.kind == "lateness") and "value" or c.kind] then
        local want
        if suits[stat].status then want = 'an "event" without "series"'
        elseif suits[stat].value then want = 'a "metric", or an "event" with "series": "duration" or "lateness"'
        else want = 'a "metric", or an "event" with "series"' end
        local on = c.kind == "value" and ('a "metric"') or c.kind == "status" and 'an "event" without "series"'
          or ('an "event" with "series": %s'):format(json.quote(c.kind))
        err("stat", ("stat %s needs %s, found %s"):format(json.quote(c.stat), want, on))
      end
      c.p = p
      if c.max == nil and c.min == nil and ctx.index[json.join(path, "max")] == nil
          and ctx.index[json.join(path, "min")] == nil then
        err(nil, 'expected "max" or "min" (the limit the check holds to), found neither')
      end
      if c.max ~= nil and c.min ~= nil and c.min > c.max then
        err("min", ("min %s is above max %s: no value could pass"):format(
          found(ctx, c.min, json.join(path, "min")), found(ctx, c.max, json.join(path, "max"))))
      end
      if c.window and ev and ev.interval and c.window < ev.interval then
        err("window_sec", ("window_sec %s is shorter than the interval of event %s (%gs): "
          .. "a window would hold one invocation at most"):format(
          found(ctx, c.window, json.join(path, "window_sec")), json.quote(ev.id), ev.interval))
      end
      if c.name == nil and c.stat and (c.metric or c.event) then
        local what = c.metric or (c.event .. (c.series and "." .. c.series or ""))
        c.name = ("%s %s%s"):format(what, c.stat, c.window and ("/%gs"):format(c.window) or "")
      end
      if c.name then
        local first = names[c.name]
        if first then
          err(ctx.index[json.join(path, "name")] and "name" or nil,
            ("duplicate check name %s, also used by %s; give one of them a distinct \"name\"")
            :format(json.quote(c.name), first))
        else
          names[c.name] = path
        end
      end
    end
  end
end

-- `after`: every id names an event, and no event waits for itself
-- through a cycle (which would never start).
local function check_after(ctx, events, count)
  local any = false
  for i = 1, count do
    local ev = events[i]
    if ev and ev.after and #ev.after > 0 then any = true break end
  end
  if not any then return end   -- nobody waits: no id to look up, no cycle
  local by_id, ids = {}, {}
  for i = 1, count do
    local ev = events[i]
    if ev and ev.id and not by_id[ev.id] then by_id[ev.id] = ev; ids[#ids + 1] = ev.id end
  end
  for i = 1, count do
    local ev = events[i]
    for j, id in ipairs(ev and ev.after or {}) do
      local path = json.element(ev.path .. ".after", j - 1)
      if not by_id[id] then
        add_error(ctx, path, ctx.index[path], ("unknown event id %s%s"):format(json.quote(id),
          suggest.hint(id, ids)))
      elseif id == ev.id then
        add_error(ctx, path, ctx.index[path], ("event %s cannot run after itself"):format(json.quote(id)))
      end
    end
  end
  -- cycles: a depth-first walk; a grey node met again closes a cycle
  local state, stack = {}, {}
  local function visit(ev)
    state[ev.id] = "grey"
    stack[#stack + 1] = ev.id
    for _, id in ipairs(ev.after or {}) do
      local dep = by_id[id]
      if dep and dep ~= ev then
        if state[id] == "grey" then
          local from
          for k = #stack, 1, -1 do if stack[k] == id then from = k break end end
          local cycle = {}
          for k = from, #stack do cycle[#cycle + 1] = stack[k] end
          cycle[#cycle + 1] = id
          local path = ev.path .. ".after"
          add_error(ctx, path, ctx.index[path], ("a cycle in \"after\": %s (each waits for the next)")
            :format(table.concat(cycle, " -> ")))
        elseif state[id] == nil then
          visit(dep)
        end
      end
    end
    stack[#stack] = nil
    state[ev.id] = "black"
  end
  for _, id in ipairs(ids) do
    if state[id] == nil then visit(by_id[id]) end
  end
end

-- Duplicate keys: cjson silently keeps the last one, which hides a mistake.
local function check_duplicates(ctx)
  for _, d in ipairs(json.duplicates(ctx.index)) do
    add_error(ctx, d.path, d, ("duplicate key %s (first at line %d, col %d)")
      :format(json.quote(d.key), d.first_line, d.first_col))
  end
end

local function sort_errors(errors)
  table.sort(errors, function(a, b)
    local la, lb = a.line or 0, b.line or 0
    if la ~= lb then return la < lb end
    local ca, cb = a.col or 0, b.col or 0
    if ca ~= cb then return ca < cb end
    return a.seq < b.seq
  end)
  for _, e in ipairs(errors) do e.seq = nil end
  return errors
end

local function basename(path)
  return (path:match("([^/]*)$"))
end

-- One validation pass (see ctx above); the normalized description, or nil
-- and ctx (its errors, or unsure).
local function validate(text, file, value, index, fast)
  -- comments never overlap values: the raw text serves to quote numbers
  local ctx = { file = file, text = text, index = fast and NO_INDEX or index, errors = {}, fast = fast }
  if fast then
    -- the scalars that passed each member's check in this file, and what
    -- they became (check_object_fast): 10,000 events repeat a few names
    -- and intervals
    ctx.passed = setmetatable({}, { __index = function(t, entry)
      local seen = { values = {}, n = 0 }
      t[entry] = seen
      return seen
    end })
    ctx.ev_mt = { __index = function(ev, k)
      if k == "path" then return json.element("events", ev.index - 1) end
      if k == "line" or k == "col" then
        local at = index[ev.path]
        return at and at[k]
      end
    end }
  end
  if file then
    ctx.filename = basename(file)
    ctx.basename = ctx.filename:gsub("%.json$", "")
  end
  local dups = json.duplicates(index)
  if fast and #dups > 0 then return nil, ctx end
  if not fast then check_duplicates(ctx) end
  local desc = check(ctx, value, schema.root, "")
  if fast and (ctx.unsure or #ctx.errors > 0) then return nil, ctx end
  if desc and desc.events then
    check_events(ctx, desc.events, #value.events)
    check_after(ctx, desc.events, #value.events)
  end
  if desc and desc.checks and type(value.checks) == "table" then
    check_checks(ctx, desc.checks, #value.checks, desc.events)
  end
  if #ctx.errors > 0 then return nil, ctx end
  return desc
end

--- Validates a description given as text. `file` names it in errors and,
-- when given, test_name must equal its base name without ".json".
-- Returns the normalized description, or nil, errors (sorted by line/col).
function description.decode(text, file)
  local value, index = json.decode(text, { max_depth = INDEX_DEPTH, lazy = true })
  if value == nil then
    local err = index
    return nil, { { file = file, line = err.line, col = err.col, message = err.message } }
  end
  local desc = validate(text, file, value, index, true)
  if not desc then
    local ctx
    desc, ctx = validate(text, file, value, index, false)
    if not desc then return nil, sort_errors(ctx.errors) end
  end
  desc.file, desc.index = file, index
  return desc
end

-- Opens `path` for reading a description; nil, message when it cannot.
local function open_file(path)
  local f, err = io.open(path, "rb")
  if not f then
    -- io.open says "PATH: reason"; the error record names the file already
    local reason = err:sub(1, #path + 2) == path .. ": " and err:sub(#path + 3) or err
    return nil, "cannot open: " .. reason
  end
  -- opening a directory succeeds on Linux; reading it fails with EISDIR (21)
  local ok, rerr, code = f:read(0)
  if ok == nil and rerr then
    f:close()
    if code == 21 then return nil, "is a directory, not a description file" end
    return nil, "cannot read: " .. rerr
  end
  return f
end

--- Loads and validates the description at `path`.
-- Returns the normalized description:
--   { test_name =, total_hours =, unref_setup_fixtures = {...}, file =, index =,
--     events = { { name =, id =, interval = (seconds) | nil, interval_key =,
--                  at_startup =, at_teardown =, params =, timeout =,
--                  concurrency =, index = (1-based), path =, line =, col = } } }
-- or nil, errors.
function description.load(path)
  local f, err = open_file(path)
  if not f then return nil, { { file = path, message = err } } end
  local size = f:seek("end")
  if size > description.MAX_SIZE then
    f:close()
    return nil, { { file = path, message = ("file is %.1f MiB (%d bytes), over the %d MiB limit for a description")
      :format(size / 1048576, size, description.MAX_SIZE // 1048576) } }
  end
  f:seek("set")
  local text = f:read("a")
  f:close()
  if not text then return nil, { { file = path, message = "cannot read the file" } } end
  return description.decode(text, path)
end

--- FILE:LINE:COL: PATH: MESSAGE, leaving out what is unknown (line and column
-- when the error is about the whole file, the path at the root).
function description.format_error(e)
  local where = e.file or ""
  if e.line then
    where = (where ~= "" and where .. ":" or "") .. e.line .. ":" .. (e.col or 1)
  end
  local out = where ~= "" and where .. ": " or ""
  if e.path and e.path ~= "" then out = out .. e.path .. ": " end
  return out .. e.message
end

-- ---------------------------------------------------------------------------
-- Finding descriptions on disk (orch.fs walks the folders).

local function is_directory(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local ok, _, code = f:read(0)
  f:close()
  return ok == nil and code == 21
end

local function as_list(dirs)
  if dirs == nil then return { "descriptions" } end
  if type(dirs) == "string" then return { dirs } end
  return dirs
end

-- Every *.json under `dirs`: a sorted list of {name =, path =}, and the dirs
-- that do not exist.
local function scan(dirs)
  local files, missing, unreadable = {}, {}, {}
  for _, dir in ipairs(as_list(dirs)) do
    if not is_directory(dir) then
      missing[#missing + 1] = dir
    else
      -- a relative dir starting with '-' would read as an option to find
      local arg = dir:sub(1, 1) == "-" and "./" .. dir or dir
      local listed, bad = fs.find_files(arg, ".json")
      for _, b in ipairs(bad or {}) do unreadable[#unreadable + 1] = b end
      for _, file in ipairs(listed) do
        files[#files + 1] = { name = basename(file):gsub("%.json$", ""), path = file }
      end
    end
  end
  table.sort(files, function(a, b)
    if a.name ~= b.name then return a.name < b.name end
    return a.path < b.path
  end)
  return files, missing, unreadable
end

--- Every description under `dirs` (a folder or a list; searched recursively):
-- a sorted array of {name =, path =}, and the folders that could not be
-- read ("path: reason").
function description.list(dirs)
  local files, _, unreadable = scan(dirs)
  return files, unreadable
end

--- The path of the description `name` under `dirs`, or nil, message.
-- A name ending in ".json" or holding a '/' is a path and is taken as is.
function description.find(dirs, name)
  if name:match("%.json$") or name:find("/", 1, true) then
    local f, err = open_file(name)
    if not f then return nil, name .. ": " .. err end
    f:close()
    return name
  end
  local files, missing = scan(dirs)
  local hits, names = {}, {}
  for _, d in ipairs(files) do
    if d.name == name then hits[#hits + 1] = d.path end
    names[d.name] = true
  end
  if #hits == 1 then return hits[1] end
  local where = table.concat(as_list(dirs), ", ")
  if #hits > 1 then
    return nil, ('description "%s" is ambiguous: %s'):format(name, table.concat(hits, " and "))
  end
  local msg
  if #files == 0 then
    msg = ('no description "%s": no *.json files in %s'):format(name, where)
  else
    msg = ('no description "%s" in %s%s'):format(name, where, suggest.hint(name, names))
  end
  if #missing > 0 then
    msg = msg .. (" (not a directory: %s)"):format(table.concat(missing, ", "))
  end
  return nil, msg
end

return description
