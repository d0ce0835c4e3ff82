/*
 * pgroup.c - the keeper of process groups: the emergency kill list, the
 * guardian's track/untrack calls, reaping, and the end-of-run kill.
 *
 * Nothing outlives the run.  Every process is spawned with
 * UV_PROCESS_DETACHED, i.e. setsid(): it leads its own process group
 * (pgid == pid), and every kill is a killpg, so what it started dies with
 * it.  A kill is SIGTERM, then SIGKILL KILL_DELAY_MS later for any group
 * still alive.  Groups are killed:
 *   - when the task that spawned them is cancelled or times out
 *     (pgroup_task_cancelled, from sched.c task_finish), unless spawned with
 *     owner = "run";
 *   - by core.kill_processes (the engine's cancel_all: after grace, and on
 *     a second signal);
 *   - when the loop has nothing left to do but run processes nobody waits
 *     for (the keeper, below): the run is over, and core.run() returns only
 *     once they are gone, so a run ends with no handle or ref left;
 *   - on the exit path (pgroup_shutdown, from sched_close), synchronously;
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
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "lauxlib.h"

#include "core.h"
#include "guardian.h"
#include "pgroup.h"

#define KILL_DELAY_MS 500      /* SIGTERM -> SIGKILL, real time */
#define FORCE_CLOSE_MS 1500    /* after the end-of-run kill: stop waiting */
#define PRUNE_MS 1000          /* lingering groups are checked this often */

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
void pgroup_last_resort(void) {
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

proc_set *pgroup_set_of(orch_core *c) {
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
int proc_group_alive(proc *p) {
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
void pgroup_schedule(proc_set *s) {
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

/* Creates the state's set, pushes it and keeps it in the registry. */
proc_set *pgroup_set_new(lua_State *L) {
  proc_set *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->core = core_get(L);
  list_init(&s->procs);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SET_KEY);
  return s;
}

/* uv_spawn with the fork hooks armed (on_fork_child acts only then). */
int pgroup_spawn(uv_loop_t *loop, uv_process_t *h, const uv_process_options_t *o) {
  int r;
  emerg_install();
  fork_parent = getpid();
  forking = 1;
  r = uv_spawn(loop, h, o);
  forking = 0;
  return r;
}

/* Lists a spawned process: its group is killed at the end, at exit() and
 * on a crash, and by the guardian if orchlua dies. */
void pgroup_list(proc *p) {
  proc_set *s = p->set;
  p->listed = 1;
  list_push(&s->procs, &p->node);
  s->n++;
  emerg_add(p->pid);
  set_busy(s);
}

/* ---- one process --------------------------------------------------------- */

void proc_pipe_close(proc *p, int i) {
  uv_pipe_t *pp = p->io[i];
  if (pp == NULL) return;
  p->io[i] = NULL;
  pp->data = NULL;
  handle_close((uv_handle_t *)pp);
}

/* Unlists a process that is over: exited, outputs at EOF, group empty. */
static void proc_finish(proc *p) {
  proc_set *s = p->set;
  lua_State *L = s->core->L;
  int i;
  proc_pipe_close(p, 0);
  proc_pipe_close(p, 1);
  proc_pipe_close(p, 2);
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

void proc_check_done(proc *p) {
  if (p->listed && p->exited && p->io[1] == NULL && p->io[2] == NULL && !p->group)
    proc_finish(p);
}

/* Signals the group; with SIGTERM (or any signal but SIGKILL) when
 * escalate is set, a SIGKILL follows KILL_DELAY_MS later if it lives on.
 * Returns 0 or an errno. */
int proc_signal(proc *p, int sig, int escalate) {
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
  pgroup_schedule(s);
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
      if (!p->exited || (p->group = proc_group_alive(p))) killpg(p->pid, SIGKILL);
    }
    if (p->exited && p->group) p->group = proc_group_alive(p);
    if (force) {
      /* a pipe held by a process that left the group: stop waiting */
      proc_pipe_close(p, 1);
      proc_pipe_close(p, 2);
    }
    proc_check_done(p);
  }
  if (s->timer == NULL) return; /* the last one went */
  if (force) {
    s->force_at = 0;
    /* still listed: unkillable (uninterruptible sleep) or outside our
     * reach; stop holding the loop, pgroup_shutdown reaps what it can */
    if (s->keeper != NULL) uv_unref((uv_handle_t *)s->keeper);
  }
  pgroup_schedule(s);
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
      p->group = proc_group_alive(p);
      proc_check_done(p);
    } else {
      reap_members(p);
    }
  }
  if (s->timer != NULL) pgroup_schedule(s);
}

/* ---- called by sched.c ---------------------------------------------------- */

/* A task was cancelled or timed out: its processes' groups get SIGTERM,
 * then SIGKILL. */
void pgroup_task_cancelled(task *t) {
  proc_set *s = pgroup_set_of(t->core);
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
  if (any) pgroup_schedule(s);
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
      if (p->exited && p->group) p->group = proc_group_alive(p);
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
void pgroup_shutdown(orch_core *c) {
  proc_set *s = pgroup_set_of(c);
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
int pgroup_forensics(lua_State *L, task *t) {
  proc_set *s = pgroup_set_of(t->core);
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
