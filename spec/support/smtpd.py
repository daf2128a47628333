#!/usr/bin/python3
"""A scriptable SMTP server for the spec suite, built on aiosmtpd.

    smtpd.py --script JSON --record FILE [--temporary] [--cert FILE --key FILE]
             [--lmtp] [--unix PATH]

Binds 127.0.0.1 (or --host) on a free port (or listens on the Unix socket
--unix PATH, then printing port 0), prints "PORT <n> PID <pid>" and serves every
connection with the same script until SIGTERM, or until the reader of its
stdout goes away when stdout is a pipe (so a forgotten server dies with the
test run; --temporary then removes FILE too). Each event is appended to FILE
as one JSON object per line. --cert and --key (PEM files) are the server's
certificate for the scripts that speak TLS (keys "implicit" and "starttls").
--lmtp speaks LMTP (RFC 2033): LHLO instead of EHLO/HELO, and one reply per
accepted recipient after the message. CHUNKING (RFC 3030 BDAT) is served
when the script's extensions list it.
spec/support/server.lua documents the script keys and the records.

Strings in records are the received bytes decoded as UTF-8 with
surrogateescape: a byte that is not valid UTF-8 appears as a lone \\udcXX
escape, which spec/support/json.lua turns back into that byte.
"""

import argparse
import asyncio
import base64
import binascii
import collections
import hashlib
import hmac
import json
import logging
import os
import socket
import ssl
import stat
import sys
import time

from aiosmtpd.smtp import SMTP

HOSTNAME = "test.local"
DEFAULT_EXTENSIONS = ["PIPELINING", "8BITMIME", "SIZE 10485760",
                      "ENHANCEDSTATUSCODES", "SMTPUTF8"]
# Which EHLO keyword a MAIL/RCPT parameter needs before a client may use it.
MAIL_PARAMS = {"SIZE": "SIZE", "BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8",
               "RET": "DSN", "ENVID": "DSN", "AUTH": "AUTH",
               "REQUIRETLS": "REQUIRETLS"}
RCPT_PARAMS = {"NOTIFY": "DSN", "ORCPT": "DSN"}
STARTTLS_MODES = (None, "ok", "refuse", "inject", "strip")
# "inject": the 220 and, in the same write, replies to commands not yet sent.
INJECTED = b"220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 ok\r\n"

# AUTH: the default mechanisms offered, the final replies, and the errors an
# OAuth2 server puts in its 334 challenge (Gmail's for XOAUTH2, RFC 7628's
# for OAUTHBEARER).
AUTH_MECHANISMS = ["PLAIN", "LOGIN"]
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_FAIL = "535 5.7.8 Error: authentication failed"
OAUTH_ERRORS = {
    "XOAUTH2": {"status": "401", "schemes": "bearer",
                "scope": "https://mail.google.com/"},
    "OAUTHBEARER": {"status": "invalid_token", "schemes": "bearer",
                    "scope": "https://mail.google.com/"},
}
# Answers to an endless challenge loop before the server gives up itself.
AUTH_ENDLESS_MAX = 1000


def text(raw):
    return raw.decode("utf-8", "surrogateescape")


def accepted(reply):
    return reply.startswith("2")


class Recorder:
    def __init__(self, path):
        self.file = open(path, "a", encoding="ascii")
        self.connections = 0

    def write(self, record):
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()


class Script:
    def __init__(self, source):
        script = json.loads(source)
        self.get = script.get
        replies = dict(script.get("replies") or {})
        # Recipient triggers match case-insensitively, so key them in lower case.
        self.replies = {
            k[:k.index(":") + 1].upper() + k[k.index(":") + 1:].lower()
            if k.upper().startswith(("RCPT:", "END:")) else k: v
            for k, v in replies.items()}
        self.greeting = self.replies.get(
            "greeting", script.get("banner", "220 %s ESMTP smtpd.py" % HOSTNAME))
        self.extensions = list(script.get("extensions", DEFAULT_EXTENSIONS))
        self.keywords = {}
        for line in self.extensions:
            keyword, _, params = line.partition(" ")
            self.keywords[keyword.upper()] = params
        size = self.keywords.get("SIZE", "")
        self.size_limit = int(size) if size.isdigit() else 0
        self.close_after = script.get("close_after")
        self.lmtp = False       # --lmtp
        # Replies after the message, per recipient (LMTP), keyed in lower case.
        self.lmtp_replies = {k.lower(): v for k, v in
                             (script.get("lmtp_replies") or {}).items()}
        # After this many messages in one session, MAIL gets
        # max_messages_reply (or nothing, when it is "") and the server hangs up.
        self.max_messages = script.get("max_messages")
        self.max_messages_reply = script.get(
            "max_messages_reply",
            "421 4.7.0 %s Error: too many messages in this session" % HOSTNAME)
        # { trigger, times, reply }: the first `times` commands of that
        # trigger, over all sessions, get `reply` instead of their own.
        self.fail_first = script.get("fail_first")
        self.failed = 0
        self.starttls = script.get("starttls")
        if self.starttls not in STARTTLS_MODES:
            raise SystemExit("smtpd.py: unknown starttls mode %r" % self.starttls)
        self.implicit = bool(script.get("implicit"))
        self.auth = script.get("auth")
        if self.auth is not None:
            self.auth = dict(self.auth)
            self.auth.setdefault("mechanisms", AUTH_MECHANISMS)
            self.auth["mechanisms"] = [m.upper() for m in self.auth["mechanisms"]]
            self.auth.setdefault("users", {})
            self.auth.setdefault("tokens", [])
            self.auth.setdefault("replies", {})
            if self.auth.get("offer", "always") not in ("always", "tls", "never"):
                raise SystemExit("smtpd.py: unknown auth.offer %r" % self.auth["offer"])

    def reply(self, trigger, default):
        return self.replies.get(trigger, default)

    def failing(self, trigger):
        """The fail_first reply when this command is one of the first ones."""
        fail = self.fail_first
        if fail and fail.get("trigger", "RCPT") == trigger and self.failed < fail.get("times", 1):
            self.failed += 1
            return fail.get("reply", "451 4.3.0 Temporary failure, try again")
        return None


class CommandReader:
    """The command loop's view of the client stream: records each line.

    Lines of any length are returned whole, so that the record is exact and
    aiosmtpd's own length check answers "500 Command line too long".
    """

    def __init__(self, server, stream):
        self.server = server
        self.stream = stream

    async def readuntil(self, separator=b"\n"):
        line = bytearray()
        while True:
            try:
                line += await self.stream.readuntil(separator)
                break
            except asyncio.LimitOverrunError as e:
                line += await self.stream.read(e.consumed)
        # StreamReader has no public way to ask whether more bytes are buffered.
        self.server.command(bytes(line), bool(self.stream._buffer))
        return bytes(line)

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def __setattr__(self, name, value):
        # aiosmtpd points the reader at the TLS transport after STARTTLS.
        if name in ("server", "stream"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.stream, name, value)


class Handler:
    """aiosmtpd hooks for the commands whose stock handling is kept."""

    async def handle_RSET(self, server, session, envelope):
        return server.script.reply("RSET", "250 2.0.0 Ok")

    async def handle_NOOP(self, server, session, envelope, arg):
        return server.script.reply("NOOP", "250 2.0.0 Ok")

    async def handle_QUIT(self, server, session, envelope):
        return server.script.reply("QUIT", "221 2.0.0 Bye")


class ScriptedSMTP(SMTP):
    def __init__(self, script, recorder, loop, tls_context=None):
        # aiosmtpd upgrades on STARTTLS only when it has a context.
        upgrade = script.starttls in ("ok", "inject")
        super().__init__(Handler(), hostname=HOSTNAME, loop=loop,
                         data_size_limit=None,
                         enable_SMTPUTF8="SMTPUTF8" in script.keywords,
                         tls_context=tls_context if upgrade else None)
        # aiosmtpd shares this dict between connections and grows it per EHLO;
        # MAIL and RCPT parameters may lengthen those lines (RFC 5321 4.5.3.1.4).
        self.command_size_limits = collections.defaultdict(
            lambda: self.command_size_limit,
            MAIL=self.line_length_limit, RCPT=self.line_length_limit,
            AUTH=12288)     # RFC 4954 4: an AUTH line with its initial response
        self.script = script
        self.recorder = recorder
        self.conn = None
        self.verb = "greeting"
        self.tls = False
        self.lost = False
        self.delivered = 0          # messages accepted in this session
        self.chunk = None           # the BDAT chunk whose reply is due
        # Commands this server does not know are answered 500, as aiosmtpd
        # answers any unknown command: LHLO unless LMTP, EHLO and HELO in
        # LMTP (RFC 2033 4.1), BDAT unless CHUNKING is offered.
        unknown = ["EHLO", "HELO"] if script.lmtp else ["LHLO"]
        if "CHUNKING" not in script.keywords:
            unknown.append("BDAT")
        for verb in unknown:
            self._smtp_methods.pop(verb, None)

    def _set_post_data_state(self):
        super()._set_post_data_state()
        # BDAT (RFC 3030): the chunks of the transaction so far.
        self.chunks = []
        self.chunk_data = bytearray()
        self.chunks_failed = False

    def record(self, kind, **fields):
        self.recorder.write(dict(type=kind, conn=self.conn, **fields))

    def record_tls(self, transport):
        self.tls = True
        ssl_object = transport.get_extra_info("ssl_object")
        self.record("tls", version=ssl_object.version(),
                    cipher=ssl_object.cipher()[0],
                    servername=getattr(ssl_object, "servername", None),
                    resumed=ssl_object.session_reused)

    def connection_made(self, transport):
        if self._original_transport is not None:
            # The handshake after STARTTLS is done: the same connection.
            super().connection_made(transport)
            self.record_tls(transport)
            return
        self.recorder.connections += 1
        self.conn = self.recorder.connections
        self.record("connect")
        if transport.get_extra_info("ssl_object") is not None:
            self.record_tls(transport)
        sock = transport.get_extra_info("socket")
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def connection_lost(self, error):
        if not self.lost:
            self.lost = True
            self.record("disconnect")
        super().connection_lost(error)

    def _client_connected_cb(self, reader, writer):
        super()._client_connected_cb(CommandReader(self, reader), writer)
        self.stream = reader

    def command(self, line, pipelined):
        if line.endswith(b"\r\n"):
            line = line[:-2]
        self.verb = text(line.split(b" ", 1)[0].upper())
        fields = dict(line=text(line), pipelined=pipelined)
        if self.tls:
            fields["tls"] = True
        self.record("command", **fields)

    async def hang(self):
        """Wait until the client goes away (aiosmtpd then cancels us)."""
        await self.loop.create_future()

    async def _handle_client(self):
        script = self.script
        try:
            if script.get("close_on_connect"):
                self.transport.close()
                return
            if script.get("silent"):
                await self.hang()
            await asyncio.sleep(script.get("greeting_delay", 0))
        except asyncio.CancelledError:
            self._writer.close()
            raise
        await super()._handle_client()

    async def push(self, status):
        if self.verb == "greeting":
            # aiosmtpd's first reply is its own greeting; say ours instead.
            status = self.script.greeting
        await asyncio.sleep(self.script.get("reply_delay", 0))
        if self.chunk is not None:
            # Did the client send more before this chunk's reply? (After
            # reply_delay, so a pipelining client has had time to.)
            self.record("chunk", pipelined=bool(self.stream._buffer), **self.chunk)
            self.chunk = None
        data = status.encode("utf-8", "surrogateescape") + b"\r\n"
        if self.verb == "STARTTLS" and data.startswith(b"220 "):
            # aiosmtpd's own words, about to upgrade; or the injection.
            data = (INJECTED if self.script.starttls == "inject"
                    else b"220 2.0.0 Ready to start TLS\r\n")
            self._writer.write(data)
            await self._writer.drain()
            return
        if self.script.get("split_replies"):
            for i in range(len(data)):
                self._writer.write(data[i:i + 1])
                await self._writer.drain()
                await asyncio.sleep(0.001)
        else:
            self._writer.write(data)
            await self._writer.drain()
        if self.verb == self.script.close_after:
            self.transport.close()

    def parse_path(self, arg, keyword, known):
        """Split "FROM:<path> PARAMS" into (path, params) or return (None, reply)."""
        syntax = "501 5.5.4 Syntax: %s<address> [parameters]" % keyword
        if not arg or arg[:len(keyword)].upper() != keyword:
            return None, syntax
        arg = arg[len(keyword):].lstrip()
        end = arg.find(">")
        if not arg.startswith("<") or end < 0:
            return None, syntax
        params = arg[end + 1:].split()
        if params and not self.session.extended_smtp:
            return None, syntax
        for param in params:
            name, _, value = param.partition("=")
            needs = known.get(name.upper())
            if needs is None or needs not in self.script.keywords:
                return None, "555 5.5.4 Unsupported parameter %s" % name
            if name.upper() == "BODY" and value.upper() not in ("7BIT", "8BITMIME") and not (
                    value.upper() == "BINARYMIME" and "BINARYMIME" in self.script.keywords):
                return None, "501 5.5.4 Unsupported BODY type %s" % value
        return arg[1:end], params

    async def smtp_HELO(self, hostname):
        if not hostname:
            return await self.push("501 5.5.4 Syntax: HELO hostname")
        reply = self.script.reply("HELO", "250 " + HOSTNAME)
        if accepted(reply):
            self._set_rset_state()
            self.session.host_name = hostname
            self.session.extended_smtp = False
        await self.push(reply)

    async def smtp_EHLO(self, hostname):
        if not hostname:
            return await self.push("501 5.5.4 Syntax: EHLO hostname")
        script = self.script
        mode = script.get("ehlo", "ok")
        if mode == "endless" and "EHLO" not in script.replies:
            return await self.endless_ehlo()
        if mode == "refuse":
            reply = "500 5.5.1 Command unrecognized"
        else:
            lines = [HOSTNAME] + script.extensions
            auth = script.auth
            offer = auth and auth.get("offer", "always")
            if offer == "always" or (offer == "tls" and self.tls):
                if auth["mechanisms"]:
                    lines.append("AUTH " + " ".join(auth["mechanisms"]))
            if script.starttls in ("ok", "refuse", "inject") and not self.tls:
                lines.append("STARTTLS")
            if mode == "long_line":
                # The line is "250-" plus this, ehlo_line_length bytes before CRLF.
                length = script.get("ehlo_line_length", 5000)
                lines.insert(1, ("X-LONG " + "x" * length)[:length - 4])
            reply = "\r\n".join(["250-" + line for line in lines[:-1]]
                                + ["250 " + lines[-1]])
        reply = script.reply("EHLO", reply)
        if accepted(reply):
            self._set_rset_state()
            self.session.host_name = hostname
            self.session.extended_smtp = True
        await self.push(reply)

    async def smtp_LHLO(self, hostname):
        # LMTP's EHLO (only with --lmtp; the EHLO reply and trigger).
        await self.smtp_EHLO(hostname)

    async def smtp_STARTTLS(self, arg):
        mode = self.script.starttls
        if self.tls:
            return await self.push("503 5.5.1 Error: TLS already active")
        if mode == "refuse":
            return await self.push(
                "454 4.7.0 TLS not available due to temporary reason")
        if mode == "strip":
            return await self.push("502 5.5.1 Error: command not implemented")
        await super().smtp_STARTTLS(arg)
        if mode is not None and not self.tls and not self.lost:
            # The client went away before finishing the handshake (as it must
            # after an injection): aiosmtpd would wait on the dead stream.
            self.connection_lost(None)

    # AUTH (RFC 4954), scripted by the "auth" key: see server.lua.  The
    # exchange is recorded decoded, secrets and all (test data only).

    async def smtp_AUTH(self, arg):
        auth = self.script.auth
        if auth is None:
            return await self.push("503 5.5.1 Error: authentication not enabled")
        if not self.session.extended_smtp:
            return await self.push("503 5.5.1 Error: send EHLO first")
        if self.session.authenticated:
            return await self.push("503 5.5.1 Error: already authenticated")
        if not arg:
            return await self.push("501 5.5.4 Syntax: AUTH mechanism")
        mechanism, _, initial = arg.partition(" ")
        mechanism = mechanism.upper()
        self.auth_record = dict(mechanism=mechanism, steps=[])
        if self.tls:
            self.auth_record["tls"] = True
        initial = initial.strip()
        if initial:
            decoded = self.unbase64(initial)
            if decoded is None:
                return await self.auth_end("501 5.5.2 Cannot decode the initial response")
            self.auth_record["initial"] = decoded
            initial = decoded
        else:
            initial = None
        if auth.get("hang"):
            self.record("auth", **self.auth_record)
            return await self.hang()
        if auth.get("challenges"):
            for challenge in auth["challenges"]:
                if await self.challenge(challenge) is None:
                    return
            return await self.auth_end(auth.get("reply") or self.failed())
        if auth.get("reply"):
            return await self.auth_end(auth["reply"])
        if auth.get("endless"):
            return await self.endless_auth(auth["endless"])
        handler = {"PLAIN": self.auth_plain, "LOGIN": self.auth_login,
                   "CRAM-MD5": self.auth_cram_md5, "XOAUTH2": self.auth_oauth,
                   "OAUTHBEARER": self.auth_oauth,
                   "SCRAM-SHA-1": self.auth_scram,
                   "SCRAM-SHA-256": self.auth_scram}.get(mechanism)
        if handler is None or mechanism not in auth["mechanisms"]:
            return await self.auth_end("504 5.5.4 Unrecognized authentication type")
        await handler(mechanism, initial)

    @staticmethod
    def unbase64(line):
        """The text a base64 line stands for ("=" is empty), or None."""
        if line == "=":
            return ""
        try:
            return text(base64.b64decode(line.encode("ascii", "surrogateescape"),
                                         validate=True))
        except (binascii.Error, ValueError):
            return None

    def failed(self):
        return self.script.auth["replies"].get("fail", AUTH_FAIL)

    async def auth_end(self, reply, user=None):
        """Record the exchange and send its final reply."""
        ok = reply.startswith("2")
        if ok:
            self.session.authenticated = True
        self.auth_record.update(reply=reply, success=ok)
        if user is not None:
            self.auth_record["user"] = user
        self.record("auth", **self.auth_record)
        await self.push(reply)

    async def challenge(self, line):
        """Send a 334 line; the client's response decoded, or None when the
        exchange is over (cancelled with "*", or not base64: replied to)."""
        await self.push(line)
        try:
            raw = await self.stream.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError) as e:
            # The client went away in mid-exchange.
            self.auth_record["steps"].append(dict(challenge=line))
            self.auth_record["closed"] = True
            self.record("auth", **self.auth_record)
            if isinstance(e, asyncio.CancelledError):
                raise
            await self.hang()
        raw = text(raw.rstrip(b"\r\n"))
        step = dict(challenge=line, raw=raw)
        self.auth_record["steps"].append(step)
        if raw == "*":
            await self.auth_end("501 5.7.0 Authentication aborted")
            return None
        decoded = self.unbase64(raw) if raw else ""
        if decoded is None:
            await self.auth_end("501 5.5.2 Cannot decode response")
            return None
        step["response"] = decoded
        return decoded

    @staticmethod
    def b64(data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        return base64.b64encode(data).decode("ascii")

    async def verdict(self, user, password):
        good = self.script.auth["users"].get(user)
        if good is not None and hmac.compare_digest(good.encode("utf-8", "surrogateescape"),
                                                    password.encode("utf-8", "surrogateescape")):
            return await self.auth_end(self.script.auth["replies"].get("ok", AUTH_OK), user)
        await self.auth_end(self.failed(), user)

    async def auth_plain(self, mechanism, initial):
        if initial is None:
            initial = await self.challenge("334 ")
            if initial is None:
                return
        parts = initial.split("\0")
        if len(parts) != 3:
            return await self.auth_end("501 5.5.2 Malformed PLAIN response")
        await self.verdict(parts[1], parts[2])

    async def auth_login(self, mechanism, initial):
        user = initial
        if user is None:
            user = await self.challenge("334 VXNlcm5hbWU6")     # "Username:"
            if user is None:
                return
        password = await self.challenge("334 UGFzc3dvcmQ6")     # "Password:"
        if password is not None:
            await self.verdict(user, password)

    async def auth_cram_md5(self, mechanism, initial):
        if initial is not None:
            return await self.auth_end("501 5.5.2 CRAM-MD5 takes no initial response")
        nonce = "<%s.%d@%s>" % (os.urandom(8).hex(), os.getpid(), HOSTNAME)
        response = await self.challenge("334 " + self.b64(nonce))
        if response is None:
            return
        user, _, digest = response.rpartition(" ")
        password = self.script.auth["users"].get(user)
        if password is not None:
            want = hmac.new(password.encode("utf-8"), nonce.encode("ascii"), "md5").hexdigest()
            if hmac.compare_digest(want, digest):
                return await self.auth_end(self.script.auth["replies"].get("ok", AUTH_OK), user)
        await self.auth_end(self.failed(), user)

    @staticmethod
    def oauth_fields(mechanism, message):
        """XOAUTH2's "user=U^Aauth=Bearer T^A^A" or OAUTHBEARER's
        "n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A" as (user, fields), or
        None when it does not parse."""
        if not message.endswith("\x01\x01"):
            return None
        user = None
        if mechanism == "OAUTHBEARER":
            gs2, sep, message = message.partition("\x01")
            header = gs2.split(",")
            if not sep or len(header) != 3 or header[0] not in ("n", "y") or header[2]:
                return None
            if header[1].startswith("a="):
                user = header[1][2:].replace("=2C", ",").replace("=3D", "=")
        fields = {}
        for pair in message[:-2].split("\x01"):
            key, sep, value = pair.partition("=")
            if not sep:
                return None
            fields[key] = value
        if mechanism == "XOAUTH2":
            user = fields.pop("user", None)
        return user, fields

    async def auth_oauth(self, mechanism, initial):
        auth = self.script.auth
        if initial is None:
            initial = await self.challenge("334 ")
            if initial is None:
                return
        parsed = self.oauth_fields(mechanism, initial)
        if parsed is None:
            return await self.auth_end("501 5.5.2 Malformed %s response" % mechanism)
        user, fields = parsed
        bearer = fields.get("auth", "")
        token = bearer[7:] if bearer.startswith("Bearer ") else None
        self.auth_record.update(fields=fields)
        if token is not None and token in auth["tokens"]:
            return await self.auth_end(auth["replies"].get("ok", AUTH_OK), user)
        error = auth.get("error", OAUTH_ERRORS[mechanism])
        if isinstance(error, dict):
            error = json.dumps(error, separators=(",", ":"))
        if await self.challenge("334 " + self.b64(error)) is not None:
            await self.auth_end(self.failed(), user)

    async def auth_scram(self, mechanism, initial):
        """RFC 5802 without channel binding; auth.scram = { signature =
        "good" | "bad" | "none", final = "challenge" | "inline",
        iterations = n, nonce = "server nonce" } bends it."""
        auth = self.script.auth
        opts = auth.get("scram") or {}
        digest = "sha1" if mechanism == "SCRAM-SHA-1" else "sha256"
        if initial is None:
            initial = await self.challenge("334 ")
            if initial is None:
                return
        header, sep, first_bare = initial.partition(",,")
        attrs = dict(a.split("=", 1) for a in first_bare.split(",") if "=" in a)
        if not sep or header not in ("n", "y") or "n" not in attrs or "r" not in attrs:
            return await self.auth_end("501 5.5.2 Malformed SCRAM client-first message")
        user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
        salt = os.urandom(16)
        iterations = int(opts.get("iterations", 4096))
        nonce = attrs["r"] + opts.get("nonce", os.urandom(12).hex())
        server_first = "r=%s,s=%s,i=%d" % (nonce, self.b64(salt), iterations)
        final = await self.challenge("334 " + self.b64(server_first))
        if final is None:
            return
        without_proof, _, proof = final.rpartition(",p=")
        fattrs = dict(a.split("=", 1) for a in without_proof.split(",") if "=" in a)
        password = auth["users"].get(user)
        if password is None or fattrs.get("r") != nonce:
            return await self.auth_end(self.failed(), user)
        salted = hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", digest).digest()
        stored_key = hashlib.new(digest, client_key).digest()
        message = ",".join([first_bare, server_first, without_proof]).encode("utf-8", "surrogateescape")
        signature = hmac.new(stored_key, message, digest).digest()
        want = bytes(a ^ b for a, b in zip(client_key, signature))
        try:
            got = base64.b64decode(proof, validate=True)
        except binascii.Error:
            got = b""
        if not hmac.compare_digest(want, got):
            return await self.auth_end(self.failed(), user)
        server_key = hmac.new(salted, b"Server Key", digest).digest()
        server_signature = hmac.new(server_key, message, digest).digest()
        if opts.get("signature", "good") == "bad":
            server_signature = bytes([server_signature[0] ^ 1]) + server_signature[1:]
        ok = auth["replies"].get("ok", AUTH_OK)
        if opts.get("signature") == "none":
            return await self.auth_end(ok, user)
        server_final = self.b64("v=" + self.b64(server_signature))
        if opts.get("final", "challenge") == "inline":
            return await self.auth_end("235 " + server_final, user)
        if await self.challenge("334 " + server_final) is not None:
            await self.auth_end(ok, user)

    async def endless_auth(self, line):
        """334 after every response, until the client gives up (or
        AUTH_ENDLESS_MAX answers, to stay bounded)."""
        if line is True:
            line = "334 " + self.b64("again")
        for _ in range(AUTH_ENDLESS_MAX):
            if await self.challenge(line) is None:
                return
        await self.auth_end(self.failed())

    async def endless_ehlo(self):
        n = 0
        while True:
            self._writer.write(b"".join(
                b"250-X-ENDLESS-%d\r\n" % i for i in range(n, n + 100)))
            n += 100
            await self._writer.drain()

    async def smtp_MAIL(self, arg):
        if await self.check_helo_needed():
            return
        auth = self.script.auth
        if auth and auth.get("required") and not self.session.authenticated:
            return await self.push("530 5.7.0 Authentication required")
        if self.envelope.mail_from is not None:
            return await self.push("503 5.5.1 Error: nested MAIL command")
        script = self.script
        if script.max_messages is not None and self.delivered >= script.max_messages:
            if script.max_messages_reply:
                await self.push(script.max_messages_reply)
            self.transport.close()
            return
        address, params = self.parse_path(arg, "FROM:", MAIL_PARAMS)
        if address is None:
            return await self.push(params)
        for param in params:
            name, _, value = param.partition("=")
            if (name.upper() == "SIZE" and value.isdigit()
                    and self.script.size_limit
                    and int(value) > self.script.size_limit):
                return await self.push(
                    "552 5.3.4 Message size exceeds fixed limit")
        reply = self.script.failing("MAIL") or self.script.reply("MAIL", "250 2.1.0 Ok")
        if accepted(reply):
            self.envelope.mail_from = address
            self.envelope.mail_options = params
        await self.push(reply)

    async def smtp_RCPT(self, arg):
        if await self.check_helo_needed():
            return
        if self.envelope.mail_from is None:
            return await self.push("503 5.5.1 Error: need MAIL command")
        address, params = self.parse_path(arg, "TO:", RCPT_PARAMS)
        if address is None:
            return await self.push(params)
        script = self.script
        reply = script.failing("RCPT") or script.replies.get(
            "RCPT:" + address.lower(), script.reply("RCPT", "250 2.1.5 Ok"))
        if accepted(reply):
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_options.append(params)
        await self.push(reply)

    async def smtp_DATA(self, arg):
        if await self.check_helo_needed():
            return
        if self.envelope.mail_from is None:
            return await self.push("503 5.5.1 Error: need MAIL command")
        if not self.envelope.rcpt_tos:
            return await self.push("554 5.5.1 Error: no valid recipients")
        if arg:
            return await self.push("501 5.5.4 Syntax: DATA")
        if self.chunks:
            return await self.push("503 5.5.1 Error: DATA after BDAT")
        if any(p.upper() == "BODY=BINARYMIME" for p in self.envelope.mail_options):
            return await self.push("503 5.5.1 Error: BODY=BINARYMIME needs BDAT")
        reply = (self.script.failing("DATA")
                 or self.script.reply("DATA", "354 End data with <CR><LF>.<CR><LF>"))
        await self.push(reply)
        if not reply.startswith("3"):
            return
        body = await self.receive_body()
        if body is None:
            return
        wire, data = body
        if self.script.get("no_reply_after") == "DATA_END":
            await self.hang()
        await self.end_of_message(wire, data)

    async def end_of_message(self, wire, data, chunks=None):
        """The verdict on a whole message (after the dot, or BDAT LAST):
        one reply, or with LMTP one per accepted recipient."""
        script = self.script
        envelope = self.envelope
        self._set_post_data_state()
        if script.size_limit and len(data) > script.size_limit:
            replies = ["552 5.3.4 Message size exceeds fixed limit"]
        else:
            default = script.failing("END") or script.reply(
                "END:" + (envelope.mail_from or "").lower(), script.reply(
                    "END", "250 2.0.0 Ok: queued as %s" % os.urandom(5).hex().upper()))
            replies = [default]
        if script.lmtp:
            replies = [script.lmtp_replies.get(r.lower(), replies[0]) for r in envelope.rcpt_tos]
        delivered = [r for r, reply in zip(envelope.rcpt_tos, replies) if accepted(reply)]
        if delivered and (script.lmtp or accepted(replies[0])):
            self.delivered += 1
            fields = dict(
                mail_from=envelope.mail_from,
                mail_options=envelope.mail_options,
                rcpt_tos=envelope.rcpt_tos, rcpt_options=envelope.rcpt_options,
                data_b64=base64.b64encode(data).decode(),
                wire_b64=base64.b64encode(wire).decode(),
                ehlo=self.session.host_name, received=time.time(),
                pipelined=bool(self.stream._buffer))
            if script.lmtp:
                fields.update(delivered=delivered, replies=replies)
            if chunks is not None:
                fields["chunks"] = chunks
            if self.tls:
                fields["tls"] = True
            self.record("message", **fields)
        for reply in replies:
            await self.push(reply)

    async def smtp_BDAT(self, arg):
        """RFC 3030: "BDAT size [LAST]" and exactly size octets behind it,
        read whatever the reply; the LAST chunk gets the message's verdict."""
        if await self.check_helo_needed():
            return
        words = (arg or "").split()
        if (not 1 <= len(words) <= 2 or not words[0].isdigit()
                or (len(words) == 2 and words[1].upper() != "LAST")):
            return await self.push("501 5.5.4 Syntax: BDAT size [LAST]")
        size, last = int(words[0]), len(words) == 2
        try:
            octets = await self.stream.readexactly(size)
        except asyncio.IncompleteReadError:
            self.transport.close()
            return
        index = len(self.chunks) + 1
        self.chunk = dict(index=index, size=size, last=last)
        envelope = self.envelope
        if envelope.mail_from is None:
            return await self.push("503 5.5.1 Error: need MAIL command")
        if not envelope.rcpt_tos:
            return await self.push("554 5.5.1 Error: no valid recipients")
        if self.chunks_failed:
            return await self.push("503 5.5.1 Error: an earlier chunk failed, send RSET")
        self.chunks.append(size)
        self.chunk_data += octets
        reply = self.script.replies.get("BDAT:%d" % index)
        if reply is None and not last:
            reply = self.script.reply("BDAT", "250 2.0.0 %d octets received" % size)
        if reply is not None and not (last and accepted(reply)):
            if not accepted(reply):
                # The transaction is over; RSET starts the next one.
                self.chunks_failed = True
            return await self.push(reply)
        data = bytes(self.chunk_data)
        await self.end_of_message(data, data, self.chunks)

    async def receive_body(self):
        """Read up to CRLF.CRLF; return (wire, unstuffed data), or None if the
        script closed the connection part-way.

        Only CRLF ends a line: a bare LF or CR is data, so ".\\r\\n" after a
        bare LF does not end the message, as in RFC 5321 2.3.8.
        """
        wire = bytearray()
        data = bytearray()
        line_start = True
        mid_data = self.script.close_after == "mid_data"
        limit = self.script.get("close_after_bytes", 100)
        while True:
            try:
                piece = await self.stream.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as e:
                piece = await self.stream.read(e.consumed)
            wire += piece
            if line_start and piece == b".\r\n":
                return bytes(wire), bytes(data)
            if line_start and piece.startswith(b"."):
                piece = piece[1:]
            data += piece
            line_start = piece.endswith(b"\r\n")
            if mid_data and len(wire) >= limit:
                self.transport.close()
                return None


def watch_stdout(loop, orphan_files):
    """Exit once nobody reads our stdout pipe any more, removing orphan_files.

    epoll reports an error on a pipe's write end when its last reader has
    closed it, and asyncio hands that to a reader callback.
    """
    def orphaned():
        for path in orphan_files:
            os.remove(path)
        os._exit(0)
    fd = sys.stdout.fileno()
    if stat.S_ISFIFO(os.fstat(fd).st_mode):
        loop.add_reader(fd, orphaned)


def remember_servername(ssl_object, servername, context):
    """Keep the client's SNI (None when it sent none) for the tls record."""
    ssl_object.servername = servername


def ignore_disconnects(loop, context):
    # A client hanging up mid-reply is routine here, not worth a traceback.
    if not isinstance(context.get("exception"), (ConnectionError, asyncio.CancelledError)):
        loop.default_exception_handler(context)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--script", default="{}", help="JSON script")
    parser.add_argument("--record", required=True, help="file to append records to")
    parser.add_argument("--temporary", action="store_true",
                        help="remove the record file when exiting for want of a reader")
    parser.add_argument("--cert", help="PEM certificate (chain) for TLS")
    parser.add_argument("--key", help="PEM private key of --cert")
    parser.add_argument("--lmtp", action="store_true", help="speak LMTP (RFC 2033)")
    parser.add_argument("--unix", help="listen on this Unix socket path instead of TCP")
    args = parser.parse_args()
    script = Script(args.script)
    script.lmtp = args.lmtp
    if args.lmtp and "banner" not in json.loads(args.script) and "greeting" not in script.replies:
        script.greeting = "220 %s LMTP smtpd.py" % HOSTNAME
    context = None
    if args.cert or args.key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key or args.cert)
        context.sni_callback = remember_servername
    if (script.implicit or script.starttls in ("ok", "inject")) and not context:
        raise SystemExit("smtpd.py: this script speaks TLS: give --cert and --key")
    recorder = Recorder(args.record)
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(ignore_disconnects)
    factory = lambda: ScriptedSMTP(script, recorder, loop, context)  # noqa: E731
    ssl_context = context if script.implicit else None
    if args.unix:
        server = await loop.create_unix_server(factory, args.unix, ssl=ssl_context)
        port = 0
    else:
        server = await loop.create_server(factory, args.host, 0, ssl=ssl_context)
        port = server.sockets[0].getsockname()[1]
    print("PORT %d PID %d" % (port, os.getpid()), flush=True)
    orphans = [args.record] + ([args.unix] if args.unix else [])
    watch_stdout(loop, orphans if args.temporary else [])
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
