/*
 * harness.h -- the bookkeeping shared by the C tests: checks that report
 * and carry on, a pass/fail count per test, and the summary line that
 * `make ctest` adds up ("N passed, M failed").
 *
 * Include it from exactly one file per test binary (everything is static).
 */
#ifndef SMTP_TEST_HARNESS_H
#define SMTP_TEST_HARNESS_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static unsigned h_passed, h_failed;
static unsigned h_bad;          /* checks failed in the current test */
static char h_name[160];

/* A test failing at every split point would print thousands of lines; the
 * first few say all there is to say. */
#define H_REPORT_MAX 8u

static void h_failf(const char *file, int line, const char *fmt, ...)
{
  va_list ap;

  if (h_bad++ >= H_REPORT_MAX)
    return;
  printf("FAIL %s: %s:%d: ", h_name, file, line);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
}

#define CHECK(c) \
  do { if (!(c)) h_failf(__FILE__, __LINE__, "%s", #c); } while (0)

#define CHECK_INT(got, want) \
  do { long long g_ = (long long)(got), w_ = (long long)(want); \
       if (g_ != w_) h_failf(__FILE__, __LINE__, "%s is %lld, want %lld", \
                             #got, g_, w_); } while (0)

/* Byte strings may hold NUL and CR; print them escaped. */
static const char *h_esc(char *dst, size_t cap, const void *p, size_t n)
{
  const unsigned char *s = p;
  size_t i, o = 0;

  for (i = 0; i < n && o + 5 < cap; i++) {
    if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\\')
      dst[o++] = (char)s[i];
    else
      o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", s[i]);
  }
  if (i < n && o + 4 < cap)
    o += (size_t)snprintf(dst + o, cap - o, "...");
  dst[o] = '\0';
  return dst;
}

#define CHECK_MEM(got, glen, want, wlen) \
  do { size_t gl_ = (glen), wl_ = (wlen); \
       if (gl_ != wl_ || memcmp((got), (want), gl_) != 0) { \
         char gb_[400], wb_[400]; \
         h_failf(__FILE__, __LINE__, "%s is \"%s\", want \"%s\"", #got, \
                 h_esc(gb_, sizeof gb_, (got), gl_), \
                 h_esc(wb_, sizeof wb_, (want), wl_)); } } while (0)

#define CHECK_STR(got, want) \
  CHECK_MEM((got), strlen(got), (want), strlen(want))

static void h_begin(const char *name, const char *variant)
{
  snprintf(h_name, sizeof h_name, "%s%s%s", name, *variant ? "/" : "",
           variant);
  h_bad = 0;
}

static void h_end(void)
{
  if (h_bad > H_REPORT_MAX)
    printf("FAIL %s: ... %u failed checks in all\n", h_name, h_bad);
  if (h_bad)
    h_failed++;
  else
    h_passed++;
}

/* The last line of output, which the Makefile reads. */
static int h_summary(void)
{
  printf("%u passed, %u failed\n", h_passed, h_failed);
  return h_failed ? 1 : 0;
}

#endif
