/*
 * orch.h - the C API orchlua exports to C modules (events/, helper rocks).
 *
 * The host is linked with -Wl,-E, so a module built against the lua5.4
 * headers and this header resolves these symbols from the orchlua binary.
 */
#ifndef ORCH_H
#define ORCH_H

#include <stddef.h>

#include "lua.h"

#define ORCH_API_VERSION 1

typedef struct orch_queue orch_queue;

/* The queue behind a report_queue value at index idx (raises if it is not
 * one), retained for the caller: release it with orch_queue_release. */
orch_queue *orch_queue_check(lua_State *L, int idx);

/* Thread-safe, from any thread: appends a string to the queue (it reaches
 * get() as a Lua string, in push order) and wakes the loop.  Returns 0, or
 * -1 when the queue is closed (the run has ended); the string is copied. */
int orch_queue_push(orch_queue *q, const char *s, size_t len);

void orch_queue_retain(orch_queue *q);
void orch_queue_release(orch_queue *q);

#endif
