-- orch.cli: the command line.  Every problem with what the user typed or
-- configured exits 2 with one line saying what was expected and what was
-- found; the run itself decides 0, 1 or 128+N.
local suggest = require "orch.suggest"

local M = {}

local VERSION = "unknown"

local USAGE = [[
usage: orchlua run NAME|FILE.json [--hours H] [--time-scale X] [--report FILE.jsonl]
                                  [--junit FILE.xml] [--html FILE.html] [--fail-fast] [-q|-qq|-v]
                                  [--no-progress] [--resume RUN.jsonl | --resume-if-exists] [--force]
                                  [--listen [ADDR:]PORT]
       orchlua report RUN.jsonl [--html FILE.html]    the summary (and HTML report) of a --report file
       orchlua report A.jsonl B.jsonl [--threshold [NAME=]PCT]... [--ignore-label NAME]...
                                        what changed from run A to run B; exit 1 on a regression
       orchlua run ... [--param NAME=VALUE]... [--label KEY=VALUE]... [--sink URL]... [--report-max-mb N]
       orchlua ship RUN.jsonl --sink URL    upload a run to a sink (again), idempotent
       orchlua list                     descriptions found: name, hours, events
       orchlua check [NAME...]          validate and resolve everything, run nothing
       orchlua plan NAME [--hours H] [--all]   the timeline of firings, and counts per event
       orchlua --version | --help | help [TOPIC]   TOPIC: a command, orchlua, description, orch
common: --config FILE  --descriptions DIR  --sources LIST]]

local HELP = {
  run = [[
orchlua run NAME|FILE.json [options]
  Runs the description NAME (found under the descriptions folders) or FILE.json.
  --hours H          run for H hours instead of total_hours
  --time-scale X     rehearse X times faster: intervals, timeouts, sleeps, grace and
                     the total are divided by X; reported times stay in description time
  --report FILE      write every record as JSON lines (flushed as it happens)
  --junit FILE       write JUnit XML at the end, one testcase per event id
  --html FILE        write a self-contained HTML report at the end (timeline, durations,
                     lateness, metrics, errors); opens offline
  --fail-fast        start the orderly stop at the first failure
  -q                 failures, errors and a one-line status now and then
  -qq                failures and errors only
  -v                 more console lines (debug logs, full tracebacks)
  --no-progress      no live status area (there is none unless stdout is a terminal;
                     NO_COLOR turns colours off, TERM=dumb the area and the colours)
  --grace SEC        seconds running events get after the kill switch (config grace_sec)
  --param NAME=VALUE, --param ID.NAME=VALUE
                     set a description param of every event that has it (or of event ID);
                     VALUE is JSON or a bare word; also ORCHLUA_PARAM_<NAME>
  --label KEY=VALUE  tag the run (run_start, sink rows); also ORCHLUA_LABEL_<KEY>
  --sink URL         stream the report into postgresql://... while the run goes on
                     (repeatable; the report file stays the source of truth)
  --report-max-mb N  rotate the report: FILE.jsonl, FILE.1.jsonl, ... at N MiB each
  --resume FILE      continue the killed run whose --report FILE this is: same t0 and T,
                     fixtures and startup events again, interval events on their grid,
                     one gap record, records appended (exit 2 for a finished run)
  --resume-if-exists resume the --report file when it exists, else start (a restarted unit)
  --force            resume although the description changed
  --listen [ADDR:]PORT  serve /metrics (Prometheus), /status (JSON) and / (the report so
                     far) while the run goes on; 127.0.0.1 unless ADDR is written out
                     (config listen); ORCHLUA_LISTEN_TOKEN set: a bearer token is required
Exit status: 0 all succeeded; 1 a failure or an error result; 2 usage or
description errors; 128+N stopped by signal N.]],
  list = [[
orchlua list
  Lists the descriptions found under the descriptions folders: name, hours, events, file.]],
  check = [[
orchlua check [NAME...]
  Loads and validates the descriptions (all of them without NAME), loads the
  sources and resolves every event and parameter name.  Runs nothing.
  Exit 0 when everything resolves, 2 otherwise.  Alias: --load-orch.]],
  plan = [[
orchlua plan NAME [--hours H] [--all]
  Prints the timeline the run will follow (startup at t0, firings at t0 + k*interval,
  none at or after the end, teardown after the end) and the firings per event.
  --hours H          plan a run of H hours instead of total_hours
  --all              every firing of the timeline, not the first 30 (at most 10,000,000)]],
  report = [[
orchlua report RUN.jsonl [--html FILE.html]
  Reads a --report file (from this machine or another; RUN.1.jsonl, RUN.2.jsonl
  ... after it when the run rotated) in bounded memory, and prints the run's
  summary: per event runs, failures, skipped, timeouts, duration and lateness;
  the errors grouped by message; the checks' verdicts.
  --html FILE        also write the self-contained HTML report of the run
orchlua report A.jsonl B.jsonl [--threshold [NAME=]PCT]... [--threshold-file F]
                   [--ignore-label NAME]... [--only GLOB]... [--exclude GLOB]...
  Compares run B with run A: per event the counts, the error results and the
  duration percentiles, per metric series (name and fields, per-instance labels
  such as pid left out) the count, mean and p99, per check its verdict.  A
  change beyond the threshold in the wrong direction is a regression: more
  failures, timeouts, skipped firings or error results (as a rate of runs),
  fewer runs, slower p50/p99 (by more than 1 ms real), later p99 (by more than
  10 ms), a higher metric mean or p99 (lower for --higher-is-better), a check
  that now fails, an event or metric gone.  Regressions come first.
  --threshold PCT            percent of change tolerated (default 10)
  --threshold NAME=PCT       for the metrics or events matching NAME (a glob)
  --threshold-file FILE      lines of PCT or NAME=PCT (# comments); the command
                             line's win
  --higher-is-better NAMES   comma-separated metric names for which more is
                             better
  --ignore-label NAME        a label that names an instance (always: pid, ppid,
                             tid, pgid, container_id, pod, run_id, seq)
  --only GLOB, --exclude GLOB   the events, metrics and checks compared
Exit status: one file: the run's verdict, 0 when it ended with status 0, else 1
(failed, stopped, or never finished); two: 0 no regression, 1 a regression;
2 for a file that cannot be read or is not a valid report (file:line and why).]],
  ship = [[
orchlua ship RUN.jsonl --sink URL
  Uploads a finished or killed run (and its rotated segments) to the sink:
  what the database has already is skipped, so shipping twice stores nothing twice.
Exit status: 0 stored; 1 a database error (ship again later); 2 a file that
is not a report, or a bad URL.]],
  help = [[
orchlua help [TOPIC]
  Shows the help of a command (run, list, check, plan, report, ship), or a page of
  the manual: orchlua (the command line), description (a description's keys), orch
  (the Lua API).  Without TOPIC, the usage and the topics.]],
}

local COMMANDS = { "run", "list", "check", "plan", "report", "ship", "help" }

-- flag -> { key, takes value, commands it applies to (nil: all) }
local FLAGS = {
  ["--config"] = { "config", true }, ["--descriptions"] = { "descriptions", true },
  ["--sources"] = { "sources", true },
  ["--hours"] = { "hours", true, { run = true, plan = true } },
  ["--runtime-orch"] = { "hours", true, { run = true, plan = true } },
  ["--time-scale"] = { "time_scale", true, { run = true } },
  ["--all"] = { "all", false, { plan = true } },
  ["--report"] = { "report", true, { run = true } },
  ["--junit"] = { "junit", true, { run = true } },
  ["--html"] = { "html", true, { run = true, report = true } },
  ["--threshold"] = { "threshold", true, { report = true }, "list" },
  ["--threshold-file"] = { "threshold_file", true, { report = true } },
  ["--higher-is-better"] = { "higher_is_better", true, { report = true } },
  ["--ignore-label"] = { "ignore_label", true, { report = true }, "list" },
  ["--only"] = { "only", true, { report = true }, "list" },
  ["--exclude"] = { "exclude", true, { report = true }, "list" },
  ["--grace"] = { "grace", true, { run = true } },
  ["--resume"] = { "resume", true, { run = true } },
  ["--resume-if-exists"] = { "resume_if_exists", false, { run = true } },
  ["--force"] = { "force", false, { run = true } },
  ["--listen"] = { "listen", true, { run = true } },
  ["--fail-fast"] = { "fail_fast", false, { run = true } },
  ["--no-progress"] = { "no_progress", false, { run = true } },
  ["-q"] = { "quiet", false, { run = true } }, ["--quiet"] = { "quiet", false, { run = true } },
  ["-qq"] = { "quieter", false, { run = true } },
  ["-v"] = { "verbose", false }, ["--verbose"] = { "verbose", false },
  ["-h"] = { "help", false }, ["--help"] = { "help", false },
  ["--version"] = { "version", false }, ["-V"] = { "version", false },
  -- fleets (orch.fleet): the 4th field makes a flag repeatable (a list)
  ["--param"] = { "param", true, { run = true, check = true, plan = true }, "list" },
  ["--label"] = { "label", true, { run = true }, "list" },
  ["--sink"] = { "sink", true, { run = true, ship = true }, "list" },
  ["--report-max-mb"] = { "report_max_mb", true, { run = true } },
}

-- the seed's flags: commands in disguise
local COMMAND_FLAGS = { ["--run-orch"] = "run", ["--test-orch"] = "run", ["--load-orch"] = "check" }

-- read by spec/e2e/docs_spec.lua: every flag and command is in orchlua(1)
M.FLAGS, M.COMMAND_FLAGS, M.COMMANDS = FLAGS, COMMAND_FLAGS, COMMANDS

local UsageError = {}

local function usage_error(fmt, ...)
  error(setmetatable({ msg = fmt:format(...) }, UsageError), 0)
end

local function quote(s) return ("%q"):format(s) end

-- Parses argv into {command=, names={}, opts={}}.
function M.parse(argv)
  local cmd, names, opts = nil, {}, {}
  local i = 1
  local function value_of(flag, inline)
    if inline then return inline end
    i = i + 1
    local v = argv[i]
    if v == nil then usage_error("%s needs a value", flag) end
    return v
  end
  while i <= #argv do
    local a = argv[i]
    local flag, inline = a:match("^(%-%-[%w%-]+)=(.*)$")
    flag = flag or a
    if COMMAND_FLAGS[flag] then
      local c = COMMAND_FLAGS[flag]
      if cmd and cmd ~= c then usage_error("%s cannot be combined with the command %s", flag, cmd) end
      cmd = c
      if c == "run" then names[#names + 1] = value_of(flag, inline) end
    elseif FLAGS[flag] then
      local spec = FLAGS[flag]
      if spec[4] == "list" then   -- repeatable
        opts[spec[1]] = opts[spec[1]] or {}
        table.insert(opts[spec[1]], value_of(flag, inline))
      elseif spec[2] then
        opts[spec[1]] = value_of(flag, inline)
      else
        if inline then usage_error("%s takes no value, found %s", flag, quote(inline)) end
        opts[spec[1]] = true
      end
      opts._seen = opts._seen or {}
      opts._seen[#opts._seen + 1] = flag
    elseif a:match("^%-") and a ~= "-" then
      local known = {}
      for f in pairs(FLAGS) do known[#known + 1] = f end
      for f in pairs(COMMAND_FLAGS) do known[#known + 1] = f end
      usage_error("unknown flag %s%s", flag, suggest.hint(flag, known))
    elseif cmd == nil then
      local ok = false
      for _, c in ipairs(COMMANDS) do if c == a then ok = true end end
      if not ok then usage_error("unknown command %s%s", quote(a), suggest.hint(a, COMMANDS)) end
      cmd = a
    else
      names[#names + 1] = a
    end
    i = i + 1
  end
  -- flags that apply to other commands only
  for _, f in ipairs(opts._seen or {}) do
    local only = FLAGS[f][3]
    if only and cmd and not only[cmd] then usage_error("%s does not apply to %s", f, cmd) end
  end
  return { command = cmd, names = names, opts = opts }
end

local function number_opt(opts, key, flag, allow_zero, max, max_why)
  local v = opts[key]
  if v == nil then return nil end
  local n = tonumber(v)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then
    usage_error("%s expects a number, found %s", flag, quote(v))
  end
  if n < 0 or (n == 0 and not allow_zero) then
    usage_error("%s expects a number %s 0, found %s", flag, allow_zero and ">=" or ">", v)
  end
  if max and n > max then
    usage_error("%s expects a number at most %s, found %s", flag, max_why or ("%d"):format(max), v)
  end
  return n
end

-- bounds of --hours and --time-scale: past them the clock's arithmetic
-- (integer milliseconds, k * interval) stops being exact
local function hours_opt(o)
  local schema = require "orch.schema"
  return number_opt(o, "hours", "--hours", false, schema.MAX_HOURS, "100000 (11 years)")
end
local MAX_SCALE = 1000000


-- ---- shared steps ----------------------------------------------------------

local function out(...) io.stdout:write(...) end
local function err(...) io.stderr:write(...) end

-- exit 2 when the schedule is out of bounds (orch.plan.check)
local function plan_ok(desc, hours)
  local e = require("orch.plan").check(desc, hours or desc.total_hours)
  if e then err("orchlua: ", e, "\n") return false end
  return true
end

local function load_config(opts)
  local config = require "orch.config"
  local cfg, e = config.load(opts.config)
  if not cfg then return nil, e end
  local function split(s)
    local list = {}
    for part in s:gmatch("[^,]+") do
      part = part:match("^%s*(.-)%s*$")
      if part ~= "" then list[#list + 1] = part end
    end
    return list
  end
  if opts.descriptions then cfg.descriptions = split(opts.descriptions); cfg.descriptions_from_cli = true end
  if opts.sources then cfg.sources = split(opts.sources); cfg.sources_from_cli = true end
  config.apply_paths(cfg)
  return cfg
end

-- Description folders as absolute paths: from the command line relative to
-- the current directory, from the config relative to the root.
local function description_dirs(cfg)
  local config = require "orch.config"
  local cwd = config.cwd()
  local dirs = {}
  for _, d in ipairs(cfg.descriptions) do
    d = cfg.descriptions_from_cli and d or config.abs(cfg.root, d)
    -- shown as the user would type it from here
    if d:sub(1, #cwd + 1) == cwd .. "/" then d = d:sub(#cwd + 2) end
    dirs[#dirs + 1] = d
  end
  return dirs
end

local function print_errors(errors)
  local description = require "orch.description"
  for _, e in ipairs(errors) do
    if type(e) == "table" then
      err("orchlua: ", description.format_error(e), "\n")
    else
      err("orchlua: ", tostring(e), "\n")
    end
  end
end

-- Finds and loads one description; returns desc or nil after printing.
-- params: the --param list (ORCHLUA_PARAM_* apply too), or nil.
local function load_description(cfg, name, params)
  local description = require "orch.description"
  local path, e = description.find(description_dirs(cfg), name)
  if not path then
    err("orchlua: ", e, "\n")
    return nil
  end
  local desc, errors = description.load(path)
  if not desc then
    print_errors(errors)
    err(("orchlua: %s: %d problem%s\n"):format(path, #errors, #errors == 1 and "" or "s"))
    return nil
  end
  do
    local ok, e2 = require("orch.fleet").params_for(desc, params)
    if not ok then err("orchlua: ", path, ": ", e2, "\n") return nil end
  end
  return desc
end

local loaded_sources
local function load_sources(cfg)
  if loaded_sources then return loaded_sources end
  local sources = require "orch.sources"
  local root = cfg.sources_from_cli and nil or cfg.root
  local list, errors = sources.load(cfg.sources, root)
  if not list then
    print_errors(errors)
    return nil
  end
  loaded_sources = list
  return list
end

local function bind(desc, srcs)
  local resolve = require "orch.resolve"
  local events, errors = resolve.bind(desc, srcs)
  if not events then
    print_errors(errors)
    err(("orchlua: %s: %d unresolved name%s\n"):format(desc.file, #errors, #errors == 1 and "" or "s"))
  end
  return events
end

-- ---- commands --------------------------------------------------------------

local cmd = {}

function cmd.help(a)
  local topic = a.names[1]
  local help = require "orch.help"
  if topic == nil then
    out(USAGE, "\n", help.topics({ "run", "list", "check", "plan", "report", "ship" }), "\n")
    return 0
  end
  if HELP[topic] then
    out(HELP[topic], "\n")
    return 0
  end
  local page = help.find(topic)
  if not page then
    local names = help.names()
    for _, c in ipairs(COMMANDS) do names[#names + 1] = c end
    usage_error("no help for %s%s", quote(topic), suggest.hint(topic, names))
  end
  local text, e = help.text(page)
  if not text then err("orchlua: ", e, "\n") return 1 end
  help.show(text, out)
  return 0
end

function cmd.list(a)
  if #a.names > 0 then usage_error("list takes no names, found %s", quote(a.names[1])) end
  local cfg, e = load_config(a.opts)
  if not cfg then err("orchlua: ", e, "\n") return 2 end
  local description = require "orch.description"
  local list, unreadable = description.list(description_dirs(cfg))
  for _, u in ipairs(unreadable or {}) do err("orchlua: warning: ", u, ": its descriptions are not listed\n") end
  if #list == 0 then
    out("no descriptions under ", table.concat(description_dirs(cfg), ", "), "\n")
    return 0
  end
  local w = 4
  for _, d in ipairs(list) do w = math.max(w, #d.name) end
  out(("%-" .. w .. "s  %8s  %6s  %s\n"):format("name", "hours", "events", "file"))
  local status = 0
  for _, d in ipairs(list) do
    local desc = description.load(d.path)
    if desc then
      out(("%-" .. w .. "s  %8g  %6d  %s\n"):format(d.name, desc.total_hours, #desc.events, d.path))
    else
      out(("%-" .. w .. "s  %8s  %6s  %s (invalid: see orchlua check %s)\n"):format(d.name, "?", "?", d.path, d.name))
    end
  end
  return status
end

function cmd.check(a)
  local cfg, e = load_config(a.opts)
  if not cfg then err("orchlua: ", e, "\n") return 2 end
  local description = require "orch.description"
  local names = a.names
  if #names == 0 then
    local list, unreadable = description.list(description_dirs(cfg))
    for _, u in ipairs(unreadable or {}) do err("orchlua: warning: ", u, ": its descriptions are not checked\n") end
    for _, d in ipairs(list) do names[#names + 1] = d.path end
    if #names == 0 then
      err("orchlua: no descriptions under ", table.concat(description_dirs(cfg), ", "), "\n")
      return 2
    end
  end
  local srcs = load_sources(cfg)
  local bad = srcs == nil
  for _, name in ipairs(names) do
    local desc = load_description(cfg, name, a.opts.param)
    if not desc or not plan_ok(desc) then
      bad = true
    elseif srcs then
      local events = bind(desc, srcs)
      if events then
        local c = 0
        for _, ev in ipairs(events) do if not ev.names then c = c + 1 end end
        out(("ok  %s (%s): %d event%s, %g h%s\n"):format(desc.test_name, desc.file, #events,
          #events == 1 and "" or "s", desc.total_hours,
          c > 0 and (", %d C event%s (names resolved at run time)"):format(c, c == 1 and "" or "s") or ""))
      else
        bad = true
      end
    end
  end
  return bad and 2 or 0
end

function cmd.plan(a)
  if #a.names ~= 1 then usage_error("plan needs one description name, found %d", #a.names) end
  local hours = hours_opt(a.opts)
  local cfg, e = load_config(a.opts)
  if not cfg then err("orchlua: ", e, "\n") return 2 end
  local desc = load_description(cfg, a.names[1], a.opts.param)
  if not desc then return 2 end
  if not plan_ok(desc, hours) then return 2 end
  if not a.opts.all then
    out(require("orch.plan").render(desc, hours or desc.total_hours))
    return 0
  end
  -- millions of lines: a reader that stops (| head) ends the walk
  local closed = {}
  local function write(s)
    local ok, werr = io.stdout:write(s)
    if not ok then error(setmetatable({ msg = werr }, closed), 0) end
  end
  local done, res, e2 = pcall(require("orch.plan").render, desc, hours or desc.total_hours,
                              { all = true, write = write })
  if not done then
    if getmetatable(res) ~= closed then error(res, 0) end
    if tostring(res.msg):find("Broken pipe", 1, true) then return 0 end
    err("orchlua: plan --all: stdout: ", tostring(res.msg), "\n")
    return 1
  end
  if res == nil and e2 then err("orchlua: ", e2, "\n") return 2 end
  return 0
end

-- A path made absolute, with ".", ".." and repeated "/" resolved by name
-- (links are not followed): enough to see two options naming one file.
local function abs_path(p)
  if p:sub(1, 1) ~= "/" then p = require("orch.config").cwd() .. "/" .. p end
  local parts = {}
  for seg in p:gmatch("[^/]+") do
    if seg == ".." then
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  return "/" .. table.concat(parts, "/")
end

-- Two outputs (or an output and an input) naming one file: the one written
-- last would replace the other without a word.  list: { {flag, path}, ... }
-- Links count: the file a path resolves to (fs.file_id) is compared too.
-- inputs: { {what, path}, ... } files no output may replace (the
-- description, the sources).
local function distinct_files(list, inputs)
  local seen = {}
  local fs = require "orch.fs"
  local function keys(path)
    local k = { abs_path(path) }
    local id = fs.file_id(path)
    if id then k[2] = "id:" .. id end
    return k
  end
  for _, fp in ipairs(inputs or {}) do
    for _, key in ipairs(keys(fp[2])) do seen[key] = fp[1] end
  end
  for _, fp in ipairs(list) do
    local flag, path = fp[1], fp[2]
    if path then
      for _, key in ipairs(keys(path)) do
        if seen[key] then
          usage_error("%s and %s name the same file (%s): each needs its own", seen[key], flag, path)
        end
      end
      for _, key in ipairs(keys(path)) do seen[key] = flag end
    end
  end
end

function cmd.run(a)
  if #a.names ~= 1 then usage_error("run needs one description name or file, found %d", #a.names) end
  local o = a.opts
  local hours = hours_opt(o)
  local scale = number_opt(o, "time_scale", "--time-scale", false, MAX_SCALE)
  local grace = number_opt(o, "grace", "--grace", true)
  local nq = 0   -- -q -q is -qq
  for _, f in ipairs(o._seen or {}) do if f == "-q" or f == "--quiet" then nq = nq + 1 end end
  if nq >= 2 then o.quieter = true end
  if (o.quiet or o.quieter) and o.verbose then usage_error("-q and -v cannot be combined") end
  local cfg, e = load_config(o)
  if not cfg then err("orchlua: ", e, "\n") return 2 end
  local desc = load_description(cfg, a.names[1], o.param)
  if not desc then return 2 end
  if not plan_ok(desc, hours) then return 2 end
  -- --resume FILE / --resume-if-exists (with --report): checked before
  -- any file is opened, so that a refusal leaves the report untouched
  local resume
  if o.resume_if_exists then
    if not o.report then usage_error("--resume-if-exists resumes the --report file: --report FILE is needed") end
    local f = io.open(o.report, "rb")
    if f then f:close(); o.resume = o.resume or o.report end
  end
  if o.resume then
    if o.report and abs_path(o.report) ~= abs_path(o.resume) then
      usage_error("--resume %s appends to that file: --report %s names another", o.resume, o.report)
    end
    local e9
    resume, e9 = require("orch.resume").check(o.resume, desc, { force = o.force })
    if not resume then err("orchlua: ", e9, "\n") return 2 end
    o.report = o.resume
    -- the same T and the same clock as the run it continues
    if hours and math.abs(hours * 3600 - resume.start.total_hours * 3600) > 1e-6 and not o.force then
      usage_error("--hours %g: the run being resumed lasts %g h (--force to change it)", hours,
        resume.start.total_hours)
    end
    hours = hours or resume.start.total_hours
    scale = scale or tonumber(resume.start.time_scale)
  end
  local fleet, fe = require("orch.fleet").run_options(o, desc, cfg)
  if not fleet then err("orchlua: ", fe, "\n") return 2 end
  if resume and type(resume.start.run_id) == "string" then fleet.run_id = resume.start.run_id end  -- one run
  -- the rotation goes on at the size it had, unless --report-max-mb says another
  if resume and not fleet.max_bytes then fleet.max_bytes = math.tointeger(resume.start.report_max_bytes) end
  local srcs = load_sources(cfg)
  if not srcs then return 2 end
  local events = bind(desc, srcs)
  if not events then return 2 end
  -- outputs are checked before anything runs
  local inputs = { { "the description", desc.file } }
  for _, src in ipairs(srcs) do inputs[#inputs + 1] = { "the source " .. src.file, src.path } end
  distinct_files({ { "--report", o.report }, { "--junit", o.junit }, { "--html", o.html } }, inputs)
  local live, e10 = require("orch.live").open_for(o, cfg, scale or 1, grace or cfg.grace_sec)
  if e10 then err("orchlua: ", e10, "\n") return 2 end
  -- --junit and --html checked before the report is opened: a refusal
  -- leaves it as it was (a resumed one's torn tail too)
  if o.junit then
    local ok, e3 = require("orch.output.junit").check(o.junit)
    if not ok then err("orchlua: --junit ", e3, "\n") return 2 end
  end
  if o.html then
    local ok, e6 = require("orch.output.html").check(o.html)
    if not ok then err("orchlua: --html ", e6, "\n") return 2 end
  end
  local jsonl
  if o.report then
    local e2
    jsonl, e2 = require("orch.output.jsonl").open(o.report, resume and "a", resume and resume.segment,
      resume and resume.keep)
    if not jsonl then err("orchlua: --report ", e2, "\n") return 2 end
  end
  -- --html is made from the records: without --report they go to a
  -- temporary file
  local html_src = o.report
  if o.html then
    if not jsonl then
      html_src = os.tmpname()
      local e7
      jsonl, e7 = require("orch.output.jsonl").open(html_src)
      if not jsonl then err("orchlua: --html: a temporary file: ", e7, "\n") return 2 end
    end
  end
  fleet:start(jsonl, o.report)
  if live then live.opts.report_path = html_src end
  local console = require("orch.output.console").new({ level = (o.quiet or o.quieter) and 0 or o.verbose and 2 or 1,
                                                        brief = o.quiet and not o.quieter,
                                                        progress = not o.no_progress })
  local status, run = require("orch.engine").run({
    desc = desc, events = events, hours = hours, scale = scale or 1,
    grace = grace or cfg.grace_sec, jsonl = jsonl, console = console,
    fail_fast = o.fail_fast, version = VERSION, report_path = o.report, junit_path = o.junit,
    html_path = o.html, labels = fleet.labels, run_id = fleet.run_id, live = live, loop_lag_sec = cfg.loop_lag_sec,
    resume = resume, description_hash = require("orch.resume").fingerprint(desc.file),
    report_max_bytes = fleet.max_bytes,
    -- JUnit and HTML are written before run_end: a write that fails is in
    -- the run's status, its summary and its run_end alike
    -- A signal meanwhile stops them (Run:interrupted): said, no file.
    before_end = (o.junit or o.html) and function(run)
      local function stop() return run:interrupted() ~= nil end
      if o.junit then
        if stop() then
          run:output_interrupted("--junit", o.junit)
        else
          local ok, e5 = require("orch.output.junit").write(o.junit, run)
          if not ok then run:output_failed("--junit " .. tostring(e5)) end
        end
      end
      if o.html then   -- from the records on disk, and the run_end to come
        local hint = o.report and (" (`orchlua report %s --html %s` makes it)"):format(o.report, o.html)
        if stop() then return run:output_interrupted("--html", o.html, hint) end
        jsonl.w:flush()
        local html = require("orch.output.html")
        html.announce(run.console, html_src)
        local ok, e8 = html.from_report(html_src, o.html, o.report,
          { type = "run_end", t = require("orch.core").now(), status = run:exit_status(), reason = run.stop_reason },
          stop)
        if not ok and stop() then
          run:output_interrupted("--html", o.html, hint)
        elseif not ok then
          run:output_failed("--html " .. tostring(e8))
        end
      end
    end,
  })
  if jsonl then
    local ok, e4 = jsonl:close()
    if not ok and not run.report_failed then
      err("orchlua: --report ", tostring(e4), "\n")
      if status == 0 then status = 1 end
    end
  end
  if live then live:finish() end
  status = fleet:finish(status)
  console:close()
  if o.html and html_src ~= o.report then os.remove(html_src) end
  return status
end

-- report RUN.jsonl [--html F] | report A.jsonl B.jsonl: exit 0, 1 (the
-- run failed; a regression), 2 (a file that is not a report)
function cmd.report(a)
  local o = a.opts
  if #a.names < 1 or #a.names > 2 then
    usage_error("report needs one JSONL report, or two to compare, found %d", #a.names)
  end
  if #a.names == 2 and o.html then usage_error("--html takes one report, found two") end
  if #a.names == 1 then
    for _, f in ipairs({ "threshold", "threshold_file", "higher_is_better", "ignore_label", "only", "exclude" }) do
      if o[f] then usage_error("--%s compares two reports, found one", (f:gsub("_", "-"))) end
    end
  end
  if o.html then
    distinct_files({ { "the report", a.names[1] }, { "--html", o.html } })
    local ok, e = require("orch.output.html").check(o.html)
    if not ok then err("orchlua: --html ", e, "\n") return 2 end
  end
  local report = require "orch.report"
  local cmp_opts = require("orch.report_args").compare_opts(o, usage_error)
  local reps = {}
  for i, path in ipairs(a.names) do
    local rep, e = report.load(path, { ignore_labels = #a.names == 2 and cmp_opts.ignore_labels or nil })
    if not rep then err("orchlua: ", e, "\n") return 2 end
    reps[i] = rep
  end
  if #reps == 1 then
    out(report.render_summary(reps[1]))
    if o.html then
      local ok, e = require("orch.output.html").write(o.html, reps[1])
      if not ok then err("orchlua: --html ", tostring(e), "\n") return 2 end
      out("html: ", o.html, "\n")
    end
    return report.verdict(reps[1])
  end
  local cmp = report.compare(reps[1], reps[2], cmp_opts)
  out(report.render_compare(cmp))
  return #cmp.regressions > 0 and 1 or 0
end

-- ship RUN.jsonl --sink URL: 0, 1 (a database error), 2 (bad input)
function cmd.ship(a)
  if #a.names ~= 1 then usage_error("ship needs one JSONL report, found %d", #a.names) end
  local cfg, e = load_config(a.opts)
  if not cfg then err("orchlua: ", e, "\n") return 2 end
  local status, e2 = require("orch.fleet").ship(a.names[1], a.opts, cfg)
  if not status then err("orchlua: ", e2, "\n") return 2 end
  return status
end

-- main(argv, version) -> exit status
function M.main(argv, version)
  VERSION = version or VERSION
  local ok, res = pcall(function()
    local a = M.parse(argv)
    if a.opts.version then
      out("orchlua ", VERSION, " (", _VERSION, ", libuv ", "linked statically", ")\n")
      if a.opts.verbose then
        local cfg = load_config(a.opts)   -- which puts the project's paths first
        if cfg then
          out("project root: ", cfg.root, cfg.file and (" (" .. cfg.file .. ")") or " (no .orchlua)", "\n")
          out("lua path:\n  ", (package.path:gsub(";", "\n  ")), "\n")
          out("lua cpath:\n  ", (package.cpath:gsub(";", "\n  ")), "\n")
        end
      end
      return 0
    end
    if a.opts.help then
      if a.command and a.command ~= "help" then return cmd.help({ names = { a.command } }) end
      return cmd.help({ names = {} })
    end
    if a.command == nil then usage_error("a command is needed") end
    return cmd[a.command](a)
  end)
  if ok then return res end
  if getmetatable(res) == UsageError then
    err("orchlua: ", res.msg, "\n", USAGE, "\n")
    return 2
  end
  err("orchlua: internal error: ", tostring(res), "\n")
  return 1
end

return M
