/*
 * fuzz_codec.c -- the body codecs on arbitrary input cut at arbitrary
 * points.
 *
 * Input: a header of 4 bytes, then the text.  Header bytes 0..2 are chunk
 * lengths (0..255; a 0 is fed as an empty chunk), used in turn until the
 * text is used up; byte 3 picks the charset for the transcoder.
 *
 * What must hold, for base64 and quoted-printable alike:
 *   - the text fed in those chunks encodes to exactly what it encodes to
 *     whole, and no call writes more than its bound;
 *   - decoding gives the text back (for quoted-printable with every line
 *     break made CRLF);
 *   - no line is longer than 76 characters before its CRLF (base64: every
 *     line but the last is exactly 76), no CR or LF stands alone, and
 *     quoted-printable lines do not end in SPACE or TAB.
 * And for the transcoder: the chunks, through a small output buffer, give
 * the same output and the same refusal (code, bytes, position) as the
 * whole text; UTF-8 to UTF-8 gives the text back unless it was refused.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) abort(); } while (0)

#define MAX_IN 65536u

static unsigned char whole[MAX_IN * 4], cut[MAX_IN * 4], dec[MAX_IN * 4];
static unsigned char norm[MAX_IN * 2];

static const char alphabet[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t next_chunk(const uint8_t *hdr, size_t *k, size_t left)
{
  size_t n = hdr[(*k)++ % 3];
  return n < left ? n : left;
}

static size_t encode(int qp, const uint8_t *p, size_t n, const uint8_t *hdr,
                     unsigned char *out)
{
  smtp_codec_b64 b;
  smtp_codec_qp q;
  size_t pos = 0, o = 0, k = 0, steps = 0;

  smtp_codec_b64_init(&b);
  smtp_codec_qp_init(&q);
  while (pos < n) {
    size_t len = hdr ? next_chunk(hdr, &k, n - pos) : n, w;
    if (qp) {
      w = smtp_codec_qp_update(&q, p + pos, len, out + o);
      REQUIRE(w <= SMTP_CODEC_QP_BOUND(len));
    } else {
      w = smtp_codec_b64_update(&b, p + pos, len, out + o);
      REQUIRE(w <= SMTP_CODEC_B64_BOUND(len));
    }
    o += w;
    pos += len;
    if (++steps > 4 * n + 16)     /* header of three zeros */
      hdr = NULL;
  }
  if (qp)
    o += smtp_codec_qp_final(&q, out + o);
  else
    o += smtp_codec_b64_final(&b, out + o);
  return o;
}

/* Base64 lines back to bytes; REQUIREs the shape. */
static size_t dec_b64(const unsigned char *p, size_t n, unsigned char *out)
{
  size_t i, o = 0, col = 0, q = 0, pad = 0;
  uint32_t v = 0;

  for (i = 0; i < n; i++) {
    const char *a;
    if (p[i] == '\r') {
      REQUIRE(i + 1 < n && p[i + 1] == '\n' && col > 0);
      REQUIRE(col == 76 || i + 2 == n);
      i++;
      col = 0;
      continue;
    }
    REQUIRE(++col <= 76);
    if (p[i] == '=') {
      pad++;
    } else {
      REQUIRE(pad == 0 && p[i] != 0);
      a = strchr(alphabet, p[i]);
      REQUIRE(a != NULL);
      v |= (uint32_t)(a - alphabet) << (18 - 6 * q);
    }
    if (++q == 4) {
      out[o++] = (unsigned char)(v >> 16);
      if (pad < 2) out[o++] = (unsigned char)(v >> 8);
      if (pad < 1) out[o++] = (unsigned char)v;
      v = 0;
      q = 0;
    }
  }
  REQUIRE(q == 0 && col == 0 && pad <= 2);
  return o;
}

static int hexval(unsigned c)
{
  if (c >= '0' && c <= '9') return (int)c - '0';
  if (c >= 'A' && c <= 'F') return (int)c - 'A' + 10;
  return -1;
}

/* Quoted-printable back to bytes; REQUIREs the shape. */
static size_t dec_qp(const unsigned char *p, size_t n, unsigned char *out)
{
  size_t i, o = 0, col = 0;

  for (i = 0; i < n; i++) {
    unsigned c = p[i];
    if (c == '\r') {
      REQUIRE(i + 1 < n && p[i + 1] == '\n');
      REQUIRE(i == 0 || (p[i - 1] != ' ' && p[i - 1] != '\t'));
      out[o++] = '\r';
      out[o++] = '\n';
      i++;
      col = 0;
    } else if (c == '=' && i + 2 < n && p[i + 1] == '\r') {
      REQUIRE(p[i + 2] == '\n' && ++col <= 76);
      i += 2;
      col = 0;
    } else if (c == '=') {
      REQUIRE(i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0);
      out[o++] = (unsigned char)(hexval(p[i + 1]) << 4 | hexval(p[i + 2]));
      i += 2;
      REQUIRE((col += 3) <= 76);
    } else {
      REQUIRE(c == ' ' || c == '\t' || (c >= 33 && c <= 126));
      out[o++] = (unsigned char)c;
      REQUIRE(++col <= 76);
    }
  }
  REQUIRE(n == 0 || (p[n - 1] != ' ' && p[n - 1] != '\t'));
  return o;
}

static size_t normalize(const unsigned char *p, size_t n, unsigned char *out)
{
  size_t i, o = 0;

  for (i = 0; i < n; i++) {
    if (p[i] == '\r' || p[i] == '\n') {
      out[o++] = '\r';
      out[o++] = '\n';
      if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
        i++;
    } else {
      out[o++] = p[i];
    }
  }
  return o;
}

typedef struct {
  int rc;
  smtp_codec_fault f;
  size_t len;
} conv;

static conv transcode(const char *to, const uint8_t *p, size_t n,
                      const uint8_t *hdr, size_t cap, unsigned char *out)
{
  smtp_codec_iconv s;
  conv r;
  size_t pos = 0, k = 0, steps = 0;

  memset(&r, 0, sizeof r);
  r.rc = smtp_codec_iconv_open(&s, to);
  REQUIRE(r.rc == SMTP_CODEC_OK);
  while (pos < n && r.rc == SMTP_CODEC_OK) {
    size_t len = hdr ? next_chunk(hdr, &k, n - pos) : n, q = 0;
    do {
      size_t used, w;
      r.rc = smtp_codec_iconv_update(&s, p + pos + q, len - q, &used,
                                     out + r.len, cap, &w);
      REQUIRE(used <= len - q && w <= cap);
      REQUIRE(r.rc != SMTP_CODEC_OK || used > 0 || q == len);
      REQUIRE(r.rc == SMTP_CODEC_OK || r.rc == SMTP_CODEC_EUNMAPPABLE ||
              r.rc == SMTP_CODEC_EUTF8);
      q += used;
      r.len += w;
    } while (r.rc == SMTP_CODEC_OK && q < len);
    pos += len;
    if (++steps > 4 * n + 16)
      hdr = NULL;
  }
  if (r.rc == SMTP_CODEC_OK) {
    size_t w;
    r.rc = smtp_codec_iconv_final(&s, out + r.len, cap, &w);
    r.len += w;
  }
  r.f = *smtp_codec_iconv_fault(&s);
  REQUIRE(r.f.code == r.rc);
  smtp_codec_iconv_close(&s);
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const char *const charsets[] = {
    "UTF-8", "ISO-8859-1", "WINDOWS-1252", "SHIFT_JIS", "ISO-2022-JP",
    "UTF-16LE", "KOI8-R", "GB2312"
  };
  const uint8_t *hdr = data, *p = data + 4;
  size_t n, a, b, d, m;
  int qp;
  conv cw, cc;
  const char *to;

  if (size < 4 || size - 4 > MAX_IN)
    return 0;
  n = size - 4;
  for (qp = 0; qp < 2; qp++) {
    a = encode(qp, p, n, NULL, whole);
    b = encode(qp, p, n, hdr, cut);
    REQUIRE(a == b && memcmp(whole, cut, a) == 0);
    if (qp) {
      d = dec_qp(whole, a, dec);
      m = normalize(p, n, norm);
      REQUIRE(d == m && memcmp(dec, norm, m) == 0);
    } else {
      d = dec_b64(whole, a, dec);
      REQUIRE(d == n && memcmp(dec, p, n) == 0);
    }
  }
  to = charsets[hdr[3] % (sizeof charsets / sizeof charsets[0])];
  cw = transcode(to, p, n, NULL, sizeof whole, whole);
  cc = transcode(to, p, n, hdr, SMTP_CODEC_ICONV_OUT_MIN + hdr[3] / 8u, cut);
  REQUIRE(cw.rc == cc.rc && cw.len == cc.len &&
          memcmp(whole, cut, cw.len) == 0);
  REQUIRE(cw.f.code == cc.f.code && cw.f.len == cc.f.len &&
          cw.f.cp == cc.f.cp && cw.f.pos == cc.f.pos &&
          memcmp(cw.f.bytes, cc.f.bytes, cw.f.len) == 0);
  if (cw.rc == SMTP_CODEC_OK && strcmp(to, "UTF-8") == 0)
    REQUIRE(cw.len == n && memcmp(whole, p, n) == 0);
  return 0;
}
