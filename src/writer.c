/*
 * writer.c - buffered output files.  Writes go to a stdio buffer; every
 * dirty writer is flushed from a prepare handle, i.e. right before the loop
 * may block.  A record written during a loop iteration is therefore in the
 * kernel before orchlua next waits, and a bursty producer still costs one
 * write(2) per iteration instead of one per record.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

writer *writer_open(orch_core *c, const char *path, FILE *fp, char *err,
                    size_t errlen) {
  writer *w = calloc(1, sizeof *w);
  if (w == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (fp == NULL) {
    fp = fopen(path, "w");
    if (fp == NULL) {
      snprintf(err, errlen, "%s: %s", path, strerror(errno));
      free(w);
      return NULL;
    }
    w->owns_fp = 1;
    /* glibc ignores the size when it allocates the buffer itself */
    w->buf = malloc(1 << 16);
    if (w->buf != NULL) setvbuf(fp, w->buf, _IOFBF, 1 << 16);
  }
  w->fp = fp;
  w->path = strdup(path);
  list_push(&c->writers, &w->node);
  return w;
}

int writer_write(writer *w, const char *s, size_t n) {
  if (w->fp == NULL) return -1;
  /* only the loop thread writes: no need for stdio's lock on every line */
  if (fwrite_unlocked(s, 1, n, w->fp) != n && w->err == 0) w->err = errno ? errno : EIO;
  w->dirty = 1;
  return w->err ? -1 : 0;
}

void writer_flush(writer *w) {
  if (w->fp == NULL || !w->dirty) return;
  w->dirty = 0;
  if (fflush(w->fp) != 0 && w->err == 0) w->err = errno ? errno : EIO;
}

/* Returns the first error the writer met (0 if none). */
int writer_close(writer *w) {
  int err;
  if (w->fp != NULL) {
    writer_flush(w);
    if (w->owns_fp && fclose(w->fp) != 0 && w->err == 0) w->err = errno;
    w->fp = NULL;
    free(w->buf);
    w->buf = NULL;
  }
  list_remove(&w->node);
  err = w->err;
  return err;
}

void writer_flush_all(orch_core *c) {
  orch_list *l;
  for (l = c->writers.next; l != &c->writers; l = l->next)
    writer_flush(list_entry(l, writer, node));
}
