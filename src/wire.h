/*
 * wire.h -- the byte pipes between a transport and the SMTP engine:
 * TLS (from the first byte, or switched on by STARTTLS) -> engine.
 *
 * The transport sees only smtp_wire_*: ciphertext once TLS is on.  The
 * caller still drives the engine's commands and events on w->engine.
 *
 * Rules of use (MUST):
 *   - Call smtp_wire_step before using the flags or buffers and after any
 *     engine call: it moves bytes between the layers and returns the
 *     engine's flags, with SMTP_SENDREC and SMTP_RECVREC meaning the
 *     transport's side.
 *   - smtp_wire_free when done, whatever happened: it zeroes TLS keys.
 */
#ifndef SMTP_WIRE_H
#define SMTP_WIRE_H

#include "engine.h"
#include "tls.h"

/* Internal to the module whatever the build system: only luaopen_* is public. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

typedef struct {
  smtp_engine engine;
  smtp_tls tls;
  int has_tls;     /* TLS configured */
  int implicit;    /* TLS from the first byte */
  int tls_state;   /* private */
} smtp_wire;

/* Set up a session.  tls NULL: no TLS; else implicit (TLS at once) or, per
 * the engine options, STARTTLS.  Returns SMTP_OK, SMTP_EINVAL (bad EHLO
 * name), or SMTP_ESTATE when TLS cannot be set up: smtp_tls_error(&w->tls)
 * says why. */
int smtp_wire_init(smtp_wire *w, const char *helo, unsigned engine_opts,
                   const smtp_tls_options *tls, int implicit);

unsigned smtp_wire_step(smtp_wire *w);

/* Bytes for the transport; valid while SMTP_SENDREC. */
const unsigned char *smtp_wire_send_buf(smtp_wire *w, size_t *len);
void smtp_wire_send_ack(smtp_wire *w, size_t len);

/* Room for the transport's bytes; valid while SMTP_RECVREC. */
unsigned char *smtp_wire_recv_buf(smtp_wire *w, size_t *len);
void smtp_wire_recv_ack(smtp_wire *w, size_t len);
void smtp_wire_recv_eof(smtp_wire *w);

/* The stage for an error from outside (a timeout): "connect" while an
 * implicit TLS handshake runs, else the engine's. */
smtp_stage smtp_wire_stage(const smtp_wire *w);

void smtp_wire_free(smtp_wire *w);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
