/* alloc.h - the Lua state's allocator (alloc.c). */
#ifndef ORCH_ALLOC_H
#define ORCH_ALLOC_H

#include <stddef.h>

typedef struct orch_alloc orch_alloc;

orch_alloc *orch_alloc_new(void);
void *orch_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
size_t orch_alloc_chunk_bytes(const orch_alloc *a);
void orch_alloc_closing(orch_alloc *a); /* just before lua_close */
void orch_alloc_free(orch_alloc *a); /* after lua_close */

#endif
