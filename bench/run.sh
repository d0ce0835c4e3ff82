#!/bin/sh
# bench/run.sh - `make bench`: builds the measuring tool and the floor, then
# runs every workload for orchlua and the two baselines (bench/bench.lua).
# The table goes to stdout and bench/out/table.txt; the figures to
# bench/results.json.  See BENCHMARKS.md for the knobs (BENCH_SECONDS ...).
set -e
cd "$(dirname "$0")/.."
[ -x ./orchlua ] || { echo "bench: ./orchlua is missing (run make)" >&2; exit 2; }
command -v lua5.4 >/dev/null || { echo "bench: lua5.4 is needed" >&2; exit 2; }
lua5.4 -e 'require "luv"; require "cjson"' 2>/dev/null ||
  { echo "bench: lua5.4 needs luv and cjson (apt-get install lua-luv lua-cjson)" >&2; exit 2; }
mkdir -p "${BENCH_OUT:-bench/out}/descriptions" bench/out
# one binary for the whole run, even if the tree is rebuilt meanwhile
cp ./orchlua bench/out/orchlua
${MAKE:-make} -s bench/floor
${CC:-cc} -O2 -Wall -Wextra -std=gnu99 -o bench/out/measure bench/measure.c
lua5.4 bench/bench.lua | tee "${BENCH_OUT:-bench/out}/table.txt"
# w3s: w3a with a PostgreSQL sink (bench/sink.lua starts its own server)
case ",${BENCH_ONLY:-w3s}," in *,w3s,*)
  lua5.4 bench/sink.lua | tee -a "${BENCH_OUT:-bench/out}/table.txt" ;;
esac
