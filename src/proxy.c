/*
 * proxy.c -- SOCKS4/4a/5 and HTTP CONNECT handshakes; see proxy.h for the
 * contract.
 *
 * Every request is built in init, so that all argument checks happen there
 * and the credentials are copied once, into the output buffer.  SOCKS5
 * builds its three messages back to back (greeting, RFC 1929 auth,
 * CONNECT) and releases each when its turn comes; the others have one.
 * A reply is parsed only once the request it answers is written.
 */
#include "proxy.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>

/* What the handshake waits for.  0 is FAILED, so that a cleared (zeroed)
 * struct refuses everything. */
enum phase {
  PH_FAILED = 0,
  PH_S4_REPLY,     /* SOCKS4/4a: the 8-octet reply */
  PH_S5_METHOD,    /* SOCKS5: the method selection */
  PH_S5_AUTH,      /* SOCKS5: the RFC 1929 status */
  PH_S5_REPLY,     /* SOCKS5: the reply to CONNECT */
  PH_HTTP,         /* HTTP: the response head */
  PH_DONE
};

/* For "closed the connection before ...", by phase. */
static const char *const awaited[] = {
  "", "its reply to CONNECT", "choosing an authentication method",
  "answering the username and password", "its reply to CONNECT",
  "the end of its response to CONNECT", ""
};

/* How the target host is sent. */
enum host_kind { HOST_NAME, HOST_V4, HOST_V6 };

typedef struct {
  enum host_kind kind;
  unsigned char addr[16];    /* the address of a literal, in network order */
} target;

/* The longest requests, to size SMTP_PROXY_OUT_SIZE at compile time:
 * HTTP with an authority "[v6]:65535" or "name:65535" twice and Basic
 * credentials "DOMAIN\user:password"; SOCKS4a with a user id and a name;
 * SOCKS5 with its greeting, RFC 1929 message and CONNECT of a name. */
#define AUTHORITY_MAX (SMTP_PROXY_FIELD_MAX + sizeof "[]:65535" - 1)
#define BASIC_MAX (3 * SMTP_PROXY_FIELD_MAX + 2)
#define HTTP_MAX (sizeof "CONNECT  HTTP/1.1\r\nHost: \r\n" \
                  "Proxy-Authorization: Basic \r\n\r\n" - 1 + \
                  2 * AUTHORITY_MAX + (BASIC_MAX + 2) / 3 * 4)
#define SOCKS4_MAX (8 + 2 * (SMTP_PROXY_FIELD_MAX + 1))
#define SOCKS5_MAX (4 + 3 + 2 * SMTP_PROXY_FIELD_MAX + 5 + SMTP_PROXY_FIELD_MAX + 2)
typedef char proxy_out_fits[HTTP_MAX <= SMTP_PROXY_OUT_SIZE &&
                            SOCKS4_MAX <= SMTP_PROXY_OUT_SIZE &&
                            SOCKS5_MAX <= SMTP_PROXY_OUT_SIZE ? 1 : -1];

static const char *type_name(smtp_proxy_type t) {
  switch (t) {
    case SMTP_PROXY_SOCKS4: return "SOCKS4";
    case SMTP_PROXY_SOCKS4A: return "SOCKS4a";
    case SMTP_PROXY_SOCKS5: return "SOCKS5";
    case SMTP_PROXY_HTTP: return "HTTP";
  }
  return "unknown";
}

static size_t avail(const smtp_proxy *p) {
  return p->in_len - p->in_off;
}

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

/* Fail for good: the message says it in words, the credentials go.  The
 * message starts with the proxy's type.  Nothing calls it twice: a failed
 * handshake takes no input.  Returns 0, for "no progress". */
PRINTF_LIKE(4, 5)
static int fail(smtp_proxy *p, int code, int target_failed, const char *fmt, ...) {
  va_list ap;
  int n;
  p->phase = PH_FAILED;
  mbedtls_platform_zeroize(p->out, sizeof p->out);
  p->out_off = p->out_end = p->out_len = p->auth_end = 0;
  p->err.code = code;
  p->err.target_failed = target_failed;
  n = snprintf(p->err.message, sizeof p->err.message, "%s proxy: ", type_name(p->type));
  va_start(ap, fmt);
  vsnprintf(p->err.message + n, sizeof p->err.message - (size_t)n, fmt, ap);
  va_end(ap);
  return 0;
}

static int done(smtp_proxy *p) {
  p->phase = PH_DONE;
  mbedtls_platform_zeroize(p->out, sizeof p->out);
  p->out_off = p->out_end = p->out_len = p->auth_end = 0;
  return 1;
}

/* ---- checking and building the requests ---- */

static int is_digit(int c) {
  return c >= '0' && c <= '9';
}

static int hex_value(int c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* A dotted quad of decimals 0-255, the whole string.  Leading zeros are
 * refused (inet_aton would read them as octal, a proxy perhaps not), which
 * leaves "010.0.0.1" to be sent as a name. */
static int parse_ipv4(const char *s, unsigned char out[4]) {
  int i;
  for (i = 0; i < 4; i++) {
    const char *start;
    unsigned v = 0;
    if (i > 0 && *s++ != '.') return 0;
    for (start = s; is_digit(*s) && s - start < 4; s++) v = v * 10 + (unsigned)(*s - '0');
    if (s == start || s - start > 3 || v > 255 || (s - start > 1 && *start == '0'))
      return 0;
    out[i] = (unsigned char)v;
  }
  return *s == '\0';
}

/* RFC 4291 2.2 text form: up to eight groups of 1-4 hex digits, at most
 * one "::" standing for one or more zero groups, optionally a dotted quad
 * as the last 32 bits.  No brackets, no zone. */
static int parse_ipv6(const char *s, unsigned char out[16]) {
  unsigned char tmp[16];
  size_t n = 0, gap = 0;           /* gap: where "::" stands, if gapped */
  int gapped = 0;
  if (s[0] == ':') {
    if (s[1] != ':') return 0;
    gapped = 1;
    s += 2;
  }
  while (*s) {
    const char *start = s;
    unsigned v = 0, digits = 0;
    for (; hex_value(*s) >= 0 && digits < 5; s++, digits++) v = v * 16 + (unsigned)hex_value(*s);
    if (*s == '.') {
      if (n > 12 || !parse_ipv4(start, tmp + n)) return 0;
      n += 4;
      break;
    }
    if (digits == 0 || digits > 4 || n == 16) return 0;
    tmp[n++] = (unsigned char)(v >> 8);
    tmp[n++] = (unsigned char)v;
    if (*s == '\0') break;
    if (*s++ != ':') return 0;
    if (*s == ':') {
      if (gapped) return 0;
      gapped = 1;
      gap = n;
      s++;
    } else if (*s == '\0') {
      return 0;                    /* a single trailing ':' */
    }
  }
  /* "::" stands for at least one group, and without it there are eight */
  if (gapped ? n == 16 : n != 16) return 0;
  if (!gapped) gap = n;
  memset(out, 0, 16);
  memcpy(out, tmp, gap);
  memcpy(out + 16 - (n - gap), tmp + gap, n - gap);
  return 1;
}

/* Host names as DNS has them (with '_', which some hosts carry); anything
 * else would need quoting somewhere along the way. */
static int name_ok(const char *s) {
  for (; *s; s++) {
    char c = *s;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
          c == '-' || c == '.' || c == '_'))
      return 0;
  }
  return 1;
}

/* A colon can only mean IPv6: names and IPv4 have none. */
static int classify(const char *host, target *t) {
  if (parse_ipv4(host, t->addr)) {
    t->kind = HOST_V4;
    return 1;
  }
  if (strchr(host, ':')) {
    t->kind = HOST_V6;
    return parse_ipv6(host, t->addr);
  }
  t->kind = HOST_NAME;
  return name_ok(host);
}

/* "" for absent, so the rest need not ask. */
static const char *field(const char *s) {
  return s ? s : "";
}

static int field_ok(const char *s) {
  return strlen(s) <= SMTP_PROXY_FIELD_MAX && !strpbrk(s, "\r\n");
}

/* Why the arguments cannot make a request, or NULL when they can; t gets
 * the host's kind and address. */
static const char *check(smtp_proxy_type type, const char *host, target *t,
                         unsigned port, const char *user, const char *pass,
                         const char *domain) {
  if (*host == '\0') return "no target host";
  if (strlen(host) > SMTP_PROXY_FIELD_MAX) return "the target host is longer than 255 octets";
  if (!classify(host, t))
    return "the target host is neither a DNS name nor an IPv4 or IPv6 address";
  if (type == SMTP_PROXY_SOCKS4 && t->kind != HOST_V4)
    return "the target must be an IPv4 address (resolve the name first, or use SOCKS4a or SOCKS5)";
  if (type == SMTP_PROXY_SOCKS4A && t->kind == HOST_V6)
    return "the target cannot be an IPv6 address";
  if (port < 1 || port > 65535) return "the target port must be 1..65535";
  if (!field_ok(user) || !field_ok(pass) || !field_ok(domain))
    return "username, password and domain must be at most 255 octets, without CR or LF";
  if (*user == '\0' && (*pass || *domain)) return "a password or domain needs a username";
  if ((type == SMTP_PROXY_SOCKS4 || type == SMTP_PROXY_SOCKS4A) && *pass)
    return "a user id (the username) is all SOCKS4 sends: no password";
  if (type != SMTP_PROXY_HTTP && *domain) return "a domain applies to HTTP proxies only";
  if (type == SMTP_PROXY_HTTP && (strchr(user, ':') || strpbrk(domain, ":\\")))
    return "for Basic authentication the username cannot hold ':', nor the domain ':' or '\\'";
  return NULL;
}

static void put(smtp_proxy *p, const void *s, size_t n) {
  memcpy(p->out + p->out_len, s, n);
  p->out_len += n;
}

static void put_byte(smtp_proxy *p, unsigned v) {
  p->out[p->out_len++] = (unsigned char)v;
}

static void put_port(smtp_proxy *p, unsigned port) {
  put_byte(p, port >> 8);
  put_byte(p, port & 0xff);
}

static void put_str(smtp_proxy *p, const char *s) {
  put(p, s, strlen(s));
}

/* A length byte, then the string: RFC 1928 and 1929 fields. */
static void put_counted(smtp_proxy *p, const char *s) {
  put_byte(p, (unsigned)strlen(s));
  put_str(p, s);
}

/* SOCKS4: VN CD DSTPORT DSTIP USERID NUL; SOCKS4a sends a name after
 * that, with DSTIP 0.0.0.1 ("0.0.0.x", x nonzero) to say so. */
static void build_socks4(smtp_proxy *p, const char *host, const target *t,
                         unsigned port, const char *user) {
  static const unsigned char name_follows[4] = { 0, 0, 0, 1 };
  put_byte(p, 4);
  put_byte(p, 1);
  put_port(p, port);
  put(p, t->kind == HOST_V4 ? t->addr : name_follows, 4);
  put_str(p, user);
  put_byte(p, 0);
  if (t->kind == HOST_NAME) {
    put_str(p, host);
    put_byte(p, 0);
  }
  p->out_end = p->auth_end = p->out_len;
  p->phase = PH_S4_REPLY;
}

static void build_socks5(smtp_proxy *p, const char *host, const target *t,
                         unsigned port, const char *user, const char *pass) {
  put_byte(p, 5);
  if (*user) {
    put(p, "\x02\x00\x02", 3);      /* no authentication, username/password */
  } else {
    put(p, "\x01\x00", 2);
  }
  p->out_end = p->out_len;
  if (*user) {
    put_byte(p, 1);
    put_counted(p, user);
    put_counted(p, pass);
  }
  p->auth_end = p->out_len;
  put(p, "\x05\x01\x00", 3);        /* VER, CMD CONNECT, RSV */
  switch (t->kind) {
    case HOST_V4: put_byte(p, 1); put(p, t->addr, 4); break;
    case HOST_NAME: put_byte(p, 3); put_counted(p, host); break;
    case HOST_V6: put_byte(p, 4); put(p, t->addr, 16); break;
  }
  put_port(p, port);
  p->phase = PH_S5_METHOD;
}

static void build_http(smtp_proxy *p, const char *host, const target *t,
                       unsigned port, const char *user, const char *pass,
                       const char *domain) {
  char authority[AUTHORITY_MAX + 1];
  snprintf(authority, sizeof authority, t->kind == HOST_V6 ? "[%s]:%u" : "%s:%u", host, port);
  put_str(p, "CONNECT ");
  put_str(p, authority);
  put_str(p, " HTTP/1.1\r\nHost: ");
  put_str(p, authority);
  put_str(p, "\r\n");
  if (*user) {
    unsigned char plain[BASIC_MAX + 1];
    size_t n, b64;
    n = (size_t)snprintf((char *)plain, sizeof plain, "%s%s%s:%s", domain,
                         *domain ? "\\" : "", user, pass);
    put_str(p, "Proxy-Authorization: Basic ");
    /* Encoded in place, so the secret has no second copy to wipe.  The
     * buffer cannot be too small (proxy_out_fits), so the result is not
     * checked. */
    (void)mbedtls_base64_encode(p->out + p->out_len, sizeof p->out - p->out_len, &b64, plain, n);
    p->out_len += b64;
    mbedtls_platform_zeroize(plain, sizeof plain);
    put_str(p, "\r\n");
  }
  put_str(p, "\r\n");
  p->out_end = p->auth_end = p->out_len;
  p->phase = PH_HTTP;
}

int smtp_proxy_init(smtp_proxy *p, smtp_proxy_type type, const char *host,
                    unsigned port, const char *username, const char *password,
                    const char *domain) {
  const char *why, *user = field(username), *pass = field(password);
  target t;
  mbedtls_platform_zeroize(p, sizeof *p);
  p->type = type;
  if (type < SMTP_PROXY_SOCKS4 || type > SMTP_PROXY_HTTP) {
    fail(p, 0, 0, "the type must be SOCKS4, SOCKS4a, SOCKS5 or HTTP");
    return SMTP_PROXY_EINVAL;
  }
  why = check(type, field(host), &t, port, user, pass, field(domain));
  if (why) {
    fail(p, 0, 0, "%s", why);
    return SMTP_PROXY_EINVAL;
  }
  switch (type) {
    case SMTP_PROXY_SOCKS4: case SMTP_PROXY_SOCKS4A: build_socks4(p, host, &t, port, user); break;
    case SMTP_PROXY_SOCKS5: build_socks5(p, host, &t, port, user, pass); break;
    case SMTP_PROXY_HTTP: build_http(p, host, &t, port, user, pass, field(domain)); break;
  }
  return SMTP_PROXY_OK;
}

/* ---- the replies ---- */

static int socks4_reply(smtp_proxy *p) {
  const unsigned char *r = p->in + p->in_off;
  if (avail(p) < 2) return 0;
  if (r[0] != 0) return fail(p, 0, 0, "malformed reply (version %u, expected 0)", r[0]);
  switch (r[1]) {
    case 90: break;
    /* Ambiguous: refused by a rule, or the destination failed.  Dante says
     * 91 for both, so it is counted as the proxy's failure. */
    case 91: return fail(p, 91, 0, "request rejected or failed (reply 91: refused, or the server is unreachable)");
    case 92: return fail(p, 92, 0, "request rejected: the proxy cannot reach our identd (reply 92)");
    case 93: return fail(p, 93, 0, "request rejected: identd reports a different user id (reply 93)");
    default: return fail(p, r[1], 0, "malformed reply (unknown reply code %u)", r[1]);
  }
  if (avail(p) < 8) return 0;
  p->in_off += 8;
  return done(p);
}

static int socks5_method(smtp_proxy *p) {
  const unsigned char *r = p->in + p->in_off;
  int offered_auth = p->auth_end > p->out_end;
  if (avail(p) < 2) return 0;
  if (r[0] != 5) return fail(p, 0, 0, "malformed method selection (version %u, expected 5)", r[0]);
  p->in_off += 2;
  if (r[1] == 0) {
    /* It needs no credentials: they stay unsent. */
    mbedtls_platform_zeroize(p->out + p->out_end, p->auth_end - p->out_end);
    p->out_off = p->auth_end;
    p->out_end = p->out_len;
    p->phase = PH_S5_REPLY;
    return 1;
  }
  if (r[1] == 2 && offered_auth) {
    p->out_end = p->auth_end;
    p->phase = PH_S5_AUTH;
    return 1;
  }
  if (r[1] == 0xff)
    return fail(p, 0xff, 0, offered_auth
                ? "accepts no authentication method we offer (no authentication, username/password)"
                : "requires authentication, and no username was given (no acceptable method)");
  return fail(p, r[1], 0, "chose authentication method %u, which we did not offer", r[1]);
}

static int socks5_auth(smtp_proxy *p) {
  const unsigned char *r = p->in + p->in_off;
  if (avail(p) < 2) return 0;
  if (r[0] != 1)
    return fail(p, 0, 0, "malformed username/password reply (version %u, expected 1)", r[0]);
  if (r[1] != 0) return fail(p, r[1], 0, "wrong username or password (RFC 1929 status %u)", r[1]);
  p->in_off += 2;
  p->out_end = p->out_len;
  p->phase = PH_S5_REPLY;
  return 1;
}

static int socks5_refused(smtp_proxy *p, unsigned rep) {
  static const char *const text[] = {
    "", "general SOCKS server failure", "connection not allowed by ruleset",
    "network unreachable", "host unreachable", "connection refused",
    "TTL expired", "command not supported", "address type not supported"
  };
  if (rep >= sizeof text / sizeof *text)
    return fail(p, (int)rep, 0, "unknown reply code %u", rep);
  return fail(p, (int)rep, rep >= 3 && rep <= 6, "%s (reply %u)", text[rep], rep);
}

/* VER REP RSV ATYP BND.ADDR BND.PORT: the bound address is not used, but
 * its length must be known to find where the tunnel starts. */
static int socks5_reply(smtp_proxy *p) {
  const unsigned char *r = p->in + p->in_off;
  size_t n;
  if (avail(p) < 2) return 0;
  if (r[0] != 5) return fail(p, 0, 0, "malformed reply (version %u, expected 5)", r[0]);
  if (r[1] != 0) return socks5_refused(p, r[1]);
  if (avail(p) < 4) return 0;
  switch (r[3]) {
    case 1: n = 4 + 4 + 2; break;
    case 4: n = 4 + 16 + 2; break;
    case 3:
      if (avail(p) < 5) return 0;
      n = 4 + 1 + (size_t)r[4] + 2;
      break;
    default: return fail(p, 0, 0, "malformed reply (address type %u)", r[3]);
  }
  if (avail(p) < n) return 0;
  p->in_off += n;
  return done(p);
}

/* The status line, printable, for messages: it is the proxy's own reason. */
static void status_text(char *dst, size_t cap, const unsigned char *s, size_t n) {
  size_t i;
  if (n > cap - 1) n = cap - 1;
  for (i = 0; i < n; i++) dst[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
  dst[n] = '\0';
}

/* "HTTP/d.d SP ddd [SP reason]": the status code, or 0. */
static int status_code(const unsigned char *s, size_t n) {
  int code;
  if (n < 12 || memcmp(s, "HTTP/", 5) != 0 || !is_digit(s[5]) || s[6] != '.' ||
      !is_digit(s[7]) || s[8] != ' ' || !is_digit(s[9]) || !is_digit(s[10]) ||
      !is_digit(s[11]) || (n > 12 && s[12] != ' '))
    return 0;
  code = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
  return code >= 100 && code <= 599 ? code : 0;
}

/* A status line other than 1xx and 2xx ends it at once: the head's other
 * lines and any body say nothing we act on. */
static int http_status(smtp_proxy *p, const unsigned char *line, size_t n) {
  char text[160];
  int code = status_code(line, n);
  status_text(text, sizeof text, line, n);
  if (code == 0) return fail(p, 0, 0, "malformed status line \"%s\"", text);
  p->status = code;
  if (code < 300) return 1;
  /* tinyproxy says 401 to wrong credentials, 407 only to none */
  if (code == 407 || code == 401)
    return fail(p, code, 0, "wrong or missing proxy credentials (%s)", text);
  /* 502-504 by the book; tinyproxy says 500 "Unable to connect". */
  if (code == 500 || (code >= 502 && code <= 504))
    return fail(p, code, 1, "cannot reach the server (%s)", text);
  return fail(p, code, 0, "CONNECT failed (%s)", text);
}

/* Lines end in LF, a CR before it being dropped; the head ends at an empty
 * line.  Scanning resumes where the last call stopped. */
static int http_head(smtp_proxy *p) {
  while (p->scan < p->in_len) {
    const unsigned char *line = p->in + p->line_start;
    size_t n = p->scan - p->line_start;
    if (p->in[p->scan++] != '\n') continue;
    if (n > 0 && line[n - 1] == '\r') n--;
    p->line_start = p->scan;
    if (p->status == 0) {
      if (!http_status(p, line, n)) return 0;
    } else if (n == 0) {
      p->in_off = p->scan;
      if (p->status >= 200) return done(p);
      p->status = 0;                /* 1xx: the response is still to come */
    }
  }
  if (p->in_len == sizeof p->in)
    return fail(p, 0, 0, "response head longer than %u octets", SMTP_PROXY_IN_SIZE);
  return 0;
}

/* One reply, when all of it is there: 1 when it was consumed. */
static int step(smtp_proxy *p) {
  switch (p->phase) {
    case PH_S4_REPLY: return socks4_reply(p);
    case PH_S5_METHOD: return socks5_method(p);
    case PH_S5_AUTH: return socks5_auth(p);
    case PH_S5_REPLY: return socks5_reply(p);
    case PH_HTTP: return http_head(p);
    default: return 0;
  }
}

/* Bytes that came before our request was written wait for it to be. */
static void run(smtp_proxy *p) {
  while (p->out_off == p->out_end && step(p)) {}
}

/* ---- the interface ---- */

unsigned smtp_proxy_state(const smtp_proxy *p) {
  if (p->phase == PH_FAILED) return SMTP_PROXY_FAILED;
  if (p->phase == PH_DONE) return SMTP_PROXY_DONE;
  return p->out_off < p->out_end ? SMTP_PROXY_SENDREC : SMTP_PROXY_RECVREC;
}

const unsigned char *smtp_proxy_sendrec_buf(const smtp_proxy *p, size_t *len) {
  *len = p->out_end - p->out_off;
  return p->out + p->out_off;
}

void smtp_proxy_sendrec_ack(smtp_proxy *p, size_t len) {
  if (!(smtp_proxy_state(p) & SMTP_PROXY_SENDREC)) return;
  if (len > p->out_end - p->out_off) len = p->out_end - p->out_off;
  p->out_off += len;
  if (p->out_off < p->out_end) return;
  mbedtls_platform_zeroize(p->out, p->out_off);
  run(p);
}

unsigned char *smtp_proxy_recvrec_buf(smtp_proxy *p, size_t *len) {
  *len = sizeof p->in - p->in_len;
  return p->in + p->in_len;
}

void smtp_proxy_recvrec_ack(smtp_proxy *p, size_t len) {
  if (!(smtp_proxy_state(p) & SMTP_PROXY_RECVREC)) return;
  if (len > sizeof p->in - p->in_len) len = sizeof p->in - p->in_len;
  p->in_len += len;
  run(p);
}

void smtp_proxy_recv_eof(smtp_proxy *p) {
  if (p->phase == PH_FAILED || p->phase == PH_DONE) return;
  fail(p, 0, 0, "closed the connection before %s", awaited[p->phase]);
}

const unsigned char *smtp_proxy_leftover(const smtp_proxy *p, size_t *len) {
  if (p->phase != PH_DONE) {
    *len = 0;
    return NULL;
  }
  *len = avail(p);
  return p->in + p->in_off;
}

const smtp_proxy_err *smtp_proxy_error(const smtp_proxy *p) {
  return &p->err;
}

void smtp_proxy_clear(smtp_proxy *p) {
  mbedtls_platform_zeroize(p, sizeof *p);
}
