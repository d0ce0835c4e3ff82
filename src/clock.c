/*
 * clock.c - description time and the ISO times records carry: utilities
 * under every mechanism (the invoker's and the queue's records, the Lua
 * face's core.ts and core.stamp).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "core.h"

void clock_init(orch_core *c) { c->clock.scale = 1.0; }

double clock_wall(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* Formats unix time t as "2026-11-25T12:00:00.123Z".  Results come in
 * bursts within one second: the date part is formatted once per second. */
void clock_iso8601(orch_core *c, double t, char out[32]) {
  time_t sec = (time_t)floor(t);
  int ms = (int)((t - floor(t)) * 1000.0);
  if (ms > 999) ms = 999;
  if (ms < 0) ms = 0;
  if (c->clock.iso_sec != sec || c->clock.iso_head[0] == '\0') {
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(c->clock.iso_head, sizeof c->clock.iso_head, "%04d-%02d-%02dT%02d:%02d:%02d.",
             (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100, tm.tm_mday % 100,
             tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100);
    c->clock.iso_sec = sec;
  }
  memcpy(out, c->clock.iso_head, 20);
  out[20] = (char)('0' + ms / 100);
  out[21] = (char)('0' + ms / 10 % 10);
  out[22] = (char)('0' + ms % 10);
  out[23] = 'Z';
  out[24] = '\0';
}

void clock_stamp_at(orch_core *c, double t, char ts[32]) {
  clock_iso8601(c, c->clock.t0_wall + t / c->clock.scale, ts);
}

double clock_stamp(orch_core *c, char ts[32]) {
  double t = (double)(uv_hrtime() - c->clock.t0_ns) / 1e9 * c->clock.scale;
  clock_iso8601(c, c->clock.t0_wall + t / c->clock.scale, ts);
  return t;
}
