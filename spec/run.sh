#!/bin/sh
# Runs every suite (C, busted unit, busted end-to-end, luacheck) and ends
# with one line "N passed, N failed" over all of them, for CI to count.
cd "$(dirname "$0")/.." || exit 2
passed=0
failed=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

count() { # suite name; TAP on $out
  p=$(grep -c '^ok ' "$out")
  f=$(grep -c '^not ok ' "$out")
  passed=$((passed + p))
  failed=$((failed + f))
  echo "== $1: $p passed, $f failed"
  grep -A12 '^not ok ' "$out" | head -200
}

# C tests: each prints TAP; linked with every host source but main and host
for t in spec/c/test_*.c; do
  [ -e "$t" ] || continue
  bin=build/$(basename "$t" .c)
  # SPEC_CFLAGS: extra flags (make check-asan builds them with the sanitizers)
  if ${CC:-cc} -std=gnu99 -O1 -Wall -Wextra ${SPEC_CFLAGS:-} -Isrc -I/usr/include/lua5.4 -o "$bin" "$t" \
      $(ls src/*.c | grep -v -e '^src/main\.c$' -e '^src/host\.c$') \
      /usr/lib/$(${CC:-cc} -print-multiarch)/liblua5.4.a /usr/lib/$(${CC:-cc} -print-multiarch)/libuv_a.a /usr/lib/$(${CC:-cc} -print-multiarch)/libhttp_parser.a -lm -ldl -lpthread -lrt 2>"$out.cc"; then
    # a test that dies before its plan (a crash) is a failure too
    "$bin" >"$out" 2>&1; rc=$?
    if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$out" || ! grep -q '^1\.\.[0-9]' "$out"; then
      echo "not ok - $t exited with status $rc before its plan" >>"$out"
    fi
  else
    echo "not ok 1 - $t does not build" >"$out"; cat "$out.cc" >>"$out"
  fi
  rm -f "$out.cc"
  count "$t"
done

for suite in spec/unit spec/e2e; do
  ls $suite/*_spec.lua >/dev/null 2>&1 || continue
  busted --lua=lua5.4 -o TAP $suite >"$out" 2>&1
  count "$suite"
  # a suite that crashed before printing a plan counts as a failure
  grep -q '^1\.\.[0-9]' "$out" || { failed=$((failed + 1)); echo "== $suite did not finish:"; tail -20 "$out"; }
done

# luacheck over the whole tree's Lua (engine, example events, helpers rock,
# specs, bench), with .luacheckrc: TAP, "ok" per clean file, "not ok" per
# warning
if command -v luacheck >/dev/null 2>&1; then
  luacheck --formatter TAP --no-color lua events helpers spec bench >"$out" 2>&1
  count "luacheck"
  grep -q '^1\.\.[0-9]' "$out" || { failed=$((failed + 1)); echo "== luacheck did not finish:"; tail -20 "$out"; }
else
  failed=$((failed + 1))
  echo "== luacheck: not installed (make deps installs lua-check)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
