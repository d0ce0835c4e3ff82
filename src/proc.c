/*
 * proc.c - spawn and the orch.Process bindings: the mechanism under
 * orch.spawn and orch.exec (lua/orch/process.lua holds the policy:
 * argument messages, callback errors, exec's return values).
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
 *
 * Process groups (listing, kills, reaping, the end of the run) are
 * pgroup.c's: this file calls down into it through pgroup.h, never back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <uv.h>

#include "lauxlib.h"

#include "core.h"
#include "pgroup.h"

#define PROC_MT "orch.Process"
#define DRAIN_MAX (4u << 20)   /* bytes read synchronously at exit, per pipe */
#define DEFAULT_MAX_LINE ((size_t)16 << 20)

extern char **environ;

/* A process keeps the loop alive only while some task waits for it. */
static void proc_update_ref(proc *p) {
  if (p->h == NULL) return;
  if (list_empty(&p->waiters))
    uv_unref((uv_handle_t *)p->h);
  else
    uv_ref((uv_handle_t *)p->h);
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

/* Handles n bytes read from stream i (1 stdout, 2 stderr): appended to the
 * capture, and split into lines for the callback.  A line longer than
 * max_line is delivered in max_line pieces, each but the last with a
 * second argument true: long lines are never cut silently. */
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
  proc_pipe_close(p, i);
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
  proc_pipe_close(p, 0); /* pending writes are cancelled */
  p->group = proc_group_alive(p);
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
  if (p->set->timer != NULL) pgroup_schedule(p->set);
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
    if (p->io[0] == (uv_pipe_t *)req->handle) proc_pipe_close(p, 0);
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
  proc_pipe_close(p, 0);
}

static const char *const OWNERS[] = {"invocation", "run"};

/* core.spawn's options, read and checked before anything is opened. */
typedef struct spawn_opts {
  const char *fname;
  char **argv, **envp;
  const char *cwd, *stdin_text;
  size_t stdin_len;
  int stdin_pipe, owner_run;
  size_t max_line;
} spawn_opts;

/* Reads opts (index 1); raises on misuse.  Leaves [opts fname argv envp
 * cwd stdin] on the stack: the strings in so live there. */
static void spawn_read_opts(lua_State *L, spawn_opts *so) {
  const char *fname = so->fname;
  lua_Integer max_line;
  so->argv = build_argv(L, 1, fname);                     /* [opts fname argv] */
  so->envp = build_env(L, 1, fname);                      /* [opts fname argv envp] */
  lua_getfield(L, 1, "cwd");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      opt_error(L, fname, lua_pushfstring(L, "cwd: string expected, got %s", luaL_typename(L, -1)));
    so->cwd = lua_tostring(L, -1);
  }                                                       /* [opts fname argv envp cwd] */
  lua_getfield(L, 1, "stdin");                            /* [.. cwd stdin] */
  if (lua_type(L, -1) == LUA_TSTRING) {
    so->stdin_text = lua_tolstring(L, -1, &so->stdin_len);
    so->stdin_pipe = 1;
  } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
    so->stdin_pipe = lua_toboolean(L, -1);
  } else if (!lua_isnil(L, -1)) {
    opt_error(L, fname, lua_pushfstring(L, "stdin: true, false or a string expected, got %s",
                                        luaL_typename(L, -1)));
  }
  lua_getfield(L, 1, "max_line");
  max_line = lua_isnil(L, -1) ? (lua_Integer)DEFAULT_MAX_LINE : lua_tointeger(L, -1);
  if (max_line <= 0)
    opt_error(L, fname, "max_line: positive integer expected");
  so->max_line = (size_t)max_line;
  lua_pop(L, 1);
  lua_getfield(L, 1, "owner");
  so->owner_run = 0;
  if (!lua_isnil(L, -1)) {
    const char *o2 = lua_tostring(L, -1);
    if (o2 == NULL || (strcmp(o2, OWNERS[0]) != 0 && strcmp(o2, OWNERS[1]) != 0))
      opt_error(L, fname, "owner: \"invocation\" or \"run\" expected");
    so->owner_run = strcmp(o2, "run") == 0;
  }
  lua_pop(L, 1);
}

/* Pushes the orch.Process object, not yet spawned, with its user value
 * (line callbacks, capture tables, the command's name); raises on misuse. */
static proc *spawn_new_proc(lua_State *L, proc_set *s, const spawn_opts *so) {
  task *t;
  int uv;
  proc *p = lua_newuserdatauv(L, sizeof *p, 1);           /* [.. p] */
  memset(p, 0, sizeof *p);
  p->set = s;
  p->self_ref = LUA_NOREF;
  p->pid = -1;
  p->owner_run = so->owner_run;
  p->max_line = so->max_line;
  list_init(&p->waiters);
  list_init(&p->node);
  luaL_setmetatable(L, PROC_MT);
  lua_newtable(L);                                        /* [.. p uv] */
  uv = lua_gettop(L);
  get_callback(L, 1, uv, "on_stdout", so->fname);
  get_callback(L, 1, uv, "on_stderr", so->fname);
  lua_getfield(L, 1, "capture");
  p->capture = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (p->capture) {
    lua_newtable(L);
    lua_setfield(L, uv, "stdout");
    lua_newtable(L);
    lua_setfield(L, uv, "stderr");
  }
  lua_pushstring(L, so->argv[0]);
  lua_setfield(L, uv, "name");
  lua_getfield(L, uv, "on_stdout");
  p->has_cb[1] = !lua_isnil(L, -1);
  lua_getfield(L, uv, "on_stderr");
  p->has_cb[2] = !lua_isnil(L, -1);
  lua_pop(L, 2);
  lua_setiuservalue(L, -2, 1);                            /* [.. p] */
  t = sched_current(L);
  p->task_id = t != NULL ? t->id : 0;
  return p;
}

/* A cwd that is not a directory is reported as such (libuv reports a
 * failed chdir as ENOENT, the same as a missing program): pushes nil,
 * message, errname and returns 3, or 0 when cwd is fine. */
static int spawn_check_cwd(lua_State *L, const spawn_opts *so) {
  struct stat st;
  int e;
  if (so->cwd == NULL || (stat(so->cwd, &st) == 0 && S_ISDIR(st.st_mode))) return 0;
  e = stat(so->cwd, &st) != 0 ? errno : ENOTDIR;
  lua_pushnil(L);
  lua_pushfstring(L, "%s: cannot run \"%s\": cwd \"%s\": %s", so->fname, so->argv[0], so->cwd,
                  uv_strerror(uv_translate_sys_error(e)));
  lua_pushstring(L, uv_err_name(uv_translate_sys_error(e)));
  return 3;
}

/* Opens the pipes p needs and describes the child's stdin, stdout and
 * stderr (unpiped ones are /dev/null). */
static void spawn_stdio(orch_core *c, proc *p, int stdin_pipe, uv_stdio_container_t stdio[3]) {
  int i;
  memset(stdio, 0, 3 * sizeof *stdio);
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
      stdio[i].flags = UV_IGNORE;
    }
  }
}

/* A failed uv_spawn still closes its handle, and the pipes: pushes nil,
 * message, errname. */
static int spawn_failed(lua_State *L, proc *p, const spawn_opts *so, int r) {
  handle_close((uv_handle_t *)p->h);
  p->h = NULL;
  proc_pipe_close(p, 0);
  proc_pipe_close(p, 1);
  proc_pipe_close(p, 2);
  p->exited = 1;
  lua_pushnil(L);
  lua_pushfstring(L, "%s: cannot run \"%s\": %s", so->fname, so->argv[0], uv_strerror(r));
  lua_pushstring(L, uv_err_name(r));
  return 3;
}

/* The process runs: its handles wired and unref'd, its output read, p
 * (on top of the stack) listed with the keeper, stdin text queued. */
static void spawn_started(lua_State *L, proc *p, const spawn_opts *so) {
  proc_set *s = p->set;
  int i;
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
  pgroup_list(p);
  if (so->stdin_text != NULL) {
    if (so->stdin_len > 0) stdin_write(p, so->stdin_text, so->stdin_len);
    stdin_close(p);
  }
  if (s->ending) proc_signal(p, SIGTERM, 1); /* spawned after the end */
  pgroup_schedule(s);
}

/* core.spawn(opts, [fname]) -> process | nil, message, errname
 * opts: cmd (list of strings), env, clear_env, cwd, on_stdout, on_stderr,
 * stdin (true: a pipe; a string: written, then closed; default /dev/null),
 * capture (keep stdout/stderr for process:output()), max_line, owner. */
static int l_core_spawn(lua_State *L) {
  orch_core *c = core_get(L);
  proc_set *s = lua_touserdata(L, lua_upvalueindex(1));
  spawn_opts so;
  uv_process_options_t o;
  uv_stdio_container_t stdio[3];
  proc *p;
  int r;
  memset(&so, 0, sizeof so);
  so.fname = luaL_optstring(L, 2, "orch.spawn");
  if (!lua_istable(L, 1))
    return opt_error(L, so.fname, lua_pushfstring(L, "table expected, got %s", luaL_typename(L, 1)));
  lua_settop(L, 2);
  spawn_read_opts(L, &so);                                /* [opts fname argv envp cwd stdin] */
  p = spawn_new_proc(L, s, &so);                          /* [.. stdin p] */
  if ((r = spawn_check_cwd(L, &so)) != 0) return r;
  /* everything that can raise is done: from here, handles */
  spawn_stdio(c, p, so.stdin_pipe, stdio);
  memset(&o, 0, sizeof o);
  o.exit_cb = on_exit_cb;
  o.file = so.argv[0];
  o.args = so.argv;
  o.env = so.envp;
  o.cwd = so.cwd;
  o.flags = UV_PROCESS_DETACHED; /* setsid(): its own process group */
  o.stdio_count = 3;
  o.stdio = stdio;
  p->h = handle_new(c, sizeof *p->h);
  r = pgroup_spawn(&c->loop, p->h, &o);
  if (r != 0) return spawn_failed(L, p, &so, r);
  spawn_started(L, p, &so);
  return 1;
}

/* core.kill_processes([signal]) -> number of groups signalled.  SIGTERM by
 * default; any group alive KILL_DELAY_MS (pgroup.c) later gets SIGKILL. */
static int sig_arg(lua_State *L, int i, int def);

static int l_core_kill_processes(lua_State *L) {
  proc_set *s = lua_touserdata(L, lua_upvalueindex(1));
  int sig = sig_arg(L, 1, SIGTERM);
  int n = 0;
  orch_list *l;
  for (l = s->procs.next; l != &s->procs; l = l->next)
    if (proc_signal(list_entry(l, proc, node), sig, 1) == 0) n++;
  pgroup_schedule(s);
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
  t = sched_need_task(L, "process:wait");
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
  if (p->listed) pgroup_schedule(p->set);
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
    pgroup_schedule(p->set);
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
  pgroup_set_new(L);                                      /* [core set] */
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

