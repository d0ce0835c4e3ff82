/*
 * pgroup.h - what proc.c calls of the process-group keeper (pgroup.c): a
 * listed process and its set, listing, signalling, unlisting.  The
 * scheduler's entry points (pgroup_task_cancelled, pgroup_shutdown,
 * pgroup_last_resort, pgroup_forensics) are declared in core.h.
 */
#ifndef ORCH_PGROUP_H
#define ORCH_PGROUP_H

#include <stdint.h>
#include <uv.h>

#include "core.h"

#define READ_CHUNK 65536
#define TAIL_MAX 512 /* what a timed-out invocation's record shows of each stream */

typedef struct proc_set proc_set;

typedef struct linebuf {
  char *buf;
  size_t len, cap;
} linebuf;

/* One spawned process: the group fields are the keeper's, the rest proc.c's. */
typedef struct proc {
  proc_set *set;
  uv_process_t *h;   /* open until the exit callback */
  uv_pipe_t *io[3];  /* stdin, stdout, stderr: NULL when not piped or closed */
  linebuf lines[3];  /* partial lines of stdout [1] and stderr [2] */
  int has_cb[3];     /* a line callback is set for [1], [2] */
  int pid;
  int exited, code, sig;
  int group;         /* the group may still have members */
  int owner_run;     /* owner = "run": not killed with its task */
  int capture;
  size_t captured[3]; /* bytes kept per stream, at most CAPTURE_MAX */
  char tail[3][TAIL_MAX]; /* the last bytes of stdout [1] and stderr [2], a ring */
  size_t tail_n[3];   /* bytes ever written to the ring */
  uint64_t task_id;  /* the task that spawned it, 0 if none */
  uint64_t kill_at;  /* hrtime of a pending SIGKILL, 0 if none */
  size_t max_line;
  int self_ref;      /* held while listed */
  int listed;
  orch_list waiters; /* tasks in process:wait() */
  orch_list node;    /* set->procs */
} proc;

/* Every listed process of one Lua state. */
struct proc_set {
  orch_core *core;
  orch_list procs;
  int n;                  /* listed processes */
  uv_prepare_t *keeper;   /* open while n > 0: finds the end of the run */
  uv_timer_t *timer;      /* SIGKILL escalation, forced closes, pruning */
  uv_signal_t *chld;      /* SIGCHLD: reaps orphaned group members */
  int ending;             /* everything was killed: the loop had nothing else */
  uint64_t force_at;      /* while ending: when to stop waiting for pipes */
  unsigned pending_reqs;  /* stdin writes and shutdowns in flight */
  char rbuf[READ_CHUNK];
};

proc_set *pgroup_set_new(lua_State *L);    /* pushes the state's set */
proc_set *pgroup_set_of(orch_core *c);     /* NULL before proc_open */
int pgroup_spawn(uv_loop_t *loop, uv_process_t *h, const uv_process_options_t *o);
void pgroup_list(proc *p);                 /* after a successful spawn */
void pgroup_schedule(proc_set *s);         /* after a kill_at changed */
int proc_signal(proc *p, int sig, int escalate); /* killpg; 0 or an errno */
int proc_group_alive(proc *p);             /* reaps ours, then asks killpg */
void proc_pipe_close(proc *p, int i);
void proc_check_done(proc *p);             /* unlists p once it is over */

#endif
