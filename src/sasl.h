/*
 * sasl.h -- SASL client mechanisms for SMTP AUTH (RFC 4954).  Sans-IO: no
 * sockets, no clocks, no randomness of its own, no Lua, and no allocation
 * but mbedTLS's own, for the moment an HMAC context lives.
 *
 * Mechanisms: PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195), SCRAM-SHA-1 and
 * SCRAM-SHA-256 (RFC 5802, RFC 7677; no channel binding, gs2 header "n,,";
 * the server signature is verified), NTLM (NTLMv2 as in MS-NLMP), XOAUTH2
 * (Google, Microsoft) and OAUTHBEARER (RFC 7628).
 *
 * Everything the module sends or receives is base64 text, exactly as it
 * goes after "AUTH MECH " or in a 334 line; the caller moves it.  The
 * caller embeds the struct (about 28 KiB); its memory is its own.
 *
 * Life of an exchange:
 *   smtp_sasl_start(...)               check and keep the credentials
 *   smtp_sasl_initial(...)             *outlen > 0: send "AUTH MECH <out>"
 *                                      (or "AUTH MECH" alone, see below);
 *                                      *outlen == 0: send "AUTH MECH"
 *   on each 334: smtp_sasl_step(...)   send out (an empty line if outlen 0)
 *   on 235:      smtp_sasl_finish(...) an error here means: do not trust
 *                                      the server (SCRAM), send QUIT
 *   on any other reply: the exchange failed; smtp_sasl_detail may say why
 *   always, at the end: smtp_sasl_wipe(...)
 *
 * Rules of use (MUST):
 *   - Call smtp_sasl_start before anything else on the struct (it need not
 *     be zeroed first), and smtp_sasl_wipe when done, whatever happened:
 *     until then the struct holds the password, token or keys derived from
 *     them.  Output buffers hold secrets too (base64 hides nothing): the
 *     caller wipes them.
 *   - Pass challenges exactly as the server sent them after "334 ", without
 *     CRLF.  Only strict base64 is accepted (RFC 4648 alphabet, padded).
 *   - Output buffers: out receives outlen octets and a NUL; cap counts the
 *     NUL.  SMTP_SASL_OUT_MAX octets always suffice.
 *   - An initial response that would make the AUTH line longer than the
 *     server allows (RFC 4954: 12288 octets) may be held back: send "AUTH
 *     MECH" alone; the server answers with an empty 334 challenge, to
 *     which smtp_sasl_step answers with the same initial response.
 * Errors stay set: after a function returns an error, every later call but
 * smtp_sasl_start and smtp_sasl_wipe returns the same one (smtp_sasl_error
 * tells it too).
 *
 * Details per mechanism:
 *   PLAIN     "\0user\0secret", no authorization identity, no SASLprep
 *             (the server prepares both strings before it compares them,
 *             RFC 4616 section 2).
 *   LOGIN     no initial response; the first 334 gets the user, the second
 *             the password, whatever their text says.
 *   CRAM-MD5  no initial response; the 334 challenge gets "user <hex HMAC>".
 *   SCRAM-*   the client nonce comes from random (32 printable characters);
 *             the server-final message ("v=...") arrives either as a 334
 *             challenge, which smtp_sasl_step checks and answers with an
 *             empty line, or with the 235 reply, which smtp_sasl_finish
 *             checks.  Iteration counts outside SMTP_SASL_ITER_MIN ..
 *             SMTP_SASL_ITER_MAX are refused: fewer is too weak, more would
 *             let a server make the client spin for minutes.
 *             User and password go through SASLprep (RFC 4013) as a query
 *             (unassigned code points allowed), with two simplifications:
 *             no NFKC normalization (it needs Unicode tables; ASCII and
 *             NFKC-normalized input are unaffected) and no bidirectional
 *             check.  Non-ASCII spaces map to SPACE, the "mapped to
 *             nothing" characters are dropped, invalid UTF-8 and the
 *             prohibited code points (controls, private use, surrogates,
 *             non-characters, tagging and display-changing ones) are
 *             refused.  "," and "=" in the user name are sent as "=2C"
 *             and "=3D".
 *   NTLM      Type 1 (negotiate), then Type 3 with the NTLMv2 response to
 *             the Type 2 challenge; no signing or sealing, no MIC, an empty
 *             workstation name.  The domain is `domain` when not empty,
 *             else the part before a backslash in the user name
 *             ("DOMAIN\user"), else empty (right for "user@domain").  The
 *             client challenge is random[0..7].  The timestamp in the
 *             NTLMv2 blob is the server's (MsvAvTimestamp in the Type 2
 *             target info) when present, else 0: servers that send no
 *             timestamp do not check it, and the module reads no clock.
 *             User, domain and password are UTF-8.  NTLMv2 hashes the user
 *             name upper-cased (here: ASCII and Latin-1 letters only) and
 *             the domain as given, as Windows does; Cyrus SASL's server
 *             upper-cases the domain too, so give it in upper case there.
 *   XOAUTH2   "user=" user "\1auth=Bearer " token "\1\1".  A 334 challenge
 *             is the server's JSON error: it is answered with an empty
 *             line (the server then fails with 535), and kept for
 *             smtp_sasl_detail and smtp_sasl_detail_status.
 *   OAUTHBEARER "n,a=" user "," "\1host=" host "\1port=" port
 *             "\1auth=Bearer " token "\1\1"; host is left out when NULL or
 *             empty, port when 0.  A 334 challenge is the JSON error,
 *             answered with "\1" as RFC 7628 says, and kept like XOAUTH2's.
 */
#ifndef SMTP_SASL_H
#define SMTP_SASL_H

/* Internal to the module whatever the build system: only luaopen_* is public. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

#include <stddef.h>

typedef enum {
  SMTP_SASL_NONE = 0,       /* not a mechanism: unknown name */
  SMTP_SASL_PLAIN, SMTP_SASL_LOGIN, SMTP_SASL_CRAM_MD5,
  SMTP_SASL_SCRAM_SHA_1, SMTP_SASL_SCRAM_SHA_256, SMTP_SASL_NTLM,
  SMTP_SASL_XOAUTH2, SMTP_SASL_OAUTHBEARER
} smtp_sasl_mech;

/* Bounds on what comes in, in octets. */
#define SMTP_SASL_USER_MAX      512u    /* user name, domain included */
#define SMTP_SASL_SECRET_MAX    8192u   /* password or OAuth token */
#define SMTP_SASL_DOMAIN_MAX    256u    /* NTLM domain */
#define SMTP_SASL_HOST_MAX      255u    /* OAUTHBEARER host */
#define SMTP_SASL_NONCE_MAX     64u     /* SCRAM client nonce */
#define SMTP_SASL_CHALLENGE_MAX 8192u   /* a challenge, decoded */
#define SMTP_SASL_DETAIL_MAX    512u    /* kept of a server's error text */
#define SMTP_SASL_ITER_MIN      4096u   /* SCRAM iteration count bounds */
#define SMTP_SASL_ITER_MAX      1000000u

/* The longest response before base64 (OAUTHBEARER's initial response or
 * NTLM's Type 3 bound it), and the output buffer that always suffices. */
#define SMTP_SASL_MAX_(a, b) ((a) > (b) ? (a) : (b))
#define SMTP_SASL_RAW_MAX SMTP_SASL_MAX_( \
  3u * SMTP_SASL_USER_MAX + SMTP_SASL_HOST_MAX + SMTP_SASL_SECRET_MAX + 64u, \
  SMTP_SASL_CHALLENGE_MAX + 2u * (SMTP_SASL_USER_MAX + SMTP_SASL_DOMAIN_MAX) \
  + 128u)
#define SMTP_SASL_OUT_MAX (4u * ((SMTP_SASL_RAW_MAX + 2u) / 3u) + 1u)

/* Return codes: 0 or one of these errors. */
#define SMTP_SASL_OK           0
#define SMTP_SASL_EINVAL      (-1)  /* bad argument: unknown mechanism, empty
                                       user or secret, NUL, too long, SASLprep */
#define SMTP_SASL_ESPACE      (-2)  /* output buffer too small */
#define SMTP_SASL_EBASE64     (-3)  /* the server sent invalid base64 */
#define SMTP_SASL_ETOOLONG    (-4)  /* challenge longer than the bound */
#define SMTP_SASL_EMALFORMED  (-5)  /* challenge does not parse */
#define SMTP_SASL_EUNEXPECTED (-6)  /* a challenge where none is due */
#define SMTP_SASL_ENONCE      (-7)  /* SCRAM nonce does not extend ours */
#define SMTP_SASL_EITER       (-8)  /* SCRAM iteration count out of bounds */
#define SMTP_SASL_ESIGNATURE  (-9)  /* SCRAM server signature wrong */
#define SMTP_SASL_ENOSIGNATURE (-10) /* SCRAM success without a signature */
#define SMTP_SASL_ESERVER     (-11) /* SCRAM server-final "e=": see detail */
#define SMTP_SASL_ECRYPTO     (-12) /* mbedTLS failed (out of memory) */

typedef struct {
  /* All private: use the functions. */
  smtp_sasl_mech mech;
  int stage;                    /* challenges answered so far, per mech */
  int ir_again;                 /* the initial response was asked again */
  int err;
  unsigned char user[SMTP_SASL_USER_MAX];       /* prepared for the mech */
  size_t user_len;
  unsigned char secret[SMTP_SASL_SECRET_MAX];   /* not kept by NTLM */
  size_t secret_len;
  unsigned char domain[SMTP_SASL_DOMAIN_MAX];
  size_t domain_len;
  char host[SMTP_SASL_HOST_MAX];
  size_t host_len;
  unsigned port;
  char nonce[SMTP_SASL_NONCE_MAX];              /* SCRAM client nonce */
  size_t nonce_len;
  unsigned char server_sig[32];                 /* SCRAM, expected */
  unsigned char ntlm_key[16];                   /* NTLMv2 ResponseKeyNT */
  unsigned char client_chal[8];                 /* NTLMv2 */
  unsigned char chal[SMTP_SASL_CHALLENGE_MAX];  /* decoded challenge */
  size_t chal_len;
  unsigned char raw[SMTP_SASL_RAW_MAX];         /* response before base64 */
  char detail[SMTP_SASL_DETAIL_MAX + 1];
  char detail_status[32];
} smtp_sasl;

/* The mechanism named name (case-insensitive, NUL-terminated), or
 * SMTP_SASL_NONE. */
smtp_sasl_mech smtp_sasl_mech_from_name(const char *name);

/* The canonical (upper-case) name of mech, or NULL when it is none. */
const char *smtp_sasl_mech_name(smtp_sasl_mech mech);

/* Begin an exchange.  user and secret (password or token) are octet
 * strings, UTF-8 where text matters; both MUST be non-empty, hold no NUL
 * and fit the bounds above.  domain (NTLM) and host (OAUTHBEARER) are
 * NUL-terminated or NULL; port (OAUTHBEARER) is 0 when unknown.  random
 * MUST be 32 unpredictable octets (SCRAM nonce, NTLM client challenge).
 * Arguments a mechanism does not use are ignored.  Returns SMTP_SASL_OK,
 * SMTP_SASL_EINVAL, or SMTP_SASL_ECRYPTO (NTLM hashes the password here,
 * so that it is never kept); an error stays set. */
int smtp_sasl_start(smtp_sasl *s, smtp_sasl_mech mech,
                    const char *user, size_t user_len,
                    const char *secret, size_t secret_len,
                    const char *domain, const char *host, unsigned port,
                    const unsigned char random[32]);

/* smtp_sasl_start with a given SCRAM client nonce (1 to SMTP_SASL_NONCE_MAX
 * printable ASCII characters but ","): for tests against published
 * exchanges.  smtp_sasl_start derives its nonce from random and calls this. */
int smtp_sasl_start_with_nonce(smtp_sasl *s, smtp_sasl_mech mech,
                               const char *user, size_t user_len,
                               const char *secret, size_t secret_len,
                               const char *domain, const char *host,
                               unsigned port, const unsigned char random[32],
                               const char *nonce, size_t nonce_len);

/* The initial response, base64, into out (see the rules on buffers).
 * *outlen == 0 means the mechanism has none (LOGIN, CRAM-MD5): send "AUTH
 * MECH" and wait for a challenge.  No mechanism has an empty initial
 * response, so RFC 4954's "=" is never needed.  It changes nothing in s:
 * calling it again gives the same response. */
int smtp_sasl_initial(smtp_sasl *s, char *out, size_t cap, size_t *outlen);

/* Answer a 334 challenge (len octets of base64, 0 for an empty one) with a
 * response line, base64, into out; *outlen may be 0 (send an empty line).
 * Errors: SMTP_SASL_EBASE64, ETOOLONG, EMALFORMED, EUNEXPECTED, ENONCE,
 * EITER, ESIGNATURE, ESERVER, ESPACE, ECRYPTO.  On an error, cancel the
 * exchange by sending "*". */
int smtp_sasl_step(smtp_sasl *s, const char *challenge, size_t len,
                   char *out, size_t cap, size_t *outlen);

/* The server accepted (235).  extra is the base64 text that came with the
 * reply, or NULL: for SCRAM, when the server-final message has not come as
 * a challenge, it must be there, or the result is SMTP_SASL_ENOSIGNATURE;
 * it is ignored otherwise, so passing the 235 text (after the enhanced
 * status code) always is fine.  Other mechanisms return SMTP_SASL_OK unless
 * an error is already set. */
int smtp_sasl_finish(smtp_sasl *s, const char *extra, size_t len);

/* The error that is set, or SMTP_SASL_OK. */
int smtp_sasl_error(const smtp_sasl *s);

/* Short English text for a return code ("server signature mismatch"). */
const char *smtp_sasl_strerror(int code);

/* What the server said about a failure, or "": the decoded JSON of an
 * XOAUTH2 or OAUTHBEARER error challenge, or a SCRAM "e=" value; at most
 * SMTP_SASL_DETAIL_MAX octets, control characters replaced by '?'. */
const char *smtp_sasl_detail(const smtp_sasl *s);

/* The "status" member of that JSON ("401", "invalid_token"), or "". */
const char *smtp_sasl_detail_status(const smtp_sasl *s);

/* MD4 (RFC 1320), which NTLM needs and mbedTLS 3 dropped; public for its
 * test vectors. */
void smtp_sasl_md4(const unsigned char *p, size_t n, unsigned char out[16]);

/* Zero the whole struct (mbedtls_platform_zeroize).  MUST be called when
 * the exchange is over, however it ended. */
void smtp_sasl_wipe(smtp_sasl *s);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
