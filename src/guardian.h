/*
 * guardian.h - the process that outlives orchlua for one purpose: when
 * orchlua dies without finishing (SIGKILL, the OOM killer), it ends every
 * process group orchlua started and runs the undo actions registered with
 * orch.on_abandon.  Only orchlua's main thread calls these.
 */
#ifndef ORCH_GUARDIAN_H
#define ORCH_GUARDIAN_H

#include <stddef.h>
#include <sys/types.h>

void std_fds_hold(void);       /* 0, 1, 2 open (on /dev/null if closed) */
void guardian_start(void);     /* forks it; before any thread exists */
void guardian_track(pid_t pg); /* a process group orchlua started */
void guardian_untrack(pid_t pg);
/* argv as NUL-terminated strings end to end; 0, or -1 when it is too long */
int guardian_undo(const char *argv0, size_t len);
void guardian_done(void);      /* a normal end: nothing to undo */
pid_t guardian_pid(void);      /* 0 when there is none */
struct lua_State;
void guardian_open(struct lua_State *L); /* sets core.on_abandon on the table on top */

#endif
