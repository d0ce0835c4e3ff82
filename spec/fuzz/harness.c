/*
 * harness.c - libFuzzer's entry point for orchlua's fuzzers.
 *
 * One binary per target: FUZZ_TARGET names spec/fuzz/<target>.lua, a chunk
 * returning function(input) that raises on a finding (a crash, a timeout or
 * running out of memory is a finding too: libFuzzer reports those).  The
 * function runs in the real host (host_new: the loop, orch.core, cjson and
 * the engine's modules read from lua/), so what is fuzzed is the code that
 * ships: the description loader and validator, orch.output.{jsonl,json,
 * junit}, the writer and the C JSON encoder (src/jsonw.c).
 *
 * Coverage.  The host's C is built with -fsanitize=fuzzer-no-link, so
 * libFuzzer sees jsonw.c and the writers.  Lua code is invisible to it, so
 * a line hook feeds Lua's line-to-line edges (previous line, line, hashed
 * as AFL hashes branches) into libFuzzer's extra counters: the fuzzer is
 * guided by the validator's Lua branches as well.
 *
 * FUZZ_LUACOV=FILE: at exit, writes every Lua line run, as "SOURCE\tLINE"
 * (spec/fuzz/luacov.lua turns that into line coverage per module).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lualib.h"

#include "host.h"

#ifndef FUZZ_TARGET
#error "FUZZ_TARGET must name spec/fuzz/<target>.lua"
#endif
#ifndef FUZZ_ROOT
#define FUZZ_ROOT "."
#endif

/* ---- Lua line coverage ---------------------------------------------------- */

#define COV_SIZE (1u << 16)
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t lua_edges[COV_SIZE];

#define MAX_SOURCES 256
#define MAX_LINES 8192
static struct {
  const char *key; /* the source string's address: stable while loaded */
  char *name;
  uint8_t lines[MAX_LINES / 8];
} sources[MAX_SOURCES];
static int n_sources;
static const char *luacov_path;
static uint32_t prev_loc;

static int source_slot(const char *src) {
  int i;
  for (i = 0; i < n_sources; i++)
    if (sources[i].key == src) return i;
  if (n_sources == MAX_SOURCES) return -1;
  sources[n_sources].key = src;
  sources[n_sources].name = strdup(src);
  return n_sources++;
}

/* The line hook: an edge is (previous line, line).  Fuzzing counts lines
 * alone, without asking which source they are in (lua_getinfo on every
 * line would cost more than the code under test): two files' line 12 are
 * one line for the fuzzer, a small price.  FUZZ_LUACOV asks for the source
 * too, to name the lines it writes. */
static void cov_hook(lua_State *L, lua_Debug *ar) {
  uint32_t loc = (uint32_t)ar->currentline * 2654435761u;
  lua_edges[(loc ^ prev_loc) & (COV_SIZE - 1)]++;
  prev_loc = loc >> 1;
  if (luacov_path != NULL && ar->currentline > 0 && ar->currentline < MAX_LINES &&
      lua_getinfo(L, "S", ar) && ar->source != NULL) {
    int s = source_slot(ar->source);
    if (s >= 0) sources[s].lines[ar->currentline / 8] |= (uint8_t)(1u << (ar->currentline % 8));
  }
}

static void luacov_dump(void) {
  FILE *f;
  int i, l;
  if (luacov_path == NULL || (f = fopen(luacov_path, "w")) == NULL) return;
  for (i = 0; i < n_sources; i++)
    for (l = 1; l < MAX_LINES; l++)
      if (sources[i].lines[l / 8] & (1u << (l % 8))) fprintf(f, "%s\t%d\n", sources[i].name, l);
  fclose(f);
}

/* ---- the state -------------------------------------------------------------- */

static lua_State *S;
static int check_ref = LUA_NOREF;

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  const char *root = getenv("FUZZ_ROOT");
  char path[4096];
  (void)argc;
  (void)argv;
  if (root == NULL || *root == '\0') root = FUZZ_ROOT;
  /* the engine's modules from lua/, not the copies compiled in */
  snprintf(path, sizeof path, "%s/lua", root);
  setenv("ORCHLUA_LUA_DIR", path, 1);
  if (host_new(&S) == NULL) {
    fprintf(stderr, "fuzz: cannot create the host\n");
    exit(2);
  }
  luacov_path = getenv("FUZZ_LUACOV");
  if (luacov_path != NULL && *luacov_path == '\0') luacov_path = NULL;
  if (luacov_path != NULL) {
    atexit(luacov_dump);
    /* the modules' own top level counts too: it runs while they load */
    lua_sethook(S, cov_hook, LUA_MASKLINE, 0);
  }
  /* [msgh] package.path += spec/fuzz; the target's check function */
  lua_pushcfunction(S, msghandler);
  lua_getglobal(S, "package");
  lua_pushfstring(S, "%s/spec/fuzz/?.lua;", root);
  lua_getfield(S, -2, "path");
  lua_concat(S, 2);
  lua_setfield(S, -2, "path");
  lua_pop(S, 1);
  snprintf(path, sizeof path, "%s/spec/fuzz/%s.lua", root, FUZZ_TARGET);
  if (luaL_loadfile(S, path) != LUA_OK || lua_pcall(S, 0, 1, 1) != LUA_OK ||
      !lua_isfunction(S, -1)) {
    fprintf(stderr, "fuzz: %s: %s\n", path,
            lua_isstring(S, -1) ? lua_tostring(S, -1) : "does not return a function");
    exit(2);
  }
  check_ref = luaL_ref(S, LUA_REGISTRYINDEX);
  lua_pop(S, 1);
  lua_sethook(S, NULL, 0, 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int top = lua_gettop(S), st;
  lua_pushcfunction(S, msghandler);
  lua_rawgeti(S, LUA_REGISTRYINDEX, check_ref);
  lua_pushlstring(S, (const char *)data, size);
  prev_loc = 0;
  lua_sethook(S, cov_hook, LUA_MASKLINE, 0);
  st = lua_pcall(S, 1, 0, top + 1);
  lua_sethook(S, NULL, 0, 0);
  if (st != LUA_OK) {
    fprintf(stderr, "\n==fuzz== finding in %s: %s\n", FUZZ_TARGET,
            lua_isstring(S, -1) ? lua_tostring(S, -1) : "(no message)");
    fflush(stderr);
    abort();
  }
  lua_settop(S, top);
  return 0;
}
