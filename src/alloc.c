/*
 * alloc.c - the Lua state's allocator.
 *
 * A chatty run makes and drops small objects at a high rate: a result is a
 * record table, its data table and their hash parts; an invocation a
 * coroutine's frames and an argument table.  Through glibc's malloc those
 * cost much of a results burst (_int_malloc's slow path after each
 * collection hands thousands of blocks back at once).  Lua tells the size
 * of every block it frees or resizes, so blocks of up to SMALL_MAX bytes
 * need no header: they come in size classes of GRAIN bytes, cut from 64 KB
 * chunks, and a freed block goes on its class's list, to be reused next
 * (the most recently freed block is the one most likely still in cache).
 * Larger blocks go to malloc.
 *
 * Memory in the lists is kept for reuse until the state is closed, so a
 * run's RSS is its peak of small objects (per size class); steady
 * workloads reuse the same blocks.  After lua_close, orch_alloc_free
 * returns the chunks whole (and during it, orch_alloc_closing: freed
 * blocks stay where they are).
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#define GRAIN 16 /* malloc's alignment, and Lua's needs are at most that */
#define SMALL_MAX 512
#define NCLASS (SMALL_MAX / GRAIN)
#define CHUNK_BYTES ((size_t)64 << 10)

typedef struct fblock {
  struct fblock *next;
} fblock;

typedef struct chunk {
  struct chunk *next;
} chunk;

struct orch_alloc {
  fblock *free[NCLASS];
  char *cur, *end; /* the uncut rest of the newest chunk */
  chunk *chunks;
  size_t nchunks;
  int closing; /* lua_close runs: small blocks are not put back */
};

static int class_of(size_t n) { return (int)((n - 1) / GRAIN); }

orch_alloc *orch_alloc_new(void) { return calloc(1, sizeof(orch_alloc)); }

static void *small_get(orch_alloc *a, size_t n) {
  int k = class_of(n);
  size_t size = (size_t)(k + 1) * GRAIN;
  fblock *b = a->free[k];
  void *p;
  if (b != NULL) {
    a->free[k] = b->next;
    return b;
  }
  if ((size_t)(a->end - a->cur) < size) {
    /* the old chunk's tail (< SMALL_MAX bytes) stays unused */
    chunk *c = malloc(CHUNK_BYTES);
    if (c == NULL) return NULL;
    c->next = a->chunks;
    a->chunks = c;
    a->nchunks++;
    a->cur = (char *)c + GRAIN; /* blocks stay GRAIN-aligned */
    a->end = (char *)c + CHUNK_BYTES;
  }
  p = a->cur;
  a->cur += size;
  return p;
}

static void small_put(orch_alloc *a, void *p, size_t n) {
  fblock *b = p;
  int k = class_of(n);
  b->next = a->free[k];
  a->free[k] = b;
}

/* A lua_Alloc (see the manual's §4.6): ptr NULL means osize is the kind of
 * object, not a size; a shrink must not fail. */
void *orch_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  orch_alloc *a = ud;
  void *p;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    if (ptr != NULL) {
      if (osize > SMALL_MAX) free(ptr);
      else if (!a->closing) small_put(a, ptr, osize);
    }
    return NULL;
  }
  if (osize > SMALL_MAX && nsize > SMALL_MAX) return realloc(ptr, nsize);
  if (nsize > SMALL_MAX) { /* small (or new) to large */
    p = malloc(nsize);
    if (p != NULL && ptr != NULL) {
      memcpy(p, ptr, osize);
      small_put(a, ptr, osize);
    }
    return p;
  }
  if (ptr != NULL && osize <= SMALL_MAX && class_of(osize) == class_of(nsize)) return ptr;
  p = small_get(a, nsize);
  if (p == NULL) {
    /* a shrink keeps its bigger block (it serves the smaller class from
     * then on: only when a 64 KB malloc failed) */
    return nsize <= osize ? ptr : NULL;
  }
  if (ptr != NULL) {
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    if (osize <= SMALL_MAX) small_put(a, ptr, osize);
    else free(ptr);
  }
  return p;
}

size_t orch_alloc_chunk_bytes(const orch_alloc *a) { return a->nchunks * CHUNK_BYTES; }

/* lua_close frees every object, and its walk over them is most of what a
 * run of 10,000 events spends after its summary: a small block put back
 * on its list is one more write to cold memory, for a list nobody reads
 * again (orch_alloc_free returns the chunks whole).  Finalisers that run
 * in lua_close may still allocate. */
void orch_alloc_closing(orch_alloc *a) {
  if (a != NULL) a->closing = 1;
}

void orch_alloc_free(orch_alloc *a) {
  chunk *c;
  if (a == NULL) return;
  c = a->chunks;
  while (c != NULL) {
    chunk *next = c->next;
    free(c);
    c = next;
  }
  free(a);
}
