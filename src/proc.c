/*
 * proc.c - processes spawned by events: the mechanism under orch.spawn and
 * orch.exec (lua/orch/process.lua holds the policy: argument messages,
 * callback errors, exec's return values).
 *
 *   core.spawn(opts, [fname]) -> process | nil, message, errname
 *   core.kill_processes([signal]) -> number of groups signalled
 *   core.processes() -> processes listed (running, or a group lingering)
 *   core.Process: the methods of orch.Process (process.lua wraps wait)
 *
 * Two error channels: misuse (opts of the wrong type, an empty cmd, a
 * non-string argument) raises in Lua's words; a run-time failure (no such
 * program, no such cwd, too many processes) returns nil, message, and
 * orch.spawn (process.lua) turns that into an error raised in the calling
 * event, while orch.exec returns it.
 *
 * Nothing outlives the run.  Every process is spawned with
 * UV_PROCESS_DETACHED, i.e. setsid(): it leads its own process group
 * (pgid == pid), and every kill is a killpg, so what it started dies with
 * it.  A kill is SIGTERM, then SIGKILL KILL_DELAY_MS later for any group
 * still alive.  Groups are killed:
 *   - when the task that spawned them is cancelled or times out
 *     (proc_task_cancelled, from sched.c task_finish), unless spawned with
 *     owner = "run";
 *   - by core.kill_processes (the engine's cancel_all: after grace, and on
 *     a second signal);
 *   - when the loop has nothing left to do but run processes nobody waits
 *     for (the keeper, below): the run is over, and core.run() returns only
 *     once they are gone, so a run ends with no handle or ref left;
 *   - on the exit path (proc_shutdown, from sched_close), synchronously;
 *   - at exit() (os.exit in an event) and on a crash (SIGSEGV, abort ...),
 *     from a process-wide list of groups; and each child asks the kernel
 *     for SIGKILL when orchlua dies (PR_SET_PDEATHSIG, set in a fork
 *     handler), which covers orchlua's own SIGKILL for direct children.
 *
 * Reaping: libuv reaps each process on SIGCHLD at once (exit callback), so
 * no zombie is left however long the run.  orchlua is a child subreaper:
 * a descendant orphaned inside a group becomes orchlua's child, and its
 * zombie is reaped here by group (reap_members), so that a group is empty
 * when its processes are gone even where PID 1 does not reap.  A group
 * whose leader exited but which still has members (a background
 * grandchild) stays listed until it is empty, checked on SIGCHLD and every
 * PRUNE_MS, so that it is killed at the end too.  (A group is signalled
 * only while it is known to exist: the kernel does not reuse its number
 * while any member lives.)
 *
 * Output: stdout and stderr are read without blocking; line callbacks run
 * on the main thread through sched_call.  At exit, what the process wrote
 * is read at once (proc_drain), so wait() returns with every line
 * delivered; output that descendants write later still arrives.
 *
 * Lifecycle (handle.c): the uv_process_t and up to three uv_pipe_t are
 * malloc'd apart; the orch.Process userdata points at them and holds a
 * registry ref to itself (self_ref) while the process is listed: until it
 * exited, both output pipes reached EOF and its group is empty.  Handles
 * are closed once (data set to NULL first, so a late callback is a
 * no-op), freed by handle.c's close callback; a failed uv_spawn closes its
 * handles too.  __gc only frees line buffers.  Handles are unref'd: a
 * process keeps the loop alive only while a task waits for it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "lauxlib.h"

#include "core.h"
#include "guardian.h"

#define PROC_MT "orch.Process"
#define KILL_DELAY_MS 500      /* SIGTERM -> SIGKILL, real time */
#define FORCE_CLOSE_MS 1500    /* after the end-of-run kill: stop waiting */
#define PRUNE_MS 1000          /* lingering groups are checked this often */
#define READ_CHUNK 65536
#define DRAIN_MAX (4u << 20)   /* bytes read synchronously at exit, per pipe */
#define DEFAULT_MAX_LINE ((size_t)16 << 20)

extern char **environ;

typedef struct proc_set proc_set;

/* what a timed-out invocation's record shows of each process it spawned */
#define TAIL_MAX 512

typedef struct linebuf {
  char *buf;
  size_t len, cap;
} linebuf;

typedef struct proc {
  proc_set *set;
  uv_process_t *h;   /* open until the exit callback */
  uv_pipe_t *io[3];  /* stdin, stdout, stderr: NULL when not piped or closed */
  linebuf lines[3];  /* partial lines of stdout [1] and stderr [2] */
  int has_cb[3];     /* a line callback is set for [1], [2] */
  int pid;
  int exited, code, sig;
  int group;         /* the group may still have members */
  int owner_run;     /* owner = "run": not killed with its task */
  int capture;
  size_t captured[3]; /* bytes kept per stream, at most CAPTURE_MAX */
  char tail[3][TAIL_MAX]; /* the last bytes of stdout [1] and stderr [2], a ring */
  size_t tail_n[3];   /* bytes ever written to the ring */
  uint64_t task_id;  /* the task that spawned it, 0 if none */
  uint64_t kill_at;  /* hrtime of a pending SIGKILL, 0 if none */
  size_t max_line;
  int self_ref;      /* held while listed */
  int listed;
  orch_list waiters; /* tasks in process:wait() */
  orch_list node;    /* set->procs */
} proc;

struct proc_set {
  orch_core *core;
  orch_list procs;
  int n;                  /* listed processes */
  uv_prepare_t *keeper;   /* open while n > 0: finds the end of the run */
  uv_timer_t *timer;      /* SIGKILL escalation, forced closes, pruning */
  uv_signal_t *chld;      /* SIGCHLD: reaps orphaned group members */
  int ending;             /* everything was killed: the loop had nothing else */
  uint64_t force_at;      /* while ending: when to stop waiting for pipes */
  unsigned pending_reqs;  /* stdin writes and shutdowns in flight */
  char rbuf[READ_CHUNK];
};

static char SET_KEY;

/* ---- the process-wide list of groups: exit() and crashes ---------------- */

/* The only process-wide state here, as sig_core in sched.c: what an
 * atexit handler and a crash handler need, which have no Lua state. */
static pid_t *emerg;
static size_t emerg_n, emerg_cap;
static volatile sig_atomic_t forking;   /* a uv_spawn of ours is forking */
static int subreaper;                   /* PR_SET_CHILD_SUBREAPER is on */
static pid_t fork_parent;

static void emerg_add(pid_t pg) {
  guardian_track(pg); /* its SIGKILL too: see guardian.c */
  if (emerg_n == emerg_cap) {
    size_t cap = emerg_cap ? emerg_cap * 2 : 64;
    pid_t *a = realloc(emerg, cap * sizeof *a);
    if (a == NULL) return; /* best effort: the per-state list still has it */
    emerg = a;
    emerg_cap = cap;
  }
  emerg[emerg_n++] = pg;
}

static void emerg_del(pid_t pg) {
  size_t i;
  guardian_untrack(pg);
  for (i = emerg_n; i-- > 0;) {
    if (emerg[i] == pg) {
      emerg[i] = emerg[--emerg_n];
      return;
    }
  }
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void sweep_all(void);

/* exit() without the host's orderly path (os.exit in an event): TERM,
 * up to KILL_DELAY_MS for the groups to go, then KILL. */
static void emerg_atexit(void) {
  size_t i;
  int waited = 0;
  if (emerg_n == 0) return;
  for (i = 0; i < emerg_n; i++) killpg(emerg[i], SIGTERM);
  while (waited < KILL_DELAY_MS) {
    int alive = 0;
    for (i = 0; i < emerg_n; i++) {
      while (waitpid(-emerg[i], NULL, WNOHANG) > 0) {
        /* the dead of the group are ours to reap, leader included */
      }
      if (killpg(emerg[i], 0) == 0) alive = 1;
    }
    if (!alive) break;
    sleep_ms(5);
    waited += 5;
  }
  for (i = 0; i < emerg_n; i++) killpg(emerg[i], SIGKILL);
  emerg_n = 0;
  sweep_all();
}

/* The watchdog's last resort (sched.c), from its thread: SIGTERM to every
 * group; the guardian continues and ends them once orchlua is gone. */
void proc_last_resort(void) {
  size_t i;
  for (i = 0; i < emerg_n; i++) killpg(emerg[i], SIGTERM);
}

/* A crash: only async-signal-safe calls, then the default action. */
static void emerg_crash(int sig) {
  size_t i;
  for (i = 0; i < emerg_n; i++) killpg(emerg[i], SIGKILL);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Marks every descriptor from 3 up close-on-exec: the report file, a
 * jobserver pipe orchlua inherited, a C module's socket ... are not the
 * child's business (Python's close_fds).  libuv's child setup is unharmed:
 * it dup2()s the stdio pipes to 0..2, and its error pipe is close-on-exec
 * already.  Only async-signal-safe calls: this runs between fork and exec. */
static void cloexec_from_3(void) {
  struct rlimit rl;
  long fd, max = 4096;
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */) == 0) return;
#endif
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    max = rl.rlim_cur < 65536 ? (long)rl.rlim_cur : 65536;
  for (fd = 3; fd < max; fd++) {
    int fl = fcntl((int)fd, F_GETFD);
    if (fl >= 0 && !(fl & FD_CLOEXEC)) fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC);
  }
}

/* In the child of our uv_spawn, before exec: die with orchlua (a
 * supplement only: it reaches direct children, not grandchildren), and
 * inherit nothing but stdin, stdout and stderr. */
static void on_fork_child(void) {
  if (!forking) return;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != fork_parent) _exit(127); /* orchlua died meanwhile */
  cloexec_from_3();
}

static void emerg_install(void) {
  static int done;
  static const int crash[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
  struct sigaction sa;
  size_t i;
  if (done) return;
  done = 1;
  /* descendants orphaned by a dying parent become orchlua's children, so
   * that their zombies are reaped here (reap_members) even where PID 1
   * does not reap (a container without an init) */
  subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1) == 0;
  atexit(emerg_atexit);
  pthread_atfork(NULL, NULL, on_fork_child);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = emerg_crash;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  for (i = 0; i < sizeof crash / sizeof crash[0]; i++) {
    struct sigaction old;
    /* do not take over a handler someone else installed */
    if (sigaction(crash[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
      sigaction(crash[i], &sa, NULL);
  }
}

/* ---- the set: every listed process of one state ------------------------ */

static proc_set *set_get(lua_State *L) {
  proc_set *s;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &SET_KEY);          /* [set] */
  s = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return s;
}

static proc_set *set_of(orch_core *c) {
  return (c != NULL && c->L != NULL) ? set_get(c->L) : NULL;
}


/* orchlua is a child subreaper (see emerg_install): a descendant whose
 * parent dies becomes orchlua's child, not init's.  Its zombie is reaped
 * here, by process group: all of them once the leader was reaped (libuv
 * has no interest left in the group), before that every one but the
 * leader, which is libuv's to reap. */
static void reap_members(proc *p) {
  if (p->exited) {
    while (waitpid(-p->pid, NULL, WNOHANG) > 0) {
    }
    return;
  }
  for (;;) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PGID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) return;
    if (si.si_pid == 0 || si.si_pid == p->pid) return;
    waitpid(si.si_pid, NULL, WNOHANG);
  }
}

/* Does the group still have members?  A zombie counts for killpg, so the
 * ones that are ours are reaped first. */
static int group_alive(proc *p) {
  reap_members(p);
  return killpg(p->pid, 0) == 0 || errno == EPERM;
}

static void on_keeper(uv_prepare_t *h);
static void on_set_timer(uv_timer_t *h);
static void on_chld(uv_signal_t *h, int signum);

/* Opens the keeper and the timer when the first process is listed. */
static void set_busy(proc_set *s) {
  orch_core *c = s->core;
  if (s->keeper == NULL) {
    s->keeper = handle_new(c, sizeof *s->keeper);
    UV_CHECK(uv_prepare_init(&c->loop, s->keeper));
    s->keeper->data = s;
    UV_CHECK(uv_prepare_start(s->keeper, on_keeper));
  }
  if (s->timer == NULL) {
    s->timer = handle_new(c, sizeof *s->timer);
    UV_CHECK(uv_timer_init(&c->loop, s->timer));
    s->timer->data = s;
    uv_unref((uv_handle_t *)s->timer);
  }
  if (s->chld == NULL) {
    s->chld = handle_new(c, sizeof *s->chld);
    UV_CHECK(uv_signal_init(&c->loop, s->chld));
    s->chld->data = s;
    UV_CHECK(uv_signal_start(s->chld, on_chld, SIGCHLD));
    uv_unref((uv_handle_t *)s->chld);
  }
}

/* Closes them when the last one is gone. */
static void set_idle(proc_set *s) {
  if (s->keeper != NULL) {
    s->keeper->data = NULL;
    handle_close((uv_handle_t *)s->keeper);
    s->keeper = NULL;
  }
  if (s->timer != NULL) {
    s->timer->data = NULL;
    handle_close((uv_handle_t *)s->timer);
    s->timer = NULL;
  }
  if (s->chld != NULL) {
    s->chld->data = NULL;
    handle_close((uv_handle_t *)s->chld);
    s->chld = NULL;
  }
  s->ending = 0;
  s->force_at = 0;
}

/* Arms the timer for the earliest thing to do.  It keeps the loop alive
 * only for a pending SIGKILL or the end-of-run wait, not for pruning. */
static void set_schedule(proc_set *s) {
  uint64_t now = uv_hrtime(), next = 0, ms;
  int urgent = 0;
  orch_list *l;
  if (s->timer == NULL) return;
  for (l = s->procs.next; l != &s->procs; l = l->next) {
    proc *p = list_entry(l, proc, node);
    if (p->kill_at != 0) {
      if (next == 0 || p->kill_at < next) next = p->kill_at;
      urgent = 1;
    } else if (p->exited && p->group) {
      uint64_t due = now + (uint64_t)PRUNE_MS * 1000000u;
      if (next == 0 || due < next) next = due;
    }
  }
  if (s->ending && s->force_at != 0) {
    if (next == 0 || s->force_at < next) next = s->force_at;
    urgent = 1;
  }
  if (next == 0) {
    uv_timer_stop(s->timer);
    return;
  }
  ms = next > now ? (next - now + 999999u) / 1000000u : 0;
  UV_CHECK(uv_timer_start(s->timer, on_set_timer, ms, 0));
  if (urgent)
    uv_ref((uv_handle_t *)s->timer);
  else
    uv_unref((uv_handle_t *)s->timer);
}

/* ---- one process --------------------------------------------------------- */

static void pipe_close(proc *p, int i) {
  uv_pipe_t *pp = p->io[i];
  if (pp == NULL) return;
  p->io[i] = NULL;
  pp->data = NULL;
  handle_close((uv_handle_t *)pp);
}

/* A process keeps the loop alive only while some task waits for it. */
static void proc_update_ref(proc *p) {
  if (p->h == NULL) return;
  if (list_empty(&p->waiters))
    uv_unref((uv_handle_t *)p->h);
  else
    uv_ref((uv_handle_t *)p->h);
}

/* Unlists a process that is over: exited, outputs at EOF, group empty. */
static void proc_finish(proc *p) {
  proc_set *s = p->set;
  lua_State *L = s->core->L;
  int i;
  pipe_close(p, 0);
  pipe_close(p, 1);
  pipe_close(p, 2);
  list_remove(&p->node);
  p->listed = 0;
  p->kill_at = 0;
  s->n--;
  emerg_del(p->pid);
  for (i = 1; i <= 2; i++) {
    free(p->lines[i].buf);
    p->lines[i].buf = NULL;
    p->lines[i].len = p->lines[i].cap = 0;
  }
  if (s->n == 0) set_idle(s);
  ref_free(L, &p->self_ref); /* last: p may be collected from here on */
}

static void proc_check_done(proc *p) {
  if (p->listed && p->exited && p->io[1] == NULL && p->io[2] == NULL && !p->group)
    proc_finish(p);
}

/* Signals the group; with SIGTERM (or any signal but SIGKILL) when
 * escalate is set, a SIGKILL follows KILL_DELAY_MS later if it lives on.
 * Returns 0 or an errno. */
static int proc_signal(proc *p, int sig, int escalate) {
  if (p->exited && !p->group) return ESRCH;
  if (killpg(p->pid, sig) != 0) {
    int e = errno;
    if (e == ESRCH && p->exited) p->group = 0;
    return e;
  }
  if (escalate && sig != SIGKILL && sig != 0 && p->kill_at == 0)
    p->kill_at = uv_hrtime() + (uint64_t)KILL_DELAY_MS * 1000000u;
  return 0;
}

/* ---- output: lines and captures ----------------------------------------- */

#define CAPTURE_MAX ((size_t)64 << 20) /* per stream of orch.exec's capture */

static int lb_append(linebuf *lb, const char *s, size_t n) {
  if (lb->len + n > lb->cap) {
    size_t cap = lb->cap ? lb->cap : 256;
    char *b;
    while (cap < lb->len + n) cap *= 2;
    b = realloc(lb->buf, cap);
    if (b == NULL) return -1;
    lb->buf = b;
    lb->cap = cap;
  }
  memcpy(lb->buf + lb->len, s, n);
  lb->len += n;
  return 0;
}

/* Calls the callback at index cb with (line[, true]) on the main thread,
 * protected: process.lua wraps user callbacks so that they never raise;
 * anything else that raises is printed by sched_call and the loop goes on. */
static void deliver(lua_State *L, int cb, const char *s, size_t n, int partial) {
  lua_pushvalue(L, cb);
  lua_pushlstring(L, s, n);
  if (partial) lua_pushboolean(L, 1);
  sched_call(L, partial ? 2 : 1, 0);
}

/* Handles n bytes read from stream i (1 stdout, 2 stderr): appended to the
 * capture, and split into lines for the callback.  A line longer than
 * max_line is delivered in max_line pieces, each but the last with a
 * second argument true: long lines are never cut silently. */
/* Keeps the last TAIL_MAX bytes of stream i: a copy of what was read. */
static void tail_keep(proc *p, int i, const char *data, size_t n) {
  size_t at;
  if (n > TAIL_MAX) {
    data += n - TAIL_MAX;
    p->tail_n[i] += n - TAIL_MAX;
    n = TAIL_MAX;
  }
  at = p->tail_n[i] % TAIL_MAX;
  if (at + n <= TAIL_MAX) {
    memcpy(p->tail[i] + at, data, n);
  } else {
    memcpy(p->tail[i] + at, data, TAIL_MAX - at);
    memcpy(p->tail[i], data + (TAIL_MAX - at), n - (TAIL_MAX - at));
  }
  p->tail_n[i] += n;
}

/* Appends the last lines of stream i (at most 3, from the ring) to b. */
static void tail_lines(luaL_Buffer *b, proc *p, int i) {
  char flat[TAIL_MAX];
  size_t n = p->tail_n[i] < TAIL_MAX ? p->tail_n[i] : TAIL_MAX, at, k, start;
  int lines = 0;
  if (n == 0) return;
  at = p->tail_n[i] % TAIL_MAX;
  for (k = 0; k < n; k++) flat[k] = p->tail[i][(at + TAIL_MAX - n + k) % TAIL_MAX];
  start = n;
  while (start > 0) {
    if (flat[start - 1] == '\n' && start != n && ++lines == 3) break;
    start--;
  }
  luaL_addstring(b, i == 1 ? "\n      stdout: " : "\n      stderr: ");
  for (k = start; k < n; k++) {
    if (flat[k] == '\n') {
      if (k + 1 < n) luaL_addstring(b, i == 1 ? "\n      stdout: " : "\n      stderr: ");
    } else {
      luaL_addchar(b, (unsigned char)flat[k] < 32 && flat[k] != '\t' ? '?' : flat[k]);
    }
  }
}

/* Pushes what the processes task t spawned are doing (pid, command, state,
 * children, last output lines), for its timeout record; returns 0 and
 * pushes nothing when it spawned none that still runs. */
int proc_forensics(lua_State *L, task *t) {
  proc_set *s = set_of(t->core);
  orch_list *l;
  luaL_Buffer b;
  int n = 0;
  if (s == NULL) return 0;
  for (l = s->procs.next; l != &s->procs; l = l->next) {
    proc *p = list_entry(l, proc, node);
    char path[64], buf[512];
    FILE *f;
    if (p->task_id != t->id || p->exited) continue;
    if (n++ == 0) {
      luaL_buffinit(L, &b);
      luaL_addstring(&b, "processes it spawned, still running:");
    }
    snprintf(path, sizeof path, "/proc/%d/stat", p->pid);
    f = fopen(path, "r");
    if (f != NULL && fgets(buf, sizeof buf, f) != NULL) {
      /* "pid (comm) S ..." : the command and the state letter */
      char *open = strchr(buf, '('), *close = strrchr(buf, ')');
      if (open && close && close[1] == ' ') {
        *close = '\0';
        lua_pushfstring(L, "\n    pid %d (%s) state %c", p->pid, open + 1, close[2]);
      } else {
        lua_pushfstring(L, "\n    pid %d", p->pid);
      }
    } else {
      lua_pushfstring(L, "\n    pid %d (gone)", p->pid);
    }
    if (f != NULL) fclose(f);
    luaL_addvalue(&b);
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", p->pid, p->pid);
    f = fopen(path, "r");
    if (f != NULL) {
      if (fgets(buf, sizeof buf, f) != NULL && buf[0] != '\0') {
        size_t bl = strlen(buf);
        while (bl > 0 && (buf[bl - 1] == ' ' || buf[bl - 1] == '\n')) buf[--bl] = '\0';
        if (bl > 0) {
          luaL_addstring(&b, ", children ");
          luaL_addstring(&b, buf);
        }
      }
      fclose(f);
    }
    tail_lines(&b, p, 1);
    tail_lines(&b, p, 2);
  }
  if (n == 0) return 0;
  luaL_pushresult(&b);
  return 1;
}

static void proc_feed(proc *p, int i, const char *data, size_t n) {
  lua_State *L = p->set->core->L;
  linebuf *lb = &p->lines[i];
  int top = lua_gettop(L);
  int cb;
  tail_keep(p, i, data, n);
  ref_push(L, p->self_ref);                               /* [p] */
  lua_getiuservalue(L, -1, 1);                            /* [p uv] */
  if (p->capture && p->captured[i] <= CAPTURE_MAX) {
    lua_getfield(L, -1, i == 1 ? "stdout" : "stderr");    /* [p uv chunks] */
    if (lua_istable(L, -1)) {
      size_t keep = CAPTURE_MAX - p->captured[i] < n ? CAPTURE_MAX - p->captured[i] : n;
      lua_pushlstring(L, data, keep);
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
      p->captured[i] += keep;
      if (keep < n) {
        /* said once, at the cut: a chatty program must not fill orchlua's memory */
        lua_pushliteral(L, "\n[orchlua: output past 64 MiB not kept]\n");
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        p->captured[i] = CAPTURE_MAX + 1;
      }
    }
    lua_pop(L, 1);                                        /* [p uv] */
  }
  if (!p->has_cb[i]) {
    lua_settop(L, top);
    return;
  }
  lua_getfield(L, -1, i == 1 ? "on_stdout" : "on_stderr"); /* [p uv cb] */
  cb = lua_gettop(L);
  while (n > 0) {
    const char *nl = memchr(data, '\n', n);
    size_t len = nl ? (size_t)(nl - data) : n;
    if (lb->len + len >= p->max_line && p->max_line > 0) {
      /* fill the buffer up to max_line and hand over the piece */
      size_t take = p->max_line - lb->len;
      if (lb->len == 0) {
        deliver(L, cb, data, take, 1);
      } else {
        lb_append(lb, data, take);
        deliver(L, cb, lb->buf, lb->len, 1);
        lb->len = 0;
      }
      data += take;
      n -= take;
      continue;
    }
    if (nl == NULL) {
      if (lb_append(lb, data, n) != 0) {
        /* out of memory: hand over what there is rather than lose it */
        deliver(L, cb, lb->buf, lb->len, 1);
        lb->len = 0;
        deliver(L, cb, data, n, 1);
      }
      break;
    }
    if (lb->len == 0) {
      deliver(L, cb, data, len, 0);
    } else if (lb_append(lb, data, len) == 0) {
      deliver(L, cb, lb->buf, lb->len, 0);
      lb->len = 0;
    } else {
      deliver(L, cb, lb->buf, lb->len, 1);
      lb->len = 0;
      deliver(L, cb, data, len, 0);
    }
    data += len + 1;
    n -= len + 1;
  }
  lua_settop(L, top);
}

/* EOF on stream i: the partial last line is delivered, the pipe closed. */
static void proc_eof(proc *p, int i) {
  linebuf *lb = &p->lines[i];
  if (lb->len > 0 && p->has_cb[i]) {
    lua_State *L = p->set->core->L;
    int top = lua_gettop(L);
    ref_push(L, p->self_ref);                             /* [p] */
    lua_getiuservalue(L, -1, 1);                          /* [p uv] */
    lua_getfield(L, -1, i == 1 ? "on_stdout" : "on_stderr");
    deliver(L, lua_gettop(L), lb->buf, lb->len, 0);
    lua_settop(L, top);
  }
  lb->len = 0;
  pipe_close(p, i);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  proc *p = h->data;
  (void)suggested;
  buf->base = p->set->rbuf;
  buf->len = READ_CHUNK;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  proc *p = st->data;
  int i;
  if (p == NULL) return;
  i = (uv_pipe_t *)st == p->io[1] ? 1 : 2;
  if (n > 0) {
    proc_feed(p, i, buf->base, (size_t)n);
  } else if (n < 0) {
    proc_eof(p, i);
    proc_check_done(p);
  }
}

/* Reads what is already in the pipe, without blocking: at exit, all the
 * process wrote is there, so wait() returns with every line delivered. */
static void proc_drain(proc *p, int i) {
  size_t total = 0;
  uv_os_fd_t fd;
  while (p->io[i] != NULL && total < DRAIN_MAX) {
    ssize_t n;
    if (uv_fileno((uv_handle_t *)p->io[i], &fd) != 0) return;
    n = read(fd, p->set->rbuf, READ_CHUNK);
    if (n > 0) {
      proc_feed(p, i, p->set->rbuf, (size_t)n);
      total += (size_t)n;
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
      proc_eof(p, i);
    } else if (errno != EINTR) {
      return; /* nothing more for now: a descendant holds the pipe */
    }
  }
}

/* ---- exit ------------------------------------------------------------------ */

static void push_status(lua_State *L, proc *p) {
  if (p->sig != 0) {
    lua_pushnil(L);
    lua_pushinteger(L, p->sig);
  } else {
    lua_pushinteger(L, p->code);
    lua_pushnil(L);
  }
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig) {
  proc *p = h->data;
  if (p == NULL) return;
  p->exited = 1;
  p->code = (int)status;
  p->sig = sig;
  h->data = NULL;
  handle_close((uv_handle_t *)h);
  p->h = NULL;
  proc_drain(p, 1);
  proc_drain(p, 2);
  pipe_close(p, 0); /* pending writes are cancelled */
  p->group = group_alive(p);
  if (!p->group) p->kill_at = 0;
  while (!list_empty(&p->waiters)) {
    task *t = list_entry(p->waiters.next, task, wait);
    list_remove(&t->wait);
    t->on_wait_cancel = NULL;
    t->wait_data = NULL;
    push_status(t->co, p);
    t->nargs = 2;
    sched_ready(t);
  }
  if (p->set->ending) proc_signal(p, SIGTERM, 1); /* its descendants too */
  proc_check_done(p);
  if (p->set->timer != NULL) set_schedule(p->set);
}

/* ---- the keeper: the end of the run --------------------------------------- */

/* Kills every group: the loop has nothing left but processes nobody waits
 * for, so the run is over.  The timer keeps the loop alive until they are
 * gone, FORCE_CLOSE_MS at most. */
static void set_end(proc_set *s) {
  orch_list *l;
  s->ending = 1;
  s->force_at = uv_hrtime() + (uint64_t)FORCE_CLOSE_MS * 1000000u;
  for (l = s->procs.next; l != &s->procs; l = l->next)
    proc_signal(list_entry(l, proc, node), SIGTERM, 1);
  set_schedule(s);
}

/* Before each poll: would the loop be alive without the processes?
 * Stdin writes in flight are requests that keep it alive; they count as
 * the processes' own (the fields are uv_loop_s's public counters). */
static void on_keeper(uv_prepare_t *h) {
  proc_set *s = h->data;
  uv_loop_t *loop = h->loop;
  int alive;
  if (s == NULL || s->ending) return;
  uv_unref((uv_handle_t *)h);
  alive = uv_loop_alive(loop);
  if (alive && s->pending_reqs > 0 && loop->active_handles == 0 &&
      loop->active_reqs.count <= s->pending_reqs)
    alive = 0;
  uv_ref((uv_handle_t *)h);
  if (!alive) set_end(s);
}

static void on_set_timer(uv_timer_t *h) {
  proc_set *s = h->data;
  uint64_t now = uv_hrtime() + 1000000u; /* 1 ms early is on time */
  int force;
  orch_list *l, *next;
  if (s == NULL) return;
  force = s->ending && s->force_at != 0 && now >= s->force_at;
  for (l = s->procs.next; l != &s->procs; l = next) {
    proc *p = list_entry(l, proc, node);
    next = l->next;
    if (p->kill_at != 0 && now >= p->kill_at) {
      p->kill_at = 0;
      if (!p->exited || (p->group = group_alive(p))) killpg(p->pid, SIGKILL);
    }
    if (p->exited && p->group) p->group = group_alive(p);
    if (force) {
      /* a pipe held by a process that left the group: stop waiting */
      pipe_close(p, 1);
      pipe_close(p, 2);
    }
    proc_check_done(p);
  }
  if (s->timer == NULL) return; /* the last one went */
  if (force) {
    s->force_at = 0;
    /* still listed: unkillable (uninterruptible sleep) or outside our
     * reach; stop holding the loop, proc_shutdown reaps what it can */
    if (s->keeper != NULL) uv_unref((uv_handle_t *)s->keeper);
  }
  set_schedule(s);
}

/* A child changed state: maybe an orphaned group member (ours, as the
 * subreaper) died.  Leaders are libuv's (on_exit_cb). */
static void on_chld(uv_signal_t *h, int signum) {
  proc_set *s = h->data;
  orch_list *l, *next;
  (void)signum;
  if (s == NULL) return;
  for (l = s->procs.next; l != &s->procs; l = next) {
    proc *p = list_entry(l, proc, node);
    next = l->next;
    if (!p->group) continue;
    if (p->exited) {
      p->group = group_alive(p);
      proc_check_done(p);
    } else {
      reap_members(p);
    }
  }
  if (s->timer != NULL) set_schedule(s);
}

/* ---- called by sched.c ---------------------------------------------------- */

/* A task was cancelled or timed out: its processes' groups get SIGTERM,
 * then SIGKILL. */
void proc_task_cancelled(task *t) {
  proc_set *s = set_of(t->core);
  orch_list *l;
  int any = 0;
  if (s == NULL) return;
  for (l = s->procs.next; l != &s->procs; l = l->next) {
    proc *p = list_entry(l, proc, node);
    if (p->task_id == t->id && !p->owner_run) {
      proc_signal(p, SIGTERM, 1);
      any = 1;
    }
  }
  if (any) set_schedule(s);
}

/* Reaps leaders and notes empty groups for up to ms; 1 if all are gone. */
static int reap_wait(proc_set *s, int ms) {
  int waited = 0;
  for (;;) {
    int left = 0;
    orch_list *l;
    for (l = s->procs.next; l != &s->procs; l = l->next) {
      proc *p = list_entry(l, proc, node);
      if (!p->exited) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
          p->exited = 1;
          p->code = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
          p->sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
        } else if (r < 0 && errno == ECHILD) {
          p->exited = 1;
        }
      }
      if (p->exited && p->group) p->group = group_alive(p);
      if (!p->exited || p->group) left++;
    }
    if (left == 0) return 1;
    if (waited >= ms) return 0;
    sleep_ms(5);
    waited += 5;
  }
}

/* Descendants that left their group (setsid: a daemonizing program) are
 * out of killpg's reach; orphaned, they become orchlua's children (the
 * subreaper).  Signals those, outside orchlua's own process group (where
 * io.popen's children live), reaps their zombies; returns how many live. */
static int sweep_escaped(int sig) {
  pid_t me = getpid(), mine = getpgrp();
  DIR *d;
  struct dirent *e;
  int live = 0;
  if (!subreaper || (d = opendir("/proc")) == NULL) return 0;
  while ((e = readdir(d)) != NULL) {
    char path[64], buf[512];
    const char *rp;
    int pid = atoi(e->d_name), ppid, pgrp;
    char state;
    FILE *f;
    size_t n;
    if (pid <= 0) continue;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if ((f = fopen(path, "r")) == NULL) continue;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if ((rp = strrchr(buf, ')')) == NULL ||
        sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) != 3)
      continue;
    if (ppid != me || pgrp == mine || pid == guardian_pid()) continue; /* not an escapee */
    if (state == 'Z') {
      waitpid(pid, NULL, WNOHANG);
    } else {
      live++;
      if (sig != 0) {
        if (pgrp == pid) killpg(pid, sig); else kill(pid, sig);
      }
    }
  }
  closedir(d);
  return live;
}

/* The exit path, after the listed processes: TERM, KILL, reap. */
static void sweep_all(void) {
  int waited = 0;
  if (sweep_escaped(SIGTERM) == 0) return;
  while (waited < KILL_DELAY_MS && sweep_escaped(0) > 0) {
    sleep_ms(10);
    waited += 10;
  }
  sweep_escaped(SIGKILL);
  for (waited = 0; waited < 500 && sweep_escaped(0) > 0; waited += 10) sleep_ms(10);
}

/* The exit path (sched_close): whatever is still listed is killed and
 * reaped here, synchronously, without running the loop (no user callback
 * runs, and no handle left open by an aborted run can hold it up). */
void proc_shutdown(orch_core *c) {
  proc_set *s = set_of(c);
  orch_list *l, *next;
  if (s == NULL) return;
  if (s->n > 0) {
    /* take reaping over from libuv: a closed process handle is no longer
     * waited for by libuv */
    for (l = s->procs.next; l != &s->procs; l = l->next) {
      proc *p = list_entry(l, proc, node);
      if (p->h != NULL) {
        p->h->data = NULL;
        handle_close((uv_handle_t *)p->h);
        p->h = NULL;
      }
      if (!p->exited || p->group) killpg(p->pid, SIGTERM);
    }
    if (!reap_wait(s, KILL_DELAY_MS)) {
      for (l = s->procs.next; l != &s->procs; l = l->next) {
        proc *p = list_entry(l, proc, node);
        if (!p->exited || p->group) killpg(p->pid, SIGKILL);
      }
      reap_wait(s, 1000);
    }
    for (l = s->procs.next; l != &s->procs; l = next) {
      proc *p = list_entry(l, proc, node);
      next = l->next;
      while (!list_empty(&p->waiters)) {
        task *t = list_entry(p->waiters.next, task, wait);
        list_remove(&t->wait);
        t->on_wait_cancel = NULL;
        t->wait_data = NULL;
      }
      p->exited = 1;
      p->group = 0;
      proc_finish(p);
    }
  }
  set_idle(s);
  sweep_all();
}

/* ---- core.spawn ------------------------------------------------------------ */

static proc *check_proc(lua_State *L, int i) {
  return luaL_checkudata(L, i, PROC_MT);
}

/* Raises "bad argument #1 to 'fname' (msg)" */
static int opt_error(lua_State *L, const char *fname, const char *msg) {
  return luaL_error(L, "bad argument #1 to '%s' (%s)", fname, msg);
}

/* argv from opts.cmd, as a NULL-terminated array in a new userdata (the
 * strings stay anchored by the cmd table).  [..] -> [.. argv_ud] */
static char **build_argv(lua_State *L, int opts, const char *fname) {
  lua_Integer i, n;
  char **argv;
  int cmd;
  lua_getfield(L, opts, "cmd");                           /* [.. cmd] */
  cmd = lua_gettop(L);
  if (!lua_istable(L, cmd))
    opt_error(L, fname, lua_pushfstring(L, "cmd: list of strings expected, got %s",
                                        luaL_typename(L, cmd)));
  n = (lua_Integer)lua_rawlen(L, cmd);
  if (n == 0) opt_error(L, fname, "cmd: non-empty list expected, got an empty list");
  argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *argv, 1); /* [.. cmd argv] */
  lua_pushvalue(L, cmd);
  lua_setiuservalue(L, -2, 1);   /* the strings live as long as argv */
  for (i = 1; i <= n; i++) {
    if (lua_rawgeti(L, cmd, i) != LUA_TSTRING)
      opt_error(L, fname, lua_pushfstring(L, "cmd[%d]: string expected, got %s",
                                          (int)i, luaL_typename(L, -1)));
    argv[i - 1] = (char *)(uintptr_t)lua_tostring(L, -1); /* exec's char *[]: not written */
    lua_pop(L, 1);
  }
  argv[n] = NULL;
  lua_remove(L, cmd);                                     /* [.. argv] */
  return argv;
}

/* The child's environment: the current one with opts.env merged over it
 * (a false value unsets), or only opts.env with opts.clear_env.  NULL when
 * neither is given (the child inherits).  [..] -> [.. holder] */
static char **build_env(lua_State *L, int opts, const char *fname) {
  int env, holder, clear, n = 0, cap, i;
  char **envp;
  lua_getfield(L, opts, "clear_env");
  clear = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, opts, "env");                           /* [.. env] */
  env = lua_gettop(L);
  if (lua_isnil(L, env) && !clear) {
    lua_pop(L, 1);
    lua_pushnil(L);                                       /* [.. nil] */
    return NULL;
  }
  if (!lua_isnil(L, env) && !lua_istable(L, env))
    opt_error(L, fname, lua_pushfstring(L, "env: table expected, got %s", luaL_typename(L, env)));
  lua_newtable(L);                                        /* [.. env holder] */
  holder = lua_gettop(L);
  /* holder[name] = "name=value" for every variable the child gets */
  if (!clear) {
    char **e;
    for (e = environ; *e != NULL; e++) {
      const char *eq = strchr(*e, '=');
      if (eq == NULL) continue;
      lua_pushlstring(L, *e, (size_t)(eq - *e));
      lua_pushstring(L, *e);
      lua_rawset(L, holder);
    }
  }
  if (lua_istable(L, env)) {
    lua_pushnil(L);
    while (lua_next(L, env) != 0) {                       /* [.. env holder k v] */
      const char *k;
      if (lua_type(L, -2) != LUA_TSTRING)
        opt_error(L, fname, lua_pushfstring(L, "env: keys must be strings, got %s",
                                            luaL_typename(L, -2)));
      k = lua_tostring(L, -2);
      if (*k == '\0' || strchr(k, '=') != NULL)
        opt_error(L, fname, lua_pushfstring(L, "env: invalid variable name \"%s\"", k));
      lua_pushvalue(L, -2);                               /* [.. k v k] */
      if (lua_type(L, -2) == LUA_TSTRING || lua_type(L, -2) == LUA_TNUMBER) {
        lua_pushfstring(L, "%s=%s", k, lua_tostring(L, -2));
      } else if (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2)) {
        lua_pushnil(L);                                   /* false: unset */
      } else {
        opt_error(L, fname, lua_pushfstring(L, "env.%s: string, number or false expected, got %s",
                                            k, luaL_typename(L, -2)));
      }
      lua_rawset(L, holder);                              /* [.. env holder k v] */
      lua_pop(L, 1);
    }
  }
  lua_pushnil(L);
  while (lua_next(L, holder) != 0) {
    n++;
    lua_pop(L, 1);
  }
  cap = n + 1;
  envp = lua_newuserdatauv(L, (size_t)cap * sizeof *envp, 1); /* [.. env holder envp] */
  lua_pushvalue(L, holder);
  lua_setiuservalue(L, -2, 1);
  i = 0;
  lua_pushnil(L);
  while (lua_next(L, holder) != 0 && i < n) {
    envp[i++] = (char *)(uintptr_t)lua_tostring(L, -1); /* exec's char *[]: not written */
    lua_pop(L, 1);
  }
  envp[i] = NULL;
  lua_replace(L, env);                                    /* [.. envp holder] */
  lua_pop(L, 1);                                          /* [.. envp] */
  return envp;
}

static void get_callback(lua_State *L, int opts, int uv, const char *name,
                         const char *fname) {
  lua_getfield(L, opts, name);
  if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
    opt_error(L, fname, lua_pushfstring(L, "%s: function expected, got %s", name,
                                        luaL_typename(L, -1)));
  lua_setfield(L, uv, name);
}

static uv_pipe_t *new_pipe(orch_core *c) {
  uv_pipe_t *pp = handle_new(c, sizeof *pp);
  UV_CHECK(uv_pipe_init(&c->loop, pp, 0));
  return pp;
}

static void on_write(uv_write_t *req, int status) {
  proc_set *s = req->data;
  (void)status; /* EPIPE: the process closed its stdin or exited */
  if (s != NULL) s->pending_reqs--;
  free(req);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  proc_set *s = req->data;
  (void)status;
  if (s != NULL) s->pending_reqs--;
  if (req->handle->data != NULL) { /* NULL: the pipe was closed meanwhile */
    proc *p = req->handle->data;
    if (p->io[0] == (uv_pipe_t *)req->handle) pipe_close(p, 0);
  }
  free(req);
}

/* Queues s on stdin (copied).  0 or a libuv error. */
static int stdin_write(proc *p, const char *data, size_t n) {
  uv_write_t *req;
  uv_buf_t buf;
  int r;
  if (p->io[0] == NULL) return UV_EPIPE;
  req = malloc(sizeof *req + n);
  if (req == NULL) return UV_ENOMEM;
  memcpy((char *)(req + 1), data, n);
  buf = uv_buf_init((char *)(req + 1), (unsigned)n);
  req->data = p->set;
  r = uv_write(req, (uv_stream_t *)p->io[0], &buf, 1, on_write);
  if (r != 0) {
    free(req);
    return r;
  }
  p->set->pending_reqs++;
  return 0;
}

/* Closes stdin once what was written is flushed. */
static void stdin_close(proc *p) {
  uv_shutdown_t *req;
  if (p->io[0] == NULL) return;
  req = malloc(sizeof *req);
  if (req != NULL) {
    req->data = p->set;
    if (uv_shutdown(req, (uv_stream_t *)p->io[0], on_shutdown) == 0) {
      p->set->pending_reqs++;
      return;
    }
    free(req);
  }
  pipe_close(p, 0);
}

static const char *const OWNERS[] = {"invocation", "run"};

/* core.spawn(opts, [fname]) -> process | nil, message, errname
 * opts: cmd (list of strings), env, clear_env, cwd, on_stdout, on_stderr,
 * stdin (true: a pipe; a string: written, then closed; default /dev/null),
 * capture (keep stdout/stderr for process:output()), max_line, owner. */
static int l_core_spawn(lua_State *L) {
  orch_core *c = core_get(L);
  proc_set *s = lua_touserdata(L, lua_upvalueindex(1));
  const char *fname = luaL_optstring(L, 2, "orch.spawn");
  char **argv, **envp;
  const char *cwd = NULL, *stdin_text = NULL;
  size_t stdin_len = 0;
  int stdin_pipe = 0, owner_run, uv, i, r;
  lua_Integer max_line;
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  task *t;
  proc *p;
  if (!lua_istable(L, 1))
    return opt_error(L, fname, lua_pushfstring(L, "table expected, got %s", luaL_typename(L, 1)));
  lua_settop(L, 2);
  argv = build_argv(L, 1, fname);                         /* [opts fname argv] */
  envp = build_env(L, 1, fname);                          /* [opts fname argv envp] */
  lua_getfield(L, 1, "cwd");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      return opt_error(L, fname, lua_pushfstring(L, "cwd: string expected, got %s", luaL_typename(L, -1)));
    cwd = lua_tostring(L, -1);
  }                                                       /* [opts fname argv envp cwd] */
  lua_getfield(L, 1, "stdin");                            /* [.. cwd stdin] */
  if (lua_type(L, -1) == LUA_TSTRING) {
    stdin_text = lua_tolstring(L, -1, &stdin_len);
    stdin_pipe = 1;
  } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
    stdin_pipe = lua_toboolean(L, -1);
  } else if (!lua_isnil(L, -1)) {
    return opt_error(L, fname, lua_pushfstring(L, "stdin: true, false or a string expected, got %s",
                                               luaL_typename(L, -1)));
  }
  lua_getfield(L, 1, "max_line");
  max_line = lua_isnil(L, -1) ? (lua_Integer)DEFAULT_MAX_LINE : lua_tointeger(L, -1);
  if (max_line <= 0)
    return opt_error(L, fname, "max_line: positive integer expected");
  lua_pop(L, 1);
  lua_getfield(L, 1, "owner");
  owner_run = 0;
  if (!lua_isnil(L, -1)) {
    const char *o2 = lua_tostring(L, -1);
    if (o2 == NULL || (strcmp(o2, OWNERS[0]) != 0 && strcmp(o2, OWNERS[1]) != 0))
      return opt_error(L, fname, "owner: \"invocation\" or \"run\" expected");
    owner_run = strcmp(o2, "run") == 0;
  }
  lua_pop(L, 1);

  /* the process object: [.. stdin p uv] */
  p = lua_newuserdatauv(L, sizeof *p, 1);
  memset(p, 0, sizeof *p);
  p->set = s;
  p->self_ref = LUA_NOREF;
  p->pid = -1;
  p->owner_run = owner_run;
  p->max_line = (size_t)max_line;
  list_init(&p->waiters);
  list_init(&p->node);
  luaL_setmetatable(L, PROC_MT);
  lua_newtable(L);
  uv = lua_gettop(L);
  get_callback(L, 1, uv, "on_stdout", fname);
  get_callback(L, 1, uv, "on_stderr", fname);
  lua_getfield(L, 1, "capture");
  p->capture = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (p->capture) {
    lua_newtable(L);
    lua_setfield(L, uv, "stdout");
    lua_newtable(L);
    lua_setfield(L, uv, "stderr");
  }
  lua_pushstring(L, argv[0]);
  lua_setfield(L, uv, "name");
  lua_getfield(L, uv, "on_stdout");
  p->has_cb[1] = !lua_isnil(L, -1);
  lua_getfield(L, uv, "on_stderr");
  p->has_cb[2] = !lua_isnil(L, -1);
  lua_pop(L, 2);
  lua_setiuservalue(L, -2, 1);                            /* [.. stdin p] */

  t = sched_current(L);
  p->task_id = t != NULL ? t->id : 0;

  /* a cwd that is not a directory is reported as such: libuv reports a
   * failed chdir as ENOENT, the same as a missing program */
  if (cwd != NULL) {
    struct stat st;
    if (stat(cwd, &st) != 0 || !S_ISDIR(st.st_mode)) {
      int e = stat(cwd, &st) != 0 ? errno : ENOTDIR;
      lua_pushnil(L);
      lua_pushfstring(L, "%s: cannot run \"%s\": cwd \"%s\": %s", fname, argv[0], cwd,
                      uv_strerror(uv_translate_sys_error(e)));
      lua_pushstring(L, uv_err_name(uv_translate_sys_error(e)));
      return 3;
    }
  }

  /* everything that can raise is done: from here, handles */
  memset(&o, 0, sizeof o);
  memset(stdio, 0, sizeof stdio);
  if (stdin_pipe) {
    p->io[0] = new_pipe(c);
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)p->io[0];
  } else {
    stdio[0].flags = UV_IGNORE;
  }
  for (i = 1; i <= 2; i++) {
    if (p->has_cb[i] || p->capture) {
      p->io[i] = new_pipe(c);
      stdio[i].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
      stdio[i].data.stream = (uv_stream_t *)p->io[i];
    } else {
      stdio[i].flags = UV_IGNORE; /* /dev/null */
    }
  }
  o.exit_cb = on_exit_cb;
  o.file = argv[0];
  o.args = argv;
  o.env = envp;
  o.cwd = cwd;
  o.flags = UV_PROCESS_DETACHED; /* setsid(): its own process group */
  o.stdio_count = 3;
  o.stdio = stdio;
  p->h = handle_new(c, sizeof *p->h);
  emerg_install();
  fork_parent = getpid();
  forking = 1;
  r = uv_spawn(&c->loop, p->h, &o);
  forking = 0;
  if (r != 0) {
    /* a failed uv_spawn still closes its handle, and the pipes */
    handle_close((uv_handle_t *)p->h);
    p->h = NULL;
    pipe_close(p, 0);
    pipe_close(p, 1);
    pipe_close(p, 2);
    p->exited = 1;
    lua_pushnil(L);
    lua_pushfstring(L, "%s: cannot run \"%s\": %s", fname, argv[0], uv_strerror(r));
    lua_pushstring(L, uv_err_name(r));
    return 3;
  }
  p->pid = p->h->pid;
  p->group = 1;
  p->h->data = p;
  uv_unref((uv_handle_t *)p->h);
  for (i = 0; i <= 2; i++) {
    if (p->io[i] == NULL) continue;
    p->io[i]->data = p;
    uv_unref((uv_handle_t *)p->io[i]);
    if (i > 0) UV_CHECK(uv_read_start((uv_stream_t *)p->io[i], on_alloc, on_read));
  }
  lua_pushvalue(L, -1);
  p->self_ref = ref_new(L);
  p->listed = 1;
  list_push(&s->procs, &p->node);
  s->n++;
  emerg_add(p->pid);
  set_busy(s);
  if (stdin_text != NULL) {
    if (stdin_len > 0) stdin_write(p, stdin_text, stdin_len);
    stdin_close(p);
  }
  if (s->ending) proc_signal(p, SIGTERM, 1); /* spawned after the end */
  set_schedule(s);
  return 1;
}

/* core.kill_processes([signal]) -> number of groups signalled.  SIGTERM by
 * default; any group alive KILL_DELAY_MS later gets SIGKILL. */
static int sig_arg(lua_State *L, int i, int def);

static int l_core_kill_processes(lua_State *L) {
  proc_set *s = lua_touserdata(L, lua_upvalueindex(1));
  int sig = sig_arg(L, 1, SIGTERM);
  int n = 0;
  orch_list *l;
  for (l = s->procs.next; l != &s->procs; l = l->next)
    if (proc_signal(list_entry(l, proc, node), sig, 1) == 0) n++;
  set_schedule(s);
  lua_pushinteger(L, n);
  return 1;
}

/* core.processes() -> processes listed (running, or a group lingering) */
static int l_core_processes(lua_State *L) {
  proc_set *s = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushinteger(L, s->n);
  return 1;
}

/* ---- orch.Process methods ------------------------------------------------- */

static const struct {
  const char *name;
  int sig;
} SIGNALS[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
               {"KILL", SIGKILL}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
               {"USR2", SIGUSR2}, {"STOP", SIGSTOP}, {"CONT", SIGCONT},
               {"ALRM", SIGALRM}, {"PIPE", SIGPIPE}, {"WINCH", SIGWINCH},
               {"ABRT", SIGABRT}, {NULL, 0}};

/* A signal number or name ("TERM", "SIGTERM", "term"); def if absent. */
static int sig_arg(lua_State *L, int i, int def) {
  if (lua_isnoneornil(L, i)) return def;
  if (lua_type(L, i) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, i);
    luaL_argcheck(L, n >= 0 && n < 65, i, "signal number out of range");
    return (int)n;
  } else {
    const char *name = luaL_checkstring(L, i);
    int k;
    if (strncasecmp(name, "SIG", 3) == 0) name += 3;
    for (k = 0; SIGNALS[k].name != NULL; k++)
      if (strcasecmp(name, SIGNALS[k].name) == 0) return SIGNALS[k].sig;
    return luaL_argerror(L, i, lua_pushfstring(L, "unknown signal \"%s\"", lua_tostring(L, i)));
  }
}

static void wait_detach(task *t) {
  proc *p = t->wait_data;
  list_remove(&t->wait);
  t->wait_data = NULL;
  if (p != NULL) proc_update_ref(p);
}

/* process:wait([timeout_sec]) -> code, nil | nil, signal | nil, "timeout".
 * Yields until the process exits (its output up to then delivered). */
static int l_proc_wait(lua_State *L) {
  proc *p = check_proc(L, 1);
  task *t;
  if (p->exited) {
    push_status(L, p);
    return 2;
  }
  t = orch_need_task(L, "process:wait");
  if (!lua_isnoneornil(L, 2)) {
    double sec = luaL_checknumber(L, 2);
    luaL_argcheck(L, sec == sec, 2, "timeout must be a number");
    if (sec <= 0) {
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
    sched_timer_wait(t, sched_real_ms(t->core, sec), 2);
  }
  list_push(&p->waiters, &t->wait);
  t->on_wait_cancel = wait_detach;
  t->wait_data = p;
  proc_update_ref(p);
  return sched_wait(L, t);
}

/* process:kill([signal]) -> true | nil, message.  The whole group. */
static int l_proc_kill(lua_State *L) {
  proc *p = check_proc(L, 1);
  int sig = sig_arg(L, 2, SIGTERM);
  int e = proc_signal(p, sig, 0);
  if (e != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "process %d: %s", p->pid,
                    e == ESRCH ? "has exited" : uv_strerror(uv_translate_sys_error(e)));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* process:terminate(): SIGTERM to the group, SIGKILL 500 ms later if it
 * lives on.  Does not wait: follow with process:wait(). */
static int l_proc_terminate(lua_State *L) {
  proc *p = check_proc(L, 1);
  int e = proc_signal(p, SIGTERM, 1);
  if (p->listed) set_schedule(p->set);
  lua_pushboolean(L, e == 0);
  return 1;
}

static int l_proc_is_running(lua_State *L) {
  lua_pushboolean(L, !check_proc(L, 1)->exited);
  return 1;
}

/* process:status() -> "running" | "exited", code | "signaled", signal */
static int l_proc_status(lua_State *L) {
  proc *p = check_proc(L, 1);
  if (!p->exited) {
    lua_pushliteral(L, "running");
    return 1;
  }
  lua_pushstring(L, p->sig ? "signaled" : "exited");
  lua_pushinteger(L, p->sig ? p->sig : p->code);
  return 2;
}

/* process:write(s...) -> true | nil, message.  Queued, never blocks. */
static int l_proc_write(lua_State *L) {
  proc *p = check_proc(L, 1);
  int i, n = lua_gettop(L);
  for (i = 2; i <= n; i++) luaL_checkstring(L, i);
  if (p->io[0] == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, p->exited ? "stdin is closed: the process has exited"
                                : "stdin is not a pipe (spawn with stdin = true) or is closed");
    return 2;
  }
  for (i = 2; i <= n; i++) {
    size_t len;
    const char *s = lua_tolstring(L, i, &len);
    int r = len > 0 ? stdin_write(p, s, len) : 0;
    if (r != 0) {
      lua_pushnil(L);
      lua_pushfstring(L, "stdin: %s", uv_strerror(r));
      return 2;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* process:close_stdin(): EOF for the process once the writes are flushed. */
static int l_proc_close_stdin(lua_State *L) {
  stdin_close(check_proc(L, 1));
  return 0;
}

/* process:output() -> stdout, stderr captured so far (capture = true). */
static int l_proc_output(lua_State *L) {
  int k;
  check_proc(L, 1);
  lua_getiuservalue(L, 1, 1);                             /* [p uv] */
  for (k = 0; k < 2; k++) {
    luaL_Buffer b;
    lua_Integer i, n;
    int chunks;
    lua_getfield(L, 2, k == 0 ? "stdout" : "stderr");     /* [p uv .. chunks] */
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      lua_pushnil(L);
      continue;
    }
    chunks = lua_gettop(L);
    n = (lua_Integer)lua_rawlen(L, chunks);
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
      lua_rawgeti(L, chunks, i);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);                                  /* [.. chunks s] */
    lua_remove(L, chunks);                                /* [.. s] */
  }
  return 2;
}

static int l_proc_tostring(lua_State *L) {
  proc *p = check_proc(L, 1);
  const char *name;
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "name");
  name = lua_tostring(L, -1);
  if (p->pid < 0)
    lua_pushfstring(L, "orch.Process (%s, not started)", name ? name : "?");
  else if (!p->exited)
    lua_pushfstring(L, "orch.Process (%s, pid %d, running)", name ? name : "?", p->pid);
  else if (p->sig)
    lua_pushfstring(L, "orch.Process (%s, pid %d, killed by signal %d)", name ? name : "?", p->pid, p->sig);
  else
    lua_pushfstring(L, "orch.Process (%s, pid %d, exited %d)", name ? name : "?", p->pid, p->code);
  return 1;
}

/* __index: the field pid, then the methods (upvalue 1). */
static int l_proc_index(lua_State *L) {
  proc *p = check_proc(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k != NULL && strcmp(k, "pid") == 0) {
    if (p->pid < 0) return 0;
    lua_pushinteger(L, p->pid);
    return 1;
  }
  lua_settop(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

/* __close: `local p <close> = orch.spawn{...}` terminates it at scope end. */
static int l_proc_close(lua_State *L) {
  proc *p = check_proc(L, 1);
  if (p->listed && (!p->exited || p->group)) {
    proc_signal(p, SIGTERM, 1);
    set_schedule(p->set);
  }
  return 0;
}

/* __gc: only reachable once unlisted (self_ref is held until then). */
static int l_proc_gc(lua_State *L) {
  proc *p = check_proc(L, 1);
  int i;
  for (i = 0; i < 3; i++) {
    free(p->lines[i].buf);
    p->lines[i].buf = NULL;
    p->lines[i].len = p->lines[i].cap = 0;
  }
  return 0;
}

/* Adds spawn and friends to the core module table on top of the stack. */
int proc_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"wait", l_proc_wait},
                                     {"kill", l_proc_kill},
                                     {"terminate", l_proc_terminate},
                                     {"is_running", l_proc_is_running},
                                     {"status", l_proc_status},
                                     {"write", l_proc_write},
                                     {"close_stdin", l_proc_close_stdin},
                                     {"output", l_proc_output},
                                     {NULL, NULL}};
  static const luaL_Reg fns[] = {{"spawn", l_core_spawn},
                                 {"kill_processes", l_core_kill_processes},
                                 {"processes", l_core_processes},
                                 {NULL, NULL}};
  int core = lua_gettop(L);
  proc_set *s;
  s = lua_newuserdatauv(L, sizeof *s, 0);                 /* [core set] */
  memset(s, 0, sizeof *s);
  s->core = core_get(L);
  list_init(&s->procs);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SET_KEY);            /* [core set] */
  lua_pushvalue(L, core);                                 /* [core set core] */
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, fns, 1);                               /* [core set core] */
  lua_pop(L, 2);                                          /* [core] */
  luaL_newmetatable(L, PROC_MT);                          /* [core mt] */
  luaL_newlib(L, methods);                                /* [core mt methods] */
  lua_pushvalue(L, -1);
  lua_setfield(L, core, "Process");
  lua_pushcclosure(L, l_proc_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_proc_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, l_proc_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_proc_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);                                          /* [core] */
  return 0;
}
