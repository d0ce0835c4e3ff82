-- orch.resume: a run continued after it was killed (--resume RUN.jsonl).
--
-- check() reads the report before anything is opened, and refuses (exit 2,
-- the file untouched) a file that is not an orchlua report, a run that
-- finished (it has run_end), or a description that changed since (unless
-- --force).  The engine then keeps the run's t0 and T (core.start_clock
-- with run_start's t0_unix), replays the records into the per-event
-- figures (replay: the summary counts the whole run), appends with seq
-- going on, and writes one `gap` record: from the last record before the
-- kill to the resume, the interval firings missed per event.  Fixtures are
-- set up again and at_startup events run again; interval events go on on
-- their original grid.  A report is read line by line: memory does not
-- grow with its length.
local cjson = require "cjson.safe"

local M = {}

-- FNV-1a of a file's bytes, as 8 hex digits: "the same description".
function M.fingerprint(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return ("%08x"):format(require("orch.core").fnv1a(s))
end

-- Reads path and its rotated segments (orch.report's finder): nil,
-- message (exit 2) or the report's state: { start = run_start, last_seq =,
-- last_t =, lines =, files = (the segments, in order), segment = (the
-- last one's number: appending goes on there), keep = (its bytes up to its
-- last whole line), torn = (the bytes of a torn last line, or nil) }.
function M.check(path, desc, opts)
  local f, e = io.open(path, "rb")
  if not f then return nil, ("--resume %s"):format(e) end
  local first = f:read("L")
  local start = first and first:sub(-1) == "\n" and cjson.decode(first)
  if type(start) ~= "table" or start.type ~= "run_start" or type(start.t0_unix) ~= "number" then
    f:close()
    return nil, ("--resume %s: not an orchlua report of this version (its first line is not a run_start "
      .. "record with t0_unix)"):format(path)
  end
  local files = require("orch.report").segments(path)
  local st = { path = path, start = start, last_seq = math.tointeger(start.seq) or 1, last_t = 0, lines = 1,
               files = files, segment = #files - 1 }
  for n, p in ipairs(files) do
    local bytes, lineno = 0, 0
    if n == 1 then
      bytes, lineno = #first, 1
    else
      f, e = io.open(p, "rb")
      if not f then return nil, ("--resume %s"):format(e) end
    end
    for line in f:lines("L") do
      lineno = lineno + 1
      if line:sub(-1) ~= "\n" then
        -- the kill cut this line short: only the newest segment may end so
        if n < #files then
          f:close()
          return nil, ("--resume %s:%d: a torn line in a segment the run had left for the next: not a report "
            .. "orchlua wrote"):format(p, lineno)
        end
        st.torn = #line
        break
      end
      bytes = bytes + #line
      st.lines = st.lines + 1
      if line:find('"type":"run_end"', 1, true) then
        f:close()
        return nil, ("--resume %s: the run finished (run_end at line %d%s): there is nothing to resume")
          :format(path, lineno, n > 1 and (" of " .. p) or "")
      end
      local seq = line:match('"seq":(%d+)')
      if seq then st.last_seq = math.tointeger(tonumber(seq)) or st.last_seq end
      local t = line:match('"t":(%-?[%d%.e%+%-]+)')
      if t and tonumber(t) then st.last_t = math.max(st.last_t, tonumber(t)) end
    end
    f:close()
    st.keep = bytes
  end
  if not opts.force then
    local fp = M.fingerprint(desc.file)
    if start.test_name ~= desc.test_name or start.description_hash ~= fp then
      return nil, ("--resume %s: the description changed since the run started (%s): --force resumes it anyway")
        :format(path, start.test_name ~= desc.test_name
          and ("test_name %q, then %q"):format(tostring(start.test_name), desc.test_name)
          or ("%s is not the file it was"):format(desc.file))
    end
  end
  return st
end

-- One record of the report added to the run's figures, and fed to its
-- checks as the live run feeds them (engine.lua: Run:done, result_hook).
local function replay_record(run, r, ty, seen)
  local st = r.id and run.per_event[r.id]
  local checks = run.checks
  if checks then checks:replay_to(r.t) end
  if ty == "result" then
    run.results = run.results + 1
    if checks and type(r.t) == "number" then run.queue:tap(r.level, r.data, r.t) end
    if r.level == "error" then
      run.error_results = run.error_results + 1
      local est = r.event ~= nil and run.per_event[r.event]
      if est then est.error_results = (est.error_results or 0) + 1 end
      if checks and type(r.t) == "number" then checks:error_result(r.event, r.t) end
      if checks and checks:owns(r.event) then
        run.owned_error_results = run.owned_error_results + 1
      else
        run.failed = true
      end
    end
  elseif st then
    local k = math.tointeger(r.last_iteration or r.iteration)
    if k and r.phase == "interval" and (seen[r.id] or 0) < k then seen[r.id] = k end
    if ty == "skipped" then
      st.skipped = st.skipped + (math.tointeger(r.count) or 1)
    else
      st.runs = st.runs + 1
      local duration = type(r.duration) == "number" and r.duration or 0
      local late_s = type(r.lateness) == "number" and r.lateness / run.scale or 0
      if type(r.duration) == "number" then st.duration:add(r.duration) end
      if type(r.lateness) == "number" then st.lateness:add(late_s * 1000) end
      if r.status ~= "ok" then st.failures = st.failures + 1 end
      if checks and type(r.t) == "number" then checks:invocation(r.id, r.t, duration, late_s, r.status == "ok") end
      if r.status ~= "ok" then
        if not (checks and checks:owns(r.id)) then run.failed = true end
        if r.status == "timeout" then st.timeouts = st.timeouts + 1 end
        local errors = st.errors or {}
        st.errors = errors
        if #errors < 100 then errors[#errors + 1] = tostring(r.error) end
      end
    end
  end
end

-- Adds the records of the report (every segment, in order) to the run's
-- figures (the invokers' counts and statistics, results, errors) and its
-- checks (Checks:replay_begin); returns the highest interval iteration
-- seen per event id, and the reason to stop at once (an abort check that
-- had failed) or nil.
function M.replay(run, files, upto)
  local seen = {}
  if run.checks then run.checks:replay_begin(upto) end
  for _, path in ipairs(files) do
    for line in io.lines(path) do
      local ty = line:match('"type":"(%a+)"')
      if ty == "invocation" or ty == "skipped" or ty == "result" then
        local r = cjson.decode(line)
        if type(r) == "table" then replay_record(run, r, ty, seen) end
      end
    end
  end
  return seen, run.checks and run.checks:replay_end(upto)
end

return M
