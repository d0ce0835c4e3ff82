/*
 * sink.c - the orch.sink module: a run's JSONL report (the source of
 * truth) shipped into PostgreSQL, from a thread of its own that tails the
 * file, so that a slow or absent database never slows the run's loop.
 *
 * Exactly once: a batch of lines goes in one transaction (COPY, binary,
 * into orchlua_records; when another process stored part of it, into a
 * session's temporary table, then INSERT ... ON CONFLICT DO NOTHING on
 * (run_id, seq)); a batch whose commit is in doubt is sent again as it
 * was, and on every (re)connection the database's max(seq) for the run is
 * where reading resumes.  Batches are committed in seq order, so every seq
 * up to that max is stored.
 *
 * libpq is loaded with dlopen when a sink is first used: ./orchlua stays
 * one file that runs where no PostgreSQL client is installed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "core.h"
#include "lauxlib.h"

#define SINK_MT "orch.sink"

/* ---- libpq, loaded at run time ------------------------------------------ */

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
enum { CONNECTION_OK = 0 };
enum { PGRES_COMMAND_OK = 1, PGRES_TUPLES_OK = 2, PGRES_COPY_IN = 4 };

static struct {
  int loaded;
  PGconn *(*connectdbParams)(const char *const *, const char *const *, int);
  int (*status)(const PGconn *);
  char *(*errorMessage)(const PGconn *);
  void (*finish)(PGconn *);
  PGresult *(*exec)(PGconn *, const char *);
  PGresult *(*execParams)(PGconn *, const char *, int, const void *, const char *const *,
                          const int *, const int *, int);
  int (*resultStatus)(const PGresult *);
  char *(*resultErrorMessage)(const PGresult *);
  char *(*resultErrorField)(const PGresult *, int);
  void (*clear)(PGresult *);
  int (*ntuples)(const PGresult *);
  char *(*getvalue)(const PGresult *, int, int);
  char *(*cmdTuples)(PGresult *);
  int (*putCopyData)(PGconn *, const char *, int);
  int (*putCopyEnd)(PGconn *, const char *);
  PGresult *(*getResult)(PGconn *);
  void *(*conninfoParse)(const char *, char **);
  void (*conninfoFree)(void *);
  void (*freemem)(void *);
  void *(*setNoticeProcessor)(PGconn *, void (*)(void *, const char *), void *);
} pq;

static pthread_mutex_t pq_lock = PTHREAD_MUTEX_INITIALIZER;

static int pq_load(char *err, size_t errlen) {
  /* ORCHLUA_LIBPQ: a libpq elsewhere (or none, to see the message) */
  const char *own = getenv("ORCHLUA_LIBPQ");
  const char *names[] = {"libpq.so.5", "libpq.so"};
  void *h = NULL;
  size_t i;
  if (own != NULL && *own != '\0') names[0] = names[1] = own;
  pthread_mutex_lock(&pq_lock);
  if (pq.loaded) {
    pthread_mutex_unlock(&pq_lock);
    return 0;
  }
  for (i = 0; i < sizeof names / sizeof names[0] && h == NULL; i++) h = dlopen(names[i], RTLD_NOW);
  if (h == NULL) {
    pthread_mutex_unlock(&pq_lock);
    snprintf(err, errlen,
             "a postgresql sink needs libpq (%s), not found on this machine: install "
             "the package libpq5 (Debian/Ubuntu; postgresql-libs or libpq elsewhere) (%s)",
             names[0], dlerror());
    return -1;
  }
#define SYM(field, name)                                                               \
  do {                                                                                 \
    *(void **)&pq.field = dlsym(h, name);                                              \
    if (pq.field == NULL) {                                                            \
      pthread_mutex_unlock(&pq_lock);                                                  \
      snprintf(err, errlen, "libpq.so.5 has no %s: a libpq older than 9.0?", name);    \
      return -1;                                                                       \
    }                                                                                  \
  } while (0)
  SYM(connectdbParams, "PQconnectdbParams");
  SYM(status, "PQstatus");
  SYM(errorMessage, "PQerrorMessage");
  SYM(finish, "PQfinish");
  SYM(exec, "PQexec");
  SYM(execParams, "PQexecParams");
  SYM(resultStatus, "PQresultStatus");
  SYM(resultErrorMessage, "PQresultErrorMessage");
  SYM(resultErrorField, "PQresultErrorField");
  SYM(clear, "PQclear");
  SYM(ntuples, "PQntuples");
  SYM(getvalue, "PQgetvalue");
  SYM(cmdTuples, "PQcmdTuples");
  SYM(putCopyData, "PQputCopyData");
  SYM(putCopyEnd, "PQputCopyEnd");
  SYM(getResult, "PQgetResult");
  SYM(conninfoParse, "PQconninfoParse");
  SYM(conninfoFree, "PQconninfoFree");
  SYM(freemem, "PQfreemem");
  SYM(setNoticeProcessor, "PQsetNoticeProcessor");
#undef SYM
  pq.loaded = 1;
  pthread_mutex_unlock(&pq_lock);
  return 0;
}

/* ---- the sink ------------------------------------------------------------ */

#define BATCH_LINES 50000
#define BATCH_BYTES (8u << 20)
#define READ_CHUNK (1u << 20)

typedef struct sink {
  char *url, *name, *path; /* name: the URL without its password, for messages */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int started, follow;
  /* under mu */
  int stop;         /* the run is over: ship what the files hold, then end */
  int abandon;      /* give up now (the end-of-run wait is over) */
  int done;         /* the thread has ended */
  int fatal;        /* ship: an error ends it */
  int64_t stored;   /* every seq up to this one is in the database */
  int64_t read_seq; /* the last seq read from the files */
  int64_t records;  /* rows this sink sent and committed */
  double busy;      /* seconds spent in batches that committed */
  char err[600];    /* the last error, "" once recovered */
  int quiet;        /* errors not printed (ship prints them itself) */
  /* the thread's own */
  PGconn *conn;
  int fd, segment;
  char *rbuf;
  size_t rlen, roff; /* bytes in rbuf, first not yet consumed */
  jbuf batch;        /* COPY binary rows of the lines read, not yet committed */
  int64_t batch_first, batch_last;
  int batch_lines, batch_marks; /* marks: the batch has a run_start/run_end */
  char run_id[40];
  unsigned char uuid[16]; /* run_id as COPY sends it */
  jbuf labels;            /* the run_start's labels as a COPY field */
  int64_t skip_to; /* lines up to this seq are stored already */
  int resume_known;
  int staged;      /* the next batch goes through the temporary table */
  int64_t refill_to; /* ... and every batch up to this seq (the database has holes) */
  off_t last_size;   /* run_bursting: the segment's size when last seen */
  double size_at, defer_from;
  int bursting;
  int64_t partial; /* bytes of an unfinished last line (a killed run) */
} sink;

static double mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* An error, said once (and again only when it changes): the run's console
 * is not flooded while the database stays away. */
static void sink_error(sink *s, const char *what, const char *msg) {
  char line[600];
  size_t n;
  /* libpq's first line says it; the rest points into our SQL */
  const char *m = msg ? msg : "";
  int mlen = (int)strcspn(m, "\n");
  snprintf(line, sizeof line, "%s%s%.*s", what, *what ? ": " : "", mlen, m);
  n = strlen(line);
  while (n > 0 && line[n - 1] == ' ') line[--n] = '\0';
  pthread_mutex_lock(&s->mu);
  if (strcmp(s->err, line) != 0) {
    if (!s->quiet)
      fprintf(stderr, "orchlua: sink %s: %s (retrying with back-off; the run goes on, the report file keeps every record)\n",
              s->name, line);
    snprintf(s->err, sizeof s->err, "%s", line);
  }
  pthread_mutex_unlock(&s->mu);
}

static void sink_recovered(sink *s) {
  pthread_mutex_lock(&s->mu);
  if (s->err[0] != '\0') {
    if (!s->quiet) fprintf(stderr, "orchlua: sink %s: connected again, catching up\n", s->name);
    s->err[0] = '\0';
  }
  pthread_mutex_unlock(&s->mu);
}

/* ts: sec seconds from now, on the clock pthread_cond_timedwait reads. */
static void deadline_in(struct timespec *ts, double sec) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += (time_t)sec;
  ts->tv_nsec += (long)((sec - (double)(time_t)sec) * 1e9);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

/* Waits sec seconds, or less when the run asks the sink to end or give up.
 * Returns 1 when it should give up. */
static int sink_nap(sink *s, double sec, int wake_on_stop) {
  struct timespec ts;
  int give_up;
  deadline_in(&ts, sec);
  pthread_mutex_lock(&s->mu);
  while (!s->abandon && !(wake_on_stop && s->stop))
    if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0) break;
  give_up = s->abandon;
  pthread_mutex_unlock(&s->mu);
  return give_up;
}

static void quiet_notice(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static const char SCHEMA[] =
    "SELECT pg_advisory_xact_lock(7306273951);"
    "CREATE TABLE IF NOT EXISTS orchlua_runs ("
    " run_id uuid PRIMARY KEY, test_name text, labels jsonb NOT NULL DEFAULT '{}',"
    " params jsonb NOT NULL DEFAULT '{}', started timestamptz, ended timestamptz,"
    " exit_status integer);"
    "CREATE TABLE IF NOT EXISTS orchlua_records ("
    " run_id uuid NOT NULL, seq bigint NOT NULL, type text, event text,"
    " t double precision, ts timestamptz, record jsonb NOT NULL, labels jsonb NOT NULL DEFAULT '{}',"
    " UNIQUE (run_id, seq));"
    /* a table made by an orchlua before labels were in every row */
    "ALTER TABLE orchlua_records ADD COLUMN IF NOT EXISTS labels jsonb NOT NULL DEFAULT '{}';"
    /* the fleet's queries go from runs (by label) to their records by
     * run_id, the unique key's prefix; checks are few, found by theirs */
    "CREATE INDEX IF NOT EXISTS orchlua_records_checks ON orchlua_records (run_id) WHERE type = 'check';"
    "CREATE INDEX IF NOT EXISTS orchlua_runs_labels ON orchlua_runs USING gin (labels);";

/* r's verdict (it is freed): 0 when the command went through, else the
 * error said once as `what` and -1. */
static int result_ok(sink *s, PGresult *r, const char *what) {
  int st = pq.resultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    sink_error(s, what, pq.resultErrorMessage(r));
    pq.clear(r);
    return -1;
  }
  pq.clear(r);
  return 0;
}

static int exec_ok(sink *s, const char *sql, const char *what) {
  return result_ok(s, pq.exec(s->conn, sql), what);
}

static void disconnect(sink *s) {
  if (s->conn != NULL) pq.finish(s->conn);
  s->conn = NULL;
  s->resume_known = 0;
}

static int connect_db(sink *s) {
  static const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
  const char *vals[] = {"10", "orchlua", s->url, NULL};
  PGresult *r;
  int have;
  s->conn = pq.connectdbParams(keys, vals, 1);
  if (s->conn == NULL || pq.status(s->conn) != CONNECTION_OK) {
    sink_error(s, "cannot connect", s->conn ? pq.errorMessage(s->conn) : "out of memory");
    disconnect(s);
    return -1;
  }
  pq.setNoticeProcessor(s->conn, quiet_notice, NULL);
  /* tables there already, with every column: no CREATE right is needed */
  r = pq.exec(s->conn,
              "SELECT to_regclass('orchlua_runs') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_attribute"
              " WHERE attrelid = to_regclass('orchlua_records') AND attname = 'labels' AND NOT attisdropped)");
  have = pq.resultStatus(r) == PGRES_TUPLES_OK && pq.ntuples(r) == 1 && pq.getvalue(r, 0, 0)[0] == 't';
  pq.clear(r);
  if ((!have && (exec_ok(s, "BEGIN", "creating the tables") != 0 ||
                 exec_ok(s, SCHEMA, "creating the tables orchlua_runs and orchlua_records (or adding orchlua_records.labels)") != 0 ||
                 exec_ok(s, "COMMIT", "creating the tables") != 0)) ||
      exec_ok(s, "CREATE TEMP TABLE IF NOT EXISTS orchlua_stage (LIKE orchlua_records) ON COMMIT DELETE ROWS",
              "creating a temporary table") != 0) {
    disconnect(s);
    return -1;
  }
  return 0;
}

/* max(seq) stored for the run: reading resumes after it.  1: the
 * report is to be read again from its start. */
static int resume_point(sink *s) {
  const char *p[1] = {s->run_id};
  int64_t count;
  PGresult *r = pq.execParams(s->conn, "SELECT coalesce(max(seq), 0), count(*) FROM orchlua_records WHERE run_id = $1",
                              1, NULL, p, NULL, NULL, 0);
  if (pq.resultStatus(r) != PGRES_TUPLES_OK || pq.ntuples(r) != 1) {
    sink_error(s, "reading where the run stands", pq.resultErrorMessage(r));
    pq.clear(r);
    return -1;
  }
  s->skip_to = strtoll(pq.getvalue(r, 0, 0), NULL, 10);
  count = strtoll(pq.getvalue(r, 0, 1), NULL, 10);
  pq.clear(r);
  s->resume_known = 1;
  if (count < s->skip_to) {
    /* seqs are 1, 2, ...: some below the max are missing (rows deleted,
     * a backup restored while this sink went on): every line up to the
     * max goes again, through the temporary table that skips the rows
     * there */
    s->refill_to = s->skip_to;
    s->skip_to = 0;
  }
  pthread_mutex_lock(&s->mu);
  if (s->batch_lines > 0 && s->skip_to < s->batch_first - 1) {
    /* the database lacks lines before the batch (restored from a backup,
     * a crash that lost commits): read the report again from there */
    s->stored = s->skip_to;
    pthread_mutex_unlock(&s->mu);
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    s->segment = 0;
    s->rlen = s->roff = 0;
    s->read_seq = 0;
    s->partial = 0;
    s->batch.len = 0;
    s->batch_lines = s->batch_marks = 0;
    return 1;
  }
  if (s->skip_to > s->stored) s->stored = s->skip_to;
  pthread_mutex_unlock(&s->mu);
  return 0;
}

/* The decimal at p, read within its n bytes: the buffers are not
 * NUL-terminated (strtoll would read on past them). */
static int64_t seq_at(const char *p, size_t n) {
  int64_t v = 0;
  size_t i;
  for (i = 0; i < n && i < 18 && p[i] >= '0' && p[i] <= '9'; i++) v = v * 10 + (p[i] - '0');
  return v;
}

/* binary: the server parses only the record's JSON, not the seq, run_id,
 * t and ts of every row as text */
static const char COLS[] = " (seq, run_id, type, event, t, ts, record, labels) FROM STDIN (FORMAT binary)";
#define NCOLS 8
static const char COPY_HEAD[19] = "PGCOPY\n\377\r\n\0"; /* then flags and extension length: 0 */
static const char COPY_TAIL[2] = "\377\377";

static uint32_t get32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

/* Drops the batch's lines up to skip_to (stored meanwhile by another
 * process: a ship while the sink was away).  A row is a field count, then
 * each field's length (-1: NULL) and bytes; seq comes first. */
static void batch_trim(sink *s) {
  size_t off = 0;
  while (off < s->batch.len && s->batch_lines > 0) {
    const char *row = s->batch.data + off;
    int64_t seq = (int64_t)((uint64_t)get32(row + 6) << 32 | get32(row + 10));
    size_t end = off + 2;
    int i;
    if (seq > s->skip_to) {
      s->batch_first = seq;
      break;
    }
    for (i = 0; i < NCOLS; i++) {
      int32_t n = (int32_t)get32(s->batch.data + end);
      end += 4 + (n > 0 ? (size_t)n : 0);
    }
    off = end;
    s->batch_lines--;
  }
  if (off > 0) {
    memmove(s->batch.data, s->batch.data + off, s->batch.len - off);
    s->batch.len -= off;
  }
}

static const char INSERT[] =
    "INSERT INTO orchlua_records (run_id, seq, type, event, t, ts, record, labels)"
    " SELECT run_id, seq, type, event, t, ts, record, labels FROM orchlua_stage ORDER BY seq"
    " ON CONFLICT (run_id, seq) DO NOTHING";
/* the run's row, from its run_start and run_end records in the batch's range */
static const char RUNS[] =
    "INSERT INTO orchlua_runs (run_id, test_name, labels, params, started)"
    " SELECT run_id, record->>'test_name', coalesce(record->'labels', '{}'), coalesce(record->'params', '{}'), ts"
    " FROM orchlua_records WHERE run_id = $1::uuid AND seq BETWEEN $2 AND $3 AND type = 'run_start'"
    " ORDER BY seq LIMIT 1"
    " ON CONFLICT (run_id) DO UPDATE SET test_name = EXCLUDED.test_name, labels = EXCLUDED.labels,"
    " params = EXCLUDED.params, started = least(orchlua_runs.started, EXCLUDED.started)";
static const char ENDS[] =
    "UPDATE orchlua_runs o SET ended = r.ts, exit_status = (r.record->>'status')::integer"
    " FROM orchlua_records r WHERE o.run_id = $1::uuid AND r.run_id = $1::uuid"
    " AND r.seq BETWEEN $2 AND $3 AND r.type = 'run_end'";

/* rows: where to say how many rows the command wrote, or NULL */
static int exec_param(sink *s, const char *sql, const char *what, int64_t *rows) {
  char first[24], last[24];
  const char *p[3] = {s->run_id, first, last};
  PGresult *r;
  snprintf(first, sizeof first, "%lld", (long long)s->batch_first);
  snprintf(last, sizeof last, "%lld", (long long)s->batch_last);
  r = pq.execParams(s->conn, sql, strstr(sql, "$3") ? 3 : strstr(sql, "$1") ? 1 : 0, NULL, p, NULL, NULL, 0);
  if (rows != NULL && pq.resultStatus(r) == PGRES_COMMAND_OK) *rows = strtoll(pq.cmdTuples(r), NULL, 10);
  return result_ok(s, r, what);
}

/* Sends the batch in one transaction; 0 once committed.  COPY goes
 * straight into orchlua_records: after the resume point nothing of the
 * batch is there, unless another process (a ship) stored it meanwhile;
 * then COPY fails on the unique key and the batch goes again through the
 * temporary table, skipping what is there.  So do the batches up to
 * refill_to, when the database has holes below its max(seq). */
static int batch_send(sink *s) {
  PGresult *r;
  int st, staged = s->staged || s->batch_first <= s->refill_to;
  int64_t added = s->batch_lines;
  char copy[160];
  double t0 = mono();
  if (exec_ok(s, "BEGIN", "starting a transaction") != 0) return -1;
  snprintf(copy, sizeof copy, "COPY %s%s", staged ? "orchlua_stage" : "orchlua_records", COLS);
  r = pq.exec(s->conn, copy);
  st = pq.resultStatus(r);
  pq.clear(r);
  if (st != PGRES_COPY_IN) {
    sink_error(s, "COPY", pq.errorMessage(s->conn));
    return -1;
  }
  if (pq.putCopyData(s->conn, COPY_HEAD, sizeof COPY_HEAD) != 1 ||
      pq.putCopyData(s->conn, s->batch.data, (int)s->batch.len) != 1 ||
      pq.putCopyData(s->conn, COPY_TAIL, sizeof COPY_TAIL) != 1 || pq.putCopyEnd(s->conn, NULL) != 1) {
    sink_error(s, "COPY", pq.errorMessage(s->conn));
    return -1;
  }
  st = PGRES_COMMAND_OK;
  while ((r = pq.getResult(s->conn)) != NULL) {
    if (pq.resultStatus(r) != PGRES_COMMAND_OK) {
      const char *code = pq.resultErrorField(r, 'C');
      st = -1;
      if (!staged && code != NULL && strcmp(code, "23505") == 0) {
        /* stored meanwhile by another: the temporary table's way next */
        s->staged = 1;
      } else {
        sink_error(s, "COPY", pq.resultErrorMessage(r));
      }
    }
    pq.clear(r);
  }
  if (st != PGRES_COMMAND_OK) {
    if (s->staged && !staged) {
      if (exec_ok(s, "ROLLBACK", "rolling back") != 0) return -1;
      return batch_send(s);
    }
    return -1;
  }
  /* through the stage, the rows there already are not this sink's */
  if (staged && exec_param(s, INSERT, "storing records", &added) != 0) return -1;
  if (s->batch_marks &&
      (exec_param(s, RUNS, "storing the run", NULL) != 0 || exec_param(s, ENDS, "storing the run's end", NULL) != 0))
    return -1;
  if (exec_ok(s, "COMMIT", "committing") != 0) return -1;
  s->staged = 0;
  pthread_mutex_lock(&s->mu);
  if (s->batch_last > s->stored) s->stored = s->batch_last;
  s->records += added;
  s->busy += mono() - t0;
  pthread_mutex_unlock(&s->mu);
  s->batch.len = 0;
  s->batch_lines = s->batch_marks = 0;
  return 0;
}

/* ---- reading the report -------------------------------------------------- */

/* The seq of segment n's first line, or -1. */
static int64_t first_seq(sink *s, int n) {
  char buf[32], *p = writer_segment_path(s->path, n);
  int fd;
  ssize_t got;
  if (p == NULL) return -1;
  fd = open(p, O_RDONLY | O_CLOEXEC);
  free(p);
  if (fd < 0) return -1;
  got = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (got < 9 || memcmp(buf, "{\"seq\":", 7) != 0) return -1;
  buf[got] = '\0';
  return strtoll(buf + 7, NULL, 10);
}

/* Opens the current segment; a segment whose every line is stored
 * already (the next one starts at or before skip_to + 1) is not read at
 * all: a ship of a long rotated run reads only what it sends.  Segment 0
 * is read for its run_id. */
static int open_segment(sink *s) {
  char *p;
  if (s->run_id[0] != '\0' && s->segment > 0) {
    int64_t next;
    while ((next = first_seq(s, s->segment + 1)) > 0 && next <= s->skip_to + 1) {
      s->segment++;
      s->read_seq = next - 1;
    }
  }
  p = writer_segment_path(s->path, s->segment);
  if (p == NULL) return -1;
  s->fd = open(p, O_RDONLY | O_CLOEXEC);
  free(p);
  return s->fd < 0 ? -1 : 0;
}

static int segment_exists(sink *s, int n) {
  struct stat st;
  char *p = writer_segment_path(s->path, n);
  int ok = p != NULL && stat(p, &st) == 0;
  free(p);
  return ok;
}

/* Appends n bytes of JSON as jsonb takes them: \u0000 (which jsonb
 * refuses) becomes U+FFFD; a raw tab or newline (none in JSON orchlua
 * writes) a space.  Same length: the row's room is reserved before. */
static const unsigned char json_special[256] = {['\\'] = 1, ['\t'] = 1, ['\r'] = 1, ['\n'] = 1};

static void json_text(jbuf *b, const char *line, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    char c;
    size_t j = i;
    while (j < n && !json_special[(unsigned char)line[j]]) j++;
    memcpy(b->data + b->len, line + i, j - i);
    b->len += j - i;
    if ((i = j) == n) break;
    c = line[i];
    if (c == '\\') {
      b->data[b->len++] = '\\';
      if (i + 1 < n) {
        if (i + 5 < n && memcmp(line + i + 1, "u0000", 5) == 0) {
          memcpy(b->data + b->len, "ufffd", 5);
          b->len += 5;
          i += 5;
        } else {
          b->data[b->len++] = line[++i];
        }
      }
    } else {
      b->data[b->len++] = ' ';
    }
  }
}

/* Skips the JSON value at p (ends before e); returns its end. */
/* The closing quote of the string whose inside starts at p, or e. */
static const char *string_end(const char *p, const char *e) {
  for (;;) {
    const char *q = memchr(p, '"', (size_t)(e - p)), *k;
    if (q == NULL) return e;
    for (k = q; k > p && k[-1] == '\\'; k--) continue;
    if ((q - k) % 2 == 0) return q; /* not escaped */
    p = q + 1;
  }
}

static const char *skip_value(const char *p, const char *e) {
  int depth = 0;
  while (p < e) {
    char c = *p;
    if (c == '"') {
      p = string_end(p + 1, e);
      if (p < e) p++;
      if (depth == 0) return p;
      continue;
    }
    if (c == '{' || c == '[') depth++;
    else if (c == '}' || c == ']') {
      if (depth == 0) return p;
      if (--depth == 0) return p + 1;
    } else if (depth == 0 && (c == ',' || c == ' ')) {
      return p;
    }
    p++;
  }
  return p;
}

typedef struct span {
  const char *p;
  size_t n;
} span;

typedef struct member {
  const char *k, *v; /* the key's quote, the value */
  size_t kn, vn;     /* the key's length within its quotes, the value's */
} member;

#define MAX_MEMBERS 128

/* The top-level members of a record line, in order, as far as they can
 * be walked: their count; *whole: the walk ended at the closing brace. */
static int members_of(const char *line, size_t n, member *m, int *whole) {
  const char *p = line + 1, *e = line + n;
  int c = 0;
  *whole = 0;
  while (p < e && *p == '"' && c < MAX_MEMBERS) {
    const char *k = p;
    p = skip_value(p, e);
    if (p >= e || *p != ':') return c;
    m[c].k = k;
    m[c].kn = (size_t)(p - k) - 2;
    m[c].v = ++p;
    p = skip_value(p, e);
    m[c].vn = (size_t)(p - m[c].v);
    c++;
    if (p < e && *p == ',') p++;
    else break;
  }
  *whole = n >= 2 && line[0] == '{' && p == e - 1 && *p == '}';
  return c;
}

/* The members type, event, t, ts and labels among them. */
enum { M_TYPE, M_EVENT, M_T, M_TS, M_LABELS, M_N };
static void top_members(const member *m, int c, span out[M_N]) {
  static const char *const keys[M_N] = {"type", "event", "t", "ts", "labels"};
  static const size_t lens[M_N] = {4, 5, 1, 2, 6};
  int i, j;
  memset(out, 0, M_N * sizeof *out);
  for (j = 0; j < c; j++)
    for (i = 0; i < M_N; i++)
      if (lens[i] == m[j].kn && memcmp(keys[i], m[j].k + 1, m[j].kn) == 0) {
        out[i].p = m[j].v;
        out[i].n = m[j].vn;
      }
}

/* jsonb keeps an object's keys sorted by length, then bytes, and sorts
 * every object it parses: sent in that order, the server's sort finds
 * them sorted (a fifth of its work per record otherwise).  Stable: of
 * two equal keys the last still wins. */
static int key_before(const member *a, const member *b) {
  if (a->kn != b->kn) return a->kn < b->kn;
  return memcmp(a->k + 1, b->k + 1, a->kn) < 0;
}

static void members_sort(member *m, int c) {
  int i, j;
  for (i = 1; i < c; i++) {
    member x = m[i];
    for (j = i; j > 0 && key_before(&x, &m[j - 1]); j--) m[j] = m[j - 1];
    m[j] = x;
  }
}

/* t as a double, when it is a finite JSON number. */
static int number_of(span v, double *d) {
  char buf[48], *end;
  if (v.p == NULL || v.n == 0 || v.n >= sizeof buf) return 0;
  memcpy(buf, v.p, v.n);
  buf[v.n] = '\0';
  if (strspn(buf, "0123456789.eE+-") != v.n) return 0;
  *d = strtod(buf, &end);
  return *end == '\0' && isfinite(*d);
}

static int digits(const char *p, int n) {
  int v = 0, i;
  for (i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v;
}

/* Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int m, int d) {
  int64_t era, yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

/* A UTC timestamp as orchlua writes it ("2026-12-07T00:31:27.529Z", the
 * quotes included) as timestamptz's binary value: microseconds since
 * 2000-01-01 UTC.  0 when it is not one (the column is then NULL). */
static int ts_of(span v, int64_t *us) {
  static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const char *p = v.p;
  int y, mo, d, h, mi, sec, i;
  int64_t frac = 0, scale = 1000000;
  if (p == NULL || v.n < 22 || v.n > 40 || p[0] != '"' || p[v.n - 1] != '"' || p[v.n - 2] != 'Z') return 0;
  p++;
  if (p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':') return 0;
  y = digits(p, 4), mo = digits(p + 5, 2), d = digits(p + 8, 2);
  h = digits(p + 11, 2), mi = digits(p + 14, 2), sec = digits(p + 17, 2);
  if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h < 0 || h > 23 || mi < 0 || mi > 59 ||
      sec < 0 || sec > 60)
    return 0;
  if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return 0;
  p += 19;
  if (*p == '.') {
    const char *f = p;
    for (i = 1, p++; *p >= '0' && *p <= '9'; p++, i++)
      if (i <= 6) frac += (*p - '0') * (scale /= 10);
    if (i == 1) return 0;
    if (i > 7) {
      /* past microseconds: rounded as the server rounds the text */
      char buf[40];
      size_t k = (size_t)(p - f);
      if (k >= sizeof buf - 1) return 0;
      buf[0] = '0';
      memcpy(buf + 1, f, k);
      buf[k + 1] = '\0';
      frac = (int64_t)rint(strtod(buf, NULL) * 1000000);
    }
  }
  if (*p != 'Z') return 0;
  *us = (((days_from_civil(y, mo, d) - 10957) * 24 + h) * 60 + mi) * 60 * 1000000LL + sec * 1000000LL + frac;
  return 1;
}

static int reserve(jbuf *b, size_t more) {
  if (b->cap - b->len >= more) return 0;
  size_t cap = b->cap ? b->cap : 1 << 16;
  while (cap - b->len < more) cap *= 2;
  char *d = realloc(b->data, cap);
  if (d == NULL) return -1;
  b->data = d;
  b->cap = cap;
  return 0;
}

/* An object's JSON (m: its c members, whole when they are all of it)
 * with the same members and bytes, keys in jsonb's order. */
static void put_object(jbuf *b, const char *obj, size_t n, member *m, int c, int whole) {
  int i;
  if (!whole || c < 2) {
    json_text(b, obj, n);
    return;
  }
  members_sort(m, c);
  b->data[b->len++] = '{';
  for (i = 0; i < c; i++) {
    if (i > 0) b->data[b->len++] = ',';
    json_text(b, m[i].k, (size_t)(m[i].v + m[i].vn - m[i].k));
  }
  b->data[b->len++] = '}';
}

/* COPY binary is big-endian; room is reserved by the caller. */
static void put32(jbuf *b, uint32_t v) {
  unsigned char *u = (unsigned char *)b->data + b->len;
  u[0] = (unsigned char)(v >> 24), u[1] = (unsigned char)(v >> 16), u[2] = (unsigned char)(v >> 8);
  u[3] = (unsigned char)v;
  b->len += 4;
}

static void put64(jbuf *b, uint64_t v) {
  put32(b, (uint32_t)(v >> 32));
  put32(b, (uint32_t)v);
}

/* A field of n bytes whose length is set once written: the offset of its
 * length word. */
static size_t field_open(jbuf *b) {
  b->len += 4;
  return b->len - 4;
}

static void field_close(jbuf *b, size_t at) {
  size_t end = b->len;
  b->len = at;
  put32(b, (uint32_t)(end - at - 4));
  b->len = end;
}

/* A text column: a string's inside (raw, escapes kept), or the value's
 * JSON text; NULL for none or null. */
static void put_text(jbuf *b, span v) {
  size_t at;
  if (v.p == NULL || (v.n == 4 && memcmp(v.p, "null", 4) == 0)) {
    put32(b, 0xffffffffu);
    return;
  }
  at = field_open(b);
  if (v.p[0] == '"' && v.n >= 2) json_text(b, v.p + 1, v.n - 2);
  else json_text(b, v.p, v.n);
  field_close(b, at);
}

/* One line as a COPY row: seq, run_id, type, event, t, ts, record,
 * labels. */
static int batch_add(sink *s, int64_t seq, const char *line, size_t n) {
  jbuf *b = &s->batch;
  member mem[MAX_MEMBERS];
  span m[M_N];
  int c, whole;
  double t;
  int64_t us;
  size_t at;
  /* type and event are within the line: the row is at most twice it */
  if (reserve(b, 2 * n + s->labels.len + 128) != 0) return -1;
  b->data[b->len++] = 0;
  b->data[b->len++] = NCOLS;
  put32(b, 8);
  put64(b, (uint64_t)seq);
  put32(b, 16);
  memcpy(b->data + b->len, s->uuid, 16);
  b->len += 16;
  c = members_of(line, n, mem, &whole);
  top_members(mem, c, m);
  if (m[M_TYPE].n > 5 && memcmp(m[M_TYPE].p, "\"run_", 5) == 0) s->batch_marks = 1;
  put_text(b, m[M_TYPE]);
  put_text(b, m[M_EVENT]);
  if (number_of(m[M_T], &t)) {
    uint64_t bits;
    memcpy(&bits, &t, 8);
    put32(b, 8);
    put64(b, bits);
  } else {
    put32(b, 0xffffffffu);
  }
  if (ts_of(m[M_TS], &us)) {
    put32(b, 8);
    put64(b, (uint64_t)us);
  } else {
    put32(b, 0xffffffffu);
  }
  at = field_open(b);
  b->data[b->len++] = 1; /* jsonb's binary form: version 1, then the text */
  put_object(b, line, n, mem, c, whole);
  field_close(b, at);
  memcpy(b->data + b->len, s->labels.data, s->labels.len);
  b->len += s->labels.len;
  return 0;
}

/* The line's seq: `{"seq":N,` as orchlua writes it; a line without one
 * (an older report) counts on from the one before. */
static int64_t line_seq(const char *line, size_t n, int64_t prev) {
  if (n <= 8 || memcmp(line, "{\"seq\":", 7) != 0) return prev + 1;
  return seq_at(line + 7, n - 7);
}

/* The run_id of the first line, when it is a UUID. */
static void take_run_id(sink *s, const char *line, size_t n) {
  static const char key[] = "\"run_id\":\"";
  const char *p = memmem(line, n, key, sizeof key - 1);
  int i, k = 0;
  if (p == NULL || (size_t)(line + n - p) <= sizeof key + 36) return;
  p += sizeof key - 1;
  for (i = 0; i < 36; i++) {
    int c = (unsigned char)p[i], v;
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return;
      continue;
    }
    v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (v < 0) return;
    s->uuid[k / 2] = (unsigned char)(k % 2 ? s->uuid[k / 2] | v : v << 4);
    k++;
  }
  if (p[36] != '"') return;
  memcpy(s->run_id, p, 36);
  s->run_id[36] = '\0';
}

/* The run_start's labels as every row's last field, made once: each row
 * carries them (a label filter needs no join), and sending them costs the
 * server less than writing every row twice through a table that would
 * add them.  A report without labels: {}. */
static int take_labels(sink *s, const char *line, size_t n) {
  member mem[MAX_MEMBERS];
  span m[M_N];
  size_t at;
  int c, whole;
  top_members(mem, members_of(line, n, mem, &whole), m);
  if (m[M_LABELS].p == NULL || m[M_LABELS].p[0] != '{') {
    m[M_LABELS].p = "{}";
    m[M_LABELS].n = 2;
  }
  s->labels.len = 0;
  if (reserve(&s->labels, m[M_LABELS].n + 8) != 0) return -1;
  at = field_open(&s->labels);
  s->labels.data[s->labels.len++] = 1;
  c = members_of(m[M_LABELS].p, m[M_LABELS].n, mem, &whole);
  put_object(&s->labels, m[M_LABELS].p, m[M_LABELS].n, mem, c, whole);
  field_close(&s->labels, at);
  return 0;
}

enum { R_LINE, R_NONE, R_END, R_ERR };

/* Adds the complete lines at hand to the batch.  R_NONE: nothing new for
 * now; R_END: the files are all read (the run is over). */
static int fill_batch(sink *s, int stop) {
  int added = 0;
  for (;;) {
    char *nl;
    while (s->roff < s->rlen && (nl = memchr(s->rbuf + s->roff, '\n', s->rlen - s->roff)) != NULL) {
      char *line = s->rbuf + s->roff;
      size_t n = (size_t)(nl - line);
      int64_t seq = line_seq(line, n, s->read_seq);
      s->roff += n + 1;
      if (n == 0) continue;
      s->read_seq = seq;
      if (s->run_id[0] == '\0') {
        take_run_id(s, line, n);
        if (s->run_id[0] == '\0' || take_labels(s, line, n) != 0) return R_ERR;
      }
      if (seq <= s->skip_to) continue;
      if (batch_add(s, seq, line, n) != 0) return R_ERR;
      if (s->batch_lines++ == 0) s->batch_first = seq;
      s->batch_last = seq;
      added = 1;
      if (s->batch_lines >= BATCH_LINES || s->batch.len >= BATCH_BYTES) return R_LINE;
    }
    /* keep the unfinished line, read more */
    if (s->roff > 0) {
      memmove(s->rbuf, s->rbuf + s->roff, s->rlen - s->roff);
      s->rlen -= s->roff;
      s->roff = 0;
    }
    if (s->rlen == READ_CHUNK) {
      /* a line longer than the buffer: orchlua cuts records far below */
      s->rlen = 0;
      continue;
    }
    if (s->fd < 0 && open_segment(s) != 0) return added ? R_LINE : stop ? R_END : R_NONE;
    {
      int next = segment_exists(s, s->segment + 1);
      ssize_t got = read(s->fd, s->rbuf + s->rlen, READ_CHUNK - s->rlen);
      if (got > 0) {
        s->rlen += (size_t)got;
        continue;
      }
      if (next) {
        /* FILE.n+1 exists: FILE.n was closed before it, read it whole */
        close(s->fd);
        s->fd = -1;
        s->rlen = s->roff = 0;
        s->segment++;
        continue;
      }
      if (added) return R_LINE;
      if (stop) {
        s->partial = (int64_t)s->rlen;
        return R_END;
      }
      return R_NONE;
    }
  }
}

/* ---- the thread ---------------------------------------------------------- */

#define BURST_RATE (8.0 * 1048576) /* bytes/s of report: the run is busy */
#define BURST_DEFER 30.0           /* seconds at most the sink stands aside */

/* While the run writes its report faster than BURST_RATE (a burst of
 * results), the sink stands aside for up to BURST_DEFER seconds: it and
 * the database would take CPU from the run on a small machine.  It
 * catches up after the burst, or at the end of the run. */
static int run_bursting(sink *s) {
  struct stat st;
  double now = mono(), dt = now - s->size_at;
  if (s->fd < 0 || fstat(s->fd, &st) != 0) return 0;
  if (dt < 0.04 && s->size_at > 0) return s->bursting;
  s->bursting = s->size_at > 0 && st.st_size >= s->last_size &&
                (double)(st.st_size - s->last_size) / dt > BURST_RATE;
  if (!s->bursting) s->defer_from = 0;
  else if (s->defer_from == 0) s->defer_from = now;
  else if (now - s->defer_from > BURST_DEFER) s->bursting = 0;
  s->last_size = st.st_size;
  s->size_at = now;
  return s->bursting;
}

static void *sink_main(void *arg) {
  sink *s = arg;
  double backoff = 0.25;
  /* below the run's loop when they compete for a core: the sink may lag,
   * the run may not */
  if (s->follow) setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
  int end = 0, woken = !s->follow; /* ship: nothing to wake it */
  s->fd = -1;
  s->rbuf = malloc(READ_CHUNK);
  if (s->rbuf == NULL) {
    sink_error(s, "out of memory", "");
    goto out;
  }
  for (;;) {
    int stop, r = R_LINE;
    pthread_mutex_lock(&s->mu);
    stop = s->stop;
    if (s->abandon) {
      pthread_mutex_unlock(&s->mu);
      break;
    }
    pthread_mutex_unlock(&s->mu);
    if (s->follow && !stop && run_bursting(s)) {
      if (sink_nap(s, 0.05, 1)) break;
      continue;
    }
    if (s->batch_lines < BATCH_LINES && s->batch.len < BATCH_BYTES && !end) {
      r = fill_batch(s, stop);
      if (r == R_ERR) {
        sink_error(s, s->path, s->run_id[0] ? "out of memory" : "the first line has no run_id (a UUID): not an orchlua report");
        pthread_mutex_lock(&s->mu);
        s->fatal = 1;
        pthread_mutex_unlock(&s->mu);
        break;
      }
      if (r == R_END) end = 1;
    }
    if (s->batch_lines == 0) {
      if (end) break;
      if (sink_nap(s, 0.05, 1)) break;
      continue;
    }
    if (s->conn == NULL && connect_db(s) != 0) goto failed;
    if (!s->resume_known) {
      int rc = resume_point(s);
      if (rc < 0) goto failed;
      if (rc == 1) {
        end = 0;
        continue;
      }
      batch_trim(s);
      if (s->batch_lines == 0) continue;
    }
    if (batch_send(s) == 0) {
      backoff = 0.25;
      sink_recovered(s);
      continue;
    }
  failed:
    disconnect(s);
    {
      int fatal;
      pthread_mutex_lock(&s->mu);
      fatal = s->fatal;
      pthread_mutex_unlock(&s->mu);
      if (fatal) break;
    }
    /* the run's end cuts the nap short once: its few seconds are for
     * trying again, not for sleeping */
    if (sink_nap(s, backoff, !woken)) break;
    pthread_mutex_lock(&s->mu);
    if (s->stop && !woken && s->follow) {
      woken = 1;
      backoff = 0.25;
    } else {
      backoff = backoff * 2 > 10 ? 10 : backoff * 2;
    }
    pthread_mutex_unlock(&s->mu);
  }
out:
  disconnect(s);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  pthread_mutex_lock(&s->mu);
  s->done = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- Lua ----------------------------------------------------------------- */

/* sink.check(url) -> true | nil, message: libpq there, and the URL one it
 * can parse */
static int l_check(lua_State *L) {
  const char *url = luaL_checkstring(L, 1);
  char err[600], *perr = NULL;
  void *opts;
  if (pq_load(err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  opts = pq.conninfoParse(url, &perr);
  if (opts == NULL) {
    lua_pushnil(L);
    if (perr != NULL) {
      size_t n = strlen(perr);
      while (n > 0 && perr[n - 1] == '\n') n--;
      lua_pushlstring(L, perr, n);
      pq.freemem(perr);
    } else {
      lua_pushstring(L, "out of memory");
    }
    return 2;
  }
  pq.conninfoFree(opts);
  lua_pushboolean(L, 1);
  return 1;
}

/* The userdata holds a pointer: a thread left running at exit keeps its
 * sink, whatever the collector does. */
static sink *check_sink(lua_State *L) {
  sink **sp = luaL_checkudata(L, 1, SINK_MT);
  luaL_argcheck(L, *sp != NULL, 1, "sink is gone");
  return *sp;
}

static sink *sink_new(lua_State *L) {
  const char *url = luaL_checkstring(L, 1), *path = luaL_checkstring(L, 2);
  const char *name = luaL_optstring(L, 3, url);
  char err[600];
  sink **sp = lua_newuserdatauv(L, sizeof *sp, 0);
  sink *s;
  *sp = NULL;
  if (pq_load(err, sizeof err) != 0) luaL_error(L, "%s", err);
  s = calloc(1, sizeof *s);
  if (s == NULL) luaL_error(L, "not enough memory");
  *sp = s;
  s->fd = -1;
  s->url = strdup(url);
  s->name = strdup(name);
  s->path = strdup(path);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  luaL_setmetatable(L, SINK_MT);
  return s;
}

/* sink.start(url, path, [name]) -> sink: tails path (and its segments)
 * until finish() */
static int l_start(lua_State *L) {
  sink *s = sink_new(L);
  s->follow = 1;
  if (pthread_create(&s->thread, NULL, sink_main, s) != 0) return luaL_error(L, "cannot start the sink's thread");
  s->started = 1;
  return 1;
}

static void push_state(lua_State *L, sink *s) {
  lua_createtable(L, 0, 8);
  lua_pushboolean(L, s->done);
  lua_setfield(L, -2, "done");
  lua_pushinteger(L, s->stored);
  lua_setfield(L, -2, "stored");
  lua_pushinteger(L, s->records);
  lua_setfield(L, -2, "records");
  lua_pushnumber(L, s->busy);
  lua_setfield(L, -2, "busy");
  lua_pushinteger(L, s->read_seq);
  lua_setfield(L, -2, "read");
  lua_pushinteger(L, s->partial);
  lua_setfield(L, -2, "partial");
  lua_pushboolean(L, s->fatal);
  lua_setfield(L, -2, "fatal");
  if (s->err[0] != '\0') {
    lua_pushstring(L, s->err);
    lua_setfield(L, -2, "error");
  }
}

/* sink:finish(seconds) -> state: the run is over; waits at most seconds for
 * the sink to store the rest, then leaves it (the process exits soon). */
static int l_finish(lua_State *L) {
  sink *s = check_sink(L);
  double sec = luaL_optnumber(L, 2, 5);
  struct timespec ts;
  deadline_in(&ts, sec);
  pthread_mutex_lock(&s->mu);
  s->stop = 1;
  pthread_cond_broadcast(&s->cv);
  while (!s->done)
    if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0) break;
  if (!s->done) {
    s->abandon = 1;
    s->quiet = 1;
    pthread_cond_broadcast(&s->cv);
  }
  push_state(L, s);
  pthread_mutex_unlock(&s->mu);
  return 1;
}

/* sink:state() -> state */
static int l_state(lua_State *L) {
  sink *s = check_sink(L);
  pthread_mutex_lock(&s->mu);
  push_state(L, s);
  pthread_mutex_unlock(&s->mu);
  return 1;
}

/* sink.ship(url, path, [name], [retry_seconds]) -> state: stores the run
 * in path (and its segments) in this thread; a database error is retried
 * for retry_seconds, then ends it. */
static int l_ship(lua_State *L) {
  double retry = luaL_optnumber(L, 4, 0);
  sink *s = sink_new(L);
  s->stop = 1;
  s->quiet = 1;
  {
    /* the loop in a thread, watched from here: an error with no time
     * left to retry ends it */
    double until = mono() + retry;
    pthread_t th;
    if (pthread_create(&th, NULL, sink_main, s) != 0) return luaL_error(L, "cannot start the sink's thread");
    pthread_mutex_lock(&s->mu);
    while (!s->done) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 100000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&s->cv, &s->mu, &ts);
      /* an error and no time left to retry: give up */
      if (!s->done && s->err[0] != '\0' && mono() >= until) {
        s->abandon = 1;
        pthread_cond_broadcast(&s->cv);
      }
    }
    pthread_mutex_unlock(&s->mu);
    pthread_join(th, NULL);
  }
  push_state(L, s);
  return 1;
}

static int l_gc(lua_State *L) {
  sink **sp = luaL_checkudata(L, 1, SINK_MT);
  sink *s = *sp;
  int running;
  if (s == NULL) return 0;
  pthread_mutex_lock(&s->mu);
  running = s->started && !s->done;
  pthread_mutex_unlock(&s->mu);
  /* a thread still running keeps its sink: the process is exiting */
  if (running) return 0;
  if (s->started) pthread_join(s->thread, NULL);
  free(s->url);
  free(s->name);
  free(s->path);
  free(s->rbuf);
  free(s->batch.data);
  free(s->labels.data);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s);
  *sp = NULL;
  return 0;
}

int luaopen_orch_sink(lua_State *L);
int luaopen_orch_sink(lua_State *L) {
  static const luaL_Reg m[] = {{"finish", l_finish}, {"state", l_state}, {NULL, NULL}};
  static const luaL_Reg f[] = {{"check", l_check}, {"start", l_start}, {"ship", l_ship}, {NULL, NULL}};
  if (luaL_newmetatable(L, SINK_MT)) {
    luaL_newlib(L, m);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newlib(L, f);
  return 1;
}
