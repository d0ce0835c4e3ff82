/*
 * fs.c - what the engine asks the system at startup, without a child
 * process: the working directory, a glob, the files under a folder, the
 * terminal on stdout.  The Lua modules (config, description, sources,
 * output.progress) fall back to `pwd`, `find`, the shell and `stty` when
 * orch.core is not there (plain lua5.4 in the unit specs); with it, a start
 * costs no fork (forks were half of the seed example's startup, bench w4).
 */
#include <fts.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lauxlib.h"

#include "core.h"

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* core.cwd() -> the working directory with symlinks resolved (pwd -P) | nil */
static int l_cwd(lua_State *L) {
  char buf[PATH_MAX];
  if (getcwd(buf, sizeof buf) == NULL) return 0;
  lua_pushstring(L, buf);
  return 1;
}

/* core.glob(pattern) -> sorted paths that exist (strcmp order), as the
 * shell's `for f in PATTERN` would list them; none: an empty table. */
static int l_glob(lua_State *L) {
  const char *pattern = luaL_checkstring(L, 1);
  glob_t g;
  size_t i;
  int r;
  memset(&g, 0, sizeof g);
  r = glob(pattern, GLOB_NOSORT, NULL, &g);
  lua_createtable(L, r == 0 ? (int)g.gl_pathc : 0, 0);
  if (r == 0) {
    qsort(g.gl_pathv, g.gl_pathc, sizeof *g.gl_pathv, cmp_str);
    lua_Integer n = 0;
    for (i = 0; i < g.gl_pathc; i++) {
      struct stat st;
      if (stat(g.gl_pathv[i], &st) != 0) continue; /* a dangling symlink: `[ -e ]` */
      lua_pushstring(L, g.gl_pathv[i]);
      lua_rawseti(L, -2, ++n);
    }
  }
  globfree(&g);
  return 1;
}

/* core.find_files(dir, suffix) -> the regular files under dir (symlinks
 * followed, loops skipped) whose name ends in suffix, as
 * `find -L DIR -type f -name '*SUFFIX'` prints them; unreadable parts are
 * skipped as find's errors were. */
static int l_find_files(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  size_t sl;
  const char *suffix = luaL_checklstring(L, 2, &sl);
  char *argv[2];
  FTS *fts;
  FTSENT *e;
  lua_Integer n = 0;
  argv[0] = (char *)(uintptr_t)dir; /* fts_open takes char *, writes none */
  argv[1] = NULL;
  lua_newtable(L);
  fts = fts_open(argv, FTS_LOGICAL | FTS_NOCHDIR, NULL);
  if (fts == NULL) return 1;
  while ((e = fts_read(fts)) != NULL) {
    if (e->fts_info == FTS_F && S_ISREG(e->fts_statp->st_mode) && e->fts_namelen >= sl &&
        memcmp(e->fts_name + e->fts_namelen - sl, suffix, sl) == 0) {
      lua_pushlstring(L, e->fts_path, e->fts_pathlen);
      lua_rawseti(L, -2, ++n);
    }
  }
  fts_close(fts);
  return 1;
}

/* core.terminal() -> stdout is a terminal, its rows, its columns (0, 0
 * when the size is unknown) */
static int l_terminal(lua_State *L) {
  struct winsize ws;
  int tty = isatty(1);
  memset(&ws, 0, sizeof ws);
  if (tty) ioctl(1, TIOCGWINSZ, &ws);
  lua_pushboolean(L, tty);
  lua_pushinteger(L, ws.ws_row);
  lua_pushinteger(L, ws.ws_col);
  return 3;
}

void fs_open(lua_State *L) {
  lua_pushcfunction(L, l_terminal);
  lua_setfield(L, -2, "terminal");
  lua_pushcfunction(L, l_cwd);
  lua_setfield(L, -2, "cwd");
  lua_pushcfunction(L, l_glob);
  lua_setfield(L, -2, "glob");
  lua_pushcfunction(L, l_find_files);
  lua_setfield(L, -2, "find_files");
}
