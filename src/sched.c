/*
 * sched.c - tasks: one coroutine per invocation, resumed only here.
 *
 * A task is resumed from the ready idle handle, or started by a ticker's
 * firing (sched_start), i.e. from a loop callback and never from inside
 * another coroutine.  Waking a task (timer, flag,
 * queue, process exit) pushes the resume values onto the task's stack and
 * appends it to core->ready.  A task that finishes, fails, times out or is
 * cancelled calls done(task, status, tag, err) on the main thread, then gives back its
 * refs and handles.
 *
 * CPU-bound code cannot be stopped by a timer, because the loop does not run
 * while it does.  A count hook would, but a hook on every task makes every
 * Lua instruction go through the debugger (a tight loop runs much slower).
 * So a watchdog thread looks at the running task every WATCH_MS and, once
 * a deadline has passed, sets the hook on that task's coroutine (as lua.c
 * does from its signal handler); the hook raises, re-armed to every
 * instruction so that a pcall in user code cannot swallow it.  While the
 * loop waits in its poll no task can run, and the watchdog sleeps until
 * the poll returns, instead of waking for nothing.
 *
 * Every step is bounded (DESIGN "run semantics").  The watchdog stops a
 * task past its timeout, past T + grace (a CPU-bound event without
 * timeout_sec would keep the loop from ever reaching T), after the
 * grace that follows a signal, and at a second signal.  User code that
 * runs outside any task (a <close> handler run when a failed coroutine is
 * reset, an error object's __tostring) runs guarded: the same hook stops
 * it after the grace.  What no hook can stop (a __gc, which Lua runs with
 * hooks off; a C call that never returns) meets the last resort: a loop
 * turn still not over past last_ns (T + three graces, or the signals'
 * bounds) ends orchlua from this thread, its process groups killed and
 * its report flushed, and the guardian (guardian.c) undoes the rest.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"

#include "core.h"
#include "guardian.h"

#define WATCH_MS 10
#define LAST_MS 1000 /* the last resort's margin over the bounds it checks */
#define POOL_MAX 16384 /* coroutines kept for reuse, about 1 KB each */

task *sched_current(lua_State *L) {
  orch_core *c = core_get(L);
  return (c != NULL && c->running != NULL && c->running->co == L) ? c->running
                                                                  : NULL;
}

/* The running task, or an error naming the helper that needs one. */
task *sched_need_task(lua_State *L, const char *what) {
  task *t = sched_current(L);
  if (t == NULL)
    luaL_error(L, "%s must be called from an event, a fixture or the reporter "
                  "(a task on orchlua's loop), not from %s",
               what, core_get(L) && core_get(L)->running ? "a nested coroutine"
                                                        : "outside any task");
  return t;
}

/* The tag a callback outside any task acts for (core.set_context): kept
 * in one registry slot, by key. */
static const char CTX_KEY = 'c';

void sched_set_context(lua_State *L) {
  core_get(L)->ctx_set = !lua_isnil(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &CTX_KEY);
}

int sched_push_context(lua_State *L) {
  if (!core_get(L)->ctx_set) return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &CTX_KEY);
  return 1;
}

uint64_t sched_real_ms(orch_core *c, double desc_sec) {
  double ms = desc_sec * 1000.0 / c->clock.scale;
  if (ms <= 0) return 0;
  if (ms > 1e15) ms = 1e15;
  return (uint64_t)(ms + 0.5);
}

/* --time-scale compresses the schedule, never a bound on real work: a
 * rehearsal must not time out where the real run would pass. */
uint64_t sched_bound_ms(orch_core *c, double desc_sec) {
  double ms = desc_sec * 1000.0 / (c->clock.scale < 1 ? c->clock.scale : 1);
  if (ms <= 0) return 0;
  if (ms > 1e15) ms = 1e15;
  return (uint64_t)(ms + 0.5);
}
static int safe_tostring(lua_State *L);

/* msghandler for sched_call: any error value becomes a string with a
 * traceback, as lua.c does. */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    orch_core *c = core_get(L);
    if (luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
      int st, guarded = c != NULL && c->watch.guard_co == NULL;
      lua_pop(L, 1);
      /* user code: protected (the guard's hook raises), and bounded */
      lua_pushcfunction(L, safe_tostring);
      lua_pushvalue(L, 1);
      if (guarded) sched_guard_begin(c, L);
      st = lua_pcall(L, 1, 1, 0);
      if (guarded) sched_guard_end(c);
      if (st == LUA_OK && lua_type(L, -1) == LUA_TSTRING) return 1;
      lua_pop(L, 1);
    }
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below nargs arguments on L in protected mode.  An
 * error in the engine's own callbacks is printed and the loop goes on: a
 * soak run must not die of one bad callback.  [fn args...] -> [results] */
int sched_call(lua_State *L, int nargs, int nres) {
  int base = lua_gettop(L) - nargs;
  int st;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  st = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);
  if (st != LUA_OK) {
    fprintf(stderr, "orchlua: internal error: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    if (nres > 0) {
      int i;
      for (i = 0; i < nres; i++) lua_pushnil(L);
    }
  }
  return st;
}

static int must_stop(orch_core *c, task *t, uint64_t now);
static void watchdog(void *arg);

static void task_hook(lua_State *L, lua_Debug *ar) {
  orch_core *c = core_get(L);
  task *t = c->running;
  (void)ar;
  if (t == NULL) return;
  if (t->cancel == C_NONE) {
    uint64_t now = uv_hrtime();
    if (t->deadline_ns != 0 && now >= t->deadline_ns)
      t->cancel = C_TIMEOUT;
    else if (must_stop(c, t, now))
      t->cancel = C_CANCELLED;
  }
  if (t->cancel != C_NONE) {
    lua_sethook(t->co, task_hook, LUA_MASKCOUNT, 1);
    lua_sethook(L, task_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, t->cancel == C_TIMEOUT ? "timeout" : "cancelled");
  }
}

/* The hook of guarded code: raises at every instruction until it ends. */
static void guard_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, guard_hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "stopped: still running after the grace period");
}

/* User code about to run on co outside any task: the watchdog stops it
 * grace_ns from now (at once after a second signal). */
void sched_guard_begin(orch_core *c, lua_State *co) {
  uint64_t g = c->bound.grace_ns > 10000000u ? c->bound.grace_ns : 10000000u;
  uv_mutex_lock(&c->watch.mu);
  c->watch.guard_co = co;
  c->watch.guard_ns = uv_hrtime() + g;
  c->watch.guard_hooked = 0;
  uv_mutex_unlock(&c->watch.mu);
}

void sched_guard_end(orch_core *c) {
  int hooked;
  lua_State *co;
  uv_mutex_lock(&c->watch.mu);
  hooked = c->watch.guard_hooked;
  co = c->watch.guard_co;
  c->watch.guard_co = NULL;
  c->watch.guard_hooked = 0;
  uv_mutex_unlock(&c->watch.mu);
  if (hooked && co != NULL) lua_sethook(co, NULL, 0, 0);
}

static void on_idle(uv_idle_t *h);

void sched_ready(task *t) {
  orch_core *c = t->core;
  if (t->state == T_DONE) return;
  list_remove(&t->wait);
  if (t->timer != NULL) uv_timer_stop(t->timer);
  t->state = T_READY;
  list_remove(&t->ready);
  list_push(&c->ready, &t->ready);
  if (!uv_is_active((uv_handle_t *)&c->ready_idle))
    UV_CHECK(uv_idle_start(&c->ready_idle, on_idle));
}

int sched_wait(lua_State *L, task *t) {
  if (t->state == T_RUNNING) t->state = T_WAITING;
  return lua_yield(L, 0);
}

static void on_task_timer(uv_timer_t *h) {
  task *t = h->data;
  if (t == NULL || t->state != T_WAITING) return;
  if (t->on_wait_cancel != NULL) t->on_wait_cancel(t);
  t->on_wait_cancel = NULL;
  if (t->timer_pushes == 1) {
    lua_pushboolean(t->co, 0);
    t->nargs = 1;
  } else if (t->timer_pushes == 2) {
    lua_pushnil(t->co);
    lua_pushliteral(t->co, "timeout");
    t->nargs = 2;
  }
  sched_ready(t);
}

/* The uv timer timeout that expires no earlier than `ms` after the real
 * time `from_ns`: libuv counts from the loop's cached time, which may be
 * behind the clock by the time spent in callbacks since it was updated. */
uint64_t sched_timeout_from(orch_core *c, uint64_t from_ns, uint64_t ms) {
  uint64_t due_ms = (from_ns + ms * 1000000u + 999999u) / 1000000u;
  uint64_t now_ms = uv_now(&c->loop);
  return due_ms > now_ms ? due_ms - now_ms : 0;
}

void sched_timer_wait(task *t, uint64_t ms, int pushes) {
  if (t->timer == NULL) {
    t->timer = handle_new(t->core, sizeof *t->timer);
    UV_CHECK(uv_timer_init(&t->core->loop, t->timer));
    t->timer->data = t;
  }
  t->timer_pushes = pushes;
  UV_CHECK(uv_timer_start(t->timer, on_task_timer, sched_timeout_from(t->core, uv_hrtime(), ms), 0));
}

static void on_deadline(uv_timer_t *h) {
  task *t = h->data;
  if (t != NULL && t->state != T_DONE && t->state != T_RUNNING)
    sched_cancel(t, C_TIMEOUT);
}

void sched_set_timeout(task *t, uint64_t ms) {
  if (t->state == T_DONE) return;
  t->deadline_ns = t->started_ns + ms * 1000000u;
  if (t->deadline == NULL) {
    t->deadline = handle_new(t->core, sizeof *t->deadline);
    UV_CHECK(uv_timer_init(&t->core->loop, t->deadline));
    t->deadline->data = t;
  }
  UV_CHECK(uv_timer_start(t->deadline, on_deadline, sched_timeout_from(t->core, t->started_ns, ms), 0));
}

/* Protected __tostring of an error value: it may itself raise. */
static int safe_tostring(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Leaves on L the message for a task that ended with status st on co. */
static void push_task_error(lua_State *L, task *t, int st) {
  lua_State *co = t->co;
  const char *msg;
  int pst;
  if (t->cancel == C_TIMEOUT) {
    if (t->forensics != NULL) {  /* what its processes did before they were killed */
      lua_pushfstring(L, "timeout\n%s", t->forensics);
      free(t->forensics);
      t->forensics = NULL;
    } else {
      lua_pushliteral(L, "timeout");
    }
  } else if (t->cancel == C_CANCELLED) {
    lua_pushliteral(L, "cancelled");
  } else if (st == LUA_ERRMEM) {
    lua_pushliteral(L, "not enough memory");
  } else if (lua_type(co, -1) == LUA_TSTRING || lua_type(co, -1) == LUA_TNUMBER) {
    lua_pushstring(L, lua_tostring(co, -1));
  } else if (luaL_getmetafield(co, -1, "__tostring") != LUA_TNIL) {
    lua_pop(co, 1);
    lua_pushcfunction(L, safe_tostring);
    lua_pushvalue(co, -1);
    lua_xmove(co, L, 1);                                   /* [f err] */
    sched_guard_begin(t->core, L);
    pst = lua_pcall(L, 1, 1, 0);
    sched_guard_end(t->core);
    if (pst != LUA_OK) {
      msg = lua_pushfstring(L, "(error object's __tostring failed: %s)",
                            lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
      lua_remove(L, -2);
      (void)msg;
    }
  } else {
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(co, -1));
  }
  /* [msg] -> [msg+traceback]; the dead coroutine still holds its frames */
  if (st != LUA_ERRMEM) {
    msg = lua_tostring(L, -1);
    luaL_traceback(L, co, msg, 0);
    lua_remove(L, -2);
  }
}

static const char *status_name(task *t, int st) {
  if (t->cancel == C_TIMEOUT) return "timeout";
  if (t->cancel == C_CANCELLED) return "cancelled";
  return st == LUA_OK ? "ok" : "error";
}

/* Pushes the error message of a task that ended with st, nil if none. */
static void task_error(lua_State *L, task *t, int st, const char *forced_err) {
  if (forced_err != NULL) {
    luaL_traceback(L, t->co, forced_err, 0);
  } else if (st == LUA_OK && t->cancel == C_NONE) {
    lua_pushnil(L);
  } else {
    push_task_error(L, t, st);
  }
}

static void pool_grow(orch_core *c) {
  if (c->pool.n == c->pool.cap && c->pool.cap < POOL_MAX) {
    int cap = c->pool.cap ? c->pool.cap * 2 : 64;
    lua_State **p = realloc(c->pool.co, (size_t)cap * sizeof *p);
    int *r = p ? realloc(c->pool.ref, (size_t)cap * sizeof *r) : NULL;
    if (p) c->pool.co = p;
    if (r) {
      c->pool.ref = r;
      c->pool.cap = cap;
    }
  }
}

/* Lets the pool go down to keep coroutines.  Every live coroutine is
 * walked again at each young collection (the collector never treats a
 * thread as done); released young, they are freed by the next one. */
void sched_trim(lua_State *L, int keep) {
  orch_core *c = core_get(L);
  while (c->pool.n > keep) {
    c->pool.n--;
    ref_free(L, &c->pool.ref[c->pool.n]);
  }
}

/* A thread that returned, or that reset cleanly (closing pending
 * to-be-closed variables), is as good as new and goes back to the pool;
 * else its ref goes. */
static void task_release_co(orch_core *c, task *t) {
  int reusable;
  pool_grow(c);
  /* a coroutine that returned is reusable as it is: resetting it would
   * shrink its stack, to be grown again by the next task (a realloc and
   * memmove per invocation) */
  if (lua_status(t->co) == LUA_OK) {
    reusable = 1;
  } else {
    /* resetting runs its pending <close> handlers: user code, guarded */
    sched_guard_begin(c, t->co);
    reusable = lua_resetthread(t->co) == LUA_OK;
    sched_guard_end(c);
  }
  if (reusable && c->pool.n < c->pool.cap) {
    lua_settop(t->co, 0);
    c->pool.co[c->pool.n] = t->co;
    c->pool.ref[c->pool.n++] = t->co_ref;
    t->co_ref = LUA_NOREF;
  }
  ref_free(c->L, &t->co_ref);
}

/* A task fired before its turn gets its coroutine now (invoker.c). */
static void task_bind(task *t) {
  if (t->co == NULL && t->bind != NULL) {
    t->bind(t);
    t->bind = NULL;
  }
}

/* Ends a task: calls done(task, status, tag, err), then releases it all. */
static void task_finish(task *t, int st, const char *forced_err) {
  orch_core *c = t->core;
  lua_State *L = c->L;
  const char *status = forced_err ? "error" : status_name(t, st);
  if (t->state == T_DONE) return;
  task_bind(t); /* ended before it started: its error and traceback need co */
  t->state = T_DONE;
  list_remove(&t->ready);
  list_remove(&t->wait);
  if (t->on_wait_cancel != NULL) t->on_wait_cancel(t);
  t->on_wait_cancel = NULL;
  /* a timeout explained: its processes' state before they are killed */
  if (t->cancel == C_TIMEOUT && pgroup_forensics(L, t)) {
    t->forensics = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  if (t->cancel != C_NONE) pgroup_task_cancelled(t);
  handle_close((uv_handle_t *)t->timer);
  t->timer = NULL;
  handle_close((uv_handle_t *)t->deadline);
  t->deadline = NULL;
  if (t->on_finish != NULL) {
    /* an invoker's task: refs shared with its invoker, none of its own */
    task_error(L, t, st, forced_err);                    /* [err] */
    task_release_co(c, t);
    c->live.tasks--;
    t->on_finish(t, status);                             /* pops err; may free t */
    return;
  }
  ref_push(L, t->done_ref);                              /* [done] */
  ref_push(L, t->self_ref);                              /* [done task] */
  lua_pushstring(L, status);                             /* [done task status] */
  ref_push(L, t->tag_ref);                               /* [done task status tag] */
  task_error(L, t, st, forced_err);                      /* [done task status tag err] */
  task_release_co(c, t);
  c->live.tasks--;
  if (lua_isnil(L, -5)) {
    lua_pop(L, 5);
  } else {
    sched_call(L, 4, 0);
  }
  ref_free(L, &t->done_ref);
  ref_free(L, &t->tag_ref);
  ref_free(L, &t->co_ref);
  ref_free(L, &t->self_ref);
}

/* The loop-lag watchdog's finding, after the resume that held the loop:
 * lag_cb(tag, seconds) on the main thread (the engine makes a loop_lag
 * result of it). */
static void report_lag(orch_core *c, task *t) {
  lua_State *L = c->L;
  double held = (double)(uv_hrtime() - c->watch.lag_since) / 1e9;
  if (c->watch.lag_cb_ref == LUA_NOREF || t->tag_ref == LUA_NOREF) return;
  ref_push(L, c->watch.lag_cb_ref);
  ref_push(L, t->tag_ref);
  lua_pushnumber(L, held);
  sched_call(L, 2, 0);
}

static void task_resume(orch_core *c, task *t) {
  int nres, st, lagged;
  int nargs;
  task_bind(t);
  nargs = t->nargs;
  t->nargs = 0;
  t->state = T_RUNNING;
  uv_mutex_lock(&c->watch.mu);
  c->running = t;
  c->watch.resume_serial++;
  uv_mutex_unlock(&c->watch.mu);
  st = lua_resume(t->co, c->L, nargs, &nres);
  uv_mutex_lock(&c->watch.mu);
  c->running = NULL;
  lagged = c->watch.lag_flag;
  c->watch.lag_flag = 0;
  uv_mutex_unlock(&c->watch.mu);
  if (lagged) report_lag(c, t);
  if (st == LUA_YIELD) {
    lua_pop(t->co, nres);
    if (t->cancel != C_NONE) {
      task_finish(t, LUA_ERRRUN, NULL);
    } else if (t->state == T_RUNNING) {
      task_finish(t, LUA_ERRRUN,
                  "yielded outside an orch helper (use orch.sleep, "
                  "kill_switch:wait or a process wait to wait)");
    }
    return;
  }
  task_finish(t, st, NULL);
}

/* Starts a new task at once when called from a loop callback outside any
 * task (a ticker's firing): firings due together then run one after
 * another on the same pooled coroutine, where queueing them all first
 * would keep a coroutine per firing live, cold in the cache by its turn.  Inside a task, or behind tasks already ready
 * (whose order it keeps), it waits its turn as sched_ready. */
void sched_start(task *t) {
  orch_core *c = t->core;
  if (c->running != NULL || !list_empty(&c->ready)) {
    sched_ready(t);
    return;
  }
  task_resume(c, t);
}

/* Runs the tasks that were ready when the idle callback began, then the
 * deferred work and the tasks it started; whatever is made ready after
 * that waits for the next iteration, so timers are never starved, and an
 * overdue ticker fires at most once per iteration, each firing's task
 * started before the next firing. */
static void run_ready(orch_core *c) {
  orch_list batch;
  list_take(&batch, &c->ready);
  while (!list_empty(&batch)) {
    task *t = list_entry(batch.next, task, ready);
    list_remove(&t->ready);
    task_resume(c, t);
  }
}

static void on_idle(uv_idle_t *h) {
  orch_core *c = h->data;
  orch_list batch;
  run_ready(c);
  if (!list_empty(&c->deferred)) {
    list_take(&batch, &c->deferred);
    while (!list_empty(&batch)) {
      deferred *d = list_entry(batch.next, deferred, node);
      list_remove(&d->node);
      d->fn(d);
    }
    /* the tasks those firings started run now, before the next timers */
    run_ready(c);
  }
  if (list_empty(&c->ready) && list_empty(&c->deferred)) uv_idle_stop(h);
}

void sched_defer(orch_core *c, deferred *d) {
  list_remove(&d->node);
  list_push(&c->deferred, &d->node);
  if (!uv_is_active((uv_handle_t *)&c->ready_idle))
    UV_CHECK(uv_idle_start(&c->ready_idle, on_idle));
}

void sched_cancel(task *t, int why) {
  if (t->state == T_DONE) return;
  if (t->state == T_RUNNING) {
    /* only the running task itself can ask this; the hook raises at once */
    t->cancel = why;
    lua_sethook(t->co, task_hook, LUA_MASKCOUNT, 1);
    return;
  }
  t->cancel = why;
  task_finish(t, LUA_ERRRUN, NULL);
}

/* Right before the loop may block: flush the outputs, and bring the loop's
 * clock up to date, since libuv 1.44 computes the poll timeout from the
 * time cached before the timers and tasks ran, which would add this
 * iteration's work to the next timer's lateness. */
static void on_flush(uv_prepare_t *h) {
  orch_core *c = h->data;
  writer_flush_all(c);
  uv_update_time(h->loop);
  /* the poll may block (uv_backend_timeout says 0 while libuv has new
   * descriptors to register, which it does in the poll itself) */
  __atomic_store_n(&c->watch.turn_ns, uv_hrtime(), __ATOMIC_RELAXED);
  if (!uv_is_active((uv_handle_t *)&c->ready_idle)) {
    uv_mutex_lock(&c->watch.mu);
    c->watch.loop_blocked = 1;
    uv_mutex_unlock(&c->watch.mu);
  }
}

/* Right after the poll: tasks may run again, the watchdog must look. */
static void on_wake(uv_check_t *h) {
  orch_core *c = h->data;
  if (!c->watch.loop_blocked) return; /* only this thread sets it */
  uv_mutex_lock(&c->watch.mu);
  c->watch.loop_blocked = 0;
  __atomic_store_n(&c->watch.turn_ns, uv_hrtime(), __ATOMIC_RELAXED);
  if (c->watch.asleep) uv_cond_signal(&c->watch.cv);
  uv_mutex_unlock(&c->watch.mu);
}

/* Signal handler: only counts, stamps and wakes the loop (uv_async_send is
 * async-signal-safe).  The count hook reads sig_count, so a second signal
 * stops even a CPU-bound event. */
static orch_core *sig_core;

static void on_signal_raw(int signum) {
  orch_core *c = sig_core;
  struct timespec ts;
  uint64_t now;
  if (c == NULL) return;
  if (c->sig.early) {
    /* nothing runs yet that an orderly stop would wait for: a .orchlua or
     * a source whose top level loops, a long walk of the descriptions */
    static const char msg[] = "orchlua: stopped by a signal before the run started\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    guardian_done();
    _exit(128 + signum);
  }
  clock_gettime(CLOCK_MONOTONIC, &ts);
  now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  if (c->sig.count == 0) c->sig.first_ns = now;
  c->sig.last = signum;
  c->sig.count++;
  uv_async_send(&c->sig.async);
}

static void on_sig_async(uv_async_t *h) {
  orch_core *c = h->data;
  while (c->sig.seen < c->sig.count) {
    c->sig.seen++;
    if (c->sig.cb_ref == LUA_NOREF) continue;
    ref_push(c->L, c->sig.cb_ref);
    lua_pushinteger(c->L, c->sig.last);
    lua_pushinteger(c->L, c->sig.seen);
    sched_call(c->L, 2, 0);
  }
}

void sched_init(orch_core *c) {
  struct sigaction sa;
  list_init(&c->ready);
  list_init(&c->deferred);
  list_init(&c->writers);
  UV_CHECK(uv_idle_init(&c->loop, &c->ready_idle));
  c->ready_idle.data = c;
  UV_CHECK(uv_prepare_init(&c->loop, &c->flush_prep));
  c->flush_prep.data = c;
  UV_CHECK(uv_prepare_start(&c->flush_prep, on_flush));
  uv_unref((uv_handle_t *)&c->flush_prep);
  UV_CHECK(uv_check_init(&c->loop, &c->wake_check));
  c->wake_check.data = c;
  UV_CHECK(uv_check_start(&c->wake_check, on_wake));
  uv_unref((uv_handle_t *)&c->wake_check);
  UV_CHECK(uv_async_init(&c->loop, &c->sig.async, on_sig_async));
  c->sig.async.data = c;
  uv_unref((uv_handle_t *)&c->sig.async);
  c->sig.cb_ref = LUA_NOREF;
  c->watch.lag_cb_ref = LUA_NOREF;
  c->sig.early = 1;
  UV_CHECK(uv_mutex_init(&c->watch.mu));
  UV_CHECK(uv_cond_init(&c->watch.cv));
  UV_CHECK(uv_thread_create(&c->watch.thread, watchdog, c));
  /* one process, one host: the signal handler needs a global */
  sig_core = c;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal_raw;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* Whether the running task t must stop now (a deadline has passed). */
static int must_stop(orch_core *c, task *t, uint64_t now) {
  return (t->deadline_ns != 0 && now >= t->deadline_ns) ||
         (c->bound.hard_ns != 0 && now >= c->bound.hard_ns) || c->sig.count >= 2 ||
         (c->bound.end_ns != 0 && now >= c->bound.end_ns + c->bound.grace_ns) ||
         (c->sig.count == 1 && c->bound.grace_ns != 0 && now >= c->sig.first_ns + c->bound.grace_ns);
}

/* The instant past which a loop turn that has not ended is hopeless: T and
 * three graces (teardown, the kill switch's, the finalisers'); a signal's
 * two graces; a second signal's one; a third signal's none. */
static uint64_t last_bound(orch_core *c) {
  uint64_t b = c->bound.last_ns, s;
  int n = c->sig.count;
  if (n >= 1) {
    s = c->sig.first_ns + (n >= 3 ? 0 : (uint64_t)(n >= 2 ? 1 : 2) * c->bound.grace_ns);
    if (b == 0 || s < b) b = s;
  }
  return b == 0 ? 0 : b + (uint64_t)LAST_MS * 1000000u;
}

/* The last resort, from the watchdog thread while the main thread is
 * stuck: what it is stuck in touches neither the process groups nor (at
 * worst) the report's buffer, which is flushed as the loop would. */
static void last_resort(orch_core *c) {
  static const char msg[] = "orchlua: a step never ended (a __gc, a C call that does not return): "
                            "exiting without the orderly end; the guardian ends what is left\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  pgroup_last_resort();
  writer_flush_all(c);
  _exit(c->sig.count > 0 ? 128 + c->sig.last : 1);
}

static void watchdog(void *arg) {
  orch_core *c = arg;
  for (;;) {
    task *t;
    uint64_t now;
    uv_mutex_lock(&c->watch.mu);
    /* a condition, not a sleep: the exit need not wait for the next look */
    if (!c->watch.stop && c->watch.loop_blocked) {
      c->watch.asleep = 1;
      while (!c->watch.stop && c->watch.loop_blocked) uv_cond_wait(&c->watch.cv, &c->watch.mu);
      c->watch.asleep = 0;
    }
    if (!c->watch.stop) uv_cond_timedwait(&c->watch.cv, &c->watch.mu, (uint64_t)WATCH_MS * 1000000u);
    if (c->watch.stop) {
      uv_mutex_unlock(&c->watch.mu);
      return;
    }
    c->watch.looks++;
    t = c->running;
    now = uv_hrtime();
    if (t != NULL && !t->hooked && must_stop(c, t, now)) {
      /* lua_sethook is safe to call asynchronously (lua.c's laction) */
      t->hooked = 1;
      lua_sethook(t->co, task_hook, LUA_MASKCOUNT, 1);
    }
    if (t != NULL && c->watch.lag_ns != 0 && !c->watch.lag_flag) {
      /* the same resume as at the last look: it has held the loop since */
      if (c->watch.lag_serial != c->watch.resume_serial) {
        c->watch.lag_serial = c->watch.resume_serial;
        c->watch.lag_since = now;
      } else if (now - c->watch.lag_since >= c->watch.lag_ns) {
        c->watch.lag_flag = 1;
      }
    }
    if (c->watch.guard_co != NULL && !c->watch.guard_hooked && (now >= c->watch.guard_ns || c->sig.count >= 2)) {
      c->watch.guard_hooked = 1;
      lua_sethook(c->watch.guard_co, guard_hook, LUA_MASKCOUNT, 1);
    }
    if (c->in_loop && !c->watch.loop_blocked) {
      uint64_t b = last_bound(c), turn = __atomic_load_n(&c->watch.turn_ns, __ATOMIC_RELAXED);
      if (b != 0 && turn != 0 && now >= b && now >= turn + (uint64_t)LAST_MS * 1000000u) last_resort(c);
    }
    uv_mutex_unlock(&c->watch.mu);
  }
}

/* Clears what a previous task left on a pooled coroutine. */
void sched_hook(lua_State *co) {
  lua_sethook(co, NULL, 0, 0);
}

/* A coroutine ready to run a function: from the pool, or new.  The caller
 * owns *ref (released with ref_free or given back by task_finish). */
lua_State *sched_thread(lua_State *L, int *ref) {
  orch_core *c = core_get(L);
  lua_State *co;
  if (c->pool.n > 0) {
    c->pool.n--;
    *ref = c->pool.ref[c->pool.n];
    co = c->pool.co[c->pool.n];
  } else {
    co = lua_newthread(L);                              /* [co] */
    *ref = ref_new(L);                                  /* [] */
  }
  sched_hook(co);  /* a stopped task's thread still has its hook */
  return co;
}

static void pool_free(orch_core *c) {
  while (c->pool.n > 0) {
    c->pool.n--;
    ref_free(c->L, &c->pool.ref[c->pool.n]);
  }
  free(c->pool.co);
  free(c->pool.ref);
  c->pool.co = NULL;
  c->pool.ref = NULL;
  c->pool.cap = 0;
}

static void on_walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  handle_close(h); /* every handle left is one of handle_new's */
}

/* The exit path, in two steps around lua_close:
 *
 * sched_shutdown (Lua still open): no more watchdog or signals, spawned
 * process groups killed and reaped, pooled threads released, writers
 * flushed.
 *
 * lua_close then runs the finalizers, which close the handles their
 * userdata own (timers, tickers, the queue's async, connections); all
 * finalizers run before any object is freed, so nothing they touch is gone.
 *
 * sched_close (Lua gone): whatever handle is left (a waiting task's timer)
 * is closed without its callback ever running again, the loop runs only
 * close callbacks, and is closed.  No Lua is called from here on. */
void sched_shutdown(orch_core *c) {
  if (c->shut) return;
  c->shut = 1;
  pool_free(c);
  uv_mutex_lock(&c->watch.mu);
  c->watch.stop = 1;
  uv_cond_signal(&c->watch.cv);
  uv_mutex_unlock(&c->watch.mu);
  uv_thread_join(&c->watch.thread);
  uv_cond_destroy(&c->watch.cv);
  uv_mutex_destroy(&c->watch.mu);
  pgroup_shutdown(c); /* before the signals go back to their defaults */
  sig_core = NULL;
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  writer_flush_all(c);
}

void sched_close(orch_core *c) {
  if (c->closed) return;
  c->closed = 1;
  sched_shutdown(c);
  /* tasks made ready by finalizers must never run: their Lua is gone */
  list_init(&c->ready);
  list_init(&c->deferred);
  uv_close((uv_handle_t *)&c->ready_idle, NULL);
  uv_close((uv_handle_t *)&c->flush_prep, NULL);
  uv_close((uv_handle_t *)&c->wake_check, NULL);
  uv_close((uv_handle_t *)&c->sig.async, NULL);
  uv_walk(&c->loop, on_walk_close, NULL);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  uv_loop_close(&c->loop);
  jbuf_free(&c->line);
}
