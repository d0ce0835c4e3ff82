/*
 * columns.c - the summary's text: core.table_lines lays out cells in
 * columns as report.table_lines (lua/orch/report.lua) does without colour,
 * and core.format_fixed writes a number as string.format's "%.1f" does.
 *
 * The run's summary has a row per event: in Lua, its layout and number
 * formatting were about half of what a large run spent after its loop
 * (bench w1c; bench/HISTORY.md).  report.lua
 * keeps the Lua layout for painted cells and for plain lua5.4, and
 * spec/e2e/report_spec.lua holds both to the same text.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lauxlib.h"

#include "core.h"

/* a growing scratch array owned by a userdata at stack index `at`, so an
 * error (a cell that is not a string) frees it with the state */
static void *scratch(lua_State *L, int at, size_t need) {
  size_t have = lua_rawlen(L, at);
  void *p = lua_touserdata(L, at);
  if (need > have) {
    size_t n = have ? have : 256;
    while (n < need) n *= 2;
    p = lua_newuserdatauv(L, n, 0);
    memcpy(p, lua_touserdata(L, at), have);
    lua_replace(L, at);
  }
  return p;
}

/* the cell row[i] as a string (nil: ""); anything else is an error, as
 * the length operator of the Lua layout would raise */
static const char *cell(lua_State *L, int row, lua_Integer ri, lua_Integer i, size_t *len) {
  const char *s;
  int t = lua_rawgeti(L, row, i);
  if (t == LUA_TNIL) {
    lua_pop(L, 1);
    *len = 0;
    return "";
  }
  if (t != LUA_TSTRING)
    luaL_error(L, "table_lines: row %I column %I is a %s, not a string", ri, i, lua_typename(L, t));
  /* the row keeps the string alive after the pop */
  s = lua_tolstring(L, -1, len);
  lua_pop(L, 1);
  return s;
}

static int blank(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* core.table_lines(rows, indent, left, total) -> lines: the first column
 * and those with left[i] true left-aligned, the others right-aligned, two
 * blanks between columns, trailing blanks cut; a rule of dashes under the
 * first row and, with total, above the last. */
static int l_table_lines(lua_State *L) {
  size_t ilen, *w = NULL, rlen, maxline;
  const char *indent;
  lua_Integer nrows, ncol = 0, ri, i;
  char *left, *line;
  int has_left;

  luaL_checktype(L, 1, LUA_TTABLE);
  indent = luaL_checklstring(L, 2, &ilen);
  has_left = !lua_isnoneornil(L, 3);
  if (has_left) luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 4);
  lua_newuserdatauv(L, 0, 0); /* 5: widths */
  lua_newuserdatauv(L, 0, 0); /* 6: the line being made */

  /* the widths: over each row's cells up to its first nil, as ipairs */
  for (nrows = 0;; nrows++) {
    int t = lua_rawgeti(L, 1, nrows + 1);
    if (t == LUA_TNIL) {
      lua_pop(L, 1);
      break;
    }
    if (t != LUA_TTABLE)
      return luaL_error(L, "table_lines: row %I is a %s, not a table", nrows + 1, lua_typename(L, t));
    for (i = 1;; i++) {
      size_t len;
      int ct = lua_rawgeti(L, -1, i);
      if (ct == LUA_TNIL) {
        lua_pop(L, 1);
        break;
      }
      if (ct != LUA_TSTRING)
        return luaL_error(L, "table_lines: row %I column %I is a %s, not a string", nrows + 1, i,
                          lua_typename(L, ct));
      len = lua_rawlen(L, -1);
      lua_pop(L, 1);
      if (i > ncol) {
        w = scratch(L, 5, (size_t)i * sizeof *w);
        w[i - 1] = len;
        ncol = i;
      } else if (len > w[i - 1]) {
        w[i - 1] = len;
      }
    }
    lua_pop(L, 1);
  }
  w = scratch(L, 5, (size_t)(ncol + 1) * sizeof *w);
  left = lua_newuserdatauv(L, (size_t)ncol + 1, 0); /* 7 */
  maxline = ilen;
  for (i = 1; i <= ncol; i++) {
    left[i - 1] = i == 1;
    if (has_left && i > 1) {
      lua_geti(L, 3, i);
      left[i - 1] = (char)lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    maxline += w[i - 1] + 2;
  }
  line = scratch(L, 6, maxline + 1);

  /* the rule: not cut, as the Lua layout */
  memcpy(line, indent, ilen);
  rlen = ilen;
  for (i = 1; i <= ncol; i++) {
    if (i > 1) {
      memcpy(line + rlen, "  ", 2);
      rlen += 2;
    }
    memset(line + rlen, '-', w[i - 1]);
    rlen += w[i - 1];
  }
  lua_pushlstring(L, line, rlen); /* 8: the rule */

  lua_createtable(L, (int)(nrows + 2), 0); /* 9: the lines */
  {
    lua_Integer out = 0;
    for (ri = 1; ri <= nrows; ri++) {
      lua_Integer last = 0;
      size_t n;
      lua_rawgeti(L, 1, ri); /* 10: the row */
      for (i = ncol; i >= 1 && last == 0; i--) {
        size_t len;
        cell(L, 10, ri, i, &len);
        if (len > 0) last = i;
      }
      memcpy(line, indent, ilen);
      n = ilen;
      for (i = 1; i <= last; i++) {
        size_t len, pad;
        const char *c = cell(L, 10, ri, i, &len);
        /* a cell after a nil in its row was not measured: it may be wider
         * than its column, and is then written whole */
        pad = len < w[i - 1] ? w[i - 1] - len : 0;
        if (n + 2 + len + pad > maxline) {
          maxline = n + 2 + len + pad;
          line = scratch(L, 6, maxline + 1);
        }
        if (i > 1) {
          memcpy(line + n, "  ", 2);
          n += 2;
        }
        if (left[i - 1]) {
          memcpy(line + n, c, len);
          memset(line + n + len, ' ', pad);
        } else {
          memset(line + n, ' ', pad);
          memcpy(line + n + pad, c, len);
        }
        n += len + pad;
      }
      while (n > 0 && blank(line[n - 1])) n--;
      lua_pop(L, 1);
      lua_pushlstring(L, line, n);
      lua_rawseti(L, 9, ++out);
      if (ri == 1 || (lua_toboolean(L, 4) && ri == nrows - 1)) {
        lua_pushvalue(L, 8);
        lua_rawseti(L, 9, ++out);
      }
    }
  }
  return 1;
}

/* core.format_fixed(v, decimals, suffix) -> string.format("%.<decimals>f", v)
 * .. suffix, for 0 <= decimals <= 3.  v times 10^decimals is exact in a long
 * double (53 + 10 bits of 64), so rintl rounds the exact value half to
 * even, as printf does; beyond 1e12 and for NaN and infinities, snprintf. */
static int l_format_fixed(lua_State *L) {
  static const long double p10[] = {1e0L, 1e1L, 1e2L, 1e3L};
  double v = luaL_checknumber(L, 1);
  lua_Integer dec = luaL_checkinteger(L, 2);
  size_t slen;
  const char *suffix = luaL_optlstring(L, 3, "", &slen);
  char tmp[400], dig[24]; /* 1e308 has 309 digits */
  int n = 0, nd = 0;
  unsigned long long m;
  luaL_argcheck(L, dec >= 0 && dec <= 3, 2, "0 to 3 decimals");
  luaL_argcheck(L, slen <= 8, 3, "at most 8 bytes");
  if (!(fabs(v) < 1e12)) {
    n = snprintf(tmp, sizeof tmp, "%.*f", (int)dec, v);
    if (n < 0 || (size_t)n >= sizeof tmp) return luaL_error(L, "format_fixed: %f does not fit", v);
  } else {
    m = (unsigned long long)(double)rintl(fabsl((long double)v * p10[dec]));
    do {
      dig[nd++] = (char)('0' + m % 10);
      m /= 10;
    } while (m != 0 || nd <= dec);
    if (signbit(v)) tmp[n++] = '-'; /* -0.04 is "-0.0", as printf */
    while (nd > dec) tmp[n++] = dig[--nd];
    if (dec > 0) tmp[n++] = '.';
    while (nd > 0) tmp[n++] = dig[--nd];
  }
  memcpy(tmp + n, suffix, slen);
  lua_pushlstring(L, tmp, (size_t)n + slen);
  return 1;
}

void columns_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"table_lines", l_table_lines}, {"format_fixed", l_format_fixed}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
