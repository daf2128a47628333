/*
 * wire.c -- TLS between transport and engine; see wire.h.
 */
#include "wire.h"

#include <string.h>

enum { PLAIN, HANDSHAKE, SECURE };

int smtp_wire_init(smtp_wire *w, const char *helo, unsigned engine_opts,
                   const smtp_tls_options *tls, int implicit) {
  int r;
  memset(w, 0, sizeof *w);
  r = smtp_engine_init(&w->engine, helo, engine_opts);
  if (r != SMTP_OK) return r;
  if (tls == NULL) return SMTP_OK;
  w->has_tls = 1;   /* smtp_wire_free must release what init set up */
  if (smtp_tls_init(&w->tls, tls) != SMTP_TLS_DONE) return SMTP_ESTATE;
  w->implicit = implicit;
  w->tls_state = implicit ? HANDSHAKE : PLAIN;
  return SMTP_OK;
}

static unsigned handshake(smtp_wire *w) {
  smtp_engine *e = &w->engine;
  size_t out, room;
  int r = smtp_tls_handshake(&w->tls);
  if (r == SMTP_TLS_FAIL) {
    smtp_engine_fail(e, SMTP_ERR_TLS, smtp_wire_stage(w), smtp_tls_error(&w->tls));
    return smtp_engine_state(e);
  }
  if (r == SMTP_TLS_DONE) {
    w->tls_state = SECURE;
    if (!w->implicit) (void)smtp_engine_tls_ready(e);
    return 0;
  }
  smtp_tls_out_buf(&w->tls, &out);
  smtp_tls_in_buf(&w->tls, &room);
  return (out ? SMTP_SENDREC : 0) | (!out && room ? SMTP_RECVREC : 0);
}

/* Plaintext out of the engine into records, records into the engine. */
static unsigned pump(smtp_wire *w) {
  smtp_engine *e = &w->engine;
  unsigned s = smtp_engine_state(e);
  size_t len, got, out, room;
  while (s & SMTP_SENDREC) {
    const unsigned char *p = smtp_engine_sendrec_buf(e, &len);
    size_t n = smtp_tls_write(&w->tls, p, len);
    if (n == 0) break;
    smtp_engine_sendrec_ack(e, n);
    s = smtp_engine_state(e);
  }
  while ((s & SMTP_RECVREC) && !(s & SMTP_SENDREC)) {
    unsigned char *p = smtp_engine_recvrec_buf(e, &room);
    int r = smtp_tls_read(&w->tls, p, room, &got);
    if (r == SMTP_TLS_DONE) {
      smtp_engine_recvrec_ack(e, got);
    } else {
      if (r == SMTP_TLS_FAIL)
        smtp_engine_fail(e, SMTP_ERR_TLS, smtp_engine_stage(e), smtp_tls_error(&w->tls));
      else if (smtp_tls_eof(&w->tls))
        smtp_engine_recv_eof(e);
      s = smtp_engine_state(e);
      break;
    }
    s = smtp_engine_state(e);
  }
  if (w->tls.failed)
    smtp_engine_fail(e, SMTP_ERR_TLS, smtp_engine_stage(e), smtp_tls_error(&w->tls));
  s = smtp_engine_state(e);
  smtp_tls_out_buf(&w->tls, &out);
  smtp_tls_in_buf(&w->tls, &room);
  s &= ~(SMTP_SENDREC | SMTP_RECVREC);
  if (out) s |= SMTP_SENDREC;
  else if (room && (smtp_engine_state(e) & SMTP_RECVREC)) s |= SMTP_RECVREC;
  return s;
}

unsigned smtp_wire_step(smtp_wire *w) {
  unsigned s;
  if (w->tls_state == PLAIN) {
    s = smtp_engine_state(&w->engine);
    if (!(s & SMTP_STARTTLS) || !w->has_tls) return s;
    w->tls_state = HANDSHAKE;
  }
  if (w->tls_state == HANDSHAKE) {
    if (smtp_engine_state(&w->engine) & SMTP_CLOSED) return smtp_engine_state(&w->engine);
    s = handshake(w);
    if (w->tls_state == HANDSHAKE) return s;
  }
  return pump(w);
}

const unsigned char *smtp_wire_send_buf(smtp_wire *w, size_t *len) {
  if (w->tls_state == PLAIN) return smtp_engine_sendrec_buf(&w->engine, len);
  return smtp_tls_out_buf(&w->tls, len);
}

void smtp_wire_send_ack(smtp_wire *w, size_t len) {
  if (w->tls_state == PLAIN) smtp_engine_sendrec_ack(&w->engine, len);
  else smtp_tls_out_ack(&w->tls, len);
}

unsigned char *smtp_wire_recv_buf(smtp_wire *w, size_t *len) {
  if (w->tls_state == PLAIN) return smtp_engine_recvrec_buf(&w->engine, len);
  return smtp_tls_in_buf(&w->tls, len);
}

void smtp_wire_recv_ack(smtp_wire *w, size_t len) {
  if (w->tls_state == PLAIN) smtp_engine_recvrec_ack(&w->engine, len);
  else smtp_tls_in_ack(&w->tls, len);
}

void smtp_wire_recv_eof(smtp_wire *w) {
  if (w->tls_state == PLAIN) smtp_engine_recv_eof(&w->engine);
  else smtp_tls_in_eof(&w->tls);
}

smtp_stage smtp_wire_stage(const smtp_wire *w) {
  if (w->implicit && w->tls_state == HANDSHAKE) return SMTP_STAGE_CONNECT;
  return smtp_engine_stage(&w->engine);
}

void smtp_wire_free(smtp_wire *w) {
  if (w->has_tls) smtp_tls_free(&w->tls);
  w->has_tls = 0;
}
