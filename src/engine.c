/*
 * engine.c -- the SMTP client state machine; see engine.h for the contract
 * and engine.md for the transition table.
 */
#include "engine.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum phase {
  PH_GREETING, PH_EHLO, PH_STARTTLS, /* STARTTLS sent */
  PH_TLS,                            /* 220 came: the caller runs the handshake */
  PH_READY, PH_CLOSED
};

/* What a pending reply answers. */
enum cmd {
  CMD_GREETING, CMD_EHLO, CMD_HELO, CMD_STARTTLS, CMD_AUTH, CMD_MAIL, CMD_RCPT,
  CMD_DATA, CMD_BDAT, CMD_END, CMD_RSET, CMD_NOOP, CMD_QUIT
};

/* Where the current transaction stands. */
enum txn {
  TXN_NONE,       /* no transaction */
  TXN_ENVELOPE,   /* MAIL queued; RCPT may follow */
  TXN_DATA,       /* DATA queued; waiting for 354 */
  TXN_BODY,       /* 354 received; body bytes flow */
  TXN_END,        /* final dot (or BDAT LAST) queued; waiting for the verdict */
  TXN_CHUNKS,     /* BDAT chunks flow */
  TXN_FAILED      /* refused before the body; nothing more to send */
};

static const char *const kind_names[] = {
  "none", "dns", "connect", "timeout", "proxy", "tls", "auth", "rejected",
  "protocol", "closed"
};

static const char *const stage_names[] = {
  "connect", "greeting", "ehlo", "starttls", "auth", "mail", "rcpt", "data",
  "quit"
};

const char *smtp_error_kind_name(smtp_error_kind k) {
  return (unsigned)k < sizeof kind_names / sizeof *kind_names ? kind_names[k] : "?";
}

const char *smtp_stage_name(smtp_stage s) {
  return (unsigned)s < sizeof stage_names / sizeof *stage_names ? stage_names[s] : "?";
}

static smtp_stage stage_of(int cmd) {
  switch (cmd) {
    case CMD_GREETING: return SMTP_STAGE_GREETING;
    case CMD_EHLO: case CMD_HELO: return SMTP_STAGE_EHLO;
    case CMD_STARTTLS: return SMTP_STAGE_STARTTLS;
    case CMD_AUTH: return SMTP_STAGE_AUTH;
    case CMD_RCPT: return SMTP_STAGE_RCPT;
    case CMD_DATA: case CMD_BDAT: case CMD_END: return SMTP_STAGE_DATA;
    case CMD_QUIT: return SMTP_STAGE_QUIT;
    default: return SMTP_STAGE_MAIL;
  }
}

static smtp_stage current_stage(const smtp_engine *e) {
  if (e->pend_count > 0) return stage_of(e->pend[e->pend_head].cmd);
  if (e->phase == PH_GREETING) return SMTP_STAGE_GREETING;
  if (e->phase == PH_EHLO) return SMTP_STAGE_EHLO;
  if (e->phase == PH_STARTTLS || e->phase == PH_TLS) return SMTP_STAGE_STARTTLS;
  if (e->auth_wait) return SMTP_STAGE_AUTH;
  if (e->txn == TXN_BODY || e->txn == TXN_CHUNKS) return SMTP_STAGE_DATA;
  return SMTP_STAGE_MAIL;
}

static void fail(smtp_engine *e, smtp_error_kind kind, smtp_stage stage,
                 const char *message) {
  size_t n = strlen(message);
  if (e->phase == PH_CLOSED) return;
  e->phase = PH_CLOSED;
  e->err.kind = kind;
  e->err.stage = stage;
  /* A server's text may be longer than the message: keep its start. */
  if (n >= sizeof e->err.message) n = sizeof e->err.message - 1;
  memcpy(e->err.message, message, n);
  e->err.message[n] = '\0';
}

/* A reply that ends the session: keep the server's words in the error. */
static void fail_reply(smtp_engine *e, smtp_error_kind kind, smtp_stage stage) {
  char *p;
  fail(e, kind, stage, e->reply.text);
  e->err.code = e->reply.code;
  memcpy(e->err.enhanced, e->reply.enhanced, sizeof e->err.enhanced);
  for (p = e->err.message; *p; p++)
    if (*p == '\n') *p = ' ';
}

smtp_stage smtp_engine_stage(const smtp_engine *e) {
  return current_stage(e);
}

void smtp_engine_fail(smtp_engine *e, smtp_error_kind kind, smtp_stage stage,
                      const char *message) {
  fail(e, kind, stage, message);
}

/* ---- output ---- */

/* Make room for n more bytes at the end of out; 0 when it cannot fit. */
static int out_reserve(smtp_engine *e, size_t n) {
  if (SMTP_OUT_SIZE - e->out_len >= n) return 1;
  if (SMTP_OUT_SIZE - (e->out_len - e->out_off) < n) return 0;
  memmove(e->out, e->out + e->out_off, e->out_len - e->out_off);
  e->out_len -= e->out_off;
  e->out_off = 0;
  return 1;
}

static void out_put(smtp_engine *e, const char *s, size_t n) {
  memcpy(e->out + e->out_len, s, n);
  e->out_len += n;
  e->out_total += n;
}

static int arg_ok(const char *s, int is_path) {
  size_t n = 0;
  for (; *s; s++, n++) {
    if (*s == '\r' || *s == '\n') return 0;
    if (is_path && (*s == '<' || *s == '>')) return 0;
  }
  return n <= SMTP_ARG_MAX;
}

/* Queue one command line (CRLF is added) expecting one reply.  The caller
 * checked the state and the arguments; this checks room. */
static int queue(smtp_engine *e, int cmd, unsigned index, const char *line) {
  size_t n = strlen(line);
  smtp_pending *p;
  if (e->pend_count == SMTP_PENDING_MAX || !out_reserve(e, n + 2))
    return SMTP_AGAIN;
  out_put(e, line, n);
  out_put(e, "\r\n", 2);
  p = &e->pend[(e->pend_head + e->pend_count++) % SMTP_PENDING_MAX];
  p->cmd = (unsigned char)cmd;
  p->index = index;
  p->end = e->out_total;
  return SMTP_OK;
}

/* "VERB:<path>" or "VERB:<path> params", checked. */
static int queue_path(smtp_engine *e, int cmd, unsigned index, const char *verb,
                      const char *path, const char *params) {
  char line[2 * SMTP_ARG_MAX + 16];
  if (!arg_ok(path, 1) || !arg_ok(params, 0)) return SMTP_EINVAL;
  snprintf(line, sizeof line, "%s:<%s>%s%s", verb, path, *params ? " " : "", params);
  return queue(e, cmd, index, line);
}

static int queue_helo(smtp_engine *e, int cmd, const char *verb) {
  char line[sizeof e->helo + 8];
  snprintf(line, sizeof line, "%s%s", verb, e->helo);
  return queue(e, cmd, 0, line);
}

static const char *hello(const smtp_engine *e) {
  return (e->opts & SMTP_OPT_LMTP) ? "LHLO " : "EHLO ";
}

/* One more reply expected for what was queued last (LMTP's verdict for
 * each recipient after the one end of data). */
static int expect(smtp_engine *e, int cmd, unsigned index) {
  smtp_pending *p;
  if (e->pend_count == SMTP_PENDING_MAX) return SMTP_AGAIN;
  p = &e->pend[(e->pend_head + e->pend_count++) % SMTP_PENDING_MAX];
  p->cmd = (unsigned char)cmd;
  p->index = index;
  p->end = e->out_total;
  return SMTP_OK;
}

/* The end of a message: LMTP answers once per accepted recipient. */
static int verdicts(smtp_engine *e) {
  unsigned i, n = (e->opts & SMTP_OPT_LMTP) ? e->rcpt_ok : 1;
  if (e->pend_count + n > SMTP_PENDING_MAX) return SMTP_AGAIN;
  for (i = 0; i < n; i++) (void)expect(e, CMD_END, i);
  return SMTP_OK;
}

static int pipelining(const smtp_engine *e) {
  return (e->caps.ext & SMTP_EXT_PIPELINING) && !(e->opts & SMTP_OPT_NO_PIPELINING);
}

/* ---- capabilities ---- */

static int keyword_is(const char *line, size_t len, const char *kw, size_t *rest) {
  size_t n = strlen(kw), i;
  if (len < n) return 0;
  for (i = 0; i < n; i++) {
    char ch = line[i];
    if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
    if (ch != kw[i]) return 0;
  }
  if (len > n && line[n] != ' ' && line[n] != '=') return 0;
  *rest = len > n ? n + 1 : n;
  return 1;
}

static int has_mechanism(const char *list, const char *p, size_t n) {
  while (*list) {
    size_t m = strcspn(list, " ");
    if (m == n && memcmp(list, p, n) == 0) return 1;
    list += m;
    if (*list) list++;
  }
  return 0;
}

/* Old servers repeat the AUTH line as "AUTH=": keep each mechanism once. */
static void add_mechanisms(smtp_caps *c, const char *p, size_t len) {
  const char *end = p + len;
  while (p < end) {
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    size_t n = sp ? (size_t)(sp - p) : (size_t)(end - p), have = strlen(c->auth);
    if (n > 0 && !has_mechanism(c->auth, p, n) && have + n + 2 < sizeof c->auth) {
      if (have) c->auth[have++] = ' ';
      memcpy(c->auth + have, p, n);
      c->auth[have + n] = '\0';
    }
    p += n + 1;
  }
}

static void parse_caps(smtp_engine *e) {
  static const struct { const char *kw; unsigned bit; } known[] = {
    { "SIZE", SMTP_EXT_SIZE }, { "PIPELINING", SMTP_EXT_PIPELINING },
    { "8BITMIME", SMTP_EXT_8BITMIME }, { "SMTPUTF8", SMTP_EXT_SMTPUTF8 },
    { "ENHANCEDSTATUSCODES", SMTP_EXT_ENHANCED },
    { "STARTTLS", SMTP_EXT_STARTTLS }, { "AUTH", SMTP_EXT_AUTH },
    { "DSN", SMTP_EXT_DSN }, { "CHUNKING", SMTP_EXT_CHUNKING },
    { "BINARYMIME", SMTP_EXT_BINARYMIME }, { "REQUIRETLS", SMTP_EXT_REQUIRETLS }
  };
  const char *line = e->reply.text, *end = line + e->reply.text_len;
  memset(&e->caps, 0, sizeof e->caps);
  /* The first line is the server's name and greeting, not an extension. */
  line = memchr(line, '\n', (size_t)(end - line));
  while (line && ++line < end) {
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    size_t len = nl ? (size_t)(nl - line) : (size_t)(end - line), i, rest;
    for (i = 0; i < sizeof known / sizeof *known; i++) {
      if (!keyword_is(line, len, known[i].kw, &rest)) continue;
      e->caps.ext |= known[i].bit;
      if (known[i].bit == SMTP_EXT_SIZE) {
        unsigned long v = 0;
        for (; rest < len && line[rest] >= '0' && line[rest] <= '9'; rest++)
          v = v > (~0UL - 9) / 10 ? ~0UL : v * 10 + (unsigned long)(line[rest] - '0');
        e->caps.size = v;
      } else if (known[i].bit == SMTP_EXT_AUTH) {
        add_mechanisms(&e->caps, line + rest, len - rest);
      }
    }
    line = nl;
  }
}

/* ---- replies ---- */

static void emit(smtp_engine *e, smtp_event_kind kind, unsigned index) {
  e->has_event = 1;
  e->ev.kind = kind;
  e->ev.index = index;
  e->ev.reply = &e->reply;
}

/* A transaction that will not deliver: leave nothing open on the server. */
static void txn_fail(smtp_engine *e) {
  e->txn = TXN_FAILED;
  if (e->mail_ok) {
    e->mail_ok = 0;
    (void)queue(e, CMD_RSET, 0, "RSET");
  }
}

/* After a successful EHLO or HELO: STARTTLS first when it is wanted. */
static void after_hello(smtp_engine *e) {
  if (!e->tls_done && (e->opts & (SMTP_OPT_STARTTLS | SMTP_OPT_STARTTLS_TRY))) {
    if (e->caps.ext & SMTP_EXT_STARTTLS) {
      e->phase = PH_STARTTLS;
      (void)queue(e, CMD_STARTTLS, 0, "STARTTLS");
      return;
    }
    if (e->opts & SMTP_OPT_STARTTLS) {
      fail(e, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS, "the server does not offer STARTTLS");
      return;
    }
  }
  e->phase = PH_READY;
}

static void on_reply(smtp_engine *e) {
  smtp_pending p = e->pend[e->pend_head];
  int code = e->reply.code, ok = code / 100 == 2;
  int in_txn = e->txn == TXN_ENVELOPE || e->txn == TXN_DATA || e->txn == TXN_CHUNKS;
  e->pend_head = (e->pend_head + 1) % SMTP_PENDING_MAX;
  e->pend_count--;
  if (code == 421 && p.cmd != CMD_GREETING && p.cmd != CMD_QUIT) {
    fail_reply(e, SMTP_ERR_CLOSED, stage_of(p.cmd));
    return;
  }
  switch (p.cmd) {
    case CMD_GREETING:
      if (code != 220) { fail_reply(e, SMTP_ERR_REJECTED, SMTP_STAGE_GREETING); return; }
      emit(e, SMTP_EV_GREETING, 0);
      e->phase = PH_EHLO;
      (void)queue_helo(e, CMD_EHLO, hello(e));
      break;
    case CMD_EHLO:
      if (!ok && (code / 100 != 5 || (e->opts & SMTP_OPT_LMTP))) {
        fail_reply(e, SMTP_ERR_REJECTED, SMTP_STAGE_EHLO);
        return;
      }
      emit(e, SMTP_EV_EHLO, 0);
      if (!ok) {
        (void)queue_helo(e, CMD_HELO, "HELO ");
        break;
      }
      parse_caps(e);
      after_hello(e);
      break;
    case CMD_HELO:
      if (!ok) { fail_reply(e, SMTP_ERR_REJECTED, SMTP_STAGE_EHLO); return; }
      emit(e, SMTP_EV_HELO, 0);
      memset(&e->caps, 0, sizeof e->caps);
      after_hello(e);
      break;
    case CMD_STARTTLS:
      emit(e, SMTP_EV_STARTTLS, 0);
      if (code != 220 && (e->opts & SMTP_OPT_STARTTLS)) {
        fail_reply(e, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS);
      } else if (code != 220) {
        e->phase = PH_READY;   /* opportunistic: go on in plaintext */
      } else if (e->in_off < e->in_len) {
        /* Bytes behind the 220 were sent before the handshake: an
         * attacker's, to be read as if they came over TLS (CVE-2011-0411). */
        fail(e, SMTP_ERR_TLS, SMTP_STAGE_STARTTLS,
             "the server sent data after its 220 to STARTTLS (response injection?)");
      } else {
        e->phase = PH_TLS;
      }
      break;
    case CMD_MAIL:
      emit(e, SMTP_EV_MAIL, 0);
      /* data() gave up before this reply came: close what MAIL opened */
      if (ok && e->txn == TXN_FAILED) (void)queue(e, CMD_RSET, 0, "RSET");
      if (!in_txn) break;
      if (ok) e->mail_ok = 1;
      else e->txn = TXN_FAILED;
      break;
    case CMD_RCPT:
      emit(e, SMTP_EV_RCPT, p.index);
      if (in_txn && ok) e->rcpt_ok++;
      break;
    case CMD_DATA:
      emit(e, SMTP_EV_DATA, 0);
      if (code == 354 && e->rcpt_ok == 0) {
        /* RFC 2920 3.1: DATA accepted with no valid recipient; end it empty. */
        e->txn = TXN_END;
        (void)queue(e, CMD_END, 0, ".");
      } else if (code == 354) {
        e->txn = TXN_BODY;
        e->body_bol = 1;
        e->body_cr = 0;
      } else {
        txn_fail(e);
      }
      break;
    case CMD_BDAT:
      emit(e, SMTP_EV_DATA, p.index);
      /* Any refused chunk fails the transaction, even when the LAST one
       * was already queued behind it (pipelining): RSET after it. */
      if (!ok && (e->txn == TXN_CHUNKS || e->txn == TXN_END)) txn_fail(e);
      break;
    case CMD_END:
      emit(e, SMTP_EV_MESSAGE, p.index);
      /* LMTP: one verdict per accepted recipient; the last ends it. */
      if (e->pend_count == 0 || e->pend[e->pend_head].cmd != CMD_END) {
        if (e->early) {
          e->early = 0;   /* the next transaction is already under way */
        } else {
          e->txn = TXN_NONE;
          e->mail_ok = 0;
        }
      }
      break;
    case CMD_AUTH:
      emit(e, SMTP_EV_AUTH, 0);
      e->auth_wait = code == 334;
      break;
    case CMD_RSET: emit(e, SMTP_EV_RSET, 0); break;
    case CMD_NOOP: emit(e, SMTP_EV_NOOP, 0); break;
    default: /* CMD_QUIT */
      emit(e, SMTP_EV_QUIT, 0);
      e->phase = PH_CLOSED;
      break;
  }
}

/* Parse what was received, one reply per event. */
static void run(smtp_engine *e) {
  while (!e->has_event && e->phase != PH_CLOSED && e->in_off < e->in_len) {
    size_t used;
    smtp_reply_status st;
    /* A reply can only answer a command written before its bytes came
     * (unparsed bytes all came with the last recvrec_ack): bytes read with
     * the greeting, or with the 220 to STARTTLS, were injected. */
    if (e->pend_count == 0 || e->pend[e->pend_head].end > e->in_stamp) {
      fail(e, SMTP_ERR_PROTOCOL, current_stage(e),
           "the server sent data that answers no command");
      return;
    }
    st = smtp_reply_feed(&e->reply, e->in + e->in_off, e->in_len - e->in_off, &used);
    e->in_off += used;
    if (st == SMTP_REPLY_MORE) break;
    if (st != SMTP_REPLY_DONE) {
      char msg[128];
      snprintf(msg, sizeof msg, "malformed server reply: %s", smtp_reply_status_text(st));
      fail(e, SMTP_ERR_PROTOCOL, current_stage(e), msg);
      return;
    }
    on_reply(e);
  }
  if (e->in_off == e->in_len) {
    e->in_off = e->in_len = 0;
  } else if (e->in_off > 0) {
    memmove(e->in, e->in + e->in_off, e->in_len - e->in_off);
    e->in_len -= e->in_off;
    e->in_off = 0;
  }
}

/* ---- the public functions ---- */

int smtp_engine_init(smtp_engine *e, const char *helo, unsigned opts) {
  size_t n = strlen(helo), i;
  memset(e, 0, sizeof *e);
  e->phase = PH_CLOSED;   /* until the name is known good */
  if (n == 0 || n >= sizeof e->helo) return SMTP_EINVAL;
  for (i = 0; i < n; i++)
    if ((unsigned char)helo[i] <= ' ' || helo[i] == 0x7f) return SMTP_EINVAL;
  memcpy(e->helo, helo, n + 1);
  e->opts = opts;
  e->phase = PH_GREETING;
  smtp_reply_reset(&e->reply);
  e->pend_count = 1;   /* the greeting is the reply to connecting */
  e->pend[0].cmd = CMD_GREETING;
  return SMTP_OK;
}

unsigned smtp_engine_state(const smtp_engine *e) {
  unsigned s = 0;
  if (e->phase == PH_CLOSED) return SMTP_CLOSED | (e->has_event ? SMTP_EVENT : 0);
  if (e->out_off < e->out_len) s |= SMTP_SENDREC;
  if (e->has_event) return s | SMTP_EVENT;
  if (e->phase == PH_TLS) return s | SMTP_STARTTLS;
  if (e->pend_count > 0 && e->in_len < SMTP_IN_SIZE) s |= SMTP_RECVREC;
  if (e->txn == TXN_BODY) s |= SMTP_SENDAPP;
  if (e->phase == PH_READY && e->pend_count == 0 && !e->auth_wait &&
      (e->txn == TXN_NONE || e->txn == TXN_FAILED))
    s |= SMTP_IDLE;
  return s;
}

const unsigned char *smtp_engine_sendrec_buf(const smtp_engine *e, size_t *len) {
  *len = e->out_len - e->out_off;
  return e->out + e->out_off;
}

void smtp_engine_sendrec_ack(smtp_engine *e, size_t len) {
  e->out_off += len;
  e->out_sent += len;
  if (e->out_off == e->out_len) e->out_off = e->out_len = 0;
}

unsigned char *smtp_engine_recvrec_buf(smtp_engine *e, size_t *len) {
  *len = SMTP_IN_SIZE - e->in_len;
  return e->in + e->in_len;
}

void smtp_engine_recvrec_ack(smtp_engine *e, size_t len) {
  e->in_len += len;
  e->in_stamp = e->out_sent;
  run(e);
}

void smtp_engine_recv_eof(smtp_engine *e) {
  if (e->pend_count == 1 && e->pend[e->pend_head].cmd == CMD_QUIT) {
    e->pend_count = 0;   /* a server may hang up instead of saying 221 */
    e->phase = PH_CLOSED;
    return;
  }
  fail(e, SMTP_ERR_CLOSED, current_stage(e), "the server closed the connection");
}

const smtp_event *smtp_engine_event(const smtp_engine *e) {
  return &e->ev;
}

void smtp_engine_event_ack(smtp_engine *e) {
  e->has_event = 0;
  smtp_reply_reset(&e->reply);
  run(e);
}

static int envelope_open(const smtp_engine *e) {
  return e->phase == PH_READY && (e->txn == TXN_ENVELOPE || e->txn == TXN_FAILED);
}

/* Is a BDAT chunk's reply (not the LAST one's) still awaited? */
static int chunk_pending(const smtp_engine *e) {
  unsigned i;
  for (i = 0; i < e->pend_count; i++)
    if (e->pend[(e->pend_head + i) % SMTP_PENDING_MAX].cmd == CMD_BDAT) return 1;
  return 0;
}

int smtp_engine_mail(smtp_engine *e, const char *from, const char *params) {
  int r, early = 0;
  if (!(smtp_engine_state(e) & SMTP_IDLE)) {
    /* RFC 2920 3.1: with PIPELINING the next envelope may follow the
     * final dot (or BDAT LAST) in the same write, before that message's
     * verdict.  Never with LMTP: its verdicts come one per recipient.
     * Not while a chunk's reply is awaited either: a refused chunk wants
     * RSET before the next MAIL. */
    if (!pipelining(e) || e->phase != PH_READY || e->auth_wait || (e->opts & SMTP_OPT_LMTP))
      return SMTP_ESTATE;
    if (e->txn == TXN_END && !e->early && !chunk_pending(e)) {
      early = 1;
    } else if (e->txn == TXN_END || e->txn == TXN_FAILED || e->txn == TXN_NONE) {
      return SMTP_AGAIN;   /* the last transaction is winding up */
    } else {
      return SMTP_ESTATE;
    }
  }
  r = queue_path(e, CMD_MAIL, 0, "MAIL FROM", from, params);
  if (r != SMTP_OK) return r;
  e->early = early;
  e->txn = TXN_ENVELOPE;
  e->mail_ok = 0;
  e->rcpt_sent = e->rcpt_ok = 0;
  return SMTP_OK;
}

/* Without PIPELINING a command waits until every earlier one is answered. */
static int lockstep_wait(const smtp_engine *e) {
  return !pipelining(e) && (e->pend_count > 0 || e->has_event);
}

int smtp_engine_rcpt(smtp_engine *e, const char *to, const char *params) {
  int r;
  if (!envelope_open(e)) return SMTP_ESTATE;
  if (!arg_ok(to, 1) || !arg_ok(params, 0)) return SMTP_EINVAL;
  if (e->txn == TXN_FAILED) return SMTP_EDONE;
  if (lockstep_wait(e)) return SMTP_AGAIN;
  r = queue_path(e, CMD_RCPT, e->rcpt_sent, "RCPT TO", to, params);
  if (r == SMTP_OK) e->rcpt_sent++;
  return r;
}

int smtp_engine_data(smtp_engine *e) {
  int r;
  if (!envelope_open(e)) return SMTP_ESTATE;
  if (e->txn == TXN_FAILED) return SMTP_EDONE;
  if (lockstep_wait(e)) return SMTP_AGAIN;
  if (e->rcpt_sent == 0 || (!pipelining(e) && e->rcpt_ok == 0)) {
    txn_fail(e);
    return SMTP_EDONE;
  }
  r = queue(e, CMD_DATA, 0, "DATA");
  if (r == SMTP_OK) e->txn = TXN_DATA;
  return r;
}

/* Eight bytes, the first in the low bits whatever the byte order. */
static uint64_t load_le64(const unsigned char *p) {
  return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
         (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
         (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

/* The offset of the first CR or LF among the eight bytes of x, 8 when none
 * is.  The lowest flagged byte is exact: a borrow can flag only bytes above
 * a real match. */
static unsigned crlf_at(uint64_t x) {
  const uint64_t ones = UINT64_C(0x0101010101010101);
  const uint64_t high = UINT64_C(0x8080808080808080);
  uint64_t a = x ^ (ones * '\r'), b = x ^ (ones * '\n');
  uint64_t m = (((a - ones) & ~a) | ((b - ones) & ~b)) & high;
  unsigned k = 0;
  if (m == 0) return 8;
#if defined(__GNUC__)
  k = (unsigned)__builtin_ctzll(m) >> 3;
#else
  while (!(m & 0x80u)) { m >>= 8; k++; }
#endif
  return k;
}

/* A line has this many bytes before the rest of it is copied by words. */
#define LINE_RUN 2u

/* The CR/LF normalizer, and the dot-stuffer when stuff is set.  Each input
 * byte yields at most four output bytes (a pending CR's CRLF, then "."
 * doubled), so it runs while four bytes of room remain.  Bytes go one at a
 * time until a line has LINE_RUN of them; then the rest of the line, as
 * much as fits, goes eight bytes at a time up to its CR or LF.  The state
 * bits live in locals: stores through o could alias them.  Returns the
 * input bytes taken; *n receives the output bytes. */
static size_t normalize(smtp_engine *e, const unsigned char *p, size_t len,
                        unsigned char *o, size_t room, int stuff, size_t *n) {
  size_t i = 0, k = 0, run = 0;
  int bol = e->body_bol, cr = e->body_cr;
  while (i < len && room - k >= 4) {
    unsigned char c = p[i++];
    if (cr) {
      o[k++] = '\r';
      o[k++] = '\n';
      cr = 0;
      bol = 1;
      if (c == '\n') continue;
    }
    if (c == '\r') {
      cr = 1;
      run = 0;
    } else if (c == '\n') {
      o[k++] = '\r';
      o[k++] = '\n';
      bol = 1;
      run = 0;
    } else {
      if (c == '.' && bol && stuff) o[k++] = '.';
      o[k++] = c;
      bol = 0;
      if (++run == LINE_RUN) {
        /* the rest of the line that fits: p[i .. end) */
        size_t end = len - i < room - k ? len : i + (room - k);
        while (end - i >= 8) {
          unsigned m = crlf_at(load_le64(p + i));
          memcpy(o + k, p + i, 8);   /* fits: end - i <= room - k */
          k += m;
          i += m;
          if (m < 8) break;
        }
        while (i < end && p[i] != '\r' && p[i] != '\n') o[k++] = p[i++];
        run = 0;
      }
    }
  }
  e->body_bol = bol;
  e->body_cr = cr;
  *n = k;
  return i;
}

size_t smtp_engine_body(smtp_engine *e, const unsigned char *p, size_t len) {
  size_t i, n;
  if (e->txn != TXN_BODY || e->phase == PH_CLOSED) return 0;
  if (!out_reserve(e, 4)) return 0;
  i = normalize(e, p, len, e->out + e->out_len, SMTP_OUT_SIZE - e->out_len, 1, &n);
  e->out_len += n;
  e->out_total += n;
  return i;
}

int smtp_engine_body_end(smtp_engine *e) {
  int r;
  if (e->txn != TXN_BODY || e->phase == PH_CLOSED) return SMTP_ESTATE;
  if (!out_reserve(e, 5) || e->pend_count + e->rcpt_ok + 1 > SMTP_PENDING_MAX) return SMTP_AGAIN;
  if (e->body_cr || !e->body_bol) out_put(e, "\r\n", 2);
  e->txn = TXN_END;
  out_put(e, ".\r\n", 3);
  r = verdicts(e);
  return r;
}

/* Room a BDAT command line takes: "BDAT 4294967295 LAST\r\n". */
#define BDAT_HEAD 24u

int smtp_engine_bdat(smtp_engine *e, const unsigned char *p, size_t len,
                     unsigned flags, size_t *used) {
  char head[BDAT_HEAD + 8];
  size_t room, in, n, h;
  int last;
  *used = 0;
  if (e->phase != PH_READY || (e->txn != TXN_ENVELOPE && e->txn != TXN_CHUNKS &&
                               e->txn != TXN_FAILED))
    return SMTP_ESTATE;
  if (e->txn == TXN_FAILED) return SMTP_EDONE;
  /* The first chunk waits for the envelope's verdict: no message is
   * streamed to a server that took no recipient. */
  if (e->txn == TXN_ENVELOPE) {
    if (e->pend_count > 0 || e->has_event) return SMTP_AGAIN;
    if (e->rcpt_ok == 0) {
      txn_fail(e);
      return SMTP_EDONE;
    }
    e->txn = TXN_CHUNKS;
    e->body_bol = 1;
    e->body_cr = 0;
  } else if (lockstep_wait(e)) {
    return SMTP_AGAIN;
  }
  if (e->pend_count + e->rcpt_ok + 1 > SMTP_PENDING_MAX || !out_reserve(e, BDAT_HEAD + 64))
    return SMTP_AGAIN;
  room = SMTP_OUT_SIZE - e->out_len - BDAT_HEAD - 4;   /* 4: a closing CRLF */
  /* Transform behind the room for the command line, then close the gap. */
  if (flags & SMTP_BDAT_RAW) {
    in = n = len < room ? len : room;
    memcpy(e->out + e->out_len + BDAT_HEAD, p, n);
  } else {
    in = normalize(e, p, len, e->out + e->out_len + BDAT_HEAD, room, 0, &n);
  }
  last = (flags & SMTP_BDAT_LAST) && in == len;
  if (last && !(flags & SMTP_BDAT_RAW) && (e->body_cr || !e->body_bol)) {
    memcpy(e->out + e->out_len + BDAT_HEAD + n, "\r\n", 2);
    n += 2;
    e->body_cr = 0;
  }
  if (n == 0 && !last) {
    *used = in;
    return SMTP_OK;
  }
  h = (size_t)snprintf(head, sizeof head, "BDAT %lu%s\r\n", (unsigned long)n, last ? " LAST" : "");
  memmove(e->out + e->out_len + h, e->out + e->out_len + BDAT_HEAD, n);
  memcpy(e->out + e->out_len, head, h);
  e->out_len += h + n;
  e->out_total += h + n;
  *used = in;
  if (!last) return expect(e, CMD_BDAT, 0);
  e->txn = TXN_END;
  return verdicts(e);
}

int smtp_engine_rset(smtp_engine *e) {
  int r;
  if (!(smtp_engine_state(e) & SMTP_IDLE) && !envelope_open(e)) return SMTP_ESTATE;
  if (lockstep_wait(e)) return SMTP_AGAIN;
  r = queue(e, CMD_RSET, 0, "RSET");
  if (r == SMTP_OK) {
    e->txn = TXN_NONE;
    e->mail_ok = 0;
  }
  return r;
}

/* An AUTH line: RFC 4954 4 allows 12288 octets with CRLF, beyond the
 * usual argument bound, for long initial responses (OAuth tokens). */
static int auth_line_ok(const char *line) {
  size_t n = strlen(line);
  return n > 0 && n <= SMTP_AUTH_LINE_MAX && strpbrk(line, "\r\n") == NULL;
}

int smtp_engine_auth(smtp_engine *e, const char *line) {
  if (!(smtp_engine_state(e) & SMTP_IDLE) || e->txn != TXN_NONE) return SMTP_ESTATE;
  if (!auth_line_ok(line) || strncmp(line, "AUTH ", 5) != 0) return SMTP_EINVAL;
  return queue(e, CMD_AUTH, 0, line);
}

int smtp_engine_auth_respond(smtp_engine *e, const char *line) {
  int r;
  if (!e->auth_wait || e->has_event || e->phase != PH_READY) return SMTP_ESTATE;
  if (*line && !auth_line_ok(line)) return SMTP_EINVAL;
  r = queue(e, CMD_AUTH, 0, line);
  if (r == SMTP_OK) e->auth_wait = 0;
  return r;
}

static int simple(smtp_engine *e, int cmd, const char *line) {
  if (!(smtp_engine_state(e) & SMTP_IDLE)) return SMTP_ESTATE;
  return queue(e, cmd, 0, line);
}

int smtp_engine_noop(smtp_engine *e) { return simple(e, CMD_NOOP, "NOOP"); }
int smtp_engine_quit(smtp_engine *e) { return simple(e, CMD_QUIT, "QUIT"); }

int smtp_engine_tls_ready(smtp_engine *e) {
  if (e->phase != PH_TLS || e->has_event) return SMTP_ESTATE;
  /* RFC 3207 4.2: forget what was learnt in plaintext and ask again. */
  memset(&e->caps, 0, sizeof e->caps);
  e->tls_done = 1;
  e->phase = PH_EHLO;
  return queue_helo(e, CMD_EHLO, hello(e));
}

const smtp_caps *smtp_engine_caps(const smtp_engine *e) { return &e->caps; }

const smtp_error *smtp_engine_last_error(const smtp_engine *e) { return &e->err; }
