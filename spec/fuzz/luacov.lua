-- spec/fuzz/luacov.lua COVFILE FILE...: Lua line coverage reached by a
-- fuzzer's corpus.  COVFILE holds "SOURCE\tLINE" for every line run (the
-- harness writes it with FUZZ_LUACOV=COVFILE); a FILE's executable lines are
-- the lines luac5.4 lists instructions for.  Prints one line per FILE and a
-- total: covered/executable (percent).
local covfile = assert(arg[1], "usage: luacov.lua COVFILE FILE...")
local luac = os.getenv("LUAC") or "luac5.4"

local run = {}   -- file suffix match: source -> set of lines
for line in io.lines(covfile) do
  local src, n = line:match("^(.*)\t(%d+)$")
  if src then
    run[src] = run[src] or {}
    run[src][tonumber(n)] = true
  end
end

local function lines_run(file)
  local set = {}
  for src, lines in pairs(run) do
    local s = src:gsub("^@", "")
    if s == file or s:sub(-#file - 1) == "/" .. file then
      for l in pairs(lines) do set[l] = true end
    end
  end
  return set
end

local function executable(file)
  local p = io.popen(luac .. " -l -l -p " .. ("%q"):format(file) .. " 2>/dev/null")
  local set, n = {}, 0
  for line in p:lines() do
    local l = line:match("^%s+%d+%s+%[(%d+)%]")
    if l and not set[tonumber(l)] then set[tonumber(l)] = true; n = n + 1 end
  end
  p:close()
  return set, n
end

local all_run, all_exe = 0, 0
for i = 2, #arg do
  local file = arg[i]
  local exe, n = executable(file)
  local got, covered = lines_run(file), 0
  for l in pairs(exe) do if got[l] then covered = covered + 1 end end
  all_run, all_exe = all_run + covered, all_exe + n
  print(("  %-32s %4d/%-4d lines (%5.1f%%)"):format(file, covered, n, n > 0 and 100 * covered / n or 0))
end
print(("  %-32s %4d/%-4d lines (%5.1f%%)"):format("all", all_run, all_exe, all_exe > 0 and 100 * all_run / all_exe or 0))
