/*
 * test_proxy.c -- the proxy handshakes driven by scripted proxy replies.
 *
 * Each case is a dialogue: the proxy's bytes go in, and the client's bytes,
 * the final state and what it says come out, compared exactly.  Every case
 * runs with the bytes moved whole, one at a time, in threes, and cut once at
 * every point of the proxy's bytes: no outcome may depend on where a
 * transport cuts the stream.  After each run, no credential may be left in
 * the struct.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../src/proxy.h"
#include "harness.h"

#define SOCKS4  SMTP_PROXY_SOCKS4
#define SOCKS4A SMTP_PROXY_SOCKS4A
#define SOCKS5  SMTP_PROXY_SOCKS5
#define HTTP    SMTP_PROXY_HTTP

#define SENDREC SMTP_PROXY_SENDREC
#define RECVREC SMTP_PROXY_RECVREC
#define DONE    SMTP_PROXY_DONE
#define FAILED  SMTP_PROXY_FAILED

/* Byte strings, which may hold NUL. */
typedef struct {
  const char *p;
  size_t n;
} bytes;

#define B(s) { s, sizeof s - 1 }
#define IN(s) s, sizeof s - 1

/* What follows a proxy's final reply in the same read: the server's. */
#define GREETING "220 mx.example.com ESMTP\r\n"

/* SOCKS5 messages (RFC 1928, 1929).  Hex escapes end a string literal
 * where a letter or digit follows, lest it join the escape. */
#define S5_HELLO      "\x05\x01\x00"
#define S5_HELLO_AUTH "\x05\x02\x00\x02"
#define S5_AUTH       "\x01\x05" "alice" "\x06" "s3cret"
#define S5_CONNECT    "\x05\x01\x00\x03\x0e" "mx.example.com" "\x02\x4b"
#define S5_NOAUTH     "\x05\x00"
#define S5_USEAUTH    "\x05\x02"
#define S5_AUTH_OK    "\x01\x00"
#define S5_OK_V4      "\x05\x00\x00\x01\x7f\x00\x00\x01\x9c\x40"
#define S5_OK_NAME    "\x05\x00\x00\x03\x0b" "proxy.local" "\x9c\x40"
#define S5_OK_V6      "\x05\x00\x00\x04" "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01" "\x9c\x40"

/* SOCKS4: 587 to 192.0.2.1, or to a name (4a); replies. */
#define S4_CONNECT    "\x04\x01\x02\x4b\xc0\x00\x02\x01"
#define S4A_CONNECT   "\x04\x01\x02\x4b\x00\x00\x00\x01"
#define S4_OK         "\x00\x5a\x00\x00\x00\x00\x00\x00"

#define HTTP_CONNECT "CONNECT mx.example.com:587 HTTP/1.1\r\nHost: mx.example.com:587\r\n"
#define HTTP_OK "HTTP/1.1 200 Connection established\r\n\r\n"

typedef struct {
  const char *name;
  smtp_proxy_type type;
  const char *host;
  unsigned port;
  const char *user, *pass, *domain;
  bytes sent;                 /* everything the client writes, in order */
  bytes reply;                /* everything the proxy says, in order */
  unsigned final;             /* DONE, FAILED, or RECVREC: the reply is cut short */
  bytes leftover;             /* DONE: the tunnel's first bytes, whether they
                                 came with the final reply or later */
  const char *message;        /* FAILED (RECVREC: after end of stream) */
  int code, target_failed;
} proxy_case;

static const proxy_case cases[] = {
  /* ---- SOCKS4 and SOCKS4a ---- */
  { .name = "socks4", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .sent = B(S4_CONNECT "\0"), .reply = B(S4_OK GREETING),
    .final = DONE, .leftover = B(GREETING) },
  { .name = "socks4 user id", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .user = "alice", .sent = B(S4_CONNECT "alice\0"), .reply = B(S4_OK),
    .final = DONE, .leftover = B("") },
  { .name = "socks4 refused", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .sent = B(S4_CONNECT "\0"), .reply = B("\x00\x5b\0\0\0\0\0\0"), .final = FAILED,
    .message = "SOCKS4 proxy: request rejected or failed (reply 91: refused, or the server is unreachable)",
    .code = 91 },
  /* a refusal cut short still says why */
  { .name = "socks4 refused, short", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .sent = B(S4_CONNECT "\0"), .reply = B("\x00\x5b"), .final = FAILED,
    .message = "SOCKS4 proxy: request rejected or failed (reply 91: refused, or the server is unreachable)",
    .code = 91 },
  { .name = "socks4 no identd", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .sent = B(S4_CONNECT "\0"), .reply = B("\x00\x5c\0\0\0\0\0\0"), .final = FAILED,
    .message = "SOCKS4 proxy: request rejected: the proxy cannot reach our identd (reply 92)",
    .code = 92 },
  { .name = "socks4 identd mismatch", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .user = "alice", .sent = B(S4_CONNECT "alice\0"), .reply = B("\x00\x5d\0\0\0\0\0\0"),
    .final = FAILED,
    .message = "SOCKS4 proxy: request rejected: identd reports a different user id (reply 93)",
    .code = 93 },
  { .name = "socks4 unknown code", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .sent = B(S4_CONNECT "\0"), .reply = B("\x00\x00\0\0\0\0\0\0"), .final = FAILED,
    .message = "SOCKS4 proxy: malformed reply (unknown reply code 0)" },
  /* a SOCKS5 proxy answering a SOCKS4 request */
  { .name = "socks4 wrong version", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .sent = B(S4_CONNECT "\0"), .reply = B("\x05\xff"), .final = FAILED,
    .message = "SOCKS4 proxy: malformed reply (version 5, expected 0)" },
  { .name = "socks4 truncated", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .sent = B(S4_CONNECT "\0"), .reply = B("\x00\x5a\0\0\0"), .final = RECVREC,
    .message = "SOCKS4 proxy: closed the connection before its reply to CONNECT" },
  { .name = "socks4 closed at once", .type = SOCKS4, .host = "192.0.2.1", .port = 587,
    .sent = B(S4_CONNECT "\0"), .reply = B(""), .final = RECVREC,
    .message = "SOCKS4 proxy: closed the connection before its reply to CONNECT" },
  { .name = "socks4a name", .type = SOCKS4A, .host = "mx.example.com", .port = 587,
    .sent = B(S4A_CONNECT "\0mx.example.com\0"), .reply = B(S4_OK GREETING),
    .final = DONE, .leftover = B(GREETING) },
  { .name = "socks4a name, user id", .type = SOCKS4A, .host = "mx.example.com",
    .port = 587, .user = "alice", .sent = B(S4A_CONNECT "alice\0mx.example.com\0"),
    .reply = B(S4_OK), .final = DONE, .leftover = B("") },
  /* an address needs no 4a trick */
  { .name = "socks4a address", .type = SOCKS4A, .host = "192.0.2.1", .port = 587,
    .sent = B(S4_CONNECT "\0"), .reply = B(S4_OK), .final = DONE, .leftover = B("") },

  /* ---- SOCKS5 ---- */
  { .name = "socks5", .type = SOCKS5, .host = "mx.example.com", .port = 587,
    .sent = B(S5_HELLO S5_CONNECT), .reply = B(S5_NOAUTH S5_OK_V4 GREETING),
    .final = DONE, .leftover = B(GREETING) },
  { .name = "socks5 bound name", .type = SOCKS5, .host = "mx.example.com", .port = 587,
    .sent = B(S5_HELLO S5_CONNECT), .reply = B(S5_NOAUTH S5_OK_NAME GREETING),
    .final = DONE, .leftover = B(GREETING) },
  { .name = "socks5 bound IPv6", .type = SOCKS5, .host = "mx.example.com", .port = 587,
    .sent = B(S5_HELLO S5_CONNECT), .reply = B(S5_NOAUTH S5_OK_V6 GREETING),
    .final = DONE, .leftover = B(GREETING) },
  { .name = "socks5 bound empty name", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO S5_CONNECT),
    .reply = B(S5_NOAUTH "\x05\x00\x00\x03\x00\x00\x00" "220"), .final = DONE,
    .leftover = B("220") },
  { .name = "socks5 to IPv4", .type = SOCKS5, .host = "192.0.2.1", .port = 25,
    .sent = B(S5_HELLO "\x05\x01\x00\x01\xc0\x00\x02\x01\x00\x19"),
    .reply = B(S5_NOAUTH S5_OK_V4), .final = DONE, .leftover = B("") },
  { .name = "socks5 to IPv6", .type = SOCKS5, .host = "2001:db8::25", .port = 65535,
    .sent = B(S5_HELLO "\x05\x01\x00\x04\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\x00\x25\xff\xff"),
    .reply = B(S5_NOAUTH S5_OK_V6), .final = DONE, .leftover = B("") },
  { .name = "socks5 credentials", .type = SOCKS5, .host = "mx.example.com", .port = 587,
    .user = "alice", .pass = "s3cret",
    .sent = B(S5_HELLO_AUTH S5_AUTH S5_CONNECT),
    .reply = B(S5_USEAUTH S5_AUTH_OK S5_OK_V4 GREETING), .final = DONE,
    .leftover = B(GREETING) },
  { .name = "socks5 empty password", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .user = "alice",
    .sent = B(S5_HELLO_AUTH "\x01\x05" "alice" "\x00" S5_CONNECT),
    .reply = B(S5_USEAUTH S5_AUTH_OK S5_OK_V4), .final = DONE, .leftover = B("") },
  /* offered, not wanted: the credentials are never sent */
  { .name = "socks5 credentials unused", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .user = "alice", .pass = "s3cret",
    .sent = B(S5_HELLO_AUTH S5_CONNECT), .reply = B(S5_NOAUTH S5_OK_V4),
    .final = DONE, .leftover = B("") },
  { .name = "socks5 wrong password", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .user = "alice", .pass = "s3cret",
    .sent = B(S5_HELLO_AUTH S5_AUTH), .reply = B(S5_USEAUTH "\x01\x01"), .final = FAILED,
    .message = "SOCKS5 proxy: wrong username or password (RFC 1929 status 1)", .code = 1 },
  /* some servers answer RFC 1929 with the SOCKS version */
  { .name = "socks5 auth reply version", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .user = "alice", .pass = "s3cret",
    .sent = B(S5_HELLO_AUTH S5_AUTH), .reply = B(S5_USEAUTH "\x05\x00"), .final = FAILED,
    .message = "SOCKS5 proxy: malformed username/password reply (version 5, expected 1)" },
  { .name = "socks5 auth truncated", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .user = "alice", .pass = "s3cret",
    .sent = B(S5_HELLO_AUTH S5_AUTH), .reply = B(S5_USEAUTH "\x01"), .final = RECVREC,
    .message = "SOCKS5 proxy: closed the connection before answering the username and password" },
  { .name = "socks5 needs auth", .type = SOCKS5, .host = "mx.example.com", .port = 587,
    .sent = B(S5_HELLO), .reply = B("\x05\xff"), .final = FAILED,
    .message = "SOCKS5 proxy: requires authentication, and no username was given (no acceptable method)",
    .code = 0xff },
  { .name = "socks5 no acceptable method", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .user = "alice", .pass = "s3cret",
    .sent = B(S5_HELLO_AUTH), .reply = B("\x05\xff"), .final = FAILED,
    .message = "SOCKS5 proxy: accepts no authentication method we offer (no authentication, username/password)",
    .code = 0xff },
  { .name = "socks5 method not offered", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO), .reply = B(S5_USEAUTH), .final = FAILED,
    .message = "SOCKS5 proxy: chose authentication method 2, which we did not offer",
    .code = 2 },
  { .name = "socks5 GSSAPI", .type = SOCKS5, .host = "mx.example.com", .port = 587,
    .user = "alice", .pass = "s3cret", .sent = B(S5_HELLO_AUTH), .reply = B("\x05\x01"),
    .final = FAILED,
    .message = "SOCKS5 proxy: chose authentication method 1, which we did not offer",
    .code = 1 },
  /* an HTTP proxy, or a SOCKS4 one, on the SOCKS5 port */
  { .name = "socks5 HTTP answer", .type = SOCKS5, .host = "mx.example.com", .port = 587,
    .sent = B(S5_HELLO), .reply = B("HTTP/1.1 400 Bad Request\r\n\r\n"), .final = FAILED,
    .message = "SOCKS5 proxy: malformed method selection (version 72, expected 5)" },
  { .name = "socks5 SOCKS4 answer", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO S5_CONNECT),
    .reply = B(S5_NOAUTH "\x00\x5a\0\0\0\0\0\0"), .final = FAILED,
    .message = "SOCKS5 proxy: malformed reply (version 0, expected 5)" },
  { .name = "socks5 address type", .type = SOCKS5, .host = "mx.example.com", .port = 587,
    .sent = B(S5_HELLO S5_CONNECT), .reply = B(S5_NOAUTH "\x05\x00\x00\x02\0\0\0\0\0\0"),
    .final = FAILED, .message = "SOCKS5 proxy: malformed reply (address type 2)" },
  { .name = "socks5 closed at once", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO), .reply = B(""), .final = RECVREC,
    .message = "SOCKS5 proxy: closed the connection before choosing an authentication method" },
  { .name = "socks5 method truncated", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO), .reply = B("\x05"), .final = RECVREC,
    .message = "SOCKS5 proxy: closed the connection before choosing an authentication method" },
  { .name = "socks5 IPv4 truncated", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO S5_CONNECT),
    .reply = B(S5_NOAUTH "\x05\x00\x00\x01\x7f\x00\x00\x01\x9c"), .final = RECVREC,
    .message = "SOCKS5 proxy: closed the connection before its reply to CONNECT" },
  { .name = "socks5 name truncated", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO S5_CONNECT),
    .reply = B(S5_NOAUTH "\x05\x00\x00\x03\x0b" "proxy.local" "\x9c"), .final = RECVREC,
    .message = "SOCKS5 proxy: closed the connection before its reply to CONNECT" },
  { .name = "socks5 IPv6 truncated", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO S5_CONNECT),
    .reply = B(S5_NOAUTH "\x05\x00\x00\x04" "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"),
    .final = RECVREC,
    .message = "SOCKS5 proxy: closed the connection before its reply to CONNECT" },
  /* a failure needs only its first two octets */
  { .name = "socks5 refused, short", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO S5_CONNECT), .reply = B(S5_NOAUTH "\x05\x05"),
    .final = FAILED, .message = "SOCKS5 proxy: connection refused (reply 5)", .code = 5,
    .target_failed = 1 },
  { .name = "socks5 unknown code", .type = SOCKS5, .host = "mx.example.com",
    .port = 587, .sent = B(S5_HELLO S5_CONNECT),
    .reply = B(S5_NOAUTH "\x05\x09\x00\x01\0\0\0\0\0\0"), .final = FAILED,
    .message = "SOCKS5 proxy: unknown reply code 9", .code = 9 },

  /* ---- HTTP CONNECT ---- */
  { .name = "http", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B(HTTP_OK), .final = DONE, .leftover = B("") },
  { .name = "http greeting in the same read", .type = HTTP, .host = "mx.example.com",
    .port = 587, .sent = B(HTTP_CONNECT "\r\n"),
    .reply = B("HTTP/1.0 200 OK\r\nProxy-agent: test/1.0\r\nVia: 1.1 proxy\r\n\r\n" GREETING
               "more\r\n"),
    .final = DONE, .leftover = B(GREETING "more\r\n") },
  { .name = "http bare LF", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 200 OK\nVia: x\n\n\n220 x\r\n"),
    .final = DONE, .leftover = B("\n220 x\r\n") },
  { .name = "http no reason", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 204\r\n\r\n"), .final = DONE,
    .leftover = B("") },
  { .name = "http 1xx first", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"),
    .reply = B("HTTP/1.1 100 Continue\r\nX: y\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
               HTTP_OK GREETING),
    .final = DONE, .leftover = B(GREETING) },
  { .name = "http credentials", .type = HTTP, .host = "mx.example.com", .port = 587,
    .user = "alice", .pass = "s3cret",
    .sent = B(HTTP_CONNECT "Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n"),
    .reply = B(HTTP_OK), .final = DONE, .leftover = B("") },
  { .name = "http domain", .type = HTTP, .host = "mx.example.com", .port = 587,
    .user = "alice", .pass = "s3cret", .domain = "CORP",
    .sent = B(HTTP_CONNECT "Proxy-Authorization: Basic Q09SUFxhbGljZTpzM2NyZXQ=\r\n\r\n"),
    .reply = B(HTTP_OK), .final = DONE, .leftover = B("") },
  { .name = "http password with colons", .type = HTTP, .host = "mx.example.com",
    .port = 587, .user = "u", .pass = "p:w",
    .sent = B(HTTP_CONNECT "Proxy-Authorization: Basic dTpwOnc=\r\n\r\n"),
    .reply = B(HTTP_OK), .final = DONE, .leftover = B("") },
  { .name = "http to IPv6", .type = HTTP, .host = "2001:db8::25", .port = 25,
    .sent = B("CONNECT [2001:db8::25]:25 HTTP/1.1\r\nHost: [2001:db8::25]:25\r\n\r\n"),
    .reply = B(HTTP_OK), .final = DONE, .leftover = B("") },
  { .name = "http to IPv4", .type = HTTP, .host = "192.0.2.1", .port = 25,
    .sent = B("CONNECT 192.0.2.1:25 HTTP/1.1\r\nHost: 192.0.2.1:25\r\n\r\n"),
    .reply = B(HTTP_OK), .final = DONE, .leftover = B("") },
  { .name = "http 407", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"),
    .reply = B("HTTP/1.1 407 Proxy Authentication Required\r\n"
               "Proxy-Authenticate: Basic realm=\"x\"\r\n\r\n"),
    .final = FAILED,
    .message = "HTTP proxy: wrong or missing proxy credentials (HTTP/1.1 407 Proxy Authentication Required)",
    .code = 407 },
  { .name = "http 407, status line only", .type = HTTP, .host = "mx.example.com",
    .port = 587, .user = "alice", .pass = "hunter2",
    .sent = B(HTTP_CONNECT "Proxy-Authorization: Basic YWxpY2U6aHVudGVyMg==\r\n\r\n"),
    .reply = B("HTTP/1.0 407 Proxy Authentication Required\r\n"), .final = FAILED,
    .message = "HTTP proxy: wrong or missing proxy credentials (HTTP/1.0 407 Proxy Authentication Required)",
    .code = 407 },
  /* tinyproxy's answer to wrong credentials */
  { .name = "http 401", .type = HTTP, .host = "mx.example.com", .port = 587,
    .user = "alice", .pass = "hunter2",
    .sent = B(HTTP_CONNECT "Proxy-Authorization: Basic YWxpY2U6aHVudGVyMg==\r\n\r\n"),
    .reply = B("HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"Tinyproxy\"\r\n\r\n"),
    .final = FAILED,
    .message = "HTTP proxy: wrong or missing proxy credentials (HTTP/1.0 401 Unauthorized)",
    .code = 401 },
  { .name = "http 403", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 403 Access violation\r\n\r\n"),
    .final = FAILED, .message = "HTTP proxy: CONNECT failed (HTTP/1.1 403 Access violation)",
    .code = 403 },
  { .name = "http 500", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.0 500 Unable to connect\r\n\r\n"),
    .final = FAILED, .message = "HTTP proxy: cannot reach the server (HTTP/1.0 500 Unable to connect)",
    .code = 500, .target_failed = 1 },
  { .name = "http 502", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 502 Bad Gateway\r\n\r\n"),
    .final = FAILED, .message = "HTTP proxy: cannot reach the server (HTTP/1.1 502 Bad Gateway)",
    .code = 502, .target_failed = 1 },
  { .name = "http 503", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 503 Service Unavailable\r\n\r\n"),
    .final = FAILED,
    .message = "HTTP proxy: cannot reach the server (HTTP/1.1 503 Service Unavailable)",
    .code = 503, .target_failed = 1 },
  { .name = "http 504", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 504 Gateway Timeout\r\n\r\n"),
    .final = FAILED, .message = "HTTP proxy: cannot reach the server (HTTP/1.1 504 Gateway Timeout)",
    .code = 504, .target_failed = 1 },
  /* the proxy's words reach the message, but no control character does */
  { .name = "http reason sanitized", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 403 no\x1b[2J\xc3\xa9\r\n\r\n"),
    .final = FAILED, .message = "HTTP proxy: CONNECT failed (HTTP/1.1 403 no?[2J?\?)",
    .code = 403 },
  { .name = "http SOCKS answer", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("\x05\xff\n"), .final = FAILED,
    .message = "HTTP proxy: malformed status line \"??\"" },
  { .name = "http SMTP answer", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("220 mx ESMTP\r\n"), .final = FAILED,
    .message = "HTTP proxy: malformed status line \"220 mx ESMTP\"" },
  { .name = "http bad code", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 2OO OK\r\n\r\n"), .final = FAILED,
    .message = "HTTP proxy: malformed status line \"HTTP/1.1 2OO OK\"" },
  { .name = "http code out of range", .type = HTTP, .host = "mx.example.com",
    .port = 587, .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 099 x\r\n\r\n"),
    .final = FAILED, .message = "HTTP proxy: malformed status line \"HTTP/1.1 099 x\"" },
  { .name = "http code glued", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 2000\r\n\r\n"), .final = FAILED,
    .message = "HTTP proxy: malformed status line \"HTTP/1.1 2000\"" },
  { .name = "http empty status line", .type = HTTP, .host = "mx.example.com",
    .port = 587, .sent = B(HTTP_CONNECT "\r\n"), .reply = B("\r\n" HTTP_OK),
    .final = FAILED, .message = "HTTP proxy: malformed status line \"\"" },
  { .name = "http head truncated", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B("HTTP/1.1 200 OK\r\nVia: x\r\n\r"),
    .final = RECVREC,
    .message = "HTTP proxy: closed the connection before the end of its response to CONNECT" },
  { .name = "http closed at once", .type = HTTP, .host = "mx.example.com", .port = 587,
    .sent = B(HTTP_CONNECT "\r\n"), .reply = B(""), .final = RECVREC,
    .message = "HTTP proxy: closed the connection before the end of its response to CONNECT" },
};

#define NCASES (sizeof cases / sizeof cases[0])

static smtp_proxy P;
static unsigned char sent[4096];

static size_t min3(size_t a, size_t b, size_t c)
{
  size_t m = a < b ? a : b;
  return m < c ? m : c;
}

/* The state, checking what must always hold. */
static unsigned state(const smtp_proxy *p)
{
  unsigned s = smtp_proxy_state(p);

  CHECK(s == SENDREC || s == RECVREC || s == DONE || s == FAILED);
  return s;
}

static int contains(const void *hay, size_t n, const char *needle)
{
  const unsigned char *h = hay;
  size_t m = strlen(needle), i;

  for (i = 0; m > 0 && i + m <= n; i++)
    if (memcmp(h + i, needle, m) == 0)
      return 1;
  return 0;
}

static int all_zero(const unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (p[i])
      return 0;
  return 1;
}

/* The end of every handshake: the error as expected, nothing secret left. */
static void check_end(const char *message, int code, int target_failed,
                      const char *pass)
{
  const smtp_proxy_err *err = smtp_proxy_error(&P);
  size_t n;

  CHECK_STR(err->message, message);
  CHECK_INT(err->code, code);
  CHECK_INT(err->target_failed, target_failed);
  CHECK(all_zero(P.out, sizeof P.out));
  if (pass)
    CHECK(!contains(&P, sizeof P, pass));
  if (state(&P) == FAILED)
    CHECK(smtp_proxy_leftover(&P, &n) == NULL && n == 0);
}

/* Move the bytes: writes at most chunk at a time, reads at most first the
 * first time and chunk after that.  Returns the state it stopped in, and
 * in *fed how much of the reply was read. */
static unsigned drive(const bytes *reply, size_t first, size_t chunk,
                      size_t *sent_len, size_t *fed)
{
  size_t n;
  unsigned s;

  *sent_len = *fed = 0;
  for (;;) {
    s = state(&P);
    if (s == SENDREC) {
      const unsigned char *b = smtp_proxy_sendrec_buf(&P, &n);
      CHECK(n > 0);
      n = min3(n, chunk, sizeof sent - *sent_len);
      if (n == 0)
        break;
      memcpy(sent + *sent_len, b, n);
      *sent_len += n;
      smtp_proxy_sendrec_ack(&P, n);
    } else if (s == RECVREC && *fed < reply->n) {
      unsigned char *b = smtp_proxy_recvrec_buf(&P, &n);
      CHECK(n > 0);
      n = min3(n, *fed == 0 ? first : chunk, reply->n - *fed);
      memcpy(b, reply->p + *fed, n);
      *fed += n;
      smtp_proxy_recvrec_ack(&P, n);
    } else {
      return s;
    }
  }
  return s;
}

static void run_cut(const proxy_case *c, size_t first, size_t chunk)
{
  static unsigned char tunnel[SMTP_PROXY_IN_SIZE + 64];
  size_t sent_len, fed, n;
  const unsigned char *left;
  unsigned s;

  CHECK_INT(smtp_proxy_init(&P, c->type, c->host, c->port, c->user, c->pass,
                            c->domain), SMTP_PROXY_OK);
  s = drive(&c->reply, first, chunk, &sent_len, &fed);
  CHECK_MEM(sent, sent_len, c->sent.p, c->sent.n);
  CHECK_INT(s, c->final);
  if (s == RECVREC) {
    smtp_proxy_recv_eof(&P);
    CHECK_INT(state(&P), FAILED);
  }
  if (s == DONE) {
    /* what the tunnel reads: the leftover, then what was not read yet */
    left = smtp_proxy_leftover(&P, &n);
    CHECK(left != NULL);
    CHECK(n + c->reply.n - fed <= sizeof tunnel);
    memcpy(tunnel, left, n);
    memcpy(tunnel + n, c->reply.p + fed, c->reply.n - fed);
    CHECK_MEM(tunnel, n + c->reply.n - fed, c->leftover.p, c->leftover.n);
    /* the end of stream after the handshake is the tunnel's business */
    smtp_proxy_recv_eof(&P);
    CHECK_INT(state(&P), DONE);
  }
  check_end(c->message ? c->message : "", c->code, c->target_failed, c->pass);
}

static void run_case(const proxy_case *c)
{
  size_t k;

  h_begin(c->name, "whole");
  run_cut(c, SIZE_MAX, SIZE_MAX);
  h_end();
  h_begin(c->name, "bytewise");
  run_cut(c, 1, 1);
  h_end();
  h_begin(c->name, "threes");
  run_cut(c, 3, 3);
  h_end();
  h_begin(c->name, "every split");
  for (k = 1; k < c->reply.n; k++)
    run_cut(c, k, SIZE_MAX);
  h_end();
}

/* SOCKS5 replies 1-8, each with its words, and whether the destination is
 * to blame. */
static void test_socks5_codes(void)
{
  static const char *const words[] = {
    "general SOCKS server failure", "connection not allowed by ruleset",
    "network unreachable", "host unreachable", "connection refused",
    "TTL expired", "command not supported", "address type not supported"
  };
  static const char variants[][10] = { "whole", "bytewise", "threes" };
  char reply[2 + 10], message[128];
  proxy_case c = { .name = "", .type = SOCKS5, .host = "mx.example.com", .port = 587,
                   .sent = B(S5_HELLO S5_CONNECT), .final = FAILED };
  unsigned code, v;

  memcpy(reply, S5_NOAUTH S5_OK_V4, sizeof reply);
  c.reply.p = reply;
  c.reply.n = sizeof reply;
  for (code = 1; code <= 8; code++) {
    reply[3] = (char)code;
    snprintf(message, sizeof message, "SOCKS5 proxy: %s (reply %u)", words[code - 1],
             code);
    c.message = message;
    c.code = (int)code;
    c.target_failed = code >= 3 && code <= 6;
    for (v = 0; v < 3; v++) {
      char name[32];
      snprintf(name, sizeof name, "socks5 reply %u", code);
      h_begin(name, variants[v]);
      run_cut(&c, v == 0 ? SIZE_MAX : v == 1 ? 1 : 3, v == 0 ? SIZE_MAX : v == 1 ? 1 : 3);
      h_end();
    }
  }
}

/* The head is bounded by the input buffer, 1xx heads before it included. */
static void test_http_cap(void)
{
  static char reply[SMTP_PROXY_IN_SIZE + 64];
  static const char variants[][10] = { "whole", "bytewise", "threes" };
  const char *status = "HTTP/1.1 200 OK\r\n";
  proxy_case c = { .name = "", .type = HTTP, .host = "mx.example.com", .port = 587,
                   .sent = B(HTTP_CONNECT "\r\n") };
  size_t fill, chunk[] = { SIZE_MAX, 1, 3 };
  unsigned v;

  /* A head and the greeting after it filling the buffer exactly. */
  fill = SMTP_PROXY_IN_SIZE - strlen(status) - strlen("X: \r\n\r\n") - strlen(GREETING);
  snprintf(reply, sizeof reply, "%sX: %0*d\r\n\r\n%s", status, (int)fill, 0, GREETING);
  c.reply.p = reply;
  c.reply.n = strlen(reply);
  c.final = DONE;
  c.leftover.p = GREETING;
  c.leftover.n = strlen(GREETING);
  for (v = 0; v < 3; v++) {
    h_begin("http head and greeting at the cap", variants[v]);
    run_cut(&c, chunk[v], chunk[v]);
    h_end();
  }

  /* A head of exactly SMTP_PROXY_IN_SIZE octets; the greeting is for
   * the next read. */
  fill += strlen(GREETING);
  snprintf(reply, sizeof reply, "%sX: %0*d\r\n\r\n", status, (int)fill, 0);
  c.reply.n = strlen(reply);
  c.leftover.n = 0;
  for (v = 0; v < 3; v++) {
    h_begin("http head at the cap", variants[v]);
    run_cut(&c, chunk[v], chunk[v]);
    h_end();
  }

  /* One octet more: the empty line falls outside. */
  snprintf(reply, sizeof reply, "%sX: %0*d\r\n\r\n%s", status, (int)fill + 1, 0, GREETING);
  c.reply.n = strlen(reply);
  c.final = FAILED;
  c.message = "HTTP proxy: response head longer than 8192 octets";
  for (v = 0; v < 3; v++) {
    h_begin("http head over the cap", variants[v]);
    run_cut(&c, chunk[v], chunk[v]);
    h_end();
  }

  /* Endless 1xx heads count toward the same bound. */
  reply[0] = '\0';
  while (strlen(reply) + 40 < sizeof reply)
    strcat(reply, "HTTP/1.1 100 Continue\r\n\r\n");
  c.reply.n = strlen(reply);
  for (v = 0; v < 3; v++) {
    h_begin("http endless 1xx", variants[v]);
    run_cut(&c, chunk[v], chunk[v]);
    h_end();
  }
}

typedef struct {
  const char *name;
  smtp_proxy_type type;
  const char *host;
  unsigned port;
  const char *user, *pass, *domain;
  const char *message;
} invalid_case;

#define LONG64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define LONG255 LONG64 LONG64 LONG64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"

static const invalid_case invalid[] = {
  { "unknown type", (smtp_proxy_type)0, "mx.example.com", 25, NULL, NULL, NULL,
    "unknown proxy: the type must be SOCKS4, SOCKS4a, SOCKS5 or HTTP" },
  { "unknown type, high", (smtp_proxy_type)5, "mx.example.com", 25, NULL, NULL, NULL,
    "unknown proxy: the type must be SOCKS4, SOCKS4a, SOCKS5 or HTTP" },
  { "no host", SOCKS5, NULL, 25, NULL, NULL, NULL, "SOCKS5 proxy: no target host" },
  { "empty host", HTTP, "", 25, NULL, NULL, NULL, "HTTP proxy: no target host" },
  { "host too long", SOCKS5, LONG255 "x", 25, NULL, NULL, NULL,
    "SOCKS5 proxy: the target host is longer than 255 octets" },
  { "host with CRLF", HTTP, "mx.example.com\r\nX: y", 25, NULL, NULL, NULL,
    "HTTP proxy: the target host is neither a DNS name nor an IPv4 or IPv6 address" },
  { "host with space", HTTP, "mx example", 25, NULL, NULL, NULL,
    "HTTP proxy: the target host is neither a DNS name nor an IPv4 or IPv6 address" },
  { "host bracketed", HTTP, "[::1]", 25, NULL, NULL, NULL,
    "HTTP proxy: the target host is neither a DNS name nor an IPv4 or IPv6 address" },
  { "host with port", SOCKS5, "mx.example.com:25", 25, NULL, NULL, NULL,
    "SOCKS5 proxy: the target host is neither a DNS name nor an IPv4 or IPv6 address" },
  { "host non-ASCII", SOCKS5, "b\xc3\xbc" "cher.example", 25, NULL, NULL, NULL,
    "SOCKS5 proxy: the target host is neither a DNS name nor an IPv4 or IPv6 address" },
  { "IPv6 with zone", SOCKS5, "fe80::1%eth0", 25, NULL, NULL, NULL,
    "SOCKS5 proxy: the target host is neither a DNS name nor an IPv4 or IPv6 address" },
  { "socks4 name", SOCKS4, "mx.example.com", 25, NULL, NULL, NULL,
    "SOCKS4 proxy: the target must be an IPv4 address (resolve the name first, or use SOCKS4a or SOCKS5)" },
  { "socks4 IPv6", SOCKS4, "::1", 25, NULL, NULL, NULL,
    "SOCKS4 proxy: the target must be an IPv4 address (resolve the name first, or use SOCKS4a or SOCKS5)" },
  { "socks4a IPv6", SOCKS4A, "::1", 25, NULL, NULL, NULL,
    "SOCKS4a proxy: the target cannot be an IPv6 address" },
  { "port 0", SOCKS5, "mx.example.com", 0, NULL, NULL, NULL,
    "SOCKS5 proxy: the target port must be 1..65535" },
  { "port 65536", HTTP, "mx.example.com", 65536, NULL, NULL, NULL,
    "HTTP proxy: the target port must be 1..65535" },
  { "username too long", SOCKS5, "mx.example.com", 25, LONG255 "x", "p", NULL,
    "SOCKS5 proxy: username, password and domain must be at most 255 octets, without CR or LF" },
  { "password too long", SOCKS5, "mx.example.com", 25, "u", LONG255 "x", NULL,
    "SOCKS5 proxy: username, password and domain must be at most 255 octets, without CR or LF" },
  { "domain too long", HTTP, "mx.example.com", 25, "u", "p", LONG255 "x",
    "HTTP proxy: username, password and domain must be at most 255 octets, without CR or LF" },
  { "username with LF", HTTP, "mx.example.com", 25, "u\nX: y", "p", NULL,
    "HTTP proxy: username, password and domain must be at most 255 octets, without CR or LF" },
  { "password with CR", SOCKS5, "mx.example.com", 25, "u", "p\r", NULL,
    "SOCKS5 proxy: username, password and domain must be at most 255 octets, without CR or LF" },
  { "domain with CR", HTTP, "mx.example.com", 25, "u", "p", "\rD",
    "HTTP proxy: username, password and domain must be at most 255 octets, without CR or LF" },
  { "password alone", SOCKS5, "mx.example.com", 25, NULL, "p", NULL,
    "SOCKS5 proxy: a password or domain needs a username" },
  { "domain alone", HTTP, "mx.example.com", 25, "", NULL, "CORP",
    "HTTP proxy: a password or domain needs a username" },
  { "socks4 password", SOCKS4, "192.0.2.1", 25, "u", "p", NULL,
    "SOCKS4 proxy: a user id (the username) is all SOCKS4 sends: no password" },
  { "socks4a password", SOCKS4A, "mx.example.com", 25, "u", "p", NULL,
    "SOCKS4a proxy: a user id (the username) is all SOCKS4 sends: no password" },
  { "socks5 domain", SOCKS5, "mx.example.com", 25, "u", "p", "CORP",
    "SOCKS5 proxy: a domain applies to HTTP proxies only" },
  { "http username with colon", HTTP, "mx.example.com", 25, "u:v", "p", NULL,
    "HTTP proxy: for Basic authentication the username cannot hold ':', nor the domain ':' or '\\'" },
  { "http domain with backslash", HTTP, "mx.example.com", 25, "u", "p", "A\\B",
    "HTTP proxy: for Basic authentication the username cannot hold ':', nor the domain ':' or '\\'" },
};

#define NINVALID (sizeof invalid / sizeof invalid[0])

static void test_invalid(void)
{
  size_t i, n;

  for (i = 0; i < NINVALID; i++) {
    const invalid_case *c = &invalid[i];
    unsigned char *b;

    h_begin("invalid", c->name);
    /* a handshake under way first: init starts over */
    smtp_proxy_init(&P, SOCKS5, "mx.example.com", 25, "alice", "s3cret", NULL);
    CHECK_INT(smtp_proxy_init(&P, c->type, c->host, c->port, c->user, c->pass,
                              c->domain), SMTP_PROXY_EINVAL);
    CHECK_INT(state(&P), FAILED);
    /* a failed handshake takes nothing in */
    b = smtp_proxy_recvrec_buf(&P, &n);
    memcpy(b, "\x05\x00", 2);
    smtp_proxy_recvrec_ack(&P, 2);
    smtp_proxy_sendrec_ack(&P, 1);
    smtp_proxy_recv_eof(&P);
    CHECK_INT(state(&P), FAILED);
    check_end(c->message, 0, 0, "s3cret");
    h_end();
  }
}

/* Length of the next message the proxy has to send. */
static size_t next_len(void)
{
  size_t n;

  CHECK_INT(state(&P), SENDREC);
  smtp_proxy_sendrec_buf(&P, &n);
  smtp_proxy_sendrec_ack(&P, n);
  return n;
}

static void feed(const char *s, size_t n)
{
  size_t room;

  memcpy(smtp_proxy_recvrec_buf(&P, &room), s, n);
  smtp_proxy_recvrec_ack(&P, n);
}

/* The longest fields there are: 255 octets each, and they fit. */
static void test_longest(void)
{
  static const char b64_len[] = "Proxy-Authorization: Basic \r\n";

  h_begin("longest fields", "socks4a");
  CHECK_INT(smtp_proxy_init(&P, SOCKS4A, LONG255, 65535, LONG255, NULL, NULL),
            SMTP_PROXY_OK);
  CHECK_INT(next_len(), 8 + 256 + 256);
  h_end();

  h_begin("longest fields", "socks5");
  CHECK_INT(smtp_proxy_init(&P, SOCKS5, LONG255, 65535, LONG255, LONG255, NULL),
            SMTP_PROXY_OK);
  CHECK_INT(next_len(), 4);
  feed(IN(S5_USEAUTH));
  CHECK_INT(next_len(), 3 + 255 + 255);
  feed(IN(S5_AUTH_OK));
  CHECK_INT(next_len(), 5 + 255 + 2);
  h_end();

  h_begin("longest fields", "http");
  CHECK_INT(smtp_proxy_init(&P, HTTP, LONG255, 65535, LONG255, LONG255, LONG255),
            SMTP_PROXY_OK);
  /* two authorities, and the base64 of 767 octets: DOMAIN, user, password */
  CHECK_INT(next_len(), sizeof "CONNECT  HTTP/1.1\r\nHost: \r\n\r\n" - 1 +
            2 * (255 + 6) + sizeof b64_len - 1 + (767 + 2) / 3 * 4);
  h_end();
}

/* IPv6 text forms and the 16 octets SOCKS5 sends for them. */
static void test_ipv6(void)
{
  static const struct {
    const char *text;
    const char *addr;           /* 16 octets, or NULL: not an address */
  } forms[] = {
    { "::", "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0" },
    { "::1", "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01" },
    { "1::", "\0\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0" },
    { "1:2:3:4:5:6:7:8", "\0\x01\0\x02\0\x03\0\x04\0\x05\0\x06\0\x07\0\x08" },
    { "1:2:3:4:5:6:7::", "\0\x01\0\x02\0\x03\0\x04\0\x05\0\x06\0\x07\0\0" },
    { "::2:3:4:5:6:7:8", "\0\0\0\x02\0\x03\0\x04\0\x05\0\x06\0\x07\0\x08" },
    { "FFFF:abcd::0:12", "\xff\xff\xab\xcd\0\0\0\0\0\0\0\0\0\0\0\x12" },
    { "::ffff:192.0.2.1", "\0\0\0\0\0\0\0\0\0\0\xff\xff\xc0\x00\x02\x01" },
    { "1:2:3:4:5:6:1.2.3.4", "\0\x01\0\x02\0\x03\0\x04\0\x05\0\x06\x01\x02\x03\x04" },
    { ":", NULL }, { ":::", NULL }, { "1:", NULL }, { ":1", NULL },
    { "1::2::3", NULL }, { "1:2:3:4:5:6:7", NULL }, { "1:2:3:4:5:6:7:8:9", NULL },
    { "1::2:3:4:5:6:7:8", NULL }, { "12345::", NULL }, { "g::", NULL },
    { "1:2:3:4:5:6:7:1.2.3.4", NULL }, { "::1.2.3", NULL }, { "::1.2.3.4:5", NULL },
    { "::01.2.3.4", NULL }, { "1:::2", NULL }, { "1:2:", NULL },
    { "1:2:3:4:5:6:7:8::", NULL }, { "::1:2:3:4:5:6:7:8", NULL }, { "::1:", NULL },
    { ":1::", NULL }, { "00001::", NULL }, { "1:2:3:4:5:6:7:8:", NULL },
  };
  size_t i, n;
  char req[4 + 16 + 2];

  for (i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    int r;
    h_begin("ipv6", forms[i].text);
    r = smtp_proxy_init(&P, SOCKS5, forms[i].text, 25, NULL, NULL, NULL);
    if (!forms[i].addr) {
      CHECK_INT(r, SMTP_PROXY_EINVAL);
    } else {
      const unsigned char *b;
      CHECK_INT(r, SMTP_PROXY_OK);
      smtp_proxy_sendrec_ack(&P, 3);
      memcpy(smtp_proxy_recvrec_buf(&P, &n), S5_NOAUTH, 2);
      smtp_proxy_recvrec_ack(&P, 2);
      b = smtp_proxy_sendrec_buf(&P, &n);
      memcpy(req, "\x05\x01\x00\x04", 4);
      memcpy(req + 4, forms[i].addr, 16);
      memcpy(req + 20, "\x00\x19", 2);
      CHECK_MEM(b, n, req, sizeof req);
    }
    h_end();
  }
}

/* IPv4 literals and names that only look like them. */
static void test_ipv4(void)
{
  static const struct {
    const char *text;
    int is_address;
  } forms[] = {
    { "0.0.0.0", 1 }, { "255.255.255.255", 1 }, { "10.0.0.1", 1 },
    { "256.1.1.1", 0 }, { "1.2.3", 0 }, { "1.2.3.4.5", 0 }, { "01.2.3.4", 0 },
    { "1.2.3.4.", 0 }, { "1..3.4", 0 }, { "1234.1.1.1", 0 },
  };
  size_t i;

  for (i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    h_begin("ipv4", forms[i].text);
    /* plain SOCKS4 takes addresses only */
    CHECK_INT(smtp_proxy_init(&P, SOCKS4, forms[i].text, 25, NULL, NULL, NULL),
              forms[i].is_address ? SMTP_PROXY_OK : SMTP_PROXY_EINVAL);
    h_end();
  }
}

/* Misuse the Lua edge may commit: acks without their flag, or too long. */
static void test_misuse(void)
{
  size_t n, sent_len, fed;
  const unsigned char *b;
  bytes reply = B(S5_OK_V4 GREETING);

  h_begin("misuse", "acks");
  smtp_proxy_init(&P, SOCKS5, "mx.example.com", 587, NULL, NULL, NULL);
  smtp_proxy_recvrec_ack(&P, 5);          /* not reading now: ignored */
  CHECK_INT(state(&P), SENDREC);
  smtp_proxy_sendrec_ack(&P, 1000);       /* cut to the 3 lent */
  CHECK_INT(state(&P), RECVREC);
  smtp_proxy_sendrec_ack(&P, 1);          /* not writing now: ignored */
  smtp_proxy_recvrec_buf(&P, &n);
  CHECK_INT(n, SMTP_PROXY_IN_SIZE);
  memcpy(smtp_proxy_recvrec_buf(&P, &n), S5_NOAUTH, 2);
  smtp_proxy_recvrec_ack(&P, 2);
  b = smtp_proxy_sendrec_buf(&P, &n);
  CHECK_MEM(b, n, S5_CONNECT, sizeof S5_CONNECT - 1);
  CHECK_INT(drive(&reply, SIZE_MAX, SIZE_MAX, &sent_len, &fed), DONE);
  smtp_proxy_recvrec_ack(&P, 3);          /* done: ignored */
  b = smtp_proxy_leftover(&P, &n);
  CHECK_MEM(b, n, GREETING, sizeof GREETING - 1);
  h_end();

  h_begin("misuse", "clear");
  smtp_proxy_init(&P, HTTP, "mx.example.com", 587, "alice", "s3cret", NULL);
  smtp_proxy_clear(&P);
  CHECK(all_zero((const unsigned char *)&P, sizeof P));
  /* a cleared struct refuses everything */
  CHECK_INT(state(&P), FAILED);
  smtp_proxy_recvrec_ack(&P, 1);
  smtp_proxy_sendrec_ack(&P, 1);
  smtp_proxy_recv_eof(&P);
  CHECK_INT(state(&P), FAILED);
  CHECK(smtp_proxy_leftover(&P, &n) == NULL && n == 0);
  h_end();

  /* A write cut short keeps its secret until the rest is written. */
  h_begin("misuse", "abandoned mid-request");
  smtp_proxy_init(&P, HTTP, "mx.example.com", 587, "alice", "s3cret", NULL);
  smtp_proxy_sendrec_ack(&P, 10);
  CHECK(contains(P.out, sizeof P.out, "YWxpY2U6czNjcmV0"));
  smtp_proxy_clear(&P);
  CHECK(!contains(&P, sizeof P, "YWxpY2U6czNjcmV0"));
  h_end();
}

int main(void)
{
  size_t i;

  for (i = 0; i < NCASES; i++)
    run_case(&cases[i]);
  test_socks5_codes();
  test_http_cap();
  test_invalid();
  test_longest();
  test_ipv6();
  test_ipv4();
  test_misuse();
  return h_summary();
}
