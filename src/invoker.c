/*
 * invoker.c - one event's firings: its counts and statistics, and the fast
 * path that runs a firing without any Lua of the engine's.
 *
 * The engine (lua/orch/engine.lua) decides what an invocation receives and
 * what its end means; most of that is needed only once.  After an
 * invocation whose arguments were all params, run-scope fixtures already
 * set up or built-ins, the engine hands the invoker those arguments
 * (invoker:set_args), and from then on a ticker firing is, here: a task
 * with the event function and the same arguments, and at its end, when it
 * returned normally, the counts, two statistics and the report line.
 * Anything else goes back to the engine: a firing while another runs under
 * forbid or replace (slow), an invocation that failed, timed out or was
 * cancelled (done).  That keeps a firing at a few microseconds instead of
 * tens (bench w1b, w1c).
 *
 * The per-event table the engine and the outputs read (runs, failures,
 * skipped, timeouts, duration, lateness, and any other field) is this
 * userdata: counters are read and written as fields.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"

#include "core.h"
#include "jsonw.h"

#define INVOKER_MT "orch.Invoker"

enum { ALLOW, FORBID, REPLACE };

/* What every invoker of a run shares (core.invokers): the engine's
 * callbacks and the report writer, held once for the run rather than once
 * per event. */
typedef struct family {
  int fire_ref;      /* engine: fire(tag, k, late_ns) */
  int done_ref;      /* engine: done(tag, status, err, k, late_ns, started, phase) */
  int progress_ref;  /* engine: progress(), after each fast end once notify is set */
  int event_mt_ref;  /* the `event` table's metatable (event:ready()), or none */
  int writer_ref;
  writer *const *wslot; /* the report writer (NULL once closed), or NULL */
  lua_Integer open;  /* its invokers not closed: the refs go with the last */
} family;

#define FAMILY_MT "orch.InvokerFamily"

struct invoker {
  orch_core *core;
  int self_ref;      /* held until close(): tasks point here */
  int fn_ref;        /* the event function */
  lua_Integer args_at; /* its slots in the core's args_store start after
                        * this one; 0: none (the slow path) */
  int fn_at;         /* the function's slot, after the arguments */
  int nargs;
  int nevent;        /* positions (0-based) that get the `event` table */
  int event_at[8];
  int tag_ref;       /* what core.current() returns inside the event */
  struct family *fam; /* uservalue 4: what every invoker of the run shares */
  char *mid;         /* ,"event":...,"id":...,"iteration": */
  size_t midlen;
  double interval;
  double timeout_sec; /* description seconds, 0: none */
  int concurrency, notify, closed;
  int nrunning;      /* fast tasks alive */
  orch_list running;
  lua_Integer runs, failures, skipped, timeouts, lua_running;
  stats *duration, *lateness; /* uservalues 1 and 2; 3: the tag, which holds the
                               * other fields; 4: the family */
  series *taps;      /* the checks' series fed at each fast end (tap()); NULL: none */
};

typedef struct ftask {
  task t; /* first: a task * is an ftask * */
  invoker *inv;
  struct ftask *next_spare; /* on core->inv.spare */
  orch_list node; /* inv->running */
  int startup;
  lua_Integer k;
  uint64_t late_ns;
  double started;
} ftask;

static invoker *check_invoker(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, INVOKER_MT);
}

invoker *invoker_test(lua_State *L, int idx) {
  return luaL_testudata(L, idx, INVOKER_MT);
}

/* Firing tasks come from a small pool, last freed first: one firing
 * ends before the next begins, so the same block, still in cache, serves
 * them all, and malloc (which locks once libuv's threads exist) is not
 * called twice per firing. */
#define FTASK_POOL_MAX 256

static ftask *ftask_new(orch_core *c) {
  ftask *ft = c->inv.spare;
  if (ft == NULL) return calloc(1, sizeof *ft);
  c->inv.spare = ft->next_spare;
  c->inv.nspare--;
  memset(ft, 0, sizeof *ft);
  return ft;
}

static void ftask_free(orch_core *c, ftask *ft) {
  if (c->closed || c->inv.nspare >= FTASK_POOL_MAX) {
    free(ft);
    return;
  }
  ft->next_spare = c->inv.spare;
  c->inv.spare = ft;
  c->inv.nspare++;
}

lua_Integer invoker_fast_lines(orch_core *c) { return c->inv.fast_lines; }

void invoker_pool_free(orch_core *c) {
  while (c->inv.spare != NULL) {
    ftask *ft = c->inv.spare;
    c->inv.spare = ft->next_spare;
    free(ft);
  }
  c->inv.nspare = 0;
}

static void slow_fire(invoker *inv, lua_Integer k, uint64_t late_ns) {
  lua_State *L = inv->core->L;
  ref_push(L, inv->fam->fire_ref);
  ref_push(L, inv->tag_ref);
  lua_pushinteger(L, k);
  lua_pushinteger(L, (lua_Integer)late_ns);
  sched_call(L, 3, 0);
}

static void ftask_finish(task *t, const char *status);

/* The report writer's slot; NULL without a report or once closed. */
static writer *const *wslot_of(const invoker *inv) {
  return inv->closed ? NULL : inv->fam->wslot;
}

static int ok_to_write(invoker *inv) {
  writer *const *ws = wslot_of(inv);
  return ws == NULL || *ws != NULL;
}

static int can_fire(invoker *inv) {
  return !inv->closed && inv->args_at != 0 && ok_to_write(inv) &&
         (inv->concurrency == ALLOW || (inv->nrunning == 0 && inv->lua_running == 0));
}

/* The core's args_store begins with the `event` table's keys (slots
 * EV_NAME..EV_INTERVAL, as Lua strings: lua_setfield would look each up
 * in the string cache at every firing).  Then each invoker's slots
 * (args_at + 1, ...): its nargs arguments; for an event that takes
 * `event`, its name and id; then its function, at fn_at.  One table for
 * every invoker, the keys shared, so that a firing touches few cold cache
 * lines (bench w1c; bench/HISTORY.md). */
enum { EV_NAME = 1, EV_ID, EV_ITERATION, EV_PHASE, EV_SCHEDULED, EV_STARTUP, EV_INTERVAL,
       EV_KEYS = EV_INTERVAL, EV_MT /* the table's metatable (event:ready()), beside the keys */ };
enum { EV_NAME_V = 1, EV_ID_V, EV_VALUES = EV_ID_V }; /* after the arguments */

/* The `event` built-in, as engine.lua's Run:value makes it; store is the
 * args_store's index on co. */
static void push_event(lua_State *co, int store, invoker *inv, ftask *ft) {
  double scheduled = (double)ft->k * inv->interval;
  lua_Integer n = inv->args_at + inv->nargs;
  store = lua_absindex(co, store);
  lua_createtable(co, 0, 5);
  lua_rawgeti(co, store, EV_NAME);
  lua_rawgeti(co, store, n + EV_NAME_V);
  lua_rawset(co, -3);
  lua_rawgeti(co, store, EV_ID);
  lua_rawgeti(co, store, n + EV_ID_V);
  lua_rawset(co, -3);
  lua_rawgeti(co, store, EV_ITERATION);
  lua_pushinteger(co, ft->k);
  lua_rawset(co, -3);
  lua_rawgeti(co, store, EV_PHASE);
  lua_rawgeti(co, store, ft->startup ? EV_STARTUP : EV_INTERVAL);
  lua_rawset(co, -3);
  lua_rawgeti(co, store, EV_SCHEDULED);
  if (scheduled == (double)(lua_Integer)scheduled) lua_pushinteger(co, (lua_Integer)scheduled);
  else lua_pushnumber(co, scheduled);
  lua_rawset(co, -3);
  if (inv->fam->event_mt_ref != LUA_NOREF) {
    lua_rawgeti(co, store, EV_MT); /* the store's head, in cache: not a registry slot per invoker */
    lua_setmetatable(co, -2);
  }
}

/* Takes a coroutine and puts the body and its arguments on it (inline:
 * an interval firing binds at once, on the hot path). */
static inline __attribute__((always_inline)) void ftask_bind(task *t) {
  ftask *ft = (ftask *)t;
  invoker *inv = ft->inv;
  orch_core *c = inv->core;
  lua_State *co;
  int i, e = 0;
  co = sched_thread(c->L, &t->co_ref);
  t->co = co;
  lua_checkstack(co, inv->nargs + 5); /* fn, the store, the event table, a key and a value */
  lua_rawgeti(co, LUA_REGISTRYINDEX, c->inv.args_store);
  lua_rawgeti(co, -1, inv->args_at + inv->fn_at);
  lua_insert(co, -2);                                    /* [fn store] */
  for (i = 0; i < inv->nargs; i++) {
    if (e < inv->nevent && inv->event_at[e] == i) {
      push_event(co, -i - 1, inv, ft);
      e++;
    } else {
      lua_rawgeti(co, -i - 1, inv->args_at + i + 1);
    }
  }
  lua_remove(co, -inv->nargs - 1);
  t->nargs = inv->nargs;
}

/* now: the clock read that found the firing due; the body starts from it.
 * from_loop: called from the loop's own callback (a ticker's slot, the
 * idle pass), not from the engine's Lua, so the task may start right here;
 * else it waits, and takes its coroutine only when it starts (sched.c's
 * bind): 10,000 startup firings then share a few. */
static void fast_fire(invoker *inv, lua_Integer k, uint64_t now, uint64_t late_ns, int startup,
                      int from_loop) {
  orch_core *c = inv->core;
  ftask *ft;
  task *t;
  ft = ftask_new(c);
  if (ft == NULL) {
    slow_fire(inv, k, late_ns);
    return;
  }
  ft->startup = startup;
  t = &ft->t;
  t->core = c;
  t->id = ++c->next_task_id;
  list_init(&t->ready);
  list_init(&t->wait);
  t->self_ref = t->done_ref = t->co_ref = LUA_NOREF;
  t->tag_ref = inv->tag_ref; /* shared: never freed by the task */
  t->on_finish = ftask_finish;
  ft->inv = inv;
  ft->k = k;
  if (from_loop) ftask_bind(t); else t->bind = ftask_bind;
  t->started_ns = now;
  ft->late_ns = late_ns;
  ft->started = (double)(t->started_ns - c->clock.t0_ns) / 1e9 * c->clock.scale;
  stats_prefetch(inv->duration, (uint64_t)inv->runs);
  stats_prefetch(inv->lateness, (uint64_t)inv->runs);
  list_push(&inv->running, &ft->node);
  inv->nrunning++;
  c->inv.running++;
  c->live.tasks++;
  if (inv->timeout_sec > 0) sched_set_timeout(t, sched_bound_ms(c, inv->timeout_sec));
  /* a firing from the loop runs at once; the others (the startup
   * firings, a flush at the end), started from the engine's Lua, wait for
   * the idle pass */
  if (from_loop) sched_start(t); else sched_ready(t);
}

void invoker_fire(invoker *inv, lua_Integer k, uint64_t now, uint64_t late_ns, int from_loop) {
  if (can_fire(inv)) fast_fire(inv, k, now, late_ns, 0, from_loop);
  else slow_fire(inv, k, late_ns);
}

/* Back to the slow path: the invoker's slots let go (never reused: an
 * invoker hands its arguments over once or twice a run). */
static void args_drop(lua_State *L, invoker *inv) {
  orch_core *c = inv->core;
  int i;
  if (inv->args_at == 0) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->inv.args_store);
  for (i = 1; i <= inv->fn_at; i++) {
    lua_pushnil(L);
    lua_rawseti(L, -2, inv->args_at + i);
  }
  lua_pop(L, 1);
  inv->args_at = 0;
}

/* The invocation line, as engine.lua's Run:done writes it. */
static void write_record(invoker *inv, ftask *ft, double t, double duration) {
  orch_core *c = inv->core;
  jbuf *b = &c->line;
  char ts[32];
  double scheduled = (double)ft->k * inv->interval;
  int r = 0;
  clock_stamp_at(c, t, ts);
  b->len = 0;
  r |= jsonw_raw(b, c->line_head, WRITER_HEAD); /* room for the seq */
  r |= JSONW_LIT(b, "{\"type\":\"invocation\",\"t\":");
  r |= jsonw_number(b, t);
  r |= JSONW_LIT(b, ",\"ts\":\"");
  r |= jsonw_raw(b, ts, TS_LEN);
  r |= JSONW_LIT(b, "\"");
  r |= jsonw_raw(b, inv->mid, inv->midlen);
  r |= jsonw_integer(b, ft->k);
  if (ft->startup) r |= JSONW_LIT(b, ",\"phase\":\"startup\",\"scheduled\":");
  else r |= JSONW_LIT(b, ",\"phase\":\"interval\",\"scheduled\":");
  r |= jsonw_number(b, scheduled);
  r |= JSONW_LIT(b, ",\"started\":");
  r |= jsonw_number(b, ft->started);
  r |= JSONW_LIT(b, ",\"duration\":");
  r |= jsonw_number(b, duration);
  /* under --time-scale, the wall clock's duration too (DESIGN: every
   * duration says its clock) */
  if (c->clock.scale != 1) {
    r |= JSONW_LIT(b, ",\"duration_real\":");
    r |= jsonw_number(b, duration / c->clock.scale);
  }
  r |= JSONW_LIT(b, ",\"lateness\":");
  r |= jsonw_number(b, (double)ft->late_ns / 1e9 * c->clock.scale);
  r |= JSONW_LIT(b, ",\"status\":\"ok\"}\n");
  if (r == 0) {
    writer_line_at(*wslot_of(inv), b->data, b->len);
    c->inv.fast_lines++;
  }
  if (r != 0 || (*wslot_of(inv))->err) {
    /* out of memory or a failing report file: the engine's own path says
     * so and goes on with the console (the next firing is slow) */
    args_drop(c->L, inv);
  }
}

static void ftask_finish(task *t, const char *status) {
  ftask *ft = (ftask *)t;
  invoker *inv = ft->inv;
  orch_core *c = t->core;
  lua_State *L = c->L;
  list_remove(&ft->node);
  inv->nrunning--;
  c->inv.running--;
  if (inv->closed) {
    /* the run is over (exit path): nobody to tell */
    lua_pop(L, 1);
    ftask_free(c, ft);
    if (inv->nrunning == 0) {
      ref_free(L, &inv->tag_ref);
      ref_free(L, &inv->self_ref); /* last: inv may be collected from here on */
    }
    return;
  }
  if (strcmp(status, "ok") == 0) {
    double now = (double)(uv_hrtime() - c->clock.t0_ns) / 1e9 * c->clock.scale;
    double duration = now - ft->started;
    lua_pop(L, 1);
    inv->runs++;
    stats_add(inv->duration, duration);
    stats_add(inv->lateness, (double)ft->late_ns / 1e6); /* real milliseconds */
    if (wslot_of(inv) != NULL && *wslot_of(inv) != NULL) write_record(inv, ft, now, duration);
    if (inv->taps != NULL) {
      series *s;
      for (s = inv->taps; s != NULL; s = s->next_tap)
        series_invocation(s, now, duration, (double)ft->late_ns / 1e9, 1);
    }
    ftask_free(c, ft);
    if (inv->notify) {
      ref_push(L, inv->fam->progress_ref);
      sched_call(L, 0, 0);
    }
    return;
  }
  /* [err] -> done(tag, status, err, k, late_ns, started, phase) */
  ref_push(L, inv->fam->done_ref);
  ref_push(L, inv->tag_ref);
  lua_pushstring(L, status);
  lua_rotate(L, -4, 3);                                  /* [done tag status err] */
  lua_pushinteger(L, ft->k);
  lua_pushinteger(L, (lua_Integer)ft->late_ns);
  lua_pushnumber(L, ft->started);
  if (ft->startup) lua_pushliteral(L, "startup"); else lua_pushliteral(L, "interval");
  ftask_free(c, ft);
  sched_call(L, 7, 0);
}

/* ---- Lua ---------------------------------------------------------------- */

/* ref of t[field] (t at idx), of the type given, or LUA_NOREF when nil */
static int opt_ref(lua_State *L, int idx, const char *field, int type) {
  int ty = lua_getfield(L, idx, field);
  if (ty == LUA_TNIL) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (ty != type) luaL_error(L, "core.invokers: %s must be a %s", field, lua_typename(L, type));
  return ref_new(L);
}

static double opt_num(lua_State *L, int idx, const char *field, double dflt) {
  double v = dflt;
  if (lua_getfield(L, idx, field) != LUA_TNIL) v = luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Lets go of what the family holds: once its last invoker is closed
 * (nothing calls back after close), or when it is collected. */
static void family_release(lua_State *L, family *f) {
  ref_free(L, &f->fire_ref);
  ref_free(L, &f->done_ref);
  ref_free(L, &f->progress_ref);
  ref_free(L, &f->event_mt_ref);
  ref_free(L, &f->writer_ref);
  f->wslot = NULL;
}

static int l_family_gc(lua_State *L) {
  family_release(L, luaL_checkudata(L, 1, FAMILY_MT));
  return 0;
}

/* The invoker of the event at evi, of the family at fi; its metatable and
 * the stats' at mti and smti.  Pushes it. */
static void invoker_new(lua_State *L, orch_core *c, int evi, int fi, int mti, int smti) {
  static const char *const conc[] = {"allow", "forbid", "replace", NULL};
  invoker *inv;
  jbuf mid = {0};
  const char *s;
  size_t n;
  inv = lua_newuserdatauv(L, sizeof *inv, 4);            /* [inv] */
  memset(inv, 0, sizeof *inv);
  inv->core = c;
  inv->self_ref = inv->fn_ref = inv->tag_ref = LUA_NOREF;
  inv->fam = lua_touserdata(L, fi);
  inv->fam->open++;
  list_init(&inv->running);
  lua_pushvalue(L, mti);
  lua_setmetatable(L, -2);
  inv->duration = stats_push(L, smti);
  lua_setiuservalue(L, -2, 1);
  inv->lateness = stats_push(L, smti);
  lua_setiuservalue(L, -2, 2);
  /* the tag: what core.current() gives inside the event, and the
   * invoker's other fields (invoker.ev, invoker.errors once one failed) */
  lua_createtable(L, 0, 2);
  lua_getfield(L, evi, "id");
  lua_setfield(L, -2, "id");
  lua_pushvalue(L, evi);
  lua_setfield(L, -2, "ev");
  lua_pushvalue(L, -1);
  inv->tag_ref = ref_new(L);
  lua_setiuservalue(L, -2, 3);
  lua_pushvalue(L, fi);
  lua_setiuservalue(L, -2, 4);
  lua_pushvalue(L, -1);
  inv->self_ref = ref_new(L);

  inv->fn_ref = opt_ref(L, evi, "fn", LUA_TFUNCTION);
  inv->interval = opt_num(L, evi, "interval", 0);
  inv->timeout_sec = opt_num(L, evi, "timeout", 0);
  lua_getfield(L, evi, "concurrency");
  inv->concurrency = luaL_checkoption(L, -1, "forbid", conc);
  lua_pop(L, 1);
  /* ,"event":<name>,"id":<id>,"iteration": once for all lines; both
   * checked first, so that an error leaves nothing allocated */
  if (lua_getfield(L, evi, "name") != LUA_TSTRING || lua_getfield(L, evi, "id") != LUA_TSTRING)
    luaL_error(L, "core.invokers: an event's name and id must be strings");
  s = lua_tolstring(L, -2, &n);
  JSONW_LIT(&mid, ",\"event\":");
  jsonw_string(&mid, s, n);
  s = lua_tolstring(L, -1, &n);
  JSONW_LIT(&mid, ",\"id\":");
  jsonw_string(&mid, s, n);
  lua_pop(L, 2);
  if (JSONW_LIT(&mid, ",\"iteration\":") != 0) {
    free(mid.data);
    luaL_error(L, "not enough memory");
  }
  { /* its exact size: one per event, kept for the whole run */
    char *p = realloc(mid.data, mid.len);
    if (p != NULL) mid.data = p;
  }
  inv->mid = mid.data;
  inv->midlen = mid.len;
}

/* core.invokers(shared, events) -> { [id] = invoker }: one per event (the
 * map made at its size):
 * shared = {fire, done, progress, event_mt, writer}, what they all call
 * back and write to; each event {fn, name, id, interval, timeout,
 * concurrency}.  One call for the run: no spec table per event. */
static int l_core_invokers(lua_State *L) {
  orch_core *c = core_get(L);
  family *f;
  lua_Integer i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  f = lua_newuserdatauv(L, sizeof *f, 0);                /* [shared events fam] */
  f->fire_ref = f->done_ref = f->progress_ref = f->event_mt_ref = f->writer_ref = LUA_NOREF;
  f->wslot = NULL;
  f->open = 0;
  luaL_setmetatable(L, FAMILY_MT);
  f->fire_ref = opt_ref(L, 1, "fire", LUA_TFUNCTION);
  f->done_ref = opt_ref(L, 1, "done", LUA_TFUNCTION);
  f->progress_ref = opt_ref(L, 1, "progress", LUA_TFUNCTION);
  f->event_mt_ref = opt_ref(L, 1, "event_mt", LUA_TTABLE);
  if (lua_getfield(L, 1, "writer") != LUA_TNIL) {
    f->wslot = writer_slot(L, -1);
    f->writer_ref = ref_new(L);
  } else {
    lua_pop(L, 1);
  }
  luaL_getmetatable(L, INVOKER_MT);                      /* 4 */
  luaL_getmetatable(L, STATS_MT);                        /* 5 */
  n = luaL_len(L, 2);
  lua_createtable(L, 0, n > 0 && n < INT_MAX ? (int)n : 0); /* 6: the map */
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, 2, i) != LUA_TTABLE)              /* 7: the event */
      return luaL_error(L, "core.invokers: event %d is not a table", (int)i);
    lua_getfield(L, 7, "id");                            /* 8 */
    invoker_new(L, c, 7, 3, 4, 5);                       /* 9 */
    lua_rawset(L, 6);
    lua_pop(L, 1);
  }
  return 1;
}

/* invoker:set_args(args, n, [event_at]): the arguments of every later
 * firing; event_at lists the (1-based, increasing) positions that get a
 * new `event` table each time.  nil args: back to the engine's path. */
static int l_set_args(lua_State *L) {
  invoker *inv = check_invoker(L, 1);
  orch_core *c = inv->core;
  args_drop(L, inv);
  inv->nevent = 0;
  if (lua_isnoneornil(L, 2) || inv->fn_ref == LUA_NOREF || inv->closed) return 0;
  luaL_checktype(L, 2, LUA_TTABLE);
  inv->nargs = (int)luaL_checkinteger(L, 3);
  luaL_argcheck(L, inv->nargs >= 0 && inv->nargs < 200, 3, "too many arguments");
  if (lua_istable(L, 4)) {
    lua_Integer i, n = luaL_len(L, 4);
    luaL_argcheck(L, n <= 8, 4, "at most 8 event positions");
    for (i = 1; i <= n; i++) {
      lua_Integer at = (lua_rawgeti(L, 4, i), lua_tointeger(L, -1));
      lua_pop(L, 1);
      luaL_argcheck(L, at >= 1 && at <= inv->nargs && (i == 1 || at - 1 > inv->event_at[i - 2]), 4,
                    "positions must be increasing and within the arguments");
      inv->event_at[inv->nevent++] = (int)at - 1;
    }
  }
  /* new slots in the store: the arguments, then (for an event that takes
   * `event`) its name and id, then the function */
  {
    lua_Integer at;
    int i;
    if (c->inv.args_next == 0) {
      static const char *const keys[] = {"name", "id", "iteration", "phase", "scheduled",
                                         "startup", "interval"};
      lua_createtable(L, 1024, 0);
      for (i = EV_NAME; i <= EV_KEYS; i++) {
        lua_pushstring(L, keys[i - EV_NAME]);
        lua_rawseti(L, -2, i);
      }
      if (inv->fam->event_mt_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, inv->fam->event_mt_ref); /* one for the whole run */
        lua_rawseti(L, -2, EV_MT);
      }
      c->inv.args_store = luaL_ref(L, LUA_REGISTRYINDEX);
      c->inv.args_next = EV_MT + 1; /* so args_at is never 0, "none" */
    }
    inv->fn_at = inv->nargs + (inv->nevent > 0 ? EV_VALUES : 0) + 1;
    at = c->inv.args_next - 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->inv.args_store);
    for (i = 1; i <= inv->nargs; i++) {
      lua_rawgeti(L, 2, i);
      lua_rawseti(L, -2, at + i);
    }
    if (inv->nevent > 0) { /* from the tag: {id =, ev = {name =, ...}} */
      lua_getiuservalue(L, 1, 3);                        /* [store tag] */
      lua_getfield(L, -1, "ev");
      lua_getfield(L, -1, "name");                       /* [store tag ev name] */
      lua_rawseti(L, -4, at + inv->nargs + EV_NAME_V);
      lua_getfield(L, -2, "id");
      lua_rawseti(L, -4, at + inv->nargs + EV_ID_V);
      lua_pop(L, 2);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, inv->fn_ref);
    lua_rawseti(L, -2, at + inv->fn_at);
    lua_pop(L, 1);
    c->inv.args_next += inv->fn_at;
    inv->args_at = at;
  }
  return 0;
}

/* invoker:fire_startup() -> true, or false when the engine must fire it
 * (no constant arguments yet).  A startup firing is due at t0: its
 * lateness is taken here, at the moment it fires. */
static int l_fire_startup(lua_State *L) {
  invoker *inv = check_invoker(L, 1);
  uint64_t now = uv_hrtime(), t0 = inv->core->clock.t0_ns;
  if (!can_fire(inv)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  fast_fire(inv, 0, now, now > t0 ? now - t0 : 0, 1, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* invoker:cancel_all(): cancels its fast tasks (the engine cancels its own). */
static int l_cancel_all(lua_State *L) {
  invoker *inv = check_invoker(L, 1);
  while (!list_empty(&inv->running)) {
    ftask *ft = list_entry(inv->running.next, ftask, node);
    if (ft->t.state == T_RUNNING) break; /* cannot happen: no task is running here */
    sched_cancel(&ft->t, C_CANCELLED);   /* finishes it: unlinked */
  }
  return 0;
}

/* invoker:tap(series, [derived]): feeds series at each end of a fast
 * invocation (the engine feeds it at the others); kept alive in the fields
 * table.  derived: a whole-run series from t0 whose checks ask only what
 * the invoker counts already (a duration's or lateness's count, mean, min,
 * max, percentiles; failures and invocations): it reads them here and is
 * fed nothing a firing (10,000 events: no cold series to touch). */
static int l_tap(lua_State *L) {
  invoker *inv = check_invoker(L, 1);
  series *s = series_test(L, 2);
  luaL_argcheck(L, s != NULL && s->next_tap == NULL && s != inv->taps, 2, "an unused orch.Series expected");
  if (lua_toboolean(L, 3)) {
    luaL_argcheck(L, s->nslots == 1 && s->from <= 0 && s->kind != SK_VALUE && s->kind != SK_INVOCATIONS, 2,
                  "a whole-run series of an event from t0 expected");
    s->derived = 1;
    s->want_hist = 0;
    if (s->kind == SK_STATUS) {
      s->runs_from = &inv->runs;
      s->failures_from = &inv->failures;
    } else {
      s->pct_from = s->kind == SK_DURATION ? inv->duration : inv->lateness;
      s->pct_scale = s->kind == SK_DURATION ? 1 : 1e-3;
    }
    lua_settop(L, 2);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 2, 1); /* the invoker (its counters, its statistics) lives as long */
    return 0;
  }
  lua_getiuservalue(L, 1, 3);                            /* [inv s fields] */
  if (lua_getfield(L, -1, "_taps") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "_taps");
  }                                                      /* [inv s fields taps] */
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  s->next_tap = inv->taps;
  inv->taps = s;
  /* the invoker keeps the whole run's durations and lateness (in real ms)
   * already, from the first invocation: a second histogram per firing
   * would cost a few cache misses at 10,000 events */
  if (s->want_hist && s->nslots == 1 && s->from <= 0 &&
      (s->kind == SK_DURATION || s->kind == SK_LATENESS)) {
    s->want_hist = 0;
    s->pct_from = s->kind == SK_DURATION ? inv->duration : inv->lateness;
    s->pct_scale = s->kind == SK_DURATION ? 1 : 1e-3;
  }
  return 0;
}

/* invoker:set_notify(on): call progress() after each fast end (stopping). */
static int l_set_notify(lua_State *L) {
  check_invoker(L, 1)->notify = lua_toboolean(L, 2);
  return 0;
}

/* invoker:close(): no more fast firings; lets it be collected once its
 * tasks are done. */
static int l_close(lua_State *L) {
  invoker *inv = check_invoker(L, 1);
  if (!inv->closed && --inv->fam->open == 0) family_release(L, inv->fam);
  inv->closed = 1;
  args_drop(L, inv);
  ref_free(L, &inv->fn_ref);
  if (inv->nrunning == 0) {
    ref_free(L, &inv->tag_ref);
    ref_free(L, &inv->self_ref);
  }
  return 0;
}

static lua_Integer *counter(invoker *inv, const char *k) {
  if (strcmp(k, "runs") == 0) return &inv->runs;
  if (strcmp(k, "failures") == 0) return &inv->failures;
  if (strcmp(k, "skipped") == 0) return &inv->skipped;
  if (strcmp(k, "timeouts") == 0) return &inv->timeouts;
  if (strcmp(k, "lua_running") == 0) return &inv->lua_running;
  return NULL;
}

/* __index and __newindex: the metatable is their upvalue 2 (the summary
 * reads several fields of every event). */
static invoker *index_invoker(lua_State *L) {
  invoker *inv = udata_with_mt(L, 1, lua_upvalueindex(2));
  return inv != NULL ? inv : check_invoker(L, 1);
}

static int l_index(lua_State *L) {
  invoker *inv = index_invoker(L);
  const char *k;
  lua_Integer *ctr;
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1; /* a method */
  lua_pop(L, 1);
  k = lua_tostring(L, 2);
  if (k == NULL) return 0;
  if ((ctr = counter(inv, k)) != NULL) {
    lua_pushinteger(L, *ctr);
    return 1;
  }
  if (strcmp(k, "running_fast") == 0) {
    lua_pushinteger(L, inv->nrunning);
    return 1;
  }
  if (strcmp(k, "duration") == 0) return lua_getiuservalue(L, 1, 1), 1;
  if (strcmp(k, "lateness") == 0) return lua_getiuservalue(L, 1, 2), 1;
  lua_getiuservalue(L, 1, 3);
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int l_newindex(lua_State *L) {
  invoker *inv = index_invoker(L);
  const char *k = lua_tostring(L, 2);
  lua_Integer *ctr = k ? counter(inv, k) : NULL;
  if (ctr != NULL) {
    *ctr = luaL_checkinteger(L, 3);
    return 0;
  }
  if (k && (strcmp(k, "duration") == 0 || strcmp(k, "lateness") == 0 || strcmp(k, "running_fast") == 0))
    return luaL_error(L, "%s is read-only", k);
  lua_getiuservalue(L, 1, 3);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static int l_gc(lua_State *L) {
  invoker *inv = check_invoker(L, 1);
  free(inv->mid);
  inv->mid = NULL;
  return 0;
}

/* inv:summary() -> the event's figures at the end of the run, as a plain
 * table: runs, failures, skipped, timeouts, duration, lateness (the Stats),
 * errors (a count), messages (the first failures'), and dur_p50, dur_p99,
 * dur_max, late_p99, late_max (absent when nothing was measured);
 * summarised = true.  One call, not a field at a time through __index; the
 * keys are the closure's upvalues, so no lookup in the API's string cache
 * per field. */
enum { S_RUNS = 1, S_FAILURES, S_SKIPPED, S_TIMEOUTS, S_DURATION, S_LATENESS, S_ERRORS, S_DUR_P50,
       S_DUR_P99, S_DUR_MAX, S_LATE_P99, S_LATE_MAX, S_SUMMARISED, S_MESSAGES, S_ERROR_RESULTS,
       S_N = S_ERROR_RESULTS };

/* pushes the upvalue key k (the value follows, then lua_rawset(L, -3)) */
#define SKEY(L, k) lua_pushvalue(L, lua_upvalueindex(k))

static int l_summary(lua_State *L) {
  invoker *inv = check_invoker(L, 1);
  lua_createtable(L, 0, S_N);
  SKEY(L, S_RUNS);
  lua_pushinteger(L, inv->runs);
  lua_rawset(L, -3);
  SKEY(L, S_FAILURES);
  lua_pushinteger(L, inv->failures);
  lua_rawset(L, -3);
  SKEY(L, S_SKIPPED);
  lua_pushinteger(L, inv->skipped);
  lua_rawset(L, -3);
  SKEY(L, S_TIMEOUTS);
  lua_pushinteger(L, inv->timeouts);
  lua_rawset(L, -3);
  SKEY(L, S_DURATION);
  lua_getiuservalue(L, 1, 1);
  lua_rawset(L, -3);
  SKEY(L, S_LATENESS);
  lua_getiuservalue(L, 1, 2);
  lua_rawset(L, -3);
  /* errors: the event's failed invocations plus the error results its
   * invocations reported (the engine counts those in error_results);
   * messages: the first failures' messages */
  SKEY(L, S_ERRORS);
  lua_getiuservalue(L, 1, 3);                            /* [s "errors" fields] */
  lua_pushvalue(L, lua_upvalueindex(S_ERROR_RESULTS));
  lua_rawget(L, -2);                                     /* [s "errors" fields n] */
  lua_pushinteger(L, inv->failures + lua_tointeger(L, -1));
  lua_replace(L, -3);
  lua_pop(L, 1);                                         /* [s "errors" count] */
  lua_rawset(L, -3);
  SKEY(L, S_MESSAGES);
  lua_getiuservalue(L, 1, 3);
  lua_pushvalue(L, -2);
  lua_rawget(L, -2);
  lua_remove(L, -2);                                     /* [s "messages" list] */
  lua_rawset(L, -3);
  if (inv->duration->n > 0) {
    SKEY(L, S_DUR_P50);
    lua_pushnumber(L, stats_percentile(inv->duration, 50));
    lua_rawset(L, -3);
    SKEY(L, S_DUR_P99);
    lua_pushnumber(L, stats_percentile(inv->duration, 99));
    lua_rawset(L, -3);
    SKEY(L, S_DUR_MAX);
    lua_pushnumber(L, inv->duration->max);
    lua_rawset(L, -3);
  }
  if (inv->lateness->n > 0) {
    SKEY(L, S_LATE_P99);
    lua_pushnumber(L, stats_percentile(inv->lateness, 99));
    lua_rawset(L, -3);
    SKEY(L, S_LATE_MAX);
    lua_pushnumber(L, inv->lateness->max);
    lua_rawset(L, -3);
  }
  SKEY(L, S_SUMMARISED);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  return 1;
}

int invoker_figures(lua_State *L, int idx, invoker_figs *f) {
  invoker *inv = invoker_test(L, idx);
  if (inv == NULL) return 0;
  f->runs = inv->runs;
  f->failures = inv->failures;
  f->skipped = inv->skipped;
  f->timeouts = inv->timeouts;
  f->duration = inv->duration;
  f->lateness = inv->lateness;
  return 1;
}

/* core.invoker_running() -> fast tasks alive, all events */
static int l_core_invoker_running(lua_State *L) {
  lua_pushinteger(L, core_get(L)->inv.running);
  return 1;
}

void invoker_open(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"set_args", l_set_args},     {"fire_startup", l_fire_startup},
    {"cancel_all", l_cancel_all}, {"set_notify", l_set_notify},
    {"close", l_close},           {"tap", l_tap},
    {NULL, NULL}};
  static const char *const keys[] = {"runs", "failures", "skipped", "timeouts", "duration",
                                     "lateness", "errors", "dur_p50", "dur_p99", "dur_max",
                                     "late_p99", "late_max", "summarised", "messages",
                                     "error_results"};
  int i;
  luaL_newmetatable(L, INVOKER_MT);                     /* [mt] */
  luaL_newlib(L, methods);                              /* [mt methods] */
  for (i = 0; i < S_N; i++) lua_pushstring(L, keys[i]);
  lua_pushcclosure(L, l_summary, S_N);
  lua_setfield(L, -2, "summary");
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_index, 2);
  lua_setfield(L, -2, "__index");
  lua_pushnil(L);                                       /* [mt nil] */
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, l_newindex, 2);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, FAMILY_MT);
  lua_pushcfunction(L, l_family_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_core_invokers);
  lua_setfield(L, -2, "invokers");
  lua_pushcfunction(L, l_core_invoker_running);
  lua_setfield(L, -2, "invoker_running");
  stats_open(L);
  lua_pushcfunction(L, stats_push_new);
  lua_setfield(L, -2, "new_stats");
}
