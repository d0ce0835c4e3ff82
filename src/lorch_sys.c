/*
 * lorch_sys.c - the orch.sys module: machine and process figures read
 * from /proc (Linux).
 *
 *   sys.cpu([interval_sec])   whole-machine CPU use, percent: over the
 *                             interval (yields), or since boot without one
 *   sys.cpu_times()           cumulative CPU seconds from /proc/stat
 *   sys.memory()              {total, available, free, used, percent, swap_total, swap_free}
 *   sys.loadavg()             l1, l5, l15
 *   sys.group(pgid)           the live (not zombie) pids of a process group
 *   sys.listeners([port])     TCP sockets listening (tcp and tcp6), on port
 *                             or all: { {port =, inode =, pids = {...}} },
 *                             pids: the processes holding each (from
 *                             /proc/PID/fd; only those orchlua may read)
 *   sys.process(target, [interval_sec])
 *                             target: a pid or a spawned process (anything
 *                             with a pid field).  {pid, name, state, ppid,
 *                             rss, vms, threads, fds, cpu_time, cpu_percent,
 *                             time}: cpu_percent over the interval (yields),
 *                             or over the process's lifetime without one
 *                             (as ps shows it)
 *
 * Sizes are bytes, CPU times seconds, `time` the reading's monotonic clock
 * in real seconds (the clock of core.hrtime), so two readings give a rate.
 * Intervals are description seconds (--time-scale applies, as for every
 * wait).  A process that does not exist (or exits during the interval)
 * gives nil, "no such process: PID"; misuse raises.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "lauxlib.h"

#include "core.h"

/* Reads a small /proc file into buf (NUL-terminated); the length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t size) {
  FILE *f = fopen(path, "r");
  size_t n;
  if (f == NULL) return -1;
  n = fread(buf, 1, size - 1, f);
  fclose(f);
  buf[n] = '\0';
  return (ssize_t)n;
}

static double clk_tck(void) {
  long t = sysconf(_SC_CLK_TCK);
  return t > 0 ? (double)t : 100.0;
}

static double mono_now(void) { return (double)uv_hrtime() / 1e9; }

/* ---- machine CPU --------------------------------------------------------- */

typedef struct cpu_times {
  double user, nice, system, idle, iowait, irq, softirq, steal;
  double total, busy, time;
  int ncpu;
} cpu_times;

static int read_cpu(cpu_times *ct) {
  char buf[8192];
  unsigned long long v[8] = {0};
  const char *line;
  double hz = clk_tck();
  int i;
  if (read_small("/proc/stat", buf, sizeof buf) < 0) return -1;
  if (sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
             &v[3], &v[4], &v[5], &v[6], &v[7]) < 4)
    return -1;
  ct->user = v[0] / hz;
  ct->nice = v[1] / hz;
  ct->system = v[2] / hz;
  ct->idle = v[3] / hz;
  ct->iowait = v[4] / hz;
  ct->irq = v[5] / hz;
  ct->softirq = v[6] / hz;
  ct->steal = v[7] / hz;
  ct->total = 0;
  for (i = 0; i < 8; i++) ct->total += v[i] / hz;
  ct->busy = ct->total - ct->idle - ct->iowait;
  ct->ncpu = 0;
  for (line = buf; line != NULL; line = strchr(line, '\n')) {
    if (*line == '\n') line++;
    if (strncmp(line, "cpu", 3) == 0 && line[3] >= '0' && line[3] <= '9') ct->ncpu++;
  }
  if (ct->ncpu == 0) ct->ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
  ct->time = mono_now();
  return 0;
}

static void setnum(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* sys.cpu_times() -> {user, nice, system, idle, iowait, irq, softirq,
 * steal, total, busy, ncpu, time} */
static int l_cpu_times(lua_State *L) {
  cpu_times ct;
  if (read_cpu(&ct) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "cannot read /proc/stat");
    return 2;
  }
  lua_createtable(L, 0, 12);
  setnum(L, "user", ct.user);
  setnum(L, "nice", ct.nice);
  setnum(L, "system", ct.system);
  setnum(L, "idle", ct.idle);
  setnum(L, "iowait", ct.iowait);
  setnum(L, "irq", ct.irq);
  setnum(L, "softirq", ct.softirq);
  setnum(L, "steal", ct.steal);
  setnum(L, "total", ct.total);
  setnum(L, "busy", ct.busy);
  setint(L, "ncpu", ct.ncpu);
  setnum(L, "time", ct.time);
  return 1;
}

/* Pushes the percentages between two readings (a from boot when a is
 * all zero). */
static void push_cpu_delta(lua_State *L, const cpu_times *a, const cpu_times *b) {
  double total = b->total - a->total;
  double k = total > 0 ? 100.0 / total : 0;
  lua_createtable(L, 0, 8);
  setnum(L, "percent", (b->busy - a->busy) * k);
  setnum(L, "user", ((b->user + b->nice) - (a->user + a->nice)) * k);
  setnum(L, "system", ((b->system + b->irq + b->softirq) - (a->system + a->irq + a->softirq)) * k);
  setnum(L, "iowait", (b->iowait - a->iowait) * k);
  setnum(L, "idle", (b->idle - a->idle) * k);
  setnum(L, "steal", (b->steal - a->steal) * k);
  setint(L, "ncpu", b->ncpu);
  setnum(L, "interval", a->time > 0 ? b->time - a->time : 0);
}

/* Parks the running task for sec description seconds, then continues in k
 * with the stack as it is. */
static int sys_sleep_k(lua_State *L, double sec, const char *what, lua_KFunction k) {
  task *t = sched_need_task(L, what);
  sched_timer_wait(t, sched_real_ms(t->core, sec), 0);
  if (t->state == T_RUNNING) t->state = T_WAITING;
  return lua_yieldk(L, 0, 0, k);
}

static double opt_interval(lua_State *L, int i) {
  double sec;
  if (lua_isnoneornil(L, i)) return 0;
  sec = luaL_checknumber(L, i);
  luaL_argcheck(L, sec >= 0 && sec == sec, i, "interval must be >= 0 seconds");
  return sec;
}

/* [interval first_as_userdata] */
static int cpu_k(lua_State *L, int status, lua_KContext ctx) {
  cpu_times b;
  const cpu_times *a = lua_touserdata(L, 2);
  (void)status;
  (void)ctx;
  if (read_cpu(&b) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "cannot read /proc/stat");
    return 2;
  }
  push_cpu_delta(L, a, &b);
  return 1;
}

/* sys.cpu([interval_sec]) -> {percent, user, system, iowait, idle, steal,
 * ncpu, interval} */
static int l_cpu(lua_State *L) {
  double sec = opt_interval(L, 1);
  cpu_times *a;
  lua_settop(L, 1);
  a = lua_newuserdatauv(L, sizeof *a, 0);               /* [interval a] */
  memset(a, 0, sizeof *a);
  if (sec <= 0) return cpu_k(L, LUA_OK, 0);             /* since boot */
  if (read_cpu(a) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "cannot read /proc/stat");
    return 2;
  }
  return sys_sleep_k(L, sec, "orch.sys.cpu", cpu_k);
}

/* ---- memory and load ------------------------------------------------------ */

static int meminfo(const char *buf, const char *key, double *out) {
  const char *p = strstr(buf, key);
  unsigned long long kb;
  if (p == NULL || sscanf(p + strlen(key), " %llu", &kb) != 1) return -1;
  *out = (double)kb * 1024.0;
  return 0;
}

/* sys.memory() -> {total, available, free, used, percent, swap_total,
 * swap_free}, bytes; used = total - available. */
static int l_memory(lua_State *L) {
  char buf[8192];
  double total = 0, avail = 0, freem = 0, st = 0, sf = 0;
  if (read_small("/proc/meminfo", buf, sizeof buf) < 0 || meminfo(buf, "MemTotal:", &total) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "cannot read /proc/meminfo");
    return 2;
  }
  meminfo(buf, "MemFree:", &freem);
  if (meminfo(buf, "MemAvailable:", &avail) != 0) avail = freem;
  meminfo(buf, "SwapTotal:", &st);
  meminfo(buf, "SwapFree:", &sf);
  lua_createtable(L, 0, 7);
  setint(L, "total", (lua_Integer)total);
  setint(L, "available", (lua_Integer)avail);
  setint(L, "free", (lua_Integer)freem);
  setint(L, "used", (lua_Integer)(total - avail));
  setnum(L, "percent", total > 0 ? (total - avail) * 100.0 / total : 0);
  setint(L, "swap_total", (lua_Integer)st);
  setint(L, "swap_free", (lua_Integer)sf);
  return 1;
}

/* sys.loadavg() -> l1, l5, l15 */
static int l_loadavg(lua_State *L) {
  char buf[256];
  double l1, l5, l15;
  if (read_small("/proc/loadavg", buf, sizeof buf) < 0 ||
      sscanf(buf, "%lf %lf %lf", &l1, &l5, &l15) != 3) {
    lua_pushnil(L);
    lua_pushliteral(L, "cannot read /proc/loadavg");
    return 2;
  }
  lua_pushnumber(L, l1);
  lua_pushnumber(L, l5);
  lua_pushnumber(L, l15);
  return 3;
}

/* ---- one process ------------------------------------------------------------ */

typedef struct proc_stat {
  char name[64];
  char state;
  int ppid;
  long threads;
  double cpu_time;   /* utime + stime, seconds */
  double age;        /* seconds since it started */
  unsigned long long vms, rss;
  double time;
} proc_stat;

static int read_proc(int pid, proc_stat *ps) {
  char path[64], buf[2048], status[4096];
  const char *open_p, *close_p;
  unsigned long utime, stime, vsize;
  unsigned long long start;
  long rss, threads;
  int ppid;
  char state;
  double uptime = 0;
  size_t nl;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (read_small(path, buf, sizeof buf) < 0) return -1;
  ps->time = mono_now();
  open_p = strchr(buf, '(');
  close_p = strrchr(buf, ')');
  if (open_p == NULL || close_p == NULL || close_p < open_p) return -1;
  nl = (size_t)(close_p - open_p - 1);
  if (nl >= sizeof ps->name) nl = sizeof ps->name - 1;
  memcpy(ps->name, open_p + 1, nl);
  ps->name[nl] = '\0';
  /* fields 3.. after the name: state ppid pgrp session tty_nr tpgid flags
   * minflt cminflt majflt cmajflt utime stime cutime cstime priority nice
   * num_threads itrealvalue starttime vsize rss */
  if (sscanf(close_p + 2,
             "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %ld %*d %llu %lu %ld",
             &state, &ppid, &utime, &stime, &threads, &start, &vsize, &rss) != 8)
    return -1;
  ps->state = state;
  ps->ppid = ppid;
  ps->threads = threads;
  ps->cpu_time = (double)(utime + stime) / clk_tck();
  ps->vms = vsize;
  ps->rss = (unsigned long long)(rss > 0 ? rss : 0) * (unsigned long long)sysconf(_SC_PAGESIZE);
  /* stat's rss is the kernel's per-CPU approximation; status has the
   * exact VmRSS (what `grep VmRSS /proc/PID/status` shows) */
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  if (read_small(path, status, sizeof status) >= 0) {
    const char *v = strstr(status, "\nVmRSS:");
    unsigned long long kb;
    if (v != NULL && sscanf(v + 7, " %llu", &kb) == 1) ps->rss = kb * 1024u;
    v = strstr(status, "\nThreads:");
    if (v != NULL && sscanf(v + 9, " %ld", &threads) == 1) ps->threads = threads;
  }
  if (read_small("/proc/uptime", buf, sizeof buf) >= 0) sscanf(buf, "%lf", &uptime);
  ps->age = uptime - (double)start / clk_tck();
  return 0;
}

/* Open file descriptors, or -1 when /proc/PID/fd cannot be read. */
static int count_fds(int pid) {
  char path[64];
  DIR *d;
  struct dirent *e;
  int n = 0;
  snprintf(path, sizeof path, "/proc/%d/fd", pid);
  d = opendir(path);
  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static int target_pid(lua_State *L, int i) {
  lua_Integer pid;
  int t = lua_type(L, i);
  if (t == LUA_TNUMBER) {
    pid = luaL_checkinteger(L, i);
  } else if (t == LUA_TTABLE || t == LUA_TUSERDATA) {
    lua_getfield(L, i, "pid");
    if (!lua_isinteger(L, -1))
      return luaL_argerror(L, i, "a process with a pid expected (was it started?)");
    pid = lua_tointeger(L, -1);
    lua_pop(L, 1);
  } else {
    return luaL_argerror(L, i, lua_pushfstring(L, "pid or process expected, got %s",
                                               luaL_typename(L, i)));
  }
  luaL_argcheck(L, pid > 0 && pid <= 0x7fffffff, i, "pid must be > 0");
  return (int)pid;
}

static int no_process(lua_State *L, int pid) {
  lua_pushnil(L);
  lua_pushfstring(L, "no such process: %d", pid);
  return 2;
}

/* Pushes the reading b; cpu_percent between a and b, or over b's lifetime
 * when a is NULL. */
static void push_proc(lua_State *L, int pid, const proc_stat *a, const proc_stat *b) {
  char st[2] = {b->state, '\0'};
  int fds = count_fds(pid);
  double pct;
  if (a != NULL)
    pct = b->time > a->time ? (b->cpu_time - a->cpu_time) * 100.0 / (b->time - a->time) : 0;
  else
    pct = b->age > 0 ? b->cpu_time * 100.0 / b->age : 0;
  if (pct < 0) pct = 0;
  lua_createtable(L, 0, 12);
  setint(L, "pid", pid);
  lua_pushstring(L, b->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, st);
  lua_setfield(L, -2, "state");
  setint(L, "ppid", b->ppid);
  setint(L, "rss", (lua_Integer)b->rss);
  setint(L, "vms", (lua_Integer)b->vms);
  setint(L, "threads", b->threads);
  if (fds >= 0) setint(L, "fds", fds);
  setnum(L, "cpu_time", b->cpu_time);
  setnum(L, "cpu_percent", pct);
  setnum(L, "interval", a != NULL ? b->time - a->time : b->age);
  setnum(L, "time", b->time);
}

/* [target interval pid first] */
static int process_k(lua_State *L, int status, lua_KContext ctx) {
  int pid = (int)lua_tointeger(L, 3);
  const proc_stat *a = lua_touserdata(L, 4);
  proc_stat b;
  (void)status;
  (void)ctx;
  if (read_proc(pid, &b) != 0) return no_process(L, pid);
  push_proc(L, pid, a, &b);
  return 1;
}

/* sys.process(target, [interval_sec]) -> table | nil, message */
static int l_process(lua_State *L) {
  int pid = target_pid(L, 1);
  double sec = opt_interval(L, 2);
  proc_stat *a;
  lua_settop(L, 2);
  lua_pushinteger(L, pid);                              /* [target interval pid] */
  a = lua_newuserdatauv(L, sizeof *a, 0);               /* [target interval pid a] */
  if (read_proc(pid, a) != 0) return no_process(L, pid);
  if (sec <= 0) {
    push_proc(L, pid, NULL, a);
    return 1;
  }
  return sys_sleep_k(L, sec, "orch.sys.process", process_k);
}

/* sys.pid() -> orchlua's own pid */
static int l_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* The pgrp and state of pid from /proc/PID/stat; -1 when gone. */
static int stat_pgrp(int pid, char *state) {
  char path[64], buf[512];
  const char *rp;
  int ppid, pgrp;
  ssize_t n;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if ((n = read_small(path, buf, sizeof buf)) <= 0) return -1;
  if ((rp = strrchr(buf, ')')) == NULL || sscanf(rp + 1, " %c %d %d", state, &ppid, &pgrp) != 3)
    return -1;
  return pgrp;
}

/* sys.group(pgid) -> { pid, ... }: the members still alive */
static int l_group(lua_State *L) {
  int pgid = (int)luaL_checkinteger(L, 1);
  DIR *d = opendir("/proc");
  struct dirent *e;
  lua_Integer n = 0;
  lua_newtable(L);
  if (d == NULL) return 1;
  while ((e = readdir(d)) != NULL) {
    int pid = atoi(e->d_name);
    char state;
    if (pid <= 0 || stat_pgrp(pid, &state) != pgid || state == 'Z' || state == 'X') continue;
    lua_pushinteger(L, pid);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  return 1;
}

/* Listening sockets of /proc/net/FILE on port (0: any) into the table at
 * -1: { {port, inode, pids = {}} }, keyed also by inode at the index
 * `by_inode`. */
static void read_listeners(lua_State *L, const char *file, int port, int by_inode) {
  char line[512];
  FILE *f = fopen(file, "r");
  if (f == NULL) return;
  if (fgets(line, sizeof line, f) == NULL) { fclose(f); return; } /* the header */
  while (fgets(line, sizeof line, f) != NULL) {
    char local[128];
    unsigned st, lport;
    unsigned long inode;
    const char *colon;
    /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
    if (sscanf(line, " %*s %127s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &inode) != 3) continue;
    if (st != 0x0A || (colon = strrchr(local, ':')) == NULL) continue; /* 0A: LISTEN */
    lport = (unsigned)strtoul(colon + 1, NULL, 16);
    if (port != 0 && (int)lport != port) continue;
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)lport);
    lua_setfield(L, -2, "port");
    lua_pushinteger(L, (lua_Integer)inode);
    lua_setfield(L, -2, "inode");
    lua_newtable(L);
    lua_setfield(L, -2, "pids");
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, (lua_Integer)luaL_len(L, -3) + 1);
    lua_rawseti(L, by_inode, (lua_Integer)inode);
  }
  fclose(f);
}

/* sys.listeners([port]) -> { {port =, inode =, pids = {...}} } */
static int l_listeners(lua_State *L) {
  int port = (int)luaL_optinteger(L, 1, 0);
  DIR *d;
  struct dirent *e;
  int by_inode;
  lua_settop(L, 1);
  lua_newtable(L);
  by_inode = lua_gettop(L);
  lua_newtable(L);                                      /* [port by_inode list] */
  read_listeners(L, "/proc/net/tcp", port, by_inode);
  read_listeners(L, "/proc/net/tcp6", port, by_inode);
  if (luaL_len(L, -1) == 0 || (d = opendir("/proc")) == NULL) return 1;
  while ((e = readdir(d)) != NULL) {
    char path[64];
    int pid = atoi(e->d_name);
    DIR *fd;
    struct dirent *fe;
    if (pid <= 0) continue;
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    if ((fd = opendir(path)) == NULL) continue;
    while ((fe = readdir(fd)) != NULL) {
      char lp[300], target[64];
      ssize_t n;
      unsigned long inode;
      if (fe->d_name[0] == '.') continue;
      snprintf(lp, sizeof lp, "/proc/%d/fd/%s", pid, fe->d_name);
      n = readlink(lp, target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      if (sscanf(target, "socket:[%lu]", &inode) != 1) continue;
      if (lua_rawgeti(L, by_inode, (lua_Integer)inode) == LUA_TTABLE) {
        lua_getfield(L, -1, "pids");                    /* [.. entry pids] */
        lua_pushinteger(L, pid);
        lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    closedir(fd);
  }
  closedir(d);
  return 1;
}

int luaopen_orch_sys(lua_State *L);
int luaopen_orch_sys(lua_State *L) {
  static const luaL_Reg fns[] = {{"cpu", l_cpu},         {"cpu_times", l_cpu_times},
                                 {"memory", l_memory},   {"loadavg", l_loadavg},
                                 {"process", l_process}, {"pid", l_pid},
                                 {"group", l_group},     {"listeners", l_listeners},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
