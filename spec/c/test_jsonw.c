/* test_jsonw.c - the report encoder on values a hostile event may report.
 * Prints TAP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lualib.h"

#include "jsonw.h"

static int n_test;
static int failed;

/* Encodes the value `expr` evaluates to and compares with `want` (NULL:
 * the encoder must refuse it). */
static void check(lua_State *L, const char *expr, const char *want) {
  jbuf b = {0};
  char code[512];
  int r;
  snprintf(code, sizeof code, "return %s", expr);
  if (luaL_dostring(L, code) != LUA_OK) {
    printf("not ok %d - %s: %s\n", ++n_test, expr, lua_tostring(L, -1));
    failed++;
    lua_settop(L, 0);
    return;
  }
  r = jsonw_encode(&b, L, -1);
  if (want == NULL) {
    if (r == 0) {
      printf("not ok %d - %s: expected a refusal, got %.*s\n", ++n_test, expr, (int)b.len, b.data);
      failed++;
    } else {
      printf("ok %d - %s is refused\n", ++n_test, expr);
    }
  } else if (r != 0 || b.len != strlen(want) || memcmp(b.data, want, b.len) != 0) {
    printf("not ok %d - %s: want %s, got %.*s\n", ++n_test, expr, want, r ? 7 : (int)b.len,
           r ? "refused" : b.data);
    failed++;
  } else {
    printf("ok %d - %s is %s\n", ++n_test, expr, want);
  }
  jbuf_free(&b);
  lua_settop(L, 0);
}

/* jsonw_number against printf's "%.14g" over a million doubles: times
 * (ms-resolution seconds), random magnitudes, small ones (durations, in
 * printf's exponent form) and random bit patterns. */
static void check_numbers(void) {
  jbuf b = {0};
  char want[64];
  long i, bad = 0, n = 0;
  srand(7);
  for (i = 0; i < 1000000; i++) {
    double d;
    unsigned long long u;
    switch (i % 5) {
    case 0: d = (double)rand() / RAND_MAX * pow(10, rand() % 24 - 8); break;
    case 4: d = (double)rand() / RAND_MAX * pow(10, -(rand() % 12) - 4); break; /* durations */
    case 1: d = (rand() % 100000) / 1000.0 + (rand() % 1000) / 1e9; break;
    case 2:
      u = ((unsigned long long)rand() << 33) ^ ((unsigned long long)rand() << 11) ^ (unsigned long long)rand();
      memcpy(&d, &u, sizeof d);
      break;
    default: d = -(double)rand() / 1e6; break;
    }
    if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0) continue;
    b.len = 0;
    jsonw_number(&b, d);
    if (isfinite(d)) snprintf(want, sizeof want, "%.14g", d); else strcpy(want, "null");
    n++;
    if (b.len != strlen(want) || memcmp(b.data, want, b.len) != 0) {
      if (bad++ < 5) printf("# %.17g: printf %s, jsonw_number %.*s\n", d, want, (int)b.len, b.data);
    }
  }
  printf("%s %d - jsonw_number writes what %%.14g writes (%ld of %ld differ)\n",
         bad == 0 ? "ok" : "not ok", ++n_test, bad, n);
  if (bad) failed++;
  jbuf_free(&b);
}

int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  check(L, "42", "42");
  check(L, "-9007199254740993", "-9007199254740993");
  check(L, "0", "0");
  check(L, "9", "9");
  check(L, "10", "10");
  check(L, "99", "99");
  check(L, "100", "100");
  check(L, "-7", "-7");
  check(L, "-10", "-10");
  check(L, "1234567", "1234567");
  check(L, "math.maxinteger", "9223372036854775807");
  check(L, "math.mininteger", "-9223372036854775808");
  check(L, "3.0", "3");
  check(L, "0.5", "0.5");
  check(L, "0/0", "null");
  check(L, "math.huge", "null");
  check(L, "'a\"b\\\\c\\n\\1'", "\"a\\\"b\\\\c\\n\\u0001\"");
  check(L, "' !#[]~\\127'", "\" !#[]~\x7f\"");  /* plain bytes around \" and \\ */
  check(L, "'caf\\xc3\\xa9'", "\"caf\xc3\xa9\"");  /* valid UTF-8 passes */
  check(L, "'\\xff\\xc3'", "\"\\ufffd\\ufffd\"");
  check(L, "'\\xed\\xa0\\x80'", "\"\\ufffd\\ufffd\\ufffd\"");   /* a UTF-16 surrogate */
  check(L, "{}", "{}");
  check(L, "{1, 2, {3}}", "[1,2,[3]]");
  check(L, "{nil, 'x'}", "[null,\"x\"]");
  check(L, "{[100] = 2}", "{\"100\":2}");  /* too sparse for an array */
  check(L, "{a = true}", "{\"a\":true}");
  check(L, "{[2.5] = 1}", "{\"2.5\":1}");
  check(L, "{f = print}", NULL);
  check(L, "(function() local t = {} t.t = t return t end)()", NULL);
  check(L, "{[{}] = 1}", NULL);
  check(L, "0.1", "0.1");
  check(L, "-0.001", "-0.001");
  check(L, "123.00000000000001", "123");
  check(L, "99999.999999999999", "100000");
  check(L, "0.00012345678901234567", "0.00012345678901235");
  check(L, "1.5e-5", "1.5e-05");
  check(L, "12345678901234.5", "12345678901234");   /* half-even, as printf */
  check(L, "123456789012345.6", "1.2345678901235e+14");
  check_numbers();
  printf("1..%d\n", n_test);
  lua_close(L);
  return failed != 0;
}
