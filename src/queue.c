/*
 * queue.c - the report queue: a FIFO of Lua values with a blocking get()
 * for tasks, and a thread-safe side door for C code on other threads.
 *
 * In-loop values live in the userdata's table Q_ITEMS between head and
 * tail.  Strings pushed from other threads wait in a mutex-guarded list
 * and are appended on the loop thread by an async callback, so every value
 * reaches get() in the order the loop saw it.
 */
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"

#include "core.h"
#include "jsonw.h"
#include "orch.h"

#define QUEUE_MT "orch.Queue"

typedef struct item {
  struct item *next;
  size_t len;
  char data[];
} item;

/* The part shared with other threads; freed when its last holder lets go. */
struct orch_queue {
  uv_mutex_t mu;
  int holders;
  int closed;
  item *head, *tail;
  size_t pending;
  uv_async_t *async; /* NULL once closed */
};

/* The queue userdata's user values: the values in the queue (between head
 * and tail), the kept event (lqueue.ev_task's), set_writer's writer and
 * fallback, the last record's ts, set_taps's taps (checks), set_tally's tally
 * (the live view). */
enum { Q_ITEMS = 1, Q_EV_LAST, Q_WRITER, Q_FALLBACK, Q_TS_LAST, Q_TAPS, Q_TALLY, Q_NUSER = Q_TALLY };

typedef struct lqueue {
  orch_queue *q;
  orch_core *core;
  lua_Integer head, tail; /* values at [head, tail) in Q_ITEMS */
  unsigned char *flags;   /* [i]: value i's F_ flags */
  size_t fcap;
  lua_Integer taken, taken_errors; /* values got, and error records among them */
  orch_list getters;
  int closed;
  int self_ref; /* held while the async handle is open */
  writer *const *wslot; /* the --report writer (set_writer), or NULL */
  tally *tally;         /* --listen's result tap (set_tally, metrics.c), or NULL */
  /* A chatty event reports from one invocation, many times a millisecond:
   * the event of the task that reported last (a string, in Q_EV_LAST) with
   * its JSON, and the last ts with its Lua string (in Q_TS_LAST), are
   * reused while they match. */
  uint64_t ev_task; /* that task's id; 0: none */
  char ev_json[64];
  size_t ev_len;    /* 0: its JSON is not made yet */
  char ts_last[32];
  /* the checks' series by metric name (set_taps), as C arrays: a report
   * matches its name by the interned string's pointer; Q_TAPS keeps the
   * names and the series alive */
  struct qtap *tapv;
  int ntaps;
  const char *metric_level; /* the interned "metric": the level that feeds them */
} lqueue;

typedef struct qtap {
  const char *name; /* a key of Q_TAPS */
  size_t len;
  series **s;       /* the list's series, in its order */
  int n;
  int has_where;    /* some filter: the slow path, through Q_TAPS */
} qtap;

void orch_queue_retain(orch_queue *q) {
  uv_mutex_lock(&q->mu);
  q->holders++;
  uv_mutex_unlock(&q->mu);
}

void orch_queue_release(orch_queue *q) {
  int last;
  uv_mutex_lock(&q->mu);
  last = --q->holders == 0;
  uv_mutex_unlock(&q->mu);
  if (last) {
    item *it = q->head;
    while (it != NULL) {
      item *next = it->next;
      free(it);
      it = next;
    }
    uv_mutex_destroy(&q->mu);
    free(q);
  }
}

int orch_queue_push(orch_queue *q, const char *s, size_t len) {
  item *it = malloc(sizeof *it + len + 1);
  if (it == NULL) return -1;
  it->next = NULL;
  it->len = len;
  memcpy(it->data, s, len);
  it->data[len] = '\0';
  uv_mutex_lock(&q->mu);
  if (q->closed) {
    uv_mutex_unlock(&q->mu);
    free(it);
    return -1;
  }
  if (q->tail != NULL)
    q->tail->next = it;
  else
    q->head = it;
  q->tail = it;
  q->pending++;
  uv_async_send(q->async);
  uv_mutex_unlock(&q->mu);
  return 0;
}

/* Upvalues of every queue function: the metatable, then the keys of a
 * result record, interned once (lua_setfield would look each one up in
 * the string table at every result). */
enum {
  UV_MT = 1, UV_EVENT, UV_LEVEL, UV_T, UV_TS, UV_DATA, UV_ID, UV_QUEUE, UV_ERROR, UV_INFO,
  UV_METRIC, UV_VALUE, UV_N = UV_VALUE
};

static void push_upvalues(lua_State *L, int mt) {
  static const char *const keys[] = {"event", "level", "t", "ts", "data", "id", "queue", "error", "info",
                                     "metric", "value"};
  size_t i;
  lua_pushvalue(L, mt);
  for (i = 0; i < sizeof keys / sizeof keys[0]; i++) lua_pushstring(L, keys[i]);
}

static lqueue *check_queue(lua_State *L, int i) {
  lqueue *lq = udata_with_mt(L, i, lua_upvalueindex(UV_MT));
  return lq != NULL ? lq : luaL_checkudata(L, i, QUEUE_MT); /* raises the usual error */
}

orch_queue *orch_queue_check(lua_State *L, int idx) {
  lqueue *lq = luaL_checkudata(L, idx, QUEUE_MT); /* from any C module */
  orch_queue_retain(lq->q);
  return lq->q;
}

/* What get() tells about a value besides the value itself: its report
 * line is already in the --report file; it is a result record of level
 * "error" made by report(). */
enum { F_WRITTEN = 1, F_ERROR = 2 };

/* A value with flags f leaves the queue: the run's counts. */
static void count_taken(lqueue *lq, int f) {
  lq->taken++;
  if (f & F_ERROR) lq->taken_errors++;
}

/* Pushes get()'s second and third values for flags f onto co. */
static void push_flags(lua_State *co, int f) {
  lua_pushboolean(co, f & F_WRITTEN);
  lua_pushboolean(co, f & F_ERROR);
}

/* Appends the value on top of L (popped) to the queue at index qi, or hands
 * it straight to the first waiting getter.  items: the index of the
 * queue's Q_ITEMS table when the caller has it on the stack, or 0. */
static void queue_append(lua_State *L, lqueue *lq, int qi, int items, int flags) {
  if (!list_empty(&lq->getters)) {
    task *t = list_entry(lq->getters.next, task, wait);
    list_remove(&t->wait);
    lua_xmove(L, t->co, 1);
    push_flags(t->co, flags);
    count_taken(lq, flags);
    t->nargs = 3;
    sched_ready(t);
    return;
  }
  if ((size_t)lq->tail >= lq->fcap) {
    size_t cap = lq->fcap ? lq->fcap * 2 : 1024;
    unsigned char *w;
    while (cap <= (size_t)lq->tail) cap *= 2;
    w = realloc(lq->flags, cap);
    if (w == NULL) luaL_error(L, "out of memory");
    lq->flags = w;
    lq->fcap = cap;
  }
  lq->flags[lq->tail] = (unsigned char)flags;
  if (items != 0) {
    lua_rawseti(L, items, lq->tail++);
    return;
  }
  lua_getiuservalue(L, qi, Q_ITEMS);                    /* [v items] */
  lua_insert(L, -2);                                    /* [items v] */
  lua_rawseti(L, -2, lq->tail++);                       /* [items] */
  lua_pop(L, 1);
}

/* Moves strings pushed by other threads into the Lua FIFO. */
static void queue_pull(lua_State *L, lqueue *lq, int qi) {
  item *it;
  orch_queue *q = lq->q;
  uv_mutex_lock(&q->mu);
  it = q->head;
  q->head = q->tail = NULL;
  q->pending = 0;
  uv_mutex_unlock(&q->mu);
  qi = lua_absindex(L, qi);
  while (it != NULL) {
    item *next = it->next;
    lua_pushlstring(L, it->data, it->len);
    free(it);
    queue_append(L, lq, qi, 0, 0);
    it = next;
  }
}

static void on_queue_async(uv_async_t *h) {
  lqueue *lq = h->data;
  lua_State *L;
  if (lq == NULL) return;
  L = lq->core->L;
  ref_push(L, lq->self_ref);                            /* [q] */
  queue_pull(L, lq, -1);
  lua_pop(L, 1);
}

/* core.queue() -> queue */
static int l_queue_new(lua_State *L) {
  orch_core *c = core_get(L);
  lqueue *lq = lua_newuserdatauv(L, sizeof *lq, Q_NUSER);
  memset(lq, 0, sizeof *lq);
  lq->core = c;
  lq->head = lq->tail = 1;
  list_init(&lq->getters);
  lq->self_ref = LUA_NOREF;
  luaL_setmetatable(L, QUEUE_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, Q_ITEMS);
  lq->q = calloc(1, sizeof *lq->q);
  if (lq->q == NULL) return luaL_error(L, "out of memory");
  UV_CHECK(uv_mutex_init(&lq->q->mu));
  lq->q->holders = 1;
  lq->q->async = handle_new(c, sizeof *lq->q->async);
  UV_CHECK(uv_async_init(&c->loop, lq->q->async, on_queue_async));
  lq->q->async->data = lq;
  /* the queue must not keep the loop alive on its own */
  uv_unref((uv_handle_t *)lq->q->async);
  lua_pushvalue(L, -1);
  lq->self_ref = ref_new(L);
  return 1;
}

/* queue:put(value): any Lua value but nil.  A task that puts while the
 * queue holds QUEUE_HIGH values yields once, so that the reporter drains
 * them: an event reporting a million results in a loop then costs memory
 * for a few dozen, not a million.  (Not when put cannot yield, e.g.
 * called through a C function.)  A few dozen, not thousands: records
 * that wait less are still in cache when on_result reads them and die
 * young; fewer than QUEUE_HIGH yield too often (bench/HISTORY.md, w3). */
#define QUEUE_HIGH 64

static int put_done(lua_State *L, lqueue *lq) {
  task *t;
  if (lq->tail - lq->head >= QUEUE_HIGH && (t = sched_current(L)) != NULL &&
      lua_isyieldable(L)) {
    sched_ready(t);
    return lua_yield(L, 0);
  }
  return 0;
}

static int l_queue_put(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  luaL_checkany(L, 2);
  luaL_argcheck(L, !lua_isnil(L, 2), 2, "a value other than nil expected");
  if (lq->closed) return luaL_error(L, "report_queue is closed (the run has ended)");
  lua_settop(L, 2);
  queue_append(L, lq, 1, 0, 0);
  return put_done(L, lq);
}

/* A result's level: add_result knows it is "info" or "error"; report()
 * gets any string. */
enum { LV_OTHER, LV_INFO, LV_ERROR };

/* Pushes the running task's event: its tag's id (or its tag, when that is
 * not a table).  A task's tag and the tag's id are set when the task is
 * made and never changed (Run:fire in engine.lua, the invokers' tags), and
 * task ids are never reused: while the same task reports, its event is
 * the one kept in Q_EV_LAST, without the registry and the tag. */
static void push_event(lua_State *L, lqueue *lq) {
  task *t = lq->core->running;
  if (t == NULL) {
    /* a process's line callback acting for its invocation (or nothing) */
    if (!sched_push_context(L)) {
      lua_pushnil(L);
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      lua_pushvalue(L, lua_upvalueindex(UV_ID));
      lua_rawget(L, -2);
      lua_remove(L, -2);
    }
    return;
  }
  if (t->id == lq->ev_task) {
    lua_getiuservalue(L, 1, Q_EV_LAST);
    return;
  }
  ref_push(L, t->tag_ref);
  if (lua_type(L, -1) == LUA_TTABLE) {
    lua_pushvalue(L, lua_upvalueindex(UV_ID));
    lua_rawget(L, -2);
    lua_remove(L, -2);
  }
  /* strings only: a table's JSON would change with its contents */
  if (lua_type(L, -1) == LUA_TSTRING) {
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, Q_EV_LAST);
    lq->ev_task = t->id;
    lq->ev_len = 0;
  }
}

/* Appends the JSON of the event at ev (pushed by push_event): the kept
 * one's, made once. */
static int put_event(lua_State *L, lqueue *lq, jbuf *b, int ev) {
  size_t start = b->len;
  int kept = lq->core->running != NULL && lq->core->running->id == lq->ev_task;
  if (kept && lq->ev_len > 0) return jsonw_raw(b, lq->ev_json, lq->ev_len);
  if (jsonw_encode(b, L, ev) != 0) return -1;
  if (kept && b->len - start <= sizeof lq->ev_json) {
    memcpy(lq->ev_json, b->data + start, b->len - start);
    lq->ev_len = b->len - start;
  }
  return 0;
}

/* Writes the report line of the result record (level at li, data at di,
 * event at ev or 0) to the --report file; 0 when the encoder refused the
 * data (a function, a cycle: the engine writes it with placeholders). */
static int write_result(lua_State *L, lqueue *lq, int li, int di, int ev, int level, double t,
                        const char *ts) {
  jbuf *b = &lq->core->line;
  int r = 0;
  b->len = 0;
  r |= jsonw_raw(b, lq->core->line_head, WRITER_HEAD); /* room for the seq */
  r |= JSONW_LIT(b, "{\"type\":\"result\"");
  if (ev != 0) {
    r |= JSONW_LIT(b, ",\"event\":");
    r |= put_event(L, lq, b, ev);
  }
  if (level == LV_INFO) {
    r |= JSONW_LIT(b, ",\"level\":\"info\"");
  } else if (level == LV_ERROR) {
    r |= JSONW_LIT(b, ",\"level\":\"error\"");
  } else {
    size_t n;
    const char *s = lua_tolstring(L, li, &n);
    r |= JSONW_LIT(b, ",\"level\":");
    r |= jsonw_string(b, s, n);
  }
  r |= JSONW_LIT(b, ",\"t\":");
  r |= jsonw_number(b, t);
  r |= JSONW_LIT(b, ",\"ts\":\"");
  r |= jsonw_raw(b, ts, TS_LEN);
  r |= JSONW_LIT(b, "\"");
  if (!lua_isnil(L, di)) {
    r |= JSONW_LIT(b, ",\"data\":");
    r |= jsonw_encode(b, L, di);
  }
  r |= JSONW_LIT(b, "}\n");
  if (r == 0) writer_line_at(*lq->wslot, b->data, b->len);
  if (b->cap > (1u << 20)) jbuf_free(b); /* do not keep a huge one */
  return r == 0;
}

/* Pushes ts as a Lua string: the last one, while the millisecond is the
 * same (interning it anew would hash and look it up per result). */
static void push_ts(lua_State *L, lqueue *lq, const char *ts) {
  if (memcmp(ts, lq->ts_last, TS_LEN) == 0) {
    lua_getiuservalue(L, 1, Q_TS_LAST);
    return;
  }
  lua_pushlstring(L, ts, TS_LEN);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, 1, Q_TS_LAST);
  memcpy(lq->ts_last, ts, TS_LEN);
}

/* A metric report (level "metric", data {metric, value, fields}) feeds
 * the series that checks keep on its name (set_taps), those whose `where`
 * its fields match. */
static void tap_metric(lua_State *L, lqueue *lq, int li, int di, double t) {
  const char *name;
  size_t len;
  qtap *tp = NULL;
  int i;
  double v;
  if (lua_type(L, li) != LUA_TSTRING || lua_tostring(L, li) != lq->metric_level || lua_type(L, di) != LUA_TTABLE)
    return;
  lua_pushvalue(L, lua_upvalueindex(UV_METRIC));
  if (lua_rawget(L, di) != LUA_TSTRING) {
    lua_pop(L, 1);
    return;
  }
  name = lua_tolstring(L, -1, &len);
  for (i = 0; i < lq->ntaps; i++) {
    qtap *c = &lq->tapv[i];
    /* short strings are interned: the same name is the same pointer */
    if (c->len == len && (c->name == name || memcmp(c->name, name, len) == 0)) {
      tp = c;
      break;
    }
  }
  lua_pop(L, 1);
  if (tp == NULL) return;
  lua_pushvalue(L, lua_upvalueindex(UV_VALUE));
  if (lua_rawget(L, di) != LUA_TNUMBER) { /* a value put by hand may be anything */
    lua_pop(L, 1);
    return;
  }
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!tp->has_where) {
    for (i = 0; i < tp->n; i++) series_value(tp->s[i], t, v);
    return;
  }
  lua_getiuservalue(L, 1, Q_TAPS);                      /* [taps] */
  lua_pushlstring(L, tp->name, tp->len);
  lua_rawget(L, -2);                                    /* [taps list] */
  for (i = 0; i < tp->n; i++) {
    series *s = tp->s[i];
    if (s->has_where) {
      lua_rawgeti(L, -1, i + 1);                        /* [taps list s] */
      if (series_where_matches(L, -1, di)) series_value(s, t, v);
      lua_pop(L, 1);
    } else {
      series_value(s, t, v);
    }
  }
  lua_pop(L, 2);
}

/* queue:tap(level, data, t): what report() gives the checks' series for
 * a result at description time t, without queueing it (a resumed run's
 * records, replayed into its checks). */
static int l_queue_tap(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  double t = luaL_checknumber(L, 4);
  if (lq->ntaps > 0) tap_metric(L, lq, 2, 3, t);
  return 0;
}

static void taps_free(lqueue *lq) {
  int i;
  for (i = 0; i < lq->ntaps; i++) free(lq->tapv[i].s);
  free(lq->tapv);
  lq->tapv = NULL;
  lq->ntaps = 0;
}

/* queue:set_taps(taps): a table metric name -> array of orch.Series
 * (core.series), fed by every metric report from now on. */
static int l_queue_set_taps(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  int n = 0, k = 0;
  qtap *v;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  /* checked once here: tap_metric trusts what it finds */
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {                         /* [q taps name list] */
    lua_Integer i, m;
    luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING && lua_istable(L, -1), 2,
                  "metric name -> array of orch.Series expected");
    m = (lua_Integer)lua_rawlen(L, -1);
    for (i = 1; i <= m; i++) {
      lua_rawgeti(L, -1, i);
      luaL_argcheck(L, series_test(L, -1) != NULL, 2, "metric name -> array of orch.Series expected");
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    n++;
  }
  v = calloc((size_t)(n ? n : 1), sizeof *v);
  if (v == NULL) return luaL_error(L, "out of memory");
  lua_pushnil(L);
  while (k < n && lua_next(L, 2) != 0) {                /* [q taps name list] */
    qtap *tp = &v[k++];
    lua_Integer i;
    tp->name = lua_tolstring(L, -2, &tp->len);
    tp->n = (int)lua_rawlen(L, -1);
    tp->s = malloc((size_t)(tp->n ? tp->n : 1) * sizeof *tp->s);
    if (tp->s == NULL) {
      for (i = 0; i < k - 1; i++) free(v[i].s);
      free(v);
      return luaL_error(L, "out of memory");
    }
    for (i = 1; i <= tp->n; i++) {
      lua_rawgeti(L, -1, i);
      tp->s[i - 1] = lua_touserdata(L, -1);
      tp->has_where |= tp->s[i - 1]->has_where;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  taps_free(lq);
  lua_setiuservalue(L, 1, Q_TAPS);
  lq->tapv = v;
  lq->ntaps = n;
  lua_pushvalue(L, lua_upvalueindex(UV_METRIC));
  lq->metric_level = lua_tostring(L, -1); /* interned: lives as long as the upvalue */
  return 0;
}

/* queue:report(level, data): queues the result record {event, level, t,
 * ts, data} that ResultReporter puts, built here because reporting is the
 * hot path of a chatty event.  event: the running invocation's id.
 * Stack: [q level data] or [q data level] (li, di: 2 and 3 either way). */
enum { R_EVENT = 4, R_ITEMS, R_REC };

static int report(lua_State *L, lqueue *lq, int level, int li, int di) {
  orch_core *c = lq->core;
  char ts[32];
  double t;
  int written, has_writer = lq->wslot != NULL && *lq->wslot != NULL;
  if (lq->closed) return luaL_error(L, "report_queue is closed (the run has ended)");
  t = clock_stamp(c, ts);
  if (lq->ntaps > 0 && level == LV_OTHER) tap_metric(L, lq, li, di, t);
  push_event(L, lq);                                    /* [q l d event] */
  written = has_writer && write_result(L, lq, li, di, lua_isnil(L, R_EVENT) ? 0 : R_EVENT,
                                       level, t, ts);
  lua_getiuservalue(L, 1, Q_ITEMS);
  lua_createtable(L, 0, 5);                             /* [q l d event items rec] */
  lua_pushvalue(L, lua_upvalueindex(UV_EVENT));
  lua_pushvalue(L, R_EVENT);
  lua_rawset(L, R_REC);
  lua_pushvalue(L, lua_upvalueindex(UV_LEVEL));
  lua_pushvalue(L, li);
  lua_rawset(L, R_REC);
  lua_pushvalue(L, lua_upvalueindex(UV_T));
  lua_pushnumber(L, t);
  lua_rawset(L, R_REC);
  lua_pushvalue(L, lua_upvalueindex(UV_TS));
  push_ts(L, lq, ts);
  lua_rawset(L, R_REC);
  lua_pushvalue(L, lua_upvalueindex(UV_DATA));
  lua_pushvalue(L, di);
  lua_rawset(L, R_REC);
  if (!written && has_writer) {
    /* the encoder refused the data: the engine's writer (placeholders for
     * what JSON cannot say) writes it now, so lines keep the report order */
    lua_getiuservalue(L, 1, Q_FALLBACK);
    if (lua_isfunction(L, -1)) {
      lua_pushvalue(L, R_REC);
      written = lua_pcall(L, 1, 0, 0) == LUA_OK;
    }
    lua_settop(L, R_REC);
  }
  if (level == LV_OTHER && lua_rawequal(L, li, lua_upvalueindex(UV_ERROR))) level = LV_ERROR;
  if (lq->tally != NULL) {
    lua_getiuservalue(L, 1, Q_TALLY);                   /* [... rec tally] */
    tally_result(lq->tally, L, lua_gettop(L), R_EVENT, li, di);
    lua_pop(L, 1);
  }
  queue_append(L, lq, 1, R_ITEMS, (written ? F_WRITTEN : 0) | (level == LV_ERROR ? F_ERROR : 0));
  return put_done(L, lq);
}

static int l_queue_report(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  luaL_checkstring(L, 2);
  lua_settop(L, 3);
  return report(L, lq, LV_OTHER, 2, 3);
}

static int k_return_all(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L);
}

/* ResultReporter:add_result(value) for a reporter over the host's queue:
 * the method lookup, the Lua call and its own lookups (type, rawget,
 * q.report) were a tenth of a result's cost.  Any other queue goes to the
 * Lua method (upvalue UV_FALLBACK_FN).  The last queue seen is kept as
 * upvalue UV_LAST_QUEUE (and so stays alive): the same value again needs
 * no metatable check. */
enum { UV_FALLBACK_FN = UV_N + 1, UV_LAST_QUEUE, UV_ADD_N = UV_LAST_QUEUE };

static int l_add_result(lua_State *L) {
  lqueue *lq = NULL;
  int level = LV_INFO;
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_pushvalue(L, lua_upvalueindex(UV_QUEUE));
    lua_rawget(L, 1);                                   /* [self ... q] */
    if (lua_rawequal(L, -1, lua_upvalueindex(UV_LAST_QUEUE))) {
      lq = lua_touserdata(L, -1);
    } else if ((lq = udata_with_mt(L, -1, lua_upvalueindex(UV_MT))) != NULL) {
      lua_pushvalue(L, -1);
      lua_replace(L, lua_upvalueindex(UV_LAST_QUEUE));
    } else {
      lua_pop(L, 1);
    }
  }
  if (lq == NULL) {
    lua_pushvalue(L, lua_upvalueindex(UV_FALLBACK_FN));
    lua_insert(L, 1);
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, k_return_all);
    return lua_gettop(L);
  }
  lua_replace(L, 1);                                    /* [q value ...] */
  lua_settop(L, 2);                                     /* [q value] */
  /* a table with an `error` field is an error result */
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushvalue(L, lua_upvalueindex(UV_ERROR));
    if (lua_rawget(L, 2) != LUA_TNIL) level = LV_ERROR;
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(level == LV_ERROR ? UV_ERROR : UV_INFO));
  return report(L, lq, level, 3, 2);                    /* [q value level] */
}

/* core.queue_add_result(fallback) -> the add_result method (above). */
int queue_make_add_result(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_getmetatable(L, QUEUE_MT);
  push_upvalues(L, -1);                                 /* [fb mt uv...] */
  lua_pushvalue(L, 1);
  lua_pushboolean(L, 0);                                /* no queue seen yet */
  lua_pushcclosure(L, l_add_result, UV_ADD_N);
  return 1;
}

/* Pushes the first value (the queue is not empty) and returns its flags.
 * items: the index of the queue's Q_ITEMS table, or 0. */
static int take_value(lua_State *L, lqueue *lq, int items) {
  int f = lq->flags[lq->head], own = items == 0;
  if (own) {
    lua_getiuservalue(L, 1, Q_ITEMS);                   /* [items] */
    items = lua_gettop(L);
  }
  lua_rawgeti(L, items, lq->head);                      /* [(items) v] */
  lua_pushnil(L);
  lua_rawseti(L, items, lq->head);
  if (own) lua_remove(L, -2);                           /* [v] */
  count_taken(lq, f);
  lq->head++;
  if (lq->head == lq->tail) lq->head = lq->tail = 1;
  return f;
}

/* Pushes the first value and its flags (get's three values); returns 0
 * (nothing pushed) when empty. */
static int queue_take(lua_State *L, lqueue *lq) {
  if (lq->head >= lq->tail) return 0;
  push_flags(L, take_value(L, lq, 0));                     /* [v written error] */
  return 3;
}

/* queue:get() -> value, written, error, waiting (yielding) while empty;
 * nil once the queue is closed and empty.  written: the value is a result
 * record whose line the --report file already has; error: a result record
 * of level "error" (from report). */
static int l_queue_get(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  task *t;
  if (lq->q->pending) queue_pull(L, lq, 1);
  if (queue_take(L, lq)) return 3;
  if (lq->closed) return 0;
  t = sched_need_task(L, "report_queue:get");
  list_push(&lq->getters, &t->wait);
  return sched_wait(L, t);
}

/* queue:get_nowait() -> value, written, error | nil */
static int l_queue_get_nowait(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  if (lq->q->pending) queue_pull(L, lq, 1);
  return queue_take(L, lq);
}

/* queue:deliver(on_result, self, on_error): hands each queued record that
 * needs nothing from the engine (its line written, not an error) to
 * on_result(self, record) under a protected call, on_error(err, record)
 * when it raises; returns when the queue is empty or its first value needs
 * the engine (get takes that one).  The reporter's loop is in C because
 * it runs once per result (bench w3).  on_result may
 * yield: the loop goes on in deliver_k, which is also where an error of
 * on_result arrives inside a coroutine (lua_pcallk returns it directly
 * only where it cannot yield). */
static int deliver_loop(lua_State *L);

/* deliver's stack: [q fn self onerr items record]; items: the queue's
 * Q_ITEMS table. */
enum { D_ONERR = 4, D_ITEMS, D_REC };

static int deliver_k(lua_State *L, int status, lua_KContext ctx) {
  /* [q fn self onerr items record (err)] */
  if (ctx == 1 && status != LUA_OK && status != LUA_YIELD && lua_isfunction(L, D_ONERR)) {
    lua_pushvalue(L, D_ONERR);
    lua_insert(L, -2);                                  /* [... record onerr err] */
    lua_pushvalue(L, D_REC);                            /* [... record onerr err record] */
    lua_callk(L, 2, 0, 2, deliver_k);
  }
  lua_settop(L, D_ITEMS);
  return deliver_loop(L);
}

static int deliver_loop(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  for (;;) {
    int f;
    if (lq->q->pending) queue_pull(L, lq, 1);
    if (lq->head >= lq->tail) return 0;
    f = lq->flags[lq->head];
    if (!(f & F_WRITTEN) || (f & F_ERROR)) return 0;
    take_value(L, lq, D_ITEMS);                         /* [q fn self onerr items r] */
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, D_REC);                            /* [... r fn self r] */
    if (lua_pcallk(L, 2, 0, 0, 1, deliver_k) != LUA_OK && lua_isfunction(L, D_ONERR)) {
      lua_pushvalue(L, D_ONERR);
      lua_insert(L, -2);
      lua_pushvalue(L, D_REC);                          /* [... r onerr err r] */
      lua_callk(L, 2, 0, 2, deliver_k);
    }
    lua_settop(L, D_ITEMS);
  }
}

static int l_queue_deliver(lua_State *L) {
  check_queue(L, 1);
  luaL_checkany(L, 2);
  lua_settop(L, D_ONERR);
  lua_getiuservalue(L, 1, Q_ITEMS);
  return deliver_loop(L);
}

/* queue:set_writer(writer, fallback): report() writes each result's line
 * there itself, or through fallback(record) when the encoder refuses its
 * data. */
static int l_queue_set_writer(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  lq->wslot = writer_slot(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  lua_settop(L, 3);
  lua_setiuservalue(L, 1, Q_FALLBACK);
  lua_setiuservalue(L, 1, Q_WRITER); /* kept alive while the queue is */
  return 0;
}

/* queue:set_tally(tally): report() hands it every result record from
 * now on (the live view's counts and metric values, metrics.c). */
static int l_queue_set_tally(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  lq->tally = tally_check(L, 2);
  lua_settop(L, 2);
  lua_setiuservalue(L, 1, Q_TALLY); /* kept alive while the queue is */
  return 0;
}

/* queue:counts() -> values taken by get and get_nowait, and the error
 * records among them: the run's result counts, kept here because the
 * reporter loop would otherwise call into Lua for every result to count. */
static int l_queue_counts(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  lua_pushinteger(L, lq->taken);
  lua_pushinteger(L, lq->taken_errors);
  return 2;
}

static int l_queue_size(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  lua_pushinteger(L, (lq->tail - lq->head) + (lua_Integer)lq->q->pending);
  return 1;
}

/* queue:close(): no more puts; waiting getters get nil once it is empty.
 * Values already queued stay readable.  A second close is harmless. */
static int l_queue_close(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  orch_queue *q = lq->q;
  uv_async_t *async;
  if (lq->closed) return 0;
  queue_pull(L, lq, 1);
  uv_mutex_lock(&q->mu);
  q->closed = 1;
  async = q->async;
  q->async = NULL;
  uv_mutex_unlock(&q->mu);
  async->data = NULL;
  handle_close((uv_handle_t *)async);
  lq->closed = 1;
  while (!list_empty(&lq->getters)) {
    task *t = list_entry(lq->getters.next, task, wait);
    list_remove(&t->wait);
    lua_pushnil(t->co);
    t->nargs = 1;
    sched_ready(t);
  }
  ref_free(L, &lq->self_ref);
  return 0;
}

/* queue:handle() -> lightuserdata of the orch_queue, for C modules that
 * take it with orch_queue_check instead. */
static int l_queue_handle(lua_State *L) {
  lua_pushlightuserdata(L, check_queue(L, 1)->q);
  return 1;
}

static int l_queue_gc(lua_State *L) {
  lqueue *lq = check_queue(L, 1);
  free(lq->flags);
  lq->flags = NULL;
  lq->fcap = 0;
  taps_free(lq);
  if (lq->q != NULL) {
    if (!lq->closed) l_queue_close(L);
    orch_queue_release(lq->q);
    lq->q = NULL;
  }
  return 0;
}

/* Registers orch.Queue; leaves the constructor on the stack. */
int queue_open(lua_State *L) {
  static const luaL_Reg m[] = {{"put", l_queue_put},
                               {"report", l_queue_report},
                               {"get", l_queue_get},
                               {"get_nowait", l_queue_get_nowait},
                               {"deliver", l_queue_deliver},
                               {"size", l_queue_size},
                               {"counts", l_queue_counts},
                               {"close", l_queue_close},
                               {"handle", l_queue_handle},
                               {"set_writer", l_queue_set_writer},
                               {"set_taps", l_queue_set_taps},
                               {"tap", l_queue_tap},
                               {"set_tally", l_queue_set_tally},
                               {NULL, NULL}};
  luaL_newmetatable(L, QUEUE_MT);                       /* [mt] */
  luaL_newlibtable(L, m);                               /* [mt methods] */
  push_upvalues(L, -2);
  luaL_setfuncs(L, m, UV_N);
  lua_setfield(L, -2, "__index");                       /* [mt] */
  push_upvalues(L, -1);
  lua_pushcclosure(L, l_queue_gc, UV_N);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_queue_new);
  return 1;
}
