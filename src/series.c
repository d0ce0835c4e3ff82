/*
 * series.c - orch.Series: what a check judges, in memory fixed by its
 * shape, never by the run's length.  A series is a ring of SERIES_SLOTS
 * time slots (a sliding window of window_sec moves in steps of
 * window_sec / SERIES_SLOTS), or one slot for the whole run; each slot
 * keeps count, sum, min, max, last, errors, the longest failure streak and,
 * when a percentile is asked, a log-bucket histogram (64 buckets per power
 * of two: a percentile within 0.8% of the value).  slope_per_hour is a
 * Theil-Sen fit (the median of the pairwise slopes: up to 29% of wild
 * points change nothing) over the slots' means, or, for the whole run, over
 * SERIES_POINTS means that halve their resolution when full; it needs
 * SERIES_SLOPE_MIN points with samples.
 *
 * Samples come from C (invoker.c at each fast end, queue.c at each metric
 * report) and from the engine's Lua (the other ends); what a check means
 * and what a value's verdict is, is lua/orch/checks.lua's.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"

#include "core.h"

#define SERIES_MT "orch.Series"
/* a series that never keeps a histogram owns no memory of its own: no
 * __gc, so 20,000 of them are not on the collector's finalizer list */
#define SERIES_PLAIN_MT "orch.Series.plain"
#define SERIES_SLOPE_MIN 8 /* points a slope needs: 1/8 of the run, 8/20 of the window */

/* ---- histogram: keys are the top bits of the double, monotone in v ---- */

#define HSHIFT 46          /* 11 exponent bits and 6 of the mantissa */
#define HZERO (1 << 18)    /* the key of 0; positives above, negatives below */

static int32_t hkey(double v) {
  uint64_t u;
  double a = fabs(v);
  if (a == 0) return HZERO;
  memcpy(&u, &a, sizeof u);
  return v > 0 ? HZERO + 1 + (int32_t)(u >> HSHIFT) : HZERO - 1 - (int32_t)(u >> HSHIFT);
}

/* The middle of key k's bucket. */
static double hvalue(int32_t k) {
  uint64_t u;
  double a;
  if (k == HZERO) return 0;
  u = ((uint64_t)(k > HZERO ? k - HZERO - 1 : HZERO - 1 - k) << HSHIFT) | ((uint64_t)1 << (HSHIFT - 1));
  memcpy(&a, &u, sizeof a);
  return k > HZERO ? a : -a;
}

static int hist_add(series_hist *h, int32_t k) {
  uint32_t lo = 0, hi = h->nb;
  if (h->hint < h->nb && h->v[h->hint].k == k) {
    h->v[h->hint].n++;
    return 0;
  }
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (h->v[mid].k < k) lo = mid + 1; else hi = mid;
  }
  if (lo < h->nb && h->v[lo].k == k) {
    h->v[lo].n++;
    h->hint = lo;
    return 0;
  }
  if (h->nb == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 8;
    series_bin *p = realloc(h->v, cap * sizeof *p);
    if (p == NULL) return -1; /* a sample uncounted in the histogram only */
    h->v = p;
    h->cap = cap;
  }
  memmove(h->v + lo + 1, h->v + lo, (h->nb - lo) * sizeof *h->v);
  h->v[lo].k = k;
  h->v[lo].n = 1;
  h->nb++;
  h->hint = lo;
  return 0;
}

/* ---- samples ------------------------------------------------------------ */

/* The slot for time t, emptied when it last held an older one (its
 * histogram's memory is kept: the next one needs as much). */
static series_slot *slot_at(series *s, double t) {
  int64_t idx = s->width > 0 ? (int64_t)floor(t / s->width) : 0;
  series_slot *sl = &s->slots[s->width > 0 ? (size_t)(idx % SERIES_SLOTS) : 0]; /* nslots */
  if (sl->idx != idx && sl->idx < idx) {
    series_hist h = sl->h;
    memset(sl, 0, sizeof *sl);
    h.nb = h.hint = 0;
    sl->h = h;
    sl->idx = idx;
  }
  return sl;
}

static void point_add(series *s, double t, double v) {
  int64_t i;
  if (s->pts == NULL) return;
  i = (int64_t)floor((t - s->from) / s->pwidth);
  if (i < 0) i = 0;
  while (i >= SERIES_POINTS) {
    int j;
    for (j = 0; j < SERIES_POINTS / 2; j++) {
      series_point a = s->pts[2 * j], b = s->pts[2 * j + 1];
      s->pts[j].t = a.t + b.t;
      s->pts[j].v = a.v + b.v;
      s->pts[j].n = a.n + b.n;
    }
    memset(s->pts + SERIES_POINTS / 2, 0, SERIES_POINTS / 2 * sizeof *s->pts);
    s->pwidth *= 2;
    i = (int64_t)floor((t - s->from) / s->pwidth);
  }
  s->pts[i].t += t;
  s->pts[i].v += v;
  s->pts[i].n++;
}

/* One sample v at description time t; err: it is a failure (an event's
 * failed invocation), which also counts in the streak; ok: it shows the
 * source alive (silence_sec). */
static void sample(series *s, double t, double v, int err, int ok) {
  series_slot *sl;
  if (t < s->from || v != v) return;
  sl = slot_at(s, t);
  if (sl->n == 0 || v < sl->min) sl->min = v;
  if (sl->n == 0 || v > sl->max) sl->max = v;
  sl->n++;
  sl->sum += v;
  sl->tsum += t;
  sl->last = v;
  sl->t_last = t;
  if (err) {
    sl->err++;
    s->streak++;
    if (s->streak > sl->streak_max) sl->streak_max = s->streak;
  } else {
    s->streak = 0;
  }
  if (ok) s->t_ok = t;
  s->total++;
  if (s->want_hist) hist_add(&sl->h, hkey(v));
  if (s->pts != NULL) point_add(s, t, v);
}

void series_value(series *s, double t, double v) { sample(s, t, v, 0, 1); }

void series_invocation(series *s, double t, double duration, double late_s, int ok) {
  double v;
  switch (s->kind) {
  case SK_DURATION: v = duration; break;
  case SK_LATENESS: v = late_s; break;
  case SK_STATUS: v = ok ? 0 : 1; break;
  default: v = 1; break;
  }
  sample(s, t, v, !ok && s->kind == SK_STATUS, ok);
}

/* ---- the value of a stat over the live slots ---------------------------- */

typedef struct agg {
  uint64_t n, err;
  double sum, min, max, last, t_last;
  uint32_t streak_max;
  double oldest; /* the start of the oldest live slot */
} agg;

static int live(series *s, const series_slot *sl, double now) {
  int64_t cur;
  if (sl->n == 0 && sl->err == 0) return 0;
  if (s->width <= 0) return 1;
  cur = (int64_t)floor(now / s->width);
  return sl->idx > cur - SERIES_SLOTS && sl->idx <= cur;
}

static void aggregate(series *s, double now, agg *a) {
  int i, nslots = s->nslots;
  memset(a, 0, sizeof *a);
  a->t_last = -1;
  for (i = 0; i < nslots; i++) {
    const series_slot *sl = &s->slots[i];
    if (!live(s, sl, now)) continue;
    if (sl->n > 0) {
      if (a->n == 0 || sl->min < a->min) a->min = sl->min;
      if (a->n == 0 || sl->max > a->max) a->max = sl->max;
      if (sl->t_last >= a->t_last) {
        a->t_last = sl->t_last;
        a->last = sl->last;
      }
    }
    a->n += sl->n;
    a->sum += sl->sum;
    a->err += sl->err;
    if (sl->streak_max > a->streak_max) a->streak_max = sl->streak_max;
  }
  if (s->derived && s->pct_from != NULL) {
    const stats *st = s->pct_from;
    a->n = st->n;
    a->sum = st->sum * s->pct_scale;
    a->min = st->min * s->pct_scale;
    a->max = st->max * s->pct_scale;
    a->last = NAN; /* not kept: a check on it is never derived */
  } else if (s->derived && s->runs_from != NULL) {
    a->n = (uint64_t)*s->runs_from;
    a->err += (uint64_t)*s->failures_from; /* the slot holds the error results */
  }
  if (s->width > 0) {
    double start = (floor(now / s->width) - (SERIES_SLOTS - 1)) * s->width;
    a->oldest = start > s->from ? start : s->from;
  } else {
    a->oldest = s->from;
  }
}

static int cmp_bin(const void *x, const void *y) {
  int32_t a = ((const series_bin *)x)->k, b = ((const series_bin *)y)->k;
  return (a > b) - (a < b);
}

/* Nearest rank over the live slots' histograms; NAN when out of memory. */
static double percentile(series *s, double now, const agg *a, double p) {
  int i, nslots = s->nslots;
  uint32_t total = 0, j, m = 0;
  series_bin *all;
  double rank = ceil(p / 100.0 * (double)a->n), seen = 0, v = a->max;
  if (rank < 1) rank = 1;
  if (s->pct_from != NULL) return stats_percentile(s->pct_from, p) * s->pct_scale;
  if (nslots == 1) {
    all = s->slots[0].h.v;
    m = s->slots[0].h.nb;
  } else {
    for (i = 0; i < nslots; i++)
      if (live(s, &s->slots[i], now)) total += s->slots[i].h.nb;
    all = malloc((total ? total : 1) * sizeof *all);
    if (all == NULL) return NAN;
    for (i = 0; i < nslots; i++) {
      const series_slot *sl = &s->slots[i];
      if (!live(s, sl, now)) continue;
      memcpy(all + m, sl->h.v, sl->h.nb * sizeof *all);
      m += sl->h.nb;
    }
    qsort(all, m, sizeof *all, cmp_bin);
  }
  for (j = 0; j < m; j++) {
    seen += (double)all[j].n;
    if (seen >= rank) {
      v = hvalue(all[j].k);
      break;
    }
  }
  if (nslots > 1) free(all);
  if (v > a->max) v = a->max;
  if (v < a->min) v = a->min;
  return v;
}

static int cmp_double(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

/* Theil-Sen: the median of the slopes between every two points (x, y),
 * per hour; NAN with fewer than two points at distinct times. */
static double theil_sen(const double *x, const double *y, int n) {
  int i, j, m = 0;
  double *sl, r;
  if (n < 2) return NAN;
  sl = malloc((size_t)n * (size_t)(n - 1) / 2 * sizeof *sl);
  if (sl == NULL) return NAN;
  for (i = 0; i < n; i++)
    for (j = i + 1; j < n; j++)
      if (x[j] != x[i]) sl[m++] = (y[j] - y[i]) / (x[j] - x[i]);
  if (m == 0) {
    free(sl);
    return NAN;
  }
  qsort(sl, (size_t)m, sizeof *sl, cmp_double);
  r = m % 2 ? sl[m / 2] : (sl[m / 2 - 1] + sl[m / 2]) / 2;
  free(sl);
  return r * 3600;
}

static double slope(series *s, double now) {
  double x[SERIES_POINTS > SERIES_SLOTS ? SERIES_POINTS : SERIES_SLOTS];
  double y[sizeof x / sizeof x[0]];
  int i, n = 0;
  if (s->width > 0) {
    for (i = 0; i < SERIES_SLOTS; i++) {
      const series_slot *sl = &s->slots[i];
      if (sl->n == 0 || !live(s, sl, now)) continue;
      x[n] = sl->tsum / (double)sl->n;
      y[n++] = sl->sum / (double)sl->n;
    }
  } else if (s->pts != NULL) {
    for (i = 0; i < SERIES_POINTS; i++) {
      const series_point *pt = &s->pts[i];
      if (pt->n == 0) continue;
      x[n] = pt->t / (double)pt->n;
      y[n++] = pt->v / (double)pt->n;
    }
  }
  /* fewer points say nothing about a trend under noise */
  return n >= SERIES_SLOPE_MIN ? theil_sen(x, y, n) : NAN;
}

/* ---- Lua ---------------------------------------------------------------- */

series *series_test(lua_State *L, int i) {
  series *s = luaL_testudata(L, i, SERIES_MT);
  return s != NULL ? s : luaL_testudata(L, i, SERIES_PLAIN_MT);
}

static series *check_series(lua_State *L, int i) {
  series *s = series_test(L, i);
  if (s == NULL) luaL_typeerror(L, i, SERIES_MT);
  return s;
}

/* core.series{window = sec|nil, from = sec, kind = "value"|"duration"|
 *   "lateness"|"invocations"|"status", hist = bool, slope = bool,
 *   span = sec (the run's length: the whole-run slope's first resolution),
 *   where = table|nil} -> series */
static int l_core_series(lua_State *L) {
  static const char *const kinds[] = {"value", "duration", "lateness", "invocations", "status", NULL};
  series *s;
  double window, from, span;
  int kind, hist, slope, nslots;
  size_t size;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "window");
  window = luaL_optnumber(L, -1, 0);
  lua_getfield(L, 1, "from");
  from = luaL_optnumber(L, -1, 0);
  lua_getfield(L, 1, "kind");
  kind = luaL_checkoption(L, -1, "value", kinds);
  lua_getfield(L, 1, "hist");
  hist = lua_toboolean(L, -1);
  lua_getfield(L, 1, "slope");
  slope = lua_toboolean(L, -1);
  lua_getfield(L, 1, "span");
  span = luaL_optnumber(L, -1, 3600);
  lua_pop(L, 6);
  /* one block: the struct, its slots, its points (20,000 checks on
   * 10,000 events are 20,000 series: the whole run's need one slot) */
  nslots = window > 0 ? SERIES_SLOTS : 1;
  size = sizeof *s + (size_t)nslots * sizeof(series_slot) + (slope ? SERIES_POINTS * sizeof(series_point) : 0);
  s = lua_newuserdatauv(L, size, 1);                     /* [spec s] */
  memset(s, 0, size);
  luaL_setmetatable(L, hist ? SERIES_MT : SERIES_PLAIN_MT);
  s->nslots = nslots;
  s->slots = (series_slot *)(s + 1);
  s->pts = slope ? (series_point *)(s->slots + nslots) : NULL;
  s->width = window / SERIES_SLOTS;
  s->from = from;
  s->kind = kind;
  s->want_hist = hist;
  s->want_slope = slope;
  s->pwidth = span / SERIES_POINTS;
  if (!(s->pwidth > 0)) s->pwidth = 1;
  s->t_ok = s->from;
  if (lua_getfield(L, 1, "where") == LUA_TTABLE) {
    s->has_where = 1;
    lua_setiuservalue(L, 2, 1);
  } else {
    lua_pop(L, 1);
  }
  return 1;
}

/* series:add(t, v) */
static int l_series_add(lua_State *L) {
  series_value(check_series(L, 1), luaL_checknumber(L, 2), luaL_checknumber(L, 3));
  return 0;
}

/* series:invocation(t, duration, lateness_sec, ok) */
static int l_series_invocation(lua_State *L) {
  series_invocation(check_series(L, 1), luaL_checknumber(L, 2), luaL_checknumber(L, 3),
                    luaL_checknumber(L, 4), lua_toboolean(L, 5));
  return 0;
}

/* series:error_result(t): an error result reported by the event: counted
 * in errors, not an invocation. */
static int l_series_error_result(lua_State *L) {
  series *s = check_series(L, 1);
  double t = luaL_checknumber(L, 2);
  if (t >= s->from) {
    slot_at(s, t)->err++;
    s->total++;
  }
  return 0;
}

/* series:stat(name, now, [p]) -> value | nil (no sample in the window).
 * name: count, rate, mean, min, max, last, pct (p), errors, error_rate,
 * consecutive_failures, silence_sec, slope_per_hour. */
static int l_series_stat(lua_State *L) {
  static const char *const names[] = {"count", "rate", "mean", "min", "max", "last", "pct", "errors",
                                      "error_rate", "consecutive_failures", "silence_sec",
                                      "slope_per_hour", NULL};
  enum { COUNT, RATE, MEAN, MIN, MAX, LAST, PCT, ERRORS, ERROR_RATE, STREAK, SILENCE, SLOPE };
  series *s = check_series(L, 1);
  int stat = luaL_checkoption(L, 2, NULL, names);
  double now = luaL_checknumber(L, 3), v;
  agg a;
  if (stat == SILENCE) {
    double since = s->kind == SK_VALUE ? s->from : s->t_ok;
    int i;
    if (s->kind == SK_VALUE)
      for (i = 0; i < s->nslots; i++)
        if (s->slots[i].n > 0 && s->slots[i].t_last > since) since = s->slots[i].t_last;
    if (now < s->from) return 0;
    lua_pushnumber(L, now - since);
    return 1;
  }
  aggregate(s, now, &a);
  switch (stat) {
  case COUNT: lua_pushinteger(L, (lua_Integer)a.n); return 1;
  case ERRORS: lua_pushinteger(L, (lua_Integer)a.err); return 1;
  case STREAK: lua_pushinteger(L, (lua_Integer)a.streak_max); return 1;
  case RATE:
    if (now <= a.oldest) return 0;
    lua_pushnumber(L, (double)a.n / (now - a.oldest));
    return 1;
  default: break;
  }
  if (a.n == 0) return 0;
  switch (stat) {
  case MEAN: v = a.sum / (double)a.n; break;
  case MIN: v = a.min; break;
  case MAX: v = a.max; break;
  case LAST: v = a.last; break;
  case PCT: v = percentile(s, now, &a, luaL_checknumber(L, 4)); break;
  case ERROR_RATE: v = (double)a.err / (double)a.n; break;
  default: v = slope(s, now); break;
  }
  if (v != v) return 0;
  lua_pushnumber(L, v);
  return 1;
}

/* series.total: samples ever taken (a series that never had one: no data);
 * a derived series: what the invoker counted */
static int l_series_index(lua_State *L) {
  series *s = check_series(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "total") == 0) {
    uint64_t n = s->total;
    if (s->derived && s->pct_from != NULL) n = s->pct_from->n;
    if (s->derived && s->runs_from != NULL) n += (uint64_t)*s->runs_from;
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
  }
  lua_getfield(L, lua_upvalueindex(1), k);
  return 1;
}

static int l_series_gc(lua_State *L) {
  series *s = check_series(L, 1);
  int i;
  for (i = 0; i < s->nslots; i++) {
    free(s->slots[i].h.v);
    s->slots[i].h.v = NULL;
    s->slots[i].h.nb = s->slots[i].h.cap = 0;
  }
  return 0;
}

/* Keeps the samples of metric reports whose fields match the series'
 * `where` (uservalue 1): data at di (a table), for queue.c. */
int series_where_matches(lua_State *L, int si, int di) {
  int ok = 1;
  si = lua_absindex(L, si);
  di = lua_absindex(L, di);
  lua_getiuservalue(L, si, 1);                           /* [where] */
  lua_getfield(L, di, "fields");                         /* [where fields] */
  if (!lua_istable(L, -1)) {
    lua_pop(L, 2);
    return 0;
  }
  lua_pushnil(L);
  while (ok && lua_next(L, -3) != 0) {                   /* [where fields k v] */
    lua_pushvalue(L, -2);
    lua_rawget(L, -4);                                   /* [where fields k v fv] */
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (!ok) lua_pop(L, 1);                                /* the key lua_next left */
  lua_pop(L, 2);
  return ok;
}

void series_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"add", l_series_add}, {"invocation", l_series_invocation},
    {"error_result", l_series_error_result}, {"stat", l_series_stat}, {NULL, NULL}};
  luaL_newmetatable(L, SERIES_MT);
  luaL_newmetatable(L, SERIES_PLAIN_MT);                /* [mt plain] */
  luaL_newlib(L, methods);
  lua_pushcclosure(L, l_series_index, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_setfield(L, -3, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_series_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_core_series);
  lua_setfield(L, -2, "series");
}
