/*
 * ref.c - registry refs, counted so that the tests can assert that a run
 * released every one it took (core.stats().refs == 0 at the end); and the
 * cheap userdata check of the hot methods.
 */
#include "lauxlib.h"

#include "core.h"

int ref_new(lua_State *L) {
  orch_core *c = core_get(L);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  c->live.refs++;
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

void ref_free(lua_State *L, int *ref) {
  if (*ref == LUA_NOREF || *ref == LUA_REFNIL) return;
  core_get(L)->live.refs--;
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

void ref_push(lua_State *L, int ref) {
  if (ref == LUA_NOREF)
    lua_pushnil(L);
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
}

void *udata_with_mt(lua_State *L, int idx, int mt) {
  void *p = lua_touserdata(L, idx);
  int same;
  if (p == NULL || !lua_getmetatable(L, idx)) return NULL;
  same = lua_rawequal(L, -1, mt < 0 && mt > LUA_REGISTRYINDEX ? mt - 1 : mt);
  lua_pop(L, 1);
  return same ? p : NULL;
}
