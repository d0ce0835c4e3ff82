#ifndef ORCH_HOST_H
#define ORCH_HOST_H
#include "core.h"
orch_core *host_new(lua_State **L);
void host_free(orch_core *c);
#endif
