/*
 * fuzz_proxy.c -- arbitrary proxy replies into each handshake.
 *
 * The first octet picks the proxy type (bits 0-1), whether credentials are
 * given (bit 2), the target's form (bits 3-4: name, IPv4, IPv6) and, with
 * bit 7 set, a different game: the rest is a target host for every type,
 * to exercise the argument checks, with the address parsers checked against
 * the C library's inet_pton.  Otherwise the second octet picks a chunk
 * size and the rest is what the proxy says.
 *
 * The reply is fed three times: whole, one byte at a time, and in chunks.
 * The runs must agree on the outcome and on the bytes sent; every run must
 * keep the contract of proxy.h: one state flag at a time, lent lengths
 * > 0, printable messages, no credential left behind, and the tunnel's
 * bytes (leftover, then what was not read) exactly the tail of the input.
 */
#define _POSIX_C_SOURCE 200112L   /* inet_pton */

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

static const char *const hosts[] = { "mx.example.com", "192.0.2.1", "2001:db8::1" };

typedef struct {
  unsigned state;
  size_t consumed;              /* reply octets the handshake took */
  size_t sent_len;
  uint64_t sent_hash;
  smtp_proxy_err err;
} outcome;

static smtp_proxy P;
static outcome runs[3];

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3u;
  return h;
}

static unsigned state(void)
{
  unsigned s = smtp_proxy_state(&P);

  REQUIRE(s == SMTP_PROXY_SENDREC || s == SMTP_PROXY_RECVREC ||
          s == SMTP_PROXY_DONE || s == SMTP_PROXY_FAILED);
  return s;
}

static void check_message(const smtp_proxy_err *err)
{
  const char *end = memchr(err->message, '\0', sizeof err->message);
  size_t i;

  REQUIRE(end != NULL);
  for (i = 0; err->message + i < end; i++)
    REQUIRE(err->message[i] >= 0x20 && err->message[i] < 0x7f);
}

static int all_zero(const unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

static void handshake(unsigned flags, const uint8_t *reply, size_t len,
                      size_t chunk, outcome *o)
{
  smtp_proxy_type type = (smtp_proxy_type)(flags % 4 + 1);
  const char *host = hosts[(flags >> 3) % 3];
  int creds = (flags & 4) != 0;
  size_t fed = 0, n;
  unsigned s;

  if (type == SMTP_PROXY_SOCKS4 || (type == SMTP_PROXY_SOCKS4A && host == hosts[2]))
    host = hosts[1];
  REQUIRE(smtp_proxy_init(&P, type, host, 587, creds ? "alice" : NULL,
                          creds && type >= SMTP_PROXY_SOCKS5 ? "s3cret" : NULL,
                          creds && type == SMTP_PROXY_HTTP ? "CORP" : NULL)
          == SMTP_PROXY_OK);
  memset(o, 0, sizeof *o);
  o->sent_hash = 0xcbf29ce484222325u;
  for (;;) {
    s = state();
    if (s == SMTP_PROXY_SENDREC) {
      const unsigned char *b = smtp_proxy_sendrec_buf(&P, &n);
      REQUIRE(n > 0 && n <= SMTP_PROXY_OUT_SIZE);
      n = n < chunk ? n : chunk;
      o->sent_hash = fnv1a(o->sent_hash, b, n);
      o->sent_len += n;
      smtp_proxy_sendrec_ack(&P, n);
    } else if (s == SMTP_PROXY_RECVREC && fed < len) {
      unsigned char *b = smtp_proxy_recvrec_buf(&P, &n);
      REQUIRE(n > 0 && n <= SMTP_PROXY_IN_SIZE);
      if (n > chunk) n = chunk;
      if (n > len - fed) n = len - fed;
      memcpy(b, reply + fed, n);
      fed += n;
      smtp_proxy_recvrec_ack(&P, n);
    } else if (s == SMTP_PROXY_RECVREC) {
      smtp_proxy_recv_eof(&P);
      REQUIRE(state() == SMTP_PROXY_FAILED);
    } else {
      break;
    }
  }
  o->state = s;
  o->err = *smtp_proxy_error(&P);
  check_message(&o->err);
  REQUIRE(all_zero(P.out, sizeof P.out));
  if (s == SMTP_PROXY_DONE) {
    const unsigned char *left = smtp_proxy_leftover(&P, &n);
    /* the leftover is the last octets read: nothing lost, nothing made up */
    REQUIRE(left != NULL && n <= fed);
    REQUIRE(n == 0 || memcmp(left, reply + fed - n, n) == 0);
    REQUIRE(o->err.message[0] == '\0' && o->err.code == 0);
    o->consumed = fed - n;
  } else {
    REQUIRE(o->err.message[0] != '\0');
    REQUIRE(smtp_proxy_leftover(&P, &n) == NULL && n == 0);
  }
}

/* How SOCKS5 sends a valid host must be how inet_pton reads it: an IPv4
 * or IPv6 address exactly when it is one, and else a name. */
static void check_address(const char *host)
{
  unsigned char want[16], *b;
  const unsigned char *req;
  size_t n;
  int v4 = inet_pton(AF_INET, host, want) == 1;
  int v6 = !v4 && inet_pton(AF_INET6, host, want) == 1;

  if (smtp_proxy_init(&P, SMTP_PROXY_SOCKS5, host, 25, NULL, NULL, NULL) != SMTP_PROXY_OK) {
    /* only a name may be refused: for its characters or its length */
    REQUIRE(!v4 && (!v6 || strlen(host) > SMTP_PROXY_FIELD_MAX));
    return;
  }
  smtp_proxy_sendrec_buf(&P, &n);
  smtp_proxy_sendrec_ack(&P, n);
  b = smtp_proxy_recvrec_buf(&P, &n);
  memcpy(b, "\x05\x00", 2);
  smtp_proxy_recvrec_ack(&P, 2);
  req = smtp_proxy_sendrec_buf(&P, &n);
  if (v4)
    REQUIRE(req[3] == 1 && n == 10 && memcmp(req + 4, want, 4) == 0);
  else if (v6)
    REQUIRE(req[3] == 4 && n == 22 && memcmp(req + 4, want, 16) == 0);
  else
    REQUIRE(req[3] == 3 && req[4] == strlen(host) && !strchr(host, ':'));
}

/* Every type with this host: no crash, and a request when it is valid. */
static void hosts_game(const uint8_t *data, size_t size)
{
  char host[SMTP_PROXY_FIELD_MAX + 8];
  size_t n, len = size < sizeof host - 1 ? size : sizeof host - 1;
  int t;

  memcpy(host, data, len);
  host[len] = '\0';
  check_address(host);
  for (t = SMTP_PROXY_SOCKS4; t <= SMTP_PROXY_HTTP; t++) {
    int r = smtp_proxy_init(&P, (smtp_proxy_type)t, host, 25, NULL, NULL, NULL);
    REQUIRE(r == SMTP_PROXY_OK || r == SMTP_PROXY_EINVAL);
    check_message(smtp_proxy_error(&P));
    if (r == SMTP_PROXY_OK) {
      REQUIRE(state() == SMTP_PROXY_SENDREC);
      REQUIRE(smtp_proxy_sendrec_buf(&P, &n) != NULL && n > 0);
    } else {
      REQUIRE(state() == SMTP_PROXY_FAILED);
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  size_t chunk, i;
  unsigned flags;

  if (size < 2)
    return 0;
  flags = data[0];
  if (flags & 0x80) {
    hosts_game(data + 1, size - 1);
    return 0;
  }
  chunk = data[1] % 32 + 1;
  handshake(flags, data + 2, size - 2, SIZE_MAX, &runs[0]);
  handshake(flags, data + 2, size - 2, 1, &runs[1]);
  handshake(flags, data + 2, size - 2, chunk, &runs[2]);
  for (i = 1; i < 3; i++) {
    REQUIRE(runs[i].state == runs[0].state);
    REQUIRE(runs[i].consumed == runs[0].consumed);
    REQUIRE(runs[i].sent_len == runs[0].sent_len);
    REQUIRE(runs[i].sent_hash == runs[0].sent_hash);
    REQUIRE(strcmp(runs[i].err.message, runs[0].err.message) == 0);
    REQUIRE(runs[i].err.code == runs[0].err.code);
    REQUIRE(runs[i].err.target_failed == runs[0].err.target_failed);
  }
  return 0;
}
