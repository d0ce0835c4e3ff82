#!/bin/sh
# bench/profile.sh - where orchlua's time goes, for BENCHMARKS.md.
#
#   sh bench/profile.sh [ORCHLUA]      (default ./orchlua; valgrind needed)
#
# 1. callgrind, a trivial invocation: 100 events @1 s for 20 s with --report,
#    collected inside uv_run only (startup excluded), costs per invocation by
#    bucket and the inclusive cost of the engine's phases;
# 2. callgrind, add_result: one event reporting 20,000 results in a burst;
# 3. the parts of an invocation timed one by one inside orchlua
#    (bench/prof/components.lua);
# 4. Lua VM instructions per invocation on the main thread, per function
#    (bench/prof/vmcount.lua).
# Output: stdout and bench/out/profile/.
set -e
cd "$(dirname "$0")/.."
BIN=${1:-./orchlua}
P=bench/out/profile
mkdir -p $P/d
command -v valgrind >/dev/null || { echo "profile: valgrind is needed" >&2; exit 2; }

lua5.4 - "$P/d" <<'LUA'
local cjson = require "cjson"
local dir = arg[1]
local function w(name, t)
  t.test_name = name
  local f = assert(io.open(dir .. "/" .. name .. ".json", "w"))
  f:write(cjson.encode(t)); f:close()
end
local ev = {}
for i = 1, 100 do ev[i] = { name = "trivial", id = "e" .. i, interval_sec = 1 } end
w("prof_ticks", { total_hours = 20 / 3600, events = ev })
w("prof_flood", { total_hours = 1 / 3600, events = { { name = "flood", params = { n = 20000, batch = 0 } } } })
w("prof_components", { total_hours = 1, events = { { name = "components" } } })
local ev10 = {}
for i = 1, 10 do ev10[i] = { name = "trivial", id = "e" .. i, interval_sec = 1 } end
w("prof_vm", { total_hours = 10 / 3600, unref_setup_fixtures = { "vm_count" }, events = ev10 })
LUA

# "Ir (pct)  file:function [binary]" lines -> "Ir-per-unit  file:function", once each
per_unit() {
  sed -E 's/^ *([0-9,]+) +\( *[0-9.]+%\) +([^ ]+).*/\1 \2/' | tr -d , | sed -E 's| [^ ]*/src/| src/|' |
    awk -v n="$1" '!seen[$2]++ { printf "  %9.0f  %s\n", $1 / n, $2 }' | sort -k1 -g -r | head -24
}

# the engine's phases and hot spots, by function (names as of this writing)
phases='sched.c:task_finish|sched.c:run_ready|lorch_core.c:ticker_fire|:lua_resume$|jsonw.c:jsonw_encode|jsonw.c:put_number|printf_fp.c:__printf_fp_l$|lorch_core.c:l_writer_record|lorch_core.c:l_core_go|:luaC_step$|:l_alloc$|queue.c:l_queue_report|queue.c:l_queue_get|:luaL_ref$|:luaL_unref$|:luaH_resize$|:luaB_pcall$|:luaB_pcall.2$|lorch_core.c:l_core_ts|jsonw.c:put_string'

echo "== 1. callgrind: trivial invocations (100 events @1 s x 20 s, --report), loop only"
valgrind --tool=callgrind --toggle-collect=uv_run --callgrind-out-file=$P/ticks.cg \
  "$BIN" run prof_ticks --descriptions $P/d --sources bench/events/trivial.lua -q --report $P/ticks.jsonl \
  >$P/ticks.out 2>$P/ticks.err
n=$(grep -c '"type":"invocation"' $P/ticks.jsonl)
echo "invocations: $n"
callgrind_annotate --auto=no --threshold=100 $P/ticks.cg 2>/dev/null | lua5.4 bench/prof/classify.lua "$n"
echo "inclusive, Ir per invocation:"
callgrind_annotate --inclusive=yes --auto=no --threshold=100 $P/ticks.cg 2>/dev/null |
  sed -E 's/ \[[^]]*\]$//' | grep -E "$phases" | per_unit "$n"

echo
echo "== 2. callgrind: 20,000 add_result in one burst, loop only"
valgrind --tool=callgrind --toggle-collect=uv_run --callgrind-out-file=$P/flood.cg \
  "$BIN" run prof_flood --descriptions $P/d --sources bench/events/flood.lua -q --report $P/flood.jsonl \
  >$P/flood.out 2>$P/flood.err
n=$(grep -c '"type":"result"' $P/flood.jsonl)
echo "results: $n"
callgrind_annotate --auto=no --threshold=100 $P/flood.cg 2>/dev/null | lua5.4 bench/prof/classify.lua "$n"
echo "inclusive, Ir per result:"
callgrind_annotate --inclusive=yes --auto=no --threshold=100 $P/flood.cg 2>/dev/null |
  sed -E 's/ \[[^]]*\]$//' | grep -E "$phases" | per_unit "$n"

echo
echo "== 3. the parts of an invocation, timed inside orchlua"
"$BIN" run prof_components --descriptions $P/d --sources bench/prof/components.lua -q 2>&1 |
  sed -n '/^components/,/core.go + resume/p'

echo
echo "== 4. Lua VM instructions on the main thread, per invocation"
BENCH_VM_INVOCATIONS=100 BENCH_SUMMARY=$P/vm.txt "$BIN" run prof_vm --descriptions $P/d \
  --sources bench/prof/vmcount.lua,bench/events/trivial.lua -q --report $P/vm.jsonl >/dev/null
cat $P/vm.txt
