/*
 * http.c - the live view's HTTP/1.1 server (--listen): read-only, on the
 * run's own loop.  Requests are parsed by Debian's http-parser; what a path
 * answers is Lua's (lua/orch/live.lua), through one handler function:
 * handler(method, path) -> status, content type, body.
 *
 * Nothing a client does may stall the loop or grow memory without bound:
 *   - one read buffer for every connection (a read is parsed whole in its
 *     callback), request heads capped (URL_MAX, HEAD_MAX), no request body;
 *   - at most MAX_CONNS connections: a new one evicts the one idle longest,
 *     so a flood of idle sockets cannot lock a scraper out;
 *   - a sweep each second closes connections idle for IDLE_MS, heads not
 *     complete after HEAD_MS, writes not done after the write timeout;
 *   - a response body is shared by every connection sending it (counted):
 *     the handler may return an orch.Body (a big /metrics, built in C and
 *     kept by live.lua a moment), so 500 slow scrapers hold one copy;
 *   - a bad request gets its 4xx, then the write side is shut and whatever
 *     else the client sends is read and dropped for LINGER_MS before the
 *     close (closing with unread bytes would reset the 4xx away);
 *   - an answer waits while the loop has firings due sooner than the last
 *     answer took (see loop_quiet), so a scrape never lands in a burst.
 * Every handle is unref'd: the server never keeps a run alive.  linger()
 * runs the loop after the run for a last scrape, within a time limit.
 *
 * Lifecycle (src/handle.c): the listener and each connection are handle_new
 * blocks, uv_tcp_t first, freed by their close callback; write requests
 * are malloc'd and free themselves; cancelled writes (a close) run before
 * the close callback, and touch only their connection and their body.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "lauxlib.h"

#include "core.h"

#define SERVER_MT "orch.HttpServer"

#define MAX_CONNS 512
#define URL_MAX 2048          /* a longer request target: 414 */
#define HEAD_MAX (16 * 1024)  /* a longer request head: 431 */
#define AUTH_MAX 512          /* Authorization values kept for the compare */
#define IDLE_MS 60000         /* keep-alive without a request */
#define HEAD_MS 10000         /* from a request's first byte to its end */
#define LINGER_MS 2000        /* reading and dropping after a 4xx */
#define SWEEP_MS 1000
#define MAX_PENDING 16        /* pipelined responses not yet written */
#define RBUF_SIZE (64 * 1024)

#define BODY_MT "orch.Body"

static body *body_new(const char *s, size_t len) {
  body *b = malloc(sizeof *b);
  if (b == NULL) return NULL;
  b->refs = 1;
  b->len = b->cap = len;
  b->data = malloc(len > 0 ? len : 1);
  if (b->data == NULL) {
    free(b);
    return NULL;
  }
  memcpy(b->data, s, len);
  return b;
}

void body_release(body *b) {
  if (b != NULL && --b->refs == 0) {
    free(b->data);
    free(b);
  }
}

/* An empty body in an orch.Body userdata on the stack (its reference
 * is the userdata's, dropped by __gc): memory the Lua collector neither
 * counts nor copies, for a big /metrics (metrics.c). */
body *body_push(lua_State *L) {
  body **slot = lua_newuserdatauv(L, sizeof *slot, 0);
  *slot = NULL;
  luaL_setmetatable(L, BODY_MT);
  if ((*slot = calloc(1, sizeof **slot)) == NULL) luaL_error(L, "out of memory");
  (*slot)->refs = 1;
  return *slot;
}

static int l_body_gc(lua_State *L) {
  body **slot = luaL_checkudata(L, 1, BODY_MT);
  body_release(*slot);
  *slot = NULL;
  return 0;
}

/* body:text() -> its bytes as a Lua string (a copy: for the specs) */
static int l_body_text(lua_State *L) {
  body **slot = luaL_checkudata(L, 1, BODY_MT);
  lua_pushlstring(L, *slot != NULL ? (*slot)->data : "", *slot != NULL ? (*slot)->len : 0);
  return 1;
}

static int l_body_len(lua_State *L) {
  body **slot = luaL_checkudata(L, 1, BODY_MT);
  lua_pushinteger(L, *slot != NULL ? (lua_Integer)(*slot)->len : 0);
  return 1;
}

typedef struct server server;

typedef struct conn {
  uv_tcp_t tcp;         /* first: handle_new's block, freed on close */
  server *srv;          /* NULL once closing */
  http_parser parser;
  orch_list node;       /* srv->conns, least recently active first */
  uint64_t last_ns;     /* last read or written */
  uint64_t head_ns;     /* first byte of the request being read, 0: none */
  uint64_t write_ns;    /* oldest write not done */
  uint64_t linger_ns;   /* when dropping began, 0: not dropping */
  size_t head_bytes;
  size_t url_len;
  char url[URL_MAX + 1];
  char field[16];       /* the header name being read (enough for "authorization") */
  size_t field_len;
  int field_long;       /* longer than field[] */
  int in_auth;          /* reading the Authorization value */
  int auth_seen, auth_long;
  size_t auth_len;
  char auth[AUTH_MAX];
  int err_status;       /* a 4xx decided while parsing */
  int complete;         /* a request was parsed: the parser pauses after it */
  orch_list dnode;      /* srv->deferred while its answer waits */
  uint64_t defer_ns;    /* when it began waiting, 0: not waiting */
  int pending;          /* writes libuv holds */
  int close_after;      /* the last response is queued */
  int closing;
} conn;

typedef struct wreq {
  uv_write_t req;
  conn *cn;
  body *b;
  size_t hlen;
  char head[];
} wreq;

struct server {
  uv_tcp_t tcp;         /* first: the listener */
  orch_core *core;
  uv_timer_t *sweep;
  uv_timer_t *linger;   /* linger()'s time limit, NULL otherwise */
  uv_timer_t *defer;    /* wakes the answers put off (below) */
  orch_list deferred;   /* conns whose complete request waits for a quiet loop */
  uint64_t took_ms;     /* what the handler took last time */
  orch_list conns;
  int nconns;
  int handler_ref;      /* handler(method, path) */
  char *token;          /* NULL: no token required */
  size_t token_len;
  uint64_t write_ms;
  const char *wait_path; /* linger(): stop once a response to it is written */
  int wait_done;
  int closed;
  char rbuf[RBUF_SIZE];
};

typedef struct lserver {
  server *s; /* NULL once closed */
} lserver;

static http_parser_settings settings;

static uint64_t now_ns(void) { return uv_hrtime(); }

/* ---- connections -------------------------------------------------------- */

static void conn_close(conn *cn) {
  if (cn->closing) return;
  cn->closing = 1;
  if (cn->srv != NULL) {
    list_remove(&cn->node);
    list_remove(&cn->dnode);
    cn->srv->nconns--;
    cn->srv = NULL;
  }
  handle_close((uv_handle_t *)&cn->tcp);
}

/* Marks activity: the connection goes to the tail of the idle order. */
static void conn_touch(conn *cn) {
  cn->last_ns = now_ns();
  list_remove(&cn->node);
  list_push(&cn->srv->conns, &cn->node);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  free(req); /* the connection is closed by EOF, the sweep, or already */
}

/* After the last response: shut the write side, drop what comes in. */
static void conn_linger(conn *cn) {
  uv_shutdown_t *req;
  if (cn->linger_ns != 0 || cn->closing) return;
  cn->linger_ns = now_ns();
  req = malloc(sizeof *req);
  if (req == NULL || uv_shutdown(req, (uv_stream_t *)&cn->tcp, on_shutdown) != 0) {
    free(req);
    conn_close(cn);
  }
}

static void on_written(uv_write_t *req, int status) {
  wreq *w = (wreq *)req;
  conn *cn = w->cn;
  body_release(w->b);
  free(w);
  cn->pending--;
  if (cn->closing) return;
  if (status < 0) {
    conn_close(cn);
    return;
  }
  conn_touch(cn);
  cn->write_ns = cn->pending > 0 ? cn->last_ns : 0;
  if (cn->pending == 0 && cn->close_after) conn_linger(cn);
}

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

/* Queues a response; b (a reference the caller gives away) may be NULL.
 * close: the connection ends after it. */
static void respond(conn *cn, int status, const char *ctype, body *b, int head_only, int close) {
  size_t blen = b != NULL ? b->len : 0;
  wreq *w = malloc(sizeof *w + 512);
  uv_buf_t bufs[2];
  int n = 1, r;
  if (w == NULL) {
    body_release(b);
    conn_close(cn);
    return;
  }
  w->cn = cn;
  w->b = b;
  r = snprintf(w->head, 512,
               "HTTP/1.1 %d %s\r\nContent-Type: %.100s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\n%s%sConnection: %s\r\n\r\n",
               status, reason(status), ctype, blen,
               status == 401 ? "WWW-Authenticate: Bearer realm=\"orchlua\"\r\n" : "",
               status == 405 ? "Allow: GET, HEAD\r\n" : "", close ? "close" : "keep-alive");
  w->hlen = (size_t)r;
  bufs[0] = uv_buf_init(w->head, (unsigned)w->hlen);
  if (b != NULL && !head_only && blen > 0) bufs[n++] = uv_buf_init(b->data, (unsigned)blen);
  r = uv_write(&w->req, (uv_stream_t *)&cn->tcp, bufs, (unsigned)n, on_written);
  if (r != 0) {
    body_release(b);
    free(w);
    conn_close(cn);
    return;
  }
  if (cn->pending++ == 0) cn->write_ns = now_ns();
  if (close) cn->close_after = 1;
}

static void respond_text(conn *cn, int status, const char *text, int close) {
  body *b = body_new(text, strlen(text));
  respond(cn, status, "text/plain; charset=utf-8", b, 0, close);
}

/* The Authorization header against "Bearer <token>", in time that does not
 * depend on where they differ. */
static int authorized(server *s, conn *cn) {
  static const char pre[] = "Bearer ";
  size_t i, n = s->token_len + sizeof pre - 1;
  unsigned char diff;
  if (s->token == NULL) return 1;
  if (!cn->auth_seen || cn->auth_long) return 0;
  diff = (unsigned char)(cn->auth_len != n);
  for (i = 0; i < n; i++) {
    unsigned char want = i < sizeof pre - 1 ? (unsigned char)pre[i]
                                            : (unsigned char)s->token[i - (sizeof pre - 1)];
    unsigned char got = i < cn->auth_len ? (unsigned char)cn->auth[i] : 0;
    diff |= want ^ got;
  }
  return diff == 0;
}

/* Gets the response to a complete request from the handler: [fn method
 * path] -> [status ctype body]. */
static void handle_request(conn *cn) {
  server *s = cn->srv;
  lua_State *L = s->core->L;
  int head_only = cn->parser.method == HTTP_HEAD, status, keep;
  const char *ctype, *str;
  size_t len;
  char *q;
  body *b, **slot;
  uint64_t t0;
  keep = http_should_keep_alive(&cn->parser);
  if (!authorized(s, cn)) {
    respond_text(cn, 401, "401 unauthorized: this orchlua wants Authorization: Bearer <ORCHLUA_LISTEN_TOKEN>\n",
                 !keep);
    return;
  }
  cn->url[cn->url_len] = '\0';
  if ((q = strchr(cn->url, '?')) != NULL) *q = '\0';
  ref_push(L, s->handler_ref);
  lua_pushstring(L, head_only ? "HEAD" : "GET");
  lua_pushstring(L, cn->url);
  t0 = now_ns();
  sched_call(L, 2, 3);                                  /* [status ctype body] */
  s->took_ms = (now_ns() - t0) / 1000000;
  status = (int)lua_tointeger(L, -3);
  ctype = lua_tostring(L, -2);
  str = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
  if (status < 100 || status > 599 || ctype == NULL ||
      (str == NULL && luaL_testudata(L, -1, BODY_MT) == NULL)) {
    lua_pop(L, 3);
    respond_text(cn, 500, "500 internal error: see orchlua's stderr\n", !keep);
    return;
  }
  if (str == NULL && (slot = luaL_testudata(L, -1, BODY_MT)) != NULL && *slot != NULL) {
    b = *slot; /* an orch.Body: shared as it is */
    b->refs++;
  } else {
    b = str != NULL ? body_new(str, len) : NULL;
  }
  if (b == NULL) {
    lua_pop(L, 3);
    respond_text(cn, 503, "503 out of memory\n", 1);
    return;
  }
  /* cn->url was cut at '?': compare with the path linger() waits for */
  if (s->wait_path != NULL && s->wait_done == 0 && status == 200 && strcmp(cn->url, s->wait_path) == 0) s->wait_done = -1;
  respond(cn, status, ctype, b, head_only, !keep);
  lua_pop(L, 3);
}

/* ---- the parser's callbacks --------------------------------------------- */

static int head_grow(conn *cn, size_t n) {
  cn->head_bytes += n;
  if (cn->head_bytes > HEAD_MAX) {
    if (cn->err_status == 0) cn->err_status = 431;
    return -1;
  }
  return 0;
}

static int on_message_begin(http_parser *p) {
  conn *cn = p->data;
  cn->head_bytes = cn->url_len = cn->field_len = cn->auth_len = 0;
  cn->field_long = cn->in_auth = cn->auth_seen = cn->auth_long = 0;
  if (cn->head_ns == 0) cn->head_ns = now_ns();
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  conn *cn = p->data;
  if (cn->url_len + n > URL_MAX) {
    cn->err_status = 414;
    return -1;
  }
  memcpy(cn->url + cn->url_len, at, n);
  cn->url_len += n;
  return head_grow(cn, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  conn *cn = p->data;
  if (cn->in_auth || cn->field_len == SIZE_MAX) { /* a new field begins */
    cn->field_len = 0;
    cn->field_long = 0;
  }
  cn->in_auth = 0;
  if (cn->field_len + n > sizeof cn->field) {
    cn->field_long = 1;
  } else {
    memcpy(cn->field + cn->field_len, at, n);
    cn->field_len += n;
  }
  return head_grow(cn, n);
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  conn *cn = p->data;
  if (cn->field_len != SIZE_MAX) { /* the first piece of this value */
    cn->in_auth = !cn->field_long && cn->field_len == 13 &&
                  strncasecmp(cn->field, "authorization", 13) == 0;
    if (cn->in_auth) {
      if (cn->auth_seen) cn->auth_long = 1; /* two of them: no */
      cn->auth_seen = 1;
      cn->auth_len = 0;
    }
    cn->field_len = SIZE_MAX; /* the next field callback starts a new name */
  }
  if (cn->in_auth) {
    if (cn->auth_len + n > AUTH_MAX) {
      cn->auth_long = 1;
    } else {
      memcpy(cn->auth + cn->auth_len, at, n);
      cn->auth_len += n;
    }
  }
  return head_grow(cn, n);
}

static int on_headers_complete(http_parser *p) {
  conn *cn = p->data;
  if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
    cn->err_status = 405;
    return -1;
  }
  if ((p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX)) {
    cn->err_status = 413; /* read-only: no request has a body */
    return -1;
  }
  if (p->upgrade) {
    cn->err_status = 400;
    return -1;
  }
  return 0;
}

/* The parser stops after each request: on_read answers it, now or once
 * the loop is quiet. */
static int on_message_complete(http_parser *p) {
  conn *cn = p->data;
  cn->head_ns = 0;
  cn->complete = 1;
  http_parser_pause(p, 1);
  return 0;
}

/* ---- libuv's callbacks -------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn *cn = (conn *)h;
  (void)hint;
  if (cn->srv == NULL) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  *buf = uv_buf_init(cn->srv->rbuf, RBUF_SIZE);
}

static void respond_parse_error(conn *cn) {
  int status = cn->err_status != 0 ? cn->err_status : 400;
  char msg[160];
  snprintf(msg, sizeof msg, "%d %s%s\n", status, reason(status),
           cn->err_status == 0 ? ": not an HTTP/1.1 request" : "");
  respond_text(cn, status, msg, 1);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);
static void on_defer(uv_timer_t *t);
/* Answers cn's complete request, then parses what followed it in the same
 * read (from, len), if anything. */
static void answer(conn *cn, const char *from, size_t len);

/* Building a response stops the loop for as long as the handler takes (a
 * big /metrics: tens of milliseconds).  When a timer is due sooner than
 * that (the firings of 10,000 events at the top of each second) or tasks
 * are ready, the answer waits until just after them, DEFER_MAX at most:
 * the scrape is a few milliseconds later, the schedule is not. */
#define DEFER_MAX_MS 500

static int loop_quiet(server *s) {
  int t = uv_backend_timeout(&s->core->loop);
  return t < 0 || (uint64_t)t > s->took_ms + 2;
}

static void defer_arm(server *s) {
  int t = uv_backend_timeout(&s->core->loop);
  uint64_t ms = t <= 0 ? 1 : (uint64_t)t + 1;
  if (ms > DEFER_MAX_MS) ms = DEFER_MAX_MS;
  if (uv_timer_start(s->defer, on_defer, ms, 0) != 0) {
    /* no timer: answer them now rather than never */
    while (!list_empty(&s->deferred)) {
      conn *cn = list_entry(s->deferred.next, conn, dnode);
      list_remove(&cn->dnode);
      cn->defer_ns = 0;
      answer(cn, NULL, 0);
      if (!cn->closing && uv_read_start((uv_stream_t *)&cn->tcp, on_alloc, on_read) != 0) conn_close(cn);
    }
  }
}


static void parse(conn *cn, const char *data, size_t len) {
  size_t used;
  if (len == 0) return;
  if (cn->head_ns == 0) cn->head_ns = now_ns();
  used = http_parser_execute(&cn->parser, &settings, data, len);
  if (cn->complete) {
    http_parser_pause(&cn->parser, 0);
    cn->complete = 0;
    if (used == len && cn->srv->defer != NULL && !loop_quiet(cn->srv)) {
      /* the common case (one request, then a wait): answer later */
      cn->defer_ns = now_ns();
      list_push(&cn->srv->deferred, &cn->dnode);
      (void)uv_read_stop((uv_stream_t *)&cn->tcp); /* cannot fail */
      defer_arm(cn->srv);
      return;
    }
    answer(cn, data + used, len - used);
    return;
  }
  if (HTTP_PARSER_ERRNO(&cn->parser) != HPE_OK || cn->err_status != 0) respond_parse_error(cn);
}

static void answer(conn *cn, const char *from, size_t len) {
  handle_request(cn);
  if (cn->closing || cn->close_after) return; /* nothing after a last response */
  if (cn->pending > MAX_PENDING) {
    conn_close(cn); /* a pipelining flood: no reader of its responses */
    return;
  }
  parse(cn, from, len);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf) {
  conn *cn = (conn *)st;
  if (cn->closing) return;
  if (n < 0) {
    conn_close(cn); /* EOF, a reset, or ENOBUFS */
    return;
  }
  if (n == 0) return;
  conn_touch(cn);
  if (cn->linger_ns != 0 || cn->close_after) return; /* dropped */
  parse(cn, buf->base, (size_t)n);
}

/* The deferred answers: each when the loop is quiet, or after DEFER_MAX_MS. */
static void on_defer(uv_timer_t *t) {
  server *s = t->data;
  uint64_t now = now_ns();
  int quiet = loop_quiet(s);
  orch_list *l = s->deferred.next;
  while (l != &s->deferred) {
    conn *cn = list_entry(l, conn, dnode);
    l = l->next;
    if (!quiet && now - cn->defer_ns < (uint64_t)DEFER_MAX_MS * 1000000) continue;
    list_remove(&cn->dnode);
    cn->defer_ns = 0;
    answer(cn, NULL, 0);
    if (!cn->closing && uv_read_start((uv_stream_t *)&cn->tcp, on_alloc, on_read) != 0) conn_close(cn);
    quiet = loop_quiet(s);
  }
  if (!list_empty(&s->deferred)) defer_arm(s);
}

static void on_connection(uv_stream_t *ls, int status) {
  server *s = (server *)ls;
  conn *cn;
  if (status < 0 || s->closed) return;
  cn = handle_new(s->core, sizeof *cn);
  if (uv_tcp_init(&s->core->loop, &cn->tcp) != 0) {
    s->core->live.handles--;
    free(cn);
    return;
  }
  list_init(&cn->node);
  list_init(&cn->dnode);
  cn->closing = 1; /* until it is one of the server's */
  if (uv_accept(ls, (uv_stream_t *)&cn->tcp) != 0) {
    handle_close((uv_handle_t *)&cn->tcp);
    return;
  }
  uv_unref((uv_handle_t *)&cn->tcp);
  if (s->nconns >= MAX_CONNS) conn_close(list_entry(s->conns.next, conn, node));
  cn->closing = 0;
  cn->srv = s;
  s->nconns++;
  list_push(&s->conns, &cn->node);
  cn->last_ns = now_ns();
  http_parser_init(&cn->parser, HTTP_REQUEST);
  cn->parser.data = cn;
  (void)uv_tcp_nodelay(&cn->tcp, 1); /* only sooner small answers: a failure costs nothing */
  if (uv_read_start((uv_stream_t *)&cn->tcp, on_alloc, on_read) != 0) conn_close(cn);
}

static void on_sweep(uv_timer_t *t) {
  server *s = t->data;
  uint64_t now = now_ns();
  orch_list *l = s->conns.next;
  while (l != &s->conns) {
    conn *cn = list_entry(l, conn, node);
    l = l->next;
    if (cn->linger_ns != 0) {
      if (now - cn->linger_ns > (uint64_t)LINGER_MS * 1000000) conn_close(cn);
    } else if (cn->pending > 0) {
      if (now - cn->write_ns > s->write_ms * 1000000) conn_close(cn);
    } else if (cn->head_ns != 0) {
      if (now - cn->head_ns > (uint64_t)HEAD_MS * 1000000) {
        respond_text(cn, 408, "408 request timeout\n", 1);
      }
    } else if (now - cn->last_ns > (uint64_t)IDLE_MS * 1000000) {
      conn_close(cn);
    }
  }
}

/* ---- the server --------------------------------------------------------- */

/* Stops listening and closes every connection (their writes cancelled). */
static void server_close(lua_State *L, lserver *ls) {
  server *s = ls->s;
  if (s == NULL) return;
  ls->s = NULL;
  s->closed = 1;
  while (!list_empty(&s->conns)) conn_close(list_entry(s->conns.next, conn, node));
  handle_close((uv_handle_t *)s->sweep);
  handle_close((uv_handle_t *)s->defer);
  handle_close((uv_handle_t *)s->linger);
  ref_free(L, &s->handler_ref);
  free(s->token);
  handle_close((uv_handle_t *)&s->tcp); /* frees s */
}

static lserver *check_server(lua_State *L) { return luaL_checkudata(L, 1, SERVER_MT); }

/* Pushes nil, "<what>: <libuv message>", "<ECODE>"; returns 3. */
static int push_uv_error(lua_State *L, const char *what, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, uv_strerror(err));
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

/* core.http_listen(ip, port, handler, {token=, write_timeout=}) -> server,
 * bound address, port | nil, message, code.  ip: a numeric IPv4 or IPv6
 * address (live.lua resolves names); port 0 picks a free one. */
static int l_http_listen(lua_State *L) {
  orch_core *c = core_get(L);
  const char *ip = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  struct sockaddr_storage ss;
  int namelen = sizeof ss, r;
  lserver *ls;
  server *s;
  char host[64];
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "a port 0..65535 expected");
  luaL_checktype(L, 3, LUA_TFUNCTION);
  luaL_checktype(L, 4, LUA_TTABLE);
  memset(&ss, 0, sizeof ss);
  if (strchr(ip, ':') != NULL) {
    r = uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)&ss);
  } else {
    r = uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)&ss);
  }
  if (r != 0) return push_uv_error(L, ip, r);
  ls = lua_newuserdatauv(L, sizeof *ls, 0);             /* [ip port fn opts ls] */
  ls->s = NULL;
  luaL_setmetatable(L, SERVER_MT);
  s = handle_new(c, sizeof *s);
  s->core = c;
  list_init(&s->conns);
  list_init(&s->deferred);
  s->handler_ref = LUA_NOREF;
  lua_getfield(L, 4, "write_timeout");
  s->write_ms = (uint64_t)(luaL_optnumber(L, -1, 30) * 1000);
  lua_pop(L, 1);
  if ((r = uv_tcp_init(&c->loop, &s->tcp)) != 0) {
    c->live.handles--;
    free(s);
    return push_uv_error(L, "listen", r);
  }
  ls->s = s; /* from here on, server_close (or __gc) frees it */
  s->sweep = handle_new(c, sizeof *s->sweep);
  if ((r = uv_timer_init(&c->loop, s->sweep)) != 0) {
    c->live.handles--;
    free(s->sweep);
    s->sweep = NULL;
    server_close(L, ls);
    return push_uv_error(L, "listen", r);
  }
  s->sweep->data = s;
  uv_unref((uv_handle_t *)s->sweep);
  s->defer = handle_new(c, sizeof *s->defer);
  if ((r = uv_timer_init(&c->loop, s->defer)) != 0) {
    c->live.handles--;
    free(s->defer);
    s->defer = NULL;
    server_close(L, ls);
    return push_uv_error(L, "listen", r);
  }
  s->defer->data = s;
  uv_unref((uv_handle_t *)s->defer);
  uv_unref((uv_handle_t *)&s->tcp);
  if ((r = uv_tcp_bind(&s->tcp, (struct sockaddr *)&ss, 0)) != 0 ||
      (r = uv_listen((uv_stream_t *)&s->tcp, 511, on_connection)) != 0 ||
      (r = uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &namelen)) != 0 ||
      (r = uv_timer_start(s->sweep, on_sweep, SWEEP_MS, SWEEP_MS)) != 0) {
    server_close(L, ls);
    return push_uv_error(L, "listen", r);
  }
  lua_getfield(L, 4, "token");
  if (lua_isstring(L, -1)) {
    size_t n;
    const char *tok = lua_tolstring(L, -1, &n);
    s->token = malloc(n + 1);
    if (s->token == NULL) {
      server_close(L, ls);
      return luaL_error(L, "out of memory");
    }
    memcpy(s->token, tok, n + 1);
    s->token_len = n;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, 3);
  s->handler_ref = ref_new(L);
  if (ss.ss_family == AF_INET6) {
    r = uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
    port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  } else {
    r = uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  if (r != 0) snprintf(host, sizeof host, "%s", ip); /* what was asked, then */
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 3;
}

static void on_linger_end(uv_timer_t *t) {
  server *s = t->data;
  s->wait_done = 1;
  uv_stop(t->loop);
}

/* server:linger(seconds, path): runs the loop (after the run, from the
 * main thread) until a response to path has been sent in full, or seconds
 * have passed, or nothing is left; returns true when path was served. */
static int l_server_linger(lua_State *L) {
  lserver *ls = check_server(L);
  server *s = ls->s;
  double sec = luaL_checknumber(L, 2);
  const char *path = luaL_checkstring(L, 3);
  uint64_t until;
  int served = 0, r;
  if (s == NULL || sec <= 0) return lua_pushboolean(L, 0), 1;
  if (s->linger == NULL) {
    s->linger = handle_new(s->core, sizeof *s->linger);
    if ((r = uv_timer_init(&s->core->loop, s->linger)) != 0) {
      s->core->live.handles--;
      free(s->linger);
      s->linger = NULL;
      return luaL_error(L, "linger: %s", uv_strerror(r));
    }
    s->linger->data = s;
  }
  s->wait_path = path;
  s->wait_done = 0;
  until = now_ns() + (uint64_t)(sec * 1e9);
  if ((r = uv_timer_start(s->linger, on_linger_end, (uint64_t)(sec * 1000), 0)) != 0)
    return luaL_error(L, "linger: %s", uv_strerror(r));
  uv_ref((uv_handle_t *)&s->tcp); /* the loop waits for a client */
  while (s->wait_done == 0 || s->wait_done == -1) {
    /* -1: the response is queued; done once no write is left */
    if (s->wait_done == -1) {
      orch_list *l;
      int busy = 0;
      for (l = s->conns.next; l != &s->conns; l = l->next)
        busy |= list_entry(l, conn, node)->pending > 0;
      if (!busy) {
        served = 1;
        break;
      }
    }
    if (now_ns() >= until) break;
    (void)uv_run(&s->core->loop, UV_RUN_ONCE); /* handles left: no matter, the loop above decides */
  }
  if (ls->s != NULL) {
    s->wait_path = NULL;
    (void)uv_timer_stop(s->linger); /* cannot fail */
    uv_unref((uv_handle_t *)&s->tcp);
  }
  lua_pushboolean(L, served);
  return 1;
}

/* server:stop_linger(): linger() returns now (a signal came). */
static int l_server_stop_linger(lua_State *L) {
  lserver *ls = check_server(L);
  if (ls->s != NULL && ls->s->wait_path != NULL) {
    ls->s->wait_done = 1;
    uv_stop(&ls->s->core->loop);
  }
  return 0;
}

/* server:close(): stops listening and closes every connection; a second
 * close is harmless. */
static int l_server_close(lua_State *L) {
  server_close(L, check_server(L));
  return 0;
}

/* server:connections() -> connections open (for the specs) */
static int l_server_connections(lua_State *L) {
  lserver *ls = check_server(L);
  lua_pushinteger(L, ls->s != NULL ? ls->s->nconns : 0);
  return 1;
}

int http_open(lua_State *L) {
  static const luaL_Reg m[] = {{"linger", l_server_linger},
                               {"stop_linger", l_server_stop_linger},
                               {"close", l_server_close},
                               {"connections", l_server_connections},
                               {NULL, NULL}};
  http_parser_settings_init(&settings);
  settings.on_message_begin = on_message_begin;
  settings.on_url = on_url;
  settings.on_header_field = on_header_field;
  settings.on_header_value = on_header_value;
  settings.on_headers_complete = on_headers_complete;
  settings.on_message_complete = on_message_complete;
  luaL_newmetatable(L, BODY_MT);
  lua_pushcfunction(L, l_body_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_body_len);
  lua_setfield(L, -2, "__len");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_body_text);
  lua_setfield(L, -2, "text");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, SERVER_MT);
  luaL_newlib(L, m);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_server_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_server_close);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_http_listen);
  lua_setfield(L, -2, "http_listen");
  return 0;
}
