/*
 * jsonw.c - the report's JSON encoder: a Lua value to one line of JSON,
 * written straight into an output buffer.  Every record of the --report
 * file goes through here, a million results a second at best (bench w3a), so it
 * avoids what makes a general encoder slow for small records (printf for
 * integers, an intermediate Lua string per record).
 *
 * It refuses what it cannot write faithfully (functions, userdata, cycles
 * or nesting deeper than JSONW_DEPTH, keys that are neither strings nor
 * numbers) and records over JSONW_MAX_BYTES (a table shared k times deep
 * down is written 2^k times: {t, t} nested 40 deep is a terabyte): the
 * caller then falls back to orch.output.json, which turns those into
 * printable placeholders.  Strings that are not valid UTF-8 get
 * U+FFFD for each bad byte, so every line stays valid JSON.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"

#include "jsonw.h"

#define JSONW_DEPTH 48
#ifndef JSONW_MAX_BYTES /* the fuzzers lower it, to reach it cheaply */
#define JSONW_MAX_BYTES ((size_t)16 << 20)
#endif

static int grow(jbuf *b, size_t need) {
  size_t cap;
  char *p;
  if (b->len + need <= b->cap) return 0;
  cap = b->cap ? b->cap : 256;
  while (cap < b->len + need) cap *= 2;
  p = realloc(b->data, cap);
  if (p == NULL) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

/* The header's inline append: a record is a dozen of these, most with n
 * known, so a call each would cost more than the copy. */
#define put jsonw_raw

#define PUTLIT(b, s) put((b), (s), sizeof(s) - 1)

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t len, i;
  unsigned cp;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
  else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
  else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
  else return 0;
  if (n < len) return 0;
  for (i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return len;
}

/* 1 for the bytes a JSON string holds as they are: printable ASCII but
 * the quote and the backslash (one load a byte instead of four tests) */
static const unsigned char plain[256] = {
  [0x20 ... 0x21] = 1, [0x23 ... 0x5b] = 1, [0x5d ... 0x7f] = 1, /* not " or \ */
};

static int put_string(jbuf *b, const char *str, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, run = 0;
  if (grow(b, n + 2)) return -1;
  b->data[b->len++] = '"';
  while (i < n) {
    unsigned c = s[i];
    size_t l;
    if (plain[c]) {
      i++;
      run++;
      continue;
    }
    if (run && put(b, (const char *)s + i - run, run)) return -1;
    run = 0;
    if (c >= 0x80) {
      l = utf8_len(s + i, n - i);
      if (l == 0) {
        if (PUTLIT(b, "\\ufffd")) return -1;
        i++;
      } else {
        if (put(b, (const char *)s + i, l)) return -1;
        i += l;
      }
      continue;
    }
    if (c == '"') { if (PUTLIT(b, "\\\"")) return -1; }
    else if (c == '\\') { if (PUTLIT(b, "\\\\")) return -1; }
    else if (c == '\n') { if (PUTLIT(b, "\\n")) return -1; }
    else if (c == '\t') { if (PUTLIT(b, "\\t")) return -1; }
    else if (c == '\r') { if (PUTLIT(b, "\\r")) return -1; }
    else {
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      if (put(b, u, 6)) return -1;
    }
    i++;
  }
  if (run && put(b, (const char *)s + i - run, run)) return -1;
  return PUTLIT(b, "\"");
}

/* "00" to "99": numbers are written two digits at a time */
static const char pairs[] =
  "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
  "8081828384858687888990919293949596979899";

static int put_integer(jbuf *b, lua_Integer v) {
  char tmp[24], *p = tmp + sizeof tmp;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  while (u >= 100) {
    unsigned r = (unsigned)(u % 100);
    u /= 100;
    p -= 2;
    memcpy(p, pairs + 2 * r, 2);
  }
  if (u >= 10) {
    p -= 2;
    memcpy(p, pairs + 2 * u, 2);
  } else {
    *--p = (char)('0' + u);
  }
  if (v < 0) *--p = '-';
  return put(b, p, (size_t)(tmp + sizeof tmp - p));
}

int jsonw_integer(jbuf *b, lua_Integer v) { return put_integer(b, v); }

/* d as printf's "%.14g" writes it, without printf for the common range:
 * printf was the largest cost of an invocation record (four times in
 * it; bench/HISTORY.md).  For 1e-14 <= |d| < 1e14 the 14 significant digits are d scaled by a
 * power of ten (exact in long double up to 10^27) and rounded half-even
 * like printf; the scaled value carries 64 bits, so the last digit can
 * differ from printf's only when d's exact decimal expansion is within
 * 1e-5 of a tie at the 15th digit.  Below 1e-4 printf writes an exponent
 * (a trivial invocation's duration, 2e-06 seconds, is one).  Other
 * magnitudes go to snprintf. */
int jsonw_number(jbuf *b, double d) {
  static const long double p10[] = {
    1e0L, 1e1L, 1e2L, 1e3L, 1e4L, 1e5L, 1e6L, 1e7L, 1e8L, 1e9L, 1e10L, 1e11L, 1e12L, 1e13L,
    1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L,
    1e27L};
  static const double pe[] = { /* 10^e for e = -14..14 */
    1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1,
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14};
  char tmp[40], dig[14];
  double a = fabs(d);
  int e, n = 0, i, point, last;
  unsigned long long m, bits;
  if (!isfinite(d)) return PUTLIT(b, "null"); /* JSON has no NaN or infinity */
  if (d == floor(d) && a < 9007199254740992.0) return put_integer(b, (lua_Integer)d);
  if (!(a >= 1e-14 && a < 1e14)) {
    n = snprintf(tmp, sizeof tmp, "%.14g", d);
    return put(b, tmp, (size_t)n);
  }
  /* 10^e <= a < 10^(e+1): from the binary exponent x (2^x <= a < 2^(x+1)),
   * e is floor(x * log10(2)) or one more (78913 / 2^18 ~ log10(2)) */
  memcpy(&bits, &a, sizeof bits);
  e = (((int)((bits >> 52) & 0x7ff) - 1023) * 78913) >> 18;
  if (e < -14) e = -14;
  if (e > 13) e = 13;
  while (e < 13 && a >= pe[e + 15]) e++;
  while (e > -14 && a < pe[e + 14]) e--;
  /* 14 digits are a * 10^(13-e) */
  /* rintl's result is an integer below 2^47, exact as a double: through
   * the double, the conversion is one SSE instruction, where a cast of the
   * long double switches the x87 control word twice per number */
  m = (unsigned long long)(double)rintl((long double)a * p10[13 - e]);
  if (m >= 100000000000000ull) { /* rounded up to the next power of ten */
    m /= 10;
    e++;
    if (e >= 14) {
      n = snprintf(tmp, sizeof tmp, "%.14g", d);
      return put(b, tmp, (size_t)n);
    }
  }
  for (i = 12; i >= 0; i -= 2) { /* two digits at a time */
    unsigned r = (unsigned)(m % 100);
    m /= 100;
    dig[i] = pairs[2 * r];
    dig[i + 1] = pairs[2 * r + 1];
  }
  if (d < 0) tmp[n++] = '-';
  if (e < -4) {
    /* d.ddde-XX, trailing zeros cut, as %g */
    last = 13;
    while (last > 0 && dig[last] == '0') last--;
    tmp[n++] = dig[0];
    if (last > 0) tmp[n++] = '.';
    for (i = 1; i <= last; i++) tmp[n++] = dig[i];
    tmp[n++] = 'e';
    tmp[n++] = '-';
    tmp[n++] = (char)('0' + (-e) / 10);
    tmp[n++] = (char)('0' + (-e) % 10);
    return put(b, tmp, (size_t)n);
  }
  if (e < 0) {
    tmp[n++] = '0';
    tmp[n++] = '.';
    for (i = -1; i > e; i--) tmp[n++] = '0';
    point = -1;
  } else {
    point = e + 1; /* digits before the point */
  }
  last = 13;
  while (last > 0 && dig[last] == '0' && last >= point) last--;
  if (point < 0) { /* 0.000ddd */
    memcpy(tmp + n, dig, (size_t)last + 1);
    return put(b, tmp, (size_t)n + (size_t)last + 1);
  }
  memcpy(tmp + n, dig, (size_t)point); /* the integer part, then .ddd */
  n += point;
  if (last >= point) {
    tmp[n++] = '.';
    memcpy(tmp + n, dig + point, (size_t)(last - point + 1));
    n += last - point + 1;
  }
  return put(b, tmp, (size_t)n);
}

static int put_number(jbuf *b, lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return put_integer(b, lua_tointeger(L, idx));
  return jsonw_number(b, lua_tonumber(L, idx));
}

static int encode(jbuf *b, lua_State *L, int idx, int depth, size_t stop);

/* Arrays are tables whose keys are all positive integers, with holes (as
 * null) only as cjson allows them: a largest key of at most 10, or at most
 * twice the number of keys ({nil, "x"} is [null,"x"]).  The empty table is
 * {}, as cjson writes it. */
static int encode_table(jbuf *b, lua_State *L, int idx, int depth, size_t stop) {
  lua_Integer n = 0, count = 0, i;
  int first = 1;
  if (depth > JSONW_DEPTH || !lua_checkstack(L, 4)) return -1;
  lua_pushnil(L);
  if (!lua_next(L, idx)) return PUTLIT(b, "{}");
  if (lua_type(L, -2) == LUA_TSTRING) {
    /* an object (a record's data, most often): written from this first
     * key on, without a pass over the keys first */
    if (PUTLIT(b, "{")) goto fail;
    goto member;
  }
  lua_pop(L, 2);
  lua_pushnil(L);
  while (lua_next(L, idx)) {                             /* [k v] */
    lua_Integer k;
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || (k = lua_tointeger(L, -1)) < 1) {
      count = -1;
      lua_pop(L, 1);
      break;
    }
    if (k > n) n = k;
    count++;
  }
  if (count > 0 && (n <= 10 || n <= 2 * count)) {
    if (PUTLIT(b, "[")) return -1;
    for (i = 1; i <= n; i++) {
      int r;
      if (b->len > stop || (i > 1 && PUTLIT(b, ","))) return -1;
      lua_rawgeti(L, idx, i);
      r = encode(b, L, lua_gettop(L), depth + 1, stop);
      lua_pop(L, 1);
      if (r) return -1;
    }
    return PUTLIT(b, "]");
  }
  if (PUTLIT(b, "{")) return -1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {                             /* [k v] */
    int kt, r;
  member:
    kt = lua_type(L, -2);
    if (b->len > stop || (!first && PUTLIT(b, ","))) goto fail;
    first = 0;
    if (kt == LUA_TSTRING) {
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      if (put_string(b, k, kl)) goto fail;
    } else if (kt == LUA_TNUMBER) {
      if (PUTLIT(b, "\"") || put_number(b, L, lua_gettop(L) - 1) || PUTLIT(b, "\"")) goto fail;
    } else {
      goto fail;
    }
    if (PUTLIT(b, ":")) goto fail;
    r = encode(b, L, lua_gettop(L), depth + 1, stop);
    lua_pop(L, 1);                                       /* [k] */
    if (r) {
      lua_pop(L, 1);
      return -1;
    }
  }
  return PUTLIT(b, "}");
fail:
  lua_pop(L, 2);
  return -1;
}

static int encode(jbuf *b, lua_State *L, int idx, int depth, size_t stop) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return PUTLIT(b, "null");
    case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? PUTLIT(b, "true") : PUTLIT(b, "false");
    case LUA_TNUMBER: return put_number(b, L, idx);
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      return put_string(b, s, n);
    }
    case LUA_TTABLE: return encode_table(b, L, idx, depth, stop);
    case LUA_TLIGHTUSERDATA:
      /* cjson.null, as the descriptions' null values are */
      if (lua_touserdata(L, idx) == NULL) return PUTLIT(b, "null");
      return -1;
    default: return -1;
  }
}

int jsonw_encode(jbuf *b, lua_State *L, int idx) {
  size_t start = b->len;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  if (encode(b, L, idx, 0, start + JSONW_MAX_BYTES) || b->len - start > JSONW_MAX_BYTES) {
    b->len = start;
    lua_settop(L, top);
    return -1;
  }
  return 0;
}

int jsonw_string(jbuf *b, const char *s, size_t n) {
  size_t start = b->len;
  if (put_string(b, s, n) != 0) {
    b->len = start;
    return -1;
  }
  return 0;
}

int jsonw_raw_grow(jbuf *b, const char *s, size_t n) {
  if (grow(b, n)) return -1;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

void jbuf_free(jbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
