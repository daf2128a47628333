/*
 * fuzz_engine.c -- the engine driven by an arbitrary server and an
 * application that keeps trying to send mail.
 *
 * Input: records.  A record is a header byte H followed by H & 0x3f payload
 * bytes; H == 0xff is end of stream.  For each record the application first
 * acts as H >> 6 says:
 *   0  when idle: MAIL, two RCPT, DATA
 *   1  when idle: MAIL, one RCPT, DATA; and write one byte at a time
 *   2  when idle: QUIT; in the body: end it (after this record's payload)
 *   3  when idle: NOOP (even payload length) or RSET; and misplaced calls
 * Without PIPELINING the envelope goes on a command per record.  Then the
 * payload is the server's next bytes, or, while the engine wants the body,
 * the next body bytes.  When the input ends, so does the stream.
 *
 * Besides not crashing or hanging, the engine must keep these: a _buf
 * offered by a flag has room; CLOSED is final and refuses everything; only
 * a QUIT closes without an error; every CR the client writes is followed by
 * LF and every LF preceded by CR (commands and normalized bodies alike).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

/* More steps than this without input is a livelock. */
#define STEPS_MAX 100000u

typedef struct {
  smtp_engine e;
  int closed;                   /* CLOSED was seen */
  int quit_sent;
  int prev_cr;                  /* the last byte written was CR */
  size_t write_max;             /* bytes acknowledged per write */
  /* the envelope being sent */
  int in_txn;
  unsigned rcpt_left;
  int data_sent;
} app;

static app A;

static unsigned state(app *a)
{
  unsigned st = smtp_engine_state(&a->e);

  if (a->closed)
    REQUIRE(st & SMTP_CLOSED);
  if (st & SMTP_CLOSED) {
    const smtp_error *err = smtp_engine_last_error(&a->e);
    REQUIRE((st & ~(SMTP_CLOSED | SMTP_EVENT)) == 0);
    REQUIRE(err->kind <= SMTP_ERR_CLOSED && err->stage <= SMTP_STAGE_QUIT);
    REQUIRE(memchr(err->message, '\0', sizeof err->message) != NULL);
    REQUIRE(err->kind != SMTP_ERR_NONE || a->quit_sent);
    a->closed = 1;
  }
  return st;
}

static void check_event(const smtp_event *ev)
{
  const smtp_reply *r = ev->reply;

  REQUIRE(ev->kind >= SMTP_EV_GREETING && ev->kind <= SMTP_EV_QUIT);
  REQUIRE(r != NULL && r->code >= 200 && r->code <= 599);
  REQUIRE(r->text_len <= SMTP_REPLY_TEXT_MAX && r->text[r->text_len] == '\0');
}

static void written(app *a, const unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    REQUIRE(a->prev_cr == (p[i] == '\n'));
    a->prev_cr = p[i] == '\r';
  }
}

static void drain(app *a)
{
  unsigned steps;

  for (steps = 0; steps < STEPS_MAX; steps++) {
    unsigned st = state(a);

    if (st & SMTP_SENDREC) {
      size_t n;
      const unsigned char *p = smtp_engine_sendrec_buf(&a->e, &n);
      REQUIRE(n > 0);
      if (n > a->write_max)
        n = a->write_max;
      written(a, p, n);
      smtp_engine_sendrec_ack(&a->e, n);
    } else if (st & SMTP_EVENT) {
      check_event(smtp_engine_event(&a->e));
      smtp_engine_event_ack(&a->e);
    } else {
      return;
    }
  }
  abort();
}

/* Go on with the envelope: as far as the engine lets us now. */
static void envelope(app *a)
{
  int r;

  while (a->in_txn && a->rcpt_left > 0) {
    r = smtp_engine_rcpt(&a->e, "c@d", "");
    if (r == SMTP_AGAIN)
      return;
    if (r != SMTP_OK) {
      a->in_txn = 0;
      return;
    }
    a->rcpt_left--;
  }
  if (a->in_txn && !a->data_sent) {
    r = smtp_engine_data(&a->e);
    if (r == SMTP_OK)
      a->data_sent = 1;
    else if (r != SMTP_AGAIN)
      a->in_txn = 0;
  }
}

static void act(app *a, unsigned how, size_t payload)
{
  unsigned st = state(a);

  if (st & SMTP_IDLE) {
    a->in_txn = 0;
    if (how == 2) {
      if (smtp_engine_quit(&a->e) == SMTP_OK)
        a->quit_sent = 1;
    } else if (how == 3) {
      REQUIRE(smtp_engine_rcpt(&a->e, "c@d", "") != SMTP_OK);
      REQUIRE(smtp_engine_body_end(&a->e) != SMTP_OK);
      (void)(payload % 2 ? smtp_engine_rset(&a->e) : smtp_engine_noop(&a->e));
    } else if (smtp_engine_mail(&a->e, "a@b", "") == SMTP_OK) {
      a->in_txn = 1;
      a->rcpt_left = how == 0 ? 2 : 1;
      a->data_sent = 0;
    }
  }
  if (!(st & SMTP_SENDAPP))
    envelope(a);
  if (st & SMTP_CLOSED) {
    REQUIRE(smtp_engine_mail(&a->e, "a@b", "") == SMTP_ESTATE);
    REQUIRE(smtp_engine_quit(&a->e) == SMTP_ESTATE);
    REQUIRE(smtp_engine_body(&a->e, (const unsigned char *)"x", 1) == 0);
  }
}

static void body(app *a, const uint8_t *p, size_t n)
{
  while (n > 0) {
    size_t used = smtp_engine_body(&a->e, p, n);
    if (used == 0) {
      drain(a);             /* the output buffer was full */
      used = smtp_engine_body(&a->e, p, n);
      REQUIRE(used > 0);
    }
    p += used;
    n -= used;
  }
}

static void receive(app *a, const uint8_t *p, size_t n)
{
  while (n > 0 && (state(a) & SMTP_RECVREC)) {
    size_t room;
    unsigned char *b = smtp_engine_recvrec_buf(&a->e, &room);
    REQUIRE(room > 0);
    if (room > n)
      room = n;
    memcpy(b, p, room);
    smtp_engine_recvrec_ack(&a->e, room);
    p += room;
    n -= room;
    drain(a);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  size_t pos = 0;

  memset(&A, 0, sizeof A);
  REQUIRE(smtp_engine_init(&A.e, "client.example", 0) == SMTP_OK);
  while (pos < size) {
    unsigned h = data[pos++], how = h >> 6;
    size_t n = h & 0x3fu;

    if (h == 0xff)
      break;
    if (n > size - pos)
      n = size - pos;
    A.write_max = how == 1 ? 1 : SIZE_MAX;
    drain(&A);
    act(&A, how, n);
    drain(&A);
    if (state(&A) & SMTP_SENDAPP) {
      body(&A, data + pos, n);
      if (how == 2)
        REQUIRE(smtp_engine_body_end(&A.e) != SMTP_ESTATE);
    } else {
      receive(&A, data + pos, n);
    }
    drain(&A);
    pos += n;
  }
  smtp_engine_recv_eof(&A.e);
  drain(&A);
  REQUIRE(state(&A) & SMTP_CLOSED);
  REQUIRE(!A.prev_cr);
  return 0;
}
