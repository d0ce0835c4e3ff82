-- orch.records: the records of the --report file, as data: each type and
-- its fields, with their kinds and meanings.  The one definition: the
-- report reader checks what it reads against it (orch.report), the specs
-- hold every writer to it (engine.lua, checks, health, and the C fast
-- paths of invoker.c and queue.c: spec/e2e/records_spec.lua), and the
-- manual lists every field (spec/e2e/docs_spec.lua).
--
-- kind: "string", "number", "integer", "boolean", "object", "any".
-- req: always there in what this orchlua writes (a reader still accepts a
-- record without it: older files, other writers).
local M = {}

local function f(kind, req, doc) return { kind = kind, req = req or false, doc = doc } end

-- every record
M.common = {
  type = f("string", true, "the record's type, below"),
  seq = f("integer", true, "1, 2, ... in file order across the run's files (a resumed run counts on)"),
  t = f("number", true, "description seconds since t0"),
  ts = f("string", true, "UTC ISO 8601 time"),
}

M.types = {
  run_start = {
    test_name = f("string", true), file = f("string", true, "the description"),
    total_hours = f("number", true, "as run"), time_scale = f("number", true), grace_sec = f("number", true),
    events = f("integer", true, "their number"), version = f("string", true),
    run_id = f("string", true, "a UUID"), labels = f("object", true, "--label's"),
    params = f("object", true, "the params in force, per event id"),
    t0_unix = f("number", true, "t0 as unix seconds"),
    description_hash = f("string", true, "the description's fingerprint (--resume compares it)"),
    report_max_bytes = f("integer", false, "--report-max-mb's size in bytes, when the report rotates"),
  },
  invocation = {
    event = f("string", true, "the function's name"), id = f("string", true),
    iteration = f("integer", true, "0 at startup, k for interval firing k, the last k + 1 at teardown"),
    phase = f("string", true, "startup, interval or teardown"),
    scheduled = f("number", true, "description seconds since t0"), started = f("number", true),
    duration = f("number", true, "description seconds"),
    duration_real = f("number", false, "real seconds, under --time-scale"),
    lateness = f("number", true, "how late it fired, description seconds"),
    status = f("string", true, "ok, error, timeout or cancelled"),
    error = f("string", false, "when it failed: the message and its traceback"),
  },
  skipped = {
    event = f("string", true), id = f("string", true), iteration = f("integer", true),
    phase = f("string", true), scheduled = f("number", true), reason = f("string", true),
    count = f("integer", false, "firings passed over at once (the loop was behind)"),
    last_iteration = f("integer", false, "with count: the last of them"),
  },
  result = {
    event = f("string", false, "the reporting invocation's event; absent for the run's own errors"),
    level = f("string", true, "info, error, warn, metric, or what a reporter put"),
    data = f("any", false, "the value reported; a metric's is {metric, value, fields}"),
  },
  check = {
    name = f("string", true), stat = f("string", true),
    status = f("string", true, "pass, fail, warn or no_data"),
    value = f("number", false, "the judged figure"), min = f("number", false), max = f("number", false),
    action = f("string", true, "fail, abort or warn"),
    final = f("boolean", false, "the verdict at the end of the run"),
  },
  gap = {
    from = f("number", true, "the last record's t before the gap"), to = f("number", true, "where the run resumed"),
    missed = f("object", true, "interval firings missed, per event id"),
    firings_missed = f("boolean", true, "whether any was"),
    torn_bytes = f("integer", false, "the bytes of a line the kill left half written, cut before appending"),
  },
  clock_step = {
    step = f("number", true, "seconds the wall clock jumped (negative: back)"),
    wall = f("string", true, "the wall clock's time after the step"),
  },
  run_end = {
    status = f("integer", true, "the exit status"), reason = f("string", true, "why the run stopped"),
    invocations = f("integer", true), failures = f("integer", true), skipped = f("integer", true),
    results = f("integer", true), error_results = f("integer", true),
  },
}

local KIND = {
  string = function(v) return type(v) == "string" end,
  number = function(v) return type(v) == "number" end,
  integer = function(v) return math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v)) end,
  boolean = function(v) return type(v) == "boolean" end,
  object = function(v) return type(v) == "table" end,
  any = function() return true end,
}

--- names[ty]: the field names of type ty, the common ones first, each
-- group in alphabetical order (a reader's checks go in this order).
M.names = {}
do
  local common = {}
  for name in pairs(M.common) do common[#common + 1] = name end
  table.sort(common)
  for ty, fields in pairs(M.types) do
    local own = {}
    for name in pairs(fields) do own[#own + 1] = name end
    table.sort(own)
    M.names[ty] = table.move(own, 1, #own, #common + 1, table.move(common, 1, #common, 1, {}))
  end
end

--- The field's definition for a record of type ty (common fields
-- included), or nil for a field or a type this orchlua does not write.
function M.field(ty, name)
  local def = M.common[name]
  if def then return def end
  local fields = M.types[ty]
  return fields and fields[name]
end

--- Whether v is of kind.
function M.is(kind, v) return KIND[kind](v) end

return M
