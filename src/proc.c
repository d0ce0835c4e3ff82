/*
 * proc.c - processes spawned by events (orch.spawn / orch.exec).
 * Filled in by the processes issue; until then core has no spawn.
 */
#include "core.h"

int proc_open(lua_State *L) {
  (void)L;
  return 0;
}
