/*
 * fuzz_wire.c -- the TLS client of the wire against a hostile server.
 *
 * Fuzzing what the server says after the handshake means forging records
 * under keys nobody knows; so this fuzzes the handshake, where the client
 * parses whatever the server sends before anything is authenticated.
 *
 * Input: a mode byte M, then D, the fuzz data.
 *   M & 1 == 0  raw: D is the whole stream from the "server".
 *   M & 1 == 1  live: a real mbedTLS server (in memory, certs.h) answers
 *               the client, and every byte it sends is XORed with the next
 *               byte of D (past D's end, bytes pass unchanged): a zero D is
 *               a good handshake, a sparse one a precisely damaged one.
 *               Once its handshake is over the server greets (implicit
 *               TLS) and answers every line with "250 ok".
 *   (M >> 1) & 7  the most bytes moved at once: whole, 1, 2, 3, 5, 7, 16, 100
 *   M & 0x10    STARTTLS instead of implicit TLS (live: the server says
 *               "220", EHLO with STARTTLS and "220" in plaintext first)
 *   M & 0x20    verification off
 *   M & 0x40    the client presents a certificate
 * When the stream ends the client sees end of stream.  The TLS contexts (one
 * per combination of the last two bits) are made once, as a connection's
 * are; each run starts without a saved session, so runs stay independent.
 *
 * Besides not crashing, leaking or hanging: CLOSED is final and never
 * comes with RECVREC; a session that failed in or before the handshake
 * failed with kind tls or closed; smtp_wire_free leaves no byte of TLS.
 *
 * The mbedTLS libraries are not instrumented, so coverage guides the wire
 * and the filter only; the live mode is what reaches deep into mbedTLS.
 */
#define _POSIX_C_SOURCE 200809L

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#include <psa/crypto.h>
#endif

#include "../src/wire.h"
#include "../test/certs.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)
#define STEPS_MAX 200000u
#define QCAP 65536u

static char ca_path[64];
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static mbedtls_x509_crt srv_crt;
static mbedtls_pk_context srv_key;
static smtp_tls_ctx contexts[4];   /* by (M >> 5) & 3, for the process's life */

typedef struct {
  unsigned char b[QCAP];
  size_t len, off;
} queue;

typedef struct {
  smtp_wire w;
  queue c2s, s2c;               /* client to server, server to client */
  const uint8_t *d;             /* raw: the stream; live: the XOR mask */
  size_t dlen, dpos;
  int live, srv_state;          /* 0 plain, 1 handshake, 2 secure, 3 done */
  int srv_plain_step;           /* STARTTLS lines answered in plaintext */
  int eof_given;
  size_t chunk;
  mbedtls_ssl_context ssl;
  mbedtls_ssl_config conf;
  int srv_setup;
} fz;

static fz F;

static size_t min2(size_t a, size_t b)
{
  return a < b ? a : b;
}

static size_t q_push(queue *q, const unsigned char *p, size_t n)
{
  if (q->off) {
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
  n = min2(n, q->len - q->off);
  if (p)
    memcpy(p, q->b + q->off, n);
  q->off += n;
  if (q->off == q->len)
    q->off = q->len = 0;
  return n;
}

/* Server bytes on their way out, damaged by the mask. */
static void srv_out(fz *f, const unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    unsigned char c = p[i];

    if (f->dpos < f->dlen)
      c ^= f->d[f->dpos++];
    if (q_push(&f->s2c, &c, 1) == 0)
      return;
  }
}

static int srv_send(void *ctx, const unsigned char *p, size_t n)
{
  srv_out(ctx, p, n);
  return (int)n;
}

static int srv_recv(void *ctx, unsigned char *p, size_t n)
{
  fz *f = ctx;
  size_t k = q_pop(&f->c2s, p, min2(n, f->chunk));

  return k ? (int)k : MBEDTLS_ERR_SSL_WANT_READ;
}

static void srv_start(fz *f)
{
  mbedtls_ssl_init(&f->ssl);
  mbedtls_ssl_config_init(&f->conf);
  f->srv_setup = 1;
  if (mbedtls_ssl_config_defaults(&f->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                  MBEDTLS_SSL_PRESET_DEFAULT) != 0)
    abort();
  mbedtls_ssl_conf_rng(&f->conf, mbedtls_ctr_drbg_random, &drbg);
  mbedtls_ssl_conf_authmode(&f->conf, MBEDTLS_SSL_VERIFY_NONE);
  if (mbedtls_ssl_conf_own_cert(&f->conf, &srv_crt, &srv_key) != 0 ||
      mbedtls_ssl_setup(&f->ssl, &f->conf) != 0)
    abort();
  mbedtls_ssl_set_bio(&f->ssl, f, srv_send, srv_recv, NULL);
  f->srv_state = 1;
}

/* The live server: returns whether it did anything. */
static int server_tick(fz *f)
{
  static const char *const plain[] = {
    "220 mx ESMTP\r\n", "250-mx\r\n250 STARTTLS\r\n", "220 go\r\n"
  };
  static const char greeting[] = "220 mx ESMTP\r\n", ok[] = "250 ok\r\n";
  size_t before = f->c2s.len - f->c2s.off, sb = f->s2c.len;
  unsigned char line[512];
  int ret, state = f->srv_state;

  switch (f->srv_state) {
  case 0:                       /* STARTTLS in plaintext: one line per step */
    if (f->srv_plain_step == 0) {
      srv_out(f, (const unsigned char *)plain[0], strlen(plain[0]));
      f->srv_plain_step = 1;
      return 1;
    }
    {
      size_t n = f->c2s.len - f->c2s.off;
      const unsigned char *nl = memchr(f->c2s.b + f->c2s.off, '\n', n);

      if (nl == NULL)
        return 0;
      q_pop(&f->c2s, NULL, (size_t)(nl - (f->c2s.b + f->c2s.off)) + 1);
      srv_out(f, (const unsigned char *)plain[f->srv_plain_step],
              strlen(plain[f->srv_plain_step]));
      if (++f->srv_plain_step == 3)
        srv_start(f);
      return 1;
    }
  case 1:
    ret = mbedtls_ssl_handshake(&f->ssl);
    if (ret == 0) {
      f->srv_state = 2;
      if (f->srv_plain_step == 0)   /* implicit TLS: the greeting now */
        (void)mbedtls_ssl_write(&f->ssl, (const unsigned char *)greeting, sizeof greeting - 1);
      return 1;
    }
    if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE)
      f->srv_state = 3;
    break;
  case 2:                       /* "250 ok" to every line */
    ret = mbedtls_ssl_read(&f->ssl, line, sizeof line);
    if (ret > 0) {
      int i;

      for (i = 0; i < ret; i++)
        if (line[i] == '\n')
          (void)mbedtls_ssl_write(&f->ssl, (const unsigned char *)ok, sizeof ok - 1);
    } else if (ret != MBEDTLS_ERR_SSL_WANT_READ) {
      f->srv_state = 3;
    }
    break;
  default:
    q_pop(&f->c2s, NULL, QCAP);
    break;
  }
  return before != f->c2s.len - f->c2s.off || sb != f->s2c.len || state != f->srv_state;
}

static unsigned step(fz *f, int *closed)
{
  unsigned st = smtp_wire_step(&f->w);

  if (*closed)
    REQUIRE(st & SMTP_CLOSED);
  if (st & SMTP_CLOSED) {
    *closed = 1;
    REQUIRE(!(st & (SMTP_RECVREC | SMTP_IDLE | SMTP_SENDAPP | SMTP_STARTTLS)));
  }
  return st;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  int fd;

  (void)argc;
  (void)argv;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  if (psa_crypto_init() != PSA_SUCCESS)
    abort();
#endif
  mbedtls_entropy_init(&entropy);
  mbedtls_ctr_drbg_init(&drbg);
  mbedtls_x509_crt_init(&srv_crt);
  mbedtls_pk_init(&srv_key);
  if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
                            (const unsigned char *)"fuzz_wire", 9) != 0 ||
      mbedtls_x509_crt_parse(&srv_crt, (const unsigned char *)CERT_SERVER,
                             sizeof CERT_SERVER) != 0)
    abort();
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  if (mbedtls_pk_parse_key(&srv_key, (const unsigned char *)KEY_SERVER, sizeof KEY_SERVER,
                           NULL, 0, mbedtls_ctr_drbg_random, &drbg) != 0)
    abort();
#else
  if (mbedtls_pk_parse_key(&srv_key, (const unsigned char *)KEY_SERVER, sizeof KEY_SERVER,
                           NULL, 0) != 0)
    abort();
#endif
  strcpy(ca_path, "/tmp/fuzz_wire_ca_XXXXXX");
  fd = mkstemp(ca_path);
  if (fd < 0 || write(fd, CERT_CA, sizeof CERT_CA - 1) != (ssize_t)(sizeof CERT_CA - 1))
    abort();
  close(fd);
  /* The file is read by every run; it goes when the process does. */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const size_t chunks[] = { SIZE_MAX, 1, 2, 3, 5, 7, 16, 100 };
  fz *f = &F;
  smtp_tls_ctx *ctx;
  unsigned mode, st, steps;
  int closed = 0, starttls, quit_sent = 0, handshaken;
  const smtp_error *err;

  if (size < 1)
    return 0;
  mode = data[0];
  memset(f, 0, sizeof *f);
  f->d = data + 1;
  f->dlen = size - 1;
  f->live = mode & 1;
  f->chunk = chunks[(mode >> 1) & 7];
  starttls = (mode & 0x10) != 0;

  ctx = &contexts[(mode >> 5) & 3];
  if (!ctx->ready) {
    smtp_tls_options o;

    memset(&o, 0, sizeof o);
    o.min_version = SMTP_TLS_1_2;
    o.verify = !(mode & 0x20);
    o.cafile = ca_path;
    o.servername = "localhost";
    if (mode & 0x40) {
      o.certificate = CERT_CLIENT;
      o.key = KEY_CLIENT;
    }
    REQUIRE(smtp_tls_ctx_init(ctx, &o) == SMTP_TLS_DONE);
  }
  smtp_tls_ctx_forget(ctx);
  REQUIRE(smtp_wire_init(&f->w, "fuzz.example", starttls ? SMTP_OPT_STARTTLS : 0, NULL, ctx,
                         !starttls) == SMTP_OK);
  if (f->live && !starttls)
    srv_start(f);

  for (steps = 0; steps < STEPS_MAX; steps++) {
    int moved = 0;

    st = step(f, &closed);
    if (st & SMTP_SENDREC) {
      size_t n;
      const unsigned char *p = smtp_wire_send_buf(&f->w, &n);

      REQUIRE(n > 0);
      n = min2(n, f->chunk);
      if (f->live)
        n = q_push(&f->c2s, p, n);
      if (n > 0) {
        smtp_wire_send_ack(&f->w, n);
        moved = 1;
      }
    } else if (st & SMTP_EVENT) {
      smtp_engine_event_ack(&f->w.engine);
      moved = 1;
    } else if (st & SMTP_IDLE) {
      REQUIRE(!quit_sent);
      REQUIRE(smtp_engine_quit(&f->w.engine) == SMTP_OK);
      quit_sent = 1;
      moved = 1;
    } else if (st & SMTP_RECVREC) {
      size_t room, n;
      unsigned char *p = smtp_wire_recv_buf(&f->w, &room);

      REQUIRE(room > 0);
      if (f->live) {
        n = q_pop(&f->s2c, p, min2(room, f->chunk));
      } else {
        n = min2(min2(room, f->chunk), f->dlen - f->dpos);
        memcpy(p, f->d + f->dpos, n);
        f->dpos += n;
      }
      if (n > 0) {
        smtp_wire_recv_ack(&f->w, n);
        moved = 1;
      } else if ((!f->live || f->srv_state == 3) && !f->eof_given) {
        f->eof_given = 1;
        smtp_wire_recv_eof(&f->w);
        moved = 1;
      }
    }
    if (f->live && server_tick(f))
      moved = 1;
    if (!moved) {
      /* the live server may wait for a client that waits for it: hang up */
      if (f->live && f->srv_state != 3) {
        f->srv_state = 3;
        continue;
      }
      break;
    }
  }
  REQUIRE(steps < STEPS_MAX);

  err = smtp_engine_last_error(&f->w.engine);
  handshaken = f->w.tls != NULL && smtp_tls_handshaken(f->w.tls);
  if (closed && !handshaken)
    REQUIRE(err->kind == SMTP_ERR_TLS || err->kind == SMTP_ERR_CLOSED ||
            err->kind == SMTP_ERR_PROTOCOL || err->kind == SMTP_ERR_REJECTED);
  if (closed && !handshaken && !starttls)
    REQUIRE(err->kind == SMTP_ERR_TLS);
  REQUIRE(memchr(err->message, '\0', sizeof err->message) != NULL);

  smtp_wire_free(&f->w);
  REQUIRE(f->w.tls == NULL && f->w.auth == NULL && f->w.proxy == NULL);
  if (f->srv_setup) {
    mbedtls_ssl_free(&f->ssl);
    mbedtls_ssl_config_free(&f->conf);
  }
  return 0;
}
