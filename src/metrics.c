/*
 * metrics.c - the live view's figures (--listen, lua/orch/live.lua): the
 * result tally and the Prometheus text of the per-event statistics.
 *
 * The tally is a tap on the result path: queue.c's report() hands it each
 * result record when one is set (queue:set_tally), nothing otherwise.  It
 * keeps results counted by event and level, and the last value of every
 * metric series (name, event, fields), in a hash table bounded at the
 * series cap given to core.tally: a series beyond it is counted as dropped
 * (live.lua warns), never stored.  A record that is not a metric costs a
 * comparison while its event and level are the last record's, else a key
 * built from the two strings and one lookup; a metric, its fields too.
 *
 * core.prom_text renders the /metrics body: the four per-event families from the invokers'
 * own counters and statistics (invoker_figures) and the tally's: 10,000
 * events make a hundred thousand lines, too many for string.format at
 * each scrape.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"

#include "core.h"

#define TALLY_MT "orch.Tally"
#define KEY_MAX 1024   /* a longer series key (long fields) is dropped */
#define FIELDS_MAX 16  /* fields kept per metric series, by name order */

typedef struct entry {
  struct entry *next; /* the bucket's chain */
  uint32_t hash;
  int metric;         /* 0: a result count, 1: a metric's last value */
  double value;
  size_t name_len;    /* metric: the length of "orch_<name>" at series' head */
  char *series;       /* results: `event="e",level="l"`; metrics:
                       * `orch_<name>{event="e",field="v"` (closed at render) */
  size_t keylen;
  char key[];
} entry;

struct tally {
  entry **buckets;
  size_t nbuckets, count, max;
  entry **all;        /* in order of first sight */
  size_t nall, capall;
  lua_Integer dropped;
  char *labels;       /* the run's labels, `,k="v"...`, on every series */
  size_t labels_len;
  char **label_names; /* theirs: a field with one of these names is renamed */
  size_t nlabel_names;
  /* the result count of the last record: a chatty event reports with the
   * same event and level strings (kept alive as the userdata's user values
   * 1 and 2, so the same address is the same string) */
  const char *last_ev, *last_lv;
  entry *last;
  char key[KEY_MAX];
};

/* ---- text helpers -------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 128;
    char *p;
    while (cap < b->len + n + 1) cap *= 2;
    if ((p = realloc(b->p, cap)) == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

#define SB_LIT(b, s) sb_add(b, s, sizeof(s) - 1)

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void sb_escaped(sbuf *b, const char *s, size_t n) {
  size_t i, from = 0;
  for (i = 0; i < n; i++) {
    const char *rep = s[i] == '\\' ? "\\\\" : s[i] == '"' ? "\\\"" : s[i] == '\n' ? "\\n" : NULL;
    if (rep != NULL) {
      sb_add(b, s + from, i - from);
      sb_add(b, rep, 2);
      from = i + 1;
    }
  }
  sb_add(b, s + from, n - from);
}

/* A name with what Prometheus does not allow in it made `_`; labels also
 * refuse ':'. */
static void sb_name(sbuf *b, const char *s, size_t n, int label) {
  size_t i;
  for (i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
             (c >= '0' && c <= '9' && !(label && i == 0)) || (c == ':' && !label);
    char out = ok ? c : '_';
    sb_add(b, &out, 1);
  }
}

/* A sample value: integers exactly, others shortest-ish; NaN and infinities
 * as the format spells them. */
static size_t fmt_value(char *out, double v) {
  if (v != v) return (size_t)sprintf(out, "NaN");
  if (isinf(v)) return (size_t)sprintf(out, v > 0 ? "+Inf" : "-Inf");
  if (v == floor(v) && fabs(v) < 1e15) return (size_t)sprintf(out, "%.0f", v);
  return (size_t)sprintf(out, "%.15g", v);
}

/* A duration in seconds to the nanosecond, without printf (tens of
 * thousands of them per scrape at 10,000 events). */
static size_t fmt_seconds(char *out, double v) {
  uint64_t ns, ip, frac;
  char tmp[24];
  size_t n = 0, k = 0;
  int i;
  if (!(v >= 0) || v >= 1e9) return fmt_value(out, v);
  ns = (uint64_t)llround(v * 1e9);
  ip = ns / 1000000000u;
  frac = ns % 1000000000u;
  do {
    tmp[k++] = (char)('0' + ip % 10);
    ip /= 10;
  } while (ip > 0);
  while (k > 0) out[n++] = tmp[--k];
  if (frac != 0) {
    char f[9];
    int last = 8;
    for (i = 8; i >= 0; i--) {
      f[i] = (char)('0' + frac % 10);
      frac /= 10;
    }
    while (f[last] == '0') last--;
    out[n++] = '.';
    for (i = 0; i <= last; i++) out[n++] = f[i];
  }
  out[n] = '\0';
  return n;
}

static size_t fmt_count(char *out, lua_Integer v) {
  char tmp[24];
  size_t n = 0, k = 0;
  uint64_t u;
  if (v < 0) {
    out[n++] = '-';
    u = (uint64_t)0 - (uint64_t)v;
  } else {
    u = (uint64_t)v;
  }
  do {
    tmp[k++] = (char)('0' + u % 10);
    u /= 10;
  } while (u > 0);
  while (k > 0) out[n++] = tmp[--k];
  out[n] = '\0';
  return n;
}

/* ---- the tally ----------------------------------------------------------- */

static uint32_t hash_of(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static int tally_grow(tally *t) {
  size_t nb = t->nbuckets ? t->nbuckets * 2 : 256, i;
  entry **b = calloc(nb, sizeof *b);
  if (b == NULL) return -1;
  for (i = 0; i < t->nbuckets; i++) {
    entry *e = t->buckets[i];
    while (e != NULL) {
      entry *next = e->next;
      e->next = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
  return 0;
}

static entry *tally_find(tally *t, const char *key, size_t n, uint32_t h) {
  entry *e;
  if (t->nbuckets == 0) return NULL;
  for (e = t->buckets[h & (t->nbuckets - 1)]; e != NULL; e = e->next)
    if (e->hash == h && e->keylen == n && memcmp(e->key, key, n) == 0) return e;
  return NULL;
}

/* A new series for key, its text in s (taken over); NULL when the cap is
 * reached or memory is short (counted as dropped either way). */
static entry *tally_add(tally *t, const char *key, size_t n, uint32_t h, sbuf *s) {
  entry *e;
  if (t->count >= t->max || s->oom) goto drop;
  if (t->count >= t->nbuckets && tally_grow(t) != 0) goto drop;
  if (t->nall == t->capall) {
    size_t cap = t->capall ? t->capall * 2 : 64;
    entry **a = realloc(t->all, cap * sizeof *a);
    if (a == NULL) goto drop;
    t->all = a;
    t->capall = cap;
  }
  if ((e = malloc(sizeof *e + n)) == NULL) goto drop;
  memcpy(e->key, key, n);
  e->keylen = n;
  e->hash = h;
  e->value = 0;
  e->metric = 0;
  e->name_len = 0;
  e->series = s->p;
  e->next = t->buckets[h & (t->nbuckets - 1)];
  t->buckets[h & (t->nbuckets - 1)] = e;
  t->all[t->nall++] = e;
  t->count++;
  return e;
drop:
  free(s->p);
  t->dropped++;
  return NULL;
}

/* Appends s (n bytes, then a NUL) to the key being built at *kn; -1 when
 * the key would pass KEY_MAX. */
static int key_add(tally *t, size_t *kn, const char *s, size_t n) {
  if (*kn + n + 1 > KEY_MAX) return -1;
  memcpy(t->key + *kn, s, n);
  t->key[*kn + n] = '\0';
  *kn += n + 1;
  return 0;
}

typedef struct field {
  const char *k, *v;
  size_t kn, vn;
  char num[40]; /* a number's text */
} field;

/* Whether a field's label name would clash with the series' own labels. */
static int clashes(tally *t, const char *name, size_t n) {
  size_t i;
  if ((n == 5 && memcmp(name, "event", 5) == 0) || (n >= 2 && name[0] == '_' && name[1] == '_'))
    return 1;
  for (i = 0; i < t->nlabel_names; i++)
    if (strlen(t->label_names[i]) == n && memcmp(t->label_names[i], name, n) == 0) return 1;
  return 0;
}

/* A metric record's data {metric=, value=, fields=} at di (event at ev). */
static void tally_metric(tally *t, lua_State *L, int ev, int di) {
  field f[FIELDS_MAX];
  int ord[FIELDS_MAX];
  int nf = 0, i, j, top = lua_gettop(L);
  const char *name, *evs;
  size_t name_n, ev_n = 0, kn = 0;
  double value;
  uint32_t h;
  entry *e;
  lua_getfield(L, di, "value");
  lua_getfield(L, di, "metric");
  lua_getfield(L, di, "fields");                       /* [... value metric fields] */
  if (lua_type(L, top + 1) != LUA_TNUMBER || lua_type(L, top + 2) != LUA_TSTRING) goto done;
  value = lua_tonumber(L, top + 1);
  name = lua_tolstring(L, top + 2, &name_n);
  evs = lua_type(L, ev) == LUA_TSTRING ? lua_tolstring(L, ev, &ev_n) : "";
  if (lua_type(L, top + 3) == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, top + 3) != 0) {                /* [... k v] */
      int vt = lua_type(L, -1);
      if (lua_type(L, -2) == LUA_TSTRING && nf < FIELDS_MAX &&
          (vt == LUA_TSTRING || vt == LUA_TNUMBER || vt == LUA_TBOOLEAN)) {
        field *x = &f[nf++];
        x->k = lua_tolstring(L, -2, &x->kn); /* anchored by the table */
        if (vt == LUA_TSTRING) {
          x->v = lua_tolstring(L, -1, &x->vn);
        } else if (vt == LUA_TBOOLEAN) {
          x->v = lua_toboolean(L, -1) ? "true" : "false";
          x->vn = strlen(x->v);
        } else {
          x->vn = lua_isinteger(L, -1) ? fmt_count(x->num, lua_tointeger(L, -1))
                                       : (size_t)snprintf(x->num, sizeof x->num, "%.14g",
                                                          lua_tonumber(L, -1));
          x->v = x->num;
        }
      }
      lua_pop(L, 1);
    }
  }
  for (i = 0; i < nf; i++) ord[i] = i;
  for (i = 1; i < nf; i++) { /* by name: the same fields, the same series */
    int x = ord[i];
    for (j = i; j > 0; j--) {
      const field *a = &f[ord[j - 1]], *c = &f[x];
      size_t m = a->kn < c->kn ? a->kn : c->kn;
      int d = memcmp(a->k, c->k, m);
      if (d < 0 || (d == 0 && a->kn <= c->kn)) break;
      ord[j] = ord[j - 1];
    }
    ord[j] = x;
  }
  if (key_add(t, &kn, "M", 1) || key_add(t, &kn, evs, ev_n) || key_add(t, &kn, name, name_n)) {
    t->dropped++;
    goto done;
  }
  for (i = 0; i < nf; i++) {
    const field *x = &f[ord[i]];
    if (key_add(t, &kn, x->k, x->kn) || key_add(t, &kn, x->v, x->vn)) {
      t->dropped++;
      goto done;
    }
  }
  h = hash_of(t->key, kn);
  e = tally_find(t, t->key, kn, h);
  if (e == NULL) {
    sbuf s = {0};
    size_t nl;
    SB_LIT(&s, "orch_");
    sb_name(&s, name, name_n, 0);
    nl = s.len;
    SB_LIT(&s, "{event=\"");
    sb_escaped(&s, evs, ev_n);
    SB_LIT(&s, "\"");
    for (i = 0; i < nf; i++) {
      const field *x = &f[ord[i]];
      sbuf ln = {0};
      sb_name(&ln, x->k, x->kn, 1);
      SB_LIT(&s, ",");
      if (ln.oom || ln.len == 0 || clashes(t, ln.p, ln.len)) SB_LIT(&s, "field_");
      if (!ln.oom) sb_add(&s, ln.p, ln.len);
      free(ln.p);
      SB_LIT(&s, "=\"");
      sb_escaped(&s, x->v, x->vn);
      SB_LIT(&s, "\"");
    }
    if ((e = tally_add(t, t->key, kn, h, &s)) == NULL) goto done;
    e->metric = 1;
    e->name_len = nl;
  }
  e->value = value;
done:
  lua_settop(L, top);
}

/* The tap (queue.c's report): the record's event at ev (a string or nil),
 * level at li (a string), data at di; the tally's userdata at ti. */
void tally_result(tally *t, lua_State *L, int ti, int ev, int li, int di) {
  size_t ev_n = 0, lv_n, kn = 0;
  const char *evs = lua_type(L, ev) == LUA_TSTRING ? lua_tolstring(L, ev, &ev_n) : "";
  const char *lv = lua_tolstring(L, li, &lv_n);
  uint32_t h;
  entry *e;
  if (lv == NULL) return;
  if (evs == t->last_ev && lv == t->last_lv && t->last != NULL) {
    e = t->last;
  } else {
    if (key_add(t, &kn, "R", 1) || key_add(t, &kn, evs, ev_n) || key_add(t, &kn, lv, lv_n)) {
      t->dropped++;
      return;
    }
    h = hash_of(t->key, kn);
    e = tally_find(t, t->key, kn, h);
    if (e == NULL) {
      sbuf s = {0};
      SB_LIT(&s, "event=\"");
      sb_escaped(&s, evs, ev_n);
      SB_LIT(&s, "\",level=\"");
      sb_escaped(&s, lv, lv_n);
      SB_LIT(&s, "\"");
      e = tally_add(t, t->key, kn, h, &s);
    }
    lua_pushvalue(L, ev);
    lua_setiuservalue(L, ti, 1);
    lua_pushvalue(L, li);
    lua_setiuservalue(L, ti, 2);
    t->last_ev = evs;
    t->last_lv = lv;
    t->last = e;
  }
  if (e != NULL) e->value++;
  if (lv_n == 6 && memcmp(lv, "metric", 6) == 0 && lua_type(L, di) == LUA_TTABLE)
    tally_metric(t, L, ev, di);
}

/* ---- Lua ------------------------------------------------------------------ */

static tally *check_tally(lua_State *L, int i) { return luaL_checkudata(L, i, TALLY_MT); }

tally *tally_check(lua_State *L, int idx) { return check_tally(L, idx); }

static void free_labels(tally *t) {
  size_t i;
  for (i = 0; i < t->nlabel_names; i++) free(t->label_names[i]);
  free(t->label_names);
  free(t->labels);
  t->label_names = NULL;
  t->labels = NULL;
  t->nlabel_names = t->labels_len = 0;
}

/* core.tally(max_series) -> tally */
static int l_tally_new(lua_State *L) {
  lua_Integer max = luaL_checkinteger(L, 1);
  tally *t;
  luaL_argcheck(L, max > 0, 1, "a series cap > 0 expected");
  t = lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->max = (size_t)max;
  luaL_setmetatable(L, TALLY_MT);
  return 1;
}

/* tally:set_labels(text, names): text (`,k="v"...`) goes on every series;
 * names: its label names, which fields must not reuse. */
static int l_tally_set_labels(lua_State *L) {
  tally *t = check_tally(L, 1);
  size_t n, i, count;
  const char *s = luaL_checklstring(L, 2, &n);
  luaL_checktype(L, 3, LUA_TTABLE);
  free_labels(t);
  count = (size_t)lua_rawlen(L, 3);
  if ((t->labels = malloc(n + 1)) == NULL) return luaL_error(L, "out of memory");
  memcpy(t->labels, s, n + 1);
  t->labels_len = n;
  if (count > 0 && (t->label_names = calloc(count, sizeof *t->label_names)) == NULL)
    return luaL_error(L, "out of memory");
  for (i = 0; i < count; i++) {
    const char *name;
    lua_rawgeti(L, 3, (lua_Integer)i + 1);
    name = lua_tostring(L, -1);
    if (name != NULL && (t->label_names[t->nlabel_names] = strdup(name)) != NULL) t->nlabel_names++;
    lua_pop(L, 1);
  }
  return 0;
}

static int by_name(const void *a, const void *b) {
  const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
  size_t m = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(x->series, y->series, m);
  if (c != 0) return c;
  if (x->name_len != y->name_len) return x->name_len < y->name_len ? -1 : 1;
  return strcmp(x->series, y->series);
}

/* The /metrics text goes into a body (http.c) of malloc'd memory, not a
 * Lua string: megabytes a scrape that the collector would count, then
 * copy.  The body is in a userdata on the stack while it is built, so an
 * error leaks nothing. */
typedef struct out {
  lua_State *L;
  body *b;
} out;

static char *out_reserve(out *o, size_t n) {
  body *b = o->b;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    char *p;
    while (cap < b->len + n) cap *= 2;
    if ((p = realloc(b->data, cap)) == NULL) luaL_error(o->L, "out of memory");
    b->data = p;
    b->cap = cap;
  }
  return b->data + b->len;
}

static void out_add(out *o, const char *s, size_t n) {
  if (n == 0) return;
  memcpy(out_reserve(o, n), s, n);
  o->b->len += n;
}

static void out_str(out *o, const char *s) { out_add(o, s, strlen(s)); }

#define LB_LIT(o, s) out_add(o, s, sizeof(s) - 1)

/* One sample: series (then the run's labels) and its value. */
static void add_sample(out *b, tally *t, const char *head, size_t hn, const entry *e) {
  char num[48];
  out_add(b, head, hn);
  out_str(b, e->series);
  out_add(b, t->labels, t->labels_len);
  LB_LIT(b, "} ");
  out_add(b, num, fmt_value(num, e->value));
  LB_LIT(b, "\n");
}

/* Appends the results_total family and one gauge family per reported
 * metric, with HELP and TYPE lines; sorted: the metric series in name
 * order, a box the caller pushed (building may raise). */
static void tally_text(out *b, tally *t, entry **sorted, size_t nm) {
  size_t i;
  LB_LIT(b, "# HELP orchlua_results_total Results events reported, by event and level.\n"
            "# TYPE orchlua_results_total counter\n");
  for (i = 0; i < t->nall; i++)
    if (!t->all[i]->metric) add_sample(b, t, "orchlua_results_total{", 22, t->all[i]);
  for (i = 0; i < nm; i++) {
    entry *e = sorted[i];
    if (i == 0 || e->name_len != sorted[i - 1]->name_len ||
        memcmp(e->series, sorted[i - 1]->series, e->name_len) != 0) {
      LB_LIT(b, "# HELP ");
      out_add(b, e->series, e->name_len);
      LB_LIT(b, " A metric events report (result_reporter:metric), last value.\n# TYPE ");
      out_add(b, e->series, e->name_len);
      LB_LIT(b, " gauge\n");
    }
    add_sample(b, t, "", 0, e);
  }
}

/* Pushes a box holding t's metric series sorted by name; returns it. */
static entry **tally_sorted(lua_State *L, tally *t, size_t *nm) {
  size_t i, n = 0, k = 0;
  entry **m;
  for (i = 0; i < t->nall; i++) n += t->all[i]->metric;
  m = lua_newuserdatauv(L, (n ? n : 1) * sizeof *m, 0);
  for (i = 0; i < t->nall; i++)
    if (t->all[i]->metric) m[k++] = t->all[i];
  qsort(m, n, sizeof *m, by_name);
  *nm = n;
  return m;
}

/* tally:dropped() -> series not kept (the cap, or memory) */
static int l_tally_dropped(lua_State *L) {
  lua_pushinteger(L, check_tally(L, 1)->dropped);
  return 1;
}

static int l_tally_gc(lua_State *L) {
  tally *t = check_tally(L, 1);
  size_t i;
  for (i = 0; i < t->nall; i++) {
    free(t->all[i]->series);
    free(t->all[i]);
  }
  free(t->all);
  free(t->buckets);
  t->all = NULL;
  t->buckets = NULL;
  t->nall = t->nbuckets = t->count = 0;
  free_labels(t);
  return 0;
}

/* ---- the per-event families ----------------------------------------------- */

/* The figures of event i and its label text (anchored in the labelsets
 * table at 2); the stack is as it was. */
static int event_at(lua_State *L, size_t i, invoker_figs *f, const char **ls, size_t *lsn) {
  int ok;
  lua_rawgeti(L, 1, (lua_Integer)i);
  lua_rawgeti(L, 2, (lua_Integer)i);                    /* [inv labels] */
  *ls = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, lsn) : NULL;
  ok = *ls != NULL && invoker_figures(L, -2, f);
  lua_pop(L, 2);
  return ok;
}

static void family_head(out *b, const char *name, const char *help, const char *type) {
  LB_LIT(b, "# HELP ");
  out_str(b, name);
  LB_LIT(b, " ");
  out_str(b, help);
  LB_LIT(b, "\n# TYPE ");
  out_str(b, name);
  LB_LIT(b, " ");
  out_str(b, type);
  LB_LIT(b, "\n");
}

/* name{labels[,extra]} value\n, in one piece of the buffer */
static void add_line(out *b, const char *name, size_t nn, const char *ls, size_t lsn,
                     const char *extra, const char *num, size_t numn) {
  size_t en = extra != NULL ? strlen(extra) : 0;
  char *p = out_reserve(b, nn + lsn + en + numn + 4);
  memcpy(p, name, nn);
  p += nn;
  *p++ = '{';
  memcpy(p, ls, lsn);
  p += lsn;
  if (en > 0) memcpy(p, extra, en);
  p += en;
  *p++ = '}';
  *p++ = ' ';
  memcpy(p, num, numn);
  p += numn;
  *p = '\n';
  b->b->len += nn + lsn + en + numn + 4;
}

static void summary_family(out *b, lua_State *L, size_t n, const char *name,
                           const char *help, int late) {
  static const double qs[] = {50, 90, 99};
  static const char *const qn[] = {",quantile=\"0.5\"", ",quantile=\"0.9\"", ",quantile=\"0.99\""};
  char sum[96], count[96], num[48];
  size_t nn = strlen(name), i;
  double div = late ? 1000.0 : 1.0; /* lateness is kept in milliseconds */
  snprintf(sum, sizeof sum, "%s_sum", name);
  snprintf(count, sizeof count, "%s_count", name);
  family_head(b, name, help, "summary");
  for (i = 1; i <= n; i++) {
    invoker_figs f;
    const char *ls;
    size_t lsn;
    stats *s;
    int q;
    if (!event_at(L, i, &f, &ls, &lsn)) continue;
    s = late ? f.lateness : f.duration;
    if (s->n > 0)
      for (q = 0; q < 3; q++)
        add_line(b, name, nn, ls, lsn, qn[q], num, fmt_seconds(num, stats_percentile(s, qs[q]) / div));
    add_line(b, sum, nn + 4, ls, lsn, NULL, num, fmt_seconds(num, s->sum / div));
    add_line(b, count, nn + 6, ls, lsn, NULL, num, fmt_count(num, (lua_Integer)s->n));
  }
}

/* core.prom_text(head, invokers, labelsets, tally, size_hint) -> the
 * whole /metrics body (an orch.Body, for the server), its length: head
 * (Lua's families), then those of the events' own figures (invocations
 * by status, skipped firings, duration and lateness summaries), then the
 * tally's.  labelsets[i]: invokers[i]'s label text (`event="id",...`
 * with the run's labels); size_hint: the last body's length, so the
 * buffer is not regrown. */
static int l_prom_text(lua_State *L) {
  static const char *const status[] = {",status=\"ok\"", ",status=\"error\"", ",status=\"timeout\""};
  size_t i, n, nm, hn;
  out o, *b = &o;
  char num[32];
  const char *head = luaL_checklstring(L, 1, &hn);
  tally *t = check_tally(L, 4);
  lua_Integer hint = luaL_optinteger(L, 5, 0);
  entry **m;
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 4);
  lua_rotate(L, 1, -1);                                 /* [invokers labelsets tally head] */
  m = tally_sorted(L, t, &nm);                          /* [... head box] */
  o.L = L;
  o.b = body_push(L);                                   /* [... head box body] */
  n = (size_t)lua_rawlen(L, 1);
  if (hint > 0 && hint < ((lua_Integer)1 << 30)) out_reserve(b, (size_t)hint + 4096);
  out_add(b, head, hn);
  family_head(b, "orchlua_invocations_total",
              "Invocations ended, by event and status (error: failed or cancelled).", "counter");
  for (i = 1; i <= n; i++) {
    invoker_figs f;
    const char *ls;
    size_t lsn;
    lua_Integer v[3];
    int k;
    if (!event_at(L, i, &f, &ls, &lsn)) continue;
    v[0] = f.runs - f.failures;
    v[1] = f.failures - f.timeouts;
    v[2] = f.timeouts;
    for (k = 0; k < 3; k++)
      add_line(b, "orchlua_invocations_total", 25, ls, lsn, status[k], num, fmt_count(num, v[k]));
  }
  family_head(b, "orchlua_skipped_total", "Firings skipped (concurrency), by event.", "counter");
  for (i = 1; i <= n; i++) {
    invoker_figs f;
    const char *ls;
    size_t lsn;
    if (!event_at(L, i, &f, &ls, &lsn)) continue;
    add_line(b, "orchlua_skipped_total", 21, ls, lsn, NULL, num, fmt_count(num, f.skipped));
  }
  summary_family(b, L, n, "orchlua_invocation_duration_seconds",
                 "Invocation durations, description seconds.", 0);
  summary_family(b, L, n, "orchlua_lateness_seconds", "How late firings started, real seconds.", 1);
  tally_text(b, t, m, nm);
  lua_pushinteger(L, (lua_Integer)o.b->len);
  return 2;
}

void metrics_open(lua_State *L) {
  static const luaL_Reg m[] = {{"set_labels", l_tally_set_labels},
                               {"dropped", l_tally_dropped},
                               {NULL, NULL}};
  luaL_newmetatable(L, TALLY_MT);
  luaL_newlib(L, m);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_tally_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_tally_new);
  lua_setfield(L, -2, "tally");
  lua_pushcfunction(L, l_prom_text);
  lua_setfield(L, -2, "prom_text");
}
