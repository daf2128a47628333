/*
 * codec.c -- base64, quoted-printable and UTF-8 transcoding for bodies.
 * The contract is in codec.h; this file says why things are done the way
 * they are.
 *
 * Both encoders run a slow path one step at a time until the state is
 * simple (nothing pending, at a known column), then a fast path over whole
 * runs of input: whole 57-byte lines for base64; for quoted-printable, runs
 * that fit on the line without a decision to wait for (eight plain ASCII
 * bytes at a time where it can).  The slow path is what makes any split
 * of the input give the same output; the fast path is what makes it quick.
 */
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"

/* ---- base64 ------------------------------------------------------------ */

#define B64_LINE_IN  57u   /* input bytes of one 76-character line */
#define B64_LINE_OUT 76u

/* The two characters of every 12-bit value: one lookup and one 2-byte
 * store per half of a 3-byte group, and no branch. */
#define B64_ROW(c) \
 c,'A', c,'B', c,'C', c,'D', c,'E', c,'F', c,'G', c,'H', \
 c,'I', c,'J', c,'K', c,'L', c,'M', c,'N', c,'O', c,'P', \
 c,'Q', c,'R', c,'S', c,'T', c,'U', c,'V', c,'W', c,'X', \
 c,'Y', c,'Z', c,'a', c,'b', c,'c', c,'d', c,'e', c,'f', \
 c,'g', c,'h', c,'i', c,'j', c,'k', c,'l', c,'m', c,'n', \
 c,'o', c,'p', c,'q', c,'r', c,'s', c,'t', c,'u', c,'v', \
 c,'w', c,'x', c,'y', c,'z', c,'0', c,'1', c,'2', c,'3', \
 c,'4', c,'5', c,'6', c,'7', c,'8', c,'9', c,'+', c,'/'
static const unsigned char b64_pairs[8192] = {
  B64_ROW('A'), B64_ROW('B'), B64_ROW('C'), B64_ROW('D'),
  B64_ROW('E'), B64_ROW('F'), B64_ROW('G'), B64_ROW('H'),
  B64_ROW('I'), B64_ROW('J'), B64_ROW('K'), B64_ROW('L'),
  B64_ROW('M'), B64_ROW('N'), B64_ROW('O'), B64_ROW('P'),
  B64_ROW('Q'), B64_ROW('R'), B64_ROW('S'), B64_ROW('T'),
  B64_ROW('U'), B64_ROW('V'), B64_ROW('W'), B64_ROW('X'),
  B64_ROW('Y'), B64_ROW('Z'), B64_ROW('a'), B64_ROW('b'),
  B64_ROW('c'), B64_ROW('d'), B64_ROW('e'), B64_ROW('f'),
  B64_ROW('g'), B64_ROW('h'), B64_ROW('i'), B64_ROW('j'),
  B64_ROW('k'), B64_ROW('l'), B64_ROW('m'), B64_ROW('n'),
  B64_ROW('o'), B64_ROW('p'), B64_ROW('q'), B64_ROW('r'),
  B64_ROW('s'), B64_ROW('t'), B64_ROW('u'), B64_ROW('v'),
  B64_ROW('w'), B64_ROW('x'), B64_ROW('y'), B64_ROW('z'),
  B64_ROW('0'), B64_ROW('1'), B64_ROW('2'), B64_ROW('3'),
  B64_ROW('4'), B64_ROW('5'), B64_ROW('6'), B64_ROW('7'),
  B64_ROW('8'), B64_ROW('9'), B64_ROW('+'), B64_ROW('/')
};

/* One group of 24 bits (the first byte in the high bits). */
static unsigned char *b64_group(unsigned char *o, uint32_t v)
{
  memcpy(o, b64_pairs + 2u * (v >> 12), 2);
  memcpy(o + 2, b64_pairs + 2u * (v & 0xfffu), 2);
  return o + 4;
}

static uint32_t b64_load(const unsigned char *p)
{
  return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

/* One whole line: 19 groups and CRLF.  Two groups per step from one
 * 48-bit value keeps the loads few. */
static unsigned char *b64_line(unsigned char *o, const unsigned char *p)
{
  unsigned k;

  for (k = 0; k < 9; k++, p += 6, o += 8) {
    uint64_t v = (uint64_t)p[0] << 40 | (uint64_t)p[1] << 32 |
                 (uint64_t)p[2] << 24 | (uint64_t)p[3] << 16 |
                 (uint64_t)p[4] << 8 | p[5];
    memcpy(o, b64_pairs + 2u * (unsigned)(v >> 36), 2);
    memcpy(o + 2, b64_pairs + 2u * (unsigned)(v >> 24 & 0xfffu), 2);
    memcpy(o + 4, b64_pairs + 2u * (unsigned)(v >> 12 & 0xfffu), 2);
    memcpy(o + 6, b64_pairs + 2u * (unsigned)(v & 0xfffu), 2);
  }
  o = b64_group(o, b64_load(p));
  o[0] = '\r';
  o[1] = '\n';
  return o + 2;
}

void smtp_codec_b64_init(smtp_codec_b64 *s)
{
  s->pend[0] = s->pend[1] = 0;
  s->npend = 0;
  s->col = 0;
}

size_t smtp_codec_b64_bound(size_t len)
{
  return SMTP_CODEC_B64_BOUND(len);
}

size_t smtp_codec_b64_update(smtp_codec_b64 *s, const unsigned char *in,
                             size_t len, unsigned char *out)
{
  unsigned char *o = out;
  unsigned col = s->col;
  size_t i = 0;

  if (len == 0)
    return 0;
  /* Complete the group that the last call left pending. */
  if (s->npend > 0) {
    unsigned char g[3];
    size_t need = 3u - s->npend;

    if (len < need) {
      s->pend[s->npend++] = in[0];
      return 0;
    }
    g[0] = s->pend[0];
    g[1] = s->npend == 2 ? s->pend[1] : in[0];
    g[2] = in[need - 1];
    o = b64_group(o, b64_load(g));
    s->npend = 0;
    i = need;
    col += 4;
    if (col == B64_LINE_OUT) {
      *o++ = '\r';
      *o++ = '\n';
      col = 0;
    }
  }
  /* Finish the current line, if one is begun. */
  while (col != 0 && len - i >= 3) {
    o = b64_group(o, b64_load(in + i));
    i += 3;
    col += 4;
    if (col == B64_LINE_OUT) {
      *o++ = '\r';
      *o++ = '\n';
      col = 0;
    }
  }
  /* Whole lines (col is 0 here, or too little input is left). */
  for (; len - i >= B64_LINE_IN; i += B64_LINE_IN)
    o = b64_line(o, in + i);
  /* The start of the next line: at most 18 groups, so it stays open. */
  for (; len - i >= 3; i += 3, col += 4)
    o = b64_group(o, b64_load(in + i));
  while (i < len)
    s->pend[s->npend++] = in[i++];
  s->col = col;
  return (size_t)(o - out);
}

size_t smtp_codec_b64_final(smtp_codec_b64 *s, unsigned char *out)
{
  unsigned char *o = out;
  unsigned col = s->col;

  if (s->npend > 0) {
    uint32_t v = (uint32_t)s->pend[0] << 16;

    if (s->npend == 2)
      v |= (uint32_t)s->pend[1] << 8;
    b64_group(o, v);
    o[3] = '=';
    if (s->npend == 1)
      o[2] = '=';
    o += 4;
    col += 4;
  }
  if (col > 0) {
    *o++ = '\r';
    *o++ = '\n';
  }
  smtp_codec_b64_init(s);
  return (size_t)(o - out);
}

/* ---- quoted-printable --------------------------------------------------- */

#define QP_MAX_LINE 76u
#define QP_SAFE  0   /* itself */
#define QP_WS    1   /* SPACE or TAB: itself, or encoded at a line's end */
#define QP_ENC   2   /* =XX */
#define QP_BREAK 3   /* CR or LF */

static const unsigned char qp_class[256] = {
  2,2,2,2,2,2,2,2,2,1,3,2,2,3,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
  1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
  0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,
  2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
  2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
  2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
  2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2
};

static const char qp_hex[] = "0123456789ABCDEF";

/* Put byte c on the line.  last: nothing follows it on this line (a hard
 * break or the end of input), so it may reach column 76 and a SPACE or TAB
 * is encoded; otherwise it must leave room for a soft break's "=". */
static unsigned char *qp_put(smtp_codec_qp *s, unsigned char *o, unsigned c,
                             int last)
{
  unsigned cls = qp_class[c];
  unsigned w = cls == QP_SAFE || (cls == QP_WS && !last) ? 1u : 3u;

  if (s->col + w > (last ? QP_MAX_LINE : QP_MAX_LINE - 1u)) {
    o[0] = '=';
    o[1] = '\r';
    o[2] = '\n';
    o += 3;
    s->col = 0;
  }
  if (w == 1) {
    *o++ = (unsigned char)c;
  } else {
    o[0] = '=';
    o[1] = (unsigned char)qp_hex[c >> 4];
    o[2] = (unsigned char)qp_hex[c & 15u];
    o += 3;
  }
  s->col += w;
  return o;
}

/* Are all eight bytes of x in 0x20..0x7e but "="?  (Bit Twiddling Hacks:
 * hasless, hasmore, haszero; exact for "any byte", which is all we ask.) */
static int qp_plain8(uint64_t x)
{
  const uint64_t ones = UINT64_C(0x0101010101010101);
  const uint64_t high = UINT64_C(0x8080808080808080);
  uint64_t eq = x ^ (ones * '=');

  return (((x - ones * 0x20u) & ~x) |      /* a byte below 0x20 */
          ((x + ones) | x) |               /* a byte above 0x7e */
          ((eq - ones) & ~eq)) & high ? 0 : 1;
}

void smtp_codec_qp_init(smtp_codec_qp *s)
{
  s->col = 0;
  s->pend = -1;
  s->cr = 0;
}

size_t smtp_codec_qp_bound(size_t len)
{
  return SMTP_CODEC_QP_BOUND(len);
}

size_t smtp_codec_qp_update(smtp_codec_qp *s, const unsigned char *in,
                            size_t len, unsigned char *out)
{
  unsigned char *o = out;
  size_t i = 0;

  while (i < len) {
    unsigned c, cls;

    /* Fast path, when nothing is pending and the column is known to leave
     * room: bytes that are themselves, bytes to encode, and a SPACE or TAB
     * followed by anything but a line break, while they end by column 75
     * (what would reach 76 goes the slow way).  Eight at a time while
     * they are all printable ASCII but "=" and the eighth is no SPACE. */
    if (s->pend < 0 && !s->cr) {
      unsigned col = s->col;

      while (i < len) {
        unsigned b;
        if (col + 8 <= QP_MAX_LINE - 1u && len - i >= 8) {
          uint64_t x;
          memcpy(&x, in + i, 8);
          if (qp_plain8(x) && in[i + 7] != ' ') {
            memcpy(o, &x, 8);
            o += 8;
            i += 8;
            col += 8;
            continue;
          }
        }
        b = in[i];
        if (qp_class[b] == QP_ENC) {
          if (col + 3 > QP_MAX_LINE - 1u)
            break;
          o[0] = '=';
          o[1] = (unsigned char)qp_hex[b >> 4];
          o[2] = (unsigned char)qp_hex[b & 15u];
          o += 3;
          col += 3;
        } else if (qp_class[b] == QP_SAFE ||
                   (qp_class[b] == QP_WS && i + 1 < len &&
                    qp_class[in[i + 1]] != QP_BREAK)) {
          if (col + 1 > QP_MAX_LINE - 1u)
            break;
          *o++ = (unsigned char)b;
          col++;
        } else {
          break;
        }
        i++;
      }
      s->col = col;
      if (i == len)
        break;
    }
    /* Slow path: one byte. */
    c = in[i++];
    cls = qp_class[c];
    if (s->cr) {
      s->cr = 0;
      if (c == '\n')
        continue;              /* the LF of a CRLF */
    }
    if (cls == QP_BREAK) {
      if (s->pend >= 0)
        o = qp_put(s, o, (unsigned)s->pend, 1);
      s->pend = -1;
      o[0] = '\r';
      o[1] = '\n';
      o += 2;
      s->col = 0;
      s->cr = c == '\r';
      continue;
    }
    if (s->pend >= 0)
      o = qp_put(s, o, (unsigned)s->pend, 0);
    s->pend = -1;
    /* Hold back what depends on the next byte: how a SPACE or TAB is
     * written, and whether a byte may end at column 76. */
    if (cls == QP_WS ||
        s->col + (cls == QP_SAFE ? 1u : 3u) == QP_MAX_LINE)
      s->pend = (int)c;
    else
      o = qp_put(s, o, c, 0);
  }
  return (size_t)(o - out);
}

size_t smtp_codec_qp_final(smtp_codec_qp *s, unsigned char *out)
{
  unsigned char *o = out;

  if (s->pend >= 0)
    o = qp_put(s, o, (unsigned)s->pend, 1);
  smtp_codec_qp_init(s);
  return (size_t)(o - out);
}

/* ---- transcoding from UTF-8 --------------------------------------------- */

/* The UTF-8 is checked here, not left to iconv: implementations differ on
 * surrogates and on what they call an incomplete sequence, and a check of
 * our own tells "not UTF-8" apart from "cannot be held", which iconv
 * reports alike (EILSEQ). */

/* The length of the sequence that lead starts; 0 when it starts none. */
static size_t utf8_len(unsigned lead)
{
  if (lead < 0x80u) return 1;
  if (lead < 0xc2u) return 0;
  if (lead < 0xe0u) return 2;
  if (lead < 0xf0u) return 3;
  if (lead < 0xf5u) return 4;
  return 0;
}

/* May b be byte k (1..3) of a sequence begun with lead (RFC 3629 4)? */
static int utf8_next_ok(unsigned lead, size_t k, unsigned b)
{
  if ((b & 0xc0u) != 0x80u)
    return 0;
  if (k == 1) {
    if (lead == 0xe0u) return b >= 0xa0u;   /* overlong */
    if (lead == 0xedu) return b <= 0x9fu;   /* surrogates */
    if (lead == 0xf0u) return b >= 0x90u;   /* overlong */
    if (lead == 0xf4u) return b <= 0x8fu;   /* above U+10FFFF */
  }
  return 1;
}

#define SCAN_END 0   /* all of it is whole characters */
#define SCAN_CUT 1   /* then a sequence, valid so far, that n cuts */
#define SCAN_BAD 2   /* then an ill-formed sequence, *bad bytes of it */

/* The longest prefix of p[0..n) made of whole valid characters. */
static size_t utf8_scan(const unsigned char *p, size_t n, int *what,
                        size_t *bad)
{
  size_t i = 0;

  for (;;) {
    size_t len, k;

    /* ASCII eight at a time */
    while (n - i >= 8) {
      uint64_t v;
      memcpy(&v, p + i, 8);
      if (v & UINT64_C(0x8080808080808080))
        break;
      i += 8;
    }
    while (i < n && p[i] < 0x80u)
      i++;
    if (i == n) {
      *what = SCAN_END;
      return i;
    }
    len = utf8_len(p[i]);
    for (k = 1; k < len && i + k < n; k++)
      if (!utf8_next_ok(p[i], k, p[i + k]))
        break;
    if (len == 0 || (k < len && i + k < n)) {
      *what = SCAN_BAD;
      *bad = len == 0 ? 1 : k;
      return i;
    }
    if (k < len) {
      *what = SCAN_CUT;
      return i;
    }
    i += len;
  }
}

static size_t utf8_count(const unsigned char *p, size_t n)
{
  size_t i, c = 0;

  for (i = 0; i < n; i++)
    c += (p[i] & 0xc0u) != 0x80u;
  return c;
}

/* The code point of a valid sequence of len bytes. */
static long utf8_decode(const unsigned char *p, size_t len)
{
  static const unsigned char mask[5] = { 0, 0x7f, 0x1f, 0x0f, 0x07 };
  long cp = p[0] & mask[len];
  size_t k;

  for (k = 1; k < len; k++)
    cp = cp << 6 | (p[k] & 0x3f);
  return cp;
}

static int set_fault(smtp_codec_iconv *s, int code, const unsigned char *p,
                     size_t len, unsigned long long pos)
{
  s->fault.code = code;
  memcpy(s->fault.bytes, p, len);
  s->fault.len = len;
  s->fault.cp = code == SMTP_CODEC_EUNMAPPABLE ? utf8_decode(p, len) : -1;
  s->fault.pos = pos;
  s->ntail = 0;
  return code;
}

/* iconv said it converted some characters inexactly (an iconv that
 * substitutes and counts, as POSIX allows) but not which: convert them
 * again one at a time with a fresh descriptor to find the first.  Returns
 * its offset in p, or n when none shows (then blame the first character
 * that is not ASCII, or the first). */
static size_t find_inexact(const char *to, const unsigned char *p, size_t n)
{
  iconv_t cd = iconv_open(to, "UTF-8");
  size_t i = 0, first = n, len;

  for (i = 0; i < n; i += len) {
    len = utf8_len(p[i]);
    if (first == n && len > 1)
      first = i;
    if (cd != (iconv_t)-1) {
      char buf[64], *ip = (char *)(uintptr_t)(p + i), *op = buf;
      size_t il = len, ol = sizeof buf;
      if (iconv(cd, &ip, &il, &op, &ol) != 0)
        break;
    }
  }
  if (cd != (iconv_t)-1)
    iconv_close(cd);
  if (i < n)
    return i;
  return first < n ? first : 0;
}

/* Convert p[0..n), whole valid characters, into out.  *used and *outlen
 * say how far it got: less than n when out is full. */
static int convert(smtp_codec_iconv *s, const unsigned char *p, size_t n,
                   size_t *used, unsigned char *out, size_t cap,
                   size_t *outlen)
{
  char *ip = (char *)(uintptr_t)p, *op = (char *)out;
  size_t il = n, ol = cap, r, u;
  int err;

  errno = 0;
  r = iconv((iconv_t)s->cd, &ip, &il, &op, &ol);
  err = errno;
  u = n - il;
  *used = u;
  *outlen = cap - ol;
  if (r == (size_t)-1 && err == E2BIG) {
    s->chars += utf8_count(p, u);
  } else if (r == (size_t)-1 && (err == EILSEQ || err == EINVAL)) {
    /* The input is valid UTF-8: iconv stopped at a character the charset
     * cannot hold. */
    unsigned long long pos = s->chars + utf8_count(p, u);
    size_t len = u < n ? utf8_len(p[u]) : 0;

    if (len == 0) {         /* not at a character: cannot happen */
      errno = err;
      return SMTP_CODEC_ESYS;
    }
    return set_fault(s, SMTP_CODEC_EUNMAPPABLE, p + u, len, pos);
  } else if (r == (size_t)-1) {
    errno = err;
    return SMTP_CODEC_ESYS;
  } else if (r > 0) {
    size_t at = find_inexact(s->to, p, u);

    *used = at;
    *outlen = 0;
    return set_fault(s, SMTP_CODEC_EUNMAPPABLE, p + at, utf8_len(p[at]),
                     s->chars + utf8_count(p, at));
  } else {
    s->chars += utf8_count(p, u);
  }
  return SMTP_CODEC_OK;
}

int smtp_codec_iconv_open(smtp_codec_iconv *s, const char *to_charset)
{
  size_t n = strlen(to_charset);
  iconv_t cd;

  memset(s, 0, sizeof *s);
  s->cd = NULL;
  if (n == 0 || n > SMTP_CODEC_CHARSET_MAX || strchr(to_charset, '/'))
    return SMTP_CODEC_ECHARSET;
  errno = 0;
  cd = iconv_open(to_charset, "UTF-8");
  if (cd == (iconv_t)-1)
    return errno == EINVAL ? SMTP_CODEC_ECHARSET : SMTP_CODEC_ESYS;
  s->cd = (void *)cd;
  memcpy(s->to, to_charset, n + 1);
  return SMTP_CODEC_OK;
}

int smtp_codec_iconv_update(smtp_codec_iconv *s, const unsigned char *in,
                            size_t len, size_t *used,
                            unsigned char *out, size_t cap, size_t *outlen)
{
  size_t i = 0, o = 0;

  *used = 0;
  *outlen = 0;
  if (s->cd == NULL)
    return SMTP_CODEC_ESTATE;
  if (s->fault.code != SMTP_CODEC_OK)
    return s->fault.code;
  /* Complete the character the last chunk cut. */
  if (s->ntail > 0) {
    unsigned char buf[4];
    size_t need = utf8_len(s->tail[0]), nb = s->ntail, u;
    int r;

    memcpy(buf, s->tail, nb);
    for (; nb < need && i < len; nb++, i++)
      if (!utf8_next_ok(buf[0], nb, in[i]))
        return set_fault(s, SMTP_CODEC_EUTF8, buf, nb, s->chars);
      else
        buf[nb] = in[i];
    if (nb < need) {
      memcpy(s->tail, buf, nb);
      s->ntail = nb;
      *used = i;
      return SMTP_CODEC_OK;
    }
    r = convert(s, buf, nb, &u, out, cap, &o);
    if (r != SMTP_CODEC_OK || u < nb) {
      *outlen = 0;              /* nothing of in was converted */
      return r;
    }
    s->ntail = 0;
  }
  while (i < len) {
    /* Scan no further than the output can take, so that a small out does
     * not make every call rescan a large input. */
    size_t win = len - i, v, u, n;
    size_t bad = 0;
    int what, r;

    if (win > cap && win - cap > 16)
      win = cap + 16;
    v = utf8_scan(in + i, win, &what, &bad);
    if (v > 0) {
      r = convert(s, in + i, v, &u, out + o, cap - o, &n);
      i += u;
      o += n;
      if (r != SMTP_CODEC_OK) {
        *used = i;
        *outlen = o;
        return r;
      }
      if (u < v)
        break;                  /* out is full */
    }
    if (what == SCAN_BAD) {
      *used = i;
      *outlen = o;
      return set_fault(s, SMTP_CODEC_EUTF8, in + i, bad, s->chars);
    }
    if (what == SCAN_CUT && i + (win - v) == len) {
      /* the input ends inside a character: keep its start */
      s->ntail = len - i;
      memcpy(s->tail, in + i, s->ntail);
      i = len;
    }
  }
  *used = i;
  *outlen = o;
  return SMTP_CODEC_OK;
}

int smtp_codec_iconv_final(smtp_codec_iconv *s, unsigned char *out,
                           size_t cap, size_t *outlen)
{
  char *op = (char *)out;
  size_t ol = cap;

  *outlen = 0;
  if (s->cd == NULL)
    return SMTP_CODEC_ESTATE;
  if (s->fault.code != SMTP_CODEC_OK)
    return s->fault.code;
  if (s->ntail > 0)
    return set_fault(s, SMTP_CODEC_EUTF8, s->tail, s->ntail, s->chars);
  if (iconv((iconv_t)s->cd, NULL, NULL, &op, &ol) == (size_t)-1)
    return SMTP_CODEC_ESYS;
  *outlen = cap - ol;
  s->chars = 0;
  return SMTP_CODEC_OK;
}

const smtp_codec_fault *smtp_codec_iconv_fault(const smtp_codec_iconv *s)
{
  return &s->fault;
}

void smtp_codec_iconv_close(smtp_codec_iconv *s)
{
  if (s->cd != NULL)
    iconv_close((iconv_t)s->cd);
  s->cd = NULL;
}

const char *smtp_codec_strerror(int code)
{
  switch (code) {
  case SMTP_CODEC_OK:          return "ok";
  case SMTP_CODEC_ECHARSET:    return "unknown charset";
  case SMTP_CODEC_EUNMAPPABLE: return "character not in the charset";
  case SMTP_CODEC_EUTF8:       return "not UTF-8";
  case SMTP_CODEC_ESYS:        return "iconv failed";
  case SMTP_CODEC_ESTATE:      return "converter not open";
  default:                     return "unknown error";
  }
}

/* Eight bytes, the first in the low bits whatever the byte order. */
static uint64_t load_le64(const unsigned char *p)
{
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

void smtp_codec_text_scan(const unsigned char *p, size_t len, smtp_codec_text_info *r)
{
  size_t i = 0, line = 0;
  int what;
  size_t bad, valid = utf8_scan(p, len, &what, &bad);

  memset(r, 0, sizeof *r);
  r->utf8 = valid == len;
  while (i < len) {
    /* ordinary bytes eight at a time, up to the first byte below 0x10 or
     * from 0x80 up: the lowest flag is exact (a borrow flags only bytes
     * above a real one) */
    while (len - i >= 8) {
      uint64_t v = load_le64(p + i);
      uint64_t t = ((v - UINT64_C(0x1010101010101010)) | v) & UINT64_C(0x8080808080808080);
      unsigned k = 0;
      if (t == 0) {
        i += 8;
        line += 8;
        continue;
      }
#if defined(__GNUC__)
      k = (unsigned)__builtin_ctzll(t) >> 3;
#else
      while (!(t & 0x80u)) { t >>= 8; k++; }
#endif
      i += k;
      line += k;
      break;
    }
    if (i == len)
      break;
    {
      unsigned c = p[i++];
      if (c == '\n' || c == '\r') {
        if (line > r->longest)
          r->longest = line;
        line = 0;
        if (c == '\r' && i < len && p[i] == '\n')
          i++;
        else
          r->crlf_len++;   /* a lone CR or LF becomes two bytes */
        continue;
      }
      if (c >= 0x80u)
        r->high++;
      else if (c == 0)
        r->nul++;
      line++;
    }
  }
  if (line > r->longest)
    r->longest = line;
  r->crlf_len += len;
}
