/*
 * main.c - argv in, exit status out.  Everything runs inside one protected
 * call (lua.c's pmain): orch.cli.main(args) decides the status.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "lauxlib.h"

#include "guardian.h"
#include "host.h"

#ifndef ORCH_VERSION
#define ORCH_VERSION "unknown"
#endif

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Closing the state runs every __gc, with hooks off: one that never
 * returns would keep orchlua forever, its run long over and its report
 * closed.  An alarm bounds it by the grace period. */
static volatile sig_atomic_t exit_status;

static void on_exit_alarm(int sig) {
  static const char msg[] = "orchlua: a __gc still ran at exit after the grace period: exiting\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  (void)sig;
  guardian_done();
  _exit(exit_status);
}

/* [argc argv] -> [status] */
static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int i;
  lua_createtable(L, argc, 0);                          /* [.. args] */
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushvalue(L, -1);
  lua_setglobal(L, "arg");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "orch.cli");
  lua_call(L, 1, 1);                                    /* [.. args cli] */
  lua_getfield(L, -1, "main");
  lua_pushvalue(L, -3);
  lua_pushliteral(L, ORCH_VERSION);
  lua_call(L, 2, 1);                                    /* [.. args cli status] */
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L;
  orch_core *c;
  int status;
  std_fds_hold();    /* before libuv opens anything */
  guardian_start();  /* before any thread */
  c = host_new(&L);
  if (c == NULL) {
    fprintf(stderr, "orchlua: cannot create the Lua state: not enough memory\n");
    return 1;
  }
  lua_pushcfunction(L, msghandler);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  if (lua_pcall(L, 2, 1, 1) != LUA_OK) {
    fprintf(stderr, "orchlua: internal error: %s\n", lua_tostring(L, -1));
    status = 1;
  } else {
    status = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 1;
  }
  fflush(stdout);
  exit_status = status;
  signal(SIGALRM, on_exit_alarm);
  /* a run's grace (at least a second more); 10 s for the other commands */
  alarm(c->bound.grace_ns > 0 ? (unsigned)(c->bound.grace_ns / 1000000000u) + 1 : 10);
  host_free(c);
  alarm(0);
  guardian_done();   /* ended in order: nothing for the guardian to undo */
  return status;
}
