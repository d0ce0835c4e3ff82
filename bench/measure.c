/*
 * bench/measure.c - runs one command and measures it from the outside.
 *
 *   measure [-o OUT.json] [-w FILE] [-s SAMPLE_MS] [-t TIMEOUT_S] -- argv...
 *
 * What it records, all on CLOCK_MONOTONIC from the instant before the
 * spawn:
 *   - exit time, exit status or signal, the on-CPU time of the child's main
 *     thread just before it is reaped (/proc/PID/schedstat, nanoseconds,
 *     the child's own work only), and the child's rusage from wait4
 *     (user and system CPU in microseconds, peak RSS in KB; wait4 counts the
 *     child's own waited-for children, e.g. the shells popen starts);
 *   - with -w FILE: the first write of bytes to FILE (inotify IN_MODIFY
 *     with the file no longer empty; FILE is created empty first), the
 *     child's on-CPU time and RSS at that instant; and apart, the open:
 *     fopen "w" keeps the inode and its truncation is an IN_MODIFY too,
 *     which is not a write of anything (orchlua opens its report before
 *     it builds its events, and writes run_start at t0);
 *   - every SAMPLE_MS (default 100): RSS from /proc/PID/statm and on-CPU
 *     time from /proc/PID/schedstat, as [ms, rss_kb, cpu_us] triples.
 *
 * The exit is seen at once through a pidfd, so wall times are exact to the
 * microsecond.  With -t the child is killed (SIGKILL) after TIMEOUT_S.
 * The child inherits stdin, stdout and stderr.  Output: one JSON object.
 *
 * Built by bench/run.sh; not part of orchlua.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* On-CPU nanoseconds of the process (its main thread), or -1. */
static int64_t read_schedstat(pid_t pid) {
  char path[64], buf[128];
  FILE *f;
  long long ns = -1;
  snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
  f = fopen(path, "r");
  if (f == NULL) return -1;
  if (fgets(buf, sizeof buf, f) != NULL) sscanf(buf, "%lld", &ns);
  fclose(f);
  return ns;
}

/* Resident set in KB, or -1. */
static long read_rss_kb(pid_t pid) {
  char path[64];
  FILE *f;
  long size, resident = -1;
  snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
  f = fopen(path, "r");
  if (f == NULL) return -1;
  if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct sample {
  double ms;
  long rss_kb;
  double cpu_us;
} sample;

int main(int argc, char **argv) {
  const char *out_path = NULL, *watch_path = NULL;
  int sample_ms = 100;
  double timeout_s = 0;
  int i, ifd = -1, wd = -1, pidfd, status = 0, timed_out = 0;
  pid_t pid;
  uint64_t t_start, t_open = 0, t_first_write = 0, t_exit, next_sample;
  int64_t cpu_open = -1, cpu_first_write = -1, cpu_exit = -1;
  long rss_first_write = -1;
  struct rusage ru;
  sample *samples = NULL;
  size_t nsamples = 0, cap = 0;
  FILE *out;

  for (i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (i + 1 >= argc) break;
    if (strcmp(argv[i], "-o") == 0) out_path = argv[++i];
    else if (strcmp(argv[i], "-w") == 0) watch_path = argv[++i];
    else if (strcmp(argv[i], "-s") == 0) sample_ms = atoi(argv[++i]);
    else if (strcmp(argv[i], "-t") == 0) timeout_s = atof(argv[++i]);
    else break;
  }
  if (i >= argc) {
    fprintf(stderr, "usage: measure [-o OUT] [-w FILE] [-s MS] [-t SEC] -- argv...\n");
    return 2;
  }
  if (sample_ms <= 0) sample_ms = 100;

  if (watch_path != NULL) {
    int fd = open(watch_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror(watch_path); return 2; }
    close(fd);
    ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    wd = inotify_add_watch(ifd, watch_path, IN_MODIFY);
    if (ifd < 0 || wd < 0) { perror("inotify"); return 2; }
  }

  t_start = now_ns();
  if (posix_spawnp(&pid, argv[i], NULL, NULL, &argv[i], environ) != 0) {
    perror(argv[i]);
    return 2;
  }
  pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) { perror("pidfd_open"); return 2; }
  next_sample = t_start + (uint64_t)sample_ms * 1000000u;

  for (;;) {
    struct pollfd p[2];
    int n = 1, timeout;
    uint64_t now = now_ns();
    p[0].fd = pidfd;
    p[0].events = POLLIN;
    if (ifd >= 0) {
      p[1].fd = ifd;
      p[1].events = POLLIN;
      n = 2;
    }
    timeout = now >= next_sample ? 0 : (int)((next_sample - now) / 1000000u) + 1;
    if (poll(p, n, timeout) < 0 && errno != EINTR) { perror("poll"); break; }
    now = now_ns();
    if (n == 2 && (p[1].revents & POLLIN)) {
      /* the open (still empty), then the first bytes: stop watching */
      char ev[4096];
      struct stat st;
      while (read(ifd, ev, sizeof ev) > 0) {}
      if (stat(watch_path, &st) == 0 && st.st_size > 0) {
        t_first_write = now;
        cpu_first_write = read_schedstat(pid);
        rss_first_write = read_rss_kb(pid);
        inotify_rm_watch(ifd, wd);
        close(ifd);
        ifd = -1;
      } else if (t_open == 0) {
        t_open = now;
        cpu_open = read_schedstat(pid);
      }
    }
    if (p[0].revents & POLLIN) {
      /* exited, not yet reaped: its schedstat is still readable */
      cpu_exit = read_schedstat(pid);
      break;
    }
    if (now >= next_sample) {
      if (nsamples == cap) {
        cap = cap ? cap * 2 : 1024;
        samples = realloc(samples, cap * sizeof *samples);
        if (samples == NULL) abort();
      }
      samples[nsamples].ms = (double)(now - t_start) / 1e6;
      samples[nsamples].rss_kb = read_rss_kb(pid);
      samples[nsamples].cpu_us = (double)read_schedstat(pid) / 1e3;
      nsamples++;
      next_sample += (uint64_t)sample_ms * 1000000u;
      if (next_sample < now) next_sample = now + (uint64_t)sample_ms * 1000000u;
    }
    if (timeout_s > 0 && !timed_out && now - t_start > (uint64_t)(timeout_s * 1e9)) {
      timed_out = 1;
      kill(pid, SIGKILL);
    }
  }
  if (wait4(pid, &status, 0, &ru) < 0) { perror("wait4"); return 2; }
  t_exit = now_ns();

  out = out_path ? fopen(out_path, "w") : stdout;
  if (out == NULL) { perror(out_path); return 2; }
  fprintf(out, "{\"wall_ms\":%.3f,\"user_us\":%lld,\"sys_us\":%lld,\"maxrss_kb\":%ld,",
          (double)(t_exit - t_start) / 1e6,
          (long long)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec,
          (long long)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec, ru.ru_maxrss);
  if (WIFEXITED(status))
    fprintf(out, "\"exit\":%d,", WEXITSTATUS(status));
  else
    fprintf(out, "\"signal\":%d,", WTERMSIG(status));
  if (timed_out) fprintf(out, "\"timed_out\":true,");
  fprintf(out, "\"start_mono_ms\":%.3f,\"exit_mono_ms\":%.3f,\"exit_cpu_us\":%.1f,",
          (double)t_start / 1e6, (double)t_exit / 1e6, (double)cpu_exit / 1e3);
  if (t_first_write)
    fprintf(out, "\"first_write_ms\":%.3f,\"first_write_cpu_us\":%.1f,\"first_write_rss_kb\":%ld,",
            (double)(t_first_write - t_start) / 1e6, (double)cpu_first_write / 1e3,
            rss_first_write);
  if (t_open)
    fprintf(out, "\"open_ms\":%.3f,\"open_cpu_us\":%.1f,", (double)(t_open - t_start) / 1e6,
            (double)cpu_open / 1e3);
  fprintf(out, "\"samples\":[");
  for (size_t k = 0; k < nsamples; k++)
    fprintf(out, "%s[%.1f,%ld,%.0f]", k ? "," : "", samples[k].ms, samples[k].rss_kb,
            samples[k].cpu_us);
  fprintf(out, "]}\n");
  if (out != stdout) fclose(out);
  free(samples);
  return 0;
}
