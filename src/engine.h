/*
 * engine.h -- the SMTP client state machine.  Bytes in, bytes out, no I/O.
 *
 * The engine never reads a socket, a clock or Lua, and never allocates: the
 * caller embeds the struct (it is large, ~40 KiB) and moves bytes between it
 * and a transport.  It is modelled on BearSSL's engine: state flags, and
 * _buf/_ack pairs that lend the caller a buffer.
 *
 * Life of a session (see engine.md for the transition table):
 *   init -> wait for the greeting -> EHLO (HELO when EHLO is refused)
 *   [-> STARTTLS -> SMTP_STARTTLS: the caller runs TLS -> EHLO] -> IDLE
 *   then, per message:
 *   smtp_engine_mail, smtp_engine_rcpt..., smtp_engine_data
 *     -> SENDAPP: smtp_engine_body..., smtp_engine_body_end -> IDLE
 *   and finally smtp_engine_quit -> CLOSED.
 * Each server reply is reported as an event.  When PIPELINING is offered,
 * MAIL, every RCPT and DATA go out in one write; otherwise one command waits
 * for the reply of the one before.
 *
 * Rules of use (MUST):
 *   - Call smtp_engine_init before anything else.
 *   - Write what SMTP_SENDREC offers before reading more (SMTP_RECVREC is
 *     not offered meanwhile); an event MUST be acknowledged before more
 *     input is parsed, and may be handled before or after writing.
 *   - A length passed to an _ack is > 0 and <= what the matching _buf gave.
 *   - Call smtp_engine_recv_eof when the transport reports end of stream.
 * Errors stay set: once SMTP_CLOSED is set, smtp_engine_last_error tells why
 * (kind SMTP_ERR_NONE after a clean QUIT) and nothing else happens.
 */
#ifndef SMTP_ENGINE_H
#define SMTP_ENGINE_H

#include <stddef.h>
#include "reply.h"

/* Internal to the module whatever the build system: only luaopen_* is public. */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

#define SMTP_CLOSED   0x01u  /* finished or failed; see smtp_engine_last_error */
#define SMTP_SENDREC  0x02u  /* bytes ready for the transport (takes precedence) */
#define SMTP_RECVREC  0x04u  /* engine needs bytes from the transport */
#define SMTP_EVENT    0x08u  /* an event is ready: smtp_engine_event */
#define SMTP_SENDAPP  0x10u  /* DATA phase: smtp_engine_body accepts message bytes */
#define SMTP_IDLE     0x20u  /* ready: a new transaction may start */
#define SMTP_STARTTLS 0x40u  /* the server said 220 to STARTTLS: run the TLS
                                handshake, then call smtp_engine_tls_ready */

#define SMTP_IN_SIZE   4096u    /* input buffer */
#define SMTP_OUT_SIZE  32768u   /* output buffer: commands and body bytes */
#define SMTP_PENDING_MAX 256u   /* commands awaiting a reply */
#define SMTP_ARG_MAX   1024u    /* octets of one command argument */
#define SMTP_AUTH_LINE_MAX 12286u /* an AUTH line without CRLF (RFC 4954 4) */

/* Return codes of the command functions. */
#define SMTP_OK      0
#define SMTP_AGAIN  (-1)  /* not now: move bytes and events, then call again */
#define SMTP_EDONE  (-2)  /* the transaction already failed; stop sending it */
#define SMTP_EINVAL (-3)  /* argument holds CR, LF or NUL, or is too long */
#define SMTP_ESTATE (-4)  /* not allowed in this state */

/* Error kinds and stages: the public error object's vocabulary. */
typedef enum {
  SMTP_ERR_NONE = 0, SMTP_ERR_DNS, SMTP_ERR_CONNECT, SMTP_ERR_TIMEOUT,
  SMTP_ERR_PROXY, SMTP_ERR_TLS, SMTP_ERR_AUTH, SMTP_ERR_REJECTED,
  SMTP_ERR_PROTOCOL, SMTP_ERR_CLOSED
} smtp_error_kind;

typedef enum {
  SMTP_STAGE_CONNECT = 0, SMTP_STAGE_GREETING, SMTP_STAGE_EHLO,
  SMTP_STAGE_STARTTLS, SMTP_STAGE_AUTH, SMTP_STAGE_MAIL, SMTP_STAGE_RCPT,
  SMTP_STAGE_DATA, SMTP_STAGE_QUIT
} smtp_stage;

const char *smtp_error_kind_name(smtp_error_kind k);   /* "protocol", ... */
const char *smtp_stage_name(smtp_stage s);             /* "greeting", ... */

typedef struct {
  smtp_error_kind kind;
  smtp_stage stage;
  int code;              /* server reply code, or 0 */
  char enhanced[16];
  char message[512];     /* what happened, in English; the server's text when it said something */
} smtp_error;

/* Events: one server reply each. */
typedef enum {
  SMTP_EV_GREETING = 1, /* 220 banner */
  SMTP_EV_EHLO,         /* reply to EHLO (2xx: capabilities parsed; else HELO follows) */
  SMTP_EV_HELO,         /* reply to HELO, after EHLO was refused */
  SMTP_EV_STARTTLS,     /* reply to STARTTLS */
  SMTP_EV_AUTH,         /* reply in an AUTH exchange: 334 wants a response,
                           235 succeeded, anything else failed */
  SMTP_EV_MAIL,         /* reply to MAIL FROM */
  SMTP_EV_RCPT,         /* reply to RCPT TO; index = the recipient's ordinal from 0 */
  SMTP_EV_DATA,         /* reply to DATA (354 = body wanted), or to a BDAT
                           chunk but the last */
  SMTP_EV_MESSAGE,      /* reply to the end of the body: 2xx = accepted;
                           LMTP: one per accepted recipient, index = its
                           ordinal among them */
  SMTP_EV_RSET,         /* reply to RSET */
  SMTP_EV_NOOP,         /* reply to NOOP */
  SMTP_EV_QUIT          /* reply to QUIT */
} smtp_event_kind;

typedef struct {
  smtp_event_kind kind;
  unsigned index;
  const smtp_reply *reply;
} smtp_event;

/* Capabilities from the last successful EHLO. */
#define SMTP_EXT_SIZE        0x001u
#define SMTP_EXT_PIPELINING  0x002u
#define SMTP_EXT_8BITMIME    0x004u
#define SMTP_EXT_SMTPUTF8    0x008u
#define SMTP_EXT_ENHANCED    0x010u  /* ENHANCEDSTATUSCODES */
#define SMTP_EXT_STARTTLS    0x020u
#define SMTP_EXT_AUTH        0x040u
#define SMTP_EXT_DSN         0x080u
#define SMTP_EXT_CHUNKING    0x100u
#define SMTP_EXT_BINARYMIME  0x200u
#define SMTP_EXT_REQUIRETLS  0x400u

typedef struct {
  unsigned ext;            /* SMTP_EXT_* bits */
  unsigned long size;      /* SIZE parameter; 0 = not offered or no limit */
  char auth[256];          /* AUTH mechanisms, space separated */
} smtp_caps;

/* Options for smtp_engine_init. */
#define SMTP_OPT_NO_PIPELINING 0x01u  /* never pipeline, even when offered */
#define SMTP_OPT_STARTTLS      0x02u  /* STARTTLS after EHLO; fail without it */
#define SMTP_OPT_STARTTLS_TRY  0x04u  /* STARTTLS when offered, else plaintext */
#define SMTP_OPT_LMTP          0x08u  /* LMTP (RFC 2033): LHLO, and one verdict
                                         per accepted recipient */

typedef struct {
  unsigned char cmd;       /* a command kind, private */
  unsigned index;
  size_t end;              /* out_total just past this command */
} smtp_pending;

typedef struct smtp_engine {
  /* All private: use the functions. */
  int phase;
  unsigned opts;
  smtp_error err;
  smtp_caps caps;
  smtp_reply reply;
  char helo[256];
  /* input: in[in_off .. in_len) received, not parsed yet */
  unsigned char in[SMTP_IN_SIZE];
  size_t in_off, in_len;
  /* output: out[out_off .. out_len) is to be written */
  unsigned char out[SMTP_OUT_SIZE];
  size_t out_off, out_len;
  size_t out_total, out_sent;  /* bytes ever queued, ever written */
  size_t in_stamp;             /* out_sent when the unparsed input came */
  /* commands written or queued whose reply is awaited, oldest first */
  smtp_pending pend[SMTP_PENDING_MAX];
  unsigned pend_head, pend_count;
  /* the current event, when has_event */
  int has_event;
  smtp_event ev;
  /* the transaction */
  int txn;                 /* a transaction state, private */
  unsigned rcpt_sent, rcpt_ok;
  int mail_ok;
  int body_bol, body_cr;   /* dot-stuffer: at beginning of line; a CR pending */
  int early;               /* a transaction began before the last one's verdict */
  int tls_done;            /* STARTTLS completed */
  int auth_wait;           /* a 334 came: smtp_engine_auth_respond is due */
} smtp_engine;

/* Prepare e for a new session.  helo is the name for EHLO/HELO (no CR, LF,
 * NUL, space; at most 255 octets).  Returns SMTP_OK or SMTP_EINVAL. */
int smtp_engine_init(smtp_engine *e, const char *helo, unsigned opts);

/* The state flags: any combination of SMTP_* flags above. */
unsigned smtp_engine_state(const smtp_engine *e);

/* Bytes to send.  Valid while SMTP_SENDREC is set; *len > 0. */
const unsigned char *smtp_engine_sendrec_buf(const smtp_engine *e, size_t *len);
void smtp_engine_sendrec_ack(smtp_engine *e, size_t len);

/* Room for received bytes.  Valid while SMTP_RECVREC is set; *len > 0. */
unsigned char *smtp_engine_recvrec_buf(smtp_engine *e, size_t *len);
void smtp_engine_recvrec_ack(smtp_engine *e, size_t len);

/* The transport reached end of stream.  Unless QUIT was answered, this
 * closes the session with an error of kind SMTP_ERR_CLOSED. */
void smtp_engine_recv_eof(smtp_engine *e);

/* The pending event, valid while SMTP_EVENT is set; its reply stays valid
 * until smtp_engine_event_ack. */
const smtp_event *smtp_engine_event(const smtp_engine *e);
void smtp_engine_event_ack(smtp_engine *e);

/* Start a transaction (only when SMTP_IDLE, or, with PIPELINING and not
 * LMTP, right after smtp_engine_body_end or the BDAT LAST chunk: the
 * next envelope then goes out behind the final dot, and the previous
 * message's SMTP_EV_MESSAGE comes before this MAIL's reply).  With
 * PIPELINING, SMTP_AGAIN while the last transaction still awaits replies
 * and cannot be overlapped (chunk replies pending, or RSET).  from is the
 * reverse-path without brackets ("" for the null sender); params are MAIL
 * parameters ("SIZE=123 BODY=8BITMIME") or "". */
int smtp_engine_mail(smtp_engine *e, const char *from, const char *params);

/* Add a recipient.  SMTP_AGAIN: the engine waits for earlier replies
 * (no PIPELINING) or has no room; SMTP_EDONE: MAIL was refused. */
int smtp_engine_rcpt(smtp_engine *e, const char *to, const char *params);

/* End the envelope.  SMTP_EDONE when no recipient can be accepted any more:
 * the transaction is over (the engine resets it with RSET when needed). */
int smtp_engine_data(smtp_engine *e);

/* While SMTP_SENDAPP: take message bytes; returns how many were consumed
 * (0 when the output buffer is full: write, then call again).  Line ends
 * are normalized to CRLF and lines starting with "." are dot-stuffed,
 * correctly across any split of the input. */
size_t smtp_engine_body(smtp_engine *e, const unsigned char *p, size_t len);

/* While SMTP_SENDAPP: end the body (CRLF if the last line lacks one, then
 * "."). SMTP_AGAIN when there is no room yet. */
int smtp_engine_body_end(smtp_engine *e);

/* Start SASL authentication (only when SMTP_IDLE and between
 * transactions): line is the whole command, "AUTH MECH" or "AUTH MECH
 * initial-response", at most SMTP_AUTH_LINE_MAX octets.  Each reply is an
 * SMTP_EV_AUTH event; after a 334 event is acknowledged, answer it with
 * smtp_engine_auth_respond (the line may be empty, or "*" to cancel).
 * The session is not SMTP_IDLE until the exchange ends. */
int smtp_engine_auth(smtp_engine *e, const char *line);
int smtp_engine_auth_respond(smtp_engine *e, const char *line);

/* CHUNKING (RFC 3030): instead of smtp_engine_data and the body calls,
 * send the message as BDAT chunks.  Takes up to len bytes, *used says how
 * many (0 when there is no room yet: write, then call again).  Line ends
 * are normalized to CRLF across calls (no dot-stuffing: BDAT needs none);
 * with SMTP_BDAT_RAW the bytes go as they are (BINARYMIME).  With
 * SMTP_BDAT_LAST, the chunk that takes the last byte is "BDAT n LAST" and
 * its reply is the SMTP_EV_MESSAGE verdict.  The first chunk waits
 * (SMTP_AGAIN) until the envelope is answered, and SMTP_EDONE says no
 * recipient was accepted or a chunk was refused. */
#define SMTP_BDAT_LAST 0x01u
#define SMTP_BDAT_RAW  0x02u
int smtp_engine_bdat(smtp_engine *e, const unsigned char *p, size_t len,
                     unsigned flags, size_t *used);

/* RSET (resets a transaction begun with smtp_engine_mail, even one that
 * failed), NOOP, QUIT.  Only when SMTP_IDLE, or for RSET also mid-envelope. */
int smtp_engine_rset(smtp_engine *e);
int smtp_engine_noop(smtp_engine *e);
int smtp_engine_quit(smtp_engine *e);

/* Capabilities of the last successful EHLO (all zero after HELO). */
const smtp_caps *smtp_engine_caps(const smtp_engine *e);

/* Why the session closed; kind SMTP_ERR_NONE while open or after QUIT. */
const smtp_error *smtp_engine_last_error(const smtp_engine *e);

/* The handshake after STARTTLS succeeded: the engine forgets the
 * capabilities learnt in plaintext and sends EHLO again.  Only while
 * SMTP_STARTTLS is set.  Bytes the transport delivers from now on MUST be
 * the decrypted stream. */
int smtp_engine_tls_ready(smtp_engine *e);

/* The stage the session is in, for errors raised outside the engine. */
smtp_stage smtp_engine_stage(const smtp_engine *e);

/* Close the session with an error from outside the engine (the transport
 * timed out, the TLS handshake failed).  The first error stays. */
void smtp_engine_fail(smtp_engine *e, smtp_error_kind kind, smtp_stage stage,
                      const char *message);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif
