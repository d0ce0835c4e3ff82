-- orch.schema: the keys of a description, described once, as data.
--
-- This table is the single source for validation (orch.description), "did
-- you mean" (the valid keys), `orchlua check` and the README's key table
-- (schema.render_markdown). Add a key here and all of them follow.
--
-- A key entry:
--   key       the JSON key
--   type      a type from schema.types (below)
--   required  true when the key must be present
--   default   the value when absent (tables are copied per use)
--   default_from  take the default from another key of the same object
--   group     keys sharing a group are mutually exclusive (at most one)
--   to        the field name in the normalized description (default: key)
--   scale     multiplier applied to the value when normalizing (minutes and
--             hours become seconds)
--   unit      seconds per unit of a value kept as given (total_hours): it
--             must still be finite once in seconds
--   min_sec / max_sec  bounds once in seconds, with the words that say why
--             (min_why / max_why)
--   meaning   one line for the README
--
-- A type:
--   kind      the JSON kind it needs ("string", "number", "boolean",
--             "object", "array")
--   expected  how messages name it: "expected <expected>, found ..."
--   doc       how the README names it
--   plus the constraints the validator knows: nonempty, identifier,
--   positive, values (an enum), items / min_items (arrays), keys (an object
--   with exactly these keys, each a key entry).

local schema = {}

local T = {}
schema.types = T

T.string = { kind = "string", expected = "a string", doc = "string" }

T.nonempty = { kind = "string", nonempty = true,
  expected = "a non-empty string", doc = "string" }

-- Event names are looked up as functions in sources and fixture names are
-- injected as parameter names: both must be spellable in Lua.
T.identifier = { kind = "string", identifier = true,
  expected = "a name (a Lua identifier)", doc = "string (a Lua identifier)" }

-- NaN and infinity are refused too: a run of inf hours or an interval of
-- 1e400 seconds is a typo, never an intent.
T.positive = { kind = "number", positive = true,
  expected = "a number > 0", doc = "number > 0" }

T.boolean = { kind = "boolean", expected = "true or false", doc = "bool" }

-- Free-form: params values may be any JSON, so nothing below is checked.
T.object = { kind = "object", expected = "an object", doc = "object" }

T.concurrency = { kind = "string", values = { "forbid", "allow", "replace" },
  expected = 'one of "forbid", "allow", "replace"',
  doc = '`"forbid"`, `"allow"`, `"replace"`' }

T.names = { kind = "array", items = T.identifier,
  expected = "an array of names", doc = "array of names" }

T.ids = { kind = "array", items = T.nonempty,
  expected = "an array of event ids", doc = "array of event ids" }

-- A finer period is no schedule but a busy loop (1e-12 s made a run that
-- never reached its end): 1 ms of description time, libuv's timer grain.
local INTERVAL_FLOOR = "0.001 s (1 ms, the finest interval orchlua keeps)"

-- Past 11 years a run is a typo; and the clock's arithmetic stays exact.
schema.MAX_HOURS = 100000

schema.event = {
  { key = "name", type = T.identifier, required = true,
    meaning = "the event function's name" },
  { key = "interval_sec", type = T.positive, group = "interval",
    to = "interval", scale = 1, min_sec = 0.001, min_why = INTERVAL_FLOOR,
    meaning = "period; without one the event runs only at startup/teardown" },
  { key = "interval_min", type = T.positive, group = "interval",
    to = "interval", scale = 60, min_sec = 0.001, min_why = INTERVAL_FLOOR },
  { key = "interval_hour", type = T.positive, group = "interval",
    to = "interval", scale = 3600, min_sec = 0.001, min_why = INTERVAL_FLOOR },
  { key = "at_startup", type = T.boolean, default = true,
    meaning = "run once at t0; if false, the first run is at t0 + interval" },
  { key = "at_teardown", type = T.boolean, default = false,
    meaning = "run once more after the end time" },
  { key = "params", type = T.object, default = {},
    meaning = "values injected by name" },
  { key = "timeout_sec", type = T.positive, to = "timeout",
    meaning = "an invocation running longer is cancelled and fails" },
  { key = "concurrency", type = T.concurrency, default = "forbid",
    meaning = "a firing while the previous invocation still runs: skip it "
      .. "(recorded as skipped), run both, or cancel the old one" },
  { key = "id", type = T.nonempty, default_from = "name",
    meaning = "distinguishes two entries of the same event with different params" },
  { key = "after", type = T.ids, default = {},
    meaning = "this event first fires once each named event is ready; at the end it stops first" },
}

T.event = { kind = "object", keys = schema.event, noun = "event",
  expected = "an object (an event)", doc = "object" }

T.events = { kind = "array", items = T.event, min_items = 1,
  expected = "an array of events", doc = "array, at least one" }

-- Checks (DESIGN.md "Checks"): the stats a check may ask for, and the
-- sources each suits: value (a metric, an event's duration or lateness),
-- invocations (an event's), status (an event's successes and failures).  "pNN" stands for any percentile 0 < NN < 100.
schema.stats = {
  { name = "count", on = { value = true, invocations = true },
    meaning = "samples in the window (or the run)" },
  { name = "rate", on = { value = true, invocations = true },
    meaning = "samples per second (description time)" },
  { name = "mean", on = { value = true }, meaning = "the mean" },
  { name = "min", on = { value = true }, meaning = "the smallest sample" },
  { name = "max", on = { value = true }, meaning = "the largest sample" },
  { name = "last", on = { value = true }, meaning = "the latest sample" },
  { name = "pNN", on = { value = true },
    meaning = "a percentile (p50, p99, p99.9 ...), within 1%" },
  { name = "errors", on = { status = true },
    meaning = "error results the event reported plus its failed invocations" },
  { name = "error_rate", on = { status = true }, meaning = "errors / invocations" },
  { name = "consecutive_failures", on = { status = true },
    meaning = "the longest run of failed invocations" },
  { name = "silence_sec", on = { value = true, invocations = true, status = true },
    meaning = "seconds since the metric's last sample or the event's last success" },
  { name = "slope_per_hour", on = { value = true },
    meaning = "growth per hour, a robust (Theil-Sen) fit: leaks and drift" },
}

-- "p99.9" -> 99.9; nil when not a percentile in (0, 100).
function schema.percentile(stat)
  local nn = type(stat) == "string" and stat:match("^p(%d+%.?%d*)$")
  local p = nn and tonumber(nn)
  if p and p > 0 and p < 100 then return p end
  return nil
end

T.stat = { kind = "string", stat = true,
  expected = "a stat (" .. (function()
    local names = {}
    for i, st in ipairs(schema.stats) do names[i] = st.name end
    return table.concat(names, ", ")
  end)() .. ")",
  doc = "string" }

T.number = { kind = "number", finite = true, expected = "a number", doc = "number" }

T.nonnegative = { kind = "number", finite = true, nonnegative = true,
  expected = "a number >= 0", doc = "number >= 0" }

T.series = { kind = "string", values = { "duration", "lateness", "invocations" },
  expected = 'one of "duration", "lateness", "invocations"',
  doc = '`"duration"`, `"lateness"`, `"invocations"`' }

T.action = { kind = "string", values = { "fail", "abort", "warn" },
  expected = 'one of "fail", "abort", "warn"', doc = '`"fail"`, `"abort"`, `"warn"`' }

schema.check = {
  { key = "name", type = T.nonempty, meaning = "shown in every output; default built from the other keys" },
  { key = "metric", type = T.nonempty, group = "source",
    meaning = "what is judged: a metric series (`result_reporter:metric(name, ...)`), or an event id" },
  { key = "event", type = T.nonempty, group = "source",
    meaning = "an event id: its invocations (with series) or its failures" },
  { key = "where", type = T.object, meaning = "with metric: keeps only samples whose fields match" },
  { key = "series", type = T.series,
    meaning = "with event: what is judged; without, the stats that count failures" },
  { key = "stat", type = T.stat, required = true,
    meaning = "`count`, `rate`, `mean`, `min`, `max`, `last`, `pNN`, `errors`, `error_rate`, "
      .. "`consecutive_failures`, `silence_sec` or `slope_per_hour`" },
  { key = "max", type = T.number, meaning = "the check holds while the stat is at most this" },
  { key = "min", type = T.number, meaning = "the check holds while the stat is at least this" },
  { key = "window_sec", type = T.positive, to = "window",
    meaning = "judged over a sliding window this long; without it, over the whole run" },
  { key = "after_sec", type = T.nonnegative, default = 0, to = "after",
    meaning = "not judged before t0 + after_sec (warm-up)" },
  { key = "action", type = T.action, default = "fail",
    meaning = "fail: the run ends failed; abort: it stops in order, failed; warn: shown, never fails" },
  { key = "allow_no_data", type = T.boolean, default = false,
    meaning = "a check whose series never had a sample passes (else it ends no_data, failed)" },
}

T.check = { kind = "object", keys = schema.check, noun = "check",
  expected = "an object (a check)", doc = "object" }

T.checks = { kind = "array", items = T.check,
  expected = "an array of checks", doc = "array" }

schema.top = {
  { key = "test_name", type = T.string, required = true, basename = true,
    meaning = "must equal the file's base name" },
  { key = "total_hours", type = T.positive, required = true, unit = 3600,
    max_sec = schema.MAX_HOURS * 3600, max_why = "100000 (11 years)",
    meaning = "length of the run" },
  { key = "unref_setup_fixtures", type = T.names, default = {},
    meaning = "fixtures set up at start though no event names them" },
  { key = "events", type = T.events, required = true,
    meaning = "the events" },
  { key = "checks", type = T.checks, default = {},
    meaning = 'verdicts judged during the run (section "Checks")' },
  { key = "self_metrics_sec", type = T.positive, min_sec = 0.001, min_why = INTERVAL_FLOOR, scale = 1,
    meaning = "record orchlua.self.* metrics (rss, lua_heap, fds, timers, queue, loop_lag) this often" },
}

T.description = { kind = "object", keys = schema.top,
  expected = "an object (a description)", doc = "object" }

--- The root type of a description.
schema.root = T.description

-- Per key list: its names in order and a name -> entry map, built once
-- (a big description validates the same event keys thousands of times).
local lookups = setmetatable({}, { __mode = "k" })
local function lookup(keys)
  local l = lookups[keys]
  if not l then
    l = { names = {}, by_key = {} }
    for i, entry in ipairs(keys) do
      l.names[i] = entry.key
      l.by_key[entry.key] = entry
    end
    lookups[keys] = l
  end
  return l
end

--- The valid key names of a key list, in order (for "did you mean").
-- The list is shared: do not modify it.
function schema.key_names(keys)
  return lookup(keys).names
end

--- The entry for `key` in a key list, or nil.
function schema.entry(keys, key)
  return lookup(keys).by_key[key]
end

-- A default as JSON shows it.
local function default_text(entry)
  if entry.required then return "required" end
  if entry.default_from then return "`" .. entry.default_from .. "`" end
  local d = entry.default
  if d == nil then return "none" end
  if type(d) == "table" then
    return entry.type.kind == "object" and "`{}`" or "`[]`"
  end
  if type(d) == "string" then return '`"' .. d .. '"`' end
  return "`" .. tostring(d) .. "`"
end

-- Rows for one key list; a group of exclusive keys shares one row, as in the
-- design's table ("`interval_sec` / `interval_min` / `interval_hour`").
local function rows(out, keys, prefix)
  local i = 1
  while i <= #keys do
    local entry = keys[i]
    local names = { "`" .. prefix .. entry.key .. "`" }
    local j = i + 1
    while entry.group and keys[j] and keys[j].group == entry.group do
      names[#names + 1] = "`" .. keys[j].key .. "`"
      j = j + 1
    end
    local doc = entry.type.doc
    if entry.group then doc = doc .. ", at most one" end
    out[#out + 1] = ("| %s | %s | %s | %s |"):format(
      table.concat(names, " / "), doc, default_text(entry), entry.meaning or "")
    i = j
  end
end

--- The README's table of description keys, in Markdown.
function schema.render_markdown()
  local out = { "| key | type | default | meaning |", "|---|---|---|---|" }
  rows(out, schema.top, "")
  rows(out, schema.event, "events[i].")
  rows(out, schema.check, "checks[i].")
  return table.concat(out, "\n") .. "\n"
end

return schema
