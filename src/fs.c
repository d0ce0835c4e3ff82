/*
 * fs.c - orch.fs: what the engine asks the file system and the terminal,
 * without a child process (a fork per question was half of a small run's
 * startup, bench w4): the working directory, a glob, the files under a
 * folder, the terminal on stdout, what a path names and who owns it.  One
 * implementation: orchlua preloads it, and plain lua5.4 (the unit specs,
 * the rock) loads the same file as build/lua/orch/fs.so.
 */
#include <errno.h>
#include <fts.h>
#include <glob.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lauxlib.h"

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* fs.cwd() -> the working directory with symlinks resolved (pwd -P) | nil */
static int l_cwd(lua_State *L) {
  char buf[PATH_MAX];
  if (getcwd(buf, sizeof buf) == NULL) return 0;
  lua_pushstring(L, buf);
  return 1;
}

/* fs.glob(pattern) -> sorted paths that exist (strcmp order), as the
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

/* fs.find_files(dir, suffix) -> the regular files under dir (symlinks
 * followed, loops skipped) whose name ends in suffix, as
 * `find -L DIR -type f -name '*SUFFIX'` prints them, and the folders that
 * could not be read ("path: reason"), as find's errors. */
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
  lua_newtable(L);                                      /* [files unreadable] */
  while ((e = fts_read(fts)) != NULL) {
    if (e->fts_info == FTS_F && S_ISREG(e->fts_statp->st_mode) && e->fts_namelen >= sl &&
        memcmp(e->fts_name + e->fts_namelen - sl, suffix, sl) == 0) {
      lua_pushlstring(L, e->fts_path, e->fts_pathlen);
      lua_rawseti(L, -3, ++n);
    } else if (e->fts_info == FTS_DNR || e->fts_info == FTS_ERR) {
      /* a folder that cannot be read: said, not skipped silently */
      lua_pushfstring(L, "%s: %s", e->fts_path, strerror(e->fts_errno));
      lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
  }
  fts_close(fts);
  return 2;
}

/* fs.terminal() -> stdout is a terminal, its rows, its columns (0, 0
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

/* fs.file_id(path) -> a string naming the file path resolves to (its
 * device and inode; for a file not there yet, its folder's real path and
 * its name), or nil when its folder does not exist: two paths name one
 * file when their ids are equal, links and all. */
static int l_file_id(lua_State *L) {
  char path[PATH_MAX], real[PATH_MAX], target[PATH_MAX];
  struct stat st;
  const char *slash;
  int hops;
  size_t n;
  const char *arg = luaL_checklstring(L, 1, &n);
  if (n >= sizeof path) return 0;
  memcpy(path, arg, n + 1);
  for (hops = 0; hops < 16; hops++) {
    ssize_t ln;
    if (stat(path, &st) == 0) {
      lua_pushfstring(L, "%I:%I", (lua_Integer)st.st_dev, (lua_Integer)st.st_ino);
      return 1;
    }
    /* a link to a file not there yet (the report a run is about to make) */
    if (lstat(path, &st) != 0 || !S_ISLNK(st.st_mode)) break;
    ln = readlink(path, target, sizeof target - 1);
    if (ln < 0) break;
    target[ln] = 0;
    if (target[0] == 0x2f) {
      memcpy(path, target, (size_t)ln + 1);
    } else {
      slash = strrchr(path, '/');
      n = slash ? (size_t)(slash - path) + 1 : 0;
      if (n + (size_t)ln >= sizeof path) break;
      memcpy(path + n, target, (size_t)ln + 1);
    }
  }
  slash = strrchr(path, '/');
  if (slash == NULL) {
    if (realpath(".", real) == NULL) return 0;
    lua_pushfstring(L, "%s/%s", real, path);
  } else {
    lua_pushlstring(L, path, (size_t)(slash - path) + 1);   /* "dir/" */
    if (realpath(lua_tostring(L, -1), real) == NULL) return 0;
    lua_pushfstring(L, "%s/%s", real, slash + 1);
  }
  return 1;
}

/* fs.file_owner(path) -> owner uid, mode bits, our effective uid | nil */
static int l_file_owner(lua_State *L) {
  struct stat st;
  if (stat(luaL_checkstring(L, 1), &st) != 0) return 0;
  lua_pushinteger(L, (lua_Integer)st.st_uid);
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_pushinteger(L, (lua_Integer)geteuid());
  return 3;
}

/* fs.file_kind(path) -> "file", "link", "dir" or "other" (a device, a
 * fifo ...) as lstat sees it | nil when there is nothing there */
static int l_file_kind(lua_State *L) {
  struct stat st;
  if (lstat(luaL_checkstring(L, 1), &st) != 0) return 0;
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISLNK(st.st_mode) ? "link"
                    : S_ISDIR(st.st_mode) ? "dir" : "other");
  return 1;
}

int luaopen_orch_fs(lua_State *L);
int luaopen_orch_fs(lua_State *L) {
  static const luaL_Reg fns[] = {{"cwd", l_cwd}, {"glob", l_glob}, {"find_files", l_find_files},
                                 {"terminal", l_terminal}, {"file_id", l_file_id},
                                 {"file_owner", l_file_owner}, {"file_kind", l_file_kind},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
