#!/bin/sh
# spec/fuzz/seed.sh OUT: the fuzzers' seed corpora, from what the project
# already holds.  OUT/description: every description under descriptions/
# and spec/, as is and renamed to fuzz.json's test_name (so that the fuzzer
# starts from descriptions that validate).  OUT/writer: the same JSON files
# and spec/fixtures/reports/*.jsonl records, assembled into writer programs
# (spec/fuzz/seed_writer.lua), plus the hostile values of the e2e specs.
set -eu
cd "$(dirname "$0")/../.."
out=${1:-build/fuzz/seeds}
rm -rf "$out/description" "$out/writer"
mkdir -p "$out/description" "$out/writer"
n=0
for f in $(find descriptions spec -name '*.json' | sort); do
  n=$((n + 1))
  cp "$f" "$out/description/seed-$n.json"
  sed 's/"test_name"[[:space:]]*:[[:space:]]*"[^"]*"/"test_name": "fuzz"/' "$f" >"$out/description/seed-$n-fuzz.json"
done
${LUA:-lua5.4} spec/fuzz/seed_writer.lua "$out/writer" \
  $(find descriptions spec -name '*.json' | sort) $(find spec -name '*.jsonl' | sort)
