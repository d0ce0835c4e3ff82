/*
 * host.c - the Lua state: standard libraries, cjson and orch.core linked
 * in, and the engine's Lua modules in package.preload (or read from
 * $ORCHLUA_LUA_DIR during development).
 */
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lualib.h"

#include "alloc.h"
#include "core.h"
#include "host.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define ORCH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ORCH_SANITIZED 1
#endif
#endif
#ifndef ORCH_SANITIZED
#define ORCH_SANITIZED 0
#endif

extern const struct orch_embedded {
  const char *name, *file, *src;
  size_t len;
} orch_embedded[];

int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);
int luaopen_orch_core(lua_State *L);
int luaopen_orch_sys(lua_State *L);
int luaopen_orch_sink(lua_State *L);
int luaopen_orch_scan(lua_State *L); /* scan.c: orchlua report's reader */
int luaopen_orch_fs(lua_State *L);   /* fs.c: files and the terminal */
int luaopen_orch_columns(lua_State *L); /* columns.c: tables as text */

/* preload loader for an embedded module: upvalue 1 is its index */
static int load_embedded(lua_State *L) {
  const struct orch_embedded *m = &orch_embedded[lua_tointeger(L, lua_upvalueindex(1))];
  char chunkname[600];
  snprintf(chunkname, sizeof chunkname, "@%s", m->file);
  /* tools/embed.c stored it compiled */
  if (luaL_loadbufferx(L, m->src, m->len, chunkname, "b") != LUA_OK)
    return lua_error(L);
  lua_pushstring(L, m->name);                           /* [chunk name] */
  lua_call(L, 1, 1);
  return 1;
}

static void preload(lua_State *L, const char *name, lua_CFunction f) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, f);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* Puts the engine's modules where require finds them. */
static void install_modules(lua_State *L) {
  const char *dir = getenv("ORCHLUA_LUA_DIR");
  int i;
  preload(L, "cjson", luaopen_cjson);
  preload(L, "cjson.safe", luaopen_cjson_safe);
  preload(L, "orch.core", luaopen_orch_core);
  preload(L, "orch.sys", luaopen_orch_sys);
  preload(L, "orch.sink", luaopen_orch_sink);
  preload(L, "orch.scan", luaopen_orch_scan);
  preload(L, "orch.fs", luaopen_orch_fs);
  preload(L, "orch.columns", luaopen_orch_columns);
  if (dir != NULL && *dir != '\0') {
    /* [package] path = DIR/?.lua;DIR/?/init.lua;<old> */
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    return;
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (i = 0; orch_embedded[i].name != NULL; i++) {
    lua_pushinteger(L, i);
    lua_pushcclosure(L, load_embedded, 1);
    lua_setfield(L, -2, orch_embedded[i].name);
  }
  lua_pop(L, 1);
}

static int on_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "orchlua: PANIC: unprotected error in call to Lua API (%s)\n",
          msg != NULL ? msg : "error object is not a string");
  return 0; /* then Lua aborts */
}

/* warn() as the stand-alone lua has it: off until "@on" */
static void warn_on(void *ud, const char *msg, int tocont);

static void warn_off(void *ud, const char *msg, int tocont) {
  if (!tocont && strcmp(msg, "@on") == 0) lua_setwarnf((lua_State *)ud, warn_on, ud);
}

static void warn_cont(void *ud, const char *msg, int tocont) {
  fputs(msg, stderr);
  if (tocont) { /* the next piece continues this line */
    lua_setwarnf((lua_State *)ud, warn_cont, ud);
    return;
  }
  fputs("\n", stderr);
  fflush(stderr);
  lua_setwarnf((lua_State *)ud, warn_on, ud);
}

static void warn_on(void *ud, const char *msg, int tocont) {
  if (!tocont && *msg == '@') { /* a control message */
    if (strcmp(msg, "@off") == 0) lua_setwarnf((lua_State *)ud, warn_off, ud);
    return;
  }
  fputs("Lua warning: ", stderr);
  warn_cont(ud, msg, tocont);
}

/* The size-class allocator (alloc.c), unless memory checkers are watching:
 * ASan and valgrind see each Lua object only through malloc.
 * ORCHLUA_ALLOC=malloc chooses malloc, =orch the size classes (callgrind). */
static lua_State *new_state(orch_core *c) {
  const char *env = getenv("ORCHLUA_ALLOC");
  lua_State *L;
  int use_malloc = ORCH_SANITIZED || RUNNING_ON_VALGRIND;
  if (env != NULL && strcmp(env, "malloc") == 0) use_malloc = 1;
  if (env != NULL && strcmp(env, "orch") == 0 && !ORCH_SANITIZED) use_malloc = 0;
  if (use_malloc) return luaL_newstate();
  c->alloc = orch_alloc_new();
  if (c->alloc == NULL) return NULL;
  L = lua_newstate(orch_lua_alloc, c->alloc);
  if (L == NULL) {
    orch_alloc_free(c->alloc);
    c->alloc = NULL;
    return NULL;
  }
  lua_atpanic(L, on_panic);
  lua_setwarnf(L, warn_off, L);
  return L;
}

orch_core *host_new(lua_State **out) {
  orch_core *c = calloc(1, sizeof *c);
  lua_State *L;
  if (c == NULL) return NULL;
  L = new_state(c);
  if (L == NULL) {
    free(c);
    return NULL;
  }
  /* every thread copies the main thread's extra space: the core pointer */
  *(orch_core **)lua_getextraspace(L) = c;
  c->L = L;
  clock_init(c);
  UV_CHECK(uv_loop_init(&c->loop));
  c->loop.data = c;
  sched_init(c);
  tickers_init(c);
  luaL_openlibs(L);
  install_modules(L);
  *out = L;
  return c;
}

void host_free(orch_core *c) {
  sched_shutdown(c);
  orch_alloc_closing(c->alloc);
  lua_close(c->L);
  orch_alloc_free(c->alloc);
  sched_close(c);
  invoker_pool_free(c); /* the firing tasks kept for reuse */
  free(c);
}
