#!/bin/sh
# spec/fuzz/run.sh SECONDS TARGET...: runs each fuzzer (build/fuzz/fuzz_TARGET,
# made by `make fuzz`) for SECONDS on its corpus: build/fuzz/corpus/TARGET
# (what earlier rounds found), the seeds (spec/fuzz/seed.sh) and the kept
# inputs of spec/fuzz/regress/TARGET.  Prints, per target, the executions,
# the fuzzer's coverage and the Lua line coverage of the modules under test.
# Exits 1 if any target found something: its input is build/fuzz/crash-TARGET-*
# (keep it in spec/fuzz/regress/TARGET/ once fixed).
set -u
cd "$(dirname "$0")/../.." || exit 2
secs=${1:?usage: run.sh SECONDS TARGET...}
shift
sh spec/fuzz/seed.sh build/fuzz/seeds 2>/dev/null || exit 2
status=0

# llvm-cov's name for the tools (Debian: versioned)
PROFDATA=$(command -v llvm-profdata-14 || command -v llvm-profdata)
LLVMCOV=$(command -v llvm-cov-14 || command -v llvm-cov)

csources() {
  case $1 in
    description) echo src/host.c ;;
    writer) echo src/jsonw.c src/writer.c ;;
  esac
}

modules() {
  case $1 in
    description) echo lua/orch/description.lua lua/orch/jsonc.lua lua/orch/schema.lua lua/orch/suggest.lua lua/orch/plan.lua ;;
    writer) echo lua/orch/output/jsonl.lua lua/orch/output/json.lua lua/orch/output/junit.lua ;;
  esac
}

for t in "$@"; do
  bin=build/fuzz/fuzz_$t
  corpus=build/fuzz/corpus/$t
  log=build/fuzz/$t.log
  mkdir -p "$corpus" "spec/fuzz/regress/$t"
  dict=""
  [ -f "spec/fuzz/$t.dict" ] && dict="-dict=spec/fuzz/$t.dict"
  echo "== fuzz $t: $secs s"
  touch build/fuzz/.start-$t
  # -detect_leaks=0: the Lua heap lives across inputs (the GC frees later),
  # so per-input leak checks would scan it every time; check-asan and
  # valgrind check leaks at exit instead
  FUZZ_WRITER_MAX_SHARED=24 "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2560 -max_len=8192 -detect_leaks=0 \
    -print_final_stats=1 -artifact_prefix="build/fuzz/crash-$t-" $dict \
    "$corpus" "build/fuzz/seeds/$t" "spec/fuzz/regress/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | sed 's/^#[0-9]*[[:space:]]*[A-Z]*[[:space:]]*//')
  echo "  executions: ${execs:-?} (${rate:-?}/s); ${last:-no stats}"
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "  FOUND something (exit $rc): $(find build/fuzz -maxdepth 1 -name "crash-$t-*" -newer build/fuzz/.start-$t | tr '\n' ' ')"
    grep -E -m5 'finding|ERROR|SUMMARY|Test unit written' "$log" | sed 's/^/  /'
  fi
  # Lua line coverage of the corpus
  FUZZ_WRITER_MAX_SHARED=24 FUZZ_LUACOV=build/fuzz/$t.luacov "$bin" -runs=0 -detect_leaks=0 "$corpus" "build/fuzz/seeds/$t" \
    "spec/fuzz/regress/$t" >/dev/null 2>&1
  [ -s "build/fuzz/$t.luacov" ] && ${LUA:-lua5.4} spec/fuzz/luacov.lua "build/fuzz/$t.luacov" $(modules "$t")
  # C line coverage of the same corpus: the encoder, the writer, and the
  # writer methods of lorch_core.c that the report goes through
  if [ -x "build/fuzz/cov_$t" ] && [ -n "$PROFDATA" ] && [ -n "$LLVMCOV" ] && [ "$t" = writer ]; then
    rm -f build/fuzz/cov_$t.profraw
    FUZZ_WRITER_MAX_SHARED=24 LLVM_PROFILE_FILE=build/fuzz/cov_$t.profraw "build/fuzz/cov_$t" -runs=0 \
      "$corpus" "build/fuzz/seeds/$t" "spec/fuzz/regress/$t" >/dev/null 2>&1
    if "$PROFDATA" merge -sparse -o build/fuzz/cov_$t.profdata build/fuzz/cov_$t.profraw 2>/dev/null; then
      "$LLVMCOV" report "build/fuzz/cov_$t" -instr-profile=build/fuzz/cov_$t.profdata $(csources "$t") 2>/dev/null |
        awk '/^[a-z_]+\.c / { printf "  src/%-28s %4d/%-4d lines (%s), branches %s\n", $1, $8 - $9, $8, $10, $13 }'
      "$LLVMCOV" report -show-functions "build/fuzz/cov_$t" -instr-profile=build/fuzz/cov_$t.profdata \
        src/lorch_core.c 2>/dev/null |
        awk '/:l_writer_(record|close) / { sub(/^lorch_core.c:/, "", $1); printf "  %-32s %4d/%-4d lines (%s)\n", $1 "()", $5 - $6, $5, $7 }'
    fi
  fi
done
exit $status
