/*
 * pipe_client.c -- the reference limit for 1 KiB messages over one
 * plaintext session: a minimal SMTP client that pipelines across messages
 * (RFC 2920 3.1: the message content may open a group, so the final dot,
 * the next MAIL, RCPT and DATA go out in one write), with TCP_NODELAY.  One
 * write and one round trip per message; no parsing beyond the reply codes,
 * no dot-stuffing (the body needs none).  Not a usable client.
 *
 * With "lockstep" it waits for each message's final reply before sending
 * the next envelope: two round trips per message (MAIL, RCPT and DATA
 * pipelined, then the content), the least that a client sending one
 * message per call over DATA can do, and so the limit of `session:send`
 * in a loop against a server without CHUNKING.
 *
 *   pipe_client HOST PORT SECONDS [BODY_BYTES [lockstep]]
 *
 * Sends messages for SECONDS and prints "<messages/s> <messages> <CPU
 * microseconds per message>".
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fd;
static char in[65536];
static size_t in_len;

static double clock_of(clockid_t id)
{
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double now(void)
{
  return clock_of(CLOCK_MONOTONIC);
}

static void die(const char *what)
{
  fprintf(stderr, "pipe_client: %s\n", what);
  exit(1);
}

static void put(const char *p, size_t n)
{
  while (n > 0) {
    ssize_t r = write(fd, p, n);
    if (r <= 0)
      die("write failed");
    p += r;
    n -= (size_t)r;
  }
}

/* Read one whole reply (last line "ddd "); returns its code. */
static int reply(void)
{
  for (;;) {
    size_t i = 0;
    while (i < in_len) {
      char *nl = memchr(in + i, '\n', in_len - i);
      size_t end;
      if (nl == NULL)
        break;
      end = (size_t)(nl - in) + 1;
      if (end - i >= 4 && in[i + 3] == ' ') {
        int code = atoi(in + i);
        memmove(in, in + end, in_len - end);
        in_len -= end;
        return code;
      }
      i = end;
    }
    if (in_len == sizeof in)
      die("reply too long");
    {
      ssize_t r = read(fd, in + in_len, sizeof in - in_len);
      if (r <= 0)
        die("read failed");
      in_len += (size_t)r;
    }
  }
}

static void expect(int want)
{
  int code = reply();
  if (code != want) {
    fprintf(stderr, "pipe_client: got %d, wanted %d\n", code, want);
    exit(1);
  }
}

int main(int argc, char **argv)
{
  static const char envelope[] =
    "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n";
  static const char head[] =
    "From: a@example.com\r\nTo: b@example.com\r\nSubject: bench\r\n"
    "Message-ID: <x@example.com>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n";
  struct sockaddr_in sa;
  double seconds, t0, t, c0;
  size_t body_len, msg_len, n = 0, i;
  char *msg;
  int one = 1, lockstep;

  if (argc < 4)
    die("usage: pipe_client HOST PORT SECONDS [BODY_BYTES]");
  seconds = atof(argv[3]);
  body_len = argc > 4 ? (size_t)atol(argv[4]) : 1024;
  lockstep = argc > 5 && strcmp(argv[5], "lockstep") == 0;
  /* head, body lines of 64 octets with CRLF, ".", then the next envelope */
  msg = malloc(sizeof head + body_len + 64 + sizeof envelope);
  if (msg == NULL)
    die("out of memory");
  memcpy(msg, head, sizeof head - 1);
  msg_len = sizeof head - 1;
  for (i = 0; i < body_len; i++)
    msg[msg_len++] = (i % 64 == 62) ? '\r' : (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
  if (body_len % 64 != 0) {
    msg[msg_len++] = '\r';
    msg[msg_len++] = '\n';
  }
  memcpy(msg + msg_len, ".\r\n", 3);
  msg_len += 3;
  memcpy(msg + msg_len, envelope, sizeof envelope - 1);

  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((unsigned short)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
    die("HOST must be an IPv4 address");
  fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    die("cannot connect");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  expect(220);
  put("EHLO bench.example\r\n", 20);
  expect(250);

  put(envelope, sizeof envelope - 1);
  expect(250);
  expect(250);
  expect(354);
  t0 = now();
  c0 = clock_of(CLOCK_PROCESS_CPUTIME_ID);
  for (;;) {
    int last;
    t = now();
    last = t - t0 >= seconds;
    /* the message, its dot, and (unless it is the last) the next envelope */
    put(msg, msg_len + (last || lockstep ? 0 : sizeof envelope - 1));
    expect(250);
    n++;
    if (last)
      break;
    if (lockstep)
      put(envelope, sizeof envelope - 1);
    expect(250);
    expect(250);
    expect(354);
  }
  t = now();
  put("QUIT\r\n", 6);
  expect(221);
  close(fd);
  printf("%.1f %zu %.1f\n", (double)n / (t - t0), n,
         (clock_of(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)n * 1e6);
  free(msg);
  return 0;
}
