/*
 * test_reply.c -- the reply parser, table-driven.  Every case runs whole,
 * one byte at a time, split at every point, and (when short) split at every
 * pair of points: the parser must not care where the transport cut.
 */
#include <stdlib.h>

#include "../src/reply.h"
#include "harness.h"

#define MORE     SMTP_REPLY_MORE
#define DONE     SMTP_REPLY_DONE
#define ETOOLONG SMTP_REPLY_ETOOLONG
#define ETOOMANY SMTP_REPLY_ETOOMANY
#define ESYNTAX  SMTP_REPLY_ESYNTAX

#define IN(s) s, sizeof s - 1
#define ALL ((size_t)-1)        /* the whole input is consumed */

/* Inputs up to this long are also tried at every pair of split points;
 * longer than SPLIT1_MAX, at every SPLIT1_STEP-th point (the bytewise run
 * already cuts everywhere; this keeps the test quick under valgrind). */
#define SPLIT2_MAX 48u
#define SPLIT1_MAX 4096u
#define SPLIT1_STEP 61u

typedef struct {
  const char *name;
  const char *in;
  size_t len;
  smtp_reply_status status;
  size_t used;                  /* octets consumed, or ALL */
  /* checked only when status is DONE */
  int code;
  const char *enhanced;
  unsigned lines;
  const char *text;
} reply_case;

static const reply_case cases[] = {
  { "single", IN("250 OK\r\n"), DONE, ALL, 250, "", 1, "OK" },
  { "multi", IN("250-mx.example.com Hello\r\n250-PIPELINING\r\n"
                "250 SIZE 10240000\r\n"), DONE, ALL,
    250, "", 3, "mx.example.com Hello\nPIPELINING\nSIZE 10240000" },
  { "bare code", IN("250\r\n"), DONE, ALL, 250, "", 1, "" },
  { "code and space", IN("250 \r\n"), DONE, ALL, 250, "", 1, "" },
  { "bare code ends many", IN("250-a\r\n250\r\n"), DONE, ALL,
    250, "", 2, "a\n" },
  { "empty continuation", IN("250-\r\n250 x\r\n"), DONE, ALL,
    250, "", 2, "\nx" },
  { "LF only", IN("250-a\n250 b\n"), DONE, ALL, 250, "", 2, "a\nb" },
  { "CRLF and LF mixed", IN("250-a\r\n250 b\n"), DONE, ALL,
    250, "", 2, "a\nb" },
  { "bare CR kept", IN("250 a\rb\r\n"), DONE, ALL, 250, "", 1, "a\rb" },
  { "CR before CRLF", IN("250 a\r\r\n"), DONE, ALL, 250, "", 1, "a\r" },
  { "tab", IN("250 a\tb\r\n"), DONE, ALL, 250, "", 1, "a\tb" },
  { "8-bit text", IN("554 \xc3\xa9t\xc3\xa9 \xff\x80\r\n"), DONE, ALL,
    554, "", 1, "\xc3\xa9t\xc3\xa9 \xff\x80" },
  { "lowest code", IN("200 x\r\n"), DONE, ALL, 200, "", 1, "x" },
  { "highest code", IN("559 x\r\n"), DONE, ALL, 559, "", 1, "x" },
  { "rest unconsumed", IN("250 one\r\n221 two\r\n"), DONE, 9,
    250, "", 1, "one" },
  { "garbage after", IN("250 ok\r\n\0\r\n"), DONE, 8, 250, "", 1, "ok" },

  /* enhanced status codes (RFC 3463) */
  { "enhanced", IN("250 2.1.0 Sender ok\r\n"), DONE, ALL,
    250, "2.1.0", 1, "Sender ok" },
  { "enhanced on all lines", IN("550-5.7.1 first\r\n550-5.7.1 second\r\n"
                                "550 5.7.1 third\r\n"), DONE, ALL,
    550, "5.7.1", 3, "first\nsecond\nthird" },
  { "enhanced longest", IN("451 4.123.456 x\r\n"), DONE, ALL,
    451, "4.123.456", 1, "x" },
  { "enhanced alone", IN("250 2.0.0\r\n"), DONE, ALL, 250, "2.0.0", 1, "" },
  { "enhanced alone, LF", IN("250 2.0.0\n"), DONE, ALL, 250, "2.0.0", 1, "" },
  { "enhanced alone on all lines", IN("250-2.0.0\r\n250 2.0.0\r\n"), DONE,
    ALL, 250, "2.0.0", 2, "\n" },
  { "enhanced mismatched", IN("550-5.7.1 first\r\n550 5.7.2 second\r\n"),
    DONE, ALL, 550, "5.7.1", 2, "first\n5.7.2 second" },
  { "enhanced longer later", IN("250-2.0.0 a\r\n250 2.0.01 b\r\n"), DONE,
    ALL, 250, "2.0.0", 2, "a\n2.0.01 b" },
  { "enhanced shorter later", IN("250-2.0.0 a\r\n250 2.0\r\n"), DONE, ALL,
    250, "2.0.0", 2, "a\n2.0" },
  { "enhanced glued later", IN("250-2.0.0 a\r\n250 2.0.0b\r\n"), DONE, ALL,
    250, "2.0.0", 2, "a\n2.0.0b" },
  { "enhanced on later line only", IN("250-hello\r\n250 2.0.0 ok\r\n"),
    DONE, ALL, 250, "", 2, "hello\n2.0.0 ok" },
  { "enhanced absent", IN("250 ok 2.0.0\r\n"), DONE, ALL,
    250, "", 1, "ok 2.0.0" },
  { "enhanced class 3", IN("250 3.0.0 x\r\n"), DONE, ALL,
    250, "", 1, "3.0.0 x" },
  { "enhanced class 22", IN("250 22.0.0 x\r\n"), DONE, ALL,
    250, "", 1, "22.0.0 x" },
  { "enhanced subject 4 digits", IN("250 2.1234.0 x\r\n"), DONE, ALL,
    250, "", 1, "2.1234.0 x" },
  { "enhanced detail 4 digits", IN("250 2.0.1234 x\r\n"), DONE, ALL,
    250, "", 1, "2.0.1234 x" },
  { "enhanced no detail", IN("250 2.0. x\r\n"), DONE, ALL,
    250, "", 1, "2.0. x" },
  { "enhanced empty subject", IN("250 2..0 x\r\n"), DONE, ALL,
    250, "", 1, "2..0 x" },
  { "enhanced two parts", IN("250 2.0 x\r\n"), DONE, ALL,
    250, "", 1, "2.0 x" },
  { "enhanced four parts", IN("250 2.0.0.1 x\r\n"), DONE, ALL,
    250, "", 1, "2.0.0.1 x" },
  { "enhanced glued", IN("250 2.0.0x\r\n"), DONE, ALL,
    250, "", 1, "2.0.0x" },
  { "enhanced then tab", IN("250 2.0.0\tx\r\n"), DONE, ALL,
    250, "", 1, "2.0.0\tx" },
  { "enhanced then CR", IN("250 2.0.0\rx\r\n"), DONE, ALL,
    250, "", 1, "2.0.0\rx" },
  { "enhanced after two spaces", IN("250  2.0.0 x\r\n"), DONE, ALL,
    250, "", 1, " 2.0.0 x" },
  { "enhanced cut by end of line", IN("250 2.\r\n"), DONE, ALL,
    250, "", 1, "2." },
  { "enhanced on continuation", IN("250-2.0.0\r\n250 ok\r\n"), DONE, ALL,
    250, "2.0.0", 2, "\nok" },

  /* errors: used counts the offending octet */
  { "codes differ", IN("250-a\r\n251 b\r\n"), ESYNTAX, 10, 0, 0, 0, 0 },
  { "classes differ", IN("250-a\r\n550 b\r\n"), ESYNTAX, 10, 0, 0, 0, 0 },
  { "first digit 1", IN("150 x\r\n"), ESYNTAX, 1, 0, 0, 0, 0 },
  { "first digit 6", IN("650 x\r\n"), ESYNTAX, 1, 0, 0, 0, 0 },
  { "second digit 6", IN("260 x\r\n"), ESYNTAX, 2, 0, 0, 0, 0 },
  { "second digit letter", IN("2a0 x\r\n"), ESYNTAX, 2, 0, 0, 0, 0 },
  { "third digit letter", IN("25x x\r\n"), ESYNTAX, 3, 0, 0, 0, 0 },
  { "two digits", IN("25\r\n"), ESYNTAX, 4, 0, 0, 0, 0 },
  { "two digits, LF", IN("25\n"), ESYNTAX, 3, 0, 0, 0, 0 },
  { "four digits", IN("2500 x\r\n"), ESYNTAX, 4, 0, 0, 0, 0 },
  { "empty line", IN("\r\n"), ESYNTAX, 2, 0, 0, 0, 0 },
  { "empty line, LF", IN("\n"), ESYNTAX, 1, 0, 0, 0, 0 },
  { "leading space", IN(" 250 x\r\n"), ESYNTAX, 1, 0, 0, 0, 0 },
  { "bad separator", IN("250x\r\n"), ESYNTAX, 4, 0, 0, 0, 0 },
  { "tab separator", IN("250\tx\r\n"), ESYNTAX, 4, 0, 0, 0, 0 },
  { "CR separator", IN("250\rx\r\n"), ESYNTAX, 5, 0, 0, 0, 0 },
  { "NUL in text", IN("250 a\0b\r\n"), ESYNTAX, 6, 0, 0, 0, 0 },
  { "NUL in code", IN("2\0"), ESYNTAX, 2, 0, 0, 0, 0 },
  { "NUL in enhanced code", IN("250 2.\0"), ESYNTAX, 7, 0, 0, 0, 0 },
  { "NUL after enhanced code", IN("250-2.0.0 a\r\n250 2.0\0"), ESYNTAX, 21,
    0, 0, 0, 0 },
  { "NUL in later line", IN("250-a\r\n250 \0"), ESYNTAX, 12, 0, 0, 0, 0 },
  { "ESC in text", IN("250 \x1b[2J\r\n"), ESYNTAX, 5, 0, 0, 0, 0 },
  { "DEL in text", IN("250 \x7f\r\n"), ESYNTAX, 5, 0, 0, 0, 0 },

  /* not finished: everything consumed, more wanted */
  { "empty input", IN(""), MORE, ALL, 0, 0, 0, 0 },
  { "no line end", IN("250 ok"), MORE, ALL, 0, 0, 0, 0 },
  { "CR at the end", IN("250 ok\r"), MORE, ALL, 0, 0, 0, 0 },
  { "continuation", IN("250-a\r\n"), MORE, ALL, 0, 0, 0, 0 },
};

/* Feed in[0 .. len) in pieces ending at cuts[0 .. ncuts) and at len,
 * stopping at the first status that is not MORE; *used totals the
 * consumption. */
static smtp_reply_status feed_cut(smtp_reply *r, const unsigned char *in,
                                  size_t len, const size_t *cuts,
                                  size_t ncuts, size_t *used)
{
  size_t pos = 0, k;
  smtp_reply_status s = MORE;

  for (k = 0; k <= ncuts; k++) {
    size_t end = k < ncuts ? cuts[k] : len, u;
    s = smtp_reply_feed(r, in + pos, end - pos, &u);
    CHECK(u <= end - pos);
    CHECK(s != MORE || u == end - pos);
    pos += u;
    if (s != MORE)
      break;
  }
  *used = pos;
  return s;
}

static void check_result(const reply_case *c, const smtp_reply *r,
                         smtp_reply_status s, size_t used)
{
  CHECK_INT(s, c->status);
  CHECK_INT(used, c->used == ALL ? c->len : c->used);
  if (s != DONE || c->status != DONE)
    return;
  CHECK_INT(r->code, c->code);
  CHECK_STR(r->enhanced, c->enhanced);
  CHECK_INT(r->lines, c->lines);
  CHECK_MEM(r->text, r->text_len, c->text, strlen(c->text));
  CHECK(r->text[r->text_len] == '\0');
}

static smtp_reply parser;       /* 8 KiB: keep it off the stack */
static size_t cuts[16384];

static void run_cut(const reply_case *c, size_t ncuts)
{
  smtp_reply_status s;
  size_t used;

  smtp_reply_reset(&parser);
  s = feed_cut(&parser, (const unsigned char *)c->in, c->len, cuts, ncuts,
               &used);
  check_result(c, &parser, s, used);
}

static void run_case(const reply_case *c)
{
  size_t i, j;

  h_begin(c->name, "whole");
  run_cut(c, 0);
  h_end();

  h_begin(c->name, "bytewise");
  for (i = 1; i < c->len; i++)
    cuts[i - 1] = i;
  run_cut(c, c->len > 0 ? c->len - 1 : 0);
  h_end();

  h_begin(c->name, "every split");
  for (i = 0; i <= c->len; i += c->len > SPLIT1_MAX ? SPLIT1_STEP : 1) {
    cuts[0] = i;
    run_cut(c, 1);
  }
  h_end();

  if (c->len > SPLIT2_MAX)
    return;
  h_begin(c->name, "every two splits");
  for (i = 0; i <= c->len; i++)
    for (j = i; j <= c->len; j++) {
      cuts[0] = i;
      cuts[1] = j;
      run_cut(c, 2);
    }
  h_end();
}

/* Inputs too big to write out: built here. */

static char big_in[12000], big_text[12000];

static size_t fill(char *dst, size_t at, const char *s, size_t n)
{
  memcpy(dst + at, s, n);
  return at + n;
}

static size_t repeat(char *dst, size_t at, char c, size_t n)
{
  memset(dst + at, c, n);
  return at + n;
}

static void run_built(const char *name, size_t in_len, smtp_reply_status s,
                      size_t used, const char *enhanced, unsigned lines,
                      size_t text_len)
{
  reply_case c;

  big_text[text_len] = '\0';
  c.name = name;
  c.in = big_in;
  c.len = in_len;
  c.status = s;
  c.used = used;
  c.code = 250;
  c.enhanced = enhanced;
  c.lines = lines;
  c.text = big_text;
  run_case(&c);
}

static void test_line_bounds(void)
{
  const size_t max = SMTP_REPLY_LINE_MAX, room = max - 4;
  size_t n;

  /* exactly the longest line: the CRLF does not count */
  n = repeat(big_in, fill(big_in, 0, "250 ", 4), 'x', room);
  n = fill(big_in, n, "\r\n", 2);
  repeat(big_text, 0, 'x', room);
  run_built("longest line", n, DONE, ALL, "", 1, room);

  big_in[n - 2] = '\n';
  run_built("longest line, LF", n - 1, DONE, ALL, "", 1, room);

  /* one octet more is refused before any line end arrives */
  n = repeat(big_in, fill(big_in, 0, "250 ", 4), 'x', room + 1);
  run_built("line one too long", n, ETOOLONG, max + 1, "", 0, 0);

  n = repeat(big_in, fill(big_in, 0, "250-", 4), 'x', 3000);
  run_built("endless line", n, ETOOLONG, max + 1, "", 0, 0);

  /* a bare CR is text, so it counts once it is known not to end the line */
  n = repeat(big_in, fill(big_in, 0, "250 ", 4), 'x', room);
  n = fill(big_in, n, "\rx", 2);
  run_built("longest line and bare CR", n, ETOOLONG, max + 2, "", 0, 0);

  n = repeat(big_in, fill(big_in, 0, "250 ", 4), 'x', room);
  n = fill(big_in, n, "\r\r\n", 3);
  run_built("longest line and CR CRLF", n, ETOOLONG, max + 2, "", 0, 0);
}

static void test_line_count(void)
{
  size_t n = 0, t = 0;
  unsigned i;

  for (i = 1; i < SMTP_REPLY_LINES_MAX; i++) {
    n = fill(big_in, n, "250-x\r\n", 7);
    t = fill(big_text, t, "x\n", 2);
  }
  n = fill(big_in, n, "250 x\r\n", 7);
  t = fill(big_text, t, "x", 1);
  run_built("most lines", n, DONE, ALL, "", SMTP_REPLY_LINES_MAX, t);

  /* the 128th line promising a 129th is refused at its end */
  big_in[n - 4] = '-';
  n = fill(big_in, n, "250 x\r\n", 7);
  run_built("one line too many", n, ETOOMANY,
            (size_t)SMTP_REPLY_LINES_MAX * 7, "", 0, 0);
}

/* Four full lines and a fifth of `last` octets of text; with `enh` every
 * line carries the code "2.0.0 ", which does not count as text. */
static size_t text_lines(int enh, size_t last, size_t *text_len)
{
  const char *head = enh ? "250-2.0.0 " : "250-";
  size_t hl = strlen(head), each = SMTP_REPLY_LINE_MAX - hl, n = 0, t = 0;
  int i;

  for (i = 0; i < 4; i++) {
    n = repeat(big_in, fill(big_in, n, head, hl), 'a', each);
    n = fill(big_in, n, "\r\n", 2);
    t = repeat(big_text, t, 'a', each);
    t = fill(big_text, t, "\n", 1);
  }
  n = fill(big_in, n, head, hl);
  big_in[n - hl + 3] = ' ';   /* the fifth line is the last */
  n = repeat(big_in, n, 'b', last);
  n = fill(big_in, n, "\r\n", 2);
  t = repeat(big_text, t, 'b', last);
  *text_len = t;
  return n;
}

static void test_text_bound(void)
{
  size_t n, t, fifth;

  /* 4 lines of 2044 octets and 3 newlines leave 13 octets: '\n' + 12 */
  fifth = SMTP_REPLY_TEXT_MAX - 4 * (SMTP_REPLY_LINE_MAX - 4) - 4;
  n = text_lines(0, fifth, &t);
  CHECK_INT(t, SMTP_REPLY_TEXT_MAX);
  run_built("most text", n, DONE, ALL, "", 5, t);
  n = text_lines(0, fifth + 1, &t);
  run_built("one octet of text too many", n, ETOOMANY, n - 2, "", 0, 0);

  /* stripped codes must not count, or this reply would not fit */
  fifth = SMTP_REPLY_TEXT_MAX - 4 * (SMTP_REPLY_LINE_MAX - 10) - 4;
  n = text_lines(1, fifth, &t);
  CHECK_INT(t, SMTP_REPLY_TEXT_MAX);
  run_built("most text, codes stripped", n, DONE, ALL, "2.0.0", 5, t);
  n = text_lines(1, fifth + 1, &t);
  run_built("text too long, codes stripped", n, ETOOMANY, n - 2, "", 0, 0);
}

/* Replies back to back in one stream, as the engine sees them: reset after
 * each DONE and go on with the rest of the same chunk. */
static void test_stream(void)
{
  static const char in[] =
    "220 hi\r\n250-2.0.0 a\r\n250 2.0.0 b\r\n354 go\n";
  static const int codes[] = { 220, 250, 354 };
  static const char *const texts[] = { "hi", "a\nb", "go" };
  static const char *const enhanced[] = { "", "2.0.0", "" };
  const size_t len = sizeof in - 1;
  size_t chunk;

  for (chunk = 1; chunk <= len; chunk++) {
    char variant[32];
    size_t pos = 0, end = 0;
    unsigned got = 0;

    snprintf(variant, sizeof variant, "chunks of %zu", chunk);
    h_begin("replies back to back", variant);
    smtp_reply_reset(&parser);
    while (pos < len) {
      size_t u;
      smtp_reply_status s;

      if (pos == end)
        end = pos + chunk < len ? pos + chunk : len;
      s = smtp_reply_feed(&parser, (const unsigned char *)in + pos,
                          end - pos, &u);
      pos += u;
      if (s == MORE)
        continue;
      CHECK_INT(s, DONE);
      if (s != DONE || got == 3)
        break;
      CHECK_INT(parser.code, codes[got]);
      CHECK_STR(parser.text, texts[got]);
      CHECK_STR(parser.enhanced, enhanced[got]);
      got++;
      smtp_reply_reset(&parser);
    }
    CHECK_INT(got, 3);
    h_end();
  }
}

static void test_sticky(void)
{
  size_t u;

  h_begin("errors stay set", "");
  smtp_reply_reset(&parser);
  CHECK_INT(smtp_reply_feed(&parser, (const unsigned char *)"2x", 2, &u),
            ESYNTAX);
  CHECK_INT(smtp_reply_feed(&parser, (const unsigned char *)"250 ok\r\n", 8,
                            &u), ESYNTAX);
  CHECK_INT(u, 0);
  smtp_reply_reset(&parser);
  CHECK_INT(smtp_reply_feed(&parser, (const unsigned char *)"250 ok\r\n", 8,
                            &u), DONE);
  CHECK_INT(u, 8);
  h_end();

  h_begin("done stays done until reset", "");
  CHECK_INT(smtp_reply_feed(&parser, (const unsigned char *)"221 x\r\n", 7,
                            &u), DONE);
  CHECK_INT(u, 0);
  CHECK_STR(parser.text, "ok");
  h_end();
}

static void test_status_text(void)
{
  static const smtp_reply_status all[] = { MORE, DONE, ETOOLONG, ETOOMANY,
                                            ESYNTAX };
  size_t i, j;

  h_begin("status texts", "");
  for (i = 0; i < sizeof all / sizeof all[0]; i++) {
    const char *t = smtp_reply_status_text(all[i]);
    CHECK(t != NULL && *t != '\0');
    for (j = 0; j < i; j++)
      CHECK(strcmp(t, smtp_reply_status_text(all[j])) != 0);
  }
  CHECK_STR(smtp_reply_status_text(ETOOLONG), "reply line too long");
  h_end();
}

int main(void)
{
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case(&cases[i]);
  test_line_bounds();
  test_line_count();
  test_text_bound();
  test_stream();
  test_sticky();
  test_status_text();
  return h_summary();
}
