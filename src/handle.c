/*
 * handle.c - uv handles live in malloc'd memory apart from any userdata:
 * libuv owns them from init to the close callback, which frees them.  The
 * handle's data field points at the core while it is closing, so the
 * callback can count it out.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core.h"

/* Allocates a zeroed handle of `size` bytes; aborts on OOM since a run that
 * cannot allocate a timer cannot keep its schedule either. */
void *handle_new(orch_core *c, size_t size) {
  uv_handle_t *h = calloc(1, size);
  if (h == NULL) abort();
  c->live.handles++;
  return h;
}

static void on_closed(uv_handle_t *h) {
  orch_core *c = h->loop->data;
  c->live.handles--;
  free(h);
}

void handle_close(uv_handle_t *h) {
  if (h == NULL || uv_is_closing(h)) return;
  uv_close(h, on_closed);
}

/* UV_CHECK's failure: which call, where, and libuv's reason. */
void handle_uv_failed(int rc, const char *call, const char *file, int line) {
  fprintf(stderr, "orchlua: internal error: %s failed at %s:%d: %s\n", call, file, line,
          uv_strerror(rc));
  abort();
}
