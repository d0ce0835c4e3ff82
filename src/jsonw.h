#ifndef ORCH_JSONW_H
#define ORCH_JSONW_H
#include <stddef.h>
#include <string.h>
#include "lua.h"
typedef struct jbuf {
  char *data;
  size_t len, cap;
} jbuf;
/* Appends the JSON of the value at idx to b; -1 (b unchanged) when the
 * value holds something JSON cannot say faithfully. */
int jsonw_encode(jbuf *b, lua_State *L, int idx);
/* Appends s (n bytes) as a JSON string, escaped and made valid UTF-8 as
 * jsonw_encode does; -1 (b unchanged) when out of memory. */
int jsonw_string(jbuf *b, const char *s, size_t n);
/* Append a number as the encoder writes it ("%.14g"; NaN and infinity as
 * null), and an integer. */
int jsonw_number(jbuf *b, double d);
int jsonw_integer(jbuf *b, lua_Integer v);
/* Append n raw bytes; a string literal.  Inline: a record is a dozen of
 * them, and with n known the copy is a few moves instead of a memcpy call. */
int jsonw_raw_grow(jbuf *b, const char *s, size_t n);
static inline __attribute__((always_inline)) int jsonw_raw(jbuf *b, const char *s, size_t n) {
  if (b->cap - b->len < n) return jsonw_raw_grow(b, s, n);
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}
#define JSONW_LIT(b, lit) jsonw_raw((b), (lit), sizeof(lit) - 1)
void jbuf_free(jbuf *b);
#endif
