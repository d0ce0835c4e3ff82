/*
 * stats.c - orch.Stats: bounded-memory summaries (durations, lateness),
 * added to on every invocation, so in C, and only here (spec/c/test_stats.c
 * holds it to exact percentiles): the first
 * STATS_EXACT samples are kept (percentiles exact), later ones counted in
 * log-spaced buckets 1% wide (percentiles within 1%); n, sum, min and max
 * are always exact.  Buckets are a sorted array of the ones in use: a run
 * touches a few hundred at most, where a dense array over the range would
 * cost kilobytes per statistic and 10,000 events have 20,000 of them.  The
 * exact samples' array grows as they come, for the same reason.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"

#include "core.h"

#define FLOOR 1e-6 /* values below a microsecond share bucket 0 */

static int bucket_of(double v) {
  if (!(v > FLOOR)) return 0;
  return (int)floor(log(v / FLOOR) / log(1.01)) + 1;
}

static double bucket_value(int b) {
  if (b == 0) return 0;
  return FLOOR * exp((b - 0.5) * log(1.01));
}

static int count_bucket(stats *s, int b) {
  size_t lo = 0, hi = s->nb;
  if (s->hint < s->nb && s->bk[s->hint].b == b) {
    s->bk[s->hint].count++;
    return 0;
  }
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (s->bk[mid].b < b) lo = mid + 1; else hi = mid;
  }
  if (lo < s->nb && s->bk[lo].b == b) {
    s->bk[lo].count++;
    s->hint = lo;
    return 0;
  }
  if (s->nb == s->capb) {
    size_t cap = s->capb ? s->capb * 2 : 8;
    struct stats_bucket *p = realloc(s->bk, cap * sizeof *p);
    if (p == NULL) return -1;
    s->bk = p;
    s->capb = cap;
  }
  memmove(s->bk + lo + 1, s->bk + lo, (s->nb - lo) * sizeof *s->bk);
  s->bk[lo].b = b;
  s->bk[lo].count = 1;
  s->nb++;
  s->hint = lo;
  return 0;
}

/* Room for one more exact sample: EXACT_FIRST, then STATS_EXACT.  One
 * growth at most: with 10,000 events in step, every growth falls in the
 * same tick and delays its later firings (w1b's lateness).  When no room
 * can be had, the samples so far go to the buckets (percentiles within 1%
 * early). */
#define EXACT_FIRST 24 /* a 20 s run at 1 s (w1b) never grows */
static int grow_exact(stats *s) {
  int cap = s->capexact == 0 ? EXACT_FIRST : STATS_EXACT;
  double *p = s->allocf(s->allocud, s->exact, (size_t)s->capexact * sizeof *p,
                        (size_t)cap * sizeof *p);
  if (p == NULL) {
    int i;
    for (i = 0; i < s->nexact; i++) count_bucket(s, bucket_of(s->exact[i]));
    s->nexact = -1;
    if (s->exact != NULL) s->allocf(s->allocud, s->exact, (size_t)s->capexact * sizeof *p, 0);
    s->exact = NULL;
    s->capexact = 0;
    return -1;
  }
  s->exact = p;
  s->capexact = cap;
  return 0;
}

void stats_add(stats *s, double v) {
  s->n++;
  s->sum += v;
  if (s->n == 1 || v > s->max) s->max = v;
  if (s->n == 1 || v < s->min) s->min = v;
  if (s->nexact >= 0) {
    if (s->nexact == s->capexact && grow_exact(s) != 0) {
      count_bucket(s, bucket_of(v));
      return;
    }
    s->exact[s->nexact++] = v;
    s->sorted = 0;
    if (s->nexact < STATS_EXACT) return;
    {
      int i;
      for (i = 0; i < STATS_EXACT; i++) count_bucket(s, bucket_of(s->exact[i]));
    }
    s->nexact = -1;
    s->allocf(s->allocud, s->exact, (size_t)s->capexact * sizeof *s->exact, 0); /* the buckets hold them now */
    s->exact = NULL;
    s->capexact = 0;
    return;
  }
  count_bucket(s, bucket_of(v)); /* out of memory: a sample uncounted, n still right */
}

/* Sorts the exact samples in place (their order means nothing), once for
 * all the percentiles asked until the next sample: the summary asks three
 * of each of 10,000 events. */
static void sort_exact(stats *s) {
  int i, j;
  for (i = 1; i < s->nexact; i++) {
    double v = s->exact[i];
    for (j = i; j > 0 && s->exact[j - 1] > v; j--) s->exact[j] = s->exact[j - 1];
    s->exact[j] = v;
  }
  s->sorted = 1;
}

/* Nearest rank; NAN when empty. */
double stats_percentile(stats *s, double p) {
  double rank;
  if (s->n == 0) return NAN;
  rank = ceil(p / 100.0 * (double)s->n);
  if (rank < 1) rank = 1;
  if (s->nexact >= 0) {
    if (!s->sorted) sort_exact(s);
    return s->exact[(size_t)rank > (size_t)s->nexact ? s->nexact - 1 : (int)rank - 1];
  } else {
    size_t i;
    double seen = 0;
    for (i = 0; i < s->nb; i++) {
      seen += (double)s->bk[i].count;
      if (seen >= rank) {
        double v = bucket_value(s->bk[i].b);
        return v < s->max ? v : s->max;
      }
    }
    return s->max;
  }
}

static void stats_free(stats *s) {
  free(s->bk);
  s->bk = NULL;
  if (s->exact != NULL) s->allocf(s->allocud, s->exact, (size_t)s->capexact * sizeof *s->exact, 0);
  s->exact = NULL;
  s->nexact = s->capexact = 0;
  s->nb = s->capb = 0;
}

/* ---- Lua ---------------------------------------------------------------- */

static stats *check_stats(lua_State *L) { return luaL_checkudata(L, 1, STATS_MT); }

/* Pushes a new, empty stats; mti: its metatable's index on the stack
 * (one looked up for many), or 0 to look it up. */
stats *stats_push(lua_State *L, int mti) {
  stats *s;
  if (mti != 0) mti = lua_absindex(L, mti);
  s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->allocf = lua_getallocf(L, &s->allocud);
  if (mti != 0) {
    lua_pushvalue(L, mti);
    lua_setmetatable(L, -2);
  } else {
    luaL_setmetatable(L, STATS_MT);
  }
  return s;
}

/* core.new_stats() -> stats */
int stats_push_new(lua_State *L) {
  stats_push(L, 0);
  return 1;
}

stats *stats_check(lua_State *L, int idx) { return luaL_checkudata(L, idx, STATS_MT); }

static int l_stats_add(lua_State *L) {
  stats_add(check_stats(L), luaL_checknumber(L, 2));
  return 0;
}

/* stats:percentile(p) -> value | nil when empty */
static int l_stats_percentile(lua_State *L) {
  stats *s = check_stats(L);
  double p = luaL_checknumber(L, 2);
  if (s->n == 0) return 0;
  lua_pushnumber(L, stats_percentile(s, p));
  return 1;
}

static int l_stats_mean(lua_State *L) {
  stats *s = check_stats(L);
  if (s->n == 0) return 0;
  lua_pushnumber(L, s->sum / (double)s->n);
  return 1;
}

/* stats.n, .sum, .max, .min (max and min nil when empty), then methods */
static int l_stats_index(lua_State *L) {
  stats *s = check_stats(L);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "n") == 0) { lua_pushinteger(L, (lua_Integer)s->n); return 1; }
  if (strcmp(k, "sum") == 0) { lua_pushnumber(L, s->sum); return 1; }
  if (strcmp(k, "max") == 0) { if (s->n == 0) return 0; lua_pushnumber(L, s->max); return 1; }
  if (strcmp(k, "min") == 0) { if (s->n == 0) return 0; lua_pushnumber(L, s->min); return 1; }
  lua_getfield(L, lua_upvalueindex(1), k); /* a method */
  return 1;
}

static int l_stats_gc(lua_State *L) {
  stats_free(check_stats(L));
  return 0;
}

void stats_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"add", l_stats_add}, {"percentile", l_stats_percentile}, {"mean", l_stats_mean},
    {NULL, NULL}};
  luaL_newmetatable(L, STATS_MT);
  luaL_newlib(L, methods);
  lua_pushcclosure(L, l_stats_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_stats_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}
