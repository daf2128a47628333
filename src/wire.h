/*
 * wire.h -- the byte pipes between a transport and the SMTP engine:
 * proxy handshake -> TLS (from the first byte, or switched on by STARTTLS)
 * -> engine.
 *
 * The transport sees only smtp_wire_*: the proxy's bytes first, ciphertext
 * once TLS is on.  The caller still drives the engine's commands and events
 * on w->engine.
 *
 * Rules of use (MUST):
 *   - Call smtp_wire_step before using the flags or buffers and after any
 *     engine call: it moves bytes between the layers and returns the
 *     engine's flags, with SMTP_SENDREC and SMTP_RECVREC meaning the
 *     transport's side.
 *   - smtp_wire_free when done, whatever happened (also after a failed
 *     smtp_wire_init, and twice is harmless): it zeroes TLS keys and SASL
 *     secrets and frees the TLS, proxy and SASL state, which the wire
 *     allocates only when a session uses them.  The TLS context is the
 *     caller's: free it after the wire.
 */
#ifndef SMTP_WIRE_H
#define SMTP_WIRE_H

#include "engine.h"
#include "proxy.h"
#include "sasl.h"
#include "tls.h"

/* Internal to the module whatever the build system: only luaopen_* is public. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* The proxy hop: where the proxy should connect us to, and as whom. */
typedef struct {
  smtp_proxy_type type;
  const char *host;        /* the SMTP server: a name, or for SOCKS4 an IPv4 literal */
  unsigned port;
  const char *username, *password, *domain;   /* NULL when not set */
} smtp_wire_proxy;

/* An AUTH exchange's state, allocated by smtp_wire_auth and wiped and
 * freed when the exchange ends (or by smtp_wire_free). */
struct smtp_wire_sasl {
  smtp_sasl sasl;
  char out[SMTP_SASL_OUT_MAX];   /* the response being sent */
};

typedef struct {
  smtp_engine engine;
  smtp_tls *tls;       /* owned: allocated by smtp_wire_init when TLS is configured */
  smtp_proxy *proxy;   /* owned: allocated by smtp_wire_init when there is a proxy hop */
  int implicit;    /* TLS from the first byte */
  int layer;       /* private: which pipe the transport feeds */
  const unsigned char *left;  /* the proxy's leftover, not yet handed on */
  size_t left_len;
  struct smtp_wire_sasl *auth;      /* allocated while an AUTH exchange runs */
  int setup_oom;   /* private: SMTP_ERR_PROXY or SMTP_ERR_TLS when init ran out of memory */
  char auth_error[160];              /* why the exchange failed on our side */
  char auth_detail[SMTP_SASL_DETAIL_MAX + 1], auth_status[64];
  int tapping;                       /* keep a copy of what the engine sends */
  unsigned char tap[4096];
  size_t tap_len, tap_total;
} smtp_wire;

/* Set up a session.  proxy NULL: connected to the server itself.  tls NULL:
 * no TLS; else the connection's TLS context (set up, and outliving the
 * wire: see tls.h), implicit (TLS at once) or, per the engine options,
 * STARTTLS.  Returns SMTP_OK, SMTP_EINVAL (bad EHLO name), or SMTP_ESTATE
 * when the proxy or TLS cannot be set up (out of memory included):
 * smtp_wire_setup_error says why. */
int smtp_wire_init(smtp_wire *w, const char *helo, unsigned engine_opts,
                   const smtp_wire_proxy *proxy, smtp_tls_ctx *tls, int implicit);

/* After SMTP_ESTATE from smtp_wire_init: the message, and its kind in
 * *kind (SMTP_ERR_PROXY or SMTP_ERR_TLS). */
const char *smtp_wire_setup_error(const smtp_wire *w, smtp_error_kind *kind);

/* Where the session is: "proxy", "handshake" (implicit TLS), "plain" or
 * "tls". */
const char *smtp_wire_layer(const smtp_wire *w);

unsigned smtp_wire_step(smtp_wire *w);

/* Bytes for the transport; valid while SMTP_SENDREC. */
const unsigned char *smtp_wire_send_buf(smtp_wire *w, size_t *len);
void smtp_wire_send_ack(smtp_wire *w, size_t len);

/* Room for the transport's bytes; valid while SMTP_RECVREC. */
unsigned char *smtp_wire_recv_buf(smtp_wire *w, size_t *len);
void smtp_wire_recv_ack(smtp_wire *w, size_t len);
void smtp_wire_recv_eof(smtp_wire *w);

/* Authenticate (only when the engine is SMTP_IDLE): starts the SASL
 * mechanism and sends AUTH; the wire then answers every 334 itself, so
 * the caller sees one SMTP_EV_AUTH event, the final reply (235 or a
 * failure).  A SCRAM server that cannot prove it knows the password, or a
 * challenge that makes no sense, closes the session (kinds auth and
 * protocol).  random: 32 bytes from a good source.  Returns SMTP_OK, or
 * SMTP_EINVAL with smtp_wire_auth_error saying why (an empty password,
 * SASLprep, out of memory). */
int smtp_wire_auth(smtp_wire *w, smtp_sasl_mech mech, const char *user, size_t user_len,
                   const char *secret, size_t secret_len, const char *domain,
                   const char *host, unsigned port, const unsigned char random[32]);
const char *smtp_wire_auth_error(const smtp_wire *w);

/* After a failed exchange: what the server explained in its challenge
 * (XOAUTH2's JSON, SCRAM's e=), and its status ("401"), or "". */
const char *smtp_wire_auth_detail(const smtp_wire *w, const char **status);

/* A trace of the dialogue: once tapping is set, the wire keeps the SMTP
 * the engine sends, in the clear, as it leaves the engine (so neither TLS
 * records nor the proxy's bytes).  smtp_wire_tap_take lends what came since
 * the last take (the first 4096 octets of it) and *total counts all of it;
 * the next take starts afresh. */
const unsigned char *smtp_wire_tap_take(smtp_wire *w, size_t *len, size_t *total);

/* The stage for an error from outside (a timeout): "connect" through the
 * proxy hop and an implicit TLS handshake, else the engine's. */
smtp_stage smtp_wire_stage(const smtp_wire *w);

void smtp_wire_free(smtp_wire *w);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
