#!/bin/sh
# bench/report/run.sh - the report workload (issue 16): a JSONL of
# BENCH_REPORT_LINES lines (default 20 million) written by orchlua itself
# (100 events at 1 s, each reporting a metric, time-scaled), then `orchlua
# report --html` and the comparison of two such files against the
# decode-only floor (bench/report/floor.lua).  Prints lines/s, the ratio to
# the floor, peak RSS, the HTML's size, and peak RSS at 200 million lines
# extrapolated from this size and half of it.  Run from the repository
# root after make: sh bench/report/run.sh (make bench runs it too).
set -e
cd "$(dirname "$0")/../.."
LINES=${BENCH_REPORT_LINES:-20000000}
OUT=${BENCH_OUT:-bench/out}/report
mkdir -p "$OUT/descriptions"
[ -x ./orchlua ] || { echo "bench: ./orchlua is missing (run make)" >&2; exit 2; }
BIN="$OUT/orchlua"
cp ./orchlua "$BIN"

# gen NAME LINES: a run writing about LINES lines into $OUT/NAME.jsonl
gen() {
  # per event: an invocation and a result line a firing; 3% more firings
  # than that, as a loaded machine skips some (a skipped firing is one line)
  firings=$(( $2 / 200 + $2 / 6000 ))
  hours=$(awk "BEGIN { printf \"%.6f\", $firings / 3600 }")
  {
    printf '{ "test_name": "%s", "total_hours": %s, "events": [' "$1" "$hours"
    i=1
    while [ $i -le 100 ]; do
      [ $i -gt 1 ] && printf ','
      printf '{ "name": "metric", "id": "e%d", "interval_sec": 1 }' $i
      i=$((i + 1))
    done
    printf '] }\n'
  } > "$OUT/descriptions/$1.json"
  [ -s "$OUT/$1.jsonl" ] && [ "$(cat "$OUT/$1.lines" 2>/dev/null)" = "$2+" ] && return 0
  # 100,000 firings a second asked: a slower machine skips some, which are lines too
  "$BIN" run "$OUT/descriptions/$1.json" --sources bench/report/metric.lua --time-scale 1000 \
    --no-progress -q --report "$OUT/$1.jsonl" >/dev/null 2>&1 || true
  echo "$2+" > "$OUT/$1.lines"
}

# measure LABEL CMD...: wall seconds and peak RSS (kB) of CMD
measure() {
  label=$1; shift
  /usr/bin/time -f "%e %M" -o "$OUT/time.txt" "$@" >"$OUT/$label.out" 2>"$OUT/$label.err" || true
  read -r wall rss <<EOT
$(tail -n 1 "$OUT/time.txt")
EOT
  echo "$wall $rss"
}

small=$((LINES / 2))
echo "report workload: generating $LINES and $small lines with orchlua (time-scaled) ..." >&2
gen big "$LINES"
gen small "$small"
gen big2 "$LINES"
n_big=$(wc -l < "$OUT/big.jsonl")
n_small=$(wc -l < "$OUT/small.jsonl")
n_big2=$(wc -l < "$OUT/big2.jsonl")
[ "$n_big" -ge "$LINES" ] || echo "note: $n_big lines, fewer than the $LINES asked (more firings skipped)" >&2

set -- $(measure floor lua5.4 bench/report/floor.lua "$OUT/big.jsonl")
floor_s=$1 floor_rss=$2
set -- $(measure html "$BIN" report "$OUT/big.jsonl" --html "$OUT/big.html")
html_s=$1 html_rss=$2
set -- $(measure html_small "$BIN" report "$OUT/small.jsonl" --html "$OUT/small.html")
small_s=$1 small_rss=$2
set -- $(measure cmp "$BIN" report "$OUT/big.jsonl" "$OUT/big2.jsonl")
cmp_s=$1 cmp_rss=$2
html_size=$(wc -c < "$OUT/big.html")

awk -v nb="$n_big" -v ns="$n_small" -v n2="$n_big2" -v fs="$floor_s" -v frss="$floor_rss" \
    -v hs="$html_s" -v hrss="$html_rss" -v ss="$small_s" -v srss="$small_rss" \
    -v cs="$cmp_s" -v crss="$cmp_rss" -v size="$html_size" 'BEGIN {
  printf "%-44s %12s %10s %8s %10s\n", "report workload", "lines", "lines/s", "x floor", "peak RSS"
  fl = nb / (fs > 0 ? fs : 0.01)
  printf "%-44s %12d %10.0f %8s %7.1f MB\n", "floor: lua5.4 + cjson decode", nb, fl, "1.00", frss / 1024
  h = nb / (hs > 0 ? hs : 0.01)
  printf "%-44s %12d %10.0f %8.2f %7.1f MB\n", "orchlua report --html", nb, h, h / fl, hrss / 1024
  s = ns / (ss > 0 ? ss : 0.01)
  printf "%-44s %12d %10.0f %8.2f %7.1f MB\n", "orchlua report --html (half)", ns, s, s / fl, srss / 1024
  c = (nb + n2) / (cs > 0 ? cs : 0.01)
  printf "%-44s %12d %10.0f %8.2f %7.1f MB\n", "orchlua report A B (comparison)", nb + n2, c, c / fl, crss / 1024
  # a straight line through the two sizes; a slope below zero is GC
  # timing (noise), taken as flat
  slope = (nb > ns) ? (hrss - srss) / (nb - ns) : 0
  if (slope < 0) slope = 0
  top = hrss > srss ? hrss : srss
  printf "%-44s %12d %10s %8s %7.1f MB\n", "peak RSS at 200 M lines (extrapolated)", 200000000, "", "",
    (top + slope * (200000000 - nb)) / 1024
  printf "HTML: %.2f MB (target < 5 MB); targets: >= 1x floor, RSS < 64 MB\n", size / 1048576
}'
