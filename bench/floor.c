/*
 * bench/floor.c - the floor: orchlua's benchmark workloads on libuv alone,
 * with no Lua.  The same timers, the same fixed-rate schedule, the same
 * records pushed into a ring buffer and written as the same JSON lines; it
 * is the limit of the event loop on this machine.
 *
 *   floor ticks --events N --interval SEC --seconds T [--scale X]
 *               [--report FILE] [--probe] [--no-startup] [--setup-spawn]
 *   floor flood --n N [--batch B] [--report FILE]
 *   floor spawn --n N --seconds T [--report FILE]
 *
 * What each part mirrors in orchlua:
 *   - a ticker fires event i at t0 + k*interval, re-armed from t0 and k (never
 *     from the previous firing), with the same millisecond rounding and the
 *     same "missed" rule (orch.core's tickers, src/lorch_core.c);
 *   - a record is pushed into a growable ring and formatted (snprintf, the
 *     same fields and %.14g numbers as cjson) into a 64 KB stdio buffer that
 *     a prepare handle flushes before the loop blocks (src/writer.c);
 *   - flood: one "event" pushes N results {seq, t} into the queue; the
 *     "reporter" drains it from the idle pass, calls on_result (latency,
 *     count) and writes the JSON line (orch.result_reporter + output/jsonl);
 *   - spawn: N `sleep` processes in their own process group; at T each group
 *     gets SIGTERM and the run ends once all are reaped.
 *
 * $BENCH_SUMMARY names a file for a one-line JSON summary (probe lateness,
 * flood latency and throughput, spawn and stop times), in the format the
 * Lua probes in bench/events/ write.
 */
#define _GNU_SOURCE
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <uv.h>

/* ---- records: a growable ring drained into the report ------------------- */

enum { R_INVOCATION, R_SKIPPED, R_RESULT, R_RUN_START, R_RUN_END };
enum { P_STARTUP, P_INTERVAL, P_TEARDOWN };
static const char *const phase_names[] = {"startup", "interval", "teardown"};

typedef struct rec {
  int type, phase, event;
  int64_t k; /* iteration, or the result's seq */
  double t, scheduled, started, duration, lateness;
} rec;

static struct {
  uv_loop_t *loop;
  uint64_t t0_ns;
  double t0_wall, scale;
  rec *ring;
  size_t cap, head, tail; /* records at [head, tail), indices mod cap */
  FILE *report;
  uv_prepare_t flush;
  int dirty;              /* written since the last flush */
  int64_t invocations, skipped, results;
  double *probe;          /* body lateness, seconds */
  size_t nprobe, probe_cap;
} G;

static double wall_now(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* Description seconds since t0. */
static double desc_now(void) {
  return (double)(uv_hrtime() - G.t0_ns) / 1e9 * G.scale;
}

static void ring_push(const rec *r) {
  if (G.tail - G.head == G.cap) {
    size_t ncap = G.cap ? G.cap * 2 : 4096, i;
    rec *n = malloc(ncap * sizeof *n);
    if (n == NULL) abort();
    for (i = G.head; i < G.tail; i++) n[i - G.head] = G.ring[i & (G.cap - 1)];
    free(G.ring);
    G.ring = n;
    G.tail -= G.head;
    G.head = 0;
    G.cap = ncap;
  }
  G.ring[G.tail++ & (G.cap - 1)] = *r;
}

/* The ISO 8601 time of description time t, as core.ts does. */
static void iso(double t, char *buf, size_t n) {
  double w = G.t0_wall + t / G.scale;
  time_t sec = (time_t)floor(w);
  int ms = (int)((w - floor(w)) * 1000.0);
  struct tm tm;
  if (ms > 999) ms = 999;
  gmtime_r(&sec, &tm);
  snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

static void write_rec(const rec *r) {
  char ts[96];
  if (G.report == NULL) return;
  G.dirty = 1;
  iso(r->t, ts, sizeof ts);
  switch (r->type) {
  case R_INVOCATION:
    fprintf(G.report,
            "{\"type\":\"invocation\",\"t\":%.14g,\"ts\":\"%s\",\"event\":\"e%d\","
            "\"id\":\"e%d\",\"iteration\":%lld,\"phase\":\"%s\",\"scheduled\":%.14g,"
            "\"started\":%.14g,\"duration\":%.14g,\"lateness\":%.14g,\"status\":\"ok\"}\n",
            r->t, ts, r->event, r->event, (long long)r->k, phase_names[r->phase],
            r->scheduled, r->started, r->duration, r->lateness);
    break;
  case R_SKIPPED:
    fprintf(G.report,
            "{\"type\":\"skipped\",\"t\":%.14g,\"ts\":\"%s\",\"event\":\"e%d\",\"id\":\"e%d\","
            "\"iteration\":%lld,\"phase\":\"interval\",\"scheduled\":%.14g,"
            "\"reason\":\"missed: the loop was blocked past the next firing\"}\n",
            r->t, ts, r->event, r->event, (long long)r->k, r->scheduled);
    break;
  case R_RESULT:
    fprintf(G.report,
            "{\"type\":\"result\",\"t\":%.14g,\"ts\":\"%s\",\"event\":\"flood\","
            "\"level\":\"info\",\"data\":{\"seq\":%lld}}\n",
            r->t, ts, (long long)r->k);
    break;
  case R_RUN_START:
    fprintf(G.report, "{\"type\":\"run_start\",\"t\":0,\"ts\":\"%s\",\"test_name\":\"floor\"}\n", ts);
    break;
  case R_RUN_END:
    fprintf(G.report,
            "{\"type\":\"run_end\",\"t\":%.14g,\"ts\":\"%s\",\"invocations\":%lld,"
            "\"skipped\":%lld,\"results\":%lld}\n",
            r->t, ts, (long long)G.invocations, (long long)G.skipped, (long long)G.results);
    break;
  }
}

/* Drains the ring into the report and flushes it: before the loop blocks. */
static void drain(void) {
  while (G.head != G.tail) write_rec(&G.ring[G.head++ & (G.cap - 1)]);
  G.head = G.tail = 0;
  if (G.dirty && G.report) fflush(G.report);
  G.dirty = 0;
}

/* The prepare callback runs after the timers and the idle pass, but libuv
 * computes the poll timeout from the loop time cached before them: the
 * work of this iteration would be added to the next wait.  Refreshing the
 * loop time here keeps the next wake-up on time. */
static void on_flush(uv_prepare_t *h) {
  drain();
  uv_update_time(h->loop);
}

static void push_simple(int type) {
  rec r;
  memset(&r, 0, sizeof r);
  r.type = type;
  r.t = desc_now();
  ring_push(&r);
}

static void probe_add(double v) {
  if (G.nprobe == G.probe_cap) {
    G.probe_cap = G.probe_cap ? G.probe_cap * 2 : 65536;
    G.probe = realloc(G.probe, G.probe_cap * sizeof *G.probe);
    if (G.probe == NULL) abort();
  }
  G.probe[G.nprobe++] = v;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const double *s, size_t n, double p) {
  size_t rank = (size_t)ceil(p / 100.0 * (double)n);
  if (n == 0) return 0;
  if (rank < 1) rank = 1;
  return s[rank - 1];
}

static FILE *summary_file(void) {
  const char *p = getenv("BENCH_SUMMARY");
  return p ? fopen(p, "w") : NULL;
}

/* ---- ticks: N events at a fixed rate ----------------------------------- */

typedef struct tev {
  uv_timer_t h;
  int idx;
  int64_t k, last;
  int running; /* the "forbid" concurrency check, as the engine does */
} tev;

static tev *events;
static int nevents, probe_mode, setup_spawn;
static uv_process_t setup_proc;
static int setup_live;

static void on_setup_exit(uv_process_t *p, int64_t status, int sig) {
  (void)status;
  (void)sig;
  setup_live = 0;
  uv_close((uv_handle_t *)p, NULL);
}

/* --setup-spawn: the seed's unref_setup_fixtures start a stand-in daemon
 * before the first invocation; so does this. */
static void spawn_setup(void) {
  char *args[] = {"sh", "-c", "while :; do sleep 3600; done", "floor-stand-in-collectd", NULL};
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = "sh";
  o.args = args;
  o.flags = UV_PROCESS_DETACHED;
  o.exit_cb = on_setup_exit;
  if (uv_spawn(G.loop, &setup_proc, &o) == 0) setup_live = 1;
}
static double interval_ns, interval_desc;
static uv_timer_t end_timer;

__attribute__((noinline)) static void trivial_body(void) {
  __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void probe_body(uint64_t due_ns) {
  probe_add((double)(uv_hrtime() - due_ns) / 1e9 * G.scale);
}

static uint64_t due_of(int64_t k) {
  return G.t0_ns + (uint64_t)llround((double)k * interval_ns);
}

static void fire(tev *e, int phase, int64_t k, uint64_t due, uint64_t now) {
  rec r;
  uint64_t end;
  if (e->running) { G.skipped++; return; }
  e->running = 1;
  if (probe_mode) probe_body(due); else trivial_body();
  end = uv_hrtime();
  e->running = 0;
  r.type = R_INVOCATION;
  r.phase = phase;
  r.event = e->idx;
  r.k = k;
  r.scheduled = (double)k * interval_desc;
  r.started = (double)(now - G.t0_ns) / 1e9 * G.scale;
  r.duration = (double)(end - now) / 1e9 * G.scale;
  r.lateness = (double)(now > due ? now - due : 0) / 1e9 * G.scale;
  r.t = (double)(end - G.t0_ns) / 1e9 * G.scale;
  G.invocations++;
  ring_push(&r);
}

static void on_tick(uv_timer_t *h);

static void tick_start(tev *e) {
  uint64_t due_ms = (due_of(e->k) + 999999u) / 1000000u;
  uint64_t now_ms = uv_now(G.loop);
  uv_timer_start(&e->h, on_tick, due_ms > now_ms ? due_ms - now_ms : 0, 0);
}

static void on_tick(uv_timer_t *h) {
  tev *e = (tev *)h;
  uint64_t now = uv_hrtime();
  while (e->k <= e->last) {
    int64_t k = e->k;
    uint64_t due = due_of(k);
    int missed = k < e->last && now >= due_of(k + 1);
    e->k++;
    if (missed) {
      rec r;
      memset(&r, 0, sizeof r);
      r.type = R_SKIPPED;
      r.event = e->idx;
      r.k = k;
      r.scheduled = (double)k * interval_desc;
      r.t = desc_now();
      G.skipped++;
      ring_push(&r);
      continue;
    }
    fire(e, P_INTERVAL, k, due, now);
    break;
  }
  if (e->k <= e->last) tick_start(e);
}

static void on_end(uv_timer_t *h) {
  int i;
  for (i = 0; i < nevents; i++) uv_close((uv_handle_t *)&events[i].h, NULL);
  uv_close((uv_handle_t *)h, NULL);
  if (setup_live) kill(-setup_proc.pid, SIGTERM);
  push_simple(R_RUN_END);
}

static int run_ticks(int n, double interval, double seconds, int startup) {
  int i;
  int64_t last = (int64_t)floor(seconds / interval);
  FILE *s;
  while (last > 0 && (double)last * interval >= seconds) last--;
  while ((double)(last + 1) * interval < seconds) last++;
  nevents = n;
  interval_desc = interval;
  interval_ns = interval * 1e9 / G.scale;
  events = calloc((size_t)n, sizeof *events);
  push_simple(R_RUN_START);
  for (i = 0; i < n; i++) {
    tev *e = &events[i];
    e->idx = i + 1;
    e->k = 1;
    e->last = last;
    uv_timer_init(G.loop, &e->h);
  }
  if (setup_spawn) spawn_setup();
  if (probe_mode && getenv("BENCH_MARK") != NULL) {
    /* as bench/events/probe.lua: a marker that the run has started */
    FILE *m = fopen(getenv("BENCH_MARK"), "w");
    if (m != NULL) {
      fputs("start\n", m);
      fclose(m);
    }
  }
  /* a marker for the startup benchmark: the report's first write is the
   * first invocation's start */
  drain();
  if (startup)
    for (i = 0; i < n; i++) fire(&events[i], P_STARTUP, 0, G.t0_ns, uv_hrtime());
  for (i = 0; i < n; i++)
    if (events[i].k <= events[i].last) tick_start(&events[i]);
  uv_timer_init(G.loop, &end_timer);
  {
    uint64_t end_ns = G.t0_ns + (uint64_t)llround(seconds * 1e9 / G.scale);
    uint64_t due_ms = (end_ns + 999999u) / 1000000u, now_ms = uv_now(G.loop);
    uv_timer_start(&end_timer, on_end, due_ms > now_ms ? due_ms - now_ms : 0, 0);
  }
  uv_run(G.loop, UV_RUN_DEFAULT);
  drain();
  if (probe_mode && (s = summary_file()) != NULL) {
    /* the probe's own work, which the harness takes off the CPU figure */
    clock_t c0 = clock();
    qsort(G.probe, G.nprobe, sizeof *G.probe, cmp_double);
    fprintf(s, "{\"kind\":\"probe\",\"n\":%zu,\"p50\":%.9g,\"p99\":%.9g,\"max\":%.9g,"
            "\"summary_cpu\":%.6f}\n",
            G.nprobe, pct(G.probe, G.nprobe, 50), pct(G.probe, G.nprobe, 99),
            G.nprobe ? G.probe[G.nprobe - 1] : 0.0, (double)(clock() - c0) / CLOCKS_PER_SEC);
    fclose(s);
  }
  printf("floor: %lld invocations, %lld skipped\n", (long long)G.invocations,
         (long long)G.skipped);
  return 0;
}

/* ---- flood: one event reporting N results ------------------------------ */

typedef struct qitem {
  int64_t seq;
  uint64_t t_ns;
} qitem;

static struct {
  qitem *q;
  size_t cap, head, tail;
  int64_t n, next, batch, delivered;
  int producing;
  uint64_t first_put_ns, last_result_ns, started_ns;
  double *lat;
  uv_idle_t ready;
} F;

static void q_put(int64_t seq) {
  if (F.tail - F.head == F.cap) {
    size_t ncap = F.cap ? F.cap * 2 : 4096, i;
    qitem *n = malloc(ncap * sizeof *n);
    if (n == NULL) abort();
    for (i = F.head; i < F.tail; i++) n[i - F.head] = F.q[i & (F.cap - 1)];
    free(F.q);
    F.q = n;
    F.tail -= F.head;
    F.head = 0;
    F.cap = ncap;
  }
  F.q[F.tail & (F.cap - 1)].seq = seq;
  F.q[F.tail & (F.cap - 1)].t_ns = uv_hrtime();
  F.tail++;
}

/* The reporter: every queued result to on_result and the report. */
__attribute__((noinline)) static void on_result(const qitem *it, uint64_t now) {
  F.lat[F.delivered++] = (double)(now - it->t_ns) / 1e9;
  F.last_result_ns = now;
}

static void reporter_drain(void) {
  while (F.head != F.tail) {
    qitem it = F.q[F.head++ & (F.cap - 1)];
    uint64_t now = uv_hrtime();
    rec r;
    memset(&r, 0, sizeof r);
    r.type = R_RESULT;
    r.k = it.seq;
    r.t = (double)(it.t_ns - G.t0_ns) / 1e9 * G.scale;
    G.results++;
    write_rec(&r); /* the report line, written before on_result as the engine's _deliver */
    on_result(&it, now);
  }
  F.head = F.tail = 0;
}

/* The event: add_result n times, yielding every `batch` when batch > 0. */
static void producer_step(void) {
  int64_t stop = F.batch > 0 ? F.next + F.batch : F.n + 1;
  if (stop > F.n + 1) stop = F.n + 1;
  if (F.next == 1) F.first_put_ns = uv_hrtime();
  for (; F.next < stop; F.next++) q_put(F.next);
  if (F.next > F.n) {
    rec r;
    uint64_t end = uv_hrtime();
    memset(&r, 0, sizeof r);
    r.type = R_INVOCATION;
    r.phase = P_STARTUP;
    r.event = 1;
    r.started = (double)(F.started_ns - G.t0_ns) / 1e9;
    r.duration = (double)(end - F.started_ns) / 1e9;
    r.lateness = r.started;
    r.t = (double)(end - G.t0_ns) / 1e9;
    G.invocations++;
    ring_push(&r);
    F.producing = 0;
  }
}

/* The ready pass: the reporter (woken by the first put) before the event. */
static void on_ready(uv_idle_t *h) {
  reporter_drain();
  if (F.producing) producer_step();
  if (!F.producing && F.head == F.tail) uv_idle_stop(h);
}

static int run_flood(int64_t n, int64_t batch) {
  FILE *s;
  F.n = n;
  F.batch = batch;
  F.next = 1;
  F.producing = 1;
  F.lat = malloc((size_t)n * sizeof *F.lat);
  push_simple(R_RUN_START);
  F.started_ns = uv_hrtime();
  uv_idle_init(G.loop, &F.ready);
  uv_idle_start(&F.ready, on_ready);
  uv_run(G.loop, UV_RUN_DEFAULT);
  push_simple(R_RUN_END);
  drain();
  if ((s = summary_file()) != NULL) {
    double elapsed = (double)(F.last_result_ns - F.first_put_ns) / 1e9;
    qsort(F.lat, (size_t)F.delivered, sizeof *F.lat, cmp_double);
    fprintf(s, "{\"kind\":\"flood\",\"n\":%lld,\"elapsed\":%.9g,\"lat_p50\":%.9g,"
               "\"lat_p99\":%.9g,\"lat_max\":%.9g}\n",
            (long long)F.delivered, elapsed, pct(F.lat, (size_t)F.delivered, 50),
            pct(F.lat, (size_t)F.delivered, 99),
            F.delivered ? F.lat[F.delivered - 1] : 0.0);
    fclose(s);
  }
  printf("floor: %lld results\n", (long long)F.delivered);
  return 0;
}

/* ---- spawn: stop with N processes running ------------------------------ */

static struct {
  uv_process_t *procs;
  int n, live;
  uint64_t spawned_ns, stop_ns, last_exit_ns;
  uv_timer_t end;
} S;

static void on_proc_exit(uv_process_t *p, int64_t status, int sig) {
  (void)status;
  (void)sig;
  S.live--;
  S.last_exit_ns = uv_hrtime();
  uv_close((uv_handle_t *)p, NULL);
}

static void on_spawn_end(uv_timer_t *h) {
  int i;
  S.stop_ns = uv_hrtime();
  push_simple(R_RUN_END);
  uv_close((uv_handle_t *)h, NULL);
  for (i = 0; i < S.n; i++)
    if (!uv_is_closing((uv_handle_t *)&S.procs[i])) kill(-S.procs[i].pid, SIGTERM);
}

static int run_spawn(int n, double seconds) {
  int i;
  FILE *s;
  char *args[] = {"sleep", "9999.25", NULL};
  uv_process_options_t o;
  S.procs = calloc((size_t)n, sizeof *S.procs);
  memset(&o, 0, sizeof o);
  o.file = "sleep";
  o.args = args;
  o.flags = UV_PROCESS_DETACHED; /* setsid: its own process group */
  o.exit_cb = on_proc_exit;
  push_simple(R_RUN_START);
  for (i = 0; i < n; i++) {
    if (uv_spawn(G.loop, &S.procs[i], &o) != 0) {
      fprintf(stderr, "floor: spawn %d failed\n", i);
      break;
    }
    S.live++;
  }
  S.n = i;
  S.spawned_ns = uv_hrtime();
  uv_timer_init(G.loop, &S.end);
  uv_timer_start(&S.end, on_spawn_end, (uint64_t)(seconds * 1000), 0);
  uv_run(G.loop, UV_RUN_DEFAULT);
  drain();
  if ((s = summary_file()) != NULL) {
    fprintf(s, "{\"kind\":\"spawn\",\"n\":%d,\"t0_mono_ms\":%.3f,\"spawn_s\":%.6f,"
               "\"stop_at_s\":%.6f,\"stop_s\":%.6f}\n", S.n, (double)G.t0_ns / 1e6,
            (double)(S.spawned_ns - G.t0_ns) / 1e9, (double)(S.stop_ns - G.t0_ns) / 1e9,
            (double)(S.last_exit_ns - S.stop_ns) / 1e9);
    fclose(s);
  }
  printf("floor: %d processes, %d left\n", S.n, S.live);
  return S.live == 0 ? 0 : 1;
}

/* ---- main ----------------------------------------------------------------- */

static const char *opt(int argc, char **argv, const char *name, const char *def) {
  int i;
  for (i = 2; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return i + 1 < argc ? argv[i + 1] : "";
  return def;
}

static int flag(int argc, char **argv, const char *name) {
  int i;
  for (i = 2; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return 1;
  return 0;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "";
  const char *report;
  int status;
  if (strcmp(mode, "ticks") && strcmp(mode, "flood") && strcmp(mode, "spawn")) {
    fprintf(stderr,
            "usage: floor ticks --events N --interval SEC --seconds T [--scale X] "
            "[--report FILE] [--probe] [--no-startup] [--setup-spawn]\n"
            "       floor flood --n N [--batch B] [--report FILE]\n"
            "       floor spawn --n N --seconds T [--report FILE]\n");
    return 2;
  }
  G.loop = uv_default_loop();
  G.scale = atof(opt(argc, argv, "--scale", "1"));
  report = opt(argc, argv, "--report", NULL);
  if (report != NULL) {
    G.report = fopen(report, "w");
    if (G.report == NULL) { perror(report); return 2; }
    /* a real 64 KB buffer: with a NULL buffer glibc ignores the size and
     * allocates st_blksize (4 KB) */
    setvbuf(G.report, malloc(1 << 16), _IOFBF, 1 << 16);
  }
  uv_prepare_init(G.loop, &G.flush);
  uv_prepare_start(&G.flush, on_flush);
  uv_unref((uv_handle_t *)&G.flush);
  uv_update_time(G.loop);
  G.t0_ns = uv_hrtime();
  G.t0_wall = wall_now();
  if (strcmp(mode, "ticks") == 0) {
    probe_mode = flag(argc, argv, "--probe");
    setup_spawn = flag(argc, argv, "--setup-spawn");
    status = run_ticks(atoi(opt(argc, argv, "--events", "1")),
                       atof(opt(argc, argv, "--interval", "1")),
                       atof(opt(argc, argv, "--seconds", "20")),
                       !flag(argc, argv, "--no-startup"));
  } else if (strcmp(mode, "flood") == 0) {
    status = run_flood(atoll(opt(argc, argv, "--n", "1000000")),
                       atoll(opt(argc, argv, "--batch", "0")));
  } else {
    status = run_spawn(atoi(opt(argc, argv, "--n", "1000")),
                       atof(opt(argc, argv, "--seconds", "5")));
  }
  uv_close((uv_handle_t *)&G.flush, NULL);
  uv_run(G.loop, UV_RUN_DEFAULT);
  if (G.report) fclose(G.report);
  return status;
}
