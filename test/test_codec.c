/*
 * test_codec.c -- base64, quoted-printable and UTF-8 transcoding.
 *
 * Known vectors first; then every encoder is run on the same input cut in
 * every way that matters -- whole, in two pieces at every point, one byte
 * at a time, in chunks of fixed and random sizes -- and each result must
 * equal the whole-input result, which must equal an independent, simple
 * reference written here.  The outputs are decoded back (simple decoders
 * here too) and checked for their shape: line lengths, allowed bytes.  The
 * text scan is checked against a byte-at-a-time reference.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../src/codec.h"
#include "harness.h"

#define BIG (1u << 17)

static unsigned char in_buf[BIG], out_a[BIG * 4], out_b[BIG * 4];
static unsigned char ref_buf[BIG * 4], dec_buf[BIG * 4];

/* ---- a fixed-seed PRNG --------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  rng_state = x;
  return (uint32_t)(x >> 32);
}

static void fill_random(unsigned char *p, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++)
    p[i] = (unsigned char)rnd();
}

/* Text-like bytes: mostly letters, some spaces, tabs, line breaks of every
 * kind, "=", dots and 8-bit bytes. */
static void fill_text(unsigned char *p, size_t n)
{
  static const char pick[] = "abcdefghijklmnopqrstuvwxyz      \t\r\n\n=.";
  size_t i;
  for (i = 0; i < n; i++) {
    uint32_t r = rnd() % 64u;
    if (r < sizeof pick - 1)
      p[i] = (unsigned char)pick[r];
    else if (r < 60)
      p[i] = (unsigned char)('A' + r % 26u);
    else
      p[i] = (unsigned char)(0x80u + rnd() % 128u);
  }
}

/* ---- the encoders driven in chunks -------------------------------------- */

typedef enum { C_B64, C_QP } codec_kind;

/* Encode p[0..n) fed in chunks: cuts[] are the chunk lengths, repeated
 * until the input is used up (a 0 chunk is fed too: it must do nothing). */
static size_t encode_chunks(codec_kind k, const unsigned char *p, size_t n,
                            const size_t *cuts, size_t ncuts,
                            unsigned char *out)
{
  smtp_codec_b64 b;
  smtp_codec_qp q;
  size_t pos = 0, o = 0, c = 0;

  smtp_codec_b64_init(&b);
  smtp_codec_qp_init(&q);
  while (pos < n) {
    size_t len = cuts[c++ % ncuts], w;
    if (len > n - pos)
      len = n - pos;
    if (k == C_B64) {
      w = smtp_codec_b64_update(&b, p + pos, len, out + o);
      CHECK(w <= SMTP_CODEC_B64_BOUND(len));
    } else {
      w = smtp_codec_qp_update(&q, p + pos, len, out + o);
      CHECK(w <= SMTP_CODEC_QP_BOUND(len));
    }
    o += w;
    pos += len;
  }
  if (k == C_B64)
    o += smtp_codec_b64_final(&b, out + o);
  else
    o += smtp_codec_qp_final(&q, out + o);
  return o;
}

static size_t encode_whole(codec_kind k, const unsigned char *p, size_t n,
                           unsigned char *out)
{
  size_t all = n ? n : 1;
  return encode_chunks(k, p, n, &all, 1, out);
}

/* ---- references and decoders ---------------------------------------------- */

static const char alphabet[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 the plain way, then cut into lines of 76. */
static size_t ref_b64(const unsigned char *p, size_t n, unsigned char *out)
{
  static unsigned char flat[BIG * 2];
  size_t i, f = 0, o = 0;

  for (i = 0; i + 3 <= n; i += 3) {
    flat[f++] = (unsigned char)alphabet[p[i] >> 2];
    flat[f++] = (unsigned char)alphabet[(p[i] & 3) << 4 | p[i + 1] >> 4];
    flat[f++] = (unsigned char)alphabet[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
    flat[f++] = (unsigned char)alphabet[p[i + 2] & 63];
  }
  if (n - i == 1) {
    flat[f++] = (unsigned char)alphabet[p[i] >> 2];
    flat[f++] = (unsigned char)alphabet[(p[i] & 3) << 4];
    flat[f++] = '=';
    flat[f++] = '=';
  } else if (n - i == 2) {
    flat[f++] = (unsigned char)alphabet[p[i] >> 2];
    flat[f++] = (unsigned char)alphabet[(p[i] & 3) << 4 | p[i + 1] >> 4];
    flat[f++] = (unsigned char)alphabet[(p[i + 1] & 15) << 2];
    flat[f++] = '=';
  }
  for (i = 0; i < f; i += 76) {
    size_t m = f - i < 76 ? f - i : 76;
    memcpy(out + o, flat + i, m);
    o += m;
    out[o++] = '\r';
    out[o++] = '\n';
  }
  return o;
}

/* Decode base64 lines; -1 on anything but the alphabet, "=" at the end and
 * CRLF after every line of 76 and after the last. */
static long dec_b64(const unsigned char *p, size_t n, unsigned char *out)
{
  size_t i, o = 0, col = 0, q = 0;
  unsigned v = 0, pad = 0;

  for (i = 0; i < n; i++) {
    const char *a;
    if (p[i] == '\r') {
      if (i + 1 >= n || p[i + 1] != '\n' || col == 0 ||
          (col != 76 && i + 2 != n))
        return -1;
      i++;
      col = 0;
      continue;
    }
    if (++col > 76)
      return -1;
    if (p[i] == '=') {
      pad++;
      v <<= 6;
      q++;
    } else {
      if (pad || p[i] == 0 || (a = strchr(alphabet, p[i])) == NULL)
        return -1;
      v = v << 6 | (unsigned)(a - alphabet);
      q++;
    }
    if (q == 4) {
      out[o++] = (unsigned char)(v >> 16);
      if (pad < 2) out[o++] = (unsigned char)(v >> 8);
      if (pad < 1) out[o++] = (unsigned char)v;
      v = 0;
      q = 0;
    }
  }
  if (q != 0 || col != 0 || pad > 2)
    return -1;
  return (long)o;
}

/* Line breaks of every kind as CRLF: what QP must give back. */
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

static int is_ws(unsigned c)
{
  return c == ' ' || c == '\t';
}

static int qp_literal(unsigned c)
{
  return (c >= 33 && c <= 126 && c != '=') || is_ws(c);
}

/* Quoted-printable the simple way: split the normalized text into lines,
 * each line into tokens, then lay the tokens out greedily: a token may
 * reach column 76 only when it is the line's last, else 75. */
static size_t ref_qp(const unsigned char *p, size_t n, unsigned char *out)
{
  static unsigned char norm[BIG * 2];
  size_t m = normalize(p, n, norm), i = 0, o = 0;

  while (i < m) {
    size_t end = i, col = 0, j;
    int brk;
    while (end < m && norm[end] != '\r')
      end++;
    brk = end < m;
    for (j = i; j < end; j++) {
      unsigned c = norm[j];
      int last = j + 1 == end;
      size_t w = qp_literal(c) && !(is_ws(c) && last) ? 1 : 3;
      if (col + w > (last ? 76u : 75u)) {
        memcpy(out + o, "=\r\n", 3);
        o += 3;
        col = 0;
      }
      if (w == 1) {
        out[o++] = (unsigned char)c;
      } else {
        out[o++] = '=';
        out[o++] = (unsigned char)"0123456789ABCDEF"[c >> 4];
        out[o++] = (unsigned char)"0123456789ABCDEF"[c & 15];
      }
      col += w;
    }
    if (brk) {
      out[o++] = '\r';
      out[o++] = '\n';
    }
    i = end + (brk ? 2 : 0);
  }
  return o;
}

static int hexval(unsigned c)
{
  if (c >= '0' && c <= '9') return (int)c - '0';
  if (c >= 'A' && c <= 'F') return (int)c - 'A' + 10;
  return -1;             /* lowercase is not what we write */
}

/* Decode QP, checking the shape of what we write: -1 on a line over 76,
 * a SPACE or TAB ending a line, a byte that should have been encoded, a
 * bare CR or LF, or an "=" followed by neither two hex digits nor CRLF. */
static long dec_qp(const unsigned char *p, size_t n, unsigned char *out)
{
  size_t i, o = 0, col = 0;

  for (i = 0; i < n; i++) {
    unsigned c = p[i];
    if (c == '\r') {
      if (i + 1 >= n || p[i + 1] != '\n' || col > 76)
        return -1;
      if (i > 0 && is_ws(p[i - 1]))
        return -1;
      out[o++] = '\r';
      out[o++] = '\n';
      i++;
      col = 0;
    } else if (c == '=') {
      if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') {
        if (col + 1 > 76)
          return -1;
        i += 2;
        col = 0;
      } else if (i + 2 < n && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
        out[o++] = (unsigned char)(hexval(p[i + 1]) << 4 | hexval(p[i + 2]));
        i += 2;
        col += 3;
      } else {
        return -1;
      }
    } else if (qp_literal(c)) {
      out[o++] = (unsigned char)c;
      col++;
    } else {
      return -1;
    }
  }
  if (col > 76 || (n > 0 && is_ws(p[n - 1])))
    return -1;
  return (long)o;
}

/* ---- the checks every input gets --------------------------------------- */

static void check_b64_input(const unsigned char *p, size_t n, int every_split)
{
  static const size_t fixed[] = { 1, 2, 3, 4, 5, 7, 56, 57, 58, 113, 114, 4096 };
  size_t a = encode_whole(C_B64, p, n, out_a), b, i, cuts[2];
  long d;

  b = ref_b64(p, n, ref_buf);
  CHECK_MEM(out_a, a, ref_buf, b);
  d = dec_b64(out_a, a, dec_buf);
  CHECK(d >= 0);
  if (d >= 0)
    CHECK_MEM(dec_buf, (size_t)d, p, n);
  for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    b = encode_chunks(C_B64, p, n, &fixed[i], 1, out_b);
    CHECK_MEM(out_b, b, out_a, a);
  }
  for (i = 0; i < 20; i++) {
    size_t r[5];
    r[0] = rnd() % 4; r[1] = rnd() % 60; r[2] = rnd() % 200 + 1;
    r[3] = rnd() % 3; r[4] = rnd() % 1000 + 1;
    b = encode_chunks(C_B64, p, n, r, 5, out_b);
    CHECK_MEM(out_b, b, out_a, a);
  }
  if (!every_split)
    return;
  for (i = 0; i <= n; i++) {         /* two pieces, cut at i */
    cuts[0] = i;
    cuts[1] = n - i ? n - i : 1;
    b = encode_chunks(C_B64, p, n, cuts, 2, out_b);
    CHECK_MEM(out_b, b, out_a, a);
  }
}

static void check_qp_input(const unsigned char *p, size_t n, int every_split)
{
  static const size_t fixed[] = { 1, 2, 3, 5, 7, 75, 76, 77, 4096 };
  size_t a = encode_whole(C_QP, p, n, out_a), b, i, cuts[2];
  long d;

  b = ref_qp(p, n, ref_buf);
  CHECK_MEM(out_a, a, ref_buf, b);
  d = dec_qp(out_a, a, dec_buf);
  CHECK(d >= 0);
  b = normalize(p, n, ref_buf);
  if (d >= 0)
    CHECK_MEM(dec_buf, (size_t)d, ref_buf, b);
  for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    b = encode_chunks(C_QP, p, n, &fixed[i], 1, out_b);
    CHECK_MEM(out_b, b, out_a, a);
  }
  for (i = 0; i < 20; i++) {
    size_t r[5];
    r[0] = rnd() % 4; r[1] = rnd() % 80; r[2] = rnd() % 200 + 1;
    r[3] = rnd() % 3; r[4] = rnd() % 1000 + 1;
    b = encode_chunks(C_QP, p, n, r, 5, out_b);
    CHECK_MEM(out_b, b, out_a, a);
  }
  if (!every_split)
    return;
  for (i = 0; i <= n; i++) {
    cuts[0] = i;
    cuts[1] = n - i ? n - i : 1;
    b = encode_chunks(C_QP, p, n, cuts, 2, out_b);
    CHECK_MEM(out_b, b, out_a, a);
  }
}

/* ---- base64 -------------------------------------------------------------- */

typedef struct {
  const char *in;
  size_t in_len;           /* 0: strlen */
  const char *out;
} vector;

static void b64_vectors(void)
{
  /* RFC 4648 section 10, each line ended by CRLF */
  static const vector v[] = {
    { "", 0, "" },
    { "f", 0, "Zg==\r\n" },
    { "fo", 0, "Zm8=\r\n" },
    { "foo", 0, "Zm9v\r\n" },
    { "foob", 0, "Zm9vYg==\r\n" },
    { "fooba", 0, "Zm9vYmE=\r\n" },
    { "foobar", 0, "Zm9vYmFy\r\n" },
    { "\0\xff\xfe", 3, "AP/+\r\n" },
    { "\xfb\xff", 2, "+/8=\r\n" },
  };
  size_t i;

  h_begin("b64", "RFC 4648 vectors");
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    size_t n = v[i].in_len ? v[i].in_len : strlen(v[i].in);
    size_t a = encode_whole(C_B64, (const unsigned char *)v[i].in, n, out_a);
    CHECK_MEM(out_a, a, v[i].out, strlen(v[i].out));
    check_b64_input((const unsigned char *)v[i].in, n, 1);
  }
  h_end();
}

static void b64_lines(void)
{
  static const size_t sizes[] = { 55, 56, 57, 58, 59, 113, 114, 115, 171 };
  unsigned char want[400];
  size_t i, k;

  h_begin("b64", "line wrapping at 57/58/114");
  memset(in_buf, 0, 200);
  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i], w = 0, a, full = n / 57, rest = n % 57;
    for (k = 0; k < full; k++) {
      memset(want + w, 'A', 76);
      memcpy(want + w + 76, "\r\n", 2);
      w += 78;
    }
    if (rest) {
      size_t chars = (rest + 2) / 3 * 4;
      memset(want + w, 'A', chars);
      if (rest % 3 == 1) memcpy(want + w + chars - 2, "==", 2);
      if (rest % 3 == 2) want[w + chars - 1] = '=';
      memcpy(want + w + chars, "\r\n", 2);
      w += chars + 2;
    }
    a = encode_whole(C_B64, in_buf, n, out_a);
    CHECK_MEM(out_a, a, want, w);
    check_b64_input(in_buf, n, 1);
  }
  /* 57 bytes are exactly one line: CRLF comes with the line, final adds
   * nothing */
  {
    smtp_codec_b64 b;
    smtp_codec_b64_init(&b);
    CHECK_INT(smtp_codec_b64_update(&b, in_buf, 57, out_a), 78);
    CHECK_INT(smtp_codec_b64_final(&b, out_a), 0);
    CHECK_INT(smtp_codec_b64_final(&b, out_a), 0);
  }
  h_end();
}

/* The bound holds from every state, and is reached. */
static void b64_bound(void)
{
  unsigned pre, n;
  int reached = 0;

  h_begin("b64", "bound from every state");
  fill_random(in_buf, 400);
  for (pre = 0; pre < 57; pre++) {      /* all (pending, column) pairs */
    for (n = 0; n < 300; n++) {
      smtp_codec_b64 b;
      size_t w;
      smtp_codec_b64_init(&b);
      (void)smtp_codec_b64_update(&b, in_buf, pre, out_a);
      w = smtp_codec_b64_update(&b, in_buf + pre, n, out_a);
      CHECK(w <= SMTP_CODEC_B64_BOUND(n));
      CHECK_INT(smtp_codec_b64_bound(n), SMTP_CODEC_B64_BOUND(n));
      if (w == SMTP_CODEC_B64_BOUND(n) && n > 0)
        reached = 1;
      CHECK(smtp_codec_b64_final(&b, out_a) <= SMTP_CODEC_FINAL_MAX);
    }
  }
  CHECK(reached);
  CHECK_INT(SMTP_CODEC_B64_BOUND(0), 0);
  CHECK_INT(SMTP_CODEC_B64_BOUND(1), 6);        /* "xx==" after 72 */
  CHECK_INT(SMTP_CODEC_B64_BOUND(57), 78);
  h_end();
}

static void b64_random(void)
{
  static const size_t sizes[] = { 0, 1, 2, 3, 4, 100, 171, 256, 1000, 4099,
                                  65536 + 7, BIG };
  size_t i;
  char name[32];

  for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    snprintf(name, sizeof name, "random %zu bytes", sizes[i]);
    h_begin("b64", name);
    fill_random(in_buf, sizes[i]);
    check_b64_input(in_buf, sizes[i], sizes[i] <= 1000);
    h_end();
  }
}

static void b64_bytewise(void)
{
  static const size_t one = 1;
  size_t n = 700, a, b;

  h_begin("b64", "one byte at a time");
  fill_random(in_buf, n);
  a = encode_whole(C_B64, in_buf, n, out_a);
  b = encode_chunks(C_B64, in_buf, n, &one, 1, out_b);
  CHECK_MEM(out_b, b, out_a, a);
  h_end();
}

/* ---- quoted-printable ---------------------------------------------------- */

static void qp_vectors(void)
{
  static char x73[74], x75[76], x76[77], x77[78];
  static char buf[16][200];
  size_t i;
  vector v[40];
  size_t nv = 0;

  memset(x73, 'x', 73);
  memset(x75, 'x', 75);
  memset(x76, 'x', 76);
  memset(x77, 'x', 77);
#define V(a, b) do { v[nv].in = (a); v[nv].in_len = 0; v[nv].out = (b); nv++; } while (0)
#define VB(a, n, b) do { v[nv].in = (a); v[nv].in_len = (n); v[nv].out = (b); nv++; } while (0)
  V("", "");
  V("hello", "hello");
  V("a=b", "a=3Db");
  V("a  b\tc", "a  b\tc");
  V("trailing \r\nnext", "trailing=20\r\nnext");
  V("tab\t\r\n", "tab=09\r\n");
  V("two  \r\n", "two =20\r\n");
  V("end ", "end=20");
  V("end\t", "end=09");
  V(" ", "=20");
  V("caf\xc3\xa9", "caf=C3=A9");
  VB("\x80\xff\0\x7f\x1b", 5, "=80=FF=00=7F=1B");
  V("a\rb\nc\r\nd\n\re", "a\r\nb\r\nc\r\nd\r\n\r\ne");
  V("\r\r\n\n", "\r\n\r\n\r\n");
  V("x \r", "x=20\r\n");
  V(".start\r\n.\r\n", ".start\r\n.\r\n");
  V("Now's the time for all folk to come to the aid of their country.",
    "Now's the time for all folk to come to the aid of their country.");
  /* a line of exactly 76 stays whole; 77 breaks after 75 */
  V(x76, x76);
  snprintf(buf[0], sizeof buf[0], "%s\r\n%s", x76, x76);
  V(buf[0], buf[0]);
  snprintf(buf[1], sizeof buf[1], "%s=\r\nxx", x75);
  V(x77, buf[1]);
  /* 75 characters and "=": the =3D does not fit, never split */
  snprintf(buf[2], sizeof buf[2], "%s=", x75);
  snprintf(buf[3], sizeof buf[3], "%s=\r\n=3D", x75);
  V(buf[2], buf[3]);
  /* 73 and "=" end at 76 exactly, unless something follows */
  snprintf(buf[4], sizeof buf[4], "%s=", x73);
  snprintf(buf[5], sizeof buf[5], "%s=3D", x73);
  V(buf[4], buf[5]);
  snprintf(buf[6], sizeof buf[6], "%s=y", x73);
  snprintf(buf[7], sizeof buf[7], "%s=\r\n=3Dy", x73);
  V(buf[6], buf[7]);
  /* a space at 76: encoded at the end, literal before more text */
  snprintf(buf[8], sizeof buf[8], "%s ", x75);
  snprintf(buf[9], sizeof buf[9], "%s=\r\n=20", x75);
  V(buf[8], buf[9]);
  snprintf(buf[10], sizeof buf[10], "%s y", x75);
  snprintf(buf[11], sizeof buf[11], "%s=\r\n y", x75);
  V(buf[10], buf[11]);
  snprintf(buf[12], sizeof buf[12], "%s \r\n", x73);
  snprintf(buf[13], sizeof buf[13], "%s=20\r\n", x73);
  V(buf[12], buf[13]);
  /* a run of "=": 25 per line, then the soft break */
  V("==============================",
    "=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=3D=\r\n"
    "=3D=3D=3D=3D=3D");
#undef V
#undef VB
  h_begin("qp", "vectors");
  for (i = 0; i < nv; i++) {
    size_t n = v[i].in_len ? v[i].in_len : strlen(v[i].in);
    size_t a = encode_whole(C_QP, (const unsigned char *)v[i].in, n, out_a);
    CHECK_MEM(out_a, a, v[i].out, strlen(v[i].out));
    check_qp_input((const unsigned char *)v[i].in, n, 1);
  }
  h_end();
}

static void qp_runs(void)
{
  static const unsigned char fills[] = { '=', 0xff, ' ', '\t', 'x', '\r', '\n' };
  size_t f, n;

  h_begin("qp", "long runs of one byte");
  for (f = 0; f < sizeof fills; f++)
    for (n = 1; n < 400; n += 37) {
      memset(in_buf, fills[f], n);
      check_qp_input(in_buf, n, n < 200);
    }
  h_end();
}

/* Runs of text around column 76 with every kind of byte at the edge. */
static void qp_edges(void)
{
  static const char edge[][4] = { "x", "=", " ", "\t", "\r", "\n", "\r\n",
                                  "\xe9", " \r", "= " };
  size_t e, f, len;

  h_begin("qp", "every byte kind at columns 70 to 80");
  for (len = 70; len <= 80; len++)
    for (e = 0; e < sizeof edge / sizeof edge[0]; e++)
      for (f = 0; f < sizeof edge / sizeof edge[0]; f++) {
        size_t n = len, le = strlen(edge[e]), lf = strlen(edge[f]);
        memset(in_buf, 'a', len);
        memcpy(in_buf + n, edge[e], le);
        n += le;
        memcpy(in_buf + n, edge[f], lf);
        n += lf;
        in_buf[n++] = 'z';
        check_qp_input(in_buf, n, 1);
        check_qp_input(in_buf, n - 1, 0);
      }
  h_end();
}

static void qp_bound(void)
{
  unsigned pre, n, f;

  h_begin("qp", "bound from many states");
  for (f = 0; f < 3; f++) {
    if (f == 0) memset(in_buf, 0xff, 600);
    if (f == 1) fill_text(in_buf, 600);
    if (f == 2) fill_random(in_buf, 600);
    for (pre = 0; pre < 160; pre++)
      for (n = 0; n < 300; n += 1 + n / 16) {
        smtp_codec_qp q;
        size_t w;
        smtp_codec_qp_init(&q);
        (void)smtp_codec_qp_update(&q, in_buf, pre, out_a);
        w = smtp_codec_qp_update(&q, in_buf + pre, n, out_a);
        CHECK(w <= SMTP_CODEC_QP_BOUND(n));
        CHECK(smtp_codec_qp_final(&q, out_a) <= SMTP_CODEC_FINAL_MAX);
        CHECK_INT(smtp_codec_qp_bound(n), SMTP_CODEC_QP_BOUND(n));
      }
  }
  h_end();
}

static void qp_random(void)
{
  static const size_t sizes[] = { 0, 1, 2, 3, 76, 77, 200, 1000, 4099,
                                  65536 + 7, BIG / 2 };
  size_t i, k;
  char name[40];

  for (k = 0; k < 2; k++)
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      snprintf(name, sizeof name, "random %s %zu bytes", k ? "bytes" : "text",
               sizes[i]);
      h_begin("qp", name);
      if (k)
        fill_random(in_buf, sizes[i]);
      else
        fill_text(in_buf, sizes[i]);
      check_qp_input(in_buf, sizes[i], sizes[i] <= 1000);
      h_end();
    }
}

static void qp_bytewise(void)
{
  static const size_t one = 1;
  size_t n = 3000, a, b;

  h_begin("qp", "one byte at a time");
  fill_text(in_buf, n);
  a = encode_whole(C_QP, in_buf, n, out_a);
  b = encode_chunks(C_QP, in_buf, n, &one, 1, out_b);
  CHECK_MEM(out_b, b, out_a, a);
  h_end();
}

/* ---- transcoding --------------------------------------------------------- */

typedef struct {
  int rc;                       /* the first error, or SMTP_CODEC_OK */
  smtp_codec_fault fault;
  size_t len;                   /* output bytes */
} conv_result;

/* Convert p[0..n) into charset to, fed in chunks as in encode_chunks,
 * through an output buffer of cap bytes. */
static conv_result convert_chunks(const char *to, const unsigned char *p,
                                  size_t n, const size_t *cuts, size_t ncuts,
                                  size_t cap, unsigned char *out)
{
  smtp_codec_iconv s;
  conv_result r;
  size_t pos = 0, c = 0, rounds = 0;

  memset(&r, 0, sizeof r);
  r.rc = smtp_codec_iconv_open(&s, to);
  CHECK_INT(r.rc, SMTP_CODEC_OK);
  if (r.rc != SMTP_CODEC_OK)
    return r;
  while (pos < n && r.rc == SMTP_CODEC_OK) {
    size_t len = cuts[c++ % ncuts], q = 0;
    if (len > n - pos)
      len = n - pos;
    do {
      size_t used, w;
      r.rc = smtp_codec_iconv_update(&s, p + pos + q, len - q, &used,
                                     out + r.len, cap, &w);
      CHECK(used <= len - q && w <= cap);
      CHECK(r.rc != SMTP_CODEC_OK || used > 0 || len == q);
      q += used;
      r.len += w;
      if (++rounds > 10 * n + 100) {
        CHECK(!"no progress");
        r.rc = -100;
      }
    } while (r.rc == SMTP_CODEC_OK && q < len);
    pos += len;
  }
  if (r.rc == SMTP_CODEC_OK) {
    size_t w;
    r.rc = smtp_codec_iconv_final(&s, out + r.len, cap, &w);
    r.len += w;
  }
  r.fault = *smtp_codec_iconv_fault(&s);
  CHECK_INT(r.fault.code, r.rc == SMTP_CODEC_ESYS ? 0 : r.rc);
  if (r.rc != SMTP_CODEC_OK) {   /* errors stay set */
    size_t used = 9, w = 9;
    CHECK_INT(smtp_codec_iconv_update(&s, (const unsigned char *)"a", 1,
                                      &used, out + r.len, cap, &w), r.rc);
    CHECK_INT(used, 0);
    CHECK_INT(w, 0);
  }
  smtp_codec_iconv_close(&s);
  smtp_codec_iconv_close(&s);
  return r;
}

static int fault_eq(const smtp_codec_fault *a, const smtp_codec_fault *b)
{
  return a->code == b->code && a->len == b->len && a->cp == b->cp &&
         a->pos == b->pos && memcmp(a->bytes, b->bytes, a->len) == 0;
}

/* Every way of cutting the input gives the result of the whole. */
static conv_result convert_every_way(const char *to, const unsigned char *p,
                                     size_t n)
{
  static const size_t fixed[] = { 1, 2, 3, 5, 7 };
  static unsigned char got[4096];
  size_t all = n ? n : 1, i, cuts[2];
  conv_result whole = convert_chunks(to, p, n, &all, 1, sizeof out_a, out_a);
  conv_result r;

  for (i = 0; i <= n; i++) {
    cuts[0] = i;
    cuts[1] = n - i ? n - i : 1;
    r = convert_chunks(to, p, n, cuts, 2, sizeof got, got);
    CHECK_INT(r.rc, whole.rc);
    CHECK_MEM(got, r.len, out_a, whole.len);
    CHECK(fault_eq(&r.fault, &whole.fault));
  }
  for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    /* and through the smallest output buffer allowed */
    r = convert_chunks(to, p, n, &fixed[i], 1, SMTP_CODEC_ICONV_OUT_MIN, got);
    CHECK_INT(r.rc, whole.rc);
    CHECK_MEM(got, r.len, out_a, whole.len);
    CHECK(fault_eq(&r.fault, &whole.fault));
  }
  return whole;
}

static void iconv_charsets(void)
{
  static const struct {
    const char *to, *in, *out;
  } v[] = {
    { "windows-1252", "\xe2\x82\xac caf\xc3\xa9 \xe2\x80\x9cok\xe2\x80\x9d",
      "\x80 caf\xe9 \x93ok\x94" },
    { "iso-8859-1", "caf\xc3\xa9 \xc3\x9f \xc2\xa3", "caf\xe9 \xdf \xa3" },
    { "ISO-8859-2", "\xc5\x81\xc3\xb3\x64\xc5\xba", "\xa3\xf3\x64\xbc" },
    { "iso-8859-15", "\xe2\x82\xac\xc5\x93", "\xa4\xbd" },
    { "koi8-r", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
      "\xf0\xd2\xc9\xd7\xc5\xd4" },
    { "Shift_JIS", "\xe6\x97\xa5\xe6\x9c\xac a", "\x93\xfa\x96\x7b a" },
    { "gb2312", "\xe4\xb8\xad\xe6\x96\x87", "\xd6\xd0\xce\xc4" },
    { "UTF-8", "\xf0\x9f\x98\x80 ok", "\xf0\x9f\x98\x80 ok" },
    /* a stateful charset: final returns it to ASCII */
    { "ISO-2022-JP", "\xe6\x97\xa5", "\x1b$BF|\x1b(B" },
    { "ISO-2022-JP", "a\xe6\x97\xa5" "b", "a\x1b$BF|\x1b(Bb" },
  };
  size_t i;

  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    conv_result r;
    h_begin("iconv", v[i].to);
    r = convert_every_way(v[i].to, (const unsigned char *)v[i].in,
                          strlen(v[i].in));
    CHECK_INT(r.rc, SMTP_CODEC_OK);
    CHECK_MEM(out_a, r.len, v[i].out, strlen(v[i].out));
    h_end();
  }
}

static void iconv_refusals(void)
{
  static const struct {
    const char *name, *to, *in;
    int rc;
    const char *bytes;
    long cp;
    unsigned long long pos;
    const char *before;       /* the output of what came before */
  } v[] = {
    { "euro into latin-1", "iso-8859-1", "Price: 5 \xe2\x82\xac.",
      SMTP_CODEC_EUNMAPPABLE, "\xe2\x82\xac", 0x20ac, 9, "Price: 5 " },
    { "euro after accents", "ISO-8859-1", "caf\xc3\xa9 \xc3\xa0 \xe2\x82\xac",
      SMTP_CODEC_EUNMAPPABLE, "\xe2\x82\xac", 0x20ac, 7, "caf\xe9 \xe0 " },
    { "emoji into windows-1252", "windows-1252", "ok \xf0\x9f\x98\x80",
      SMTP_CODEC_EUNMAPPABLE, "\xf0\x9f\x98\x80", 0x1f600, 3, "ok " },
    { "latin into koi8-r", "koi8-r", "\xd0\x9f\xc3\xa9",
      SMTP_CODEC_EUNMAPPABLE, "\xc3\xa9", 0xe9, 1, "\xf0" },
    { "hangul into gb2312", "gb2312", "\xe4\xb8\xad\xea\xb0\x80",
      SMTP_CODEC_EUNMAPPABLE, "\xea\xb0\x80", 0xac00, 1, "\xd6\xd0" },
    { "cyrillic fits shift_jis", "shift_jis", "\xd0\x9f",
      SMTP_CODEC_OK, "", 0, 0, "\x84\x50" },
    { "invalid byte", "iso-8859-1", "ab\xff" "cd",
      SMTP_CODEC_EUTF8, "\xff", -1, 2, "ab" },
    { "lone continuation", "iso-8859-1", "a\x80",
      SMTP_CODEC_EUTF8, "\x80", -1, 1, "a" },
    { "cut by another character", "iso-8859-1", "a\xe2\x82" "b",
      SMTP_CODEC_EUTF8, "\xe2\x82", -1, 1, "a" },
    { "overlong", "iso-8859-1", "\xc3\xa9\xc0\xaf",
      SMTP_CODEC_EUTF8, "\xc0", -1, 1, "\xe9" },
    { "overlong 3 bytes", "iso-8859-1", "\xe0\x80\xaf",
      SMTP_CODEC_EUTF8, "\xe0", -1, 0, "" },
    { "surrogate", "UTF-8", "x\xed\xa0\x80",
      SMTP_CODEC_EUTF8, "\xed", -1, 1, "x" },
    { "above U+10FFFF", "UTF-8", "\xf4\x90\x80\x80",
      SMTP_CODEC_EUTF8, "\xf4", -1, 0, "" },
    { "cut at the end", "iso-8859-1", "ab\xf0\x9f\x98",
      SMTP_CODEC_EUTF8, "\xf0\x9f\x98", -1, 2, "ab" },
  };
  size_t i;

  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    conv_result r;
    h_begin("iconv refuses", v[i].name);
    r = convert_every_way(v[i].to, (const unsigned char *)v[i].in,
                          strlen(v[i].in));
    CHECK_INT(r.rc, v[i].rc);
    CHECK_INT(r.fault.code, v[i].rc);
    CHECK_MEM(r.fault.bytes, r.fault.len, v[i].bytes, strlen(v[i].bytes));
    if (v[i].rc != SMTP_CODEC_OK) {
      CHECK_INT(r.fault.cp, v[i].cp);
      CHECK_INT(r.fault.pos, v[i].pos);
    }
    CHECK_MEM(out_a, r.len, v[i].before, strlen(v[i].before));
    h_end();
  }
}

static void iconv_open_close(void)
{
  smtp_codec_iconv s;
  unsigned char out[64];
  size_t used, w;
  char longname[80];

  h_begin("iconv", "open and close");
  CHECK_INT(smtp_codec_iconv_open(&s, "x-no-such-charset"), SMTP_CODEC_ECHARSET);
  smtp_codec_iconv_close(&s);
  CHECK_INT(smtp_codec_iconv_update(&s, (const unsigned char *)"a", 1, &used,
                                    out, sizeof out, &w), SMTP_CODEC_ESTATE);
  CHECK_INT(smtp_codec_iconv_final(&s, out, sizeof out, &w), SMTP_CODEC_ESTATE);
  CHECK_INT(smtp_codec_iconv_open(&s, ""), SMTP_CODEC_ECHARSET);
  CHECK_INT(smtp_codec_iconv_open(&s, "iso-8859-1//TRANSLIT"),
            SMTP_CODEC_ECHARSET);
  CHECK_INT(smtp_codec_iconv_open(&s, "iso-8859-1//IGNORE"),
            SMTP_CODEC_ECHARSET);
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  CHECK_INT(smtp_codec_iconv_open(&s, longname), SMTP_CODEC_ECHARSET);
  CHECK_STR(smtp_codec_strerror(SMTP_CODEC_EUNMAPPABLE),
            "character not in the charset");

  /* positions count from 0 again after final */
  CHECK_INT(smtp_codec_iconv_open(&s, "iso-8859-1"), SMTP_CODEC_OK);
  CHECK_INT(smtp_codec_iconv_update(&s, (const unsigned char *)"abc", 3, &used,
                                    out, sizeof out, &w), SMTP_CODEC_OK);
  CHECK_INT(used, 3);
  CHECK_INT(w, 3);
  CHECK_INT(smtp_codec_iconv_final(&s, out, sizeof out, &w), SMTP_CODEC_OK);
  CHECK_INT(w, 0);
  CHECK_INT(smtp_codec_iconv_update(&s, (const unsigned char *)"x\xe2\x82\xac",
                                    4, &used, out, sizeof out, &w),
            SMTP_CODEC_EUNMAPPABLE);
  CHECK_INT(used, 1);
  CHECK_INT(w, 1);
  CHECK_INT(smtp_codec_iconv_fault(&s)->pos, 1);
  CHECK_INT(smtp_codec_iconv_final(&s, out, sizeof out, &w),
            SMTP_CODEC_EUNMAPPABLE);
  smtp_codec_iconv_close(&s);
  h_end();
}

/* A long text through a small output buffer, and random UTF-8 cut at
 * random: equal to the whole conversion. */
static void iconv_long(void)
{
  static const char *const words[] = {
    "caf\xc3\xa9 ", "na\xc3\xafve ", "\xe2\x82\xac", "x", " ", "\r\n",
    "\xc5\x93", "\xc5\xa0", "abc"
  };
  static const size_t fixed[] = { 1, 3, 17, 4096 };
  size_t n = 0, i, all;
  conv_result whole, r;

  h_begin("iconv", "long text, small buffers");
  while (n < 60000) {
    const char *w = words[rnd() % (sizeof words / sizeof words[0])];
    memcpy(in_buf + n, w, strlen(w));
    n += strlen(w);
  }
  all = n;
  whole = convert_chunks("windows-1252", in_buf, n, &all, 1, sizeof out_a,
                         out_a);
  CHECK_INT(whole.rc, SMTP_CODEC_OK);
  for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    r = convert_chunks("windows-1252", in_buf, n, &fixed[i], 1,
                       SMTP_CODEC_ICONV_OUT_MIN + i * 7, out_b);
    CHECK_INT(r.rc, SMTP_CODEC_OK);
    CHECK_MEM(out_b, r.len, out_a, whole.len);
  }
  /* ISO-8859-1 has no euro sign nor œ: the first of them is refused */
  r = convert_chunks("iso-8859-1", in_buf, n, &fixed[2], 1, 64, out_b);
  CHECK_INT(r.rc, SMTP_CODEC_EUNMAPPABLE);
  CHECK(r.fault.cp == 0x20ac || r.fault.cp == 0x153 || r.fault.cp == 0x160);
  /* UTF-8 to UTF-8 through random cuts */
  {
    size_t cuts[7];
    for (i = 0; i < 7; i++)
      cuts[i] = rnd() % 9;
    cuts[3] = 1;
    r = convert_chunks("UTF-8", in_buf, n, cuts, 7, 40, out_b);
    CHECK_INT(r.rc, SMTP_CODEC_OK);
    CHECK_MEM(out_b, r.len, in_buf, n);
  }
  h_end();
}

/* ---- the text scan ------------------------------------------------------ */

/* Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF), decoded the slow way. */
static int ref_utf8(const unsigned char *p, size_t n)
{
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i], len, k;
    uint32_t cp, min;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xc0 && c < 0xe0) { len = 2; cp = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c < 0xf0) { len = 3; cp = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c < 0xf8) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n - i < len) return 0;
    for (k = 1; k < len; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += len;
  }
  return 1;
}

/* A byte at a time: CRLF, lone CR and lone LF each end a line. */
static void ref_scan(const unsigned char *p, size_t n, smtp_codec_text_info *r)
{
  size_t i, line = 0;
  memset(r, 0, sizeof *r);
  for (i = 0; i < n; i++) {
    if (p[i] == '\r' || p[i] == '\n') {
      if (line > r->longest) r->longest = line;
      line = 0;
      if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n') {
        i++;
        r->crlf_len += 2;
      } else {
        r->crlf_len += 2;
      }
      continue;
    }
    r->high += p[i] >= 0x80;
    r->nul += p[i] == 0;
    r->crlf_len++;
    line++;
  }
  if (line > r->longest) r->longest = line;
  r->utf8 = ref_utf8(p, n);
}

static int scan_matches(const unsigned char *p, size_t n)
{
  smtp_codec_text_info got, want;
  ref_scan(p, n, &want);
  smtp_codec_text_scan(p, n, &got);
  return got.high == want.high && got.nul == want.nul && got.longest == want.longest &&
         got.crlf_len == want.crlf_len && got.utf8 == want.utf8;
}

/* Every length up to 200 at every alignment, and random texts with long
 * lines, NULs, bytes just below and above the word test's limits (0x0f,
 * 0x10, 0x7f, 0x80), against the byte-at-a-time reference. */
static void text_scan(void)
{
  static const unsigned char edge[] = { 0x00, 0x0f, 0x10, '\r', '\n', 0x7f, 0x80, 0xc3, 0xa9, 'a', 'b' };
  size_t n, off, bad = 0, runs = 0;
  h_begin("text scan", "against a byte-at-a-time reference");
  for (n = 0; n <= 200; n++)
    for (off = 0; off < 8; off++) {
      size_t i;
      fill_text(in_buf + off, n);
      for (i = 0; i < n; i += 1 + rnd() % 40u) in_buf[off + i] = edge[rnd() % sizeof edge];
      bad += !scan_matches(in_buf + off, n);
      runs++;
    }
  for (n = 0; n < 300; n++) {
    size_t len = rnd() % 20000u, i;
    fill_text(in_buf, len);
    /* long lines: most line breaks taken out */
    if (n % 3 == 0)
      for (i = 0; i < len; i++)
        if ((in_buf[i] == '\r' || in_buf[i] == '\n') && rnd() % 8u) in_buf[i] = 'x';
    if (n % 5 == 0) fill_random(in_buf, len);
    bad += !scan_matches(in_buf, len);
    runs++;
  }
  CHECK(runs > 1900);
  CHECK_INT(bad, 0);
  h_end();
}

int main(void)
{
  /* Keep glibc's ISO-2022-JP module, and the CJK libraries it needs,
   * loaded for the whole run.  Loaded anew after gb2312 has come and gone,
   * they make valgrind 3.19 report a false invalid read inside ld.so (an
   * 8-byte strncmp over "$ORIGIN" in is_dst). */
  smtp_codec_iconv hold;
  int held = smtp_codec_iconv_open(&hold, "ISO-2022-JP") == SMTP_CODEC_OK;

  b64_vectors();
  b64_lines();
  b64_bound();
  b64_random();
  b64_bytewise();
  qp_vectors();
  qp_runs();
  qp_edges();
  qp_bound();
  qp_random();
  qp_bytewise();
  iconv_charsets();
  iconv_refusals();
  iconv_open_close();
  iconv_long();
  text_scan();
  if (held)
    smtp_codec_iconv_close(&hold);
  return h_summary();
}
