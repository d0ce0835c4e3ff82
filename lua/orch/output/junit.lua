-- orch.output.junit: JUnit XML for CI servers, one testcase per event id.
local json = require "orch.output.json"
local report = require "orch.report"

local M = {}

-- Text for an XML attribute or element: valid UTF-8 (the file says so; a
-- bad byte becomes U+FFFD), without the characters XML 1.0 forbids (C0
-- controls but tab and newlines, U+FFFE, U+FFFF: "?"), markup escaped.
local function esc(s)
  s = json.valid_utf8(tostring(s)):gsub("[%z\1-\8\11\12\14-\31]", "?"):gsub("\239\191[\190\191]", "?")
  return (s:gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
                               ['"'] = "&quot;", ["'"] = "&apos;" }))
end

-- Checks that path can be written, before the run starts.
M.check = require("orch.output.atomic").check

function M.write(path, run)
  local out = {}
  local tests, failures, skipped = 0, 0, 0
  local cases = {}
  local event_results = 0   -- error results owned by an event
  for _, ev in ipairs(run.events) do
    -- the event's figures at the end (a run given without summary_of,
    -- as the fuzzer's, has them per event: errors a list of messages)
    local st = run.summary_of and run:summary_of(ev.id) or run.per_event[ev.id]
    local nerr = report.errors_of(st)
    local results = nerr - st.failures
    event_results = event_results + results
    tests = tests + 1
    local c = { ('  <testcase classname="%s" name="%s" time="%.6f">'):format(
      esc(run.desc.test_name), esc(ev.id), st.duration.sum) }
    local msgs = st.messages or (type(st.errors) == "table" and st.errors) or {}
    -- a check on the event's errors owns them: its own testcase says
    if nerr > 0 and not (run.checks and run.checks:owns(ev.id)) then
      failures = failures + 1
      local what = {}
      if st.failures > 0 then what[1] = ("%d of %d invocations failed"):format(st.failures, st.runs) end
      if results > 0 then what[#what + 1] = ("%d error result%s"):format(results, results == 1 and "" or "s") end
      c[#c + 1] = ('    <failure message="%s" type="%s">%s</failure>'):format(
        esc(table.concat(what, ", ")), st.timeouts > 0 and "timeout" or "error",
        esc(table.concat(msgs, "\n\n", 1, math.min(#msgs, 20))))
    elseif st.runs == 0 and st.skipped > 0 then
      skipped = skipped + 1
      c[#c + 1] = "    <skipped/>"
    end
    c[#c + 1] = ("    <system-out>runs=%d failures=%d errors=%d skipped=%d timeouts=%d</system-out>")
      :format(st.runs, st.failures, nerr, st.skipped, st.timeouts)
    c[#c + 1] = "  </testcase>"
    cases[#cases + 1] = table.concat(c, "\n")
  end
  -- a testcase per check, its verdict as the run's end judged it
  for _, ck in ipairs(run.checks and run.checks:snapshot() or {}) do
    tests = tests + 1
    local c = { ('  <testcase classname="%s.checks" name="%s" time="0">'):format(
      esc(run.desc.test_name), esc(ck.name)) }
    local text = ("%s %s, limit %s: %s"):format(ck.stat, report.check_number(ck.value), report.check_limit(ck), ck.status)
    if ck.action ~= "warn" and (ck.status == "fail" or ck.status == "no_data") then
      failures = failures + 1
      c[#c + 1] = ('    <failure message="%s" type="check">%s</failure>'):format(esc(text),
        esc(ck.status == "no_data" and "the series never had a sample (allow_no_data is false)" or text))
    end
    c[#c + 1] = ("    <system-out>%s (action %s)</system-out>"):format(esc(text), esc(ck.action))
    c[#c + 1] = "  </testcase>"
    cases[#cases + 1] = table.concat(c, "\n")
  end
  -- what no event owns: run errors, error results reported outside any event
  local loose = run.error_results - event_results
  if #run.errors > 0 or loose > 0 then
    tests = tests + 1
    failures = failures + 1
    cases[#cases + 1] = ('  <testcase classname="%s" name="(run)" time="0">\n    <failure message="%s">%s</failure>\n  </testcase>')
      :format(esc(run.desc.test_name), esc(("%d error results outside any event, %d run errors"):format(loose, #run.errors)),
              esc(table.concat(run.errors, "\n")))
  end
  out[1] = '<?xml version="1.0" encoding="UTF-8"?>'
  out[2] = ('<testsuite name="%s" tests="%d" failures="%d" errors="0" skipped="%d" time="%.3f" timestamp="%s">')
    :format(esc(run.desc.test_name), tests, failures, skipped, run.total, os.date("!%Y-%m-%dT%H:%M:%S"))
  out[3] = table.concat(cases, "\n")
  out[4] = "</testsuite>\n"
  return require("orch.output.atomic").write(path, table.concat(out, "\n"))
end

return M
