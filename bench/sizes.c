/*
 * sizes.c -- the memory a session holds by construction: the size of the
 * userdata (smtp_wire, with the engine inside it; TLS, proxy and SASL state
 * it allocates only when a session uses them), the TLS context a
 * connection's sessions share (its CAs and saved session on the heap), and
 * mbedTLS's record buffers, which it allocates at the handshake.  Prints
 * "key value" lines for bench/bench.lua.
 */
#include <stdio.h>

#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#if MBEDTLS_VERSION_NUMBER < 0x03000000
#include <mbedtls/ssl_internal.h>   /* the buffer lengths, private in 3.x */
#endif

#include "../src/wire.h"

#ifndef MBEDTLS_SSL_IN_BUFFER_LEN
#define MBEDTLS_SSL_IN_BUFFER_LEN 0
#endif
#ifndef MBEDTLS_SSL_OUT_BUFFER_LEN
#define MBEDTLS_SSL_OUT_BUFFER_LEN 0
#endif

int main(void)
{
  printf("mbedtls %s\n", MBEDTLS_VERSION_STRING);
  printf("wire %zu\n", sizeof(smtp_wire));
  printf("engine %zu\n", sizeof(smtp_engine));
  printf("tls %zu\n", sizeof(smtp_tls));
  printf("tls_context %zu\n", sizeof(smtp_tls_ctx));
  printf("sasl %zu\n", sizeof(smtp_sasl));
  printf("proxy %zu\n", sizeof(smtp_proxy));
  printf("wire_sasl %zu\n", sizeof(struct smtp_wire_sasl));
  printf("in_content_len %d\n", (int)MBEDTLS_SSL_IN_CONTENT_LEN);
  printf("out_content_len %d\n", (int)MBEDTLS_SSL_OUT_CONTENT_LEN);
  printf("in_buffer_len %d\n", (int)MBEDTLS_SSL_IN_BUFFER_LEN);
  printf("out_buffer_len %d\n", (int)MBEDTLS_SSL_OUT_BUFFER_LEN);
#if defined(MBEDTLS_SSL_VARIABLE_BUFFER_LENGTH)
  printf("variable_buffer_length 1\n");
#else
  printf("variable_buffer_length 0\n");
#endif
#if defined(MBEDTLS_SSL_MAX_FRAGMENT_LENGTH)
  printf("max_fragment_length 1\n");
#else
  printf("max_fragment_length 0\n");
#endif
  return 0;
}
