/*
 * test_sasl.c -- the SASL mechanisms against published exchanges (RFC 4616,
 * 2195, 5802, 7677, 7628, MS-NLMP 4.2.4, Google's XOAUTH2 page), then the
 * error paths: bad base64, oversized and malformed challenges, wrong
 * signatures, bad input, small buffers.
 */
#include <stdlib.h>

#include <mbedtls/base64.h>

#include "../src/sasl.h"
#include "harness.h"

#define IN(s) s, sizeof s - 1

/* The last response, decoded, is the literal lit. */
#define CHECK_RAW(lit) do { dec_out(); \
  CHECK_MEM(raw, raw_len, lit, sizeof lit - 1); } while (0)

static smtp_sasl S;
static char out[SMTP_SASL_OUT_MAX];
static size_t outlen;
static unsigned char raw[SMTP_SASL_OUT_MAX];
static size_t raw_len;
static char b64[SMTP_SASL_OUT_MAX];
static char big[4 * SMTP_SASL_CHALLENGE_MAX];

static const unsigned char no_random[32];

/* memmem is not C99 */
static int contains(const void *hay, size_t n, const char *needle)
{
  const unsigned char *h = hay;
  size_t k = strlen(needle), i;

  for (i = 0; i + k <= n; i++)
    if (memcmp(h + i, needle, k) == 0)
      return 1;
  return 0;
}

static const char *enc(const void *p, size_t n)
{
  size_t olen = 0;

  /* mbedTLS writes nothing at all for empty input */
  if (mbedtls_base64_encode((unsigned char *)b64, sizeof b64, &olen, p, n))
    olen = 0;
  b64[olen] = '\0';
  return b64;
}

/* The last response, decoded into raw. */
static void dec_out(void)
{
  raw_len = 0;
  if (mbedtls_base64_decode(raw, sizeof raw, &raw_len,
                            (const unsigned char *)out, outlen) != 0)
    raw_len = (size_t)-1;
}

static int start(smtp_sasl_mech m, const char *user, const char *secret)
{
  return smtp_sasl_start(&S, m, user, strlen(user), secret, strlen(secret),
                         NULL, NULL, 0, no_random);
}

static int start_nonce(smtp_sasl_mech m, const char *user,
                       const char *secret, const char *nonce)
{
  return smtp_sasl_start_with_nonce(&S, m, user, strlen(user), secret,
                                    strlen(secret), NULL, NULL, 0, no_random,
                                    nonce, strlen(nonce));
}

static int initial(void)
{
  return smtp_sasl_initial(&S, out, sizeof out, &outlen);
}

static int step(const char *challenge)
{
  return smtp_sasl_step(&S, challenge, strlen(challenge), out, sizeof out,
                        &outlen);
}

/* A challenge given decoded: the test encodes it. */
static int step_raw(const void *p, size_t n)
{
  return step(enc(p, n));
}

static void test_names(void)
{
  static const char *const names[] = {
    "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "NTLM",
    "XOAUTH2", "OAUTHBEARER"
  };
  size_t i;

  h_begin("mechanism names", "");
  for (i = 0; i < sizeof names / sizeof names[0]; i++) {
    smtp_sasl_mech m = smtp_sasl_mech_from_name(names[i]);
    CHECK_INT(m, i + 1);
    CHECK_STR(smtp_sasl_mech_name(m), names[i]);
  }
  CHECK_INT(smtp_sasl_mech_from_name("scram-sha-256"), SMTP_SASL_SCRAM_SHA_256);
  CHECK_INT(smtp_sasl_mech_from_name("Cram-Md5"), SMTP_SASL_CRAM_MD5);
  CHECK_INT(smtp_sasl_mech_from_name("SCRAM-SHA"), SMTP_SASL_NONE);
  CHECK_INT(smtp_sasl_mech_from_name("SCRAM-SHA-1-PLUS"), SMTP_SASL_NONE);
  CHECK_INT(smtp_sasl_mech_from_name("GSSAPI"), SMTP_SASL_NONE);
  CHECK_INT(smtp_sasl_mech_from_name(""), SMTP_SASL_NONE);
  CHECK(smtp_sasl_mech_name(SMTP_SASL_NONE) == NULL);
  CHECK(smtp_sasl_mech_name((smtp_sasl_mech)99) == NULL);
  h_end();
}

static void test_md4(void)
{
  /* RFC 1320 appendix A.5 */
  static const struct { const char *in, *hex; } v[] = {
    { "", "31d6cfe0d16ae931b73c59d7e0c089c0" },
    { "a", "bde52cb31de33e46245e05fbdbd6fb24" },
    { "abc", "a448017aaf21d8525fc10ae87aa6729d" },
    { "message digest", "d9130a8164549fe818874806e1c7014b" },
    { "abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9" },
    { "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
      "043f8582f241db351ce627e153e7f0e4" },
    { "1234567890123456789012345678901234567890123456789012345678901234567"
      "8901234567890", "e33b4ddc9c38f2199c3e7b164fcc0536" }
  };
  size_t i, j;

  h_begin("MD4", "RFC 1320");
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    unsigned char d[16];
    char hex[33];

    smtp_sasl_md4((const unsigned char *)v[i].in, strlen(v[i].in), d);
    for (j = 0; j < 16; j++)
      snprintf(hex + 2 * j, 3, "%02x", d[j]);
    CHECK_STR(hex, v[i].hex);
  }
  h_end();
}

static void test_plain(void)
{
  h_begin("PLAIN", "initial response");
  CHECK_INT(start(SMTP_SASL_PLAIN, "tim", "tanstaaftanstaaf"), 0);
  CHECK_INT(initial(), 0);
  CHECK_STR(out, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");   /* "\0tim\0tanstaaf..." */
  CHECK_INT(outlen, strlen(out));
  CHECK_INT(smtp_sasl_finish(&S, NULL, 0), 0);
  CHECK_INT(step(""), SMTP_SASL_EUNEXPECTED);
  h_end();

  /* RFC 4954: "AUTH PLAIN" alone, then an empty 334 */
  h_begin("PLAIN", "empty challenge first");
  CHECK_INT(start(SMTP_SASL_PLAIN, "Kurt", "xipj3plmq"), 0);
  CHECK_INT(step(""), 0);
  dec_out();
  CHECK_MEM(raw, raw_len, "\0Kurt\0xipj3plmq", 15);
  CHECK_INT(step(""), SMTP_SASL_EUNEXPECTED);
  CHECK_INT(smtp_sasl_error(&S), SMTP_SASL_EUNEXPECTED);
  h_end();

  h_begin("PLAIN", "challenge after the response");
  CHECK_INT(start(SMTP_SASL_PLAIN, "Kurt", "xipj3plmq"), 0);
  CHECK_INT(initial(), 0);
  CHECK_INT(step("Zm9v"), SMTP_SASL_EUNEXPECTED);
  h_end();
}

static void test_login(void)
{
  h_begin("LOGIN", "");
  CHECK_INT(start(SMTP_SASL_LOGIN, "tim", "tanstaaftanstaaf"), 0);
  CHECK_INT(initial(), 0);
  CHECK_INT(outlen, 0);
  CHECK_STR(out, "");
  CHECK_INT(step("VXNlcm5hbWU6"), 0);               /* "Username:" */
  CHECK_STR(out, "dGlt");
  CHECK_INT(step("UGFzc3dvcmQ6"), 0);               /* "Password:" */
  CHECK_STR(out, "dGFuc3RhYWZ0YW5zdGFhZg==");
  CHECK_INT(step("UGFzc3dvcmQ6"), SMTP_SASL_EUNEXPECTED);
  h_end();
}

static void test_cram_md5(void)
{
  h_begin("CRAM-MD5", "RFC 2195");
  CHECK_INT(start(SMTP_SASL_CRAM_MD5, "tim", "tanstaaftanstaaf"), 0);
  CHECK_INT(initial(), 0);
  CHECK_INT(outlen, 0);
  CHECK_INT(step("PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"), 0);
  CHECK_STR(out, "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
  CHECK_RAW("tim b913a602c7eda7a495b4e6e7334d3890");
  CHECK_INT(step("PDE+"), SMTP_SASL_EUNEXPECTED);
  h_end();

  h_begin("CRAM-MD5", "empty challenge");
  CHECK_INT(start(SMTP_SASL_CRAM_MD5, "tim", "tanstaaftanstaaf"), 0);
  CHECK_INT(step(""), SMTP_SASL_EMALFORMED);
  h_end();
}

/* RFC 5802 section 5 */
#define SHA1_NONCE "fyko+d2lbbFgONRv9qkxdawL"
#define SHA1_FIRST "n,,n=user,r=" SHA1_NONCE
#define SHA1_SERVER_FIRST \
  "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
#define SHA1_FINAL "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j," \
  "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
#define SHA1_SERVER_FINAL "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="

/* RFC 7677 section 3 */
#define SHA256_NONCE "rOprNGfwEbeRWgbNEkqO"
#define SHA256_SERVER_FIRST "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)" \
  "hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define SHA256_FINAL "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIl" \
  "j)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define SHA256_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* Start SCRAM-SHA-1 as RFC 5802 does and answer its server-first. */
static void sha1_to_final(const char *user, const char *password)
{
  CHECK_INT(start_nonce(SMTP_SASL_SCRAM_SHA_1, user, password, SHA1_NONCE), 0);
  CHECK_INT(initial(), 0);
  CHECK_RAW(SHA1_FIRST);
  CHECK_INT(step_raw(IN(SHA1_SERVER_FIRST)), 0);
  CHECK_RAW(SHA1_FINAL);
}

static void test_scram_vectors(void)
{
  h_begin("SCRAM-SHA-1", "RFC 5802, server-final as 334");
  sha1_to_final("user", "pencil");
  CHECK_INT(step_raw(IN(SHA1_SERVER_FINAL)), 0);
  CHECK_INT(outlen, 0);
  CHECK_STR(out, "");
  CHECK_INT(smtp_sasl_finish(&S, IN("2.7.0 Authentication successful")), 0);
  CHECK_INT(step(""), SMTP_SASL_EUNEXPECTED);
  h_end();

  h_begin("SCRAM-SHA-1", "RFC 5802, server-final with 235");
  sha1_to_final("user", "pencil");
  enc(IN(SHA1_SERVER_FINAL));
  CHECK_INT(smtp_sasl_finish(&S, b64, strlen(b64)), 0);
  h_end();

  h_begin("SCRAM-SHA-256", "RFC 7677");
  CHECK_INT(start_nonce(SMTP_SASL_SCRAM_SHA_256, "user", "pencil",
                        SHA256_NONCE), 0);
  CHECK_INT(initial(), 0);
  CHECK_RAW("n,,n=user,r=" SHA256_NONCE);
  CHECK_INT(step_raw(IN(SHA256_SERVER_FIRST)), 0);
  CHECK_RAW(SHA256_FINAL);
  CHECK_INT(step_raw(IN(SHA256_SERVER_FINAL)), 0);
  CHECK_INT(outlen, 0);
  CHECK_INT(smtp_sasl_finish(&S, NULL, 0), 0);
  h_end();

  /* RFC 4954 without the initial response: the empty 334 gets it */
  h_begin("SCRAM-SHA-1", "empty challenge first");
  CHECK_INT(start_nonce(SMTP_SASL_SCRAM_SHA_1, "user", "pencil", SHA1_NONCE),
            0);
  CHECK_INT(step(""), 0);
  CHECK_RAW(SHA1_FIRST);
  CHECK_INT(step_raw(IN(SHA1_SERVER_FIRST)), 0);
  CHECK_RAW(SHA1_FINAL);
  h_end();

  h_begin("SCRAM", "nonce from random");
  {
    unsigned char r[32];
    size_t i;

    for (i = 0; i < 32; i++)
      r[i] = (unsigned char)(i * 9 + 200);   /* the low 6 bits pick */
    CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_SCRAM_SHA_256, IN("user"),
                              IN("pencil"), NULL, NULL, 0, r), 0);
    CHECK_INT(initial(), 0);
    CHECK_RAW("n,,n=user,r=IRajs1+HQZir09GPYhqz8FOXgpy7ENWf");
  }
  h_end();
}

static void test_scram_errors(void)
{
  h_begin("SCRAM", "wrong server signature");
  sha1_to_final("user", "pencil");
  CHECK_INT(step_raw(IN("v=rmF9pqV8S7suAoZWja4dJRkFsKU=")),
            SMTP_SASL_ESIGNATURE);
  CHECK_INT(smtp_sasl_finish(&S, NULL, 0), SMTP_SASL_ESIGNATURE);
  CHECK_INT(smtp_sasl_error(&S), SMTP_SASL_ESIGNATURE);
  CHECK_STR(smtp_sasl_strerror(SMTP_SASL_ESIGNATURE),
            "server signature mismatch");
  h_end();

  h_begin("SCRAM", "signature of the wrong length");
  sha1_to_final("user", "pencil");
  CHECK_INT(step_raw(IN("v=" "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")),
            SMTP_SASL_ESIGNATURE);
  h_end();

  h_begin("SCRAM", "wrong signature with 235");
  sha1_to_final("user", "pencil");
  enc(IN("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="));
  CHECK_INT(smtp_sasl_finish(&S, b64, strlen(b64)), SMTP_SASL_ESIGNATURE);
  h_end();

  h_begin("SCRAM", "235 without a signature");
  sha1_to_final("user", "pencil");
  CHECK_INT(smtp_sasl_finish(&S, NULL, 0), SMTP_SASL_ENOSIGNATURE);
  CHECK_INT(step(""), SMTP_SASL_ENOSIGNATURE);
  h_end();

  h_begin("SCRAM", "235 with other text");
  sha1_to_final("user", "pencil");
  CHECK_INT(smtp_sasl_finish(&S, IN("2.7.0 Authentication successful")),
            SMTP_SASL_ENOSIGNATURE);
  h_end();

  h_begin("SCRAM", "235 with other base64");
  sha1_to_final("user", "pencil");
  enc(IN("hello"));
  CHECK_INT(smtp_sasl_finish(&S, b64, strlen(b64)), SMTP_SASL_ENOSIGNATURE);
  h_end();

  h_begin("SCRAM", "server-final not a verifier");
  sha1_to_final("user", "pencil");
  CHECK_INT(step_raw(IN("x=rmF9pqV8S7suAoZWja4dJRkFsKQ=")),
            SMTP_SASL_EMALFORMED);
  h_end();

  h_begin("SCRAM", "server-final signature not base64");
  sha1_to_final("user", "pencil");
  CHECK_INT(step_raw(IN("v=rmF9pqV8S7suAoZWja4dJRkFsKQ")),
            SMTP_SASL_EMALFORMED);
  h_end();

  h_begin("SCRAM", "server-final with an extension");
  sha1_to_final("user", "pencil");
  CHECK_INT(step_raw(IN(SHA1_SERVER_FINAL ",x=y")), 0);
  h_end();

  h_begin("SCRAM", "235 right after the client-first");
  CHECK_INT(start_nonce(SMTP_SASL_SCRAM_SHA_1, "user", "pencil", SHA1_NONCE),
            0);
  CHECK_INT(initial(), 0);
  enc(IN(SHA1_SERVER_FINAL));
  CHECK_INT(smtp_sasl_finish(&S, b64, strlen(b64)), SMTP_SASL_ENOSIGNATURE);
  h_end();

  h_begin("SCRAM", "server error");
  sha1_to_final("user", "pencil");
  CHECK_INT(step_raw(IN("e=invalid-proof")), SMTP_SASL_ESERVER);
  CHECK_STR(smtp_sasl_detail(&S), "invalid-proof");
  h_end();

  h_begin("SCRAM", "one more challenge");
  sha1_to_final("user", "pencil");
  CHECK_INT(step_raw(IN(SHA1_SERVER_FINAL)), 0);
  CHECK_INT(step_raw(IN(SHA1_SERVER_FINAL)), SMTP_SASL_EUNEXPECTED);
  h_end();

  {
    static const struct { const char *name, *first; int err; } v[] = {
      { "nonce not ours",
        "r=Xyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
        SMTP_SASL_ENONCE },
      { "nonce not extended",
        "r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096",
        SMTP_SASL_ENONCE },
      { "nonce shorter", "r=fyko,s=QSXCR+Q6sek8bf92,i=4096",
        SMTP_SASL_ENONCE },
      { "nonce with a space",
        "r=fyko+d2lbbFgONRv9qkxdawL3 c,s=QSXCR+Q6sek8bf92,i=4096",
        SMTP_SASL_EMALFORMED },
      { "too few iterations",
        "r=fyko+d2lbbFgONRv9qkxdawL3,s=QSXCR+Q6sek8bf92,i=4095",
        SMTP_SASL_EITER },
      { "too many iterations",
        "r=fyko+d2lbbFgONRv9qkxdawL3,s=QSXCR+Q6sek8bf92,i=1000001",
        SMTP_SASL_EITER },
      { "huge iteration count",
        "r=fyko+d2lbbFgONRv9qkxdawL3,s=QSXCR+Q6sek8bf92,"
        "i=99999999999999999999999999", SMTP_SASL_EITER },
      { "leading zero",
        "r=fyko+d2lbbFgONRv9qkxdawL3,s=QSXCR+Q6sek8bf92,i=04096",
        SMTP_SASL_EMALFORMED },
      { "iteration count not a number",
        "r=fyko+d2lbbFgONRv9qkxdawL3,s=QSXCR+Q6sek8bf92,i=4096x",
        SMTP_SASL_EMALFORMED },
      { "empty iteration count",
        "r=fyko+d2lbbFgONRv9qkxdawL3,s=QSXCR+Q6sek8bf92,i=",
        SMTP_SASL_EMALFORMED },
      { "other attribute for the count",
        "r=fyko+d2lbbFgONRv9qkxdawL3,s=QSXCR+Q6sek8bf92,x=4096",
        SMTP_SASL_EMALFORMED },
      { "no iteration count",
        "r=fyko+d2lbbFgONRv9qkxdawL3,s=QSXCR+Q6sek8bf92",
        SMTP_SASL_EMALFORMED },
      { "salt not base64", "r=fyko+d2lbbFgONRv9qkxdawL3,s=QSX*,i=4096",
        SMTP_SASL_EMALFORMED },
      { "empty salt", "r=fyko+d2lbbFgONRv9qkxdawL3,s=,i=4096",
        SMTP_SASL_EMALFORMED },
      { "fields out of order",
        "s=QSXCR+Q6sek8bf92,r=fyko+d2lbbFgONRv9qkxdawL3,i=4096",
        SMTP_SASL_EMALFORMED },
      { "mandatory extension",
        "m=x,r=fyko+d2lbbFgONRv9qkxdawL3,s=QSXCR+Q6sek8bf92,i=4096",
        SMTP_SASL_EMALFORMED },
      { "empty", "", SMTP_SASL_EMALFORMED },
      { "server error first", "e=other-error", SMTP_SASL_EMALFORMED }
    };
    size_t i;

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
      h_begin("SCRAM server-first", v[i].name);
      CHECK_INT(start_nonce(SMTP_SASL_SCRAM_SHA_1, "user", "pencil",
                            SHA1_NONCE), 0);
      CHECK_INT(initial(), 0);
      /* "" would be the empty challenge that asks for the initial response */
      if (*v[i].first == '\0')
        CHECK_INT(step(""), 0);
      CHECK_INT(step_raw(v[i].first, strlen(v[i].first)), v[i].err);
      CHECK_INT(smtp_sasl_error(&S), v[i].err);
      CHECK_INT(step_raw(IN(SHA1_SERVER_FIRST)), v[i].err);
      h_end();
    }
  }

  h_begin("SCRAM server-first", "extensions ignored");
  CHECK_INT(start_nonce(SMTP_SASL_SCRAM_SHA_1, "user", "pencil", SHA1_NONCE),
            0);
  CHECK_INT(step_raw(IN(SHA1_SERVER_FIRST ",x=y")), 0);
  h_end();
}

static void test_saslprep(void)
{
  h_begin("SCRAM user name", "escaped");
  CHECK_INT(start_nonce(SMTP_SASL_SCRAM_SHA_1, "a,b=c", "pencil", "xyz"), 0);
  CHECK_INT(initial(), 0);
  CHECK_RAW("n,,n=a=2Cb=3Dc,r=xyz");
  h_end();

  h_begin("SASLprep", "mapping");
  /* NO-BREAK SPACE and IDEOGRAPHIC SPACE become SPACE, SOFT HYPHEN and
   * ZERO WIDTH JOINER go; other non-ASCII is kept */
  CHECK_INT(start_nonce(SMTP_SASL_SCRAM_SHA_1,
                        "J\xc2\xa0" "D\xe3\x80\x80" "x\xc2\xad\xe2\x80\x8d"
                        "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "pencil",
                        "xyz"), 0);
  CHECK_INT(initial(), 0);
  CHECK_RAW("n,,n=J D x\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80,r=xyz");
  h_end();

  /* the soft hyphen is dropped, so this is the RFC 5802 exchange */
  h_begin("SASLprep", "password mapped to nothing");
  sha1_to_final("user", "pen\xc2\xad" "cil");
  h_end();

  {
    static const struct { const char *name, *s; } bad[] = {
      { "control", "pen\acil" },
      { "DEL", "pen\x7f" "cil" },
      { "C1 control", "pen\xc2\x85" },
      { "private use", "\xee\x80\x80" },
      { "plane 15 private use", "\xf3\xb0\x80\x80" },
      { "non-character U+FFFE", "\xef\xbf\xbe" },
      { "non-character U+10FFFF", "\xf4\x8f\xbf\xbf" },
      { "non-character U+FDD0", "\xef\xb7\x90" },
      { "replacement character", "\xef\xbf\xbd" },
      { "left-to-right mark", "a\xe2\x80\x8e" },
      { "tag", "\xf3\xa0\x80\x81" },
      { "ideographic description", "\xe2\xbf\xb0" },
      { "invalid octet", "pen\xff" },
      { "truncated sequence", "pen\xc3" },
      { "bad continuation", "\xc3\x28" },
      { "overlong slash", "\xc0\xaf" },
      { "overlong three octets", "\xe0\x80\xaf" },
      { "surrogate", "\xed\xa0\x80" },
      { "above U+10FFFF", "\xf4\x90\x80\x80" },
      { "nothing left", "\xc2\xad\xe2\x80\x8d\xef\xbb\xbf" }
    };
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
      h_begin("SASLprep refuses", bad[i].name);
      CHECK_INT(start(SMTP_SASL_SCRAM_SHA_256, "user", bad[i].s),
                SMTP_SASL_EINVAL);
      CHECK_INT(start(SMTP_SASL_SCRAM_SHA_256, bad[i].s, "pencil"),
                SMTP_SASL_EINVAL);
      CHECK_INT(initial(), SMTP_SASL_EINVAL);
      h_end();
    }
  }
  h_begin("SASLprep", "U+200B is a space, not nothing");
  CHECK_INT(start(SMTP_SASL_SCRAM_SHA_256, "user", "\xe2\x80\x8b"), 0);
  h_end();
}

/* MS-NLMP 4.2.4.3: the CHALLENGE_MESSAGE of the NTLMv2 examples. */
static const unsigned char ntlm_type2[] = {
  0x4e, 0x54, 0x4c, 0x4d, 0x53, 0x53, 0x50, 0x00, 0x02, 0x00, 0x00, 0x00,
  0x0c, 0x00, 0x0c, 0x00, 0x38, 0x00, 0x00, 0x00, 0x33, 0x82, 0x8a, 0xe2,
  0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x00, 0x00, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x00, 0x24, 0x00, 0x24, 0x00, 0x44, 0x00, 0x00, 0x00,
  0x06, 0x00, 0x70, 0x17, 0x00, 0x00, 0x00, 0x0f, 0x53, 0x00, 0x65, 0x00,
  0x72, 0x00, 0x76, 0x00, 0x65, 0x00, 0x72, 0x00, 0x02, 0x00, 0x0c, 0x00,
  0x44, 0x00, 0x6f, 0x00, 0x6d, 0x00, 0x61, 0x00, 0x69, 0x00, 0x6e, 0x00,
  0x01, 0x00, 0x0c, 0x00, 0x53, 0x00, 0x65, 0x00, 0x72, 0x00, 0x76, 0x00,
  0x65, 0x00, 0x72, 0x00, 0x00, 0x00, 0x00, 0x00
};
#define NTLM_TI_AT 0x44
#define NTLM_TI_LEN 0x24

/* MS-NLMP 4.2.4.2.1, 4.2.4.2.2 */
static const unsigned char lmv2[24] = {
  0x86, 0xc3, 0x50, 0x97, 0xac, 0x9c, 0xec, 0x10, 0x25, 0x54, 0x76, 0x4a,
  0x57, 0xcc, 0xcc, 0x19, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa
};
static const unsigned char nt_proof[16] = {
  0x68, 0xcd, 0x0a, 0xb8, 0x51, 0xe5, 0x1c, 0x96, 0xaa, 0xbc, 0x92, 0x7b,
  0xeb, 0xef, 0x6a, 0x1c
};
static const unsigned char blob_head[28] = {
  0x01, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0, 0, 0, 0
};

static unsigned char aa_random[32];

/* A security buffer of the Type 3 message in raw, or NULL. */
static const unsigned char *field(size_t at, size_t *len)
{
  size_t off;

  if (raw_len == (size_t)-1 || raw_len < 64)
    return NULL;
  *len = (size_t)raw[at] | (size_t)raw[at + 1] << 8;
  off = (size_t)raw[at + 4] | (size_t)raw[at + 5] << 8 |
        (size_t)raw[at + 6] << 16 | (size_t)raw[at + 7] << 24;
  return off <= raw_len && *len <= raw_len - off ? raw + off : NULL;
}

#define CHECK_FIELD(at, want, wlen) \
  do { size_t fl_ = 0; const unsigned char *f_ = field((at), &fl_); \
       CHECK(f_ != NULL); \
       if (f_ != NULL) CHECK_MEM(f_, fl_, (want), (wlen)); } while (0)

static void ntlm_start(const char *user, const char *domain)
{
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_NTLM, user, strlen(user),
                            IN("Password"), domain, NULL, 0, aa_random), 0);
}

/* The Type 3 answer to the spec's Type 2 as the spec computes it. */
static void check_spec_type3(void)
{
  static const unsigned char zero4[4];
  size_t len = 0;
  const unsigned char *nt;

  dec_out();
  CHECK(raw_len >= 64 && memcmp(raw, "NTLMSSP\0\3\0\0\0", 12) == 0);
  CHECK_FIELD(12, lmv2, sizeof lmv2);
  nt = field(20, &len);
  CHECK(nt != NULL && len == 16 + 28 + NTLM_TI_LEN + 4);
  if (nt != NULL && len == 16 + 28 + NTLM_TI_LEN + 4) {
    CHECK_MEM(nt, 16, nt_proof, 16);
    CHECK_MEM(nt + 16, 28, blob_head, 28);
    CHECK_MEM(nt + 44, NTLM_TI_LEN, ntlm_type2 + NTLM_TI_AT, NTLM_TI_LEN);
    CHECK_MEM(nt + 44 + NTLM_TI_LEN, 4, zero4, 4);
  }
  CHECK_FIELD(28, "D\0o\0m\0a\0i\0n\0", 12);
  CHECK_FIELD(36, "U\0s\0e\0r\0", 8);
  CHECK_FIELD(44, "", 0);
  CHECK_FIELD(52, "", 0);
  CHECK_INT(raw[60] & 3, 1);                        /* Unicode, not OEM */
}

static void test_ntlm(void)
{
  static const unsigned char type1[32] = {
    'N', 'T', 'L', 'M', 'S', 'S', 'P', 0, 1, 0, 0, 0, 0x07, 0x82, 0x08, 0x00
  };

  memset(aa_random, 0xaa, sizeof aa_random);

  h_begin("NTLM", "MS-NLMP 4.2.4");
  ntlm_start("User", "Domain");
  CHECK_INT(initial(), 0);
  dec_out();
  CHECK_MEM(raw, raw_len, type1, sizeof type1);
  CHECK_INT(step_raw(ntlm_type2, sizeof ntlm_type2), 0);
  check_spec_type3();
  CHECK_INT(step_raw(ntlm_type2, sizeof ntlm_type2), SMTP_SASL_EUNEXPECTED);
  h_end();

  h_begin("NTLM", "DOMAIN\\user");
  ntlm_start("Domain\\User", NULL);
  CHECK_INT(step(""), 0);                           /* Type 1 on request */
  dec_out();
  CHECK_MEM(raw, raw_len, type1, sizeof type1);
  CHECK_INT(step_raw(ntlm_type2, sizeof ntlm_type2), 0);
  check_spec_type3();
  CHECK_INT(smtp_sasl_finish(&S, NULL, 0), 0);
  h_end();

  h_begin("NTLM", "domain argument wins");
  ntlm_start("User", "Domain");
  CHECK_INT(step_raw(ntlm_type2, sizeof ntlm_type2), 0);
  check_spec_type3();
  ntlm_start("Other\\User", "Domain");
  CHECK_INT(step_raw(ntlm_type2, sizeof ntlm_type2), 0);
  dec_out();
  CHECK_FIELD(36, "O\0t\0h\0e\0r\0\\\0U\0s\0e\0r\0", 20);
  h_end();

  /* A server timestamp goes into the blob, and LMv2 becomes Z(24). */
  h_begin("NTLM", "server timestamp");
  {
    static const unsigned char stamp[12] = {
      0x07, 0x00, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8
    };
    static const unsigned char zero24[24];
    unsigned char m[sizeof ntlm_type2 + sizeof stamp];
    const unsigned char *nt;
    size_t len = 0;

    /* the timestamp pair goes before the EOL pair, 4 octets from the end */
    memcpy(m, ntlm_type2, sizeof ntlm_type2 - 4);
    memcpy(m + sizeof ntlm_type2 - 4, stamp, sizeof stamp);
    memset(m + sizeof m - 4, 0, 4);
    m[40] = m[42] = NTLM_TI_LEN + sizeof stamp;
    ntlm_start("User", "Domain");
    CHECK_INT(step_raw(m, sizeof m), 0);
    dec_out();
    CHECK_FIELD(12, zero24, 24);
    nt = field(20, &len);
    CHECK(nt != NULL && len == 16 + 28 + NTLM_TI_LEN + sizeof stamp + 4);
    if (nt != NULL) {
      CHECK_MEM(nt + 16 + 8, 8, stamp + 4, 8);
      CHECK(memcmp(nt, nt_proof, 16) != 0);
    }
  }
  h_end();

  /* MS-NLMP 4.2.3.3's old-style challenge: no target info, no Unicode */
  h_begin("NTLM", "short challenge, OEM");
  {
    unsigned char m[32];
    const unsigned char *nt;
    size_t len = 0;

    memcpy(m, ntlm_type2, 32);
    m[20] &= (unsigned char)~1u;                   /* no NEGOTIATE_UNICODE */
    ntlm_start("User", "Domain");
    CHECK_INT(step_raw(m, sizeof m), 0);
    dec_out();
    CHECK_FIELD(12, lmv2, sizeof lmv2);             /* independent of TI */
    nt = field(20, &len);
    CHECK(nt != NULL && len == 16 + 28 + 4);
    CHECK_FIELD(28, "Domain", 6);
    CHECK_FIELD(36, "User", 4);
    CHECK_INT(raw[60] & 3, 2);
  }
  h_end();

  h_begin("NTLM", "non-ASCII names");
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_NTLM, IN("j\xc3\xb6rg\xf0\x9f\x98\x80"),
                            IN("P\xc3\xa4ss"), NULL, NULL, 0, aa_random), 0);
  CHECK_INT(step_raw(ntlm_type2, sizeof ntlm_type2), 0);
  dec_out();
  CHECK_FIELD(36, "j\0\xf6\0r\0g\0\x3d\xd8\x00\xde", 12);
  CHECK_INT(start(SMTP_SASL_NTLM, "user", "pass\xff"), SMTP_SASL_EINVAL);
  CHECK_INT(start(SMTP_SASL_NTLM, "us\xc3", "pass"), SMTP_SASL_EINVAL);
  CHECK_INT(start(SMTP_SASL_NTLM, "DOMAIN\\", "pass"), SMTP_SASL_EINVAL);
  h_end();

  {
    static const struct { const char *name; size_t at, len; int err; } v[] = {
      { "too short", 0, 31, SMTP_SASL_EMALFORMED },
      { "bad signature", 3, 0, SMTP_SASL_EMALFORMED },
      { "wrong type", 8, 0, SMTP_SASL_EMALFORMED },
      { "target info past the end", 44, 0, SMTP_SASL_EMALFORMED },
      { "target info too long", 40, 0, SMTP_SASL_EMALFORMED },
      { "AV pair past the end", NTLM_TI_AT + 2, 0, SMTP_SASL_EMALFORMED }
    };
    size_t i;

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
      unsigned char m[sizeof ntlm_type2];

      h_begin("NTLM Type 2", v[i].name);
      memcpy(m, ntlm_type2, sizeof m);
      if (v[i].len == 0)
        m[v[i].at] = 0x7f;
      ntlm_start("User", "Domain");
      CHECK_INT(step_raw(m, v[i].len ? v[i].len : sizeof m), v[i].err);
      h_end();
    }
  }
}

static void test_xoauth2(void)
{
  static const char token[] = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";

  /* https://developers.google.com/gmail/imap/xoauth2-protocol */
  h_begin("XOAUTH2", "Google's example");
  CHECK_INT(start(SMTP_SASL_XOAUTH2, "someuser@example.com", token), 0);
  CHECK_INT(initial(), 0);
  CHECK_STR(out, "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5Ln"
                 "ZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==");
  CHECK_STR(smtp_sasl_detail(&S), "");
  CHECK_STR(smtp_sasl_detail_status(&S), "");
  h_end();

  h_begin("XOAUTH2", "error challenge");
  CHECK_INT(start(SMTP_SASL_XOAUTH2, "someuser@example.com", token), 0);
  CHECK_INT(initial(), 0);
  CHECK_INT(step("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3"
                 "BlIjoiaHR0cHM6Ly9tYWlsLmdvb2dsZS5jb20vIn0K"), 0);
  CHECK_INT(outlen, 0);
  CHECK_STR(out, "");
  CHECK_STR(smtp_sasl_detail(&S), "{\"status\":\"401\",\"schemes\":"
            "\"bearer mac\",\"scope\":\"https://mail.google.com/\"}");
  CHECK_STR(smtp_sasl_detail_status(&S), "401");
  CHECK_INT(smtp_sasl_error(&S), 0);
  CHECK_INT(step(""), SMTP_SASL_EUNEXPECTED);
  CHECK_STR(smtp_sasl_detail_status(&S), "401");
  h_end();

  {
    static const struct { const char *name, *json, *status, *detail; } v[] = {
      { "spaces and number", "{ \"status\" : 400 }", "400",
        "{ \"status\" : 400 }" },
      { "no status", "{\"error\":\"x\"}", "", "{\"error\":\"x\"}" },
      { "status not a value", "{\"status\":[1]}", "", "{\"status\":[1]}" },
      { "truncated", "{\"status\"", "", "{\"status\"" },
      { "controls replaced", "{\"status\":\"4\x1b[0m\"}\r\n", "4",
        "{\"status\":\"4?[0m\"}" }
    };
    size_t i;

    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
      h_begin("XOAUTH2 error JSON", v[i].name);
      CHECK_INT(start(SMTP_SASL_XOAUTH2, "u", "t"), 0);
      CHECK_INT(initial(), 0);
      CHECK_INT(step_raw(v[i].json, strlen(v[i].json)), 0);
      CHECK_STR(smtp_sasl_detail_status(&S), v[i].status);
      CHECK_STR(smtp_sasl_detail(&S), v[i].detail);
      h_end();
    }
  }

  h_begin("XOAUTH2", "long JSON is cut");
  CHECK_INT(start(SMTP_SASL_XOAUTH2, "u", "t"), 0);
  memset(big, 'x', 3000);
  memcpy(big, "{\"status\":\"401\"", 15);
  CHECK_INT(step_raw(big, 3000), 0);
  CHECK_INT(strlen(smtp_sasl_detail(&S)), SMTP_SASL_DETAIL_MAX);
  CHECK_STR(smtp_sasl_detail_status(&S), "401");
  h_end();

  h_begin("XOAUTH2", "5000-octet token");
  {
    static char tok[5001], want[5100];
    size_t n;

    memset(tok, 'T', 5000);
    n = (size_t)snprintf(want, sizeof want, "user=me@example.com\1auth=Bearer "
                         "%s\1\1", tok);
    CHECK_INT(start(SMTP_SASL_XOAUTH2, "me@example.com", tok), 0);
    CHECK_INT(initial(), 0);
    dec_out();
    CHECK_MEM(raw, raw_len, want, n);
  }
  h_end();
}

static void test_oauthbearer(void)
{
  static const char token[] = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";

  /* RFC 7628 4.1 */
  h_begin("OAUTHBEARER", "RFC 7628");
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_OAUTHBEARER, IN("user@example.com"),
                            IN(token), NULL, "server.example.com", 143,
                            no_random), 0);
  CHECK_INT(initial(), 0);
  CHECK_STR(out, "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29t"
                 "AXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQm"
                 "hiSFJoZG1semRHRXVZMjl0Q2c9PQEB");
  CHECK_RAW("n,a=user@example.com,\1host=server.example.com"
                             "\1port=143\1auth=Bearer " "vF9dft4qmTc2Nvb3Rlck"
                             "BhbHRhdmlzdGEuY29tCg==\1\1");
  h_end();

  /* RFC 7628 4.3: the failure, answered with a lone %x01 */
  h_begin("OAUTHBEARER", "error challenge");
  CHECK_INT(step("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Nj"
                 "b3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUu"
                 "Y29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0="), 0);
  CHECK_STR(out, "AQ==");
  CHECK_STR(smtp_sasl_detail_status(&S), "invalid_token");
  h_end();

  h_begin("OAUTHBEARER", "no host, no port, escaped user");
  CHECK_INT(start(SMTP_SASL_OAUTHBEARER, "a=b,c", "tok"), 0);
  CHECK_INT(initial(), 0);
  CHECK_RAW("n,a=a=3Db=2Cc,\1auth=Bearer tok\1\1");
  h_end();

  h_begin("OAUTHBEARER", "5000-octet token");
  {
    static char tok[5001], want[5200];
    size_t n;

    memset(tok, 'T', 5000);
    n = (size_t)snprintf(want, sizeof want, "n,a=me,\1host=smtp.example.com"
                         "\1port=587\1auth=Bearer %s\1\1", tok);
    CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_OAUTHBEARER, IN("me"), tok, 5000,
                              NULL, "smtp.example.com", 587, no_random), 0);
    CHECK_INT(initial(), 0);
    dec_out();
    CHECK_MEM(raw, raw_len, want, n);
  }
  h_end();
}

static void test_base64(void)
{
  static const char *const bad[] = {
    "abc", "ab!d", "a===", "====", "ab c", "YWJj\r\n", " YWJj", "YW=j",
    "YWJj=", "YQ==YWJj", "-_-_", "YWJj\0"
  };
  static const smtp_sasl_mech mechs[] = {
    SMTP_SASL_LOGIN, SMTP_SASL_CRAM_MD5, SMTP_SASL_SCRAM_SHA_1,
    SMTP_SASL_NTLM, SMTP_SASL_XOAUTH2
  };
  size_t i, m;

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    h_begin("bad base64", bad[i]);
    for (m = 0; m < sizeof mechs / sizeof mechs[0]; m++) {
      /* the last one is sent with its NUL */
      size_t len = strlen(bad[i]) + (i == sizeof bad / sizeof bad[0] - 1);

      CHECK_INT(start(mechs[m], "user", "pencil"), 0);
      CHECK_INT(smtp_sasl_step(&S, bad[i], len, out, sizeof out, &outlen),
                SMTP_SASL_EBASE64);
      CHECK_INT(step("VXNlcm5hbWU6"), SMTP_SASL_EBASE64);  /* stays set */
      CHECK_INT(smtp_sasl_finish(&S, NULL, 0), SMTP_SASL_EBASE64);
      CHECK_INT(initial(), SMTP_SASL_EBASE64);
    }
    h_end();
  }
}

static void test_bounds(void)
{
  /* the most characters that can decode to SMTP_SASL_CHALLENGE_MAX octets;
   * without padding they would decode to one more */
  size_t max = 4 * ((SMTP_SASL_CHALLENGE_MAX + 2) / 3);

  CHECK_INT(SMTP_SASL_CHALLENGE_MAX % 3, 2);
  /* CRAM-MD5 takes any challenge */
  h_begin("challenge bound", "longest");
  memset(big, 'A', max);
  big[max - 1] = '=';
  CHECK_INT(start(SMTP_SASL_CRAM_MD5, "u", "p"), 0);
  CHECK_INT(smtp_sasl_step(&S, big, max, out, sizeof out, &outlen), 0);
  h_end();

  h_begin("challenge bound", "one octet more");
  memset(big, 'A', max);
  CHECK_INT(start(SMTP_SASL_CRAM_MD5, "u", "p"), 0);
  CHECK_INT(smtp_sasl_step(&S, big, max, out, sizeof out, &outlen),
            SMTP_SASL_ETOOLONG);
  h_end();

  h_begin("challenge bound", "one block more");
  memset(big, 'A', max + 4);
  CHECK_INT(start(SMTP_SASL_CRAM_MD5, "u", "p"), 0);
  CHECK_INT(smtp_sasl_step(&S, big, max + 4, out, sizeof out, &outlen),
            SMTP_SASL_ETOOLONG);
  h_end();

  h_begin("challenge bound", "huge garbage");
  memset(big, '!', sizeof big);
  CHECK_INT(start(SMTP_SASL_NTLM, "u", "p"), 0);
  CHECK_INT(smtp_sasl_step(&S, big, sizeof big, out, sizeof out, &outlen),
            SMTP_SASL_ETOOLONG);
  CHECK_STR(smtp_sasl_strerror(smtp_sasl_error(&S)),
            "server challenge too long");
  h_end();
}

/* Inputs at every bound at once must fit SMTP_SASL_OUT_MAX. */
static void test_largest(void)
{
  static char user[SMTP_SASL_USER_MAX], secret[SMTP_SASL_SECRET_MAX];
  static char host[SMTP_SASL_HOST_MAX + 1], domain[SMTP_SASL_DOMAIN_MAX + 1];
  static char nonce[SMTP_SASL_NONCE_MAX];
  static unsigned char m[SMTP_SASL_CHALLENGE_MAX];
  size_t n;

  memset(user, ',', sizeof user);                   /* escaped threefold */
  memset(secret, 'S', sizeof secret);
  memset(host, 'h', SMTP_SASL_HOST_MAX);
  memset(domain, 'd', SMTP_SASL_DOMAIN_MAX);
  memset(nonce, 'n', sizeof nonce);

  h_begin("largest", "OAUTHBEARER");
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_OAUTHBEARER, user, sizeof user,
                            secret, sizeof secret, NULL, host, 65535,
                            no_random), 0);
  CHECK_INT(initial(), 0);
  dec_out();
  CHECK_INT(raw_len, 4 + 3 * sizeof user + 1 + 6 + SMTP_SASL_HOST_MAX + 6 +
            5 + 13 + sizeof secret + 2);
  h_end();

  h_begin("largest", "NTLM");
  memcpy(m, ntlm_type2, 48);
  n = SMTP_SASL_CHALLENGE_MAX - 48;
  m[40] = m[42] = (unsigned char)n;
  m[41] = m[43] = (unsigned char)(n >> 8);
  m[44] = 48;
  memset(m + 48, 0, n);
  memset(m + 48, 0xff, 4);                          /* one long AV pair */
  m[50] = (unsigned char)(n - 4);
  m[51] = (unsigned char)((n - 4) >> 8);
  memset(user, 'u', sizeof user);
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_NTLM, user, sizeof user, IN("p"),
                            domain, NULL, 0, no_random), 0);
  CHECK_INT(step_raw(m, sizeof m), 0);
  dec_out();
  CHECK_INT(raw_len, 64 + 24 + 16 + 28 + n + 4 + 2 * SMTP_SASL_DOMAIN_MAX +
            2 * SMTP_SASL_USER_MAX);
  h_end();

  /* the longest server nonce that leaves room for salt and count */
  h_begin("largest", "SCRAM");
  {
    static const char tail[] = ",s=QSXCR+Q6,i=4096";
    size_t nonce_len = SMTP_SASL_CHALLENGE_MAX - 2 - (sizeof tail - 1);

    memset(user, ',', sizeof user);
    memcpy(m, "r=", 2);
    memcpy(m + 2, nonce, sizeof nonce);
    memset(m + 2 + sizeof nonce, 'x', nonce_len - sizeof nonce);
    memcpy(m + 2 + nonce_len, tail, sizeof tail - 1);
    CHECK_INT(smtp_sasl_start_with_nonce(&S, SMTP_SASL_SCRAM_SHA_256, user,
                                         sizeof user, IN("pencil"), NULL,
                                         NULL, 0, no_random, nonce,
                                         sizeof nonce), 0);
    CHECK_INT(initial(), 0);
    dec_out();
    CHECK_INT(raw_len, 5 + 3 * sizeof user + 3 + sizeof nonce);
    CHECK_INT(step_raw(m, SMTP_SASL_CHALLENGE_MAX), 0);
    dec_out();
    CHECK_INT(raw_len, 9 + nonce_len + 3 + 44);
  }
  h_end();
}

static void test_space(void)
{
  char small[9];

  h_begin("output too small", "initial");
  CHECK_INT(start(SMTP_SASL_PLAIN, "tim", "tanstaaftanstaaf"), 0);
  /* 28 characters and the NUL */
  CHECK_INT(smtp_sasl_initial(&S, out, 28, &outlen), SMTP_SASL_ESPACE);
  CHECK_INT(smtp_sasl_initial(&S, out, 29, &outlen), SMTP_SASL_ESPACE);
  CHECK_INT(start(SMTP_SASL_PLAIN, "tim", "tanstaaftanstaaf"), 0);
  CHECK_INT(smtp_sasl_initial(&S, out, 29, &outlen), 0);
  h_end();

  h_begin("output too small", "step");
  CHECK_INT(start(SMTP_SASL_LOGIN, "someone", "pencil"), 0);
  CHECK_INT(smtp_sasl_step(&S, IN("VXNlcm5hbWU6"), small, sizeof small,
                           &outlen), SMTP_SASL_ESPACE);
  CHECK_INT(step("UGFzc3dvcmQ6"), SMTP_SASL_ESPACE);
  h_end();

  h_begin("output too small", "empty response");
  CHECK_INT(start(SMTP_SASL_XOAUTH2, "u", "t"), 0);
  CHECK_INT(smtp_sasl_step(&S, IN("e30="), small, 0, &outlen),
            SMTP_SASL_ESPACE);
  CHECK_INT(start(SMTP_SASL_XOAUTH2, "u", "t"), 0);
  CHECK_INT(smtp_sasl_step(&S, IN("e30="), small, 1, &outlen), 0);
  CHECK_INT(outlen, 0);
  h_end();
}

static void test_invalid(void)
{
  static char too_long[SMTP_SASL_SECRET_MAX + 2];   /* and a NUL */
  static const smtp_sasl_mech all[] = {
    SMTP_SASL_PLAIN, SMTP_SASL_LOGIN, SMTP_SASL_CRAM_MD5,
    SMTP_SASL_SCRAM_SHA_1, SMTP_SASL_SCRAM_SHA_256, SMTP_SASL_NTLM,
    SMTP_SASL_XOAUTH2, SMTP_SASL_OAUTHBEARER
  };
  size_t i;

  memset(too_long, 'x', SMTP_SASL_SECRET_MAX + 1);
  for (i = 0; i < sizeof all / sizeof all[0]; i++) {
    smtp_sasl_mech m = all[i];

    h_begin("invalid input", smtp_sasl_mech_name(m));
    CHECK_INT(start(m, "", "p"), SMTP_SASL_EINVAL);
    CHECK_INT(start(m, "u", ""), SMTP_SASL_EINVAL);
    CHECK_INT(smtp_sasl_start(&S, m, IN("u\0v"), IN("p"), NULL, NULL, 0,
                              no_random), SMTP_SASL_EINVAL);
    CHECK_INT(smtp_sasl_start(&S, m, IN("u"), IN("p\0q"), NULL, NULL, 0,
                              no_random), SMTP_SASL_EINVAL);
    CHECK_INT(smtp_sasl_start(&S, m, too_long, SMTP_SASL_USER_MAX + 1,
                              IN("p"), NULL, NULL, 0, no_random),
              SMTP_SASL_EINVAL);
    CHECK_INT(smtp_sasl_start(&S, m, IN("u"), too_long,
                              SMTP_SASL_SECRET_MAX + 1, NULL, NULL, 0,
                              no_random), SMTP_SASL_EINVAL);
    CHECK_INT(smtp_sasl_error(&S), SMTP_SASL_EINVAL);
    CHECK_INT(step("VXNlcm5hbWU6"), SMTP_SASL_EINVAL);
    CHECK_INT(start_nonce(m, "u", "p", "a,b"), SMTP_SASL_EINVAL);
    CHECK_INT(start_nonce(m, "u", "p", "a b"), SMTP_SASL_EINVAL);
    CHECK_INT(start_nonce(m, "u", "p", ""), SMTP_SASL_EINVAL);
    CHECK_INT(start_nonce(m, "u", "p", "\xc3\xa9"), SMTP_SASL_EINVAL);
    CHECK_INT(smtp_sasl_start(&S, m, IN("u"), too_long, SMTP_SASL_SECRET_MAX,
                              NULL, NULL, 0, no_random), 0);
    h_end();
  }
  h_begin("invalid input", "unknown mechanism");
  CHECK_INT(start(SMTP_SASL_NONE, "u", "p"), SMTP_SASL_EINVAL);
  CHECK_INT(start((smtp_sasl_mech)42, "u", "p"), SMTP_SASL_EINVAL);
  h_end();

  h_begin("invalid input", "OAuth separators");
  CHECK_INT(start(SMTP_SASL_XOAUTH2, "u\1", "t"), SMTP_SASL_EINVAL);
  CHECK_INT(start(SMTP_SASL_XOAUTH2, "u", "t\1auth=x"), SMTP_SASL_EINVAL);
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_OAUTHBEARER, IN("u"), IN("t"),
                            NULL, "h\1", 25, no_random), SMTP_SASL_EINVAL);
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_OAUTHBEARER, IN("u"), IN("t"),
                            NULL, "h", 65536, no_random), SMTP_SASL_EINVAL);
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_OAUTHBEARER, IN("u"), IN("t"),
                            NULL, too_long, 25, no_random), SMTP_SASL_EINVAL);
  CHECK_INT(start(SMTP_SASL_PLAIN, "u\1", "t\1"), 0);   /* fine elsewhere */
  h_end();

  h_begin("invalid input", "NTLM domain too long");
  too_long[SMTP_SASL_DOMAIN_MAX + 1] = '\0';
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_NTLM, IN("u"), IN("p"), too_long,
                            NULL, 0, no_random), SMTP_SASL_EINVAL);
  too_long[SMTP_SASL_DOMAIN_MAX] = '\0';
  CHECK_INT(smtp_sasl_start(&S, SMTP_SASL_NTLM, IN("u"), IN("p"), too_long,
                            NULL, 0, no_random), 0);
  h_end();

  h_begin("error texts", "");
  for (i = 0; i <= 12; i++)
    CHECK(strcmp(smtp_sasl_strerror(-(int)i), "unknown error") != 0);
  CHECK_STR(smtp_sasl_strerror(-13), "unknown error");
  h_end();
}

static void test_wipe(void)
{
  const unsigned char *p = (const unsigned char *)&S;
  size_t i, nonzero = 0;

  h_begin("wipe", "");
  sha1_to_final("user", "pencil");
  smtp_sasl_wipe(&S);
  for (i = 0; i < sizeof S; i++)
    nonzero += p[i] != 0;
  CHECK_INT(nonzero, 0);
  h_end();

  /* the password goes as soon as the salt has been used */
  h_begin("wipe", "SCRAM password dropped after server-first");
  sha1_to_final("user", "pencil");
  CHECK(!contains(&S, sizeof S, "pencil"));
  h_end();

  h_begin("wipe", "NTLM never keeps the password");
  ntlm_start("User", "Domain");
  CHECK(!contains(&S, sizeof S, "Password"));
  h_end();
}

int main(void)
{
  test_names();
  test_md4();
  test_plain();
  test_login();
  test_cram_md5();
  test_scram_vectors();
  test_scram_errors();
  test_saslprep();
  test_ntlm();
  test_xoauth2();
  test_oauthbearer();
  test_base64();
  test_bounds();
  test_largest();
  test_space();
  test_invalid();
  test_wipe();
  smtp_sasl_wipe(&S);
  return h_summary();
}
