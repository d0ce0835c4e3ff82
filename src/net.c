/*
 * net.c - TCP connections for tasks: core.tcp_connect(host, port, timeout)
 * and the orch.TcpConn methods write, read and close.  Nothing here blocks
 * the loop: name resolution runs on libuv's thread pool (uv_getaddrinfo),
 * connects, reads and writes are libuv requests, and a task that waits for
 * one is parked like a flag or queue waiter and woken by pushing its
 * results onto its own stack.
 *
 * Two error channels, as in the rest of orch.core: misuse (a bad port, a
 * second reader, a helper called outside a task) raises; a network failure
 * returns nil, message, code ("ECONNREFUSED"), and a timeout returns nil,
 * "timeout".  Timeouts bound real work: never shorter than as many real
 * seconds (sched_bound_ms), whatever --time-scale.
 *
 * Lifecycle (src/handle.c): the uv_tcp_t is malloc'd apart from the
 * userdata and freed in its close callback; the userdata points at it and
 * the handle's data points back.  Closing (close(), __close, __gc) breaks
 * both links first, so a callback that comes after the close touches
 * nothing but its own request.  Requests (resolve+connect, writes) are
 * malloc'd too and freed in their callbacks; a request whose task gave up
 * has its back pointer cleared and only frees itself.
 */
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"

#include "core.h"

#define CONN_MT "orch.TcpConn"

/* read() buffers at most this much before it stops reading the socket */
#define READ_MAX (1u << 20)

typedef struct connect_op connect_op;
typedef struct write_op write_op;

typedef struct tcpconn {
  orch_core *core;
  uv_tcp_t *h;          /* NULL until connected and after close */
  connect_op *op;       /* the connect in progress, or NULL */
  task *reader;         /* the task parked in read(), or NULL */
  orch_list writes;     /* write_op.node: writes libuv still holds */
  char *buf;            /* bytes read and not yet returned by read() */
  size_t len, cap;
  int reading;          /* uv_read_start is active */
  int eof;              /* the peer closed its side */
  int err;              /* the first read error (a libuv code), 0 if none */
  int closed;
  char where[300];      /* "host:port", for messages */
} tcpconn;

/* Resolve, then try each address in turn until one connects. */
struct connect_op {
  uv_getaddrinfo_t gai;
  uv_connect_t req;
  tcpconn *conn;        /* NULL once the waiting task gave up */
  task *t;
  int conn_ref;         /* the conn userdata, until the task gets it */
  struct addrinfo *res, *next;
  int last_err;
};

struct write_op {
  uv_write_t req;
  orch_list node;  /* on conn->writes while conn is open */
  tcpconn *conn;        /* NULL once the conn is closed */
  task *t;              /* the waiting task, NULL once it gave up */
  size_t len;
  char data[];
};

/* ---- helpers ------------------------------------------------------------ */

/* Pushes nil, "<where>: <libuv message>", "<ECODE>"; returns 3. */
static int push_uv_error(lua_State *L, const char *where, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", where, uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

static void wake(task *t, int nargs) {
  t->on_wait_cancel = NULL;
  t->wait_data = NULL;
  t->nargs = nargs;
  sched_ready(t);
}

/* Pushes what read() returns now onto L, or returns 0 when it has to wait:
 * nil, "closed" after close(); the buffered bytes; nil, message, code
 * after a read error; nil, "eof" once the peer has closed its side. */
static int push_read_result(lua_State *L, tcpconn *c) {
  if (c->closed) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (c->len > 0) {
    lua_pushlstring(L, c->buf, c->len);
    c->len = 0;
    return 1;
  }
  if (c->err != 0) return push_uv_error(L, c->where, c->err);
  lua_pushnil(L);
  if (c->eof) {
    lua_pushliteral(L, "eof");
    return 2;
  }
  lua_pop(L, 1);
  return 0;
}

/* Closes the connection: wakes a parked reader and writers with
 * nil, "closed", detaches every request, closes the handle.  A second
 * call is harmless.  Never raises. */
static void conn_close(tcpconn *c) {
  if (c->closed) return;
  c->closed = 1;
  if (c->reader != NULL) {
    task *t = c->reader;
    c->reader = NULL;
    lua_pushnil(t->co);
    lua_pushliteral(t->co, "closed");
    wake(t, 2);
  }
  while (!list_empty(&c->writes)) {
    write_op *w = list_entry(c->writes.next, write_op, node);
    list_remove(&w->node);
    w->conn = NULL;
    if (w->t != NULL) {
      task *t = w->t;
      w->t = NULL;
      lua_pushnil(t->co);
      lua_pushliteral(t->co, "closed");
      wake(t, 2);
    }
  }
  if (c->h != NULL) {
    /* after sched_close the loop walk has closed and freed every handle;
     * by the time lua_close collects us, h points at freed memory */
    if (!c->core->closed) {
      c->h->data = NULL;
      handle_close((uv_handle_t *)c->h);
    }
    c->h = NULL;
  }
  free(c->buf);
  c->buf = NULL;
  c->len = c->cap = 0;
}

static tcpconn *check_conn(lua_State *L, int i) {
  return luaL_checkudata(L, i, CONN_MT);
}

/* The timeout argument at i (description seconds), or -1 for none. */
static double opt_timeout(lua_State *L, int i) {
  double sec;
  if (lua_isnoneornil(L, i)) return -1;
  sec = luaL_checknumber(L, i);
  luaL_argcheck(L, sec >= 0 && sec == sec, i, "timeout must be >= 0 seconds");
  return sec;
}

/* ---- connect ------------------------------------------------------------ */

static void try_next(connect_op *op);

/* Ends the connect: wakes the task with the conn, or with nil, message,
 * code after closing the conn; then frees the request. */
static void connect_done(connect_op *op, int err) {
  tcpconn *c = op->conn;
  task *t = op->t;
  lua_State *L = c->core->L;
  c->op = NULL;
  if (err == 0) {
    ref_push(t->co, op->conn_ref);                     /* co: [conn] */
    wake(t, 1);
  } else {
    conn_close(c);
    wake(t, push_uv_error(t->co, c->where, err));      /* co: [nil msg code] */
  }
  ref_free(L, &op->conn_ref);
  if (op->res != NULL) uv_freeaddrinfo(op->res);
  free(op);
}

static void on_connected(uv_connect_t *req, int status) {
  connect_op *op = req->data;
  tcpconn *c = op->conn;
  if (c == NULL) {
    /* the task gave up and closed the handle: this is UV_ECANCELED */
    if (op->res != NULL) uv_freeaddrinfo(op->res);
    free(op);
    return;
  }
  if (status == 0) {
    connect_done(op, 0);
    return;
  }
  op->last_err = status;
  c->h->data = NULL;
  handle_close((uv_handle_t *)c->h);
  c->h = NULL;
  try_next(op);
}

/* Starts a connect to the next address; ends the op when none is left. */
static void try_next(connect_op *op) {
  tcpconn *c = op->conn;
  while (op->next != NULL) {
    struct addrinfo *ai = op->next;
    int r;
    op->next = ai->ai_next;
    c->h = handle_new(c->core, sizeof *c->h);
    UV_CHECK(uv_tcp_init(&c->core->loop, c->h));
    c->h->data = c;
    op->req.data = op;
    r = uv_tcp_connect(&op->req, c->h, ai->ai_addr, on_connected);
    if (r == 0) return;
    op->last_err = r;
    c->h->data = NULL;
    handle_close((uv_handle_t *)c->h);
    c->h = NULL;
  }
  connect_done(op, op->last_err != 0 ? op->last_err : UV_EAI_NONAME);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  connect_op *op = list_entry(req, connect_op, gai);
  if (op->conn == NULL) {
    /* the task gave up while the name was being resolved */
    if (res != NULL) uv_freeaddrinfo(res);
    free(op);
    return;
  }
  if (status < 0) {
    connect_done(op, status);
    return;
  }
  op->res = op->next = res;
  try_next(op);
}

/* on_wait_cancel while connecting (timeout, cancel, kill): the request
 * stays with libuv until its callback, which then only frees it. */
static void connect_cancel(task *t) {
  connect_op *op = t->wait_data;
  tcpconn *c = op->conn;
  op->conn = NULL;
  op->t = NULL;
  c->op = NULL;
  if (c->h == NULL) uv_cancel((uv_req_t *)&op->gai); /* still resolving */
  conn_close(c);                          /* a pending connect gets ECANCELED */
  ref_free(c->core->L, &op->conn_ref);
}

/* core.tcp_connect(host, port, [timeout]) -> conn | nil, message, code.
 * Yields the running task while resolving and connecting. */
static int l_core_tcp_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  double timeout = opt_timeout(L, 3);
  struct addrinfo hints;
  char service[16];
  connect_op *op;
  tcpconn *c;
  task *t;
  int r;
  luaL_argcheck(L, port > 0 && port < 65536, 2, "port must be 1..65535");
  t = sched_need_task(L, "orch.net.connect");
  c = lua_newuserdatauv(L, sizeof *c, 0);               /* [host port to conn] */
  memset(c, 0, sizeof *c);
  c->core = t->core;
  list_init(&c->writes);
  luaL_setmetatable(L, CONN_MT);
  snprintf(c->where, sizeof c->where, strchr(host, ':') ? "[%s]:%d" : "%s:%d",
           host, (int)port);
  op = calloc(1, sizeof *op);
  if (op == NULL) return luaL_error(L, "not enough memory");
  op->conn = c;
  op->t = t;
  lua_pushvalue(L, -1);
  op->conn_ref = ref_new(L);                            /* [.. conn] */
  c->op = op;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(service, sizeof service, "%d", (int)port);
  r = uv_getaddrinfo(&c->core->loop, &op->gai, on_resolved, host, service, &hints);
  if (r != 0) {
    c->op = NULL;
    ref_free(L, &op->conn_ref);
    free(op);
    conn_close(c);
    return push_uv_error(L, c->where, r);
  }
  t->on_wait_cancel = connect_cancel;
  t->wait_data = op;
  if (timeout >= 0) sched_timer_wait(t, sched_bound_ms(t->core, timeout), 2);
  return sched_wait(L, t);
}

/* ---- read --------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base != NULL ? suggested : 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tcpconn *c = s->data;
  if (c == NULL) {
    free(buf->base);
    return;
  }
  if (nread > 0) {
    if (c->len + (size_t)nread > c->cap) {
      size_t cap = c->cap ? c->cap : 4096;
      char *nb;
      while (cap < c->len + (size_t)nread) cap *= 2;
      nb = realloc(c->buf, cap);
      if (nb == NULL) {
        c->err = UV_ENOMEM;
      } else {
        c->buf = nb;
        c->cap = cap;
      }
    }
    if (c->err == 0) {
      memcpy(c->buf + c->len, buf->base, (size_t)nread);
      c->len += (size_t)nread;
    }
  } else if (nread == UV_EOF) {
    c->eof = 1;
  } else if (nread < 0) {
    c->err = (int)nread;
  }
  free(buf->base);
  /* stop at the end, on an error, or when nobody drains the buffer */
  if (c->eof || c->err != 0 || c->len >= READ_MAX) {
    uv_read_stop(s);
    c->reading = 0;
  }
  if (c->reader != NULL) {
    task *t = c->reader;
    int n = push_read_result(t->co, c);
    if (n > 0) {
      c->reader = NULL;
      wake(t, n);
    }
  }
}

/* Reads on while there is room and nothing ended the stream. */
static int start_reading(tcpconn *c) {
  int r;
  if (c->reading || c->h == NULL || c->eof || c->err != 0 || c->len >= READ_MAX)
    return 0;
  r = uv_read_start((uv_stream_t *)c->h, on_alloc, on_read);
  if (r != 0) {
    c->err = r;
    return r;
  }
  c->reading = 1;
  return 0;
}

static void read_cancel(task *t) {
  tcpconn *c = t->wait_data;
  if (c->reader == t) c->reader = NULL;
}

/* conn:read([timeout]) -> data | nil, "eof" | nil, "timeout" |
 * nil, "closed" | nil, message, code.  Returns what has arrived (at least
 * one byte), yielding while nothing has. */
static int l_conn_read(lua_State *L) {
  tcpconn *c = check_conn(L, 1);
  double timeout = opt_timeout(L, 2);
  task *t;
  int n = push_read_result(L, c);
  if (n > 0) {
    start_reading(c);
    return n;
  }
  if (c->reader != NULL)
    return luaL_error(L, "conn:read: %s is already being read by another task", c->where);
  t = sched_need_task(L, "conn:read");
  start_reading(c);
  if ((n = push_read_result(L, c)) > 0) return n;       /* read_start failed */
  if (timeout == 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  c->reader = t;
  t->on_wait_cancel = read_cancel;
  t->wait_data = c;
  if (timeout > 0) sched_timer_wait(t, sched_bound_ms(t->core, timeout), 2);
  return sched_wait(L, t);
}

/* ---- write -------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status) {
  write_op *w = list_entry(req, write_op, req);
  tcpconn *c = w->conn;
  task *t = w->t;
  if (c != NULL) list_remove(&w->node);
  if (t != NULL) {
    if (status == 0) {
      lua_pushboolean(t->co, 1);
      wake(t, 1);
    } else {
      wake(t, push_uv_error(t->co, c != NULL ? c->where : "tcp", status));
    }
  }
  free(w);
}

/* on_wait_cancel of a write: the bytes stay queued in libuv. */
static void write_cancel(task *t) {
  write_op *w = t->wait_data;
  w->t = NULL;
}

/* conn:write(data, [timeout]) -> true | nil, "timeout" | nil, "closed" |
 * nil, message, code.  Returns at once when the kernel takes every byte;
 * otherwise yields until libuv has written the rest. */
static int l_conn_write(lua_State *L) {
  tcpconn *c = check_conn(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  double timeout = opt_timeout(L, 3);
  uv_buf_t b;
  write_op *w;
  task *t;
  int r, queued = !list_empty(&c->writes);
  luaL_argcheck(L, len <= 0x7fffffff, 2, "data larger than 2 GiB");
  if (c->h == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  b = uv_buf_init((char *)(uintptr_t)s, (unsigned int)len); /* only read */
  /* bytes still queued by an earlier write must go first */
  r = queued ? UV_EAGAIN : uv_try_write((uv_stream_t *)c->h, &b, 1);
  if (r == (int)len) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r < 0 && r != UV_EAGAIN) return push_uv_error(L, c->where, r);
  if (r < 0) r = 0;
  t = sched_need_task(L, "conn:write");
  w = malloc(sizeof *w + (len - (size_t)r));
  if (w == NULL) return luaL_error(L, "not enough memory");
  w->len = len - (size_t)r;
  memcpy(w->data, s + r, w->len);
  b = uv_buf_init(w->data, (unsigned int)w->len);
  r = uv_write(&w->req, (uv_stream_t *)c->h, &b, 1, on_written);
  if (r != 0) {
    free(w);
    return push_uv_error(L, c->where, r);
  }
  w->conn = c;
  w->t = t;
  list_push(&c->writes, &w->node);
  t->on_wait_cancel = write_cancel;
  t->wait_data = w;
  if (timeout >= 0) sched_timer_wait(t, sched_bound_ms(t->core, timeout), 2);
  return sched_wait(L, t);
}

/* ---- the rest ----------------------------------------------------------- */

/* conn:close(); also __close and __gc.  A second close is harmless. */
static int l_conn_close(lua_State *L) {
  conn_close(check_conn(L, 1));
  return 0;
}

/* conn:peer() -> "host:port" as given to tcp_connect */
static int l_conn_peer(lua_State *L) {
  lua_pushstring(L, check_conn(L, 1)->where);
  return 1;
}

static int l_conn_is_closed(lua_State *L) {
  lua_pushboolean(L, check_conn(L, 1)->closed);
  return 1;
}

static int l_conn_tostring(lua_State *L) {
  tcpconn *c = check_conn(L, 1);
  lua_pushfstring(L, CONN_MT " (%s%s)", c->where, c->closed ? ", closed" : "");
  return 1;
}

/* Registers orch.TcpConn and sets core.tcp_connect in the table on top. */
int net_open(lua_State *L) {
  static const luaL_Reg m[] = {{"read", l_conn_read},
                               {"write", l_conn_write},
                               {"close", l_conn_close},
                               {"peer", l_conn_peer},
                               {"is_closed", l_conn_is_closed},
                               {NULL, NULL}};
  luaL_newmetatable(L, CONN_MT);                        /* [core mt] */
  luaL_newlib(L, m);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_conn_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_conn_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_conn_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);                                        /* [core] */
  lua_pushcfunction(L, l_core_tcp_connect);
  lua_setfield(L, -2, "tcp_connect");
  return 0;
}
