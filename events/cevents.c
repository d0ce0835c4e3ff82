/*
 * cevents.c - an example C event module.  A C function cannot name its
 * parameters, so orchlua passes it one ctx table whose fields resolve like
 * a Lua event's parameters: description params, fixtures, built-ins.
 *
 *   c_ping(ctx)          reports {pong = ctx.count} through result_reporter
 *   c_thread_burst(ctx)  a detached thread pushes ctx.count strings into the
 *                        report queue with orch_queue_push (thread-safe)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "lauxlib.h"
#include "lua.h"
#include "orch.h"

int luaopen_cevents(lua_State *L);

/* ctx.result_reporter:add_result({pong = ctx.count, from = "C"}) */
static int c_ping(lua_State *L) {
  lua_Integer count;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "count");                         /* [ctx count] */
  count = luaL_optinteger(L, -1, 1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "result_reporter");               /* [ctx rr] */
  lua_getfield(L, -1, "add_result");                   /* [ctx rr add] */
  lua_insert(L, -2);                                   /* [ctx add rr] */
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, count);
  lua_setfield(L, -2, "pong");
  lua_pushliteral(L, "C");
  lua_setfield(L, -2, "from");                         /* [ctx add rr t] */
  lua_call(L, 2, 0);
  return 0;
}

struct burst {
  orch_queue *q;
  long count;
};

static void *burst_main(void *arg) {
  struct burst *b = arg;
  long i;
  char buf[64];
  for (i = 1; i <= b->count; i++) {
    int n = snprintf(buf, sizeof buf, "thread result %ld/%ld", i, b->count);
    if (orch_queue_push(b->q, buf, (size_t)n) != 0) break;
  }
  orch_queue_release(b->q);
  free(b);
  return NULL;
}

static int c_thread_burst(lua_State *L) {
  struct burst *b;
  pthread_t th;
  orch_queue *q;
  long count;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "count");
  lua_getfield(L, 1, "report_queue");                  /* [ctx count q] */
  count = (long)luaL_optinteger(L, -2, 1000);
  q = orch_queue_check(L, -1);  /* last call that may raise: retained now */
  b = malloc(sizeof *b);
  if (b == NULL) {
    orch_queue_release(q);
    return luaL_error(L, "out of memory");
  }
  b->q = q;
  b->count = count;
  if (pthread_create(&th, NULL, burst_main, b) != 0) {
    orch_queue_release(b->q);
    free(b);
    return luaL_error(L, "cannot start a thread");
  }
  pthread_detach(th);
  return 0;
}

int luaopen_cevents(lua_State *L) {
  static const luaL_Reg events[] = {{"c_ping", c_ping},
                                    {"c_thread_burst", c_thread_burst},
                                    {NULL, NULL}};
  luaL_newlib(L, events);
  return 1;
}
