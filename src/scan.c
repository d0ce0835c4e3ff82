/*
 * scan.c - orch.scan: reading a --report JSONL file in bounded memory, for
 * `orchlua report` (lua/orch/report.lua owns what the records mean).
 *
 *   scan.open(path [, max_line]) -> reader | nil, message
 *   reader:next() -> kind, ...        one record per call, nothing at the end
 *     "i", id, event, status, duration, lateness, started, t, iteration,
 *          phase, scheduled           an invocation whose fields are plain
 *     "m", event, t, metric, value, fields_json|nil, unit|nil
 *                                     a metric result whose fields are plain
 *     "x", line                       anything else: Lua decodes it
 *     "long", max_line                a line longer than max_line (no newline)
 *   reader:lineno(), reader:unterminated() (the last line had no newline),
 *   reader:close()
 *   scan.series(buckets [, width]) -> series: series:add(t, v); n, sum, min,
 *     max, mean(), percentile(p), points() -> exact or bucketed columns
 *
 * The two hot record types are read without building a Lua table: a flat
 * walk over the top-level keys finds the ones wanted, and any surprise (an
 * escape in a wanted string, a wrong kind, a syntax error) hands the line
 * to Lua, where cjson and the schema checks have the last word.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lauxlib.h"

#define READER_MT "orch.ScanReader"
#define SERIES_MT "orch.ScanSeries"
#define DEFAULT_MAX_LINE (32u << 20)
#define READ_BLOCK (256u << 10)

/* ---- the line reader ------------------------------------------------------ */

typedef struct {
  int fd;
  char *buf;
  size_t cap, len, pos, max_line;
  long long lineno;
  int eof, unterminated;
} reader;

/* ---- a flat look at one JSON object -------------------------------------- */

enum { K_NONE, K_STR, K_NUM, K_NULL, K_OBJ, K_OTHER };

typedef struct {
  int kind, escaped;
  const char *s; /* string contents (no quotes) or object text */
  size_t n;
  double num;
} jval;

/* the characters of a JSON number */
static const unsigned char NUMCHAR[256] = {
  ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
  ['+'] = 1, ['-'] = 1, ['.'] = 1, ['e'] = 1, ['E'] = 1};

static const char *ws(const char *p, const char *e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
  return p;
}

/* p at '"': the end after the closing quote, or NULL (a byte loop: the
 * strings of a record are short) */
static const char *str_end(const char *p, const char *e, int *escaped) {
  for (p++; p < e; p++) {
    if (*p == '"') return p + 1;
    if (*p == '\\') {
      *escaped = 1;
      p++;
    }
  }
  return NULL;
}

/* skips any value; NULL on a syntax error */
static const char *skip_value(const char *p, const char *e, int depth) {
  int esc = 0;
  if (p >= e || depth > 64) return NULL;
  if (*p == '"') return str_end(p, e, &esc);
  if (*p == '{' || *p == '[') {
    char close = *p == '{' ? '}' : ']';
    p = ws(p + 1, e);
    if (p < e && *p == close) return p + 1;
    for (;;) {
      if (close == '}') {
        if (p >= e || *p != '"') return NULL;
        p = str_end(p, e, &esc);
        if (p == NULL) return NULL;
        p = ws(p, e);
        if (p >= e || *p != ':') return NULL;
        p = ws(p + 1, e);
      }
      p = skip_value(p, e, depth + 1);
      if (p == NULL) return NULL;
      p = ws(p, e);
      if (p < e && *p == ',') { p = ws(p + 1, e); continue; }
      if (p < e && *p == close) return p + 1;
      return NULL;
    }
  }
  if (*p == '-' || (*p >= '0' && *p <= '9')) {
    while (p < e && NUMCHAR[(unsigned char)*p]) p++;
    return p;
  }
  if (e - p >= 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0)) return p + 4;
  if (e - p >= 5 && memcmp(p, "false", 5) == 0) return p + 5;
  return NULL;
}

/* A plain decimal of at most 15 digits (-12.345) exactly as strtod reads
 * it: both the digits and the power of ten are exact doubles, so one
 * division rounds correctly (Clinger).  0 for anything else. */
static int fast_number(const char *p, const char *e, double *out) {
  static const double POW10[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
  int neg = 0, digits = 0, frac = 0, dot = 0;
  long long m = 0;
  if (p < e && *p == '-') { neg = 1; p++; }
  if (p >= e) return 0;
  if (*p == '0' && p + 1 < e && p[1] >= '0' && p[1] <= '9') return 0; /* a leading zero: let strtod judge */
  for (; p < e; p++) {
    if (*p >= '0' && *p <= '9') {
      if (++digits > 15) return 0;
      m = m * 10 + (*p - '0');
      frac += dot;
    } else if (*p == '.' && !dot) {
      dot = 1;
    } else {
      return 0;
    }
  }
  if (digits == 0 || (dot && frac == 0)) return 0;
  *out = (neg ? -(double)m : (double)m) / POW10[frac];
  return 1;
}

/* Walks the object at [p, e): for each key found in names (NULL-ended),
 * its value into vals.  0, or -1 when the text is not one object. */
typedef struct {
  const char *s;
  size_t n;
} key;
#define KEY(s) {s, sizeof s - 1}

static int walk(const char *p, const char *e, const key *names, jval *vals) {
  p = ws(p, e);
  if (p >= e || *p != '{') return -1;
  p = ws(p + 1, e);
  if (p < e && *p == '}') return ws(p + 1, e) == e ? 0 : -1;
  for (;;) {
    const char *k, *v, *ve;
    size_t kn;
    int esc = 0, i;
    if (p >= e || *p != '"') return -1;
    k = p + 1;
    p = str_end(p, e, &esc);
    if (p == NULL) return -1;
    kn = (size_t)(p - 1 - k);
    p = ws(p, e);
    if (p >= e || *p != ':') return -1;
    v = ws(p + 1, e);
    ve = skip_value(v, e, 1);
    if (ve == NULL) return -1;
    if (!esc) {
      for (i = 0; names[i].s != NULL; i++) {
        if (names[i].n == kn && names[i].s[0] == k[0] && memcmp(names[i].s, k, kn) == 0) {
          jval *j = &vals[i];
          j->escaped = 0;
          if (*v == '"') {
            j->kind = K_STR;
            j->s = v + 1;
            j->n = (size_t)(ve - v - 2);
            j->escaped = memchr(j->s, '\\', j->n) != NULL;
          } else if (*v == '{') {
            j->kind = K_OBJ;
            j->s = v;
            j->n = (size_t)(ve - v);
          } else if (*v == 'n') {
            j->kind = K_NULL;
          } else if (*v == '-' || (*v >= '0' && *v <= '9')) {
            if (!fast_number(v, ve, &j->num)) {
              char *end; /* the reader keeps a NUL after every line's bytes */
              j->num = strtod(v, &end);
              if (end != ve) return -1;
            }
            j->kind = K_NUM;
          } else {
            j->kind = K_OTHER;
          }
          break;
        }
      }
    }
    p = ws(ve, e);
    if (p < e && *p == ',') { p = ws(p + 1, e); continue; }
    if (p < e && *p == '}') return ws(p + 1, e) == e ? 0 : -1;
    return -1;
  }
}

static int is(const jval *v, const char *s) {
  size_t n = strlen(s);
  return v->kind == K_STR && !v->escaped && v->n == n && memcmp(v->s, s, n) == 0;
}

/* a plain string or null (or absent) */
static int plain_str(const jval *v) {
  return v->kind == K_NONE || v->kind == K_NULL || (v->kind == K_STR && !v->escaped);
}
static int plain_num(const jval *v) {
  return v->kind == K_NONE || v->kind == K_NULL || v->kind == K_NUM;
}

static void push_str(lua_State *L, const jval *v) {
  if (v->kind == K_STR) lua_pushlstring(L, v->s, v->n);
  else lua_pushnil(L);
}
static void push_num(lua_State *L, const jval *v) {
  if (v->kind == K_NUM) lua_pushnumber(L, v->num);
  else lua_pushnil(L);
}

enum { T_TYPE, T_ID, T_EVENT, T_STATUS, T_DURATION, T_LATENESS, T_STARTED, T_T, T_ITERATION, T_PHASE,
       T_SCHEDULED, T_LEVEL, T_DATA, T_N };
static const key TOP[] = {KEY("type"), KEY("id"), KEY("event"), KEY("status"), KEY("duration"), KEY("lateness"),
                          KEY("started"), KEY("t"), KEY("iteration"), KEY("phase"), KEY("scheduled"), KEY("level"),
                          KEY("data"), {NULL, 0}};
enum { D_METRIC, D_VALUE, D_FIELDS, D_UNIT, D_N };
static const key DATA[] = {KEY("metric"), KEY("value"), KEY("fields"), KEY("unit"), {NULL, 0}};

/* Pushes the record of line [s, s+n): see the header; returns the count. */
static int push_record(lua_State *L, const char *s, size_t n) {
  jval v[T_N], d[D_N];
  const char *e = s + n;
  int i;
  memset(v, 0, sizeof v);
  if (walk(s, e, TOP, v) != 0) goto slow;
  if (is(&v[T_TYPE], "invocation")) {
    if (!is(&v[T_STATUS], "ok")) goto slow; /* a failure: its message is wanted */
    for (i = T_ID; i <= T_SCHEDULED; i++) {
      int str = i == T_ID || i == T_EVENT || i == T_STATUS || i == T_PHASE;
      if (!(str ? plain_str(&v[i]) : plain_num(&v[i]))) goto slow;
    }
    lua_pushliteral(L, "i");
    push_str(L, &v[T_ID]);
    push_str(L, &v[T_EVENT]);
    push_str(L, &v[T_STATUS]);
    push_num(L, &v[T_DURATION]);
    push_num(L, &v[T_LATENESS]);
    push_num(L, &v[T_STARTED]);
    push_num(L, &v[T_T]);
    if (v[T_ITERATION].kind == K_NUM && v[T_ITERATION].num == floor(v[T_ITERATION].num) &&
        fabs(v[T_ITERATION].num) < 9e15)
      lua_pushinteger(L, (lua_Integer)v[T_ITERATION].num);
    else
      push_num(L, &v[T_ITERATION]);
    push_str(L, &v[T_PHASE]);
    push_num(L, &v[T_SCHEDULED]);
    return 11;
  }
  if (is(&v[T_TYPE], "result") && is(&v[T_LEVEL], "metric") && v[T_DATA].kind == K_OBJ &&
      plain_str(&v[T_EVENT]) && plain_num(&v[T_T])) {
    memset(d, 0, sizeof d);
    if (walk(v[T_DATA].s, v[T_DATA].s + v[T_DATA].n, DATA, d) != 0) goto slow;
    if (d[D_METRIC].kind != K_STR || d[D_METRIC].escaped || d[D_VALUE].kind != K_NUM) goto slow;
    if (!(d[D_FIELDS].kind == K_NONE || d[D_FIELDS].kind == K_NULL || d[D_FIELDS].kind == K_OBJ)) goto slow;
    if (!plain_str(&d[D_UNIT])) goto slow;
    lua_pushliteral(L, "m");
    push_str(L, &v[T_EVENT]);
    push_num(L, &v[T_T]);
    push_str(L, &d[D_METRIC]);
    lua_pushnumber(L, d[D_VALUE].num);
    if (d[D_FIELDS].kind == K_OBJ) lua_pushlstring(L, d[D_FIELDS].s, d[D_FIELDS].n);
    else lua_pushnil(L);
    push_str(L, &d[D_UNIT]);
    return 7;
  }
slow:
  lua_pushliteral(L, "x");
  lua_pushlstring(L, s, n);
  return 2;
}

static reader *check_reader(lua_State *L) { return luaL_checkudata(L, 1, READER_MT); }

/* scan.open(path [, max_line]) -> reader | nil, message */
static int l_scan_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer max_line = luaL_optinteger(L, 2, DEFAULT_MAX_LINE);
  struct stat st;
  reader *r;
  int fd;
  luaL_argcheck(L, max_line > 0, 2, "positive");
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    close(fd);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: is a directory, not a JSONL report", path);
    return 2;
  }
  r = lua_newuserdatauv(L, sizeof *r, 0);
  memset(r, 0, sizeof *r);
  r->fd = fd;
  r->max_line = (size_t)max_line;
  luaL_setmetatable(L, READER_MT);
  return 1;
}

static int l_reader_next(lua_State *L) {
  reader *r = check_reader(L);
  for (;;) {
    char *nl;
    if (r->fd < 0) return 0;
    nl = r->len > r->pos ? memchr(r->buf + r->pos, '\n', r->len - r->pos) : NULL;
    if (nl == NULL && !r->eof) {
      ssize_t got;
      size_t have = r->len - r->pos;
      if (have > r->max_line) {
        lua_pushliteral(L, "long");
        lua_pushinteger(L, (lua_Integer)r->max_line);
        r->lineno++;
        return 2;
      }
      if (have > 0) memmove(r->buf, r->buf + r->pos, have);
      r->len = have;
      r->pos = 0;
      if (r->cap - r->len < READ_BLOCK + 1) {
        size_t cap = r->cap ? r->cap * 2 : 2 * READ_BLOCK;
        char *p;
        while (cap - r->len < READ_BLOCK + 1) cap *= 2;
        p = realloc(r->buf, cap);
        if (p == NULL) return luaL_error(L, "out of memory reading a line of %d bytes", (int)r->len);
        r->buf = p;
        r->cap = cap;
      }
      do got = read(r->fd, r->buf + r->len, READ_BLOCK);
      while (got < 0 && errno == EINTR);
      if (got < 0) return luaL_error(L, "read: %s", strerror(errno));
      if (got == 0) r->eof = 1;
      r->len += (size_t)got;
      r->buf[r->len] = '\0';
      continue;
    }
    {
      const char *s = r->buf + r->pos;
      size_t n = nl ? (size_t)(nl - s) : r->len - r->pos;
      if (nl == NULL && n == 0) return 0; /* the end */
      r->lineno++;
      r->pos += n + (nl ? 1 : 0);
      if (nl == NULL) r->unterminated = 1;
      if (n > r->max_line) {
        lua_pushliteral(L, "long");
        lua_pushinteger(L, (lua_Integer)r->max_line);
        return 2;
      }
      if (ws(s, s + n) == s + n) continue; /* a blank line */
      return push_record(L, s, n);
    }
  }
}

static int l_reader_lineno(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_reader(L)->lineno);
  return 1;
}

static int l_reader_unterminated(lua_State *L) {
  lua_pushboolean(L, check_reader(L)->unterminated);
  return 1;
}

static int l_reader_close(lua_State *L) {
  reader *r = check_reader(L);
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
  free(r->buf);
  r->buf = NULL;
  r->cap = r->len = r->pos = 0;
  return 0;
}

/* ---- the bounded series -------------------------------------------------
 * Exact (t, v) pairs up to `buckets` of them; beyond, min/sum/max/count per
 * time bucket of `width` seconds from t = 0, the width doubling (adjacent
 * buckets merged) whenever a t falls past the last.  Percentiles: exact
 * while the pairs are kept, then from log-spaced buckets 1% wide on each
 * side of zero (within 1%); n, sum, min and max always exact.
 */

#define FLOOR 1e-9
typedef struct {
  int key;
  unsigned count; /* 8 bytes a bin: a series may use a few thousand */
} hbin;

typedef struct {
  size_t nb, n, nexact, capexact;
  double width, sum, min, max;
  double *t, *v;               /* exact pairs, nb of each */
  double *bn, *bs, *bmin, *bmax; /* buckets, nb of each */
  hbin *h;
  size_t nh, caph, hint;
} series;

static int hkey(double v) {
  double a = fabs(v);
  int k;
  if (!(a > FLOOR)) return 0;
  k = (int)floor(log(a / FLOOR) / log(1.01)) + 1;
  return v < 0 ? -k : k;
}

static double hvalue(int k) {
  double a;
  if (k == 0) return 0;
  a = FLOOR * exp(((k < 0 ? -k : k) - 0.5) * log(1.01));
  return k < 0 ? -a : a;
}

static int hadd(series *s, double v) {
  int k = hkey(v);
  size_t lo = 0, hi = s->nh;
  if (s->hint < s->nh && s->h[s->hint].key == k) {
    s->h[s->hint].count++;
    return 0;
  }
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (s->h[mid].key < k) lo = mid + 1; else hi = mid;
  }
  if (lo < s->nh && s->h[lo].key == k) {
    s->h[lo].count++;
    s->hint = lo;
    return 0;
  }
  if (s->nh == s->caph) {
    size_t cap = s->caph ? s->caph * 2 : 16;
    hbin *p = realloc(s->h, cap * sizeof *p);
    if (p == NULL) return -1;
    s->h = p;
    s->caph = cap;
  }
  memmove(s->h + lo + 1, s->h + lo, (s->nh - lo) * sizeof *s->h);
  s->h[lo].key = k;
  s->h[lo].count = 1;
  s->nh++;
  s->hint = lo;
  return 0;
}

static void bucket_put(series *s, size_t i, double n, double sum, double mn, double mx) {
  if (s->bn[i] == 0 || mn < s->bmin[i]) s->bmin[i] = mn;
  if (s->bn[i] == 0 || mx > s->bmax[i]) s->bmax[i] = mx;
  s->bn[i] += n;
  s->bs[i] += sum;
}

/* widens until t fits */
static void bucket_fit(series *s, double t) {
  while (t >= s->width * (double)s->nb) {
    size_t i;
    for (i = 0; i < s->nb; i++) {
      size_t j = i / 2;
      double n = s->bn[i], sum = s->bs[i], mn = s->bmin[i], mx = s->bmax[i];
      s->bn[i] = s->bs[i] = 0;
      if (n > 0) bucket_put(s, j, n, sum, mn, mx);
    }
    s->width *= 2;
  }
}

static void bucket_add(series *s, double t, double v) {
  size_t i;
  if (!(t > 0)) t = 0;
  bucket_fit(s, t);
  i = (size_t)(t / s->width);
  if (i >= s->nb) i = s->nb - 1;
  bucket_put(s, i, 1, v, v, v);
}

static int series_to_buckets(lua_State *L, series *s) {
  size_t i, nb = s->nb;
  double tmax = 0;
  s->bn = calloc(nb * 4, sizeof(double));
  if (s->bn == NULL) return luaL_error(L, "out of memory");
  s->bs = s->bn + nb;
  s->bmin = s->bs + nb;
  s->bmax = s->bmin + nb;
  for (i = 0; i < s->nexact; i++)
    if (s->t[i] > tmax) tmax = s->t[i];
  if (!(s->width > 0)) s->width = tmax > 0 ? tmax / (double)nb * 1.001 : 1e-3;
  for (i = 0; i < s->nexact; i++) {
    bucket_add(s, s->t[i], s->v[i]);
    if (hadd(s, s->v[i]) != 0) return luaL_error(L, "out of memory");
  }
  free(s->t);
  s->t = s->v = NULL;
  return 0;
}

static series *check_series(lua_State *L) { return luaL_checkudata(L, 1, SERIES_MT); }

/* scan.series(buckets [, width]) */
static int l_scan_series(lua_State *L) {
  lua_Integer nb = luaL_checkinteger(L, 1);
  double width = luaL_optnumber(L, 2, 0);
  series *s;
  luaL_argcheck(L, nb >= 2 && nb <= 100000, 1, "2 to 100000 buckets");
  s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->nb = (size_t)nb;
  s->width = width > 0 ? width : 0;
  luaL_setmetatable(L, SERIES_MT);
  return 1;
}

static int l_series_add(lua_State *L) {
  series *s = check_series(L);
  double t = luaL_checknumber(L, 2), v = luaL_checknumber(L, 3);
  s->n++;
  s->sum += v;
  if (s->n == 1 || v < s->min) s->min = v;
  if (s->n == 1 || v > s->max) s->max = v;
  if (s->bn == NULL) {
    if (s->nexact == s->capexact && s->nexact < s->nb) {
      /* grown by doubling: 10,000 events of a few invocations stay small */
      size_t cap = s->capexact ? s->capexact * 2 : 16;
      double *p;
      if (cap > s->nb) cap = s->nb;
      p = malloc(2 * cap * sizeof(double));
      if (p == NULL) return luaL_error(L, "out of memory");
      if (s->nexact > 0) {
        memcpy(p, s->t, s->nexact * sizeof(double));
        memcpy(p + cap, s->v, s->nexact * sizeof(double));
      }
      free(s->t);
      s->t = p;
      s->v = p + cap;
      s->capexact = cap;
    }
    if (s->nexact < s->nb) {
      s->t[s->nexact] = t;
      s->v[s->nexact++] = v;
      return 0;
    }
    series_to_buckets(L, s);
  }
  bucket_add(s, t, v);
  hadd(s, v); /* out of memory: a sample uncounted in the percentiles only */
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* series:percentile(p) -> nearest rank, nil when empty */
static int l_series_percentile(lua_State *L) {
  series *s = check_series(L);
  double p = luaL_checknumber(L, 2), rank;
  if (s->n == 0) return 0;
  rank = ceil(p / 100.0 * (double)s->n);
  if (rank < 1) rank = 1;
  if (rank > (double)s->n) rank = (double)s->n;
  if (s->bn == NULL) {
    double *tmp = malloc(s->nexact * sizeof *tmp);
    if (tmp == NULL) return luaL_error(L, "out of memory");
    memcpy(tmp, s->v, s->nexact * sizeof *tmp);
    qsort(tmp, s->nexact, sizeof *tmp, cmp_double);
    lua_pushnumber(L, tmp[(size_t)rank - 1]);
    free(tmp);
  } else {
    size_t i;
    double seen = 0, v = s->max;
    for (i = 0; i < s->nh; i++) {
      seen += (double)s->h[i].count;
      if (seen >= rank) {
        v = hvalue(s->h[i].key);
        break;
      }
    }
    lua_pushnumber(L, v < s->min ? s->min : v > s->max ? s->max : v);
  }
  return 1;
}

static int l_series_mean(lua_State *L) {
  series *s = check_series(L);
  if (s->n == 0) return 0;
  lua_pushnumber(L, s->sum / (double)s->n);
  return 1;
}

static void set_array(lua_State *L, const double *a, size_t n, size_t step, const char *name) {
  size_t i;
  lua_createtable(L, (int)n, 0);
  for (i = 0; i < n; i++) {
    lua_pushnumber(L, a[i * step]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, name);
}

/* series:points() -> {t = {...}, v = {...}} (exact, in the order added) or
 * {width =, i = {bucket index...}, n =, min =, mean =, max =} (buckets in use) */
static int l_series_points(lua_State *L) {
  series *s = check_series(L);
  lua_newtable(L);
  if (s->bn == NULL) {
    set_array(L, s->t, s->nexact, 1, "t");
    set_array(L, s->v, s->nexact, 1, "v");
    return 1;
  }
  {
    size_t i, k = 0, used = 0;
    for (i = 0; i < s->nb; i++) used += s->bn[i] > 0;
    lua_pushnumber(L, s->width);
    lua_setfield(L, -2, "width");
    lua_createtable(L, (int)used, 0); /* i */
    lua_createtable(L, (int)used, 0); /* n */
    lua_createtable(L, (int)used, 0); /* min */
    lua_createtable(L, (int)used, 0); /* mean */
    lua_createtable(L, (int)used, 0); /* max */
    for (i = 0; i < s->nb; i++) {
      double mean;
      if (s->bn[i] == 0) continue;
      k++;
      mean = s->bs[i] / s->bn[i];
      if (mean < s->bmin[i]) mean = s->bmin[i]; /* no rounding outside the band */
      if (mean > s->bmax[i]) mean = s->bmax[i];
      lua_pushinteger(L, (lua_Integer)i); lua_rawseti(L, -6, (lua_Integer)k);
      lua_pushnumber(L, s->bn[i]); lua_rawseti(L, -5, (lua_Integer)k);
      lua_pushnumber(L, s->bmin[i]); lua_rawseti(L, -4, (lua_Integer)k);
      lua_pushnumber(L, mean); lua_rawseti(L, -3, (lua_Integer)k);
      lua_pushnumber(L, s->bmax[i]); lua_rawseti(L, -2, (lua_Integer)k);
    }
    lua_setfield(L, -6, "max");
    lua_setfield(L, -5, "mean");
    lua_setfield(L, -4, "min");
    lua_setfield(L, -3, "n");
    lua_setfield(L, -2, "i");
  }
  return 1;
}

/* series.n, .sum, .min, .max (nil when empty), .exact, .width (nil while
 * exact), then methods */
static int l_series_index(lua_State *L) {
  series *s = check_series(L);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "n") == 0) { lua_pushinteger(L, (lua_Integer)s->n); return 1; }
  if (strcmp(k, "sum") == 0) { lua_pushnumber(L, s->sum); return 1; }
  if (strcmp(k, "min") == 0) { if (s->n == 0) return 0; lua_pushnumber(L, s->min); return 1; }
  if (strcmp(k, "max") == 0) { if (s->n == 0) return 0; lua_pushnumber(L, s->max); return 1; }
  if (strcmp(k, "exact") == 0) { lua_pushboolean(L, s->bn == NULL); return 1; }
  if (strcmp(k, "width") == 0) { if (s->bn == NULL) return 0; lua_pushnumber(L, s->width); return 1; }
  lua_getfield(L, lua_upvalueindex(1), k);
  return 1;
}

static int l_series_gc(lua_State *L) {
  series *s = check_series(L);
  free(s->t);
  free(s->bn);
  free(s->h);
  s->t = s->v = s->bn = NULL;
  s->h = NULL;
  return 0;
}

int luaopen_orch_scan(lua_State *L);
int luaopen_orch_scan(lua_State *L) {
  static const luaL_Reg reader_m[] = {{"next", l_reader_next}, {"lineno", l_reader_lineno},
                                      {"unterminated", l_reader_unterminated},
                                      {"close", l_reader_close}, {NULL, NULL}};
  static const luaL_Reg series_m[] = {{"add", l_series_add}, {"percentile", l_series_percentile},
                                      {"mean", l_series_mean}, {"points", l_series_points},
                                      {NULL, NULL}};
  /* scan.add(series, t, v): series:add without the method lookup, per line */
  static const luaL_Reg funcs[] = {{"open", l_scan_open}, {"series", l_scan_series}, {"add", l_series_add},
                                   {NULL, NULL}};
  luaL_newmetatable(L, READER_MT);
  luaL_newlib(L, reader_m);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_reader_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_reader_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  luaL_newmetatable(L, SERIES_MT);
  luaL_newlib(L, series_m);
  lua_pushcclosure(L, l_series_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_series_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
