/*
 * tls.c -- TLS over memory buffers with mbedTLS; see tls.h.
 *
 * Verification runs with authmode OPTIONAL and is enforced right after the
 * handshake, before a single byte of SMTP goes through: that way a failure
 * can name the certificate it refused, and an IP literal is matched against
 * iPAddress names here, the same way on 2.28 (which cannot) and 3.x.
 */
#include "tls.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/asn1.h>
#include <mbedtls/error.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/version.h>

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#include <psa/crypto.h>
#endif

/* The usual homes of the system's trusted CAs, file first. */
static const char *const ca_files[] = {
  "/etc/ssl/certs/ca-certificates.crt",                 /* Debian, Ubuntu, Arch, Gentoo */
  "/etc/pki/tls/certs/ca-bundle.crt",                   /* Fedora, RHEL */
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  /* RHEL 7+ */
  "/etc/ssl/ca-bundle.pem",                             /* openSUSE */
  "/etc/ssl/cert.pem",                                  /* Alpine, macOS, OpenBSD */
  "/usr/local/etc/ssl/cert.pem",                        /* FreeBSD */
  "/usr/local/share/certs/ca-root-nss.crt",             /* FreeBSD ports */
  NULL
};
static const char *const ca_dirs[] = {
  "/etc/ssl/certs", "/etc/pki/tls/certs", "/system/etc/security/cacerts", NULL
};

static void describe(char *error, size_t cap, const char *what, int ret) {
  char detail[160] = "";
  if (ret != 0) {
    mbedtls_strerror(ret, detail, sizeof detail);
    snprintf(error, cap, "%s: %s (-0x%04x)", what, detail, (unsigned)-ret);
  } else {
    snprintf(error, cap, "%s", what);
  }
}

static void set_error(smtp_tls *t, const char *what, int ret) {
  t->failed = 1;
  describe(t->error, sizeof t->error, what, ret);
}

static void set_ctx_error(smtp_tls_ctx *c, const char *what, int ret) {
  describe(c->error, sizeof c->error, what, ret);
}

/* ---- the BIO callbacks over the two buffers ---- */

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  smtp_tls *t = ctx;
  if (t->out_off > 0) {
    memmove(t->out, t->out + t->out_off, t->out_len - t->out_off);
    t->out_len -= t->out_off;
    t->out_off = 0;
  }
  if (len > SMTP_TLS_OUT_SIZE - t->out_len) len = SMTP_TLS_OUT_SIZE - t->out_len;
  if (len == 0) return MBEDTLS_ERR_SSL_WANT_WRITE;
  memcpy(t->out + t->out_len, buf, len);
  t->out_len += len;
  return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
  smtp_tls *t = ctx;
  size_t n = t->in_len - t->in_off;
  if (n == 0) return t->in_eof ? 0 : MBEDTLS_ERR_SSL_WANT_READ;
  if (n > len) n = len;
  memcpy(buf, t->in + t->in_off, n);
  t->in_off += n;
  if (t->in_off == t->in_len) t->in_off = t->in_len = 0;
  return (int)n;
}

/* ---- configuration ---- */

static int is_pem(const char *s) {
  return strstr(s, "-----BEGIN") != NULL;
}

static int load_cas(smtp_tls_ctx *c, const smtp_tls_options *o) {
  size_t i;
  if (o->cafile && mbedtls_x509_crt_parse_file(&c->ca, o->cafile) < 0) {
    snprintf(c->error, sizeof c->error, "cannot load tls.cafile %s", o->cafile);
    return -1;
  }
  if (o->capath && mbedtls_x509_crt_parse_path(&c->ca, o->capath) < 0) {
    snprintf(c->error, sizeof c->error, "cannot load tls.capath %s", o->capath);
    return -1;
  }
  if (o->cafile || o->capath) return 0;
  /* A bundle may hold a certificate mbedTLS cannot parse (a positive
   * return counts them): the others still serve. */
  for (i = 0; ca_files[i] && c->ca.version == 0; i++)
    (void)mbedtls_x509_crt_parse_file(&c->ca, ca_files[i]);
  for (i = 0; ca_dirs[i] && c->ca.version == 0; i++)
    (void)mbedtls_x509_crt_parse_path(&c->ca, ca_dirs[i]);
  if (c->ca.version == 0 && o->verify) {
    snprintf(c->error, sizeof c->error,
             "no trusted CA certificates found on this system; set tls.cafile");
    return -1;
  }
  return 0;
}

static int load_client_cert(smtp_tls_ctx *c, const smtp_tls_options *o) {
  int ret;
  if (!o->certificate && !o->key) return 0;
  if (!o->certificate || !o->key) {
    snprintf(c->error, sizeof c->error, "tls.certificate and tls.key go together");
    return -1;
  }
  ret = is_pem(o->certificate)
    ? mbedtls_x509_crt_parse(&c->cert, (const unsigned char *)o->certificate, strlen(o->certificate) + 1)
    : mbedtls_x509_crt_parse_file(&c->cert, o->certificate);
  if (ret != 0) {
    set_ctx_error(c, "cannot load tls.certificate", ret < 0 ? ret : 0);
    return -1;
  }
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  ret = is_pem(o->key)
    ? mbedtls_pk_parse_key(&c->key, (const unsigned char *)o->key, strlen(o->key) + 1, NULL, 0,
                           mbedtls_ctr_drbg_random, &c->drbg)
    : mbedtls_pk_parse_keyfile(&c->key, o->key, NULL, mbedtls_ctr_drbg_random, &c->drbg);
#else
  ret = is_pem(o->key)
    ? mbedtls_pk_parse_key(&c->key, (const unsigned char *)o->key, strlen(o->key) + 1, NULL, 0)
    : mbedtls_pk_parse_keyfile(&c->key, o->key, NULL);
#endif
  if (ret != 0) {
    set_ctx_error(c, "cannot load tls.key", ret);
    return -1;
  }
  /* mbedtls_ssl_conf_own_cert takes any key: a wrong one would only show
   * as a handshake the server breaks off. */
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  ret = mbedtls_pk_check_pair(&c->cert.pk, &c->key, mbedtls_ctr_drbg_random, &c->drbg);
#else
  ret = mbedtls_pk_check_pair(&c->cert.pk, &c->key);
#endif
  if (ret == 0) ret = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key);
  if (ret != 0) {
    set_ctx_error(c, "tls.certificate and tls.key do not match", ret);
    return -1;
  }
  return 0;
}

static const char *const version_names[] = { "?", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3" };

/* Limit the handshake to [min, max]; max 0 means the newest this build
 * has.  Each mbedTLS line has its own API and its own set of versions. */
static int set_versions(smtp_tls_ctx *c, int min, int max) {
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  static const int have[] = { 0, 0, 0,
#if defined(MBEDTLS_SSL_PROTO_TLS1_2)
    1,
#else
    0,
#endif
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
    1
#else
    0
#endif
  };
#else
  static const int have[] = { 0,
#if defined(MBEDTLS_SSL_PROTO_TLS1)
    1,
#else
    0,
#endif
#if defined(MBEDTLS_SSL_PROTO_TLS1_1)
    1,
#else
    0,
#endif
#if defined(MBEDTLS_SSL_PROTO_TLS1_2)
    1,
#else
    0,
#endif
    0 };
#endif
  int v;
  if (max == 0)
    for (max = SMTP_TLS_1_3; max > min && !have[max]; max--) continue;
  for (v = min; v <= max; v++) {
    if (v < SMTP_TLS_1_0 || v > SMTP_TLS_1_3 || !have[v]) {
      snprintf(c->error, sizeof c->error, "%s is not available in the linked mbedTLS %s",
               v >= SMTP_TLS_1_0 && v <= SMTP_TLS_1_3 ? version_names[v] : "this version",
               MBEDTLS_VERSION_STRING);
      return -1;
    }
  }
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  mbedtls_ssl_conf_min_tls_version(&c->conf, (mbedtls_ssl_protocol_version)(0x0300 + min));
  mbedtls_ssl_conf_max_tls_version(&c->conf, (mbedtls_ssl_protocol_version)(0x0300 + max));
#else
  mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, min);
  mbedtls_ssl_conf_max_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, max);
#endif
  return 0;
}

/* The DRBG's seed straight from the system's CSPRNG: mbedTLS's own
 * entropy gathering polls its timing source in a loop, which cost about
 * 80 µs per session. */
static int system_entropy(void *unused, unsigned char *out, size_t len) {
  (void)unused;
  while (len > 0) {
    size_t n = len < 256 ? len : 256;
    if (getentropy(out, n) != 0) return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
    out += n;
    len -= n;
  }
  return 0;
}

int smtp_tls_ctx_init(smtp_tls_ctx *c, const smtp_tls_options *o) {
  static const char pers[] = "lua-smtp";
  int ret;
  memset(c, 0, sizeof *c);
  mbedtls_ssl_config_init(&c->conf);
  mbedtls_x509_crt_init(&c->ca);
  mbedtls_x509_crt_init(&c->cert);
  mbedtls_pk_init(&c->key);
  mbedtls_ctr_drbg_init(&c->drbg);
  mbedtls_ssl_session_init(&c->saved);
  c->live = 1;
  c->verify = o->verify;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  if (psa_crypto_init() != PSA_SUCCESS) {
    snprintf(c->error, sizeof c->error, "psa_crypto_init failed");
    return SMTP_TLS_FAIL;
  }
#endif
  ret = mbedtls_ctr_drbg_seed(&c->drbg, system_entropy, NULL,
                              (const unsigned char *)pers, sizeof pers - 1);
  if (ret != 0) { set_ctx_error(c, "cannot seed the random generator", ret); return SMTP_TLS_FAIL; }
  ret = mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT);
  if (ret != 0) { set_ctx_error(c, "cannot set up TLS", ret); return SMTP_TLS_FAIL; }
  if (set_versions(c, o->min_version, o->max_version) < 0 || load_cas(c, o) < 0 ||
      load_client_cert(c, o) < 0)
    return SMTP_TLS_FAIL;
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
  {
    /* P-256 first: mbedTLS computes it with its NIST fast reduction and a
     * precomputed comb for the key share, several times faster than its
     * generic-bignum X25519; servers (OpenSSL) take the client's order. */
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
    static const uint16_t groups[] = {
      MBEDTLS_SSL_IANA_TLS_GROUP_SECP256R1, MBEDTLS_SSL_IANA_TLS_GROUP_X25519,
      MBEDTLS_SSL_IANA_TLS_GROUP_SECP384R1, MBEDTLS_SSL_IANA_TLS_GROUP_NONE
    };
    mbedtls_ssl_conf_groups(&c->conf, groups);
#else
    static const mbedtls_ecp_group_id curves[] = {
      MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP384R1,
      MBEDTLS_ECP_DP_NONE
    };
    mbedtls_ssl_conf_curves(&c->conf, curves);
#endif
  }
#if defined(MBEDTLS_SSL_SESSION_TICKETS)
  mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
#endif
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
  /* A resumed TLS 1.3 session still does (EC)DHE: forward secrecy stays. */
  mbedtls_ssl_conf_tls13_key_exchange_modes(&c->conf, MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ALL);
#if defined(MBEDTLS_SSL_SESSION_TICKETS) && defined(MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED)
  /* TLS 1.3 tickets come after the handshake; smtp_tls_read saves them. */
  mbedtls_ssl_conf_tls13_enable_signal_new_session_tickets(
    &c->conf, MBEDTLS_SSL_TLS1_3_SIGNAL_NEW_SESSION_TICKETS_ENABLED);
#endif
#endif
  mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
  mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
  /* An IP address is no name to send as SNI (RFC 6066 3): check_peer
   * matches it against iPAddress names instead. */
  if (o->ip && (o->ip_len == 4 || o->ip_len == 16)) {
    memcpy(c->ip, o->ip, o->ip_len);
    c->ip_len = o->ip_len;
  } else if (o->servername) {
    if (strlen(o->servername) >= sizeof c->servername) {
      set_ctx_error(c, "bad tls.servername", MBEDTLS_ERR_SSL_BAD_INPUT_DATA);
      return SMTP_TLS_FAIL;
    }
    strcpy(c->servername, o->servername);
  }
  if (o->pin) {
    memcpy(c->pin, o->pin, sizeof c->pin);
    c->has_pin = 1;
  }
  c->ready = 1;
  return SMTP_TLS_DONE;
}

const char *smtp_tls_ctx_error(const smtp_tls_ctx *c) {
  return c->error;
}

void smtp_tls_ctx_forget(smtp_tls_ctx *c) {
  mbedtls_ssl_session_free(&c->saved);   /* zeroes the master secret */
  mbedtls_ssl_session_init(&c->saved);
  c->saved_flags = 0;
  c->has_saved = 0;
}

void smtp_tls_ctx_free(smtp_tls_ctx *c) {
  if (c->live) {
    mbedtls_ssl_session_free(&c->saved);
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_x509_crt_free(&c->ca);
    mbedtls_x509_crt_free(&c->cert);
    mbedtls_pk_free(&c->key);
    mbedtls_ctr_drbg_free(&c->drbg);
  }
  mbedtls_platform_zeroize(c, sizeof *c);
}

/* Called for each certificate of the chain the server sent: only a full
 * handshake gets here, so a session that never did was resumed. */
static int saw_certificate(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  (void)crt;
  (void)depth;
  (void)flags;
  ((smtp_tls *)ctx)->full = 1;
  return 0;
}

int smtp_tls_init(smtp_tls *t, smtp_tls_ctx *c) {
  int ret;
  memset(t, 0, sizeof *t);
  mbedtls_ssl_init(&t->ssl);
  t->ctx = c;
  t->failed = 1;   /* until the end of this function */
  if (!c->ready) {
    snprintf(t->error, sizeof t->error, "%s", c->error[0] ? c->error : "TLS is not set up");
    return SMTP_TLS_FAIL;
  }
  ret = mbedtls_ssl_setup(&t->ssl, &c->conf);
  if (ret != 0) { set_error(t, "cannot set up TLS", ret); return SMTP_TLS_FAIL; }
  /* Always called: without it mbedTLS checks no name at all (and 3.6.3+
   * refuses to verify).  NULL for an IP address, or no name. */
  ret = mbedtls_ssl_set_hostname(&t->ssl, c->servername[0] ? c->servername : NULL);
  if (ret != 0) { set_error(t, "bad tls.servername", ret); return SMTP_TLS_FAIL; }
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  mbedtls_ssl_set_verify(&t->ssl, saw_certificate, t);
  /* A session mbedTLS will not take (out of memory, too old) only costs
   * the resumption. */
  t->offered = c->has_saved && mbedtls_ssl_set_session(&t->ssl, &c->saved) == 0;
  t->offered_flags = c->saved_flags;
  t->failed = 0;
  t->error[0] = '\0';
  return SMTP_TLS_DONE;
}

/* ---- after the handshake: the peer ---- */

static int ip_san_matches(const mbedtls_x509_crt *c, const unsigned char *ip, size_t len) {
  const mbedtls_x509_sequence *s;
  for (s = &c->subject_alt_names; s != NULL; s = s->next)
    if ((s->buf.tag & MBEDTLS_ASN1_TAG_VALUE_MASK) == 7 && s->buf.len == len &&
        memcmp(s->buf.p, ip, len) == 0)
      return 1;
  return 0;
}

static int pin_matches(const smtp_tls_ctx *c, const mbedtls_x509_crt *peer) {
  unsigned char der[2048], hash[32];
  int n;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  n = mbedtls_pk_write_pubkey_der(&peer->pk, der, sizeof der);
#else
  /* 2.28 takes the key as non-const; it only reads it. */
  n = mbedtls_pk_write_pubkey_der((mbedtls_pk_context *)(uintptr_t)&peer->pk, der, sizeof der);
#endif
  if (n <= 0) return 0;
  if (mbedtls_md(mbedtls_md_info_from_type(MBEDTLS_MD_SHA256), der + sizeof der - n,
                 (size_t)n, hash) != 0)
    return 0;
  return memcmp(hash, c->pin, sizeof hash) == 0;
}

/* The same checks whether the session was resumed or not.  A resumed
 * session was verified when it was new: mbedTLS brings back its
 * certificate, but after a TLS 1.3 resumption (3.6) not its verification
 * result, which the context kept. */
static int check_peer(smtp_tls *t) {
  const smtp_tls_ctx *c = t->ctx;
  const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
  uint32_t flags = smtp_tls_resumed(t) ? t->offered_flags : mbedtls_ssl_get_verify_result(&t->ssl);
  if (peer == NULL) flags |= MBEDTLS_X509_BADCERT_MISSING;
  if (c->ip_len && !(peer && ip_san_matches(peer, c->ip, c->ip_len)))
    flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
  t->flags = flags;
  if (c->verify && flags != 0) {
    char info[200];
    int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
    if (n > 0 && info[n - 1] == '\n') info[n - 1] = '\0';
    snprintf(t->error, sizeof t->error, "the server's certificate was refused: %s", info);
    t->failed = 1;
    return SMTP_TLS_FAIL;
  }
  if (c->has_pin && (peer == NULL || !pin_matches(c, peer))) {
    snprintf(t->error, sizeof t->error,
             "the server's public key does not match tls.pin");
    t->failed = 1;
    return SMTP_TLS_FAIL;
  }
  return SMTP_TLS_DONE;
}

/* Keep this session for the next one of the connection.  Into a copy
 * first: mbedTLS 3.x exports a session once, and a failed export must not
 * lose the one saved before. */
static void save_session(smtp_tls *t) {
  mbedtls_ssl_session s;
  mbedtls_ssl_session_init(&s);
  if (mbedtls_ssl_get_session(&t->ssl, &s) != 0) {
    mbedtls_ssl_session_free(&s);
    return;
  }
  smtp_tls_ctx_forget(t->ctx);
  t->ctx->saved = s;
  t->ctx->saved_flags = t->flags;
  t->ctx->has_saved = 1;
  mbedtls_platform_zeroize(&s, sizeof s);
}

/* A TLS 1.3 session is worth keeping only with the ticket that comes
 * after the handshake (see smtp_tls_read). */
static int resumable_now(const smtp_tls *t) {
#if defined(MBEDTLS_SSL_PROTO_TLS1_3)
  return mbedtls_ssl_get_version_number(&t->ssl) != MBEDTLS_SSL_VERSION_TLS1_3;
#else
  (void)t;
  return 1;
#endif
}

int smtp_tls_handshake(smtp_tls *t) {
  int ret;
  if (t->failed) return SMTP_TLS_FAIL;
  /* One flight at a time: what mbedTLS wrote goes out before it writes more. */
  if (t->out_off < t->out_len) return SMTP_TLS_AGAIN;
  ret = mbedtls_ssl_handshake(&t->ssl);
  if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
    return SMTP_TLS_AGAIN;
  if (ret == 0) {
    t->handshaken = 1;
    if (check_peer(t) == SMTP_TLS_DONE) {
      if (resumable_now(t)) save_session(t);
      return SMTP_TLS_DONE;
    }
  }
  smtp_tls_ctx_forget(t->ctx);
  if (ret == 0) return SMTP_TLS_FAIL;
  if (t->first_len >= 3 && t->first[0] >= '1' && t->first[0] <= '5' &&
      t->first[1] >= '0' && t->first[1] <= '9' && t->first[2] >= '0' && t->first[2] <= '9') {
    t->failed = 1;
    snprintf(t->error, sizeof t->error,
             "the server answered in plaintext (\"%.3s ...\") where a TLS handshake was expected",
             (const char *)t->first);
  } else if (ret == MBEDTLS_ERR_SSL_CONN_EOF) {
    set_error(t, "the server closed the connection during the TLS handshake", 0);
  } else {
    set_error(t, "TLS handshake failed", ret);
  }
  return SMTP_TLS_FAIL;
}

/* ---- moving bytes ---- */

const unsigned char *smtp_tls_out_buf(const smtp_tls *t, size_t *len) {
  *len = t->out_len - t->out_off;
  return t->out + t->out_off;
}

void smtp_tls_out_ack(smtp_tls *t, size_t len) {
  t->out_off += len;
  if (t->out_off == t->out_len) t->out_off = t->out_len = 0;
}

unsigned char *smtp_tls_in_buf(smtp_tls *t, size_t *len) {
  if (t->in_off > 0) {
    memmove(t->in, t->in + t->in_off, t->in_len - t->in_off);
    t->in_len -= t->in_off;
    t->in_off = 0;
  }
  *len = t->failed || t->in_eof ? 0 : SMTP_TLS_IN_SIZE - t->in_len;
  return t->in + t->in_len;
}

void smtp_tls_in_ack(smtp_tls *t, size_t len) {
  size_t keep = sizeof t->first - t->first_len;
  if (keep > len) keep = len;
  memcpy(t->first + t->first_len, t->in + t->in_len, keep);
  t->first_len += keep;
  t->in_len += len;
}

void smtp_tls_in_eof(smtp_tls *t) {
  t->in_eof = 1;
}

size_t smtp_tls_write(smtp_tls *t, const unsigned char *p, size_t len) {
  int ret;
  if (t->failed) return 0;
  if (len > SMTP_TLS_PLAIN_MAX) len = SMTP_TLS_PLAIN_MAX;
  if (SMTP_TLS_OUT_SIZE - (t->out_len - t->out_off) < len + 2048) return 0;
  ret = mbedtls_ssl_write(&t->ssl, p, len);
  if (ret < 0) {
    set_error(t, "TLS write failed", ret);
    return 0;
  }
  return (size_t)ret;
}

int smtp_tls_read(smtp_tls *t, unsigned char *buf, size_t cap, size_t *got) {
  int held = 0;
  *got = 0;
  if (t->failed) return SMTP_TLS_FAIL;
  for (;;) {
    int ret = mbedtls_ssl_read(&t->ssl, buf, cap);
    if (ret > 0) {
      *got = (size_t)ret;
      return SMTP_TLS_DONE;
    }
    /* mbedTLS 3.6 reads a TLS 1.3 NewSessionTicket, then says WANT_READ
     * with the message held back for the next call: go on, or the records
     * behind it would wait for bytes that have already come.  Bounded, in
     * case a library holds a message without moving on. */
    if (ret == MBEDTLS_ERR_SSL_WANT_READ && mbedtls_ssl_check_pending(&t->ssl) && held++ < 8) continue;
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
      return SMTP_TLS_AGAIN;
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
    /* Only a session that passed check_peer reads: the ticket may serve. */
    if (ret == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET) {
      save_session(t);
      continue;
    }
#endif
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF) {
      t->in_eof = 1;
      t->in_off = t->in_len = 0;
      return SMTP_TLS_AGAIN;
    }
    set_error(t, "TLS read failed", ret);
    return SMTP_TLS_FAIL;
  }
}

int smtp_tls_eof(const smtp_tls *t) {
  return t->in_eof && t->in_off == t->in_len;
}

void smtp_tls_close_notify(smtp_tls *t) {
  if (!t->failed) (void)mbedtls_ssl_close_notify(&t->ssl);
}

const char *smtp_tls_error(const smtp_tls *t) {
  return t->error;
}

/* ---- the report ---- */

int smtp_tls_handshaken(const smtp_tls *t) {
  return t->handshaken;
}

int smtp_tls_resumed(const smtp_tls *t) {
  return t->handshaken && t->offered && !t->full;
}

const char *smtp_tls_version(const smtp_tls *t) {
  return mbedtls_ssl_get_version(&t->ssl);
}

const char *smtp_tls_cipher(const smtp_tls *t) {
  return mbedtls_ssl_get_ciphersuite(&t->ssl);
}

const mbedtls_x509_crt *smtp_tls_peer(const smtp_tls *t) {
  return mbedtls_ssl_get_peer_cert(&t->ssl);
}

size_t smtp_tls_problems(const smtp_tls *t, const char *names[], size_t max) {
  static const struct { uint32_t flag; const char *name; } known[] = {
    { MBEDTLS_X509_BADCERT_EXPIRED, "expired" },
    { MBEDTLS_X509_BADCERT_FUTURE, "not-yet-valid" },
    { MBEDTLS_X509_BADCERT_NOT_TRUSTED, "not-trusted" },
    { MBEDTLS_X509_BADCERT_CN_MISMATCH, "name-mismatch" },
    { MBEDTLS_X509_BADCERT_REVOKED, "revoked" },
    { MBEDTLS_X509_BADCERT_MISSING, "missing" },
    { MBEDTLS_X509_BADCERT_KEY_USAGE, "wrong-usage" },
    { MBEDTLS_X509_BADCERT_EXT_KEY_USAGE, "wrong-usage" },
    { MBEDTLS_X509_BADCERT_BAD_MD, "weak-hash" },
    { MBEDTLS_X509_BADCERT_BAD_PK, "weak-key" },
    { MBEDTLS_X509_BADCERT_BAD_KEY, "weak-key" },
    { MBEDTLS_X509_BADCERT_SKIP_VERIFY, "not-verified" },
    { MBEDTLS_X509_BADCERT_OTHER, "other" },
  };
  size_t i, n = 0;
  uint32_t seen = 0;
  for (i = 0; i < sizeof known / sizeof *known && n < max; i++) {
    if (!(t->flags & known[i].flag)) continue;
    if (n > 0 && strcmp(names[n - 1], known[i].name) == 0) continue;
    names[n++] = known[i].name;
    seen |= known[i].flag;
  }
  if ((t->flags & ~seen) && n < max && (n == 0 || strcmp(names[n - 1], "other") != 0))
    names[n++] = "other";
  return n;
}

const char *smtp_tls_library(void) {
  return MBEDTLS_VERSION_STRING;
}

void smtp_tls_free(smtp_tls *t) {
  mbedtls_ssl_free(&t->ssl);
  mbedtls_platform_zeroize(t, sizeof *t);
}
