/*
 * guardian.c - the guardian: a small process forked at start (before any
 * thread, so it may use malloc), holding the read end of a pipe whose
 * write end only orchlua holds (close-on-exec, so no child inherits it).
 * EOF on the pipe means orchlua is gone; a "done" message before it means
 * orchlua ended in order and did its own cleaning.  Without it the
 * guardian does what orchlua's exit path would have done:
 *
 *   1. SIGCONT then SIGTERM to every process group orchlua reported (a
 *      stopped process cannot act on SIGTERM: fault injection stops them);
 *   2. runs the undo actions (orch.on_abandon), last registered first,
 *      each bounded by UNDO_MS;
 *   3. SIGKILL to every group still alive KILL_MS after the SIGTERM.
 *
 * Messages are a type byte, a 4-byte length and the payload, each written
 * in one write(2) of at most PIPE_BUF bytes, so none is ever split.  The
 * write end is non-blocking: a guardian that stopped reading must not stop
 * the run (a message lost then is a group it cannot end).  A spawn costs
 * one write.  Signals from the terminal or a supervisor go to orchlua,
 * which answers them in order; the guardian leaves the process group
 * (setsid) and ignores them, and ends at EOF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"

#include "guardian.h"

#define UNDO_MS 10000 /* an undo action running longer is killed */
#define KILL_MS 500   /* SIGTERM, then SIGKILL for what is left */

enum { M_TRACK = 'G', M_UNTRACK = 'U', M_UNDO = 'A', M_DONE = 'D' };

static int gfd = -1; /* orchlua's end; one process, one guardian */
static pid_t gpid;

void std_fds_hold(void) {
  int fd;
  /* a closed 0, 1 or 2 would be handed out again by the next open (libuv's
   * own pipes among them, which it then refuses to close: an assertion) */
  for (fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      int got = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
      if (got >= 0 && got != fd) {
        dup2(got, fd);
        close(got);
      }
    }
  }
}

static void send_msg(int type, const void *p, size_t n) {
  char buf[PIPE_BUF];
  uint32_t len = (uint32_t)n;
  ssize_t w;
  int waited_ms = 0;
  if (gfd < 0 || n + 5 > sizeof buf) return;
  buf[0] = (char)type;
  memcpy(buf + 1, &len, 4);
  if (n > 0) memcpy(buf + 5, p, n);
  for (;;) {
    w = write(gfd, buf, n + 5);
    if (w >= 0 || errno == EINTR) {
      if (w >= 0) return;
      continue;
    }
    if (errno != EAGAIN || waited_ms >= 20) return;
    /* the pipe is full (a burst of spawns; a pipe of one page when the
     * user's pipes are many): the guardian reads it within moments */
    {
      struct pollfd pf = {gfd, POLLOUT, 0};
      poll(&pf, 1, 5);
      waited_ms += 5;
    }
  }
}

void guardian_track(pid_t pg) { send_msg(M_TRACK, &pg, sizeof pg); }
void guardian_untrack(pid_t pg) { send_msg(M_UNTRACK, &pg, sizeof pg); }

int guardian_undo(const char *argv0, size_t len) {
  if (len + 5 > PIPE_BUF) return -1;
  send_msg(M_UNDO, argv0, len);
  return 0;
}

pid_t guardian_pid(void) { return gpid; }

void guardian_done(void) {
  if (gfd < 0) return;
  /* "done" must arrive: blocking, whatever is still in the pipe */
  fcntl(gfd, F_SETFL, fcntl(gfd, F_GETFL) & ~O_NONBLOCK);
  send_msg(M_DONE, NULL, 0);
  close(gfd);
  gfd = -1;
  /* it ends at the EOF: reaped here, not left to an init that may not reap */
  while (waitpid(gpid, NULL, 0) < 0 && errno == EINTR) {}
}

/* ---- the guardian's side ------------------------------------------------ */

typedef struct {
  pid_t *pg;
  size_t n, cap;
  char **undo; /* each a malloc'd payload: argv strings end to end */
  size_t *undo_len;
  size_t nundo, capundo;
} gstate;

static void ms_sleep(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void *grow(void *p, size_t *cap, size_t n, size_t size) {
  if (n < *cap) return p;
  *cap = *cap ? *cap * 2 : 64;
  return realloc(p, *cap * size);
}

static void track(gstate *g, pid_t pg) {
  pid_t *a = grow(g->pg, &g->cap, g->n, sizeof *a);
  if (a == NULL) return;
  g->pg = a;
  g->pg[g->n++] = pg;
}

static void untrack(gstate *g, pid_t pg) {
  size_t i;
  for (i = g->n; i-- > 0;) {
    if (g->pg[i] == pg) {
      g->pg[i] = g->pg[--g->n];
      return;
    }
  }
}

static void add_undo(gstate *g, const char *p, size_t n) {
  char *copy;
  if (g->nundo == g->capundo) {
    size_t cap = g->capundo ? g->capundo * 2 : 16;
    char **a = realloc(g->undo, cap * sizeof *a);
    size_t *l;
    if (a == NULL) return;
    g->undo = a;
    l = realloc(g->undo_len, cap * sizeof *l);
    if (l == NULL) return;
    g->undo_len = l;
    g->capundo = cap;
  }
  copy = malloc(n + 1);
  if (copy == NULL) return;
  memcpy(copy, p, n);
  copy[n] = '\0';
  g->undo[g->nundo] = copy;
  g->undo_len[g->nundo++] = n;
}

/* Runs one undo action (argv strings end to end) and waits for it, at most
 * UNDO_MS; its output goes where the guardian's does (/dev/null). */
static void run_undo(const char *p, size_t n) {
  char *argv[64];
  int argc = 0, waited = 0;
  size_t i = 0;
  pid_t pid;
  while (i < n && argc < 63) {
    argv[argc++] = (char *)(uintptr_t)(p + i); /* execvp takes char *const[] */
    i += strlen(p + i) + 1;
  }
  argv[argc] = NULL;
  if (argc == 0) return;
  pid = fork();
  if (pid == 0) {
    setsid();
    execvp(argv[0], argv);
    _exit(127);
  }
  if (pid < 0) return;
  while (waitpid(pid, NULL, WNOHANG) == 0) {
    if (waited >= UNDO_MS) {
      kill(-pid, SIGKILL);
      waitpid(pid, NULL, 0);
      return;
    }
    ms_sleep(10);
    waited += 10;
  }
}

static void abandon(gstate *g) {
  size_t i;
  int waited = 0;
  for (i = 0; i < g->n; i++) killpg(g->pg[i], SIGCONT);
  for (i = 0; i < g->n; i++) killpg(g->pg[i], SIGTERM);
  for (i = g->nundo; i-- > 0;) run_undo(g->undo[i], g->undo_len[i]);
  while (waited < KILL_MS) {
    int alive = 0;
    for (i = 0; i < g->n; i++)
      if (killpg(g->pg[i], 0) == 0) alive = 1;
    if (!alive) return;
    ms_sleep(10);
    waited += 10;
  }
  for (i = 0; i < g->n; i++) killpg(g->pg[i], SIGKILL);
}

static void guardian_main(int rfd) {
  static char buf[1 << 16];
  size_t have = 0;
  int done = 0, fd;
  gstate g;
  memset(&g, 0, sizeof g);
  setsid();
  prctl(PR_SET_NAME, "orchlua-guard");
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGCHLD, SIG_DFL);
  /* nothing of orchlua's held open: a pipe to a shell would wait for us */
  fd = open("/dev/null", O_RDWR);
  if (fd >= 0) {
    dup2(fd, 0);
    dup2(fd, 1);
    dup2(fd, 2);
  }
  {
    int i, max = (int)sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (i = 3; i < max; i++)
      if (i != rfd) close(i);
  }
  for (;;) {
    ssize_t r = read(rfd, buf + have, sizeof buf - have);
    size_t at = 0;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    have += (size_t)r;
    while (have - at >= 5) {
      uint32_t len;
      memcpy(&len, buf + at + 1, 4);
      if (have - at < 5 + (size_t)len) break;
      switch (buf[at]) {
      case M_TRACK:
      case M_UNTRACK: {
        pid_t pg;
        if (len != sizeof pg) break;
        memcpy(&pg, buf + at + 5, sizeof pg);
        if (!done) {
          if (buf[at] == M_TRACK) track(&g, pg);
          else untrack(&g, pg);
        }
        break;
      }
      case M_UNDO:
        if (!done) add_undo(&g, buf + at + 5, len);
        break;
      case M_DONE:
        done = 1;
        break;
      }
      at += 5 + (size_t)len;
    }
    memmove(buf, buf + at, have - at);
    have -= at;
  }
  if (!done) abandon(&g);
  _exit(0);
}

void guardian_start(void) {
  int fds[2];
  pid_t pid;
  if (getenv("ORCHLUA_NO_GUARDIAN") != NULL) return;
  if (pipe2(fds, O_CLOEXEC) != 0) return;
  pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return;
  }
  if (pid == 0) {
    close(fds[1]);
    guardian_main(fds[0]);
  }
  close(fds[0]);
  gfd = fds[1];
  gpid = pid;
  fcntl(gfd, F_SETFL, fcntl(gfd, F_GETFL) | O_NONBLOCK);
}

/* core.on_abandon(argv): argv (a list of strings, without NUL) run by the
 * guardian if orchlua dies without finishing.  Misuse raises. */
static int l_core_on_abandon(lua_State *L) {
  luaL_Buffer b;
  lua_Integer i, n;
  luaL_checktype(L, 1, LUA_TTABLE);
  n = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, n >= 1 && n < 64, 1, "expected a list of 1 to 63 strings (an argv)");
  luaL_buffinit(L, &b);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
      return luaL_error(L, "orch.on_abandon: argv[%d] is a %s, expected a string", (int)i,
                        luaL_typename(L, -1));
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len)
      return luaL_error(L, "orch.on_abandon: argv[%d] holds a NUL byte", (int)i);
    lua_pop(L, 1);
    luaL_addlstring(&b, s, len + 1);
  }
  luaL_pushresult(&b);
  {
    size_t len;
    const char *all = lua_tolstring(L, -1, &len);
    if (guardian_undo(all, len) != 0)
      return luaL_error(L, "orch.on_abandon: argv of %d bytes, more than the %d it may take",
                        (int)len, PIPE_BUF - 5);
  }
  return 0;
}

void guardian_open(lua_State *L) {
  lua_pushcfunction(L, l_core_on_abandon);
  lua_setfield(L, -2, "on_abandon");
}
