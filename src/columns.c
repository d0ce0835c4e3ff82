/*
 * columns.c - orch.columns, the text of every table orchlua prints (the
 * summary, the checks, `orchlua report`): table_lines lays out cells in
 * columns, format_fixed writes a number as string.format's "%.1f" does.
 * In C for the summary's row per event at the end of a large run (bench
 * w1c); the one layout, preloaded in orchlua and built as
 * build/lua/orch/columns.so for plain lua5.4.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lauxlib.h"

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

/* columns.table_lines(rows, indent, left, total, paint, emit) -> lines: the
 * first column and those with left[i] true left-aligned, the others
 * right-aligned, two blanks between columns, trailing blanks cut; a rule
 * of dashes under the first row and, with total, above the last.
 * paint(ri, ci, padded, cell), when given, returns the padded cell as it
 * is to be written (coloured), or nil for as it is.
 * rows is a list, or a function rows(ri) -> row ri (nil after the last),
 * asked twice for each row (widths, then text) and the same both times:
 * a table of 10,000 rows need not exist.  With emit, each line goes to
 * emit(line) as it is made and nothing is returned. */
enum { A_ROWS = 1, A_INDENT, A_LEFT, A_TOTAL, A_PAINT, A_EMIT, S_W, S_LINE, S_LEFT, S_RULE, S_OUT, S_ROW };

/* pushes row ri (or nil) */
static int get_row(lua_State *L, lua_Integer ri) {
  if (lua_type(L, A_ROWS) == LUA_TTABLE) return lua_rawgeti(L, A_ROWS, ri);
  lua_pushvalue(L, A_ROWS);
  lua_pushinteger(L, ri);
  lua_call(L, 1, 1);
  return lua_type(L, -1);
}

/* the line on top of the stack (popped): to emit, or into S_OUT */
static void put_line(lua_State *L, int emit, lua_Integer *out) {
  if (emit) {
    lua_pushvalue(L, A_EMIT);
    lua_insert(L, -2);
    lua_call(L, 1, 0);
  } else {
    lua_rawseti(L, S_OUT, ++*out);
  }
}

static int l_table_lines(lua_State *L) {
  size_t ilen, *w = NULL, rlen, maxline;
  const char *indent;
  lua_Integer nrows, ncol = 0, ri, i;
  char *left, *line;
  int has_left, paint, emit;

  luaL_argexpected(L, lua_type(L, A_ROWS) == LUA_TTABLE || lua_type(L, A_ROWS) == LUA_TFUNCTION, A_ROWS,
                   "table or function");
  indent = luaL_checklstring(L, A_INDENT, &ilen);
  has_left = !lua_isnoneornil(L, A_LEFT);
  if (has_left) luaL_checktype(L, A_LEFT, LUA_TTABLE);
  paint = !lua_isnoneornil(L, A_PAINT);
  if (paint) luaL_checktype(L, A_PAINT, LUA_TFUNCTION);
  emit = !lua_isnoneornil(L, A_EMIT);
  if (emit) luaL_checktype(L, A_EMIT, LUA_TFUNCTION);
  lua_settop(L, A_EMIT);
  lua_newuserdatauv(L, 0, 0); /* S_W: widths */
  lua_newuserdatauv(L, 0, 0); /* S_LINE: the line being made */

  /* the widths: over each row's cells up to its first nil, as ipairs */
  for (nrows = 0;; nrows++) {
    int t = get_row(L, nrows + 1);
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
        w = scratch(L, S_W, (size_t)i * sizeof *w);
        w[i - 1] = len;
        ncol = i;
      } else if (len > w[i - 1]) {
        w[i - 1] = len;
      }
    }
    lua_pop(L, 1);
  }
  w = scratch(L, S_W, (size_t)(ncol + 1) * sizeof *w);
  left = lua_newuserdatauv(L, (size_t)ncol + 1, 0); /* S_LEFT */
  maxline = ilen;
  for (i = 1; i <= ncol; i++) {
    left[i - 1] = i == 1;
    if (has_left && i > 1) {
      lua_geti(L, A_LEFT, i);
      left[i - 1] = (char)lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    maxline += w[i - 1] + 2;
  }
  line = scratch(L, S_LINE, maxline + 1);

  /* the rule: not cut */
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
  lua_pushlstring(L, line, rlen); /* S_RULE */

  if (emit) lua_pushnil(L); /* S_OUT: none */
  else lua_createtable(L, nrows < INT_MAX - 2 ? (int)(nrows + 2) : 0, 0); /* S_OUT: the lines */
  {
    lua_Integer out = 0;
    for (ri = 1; ri <= nrows; ri++) {
      lua_Integer last = 0;
      size_t n;
      if (get_row(L, ri) != LUA_TTABLE) /* S_ROW */
        return luaL_error(L, "table_lines: row %I changed between the passes", ri);
      for (i = ncol; i >= 1 && last == 0; i--) {
        size_t len;
        cell(L, S_ROW, ri, i, &len);
        if (len > 0) last = i;
      }
      memcpy(line, indent, ilen);
      n = ilen;
      for (i = 1; i <= last; i++) {
        size_t len, pad;
        const char *c = cell(L, S_ROW, ri, i, &len);
        /* a cell after a nil in its row was not measured: it may be wider
         * than its column, and is then written whole */
        pad = len < w[i - 1] ? w[i - 1] - len : 0;
        if (n + 2 + len + pad > maxline) {
          maxline = n + 2 + len + pad;
          line = scratch(L, S_LINE, maxline + 1);
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
        if (paint) {
          size_t pl;
          const char *p;
          lua_pushvalue(L, A_PAINT);
          lua_pushinteger(L, ri);
          lua_pushinteger(L, i);
          lua_pushlstring(L, line + n, len + pad);
          lua_pushlstring(L, c, len);
          lua_call(L, 4, 1);
          p = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &pl) : NULL;
          if (p != NULL) {
            if (n + pl > maxline) {
              maxline = n + pl;
              line = scratch(L, S_LINE, maxline + 1);
            }
            memcpy(line + n, p, pl);
            n += pl;
          } else {
            n += len + pad;
          }
          lua_pop(L, 1);
        } else {
          n += len + pad;
        }
      }
      while (n > 0 && blank(line[n - 1])) n--;
      lua_pop(L, 1);
      lua_pushlstring(L, line, n);
      put_line(L, emit, &out);
      if (ri == 1 || (lua_toboolean(L, A_TOTAL) && ri == nrows - 1)) {
        lua_pushvalue(L, S_RULE);
        put_line(L, emit, &out);
      }
    }
  }
  return emit ? 0 : 1;
}

/* columns.format_fixed(v, decimals, suffix) -> string.format("%.<decimals>f", v)
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

int luaopen_orch_columns(lua_State *L);
int luaopen_orch_columns(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"table_lines", l_table_lines}, {"format_fixed", l_format_fixed}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
