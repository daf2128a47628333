/*
 * reply.h -- bounded, incremental parser for SMTP replies (RFC 5321 4.2).
 *
 * A reply is one or more lines "DDD-text" ending with "DDD text" (or a bare
 * "DDD").  Lines end in CRLF; a bare LF is accepted too.  Everything is
 * bounded: a line longer than SMTP_REPLY_LINE_MAX, more than
 * SMTP_REPLY_LINES_MAX lines, or more than SMTP_REPLY_TEXT_MAX octets of text
 * is an error, as is a malformed line or a code that changes mid-reply.
 *
 * No allocation, no I/O.  The caller owns the struct.
 */
#ifndef SMTP_REPLY_H
#define SMTP_REPLY_H

#include <stddef.h>

/* Internal to the module whatever the build system: only luaopen_* is public. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

#define SMTP_REPLY_LINE_MAX  2048u   /* octets of one line, CRLF excluded */
#define SMTP_REPLY_LINES_MAX 128u    /* lines in one reply */
#define SMTP_REPLY_TEXT_MAX  8192u   /* octets of text kept, all lines */

typedef enum {
  SMTP_REPLY_MORE = 0,    /* all input consumed, reply not complete yet */
  SMTP_REPLY_DONE,        /* a whole reply is parsed; see the fields */
  SMTP_REPLY_ETOOLONG,    /* a line exceeds SMTP_REPLY_LINE_MAX */
  SMTP_REPLY_ETOOMANY,    /* more than SMTP_REPLY_LINES_MAX lines, or too much text */
  SMTP_REPLY_ESYNTAX      /* not "DDD[ -]text", or the code changed mid-reply */
} smtp_reply_status;

typedef struct {
  /* Valid after SMTP_REPLY_DONE, until the next smtp_reply_reset(). */
  int code;               /* 200..599 */
  char enhanced[16];      /* RFC 3463 "x.y.z" from the first line, or "" */
  unsigned lines;         /* number of lines */
  size_t text_len;        /* octets in text, NUL excluded */
  char text[SMTP_REPLY_TEXT_MAX + 1]; /* each line's text after "DDD-" and
                                         the enhanced code, joined by '\n' */
  /* Parser state: private. */
  int state;
  int line_code;
  size_t line_len;
  unsigned hold;          /* octets of a possible enhanced code held back */
  int cr;                 /* a CR was read; it is dropped if LF follows */
  int last;               /* the current line ends the reply */
  smtp_reply_status error;/* the sticky status once failed, else MORE */
} smtp_reply;

/* Make r ready to parse a new reply. MUST be called before the first feed
 * and after each SMTP_REPLY_DONE before feeding the next reply. */
void smtp_reply_reset(smtp_reply *r);

/* Feed len octets. *used receives how many were consumed: all of them unless
 * the status is SMTP_REPLY_DONE (the rest belongs to the next reply) or an
 * error.  After an error the struct stays failed until reset. */
smtp_reply_status smtp_reply_feed(smtp_reply *r, const unsigned char *buf,
                                  size_t len, size_t *used);

/* Short English text for a status, for error messages. */
const char *smtp_reply_status_text(smtp_reply_status s);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
