/*
 * reply.c -- bounded, incremental SMTP reply parser.  The contract is in
 * reply.h; this file says why it is built the way it is.
 *
 * The parser is a byte-at-a-time machine, so a reply split anywhere parses
 * exactly like the whole reply.  Two things need lookahead, and both are
 * kept in the struct rather than in the input:
 *   - a CR is only known to end a line when the next byte is LF (r->cr);
 *   - an enhanced status code is only known to be one when the space or the
 *     end of line after it arrives, so its octets are held back (r->hold)
 *     instead of being written to text: text must not count octets that are
 *     later stripped, or a reply that fits would be refused.
 * The held octets always equal r->enhanced[0 .. hold): on the first line
 * they are the candidate code being read, on later lines the prefix of the
 * first line's code matched so far.
 */
#include "reply.h"

enum {
  R_CODE0 = 0,  /* expecting the first digit of a line */
  R_CODE1,
  R_CODE2,
  R_SEP,        /* after the digits: '-', ' ' or end of line */
  R_ENH,        /* start of text: maybe an enhanced status code */
  R_TEXT,
  R_DONE,
  R_FAILED
};

/* Longest RFC 3463 code: "5.999.999". */
#define ENH_MAX 9u

typedef enum { ENH_NO, ENH_PREFIX, ENH_FULL } enh_match;

void smtp_reply_reset(smtp_reply *r)
{
  r->code = 0;
  r->enhanced[0] = '\0';
  r->lines = 0;
  r->text_len = 0;
  r->text[0] = '\0';
  r->state = R_CODE0;
  r->line_code = 0;
  r->line_len = 0;
  r->hold = 0;
  r->cr = 0;
  r->last = 0;
  r->error = SMTP_REPLY_MORE;
}

static smtp_reply_status fail(smtp_reply *r, smtp_reply_status s)
{
  r->state = R_FAILED;
  r->error = s;
  return s;
}

/* Append one octet of text; text stays NUL-terminated so that a caller
 * reporting an error can still show what arrived. */
static smtp_reply_status put(smtp_reply *r, char c)
{
  if (r->text_len >= SMTP_REPLY_TEXT_MAX)
    return fail(r, SMTP_REPLY_ETOOMANY);
  r->text[r->text_len++] = c;
  r->text[r->text_len] = '\0';
  return SMTP_REPLY_MORE;
}

/* RFC 5321 textstring is HT and printable ASCII; 8-bit octets are let
 * through for servers that speak UTF-8.  A bare CR is kept (leniency), but
 * other controls are refused: the text ends up in logs and error messages,
 * where NUL truncates and ESC drives terminals. */
static int text_octet(unsigned char c)
{
  return c == '\t' || c == '\r' || (c >= 0x20 && c != 0x7f);
}

static smtp_reply_status put_text(smtp_reply *r, unsigned char c)
{
  if (!text_octet(c))
    return fail(r, SMTP_REPLY_ESYNTAX);
  return put(r, (char)c);
}

/* How s[0 .. n) matches "class.subject.detail": class one of 2, 4, 5;
 * subject and detail 1 to 3 digits. */
static enh_match enh_pattern(const char *s, unsigned n)
{
  unsigned i, dots = 0, digits = 0;

  for (i = 0; i < n; i++) {
    if (s[i] == '.') {
      if (digits == 0 || dots == 2)
        return ENH_NO;
      dots++;
      digits = 0;
    } else if (s[i] >= '0' && s[i] <= '9') {
      digits++;
      if (dots == 0 ? (digits > 1 || (s[i] != '2' && s[i] != '4' && s[i] != '5'))
                    : digits > 3)
        return ENH_NO;
    } else {
      return ENH_NO;
    }
  }
  return dots == 2 && digits > 0 ? ENH_FULL : ENH_PREFIX;
}

/* Is the held prefix a whole code?  The first line decides what a code is;
 * later lines must repeat the first line's code exactly. */
static int enh_full(const smtp_reply *r)
{
  if (r->lines == 0)
    return enh_pattern(r->enhanced, r->hold) == ENH_FULL;
  return r->enhanced[r->hold] == '\0';
}

/* Can c extend the held prefix towards a code? */
static int enh_extends(smtp_reply *r, char c)
{
  if (r->lines > 0)
    return r->enhanced[r->hold] != '\0' && r->enhanced[r->hold] == c;
  /* The pattern never accepts more than ENH_MAX octets; this bound keeps
   * the writes below visibly inside r->enhanced all the same. */
  if (r->hold == ENH_MAX)
    return 0;
  r->enhanced[r->hold] = c;
  r->enhanced[r->hold + 1] = '\0';
  if (enh_pattern(r->enhanced, r->hold + 1) != ENH_NO)
    return 1;
  r->enhanced[r->hold] = '\0';
  return 0;
}

/* The held octets were not a code after all: they are text.  On the first
 * line that also means the reply has no enhanced code. */
static smtp_reply_status enh_flush(smtp_reply *r)
{
  unsigned i;
  smtp_reply_status s;

  for (i = 0; i < r->hold; i++) {
    s = put(r, r->enhanced[i]);
    if (s != SMTP_REPLY_MORE)
      return s;
  }
  if (r->lines == 0)
    r->enhanced[0] = '\0';
  r->hold = 0;
  r->state = R_TEXT;
  return SMTP_REPLY_MORE;
}

/* The held octets are the code: drop them.  On the first line they stay in
 * r->enhanced, which is where the code is reported. */
static void enh_strip(smtp_reply *r)
{
  r->hold = 0;
  r->state = R_TEXT;
}

/* The separator (or a bare code's end of line) begins the line's text. */
static smtp_reply_status begin_text(smtp_reply *r)
{
  if (r->lines > 0) {
    smtp_reply_status s = put(r, '\n');
    if (s != SMTP_REPLY_MORE)
      return s;
  }
  r->hold = 0;
  r->state = r->lines == 0 || r->enhanced[0] != '\0' ? R_ENH : R_TEXT;
  return SMTP_REPLY_MORE;
}

static smtp_reply_status code_digit(smtp_reply *r, unsigned char c)
{
  /* First digit 2..5, second 0..5, third 0..9 (RFC 5321 4.2). */
  static const unsigned char hi[3] = { '5', '5', '9' };
  static const unsigned char lo[3] = { '2', '0', '0' };
  int pos = r->state - R_CODE0;

  if (c < lo[pos] || c > hi[pos])
    return fail(r, SMTP_REPLY_ESYNTAX);
  r->line_code = r->line_code * 10 + (c - '0');
  r->state++;
  if (r->state != R_SEP)
    return SMTP_REPLY_MORE;
  if (r->lines == 0)
    r->code = r->line_code;
  else if (r->line_code != r->code)
    return fail(r, SMTP_REPLY_ESYNTAX);
  return SMTP_REPLY_MORE;
}

/* One octet of a line, neither the line's end nor a CR still undecided. */
static smtp_reply_status take(smtp_reply *r, unsigned char c)
{
  if (++r->line_len > SMTP_REPLY_LINE_MAX)
    return fail(r, SMTP_REPLY_ETOOLONG);
  switch (r->state) {
  case R_CODE0:
  case R_CODE1:
  case R_CODE2:
    return code_digit(r, c);
  case R_SEP:
    if (c != '-' && c != ' ')
      return fail(r, SMTP_REPLY_ESYNTAX);
    r->last = c == ' ';
    return begin_text(r);
  case R_ENH:
    if (c == ' ' && r->hold > 0 && enh_full(r)) {
      enh_strip(r);
      return SMTP_REPLY_MORE;
    }
    if (enh_extends(r, (char)c)) {
      r->hold++;
      return SMTP_REPLY_MORE;
    }
    {
      smtp_reply_status s = enh_flush(r);
      if (s != SMTP_REPLY_MORE)
        return s;
    }
    return put_text(r, c);
  default: /* R_TEXT */
    return put_text(r, c);
  }
}

static smtp_reply_status end_line(smtp_reply *r)
{
  smtp_reply_status s = SMTP_REPLY_MORE;

  switch (r->state) {
  case R_SEP:               /* a bare "DDD" is a last line without text */
    r->last = 1;
    s = begin_text(r);
    break;
  case R_ENH:
    if (r->hold > 0 && enh_full(r))
      enh_strip(r);
    else
      s = enh_flush(r);
    break;
  case R_TEXT:
    break;
  default:                  /* fewer than three digits */
    return fail(r, SMTP_REPLY_ESYNTAX);
  }
  if (s != SMTP_REPLY_MORE)
    return s;
  r->lines++;
  r->line_len = 0;
  r->line_code = 0;
  if (r->last) {
    r->state = R_DONE;
    return SMTP_REPLY_DONE;
  }
  /* A continuation promises one more line: refuse it now rather than
   * after reading it. */
  if (r->lines >= SMTP_REPLY_LINES_MAX)
    return fail(r, SMTP_REPLY_ETOOMANY);
  r->state = R_CODE0;
  return SMTP_REPLY_MORE;
}

static smtp_reply_status step(smtp_reply *r, unsigned char c)
{
  if (r->cr) {
    r->cr = 0;
    if (c == '\n')
      return end_line(r);
    {
      smtp_reply_status s = take(r, '\r');
      if (s != SMTP_REPLY_MORE)
        return s;
    }
  }
  if (c == '\n')
    return end_line(r);
  if (c == '\r') {
    r->cr = 1;
    return SMTP_REPLY_MORE;
  }
  return take(r, c);
}

smtp_reply_status smtp_reply_feed(smtp_reply *r, const unsigned char *buf,
                                  size_t len, size_t *used)
{
  size_t i;

  *used = 0;
  if (r->state == R_FAILED)
    return r->error;
  if (r->state == R_DONE)
    return SMTP_REPLY_DONE;
  for (i = 0; i < len; i++) {
    smtp_reply_status s = step(r, buf[i]);
    if (s != SMTP_REPLY_MORE) {
      *used = i + 1;
      return s;
    }
  }
  *used = len;
  return SMTP_REPLY_MORE;
}

const char *smtp_reply_status_text(smtp_reply_status s)
{
  switch (s) {
  case SMTP_REPLY_MORE:     return "reply incomplete";
  case SMTP_REPLY_DONE:     return "reply complete";
  case SMTP_REPLY_ETOOLONG: return "reply line too long";
  case SMTP_REPLY_ETOOMANY: return "reply too long (too many lines or too much text)";
  case SMTP_REPLY_ESYNTAX:  return "malformed reply";
  }
  return "unknown reply status";
}
