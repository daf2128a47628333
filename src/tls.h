/*
 * tls.h -- TLS as a filter over memory buffers (mbedTLS), no sockets inside.
 *
 * The caller moves ciphertext between the filter and a transport with the
 * _buf/_ack pairs, and plaintext between the filter and the SMTP engine with
 * smtp_tls_write and smtp_tls_read.  mbedTLS reads and writes through BIO
 * callbacks over the two buffers; its send callback always accepts (the
 * output buffer has room for a whole record whenever smtp_tls_write is
 * called), so WANT_WRITE never happens.
 *
 * A connection's sessions share one smtp_tls_ctx: the mbedTLS configuration,
 * the trusted CAs, the client certificate and key, the random generator,
 * what the peer must match, and the last good session, which the next
 * session offers for resumption.  Parsing a CA bundle once per connection
 * instead of once per session is most of what it saves; resumption saves
 * the key exchange and the certificate check.  A context is not locked:
 * its sessions run in one thread (coroutines may interleave them).
 *
 * Rules of use (MUST):
 *   - smtp_tls_ctx_init once; smtp_tls_ctx_free when done, also after a
 *     failed init (it zeroes keys and the saved session).  A context that
 *     failed its init serves no session.
 *   - The context outlives every session set up with it, and does not move.
 *   - smtp_tls_init, then drive smtp_tls_handshake until it returns
 *     SMTP_TLS_DONE, moving ciphertext both ways in between.
 *   - smtp_tls_free once done, also after a failed init: it releases
 *     mbedTLS's memory and zeroes keys and buffers.
 *   - A length passed to an _ack is > 0 and <= what the matching _buf gave.
 *   - After SMTP_TLS_FAIL nothing else works; smtp_tls_error says why.
 *
 * Resumption never skips our checks: a resumed session brings back the
 * peer's certificate (mbedTLS keeps it in the session) and the context its
 * verification result, and smtp_tls_handshake checks them, the IP address
 * and the pin as after a full handshake.  Only a session that passed them
 * is saved; a failed handshake drops the saved one.
 *
 * Every mbedTLS version difference (2.28 and 3.6) lives in tls.c.
 */
#ifndef SMTP_TLS_H
#define SMTP_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

/* Internal to the module whatever the build system: only luaopen_* is public. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* A record is at most 16 KiB of plaintext plus its expansion. */
#define SMTP_TLS_IN_SIZE  (16384u + 2048u)
#define SMTP_TLS_OUT_SIZE (2u * (16384u + 2048u))
#define SMTP_TLS_PLAIN_MAX 16384u  /* plaintext accepted by one smtp_tls_write */

/* Versions, in the order of tls.versions. */
enum { SMTP_TLS_1_0 = 1, SMTP_TLS_1_1, SMTP_TLS_1_2, SMTP_TLS_1_3 };

typedef struct {
  int min_version, max_version;   /* SMTP_TLS_1_x */
  int verify;                     /* check the chain and the name */
  const char *cafile, *capath;    /* NULL: the system's bundle */
  const char *certificate, *key;  /* client certificate: a path or PEM text */
  const char *servername;         /* checked in the certificate and sent as SNI */
  const unsigned char *ip;        /* servername as an IP address, or NULL */
  size_t ip_len;                  /* 4 or 16 */
  const unsigned char *pin;       /* SHA-256 of the server's public key, or NULL */
} smtp_tls_options;

/* Shared by the sessions of one connection; see the rules of use. */
typedef struct {
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca, cert;
  mbedtls_pk_context key;
  mbedtls_ctr_drbg_context drbg;
  int verify;
  char servername[256];            /* sent as SNI and checked; "" for none */
  unsigned char ip[16];            /* or the IP address to find in the certificate */
  size_t ip_len;
  unsigned char pin[32];
  int has_pin;
  mbedtls_ssl_session saved;       /* the last session that passed every check */
  uint32_t saved_flags;            /* its verification result */
  int has_saved;
  int live;                        /* private: the mbedTLS parts are initialized */
  int ready;                       /* smtp_tls_ctx_init succeeded */
  char error[256];
} smtp_tls_ctx;

/* One session's TLS: the mbedTLS context and the ciphertext buffers. */
typedef struct {
  mbedtls_ssl_context ssl;
  smtp_tls_ctx *ctx;               /* borrowed: the connection's */
  int offered;                     /* a saved session was offered */
  uint32_t offered_flags;          /* the verification result that came with it */
  int full;                        /* the server sent a certificate: no resumption */
  int handshaken;                  /* mbedTLS finished its handshake */
  uint32_t flags;                  /* verification result, after the handshake */
  int failed;
  char error[256];
  unsigned char first[4];          /* the first bytes received, for diagnosis */
  size_t first_len;
  unsigned char in[SMTP_TLS_IN_SIZE];   /* ciphertext received, not yet read */
  size_t in_off, in_len;
  int in_eof;
  unsigned char out[SMTP_TLS_OUT_SIZE]; /* ciphertext to send */
  size_t out_off, out_len;
} smtp_tls;

#define SMTP_TLS_DONE  0
#define SMTP_TLS_AGAIN 1
#define SMTP_TLS_FAIL  (-1)

/* Set up a connection's context; o and its strings need not outlive the
 * call.  SMTP_TLS_FAIL for a configuration the linked mbedTLS cannot do or
 * files it cannot load: smtp_tls_ctx_error says which.  The CA files are
 * read here only: one that changes later counts from the next context. */
int smtp_tls_ctx_init(smtp_tls_ctx *c, const smtp_tls_options *o);
const char *smtp_tls_ctx_error(const smtp_tls_ctx *c);

/* Drop the saved session: the next handshake is a full one. */
void smtp_tls_ctx_forget(smtp_tls_ctx *c);

/* Zero and release everything, the saved session too. */
void smtp_tls_ctx_free(smtp_tls_ctx *c);

/* Set up a session of context c, offering its saved session.
 * SMTP_TLS_FAIL (out of memory, or a context that failed its init):
 * smtp_tls_error says why. */
int smtp_tls_init(smtp_tls *t, smtp_tls_ctx *c);

/* Advance the handshake: SMTP_TLS_DONE, SMTP_TLS_AGAIN (move ciphertext and
 * call again) or SMTP_TLS_FAIL.  DONE means the peer is verified (when
 * asked) and pinned (when asked). */
int smtp_tls_handshake(smtp_tls *t);

/* Ciphertext to send; *len may be 0. */
const unsigned char *smtp_tls_out_buf(const smtp_tls *t, size_t *len);
void smtp_tls_out_ack(smtp_tls *t, size_t len);

/* Room for received ciphertext; *len may be 0 while the filter is full. */
unsigned char *smtp_tls_in_buf(smtp_tls *t, size_t *len);
void smtp_tls_in_ack(smtp_tls *t, size_t len);
void smtp_tls_in_eof(smtp_tls *t);

/* Encrypt up to SMTP_TLS_PLAIN_MAX bytes; returns how many were taken
 * (0 while the output buffer lacks room for a record: send first). */
size_t smtp_tls_write(smtp_tls *t, const unsigned char *p, size_t len);

/* Decrypt into buf: SMTP_TLS_DONE with *got > 0, SMTP_TLS_AGAIN when no
 * whole record is there yet (*got = 0; at end of stream too, see
 * smtp_tls_eof), or SMTP_TLS_FAIL. */
int smtp_tls_read(smtp_tls *t, unsigned char *buf, size_t cap, size_t *got);

/* True once the peer closed: close_notify, or end of stream with nothing
 * left to decrypt. */
int smtp_tls_eof(const smtp_tls *t);

/* Queue a close_notify alert. */
void smtp_tls_close_notify(smtp_tls *t);

const char *smtp_tls_error(const smtp_tls *t);

/* After the handshake (once smtp_tls_handshaken, even if the peer was then
 * refused): negotiated version and suite, whether the server resumed the
 * saved session, and the peer's certificate (NULL when none; after a
 * resumption the one of the session resumed). */
int smtp_tls_handshaken(const smtp_tls *t);
int smtp_tls_resumed(const smtp_tls *t);
const char *smtp_tls_version(const smtp_tls *t);
const char *smtp_tls_cipher(const smtp_tls *t);
const mbedtls_x509_crt *smtp_tls_peer(const smtp_tls *t);

/* The verification problems as short words ("expired", "not-trusted",
 * "name-mismatch", ...), each written into names[i]; returns how many. */
size_t smtp_tls_problems(const smtp_tls *t, const char *names[], size_t max);

/* The mbedTLS version linked, like "2.28.3". */
const char *smtp_tls_library(void);

/* Zero and release the session (not its context). */
void smtp_tls_free(smtp_tls *t);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
