/*
 * wire.c -- proxy hop, then TLS, between transport and engine; see wire.h.
 */
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/platform_util.h>

enum { PROXY, PLAIN, HANDSHAKE, SECURE };

static unsigned wire_step(smtp_wire *w);

int smtp_wire_init(smtp_wire *w, const char *helo, unsigned engine_opts,
                   const smtp_wire_proxy *proxy, smtp_tls_ctx *tls, int implicit) {
  int r;
  memset(w, 0, sizeof *w);
  r = smtp_engine_init(&w->engine, helo, engine_opts);
  if (r != SMTP_OK) return r;
  if (proxy) {
    w->proxy = calloc(1, sizeof *w->proxy);
    if (w->proxy == NULL) {
      w->setup_oom = SMTP_ERR_PROXY;
      return SMTP_ESTATE;
    }
    if (smtp_proxy_init(w->proxy, proxy->type, proxy->host, proxy->port, proxy->username,
                        proxy->password, proxy->domain) != SMTP_PROXY_OK)
      return SMTP_ESTATE;
  }
  if (tls) {
    w->tls = calloc(1, sizeof *w->tls);
    if (w->tls == NULL) {
      w->setup_oom = SMTP_ERR_TLS;
      return SMTP_ESTATE;
    }
    if (smtp_tls_init(w->tls, tls) != SMTP_TLS_DONE) return SMTP_ESTATE;
  }
  w->implicit = tls && implicit;
  w->layer = proxy ? PROXY : w->implicit ? HANDSHAKE : PLAIN;
  return SMTP_OK;
}

const char *smtp_wire_setup_error(const smtp_wire *w, smtp_error_kind *kind) {
  if (w->setup_oom) {
    *kind = (smtp_error_kind)w->setup_oom;
    return "out of memory";
  }
  if (w->proxy && (smtp_proxy_state(w->proxy) & SMTP_PROXY_FAILED)) {
    *kind = SMTP_ERR_PROXY;
    return smtp_proxy_error(w->proxy)->message;
  }
  *kind = SMTP_ERR_TLS;
  return w->tls ? smtp_tls_error(w->tls) : "TLS is not configured";
}

smtp_stage smtp_wire_stage(const smtp_wire *w) {
  if (w->layer == PROXY || (w->implicit && w->layer == HANDSHAKE)) return SMTP_STAGE_CONNECT;
  return smtp_engine_stage(&w->engine);
}

const char *smtp_wire_layer(const smtp_wire *w) {
  static const char *const names[] = { "proxy", "plain", "handshake", "tls" };
  return names[w->layer];
}

static void tap(smtp_wire *w, const unsigned char *p, size_t n) {
  size_t room = sizeof w->tap - w->tap_len;
  if (!w->tapping) return;
  memcpy(w->tap + w->tap_len, p, n < room ? n : room);
  w->tap_len += n < room ? n : room;
  w->tap_total += n;
}

const unsigned char *smtp_wire_tap_take(smtp_wire *w, size_t *len, size_t *total) {
  *len = w->tap_len;
  *total = w->tap_total;
  w->tap_len = w->tap_total = 0;
  return w->tap;
}

/* The proxy hop: its flags while it runs; 0 once the tunnel is open. */
static unsigned proxy_step(smtp_wire *w) {
  unsigned ps = smtp_proxy_state(w->proxy);
  if (ps & SMTP_PROXY_FAILED) {
    const smtp_proxy_err *pe = smtp_proxy_error(w->proxy);
    char msg[320];
    snprintf(msg, sizeof msg, "%s: %s", pe->target_failed
             ? "the proxy could not reach the server" : "the proxy refused", pe->message);
    smtp_engine_fail(&w->engine, SMTP_ERR_PROXY, SMTP_STAGE_CONNECT, msg);
    return smtp_engine_state(&w->engine);
  }
  if (!(ps & SMTP_PROXY_DONE))
    return (ps & SMTP_PROXY_SENDREC ? SMTP_SENDREC : 0) | (ps & SMTP_PROXY_RECVREC ? SMTP_RECVREC : 0);
  w->left = smtp_proxy_leftover(w->proxy, &w->left_len);
  w->layer = w->implicit ? HANDSHAKE : PLAIN;
  return 0;
}

/* Bytes that came with the proxy's last reply go first to the next layer. */
static void hand_on_leftover(smtp_wire *w) {
  size_t room = 0;
  unsigned char *p;
  if (w->layer == PLAIN)
    p = (smtp_engine_state(&w->engine) & SMTP_RECVREC) ? smtp_engine_recvrec_buf(&w->engine, &room) : NULL;
  else
    p = smtp_tls_in_buf(w->tls, &room);
  if (p == NULL || room == 0) return;
  if (room > w->left_len) room = w->left_len;
  memcpy(p, w->left, room);
  w->left += room;
  w->left_len -= room;
  if (w->layer == PLAIN) smtp_engine_recvrec_ack(&w->engine, room);
  else smtp_tls_in_ack(w->tls, room);
}

static unsigned handshake(smtp_wire *w) {
  smtp_engine *e = &w->engine;
  size_t out, room;
  int r = smtp_tls_handshake(w->tls);
  if (r == SMTP_TLS_FAIL) {
    smtp_engine_fail(e, SMTP_ERR_TLS, smtp_wire_stage(w), smtp_tls_error(w->tls));
    return smtp_engine_state(e);
  }
  if (r == SMTP_TLS_DONE) {
    w->layer = SECURE;
    if (!w->implicit) (void)smtp_engine_tls_ready(e);
    return 0;
  }
  smtp_tls_out_buf(w->tls, &out);
  smtp_tls_in_buf(w->tls, &room);
  return (out ? SMTP_SENDREC : 0) | (!out && room && !w->left_len ? SMTP_RECVREC : 0);
}

/* Plaintext out of the engine into records, records into the engine. */
static unsigned pump(smtp_wire *w) {
  smtp_engine *e = &w->engine;
  unsigned s = smtp_engine_state(e);
  size_t len, got, out, room;
  while (s & SMTP_SENDREC) {
    const unsigned char *p = smtp_engine_sendrec_buf(e, &len);
    size_t n = smtp_tls_write(w->tls, p, len);
    if (n == 0) break;
    tap(w, p, n);
    smtp_engine_sendrec_ack(e, n);
    s = smtp_engine_state(e);
  }
  while ((s & SMTP_RECVREC) && !(s & SMTP_SENDREC)) {
    unsigned char *p = smtp_engine_recvrec_buf(e, &room);
    int r = smtp_tls_read(w->tls, p, room, &got);
    if (r == SMTP_TLS_DONE) {
      smtp_engine_recvrec_ack(e, got);
    } else {
      if (r == SMTP_TLS_FAIL)
        smtp_engine_fail(e, SMTP_ERR_TLS, smtp_engine_stage(e), smtp_tls_error(w->tls));
      else if (smtp_tls_eof(w->tls))
        smtp_engine_recv_eof(e);
      s = smtp_engine_state(e);
      break;
    }
    s = smtp_engine_state(e);
  }
  if (w->tls->failed)
    smtp_engine_fail(e, SMTP_ERR_TLS, smtp_engine_stage(e), smtp_tls_error(w->tls));
  s = smtp_engine_state(e) & ~(SMTP_SENDREC | SMTP_RECVREC);
  smtp_tls_out_buf(w->tls, &out);
  smtp_tls_in_buf(w->tls, &room);
  if (out) s |= SMTP_SENDREC;
  else if (room && !w->left_len && (smtp_engine_state(e) & SMTP_RECVREC)) s |= SMTP_RECVREC;
  return s;
}

/* The end of an exchange: keep what the server explained, drop the keys. */
static void auth_end(smtp_wire *w) {
  snprintf(w->auth_detail, sizeof w->auth_detail, "%s", smtp_sasl_detail(&w->auth->sasl));
  snprintf(w->auth_status, sizeof w->auth_status, "%s", smtp_sasl_detail_status(&w->auth->sasl));
  smtp_sasl_wipe(&w->auth->sasl);
  mbedtls_platform_zeroize(w->auth, sizeof *w->auth);
  free(w->auth);
  w->auth = NULL;
}

static void auth_fail(smtp_wire *w, smtp_error_kind kind, const char *what) {
  snprintf(w->auth_error, sizeof w->auth_error, "%s: %s", what,
           smtp_sasl_strerror(smtp_sasl_error(&w->auth->sasl)));
  smtp_engine_fail(&w->engine, kind, SMTP_STAGE_AUTH, w->auth_error);
  auth_end(w);
}

/* Answer the server's 334s, and check its 235, without the caller.
 * Returns 1 when it acted on the pending event. */
static int auth_step(smtp_wire *w) {
  smtp_engine *e = &w->engine;
  const smtp_event *ev = smtp_engine_event(e);
  const smtp_reply *r = ev->reply;
  size_t n;
  int rc;
  if (ev->kind != SMTP_EV_AUTH) return 0;
  if (r->code == 334) {
    rc = smtp_sasl_step(&w->auth->sasl, r->text, r->text_len, w->auth->out, sizeof w->auth->out, &n);
    if (rc == SMTP_SASL_ESIGNATURE || rc == SMTP_SASL_ESERVER) {
      auth_fail(w, SMTP_ERR_AUTH, "the server failed to prove it knows the password");
    } else if (rc != SMTP_SASL_OK) {
      auth_fail(w, SMTP_ERR_PROTOCOL, "the server's AUTH challenge makes no sense");
    } else {
      smtp_engine_event_ack(e);
      (void)smtp_engine_auth_respond(e, w->auth->out);
      mbedtls_platform_zeroize(w->auth->out, n);
    }
    return 1;
  }
  if (r->code / 100 == 2 && smtp_sasl_finish(&w->auth->sasl, r->text, r->text_len) != SMTP_SASL_OK)
    auth_fail(w, SMTP_ERR_AUTH, "the server failed to prove it knows the password");
  else
    auth_end(w);   /* the event stays for the caller */
  return 1;
}

int smtp_wire_auth(smtp_wire *w, smtp_sasl_mech mech, const char *user, size_t user_len,
                   const char *secret, size_t secret_len, const char *domain,
                   const char *host, unsigned port, const unsigned char random[32]) {
  static const char prefix[] = "AUTH ";
  const char *name = smtp_sasl_mech_name(mech);
  size_t n, len;
  int rc;
  w->auth_error[0] = w->auth_detail[0] = w->auth_status[0] = '\0';
  if (!(smtp_engine_state(&w->engine) & SMTP_IDLE)) return SMTP_ESTATE;
  if (w->auth == NULL && (w->auth = calloc(1, sizeof *w->auth)) == NULL) {
    snprintf(w->auth_error, sizeof w->auth_error, "out of memory");
    return SMTP_EINVAL;
  }
  rc = smtp_sasl_start(&w->auth->sasl, mech, user, user_len, secret, secret_len, domain, host, port, random);
  if (rc == SMTP_SASL_OK)
    rc = smtp_sasl_initial(&w->auth->sasl, w->auth->out + sizeof prefix - 1 + strlen(name) + 1,
                           sizeof w->auth->out - sizeof prefix - strlen(name) - 1, &n);
  if (rc != SMTP_SASL_OK) {
    snprintf(w->auth_error, sizeof w->auth_error, "%s", smtp_sasl_strerror(rc));
    smtp_sasl_wipe(&w->auth->sasl);
    free(w->auth);
    w->auth = NULL;
    return SMTP_EINVAL;
  }
  /* "AUTH MECH IR"; an IR too long for the line waits for an empty 334. */
  len = sizeof prefix - 1 + strlen(name);
  memcpy(w->auth->out, prefix, sizeof prefix - 1);
  memcpy(w->auth->out + sizeof prefix - 1, name, strlen(name));
  if (n > 0 && len + 1 + n <= SMTP_AUTH_LINE_MAX) {
    w->auth->out[len] = ' ';
    len += 1 + n;
  }
  w->auth->out[len] = '\0';
  rc = smtp_engine_auth(&w->engine, w->auth->out);
  mbedtls_platform_zeroize(w->auth->out, sizeof w->auth->out);
  if (rc != SMTP_OK) auth_end(w);
  return rc;
}

const char *smtp_wire_auth_error(const smtp_wire *w) {
  return w->auth_error;
}

const char *smtp_wire_auth_detail(const smtp_wire *w, const char **status) {
  *status = w->auth_status;
  return w->auth_detail;
}

unsigned smtp_wire_step(smtp_wire *w) {
  unsigned s = wire_step(w);
  if (w->auth && (s & SMTP_EVENT) && auth_step(w)) s = wire_step(w);
  return s;
}

static unsigned wire_step(smtp_wire *w) {
  unsigned s;
  if (w->layer == PROXY) {
    /* The driver failed the session (a timeout, a reset) mid-handshake. */
    if (smtp_engine_state(&w->engine) & SMTP_CLOSED) {
      smtp_proxy_clear(w->proxy);
      return smtp_engine_state(&w->engine);
    }
    s = proxy_step(w);
    if (w->layer == PROXY) return s;
  }
  if (w->left_len) hand_on_leftover(w);
  if (w->layer == PLAIN) {
    s = smtp_engine_state(&w->engine);
    if ((s & SMTP_STARTTLS) && w->tls) {
      w->layer = HANDSHAKE;
    } else {
      return w->left_len ? s & ~SMTP_RECVREC : s;
    }
  }
  if (w->layer == HANDSHAKE) {
    if (smtp_engine_state(&w->engine) & SMTP_CLOSED) return smtp_engine_state(&w->engine);
    s = handshake(w);
    if (w->layer == HANDSHAKE) return s;
  }
  return pump(w);
}

const unsigned char *smtp_wire_send_buf(smtp_wire *w, size_t *len) {
  switch (w->layer) {
    case PROXY: return smtp_proxy_sendrec_buf(w->proxy, len);
    case PLAIN: return smtp_engine_sendrec_buf(&w->engine, len);
    default: return smtp_tls_out_buf(w->tls, len);
  }
}

void smtp_wire_send_ack(smtp_wire *w, size_t len) {
  size_t n;
  switch (w->layer) {
    case PROXY: smtp_proxy_sendrec_ack(w->proxy, len); break;
    case PLAIN:
      tap(w, smtp_engine_sendrec_buf(&w->engine, &n), len);
      smtp_engine_sendrec_ack(&w->engine, len);
      break;
    default: smtp_tls_out_ack(w->tls, len); break;
  }
}

unsigned char *smtp_wire_recv_buf(smtp_wire *w, size_t *len) {
  switch (w->layer) {
    case PROXY: return smtp_proxy_recvrec_buf(w->proxy, len);
    case PLAIN: return smtp_engine_recvrec_buf(&w->engine, len);
    default: return smtp_tls_in_buf(w->tls, len);
  }
}

void smtp_wire_recv_ack(smtp_wire *w, size_t len) {
  switch (w->layer) {
    case PROXY: smtp_proxy_recvrec_ack(w->proxy, len); break;
    case PLAIN: smtp_engine_recvrec_ack(&w->engine, len); break;
    default: smtp_tls_in_ack(w->tls, len); break;
  }
}

void smtp_wire_recv_eof(smtp_wire *w) {
  switch (w->layer) {
    case PROXY: smtp_proxy_recv_eof(w->proxy); break;
    case PLAIN: smtp_engine_recv_eof(&w->engine); break;
    default: smtp_tls_in_eof(w->tls); break;
  }
}

/* Each of tls, proxy and auth is the wire's alone: wiped, freed, NULLed.
 * (The TLS context is not: the connection's other sessions use it.) */
void smtp_wire_free(smtp_wire *w) {
  if (w->tls) {
    smtp_tls_free(w->tls);   /* zeroes keys and buffers */
    free(w->tls);
    w->tls = NULL;
  }
  if (w->proxy) {
    smtp_proxy_clear(w->proxy);   /* zeroes the proxy's credentials */
    free(w->proxy);
    w->proxy = NULL;
  }
  if (w->auth) auth_end(w);       /* wipes the SASL state, then frees it */
  w->left = NULL;
  w->left_len = 0;
}
