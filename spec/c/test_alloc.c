/* test_alloc.c - the Lua state's size-class allocator: blocks never
 * overlap, resizes keep their bytes across every class boundary, freed
 * blocks are reused, and a Lua state churning objects runs on it with a
 * bounded footprint.  Prints TAP. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lualib.h"

#include "alloc.h"

static int n_test;
static int failed;

static void ok(int cond, const char *what) {
  printf("%sok %d - %s\n", cond ? "" : "not ", ++n_test, what);
  if (!cond) failed++;
}

#define SLOTS 2000

typedef struct {
  unsigned char *p;
  size_t n;
  unsigned char tag;
} slot;

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* sizes around each 16-byte class edge and the small/large edge (512) */
static size_t pick_size(void) {
  switch (next_rand() % 4) {
    case 0: return 1 + next_rand() % 32;
    case 1: return 496 + next_rand() % 34;
    case 2: return 1 + next_rand() % 1500;
    default: return 16 * (1 + next_rand() % 40) + (next_rand() % 3) - 1;
  }
}

static int intact(const slot *s) {
  size_t i;
  for (i = 0; i < s->n; i++)
    if (s->p[i] != (unsigned char)(s->tag + i)) return 0;
  return 1;
}

static void fill(slot *s, size_t from) {
  size_t i;
  for (i = from; i < s->n; i++) s->p[i] = (unsigned char)(s->tag + i);
}

static void random_ops(void) {
  orch_alloc *a = orch_alloc_new();
  static slot s[SLOTS];
  int i, step, bad = 0, moved_back = 0;
  for (step = 0; step < 400000 && !bad; step++) {
    slot *x = &s[next_rand() % SLOTS];
    if (x->p == NULL) {
      size_t n = pick_size();
      /* osize is the object's kind when ptr is NULL: any value */
      x->p = orch_lua_alloc(a, NULL, next_rand() % 9, n);
      x->n = n;
      x->tag = (unsigned char)next_rand();
      fill(x, 0);
    } else if (next_rand() % 3 == 0) {
      if (!intact(x)) bad = 1;
      orch_lua_alloc(a, x->p, x->n, 0);
      x->p = NULL;
    } else {
      size_t n = pick_size(), keep = n < x->n ? n : x->n, j;
      unsigned char *old = x->p;
      if (!intact(x)) bad = 1;
      x->p = orch_lua_alloc(a, x->p, x->n, n);
      for (j = 0; j < keep; j++)
        if (x->p[j] != (unsigned char)(x->tag + j)) bad = 1;
      if (x->p == old && n != x->n) moved_back++;
      x->n = n;
      fill(x, keep);
    }
  }
  for (i = 0; i < SLOTS; i++)
    if (s[i].p != NULL && !intact(&s[i])) bad = 1;
  ok(!bad, "400,000 random allocations, resizes and frees keep every block's bytes");
  ok(moved_back > 0, "a resize within a size class keeps its block");
  for (i = 0; i < SLOTS; i++)
    if (s[i].p != NULL) orch_lua_alloc(a, s[i].p, s[i].n, 0);
  orch_alloc_free(a);
}

static void reuse(void) {
  orch_alloc *a = orch_alloc_new();
  void *p = orch_lua_alloc(a, NULL, 0, 40), *q;
  orch_lua_alloc(a, p, 40, 0);
  q = orch_lua_alloc(a, NULL, 0, 33); /* same class as 40 */
  ok(p == q, "a freed block is the next one given in its class");
  ok(((uintptr_t)q & 15) == 0, "blocks are 16-byte aligned");
  orch_lua_alloc(a, q, 33, 0);
  orch_alloc_closing(a);
  p = orch_lua_alloc(a, NULL, 0, 40);
  ok(p == q, "closing: the lists still give their blocks");
  orch_lua_alloc(a, p, 40, 0);
  q = orch_lua_alloc(a, NULL, 0, 40);
  ok(q != NULL && p != q, "closing: a freed block is not put back (the chunks go whole)");
  orch_alloc_free(a);
}

static void lua_churn(void) {
  orch_alloc *a = orch_alloc_new();
  lua_State *L = lua_newstate(orch_lua_alloc, a);
  size_t warm, end;
  int r;
  luaL_openlibs(L);
  r = luaL_dostring(L,
      "local keep = {}\n"
      "local function churn(n)\n"
      "  for i = 1, n do\n"
      "    local t = {event = 'e' .. (i % 100), level = 'info', t = i / 3, data = {seq = i}}\n"
      "    local co = coroutine.wrap(function(x) coroutine.yield(x.data.seq) end)\n"
      "    co(t)\n"
      "    keep[i % 1000] = t\n"
      "  end\n"
      "end\n"
      "churn(100000); collectgarbage()\n"
      "CHURN = churn\n");
  ok(r == LUA_OK, "a Lua state runs on the allocator");
  warm = orch_alloc_chunk_bytes(a);
  lua_getglobal(L, "CHURN");
  lua_pushinteger(L, 500000);
  r = lua_pcall(L, 1, 0, 0);
  lua_gc(L, LUA_GCCOLLECT);
  end = orch_alloc_chunk_bytes(a);
  ok(r == LUA_OK, "500,000 more records and coroutines");
  printf("# chunks: %zu KB after warm-up, %zu KB at the end\n", warm >> 10, end >> 10);
  ok(end <= warm + ((size_t)1 << 20), "freed blocks are reused: under 1 MB more chunks after 5x the work");
  /* a finaliser allocates while the state closes */
  r = luaL_dostring(L, "setmetatable({}, {__gc = function() local t = {} for i = 1, 100 do t[i] = {i} end end})");
  ok(r == LUA_OK, "a table with a finaliser that allocates");
  orch_alloc_closing(a);
  lua_close(L);
  orch_alloc_free(a);
}

int main(void) {
  random_ops();
  reuse();
  lua_churn();
  printf("1..%d\n", n_test);
  return failed != 0;
}
