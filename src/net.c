/*
 * net.c -- the built-in transport; see net.h.
 */
#include "net.h"
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <arpa/inet.h>
#include <unistd.h>

#ifdef MSG_NOSIGNAL
#define SEND_FLAGS MSG_NOSIGNAL
#else
#define SEND_FLAGS 0   /* SO_NOSIGPIPE is set on the socket instead */
#endif

int smtp_net_random(void *out, size_t n) {
  return n <= 256 && getentropy(out, n) == 0 ? 0 : -1;
}

long long smtp_net_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long now_ms(void) {
  return smtp_net_now_us() / 1000;
}

static int sys_error(char *msg, size_t msglen, int kind, const char *what, int err) {
  snprintf(msg, msglen, "%s: %s", what, strerror(err));
  return kind;
}

/* Wait until fd is ready for events, at most until deadline.  Returns 1
 * ready, 0 timed out, -1 error (errno set). */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    struct pollfd p;
    long long left = deadline - now_ms();
    int r;
    if (left < 0) left = 0;
    p.fd = fd;
    p.events = events;
    p.revents = 0;
    r = poll(&p, 1, left > 0x7fffffff ? 0x7fffffff : (int)left);
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

int smtp_net_resolve4(const char *host, char *out, size_t outlen, char *msg, size_t msglen) {
  struct addrinfo hints, *res = NULL;
  int r;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  r = getaddrinfo(host, NULL, &hints, &res);
  if (r != 0) {
    snprintf(msg, msglen, "cannot resolve %s to an IPv4 address: %s", host,
             r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
    return SMTP_ERR_DNS;
  }
  getnameinfo(res->ai_addr, res->ai_addrlen, out, (socklen_t)outlen, NULL, 0, NI_NUMERICHOST);
  freeaddrinfo(res);
  return SMTP_ERR_NONE;
}

size_t smtp_net_ip(const char *s, unsigned char out[16]) {
  if (inet_pton(AF_INET, s, out) == 1) return 4;
  if (inet_pton(AF_INET6, s, out) == 1) return 16;
  return 0;
}

void smtp_net_ip_text(const unsigned char *ip, size_t len, char *out, size_t outlen) {
  if (inet_ntop(len == 16 ? AF_INET6 : AF_INET, ip, out, (socklen_t)outlen) == NULL && outlen)
    out[0] = '\0';
}

void smtp_net_init(smtp_net *n) {
  memset(n, 0, sizeof *n);
  n->fd = -1;
}

static void describe(smtp_net *n, const struct sockaddr *sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  if (sa->sa_family == AF_UNIX) {
    snprintf(n->addr, sizeof n->addr, "unix:%s", ((const struct sockaddr_un *)(const void *)sa)->sun_path);
    n->family = 0;
    snprintf(n->local, sizeof n->local, "localhost");
    return;
  }
  getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
              : sizeof(struct sockaddr_in), n->addr, sizeof n->addr, NULL, 0,
              NI_NUMERICHOST);
  n->family = sa->sa_family == AF_INET6 ? 6 : 4;
  if (getsockname(n->fd, (struct sockaddr *)&local, &len) == 0)
    getnameinfo((struct sockaddr *)&local, len, host, sizeof host, NULL, 0, NI_NUMERICHOST);
  snprintf(n->local, sizeof n->local, n->family == 6 ? "[IPv6:%s]" : "[%s]", host);
}

/* One address: 0 connected, else an errno value (ETIMEDOUT on deadline). */
static int try_connect(smtp_net *n, const struct addrinfo *ai, long long deadline) {
  int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol), one = 1, err;
  socklen_t len = sizeof err;
  if (fd < 0) return errno;
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
    err = errno;
    close(fd);
    return err;
  }
  /* Commands are small and answered one round trip later: Nagle's
   * algorithm would hold each one for a delayed ACK. */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef SO_NOSIGPIPE
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) goto connected;
  if (errno != EINPROGRESS) {
    err = errno;
    close(fd);
    return err;
  }
  switch (wait_fd(fd, POLLOUT, deadline)) {
    case 0: close(fd); return ETIMEDOUT;
    case -1: err = errno; close(fd); return err;
    default: break;
  }
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err != 0) {
    close(fd);
    return err;
  }
connected:
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
    err = errno;
    close(fd);
    return err;
  }
  n->fd = fd;
  describe(n, ai->ai_addr);
  return 0;
}

/* "unix:/path": a local MTA or LMTP server's socket. */
static int connect_unix(smtp_net *n, const char *path, int timeout_ms, char *msg, size_t msglen) {
  struct sockaddr_un sun;
  struct addrinfo ai;
  int err;
  memset(&sun, 0, sizeof sun);
  if (strlen(path) >= sizeof sun.sun_path) {
    snprintf(msg, msglen, "socket path too long: %s", path);
    return SMTP_ERR_CONNECT;
  }
  sun.sun_family = AF_UNIX;
  memcpy(sun.sun_path, path, strlen(path));
  memset(&ai, 0, sizeof ai);
  ai.ai_family = AF_UNIX;
  ai.ai_socktype = SOCK_STREAM;
  ai.ai_addr = (struct sockaddr *)&sun;
  ai.ai_addrlen = sizeof sun;
  err = try_connect(n, &ai, now_ms() + timeout_ms);
  if (err == 0) return SMTP_ERR_NONE;
  if (err == ETIMEDOUT) {
    snprintf(msg, msglen, "connecting to %s timed out after %d ms", path, timeout_ms);
    return SMTP_ERR_TIMEOUT;
  }
  snprintf(msg, msglen, "cannot connect to %s: %s", path, strerror(err));
  return SMTP_ERR_CONNECT;
}

int smtp_net_connect(smtp_net *n, const char *host, const char *port,
                     int timeout_ms, char *msg, size_t msglen) {
  struct addrinfo hints, *res = NULL, *ai;
  long long deadline = now_ms() + timeout_ms;
  int r, err = 0;
  char tried[128] = "";
  if (strncmp(host, "unix:", 5) == 0) return connect_unix(n, host + 5, timeout_ms, msg, msglen);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  /* No AI_ADDRCONFIG: it hides ::1 on hosts whose only IPv6 is loopback. */
  n->resolve_us = smtp_net_now_us();
  r = getaddrinfo(host, port, &hints, &res);
  n->resolve_us = smtp_net_now_us() - n->resolve_us;
  if (r != 0) {
    snprintf(msg, msglen, "cannot resolve %s: %s", host,
             r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
    return SMTP_ERR_DNS;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    err = try_connect(n, ai, deadline);
    if (err == 0) break;
    if (!*tried) {
      char a[INET6_ADDRSTRLEN] = "?";
      getnameinfo(ai->ai_addr, ai->ai_addrlen, a, sizeof a, NULL, 0, NI_NUMERICHOST);
      snprintf(tried, sizeof tried, "%s", a);
    }
    if (err == ETIMEDOUT) break;
  }
  freeaddrinfo(res);
  if (err == 0) return SMTP_ERR_NONE;
  if (err == ETIMEDOUT) {
    snprintf(msg, msglen, "connecting to %s port %s (%s) timed out after %d ms",
             host, port, tried, timeout_ms);
    return SMTP_ERR_TIMEOUT;
  }
  snprintf(msg, msglen, "cannot connect to %s port %s (%s): %s", host, port,
           tried, strerror(err));
  return SMTP_ERR_CONNECT;
}

/* The socket blocks once connected, with the timeout as SO_RCVTIMEO and
 * SO_SNDTIMEO: a wait is then one recv or send, not a failed try, a poll
 * and a retry.  Set only when it changes. */
static int set_timeout(smtp_net *n, int optname, int *current, int timeout_ms) {
  struct timeval tv;
  if (timeout_ms < 1) timeout_ms = 1;   /* 0 would mean "wait for ever" */
  if (*current == timeout_ms) return 0;
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  if (setsockopt(n->fd, SOL_SOCKET, optname, &tv, sizeof tv) != 0) return -1;
  *current = timeout_ms;
  return 0;
}

int smtp_net_read(smtp_net *n, void *buf, size_t len, int timeout_ms,
                  size_t *got, char *msg, size_t msglen) {
  if (set_timeout(n, SO_RCVTIMEO, &n->recv_timeout_ms, timeout_ms) != 0)
    return sys_error(msg, msglen, SMTP_ERR_CLOSED, "receive failed", errno);
  for (;;) {
    ssize_t r = recv(n->fd, buf, len, 0);
    if (r >= 0) {
      *got = (size_t)r;
      return SMTP_ERR_NONE;
    }
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) {
      *got = 0;   /* a reset is an end of stream the engine judges */
      return SMTP_ERR_NONE;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      snprintf(msg, msglen, "no answer from the server within %d ms", timeout_ms);
      return SMTP_ERR_TIMEOUT;
    }
    return sys_error(msg, msglen, SMTP_ERR_CLOSED, "receive failed", errno);
  }
}

int smtp_net_write(smtp_net *n, const void *buf, size_t len, int timeout_ms,
                   char *msg, size_t msglen) {
  const char *p = buf;
  if (set_timeout(n, SO_SNDTIMEO, &n->send_timeout_ms, timeout_ms) != 0)
    return sys_error(msg, msglen, SMTP_ERR_CLOSED, "send failed", errno);
  while (len > 0) {
    ssize_t r = send(n->fd, p, len, SEND_FLAGS);
    if (r > 0) {
      p += r;
      len -= (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
      return sys_error(msg, msglen, SMTP_ERR_CLOSED, "send failed", errno);
    snprintf(msg, msglen, "the server took no data for %d ms", timeout_ms);
    return SMTP_ERR_TIMEOUT;
  }
  return SMTP_ERR_NONE;
}

void smtp_net_close(smtp_net *n) {
  if (n->fd >= 0) close(n->fd);
  n->fd = -1;
}
