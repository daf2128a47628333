/*
 * test_engine.c -- the SMTP engine driven by scripted server bytes.
 *
 * Each test is a dialogue: the server's bytes go in, the client's bytes and
 * the events come out and are compared exactly.  Every test runs with the
 * bytes moved whole, one at a time, and in chunks of three -- in both
 * directions, and for message bodies too -- so no result may depend on
 * where a transport cuts the stream.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "../src/engine.h"
#include "harness.h"

#define HELO "client.example"

#define ALL_EXT (SMTP_EXT_SIZE | SMTP_EXT_PIPELINING | SMTP_EXT_8BITMIME | \
                 SMTP_EXT_SMTPUTF8 | SMTP_EXT_ENHANCED | SMTP_EXT_STARTTLS | \
                 SMTP_EXT_AUTH | SMTP_EXT_DSN | SMTP_EXT_CHUNKING)

/* EHLO replies: with and without PIPELINING. */
#define EHLO_PIPE "250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
#define EHLO_LOCK "250-mx.example.net\r\n250 8BITMIME\r\n"

typedef struct {
  smtp_engine e;
  size_t chunk;                 /* most bytes moved at once, either way */
  unsigned char out[1u << 18];  /* client bytes not checked yet */
  size_t out_len;
  char log[8192];               /* events not checked yet: "kind code;" */
  size_t log_len;
  unsigned seen;                /* every state flag seen since start */
  char enhanced[16];            /* the last event's reply */
  char text[256];
} session;

static session S;               /* ~300 KiB: not on the stack */

static const char *event_name(smtp_event_kind k)
{
  static const char *const names[] = {
    "?", "greeting", "ehlo", "helo", "starttls", "auth", "mail", "rcpt", "data", "message",
    "rset", "noop", "quit"
  };
  return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static size_t min2(size_t a, size_t b)
{
  return a < b ? a : b;
}

static size_t min3(size_t a, size_t b, size_t c)
{
  return min2(min2(a, b), c);
}

/* smtp_engine_state, checking what must hold whatever happened before. */
static unsigned state(session *s)
{
  unsigned st = smtp_engine_state(&s->e);

  if (s->seen & SMTP_CLOSED)
    CHECK(st & SMTP_CLOSED);            /* CLOSED is final */
  if (st & SMTP_CLOSED)
    CHECK((st & ~(SMTP_CLOSED | SMTP_EVENT)) == 0);
  s->seen |= st;
  return st;
}

static void log_event(session *s)
{
  const smtp_event *ev = smtp_engine_event(&s->e);
  size_t room = sizeof s->log - s->log_len;
  int n;

  CHECK(ev != NULL && ev->reply != NULL);
  if (ev == NULL || ev->reply == NULL)
    return;
  CHECK(ev->reply->code >= 200 && ev->reply->code <= 599);
  if (ev->kind == SMTP_EV_RCPT)
    n = snprintf(s->log + s->log_len, room, "rcpt#%u %d;", ev->index,
                 ev->reply->code);
  else
    n = snprintf(s->log + s->log_len, room, "%s %d;", event_name(ev->kind),
                 ev->reply->code);
  CHECK(n > 0 && (size_t)n < room);
  if (n > 0 && (size_t)n < room)
    s->log_len += (size_t)n;
  memcpy(s->enhanced, ev->reply->enhanced, sizeof s->enhanced);
  /* a prefix is enough to compare */
  memcpy(s->text, ev->reply->text,
         min2(ev->reply->text_len + 1, sizeof s->text - 1));
  s->text[sizeof s->text - 1] = '\0';
}

/* Write what the engine offers and take its events, until it wants input
 * or a call from the application. */
static void drain(session *s)
{
  for (;;) {
    unsigned st = state(s);

    if (st & SMTP_SENDREC) {
      size_t n;
      const unsigned char *p = smtp_engine_sendrec_buf(&s->e, &n);

      CHECK(n > 0);
      n = min3(n, s->chunk, sizeof s->out - s->out_len);
      CHECK(n > 0);
      if (n == 0)
        return;
      memcpy(s->out + s->out_len, p, n);
      s->out_len += n;
      smtp_engine_sendrec_ack(&s->e, n);
    } else if (st & SMTP_EVENT) {
      log_event(s);
      smtp_engine_event_ack(&s->e);
    } else {
      return;
    }
  }
}

/* The server sends len bytes; returns how many the engine asked for. */
static size_t server_n(session *s, const void *p, size_t len)
{
  size_t pos = 0;

  drain(s);
  while (pos < len && (state(s) & SMTP_RECVREC)) {
    size_t room, n;
    unsigned char *b = smtp_engine_recvrec_buf(&s->e, &room);

    CHECK(room > 0);
    n = min3(len - pos, room, s->chunk);
    if (n == 0)
      break;
    memcpy(b, (const unsigned char *)p + pos, n);
    smtp_engine_recvrec_ack(&s->e, n);
    pos += n;
    drain(s);
  }
  return pos;
}

#define server(s, text) \
  CHECK_INT(server_n((s), (text), strlen(text)), strlen(text))

#define expect_out(s, want) \
  do { drain(s); CHECK_MEM((s)->out, (s)->out_len, (want), strlen(want)); \
       (s)->out_len = 0; } while (0)

#define expect_log(s, want) \
  do { drain(s); CHECK_MEM((s)->log, (s)->log_len, (want), strlen(want)); \
       (s)->log_len = 0; } while (0)

#define expect_state(s, want) \
  do { drain(s); CHECK_INT(state(s), (want)); } while (0)

#define expect_error(s, k, st, c) \
  do { const smtp_error *e_ = smtp_engine_last_error(&(s)->e); \
       CHECK_INT(e_->kind, (k)); CHECK_INT(e_->stage, (st)); \
       CHECK_INT(e_->code, (c)); } while (0)

/* The whole of what SMTP_SENDREC offers right now, without writing it. */
#define expect_sendrec(s, want) \
  do { size_t n_ = 0; const unsigned char *p_ = NULL; \
       if (smtp_engine_state(&(s)->e) & SMTP_SENDREC) \
         p_ = smtp_engine_sendrec_buf(&(s)->e, &n_); \
       CHECK_MEM(p_ ? p_ : (const unsigned char *)"", n_, (want), \
                 strlen(want)); } while (0)

static void start(session *s, unsigned opts)
{
  CHECK_INT(smtp_engine_init(&s->e, HELO, opts), SMTP_OK);
  s->out_len = 0;
  s->log_len = 0;
  s->seen = 0;
}

/* Greeting and EHLO: the session is ready for a transaction. */
static void ready(session *s, unsigned opts, const char *ehlo_reply)
{
  start(s, opts);
  server(s, "220 mx.example.net ESMTP\r\n");
  expect_out(s, "EHLO " HELO "\r\n");
  server(s, ehlo_reply);
  expect_out(s, "");
  expect_log(s, "greeting 220;ehlo 250;");
  expect_state(s, SMTP_IDLE);
}

/* MAIL FROM, one RCPT TO and DATA, each queued. */
static void envelope(session *s, const char *from, const char *to)
{
  CHECK_INT(smtp_engine_mail(&s->e, from, ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, to, ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
}

/* MAIL, one RCPT and DATA pipelined and accepted: the body is wanted. */
static void to_body(session *s)
{
  ready(s, 0, EHLO_PIPE);
  envelope(s, "a@b", "c@d");
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
  server(s, "250 ok\r\n250 ok\r\n354 go ahead\r\n");
  expect_log(s, "mail 250;rcpt#0 250;data 354;");
  expect_state(s, SMTP_SENDAPP);
}

/* Body bytes in pieces of at most s->chunk, writing whenever it is full. */
static void body(session *s, const void *p, size_t len)
{
  size_t pos = 0;

  while (pos < len) {
    size_t want = min2(len - pos, s->chunk);
    size_t n = smtp_engine_body(&s->e, (const unsigned char *)p + pos, want);

    if (n == 0) {
      drain(s);
      n = smtp_engine_body(&s->e, (const unsigned char *)p + pos, want);
      CHECK(n > 0);
      if (n == 0)
        return;
    }
    pos += n;
  }
}

static void body_end(session *s)
{
  int r = smtp_engine_body_end(&s->e);

  if (r == SMTP_AGAIN) {
    drain(s);
    r = smtp_engine_body_end(&s->e);
  }
  CHECK_INT(r, SMTP_OK);
}

/* ---- session start ---- */

static void t_caps(session *s)
{
  const smtp_caps *c;

  start(s, 0);
  expect_state(s, SMTP_RECVREC);
  server(s, "220 mx.example.net ESMTP ready\r\n");
  expect_log(s, "greeting 220;");
  expect_out(s, "EHLO client.example\r\n");
  expect_state(s, SMTP_RECVREC);
  server(s, "250-mx.example.net Hello client.example\r\n"
            "250-SIZE 35882577\r\n"
            "250-PIPELINING\r\n"
            "250-AUTH PLAIN LOGIN XOAUTH2\r\n"
            "250-8BITMIME\r\n"
            "250-SMTPUTF8\r\n"
            "250-ENHANCEDSTATUSCODES\r\n"
            "250-STARTTLS\r\n"
            "250-DSN\r\n"
            "250 CHUNKING\r\n");
  expect_log(s, "ehlo 250;");
  expect_out(s, "");
  expect_state(s, SMTP_IDLE);
  c = smtp_engine_caps(&s->e);
  CHECK_INT(c->ext, ALL_EXT);
  CHECK_INT(c->size, 35882577);
  CHECK_STR(c->auth, "PLAIN LOGIN XOAUTH2");
}

static void t_caps_variants(session *s)
{
  const smtp_caps *c = smtp_engine_caps(&s->e);

  /* keywords are case-insensitive; "AUTH=" is the pre-RFC 4954 form; a
   * keyword is matched whole; the first line is the server's name */
  start(s, 0);
  server(s, "220 mx\r\n");
  server(s, "250-PIPELINING\r\n250-size\r\n250-auth=LOGIN\r\n250-SIZEX 5\r\n"
            "250-AUTHX FOO\r\n250-X-EXPS GSSAPI\r\n250 8bitmime\r\n");
  expect_log(s, "greeting 220;ehlo 250;");
  CHECK_INT(c->ext, SMTP_EXT_SIZE | SMTP_EXT_AUTH | SMTP_EXT_8BITMIME);
  CHECK_INT(c->size, 0);
  CHECK_STR(c->auth, "LOGIN");

  /* a SIZE beyond any integer saturates instead of wrapping */
  start(s, 0);
  server(s, "220 mx\r\n");
  server(s, "250-mx\r\n250 SIZE 99999999999999999999999999\r\n");
  CHECK_INT(c->ext, SMTP_EXT_SIZE);
  CHECK(c->size == ULONG_MAX);

  /* a list of mechanisms too long for caps.auth is not overrun */
  start(s, 0);
  server(s, "220 mx\r\n");
  server(s, "250-mx\r\n250 AUTH "
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            " PLAIN\r\n");
  CHECK_INT(c->ext, SMTP_EXT_AUTH);
  CHECK(strlen(c->auth) < sizeof c->auth);
}

static void t_greeting_multiline(session *s)
{
  start(s, 0);
  server(s, "220-mx.example.net ESMTP\r\n220-no UCE\r\n220 ready\r\n");
  expect_log(s, "greeting 220;");
  expect_out(s, "EHLO client.example\r\n");
}

static void t_ehlo_refused(session *s)
{
  static const char *const refusals[] = {
    "500 5.5.1 unrecognized command\r\n", "502 5.5.2 not implemented\r\n"
  };
  size_t i;

  for (i = 0; i < 2; i++) {
    start(s, 0);
    server(s, "220 mx ESMTP\r\n");
    expect_out(s, "EHLO client.example\r\n");
    server(s, refusals[i]);
    expect_out(s, "HELO client.example\r\n");
    server(s, "250 mx\r\n");
    expect_log(s, i == 0 ? "greeting 220;ehlo 500;helo 250;"
                         : "greeting 220;ehlo 502;helo 250;");
    expect_state(s, SMTP_IDLE);
    CHECK_INT(smtp_engine_caps(&s->e)->ext, 0);
    /* no PIPELINING after HELO: one command at a time */
    CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
    CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_AGAIN);
    expect_out(s, "MAIL FROM:<a@b>\r\n");
  }
}

static void t_ehlo_helo_fail(session *s)
{
  start(s, 0);
  server(s, "220 mx\r\n");
  server(s, "451 4.3.0 try later\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_REJECTED, SMTP_STAGE_EHLO, 451);

  start(s, 0);
  server(s, "220 mx\r\n");
  server(s, "502 no\r\n");
  server(s, "550 5.7.1 go away\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_REJECTED, SMTP_STAGE_EHLO, 550);
}

static void t_greeting_rejected(session *s)
{
  const smtp_error *err = smtp_engine_last_error(&s->e);

  start(s, 0);
  server(s, "554-5.7.1 mx.example.net\r\n554 5.7.1 no mail from you\r\n");
  expect_out(s, "");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_REJECTED, SMTP_STAGE_GREETING, 554);
  CHECK_STR(err->enhanced, "5.7.1");
  CHECK(strstr(err->message, "no mail from you") != NULL);
  CHECK(strchr(err->message, '\n') == NULL);
  /* nothing works any more, and asking does no harm */
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_ESTATE);
  CHECK_INT(smtp_engine_quit(&s->e), SMTP_ESTATE);
  smtp_engine_recv_eof(&s->e);
  smtp_engine_fail(&s->e, SMTP_ERR_TIMEOUT, smtp_engine_stage(&s->e), "late");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_REJECTED, SMTP_STAGE_GREETING, 554);
}

/* ---- 421: the server closes, at any stage ---- */

static void t_421(session *s)
{
  static const char in[] = "250 ok\r\n421 4.3.2 bye\r\n250 ok\r\n354 go\r\n";

  start(s, 0);
  server(s, "421 4.3.2 busy\r\n");
  expect_out(s, "");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_REJECTED, SMTP_STAGE_GREETING, 421);

  start(s, 0);
  server(s, "220 mx\r\n");
  server(s, "421 4.3.2 shutting down\r\n");
  expect_log(s, "greeting 220;");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_EHLO, 421);
  CHECK_STR(smtp_engine_last_error(&s->e)->enhanced, "4.3.2");

  ready(s, 0, EHLO_LOCK);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  server(s, "421 bye\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_MAIL, 421);

  ready(s, 0, EHLO_PIPE);
  envelope(s, "a@b", "c@d");
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
  server_n(s, in, sizeof in - 1);
  expect_log(s, "mail 250;");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_RCPT, 421);

  to_body(s);
  body(s, "hi\n", 3);
  body_end(s);
  expect_out(s, "hi\r\n.\r\n");
  server(s, "421 4.4.2 timeout\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_DATA, 421);

  ready(s, 0, EHLO_PIPE);
  CHECK_INT(smtp_engine_noop(&s->e), SMTP_OK);
  server(s, "421 idle too long\r\n");
  expect_out(s, "NOOP\r\n");
  expect_state(s, SMTP_CLOSED);
  CHECK_INT(smtp_engine_last_error(&s->e)->code, 421);
}

/* ---- transactions ---- */

static void t_pipelined(session *s)
{
  ready(s, 0, EHLO_PIPE);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "e@f", ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
  /* one write for the whole envelope (RFC 2920) */
  expect_sendrec(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
                    "DATA\r\n");
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
                "DATA\r\n");
  expect_state(s, SMTP_RECVREC);
  server(s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n"
            "354 end with <CRLF>.<CRLF>\r\n");
  expect_log(s, "mail 250;rcpt#0 250;rcpt#1 250;data 354;");
  expect_state(s, SMTP_SENDAPP);
  body(s, "Subject: hi\r\n\r\nhello\r\n", 22);
  body_end(s);
  expect_out(s, "Subject: hi\r\n\r\nhello\r\n.\r\n");
  expect_state(s, SMTP_RECVREC);
  server(s, "250 2.0.0 Ok: queued as 4Fq\r\n");
  expect_log(s, "message 250;");
  CHECK_STR(s->enhanced, "2.0.0");
  CHECK_STR(s->text, "Ok: queued as 4Fq");
  expect_state(s, SMTP_IDLE);
  CHECK_INT(smtp_engine_quit(&s->e), SMTP_OK);
  expect_out(s, "QUIT\r\n");
  server(s, "221 2.0.0 bye\r\n");
  expect_log(s, "quit 221;");
  expect_state(s, SMTP_CLOSED);
  smtp_engine_recv_eof(&s->e);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_NONE, SMTP_STAGE_CONNECT, 0);
}

static void t_lockstep(session *s)
{
  unsigned opts;

  for (opts = 0; opts < 2; opts++) {
    /* no PIPELINING offered, or offered and declined by option */
    if (opts == 0)
      ready(s, 0, EHLO_LOCK);
    else
      ready(s, SMTP_OPT_NO_PIPELINING, EHLO_PIPE);
    CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
    CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_AGAIN);
    CHECK_INT(smtp_engine_data(&s->e), SMTP_AGAIN);
    expect_out(s, "MAIL FROM:<a@b>\r\n");
    CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_AGAIN);
    server(s, "250 ok\r\n");
    expect_log(s, "mail 250;");
    CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
    CHECK_INT(smtp_engine_rcpt(&s->e, "e@f", ""), SMTP_AGAIN);
    expect_out(s, "RCPT TO:<c@d>\r\n");
    server(s, "250 ok\r\n");
    CHECK_INT(smtp_engine_rcpt(&s->e, "e@f", ""), SMTP_OK);
    CHECK_INT(smtp_engine_data(&s->e), SMTP_AGAIN);
    expect_out(s, "RCPT TO:<e@f>\r\n");
    server(s, "250 ok\r\n");
    expect_log(s, "rcpt#0 250;rcpt#1 250;");
    CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
    expect_out(s, "DATA\r\n");
    server(s, "354 go\r\n");
    expect_state(s, SMTP_SENDAPP);
    body(s, "x", 1);
    body_end(s);
    expect_out(s, "x\r\n.\r\n");
    server(s, "250 ok\r\n");
    expect_log(s, "data 354;message 250;");
    expect_state(s, SMTP_IDLE);
  }
}

static void t_rcpt_refused(session *s)
{
  ready(s, 0, EHLO_PIPE);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "r0@x", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "r1@x", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "r2@x", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "r3@x", ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<r0@x>\r\nRCPT TO:<r1@x>\r\n"
                "RCPT TO:<r2@x>\r\nRCPT TO:<r3@x>\r\nDATA\r\n");
  server(s, "250 ok\r\n250 ok\r\n550 5.1.1 no such user\r\n"
            "450 4.2.1 try later\r\n250 ok\r\n354 go\r\n");
  expect_log(s, "mail 250;rcpt#0 250;rcpt#1 550;rcpt#2 450;rcpt#3 250;"
                "data 354;");
  expect_state(s, SMTP_SENDAPP);
  body_end(s);
  expect_out(s, ".\r\n");
  server(s, "250 ok\r\n");
  expect_log(s, "message 250;");
  expect_state(s, SMTP_IDLE);
}

static void t_all_rcpt_refused(session *s)
{
  /* pipelined: DATA is already out; its refusal ends the transaction */
  ready(s, 0, EHLO_PIPE);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "e@f", ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\n"
                "DATA\r\n");
  server(s, "250 ok\r\n550 no\r\n550 no\r\n554 5.5.1 no valid recipients\r\n");
  expect_log(s, "mail 250;rcpt#0 550;rcpt#1 550;data 554;");
  expect_out(s, "RSET\r\n");
  server(s, "250 flushed\r\n");
  expect_log(s, "rset 250;");
  expect_state(s, SMTP_IDLE);
  CHECK(!(s->seen & SMTP_SENDAPP));

  /* pipelined, and the server says 354 anyway: an empty message ends it
   * (RFC 2920 3.1), still without a body phase */
  ready(s, 0, EHLO_PIPE);
  envelope(s, "a@b", "c@d");
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
  server(s, "250 ok\r\n550 no\r\n354 go\r\n");
  expect_out(s, ".\r\n");
  server(s, "554 no valid recipients\r\n");
  expect_log(s, "mail 250;rcpt#0 550;data 354;message 554;");
  expect_state(s, SMTP_IDLE);
  CHECK(!(s->seen & SMTP_SENDAPP));

  /* one at a time: data() sees there is nobody to send to */
  ready(s, 0, EHLO_LOCK);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  server(s, "250 ok\r\n");
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  server(s, "550 no\r\n");
  CHECK_INT(smtp_engine_data(&s->e), SMTP_EDONE);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRSET\r\n");
  server(s, "250 ok\r\n");
  expect_log(s, "mail 250;rcpt#0 550;rset 250;");
  CHECK_INT(smtp_engine_rcpt(&s->e, "e@f", ""), SMTP_EDONE);
  expect_state(s, SMTP_IDLE);
  CHECK(!(s->seen & SMTP_SENDAPP));
}

static void t_mail_refused(session *s)
{
  ready(s, 0, EHLO_LOCK);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  server(s, "550 5.7.1 sender refused\r\n");
  expect_log(s, "mail 550;");
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_EDONE);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_EDONE);
  expect_out(s, "MAIL FROM:<a@b>\r\n");   /* no RSET: nothing to reset */
  expect_state(s, SMTP_IDLE);
  CHECK_INT(smtp_engine_mail(&s->e, "", ""), SMTP_OK);
  expect_out(s, "MAIL FROM:<>\r\n");

  ready(s, 0, EHLO_PIPE);
  envelope(s, "a@b", "c@d");
  server(s, "550 5.7.1 sender refused\r\n503 5.5.1 no MAIL\r\n"
            "503 5.5.1 no valid recipients\r\n");
  expect_log(s, "mail 550;rcpt#0 503;data 503;");
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
  expect_state(s, SMTP_IDLE);
}

static void t_data_refused(session *s)
{
  ready(s, 0, EHLO_PIPE);
  envelope(s, "a@b", "c@d");
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
  server(s, "250 ok\r\n250 ok\r\n451 4.3.0 later\r\n");
  expect_log(s, "mail 250;rcpt#0 250;data 451;");
  expect_out(s, "RSET\r\n");
  server(s, "250 ok\r\n");
  expect_log(s, "rset 250;");
  expect_state(s, SMTP_IDLE);
}

static void t_message_verdict(session *s)
{
  to_body(s);
  body(s, "x\n", 2);
  body_end(s);
  expect_out(s, "x\r\n.\r\n");
  server(s, "554 5.7.1 spam\r\n");
  expect_log(s, "message 554;");
  CHECK_STR(s->enhanced, "5.7.1");
  expect_state(s, SMTP_IDLE);       /* a refused message leaves the session */

  /* and the next message goes through */
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", "SIZE=10 BODY=8BITMIME"), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", "NOTIFY=NEVER"), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
  expect_out(s, "MAIL FROM:<a@b> SIZE=10 BODY=8BITMIME\r\n"
                "RCPT TO:<c@d> NOTIFY=NEVER\r\nDATA\r\n");
  server(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  body_end(s);
  server(s, "250 2.0.0 queued\r\n");
  expect_out(s, ".\r\n");
  expect_log(s, "mail 250;rcpt#0 250;data 354;message 250;");
  expect_state(s, SMTP_IDLE);
}

static void t_noop_rset(session *s)
{
  ready(s, 0, EHLO_PIPE);
  CHECK_INT(smtp_engine_noop(&s->e), SMTP_OK);
  expect_out(s, "NOOP\r\n");
  expect_state(s, SMTP_RECVREC);
  server(s, "250 2.0.0 ok\r\n");
  CHECK_INT(smtp_engine_rset(&s->e), SMTP_OK);
  expect_out(s, "RSET\r\n");
  server(s, "250 2.0.0 ok\r\n");
  expect_log(s, "noop 250;rset 250;");
  expect_state(s, SMTP_IDLE);

  /* RSET mid-envelope drops the transaction */
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rset(&s->e), SMTP_OK);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRSET\r\n");
  server(s, "250 ok\r\n250 ok\r\n250 ok\r\n");
  expect_log(s, "mail 250;rcpt#0 250;rset 250;");
  expect_state(s, SMTP_IDLE);
}

static void t_many_rcpts(session *s)
{
  char to[SMTP_ARG_MAX + 1];
  unsigned queued = 0;
  int r;

  /* the pending queue is bounded: AGAIN until replies free it */
  ready(s, 0, EHLO_PIPE);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  while ((r = smtp_engine_rcpt(&s->e, "r@x", "")) == SMTP_OK)
    queued++;
  CHECK_INT(r, SMTP_AGAIN);
  CHECK_INT(queued, SMTP_PENDING_MAX - 1);
  drain(s);
  s->out_len = 0;
  server(s, "250 ok\r\n250 ok\r\n");
  CHECK_INT(smtp_engine_rcpt(&s->e, "r@x", ""), SMTP_OK);
  expect_out(s, "RCPT TO:<r@x>\r\n");
  CHECK_INT(smtp_engine_rcpt(&s->e, "r@x", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "r@x", ""), SMTP_AGAIN);

  /* the output buffer is bounded: AGAIN until the transport takes it */
  ready(s, 0, EHLO_PIPE);
  memset(to, 'x', SMTP_ARG_MAX);
  to[SMTP_ARG_MAX] = '\0';
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  queued = 0;
  while ((r = smtp_engine_rcpt(&s->e, to, "")) == SMTP_OK)
    queued++;
  CHECK_INT(r, SMTP_AGAIN);
  /* "MAIL FROM:<a@b>\r\n" is 17 octets, each "RCPT TO:<...>\r\n" 1036 */
  CHECK(17 + queued * (SMTP_ARG_MAX + 12) <= SMTP_OUT_SIZE);
  CHECK(17 + (queued + 1) * (SMTP_ARG_MAX + 12) > SMTP_OUT_SIZE);
  drain(s);
  CHECK_INT(smtp_engine_rcpt(&s->e, to, ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
  drain(s);
  CHECK_INT(s->out_len, 17 + (queued + 1) * (SMTP_ARG_MAX + 12) + 6);
}

/* ---- arguments ---- */

static void t_einval(session *s)
{
  char longest[SMTP_ARG_MAX + 2];

  CHECK_INT(smtp_engine_init(&s->e, "", 0), SMTP_EINVAL);
  CHECK_INT(smtp_engine_init(&s->e, "a b", 0), SMTP_EINVAL);
  CHECK_INT(smtp_engine_init(&s->e, "a\r\nQUIT", 0), SMTP_EINVAL);
  CHECK_INT(smtp_engine_init(&s->e, "a\n", 0), SMTP_EINVAL);

  ready(s, 0, EHLO_PIPE);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b\r\nRCPT TO:<x@y>", ""), SMTP_EINVAL);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b\n", ""), SMTP_EINVAL);
  CHECK_INT(smtp_engine_mail(&s->e, "a\rb", ""), SMTP_EINVAL);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", "SIZE=1\r\nRSET"), SMTP_EINVAL);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", "\n"), SMTP_EINVAL);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b>\r\n", ""), SMTP_EINVAL);
  memset(longest, 'x', sizeof longest - 1);
  longest[sizeof longest - 1] = '\0';       /* SMTP_ARG_MAX + 1 octets */
  CHECK_INT(smtp_engine_mail(&s->e, longest, ""), SMTP_EINVAL);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", longest), SMTP_EINVAL);
  expect_sendrec(s, "");
  expect_state(s, SMTP_IDLE);

  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d\r\nDATA", ""), SMTP_EINVAL);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", "NOTIFY=NEVER\n"), SMTP_EINVAL);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c\r", ""), SMTP_EINVAL);
  CHECK_INT(smtp_engine_rcpt(&s->e, longest, ""), SMTP_EINVAL);
  expect_sendrec(s, "MAIL FROM:<a@b>\r\n");
  longest[SMTP_ARG_MAX] = '\0';             /* exactly SMTP_ARG_MAX */
  CHECK_INT(smtp_engine_rcpt(&s->e, longest, ""), SMTP_OK);
}

static void t_misuse(session *s)
{
  start(s, 0);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_ESTATE);
  CHECK_INT(smtp_engine_rcpt(&s->e, "a@b", ""), SMTP_ESTATE);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_ESTATE);
  CHECK_INT(smtp_engine_noop(&s->e), SMTP_ESTATE);
  CHECK_INT(smtp_engine_quit(&s->e), SMTP_ESTATE);
  CHECK_INT(smtp_engine_rset(&s->e), SMTP_ESTATE);
  CHECK_INT(smtp_engine_body(&s->e, (const unsigned char *)"x", 1), 0);
  CHECK_INT(smtp_engine_body_end(&s->e), SMTP_ESTATE);
  expect_state(s, SMTP_RECVREC);

  ready(s, 0, EHLO_PIPE);
  CHECK_INT(smtp_engine_rcpt(&s->e, "a@b", ""), SMTP_ESTATE);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_ESTATE);
  CHECK_INT(smtp_engine_body_end(&s->e), SMTP_ESTATE);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_ESTATE);
  CHECK_INT(smtp_engine_quit(&s->e), SMTP_ESTATE);
  CHECK_INT(smtp_engine_noop(&s->e), SMTP_ESTATE);

  to_body(s);
  CHECK_INT(smtp_engine_rset(&s->e), SMTP_ESTATE);
  CHECK_INT(smtp_engine_quit(&s->e), SMTP_ESTATE);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_ESTATE);
  body_end(s);
  CHECK_INT(smtp_engine_body(&s->e, (const unsigned char *)"x", 1), 0);
  CHECK_INT(smtp_engine_body_end(&s->e), SMTP_ESTATE);
  expect_out(s, ".\r\n");
}

/* ---- bodies ---- */

typedef struct {
  const char *in;
  size_t len;
  const char *wire;
  size_t wire_len;
} body_case;

#define B(s) s, sizeof s - 1

static const body_case bodies[] = {
  { B("a\nb\r\n.c\rd\r"), B("a\r\nb\r\n..c\r\nd\r\n.\r\n") },
  { B(""), B(".\r\n") },
  { B("abc"), B("abc\r\n.\r\n") },
  { B("."), B("..\r\n.\r\n") },
  { B(".\n"), B("..\r\n.\r\n") },
  { B(".\r\n"), B("..\r\n.\r\n") },
  { B(".."), B("...\r\n.\r\n") },
  { B("a.b\r\n.\r\n"), B("a.b\r\n..\r\n.\r\n") },
  /* no way to end the data early ("SMTP smuggling") */
  { B("x\n.\nMAIL FROM:<e@vil>\n"), B("x\r\n..\r\nMAIL FROM:<e@vil>\r\n.\r\n") },
  { B("x\r.\rRSET\r"), B("x\r\n..\r\nRSET\r\n.\r\n") },
  { B("x\n.\r\n"), B("x\r\n..\r\n.\r\n") },
  { B("\r\r\n\n"), B("\r\n\r\n\r\n.\r\n") },
  { B("\n\n.x"), B("\r\n\r\n..x\r\n.\r\n") },
  { B("\r"), B("\r\n.\r\n") },
  { B("a\0\xff\r\n"), B("a\0\xff\r\n.\r\n") },
};

/* Each body, cut at every point; the pieces are fed in s->chunk parts. */
static void t_body_cases(session *s)
{
  size_t i, cut;

  for (i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
    const body_case *b = &bodies[i];

    for (cut = 0; cut <= b->len; cut++) {
      to_body(s);
      body(s, b->in, cut);
      body(s, b->in + cut, b->len - cut);
      body_end(s);
      drain(s);
      CHECK_MEM(s->out, s->out_len, b->wire, b->wire_len);
      s->out_len = 0;
      expect_state(s, SMTP_RECVREC);
    }
  }
}

/* An independent model of the DATA encoding: find the lines first (CRLF,
 * bare CR and bare LF each end one), then stuff and terminate. */
static size_t model_body(const unsigned char *in, size_t len,
                         unsigned char *out)
{
  size_t i = 0, o = 0;

  while (i < len) {
    size_t start = i;

    while (i < len && in[i] != '\r' && in[i] != '\n')
      i++;
    if (i > start && in[start] == '.')
      out[o++] = '.';
    memcpy(out + o, in + start, i - start);
    o += i - start;
    out[o++] = '\r';
    out[o++] = '\n';
    if (i < len && in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
      i++;
    if (i < len)
      i++;
  }
  memcpy(out + o, ".\r\n", 3);
  return o + 3;
}

static uint64_t rng_next(uint64_t *x)
{
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* Whatever reaches the wire has CRLF line ends only, and "CRLF.CRLF" only
 * at its end. */
static void check_wire(const unsigned char *w, size_t n)
{
  size_t i;

  CHECK(n >= 3 && memcmp(w + n - 3, ".\r\n", 3) == 0);
  for (i = 0; i < n; i++) {
    if (w[i] == '\r')
      CHECK(i + 1 < n && w[i + 1] == '\n');
    if (w[i] == '\n')
      CHECK(i > 0 && w[i - 1] == '\r');
    if (i + 5 <= n - 3 && memcmp(w + i, "\r\n.\r\n", 5) == 0)
      CHECK(!"CRLF.CRLF inside the body");
  }
}

static unsigned char body_in[100000], body_model[250003];

/* Random bodies, large enough to fill the output buffer many times. */
static void t_body_random(session *s)
{
  static const unsigned char alphabet[] = "ab.\r\n\r\n.\0\xff";
  uint64_t rng = 0x9e3779b97f4a7c15u;
  unsigned round;

  for (round = 0; round < 12; round++) {
    size_t len = (size_t)(rng_next(&rng) % sizeof body_in), i, pos = 0, m;

    if (round < 4)
      len %= 64;
    for (i = 0; i < len; i++)
      body_in[i] = alphabet[rng_next(&rng) % (sizeof alphabet - 1)];
    m = model_body(body_in, len, body_model);
    to_body(s);
    while (pos < len) {
      size_t n = (size_t)(rng_next(&rng) % 5000) + 1;
      if (n > len - pos)
        n = len - pos;
      body(s, body_in + pos, n);
      pos += n;
    }
    body_end(s);
    drain(s);
    CHECK_MEM(s->out, s->out_len, body_model, m);
    check_wire(s->out, s->out_len);
    s->out_len = 0;
  }
}

/* ---- bounds, closing, and errors from outside ---- */

static void t_bounds(session *s)
{
  static char line[4000];
  size_t i, n;

  start(s, 0);
  server(s, "220 mx\r\n");
  memcpy(line, "250-", 4);
  memset(line + 4, 'x', sizeof line - 4);
  n = server_n(s, line, sizeof line);
  CHECK(n <= SMTP_REPLY_LINE_MAX + 1 + SMTP_IN_SIZE);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_PROTOCOL, SMTP_STAGE_EHLO, 0);

  start(s, 0);
  server(s, "220 mx\r\n");
  for (i = 0; i <= SMTP_REPLY_LINES_MAX; i++)
    server_n(s, "250-x\r\n", 7);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_PROTOCOL, SMTP_STAGE_EHLO, 0);

  start(s, 0);
  server_n(s, "HTTP/1.1 400 Bad Request\r\n", 26);
  expect_out(s, "");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_PROTOCOL, SMTP_STAGE_GREETING, 0);
}

static void t_unsolicited(session *s)
{
  static const char in[] = "250 mx\r\n250 who asked?\r\n";
  size_t room;
  unsigned char *b;

  /* two replies in one read, the second answering nothing */
  start(s, 0);
  server(s, "220 mx\r\n");
  expect_out(s, "EHLO client.example\r\n");
  expect_log(s, "greeting 220;");
  b = smtp_engine_recvrec_buf(&s->e, &room);
  CHECK(room >= sizeof in - 1);
  memcpy(b, in, sizeof in - 1);
  smtp_engine_recvrec_ack(&s->e, sizeof in - 1);
  expect_log(s, "ehlo 250;");
  expect_state(s, SMTP_CLOSED);
  CHECK_INT(smtp_engine_last_error(&s->e)->kind, SMTP_ERR_PROTOCOL);
}

/* A reply cannot answer a command the client has not written yet: bytes
 * that arrive with the greeting, before EHLO went out, are injected (the
 * attack DESIGN.md names for STARTTLS). */
static void t_reply_before_command(session *s)
{
  static const char in[] = "220 mx\r\n250 mx\r\n";
  size_t room;
  unsigned char *b;

  start(s, 0);
  b = smtp_engine_recvrec_buf(&s->e, &room);
  memcpy(b, in, sizeof in - 1);
  smtp_engine_recvrec_ack(&s->e, sizeof in - 1);
  expect_log(s, "greeting 220;");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_PROTOCOL, SMTP_STAGE_EHLO, 0);
}

/* Pipelined MAIL, then data() with no recipient before MAIL's reply: once
 * MAIL is accepted the server holds a transaction, which must be reset or
 * the next MAIL gets "503 nested MAIL command". */
static void t_no_rcpt_pipelined(session *s)
{
  ready(s, 0, EHLO_PIPE);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_EDONE);
  server(s, "250 ok\r\n");
  server(s, "250 ok\r\n");
  expect_out(s, "MAIL FROM:<a@b>\r\nRSET\r\n");
  expect_log(s, "mail 250;rset 250;");
  expect_state(s, SMTP_IDLE);
}

static void t_eof(session *s)
{
  start(s, 0);
  smtp_engine_recv_eof(&s->e);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_GREETING, 0);

  start(s, 0);
  server(s, "220 mx\r\n");
  server(s, "250-mx\r\n250-PIPE");          /* mid-reply */
  smtp_engine_recv_eof(&s->e);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_EHLO, 0);

  ready(s, 0, EHLO_LOCK);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  drain(s);
  smtp_engine_recv_eof(&s->e);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_MAIL, 0);

  to_body(s);
  body_end(s);
  drain(s);
  smtp_engine_recv_eof(&s->e);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_DATA, 0);
  CHECK(smtp_engine_last_error(&s->e)->message[0] != '\0');

  /* the server hangs up instead of answering QUIT: clean all the same */
  ready(s, 0, EHLO_LOCK);
  CHECK_INT(smtp_engine_quit(&s->e), SMTP_OK);
  expect_out(s, "QUIT\r\n");
  smtp_engine_recv_eof(&s->e);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_NONE, SMTP_STAGE_CONNECT, 0);
  expect_log(s, "");
}

static void t_fail(session *s)
{
  start(s, 0);
  server(s, "220 mx\r\n");
  smtp_engine_fail(&s->e, SMTP_ERR_TIMEOUT, smtp_engine_stage(&s->e), "no reply in 30 s");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TIMEOUT, SMTP_STAGE_EHLO, 0);
  CHECK_STR(smtp_engine_last_error(&s->e)->message, "no reply in 30 s");
  smtp_engine_fail(&s->e, SMTP_ERR_TLS, smtp_engine_stage(&s->e), "second");   /* the first stays */
  smtp_engine_recv_eof(&s->e);
  expect_error(s, SMTP_ERR_TIMEOUT, SMTP_STAGE_EHLO, 0);

  /* after a clean QUIT nothing turns it into a failure */
  ready(s, 0, EHLO_LOCK);
  CHECK_INT(smtp_engine_quit(&s->e), SMTP_OK);
  server(s, "221 bye\r\n");
  smtp_engine_fail(&s->e, SMTP_ERR_TIMEOUT, smtp_engine_stage(&s->e), "late");
  expect_error(s, SMTP_ERR_NONE, SMTP_STAGE_CONNECT, 0);
}

static void t_names(session *s)
{
  (void)s;
  CHECK_STR(smtp_error_kind_name(SMTP_ERR_NONE), "none");
  CHECK_STR(smtp_error_kind_name(SMTP_ERR_PROTOCOL), "protocol");
  CHECK_STR(smtp_error_kind_name(SMTP_ERR_CLOSED), "closed");
  CHECK_STR(smtp_error_kind_name((smtp_error_kind)99), "?");
  CHECK_STR(smtp_stage_name(SMTP_STAGE_CONNECT), "connect");
  CHECK_STR(smtp_stage_name(SMTP_STAGE_GREETING), "greeting");
  CHECK_STR(smtp_stage_name(SMTP_STAGE_QUIT), "quit");
  CHECK_STR(smtp_stage_name((smtp_stage)99), "?");
}

/* ---- garbage: random servers against an application that keeps going ---- */

static const char *const tokens[] = {
  "220 mx\r\n", "250 ok\r\n", "250-mx\r\n250-PIPELINING\r\n250 SIZE 9\r\n",
  "354 go\r\n", "221 bye\r\n", "421 bye\r\n", "550 no\r\n", "502 no\r\n",
  "250-", "\r\n", "\n", "2", "5", "0", " ", ".", "\r", "\0"
};

static void act(session *s, uint64_t *rng)
{
  unsigned st = smtp_engine_state(&s->e), i, n;

  if (st & SMTP_IDLE) {
    switch (rng_next(rng) % 5) {
    case 0:
      (void)smtp_engine_quit(&s->e);
      return;
    case 1:
      (void)smtp_engine_noop(&s->e);
      return;
    default:
      (void)smtp_engine_mail(&s->e, "a@b", "");
      n = (unsigned)(rng_next(rng) % 4);
      for (i = 0; i < n; i++)
        (void)smtp_engine_rcpt(&s->e, "c@d", "");
      (void)smtp_engine_data(&s->e);
      return;
    }
  }
  if (st & SMTP_SENDAPP) {
    if (rng_next(rng) % 3)
      (void)smtp_engine_body(&s->e, (const unsigned char *)".\r\n.x\r",
                             (size_t)(rng_next(rng) % 7));
    else
      (void)smtp_engine_body_end(&s->e);
    return;
  }
  /* calls at the wrong time must be refused, not obeyed */
  (void)smtp_engine_rcpt(&s->e, "c@d", "");
  (void)smtp_engine_data(&s->e);
  (void)smtp_engine_rset(&s->e);
}

static void t_garbage(session *s)
{
  uint64_t rng = 0x2545f4914f6cdd1du + s->chunk;
  unsigned round, step;
  unsigned char junk[64];

  for (round = 0; round < 300; round++) {
    start(s, round % 7 == 0 ? SMTP_OPT_NO_PIPELINING : 0);
    for (step = 0; step < 400; step++) {
      uint64_t r = rng_next(&rng);

      drain(s);
      s->out_len = 0;
      s->log_len = 0;
      if (state(s) & SMTP_CLOSED)
        break;
      act(s, &rng);
      drain(s);
      if (r % 97 == 0) {
        smtp_engine_recv_eof(&s->e);
      } else if (r % 5 == 0) {
        size_t i, n = (size_t)(r >> 8) % sizeof junk;
        for (i = 0; i < n; i++)
          junk[i] = (unsigned char)rng_next(&rng);
        (void)server_n(s, junk, n);
      } else {
        const char *t = tokens[(r >> 8) % (sizeof tokens / sizeof tokens[0])];
        (void)server_n(s, t, *t ? strlen(t) : 1);
      }
    }
  }
}

/* ---- running ---- */

/* ---- CHUNKING, LMTP, AUTH, STARTTLS ---- */

#define EHLO_CHUNK "250-mx.example.net\r\n250-PIPELINING\r\n250 CHUNKING\r\n"

/* Feed BDAT chunks of the whole of p, the last one flagged. */
static int bdat_all(session *s, const char *p, size_t len, unsigned flags)
{
  size_t pos = 0;
  int r;

  do {
    size_t used = 0;
    r = smtp_engine_bdat(&s->e, (const unsigned char *)p + pos, len - pos, flags, &used);
    if (r == SMTP_AGAIN) {
      drain(s);
      r = smtp_engine_bdat(&s->e, (const unsigned char *)p + pos, len - pos, flags, &used);
    }
    if (r != SMTP_OK)
      return r;
    pos += used;
  } while (pos < len);
  return r;
}

static void t_bdat(session *s)
{
  ready(s, 0, EHLO_CHUNK);
  CHECK(smtp_engine_caps(&s->e)->ext & SMTP_EXT_CHUNKING);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n");
  /* the first chunk waits for the envelope's replies */
  {
    size_t used = 9;
    CHECK_INT(smtp_engine_bdat(&s->e, (const unsigned char *)"x", 1, 0, &used), SMTP_AGAIN);
    CHECK_INT(used, 0);
  }
  server(s, "250 ok\r\n250 ok\r\n");
  expect_log(s, "mail 250;rcpt#0 250;");
  /* no dot-stuffing; bare LF and CR become CRLF; the end gets a CRLF */
  CHECK_INT(bdat_all(s, ".a\nb\r", 5, 0), SMTP_OK);
  CHECK_INT(bdat_all(s, "\n.", 2, SMTP_BDAT_LAST), SMTP_OK);
  /* the CR pending at the end of a chunk is decided by the next */
  expect_out(s, "BDAT 5\r\n.a\r\nbBDAT 5 LAST\r\n\r\n.\r\n");
  server(s, "250 2.0.0 chunk\r\n250 2.0.0 Ok: queued as X\r\n");
  expect_log(s, "data 250;message 250;");
  expect_state(s, SMTP_IDLE);
  /* raw: the bytes as they are */
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", "BODY=BINARYMIME"), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  server(s, "250 ok\r\n250 ok\r\n");
  CHECK_INT(bdat_all(s, "\0\r\n.\r", 5, SMTP_BDAT_LAST | SMTP_BDAT_RAW), SMTP_OK);
  drain(s);
  {
    static const char want[] = "MAIL FROM:<a@b> BODY=BINARYMIME\r\nRCPT TO:<c@d>\r\nBDAT 5 LAST\r\n"
                               "\0\r\n.\r";
    CHECK_MEM(s->out, s->out_len, want, sizeof want - 1);
    s->out_len = 0;
  }
  server(s, "250 ok\r\n");
  expect_log(s, "mail 250;rcpt#0 250;message 250;");
  expect_state(s, SMTP_IDLE);
}

static void t_bdat_refused(session *s)
{
  size_t used;

  /* no recipient accepted: no chunk is sent, RSET closes what MAIL opened */
  ready(s, 0, EHLO_CHUNK);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  server(s, "250 ok\r\n550 no\r\n");
  CHECK_INT(smtp_engine_bdat(&s->e, (const unsigned char *)"x", 1, SMTP_BDAT_LAST, &used), SMTP_EDONE);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRSET\r\n");
  server(s, "250 ok\r\n");
  expect_log(s, "mail 250;rcpt#0 550;rset 250;");
  expect_state(s, SMTP_IDLE);
  /* a chunk refused while LAST is already queued behind it: RSET after */
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  server(s, "250 ok\r\n250 ok\r\n");
  CHECK_INT(bdat_all(s, "one\r\n", 5, 0), SMTP_OK);
  CHECK_INT(bdat_all(s, "two\r\n", 5, SMTP_BDAT_LAST), SMTP_OK);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5\r\none\r\nBDAT 5 LAST\r\ntwo\r\n");
  server(s, "554 5.6.0 bad chunk\r\n503 5.5.1 no transaction\r\n");
  expect_out(s, "RSET\r\n");
  server(s, "250 ok\r\n");
  expect_log(s, "mail 250;rcpt#0 250;data 554;message 503;rset 250;");
  expect_state(s, SMTP_IDLE);
}

static void t_lmtp(session *s)
{
  start(s, SMTP_OPT_LMTP);
  server(s, "220 lmtp.example.net LMTP\r\n");
  expect_out(s, "LHLO " HELO "\r\n");
  server(s, "250-lmtp.example.net\r\n250 PIPELINING\r\n");
  expect_log(s, "greeting 220;ehlo 250;");
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "x@y", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "e@f", ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
  server(s, "250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n");
  expect_log(s, "mail 250;rcpt#0 250;rcpt#1 550;rcpt#2 250;data 354;");
  body(s, "hi\r\n", 4);
  body_end(s);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<x@y>\r\nRCPT TO:<e@f>\r\n"
                "DATA\r\nhi\r\n.\r\n");
  /* one verdict per accepted recipient; the session is busy until the last */
  server(s, "250 2.1.5 delivered\r\n");
  expect_log(s, "message 250;");
  expect_state(s, SMTP_RECVREC);
  server(s, "452 4.2.2 mailbox full\r\n");
  expect_log(s, "message 452;");
  expect_state(s, SMTP_IDLE);
  /* an LMTP server that refuses LHLO is not asked HELO */
  start(s, SMTP_OPT_LMTP);
  server(s, "220 x\r\n");
  server(s, "500 what\r\n");
  expect_out(s, "LHLO " HELO "\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_REJECTED, SMTP_STAGE_EHLO, 500);
}

/* RFC 2920 3.1: the next envelope behind the final dot, before its verdict. */
static void t_early_mail(session *s)
{
  to_body(s);
  body(s, "x\n", 2);
  body_end(s);
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_OK);
  /* one early transaction at a time */
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_ESTATE);
  CHECK_INT(smtp_engine_rcpt(&s->e, "g@h", ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
  expect_out(s, "x\r\n.\r\nMAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\nDATA\r\n");
  /* the verdict goes to the first message, the rest to the second */
  server(s, "250 2.0.0 queued as A\r\n");
  expect_log(s, "message 250;");
  CHECK(!(state(s) & SMTP_IDLE));
  server(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  expect_log(s, "mail 250;rcpt#0 250;data 354;");
  expect_state(s, SMTP_SENDAPP);
  body(s, "y\r\n", 3);
  body_end(s);
  /* refusals: the second message's verdict, then the third's RCPT */
  envelope(s, "i@j", "k@l");
  expect_out(s, "y\r\n.\r\nMAIL FROM:<i@j>\r\nRCPT TO:<k@l>\r\nDATA\r\n");
  server(s, "554 5.7.1 spam\r\n250 ok\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n");
  expect_log(s, "message 554;mail 250;rcpt#0 550;data 554;");
  expect_out(s, "RSET\r\n");
  server(s, "250 ok\r\n");
  expect_log(s, "rset 250;");
  expect_state(s, SMTP_IDLE);
  /* a refused early MAIL, then an accepted one behind a 354 with no recipient */
  envelope(s, "a@b", "c@d");
  server(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  body_end(s);
  envelope(s, "m@n", "o@p");
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\nMAIL FROM:<m@n>\r\nRCPT TO:<o@p>\r\nDATA\r\n");
  server(s, "250 ok\r\n553 5.7.1 sender refused\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n");
  expect_log(s, "mail 250;rcpt#0 250;data 354;message 250;mail 553;rcpt#0 503;data 503;");
  expect_out(s, "");
  expect_state(s, SMTP_IDLE);
  /* the connection lost behind an early MAIL: closed, nothing more */
  envelope(s, "a@b", "c@d");
  server(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  body_end(s);
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_OK);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n.\r\nMAIL FROM:<e@f>\r\n");
  server(s, "250 ok\r\n");
  expect_log(s, "mail 250;rcpt#0 250;data 354;message 250;");
  smtp_engine_recv_eof(&s->e);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_MAIL, 0);
}

/* Behind BDAT LAST too; never without PIPELINING, never with LMTP. */
static void t_early_mail_refused(session *s)
{
  ready(s, 0, EHLO_CHUNK);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  server(s, "250 ok\r\n250 ok\r\n");
  CHECK_INT(bdat_all(s, "x\r\n", 3, SMTP_BDAT_LAST), SMTP_OK);
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "g@h", ""), SMTP_OK);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3 LAST\r\nx\r\nMAIL FROM:<e@f>\r\nRCPT TO:<g@h>\r\n");
  server(s, "554 5.7.1 no\r\n250 ok\r\n250 ok\r\n");
  expect_log(s, "mail 250;rcpt#0 250;message 554;mail 250;rcpt#0 250;");
  CHECK_INT(bdat_all(s, "y\r\n", 3, SMTP_BDAT_LAST), SMTP_OK);
  expect_out(s, "BDAT 3 LAST\r\ny\r\n");
  server(s, "250 ok\r\n");
  expect_log(s, "message 250;");
  expect_state(s, SMTP_IDLE);
  /* not behind chunks whose replies are awaited: wait, RSET if one failed */
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  server(s, "250 ok\r\n250 ok\r\n");
  CHECK_INT(bdat_all(s, "one\r\n", 5, 0), SMTP_OK);
  CHECK_INT(bdat_all(s, "two\r\n", 5, SMTP_BDAT_LAST), SMTP_OK);
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_AGAIN);
  expect_out(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5\r\none\r\nBDAT 5 LAST\r\ntwo\r\n");
  server(s, "554 5.6.0 bad chunk\r\n");
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_AGAIN);
  server(s, "503 5.5.1 no transaction\r\n");
  expect_out(s, "RSET\r\n");
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_AGAIN);
  server(s, "250 ok\r\n");
  expect_log(s, "mail 250;rcpt#0 250;data 554;message 503;rset 250;");
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_OK);
  expect_out(s, "MAIL FROM:<e@f>\r\n");
  server(s, "250 ok\r\n");
  expect_log(s, "mail 250;");

  ready(s, 0, EHLO_LOCK);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  server(s, "250 ok\r\n");
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  server(s, "250 ok\r\n");
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
  server(s, "354 go\r\n");
  body_end(s);
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_ESTATE);
  server(s, "250 ok\r\n");
  expect_state(s, SMTP_IDLE);

  ready(s, SMTP_OPT_NO_PIPELINING, EHLO_PIPE);
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_OK);
  server(s, "250 ok\r\n");
  CHECK_INT(smtp_engine_rcpt(&s->e, "c@d", ""), SMTP_OK);
  server(s, "250 ok\r\n");
  CHECK_INT(smtp_engine_data(&s->e), SMTP_OK);
  server(s, "354 go\r\n");
  body_end(s);
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_ESTATE);

  start(s, SMTP_OPT_LMTP);
  server(s, "220 lmtp.example.net LMTP\r\n");
  server(s, "250-lmtp.example.net\r\n250 PIPELINING\r\n");
  envelope(s, "a@b", "c@d");
  server(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  body_end(s);
  CHECK_INT(smtp_engine_mail(&s->e, "e@f", ""), SMTP_ESTATE);
  server(s, "250 ok\r\n");
  expect_state(s, SMTP_IDLE);
}

static void t_auth(session *s)
{
  ready(s, 0, "250-mx.example.net\r\n250 AUTH PLAIN LOGIN\r\n");
  CHECK_STR(smtp_engine_caps(&s->e)->auth, "PLAIN LOGIN");
  CHECK_INT(smtp_engine_auth(&s->e, "AUTH\r\nX"), SMTP_EINVAL);
  CHECK_INT(smtp_engine_auth(&s->e, "AUTH LOGIN"), SMTP_OK);
  expect_out(s, "AUTH LOGIN\r\n");
  server(s, "334 VXNlcm5hbWU6\r\n");
  expect_log(s, "auth 334;");
  CHECK_STR(s->text, "VXNlcm5hbWU6");
  /* not idle while the exchange runs */
  CHECK_INT(smtp_engine_mail(&s->e, "a@b", ""), SMTP_ESTATE);
  CHECK_INT(smtp_engine_auth_respond(&s->e, "dXNlcg=="), SMTP_OK);
  CHECK_INT(smtp_engine_auth_respond(&s->e, "again"), SMTP_ESTATE);
  server(s, "334 UGFzc3dvcmQ6\r\n");
  CHECK_INT(smtp_engine_auth_respond(&s->e, ""), SMTP_OK);
  expect_out(s, "dXNlcg==\r\n\r\n");
  server(s, "235 2.7.0 ok\r\n");
  expect_log(s, "auth 334;auth 235;");
  expect_state(s, SMTP_IDLE);
}

static void t_starttls(session *s)
{
  /* required and offered: the 220 hands over to TLS, then EHLO again */
  start(s, SMTP_OPT_STARTTLS);
  server(s, "220 mx\r\n");
  server(s, "250-mx\r\n250-SIZE 100\r\n250 STARTTLS\r\n");
  expect_out(s, "EHLO " HELO "\r\nSTARTTLS\r\n");
  server(s, "220 go\r\n");
  expect_log(s, "greeting 220;ehlo 250;starttls 220;");
  expect_state(s, SMTP_STARTTLS);
  CHECK_INT(smtp_engine_tls_ready(&s->e), SMTP_OK);
  CHECK_INT(smtp_engine_caps(&s->e)->ext, 0);
  expect_out(s, "EHLO " HELO "\r\n");
  server(s, "250-mx\r\n250 SIZE 200\r\n");
  CHECK_INT(smtp_engine_caps(&s->e)->size, 200);
  expect_state(s, SMTP_IDLE);
  /* bytes behind the 220: injection */
  start(s, SMTP_OPT_STARTTLS);
  server(s, "220 mx\r\n");
  server(s, "250-mx\r\n250 STARTTLS\r\n");
  server_n(s, "220 go\r\n250 evil\r\n", 18);
  if (s->chunk == 1) {
    /* byte by byte, nothing was behind the 220 when it ended: the evil
     * bytes come later, into the TLS handshake, which refuses them */
    expect_state(s, SMTP_STARTTLS);
  } else {
    expect_state(s, SMTP_CLOSED);
    expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS, 0);
  }
  /* not offered: required fails, opportunistic goes on in plaintext */
  start(s, SMTP_OPT_STARTTLS);
  server(s, "220 mx\r\n");
  server(s, "250 mx\r\n");
  expect_out(s, "EHLO " HELO "\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS, 0);
  start(s, SMTP_OPT_STARTTLS_TRY);
  server(s, "220 mx\r\n");
  server(s, "250 mx\r\n");
  expect_state(s, SMTP_IDLE);
  /* refused with 454: required fails with the code */
  start(s, SMTP_OPT_STARTTLS);
  server(s, "220 mx\r\n");
  server(s, "250-mx\r\n250 STARTTLS\r\n");
  server(s, "454 4.7.0 not now\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS, 454);
}

typedef struct {
  const char *name;
  void (*fn)(session *);
} engine_test;

static const engine_test tests[] = {
  { "caps", t_caps },
  { "caps variants", t_caps_variants },
  { "multi-line greeting", t_greeting_multiline },
  { "EHLO refused, HELO", t_ehlo_refused },
  { "EHLO and HELO failing", t_ehlo_helo_fail },
  { "greeting rejected", t_greeting_rejected },
  { "421 at any stage", t_421 },
  { "pipelined transaction", t_pipelined },
  { "one command at a time", t_lockstep },
  { "RCPT refused", t_rcpt_refused },
  { "all RCPT refused", t_all_rcpt_refused },
  { "MAIL refused", t_mail_refused },
  { "DATA refused", t_data_refused },
  { "message verdict", t_message_verdict },
  { "NOOP and RSET", t_noop_rset },
  { "many recipients", t_many_rcpts },
  { "CR, LF and length in arguments", t_einval },
  { "calls in the wrong state", t_misuse },
  { "body encoding, every split", t_body_cases },
  { "body encoding, random", t_body_random },
  { "reply bounds", t_bounds },
  { "reply answering nothing", t_unsolicited },
  { "reply before its command", t_reply_before_command },
  { "pipelined MAIL, no RCPT", t_no_rcpt_pipelined },
  { "end of stream", t_eof },
  { "failure from outside", t_fail },
  { "names", t_names },
  { "garbage", t_garbage },
  { "BDAT chunks", t_bdat },
  { "BDAT refused", t_bdat_refused },
  { "LMTP", t_lmtp },
  { "MAIL behind the final dot", t_early_mail },
  { "MAIL behind the final dot: BDAT, not allowed", t_early_mail_refused },
  { "AUTH exchange", t_auth },
  { "STARTTLS", t_starttls },
};

int main(void)
{
  static const size_t chunks[] = { SIZE_MAX, 1, 3 };
  static const char *const variants[] = { "whole", "bytewise", "chunks of 3" };
  size_t i, c;

  for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
    for (c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
      h_begin(tests[i].name, variants[c]);
      S.chunk = chunks[c];
      tests[i].fn(&S);
      h_end();
    }
  return h_summary();
}
