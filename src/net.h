/*
 * net.h -- the built-in transport: resolve, connect and wait with deadlines.
 *
 * Blocking calls bounded by a timeout each: the socket connects
 * non-blocking under a poll() deadline, then blocks with the timeout as
 * SO_RCVTIMEO/SO_SNDTIMEO.  Name resolution uses
 * getaddrinfo, which has no timeout of its own.
 *
 * Each function returning int gives SMTP_ERR_NONE (0) or an smtp_error_kind
 * and then writes a message into msg (msglen > 0).
 */
#ifndef SMTP_NET_H
#define SMTP_NET_H

#include <stddef.h>

/* Internal to the module whatever the build system: only luaopen_* is public. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

typedef struct {
  int fd;                /* -1 when closed */
  char addr[128];        /* numeric address of the peer, or unix:path */
  int family;            /* 4 or 6; 0 for a Unix socket */
  char local[72];        /* our address as an SMTP address literal: "[127.0.0.1]" */
  long long resolve_us;  /* how long the name lookup took */
  int recv_timeout_ms;   /* SO_RCVTIMEO as set, 0 before the first read */
  int send_timeout_ms;   /* SO_SNDTIMEO as set */
} smtp_net;

/* Make n closed.  MUST be called before anything else. */
void smtp_net_init(smtp_net *n);

/* Resolve host (a name or an IP literal) and connect to each address in
 * turn until one accepts, all within timeout_ms; "unix:/path" connects to
 * a Unix socket (port unused). */
int smtp_net_connect(smtp_net *n, const char *host, const char *port,
                     int timeout_ms, char *msg, size_t msglen);

/* Read at most len > 0 bytes, waiting at most timeout_ms.  *got = 0 means
 * end of stream. */
int smtp_net_read(smtp_net *n, void *buf, size_t len, int timeout_ms,
                  size_t *got, char *msg, size_t msglen);

/* Write all len bytes; each wait for the peer at most timeout_ms. */
int smtp_net_write(smtp_net *n, const void *buf, size_t len, int timeout_ms,
                   char *msg, size_t msglen);

/* Resolve host to its first IPv4 address, as text into out (SOCKS4 carries
 * no names). */
int smtp_net_resolve4(const char *host, char *out, size_t outlen, char *msg, size_t msglen);

/* The address s as bytes, when it is an IPv4 or IPv6 literal: returns 4
 * or 16, else 0. */
size_t smtp_net_ip(const char *s, unsigned char out[16]);

/* The text of an IPv4 (len 4) or IPv6 (len 16) address, in its short form. */
void smtp_net_ip_text(const unsigned char *ip, size_t len, char *out, size_t outlen);

/* n <= 256 bytes from the system's CSPRNG (getentropy): returns 0, or -1
 * when the system has none to give. */
int smtp_net_random(void *out, size_t n);

/* Microseconds on a monotonic clock, for deadlines and timings. */
long long smtp_net_now_us(void);

/* Close the socket; harmless when already closed. */
void smtp_net_close(smtp_net *n);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
