/*
 * lorch_core.c - the orch.core module: the Lua face of the host.
 *
 * Two error channels, as in luv: misuse (a wrong argument, a helper called
 * outside a task) raises; an expected run-time failure (a file that cannot
 * be opened) returns nil, message.
 *
 * Times given to and returned by this module are in description seconds;
 * --time-scale is applied here and nowhere else.
 */
#include <errno.h>
#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lualib.h"

#include "core.h"
#include "guardian.h"
#include "jsonw.h"
#include "orch.h"

#define TASK_MT "orch.Task"
#define TIMER_MT "orch.Timer"
#define TICKER_MT "orch.Ticker"
#define FLAG_MT "orch.Flag"


/* ---- clock ------------------------------------------------------------ */

static void tickers_arm(orch_core *c);

/* core.start_clock(scale, [t0_unix]): t0 is now, or the wall-clock time
 * t0_unix in the past (a resumed run keeps its t0: the monotonic t0 is
 * put that far back, in unsigned arithmetic, so that it may fall before
 * this boot); the tickers made before it are armed. */
static int l_core_start_clock(lua_State *L) {
  orch_core *c = core_get(L);
  double scale = luaL_optnumber(L, 1, 1.0);
  luaL_argcheck(L, scale > 0 && isfinite(scale), 1, "time scale must be > 0");
  c->clock.scale = scale;
  /* one-time costs that would otherwise land on the first firings: the
   * C library reading the time zone at
   * the first gmtime, and glibc merging the small blocks the collection
   * before t0 freed at the first larger malloc */
  {
    struct tm tm;
    time_t now = time(NULL);
    gmtime_r(&now, &tm);
  }
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  uv_update_time(&c->loop);
  c->clock.t0_ns = uv_hrtime();
  c->clock.t0_wall = clock_wall();
  if (!lua_isnoneornil(L, 2)) {
    double t0 = luaL_checknumber(L, 2), back = c->clock.t0_wall - t0;
    if (back < 0 || !isfinite(back)) back = 0;
    c->clock.t0_ns -= (uint64_t)(back * 1e9);
    c->clock.t0_wall = t0;
  }
  c->clock.started = 1;
  tickers_arm(c);
  lua_pushnumber(L, c->clock.t0_wall);
  return 1;
}

/* core.trim_threads(n): keeps at most n of them, once the firings that
 * needed them all are over. */
static int l_core_trim_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  sched_trim(L, n < 0 ? 0 : n > INT_MAX ? INT_MAX : (int)n);
  return 0;
}

/* core.time_scale(): --time-scale (1 without it). */
static int l_core_time_scale(lua_State *L) {
  lua_pushnumber(L, core_get(L)->clock.scale);
  return 1;
}

/* core.now(): description seconds since t0. */
static int l_core_now(lua_State *L) {
  orch_core *c = core_get(L);
  lua_pushnumber(L, (double)(uv_hrtime() - c->clock.t0_ns) / 1e9 * c->clock.scale);
  return 1;
}

/* core.fnv1a(s) -> 32-bit FNV-1a of s (a description's fingerprint; in
 * C: it reads every byte of a large description at startup) */
static int l_core_fnv1a(lua_State *L) {
  size_t n, i;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  uint32_t h = 2166136261u;
  for (i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
  lua_pushinteger(L, (lua_Integer)h);
  return 1;
}

static int l_core_hrtime(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_hrtime());
  return 1;
}

static int l_core_wall(lua_State *L) {
  lua_pushnumber(L, clock_wall());
  return 1;
}

/* core.iso8601([unix_seconds]) -> "2026-11-25T12:00:00.123Z" */
static int l_core_iso8601(lua_State *L) {
  char buf[32];
  clock_iso8601(core_get(L), luaL_opt(L, luaL_checknumber, 1, clock_wall()), buf);
  lua_pushstring(L, buf);
  return 1;
}

/* core.ts(t_desc): the wall-clock ISO time at description time t.  With
 * --time-scale, description time is mapped onto the real elapsed time. */
static int l_core_ts(lua_State *L) {
  orch_core *c = core_get(L);
  char buf[32];
  clock_iso8601(c, c->clock.t0_wall + luaL_checknumber(L, 1) / c->clock.scale, buf);
  lua_pushstring(L, buf);
  return 1;
}

/* core.stamp() -> t, ts */
static int l_core_stamp(lua_State *L) {
  char buf[32];
  lua_pushnumber(L, clock_stamp(core_get(L), buf));
  lua_pushstring(L, buf);
  return 2;
}

/* core.run(): runs the loop until nothing is left to do. */
static int l_core_run(lua_State *L) {
  orch_core *c = core_get(L);
  luaL_argcheck(L, lua_pushthread(L), 1, "core.run must be called from the main thread");
  lua_pop(L, 1);
  __atomic_store_n(&c->watch.turn_ns, uv_hrtime(), __ATOMIC_RELAXED); /* its first turn starts */
  c->in_loop = 1;
  uv_run(&c->loop, UV_RUN_DEFAULT);
  c->in_loop = 0;
  return 0;
}

static int l_core_stop(lua_State *L) {
  uv_stop(&core_get(L)->loop);
  return 0;
}

/* core.stats() -> {handles=, tasks=, refs=}: what is still alive; and,
 * for the specs, fast_lines (the invocation lines the invokers wrote
 * themselves), pooled (coroutines kept for reuse) and watch_looks (the
 * watchdog's looks at the running task). */
static int l_core_stats(lua_State *L) {
  orch_core *c = core_get(L);
  uint64_t looks;
  uv_mutex_lock(&c->watch.mu);
  looks = c->watch.looks;
  uv_mutex_unlock(&c->watch.mu);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, c->live.handles);
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, c->live.tasks);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, c->live.refs - c->pool.n);  /* the pool's are not leaks */
  lua_setfield(L, -2, "refs");
  lua_pushinteger(L, invoker_fast_lines(c));
  lua_setfield(L, -2, "fast_lines");
  lua_pushinteger(L, c->pool.n);
  lua_setfield(L, -2, "pooled");
  lua_pushinteger(L, (lua_Integer)looks);
  lua_setfield(L, -2, "watch_looks");
  return 1;
}

/* core.on_signal(fn): fn(signum, count) for SIGINT/SIGTERM/SIGHUP. */
static int l_core_on_signal(lua_State *L) {
  orch_core *c = core_get(L);
  c->sig.early = 0; /* an engine answers signals from now on */
  ref_free(L, &c->sig.cb_ref);
  lua_settop(L, 1);
  c->sig.cb_ref = ref_new(L);
  if (c->sig.cb_ref != LUA_NOREF)
    uv_ref((uv_handle_t *)&c->sig.async);
  else
    uv_unref((uv_handle_t *)&c->sig.async);
  return 0;
}

/* core.signals() -> count, signum: the SIGINT/SIGTERM/SIGHUP received so
 * far and the last one; what polls for them once no loop delivers them
 * (the final writes, after the loop). */
static int l_core_signals(lua_State *L) {
  orch_core *c = core_get(L);
  lua_pushinteger(L, c->sig.count);
  lua_pushinteger(L, c->sig.last);
  return 2;
}

/* core.set_grace(desc_sec): a CPU-bound task still running that long
 * after the first signal is cancelled by the hook. */
static int l_core_set_grace(lua_State *L) {
  orch_core *c = core_get(L);
  c->bound.grace_ns = sched_real_ms(c, luaL_checknumber(L, 1)) * 1000000u;
  return 0;
}

/* core.set_hard_deadline(desc_sec_from_now | nil) */
static int l_core_set_hard_deadline(lua_State *L) {
  orch_core *c = core_get(L);
  if (lua_isnoneornil(L, 1))
    c->bound.hard_ns = 0;
  else
    c->bound.hard_ns = uv_hrtime() + sched_real_ms(c, luaL_checknumber(L, 1)) * 1000000u;
  return 0;
}

/* core.on_loop_lag(limit_real_sec, fn | nil): fn(tag, seconds) after a
 * task's resume held the loop longer than the limit (real seconds; the
 * watchdog looks every 10 ms, so the figure is that close). */
static int l_core_on_loop_lag(lua_State *L) {
  orch_core *c = core_get(L);
  double sec = luaL_checknumber(L, 1);
  ref_free(L, &c->watch.lag_cb_ref);
  c->watch.lag_ns = 0;
  if (lua_isnoneornil(L, 2) || sec <= 0) return 0;
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  c->watch.lag_cb_ref = ref_new(L);
  c->watch.lag_ns = (uint64_t)(sec * 1e9);
  return 0;
}

/* core.set_end(desc_sec | nil): the run's T, from t0.  A task still
 * running grace after it is stopped by the watchdog (even one that never
 * lets the loop reach T), and past three graces a loop turn that never
 * ends exits orchlua (sched.c).  nil (the finalisers' turn) lifts the
 * first rule only. */
static int l_core_set_end(lua_State *L) {
  orch_core *c = core_get(L);
  if (lua_isnoneornil(L, 1)) {
    c->bound.end_ns = 0;
  } else {
    uint64_t t = c->clock.t0_ns + sched_real_ms(c, luaL_checknumber(L, 1)) * 1000000u;
    c->bound.end_ns = t;
    c->bound.last_ns = t + 3 * c->bound.grace_ns;
  }
  return 0;
}

/* ---- tasks ------------------------------------------------------------ */

static task *check_task(lua_State *L, int i) {
  return luaL_checkudata(L, i, TASK_MT);
}

/* core.go(fn, done, tag, ...) -> task.  The task starts from the ready
 * list, i.e. at the next idle callback, never inside the caller. */
static int l_core_go(lua_State *L) {
  orch_core *c = core_get(L);
  int nargs = lua_gettop(L) - 3;
  lua_State *co;
  task *t;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (nargs < 0) nargs = 0;
  lua_settop(L, 3 + nargs);
  t = lua_newuserdatauv(L, sizeof *t, 0);               /* [fn done tag args t] */
  memset(t, 0, sizeof *t);
  t->core = c;
  t->id = ++c->next_task_id;
  list_init(&t->ready);
  list_init(&t->wait);
  luaL_setmetatable(L, TASK_MT);
  t->self_ref = LUA_NOREF;
  t->co_ref = t->done_ref = t->tag_ref = LUA_NOREF;
  lua_pushvalue(L, -1);
  t->self_ref = ref_new(L);
  lua_pushvalue(L, 2);
  t->done_ref = ref_new(L);
  lua_pushvalue(L, 3);
  t->tag_ref = ref_new(L);
  co = sched_thread(L, &t->co_ref);
  t->co = co;
  lua_checkstack(co, nargs + 1);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  if (nargs > 0) {
    int i;
    for (i = 0; i < nargs; i++) lua_pushvalue(L, 4 + i);
    lua_xmove(L, co, nargs);
  }
  t->nargs = nargs;
  t->started_ns = uv_hrtime();
  c->live.tasks++;
  sched_ready(t);
  return 1;
}

/* core.current() -> tag of the running task (nil outside a task). */
static int l_core_current(lua_State *L) {
  orch_core *c = core_get(L);
  if (c->running == NULL) return 0;
  ref_push(L, c->running->tag_ref);
  return 1;
}

/* core.set_context(tag | nil): the invocation a callback outside any task
 * acts for (a process's line callback, process.lua): results it reports
 * carry that invocation's event. */
static int l_core_set_context(lua_State *L) {
  lua_settop(L, 1);
  sched_set_context(L);
  return 0;
}

/* core.sleep(desc_sec): yields the running task. */
static int l_core_sleep(lua_State *L) {
  double sec = luaL_checknumber(L, 1);
  task *t = sched_need_task(L, "orch.sleep");
  luaL_argcheck(L, sec >= 0 && !isnan(sec), 1, "seconds must be >= 0");
  if (sec == 0) {
    sched_ready(t);
    return lua_yield(L, 0);
  }
  sched_timer_wait(t, sched_real_ms(t->core, sec), 0);
  return sched_wait(L, t);
}

/* task:set_timeout(sec): cancel with status "timeout" after sec (never
 * less real time: sched_bound_ms), whether the task waits (a timer) or
 * computes (the count hook). */
static int l_task_set_timeout(lua_State *L) {
  task *t = check_task(L, 1);
  double sec = luaL_checknumber(L, 2);
  if (t->state == T_DONE) return 0;
  sched_set_timeout(t, sched_bound_ms(t->core, sec));
  return 0;
}

/* task:cancel([status]) with status "cancelled" (default) or "timeout". */
static int l_task_cancel(lua_State *L) {
  static const char *const opts[] = {"cancelled", "timeout", NULL};
  task *t = check_task(L, 1);
  int why = luaL_checkoption(L, 2, "cancelled", opts) == 0 ? C_CANCELLED : C_TIMEOUT;
  sched_cancel(t, why);
  return 0;
}

static int l_task_status(lua_State *L) {
  static const char *const names[] = {"ready", "running", "waiting", "done"};
  task *t = check_task(L, 1);
  lua_pushstring(L, names[t->state]);
  return 1;
}

static int l_task_tag(lua_State *L) {
  task *t = check_task(L, 1);
  if (t->state == T_DONE) return 0;
  ref_push(L, t->tag_ref);
  return 1;
}

static int l_task_id(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_task(L, 1)->id);
  return 1;
}

/* ---- timers ----------------------------------------------------------- */

/* A plain one-shot or repeating timer whose callback runs on the main
 * thread.  The uv handle is malloc'd apart; the userdata holds a pointer. */
typedef struct ltimer {
  uv_timer_t *h;
  orch_core *core;
  int cb_ref;
  int self_ref;
} ltimer;

static void on_ltimer(uv_timer_t *h) {
  ltimer *t = h->data;
  lua_State *L = t->core->L;
  ref_push(L, t->cb_ref);
  ref_push(L, t->self_ref);
  sched_call(L, 1, 0);
}

static ltimer *check_ltimer(lua_State *L, int i) {
  return luaL_checkudata(L, i, TIMER_MT);
}

/* core.timer(cb) -> timer; cb(timer) */
static int l_core_timer(lua_State *L) {
  orch_core *c = core_get(L);
  ltimer *t;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  t = lua_newuserdatauv(L, sizeof *t, 0);
  t->core = c;
  t->h = handle_new(c, sizeof *t->h);
  UV_CHECK(uv_timer_init(&c->loop, t->h));
  t->h->data = t;
  luaL_setmetatable(L, TIMER_MT);
  lua_pushvalue(L, 1);
  t->cb_ref = ref_new(L);
  t->self_ref = LUA_NOREF;
  return 1;
}

/* timer:start(desc_sec, [repeat_desc_sec]) */
static int l_timer_start(lua_State *L) {
  ltimer *t = check_ltimer(L, 1);
  double sec = luaL_checknumber(L, 2);
  double rep = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, t->h != NULL, 1, "timer is closed");
  if (t->self_ref == LUA_NOREF) {
    lua_pushvalue(L, 1);
    t->self_ref = ref_new(L);
  }
  UV_CHECK(uv_timer_start(t->h, on_ltimer,
                          sched_timeout_from(t->core, uv_hrtime(), sched_real_ms(t->core, sec)),
                          rep > 0 ? sched_real_ms(t->core, rep) : 0));
  return 0;
}

static int l_timer_stop(lua_State *L) {
  ltimer *t = check_ltimer(L, 1);
  if (t->h != NULL) uv_timer_stop(t->h);
  return 0;
}

static int l_timer_close(lua_State *L) {
  ltimer *t = check_ltimer(L, 1);
  if (t->h == NULL) return 0;
  t->h->data = NULL;
  handle_close((uv_handle_t *)t->h);
  t->h = NULL;
  ref_free(L, &t->cb_ref);
  ref_free(L, &t->self_ref);
  return 0;
}

/* ---- tickers: the fixed-rate schedule ---------------------------------- */

/* Fires cb(k, late_ns) at t0 + k*interval for k = first .. last.  Each
 * deadline is computed from t0 and k, never from the previous firing, so
 * the schedule cannot drift however long the run.  When the loop falls
 * behind (a CPU-bound event, a rehearsal faster than the timer resolution)
 * no firing is dropped: overdue ones follow one per loop iteration, so the
 * tasks of one run before the next fires, each with its lateness. */
typedef struct ticker {
  orch_list wait;     /* on its slot's list while armed */
  struct tick_slot *slot;
  deferred overdue;   /* on core->deferred while the next firing is overdue */
  orch_core *core;
  double interval;    /* description seconds */
  double interval_ns; /* real: set when armed, once the time scale is known */
  lua_Integer k, last;
  int cb_ref, self_ref;
  int closed;
  invoker *inv;       /* the target when not a Lua function (cb_ref holds it) */
} ticker;

/* Tickers due in the same millisecond share one libuv timer, a slot:
 * events at one interval are one timer, not one heap removal and insertion
 * per firing.  libuv's own order
 * (due time, then arming order) is kept: a slot's tickers fire in the
 * order they were armed. */
typedef struct tick_slot {
  uv_timer_t h;       /* first: the slot is the handle's allocation */
  uint64_t due_ms;
  orch_list tickers;
  struct tick_slot *hnext;
} tick_slot;

static tick_slot **slot_bucket(orch_core *c, uint64_t due_ms) {
  return &c->tick.slots[due_ms % TICK_SLOTS];
}

static void slot_unhash(orch_core *c, tick_slot *s) {
  tick_slot **p = slot_bucket(c, s->due_ms);
  while (*p != NULL && *p != s) p = &(*p)->hnext;
  if (*p == s) *p = s->hnext;
  s->hnext = NULL;
}

static uint64_t ticker_due(ticker *t, lua_Integer k) {
  return t->core->clock.t0_ns + (uint64_t)llround((double)k * t->interval_ns);
}

static void on_slot(uv_timer_t *h);
static void ticker_fire(ticker *t, int from_loop);

static void on_overdue(deferred *d) {
  ticker_fire(list_entry(d, ticker, overdue), 1);
}

/* Takes the ticker off its slot; the slot's timer goes with its last. */
static void ticker_unarm(ticker *t) {
  tick_slot *s = t->slot;
  list_remove(&t->wait);
  t->slot = NULL;
  if (s != NULL && list_empty(&s->tickers)) {
    slot_unhash(t->core, s);
    handle_close((uv_handle_t *)&s->h);
  }
}

/* Arms the ticker for its next firing, or defers it to the idle callback
 * when it is already due. */
static void ticker_start(ticker *t) {
  orch_core *c = t->core;
  uint64_t due_ns = ticker_due(t, t->k);
  uint64_t due_ms = (due_ns + 999999u) / 1000000u;
  uint64_t now_ms = uv_now(&c->loop);
  tick_slot *s;
  if (due_ms <= now_ms) {
    sched_defer(c, &t->overdue);
    return;
  }
  for (s = *slot_bucket(c, due_ms); s != NULL && s->due_ms != due_ms; s = s->hnext) {}
  if (s == NULL) {
    s = handle_new(c, sizeof *s);
    UV_CHECK(uv_timer_init(&c->loop, &s->h));
    s->h.data = c;
    s->due_ms = due_ms;
    list_init(&s->tickers);
    s->hnext = *slot_bucket(c, due_ms);
    *slot_bucket(c, due_ms) = s;
    UV_CHECK(uv_timer_start(&s->h, on_slot, due_ms - now_ms, 0));
  }
  list_push(&s->tickers, &t->wait);
  t->slot = s;
}

/* The first arming, once the clock has started. */
static void ticker_arm(ticker *t) {
  t->interval_ns = t->interval * 1e9 / t->core->clock.scale;
  ticker_start(t);
}

/* libuv runs timers before the idle pass: a task made ready before a
 * firing (the startup invocation, the previous firing's) would otherwise
 * start after it, and under forbid the firing would be skipped.  Such a
 * firing waits for the idle pass, right after those tasks. */
static void on_slot(uv_timer_t *h) {
  tick_slot *s = (tick_slot *)h;
  orch_core *c = h->data;
  orch_list batch;
  /* off the hash first: a ticker re-armed from here gets a new slot */
  slot_unhash(c, s);
  list_take(&batch, &s->tickers);
  handle_close((uv_handle_t *)h);
  while (!list_empty(&batch)) {
    ticker *t = list_entry(batch.next, ticker, wait);
    list_remove(&t->wait);
    t->slot = NULL;
    if (!list_empty(&c->ready))
      sched_defer(c, &t->overdue);
    else
      ticker_fire(t, 1);
  }
}

/* from_loop: called by the loop's own callbacks (the slot's timer, the
 * idle pass), where an invoker may start the firing's task at once; from
 * the engine's Lua (flush, at the end of the run) it waits its turn. */
static void ticker_fire(ticker *t, int from_loop) {
  lua_State *L = t->core->L;
  uint64_t now = uv_hrtime();
  lua_Integer k = t->k;
  uint64_t due = ticker_due(t, k);
  t->k++;
  if (t->inv != NULL) {
    invoker_fire(t->inv, k, now, now > due ? now - due : 0, from_loop);
  } else {
    ref_push(L, t->cb_ref);
    lua_pushinteger(L, k);
    lua_pushinteger(L, (lua_Integer)(now > due ? now - due : 0));
    sched_call(L, 2, 0);
  }
  /* the callback may have closed the ticker */
  if (!t->closed && t->k <= t->last) ticker_start(t);
}

/* core.ticker(interval_desc_sec, first_k, last_k, cb) -> ticker; cb a
 * function cb(k, late_ns) or an invoker (invoker.c) */
static int l_core_ticker(lua_State *L) {
  orch_core *c = core_get(L);
  double interval = luaL_checknumber(L, 1);
  lua_Integer first = luaL_checkinteger(L, 2);
  lua_Integer last = luaL_checkinteger(L, 3);
  ticker *t;
  invoker *inv = invoker_test(L, 4);
  luaL_argcheck(L, interval > 0 && isfinite(interval), 1, "interval must be > 0");
  if (inv == NULL) luaL_checktype(L, 4, LUA_TFUNCTION);
  t = lua_newuserdatauv(L, sizeof *t, 0);
  memset(t, 0, sizeof *t);
  t->core = c;
  t->interval = interval;
  t->k = first;
  t->last = last;
  luaL_setmetatable(L, TICKER_MT);
  t->inv = inv;
  lua_pushvalue(L, 4);
  t->cb_ref = ref_new(L);
  lua_pushvalue(L, -1);
  t->self_ref = ref_new(L);
  list_init(&t->wait);
  list_init(&t->overdue.node);
  t->overdue.fn = on_overdue;
  if (t->k > t->last) return 1;
  if (c->clock.started)
    ticker_arm(t);
  else
    list_push(&c->tick.unarmed, &t->wait);
  return 1;
}

/* No ticker yet: none waits for t0. */
void tickers_init(orch_core *c) { list_init(&c->tick.unarmed); }

/* Arms the tickers made before t0: making them is not spent after t0, in
 * the startup firings' time. */
static void tickers_arm(orch_core *c) {
  orch_list batch;
  list_take(&batch, &c->tick.unarmed);
  while (!list_empty(&batch)) {
    ticker *t = list_entry(batch.next, ticker, wait);
    list_remove(&t->wait);
    ticker_arm(t);
  }
}

/* ticker:flush([max]) -> missed, first_missed_k: fires now, one after
 * another, at most max of the firings already due and not yet fired (the
 * end of the run came while the loop was catching up); the rest are
 * passed over and counted, so a loop far behind (a rehearsal faster than
 * a loop turn) ends on time instead of firing millions at once. */
static int l_ticker_flush(lua_State *L) {
  ticker *t = luaL_checkudata(L, 1, TICKER_MT);
  lua_Integer max = luaL_optinteger(L, 2, LUA_MAXINTEGER), missed = 0, first = 0;
  uint64_t now = uv_hrtime();
  if (t->core->clock.started) { /* nothing is due before t0 */
    while (!t->closed && t->k <= t->last && ticker_due(t, t->k) <= now && max-- > 0) {
      list_remove(&t->overdue.node);
      ticker_unarm(t);
      ticker_fire(t, 0);
    }
    if (!t->closed && t->k <= t->last && ticker_due(t, t->k) <= now) {
      /* the last due k: the schedule's own arithmetic, not a loop */
      lua_Integer lo = t->k, hi = t->last;
      while (lo < hi) {
        lua_Integer mid = lo + (hi - lo + 1) / 2;
        if (ticker_due(t, mid) <= now) lo = mid; else hi = mid - 1;
      }
      first = t->k;
      missed = lo - t->k + 1;
      t->k = lo + 1;
      list_remove(&t->overdue.node);
      ticker_unarm(t);
      if (t->k <= t->last) ticker_start(t);
    }
  }
  lua_pushinteger(L, missed);
  lua_pushinteger(L, first);
  return 2;
}

static int l_ticker_close(lua_State *L) {
  ticker *t = luaL_checkudata(L, 1, TICKER_MT);
  if (t->closed) return 0;
  t->closed = 1;
  list_remove(&t->overdue.node);
  ticker_unarm(t);
  ref_free(L, &t->cb_ref);
  ref_free(L, &t->self_ref);
  return 0;
}

/* ---- flags: the kill switch's mechanism --------------------------------- */

typedef struct flag {
  int set;
  orch_list waiters;
} flag;

static flag *check_flag(lua_State *L, int i) {
  return luaL_checkudata(L, i, FLAG_MT);
}

static int l_core_flag(lua_State *L) {
  flag *f = lua_newuserdatauv(L, sizeof *f, 0);
  f->set = 0;
  list_init(&f->waiters);
  luaL_setmetatable(L, FLAG_MT);
  return 1;
}

/* flag:set(): wakes every waiter with true; returns true if it was not
 * set before. */
static int l_flag_set(lua_State *L) {
  flag *f = check_flag(L, 1);
  int was = f->set;
  f->set = 1;
  while (!list_empty(&f->waiters)) {
    task *t = list_entry(f->waiters.next, task, wait);
    list_remove(&t->wait);
    lua_pushboolean(t->co, 1);
    t->nargs = 1;
    sched_ready(t);
  }
  lua_pushboolean(L, !was);
  return 1;
}

static int l_flag_is_set(lua_State *L) {
  lua_pushboolean(L, check_flag(L, 1)->set);
  return 1;
}

/* flag:wait([desc_sec]) -> true when set, false on timeout.  Yields. */
static int l_flag_wait(lua_State *L) {
  flag *f = check_flag(L, 1);
  task *t;
  if (f->set) {
    lua_pushboolean(L, 1);
    return 1;
  }
  t = sched_need_task(L, "kill_switch:wait");
  if (!lua_isnoneornil(L, 2)) {
    double sec = luaL_checknumber(L, 2);
    if (sec <= 0) {
      lua_pushboolean(L, 0);
      return 1;
    }
    sched_timer_wait(t, sched_real_ms(t->core, sec), 1);
  }
  list_push(&f->waiters, &t->wait);
  return sched_wait(L, t);
}

/* A flag collected with waiters cannot happen: waiters are tasks whose
 * stack holds the flag as the `self` argument. */

/* ---- writers ----------------------------------------------------------- */

static int push_writer(lua_State *L, const char *path, FILE *fp) {
  char err[512];
  lwriter *lw = lua_newuserdatauv(L, sizeof *lw, 0);
  memset(lw, 0, sizeof *lw);
  lw->w = writer_open(core_get(L), path, fp, err, sizeof err);
  if (lw->w == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  luaL_setmetatable(L, WRITER_MT);
  return 1;
}

/* core.writer(path, ["a", segment, keep]) -> writer | nil, message.
 * "a": appended to (a resumed run's report: its segment `segment`, cut to
 * `keep` bytes first), else replaced. */
static int l_core_writer(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *mode = luaL_optstring(L, 2, "w");
  int segment = (int)luaL_optinteger(L, 3, 0);
  lua_Integer keep = luaL_optinteger(L, 4, -1);
  char *seg;
  FILE *fp;
  lwriter *lw;
  int r, fd, e;
  if (strcmp(mode, "a") != 0) return push_writer(L, path, NULL);
  luaL_argcheck(L, segment >= 0, 3, "a segment >= 0");
  seg = writer_segment_path(path, segment);
  if (seg == NULL) return luaL_error(L, "out of memory");
  /* a resumed run: its last segment, cut after its last whole line (a
   * torn one is what the kill left half written) */
  fd = open(seg, O_WRONLY | O_APPEND | O_CLOEXEC);
  fp = fd < 0 ? NULL : fdopen(fd, "a");
  e = errno;
  if (fp != NULL && keep >= 0 && ftruncate(fd, (off_t)keep) != 0) {
    e = errno;
    fclose(fp);
    fp = NULL;
  } else if (fp == NULL && fd >= 0) {
    close(fd);
  }
  if (fp == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", seg, strerror(e));
    free(seg);
    return 2;
  }
  free(seg);
  r = push_writer(L, path, fp);
  if (r != 1) {
    fclose(fp);
    return r;
  }
  /* owned from here: buffered and closed as one writer_open opened */
  lw = lua_touserdata(L, -1);
  lw->w->owns_fp = 1;
  lw->w->buf = malloc(1 << 16);
  if (lw->w->buf != NULL) setvbuf(fp, lw->w->buf, _IOFBF, 1 << 16);
  /* rotation goes on from here: the next segment, at the same size */
  lw->w->segment = segment;
  if (fseeko(fp, 0, SEEK_END) == 0 && ftello(fp) > 0) lw->w->bytes = (uint64_t)ftello(fp);
  return 1;
}

/* core.stdio("stdout"|"stderr") -> writer */
static int l_core_stdio(lua_State *L) {
  const char *which = luaL_checkstring(L, 1);
  return push_writer(L, which, strcmp(which, "stderr") == 0 ? stderr : stdout);
}

static writer *check_writer(lua_State *L) {
  lwriter *lw = luaL_checkudata(L, 1, WRITER_MT);
  luaL_argcheck(L, lw->w != NULL, 1, "writer is closed");
  return lw->w;
}

/* true, or nil and the writer's first error */
static int push_status(lua_State *L, writer *w) {
  if (w->err) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", w->path, strerror(w->err));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* writer:write(s...) -> true | nil, message (the first error met) */
static int l_writer_write(lua_State *L) {
  writer *w = check_writer(L);
  int i, n = lua_gettop(L);
  for (i = 2; i <= n; i++) {
    size_t len;
    const char *s = luaL_checklstring(L, i, &len);
    writer_write(w, s, len);
  }
  return push_status(L, w);
}

/* writer:record(value, [type]) -> true | false | nil, message: value as
 * one line of JSON; with type (a string), a table's line starts with
 * "type":type, so a record need not be copied to say what it is.  false:
 * the value holds something only orch.output.json can render (a function,
 * a cycle...), nothing was written. */
static int l_writer_record(lua_State *L) {
  lwriter *lw = luaL_checkudata(L, 1, WRITER_MT);
  writer *w;
  size_t tl = 0;
  luaL_argcheck(L, lw->w != NULL, 1, "writer is closed");
  w = lw->w;
  luaL_checkany(L, 2);
  lw->buf.len = 0;
  /* [type-as-JSON-string][value]: the type first, so that no second buffer
   * is needed; it is escaped like any string (a quote in it must not end
   * the string early, a bad byte must not break the line's UTF-8) */
  if (lua_type(L, 3) == LUA_TSTRING) {
    size_t n;
    const char *ty = lua_tolstring(L, 3, &n);
    if (jsonw_string(&lw->buf, ty, n) != 0) return luaL_error(L, "not enough memory");
    tl = lw->buf.len;
  }
  if (jsonw_encode(&lw->buf, L, 2) != 0) {
    if (lw->buf.cap > (1u << 20)) jbuf_free(&lw->buf);
    lua_pushboolean(L, 0);
    return 1;
  }
  if (tl > 0 && lw->buf.data[tl] == '{') {
    /* record(t, type): {"type":<type>, then t's own fields */
    size_t rest = lw->buf.len - tl - 1;
    writer_line(w, "{\"type\":", 8, 8 + lw->buf.len + 2);
    writer_write(w, lw->buf.data, tl);
    if (rest > 1) writer_write(w, ",", 1);
    writer_write(w, lw->buf.data + tl + 1, rest);
  } else if (lw->buf.len - tl > 2 && lw->buf.data[tl] == '{') {
    /* an object: a record line, numbered */
    writer_line(w, lw->buf.data + tl, lw->buf.len - tl, lw->buf.len - tl + 1);
  } else {
    writer_write(w, lw->buf.data + tl, lw->buf.len - tl);
  }
  writer_write(w, "\n", 1);
  if (lw->buf.cap > (1u << 20)) jbuf_free(&lw->buf); /* do not keep a huge one */
  return push_status(L, w);
}

/* writer:seq([n]) -> the last record line's seq; with n, the next line
 * is numbered n + 1 (a resumed run counts on). */
static int l_writer_seq(lua_State *L) {
  lwriter *lw = luaL_checkudata(L, 1, WRITER_MT);
  writer *w = lw->w;
  if (w == NULL) return 0; /* closed */
  if (!lua_isnoneornil(L, 2)) writer_set_seq(w, luaL_checkinteger(L, 2));
  lua_pushinteger(L, w->seq);
  lua_pushinteger(L, w->segment);
  return 2;
}

/* writer:rotate(max_bytes): record lines go on in FILE.1.jsonl,
 * FILE.2.jsonl, ... once the current file would pass max_bytes. */
static int l_writer_rotate(lua_State *L) {
  writer *w = check_writer(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n >= 0, 2, "a size >= 0");
  w->max_bytes = (uint64_t)n;
  if (!lua_isnoneornil(L, 3)) w->segment = (int)luaL_checkinteger(L, 3);
  return 0;
}

static int l_writer_flush(lua_State *L) {
  writer *w = check_writer(L);
  writer_flush(w);
  return push_status(L, w);
}

/* writer:close() -> true | nil, message; a second close is harmless. */
static int l_writer_close(lua_State *L) {
  lwriter *lw = luaL_checkudata(L, 1, WRITER_MT);
  writer *w = lw->w;
  int err;
  jbuf_free(&lw->buf);
  if (w == NULL) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lw->w = NULL;
  err = writer_close(w);
  if (err) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", w->path, strerror(err));
  } else {
    lua_pushboolean(L, 1);
  }
  free(w->path);
  free(w);
  return err ? 2 : 1;
}

/* ---- registration ------------------------------------------------------- */

static void new_mt(lua_State *L, const char *name, const luaL_Reg *methods,
                   lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  if (gc != NULL) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
}

int luaopen_orch_core(lua_State *L);
int luaopen_orch_core(lua_State *L) {
  static const luaL_Reg task_m[] = {{"set_timeout", l_task_set_timeout},
                                    {"cancel", l_task_cancel},
                                    {"status", l_task_status},
                                    {"tag", l_task_tag},
                                    {"id", l_task_id},
                                    {NULL, NULL}};
  static const luaL_Reg timer_m[] = {{"start", l_timer_start},
                                     {"stop", l_timer_stop},
                                     {"close", l_timer_close},
                                     {NULL, NULL}};
  static const luaL_Reg ticker_m[] = {{"close", l_ticker_close},
                                      {"flush", l_ticker_flush},
                                      {NULL, NULL}};
  static const luaL_Reg flag_m[] = {{"set", l_flag_set},
                                    {"is_set", l_flag_is_set},
                                    {"wait", l_flag_wait},
                                    {NULL, NULL}};
  static const luaL_Reg writer_m[] = {{"write", l_writer_write},
                                      {"record", l_writer_record},
                                      {"flush", l_writer_flush},
                                      {"seq", l_writer_seq},
                                      {"rotate", l_writer_rotate},
                                      {"close", l_writer_close},
                                      {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"start_clock", l_core_start_clock}, {"now", l_core_now},
      {"time_scale", l_core_time_scale},
      {"trim_threads", l_core_trim_threads},
      {"hrtime", l_core_hrtime}, {"fnv1a", l_core_fnv1a}, {"wall", l_core_wall},
      {"iso8601", l_core_iso8601}, {"ts", l_core_ts}, {"stamp", l_core_stamp},
      {"run", l_core_run}, {"stop", l_core_stop},
      {"stats", l_core_stats}, {"on_signal", l_core_on_signal},
      {"signals", l_core_signals},
      {"set_grace", l_core_set_grace},
      {"set_hard_deadline", l_core_set_hard_deadline},
      {"set_end", l_core_set_end}, {"on_loop_lag", l_core_on_loop_lag},
      {"go", l_core_go}, {"current", l_core_current}, {"set_context", l_core_set_context},
      {"sleep", l_core_sleep}, {"timer", l_core_timer},
      {"ticker", l_core_ticker}, {"flag", l_core_flag},
      {"writer", l_core_writer}, {"stdio", l_core_stdio},
      {NULL, NULL}};
  if (core_get(L) == NULL)
    return luaL_error(L, "orch.core needs the orchlua host (run this with orchlua)");
  new_mt(L, TASK_MT, task_m, NULL);
  new_mt(L, TIMER_MT, timer_m, l_timer_close);
  new_mt(L, TICKER_MT, ticker_m, l_ticker_close);
  new_mt(L, FLAG_MT, flag_m, NULL);
  new_mt(L, WRITER_MT, writer_m, l_writer_close);
  luaL_newlib(L, funcs);
  queue_open(L);
  lua_setfield(L, -2, "queue");
  lua_pushcfunction(L, queue_make_add_result);
  lua_setfield(L, -2, "queue_add_result");
  proc_open(L);
  net_open(L);
  guardian_open(L);
  invoker_open(L);
  series_open(L);
  metrics_open(L);
  http_open(L);
  lua_pushinteger(L, ORCH_API_VERSION);
  lua_setfield(L, -2, "api_version");
  return 1;
}
