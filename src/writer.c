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

#include "lauxlib.h"

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
  w->bytes += n;
  w->dirty = 1;
  return w->err ? -1 : 0;
}

/* FILE.jsonl's segment n: FILE.n.jsonl (a path not ending in .jsonl:
 * PATH.n).  Malloc'd. */
char *writer_segment_path(const char *path, int n) {
  size_t len = strlen(path);
  char *p = malloc(len + 24);
  if (p == NULL) return NULL;
  if (n == 0) memcpy(p, path, len + 1);
  else if (len > 6 && strcmp(path + len - 6, ".jsonl") == 0)
    snprintf(p, len + 24, "%.*s.%d.jsonl", (int)(len - 6), path, n);
  else snprintf(p, len + 24, "%s.%d", path, n);
  return p;
}

/* The next segment: the current one is complete on disk before the next
 * exists, so that a reader seeing FILE.n+1 knows FILE.n will not grow. */
static int rotate(writer *w) {
  char *next = writer_segment_path(w->path, w->segment + 1);
  FILE *fp;
  if (next == NULL) return w->err = ENOMEM;
  if (fflush(w->fp) != 0 || fclose(w->fp) != 0) {
    w->fp = NULL;
    free(next);
    return w->err = errno ? errno : EIO;
  }
  fp = fopen(next, "w");
  free(next);
  w->fp = fp;
  if (fp == NULL) return w->err = errno ? errno : EIO;
  if (w->buf != NULL) setvbuf(fp, w->buf, _IOFBF, 1 << 16);
  w->segment++;
  w->bytes = 0;
  return 0;
}

void writer_set_seq(writer *w, int64_t seq) {
  char *p = w->seqtxt + sizeof w->seqtxt;
  uint64_t v = seq > 0 ? (uint64_t)seq : 0;
  w->seq = (int64_t)v;
  w->seqlen = 0;
  do {
    *--p = (char)('0' + v % 10);
    w->seqlen++;
  } while ((v /= 10) != 0);
}

/* seq + 1, in the decimal text too: most often the last digit alone */
static void seq_next(writer *w) {
  char *end = w->seqtxt + sizeof w->seqtxt, *d = end - 1;
  if (w->seqlen == 0) writer_set_seq(w, w->seq);
  w->seq++;
  while (d >= end - w->seqlen && *d == '9') *d-- = '0';
  if (d < end - w->seqlen) {
    *d = '1';
    w->seqlen++;
  } else {
    (*d)++;
  }
}

/* A line would take the current segment past max_bytes: the next one. */
static int full(writer *w, size_t total) {
  return w->max_bytes > 0 && w->bytes > 0 && w->bytes + total + 24 > w->max_bytes && w->owns_fp &&
         w->err == 0;
}

/* The start of a record line (s begins with its '{'; total: the whole
 * line's length): the line gets the next seq as its first member, and
 * goes to the next segment when it would take this one past max_bytes,
 * so that a line is never split between two files. */
int writer_line(writer *w, const char *s, size_t n, size_t total) {
  char head[WRITER_HEAD + 1];
  if (w->fp == NULL) return -1;
  if (full(w, total) && rotate(w) != 0) return -1;
  seq_next(w);
  memcpy(head, "{\"seq\":", 7);
  memcpy(head + 7, w->seqtxt + sizeof w->seqtxt - w->seqlen, (size_t)w->seqlen);
  head[7 + w->seqlen] = ',';
  writer_write(w, head, (size_t)(8 + w->seqlen));
  return writer_write(w, s + 1, n - 1);
}

int writer_line_at(writer *w, char *buf, size_t n) {
  char *p = buf + WRITER_HEAD; /* the line's '{', where the ',' goes */
  if (w->fp == NULL) return -1;
  if (full(w, n - WRITER_HEAD) && rotate(w) != 0) return -1;
  seq_next(w);
  *p = ',';
  p -= w->seqlen;
  memcpy(p, w->seqtxt + sizeof w->seqtxt - w->seqlen, (size_t)w->seqlen);
  p -= 7;
  memcpy(p, "{\"seq\":", 7);
  return writer_write(w, p, (size_t)(buf + n - p));
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
  }
  free(w->buf);
  w->buf = NULL;
  list_remove(&w->node);
  err = w->err;
  return err;
}

void writer_flush_all(orch_core *c) {
  orch_list *l;
  for (l = c->writers.next; l != &c->writers; l = l->next)
    writer_flush(list_entry(l, writer, node));
}

/* The writer behind an orch.Writer userdata (lorch_core.c makes them): a
 * slot that reads NULL once the writer is closed. */
writer *const *writer_slot(lua_State *L, int idx) {
  lwriter *lw = luaL_checkudata(L, idx, WRITER_MT);
  return &lw->w;
}
