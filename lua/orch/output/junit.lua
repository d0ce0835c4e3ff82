-- orch.output.junit: JUnit XML for CI servers, one testcase per event id.
local json = require "orch.output.json"

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
  for _, ev in ipairs(run.events) do
    local st = run.per_event[ev.id]
    tests = tests + 1
    local c = { ('  <testcase classname="%s" name="%s" time="%.6f">'):format(
      esc(run.desc.test_name), esc(ev.id), st.duration.sum) }
    if st.failures > 0 then
      failures = failures + 1
      c[#c + 1] = ('    <failure message="%s" type="%s">%s</failure>'):format(
        esc(("%d of %d invocations failed"):format(st.failures, st.runs)),
        st.timeouts > 0 and "timeout" or "error",
        esc(table.concat(st.errors, "\n\n", 1, math.min(#st.errors, 20))))
    elseif st.runs == 0 and st.skipped > 0 then
      skipped = skipped + 1
      c[#c + 1] = "    <skipped/>"
    end
    c[#c + 1] = ("    <system-out>runs=%d failures=%d skipped=%d timeouts=%d</system-out>")
      :format(st.runs, st.failures, st.skipped, st.timeouts)
    c[#c + 1] = "  </testcase>"
    cases[#cases + 1] = table.concat(c, "\n")
  end
  if #run.errors > 0 or run.error_results > 0 then
    tests = tests + 1
    failures = failures + 1
    cases[#cases + 1] = ('  <testcase classname="%s" name="(run)" time="0">\n    <failure message="%s">%s</failure>\n  </testcase>')
      :format(esc(run.desc.test_name), esc(("%d error results, %d run errors"):format(run.error_results, #run.errors)),
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
