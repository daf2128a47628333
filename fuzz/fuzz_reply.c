/*
 * fuzz_reply.c -- arbitrary bytes into the reply parser.
 *
 * The input is parsed as a stream of replies (reset after each DONE, as the
 * engine does) three times: whole, one byte at a time, and in chunks whose
 * size the first byte picks.  The three runs must agree on every reply, and
 * every parsed reply must keep the contract of reply.h.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

/* What one run saw of one reply; text by hash, to keep this small. */
typedef struct {
  smtp_reply_status status;
  size_t end;                   /* input offset just past the reply */
  int code;
  unsigned lines;
  size_t text_len;
  uint64_t text_hash;
  char enhanced[16];
} outcome;

#define OUTCOMES_MAX 4096u

typedef struct {
  outcome o[OUTCOMES_MAX];
  size_t n;
} run;

static smtp_reply parser;
static run runs[3];

static uint64_t fnv1a(const char *p, size_t n)
{
  uint64_t h = 0xcbf29ce484222325u;
  size_t i;

  for (i = 0; i < n; i++)
    h = (h ^ (unsigned char)p[i]) * 0x100000001b3u;
  return h;
}

/* "class.subject.detail": class 2, 4 or 5, then 1 to 3 digits twice. */
static int enhanced_ok(const char *s)
{
  size_t i = 0, part, digits;

  if (*s == '\0')
    return 1;
  if (s[0] != '2' && s[0] != '4' && s[0] != '5')
    return 0;
  i = 1;
  for (part = 0; part < 2; part++) {
    if (s[i++] != '.')
      return 0;
    for (digits = 0; s[i] >= '0' && s[i] <= '9'; i++)
      digits++;
    if (digits < 1 || digits > 3)
      return 0;
  }
  return s[i] == '\0';
}

static void check_done(const smtp_reply *r, const uint8_t *data, size_t end)
{
  size_t i, newlines = 0;

  REQUIRE(r->code >= 200 && r->code <= 559 && (r->code / 10) % 10 <= 5);
  REQUIRE(r->lines >= 1 && r->lines <= SMTP_REPLY_LINES_MAX);
  REQUIRE(r->text_len <= SMTP_REPLY_TEXT_MAX);
  REQUIRE(r->text[r->text_len] == '\0');
  REQUIRE(memchr(r->enhanced, '\0', sizeof r->enhanced) != NULL);
  REQUIRE(enhanced_ok(r->enhanced));
  REQUIRE(end > 0 && data[end - 1] == '\n');
  for (i = 0; i < r->text_len; i++) {
    unsigned char c = (unsigned char)r->text[i];
    /* text holds no NUL and no control but HT, CR and the joining LF */
    REQUIRE(c == '\t' || c == '\r' || c == '\n' || (c >= 0x20 && c != 0x7f));
    newlines += c == '\n';
  }
  REQUIRE(newlines == r->lines - 1);
}

static void parse(const uint8_t *data, size_t size, size_t chunk, run *out)
{
  size_t pos = 0, end = 0;
  smtp_reply_status s = SMTP_REPLY_MORE;

  out->n = 0;
  smtp_reply_reset(&parser);
  while (pos < size && out->n < OUTCOMES_MAX) {
    size_t used;
    outcome *o;

    if (pos == end)
      end = size - pos > chunk ? pos + chunk : size;
    s = smtp_reply_feed(&parser, data + pos, end - pos, &used);
    REQUIRE(used <= end - pos);
    REQUIRE(s != SMTP_REPLY_MORE || used == end - pos);
    pos += used;
    if (s == SMTP_REPLY_MORE)
      continue;
    REQUIRE(s == SMTP_REPLY_DONE || s == SMTP_REPLY_ETOOLONG ||
            s == SMTP_REPLY_ETOOMANY || s == SMTP_REPLY_ESYNTAX);
    REQUIRE(used > 0);
    o = &out->o[out->n++];
    memset(o, 0, sizeof *o);
    o->status = s;
    o->end = pos;
    if (s != SMTP_REPLY_DONE) {
      size_t again;
      /* errors stay set */
      REQUIRE(smtp_reply_feed(&parser, data, size, &again) == s && again == 0);
      return;
    }
    check_done(&parser, data, pos);
    o->code = parser.code;
    o->lines = parser.lines;
    o->text_len = parser.text_len;
    o->text_hash = fnv1a(parser.text, parser.text_len);
    /* the string only: bytes past its NUL are the parser's scratch */
    strcpy(o->enhanced, parser.enhanced);
    smtp_reply_reset(&parser);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  size_t chunk = size > 0 ? (size_t)data[0] % 64 + 1 : 1;
  size_t i;

  parse(data, size, size > 0 ? size : 1, &runs[0]);
  parse(data, size, 1, &runs[1]);
  parse(data, size, chunk, &runs[2]);
  for (i = 1; i < 3; i++) {
    REQUIRE(runs[i].n == runs[0].n);
    REQUIRE(memcmp(runs[i].o, runs[0].o, runs[0].n * sizeof(outcome)) == 0);
  }
  return 0;
}
