/*
 * sasl.c -- SASL client mechanisms.  The contract is in sasl.h; this file
 * says why things are done the way they are.
 *
 * Every response is built in s->raw, then base64-encoded into the caller's
 * buffer and wiped from raw at once.  Challenges are decoded into s->chal.
 * Crypto comes from mbedTLS through calls that are the same in 2.28 and
 * 3.6 (mbedtls_md*, base64, platform_zeroize); PBKDF2 is written here to
 * avoid the pkcs5 API change, and MD4 because 3.x dropped it.
 */
#include <stdint.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>

#include "sasl.h"

/* Bound on a decoded SCRAM salt and server signature: real ones are 16 to
 * 32 octets. */
#define SCRAM_FIELD_MAX 128u

/* Stages beyond the per-mechanism ones: finish() succeeded. */
#define STAGE_DONE 100

/* NTLM negotiate flags (MS-NLMP 2.2.2.5). */
#define NTLM_UNICODE        0x00000001u
#define NTLM_OEM            0x00000002u
#define NTLM_REQUEST_TARGET 0x00000004u
#define NTLM_NTLM           0x00000200u
#define NTLM_ALWAYS_SIGN    0x00008000u
#define NTLM_ESS            0x00080000u  /* extended session security */
/* What we ask for: authentication only, no signing or sealing keys, so the
 * server has no reason to expect a session key or a MIC. */
#define NTLM_TYPE1_FLAGS (NTLM_UNICODE | NTLM_OEM | NTLM_REQUEST_TARGET | \
                          NTLM_NTLM | NTLM_ALWAYS_SIGN | NTLM_ESS)
#define NTLM_TYPE3_HEADER 64u    /* without the optional Version and MIC */
#define NTLM_AV_EOL       0u
#define NTLM_AV_TIMESTAMP 7u

static const char *const mech_names[] = {
  NULL, "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "NTLM",
  "XOAUTH2", "OAUTHBEARER"
};
#define MECH_COUNT (sizeof mech_names / sizeof mech_names[0])

static const char b64_alphabet[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ---- small helpers ------------------------------------------------------ */

static int fail(smtp_sasl *s, int err)
{
  s->err = err;
  mbedtls_platform_zeroize(s->raw, sizeof s->raw);
  return err;
}

static int is_scram(smtp_sasl_mech m)
{
  return m == SMTP_SASL_SCRAM_SHA_1 || m == SMTP_SASL_SCRAM_SHA_256;
}

static int has_initial(smtp_sasl_mech m)
{
  return m != SMTP_SASL_LOGIN && m != SMTP_SASL_CRAM_MD5;
}

static unsigned char ascii_lower(unsigned char c)
{
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Differences are OR-ed, not returned early, so the time taken does not
 * tell how much of a forged signature was right. */
static int equal_ct(const unsigned char *a, const unsigned char *b, size_t n)
{
  unsigned char d = 0;
  size_t i;

  for (i = 0; i < n; i++)
    d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}

static uint32_t le32(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static unsigned le16(const unsigned char *p)
{
  return (unsigned)p[0] | (unsigned)p[1] << 8;
}

static void put_le32(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

/* Keep what a server said about a failure for error messages: bounded,
 * and with control characters replaced so that it cannot break a log line. */
static void keep_detail(smtp_sasl *s, const unsigned char *p, size_t n)
{
  size_t i;

  while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' '))
    n--;
  if (n > SMTP_SASL_DETAIL_MAX)
    n = SMTP_SASL_DETAIL_MAX;
  for (i = 0; i < n; i++)
    s->detail[i] = p[i] < 0x20 || p[i] == 0x7f ? '?' : (char)p[i];
  s->detail[n] = '\0';
}

/* ---- the response writer ------------------------------------------------ */

/* Appends to s->raw.  The bounds in sasl.h make overflow impossible; the
 * check stays so that a mistake there costs an error, not memory. */
typedef struct {
  unsigned char *p;
  size_t len, cap;
  int over;
} wbuf;

static void w_init(wbuf *w, smtp_sasl *s)
{
  w->p = s->raw;
  w->len = 0;
  w->cap = sizeof s->raw;
  w->over = 0;
}

static void w_put(wbuf *w, const void *d, size_t n)
{
  if (n == 0)                   /* d may be NULL then */
    return;
  if (w->over || n > w->cap - w->len) {
    w->over = 1;
    return;
  }
  memcpy(w->p + w->len, d, n);
  w->len += n;
}

static void w_str(wbuf *w, const char *str)
{
  w_put(w, str, strlen(str));
}

static void w_byte(wbuf *w, unsigned char c)
{
  w_put(w, &c, 1);
}

/* RFC 5802 saslname (also RFC 7628's authzid): "," and "=" would end or
 * escape the field. */
static void w_saslname(wbuf *w, const unsigned char *p, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++) {
    if (p[i] == ',')
      w_str(w, "=2C");
    else if (p[i] == '=')
      w_str(w, "=3D");
    else
      w_byte(w, p[i]);
  }
}

static void w_decimal(wbuf *w, unsigned long v)
{
  char d[24];
  size_t i = sizeof d;

  do {
    d[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  w_put(w, d + i, sizeof d - i);
}

/* ---- base64 ------------------------------------------------------------- */

static int b64_char(unsigned char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Only canonical, padded base64 is accepted: mbedTLS versions differ on
 * what else they let through (spaces, line breaks, missing padding), and
 * the result must not depend on the version. */
static int b64_decode(const unsigned char *p, size_t n, unsigned char *dst,
                      size_t cap, size_t *dlen)
{
  size_t i, pad = 0;

  if (n > 4 * ((cap + 2) / 3))
    return SMTP_SASL_ETOOLONG;
  if (n % 4 != 0)
    return SMTP_SASL_EBASE64;
  if (n > 0 && p[n - 1] == '=')
    pad = p[n - 2] == '=' ? 2 : 1;
  for (i = 0; i < n - pad; i++)
    if (!b64_char(p[i]))
      return SMTP_SASL_EBASE64;
  if (n / 4 * 3 - pad > cap)
    return SMTP_SASL_ETOOLONG;
  *dlen = 0;
  if (n > 0 && mbedtls_base64_decode(dst, cap, dlen, p, n) != 0)
    return SMTP_SASL_EBASE64;
  return SMTP_SASL_OK;
}

/* Encode the response in s->raw[0 .. len) into out, then wipe raw. */
static int emit(smtp_sasl *s, const wbuf *w, char *out, size_t cap,
                size_t *outlen)
{
  size_t olen = 0;
  int r = SMTP_SASL_OK;

  if (w->over)
    r = SMTP_SASL_ESPACE;
  else if (w->len == 0) {
    /* mbedTLS writes no NUL for empty input */
    if (cap < 1)
      r = SMTP_SASL_ESPACE;
    else
      out[0] = '\0';
  } else if (mbedtls_base64_encode((unsigned char *)out, cap, &olen, w->p,
                                   w->len) != 0)
    r = SMTP_SASL_ESPACE;
  mbedtls_platform_zeroize(s->raw, w->len);
  if (r != SMTP_SASL_OK)
    return fail(s, r);
  *outlen = olen;
  return SMTP_SASL_OK;
}

/* ---- UTF-8, UTF-16 and SASLprep ---------------------------------------- */

/* Decode one code point at p[*i], strictly: no overlong forms, no
 * surrogates, nothing above U+10FFFF.  Returns -1 on invalid input. */
static long utf8_next(const unsigned char *p, size_t n, size_t *i)
{
  unsigned char c = p[*i];
  unsigned long cp, min;
  size_t k, more;

  if (c < 0x80) {
    (*i)++;
    return c;
  }
  if (c >= 0xc2 && c <= 0xdf) {
    more = 1; cp = c & 0x1fu; min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    more = 2; cp = c & 0x0fu; min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    more = 3; cp = c & 0x07u; min = 0x10000;
  } else {
    return -1;
  }
  if (n - *i <= more)
    return -1;
  for (k = 1; k <= more; k++) {
    unsigned char d = p[*i + k];
    if ((d & 0xc0) != 0x80)
      return -1;
    cp = cp << 6 | (d & 0x3fu);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
    return -1;
  *i += more + 1;
  return (long)cp;
}

static size_t utf8_put(unsigned char *o, unsigned long cp)
{
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xc0 | cp >> 6);
    o[1] = (unsigned char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xe0 | cp >> 12);
    o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (unsigned char)(0xf0 | cp >> 18);
  o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
  o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
  o[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

static size_t utf16le_put(unsigned char *o, unsigned long cp)
{
  if (cp < 0x10000) {
    o[0] = (unsigned char)cp;
    o[1] = (unsigned char)(cp >> 8);
    return 2;
  }
  cp -= 0x10000;
  o[0] = (unsigned char)(0xd800 | cp >> 10);
  o[1] = (unsigned char)((0xd800 | cp >> 10) >> 8);
  o[2] = (unsigned char)(0xdc00 | (cp & 0x3ff));
  o[3] = (unsigned char)((0xdc00 | (cp & 0x3ff)) >> 8);
  return 4;
}

/* NTLMv2 hashes the user name upper-cased.  Windows upper-cases with its
 * own Unicode table; ASCII and the Latin-1 letters with a one-to-one upper
 * case are the part we can be sure of without one. */
static unsigned long upper_latin1(unsigned long cp)
{
  if ((cp >= 'a' && cp <= 'z') || (cp >= 0xe0 && cp <= 0xfe && cp != 0xf7))
    return cp - 0x20;
  return cp;
}

typedef struct {
  unsigned long lo, hi;
} cp_range;

/* RFC 3454 C.1.2: non-ASCII spaces, mapped to SPACE (RFC 4013 2.1).
 * U+200B is in B.1 too; mapping to SPACE first is what libidn does. */
static const cp_range prep_space[] = {
  { 0xa0, 0xa0 }, { 0x1680, 0x1680 }, { 0x2000, 0x200b }, { 0x202f, 0x202f },
  { 0x205f, 0x205f }, { 0x3000, 0x3000 }
};

/* RFC 3454 B.1: commonly mapped to nothing. */
static const cp_range prep_nothing[] = {
  { 0xad, 0xad }, { 0x34f, 0x34f }, { 0x1806, 0x1806 }, { 0x180b, 0x180d },
  { 0x200c, 0x200d }, { 0x2060, 0x2060 }, { 0xfe00, 0xfe0f },
  { 0xfeff, 0xfeff }
};

/* RFC 4013 2.3 prohibited output: C.2.1, C.2.2, C.3, C.4 (but the
 * U+nFFFE/nFFFF pairs, tested apart), C.6, C.7, C.8, C.9.  C.1.2 and the
 * code points of C.2.2 in B.1 cannot remain after mapping; C.5
 * (surrogates) is refused by the UTF-8 decoder. */
static const cp_range prep_prohibited[] = {
  { 0x0, 0x1f }, { 0x7f, 0x9f }, { 0x340, 0x341 }, { 0x6dd, 0x6dd },
  { 0x70f, 0x70f }, { 0x180e, 0x180e }, { 0x200e, 0x200f },
  { 0x2028, 0x202e }, { 0x2061, 0x2063 }, { 0x206a, 0x206f },
  { 0x2ff0, 0x2ffb }, { 0xe000, 0xf8ff }, { 0xfdd0, 0xfdef },
  { 0xfff9, 0xfffd }, { 0x1d173, 0x1d17a }, { 0xe0001, 0xe0001 },
  { 0xe0020, 0xe007f }, { 0xf0000, 0xffffd }, { 0x100000, 0x10fffd }
};

static int in_ranges(unsigned long cp, const cp_range *r, size_t n)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (cp >= r[i].lo && cp <= r[i].hi)
      return 1;
  return 0;
}

#define IN_TABLE(cp, t) in_ranges((cp), (t), sizeof (t) / sizeof (t)[0])

/* SASLprep without NFKC and without the bidi rule (see sasl.h).  The
 * output is never longer than the input: mapping only shrinks. */
static int saslprep(const unsigned char *in, size_t n, unsigned char *out,
                    size_t *outlen)
{
  size_t i = 0, o = 0;

  while (i < n) {
    long c = utf8_next(in, n, &i);
    unsigned long cp;

    if (c < 0)
      return -1;
    cp = (unsigned long)c;
    if (IN_TABLE(cp, prep_space))
      cp = ' ';
    else if (IN_TABLE(cp, prep_nothing))
      continue;
    if (IN_TABLE(cp, prep_prohibited) || (cp & 0xfffeu) == 0xfffeu)
      return -1;
    o += utf8_put(out + o, cp);
  }
  *outlen = o;
  return o > 0 ? 0 : -1;
}

/* ---- MD4 (RFC 1320), for the NT hash ----------------------------------- */

typedef struct {
  uint32_t h[4];
  uint64_t len;
  unsigned char buf[64];
} md4_ctx;

static uint32_t rotl(uint32_t x, unsigned s)
{
  return x << s | x >> (32 - s);
}

/* The three rounds of RFC 1320 3.4 as tables: which word each of the 16
 * operations reads, and its shift (the same four repeat). */
static const unsigned char md4_word[3][16] = {
  { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 },
  { 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15 },
  { 0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15 }
};
static const unsigned char md4_shift[3][4] = {
  { 3, 7, 11, 19 }, { 3, 5, 9, 13 }, { 3, 9, 11, 15 }
};
static const uint32_t md4_add[3] = { 0, 0x5a827999u, 0x6ed9eba1u };

static void md4_block(uint32_t h[4], const unsigned char *blk)
{
  uint32_t x[16], v[4];
  unsigned r, i;

  for (i = 0; i < 16; i++)
    x[i] = le32(blk + 4 * i);
  memcpy(v, h, sizeof v);
  for (r = 0; r < 3; r++) {
    for (i = 0; i < 16; i++) {
      /* The operations update a, d, c, b in turn, each reading the next
       * three words of (a, b, c, d) in circular order. */
      unsigned t = (4 - i % 4) % 4;
      uint32_t b = v[(t + 1) % 4], c = v[(t + 2) % 4], d = v[(t + 3) % 4], f;

      if (r == 0)
        f = (b & c) | (~b & d);
      else if (r == 1)
        f = (b & c) | (b & d) | (c & d);
      else
        f = b ^ c ^ d;
      v[t] = rotl(v[t] + f + x[md4_word[r][i]] + md4_add[r],
                  md4_shift[r][i % 4]);
    }
  }
  for (i = 0; i < 4; i++)
    h[i] += v[i];
  mbedtls_platform_zeroize(x, sizeof x);
  mbedtls_platform_zeroize(v, sizeof v);
}

static void md4_init(md4_ctx *c)
{
  c->h[0] = 0x67452301u;
  c->h[1] = 0xefcdab89u;
  c->h[2] = 0x98badcfeu;
  c->h[3] = 0x10325476u;
  c->len = 0;
}

static void md4_update(md4_ctx *c, const unsigned char *p, size_t n)
{
  while (n > 0) {
    size_t used = (size_t)(c->len % 64), take = 64 - used;

    if (take > n)
      take = n;
    memcpy(c->buf + used, p, take);
    c->len += take;
    p += take;
    n -= take;
    if (c->len % 64 == 0)
      md4_block(c->h, c->buf);
  }
}

static void md4_final(md4_ctx *c, unsigned char out[16])
{
  static const unsigned char pad[64] = { 0x80 };
  unsigned char bits[8];
  uint64_t len = c->len * 8;
  unsigned i;

  for (i = 0; i < 8; i++)
    bits[i] = (unsigned char)(len >> (8 * i));
  md4_update(c, pad, (size_t)(c->len % 64 < 56 ? 56 - c->len % 64
                                               : 120 - c->len % 64));
  md4_update(c, bits, 8);
  for (i = 0; i < 4; i++)
    put_le32(out + 4 * i, c->h[i]);
  mbedtls_platform_zeroize(c, sizeof *c);
}

void smtp_sasl_md4(const unsigned char *p, size_t n, unsigned char out[16])
{
  md4_ctx c;

  md4_init(&c);
  md4_update(&c, p, n);
  md4_final(&c, out);
}

/* ---- HMAC and PBKDF2 over mbedtls_md ----------------------------------- */

typedef struct {
  const void *p;
  size_t n;
} part;

/* HMAC of the concatenated parts; out receives the hash size. */
static int hmac_parts(mbedtls_md_type_t type, const unsigned char *key,
                      size_t klen, const part *parts, size_t count,
                      unsigned char *out)
{
  const mbedtls_md_info_t *md = mbedtls_md_info_from_type(type);
  mbedtls_md_context_t c;
  size_t i;
  int r;

  if (md == NULL)
    return SMTP_SASL_ECRYPTO;
  mbedtls_md_init(&c);
  r = mbedtls_md_setup(&c, md, 1);
  if (r == 0)
    r = mbedtls_md_hmac_starts(&c, key, klen);
  for (i = 0; r == 0 && i < count; i++)
    if (parts[i].n > 0)         /* p may be NULL then */
      r = mbedtls_md_hmac_update(&c, parts[i].p, parts[i].n);
  if (r == 0)
    r = mbedtls_md_hmac_finish(&c, out);
  mbedtls_md_free(&c);
  return r == 0 ? SMTP_SASL_OK : SMTP_SASL_ECRYPTO;
}

static int hmac1(mbedtls_md_type_t type, const unsigned char *key,
                 size_t klen, const void *p, size_t n, unsigned char *out)
{
  part one;

  one.p = p;
  one.n = n;
  return hmac_parts(type, key, klen, &one, 1, out);
}

/* RFC 5802 Hi(), i.e. PBKDF2 with one block of output.  One HMAC context
 * serves all iterations: hmac_reset reuses the keyed state. */
static int pbkdf2(mbedtls_md_type_t type, const unsigned char *pw, size_t pwlen,
                  const unsigned char *salt, size_t slen, unsigned long iter,
                  unsigned char *out)
{
  static const unsigned char block1[4] = { 0, 0, 0, 1 };
  const mbedtls_md_info_t *md = mbedtls_md_info_from_type(type);
  mbedtls_md_context_t c;
  unsigned char u[MBEDTLS_MD_MAX_SIZE];
  size_t hlen, j;
  unsigned long k;
  int r;

  if (md == NULL)
    return SMTP_SASL_ECRYPTO;
  hlen = mbedtls_md_get_size(md);
  mbedtls_md_init(&c);
  r = mbedtls_md_setup(&c, md, 1);
  if (r == 0)
    r = mbedtls_md_hmac_starts(&c, pw, pwlen);
  if (r == 0)
    r = mbedtls_md_hmac_update(&c, salt, slen);
  if (r == 0)
    r = mbedtls_md_hmac_update(&c, block1, sizeof block1);
  if (r == 0)
    r = mbedtls_md_hmac_finish(&c, u);
  if (r == 0)
    memcpy(out, u, hlen);
  for (k = 1; r == 0 && k < iter; k++) {
    r = mbedtls_md_hmac_reset(&c);
    if (r == 0)
      r = mbedtls_md_hmac_update(&c, u, hlen);
    if (r == 0)
      r = mbedtls_md_hmac_finish(&c, u);
    for (j = 0; r == 0 && j < hlen; j++)
      out[j] ^= u[j];
  }
  mbedtls_md_free(&c);
  mbedtls_platform_zeroize(u, sizeof u);
  return r == 0 ? SMTP_SASL_OK : SMTP_SASL_ECRYPTO;
}

/* ---- names and errors --------------------------------------------------- */

smtp_sasl_mech smtp_sasl_mech_from_name(const char *name)
{
  size_t m, i;

  for (m = 1; m < MECH_COUNT; m++) {
    const char *want = mech_names[m];

    for (i = 0; want[i] != '\0'; i++)
      if (ascii_lower((unsigned char)name[i]) !=
          ascii_lower((unsigned char)want[i]))
        break;
    if (want[i] == '\0' && name[i] == '\0')
      return (smtp_sasl_mech)m;
  }
  return SMTP_SASL_NONE;
}

const char *smtp_sasl_mech_name(smtp_sasl_mech mech)
{
  return (unsigned)mech < MECH_COUNT ? mech_names[mech] : NULL;
}

const char *smtp_sasl_strerror(int code)
{
  switch (code) {
  case SMTP_SASL_OK:           return "no error";
  case SMTP_SASL_EINVAL:       return "invalid user name, password or argument";
  case SMTP_SASL_ESPACE:       return "output buffer too small";
  case SMTP_SASL_EBASE64:      return "server sent invalid base64";
  case SMTP_SASL_ETOOLONG:     return "server challenge too long";
  case SMTP_SASL_EMALFORMED:   return "malformed server challenge";
  case SMTP_SASL_EUNEXPECTED:  return "unexpected server challenge";
  case SMTP_SASL_ENONCE:       return "server nonce does not match ours";
  case SMTP_SASL_EITER:        return "SCRAM iteration count out of bounds";
  case SMTP_SASL_ESIGNATURE:   return "server signature mismatch";
  case SMTP_SASL_ENOSIGNATURE: return "server sent no signature";
  case SMTP_SASL_ESERVER:      return "server reported an authentication error";
  case SMTP_SASL_ECRYPTO:      return "cryptographic failure";
  default:                     return "unknown error";
  }
}

int smtp_sasl_error(const smtp_sasl *s)
{
  return s->err;
}

const char *smtp_sasl_detail(const smtp_sasl *s)
{
  return s->detail;
}

const char *smtp_sasl_detail_status(const smtp_sasl *s)
{
  return s->detail_status;
}

void smtp_sasl_wipe(smtp_sasl *s)
{
  mbedtls_platform_zeroize(s, sizeof *s);
}

/* ---- start -------------------------------------------------------------- */

/* strlen that stops looking past max: the result is then max + 1. */
static size_t bounded_len(const char *str, size_t max)
{
  size_t n = 0;

  if (str == NULL)
    return 0;
  while (n <= max && str[n] != '\0')
    n++;
  return n;
}

static int has_byte(const char *p, size_t n, char c)
{
  return n > 0 && memchr(p, c, n) != NULL;
}

/* NTLMv2's key, ResponseKeyNT = HMAC-MD5(MD4(UTF-16LE(password)),
 * UTF-16LE(upper(user) domain)), computed here so that the password itself
 * is never kept (MS-NLMP 3.3.2). */
static int ntlm_key(smtp_sasl *s, const unsigned char *pw, size_t pwlen)
{
  unsigned char name[2 * (SMTP_SASL_USER_MAX + SMTP_SASL_DOMAIN_MAX)];
  unsigned char nt_hash[16], u[4];
  size_t i = 0, n = 0;
  md4_ctx c;
  int r;

  md4_init(&c);
  while (i < pwlen) {
    long cp = utf8_next(pw, pwlen, &i);
    if (cp < 0) {
      mbedtls_platform_zeroize(&c, sizeof c);
      return SMTP_SASL_EINVAL;
    }
    md4_update(&c, u, utf16le_put(u, (unsigned long)cp));
  }
  md4_final(&c, nt_hash);
  mbedtls_platform_zeroize(u, sizeof u);
  /* user and domain were checked as UTF-8 by the caller */
  for (i = 0; i < s->user_len;)
    n += utf16le_put(name + n, upper_latin1((unsigned long)utf8_next(
                                 s->user, s->user_len, &i)));
  for (i = 0; i < s->domain_len;)
    n += utf16le_put(name + n, (unsigned long)utf8_next(s->domain,
                                                        s->domain_len, &i));
  r = hmac1(MBEDTLS_MD_MD5, nt_hash, sizeof nt_hash, name, n, s->ntlm_key);
  mbedtls_platform_zeroize(nt_hash, sizeof nt_hash);
  return r;
}

static int valid_utf8(const unsigned char *p, size_t n)
{
  size_t i = 0;

  while (i < n)
    if (utf8_next(p, n, &i) < 0)
      return 0;
  return 1;
}

/* The user and domain for NTLM: the domain argument, else "DOMAIN\user". */
static int ntlm_start(smtp_sasl *s, const char *user, size_t ulen,
                      const char *secret, size_t slen, const char *domain,
                      const unsigned char random[32])
{
  size_t dlen = bounded_len(domain, SMTP_SASL_DOMAIN_MAX);
  const char *bs;

  if (dlen == 0 && (bs = memchr(user, '\\', ulen)) != NULL) {
    domain = user;
    dlen = (size_t)(bs - user);
    ulen -= dlen + 1;
    user = bs + 1;
  }
  if (ulen == 0 || dlen > SMTP_SASL_DOMAIN_MAX)
    return SMTP_SASL_EINVAL;
  memcpy(s->user, user, ulen);
  s->user_len = ulen;
  if (dlen > 0)
    memcpy(s->domain, domain, dlen);
  s->domain_len = dlen;
  if (!valid_utf8(s->user, ulen) || !valid_utf8(s->domain, dlen))
    return SMTP_SASL_EINVAL;
  memcpy(s->client_chal, random, sizeof s->client_chal);
  return ntlm_key(s, (const unsigned char *)secret, slen);
}

static int store_start(smtp_sasl *s, smtp_sasl_mech mech, const char *user,
                       size_t ulen, const char *secret, size_t slen,
                       const char *domain, const char *host, unsigned port,
                       const unsigned char random[32])
{
  size_t hlen = bounded_len(host, SMTP_SASL_HOST_MAX);

  if (mech == SMTP_SASL_NONE || (unsigned)mech >= MECH_COUNT ||
      ulen == 0 || slen == 0 || ulen > SMTP_SASL_USER_MAX ||
      slen > SMTP_SASL_SECRET_MAX || has_byte(user, ulen, '\0') ||
      has_byte(secret, slen, '\0'))
    return SMTP_SASL_EINVAL;
  if (mech == SMTP_SASL_NTLM)
    return ntlm_start(s, user, ulen, secret, slen, domain, random);
  if (is_scram(mech)) {
    if (saslprep((const unsigned char *)user, ulen, s->user, &s->user_len) ||
        saslprep((const unsigned char *)secret, slen, s->secret,
                 &s->secret_len))
      return SMTP_SASL_EINVAL;
    return SMTP_SASL_OK;
  }
  /* \1 separates the fields of the OAuth mechanisms */
  if ((mech == SMTP_SASL_XOAUTH2 || mech == SMTP_SASL_OAUTHBEARER) &&
      (has_byte(user, ulen, '\1') || has_byte(secret, slen, '\1') ||
       has_byte(host, hlen, '\1') || hlen > SMTP_SASL_HOST_MAX ||
       port > 65535))
    return SMTP_SASL_EINVAL;
  memcpy(s->user, user, ulen);
  s->user_len = ulen;
  memcpy(s->secret, secret, slen);
  s->secret_len = slen;
  if (hlen > 0)
    memcpy(s->host, host, hlen);
  s->host_len = hlen;
  s->port = port;
  return SMTP_SASL_OK;
}

int smtp_sasl_start_with_nonce(smtp_sasl *s, smtp_sasl_mech mech,
                               const char *user, size_t user_len,
                               const char *secret, size_t secret_len,
                               const char *domain, const char *host,
                               unsigned port, const unsigned char random[32],
                               const char *nonce, size_t nonce_len)
{
  size_t i;
  int r;

  /* Zero everything first: a struct reused without a wipe must not carry
   * the last exchange's secrets or state. */
  mbedtls_platform_zeroize(s, sizeof *s);
  s->mech = mech;
  if (nonce_len == 0 || nonce_len > SMTP_SASL_NONCE_MAX)
    return fail(s, SMTP_SASL_EINVAL);
  for (i = 0; i < nonce_len; i++)
    if (nonce[i] < 0x21 || nonce[i] > 0x7e || nonce[i] == ',')
      return fail(s, SMTP_SASL_EINVAL);
  memcpy(s->nonce, nonce, nonce_len);
  s->nonce_len = nonce_len;
  r = store_start(s, mech, user, user_len, secret, secret_len, domain, host,
                  port, random);
  if (r != SMTP_SASL_OK) {
    mbedtls_platform_zeroize(s, sizeof *s);
    return fail(s, r);
  }
  return SMTP_SASL_OK;
}

int smtp_sasl_start(smtp_sasl *s, smtp_sasl_mech mech,
                    const char *user, size_t user_len,
                    const char *secret, size_t secret_len,
                    const char *domain, const char *host, unsigned port,
                    const unsigned char random[32])
{
  char nonce[32];
  size_t i;
  int r;

  /* 6 bits from each octet: 192 bits, unbiased as 64 divides 256. */
  for (i = 0; i < sizeof nonce; i++)
    nonce[i] = b64_alphabet[random[i] & 63];
  r = smtp_sasl_start_with_nonce(s, mech, user, user_len, secret, secret_len,
                                 domain, host, port, random, nonce,
                                 sizeof nonce);
  mbedtls_platform_zeroize(nonce, sizeof nonce);
  return r;
}

/* ---- initial responses -------------------------------------------------- */

static void scram_client_first(smtp_sasl *s, wbuf *w)
{
  w_str(w, "n,,n=");
  w_saslname(w, s->user, s->user_len);
  w_str(w, ",r=");
  w_put(w, s->nonce, s->nonce_len);
}

static void ntlm_negotiate(wbuf *w)
{
  unsigned char m[32];

  memset(m, 0, sizeof m);
  memcpy(m, "NTLMSSP", 8);
  put_le32(m + 8, 1);
  put_le32(m + 12, NTLM_TYPE1_FLAGS);
  /* domain and workstation fields stay empty */
  w_put(w, m, sizeof m);
}

static void initial_response(smtp_sasl *s, wbuf *w)
{
  switch (s->mech) {
  case SMTP_SASL_PLAIN:
    w_byte(w, 0);
    w_put(w, s->user, s->user_len);
    w_byte(w, 0);
    w_put(w, s->secret, s->secret_len);
    break;
  case SMTP_SASL_SCRAM_SHA_1:
  case SMTP_SASL_SCRAM_SHA_256:
    scram_client_first(s, w);
    break;
  case SMTP_SASL_NTLM:
    ntlm_negotiate(w);
    break;
  case SMTP_SASL_XOAUTH2:
    w_str(w, "user=");
    w_put(w, s->user, s->user_len);
    w_str(w, "\1auth=Bearer ");
    w_put(w, s->secret, s->secret_len);
    w_str(w, "\1\1");
    break;
  case SMTP_SASL_OAUTHBEARER:
    w_str(w, "n,a=");
    w_saslname(w, s->user, s->user_len);
    w_byte(w, ',');
    if (s->host_len > 0) {
      w_str(w, "\1host=");
      w_put(w, s->host, s->host_len);
    }
    if (s->port > 0) {
      w_str(w, "\1port=");
      w_decimal(w, s->port);
    }
    w_str(w, "\1auth=Bearer ");
    w_put(w, s->secret, s->secret_len);
    w_str(w, "\1\1");
    break;
  default:                      /* LOGIN, CRAM-MD5: none */
    break;
  }
}

int smtp_sasl_initial(smtp_sasl *s, char *out, size_t cap, size_t *outlen)
{
  wbuf w;

  if (s->err)
    return s->err;
  w_init(&w, s);
  initial_response(s, &w);
  return emit(s, &w, out, cap, outlen);
}

/* ---- CRAM-MD5 and LOGIN ------------------------------------------------- */

static int cram_md5(smtp_sasl *s, wbuf *w)
{
  static const char hex[] = "0123456789abcdef";
  unsigned char mac[16];
  size_t i;
  int r;

  if (s->chal_len == 0)
    return SMTP_SASL_EMALFORMED;
  r = hmac1(MBEDTLS_MD_MD5, s->secret, s->secret_len, s->chal, s->chal_len,
            mac);
  if (r != SMTP_SASL_OK)
    return r;
  w_put(w, s->user, s->user_len);
  w_byte(w, ' ');
  for (i = 0; i < sizeof mac; i++) {
    w_byte(w, (unsigned char)hex[mac[i] >> 4]);
    w_byte(w, (unsigned char)hex[mac[i] & 15]);
  }
  mbedtls_platform_zeroize(mac, sizeof mac);
  return SMTP_SASL_OK;
}

/* ---- SCRAM -------------------------------------------------------------- */

/* The value of an attribute "a=value" at p[*i]: up to the next "," or the
 * end.  Returns its length, or -1 when the attribute is not there. */
static long scram_attr(const unsigned char *p, size_t n, size_t *i, char a,
                       const unsigned char **value)
{
  size_t start;

  if (n - *i < 2 || p[*i] != (unsigned char)a || p[*i + 1] != '=')
    return -1;
  start = *i + 2;
  *i = start;
  while (*i < n && p[*i] != ',')
    (*i)++;
  *value = p + start;
  return (long)(*i - start);
}

/* Step past the "," that ends an attribute; 0 when there is none. */
static int scram_comma(const unsigned char *p, size_t n, size_t *i)
{
  if (*i >= n || p[*i] != ',')
    return 0;
  (*i)++;
  return 1;
}

static int scram_iterations(const unsigned char *p, long n,
                            unsigned long *iter)
{
  unsigned long v = 0;
  long i;

  if (n <= 0 || p[0] < '1' || p[0] > '9')
    return SMTP_SASL_EMALFORMED;
  for (i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return SMTP_SASL_EMALFORMED;
    if (v <= SMTP_SASL_ITER_MAX)    /* stop growing: no overflow */
      v = v * 10 + (unsigned long)(p[i] - '0');
  }
  if (v < SMTP_SASL_ITER_MIN || v > SMTP_SASL_ITER_MAX)
    return SMTP_SASL_EITER;
  *iter = v;
  return SMTP_SASL_OK;
}

static mbedtls_md_type_t scram_md(const smtp_sasl *s)
{
  return s->mech == SMTP_SASL_SCRAM_SHA_1 ? MBEDTLS_MD_SHA1
                                          : MBEDTLS_MD_SHA256;
}

static size_t scram_hlen(const smtp_sasl *s)
{
  return s->mech == SMTP_SASL_SCRAM_SHA_1 ? 20u : 32u;
}

/* The proof and the expected server signature (RFC 5802 section 3), from
 * SaltedPassword and AuthMessage = client-first-bare "," server-first ","
 * client-final-without-proof. */
static int scram_keys(smtp_sasl *s, const unsigned char *salted,
                      const part auth[5], unsigned char *proof)
{
  mbedtls_md_type_t t = scram_md(s);
  size_t hlen = scram_hlen(s), i;
  unsigned char client_key[32], stored_key[32], server_key[32], sig[32];
  int r;

  r = hmac1(t, salted, hlen, "Client Key", 10, client_key);
  if (r == 0)
    r = mbedtls_md(mbedtls_md_info_from_type(t), client_key, hlen,
                   stored_key) == 0 ? SMTP_SASL_OK : SMTP_SASL_ECRYPTO;
  if (r == 0)
    r = hmac_parts(t, stored_key, hlen, auth, 5, sig);
  for (i = 0; r == 0 && i < hlen; i++)
    proof[i] = client_key[i] ^ sig[i];
  if (r == 0)
    r = hmac1(t, salted, hlen, "Server Key", 10, server_key);
  if (r == 0)
    r = hmac_parts(t, server_key, hlen, auth, 5, s->server_sig);
  mbedtls_platform_zeroize(client_key, sizeof client_key);
  mbedtls_platform_zeroize(stored_key, sizeof stored_key);
  mbedtls_platform_zeroize(server_key, sizeof server_key);
  mbedtls_platform_zeroize(sig, sizeof sig);
  return r;
}

/* What the server-first message says. */
typedef struct {
  const unsigned char *nonce;     /* inside s->chal */
  size_t nonce_len, salt_len;
  unsigned char salt[SCRAM_FIELD_MAX];
  unsigned long iter;
} scram_first;

/* server-first-message = [reserved-mext ","] nonce "," salt ","
 *                        iteration-count ["," extensions]
 * A mandatory extension ("m=") is one we cannot honour: malformed. */
static int scram_parse_first(const smtp_sasl *s, scram_first *f)
{
  const unsigned char *p = s->chal, *salt64, *iter64;
  size_t n = s->chal_len, i = 0, k;
  long nonce_len, salt64_len, iter_len;

  nonce_len = scram_attr(p, n, &i, 'r', &f->nonce);
  if (nonce_len < 0 || !scram_comma(p, n, &i))
    return SMTP_SASL_EMALFORMED;
  salt64_len = scram_attr(p, n, &i, 's', &salt64);
  if (salt64_len < 0 || !scram_comma(p, n, &i))
    return SMTP_SASL_EMALFORMED;
  iter_len = scram_attr(p, n, &i, 'i', &iter64);   /* extensions may follow */
  if (iter_len < 0)
    return SMTP_SASL_EMALFORMED;
  f->nonce_len = (size_t)nonce_len;
  for (k = 0; k < f->nonce_len; k++)
    if (f->nonce[k] < 0x21 || f->nonce[k] > 0x7e)
      return SMTP_SASL_EMALFORMED;
  if (f->nonce_len <= s->nonce_len ||
      memcmp(f->nonce, s->nonce, s->nonce_len) != 0)
    return SMTP_SASL_ENONCE;
  if (b64_decode(salt64, (size_t)salt64_len, f->salt, sizeof f->salt,
                 &f->salt_len) || f->salt_len == 0)
    return SMTP_SASL_EMALFORMED;
  return scram_iterations(iter64, iter_len, &f->iter);
}

/* Append ",p=" and the proof in base64, straight into w. */
static void scram_put_proof(wbuf *w, const unsigned char *proof, size_t n)
{
  size_t b64_len = 0;

  w_str(w, ",p=");
  if (!w->over && mbedtls_base64_encode(w->p + w->len, w->cap - w->len,
                                        &b64_len, proof, n) != 0)
    w->over = 1;
  w->len += b64_len;
}

/* The client-final message.  raw first holds the client-first message,
 * then the client-final one being built after it: both are parts of
 * AuthMessage = client-first-bare "," server-first ","
 * client-final-without-proof. */
static int scram_server_first(smtp_sasl *s, wbuf *w)
{
  scram_first f;
  unsigned char salted[32], proof[32];
  size_t final_start;
  part auth[5];
  int r;

  r = scram_parse_first(s, &f);
  if (r != SMTP_SASL_OK)
    return r;
  scram_client_first(s, w);
  final_start = w->len;
  w_str(w, "c=biws,r=");            /* biws = base64("n,,") */
  w_put(w, f.nonce, f.nonce_len);
  if (w->over)
    return SMTP_SASL_ESPACE;
  auth[0].p = s->raw + 3;           /* client-first-bare: after "n,," */
  auth[0].n = final_start - 3;
  auth[1].p = ",";
  auth[1].n = 1;
  auth[2].p = s->chal;
  auth[2].n = s->chal_len;
  auth[3].p = ",";
  auth[3].n = 1;
  auth[4].p = s->raw + final_start;
  auth[4].n = w->len - final_start;

  r = pbkdf2(scram_md(s), s->secret, s->secret_len, f.salt, f.salt_len,
             f.iter, salted);
  /* The password is not needed any more; the server signature is. */
  mbedtls_platform_zeroize(s->secret, sizeof s->secret);
  s->secret_len = 0;
  if (r == SMTP_SASL_OK)
    r = scram_keys(s, salted, auth, proof);
  mbedtls_platform_zeroize(salted, sizeof salted);
  if (r == SMTP_SASL_OK)
    scram_put_proof(w, proof, scram_hlen(s));
  mbedtls_platform_zeroize(proof, sizeof proof);
  if (r != SMTP_SASL_OK)
    return r;
  /* the response is the client-final message alone */
  memmove(s->raw, s->raw + final_start, w->len - final_start);
  mbedtls_platform_zeroize(s->raw + w->len - final_start, final_start);
  w->len -= final_start;
  return SMTP_SASL_OK;
}

/* server-final-message = (server-error / verifier) ["," extensions] */
static int scram_server_final(smtp_sasl *s)
{
  const unsigned char *p = s->chal, *v;
  size_t i = 0, sig_len;
  unsigned char sig[SCRAM_FIELD_MAX];
  long vlen;

  if ((vlen = scram_attr(p, s->chal_len, &i, 'e', &v)) >= 0) {
    keep_detail(s, v, (size_t)vlen);
    return SMTP_SASL_ESERVER;
  }
  vlen = scram_attr(p, s->chal_len, &i, 'v', &v);
  if (vlen < 0 || b64_decode(v, (size_t)vlen, sig, sizeof sig, &sig_len))
    return SMTP_SASL_EMALFORMED;
  if (sig_len != scram_hlen(s) || !equal_ct(sig, s->server_sig, sig_len))
    return SMTP_SASL_ESIGNATURE;
  return SMTP_SASL_OK;
}

/* ---- NTLM --------------------------------------------------------------- */

/* A security buffer (length, allocated length, offset) at h[at] pointing at
 * what w holds from `from` on. */
static void ntlm_field(unsigned char *h, size_t at, size_t from, size_t to)
{
  size_t len = to - from;

  h[at] = (unsigned char)len;
  h[at + 1] = (unsigned char)(len >> 8);
  h[at + 2] = h[at];
  h[at + 3] = h[at + 1];
  put_le32(h + at + 4, (uint32_t)from);
}

/* User or domain name in the Type 3 message: UTF-16LE, or the octets
 * themselves when the server did not agree to Unicode. */
static void ntlm_name(wbuf *w, const unsigned char *p, size_t n, int unicode)
{
  unsigned char u[4];
  size_t i = 0;

  if (!unicode) {
    w_put(w, p, n);
    return;
  }
  while (i < n)
    w_put(w, u, utf16le_put(u, (unsigned long)utf8_next(p, n, &i)));
}

/* The server's time from the target info's AV pairs, or 0 (see sasl.h). */
static int ntlm_timestamp(const unsigned char *ti, size_t n,
                          const unsigned char **stamp)
{
  size_t i = 0;

  *stamp = NULL;
  while (n - i >= 4) {
    unsigned id = le16(ti + i), len = le16(ti + i + 2);

    i += 4;
    if (len > n - i)
      return SMTP_SASL_EMALFORMED;
    if (id == NTLM_AV_EOL)
      break;
    if (id == NTLM_AV_TIMESTAMP && len == 8)
      *stamp = ti + i;
    i += len;
  }
  return SMTP_SASL_OK;
}

/* What a Type 2 (CHALLENGE_MESSAGE) says; pointers are into s->chal. */
typedef struct {
  uint32_t flags;
  const unsigned char *server_chal;   /* 8 octets */
  const unsigned char *ti;            /* target info, NULL when empty */
  size_t ti_len;
  const unsigned char *stamp;         /* MsvAvTimestamp, or NULL */
} ntlm_type2;

static const unsigned char ntlm_zero[NTLM_TYPE3_HEADER];

static int ntlm_parse(const smtp_sasl *s, ntlm_type2 *t)
{
  const unsigned char *m = s->chal;
  size_t n = s->chal_len;

  if (n < 32 || memcmp(m, "NTLMSSP", 8) != 0 || le32(m + 8) != 2)
    return SMTP_SASL_EMALFORMED;
  t->flags = le32(m + 20);
  t->server_chal = m + 24;
  t->ti = NULL;
  t->ti_len = 0;
  if (n >= 48 && le16(m + 40) > 0) {  /* older servers send no TargetInfo */
    size_t off = le32(m + 44);

    t->ti_len = le16(m + 40);
    if (off > n || t->ti_len > n - off)
      return SMTP_SASL_EMALFORMED;
    t->ti = m + off;
  }
  return ntlm_timestamp(t->ti, t->ti_len, &t->stamp);
}

/* MS-NLMP 3.3.2: the blob's fixed part, NTProofStr over it and LMv2. */
static int ntlm_responses(const smtp_sasl *s, const ntlm_type2 *t,
                          unsigned char blob[28], unsigned char proof[16],
                          unsigned char lm[24])
{
  part nt_in[4], lm_in[2];
  int r;

  /* NTProofStr = HMAC-MD5(key, server challenge, blob), where blob =
   * 1, 1, Z(6), time, client challenge, Z(4), target info, Z(4) */
  memset(blob, 0, 28);
  blob[0] = 1;
  blob[1] = 1;
  memcpy(blob + 8, t->stamp != NULL ? t->stamp : ntlm_zero, 8);
  memcpy(blob + 16, s->client_chal, 8);
  nt_in[0].p = t->server_chal;
  nt_in[0].n = 8;
  nt_in[1].p = blob;
  nt_in[1].n = 28;
  nt_in[2].p = t->ti;
  nt_in[2].n = t->ti_len;
  nt_in[3].p = ntlm_zero;
  nt_in[3].n = 4;
  r = hmac_parts(MBEDTLS_MD_MD5, s->ntlm_key, 16, nt_in, 4, proof);
  /* LMv2 = HMAC-MD5(key, server challenge, client challenge), client
   * challenge; MS-NLMP says Z(24) instead when the server sent a time. */
  memset(lm, 0, 24);
  if (r != SMTP_SASL_OK || t->stamp != NULL)
    return r;
  lm_in[0] = nt_in[0];
  lm_in[1].p = s->client_chal;
  lm_in[1].n = 8;
  memcpy(lm + 16, s->client_chal, 8);
  return hmac_parts(MBEDTLS_MD_MD5, s->ntlm_key, 16, lm_in, 2, lm);
}

/* Type 2 in, Type 3 (AUTHENTICATE_MESSAGE) out: the fixed header, then
 * the payload its security buffers point at. */
static int ntlm_challenge(smtp_sasl *s, wbuf *w)
{
  ntlm_type2 t;
  size_t lm_at, nt_at, dom_at, user_at, end;
  unsigned char blob[28], proof[16], lm[24];
  int unicode, r;

  r = ntlm_parse(s, &t);
  if (r == SMTP_SASL_OK)
    r = ntlm_responses(s, &t, blob, proof, lm);
  if (r != SMTP_SASL_OK)
    return r;
  unicode = (t.flags & NTLM_UNICODE) != 0;
  w_put(w, ntlm_zero, NTLM_TYPE3_HEADER);   /* filled in at the end */
  lm_at = w->len;
  w_put(w, lm, sizeof lm);
  nt_at = w->len;
  w_put(w, proof, sizeof proof);
  w_put(w, blob, sizeof blob);
  w_put(w, t.ti, t.ti_len);
  w_put(w, ntlm_zero, 4);
  dom_at = w->len;
  ntlm_name(w, s->domain, s->domain_len, unicode);
  user_at = w->len;
  ntlm_name(w, s->user, s->user_len, unicode);
  end = w->len;
  mbedtls_platform_zeroize(proof, sizeof proof);
  mbedtls_platform_zeroize(lm, sizeof lm);
  if (w->over)
    return SMTP_SASL_ESPACE;
  memcpy(w->p, "NTLMSSP", 8);
  put_le32(w->p + 8, 3);
  ntlm_field(w->p, 12, lm_at, nt_at);
  ntlm_field(w->p, 20, nt_at, dom_at);
  ntlm_field(w->p, 28, dom_at, user_at);
  ntlm_field(w->p, 36, user_at, end);
  ntlm_field(w->p, 44, end, end);     /* workstation: empty */
  ntlm_field(w->p, 52, end, end);     /* no session key */
  put_le32(w->p + 60, (t.flags & NTLM_TYPE1_FLAGS &
                       ~(NTLM_UNICODE | NTLM_OEM)) |
                      (unicode ? NTLM_UNICODE : NTLM_OEM));
  return SMTP_SASL_OK;
}

/* ---- OAuth error challenges --------------------------------------------- */

/* The "status" member of the server's JSON error, as text: a string
 * without escapes or a bare number.  A scan, not a parser: it only feeds
 * an error message. */
static void oauth_status(smtp_sasl *s)
{
  const char *key = "\"status\"";
  const unsigned char *p = s->chal, *end = s->chal + s->chal_len, *v;
  size_t klen = strlen(key), o = 0;
  int quoted;

  while ((size_t)(end - p) >= klen && memcmp(p, key, klen) != 0)
    p++;
  if ((size_t)(end - p) < klen)
    return;
  p += klen;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    p++;
  if (p == end || *p++ != ':')
    return;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    p++;
  quoted = p < end && *p == '"';
  for (v = p + quoted; v < end && o + 1 < sizeof s->detail_status; v++) {
    int word = (*v >= '0' && *v <= '9') || (*v >= 'a' && *v <= 'z') ||
               (*v >= 'A' && *v <= 'Z') || *v == '_' || *v == '-' ||
               *v == '.';
    if (!word)
      break;
    s->detail_status[o++] = (char)*v;
  }
  s->detail_status[o] = '\0';
}

static void oauth_error(smtp_sasl *s, wbuf *w)
{
  keep_detail(s, s->chal, s->chal_len);
  oauth_status(s);
  /* RFC 7628 3.2.3: the client answers with a lone kvsep; Google and
   * Microsoft document an empty line for XOAUTH2. */
  if (s->mech == SMTP_SASL_OAUTHBEARER)
    w_byte(w, 1);
}

/* ---- step and finish ---------------------------------------------------- */

static int decode_challenge(smtp_sasl *s, const char *b64, size_t len)
{
  return b64_decode((const unsigned char *)b64, len, s->chal,
                    sizeof s->chal, &s->chal_len);
}

/* One challenge for the mechanism at its current stage, answered into w. */
static int answer(smtp_sasl *s, wbuf *w)
{
  int stage = s->stage++;

  switch (s->mech) {
  case SMTP_SASL_LOGIN:
    if (stage == 0)
      w_put(w, s->user, s->user_len);
    else if (stage == 1)
      w_put(w, s->secret, s->secret_len);
    else
      return SMTP_SASL_EUNEXPECTED;
    return SMTP_SASL_OK;
  case SMTP_SASL_CRAM_MD5:
    return stage == 0 ? cram_md5(s, w) : SMTP_SASL_EUNEXPECTED;
  case SMTP_SASL_SCRAM_SHA_1:
  case SMTP_SASL_SCRAM_SHA_256:
    if (stage == 0)
      return scram_server_first(s, w);
    /* the server-final message as a challenge: the answer is empty */
    return stage == 1 ? scram_server_final(s) : SMTP_SASL_EUNEXPECTED;
  case SMTP_SASL_NTLM:
    return stage == 0 ? ntlm_challenge(s, w) : SMTP_SASL_EUNEXPECTED;
  case SMTP_SASL_XOAUTH2:
  case SMTP_SASL_OAUTHBEARER:
    if (stage != 0)
      return SMTP_SASL_EUNEXPECTED;
    oauth_error(s, w);
    return SMTP_SASL_OK;
  default:                        /* PLAIN: the initial response is all */
    return SMTP_SASL_EUNEXPECTED;
  }
}

int smtp_sasl_step(smtp_sasl *s, const char *challenge, size_t len,
                   char *out, size_t cap, size_t *outlen)
{
  wbuf w;
  int r;

  if (s->err)
    return s->err;
  r = decode_challenge(s, challenge, len);
  if (r != SMTP_SASL_OK)
    return fail(s, r);
  w_init(&w, s);
  /* RFC 4954: "AUTH MECH" without the initial response gets an empty
   * challenge, answered with that response.  No real first challenge of
   * these mechanisms is empty, so this cannot be mistaken for one. */
  if (s->stage == 0 && s->chal_len == 0 && has_initial(s->mech) &&
      !s->ir_again) {
    s->ir_again = 1;
    initial_response(s, &w);
    return emit(s, &w, out, cap, outlen);
  }
  r = answer(s, &w);
  if (r != SMTP_SASL_OK)
    return fail(s, r);
  return emit(s, &w, out, cap, outlen);
}

int smtp_sasl_finish(smtp_sasl *s, const char *extra, size_t len)
{
  int r = SMTP_SASL_OK;

  if (s->err)
    return s->err;
  if (is_scram(s->mech) && s->stage != 2) {
    /* The 235 text may be anything; only a server-final message in it
     * counts, and anything else means the server never proved itself. */
    r = SMTP_SASL_ENOSIGNATURE;
    if (s->stage == 1 && extra != NULL &&
        decode_challenge(s, extra, len) == SMTP_SASL_OK) {
      r = scram_server_final(s);
      if (r == SMTP_SASL_EMALFORMED)
        r = SMTP_SASL_ENOSIGNATURE;
    }
  }
  if (r != SMTP_SASL_OK)
    return fail(s, r);
  s->stage = STAGE_DONE;
  return SMTP_SASL_OK;
}
