/*
 * test_wire.c -- the wire (proxy hop + TLS filter + SMTP engine) against an
 * in-memory mbedTLS server.
 *
 * No sockets: the client's bytes go into one memory queue and the server's
 * into another.  The server is a second mbedTLS context, in server mode,
 * whose BIO callbacks read and write those queues, and above it a scripted
 * SMTP server: each test says what the server answers and checks, exactly,
 * the plaintext the server received.  Every test runs with the bytes moved
 * whole, one at a time, and in chunks of seven, in both directions (the
 * server's TLS layer reads at most a chunk per call too), so no outcome may
 * depend on where a transport cuts the stream.
 *
 * The certificates are in certs.h (made by certs.sh).  smtp_tls_options
 * takes the CA as a path only, so the CAs are written to temporary files
 * for the run.  Each test's sessions share one TLS context, as the
 * sessions of one connection do; the server can keep sessions (a cache of
 * session IDs, or tickets) for them to resume.  The test adapts to the mbedTLS it is built against: with
 * 2.28 TLS 1.3 must be refused at init, with 3.x it must be negotiated.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/md.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#include <psa/crypto.h>
#endif

#include "../src/wire.h"
#include "certs.h"
#include "harness.h"

#define HELO "client.example"
#define EHLO_LINE "EHLO " HELO "\r\n"
#define GREETING "220 mx.example.net ESMTP\r\n"
#define EHLO_PIPE "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n"

#if MBEDTLS_VERSION_NUMBER >= 0x03000000 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
#define HAVE_TLS13 1
#else
#define HAVE_TLS13 0
#endif

/* ---- the server's one random generator, for the whole run ---- */

static mbedtls_entropy_context srv_entropy;
static mbedtls_ctr_drbg_context srv_drbg;

/* ... and what it keeps of sessions, for the clients to resume */
static mbedtls_ssl_cache_context srv_cache;
static mbedtls_ssl_ticket_context srv_ticket;

/* CA files for smtp_tls_options.cafile */
static char ca_path[64], other_ca_path[64];

/* ---- a session: client wire, transport queues, scripted server ---- */

#define QCAP (1u << 17)

typedef struct {
  unsigned char b[QCAP];
  size_t off, len;
} queue;

enum { SRV_PLAIN, SRV_HANDSHAKE, SRV_SECURE, SRV_FAILED, SRV_CLOSED };

enum { RESUME_NONE, RESUME_CACHE, RESUME_TICKETS };

/* How the server is set up. */
typedef struct {
  const char *cert, *key;  /* PEM; cert NULL: the server never speaks TLS */
  int require_client;      /* ask for a client certificate signed by CERT_CA */
  int min, max;            /* SMTP_TLS_1_x; 0: mbedTLS's default */
  int resume;              /* RESUME_*: how sessions may be resumed */
} server_opts;

typedef struct {
  smtp_wire w;
  size_t chunk;             /* most bytes moved at once, any direction */
  /* the transport */
  queue c2s, s2c;
  int s2c_eof;              /* the server hung up after what s2c holds */
  int eof_given;
  size_t cut;               /* the server's bytes the client gets, at most */
  size_t delivered;
  unsigned char sent[1u << 16];  /* client bytes since mark_sent, raw */
  size_t sent_len;
  unsigned seen;            /* every flag the wire returned */
  char log[4096];           /* client events not checked yet */
  size_t log_len;
  /* the server */
  int mode;
  int srv_ret;              /* the mbedTLS error that stopped it */
  int srv_setup;
  mbedtls_ssl_context ssl;
  mbedtls_ssl_config conf;
  mbedtls_x509_crt crt, ca;
  mbedtls_pk_context key;
  size_t got_at_handshake;  /* got_len when the server's handshake ended */
  unsigned char got[(1u << 21) + (1u << 16)];  /* plaintext received */
  size_t got_len;
  /* the client's TLS context, kept from one session of a test to the next */
  smtp_tls_ctx ctx;
} session;

static session S;           /* ~2.5 MiB: not on the stack */

static size_t min2(size_t a, size_t b)
{
  return a < b ? a : b;
}

static size_t q_used(const queue *q)
{
  return q->len - q->off;
}

static size_t q_push(queue *q, const unsigned char *p, size_t n)
{
  if (q->off > 0) {
    memmove(q->b, q->b + q->off, q->len - q->off);
    q->len -= q->off;
    q->off = 0;
  }
  n = min2(n, QCAP - q->len);
  memcpy(q->b + q->len, p, n);
  q->len += n;
  return n;
}

static size_t q_pop(queue *q, unsigned char *p, size_t n)
{
  n = min2(n, q_used(q));
  memcpy(p, q->b + q->off, n);
  q->off += n;
  if (q->off == q->len)
    q->off = q->len = 0;
  return n;
}

/* ---- the server's BIO: c2s in, s2c out ---- */

static int srv_send(void *ctx, const unsigned char *p, size_t n)
{
  session *s = ctx;
  size_t k = q_push(&s->s2c, p, n);

  return k ? (int)k : MBEDTLS_ERR_SSL_WANT_WRITE;
}

static int srv_recv(void *ctx, unsigned char *p, size_t n)
{
  session *s = ctx;
  size_t k = q_pop(&s->c2s, p, min2(n, s->chunk));

  return k ? (int)k : MBEDTLS_ERR_SSL_WANT_READ;
}

static void srv_free(session *s)
{
  if (!s->srv_setup)
    return;
  mbedtls_ssl_free(&s->ssl);
  mbedtls_ssl_config_free(&s->conf);
  mbedtls_x509_crt_free(&s->crt);
  mbedtls_x509_crt_free(&s->ca);
  mbedtls_pk_free(&s->key);
  s->srv_setup = 0;
}

static int parse_key(mbedtls_pk_context *pk, const char *pem)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  return mbedtls_pk_parse_key(pk, (const unsigned char *)pem, strlen(pem) + 1,
                              NULL, 0, mbedtls_ctr_drbg_random, &srv_drbg);
#else
  return mbedtls_pk_parse_key(pk, (const unsigned char *)pem, strlen(pem) + 1,
                              NULL, 0);
#endif
}

static void srv_versions(session *s, int min, int max)
{
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  if (min)
    mbedtls_ssl_conf_min_tls_version(&s->conf,
                                     (mbedtls_ssl_protocol_version)(0x0300 + min));
  if (max)
    mbedtls_ssl_conf_max_tls_version(&s->conf,
                                     (mbedtls_ssl_protocol_version)(0x0300 + max));
#else
  if (min)
    mbedtls_ssl_conf_min_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3, min);
  if (max)
    mbedtls_ssl_conf_max_version(&s->conf, MBEDTLS_SSL_MAJOR_VERSION_3, max);
#endif
}

/* The server's TLS context, ready for a ClientHello. */
static void srv_setup(session *s, const server_opts *so)
{
  mbedtls_ssl_init(&s->ssl);
  mbedtls_ssl_config_init(&s->conf);
  mbedtls_x509_crt_init(&s->crt);
  mbedtls_x509_crt_init(&s->ca);
  mbedtls_pk_init(&s->key);
  s->srv_setup = 1;
  CHECK_INT(mbedtls_x509_crt_parse(&s->crt, (const unsigned char *)so->cert,
                                   strlen(so->cert) + 1), 0);
  CHECK_INT(parse_key(&s->key, so->key), 0);
  CHECK_INT(mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER,
                                        MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT), 0);
  mbedtls_ssl_conf_rng(&s->conf, mbedtls_ctr_drbg_random, &srv_drbg);
  CHECK_INT(mbedtls_ssl_conf_own_cert(&s->conf, &s->crt, &s->key), 0);
  if (so->require_client) {
    CHECK_INT(mbedtls_x509_crt_parse(&s->ca, (const unsigned char *)CERT_CA,
                                     sizeof CERT_CA), 0);
    mbedtls_ssl_conf_ca_chain(&s->conf, &s->ca, NULL);
    mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  } else {
    mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_NONE);
  }
  srv_versions(s, so->min, so->max);
  if (so->resume == RESUME_CACHE)
    mbedtls_ssl_conf_session_cache(&s->conf, &srv_cache, mbedtls_ssl_cache_get,
                                   mbedtls_ssl_cache_set);
  if (so->resume == RESUME_TICKETS)
    mbedtls_ssl_conf_session_tickets_cb(&s->conf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &srv_ticket);
  CHECK_INT(mbedtls_ssl_setup(&s->ssl, &s->conf), 0);
  mbedtls_ssl_set_bio(&s->ssl, s, srv_send, srv_recv, NULL);
}

/* ---- the client's side of the transport ---- */

static const char *event_name(smtp_event_kind k)
{
  switch (k) {
  case SMTP_EV_GREETING: return "greeting";
  case SMTP_EV_EHLO: return "ehlo";
  case SMTP_EV_HELO: return "helo";
  case SMTP_EV_STARTTLS: return "starttls";
  case SMTP_EV_MAIL: return "mail";
  case SMTP_EV_RCPT: return "rcpt";
  case SMTP_EV_DATA: return "data";
  case SMTP_EV_MESSAGE: return "message";
  case SMTP_EV_RSET: return "rset";
  case SMTP_EV_NOOP: return "noop";
  case SMTP_EV_QUIT: return "quit";
  default: return "?";
  }
}

static void log_event(session *s)
{
  const smtp_event *ev = smtp_engine_event(&s->w.engine);
  size_t room = sizeof s->log - s->log_len;
  int n;

  CHECK(ev != NULL && ev->reply != NULL);
  if (ev == NULL || ev->reply == NULL)
    return;
  if (ev->kind == SMTP_EV_RCPT)
    n = snprintf(s->log + s->log_len, room, "rcpt#%u %d;", ev->index, ev->reply->code);
  else
    n = snprintf(s->log + s->log_len, room, "%s %d;", event_name(ev->kind),
                 ev->reply->code);
  CHECK(n > 0 && (size_t)n < room);
  if (n > 0 && (size_t)n < room)
    s->log_len += (size_t)n;
}

/* smtp_wire_step, checking what must hold whatever happened before. */
static unsigned step(session *s)
{
  unsigned st = smtp_wire_step(&s->w);

  if (s->seen & SMTP_CLOSED)
    CHECK(st & SMTP_CLOSED);            /* CLOSED is final */
  /* closed, the wire may still offer a last TLS alert to send */
  if (st & SMTP_CLOSED)
    CHECK_INT(st & ~(SMTP_CLOSED | SMTP_EVENT | SMTP_SENDREC), 0);
  s->seen |= st;
  return st;
}

/* One move of the client's transport: write, take an event, or read. */
static int client_tick(session *s)
{
  unsigned st = step(s);
  size_t n, room;

  if (st & SMTP_SENDREC) {
    const unsigned char *p = smtp_wire_send_buf(&s->w, &n);

    CHECK(n > 0);
    n = min2(n, s->chunk);
    n = min2(n, QCAP - q_used(&s->c2s));
    if (n == 0)
      return 0;                         /* the server must read first */
    CHECK_INT(q_push(&s->c2s, p, n), n);
    if (s->sent_len + n <= sizeof s->sent) {
      memcpy(s->sent + s->sent_len, p, n);
      s->sent_len += n;
    }
    smtp_wire_send_ack(&s->w, n);
    return 1;
  }
  if (st & SMTP_EVENT) {
    log_event(s);
    smtp_engine_event_ack(&s->w.engine);
    return 1;
  }
  if (st & SMTP_RECVREC) {
    size_t avail = min2(q_used(&s->s2c), s->cut - s->delivered);

    if (avail > 0) {
      unsigned char *p = smtp_wire_recv_buf(&s->w, &room);

      CHECK(room > 0);
      n = min2(min2(avail, room), s->chunk);
      if (n == 0)
        return 0;
      CHECK_INT(q_pop(&s->s2c, p, n), n);
      s->delivered += n;
      smtp_wire_recv_ack(&s->w, n);
      return 1;
    }
    if ((s->s2c_eof || s->delivered == s->cut) && !s->eof_given) {
      s->eof_given = 1;
      smtp_wire_recv_eof(&s->w);
      return 1;
    }
  }
  return 0;
}

/* ---- the server's side ---- */

static void srv_hangup(session *s, int mode)
{
  s->mode = mode;
  s->s2c_eof = 1;
}

static int server_tick(session *s)
{
  size_t c2s = q_used(&s->c2s), s2c = q_used(&s->s2c), got = s->got_len;
  int mode = s->mode, ret;

  switch (s->mode) {
  case SRV_PLAIN:
    s->got_len += q_pop(&s->c2s, s->got + s->got_len,
                        min2(s->chunk, sizeof s->got - s->got_len));
    break;
  case SRV_HANDSHAKE:
    ret = mbedtls_ssl_handshake(&s->ssl);
    if (ret == 0) {
      s->mode = SRV_SECURE;
      s->got_at_handshake = s->got_len;
    } else if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
      s->srv_ret = ret;         /* its alert, if any, is in s2c */
      srv_hangup(s, SRV_FAILED);
    }
    break;
  case SRV_SECURE:
    for (;;) {
      size_t room = min2(sizeof s->got - s->got_len, 16384);

      CHECK(room > 0);
      if (room == 0)
        break;
      ret = mbedtls_ssl_read(&s->ssl, s->got + s->got_len, room);
      if (ret > 0) {
        s->got_len += (size_t)ret;
        continue;
      }
      if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        break;
      if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
        s->mode = SRV_CLOSED;
      } else {
        s->srv_ret = ret;
        srv_hangup(s, SRV_FAILED);
      }
      break;
    }
    break;
  default: {                    /* hung up: what comes is lost */
    static unsigned char lost[QCAP];

    q_pop(&s->c2s, lost, sizeof lost);
    break;
  }
  }
  return mode != s->mode || c2s != q_used(&s->c2s) || s2c != q_used(&s->s2c) ||
         got != s->got_len;
}

/* Move bytes both ways until neither side can do more. */
static void run(session *s)
{
  unsigned long i;

  for (i = 0; i < 100000000ul; i++) {
    int a = client_tick(s);
    int b = server_tick(s);

    if (!a && !b)
      return;
  }
  CHECK(!"the dialogue never settles");
}

/* The server says text: in plaintext before TLS, else encrypted. */
static void server_say_n(session *s, const char *text, size_t len)
{
  size_t pos = 0;

  CHECK(s->mode == SRV_PLAIN || s->mode == SRV_SECURE);
  if (s->mode == SRV_PLAIN) {
    CHECK_INT(q_push(&s->s2c, (const unsigned char *)text, len), len);
  } else if (s->mode == SRV_SECURE) {
    while (pos < len) {
      int ret = mbedtls_ssl_write(&s->ssl, (const unsigned char *)text + pos, len - pos);

      CHECK(ret > 0);
      if (ret <= 0)
        break;
      pos += (size_t)ret;
    }
  }
  run(s);
}

#define server_say(s, text) server_say_n((s), (text), strlen(text))
#define server_say_lit(s, lit) server_say_n((s), (lit), sizeof lit - 1)

/* The server sends len bytes of text in plaintext (its 220 to STARTTLS,
 * a proxy's last reply), then expects a TLS handshake. */
static void server_tls_n(session *s, const server_opts *so, const char *text, size_t len)
{
  CHECK_INT(s->mode, SRV_PLAIN);
  CHECK_INT(q_push(&s->s2c, (const unsigned char *)text, len), len);
  srv_setup(s, so);
  s->mode = SRV_HANDSHAKE;
  s->got_len = 0;
  run(s);
}

#define server_starttls(s, so, text) server_tls_n((s), (so), (text), strlen(text))
#define server_tls_lit(s, so, lit) server_tls_n((s), (so), (lit), sizeof lit - 1)

/* The server hangs up, after a close_notify when notify (and TLS is on). */
static void server_close(session *s, int notify)
{
  if (notify && s->mode == SRV_SECURE)
    CHECK_INT(mbedtls_ssl_close_notify(&s->ssl), 0);
  srv_hangup(s, SRV_CLOSED);
  run(s);
}

/* What the server received since the last check, decrypted. */
#define expect_got(s, want) \
  do { run(s); CHECK_MEM((s)->got, (s)->got_len, (want), strlen(want)); \
       (s)->got_len = 0; } while (0)

#define expect_got_lit(s, lit) \
  do { run(s); CHECK_MEM((s)->got, (s)->got_len, (lit), sizeof lit - 1); \
       (s)->got_len = 0; } while (0)

#define expect_log(s, want) \
  do { run(s); CHECK_MEM((s)->log, (s)->log_len, (want), strlen(want)); \
       (s)->log_len = 0; } while (0)

#define expect_state(s, want) \
  do { run(s); CHECK_INT(step(s), (want)); } while (0)

#define expect_error(s, k, st) \
  do { const smtp_error *e_ = smtp_engine_last_error(&(s)->w.engine); \
       CHECK_INT(e_->kind, (k)); CHECK_INT(e_->stage, (st)); } while (0)

#define expect_message(s, part) \
  do { const char *m_ = smtp_engine_last_error(&(s)->w.engine)->message; \
       if (strstr(m_, (part)) == NULL) \
         h_failf(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"", m_, (part)); \
  } while (0)

/* Why smtp_wire_init said SMTP_ESTATE: a TLS reason, here. */
static const char *wire_setup_error(const smtp_wire *w)
{
  smtp_error_kind kind = SMTP_ERR_NONE;
  const char *m = smtp_wire_setup_error(w, &kind);

  CHECK_INT(kind, SMTP_ERR_TLS);
  CHECK(m != NULL && *m != '\0');
  return m ? m : "";
}

/* Why start said SMTP_ESTATE: the TLS context's setup, or the wire's. */
static const char *setup_error(const session *s)
{
  if (s->ctx.live && !s->ctx.ready)
    return smtp_tls_ctx_error(&s->ctx);
  return wire_setup_error(&s->w);
}

static int has_problem(session *s, const char *word)
{
  const char *names[16];
  size_t i, n = smtp_tls_problems(s->w.tls, names, 16);

  for (i = 0; i < n; i++)
    if (strcmp(names[i], word) == 0)
      return 1;
  return 0;
}

static int contains(const unsigned char *p, size_t n, const char *word)
{
  size_t i, k = strlen(word);

  for (i = 0; i + k <= n; i++)
    if (memcmp(p + i, word, k) == 0)
      return 1;
  return 0;
}

static void mark_sent(session *s)
{
  run(s);
  s->sent_len = 0;
}

/* ---- setting up and tearing down ---- */

static const server_opts SRV_GOOD = { CERT_SERVER, KEY_SERVER, 0, 0, 0, RESUME_NONE };
static const server_opts SRV_EXPIRED = { CERT_EXPIRED, KEY_SERVER, 0, 0, 0, RESUME_NONE };
static const server_opts SRV_NO_TLS = { NULL, NULL, 0, 0, 0, RESUME_NONE };

/* The client's TLS options as lua/smtp/options.lua makes them by default:
 * verification on, TLS 1.2 and newer; the CA is CERT_CA. */
static smtp_tls_options client_opts(void)
{
  smtp_tls_options o;

  memset(&o, 0, sizeof o);
  o.min_version = SMTP_TLS_1_2;
  o.max_version = 0;
  o.verify = 1;
  o.cafile = ca_path;
  o.servername = "localhost";
  return o;
}

static int all_zero(const void *p, size_t n)
{
  const unsigned char *b = p;
  size_t i;

  for (i = 0; i < n; i++)
    if (b[i] != 0)
      return 0;
  return 1;
}

/* Free the session's wire and server, and check that nothing of TLS is
 * left in the wire; the TLS context stays for the next session. */
static void end_session(session *s)
{
  size_t chunk = s->chunk;

  smtp_wire_free(&s->w);
  CHECK(s->w.tls == NULL);   /* wiped by smtp_tls_free, then freed */
  smtp_wire_free(&s->w);                /* twice does no harm */
  srv_free(s);
  memset(&s->w, 0, offsetof(session, got));
  s->chunk = chunk;
  s->got_len = 0;
  s->cut = SIZE_MAX;
}

/* The end of a test: the TLS context goes too, leaving nothing behind. */
static void finish(session *s)
{
  end_session(s);
  smtp_tls_ctx_free(&s->ctx);
  CHECK(all_zero(&s->ctx, sizeof s->ctx));
}

/* A wire for the session, with the TLS context when tls; the server awaits
 * a ClientHello at once with implicit TLS and no proxy. */
static int open_wire(session *s, unsigned opts, const smtp_wire_proxy *px, int tls,
                     int implicit, const server_opts *so)
{
  int r = smtp_wire_init(&s->w, HELO, opts, px, tls ? &s->ctx : NULL, implicit);

  s->mode = SRV_PLAIN;
  if (r == SMTP_OK && implicit && so->cert && px == NULL) {
    srv_setup(s, so);
    s->mode = SRV_HANDSHAKE;
  }
  return r;
}

/* Start a test's session through proxy px (NULL: none) with a new TLS
 * context made of o (NULL: no TLS).  Behind a proxy the server plays the
 * proxy first (in plaintext), and server_tls starts its TLS.  Returns
 * SMTP_ESTATE when the context cannot be set up, else smtp_wire_init's
 * result. */
static int start_via(session *s, unsigned opts, const smtp_wire_proxy *px,
                     const smtp_tls_options *o, int implicit, const server_opts *so)
{
  finish(s);
  if (o && smtp_tls_ctx_init(&s->ctx, o) != SMTP_TLS_DONE)
    return SMTP_ESTATE;
  return open_wire(s, opts, px, o != NULL, implicit, so);
}

/* The next session of the same connection: the same TLS context. */
static int start_again(session *s, unsigned opts, int implicit, const server_opts *so)
{
  end_session(s);
  return open_wire(s, opts, NULL, 1, implicit, so);
}

static int start(session *s, unsigned opts, const smtp_tls_options *o, int implicit,
                 const server_opts *so)
{
  return start_via(s, opts, NULL, o, implicit, so);
}

/* Implicit TLS up to the greeting's EHLO: the handshake must succeed. */
static void implicit_ehlo(session *s, const smtp_tls_options *o, const server_opts *so)
{
  CHECK_INT(start(s, 0, o, 1, so), SMTP_OK);
  CHECK_INT(smtp_wire_stage(&s->w), SMTP_STAGE_CONNECT);
  CHECK_STR(smtp_wire_layer(&s->w), "handshake");
  run(s);
  CHECK_INT(s->mode, SRV_SECURE);
  CHECK_STR(smtp_wire_layer(&s->w), "tls");
  CHECK(smtp_tls_handshaken(s->w.tls));
  CHECK_INT(smtp_wire_stage(&s->w), SMTP_STAGE_GREETING);
  server_say(s, GREETING);
  expect_got(s, EHLO_LINE);
}

/* The handshake of an implicit connection fails on the client's side. */
static void implicit_refused(session *s, const smtp_tls_options *o, const server_opts *so,
                             const char *problem)
{
  CHECK_INT(start(s, 0, o, 1, so), SMTP_OK);
  run(s);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_CONNECT);
  CHECK(smtp_tls_handshaken(s->w.tls));
  if (problem) {
    expect_message(s, "refused");
    if (!has_problem(s, problem))
      h_failf(__FILE__, __LINE__, "problems lack \"%s\" (flags 0x%x)", problem,
              (unsigned)s->w.tls->flags);
  }
  CHECK_INT(s->got_len, 0);           /* not one byte of SMTP went out */
  expect_log(s, "");
}

/* QUIT, answered; the session ends without an error. */
static void quit(session *s)
{
  CHECK_INT(smtp_engine_quit(&s->w.engine), SMTP_OK);
  expect_got(s, "QUIT\r\n");
  server_say(s, "221 2.0.0 bye\r\n");
  expect_log(s, "quit 221;");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_NONE, SMTP_STAGE_CONNECT);
}

/* Body bytes in pieces of at most s->chunk, writing whenever it is full. */
static void body(session *s, const void *p, size_t len)
{
  size_t pos = 0;

  while (pos < len) {
    size_t want = min2(len - pos, s->chunk);
    size_t n = smtp_engine_body(&s->w.engine, (const unsigned char *)p + pos, want);

    if (n == 0) {
      run(s);
      n = smtp_engine_body(&s->w.engine, (const unsigned char *)p + pos, want);
      CHECK(n > 0);
      if (n == 0)
        return;
    }
    pos += n;
  }
}

static void body_end(session *s)
{
  int r = smtp_engine_body_end(&s->w.engine);

  if (r == SMTP_AGAIN) {
    run(s);
    r = smtp_engine_body_end(&s->w.engine);
  }
  CHECK_INT(r, SMTP_OK);
}

/* ---- 1. implicit TLS ---- */

static void t_implicit(session *s)
{
  smtp_tls_options o = client_opts();
  const smtp_caps *c = smtp_engine_caps(&s->w.engine);

  implicit_ehlo(s, &o, &SRV_GOOD);
  CHECK(smtp_tls_peer(s->w.tls) != NULL);
  CHECK_INT(s->w.tls->flags, 0);
  server_say(s, "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 4242\r\n"
                "250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n");
  expect_log(s, "greeting 220;ehlo 250;");
  expect_state(s, SMTP_IDLE);
  CHECK_INT(c->ext, SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_AUTH | SMTP_EXT_8BITMIME);
  CHECK_INT(c->size, 4242);
  CHECK_STR(c->auth, "PLAIN LOGIN");

  CHECK_INT(smtp_engine_mail(&s->w.engine, "a@b.example", "SIZE=30"), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->w.engine, "c@d.example", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->w.engine, "e@f.example", ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->w.engine), SMTP_OK);
  expect_got(s, "MAIL FROM:<a@b.example> SIZE=30\r\nRCPT TO:<c@d.example>\r\n"
                "RCPT TO:<e@f.example>\r\nDATA\r\n");
  server_say(s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n354 go ahead\r\n");
  expect_log(s, "mail 250;rcpt#0 250;rcpt#1 550;data 354;");
  expect_state(s, SMTP_SENDAPP);
  body(s, "Subject: hi\n\n.hidden\nhello\n", 27);
  body_end(s);
  expect_got(s, "Subject: hi\r\n\r\n..hidden\r\nhello\r\n.\r\n");
  server_say(s, "250 2.0.0 queued\r\n");
  expect_log(s, "message 250;");
  expect_state(s, SMTP_IDLE);
  quit(s);
  CHECK(s->w.tls->failed == 0);
  finish(s);
}

/* ---- 2. STARTTLS ---- */

/* Plaintext greeting and EHLO offering STARTTLS; the client asks for it. */
static void to_starttls(session *s, unsigned opts, const smtp_tls_options *o)
{
  CHECK_INT(start(s, opts, o, 0, &SRV_GOOD), SMTP_OK);
  CHECK_INT(smtp_wire_stage(&s->w), SMTP_STAGE_GREETING);
  CHECK_STR(smtp_wire_layer(&s->w), "plain");
  server_say(s, GREETING);
  expect_got(s, EHLO_LINE);
  server_say(s, "250-mx.example.net\r\n250-AUTH PLAIN\r\n250-SIZE 100\r\n"
                "250-PIPELINING\r\n250 STARTTLS\r\n");
  expect_got(s, "STARTTLS\r\n");
  expect_log(s, "greeting 220;ehlo 250;");
  mark_sent(s);
}

static void t_starttls(session *s)
{
  smtp_tls_options o = client_opts();
  const smtp_caps *c = smtp_engine_caps(&s->w.engine);

  to_starttls(s, SMTP_OPT_STARTTLS, &o);
  CHECK_INT(c->ext, SMTP_EXT_AUTH | SMTP_EXT_SIZE | SMTP_EXT_PIPELINING | SMTP_EXT_STARTTLS);
  CHECK_INT(c->size, 100);
  CHECK(!smtp_tls_handshaken(s->w.tls));
  server_starttls(s, &SRV_GOOD, "220 2.0.0 ready to start TLS\r\n");
  CHECK_INT(s->mode, SRV_SECURE);
  CHECK(smtp_tls_handshaken(s->w.tls));
  CHECK_STR(smtp_wire_layer(&s->w), "tls");
  /* the second EHLO came after the handshake, through it */
  CHECK_INT(s->got_at_handshake, 0);
  CHECK(s->sent_len > 0 && s->sent[0] == 0x16);   /* a TLS handshake record */
  CHECK(!contains(s->sent, s->sent_len, "EHLO"));
  expect_got(s, EHLO_LINE);
  expect_log(s, "starttls 220;");
  CHECK_INT(smtp_wire_stage(&s->w), SMTP_STAGE_EHLO);
  /* what plaintext said is forgotten; what TLS says counts */
  CHECK_INT(c->ext, 0);
  server_say(s, "250-mx.example.net\r\n250 SIZE 200\r\n");
  expect_log(s, "ehlo 250;");
  expect_state(s, SMTP_IDLE);
  CHECK_INT(c->ext, SMTP_EXT_SIZE);
  CHECK_INT(c->size, 200);
  CHECK_STR(c->auth, "");
  /* no PIPELINING any more: one command at a time */
  CHECK_INT(smtp_engine_mail(&s->w.engine, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->w.engine, "c@d", ""), SMTP_AGAIN);
  expect_got(s, "MAIL FROM:<a@b>\r\n");
  server_say(s, "250 ok\r\n");
  CHECK_INT(smtp_engine_rset(&s->w.engine), SMTP_OK);
  expect_got(s, "RSET\r\n");
  server_say(s, "250 ok\r\n");
  expect_log(s, "mail 250;rset 250;");
  quit(s);
  finish(s);

  /* opportunistic, offered: the same */
  to_starttls(s, SMTP_OPT_STARTTLS_TRY, &o);
  server_starttls(s, &SRV_GOOD, "220 go\r\n");
  expect_got(s, EHLO_LINE);
  server_say(s, "250 mx.example.net\r\n");
  expect_log(s, "starttls 220;ehlo 250;");
  expect_state(s, SMTP_IDLE);
  CHECK_INT(c->ext, 0);
  finish(s);

  /* refused by the server: fatal when required ... */
  to_starttls(s, SMTP_OPT_STARTTLS, &o);
  server_say(s, "454 4.7.0 TLS not available\r\n");
  expect_log(s, "starttls 454;");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS);
  CHECK_INT(smtp_engine_last_error(&s->w.engine)->code, 454);
  CHECK_INT(s->sent_len, 0);
  finish(s);

  /* ... plaintext when opportunistic */
  to_starttls(s, SMTP_OPT_STARTTLS_TRY, &o);
  server_say(s, "454 4.7.0 TLS not available\r\n");
  expect_log(s, "starttls 454;");
  expect_state(s, SMTP_IDLE);
  CHECK_INT(smtp_engine_noop(&s->w.engine), SMTP_OK);
  expect_got(s, "NOOP\r\n");
  finish(s);
}

/* ---- 3. STARTTLS response injection ---- */

static void t_starttls_injection(session *s)
{
  smtp_tls_options o = client_opts();

  to_starttls(s, SMTP_OPT_STARTTLS, &o);
  server_starttls(s, &SRV_GOOD, "220 go\r\n250 evil\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS);
  CHECK_INT(s->got_len, 0);
  CHECK(!smtp_tls_handshaken(s->w.tls));
  if (7 % s->chunk != s->chunk - 1) {
    /* the LF ending "220 go\r\n" (byte 7) came in the same read as the
     * byte after it: refused on the spot */
    expect_message(s, "injection");
    CHECK_INT(s->sent_len, 0);
    expect_log(s, "starttls 220;");
  } else {
    /* the 220 came alone: the client rightly began the handshake, and
     * the bytes after it fail as TLS */
    CHECK(s->sent_len > 0 && s->sent[0] == 0x16);
    expect_message(s, "plaintext");
  }
  finish(s);
}

/* ---- 4. STARTTLS not offered ---- */

static void t_starttls_missing(session *s)
{
  smtp_tls_options o = client_opts();

  CHECK_INT(start(s, SMTP_OPT_STARTTLS, &o, 0, &SRV_GOOD), SMTP_OK);
  server_say(s, GREETING);
  expect_got(s, EHLO_LINE);
  server_say(s, EHLO_PIPE);
  expect_log(s, "greeting 220;ehlo 250;");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS);
  expect_message(s, "STARTTLS");
  expect_got(s, "");
  CHECK(!smtp_tls_handshaken(s->w.tls));
  finish(s);

  CHECK_INT(start(s, SMTP_OPT_STARTTLS_TRY, &o, 0, &SRV_GOOD), SMTP_OK);
  server_say(s, GREETING);
  expect_got(s, EHLO_LINE);
  server_say(s, EHLO_PIPE);
  expect_log(s, "greeting 220;ehlo 250;");
  expect_state(s, SMTP_IDLE);
  expect_got(s, "");
  CHECK_INT(smtp_engine_mail(&s->w.engine, "a@b", ""), SMTP_OK);
  expect_got(s, "MAIL FROM:<a@b>\r\n");             /* in the clear */
  CHECK(!smtp_tls_handshaken(s->w.tls));
  CHECK_STR(smtp_wire_layer(&s->w), "plain");
  finish(s);
}

/* ---- 5. verification ---- */

static void pin_of(const char *pem, unsigned char out[32])
{
  mbedtls_x509_crt c;
  unsigned char der[1024];
  int n;

  mbedtls_x509_crt_init(&c);
  CHECK_INT(mbedtls_x509_crt_parse(&c, (const unsigned char *)pem, strlen(pem) + 1), 0);
  n = mbedtls_pk_write_pubkey_der(&c.pk, der, sizeof der);
  CHECK(n > 0);
  if (n > 0)
    CHECK_INT(mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256),
                         der + sizeof der - n, (size_t)n, out), 0);
  mbedtls_x509_crt_free(&c);
}

static void t_verify(session *s)
{
  smtp_tls_options o;
  unsigned char pin[32], ip[4] = { 127, 0, 0, 1 }, ip2[4] = { 127, 0, 0, 2 };

  /* expired */
  o = client_opts();
  implicit_refused(s, &o, &SRV_EXPIRED, "expired");
  expect_message(s, "expired");
  CHECK(!has_problem(s, "not-trusted"));
  finish(s);

  /* ... through STARTTLS: the same, at stage starttls */
  to_starttls(s, SMTP_OPT_STARTTLS, &o);
  server_starttls(s, &SRV_EXPIRED, "220 go\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS);
  CHECK(has_problem(s, "expired"));
  expect_got(s, "");
  finish(s);

  /* signed by a CA we do not trust */
  o = client_opts();
  o.cafile = other_ca_path;
  implicit_refused(s, &o, &SRV_GOOD, "not-trusted");
  finish(s);

  /* verify = false: the same server is accepted, the flags still tell */
  o.verify = 0;
  implicit_ehlo(s, &o, &SRV_GOOD);
  CHECK(has_problem(s, "not-trusted"));
  finish(s);

  o = client_opts();
  o.verify = 0;
  implicit_ehlo(s, &o, &SRV_EXPIRED);
  CHECK(has_problem(s, "expired"));
  finish(s);

  /* the wrong name */
  o = client_opts();
  o.servername = "wrong.example";
  implicit_refused(s, &o, &SRV_GOOD, "name-mismatch");
  CHECK(!has_problem(s, "not-trusted"));
  finish(s);

  /* an IP literal, matched against the iPAddress name (as lsmtp.c fills
   * ip with smtp_net_ip) */
  o = client_opts();
  o.servername = "127.0.0.1";
  o.ip = ip;
  o.ip_len = 4;
  implicit_ehlo(s, &o, &SRV_GOOD);
  CHECK_INT(s->w.tls->flags, 0);
  finish(s);

  o.servername = "127.0.0.2";
  o.ip = ip2;
  implicit_refused(s, &o, &SRV_GOOD, "name-mismatch");
  finish(s);

  /* the pin: right, alone and with verification off */
  pin_of(CERT_SERVER, pin);
  o = client_opts();
  o.pin = pin;
  implicit_ehlo(s, &o, &SRV_GOOD);
  finish(s);

  o.verify = 0;
  o.cafile = other_ca_path;
  implicit_ehlo(s, &o, &SRV_GOOD);
  finish(s);

  /* wrong: refused even though the chain is good */
  pin[5] ^= 0x40;
  o = client_opts();
  o.pin = pin;
  implicit_refused(s, &o, &SRV_GOOD, NULL);
  expect_message(s, "pin");
  CHECK_INT(s->w.tls->flags, 0);
  finish(s);

  o.verify = 0;
  implicit_refused(s, &o, &SRV_GOOD, NULL);
  expect_message(s, "pin");
  finish(s);

  /* the pin of another key (the CA's) */
  pin_of(CERT_CA, pin);
  o = client_opts();
  o.pin = pin;
  implicit_refused(s, &o, &SRV_GOOD, NULL);
  finish(s);
}

/* ---- 6. versions ---- */

static void t_versions(session *s)
{
  smtp_tls_options o = client_opts();
  server_opts so = SRV_GOOD;

  o.min_version = o.max_version = SMTP_TLS_1_2;
  implicit_ehlo(s, &o, &SRV_GOOD);
  CHECK_STR(smtp_tls_version(s->w.tls), "TLSv1.2");
  CHECK(strstr(smtp_tls_cipher(s->w.tls), "TLS-") != NULL);
  finish(s);

  /* the default, 1.2 and up: the newest both have */
  o = client_opts();
  implicit_ehlo(s, &o, &SRV_GOOD);
  CHECK_STR(smtp_tls_version(s->w.tls), HAVE_TLS13 ? "TLSv1.3" : "TLSv1.2");
  finish(s);

  o.min_version = o.max_version = SMTP_TLS_1_3;
  if (HAVE_TLS13) {
    implicit_ehlo(s, &o, &SRV_GOOD);
    CHECK_STR(smtp_tls_version(s->w.tls), "TLSv1.3");
    server_say(s, "250 mx\r\n");
    expect_log(s, "greeting 220;ehlo 250;");
    expect_state(s, SMTP_IDLE);
    quit(s);
    finish(s);

    /* a server that stops at 1.2 */
    so.max = SMTP_TLS_1_2;
    CHECK_INT(start(s, 0, &o, 1, &so), SMTP_OK);
    run(s);
    expect_state(s, SMTP_CLOSED);
    expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_CONNECT);
    CHECK(!smtp_tls_handshaken(s->w.tls));
    finish(s);
  } else {
    char want[32];

    CHECK_INT(start(s, 0, &o, 1, &SRV_GOOD), SMTP_ESTATE);
    snprintf(want, sizeof want, "%d.%d", MBEDTLS_VERSION_MAJOR, MBEDTLS_VERSION_MINOR);
    CHECK(strstr(setup_error(s), "TLS 1.3") != NULL);
    CHECK(strstr(setup_error(s), want) != NULL);
    CHECK(strstr(setup_error(s), "2.28") != NULL);
    finish(s);

    o.min_version = SMTP_TLS_1_2;
    CHECK_INT(start(s, 0, &o, 1, &SRV_GOOD), SMTP_ESTATE);
    CHECK(strstr(setup_error(s), "TLS 1.3") != NULL);
    finish(s);

    /* a server that starts at 1.2, a client that stops at 1.1 */
#if defined(MBEDTLS_SSL_PROTO_TLS1_1)
    o.min_version = SMTP_TLS_1_0;
    o.max_version = SMTP_TLS_1_1;
    so.min = SMTP_TLS_1_2;
    CHECK_INT(start(s, 0, &o, 1, &so), SMTP_OK);
    run(s);
    expect_state(s, SMTP_CLOSED);
    expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_CONNECT);
    CHECK(!smtp_tls_handshaken(s->w.tls));
    finish(s);
#endif
  }
}

/* ---- 7. a plaintext server on an implicit TLS connection ---- */

static void t_plaintext_server(session *s)
{
  smtp_tls_options o = client_opts();

  CHECK_INT(start(s, 0, &o, 1, &SRV_NO_TLS), SMTP_OK);
  server_say(s, "220 plain ESMTP\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_CONNECT);
  expect_message(s, "plaintext");
  expect_message(s, "220");
  expect_log(s, "");
  CHECK(s->got_len > 0 && s->got[0] == 0x16);   /* the ClientHello */
  finish(s);
}

/* ---- 8. end of stream ---- */

static void t_eof(session *s)
{
  smtp_tls_options o = client_opts();

  /* the server reads the ClientHello and hangs up */
  CHECK_INT(start(s, 0, &o, 1, &SRV_NO_TLS), SMTP_OK);
  run(s);
  CHECK(s->got_len > 0);
  server_close(s, 0);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_CONNECT);
  expect_message(s, "closed");
  finish(s);

  /* ... after part of its first flight */
  CHECK_INT(start(s, 0, &o, 1, &SRV_GOOD), SMTP_OK);
  s->cut = 60;
  run(s);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_CONNECT);
  expect_message(s, "closed");
  CHECK(!smtp_tls_handshaken(s->w.tls));
  finish(s);

  /* ... in a STARTTLS handshake */
  to_starttls(s, SMTP_OPT_STARTTLS, &o);
  s->cut = s->delivered + 8 + 30;                /* "220 go\r\n" and a bit */
  server_starttls(s, &SRV_GOOD, "220 go\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS);
  expect_message(s, "closed");
  finish(s);

  /* after the handshake, waiting for the greeting */
  CHECK_INT(start(s, 0, &o, 1, &SRV_GOOD), SMTP_OK);
  run(s);
  CHECK_INT(s->mode, SRV_SECURE);
  server_close(s, 0);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_GREETING);
  finish(s);

  /* waiting for the EHLO reply, with and without close_notify */
  implicit_ehlo(s, &o, &SRV_GOOD);
  server_close(s, 1);
  expect_log(s, "greeting 220;");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_EHLO);
  finish(s);

  implicit_ehlo(s, &o, &SRV_GOOD);
  server_close(s, 0);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_EHLO);
  finish(s);

  /* in the middle of a reply */
  implicit_ehlo(s, &o, &SRV_GOOD);
  server_say(s, "250-mx\r\n250-PIPE");
  server_close(s, 1);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_EHLO);
  finish(s);

  /* idle: noticed at the next command */
  implicit_ehlo(s, &o, &SRV_GOOD);
  server_say(s, EHLO_PIPE);
  expect_state(s, SMTP_IDLE);
  server_close(s, 1);
  expect_state(s, SMTP_IDLE);
  CHECK_INT(smtp_engine_noop(&s->w.engine), SMTP_OK);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_CLOSED, SMTP_STAGE_MAIL);   /* NOOP counts as "mail" */
  expect_message(s, "closed");
  finish(s);

  /* after QUIT the server may just hang up */
  implicit_ehlo(s, &o, &SRV_GOOD);
  server_say(s, EHLO_PIPE);
  CHECK_INT(smtp_engine_quit(&s->w.engine), SMTP_OK);
  expect_got(s, "QUIT\r\n");
  server_close(s, 0);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_NONE, SMTP_STAGE_CONNECT);
  finish(s);
}

/* ---- 9. client certificates ---- */

static void t_client_cert(session *s)
{
  smtp_tls_options o = client_opts();
  server_opts so = SRV_GOOD;
  const mbedtls_x509_crt *peer;

  so.require_client = 1;

  /* without one: the server refuses.  Under TLS 1.2 the client hears it
   * in the handshake; under 1.3 its handshake is over by then, and the
   * alert comes instead of the greeting. */
  CHECK_INT(start(s, 0, &o, 1, &so), SMTP_OK);
  run(s);
  CHECK_INT(s->mode, SRV_FAILED);
  expect_state(s, SMTP_CLOSED);
  CHECK_INT(smtp_engine_last_error(&s->w.engine)->kind, SMTP_ERR_TLS);
  if (HAVE_TLS13)
    CHECK_INT(smtp_engine_last_error(&s->w.engine)->stage, SMTP_STAGE_GREETING);
  else
    CHECK_INT(smtp_engine_last_error(&s->w.engine)->stage, SMTP_STAGE_CONNECT);
  expect_log(s, "");
  finish(s);

  /* with one, as PEM text */
  o.certificate = CERT_CLIENT;
  o.key = KEY_CLIENT;
  implicit_ehlo(s, &o, &so);
  peer = mbedtls_ssl_get_peer_cert(&s->ssl);
  CHECK(peer != NULL);
  if (peer != NULL)
    CHECK_MEM(peer->raw.p, peer->raw.len, s->ctx.cert.raw.p, s->ctx.cert.raw.len);
  CHECK_INT(mbedtls_ssl_get_verify_result(&s->ssl), 0);
  finish(s);

  /* ... and a server that asks for none gets none */
  implicit_ehlo(s, &o, &SRV_GOOD);
  finish(s);

  /* a certificate without its key, and a key that is not its */
  o.key = NULL;
  CHECK_INT(start(s, 0, &o, 1, &so), SMTP_ESTATE);
  CHECK(strstr(setup_error(s), "tls.key") != NULL);
  finish(s);

  o.key = "-----BEGIN PRIVATE KEY-----\nbad\n-----END PRIVATE KEY-----\n";
  CHECK_INT(start(s, 0, &o, 1, &so), SMTP_ESTATE);
  CHECK(strstr(setup_error(s), "tls.key") != NULL);
  finish(s);

  o.key = KEY_SERVER;
  if (start(s, 0, &o, 1, &so) == SMTP_OK) {
    /* not caught at init: the server must refuse the handshake */
    run(s);
    expect_state(s, SMTP_CLOSED);
    CHECK_INT(smtp_engine_last_error(&s->w.engine)->kind, SMTP_ERR_TLS);
    CHECK_INT(s->mode, SRV_FAILED);
  } else {
    CHECK(strstr(setup_error(s), "match") != NULL);
  }
  finish(s);
}

/* ---- 10. a large body ---- */

static uint64_t rng_next(uint64_t *x)
{
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

#define BIG (1u << 20)
static unsigned char big_in[BIG], big_want[2 * BIG + 8];

/* Random lines ending in CRLF or LF, a fifth of them starting with ".";
 * big_want gets what the server must receive: CRLF, dot-stuffed, ".". */
static size_t make_big(size_t *want_len)
{
  static const char alphabet[] =
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:-\t";
  uint64_t rng = 0x9e3779b97f4a7c15u;
  size_t n = 0, w = 0;

  while (n < BIG - 1002) {
    size_t len = (size_t)(rng_next(&rng) % 200), i, start = n;
    int dot = rng_next(&rng) % 5 == 0, crlf = rng_next(&rng) % 2 == 0;

    if (dot)
      big_in[n++] = '.';
    for (i = 0; i < len; i++)
      big_in[n++] = (unsigned char)alphabet[rng_next(&rng) % (sizeof alphabet - 1)];
    if (n > start && big_in[start] == '.')
      big_want[w++] = '.';
    memcpy(big_want + w, big_in + start, n - start);
    w += n - start;
    if (crlf)
      big_in[n++] = '\r';
    big_in[n++] = '\n';
    big_want[w++] = '\r';
    big_want[w++] = '\n';
  }
  big_want[w++] = '.';
  big_want[w++] = '\r';
  big_want[w++] = '\n';
  *want_len = w;
  return n;
}

static void t_big_body(session *s)
{
  smtp_tls_options o = client_opts();
  size_t want_len, len = make_big(&want_len);

  implicit_ehlo(s, &o, &SRV_GOOD);
  server_say(s, EHLO_PIPE);
  expect_state(s, SMTP_IDLE);
  CHECK_INT(smtp_engine_mail(&s->w.engine, "a@b", ""), SMTP_OK);
  CHECK_INT(smtp_engine_rcpt(&s->w.engine, "c@d", ""), SMTP_OK);
  CHECK_INT(smtp_engine_data(&s->w.engine), SMTP_OK);
  expect_got(s, "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n");
  server_say(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  body(s, big_in, len);
  body_end(s);
  run(s);
  CHECK_INT(s->got_len, want_len);
  CHECK(s->got_len == want_len && memcmp(s->got, big_want, want_len) == 0);
  s->got_len = 0;
  server_say(s, "250 2.0.0 queued\r\n");
  expect_log(s, "greeting 220;ehlo 250;mail 250;rcpt#0 250;data 354;message 250;");
  quit(s);
  finish(s);
}

/* ---- 12. through a proxy ---- */

/* SOCKS5 (RFC 1928) to mx.example.com:587, without authentication. */
#define S5_HELLO   "\x05\x01\x00"
#define S5_CONNECT "\x05\x01\x00\x03\x0e" "mx.example.com" "\x02\x4b"
#define S5_NOAUTH  "\x05\x00"
#define S5_OK      "\x05\x00\x00\x01\x7f\x00\x00\x01\x9c\x40"

static const smtp_wire_proxy SOCKS5 = {
  SMTP_PROXY_SOCKS5, "mx.example.com", 587, NULL, NULL, NULL
};

static void to_tunnel(session *s, unsigned opts, const smtp_tls_options *o, int implicit,
                      const server_opts *so)
{
  CHECK_INT(start_via(s, opts, &SOCKS5, o, implicit, so), SMTP_OK);
  CHECK_STR(smtp_wire_layer(&s->w), "proxy");
  CHECK_INT(smtp_wire_stage(&s->w), SMTP_STAGE_CONNECT);
  expect_got_lit(s, S5_HELLO);
  server_say_lit(s, S5_NOAUTH);
  expect_got_lit(s, S5_CONNECT);
}

static void t_proxy(session *s)
{
  smtp_tls_options o = client_opts();

  /* STARTTLS: the greeting comes in the same read as the proxy's reply
   * (whole), or after it */
  to_tunnel(s, SMTP_OPT_STARTTLS, &o, 0, &SRV_GOOD);
  server_say_lit(s, S5_OK GREETING);
  expect_got(s, EHLO_LINE);
  CHECK_STR(smtp_wire_layer(&s->w), "plain");
  server_say(s, "250-mx.example.net\r\n250 STARTTLS\r\n");
  expect_got(s, "STARTTLS\r\n");
  server_starttls(s, &SRV_GOOD, "220 go\r\n");
  CHECK_STR(smtp_wire_layer(&s->w), "tls");
  expect_got(s, EHLO_LINE);
  server_say(s, EHLO_PIPE);
  expect_log(s, "greeting 220;ehlo 250;starttls 220;ehlo 250;");
  expect_state(s, SMTP_IDLE);
  quit(s);
  finish(s);

  /* implicit TLS: the handshake starts once the tunnel is open */
  to_tunnel(s, 0, &o, 1, &SRV_GOOD);
  CHECK_INT(s->got_len, 0);
  server_tls_lit(s, &SRV_GOOD, S5_OK);
  CHECK_INT(s->mode, SRV_SECURE);
  CHECK_STR(smtp_wire_layer(&s->w), "tls");
  CHECK_INT(smtp_wire_stage(&s->w), SMTP_STAGE_GREETING);
  server_say(s, GREETING);
  expect_got(s, EHLO_LINE);
  server_say(s, EHLO_PIPE);
  expect_log(s, "greeting 220;ehlo 250;");
  quit(s);
  finish(s);

  /* implicit TLS, and a plaintext server behind the proxy whose greeting
   * comes with the proxy's reply: it reaches TLS, which refuses it */
  to_tunnel(s, 0, &o, 1, &SRV_NO_TLS);
  server_say_lit(s, S5_OK "220 plain ESMTP\r\n");
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_CONNECT);
  expect_message(s, "plaintext");
  finish(s);

  /* the proxy hangs up */
  to_tunnel(s, 0, &o, 1, &SRV_GOOD);
  server_close(s, 0);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_PROXY, SMTP_STAGE_CONNECT);
  finish(s);
}

/* ---- 11. smtp_wire_free zeroes ---- */

static void t_free(session *s)
{
  smtp_tls_options o = client_opts();
  static smtp_wire w;
  static smtp_tls_ctx c;

  /* after a whole session: keys, buffers and all */
  implicit_ehlo(s, &o, &SRV_GOOD);
  CHECK(!all_zero(s->w.tls, sizeof *s->w.tls));
  smtp_wire_free(&s->w);
  CHECK(s->w.tls == NULL);   /* wiped by smtp_tls_free, then freed */
  finish(s);

  /* after STARTTLS was not even reached */
  CHECK_INT(start(s, SMTP_OPT_STARTTLS, &o, 0, &SRV_GOOD), SMTP_OK);
  smtp_wire_free(&s->w);
  CHECK(s->w.tls == NULL);
  finish(s);

  /* after a failed init, with a client key loaded; a context that failed
   * serves no session */
  o.certificate = CERT_CLIENT;
  o.key = KEY_CLIENT;
  o.cafile = "/nonexistent/ca.pem";
  CHECK_INT(smtp_tls_ctx_init(&c, &o), SMTP_TLS_FAIL);
  CHECK(strstr(smtp_tls_ctx_error(&c), "cafile") != NULL);
  CHECK_INT(smtp_wire_init(&w, HELO, 0, NULL, &c, 1), SMTP_ESTATE);
  CHECK(strstr(wire_setup_error(&w), "cafile") != NULL);
  smtp_wire_free(&w);
  CHECK(w.tls == NULL);
  smtp_tls_ctx_free(&c);
  CHECK(all_zero(&c, sizeof c));
  smtp_tls_ctx_free(&c);                /* twice does no harm */

  /* without TLS there is nothing to free: nor anything allocated */
  CHECK_INT(smtp_wire_init(&w, HELO, 0, NULL, NULL, 0), SMTP_OK);
  CHECK(w.tls == NULL && w.proxy == NULL && w.auth == NULL);
  smtp_wire_free(&w);
  o = client_opts();
  CHECK_INT(smtp_tls_ctx_init(&c, &o), SMTP_TLS_DONE);
  CHECK_INT(smtp_wire_init(&w, "bad name", 0, NULL, &c, 1), SMTP_EINVAL);
  smtp_wire_free(&w);
  smtp_tls_ctx_free(&c);
}

/* ---- 13. one TLS context for a connection's sessions, and resumption ---- */

/* The greeting, EHLO and QUIT of an implicit session whose handshake is
 * done: a TLS 1.3 ticket comes with the greeting. */
static void greet_and_quit(session *s)
{
  CHECK_INT(s->mode, SRV_SECURE);
  server_say(s, GREETING);
  expect_got(s, EHLO_LINE);
  server_say(s, "250 mx.example.net\r\n");
  expect_log(s, "greeting 220;ehlo 250;");
  expect_state(s, SMTP_IDLE);
  quit(s);
}

/* A connection's first session over implicit TLS: handshake, greeting,
 * EHLO and QUIT, which leaves the session for the next one to resume. */
static void first_session(session *s, const smtp_tls_options *o, const server_opts *so)
{
  implicit_ehlo(s, o, so);
  server_say(s, "250 mx.example.net\r\n");
  expect_log(s, "greeting 220;ehlo 250;");
  quit(s);
}

/* Another session of the connection, over implicit TLS: its handshake
 * must succeed; whether it resumed is the caller's to check. */
static void implicit_again(session *s, const server_opts *so)
{
  CHECK_INT(start_again(s, 0, 1, so), SMTP_OK);
  run(s);
  CHECK_STR(smtp_wire_layer(&s->w), "tls");
  CHECK(smtp_tls_peer(s->w.tls) != NULL);
  greet_and_quit(s);
}

/* Another session whose handshake the client refuses. */
static void implicit_again_refused(session *s, const server_opts *so, const char *why)
{
  CHECK_INT(start_again(s, 0, 1, so), SMTP_OK);
  run(s);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_CONNECT);
  expect_message(s, why);
  CHECK(smtp_tls_handshaken(s->w.tls));
  CHECK_INT(s->got_len, 0);           /* not one byte of SMTP went out */
  CHECK(!s->ctx.has_saved);           /* and the session is not kept */
}

static void t_resume(session *s)
{
  /* session IDs and tickets under TLS 1.2; tickets under the newest */
  static const struct { int resume, max; } ways[] = {
    { RESUME_CACHE, SMTP_TLS_1_2 }, { RESUME_TICKETS, SMTP_TLS_1_2 }, { RESUME_TICKETS, 0 },
  };
  smtp_tls_options o = client_opts();
  server_opts so = SRV_GOOD;
  size_t i;

  for (i = 0; i < sizeof ways / sizeof *ways; i++) {
    so.resume = ways[i].resume;
    so.max = ways[i].max;
    implicit_ehlo(s, &o, &so);
    CHECK(!smtp_tls_resumed(s->w.tls));
    server_say(s, "250 mx.example.net\r\n");
    expect_log(s, "greeting 220;ehlo 250;");
    expect_state(s, SMTP_IDLE);
    quit(s);
    CHECK(s->ctx.has_saved);
    implicit_again(s, &so);
    CHECK(smtp_tls_resumed(s->w.tls));
    CHECK_INT(s->w.tls->flags, 0);
    CHECK(s->ctx.has_saved);
    implicit_again(s, &so);
    CHECK(smtp_tls_resumed(s->w.tls));
    finish(s);
  }

  /* a server that keeps nothing: the session is offered, and a full
   * handshake follows (TLS 1.2: under 1.3 there would be no ticket to
   * offer) */
  so = SRV_GOOD;
  so.max = SMTP_TLS_1_2;
  first_session(s, &o, &so);
  implicit_again(s, &so);
  CHECK(s->w.tls->offered);
  CHECK(!smtp_tls_resumed(s->w.tls));
  finish(s);

  /* ... and a ticket, under the newest version, that the server cannot
   * read: a full handshake again, not taken for a resumption */
  so = SRV_GOOD;
  so.resume = RESUME_TICKETS;
  first_session(s, &o, &so);
  CHECK(s->ctx.has_saved);
  implicit_again(s, &SRV_GOOD);
  CHECK(s->w.tls->offered);
  CHECK(!smtp_tls_resumed(s->w.tls));
  CHECK_INT(s->w.tls->flags, 0);
  finish(s);

  /* STARTTLS resumes too */
  so.resume = RESUME_TICKETS;
  so.max = 0;
  for (i = 0; i < 2; i++) {
    if (i == 0)
      to_starttls(s, SMTP_OPT_STARTTLS, &o);
    else {
      CHECK_INT(start_again(s, SMTP_OPT_STARTTLS, 0, &so), SMTP_OK);
      server_say(s, GREETING);
      expect_got(s, EHLO_LINE);
      server_say(s, "250-mx.example.net\r\n250 STARTTLS\r\n");
      expect_got(s, "STARTTLS\r\n");
      expect_log(s, "greeting 220;ehlo 250;");
    }
    server_starttls(s, &so, "220 go\r\n");
    CHECK_STR(smtp_wire_layer(&s->w), "tls");
    CHECK_INT(smtp_tls_resumed(s->w.tls), i == 1);
    expect_log(s, "starttls 220;");
    expect_got(s, EHLO_LINE);
    server_say(s, "250 mx.example.net\r\n");
    expect_log(s, "ehlo 250;");
    quit(s);
  }
  finish(s);
}

/* A resumed session passes the same checks as a full handshake: mbedTLS
 * brings back the certificate and its verification result.  The checks
 * of a context never change in use; here the test changes them between
 * sessions to see that they are applied at all. */
static void t_resume_checked(session *s)
{
  smtp_tls_options o = client_opts();
  server_opts so = SRV_GOOD;
  unsigned char pin[32], ip[4] = { 127, 0, 0, 1 };

  so.resume = RESUME_TICKETS;
  pin_of(CERT_SERVER, pin);
  o.pin = pin;
  first_session(s, &o, &so);
  CHECK(s->ctx.has_saved);

  /* another pin: the resumed session is refused, and forgotten */
  s->ctx.pin[5] ^= 0x40;
  implicit_again_refused(s, &so, "pin");
  CHECK(smtp_tls_resumed(s->w.tls));
  /* ... so the next one is a full handshake, refused as well */
  implicit_again_refused(s, &so, "pin");
  CHECK(!s->w.tls->offered);
  s->ctx.pin[5] ^= 0x40;
  implicit_again(s, &so);
  CHECK(!smtp_tls_resumed(s->w.tls));
  implicit_again(s, &so);
  CHECK(smtp_tls_resumed(s->w.tls));

  finish(s);

  /* another IP address: the certificate came back with the session.  (A
   * DNS name mbedTLS checks in the full handshake, and its verdict comes
   * back with the session: a context's name never changes.) */
  o = client_opts();
  o.servername = "127.0.0.1";
  o.ip = ip;
  o.ip_len = 4;
  first_session(s, &o, &so);
  s->ctx.ip[3] = 2;
  implicit_again_refused(s, &so, "refused");
  CHECK(smtp_tls_resumed(s->w.tls));
  CHECK(has_problem(s, "name-mismatch"));
  finish(s);

  /* a chain accepted unverified: its problems stay reported, and with
   * verification on the resumed session is refused for them */
  o = client_opts();
  o.verify = 0;
  o.cafile = other_ca_path;
  implicit_ehlo(s, &o, &so);
  CHECK(has_problem(s, "not-trusted"));
  server_say(s, "250 mx.example.net\r\n");
  expect_log(s, "greeting 220;ehlo 250;");
  quit(s);
  implicit_again(s, &so);
  CHECK(smtp_tls_resumed(s->w.tls));
  CHECK(has_problem(s, "not-trusted"));
  s->ctx.verify = 1;
  implicit_again_refused(s, &so, "refused");
  CHECK(smtp_tls_resumed(s->w.tls));
  CHECK(has_problem(s, "not-trusted"));
  finish(s);

  /* any failed handshake drops the saved session */
  o = client_opts();
  first_session(s, &o, &so);
  CHECK(s->ctx.has_saved);
  CHECK_INT(start_again(s, 0, 1, &SRV_NO_TLS), SMTP_OK);
  run(s);
  server_say(s, GREETING);
  expect_state(s, SMTP_CLOSED);
  expect_error(s, SMTP_ERR_TLS, SMTP_STAGE_CONNECT);
  CHECK(!s->ctx.has_saved);
  finish(s);
}

/* ---- running ---- */

typedef struct {
  const char *name;
  void (*fn)(session *);
} wire_test;

static const wire_test tests[] = {
  { "implicit TLS", t_implicit },
  { "STARTTLS", t_starttls },
  { "STARTTLS injection", t_starttls_injection },
  { "STARTTLS not offered", t_starttls_missing },
  { "verification", t_verify },
  { "versions", t_versions },
  { "plaintext server, implicit TLS", t_plaintext_server },
  { "end of stream", t_eof },
  { "client certificate", t_client_cert },
  { "1 MB body", t_big_body },
  { "through a SOCKS5 proxy", t_proxy },
  { "free zeroes", t_free },
  { "resumption", t_resume },
  { "resumed sessions are checked", t_resume_checked },
};

static int write_temp(char *path, size_t cap, const char *text)
{
  int fd;
  size_t len = strlen(text);

  snprintf(path, cap, "/tmp/test_wire_ca_XXXXXX");
  fd = mkstemp(path);
  if (fd < 0)
    return -1;
  if (write(fd, text, len) != (ssize_t)len) {
    close(fd);
    unlink(path);
    return -1;
  }
  return close(fd);
}

int main(void)
{
  static const size_t chunks[] = { SIZE_MAX, 1, 7 };
  static const char *const variants[] = { "whole", "bytewise", "chunks of 7" };
  size_t i, c;

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  if (psa_crypto_init() != PSA_SUCCESS) {
    printf("psa_crypto_init failed\n");
    return 1;
  }
#endif
  mbedtls_entropy_init(&srv_entropy);
  mbedtls_ctr_drbg_init(&srv_drbg);
  mbedtls_ssl_cache_init(&srv_cache);
  mbedtls_ssl_ticket_init(&srv_ticket);
  if (mbedtls_ctr_drbg_seed(&srv_drbg, mbedtls_entropy_func, &srv_entropy,
                            (const unsigned char *)"test_wire", 9) != 0 ||
      mbedtls_ssl_ticket_setup(&srv_ticket, mbedtls_ctr_drbg_random, &srv_drbg,
                               MBEDTLS_CIPHER_AES_256_GCM, 86400) != 0 ||
      write_temp(ca_path, sizeof ca_path, CERT_CA) != 0 ||
      write_temp(other_ca_path, sizeof other_ca_path, CERT_OTHER_CA) != 0) {
    printf("cannot set up: the random generator or the CA files\n");
    return 1;
  }
  printf("mbedTLS %s\n", smtp_tls_library());
  for (i = 0; i < sizeof tests / sizeof tests[0]; i++)
    for (c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
      h_begin(tests[i].name, variants[c]);
      S.chunk = chunks[c];
      tests[i].fn(&S);
      finish(&S);
      h_end();
    }
  unlink(ca_path);
  unlink(other_ca_path);
  mbedtls_ssl_ticket_free(&srv_ticket);
  mbedtls_ssl_cache_free(&srv_cache);
  mbedtls_ctr_drbg_free(&srv_drbg);
  mbedtls_entropy_free(&srv_entropy);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  mbedtls_psa_crypto_free();
#endif
  return h_summary();
}
