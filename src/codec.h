/*
 * codec.h -- body codecs: base64 and quoted-printable for MIME (RFC 2045),
 * and transcoding from UTF-8 into a message's charset (the "code page").
 *
 * Plain C: no Lua, no sockets, no allocation (iconv_open allocates inside
 * the C library, and smtp_codec_iconv_close gives it back).  The caller
 * owns every state struct and every buffer; a struct may live anywhere and
 * be copied while no call is running.
 *
 * Every codec is an incremental filter: feed the input in chunks of any
 * size, in as many calls as you like, then call the _final function once.
 * The output is the same, byte for byte, however the input was cut.
 *
 *   smtp_codec_b64 b;  unsigned char out[SMTP_CODEC_B64_BOUND(CHUNK)];
 *   smtp_codec_b64_init(&b);
 *   for each chunk: n = smtp_codec_b64_update(&b, chunk, len, out); send n
 *   at the end:     n = smtp_codec_b64_final(&b, out);             send n
 *
 * Output lines end in CRLF, as SMTP wants them.  Neither encoder's output
 * ever holds a bare CR or LF, and no line starts with "." unless the input
 * line did (quoted-printable keeps a leading "." literal): the engine's
 * dot-stuffing still runs over the result, as over every body byte.
 *
 * Rules of use (MUST):
 *   - Call the _init (or _open) function before anything else on a struct.
 *   - out has room for the bound of the call: SMTP_CODEC_B64_BOUND(len) for
 *     smtp_codec_b64_update, SMTP_CODEC_QP_BOUND(len) for
 *     smtp_codec_qp_update, SMTP_CODEC_FINAL_MAX for either _final.  The
 *     bounds hold for any state; len is at most SMTP_CODEC_LEN_MAX.
 *   - in may be NULL only when len is 0.  in and out do not overlap.
 *   - A smtp_codec_iconv that was opened is closed, whatever happened.
 */
#ifndef SMTP_CODEC_H
#define SMTP_CODEC_H

#include <stddef.h>

/* Internal to the module whatever the build system: only luaopen_* is public. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* Longest input one update call may take: the bounds below do not
 * overflow a size_t up to it. */
#define SMTP_CODEC_LEN_MAX ((size_t)-1 / 8u)

/* Most bytes a _final call writes (either encoder). */
#define SMTP_CODEC_FINAL_MAX 6u

/* ---- base64 (RFC 2045 6.8) --------------------------------------------- */

/* Lines of 76 characters (19 groups of 4), each ending in CRLF as soon as
 * it is full; the last, shorter line ends in CRLF at _final.  An empty
 * input encodes to nothing; 57 bytes to one line of 76 and CRLF. */
typedef struct {
  /* All private. */
  unsigned char pend[2];   /* input bytes not yet encoded */
  unsigned npend;          /* 0..2 */
  unsigned col;            /* characters on the current line: 0, 4, .. 72 */
} smtp_codec_b64;

/* Exact worst case of smtp_codec_b64_update for len input bytes: two bytes
 * pending and 72 characters on the line before the call. */
#define SMTP_CODEC_B64_BOUND(len) \
  (4u * (((size_t)(len) + 2u) / 3u) + \
   2u * ((4u * (((size_t)(len) + 2u) / 3u) + 72u) / 76u))

void smtp_codec_b64_init(smtp_codec_b64 *s);

/* Encode len bytes; returns the number of bytes written to out (at most
 * SMTP_CODEC_B64_BOUND(len); it may be 0: up to two bytes wait in s). */
size_t smtp_codec_b64_update(smtp_codec_b64 *s, const unsigned char *in,
                             size_t len, unsigned char *out);

/* End the input: the pending bytes with "=" padding, and CRLF unless the
 * last line is empty.  Returns the bytes written (0 to 6).  s is back to
 * its initial state, ready for a new input. */
size_t smtp_codec_b64_final(smtp_codec_b64 *s, unsigned char *out);

/* SMTP_CODEC_B64_BOUND as a function. */
size_t smtp_codec_b64_bound(size_t len);

/* ---- quoted-printable (RFC 2045 6.7) ----------------------------------- */

/* For text: every line break of the input -- CRLF, a lone CR, a lone LF --
 * becomes a hard line break, CRLF.  Encoded as =XX (uppercase hex): "=",
 * bytes below 32 but TAB, bytes from 127 up, and a SPACE or TAB that ends
 * a line or the input (=20, =09).  Everything else is itself.  A soft line
 * break "=" CRLF is inserted, never inside an =XX, exactly when the line
 * would otherwise be longer than 76 characters: no output line is longer
 * than 76 characters before its CRLF (a line of 76 stays whole).  The
 * output ends with a CRLF only when the input ends with a line break. */
typedef struct {
  /* All private. */
  unsigned col;            /* characters on the current output line, 0..76 */
  int pend;                /* a byte whose encoding or place depends on the
                              next one (SPACE or TAB, or one that would end
                              at column 76), or -1 */
  int cr;                  /* the last byte was a CR: an LF next belongs to
                              the same line break */
} smtp_codec_qp;

/* Worst case of smtp_codec_qp_update for len input bytes: 3 per byte and
 * one more for the byte held back, and a 3-byte soft break per 73
 * characters, plus one. */
#define SMTP_CODEC_QP_BOUND(len) \
  (3u * ((size_t)(len) + 1u) + 3u * (1u + 3u * ((size_t)(len) + 1u) / 73u))

void smtp_codec_qp_init(smtp_codec_qp *s);

/* Encode len bytes; returns the number of bytes written to out (at most
 * SMTP_CODEC_QP_BOUND(len)). */
size_t smtp_codec_qp_update(smtp_codec_qp *s, const unsigned char *in,
                            size_t len, unsigned char *out);

/* End the input: the byte held back, if any (a final SPACE or TAB is
 * encoded).  Returns the bytes written (0 to 6).  s is back to its initial
 * state. */
size_t smtp_codec_qp_final(smtp_codec_qp *s, unsigned char *out);

/* SMTP_CODEC_QP_BOUND as a function. */
size_t smtp_codec_qp_bound(size_t len);

/* ---- transcoding from UTF-8 (iconv) ------------------------------------ */

/* Converts UTF-8 text into another charset with iconv(3), and refuses --
 * never replaces, never skips -- a character the charset cannot hold, or
 * input that is not UTF-8 (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF; the UTF-8 is checked here, not by iconv).  The
 * refusal names the character and its position, so the caller can say
 * "\"€\" (U+20AC), character 42, has no place in iso-8859-1".
 *
 * Linking: iconv is part of the C library on glibc and musl.  On macOS
 * (and the BSDs with GNU libiconv) the module links -liconv.  Apple's own
 * iconv since macOS 14 silently turns some characters it cannot convert
 * into "?" without reporting anything; this module catches what iconv
 * reports (an error, or a count of inexact conversions), not silence, so
 * on macOS build against GNU libiconv (Homebrew's libiconv: its iconv.h and
 * -liconv) for the refusal to be reliable.
 *
 * Rules of use (MUST), besides those above:
 *   - out has room for at least SMTP_CODEC_ICONV_OUT_MIN bytes in every
 *     call; then every update with len > 0 consumes input or fails.
 *   - Feed the rest of an input that was not all consumed (*used < len)
 *     again after sending the output.
 * Errors stay set: after SMTP_CODEC_EUNMAPPABLE or SMTP_CODEC_EUTF8 every
 * update and final returns the same code and converts nothing;
 * smtp_codec_iconv_fault tells what and where. */

#define SMTP_CODEC_OK            0
#define SMTP_CODEC_ECHARSET    (-1)  /* unknown charset, or a name that is
                                        empty, longer than 63 octets or
                                        holds "/" (no //TRANSLIT, //IGNORE) */
#define SMTP_CODEC_EUNMAPPABLE (-2)  /* a character the charset cannot hold */
#define SMTP_CODEC_EUTF8       (-3)  /* the input is not UTF-8 */
#define SMTP_CODEC_ESYS        (-4)  /* iconv failed otherwise (out of memory,
                                        too many open files); see errno */
#define SMTP_CODEC_ESTATE      (-5)  /* not open */

/* Output room that any single character, shift sequence or byte-order mark
 * fits in. */
#define SMTP_CODEC_ICONV_OUT_MIN 32u

#define SMTP_CODEC_CHARSET_MAX 63u

/* What was refused, and where. */
typedef struct {
  int code;                  /* SMTP_CODEC_EUNMAPPABLE, SMTP_CODEC_EUTF8, or
                                SMTP_CODEC_OK when nothing was */
  unsigned char bytes[4];    /* the character's UTF-8 bytes; for EUTF8 the
                                ill-formed bytes (the longest start of a
                                sequence that is valid so far, at least one
                                byte) */
  size_t len;                /* 1..4 */
  long cp;                   /* the code point (EUNMAPPABLE), or -1 */
  unsigned long long pos;    /* UTF-8 characters before it since open (or
                                since the last final): 0 for the first */
} smtp_codec_fault;

typedef struct {
  /* All private. */
  void *cd;                  /* the iconv_t; NULL when not open */
  char to[SMTP_CODEC_CHARSET_MAX + 1];
  unsigned char tail[4];     /* a sequence cut by the end of a chunk */
  size_t ntail;
  unsigned long long chars;  /* characters converted */
  smtp_codec_fault fault;
} smtp_codec_iconv;

/* Open a converter from UTF-8 to the charset named to_charset (any name
 * iconv knows: "windows-1252", "ISO-8859-15", "koi8-r", "Shift_JIS"...).
 * Returns SMTP_CODEC_OK, SMTP_CODEC_ECHARSET or SMTP_CODEC_ESYS; on an
 * error s is left closed (smtp_codec_iconv_close is harmless on it). */
int smtp_codec_iconv_open(smtp_codec_iconv *s, const char *to_charset);

/* Convert up to len bytes of UTF-8 into out (cap bytes of room).  Sets
 * *used to the input bytes consumed and *outlen to the bytes written.
 * SMTP_CODEC_OK: *used == len, or out was full (call again with the
 * rest).  A character cut by the end of in is consumed and kept in s until
 * the next call completes it.  On SMTP_CODEC_EUNMAPPABLE or
 * SMTP_CODEC_EUTF8, out holds the conversion of the characters before the
 * refused one that this call consumed (*used, *outlen) -- or, with an
 * iconv that substitutes and counts it, possibly fewer. */
int smtp_codec_iconv_update(smtp_codec_iconv *s, const unsigned char *in,
                            size_t len, size_t *used,
                            unsigned char *out, size_t cap, size_t *outlen);

/* End the text: a character still cut is SMTP_CODEC_EUTF8; otherwise the
 * bytes that return a stateful charset (ISO-2022-JP) to its initial state
 * go to out.  s may then convert a new text, positions counting from 0. */
int smtp_codec_iconv_final(smtp_codec_iconv *s, unsigned char *out,
                           size_t cap, size_t *outlen);

/* The refusal that is set; code SMTP_CODEC_OK when none is. */
const smtp_codec_fault *smtp_codec_iconv_fault(const smtp_codec_iconv *s);

/* Give the iconv descriptor back.  Harmless on a closed converter, and
 * twice. */
void smtp_codec_iconv_close(smtp_codec_iconv *s);

/* Short English text for a return code ("not UTF-8"). */
const char *smtp_codec_strerror(int code);

/* ---- what a text is made of (one pass) ------------------------------- */

/* What the composer needs to choose a Content-Transfer-Encoding and size a
 * text part, in one pass instead of five pattern scans.  Line breaks are
 * CRLF, a lone CR or a lone LF, as the engine's normalizer sees them. */
typedef struct {
  size_t high;       /* bytes from 0x80 up */
  size_t nul;        /* NUL bytes */
  size_t longest;    /* the longest line, without its line break */
  size_t crlf_len;   /* the length once every line break is CRLF */
  int utf8;          /* 1: well-formed UTF-8 (RFC 3629), as smtp_codec_iconv checks it */
} smtp_codec_text_info;

void smtp_codec_text_scan(const unsigned char *p, size_t len, smtp_codec_text_info *r);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
