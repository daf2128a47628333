/*
 * proxy.h -- SOCKS4, SOCKS4a, SOCKS5 and HTTP CONNECT handshakes, sans-IO.
 *
 * The handshake runs on the transport's bytes after connecting to the proxy
 * and before the SMTP engine (or TLS, for implicit TLS) sees any.  Like the
 * engine it never touches a socket, a clock or Lua, and never allocates:
 * the caller embeds the struct (~10 KiB) and moves bytes between it and the
 * transport through _buf/_ack pairs, BearSSL style.
 *
 * Protocols:
 *   SOCKS4   CONNECT to an IPv4 address; the user id is the username.
 *            A name MUST be resolved by the caller first (plain SOCKS4
 *            carries no names).
 *   SOCKS4a  as SOCKS4, but a name is sent to the proxy to resolve
 *            (destination 0.0.0.1, the name after the user id).  An IPv4
 *            literal is sent as in SOCKS4.
 *   SOCKS5   RFC 1928: offers "no authentication", and with a username also
 *            username/password (RFC 1929); CONNECT with the name, or the
 *            IPv4 or IPv6 address of a literal.
 *   HTTP     "CONNECT host:port HTTP/1.1" with a Host header ("[v6]:port"
 *            for IPv6) and, with a username, "Proxy-Authorization: Basic"
 *            of "user:password", or of "DOMAIN\user:password" when a domain
 *            is given.  1xx responses are skipped; a 2xx ends the handshake;
 *            401 (tinyproxy's) and 407 mean wrong or missing credentials.
 *
 * Rules of use (MUST):
 *   - Call smtp_proxy_init before anything else; it may be called again on
 *     the same struct to start over.
 *   - Exactly one state flag is set at a time.  While SMTP_PROXY_SENDREC is
 *     set, write what smtp_proxy_sendrec_buf lends and acknowledge it;
 *     while SMTP_PROXY_RECVREC is set, read into what smtp_proxy_recvrec_buf
 *     lends and acknowledge it.
 *   - A length passed to an _ack is > 0 and <= what the matching _buf gave
 *     (a larger one is cut to that; an _ack without its flag is ignored).
 *   - Call smtp_proxy_recv_eof when the transport reports end of stream.
 *   - On SMTP_PROXY_DONE, hand the bytes of smtp_proxy_leftover to whatever
 *     reads the tunnel next, before any newly read byte.
 *   - Call smtp_proxy_clear when abandoning a handshake that is neither
 *     DONE nor FAILED (a timeout): it wipes the credentials.
 *
 * Input: read whatever arrives.  The lent room is larger than any reply,
 * and the handshake consumes exactly the bytes its protocol defines, in
 * order, however the transport cut them; bytes after the proxy's final
 * reply are the server's (an SMTP greeting, say) and are kept for
 * smtp_proxy_leftover, never lost.  What is read is bounded: an HTTP
 * response head (with any 1xx heads before it) longer than
 * SMTP_PROXY_IN_SIZE octets is an error.
 *
 * Secrets: the credentials live only in the output buffer.  Bytes are wiped
 * once written, and everything on DONE, FAILED and smtp_proxy_clear.
 *
 * Errors stay set: once SMTP_PROXY_FAILED is set, smtp_proxy_error says why
 * and nothing else happens until smtp_proxy_init.
 */
#ifndef SMTP_PROXY_H
#define SMTP_PROXY_H

#include <stddef.h>

/* Internal to the module whatever the build system: only luaopen_* is public. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

#define SMTP_PROXY_SENDREC 0x01u  /* bytes ready for the transport */
#define SMTP_PROXY_RECVREC 0x02u  /* the handshake needs bytes from the proxy */
#define SMTP_PROXY_DONE    0x04u  /* the tunnel is open; see smtp_proxy_leftover */
#define SMTP_PROXY_FAILED  0x08u  /* see smtp_proxy_error */

#define SMTP_PROXY_IN_SIZE   8192u  /* input: caps the HTTP response head */
#define SMTP_PROXY_OUT_SIZE  2048u  /* output: the longest request we build */
#define SMTP_PROXY_FIELD_MAX 255u   /* octets of host, username, password, domain */

/* Return codes of smtp_proxy_init. */
#define SMTP_PROXY_OK      0
#define SMTP_PROXY_EINVAL (-1)    /* an argument is invalid: see smtp_proxy_error */

typedef enum {
  SMTP_PROXY_SOCKS4 = 1, SMTP_PROXY_SOCKS4A, SMTP_PROXY_SOCKS5, SMTP_PROXY_HTTP
} smtp_proxy_type;

typedef struct {
  char message[256];     /* what went wrong, in English, with the proxy's
                            numeric code; never a credential */
  int target_failed;     /* 1: the proxy works but could not reach the
                            destination (SOCKS5 replies 3-6, HTTP 502-504);
                            0: the proxy itself failed or refused us */
  int code;              /* the proxy's code: SOCKS4 reply (91-93), SOCKS5 reply
                            (0xff for "no acceptable method"), RFC 1929
                            status, HTTP status; 0 when it gave none */
} smtp_proxy_err;

typedef struct smtp_proxy {
  /* All private: use the functions. */
  smtp_proxy_type type;
  int phase;
  smtp_proxy_err err;
  /* output: out[out_off .. out_end) may be written now; SOCKS5 keeps its
   * later messages in [out_end .. out_len): auth first, up to auth_end */
  unsigned char out[SMTP_PROXY_OUT_SIZE];
  size_t out_off, out_end, out_len, auth_end;
  /* input: in[in_off .. in_len) received and not consumed yet */
  unsigned char in[SMTP_PROXY_IN_SIZE];
  size_t in_off, in_len;
  size_t scan, line_start;   /* HTTP: head scanned so far; current line */
  int status;                /* HTTP: the status code of the current head */
} smtp_proxy;

/* Prepare p for a handshake through a proxy of the given type to
 * host:port, host being a DNS name (letters, digits, '-', '.', '_'; IDNs
 * in their ASCII form) or an IP literal: IPv4 dotted quad, or IPv6 without
 * brackets or zone.  username, password and domain may be NULL or "" for
 * none.  Returns SMTP_PROXY_OK, or SMTP_PROXY_EINVAL leaving p FAILED with
 * the reason in smtp_proxy_error when:
 *   - host is empty, longer than 255 octets, or neither a name nor a literal;
 *     or is not an IPv4 literal for SOCKS4; or is IPv6 for SOCKS4/4a;
 *   - port is not 1..65535;
 *   - a username, password or domain is longer than 255 octets or holds
 *     CR or LF;
 *   - a password or domain comes without a username; SOCKS4 has a password;
 *     a domain is given for anything but HTTP; for HTTP, the username holds
 *     ':' or the domain ':' or '\'.
 * The strings are C strings: a caller holding counted strings (Lua) MUST
 * refuse embedded NULs itself.  Nothing is kept pointing at them. */
int smtp_proxy_init(smtp_proxy *p, smtp_proxy_type type, const char *host,
                    unsigned port, const char *username, const char *password,
                    const char *domain);

/* The state: exactly one SMTP_PROXY_* flag. */
unsigned smtp_proxy_state(const smtp_proxy *p);

/* Bytes to send.  Valid while SMTP_PROXY_SENDREC is set; *len > 0. */
const unsigned char *smtp_proxy_sendrec_buf(const smtp_proxy *p, size_t *len);
void smtp_proxy_sendrec_ack(smtp_proxy *p, size_t len);

/* Room for received bytes.  Valid while SMTP_PROXY_RECVREC is set; *len > 0. */
unsigned char *smtp_proxy_recvrec_buf(smtp_proxy *p, size_t *len);
void smtp_proxy_recvrec_ack(smtp_proxy *p, size_t len);

/* The transport reached end of stream: before DONE, that is a failure. */
void smtp_proxy_recv_eof(smtp_proxy *p);

/* When DONE: the bytes received after the proxy's final reply, which
 * belong to the tunnelled stream.  *len may be 0.  Valid until p is
 * initialized again or cleared; NULL with *len = 0 in any other state. */
const unsigned char *smtp_proxy_leftover(const smtp_proxy *p, size_t *len);

/* Why the handshake failed: valid in every state, all zero unless FAILED. */
const smtp_proxy_err *smtp_proxy_error(const smtp_proxy *p);

/* Zero the whole struct, credentials included.  p is then uninitialized,
 * and reads as FAILED with an empty message until smtp_proxy_init. */
void smtp_proxy_clear(smtp_proxy *p);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
