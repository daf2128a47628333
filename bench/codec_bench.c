/*
 * codec_bench.c -- throughput of the body paths on 64 MiB, best of 5:
 * base64 (random bytes), quoted-printable (typical text), and the engine's
 * CRLF normalizer and dot-stuffer (the same text, with CRLF and with bare
 * LF line ends), all fed in 64 KiB chunks.  Figures are input MB/s
 * (10^6 bytes).  Not a test: it checks nothing but that it ran.
 *
 *   cc -std=c99 -O2 -o codec_bench bench/codec_bench.c src/codec.c \
 *      src/engine.c src/reply.c && ./codec_bench
 *
 * With -r, for bench/bench.lua: one line per codec, its key and the MB/s
 * of every run ("b64 1234.5 1250.1 ...").
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/codec.h"
#include "../src/engine.h"

#define SIZE  (64u << 20)
#define CHUNK (64u << 10)
#define RUNS  5

static unsigned char *in, *text, *text_lf, *out;
static size_t text_len, text_lf_len;
static smtp_engine E;
static volatile size_t sink;

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static unsigned long rng = 12345;

static unsigned rnd(void)
{
  rng = rng * 6364136223846793005ul + 1442695040888963407ul;
  return (unsigned)(rng >> 33);
}

/* Words, spaces, lines of 40..76 characters ending in CRLF, some ending
 * in a space, a few "." and "=" and a little UTF-8. */
static size_t make_text(unsigned char *p, size_t cap, int lf)
{
  static const char *const words[] = {
    "the", "quarterly", "report", "is", "attached,", "please", "review",
    "before", "Friday.", "Regards", "x=1", "caf\xc3\xa9", "and", "of", "to",
    "meeting", "notes", "(draft)", "2024-05-01", "Jos\xc3\xa9"
  };
  size_t n = 0, col = 0, limit = 40 + rnd() % 37;

  while (n + 100 < cap) {
    const char *w = words[rnd() % (sizeof words / sizeof words[0])];
    size_t l = strlen(w);
    if (col == 0 && rnd() % 50 == 0)
      p[n++] = '.', col++;
    memcpy(p + n, w, l);
    n += l;
    col += l;
    if (col >= limit) {
      if (rnd() % 20 == 0)
        p[n++] = ' ';
      if (!lf)
        p[n++] = '\r';
      p[n++] = '\n';
      col = 0;
      limit = 40 + rnd() % 37;
    } else {
      p[n++] = ' ';
      col++;
    }
  }
  return n;
}

static double run_b64(const unsigned char *p, size_t n)
{
  smtp_codec_b64 s;
  size_t i, o = 0;
  double t = now();

  smtp_codec_b64_init(&s);
  for (i = 0; i < n; i += CHUNK)
    o += smtp_codec_b64_update(&s, p + i, n - i < CHUNK ? n - i : CHUNK, out);
  o += smtp_codec_b64_final(&s, out);
  sink += o;
  return now() - t;
}

static double run_qp(const unsigned char *p, size_t n)
{
  smtp_codec_qp s;
  size_t i, o = 0;
  double t = now();

  smtp_codec_qp_init(&s);
  for (i = 0; i < n; i += CHUNK)
    o += smtp_codec_qp_update(&s, p + i, n - i < CHUNK ? n - i : CHUNK, out);
  o += smtp_codec_qp_final(&s, out);
  sink += o;
  return now() - t;
}

/* Write everything the engine offers, answer its commands with reply,
 * acknowledge events; returns when it waits for the application. */
static void pump(const char *reply)
{
  for (;;) {
    unsigned st = smtp_engine_state(&E);
    size_t n;

    if (st & SMTP_SENDREC) {
      (void)smtp_engine_sendrec_buf(&E, &n);
      smtp_engine_sendrec_ack(&E, n);
    } else if (st & SMTP_EVENT) {
      smtp_engine_event_ack(&E);
    } else if ((st & SMTP_RECVREC) && reply != NULL) {
      unsigned char *b = smtp_engine_recvrec_buf(&E, &n);
      size_t l = strlen(reply);
      if (n < l)
        exit(1);
      memcpy(b, reply, l);
      smtp_engine_recvrec_ack(&E, l);
      reply = NULL;
    } else {
      return;
    }
  }
}

/* A session in the DATA phase, without a server: scripted replies. */
static void to_data(void)
{
  if (smtp_engine_init(&E, "bench.example", SMTP_OPT_NO_PIPELINING) != SMTP_OK)
    exit(1);
  pump("220 mx\r\n");
  pump("250 mx\r\n");
  if (smtp_engine_mail(&E, "a@example.com", "") != SMTP_OK) exit(1);
  pump("250 ok\r\n");
  if (smtp_engine_rcpt(&E, "b@example.com", "") != SMTP_OK) exit(1);
  pump("250 ok\r\n");
  if (smtp_engine_data(&E) != SMTP_OK) exit(1);
  pump("354 go\r\n");
  if (!(smtp_engine_state(&E) & SMTP_SENDAPP))
    exit(1);
}

static double run_dot(const unsigned char *p, size_t n)
{
  size_t i = 0, len;
  const unsigned char *b;
  double t;

  to_data();
  t = now();
  while (i < n) {
    size_t want = n - i < CHUNK ? n - i : CHUNK;
    size_t used = smtp_engine_body(&E, p + i, want);
    i += used;
    if (used < want && (smtp_engine_state(&E) & SMTP_SENDREC)) {
      b = smtp_engine_sendrec_buf(&E, &len);
      sink += b[0];
      smtp_engine_sendrec_ack(&E, len);
    }
  }
  if (smtp_engine_state(&E) & SMTP_SENDREC) {
    b = smtp_engine_sendrec_buf(&E, &len);
    smtp_engine_sendrec_ack(&E, len);
  }
  return now() - t;
}

static int raw;

static void report(const char *name, const char *key,
                   double (*f)(const unsigned char *, size_t),
                   const unsigned char *p, size_t n)
{
  double best = 1e9;
  int r;

  if (raw)
    printf("%s", key);
  for (r = 0; r < RUNS; r++) {
    double t = f(p, n);
    if (t < best)
      best = t;
    if (raw)
      printf(" %.1f", (double)n / t / 1e6);
  }
  if (raw)
    printf("\n");
  else
    printf("%-28s %8.0f MB/s\n", name, (double)n / best / 1e6);
  fflush(stdout);
}

int main(int argc, char **argv)
{
  size_t i;

  raw = argc > 1 && strcmp(argv[1], "-r") == 0;

  in = malloc(SIZE);
  text = malloc(SIZE + 4096);
  text_lf = malloc(SIZE + 4096);
  out = malloc(SMTP_CODEC_QP_BOUND(CHUNK) + SMTP_CODEC_B64_BOUND(CHUNK));
  if (!in || !text || !text_lf || !out)
    return 1;
  for (i = 0; i < SIZE; i++)
    in[i] = (unsigned char)rnd();
  text_len = make_text(text, SIZE + 4096, 0);
  text_lf_len = make_text(text_lf, SIZE + 4096, 1);
  if (!raw)
    printf("64 MiB in 64 KiB chunks, best of %d\n", RUNS);
  report("base64 (random bytes)", "b64", run_b64, in, SIZE);
  report("quoted-printable (text)", "qp", run_qp, text, text_len);
  report("quoted-printable (random)", "qp-random", run_qp, in, SIZE);
  report("dot-stuffing (CRLF text)", "dot", run_dot, text, text_len);
  report("dot-stuffing (LF text)", "dot-lf", run_dot, text_lf, text_lf_len);
  free(in);
  free(text);
  free(text_lf);
  free(out);
  return sink == 0;
}
