/*
 * core.h - the per-state host: one libuv loop, the run clock, the task
 * scheduler and the objects tasks wait on.
 *
 * Only sched.c resumes coroutines, and only from loop callbacks (the ready
 * idle handle, timer callbacks through the ready list).  Everything that
 * wakes a task pushes its resume values onto the task's own stack and puts
 * it on the ready list; nothing resumes a coroutine from inside another.
 */
#ifndef ORCH_CORE_H
#define ORCH_CORE_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "lua.h"

#include "jsonw.h"
#include "list.h"

/* Work put off to the idle callback of this loop iteration, after the
 * ready tasks have run (an overdue ticker's next firing). */
typedef struct deferred {
  orch_list node;
  void (*fn)(struct deferred *d);
} deferred;

enum task_state { T_READY, T_RUNNING, T_WAITING, T_DONE };

/* Why a task ended other than by returning or raising on its own. */
enum task_cancel { C_NONE, C_TIMEOUT, C_CANCELLED };

typedef struct orch_core orch_core;

typedef struct task {
  orch_core *core;
  lua_State *co;        /* the coroutine; anchored by co_ref */
  int self_ref;         /* the orch.Task userdata, held until the task ends */
  int co_ref;
  int done_ref;         /* done(task, status, tag, err), on the main thread */
  int tag_ref;          /* any Lua value the engine attaches (the invocation) */
  int state;            /* enum task_state */
  int nargs;            /* values waiting on co's stack for the next resume */
  int cancel;           /* enum task_cancel: set, then raised or applied */
  int hooked;           /* the watchdog has set the stopping hook */
  char *forensics;      /* a timeout's process report, for its error (malloc'd) */
  orch_list ready; /* on core->ready while T_READY */
  orch_list wait;  /* on a waitlist while T_WAITING on a flag/queue */
  uv_timer_t *timer;    /* sleep and wait timeouts; malloc'd, lazily */
  int timer_pushes;     /* what a timer wake-up pushes: 0 none, 1 false, 2 nil,"timeout" */
  uv_timer_t *deadline; /* timeout_sec while the task is waiting */
  uint64_t deadline_ns; /* same deadline for the count hook (CPU-bound code) */
  uint64_t started_ns;
  uint64_t id;
  void (*on_wait_cancel)(struct task *); /* detaches a pending non-list wait */
  void *wait_data;
  /* set for an invoker's task (invoker.c): called last, instead of the
   * Lua done, with the status and the error message (or nil) on the main
   * thread's stack, which it pops; it may free the task */
  void (*on_finish)(struct task *, const char *status);
  /* set while co is NULL: takes the coroutine and pushes the arguments
   * when the task starts (or ends unstarted) */
  void (*bind)(struct task *);
} task;

/* stats.c: a summary of samples (see stats.c for the rules) */
#define STATS_EXACT 64
struct stats_bucket {
  int b;
  uint64_t count;
};
typedef struct stats {
  uint64_t n;
  double sum, min, max;
  int nexact;                 /* -1 once in buckets */
  int sorted;                 /* exact[] is in order (percentile sorted it) */
  int capexact;               /* room in exact, grown as samples come */
  double *exact;              /* from the state's allocator: 10,000 events' stats hold few samples */
  lua_Alloc allocf;           /* the state's allocator (its size classes: a growth costs no malloc) */
  void *allocud;
  struct stats_bucket *bk;    /* sorted by b */
  size_t nb, capb, hint;
} stats;
void stats_add(stats *s, double v);
/* Asks for the lines the next stats_add(s) will write, sample n (0-based)
 * being a guess at its count: with 10,000 events they are cold, and load
 * while the firing's body runs. */
static inline void stats_prefetch(const stats *s, uint64_t n) {
  __builtin_prefetch(s, 1);
  if (n < (uint64_t)s->capexact) __builtin_prefetch(&s->exact[n], 1);
}
double stats_percentile(stats *s, double p);
#define STATS_MT "orch.Stats"
stats *stats_push(lua_State *L, int mti); /* mti: the metatable's index, or 0 */
int stats_push_new(lua_State *L);
stats *stats_check(lua_State *L, int idx);
void stats_open(lua_State *L);

/* Room a record line leaves before its '{' for {"seq":N (writer_line_at) */
#define WRITER_HEAD 32
/* series.c: what a check judges (see series.c) */
#define SERIES_SLOTS 20
#define SERIES_POINTS 64
typedef struct series_bin {
  int32_t k;
  uint32_t n;
} series_bin;
typedef struct series_hist {
  series_bin *v; /* sorted by k */
  uint32_t nb, cap, hint;
} series_hist;
typedef struct series_slot {
  int64_t idx; /* which slot of time it holds */
  uint64_t n, err;
  double sum, tsum, min, max, last, t_last;
  uint32_t streak_max;
  series_hist h;
} series_slot;
typedef struct series_point {
  double t, v; /* sums */
  uint64_t n;
} series_point;
enum { SK_VALUE, SK_DURATION, SK_LATENESS, SK_INVOCATIONS, SK_STATUS };
typedef struct series {
  double width; /* a slot's length (description s); 0: one slot, the whole run */
  double from;  /* samples before are ignored (after_sec) */
  double t_ok;  /* the last sample that showed the source alive */
  double pwidth;
  int kind, want_hist, want_slope, has_where;
  uint64_t total;
  uint32_t streak;
  struct series *next_tap; /* the invoker's list (invoker.c) */
  stats *pct_from;          /* whole-run duration/lateness from t0: the invoker's own
                             * statistics give the percentiles (no second histogram) */
  double pct_scale;         /* what turns pct_from's unit into the series' */
  int derived;              /* fed by nothing: count/sum/min/max from pct_from, or
                             * invocations and failures from the counters below */
  const lua_Integer *runs_from, *failures_from;
  int nslots;               /* SERIES_SLOTS, or 1 for the whole run */
  series_slot *slots;       /* in the same block, after the struct */
  series_point *pts;        /* SERIES_POINTS of them after the slots, or NULL (no slope) */
} series;
void series_value(series *s, double t, double v);
void series_invocation(series *s, double t, double duration, double late_s, int ok);
int series_where_matches(lua_State *L, int si, int di); /* data at di matches where */
series *series_test(lua_State *L, int idx);
void series_open(lua_State *L); /* sets core.series */

/* A buffered output file flushed before the loop blocks, so that a record
 * written in one loop iteration is on disk before orchlua waits again. */
typedef struct writer {
  FILE *fp;
  int owns_fp;
  int dirty;
  int err;              /* first errno seen, 0 if none */
  orch_list node;  /* core->writers */
  char *path;
  char *buf;            /* stdio buffer of an owned file */
  int64_t seq;          /* the last record line's seq (writer_line) */
  char seqtxt[24];      /* seq in decimal, right-aligned, counted up in place */
  int seqlen;
  uint64_t bytes;       /* written to the current segment */
  uint64_t max_bytes;   /* rotate before a line would pass it (0: never) */
  int segment;          /* 0: path itself, n: path's FILE.n.jsonl */
} writer;

#define TICK_SLOTS 1024 /* hash buckets of the tick slots, by due ms */

/* The host's state, by concern.  Each group's comment names the files
 * that may touch it: its owner first, then (after "also") the Lua faces
 * that set it and the hot paths that read it; spec/e2e/house_spec.lua
 * holds every file to that list. */
struct orch_core {
  uv_loop_t loop;
  lua_State *L;             /* main thread */
  struct orch_alloc *alloc; /* L's allocator (alloc.c), or NULL: malloc's */
  struct {                  /* clock.c; also lorch_core.c (core.start_clock), sched.c
                             * and invoker.c (read on the hot path) */
    double scale;           /* --time-scale: real = description / scale */
    uint64_t t0_ns;         /* uv_hrtime() at t0 */
    double t0_wall;         /* unix seconds at t0 */
    int started;            /* t0 is set: tickers are armed as made */
    int64_t iso_sec;        /* the second iso_head formats */
    char iso_head[48];      /* "YYYY-MM-DDTHH:MM:SS." */
  } clock;
  /* the scheduler (sched.c) */
  orch_list ready;          /* tasks to resume */
  orch_list deferred;       /* struct deferred, run after the ready tasks */
  uv_idle_t ready_idle;     /* keeps the loop from blocking while ready is non-empty */
  uv_prepare_t flush_prep;
  uv_check_t wake_check;    /* after the poll: the watchdog looks again */
  task *running;            /* guarded by watch.mu for the watchdog thread */
  uint64_t next_task_id;
  int in_loop;              /* core.run is in uv_run */
  int ctx_set;              /* core.set_context holds a tag */
  int shut, closed;
  struct {                  /* signals: sched.c; also lorch_core.c (core.on_signal, core.signals) */
    uv_async_t async;
    int cb_ref;             /* engine's on_signal(signum, count) */
    volatile sig_atomic_t count, last;
    int seen;               /* signals already passed to the engine */
    uint64_t first_ns;      /* hrtime of the first signal */
    int early;              /* no engine listens to signals yet: one ends orchlua */
  } sig;
  struct {                  /* how long work may go on: sched.c; also lorch_core.c
                             * (core.set_grace, set_hard_deadline, set_end), main.c
                             * (the exit's alarm) */
    uint64_t grace_ns;      /* after a signal, how long a CPU-bound task may run */
    uint64_t hard_ns;       /* any task still running at this hrtime is cancelled */
    uint64_t end_ns;        /* T: a task still running grace_ns after it is cancelled */
    uint64_t last_ns;       /* past it, a loop turn that never ends exits orchlua */
  } bound;
  struct {                  /* the watchdog thread: sched.c; also lorch_core.c (core.run,
                             * core.stats, core.on_loop_lag); fields marked mu under mu */
    uv_mutex_t mu;
    uv_cond_t cv;           /* signalled to stop the watchdog, or to wake it from its sleep */
    uv_thread_t thread;
    int stop;
    uint64_t turn_ns;       /* mu: when the loop last passed its poll */
    lua_State *guard_co;    /* mu: a thread running user code outside any task */
    uint64_t guard_ns;      /* mu: ... stopped by the hook past this hrtime */
    int guard_hooked;
    /* the loop-lag watchdog: a task that holds the loop longer than lag_ns
     * in one resume is reported through lag_cb_ref(tag, seconds) */
    uint64_t lag_ns;        /* 0: off */
    int lag_cb_ref;
    uint64_t resume_serial; /* mu: resumes so far */
    uint64_t lag_serial, lag_since; /* mu: the resume watched, since when */
    int lag_flag;           /* mu: that resume passed lag_ns */
    int loop_blocked;       /* mu: the loop waits in its poll, so no task runs */
    int asleep;             /* mu: the watchdog waits for the poll to end */
    uint64_t looks;         /* mu: times the watchdog looked (core.stats) */
  } watch;
  struct {                  /* finished coroutines kept for reuse: sched.c; also
                             * lorch_core.c (core.stats).  Creating a thread and
                             * collecting it costs more than a trivial invocation */
    lua_State **co;
    int *ref;
    int n, cap;             /* grows to POOL_MAX: 10,000 events fire together */
  } pool;
  struct {                  /* tickers due in the same millisecond share a timer: lorch_core.c */
    struct tick_slot *slots[TICK_SLOTS];
    orch_list unarmed;      /* tickers made before t0, armed by start_clock */
  } tick;
  struct {                  /* invoker.c */
    int running;            /* invoker tasks alive */
    lua_Integer fast_lines; /* invocation lines written (core.stats, for the specs) */
    struct ftask *spare;    /* spare firing tasks, last freed first */
    int nspare;
    /* the `event` table's keys, then every invoker's arguments, name and
     * id, and function, side by side in one Lua table (a registry ref, not
     * counted: the core's own, for the state's life) */
    int args_store;
    lua_Integer args_next;  /* its first unused slot; 0: not made yet */
  } inv;
  /* the report line being built (invoker.c, queue.c): one buffer for every
   * invoker and queue, so that it stays in cache */
  char line_head[WRITER_HEAD]; /* what a line starts with before its seq */
  jbuf line;
  orch_list writers;        /* writer.c: flushed before the loop blocks */
  struct {                  /* what the tests assert is back to zero at the end: counted
                             * by handle.c, ref.c, sched.c, invoker.c and http.c, which
                             * make them; also lorch_core.c (core.stats) */
    int handles, tasks, refs;
  } live;
};

/* The core of the state L belongs to: host.c puts it in the main thread's
 * extra space, which every coroutine copies (NULL in a state host.c did
 * not make). */
static inline orch_core *core_get(lua_State *L) {
  return *(orch_core **)lua_getextraspace(L);
}

/* ref.c: counted registry refs */
int ref_new(lua_State *L);  /* pops the value, returns the ref */
void ref_free(lua_State *L, int *ref);
void ref_push(lua_State *L, int ref);
/* The userdata at idx if its metatable is the value at mt (an upvalue, say),
 * else NULL: luaL_checkudata fetches the metatable from the registry by
 * name at each call, a third of a cheap method's cost. */
void *udata_with_mt(lua_State *L, int idx, int mt);

/* pgroup.c: the process-group keeper, under the scheduler (which ends a
 * cancelled task's groups) */
void pgroup_task_cancelled(task *t); /* SIGTERM/SIGKILL the groups t spawned */
void pgroup_shutdown(orch_core *c);  /* exit path: kill and reap every group */
void pgroup_last_resort(void);       /* SIGTERM to every group, from any thread */
int pgroup_forensics(lua_State *L, task *t); /* pushes what t's processes do; 0: none */

/* sched.c */
void sched_init(orch_core *c);
void sched_ready(task *t);            /* wake: values already on t->co */
void sched_start(task *t);            /* a new task: run now if no task runs, else sched_ready */
void sched_cancel(task *t, int why);  /* end a task that is not running */
int sched_wait(lua_State *L, task *t); /* park the running task; returns lua_yield */
task *sched_current(lua_State *L);    /* the task whose coroutine is L, or NULL */
void sched_timer_wait(task *t, uint64_t ms, int pushes);
void sched_set_timeout(task *t, uint64_t ms); /* status "timeout" ms after it started */
uint64_t sched_real_ms(orch_core *c, double desc_sec);
/* a bound on real work (a timeout): never shorter than desc_sec real */
uint64_t sched_bound_ms(orch_core *c, double desc_sec);
uint64_t sched_timeout_from(orch_core *c, uint64_t from_ns, uint64_t ms);
void sched_shutdown(orch_core *c); /* before lua_close */
void sched_close(orch_core *c);    /* after lua_close */
void sched_defer(orch_core *c, deferred *d); /* harmless if already deferred */
void sched_hook(lua_State *co);
lua_State *sched_thread(lua_State *L, int *ref); /* a fresh coroutine, anchored by *ref */
void sched_trim(lua_State *L, int keep);        /* the pool down to keep coroutines */
int sched_call(lua_State *L, int nargs, int nres); /* pcall with traceback */
void sched_guard_begin(orch_core *c, lua_State *co); /* user code outside a task: bounded */
void sched_guard_end(orch_core *c);

task *sched_need_task(lua_State *L, const char *what); /* the running task, or an error naming what needs one */
void sched_set_context(lua_State *L);  /* pops the tag a callback outside any task acts for (nil: none) */
int sched_push_context(lua_State *L);  /* pushes that tag, if any: returns 1 */

/* clock.c: description time and ISO times.  The ISO time is
 * "2026-11-25T12:00:00.123Z", always TS_LEN characters and a NUL. */
#define TS_LEN 24
void clock_init(orch_core *c);                              /* description time = real time until start_clock */
double clock_wall(void);                                    /* unix time now */
void clock_iso8601(orch_core *c, double unix_t, char out[32]);
double clock_stamp(orch_core *c, char ts[32]);             /* description now, and as ISO time */
void clock_stamp_at(orch_core *c, double t, char ts[32]);  /* description time t as ISO time */

/* lorch_core.c: the tickers' list, before any is made */
void tickers_init(orch_core *c);

/* The mechanisms' Lua faces, which lorch_core.c registers */
int queue_open(lua_State *L);
int queue_make_add_result(lua_State *L); /* core.queue_add_result */
int proc_open(lua_State *L);
int net_open(lua_State *L);  /* net.c: sets core.tcp_connect */

/* invoker.c */
typedef struct invoker invoker;
void invoker_open(lua_State *L);              /* sets core.invokers */
invoker *invoker_test(lua_State *L, int idx); /* NULL if not one */
void invoker_fire(invoker *inv, lua_Integer k, uint64_t now, uint64_t late_ns, int from_loop);
void invoker_pool_free(orch_core *c);          /* the spare firing tasks */
lua_Integer invoker_fast_lines(orch_core *c); /* invocation lines the invokers wrote (core.stats) */
/* An event's figures as the live view reads them (metrics.c), without Lua:
 * 0 when the value at idx is not an invoker. */
typedef struct invoker_figs {
  lua_Integer runs, failures, skipped, timeouts;
  stats *duration, *lateness; /* duration in description s, lateness in real ms */
} invoker_figs;
int invoker_figures(lua_State *L, int idx, invoker_figs *f);

/* metrics.c: the live view's figures (the result tally, /metrics text) */
typedef struct tally tally;
void tally_result(tally *t, lua_State *L, int ti, int ev, int li, int di); /* the result tap */
tally *tally_check(lua_State *L, int idx);
void metrics_open(lua_State *L); /* sets core.tally, core.prom_text */

/* http.c: the --listen server */
int http_open(lua_State *L); /* sets core.http_listen */
/* A response body, shared by the connections sending it (counted). */
typedef struct body {
  int refs;
  size_t len, cap;
  char *data;
} body;
body *body_push(lua_State *L); /* an empty one, in an orch.Body userdata on the stack */
void body_release(body *b);


/* handle.c: uv handles malloc'd apart and freed in their close callback */
void *handle_new(orch_core *c, size_t size);
void handle_close(uv_handle_t *h); /* harmless on NULL or already closing */

/* A libuv call that cannot fail on orchlua's live loop and handles (an
 * init, a start with its callback): a nonzero result is a bug or a process
 * out of threads or descriptors, said and aborted on like handle_new's
 * out of memory, never ignored.  Calls that can fail in use (spawn, write,
 * connect) are checked where they are made. */
#define UV_CHECK(call)                                                  \
  do {                                                                  \
    int uv_rc_ = (call);                                                \
    if (__builtin_expect(uv_rc_ != 0, 0))                               \
      handle_uv_failed(uv_rc_, #call, __FILE__, __LINE__);              \
  } while (0)
void handle_uv_failed(int rc, const char *call, const char *file, int line)
    __attribute__((noreturn));

/* writer.c; orch.Writer userdata (their methods: lorch_core.c) */
#define WRITER_MT "orch.Writer"
typedef struct lwriter {
  writer *w;
  jbuf buf; /* reused by record() */
} lwriter;
writer *const *writer_slot(lua_State *L, int idx); /* a writer userdata's writer (NULL once closed) */
writer *writer_open(orch_core *c, const char *path, FILE *fp, char *err, size_t errlen);
int writer_write(writer *w, const char *s, size_t n);
int writer_line(writer *w, const char *s, size_t n, size_t total);
/* A record line built WRITER_HEAD bytes into buf (buf: n bytes in all):
 * its seq goes into that room, and the line out in one write. */
int writer_line_at(writer *w, char *buf, size_t n);
void writer_set_seq(writer *w, int64_t seq);
char *writer_segment_path(const char *path, int n);
void writer_flush(writer *w);
int writer_close(writer *w);
void writer_flush_all(orch_core *c);

#endif
