/*
 * ref.c - registry refs, counted so that the tests can assert that a run
 * released every one it took (core.stats().refs == 0 at the end).
 */
#include "lauxlib.h"

#include "core.h"

int ref_new(lua_State *L) {
  orch_core *c = core_get(L);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  c->live_refs++;
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

void ref_free(lua_State *L, int *ref) {
  if (*ref == LUA_NOREF || *ref == LUA_REFNIL) return;
  core_get(L)->live_refs--;
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

void ref_push(lua_State *L, int ref) {
  if (ref == LUA_NOREF)
    lua_pushnil(L);
  else
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
}
