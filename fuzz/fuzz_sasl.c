/*
 * fuzz_sasl.c -- arbitrary challenges into each SASL mechanism.
 *
 * The first byte picks the mechanism and how the exchange runs; the rest
 * is a list of challenges separated by '\n'.  Challenges are base64-encoded
 * here, so that the fuzzer reaches the parsers behind the decoder, unless
 * the "raw" bit says to pass them as they are, which fuzzes the decoder.
 * Every result must keep the contract of sasl.h: known codes, NUL-terminated
 * base64 output within the buffer, errors that stay set, bounded and clean
 * detail text, and a wipe that leaves nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>

#include "../src/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

#define OPT_RAW     0x08u  /* challenges go in without base64 */
#define OPT_SMALL   0x10u  /* a 24-octet output buffer */
#define OPT_INITIAL 0x20u  /* send the initial response with AUTH */
#define OPT_FINISH  0x40u  /* the last chunk comes with the 235 instead */

/* PBKDF2 at up to SMTP_SASL_ITER_MAX iterations takes seconds; the bound
 * itself is unit-tested, so the fuzzer skips counts that would only slow
 * it down. */
#define FUZZ_ITER_MAX 20000ul

static smtp_sasl sasl;
static char out[SMTP_SASL_OUT_MAX];
static char chal[4 * SMTP_SASL_CHALLENGE_MAX];
static unsigned char plain[4 * SMTP_SASL_CHALLENGE_MAX];

static int costly(const unsigned char *p, size_t n)
{
  size_t i, j;

  for (i = 0; i + 2 < n; i++) {
    unsigned long v = 0;

    if (p[i] != 'i' || p[i + 1] != '=')
      continue;
    for (j = i + 2; j < n && p[j] >= '0' && p[j] <= '9'; j++)
      if ((v = v * 10 + (p[j] - '0')) > FUZZ_ITER_MAX)
        return 1;
  }
  return 0;
}

/* Prepare one challenge in chal; -1 when it would only be slow. */
static long challenge(const uint8_t *p, size_t n, unsigned opts)
{
  size_t len = 0;

  if (opts & OPT_RAW) {
    size_t plen = 0;
    memcpy(chal, p, n);
    if (mbedtls_base64_decode(plain, sizeof plain, &plen, p, n) == 0 &&
        costly(plain, plen))
      return -1;
    return (long)n;
  }
  if (costly(p, n))
    return -1;
  if (mbedtls_base64_encode((unsigned char *)chal, sizeof chal, &len, p, n))
    return -1;
  return (long)len;
}

static void check_state(int r)
{
  size_t i;

  REQUIRE(r <= 0 && r >= SMTP_SASL_ECRYPTO);
  REQUIRE(smtp_sasl_error(&sasl) == r);
  REQUIRE(strlen(smtp_sasl_detail(&sasl)) <= SMTP_SASL_DETAIL_MAX);
  REQUIRE(strlen(smtp_sasl_detail_status(&sasl)) < 32);
  for (i = 0; smtp_sasl_detail(&sasl)[i] != '\0'; i++)
    REQUIRE((unsigned char)smtp_sasl_detail(&sasl)[i] >= 0x20 &&
            smtp_sasl_detail(&sasl)[i] != 0x7f);
}

static void check_output(int r, size_t cap, size_t outlen)
{
  size_t i;

  check_state(r);
  if (r != SMTP_SASL_OK)
    return;
  REQUIRE(outlen < cap && out[outlen] == '\0' && outlen % 4 == 0);
  for (i = 0; i < outlen; i++)
    REQUIRE(out[i] != '\0' && strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij"
                                     "klmnopqrstuvwxyz0123456789+/=", out[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const unsigned char random[32] = { 1, 2, 3, 4, 5, 6, 7, 8 };
  unsigned opts;
  smtp_sasl_mech mech;
  size_t pos = 1, cap, outlen = 0, i;
  int r, last = SMTP_SASL_OK;

  if (size < 1)
    return 0;
  opts = data[0];
  mech = (smtp_sasl_mech)(opts % 8 + 1);
  cap = (opts & OPT_SMALL) ? 24 : sizeof out;
  r = smtp_sasl_start_with_nonce(&sasl, mech, "user", 4, "pencil", 6,
                                 "DOMAIN", "smtp.example.com", 587, random,
                                 "abc", 3);
  REQUIRE(r == SMTP_SASL_OK);
  if (opts & OPT_INITIAL) {
    last = smtp_sasl_initial(&sasl, out, cap, &outlen);
    check_output(last, cap, outlen);
  }
  while (pos <= size && last == SMTP_SASL_OK) {
    const uint8_t *nl = memchr(data + pos, '\n', size - pos);
    size_t end = nl != NULL ? (size_t)(nl - data) : size;
    long n = challenge(data + pos, end - pos, opts);

    if (n < 0)
      break;
    if (nl == NULL && (opts & OPT_FINISH)) {
      last = smtp_sasl_finish(&sasl, chal, (size_t)n);
      check_state(last);
      break;
    }
    last = smtp_sasl_step(&sasl, chal, (size_t)n, out, cap, &outlen);
    check_output(last, cap, outlen);
    pos = end + 1;
  }
  if (last != SMTP_SASL_OK) {
    /* errors stay set, whatever comes next */
    REQUIRE(smtp_sasl_step(&sasl, "", 0, out, sizeof out, &outlen) == last);
    REQUIRE(smtp_sasl_finish(&sasl, NULL, 0) == last);
    REQUIRE(smtp_sasl_initial(&sasl, out, sizeof out, &outlen) == last);
  }
  smtp_sasl_wipe(&sasl);
  for (i = 0; i < sizeof sasl; i++)
    REQUIRE(((const unsigned char *)&sasl)[i] == 0);
  return 0;
}
