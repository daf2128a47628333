/*
 * lsmtp.c -- the Lua binding: the only C file that knows Lua.
 *
 * smtp.core exposes three userdata types: a TLS context (what the TLS
 * sessions of one connection share), a wire (the sans-IO SMTP engine
 * behind its TLS filter) and a tcp socket (the built-in transport).  The
 * Lua driver in lua/smtp/session.lua moves bytes between them.  Misuse
 * raises; network failures return nil, kind, message.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mbedtls/platform_util.h>

#include "codec.h"
#include "compat.h"
#include "net.h"
#include "wire.h"

#define TLS_CONTEXT_MT "smtp.tls_context"
#define WIRE_MT "smtp.wire"
#define TCP_MT "smtp.tcp"
#define ENCODER_MT "smtp.encoder"

/* ---- wire and engine ---- */

/* The wire borrows its TLS context: the reference keeps the context alive
 * (and so not finalized) until the wire is freed. */
typedef struct {
  smtp_wire w;
  int context;   /* a reference in the registry, or LUA_NOREF */
} lua_wire;

static smtp_wire *check_wire(lua_State *L) {
  return &((lua_wire *)luaL_checkudata(L, 1, WIRE_MT))->w;
}

static smtp_engine *check_engine(lua_State *L) {
  return &check_wire(L)->engine;
}

/* A string argument that may not hold NUL (C sees only up to it). */
static const char *check_arg(lua_State *L, int i) {
  size_t len;
  const char *s = luaL_optlstring(L, i, "", &len);
  if (strlen(s) != len) luaL_argerror(L, i, "contains a NUL byte");
  return s;
}

static int result(lua_State *L, int r, const char *what) {
  switch (r) {
    case SMTP_OK: lua_pushliteral(L, "ok"); return 1;
    case SMTP_AGAIN: lua_pushliteral(L, "again"); return 1;
    case SMTP_EDONE: lua_pushliteral(L, "done"); return 1;
    case SMTP_EINVAL:
      return luaL_error(L, "%s: argument contains CR, LF, NUL or <>, or is too long", what);
    default:
      return luaL_error(L, "%s: not allowed in this state of the session", what);
  }
}

static const char *opt_string(lua_State *L, int t, const char *key) {
  const char *s;
  lua_getfield(L, t, key);
  s = lua_tostring(L, -1);   /* the table keeps it alive */
  lua_pop(L, 1);
  return s;
}

static int opt_int(lua_State *L, int t, const char *key) {
  int v;
  lua_getfield(L, t, key);
  v = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static const char *const proxy_types[] = { "none", "socks4", "socks4a", "socks5", "http", NULL };

/* tls_context(tls) -> context | nil, kind, message
 * tls: { min, max, verify, cafile, capath, certificate, key, servername,
 * pin (32 raw bytes) } as lua/smtp/options.lua made it.  What every TLS
 * session of one connection shares (see src/tls.h); the strings are copied
 * or parsed, so the table may change afterwards. */
static int tls_context_new(lua_State *L) {
  smtp_tls_options o;
  unsigned char ip[16];
  size_t pin_len = 0;
  smtp_tls_ctx *c;
  memset(&o, 0, sizeof o);
  luaL_checktype(L, 1, LUA_TTABLE);
  o.min_version = opt_int(L, 1, "min");
  o.max_version = opt_int(L, 1, "max");
  lua_getfield(L, 1, "verify");
  o.verify = lua_toboolean(L, -1);
  lua_pop(L, 1);
  o.cafile = opt_string(L, 1, "cafile");
  o.capath = opt_string(L, 1, "capath");
  o.certificate = opt_string(L, 1, "certificate");
  o.key = opt_string(L, 1, "key");
  o.servername = opt_string(L, 1, "servername");
  luaL_argcheck(L, o.servername != NULL, 1, "servername is required");
  o.ip_len = smtp_net_ip(o.servername, ip);
  o.ip = o.ip_len ? ip : NULL;
  lua_getfield(L, 1, "pin");
  o.pin = (const unsigned char *)lua_tolstring(L, -1, &pin_len);
  luaL_argcheck(L, o.pin == NULL || pin_len == 32, 1, "pin must be 32 bytes");
  c = (smtp_tls_ctx *)compat_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);   /* closed: __gc has nothing to free */
  luaL_setmetatable(L, TLS_CONTEXT_MT);
  if (smtp_tls_ctx_init(c, &o) != SMTP_TLS_DONE) {
    lua_pushnil(L);
    lua_pushstring(L, smtp_error_kind_name(SMTP_ERR_TLS));
    lua_pushstring(L, smtp_tls_ctx_error(c));
    smtp_tls_ctx_free(c);
    return 3;
  }
  return 1;
}

static int tls_context_gc(lua_State *L) {
  smtp_tls_ctx_free((smtp_tls_ctx *)luaL_checkudata(L, 1, TLS_CONTEXT_MT));
  return 0;
}

/* wire(helo, pipelining, context, mode, proxy, lmtp) -> wire | nil, kind, message
 * context: nil (no TLS), or a tls_context; mode: "implicit", "explicit" or
 * "opportunistic".  proxy: nil, or { type, host, port, username, password,
 * domain }. */
static int wire_new(lua_State *L) {
  static const char *const modes[] = { "implicit", "explicit", "opportunistic", NULL };
  const char *helo = check_arg(L, 1);
  unsigned opts = (lua_toboolean(L, 2) ? 0 : SMTP_OPT_NO_PIPELINING) |
                  (lua_toboolean(L, 6) ? SMTP_OPT_LMTP : 0);
  smtp_tls_ctx *ctx = NULL;
  smtp_wire_proxy px;
  smtp_error_kind kind;
  int mode = 0;
  lua_wire *lw;
  int r;
  memset(&px, 0, sizeof px);
  if (!lua_isnoneornil(L, 3)) {
    ctx = (smtp_tls_ctx *)luaL_checkudata(L, 3, TLS_CONTEXT_MT);
    luaL_argcheck(L, ctx->ready, 3, "a TLS context that failed its setup");
    mode = luaL_checkoption(L, 4, NULL, modes);
    if (mode == 1) opts |= SMTP_OPT_STARTTLS;
    else if (mode == 2) opts |= SMTP_OPT_STARTTLS_TRY;
  }
  if (!lua_isnoneornil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    lua_getfield(L, 5, "type");
    px.type = (smtp_proxy_type)luaL_checkoption(L, -1, NULL, proxy_types);
    lua_pop(L, 1);
    px.host = opt_string(L, 5, "host");
    px.port = (unsigned)opt_int(L, 5, "port");
    px.username = opt_string(L, 5, "username");
    px.password = opt_string(L, 5, "password");
    px.domain = opt_string(L, 5, "domain");
    luaL_argcheck(L, px.type != 0 && px.host, 5, "type and host are required");
  }
  lw = (lua_wire *)compat_newuserdata(L, sizeof *lw);
  memset(&lw->w, 0, sizeof lw->w);
  lw->context = LUA_NOREF;
  luaL_setmetatable(L, WIRE_MT);
  if (ctx) {
    lua_pushvalue(L, 3);
    lw->context = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  r = smtp_wire_init(&lw->w, helo, opts, px.type ? &px : NULL, ctx, mode == 0 && ctx);
  if (r == SMTP_EINVAL)
    return luaL_argerror(L, 1, "EHLO name must be 1-255 printable characters without spaces");
  if (r != SMTP_OK) {
    const char *msg = smtp_wire_setup_error(&lw->w, &kind);
    lua_pushnil(L);
    lua_pushstring(L, smtp_error_kind_name(kind));
    lua_pushstring(L, msg);
    smtp_wire_free(&lw->w);
    luaL_unref(L, LUA_REGISTRYINDEX, lw->context);
    lw->context = LUA_NOREF;
    return 3;
  }
  return 1;
}

/* random_hex(n) -> 2n lowercase hex digits from the system's CSPRNG
 * (n <= 64), for Message-IDs, boundaries and Content-IDs.  Fresh for every
 * call: a pool kept in the process would be copied into forked workers. */
static int core_random_hex(lua_State *L) {
  static const char hex[] = "0123456789abcdef";
  unsigned char buf[64];
  char out[128];
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_Integer i;
  luaL_argcheck(L, n > 0 && n <= (lua_Integer)sizeof buf, 1, "1 to 64 bytes");
  if (smtp_net_random(buf, (size_t)n) != 0) return luaL_error(L, "no entropy");
  for (i = 0; i < n; i++) {
    out[2 * i] = hex[buf[i] >> 4];
    out[2 * i + 1] = hex[buf[i] & 15];
  }
  lua_pushlstring(L, out, (size_t)(2 * n));
  return 1;
}

/* auth(mechanism, user, secret, domain, host, port) -> true | nil, message */
static int wire_auth(lua_State *L) {
  smtp_wire *w = check_wire(L);
  smtp_sasl_mech mech = smtp_sasl_mech_from_name(luaL_checkstring(L, 2));
  size_t ulen, slen;
  const char *user = luaL_optlstring(L, 3, "", &ulen);
  const char *secret = luaL_checklstring(L, 4, &slen);
  const char *domain = luaL_optstring(L, 5, NULL);
  const char *host = luaL_checkstring(L, 6);
  unsigned port = (unsigned)luaL_checkinteger(L, 7);
  unsigned char rnd[32];
  int r;
  luaL_argcheck(L, mech != SMTP_SASL_NONE, 2, "unknown SASL mechanism");
  if (smtp_net_random(rnd, sizeof rnd) != 0) return luaL_error(L, "no entropy for a SASL nonce");
  r = smtp_wire_auth(w, mech, user, ulen, secret, slen, domain, host, port, rnd);
  mbedtls_platform_zeroize(rnd, sizeof rnd);
  if (r == SMTP_ESTATE) return luaL_error(L, "AUTH: not allowed in this state of the session");
  if (r != SMTP_OK) {
    lua_pushnil(L);
    lua_pushstring(L, smtp_wire_auth_error(w));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* auth_detail() -> what the server explained of a failed exchange, status */
static int wire_auth_detail(lua_State *L) {
  const char *status;
  const char *detail = smtp_wire_auth_detail(check_wire(L), &status);
  lua_pushstring(L, detail);
  lua_pushstring(L, status);
  return 2;
}

static int wire_layer(lua_State *L) {
  lua_pushstring(L, smtp_wire_layer(check_wire(L)));
  return 1;
}

/* Also the __gc: frees the wire, then lets go of its TLS context. */
static int wire_free(lua_State *L) {
  lua_wire *lw = (lua_wire *)luaL_checkudata(L, 1, WIRE_MT);
  smtp_wire_free(&lw->w);
  luaL_unref(L, LUA_REGISTRYINDEX, lw->context);
  lw->context = LUA_NOREF;
  return 0;
}

/* take_plain() -> the SMTP sent since the last call, in the clear (its
 * first 4 KiB), and how many octets it was.  The first call starts the tap. */
static int wire_take_plain(lua_State *L) {
  smtp_wire *w = check_wire(L);
  size_t len, total;
  const unsigned char *p = smtp_wire_tap_take(w, &len, &total);
  w->tapping = 1;
  lua_pushlstring(L, (const char *)p, len);
  lua_pushinteger(L, (lua_Integer)total);
  return 2;
}

/* The one thing the driver should do next, by priority.  Events first:
 * they need no I/O, and a trace then shows a reply before the command it
 * prompted. */
static int engine_action(lua_State *L) {
  unsigned s = smtp_wire_step(check_wire(L));
  const char *a;
  if (s & SMTP_EVENT) a = "event";
  else if (s & SMTP_SENDREC) a = "write";
  else if (s & SMTP_CLOSED) a = "closed";
  else if (s & SMTP_SENDAPP) a = "body";
  else if (s & SMTP_IDLE) a = "ready";
  else if (s & SMTP_RECVREC) a = "read";
  else a = "command";
  lua_pushstring(L, a);
  return 1;
}

static int engine_output(lua_State *L) {
  smtp_wire *w = check_wire(L);
  size_t len = 0;
  const unsigned char *p = NULL;
  if (smtp_wire_step(w) & SMTP_SENDREC) p = smtp_wire_send_buf(w, &len);
  lua_pushlstring(L, (const char *)p, len);
  return 1;
}

static int engine_sent(lua_State *L) {
  smtp_wire *w = check_wire(L);
  size_t len = 0, n = (size_t)luaL_checkinteger(L, 2);
  if (smtp_wire_step(w) & SMTP_SENDREC) smtp_wire_send_buf(w, &len);
  luaL_argcheck(L, n > 0 && n <= len, 2, "more than the wire offered");
  smtp_wire_send_ack(w, n);
  return 0;
}

static int engine_room(lua_State *L) {
  smtp_wire *w = check_wire(L);
  size_t len = 0;
  if (smtp_wire_step(w) & SMTP_RECVREC) smtp_wire_recv_buf(w, &len);
  lua_pushinteger(L, (lua_Integer)len);
  return 1;
}

static int engine_feed(lua_State *L) {
  smtp_wire *w = check_wire(L);
  size_t len, room = 0;
  const char *s = luaL_checklstring(L, 2, &len);
  unsigned char *buf = NULL;
  if (smtp_wire_step(w) & SMTP_RECVREC) buf = smtp_wire_recv_buf(w, &room);
  luaL_argcheck(L, len > 0 && len <= room, 2, "more than the wire has room for");
  memcpy(buf, s, len);
  smtp_wire_recv_ack(w, len);
  return 0;
}

static int engine_eof(lua_State *L) {
  smtp_wire_recv_eof(check_wire(L));
  return 0;
}

static const char *const event_names[] = {
  "?", "greeting", "ehlo", "helo", "starttls", "auth", "mail", "rcpt", "data", "message", "rset",
  "noop", "quit"
};

/* The pending event as kind, index (from 1), code, enhanced, text; taken. */
static int push_event(lua_State *L, smtp_engine *e) {
  const smtp_event *ev = smtp_engine_event(e);
  lua_pushstring(L, event_names[ev->kind]);
  lua_pushinteger(L, (lua_Integer)ev->index + 1);
  lua_pushinteger(L, ev->reply->code);
  lua_pushstring(L, ev->reply->enhanced);
  lua_pushlstring(L, ev->reply->text, ev->reply->text_len);
  smtp_engine_event_ack(e);
  return 5;
}

/* Take the pending event: kind, index, code, enhanced, text. */
static int engine_event(lua_State *L) {
  smtp_engine *e = check_engine(L);
  luaL_argcheck(L, smtp_engine_state(e) & SMTP_EVENT, 1, "no event is pending");
  return push_event(L, e);
}

static int engine_mail(lua_State *L) {
  smtp_engine *e = check_engine(L);
  return result(L, smtp_engine_mail(e, check_arg(L, 2), check_arg(L, 3)), "MAIL FROM");
}

static int engine_rcpt(lua_State *L) {
  smtp_engine *e = check_engine(L);
  return result(L, smtp_engine_rcpt(e, check_arg(L, 2), check_arg(L, 3)), "RCPT TO");
}

static int engine_data(lua_State *L) {
  return result(L, smtp_engine_data(check_engine(L)), "DATA");
}

/* body(s, i): take s from position i; returns the position of the first
 * byte not taken (#s + 1 when all was). */
static int engine_body(lua_State *L) {
  smtp_engine *e = check_engine(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer i = luaL_optinteger(L, 3, 1);
  luaL_argcheck(L, i >= 1 && (size_t)i <= len + 1, 3, "out of range");
  luaL_argcheck(L, smtp_engine_state(e) & SMTP_SENDAPP, 1, "not in the DATA phase");
  i += (lua_Integer)smtp_engine_body(e, (const unsigned char *)s + i - 1, len - (size_t)(i - 1));
  lua_pushinteger(L, i);
  return 1;
}

/* bdat(s, i, last, raw) -> result, next i: a BDAT chunk from s at i. */
static int engine_bdat(lua_State *L) {
  smtp_engine *e = check_engine(L);
  size_t len, used;
  const char *s = luaL_checklstring(L, 2, &len);
  lua_Integer i = luaL_optinteger(L, 3, 1);
  unsigned flags = (lua_toboolean(L, 4) ? SMTP_BDAT_LAST : 0) | (lua_toboolean(L, 5) ? SMTP_BDAT_RAW : 0);
  int r;
  luaL_argcheck(L, i >= 1 && (size_t)i <= len + 1, 3, "out of range");
  r = smtp_engine_bdat(e, (const unsigned char *)s + i - 1, len - (size_t)(i - 1), flags, &used);
  result(L, r, "BDAT");
  lua_pushinteger(L, i + (lua_Integer)used);
  return 2;
}

static int engine_body_end(lua_State *L) {
  return result(L, smtp_engine_body_end(check_engine(L)), "end of DATA");
}

static int engine_rset(lua_State *L) {
  return result(L, smtp_engine_rset(check_engine(L)), "RSET");
}

static int engine_quit(lua_State *L) {
  return result(L, smtp_engine_quit(check_engine(L)), "QUIT");
}

static int engine_caps(lua_State *L) {
  static const struct { unsigned bit; const char *name; } names[] = {
    { SMTP_EXT_SIZE, "size" }, { SMTP_EXT_PIPELINING, "pipelining" },
    { SMTP_EXT_8BITMIME, "8bitmime" }, { SMTP_EXT_SMTPUTF8, "smtputf8" },
    { SMTP_EXT_ENHANCED, "enhancedstatuscodes" }, { SMTP_EXT_STARTTLS, "starttls" },
    { SMTP_EXT_AUTH, "auth" }, { SMTP_EXT_DSN, "dsn" }, { SMTP_EXT_CHUNKING, "chunking" },
    { SMTP_EXT_BINARYMIME, "binarymime" }, { SMTP_EXT_REQUIRETLS, "requiretls" }
  };
  const smtp_caps *c = smtp_engine_caps(check_engine(L));
  size_t i;
  lua_newtable(L);
  for (i = 0; i < sizeof names / sizeof *names; i++) {
    if (!(c->ext & names[i].bit)) continue;
    if (names[i].bit == SMTP_EXT_SIZE) lua_pushnumber(L, (lua_Number)c->size);
    else if (names[i].bit == SMTP_EXT_AUTH) lua_pushstring(L, c->auth);
    else lua_pushboolean(L, 1);
    lua_setfield(L, -2, names[i].name);
  }
  return 1;
}

/* nil while healthy; else kind, stage, code, enhanced, message. */
static int engine_error(lua_State *L) {
  smtp_engine *e = check_engine(L);
  const smtp_error *err = smtp_engine_last_error(e);
  if (err->kind == SMTP_ERR_NONE) return 0;
  lua_pushstring(L, smtp_error_kind_name(err->kind));
  lua_pushstring(L, smtp_stage_name(err->stage));
  if (err->code) lua_pushinteger(L, err->code); else lua_pushnil(L);
  lua_pushstring(L, err->enhanced);
  lua_pushstring(L, err->message);
  return 5;
}

static const char *const kind_options[] = {
  "none", "dns", "connect", "timeout", "proxy", "tls", "auth", "rejected",
  "protocol", "closed", NULL
};

static int engine_fail(lua_State *L) {
  smtp_wire *w = check_wire(L);
  int kind = luaL_checkoption(L, 2, NULL, kind_options);
  smtp_engine_fail(&w->engine, (smtp_error_kind)kind, smtp_wire_stage(w), luaL_checkstring(L, 3));
  return 0;
}

static void push_x509_name(lua_State *L, const mbedtls_x509_name *name) {
  char buf[512];
  int n = mbedtls_x509_dn_gets(buf, sizeof buf, name);
  lua_pushstring(L, n > 0 ? buf : "");
}

static void push_x509_time(lua_State *L, const mbedtls_x509_time *t) {
  lua_pushfstring(L, "%d-%s%d-%s%d %s%d:%s%d:%s%dZ", t->year, t->mon < 10 ? "0" : "", t->mon,
                  t->day < 10 ? "0" : "", t->day, t->hour < 10 ? "0" : "", t->hour,
                  t->min < 10 ? "0" : "", t->min, t->sec < 10 ? "0" : "", t->sec);
}

/* The DNS names and IP addresses the certificate is for. */
static void push_sans(lua_State *L, const mbedtls_x509_crt *c) {
  const mbedtls_x509_sequence *s;
  int i = 0;
  lua_newtable(L);
  for (s = &c->subject_alt_names; s != NULL && s->buf.p != NULL; s = s->next) {
    unsigned tag = (unsigned)s->buf.tag & 0x1fu;
    if (tag == 2) {
      lua_pushlstring(L, (const char *)s->buf.p, s->buf.len);
    } else if (tag == 7 && (s->buf.len == 4 || s->buf.len == 16)) {
      char text[64];
      smtp_net_ip_text(s->buf.p, s->buf.len, text, sizeof text);
      lua_pushstring(L, text);
    } else {
      continue;
    }
    lua_rawseti(L, -2, ++i);
  }
}

/* nil before a TLS handshake; else { version, cipher, library, resumed, problems,
 * certificate = { subject, issuer, valid_from, valid_to, names } }, also
 * after the certificate was refused, to say which one it was. */
static int wire_tls(lua_State *L) {
  smtp_wire *w = check_wire(L);
  const char *problems[16];
  const mbedtls_x509_crt *peer;
  size_t i, n;
  if (!w->tls || !smtp_tls_handshaken(w->tls)) return 0;
  lua_newtable(L);
  lua_pushstring(L, smtp_tls_version(w->tls));
  lua_setfield(L, -2, "version");
  lua_pushstring(L, smtp_tls_cipher(w->tls));
  lua_setfield(L, -2, "cipher");
  lua_pushstring(L, smtp_tls_library());
  lua_setfield(L, -2, "library");
  lua_pushboolean(L, smtp_tls_resumed(w->tls));
  lua_setfield(L, -2, "resumed");
  n = smtp_tls_problems(w->tls, problems, sizeof problems / sizeof *problems);
  lua_newtable(L);
  for (i = 0; i < n; i++) {
    lua_pushstring(L, problems[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "problems");
  peer = smtp_tls_peer(w->tls);
  if (peer) {
    lua_newtable(L);
    push_x509_name(L, &peer->subject);
    lua_setfield(L, -2, "subject");
    push_x509_name(L, &peer->issuer);
    lua_setfield(L, -2, "issuer");
    push_x509_time(L, &peer->valid_from);
    lua_setfield(L, -2, "valid_from");
    push_x509_time(L, &peer->valid_to);
    lua_setfield(L, -2, "valid_to");
    push_sans(L, peer);
    lua_setfield(L, -2, "names");
    lua_setfield(L, -2, "certificate");
  }
  return 1;
}

static const luaL_Reg engine_methods[] = {
  { "tls", wire_tls }, { "free", wire_free }, { "layer", wire_layer },
  { "auth", wire_auth }, { "auth_detail", wire_auth_detail },
  { "take_plain", wire_take_plain },
  { "action", engine_action }, { "output", engine_output }, { "sent", engine_sent },
  { "room", engine_room }, { "feed", engine_feed }, { "eof", engine_eof },
  { "event", engine_event }, { "mail", engine_mail }, { "rcpt", engine_rcpt },
  { "data", engine_data }, { "body", engine_body }, { "body_end", engine_body_end },
  { "bdat", engine_bdat },
  { "rset", engine_rset }, { "quit", engine_quit },
  { "caps", engine_caps }, { "error", engine_error }, { "fail", engine_fail },
  { NULL, NULL }
};

/* ---- tcp ---- */

static smtp_net *check_tcp(lua_State *L) {
  return (smtp_net *)luaL_checkudata(L, 1, TCP_MT);
}

static int timeout_ms(lua_State *L, int i) {
  lua_Number t = luaL_checknumber(L, i);
  luaL_argcheck(L, t > 0 && t < 2147483, i, "timeout must be a positive number of seconds");
  return (int)(t * 1000 + 0.5);
}

static int net_failure(lua_State *L, int kind, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, smtp_error_kind_name((smtp_error_kind)kind));
  lua_pushstring(L, msg);
  return 3;
}

/* connect(host, port, timeout) -> tcp | nil, kind, message */
static int tcp_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  const char *port = luaL_checkstring(L, 2);
  int ms = timeout_ms(L, 3), kind;
  char msg[256];
  smtp_net *n = (smtp_net *)compat_newuserdata(L, sizeof *n);
  smtp_net_init(n);
  luaL_setmetatable(L, TCP_MT);
  kind = smtp_net_connect(n, host, port, ms, msg, sizeof msg);
  if (kind != SMTP_ERR_NONE) return net_failure(L, kind, msg);
  return 1;
}

static smtp_net *check_open(lua_State *L) {
  smtp_net *n = check_tcp(L);
  if (n->fd < 0) luaL_error(L, "attempt to use a closed connection");
  return n;
}

/* read(max, timeout) -> bytes | nil, "closed", message at end of stream |
 * nil, kind, message */
static int tcp_read(lua_State *L) {
  smtp_net *n = check_open(L);
  size_t max = (size_t)luaL_checkinteger(L, 2), got;
  int ms = timeout_ms(L, 3), kind;
  char msg[256];
  luaL_Buffer b;
  luaL_argcheck(L, max > 0, 2, "must be positive");
  luaL_buffinit(L, &b);
  kind = smtp_net_read(n, luaL_prepbuffer(&b), max < LUAL_BUFFERSIZE ? max : LUAL_BUFFERSIZE,
                       ms, &got, msg, sizeof msg);
  if (kind != SMTP_ERR_NONE) return net_failure(L, kind, msg);
  if (got == 0) return net_failure(L, SMTP_ERR_CLOSED, "the server closed the connection");
  luaL_addsize(&b, got);
  luaL_pushresult(&b);
  return 1;
}

/* write(bytes, timeout) -> true | nil, kind, message */
static int tcp_write(lua_State *L) {
  smtp_net *n = check_open(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  int ms = timeout_ms(L, 3), kind;
  char msg[256];
  kind = smtp_net_write(n, s, len, ms, msg, sizeof msg);
  if (kind != SMTP_ERR_NONE) return net_failure(L, kind, msg);
  lua_pushboolean(L, 1);
  return 1;
}

/* pump(wire, timeout, flush, layer) -> what the caller must do next:
 * "event" with the event (kind, index, code, enhanced, text), "body",
 * "ready", "command", "closed", or "layer" when the wire's layer is no
 * longer `layer` (it passed the proxy hop or the TLS handshake); with
 * flush, "read" once all is written; or nil, kind, message, "read" |
 * "write" when the socket failed.  It moves bytes between socket and wire
 * in C until then: the driver loop of session.lua, without a Lua call per
 * read and write. */
static int tcp_pump(lua_State *L) {
  smtp_net *n = check_open(L);
  smtp_wire *w = &((lua_wire *)luaL_checkudata(L, 2, WIRE_MT))->w;
  int ms = timeout_ms(L, 3), flush = lua_toboolean(L, 4), kind;
  const char *layer = luaL_checkstring(L, 5), *op;
  char msg[256];
  for (;;) {
    unsigned s = smtp_wire_step(w);
    size_t len = 0;
    if (strcmp(smtp_wire_layer(w), layer) != 0) {
      lua_pushliteral(L, "layer");
      return 1;
    }
    if (s & SMTP_EVENT) {
      lua_pushliteral(L, "event");
      return 1 + push_event(L, &w->engine);
    }
    if (s & SMTP_SENDREC) {
      const unsigned char *p = smtp_wire_send_buf(w, &len);
      op = "write";
      kind = smtp_net_write(n, p, len, ms, msg, sizeof msg);
      if (kind != SMTP_ERR_NONE) break;
      smtp_wire_send_ack(w, len);
    } else if (s & SMTP_CLOSED) {
      lua_pushliteral(L, "closed");
      return 1;
    } else if (s & SMTP_SENDAPP) {
      lua_pushliteral(L, "body");
      return 1;
    } else if (s & SMTP_IDLE) {
      lua_pushliteral(L, "ready");
      return 1;
    } else if ((s & SMTP_RECVREC) && flush) {
      lua_pushliteral(L, "read");
      return 1;
    } else if (s & SMTP_RECVREC) {
      unsigned char *p = smtp_wire_recv_buf(w, &len);
      size_t got;
      op = "read";
      kind = smtp_net_read(n, p, len, ms, &got, msg, sizeof msg);
      if (kind == SMTP_ERR_NONE && got == 0) {
        kind = SMTP_ERR_CLOSED;
        snprintf(msg, sizeof msg, "the server closed the connection");
      }
      if (kind != SMTP_ERR_NONE) break;
      smtp_wire_recv_ack(w, got);
    } else {
      lua_pushliteral(L, "command");
      return 1;
    }
  }
  net_failure(L, kind, msg);
  lua_pushstring(L, op);
  return 4;
}

static int tcp_close(lua_State *L) {
  smtp_net_close(check_tcp(L));
  return 0;
}

/* info() -> peer address, family (4 or 6), our address literal, seconds
 * the name lookup took */
static int tcp_info(lua_State *L) {
  smtp_net *n = check_open(L);
  lua_pushstring(L, n->addr);
  lua_pushinteger(L, n->family);
  lua_pushstring(L, n->local);
  lua_pushnumber(L, (lua_Number)n->resolve_us / 1e6);
  return 4;
}

static int tcp_tostring(lua_State *L) {
  smtp_net *n = check_tcp(L);
  if (n->fd < 0) lua_pushliteral(L, "smtp.tcp (closed)");
  else lua_pushfstring(L, "smtp.tcp (%s)", n->addr);
  return 1;
}

static const luaL_Reg tcp_methods[] = {
  { "read", tcp_read }, { "write", tcp_write }, { "close", tcp_close },
  { "pump", tcp_pump },
  { "info", tcp_info }, { NULL, NULL }
};

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* ---- codecs ---- */

/* An encoder keeps its state and a scratch buffer for its output. */
#define SCRATCH 65536u

typedef struct {
  int qp;   /* quoted-printable, else base64 */
  smtp_codec_b64 b64;
  smtp_codec_qp q;
  unsigned char out[SCRATCH];
} lencoder;

/* encoder("base64" | "qp") -> encoder with :update(s) and :finish() */
static int encoder_new(lua_State *L) {
  static const char *const kinds[] = { "base64", "qp", NULL };
  int qp = luaL_checkoption(L, 1, NULL, kinds);
  lencoder *e = (lencoder *)compat_newuserdata(L, sizeof *e);
  e->qp = qp;
  smtp_codec_b64_init(&e->b64);
  smtp_codec_qp_init(&e->q);
  luaL_setmetatable(L, ENCODER_MT);
  return 1;
}

/* update(s) -> the encoded text so far; slices keep each output within the
 * scratch buffer. */
static int encoder_update(lua_State *L) {
  lencoder *e = (lencoder *)luaL_checkudata(L, 1, ENCODER_MT);
  size_t len, slice = e->qp ? SCRATCH / 4u - 64u : SCRATCH / 2u;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 2, &len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  while (len > 0) {
    size_t n = len < slice ? len : slice;
    size_t out = e->qp ? smtp_codec_qp_update(&e->q, p, n, e->out)
                       : smtp_codec_b64_update(&e->b64, p, n, e->out);
    luaL_addlstring(&b, (const char *)e->out, out);
    p += n;
    len -= n;
  }
  luaL_pushresult(&b);
  return 1;
}

static int encoder_finish(lua_State *L) {
  lencoder *e = (lencoder *)luaL_checkudata(L, 1, ENCODER_MT);
  size_t out = e->qp ? smtp_codec_qp_final(&e->q, e->out) : smtp_codec_b64_final(&e->b64, e->out);
  lua_pushlstring(L, (const char *)e->out, out);
  return 1;
}

static const luaL_Reg encoder_methods[] = {
  { "update", encoder_update }, { "finish", encoder_finish }, { NULL, NULL }
};

/* transcode(s, charset) -> bytes | nil, why (naming the character that does
 * not fit and its position) */
static int core_transcode(lua_State *L) {
  size_t len, used, n;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &len);
  const char *charset = luaL_checkstring(L, 2);
  smtp_codec_iconv cv;
  unsigned char out[4096];
  luaL_Buffer b;
  int r = smtp_codec_iconv_open(&cv, charset);
  if (r != SMTP_CODEC_OK) {
    lua_pushnil(L);
    lua_pushfstring(L, "charset %s: %s", charset, smtp_codec_strerror(r));
    return 2;
  }
  luaL_buffinit(L, &b);
  while (r == SMTP_CODEC_OK && len > 0) {
    r = smtp_codec_iconv_update(&cv, p, len, &used, out, sizeof out, &n);
    luaL_addlstring(&b, (const char *)out, n);
    p += used;
    len -= used;
  }
  if (r == SMTP_CODEC_OK) {
    r = smtp_codec_iconv_final(&cv, out, sizeof out, &n);
    luaL_addlstring(&b, (const char *)out, n);
  }
  if (r != SMTP_CODEC_OK) {
    const smtp_codec_fault *f = smtp_codec_iconv_fault(&cv);
    luaL_pushresult(&b);
    lua_pop(L, 1);
    lua_pushnil(L);
    if (f->code == SMTP_CODEC_EUNMAPPABLE) {
      char cp[16];
      snprintf(cp, sizeof cp, "U+%04lX", (unsigned long)f->cp);
      lua_pushlstring(L, (const char *)f->bytes, f->len);
      lua_pushfstring(L, "\"%s\" (%s), character %d, has no place in %s",
                      lua_tostring(L, -1), cp, (int)f->pos + 1, charset);
      lua_remove(L, -2);
    } else if (f->code == SMTP_CODEC_EUTF8) {
      lua_pushfstring(L, "the text is not UTF-8 at character %d", (int)f->pos + 1);
    } else {
      lua_pushfstring(L, "charset %s: %s", charset, smtp_codec_strerror(r));
    }
    smtp_codec_iconv_close(&cv);
    return 2;
  }
  smtp_codec_iconv_close(&cv);
  luaL_pushresult(&b);
  return 1;
}

/* scan(s) -> high, nul, longest, crlf_len, utf8: what a text part is made
 * of (see smtp_codec_text_scan) */
static int core_scan(lua_State *L) {
  size_t len;
  const unsigned char *p = (const unsigned char *)luaL_checklstring(L, 1, &len);
  smtp_codec_text_info r;
  smtp_codec_text_scan(p, len, &r);
  lua_pushinteger(L, (lua_Integer)r.high);
  lua_pushinteger(L, (lua_Integer)r.nul);
  lua_pushinteger(L, (lua_Integer)r.longest);
  lua_pushinteger(L, (lua_Integer)r.crlf_len);
  lua_pushboolean(L, r.utf8);
  return 5;
}

/* resolve4(host) -> "a.b.c.d" | nil, "dns", message */
static int core_resolve4(lua_State *L) {
  char addr[64], msg[256];
  int kind = smtp_net_resolve4(luaL_checkstring(L, 1), addr, sizeof addr, msg, sizeof msg);
  if (kind != SMTP_ERR_NONE) return net_failure(L, kind, msg);
  lua_pushstring(L, addr);
  return 1;
}

/* sleep(seconds): for rate limits and backoff with the built-in transport. */
static int core_sleep(lua_State *L) {
  lua_Number t = luaL_checknumber(L, 1);
  struct timespec ts;
  if (t <= 0) return 0;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (lua_Number)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) continue;
  return 0;
}

/* clock() -> seconds on a monotonic clock, for timings in reports */
static int core_clock(lua_State *L) {
  lua_pushnumber(L, (lua_Number)smtp_net_now_us() / 1e6);
  return 1;
}

static const luaL_Reg functions[] = {
  { "tls_context", tls_context_new }, { "wire", wire_new }, { "connect", tcp_connect }, { "clock", core_clock },
  { "resolve4", core_resolve4 }, { "scan", core_scan }, { "encoder", encoder_new }, { "transcode", core_transcode },
  { "sleep", core_sleep }, { "random_hex", core_random_hex },
  { NULL, NULL }
};

SMTP_EXPORT int luaopen_smtp_core(lua_State *L);

SMTP_EXPORT int luaopen_smtp_core(lua_State *L) {
  luaL_newmetatable(L, TLS_CONTEXT_MT);
  lua_pushcfunction(L, tls_context_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  new_class(L, WIRE_MT, engine_methods);
  luaL_getmetatable(L, WIRE_MT);
  lua_pushcfunction(L, wire_free);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  new_class(L, TCP_MT, tcp_methods);
  new_class(L, ENCODER_MT, encoder_methods);
  luaL_getmetatable(L, TCP_MT);
  lua_pushcfunction(L, tcp_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, tcp_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, tcp_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_newlib(L, functions);
  return 1;
}
