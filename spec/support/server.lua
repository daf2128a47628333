-- Test servers for the specs (Lua 5.1-5.4, no C modules needed).
--
--   local server = require "spec.support.server"
--   local srv = server.start { ehlo = "refuse" }   -- a scripted smtpd.py
--   ... connect to srv.host, srv.port ...
--   srv:messages(); srv:commands(); srv:records()
--   srv:stop()                                  -- records stay readable
--
--   server.postfix()            -- the shared Postfix from postfix.sh:
--     { host, port (= ports.plain), domain, certs (the directory certs.sh
--     filled: ca.pem, server.pem, client.pem, ...), ports = { plain,
--     starttls, implicit, tls12, clientcert, expired, wrongname, selfsigned,
--     otherca, plainauth, sizelimit }, users = { plain = { username, password } (ASCII),
--     utf8 = { username, password } (a UTF-8 password) }, ntlm_domain,
--     mechanisms (what AUTH offers, in its order) } (see the port map and
--     the SASL notes at the top of postfix.sh)
--   server.postfix_wait(needle) -- raw text of the delivered message
--   server.postfix_inbox()      -- raw texts of all messages delivered so far
--
--   server.proxies()            -- the shared proxies from proxies.sh:
--     { host = "127.0.0.1", dir (proxies.sh's DIR: configs, logs), user,
--       password, ports = { socks (danted: SOCKS4 and SOCKS5, no
--       authentication), socks_auth (danted: SOCKS5, username/password),
--       socks4a (socks4a.py: SOCKS4 and 4a), http (tinyproxy: CONNECT),
--       http_auth (tinyproxy: CONNECT with Basic authentication) } }, from
--     the environment make spec sets (SMTP_TEST_*_PORT, SMTP_TEST_PROXY_USER,
--     SMTP_TEST_PROXY_PASSWORD, SMTP_TEST_PROXY_DIR), with its defaults
--   server.socks4a_log()        -- socks4a.py's log records so far, in order
--     ({ userid, host, port, name, mode, result }: see socks4a.py)
--   server.socks4a { mode = "close", stall_limit = seconds }
--                               -- a private socks4a.py in that --mode (and
--     --stall-limit), on a free port: { host, port, pid }, :records() (its
--     log so far) and :stop()
--   server.free_port()          -- a TCP port on 127.0.0.1 that nothing
--     listens on (the kernel's choice, just released: for "nobody there")
--
-- Script keys for start() (all optional; the default is a well-behaved ESMTP
-- server):
--   host             address to listen on, default "127.0.0.1" (also "::1")
--   unix             a Unix socket path to listen on instead of TCP: then
--                    srv.host is "unix:<path>" (a connection's address),
--                    srv.port nil, srv.path the path (removed by stop())
--   lmtp             true: speak LMTP (RFC 2033): LHLO (EHLO and HELO are
--                    unknown commands, 500), and after the message one reply
--                    per accepted recipient: lmtp_replies[address] or else the
--                    END reply
--   lmtp_replies     { [address] = "452 4.2.2 mailbox full", ... } (lmtp)
--   banner           greeting line, default "220 test.local ESMTP smtpd.py"
--   greeting_delay   seconds before the greeting
--   silent           accept and never send a byte
--   close_on_connect close right after accept
--   extensions       EHLO keywords, default { "PIPELINING", "8BITMIME",
--                    "SIZE 10485760", "ENHANCEDSTATUSCODES", "SMTPUTF8" };
--                    MAIL/RCPT parameters are refused unless their
--                    extension is listed (SIZE, BODY, SMTPUTF8, DSN,
--                    REQUIRETLS, ...; BODY=BINARYMIME needs BINARYMIME).
--                    "CHUNKING" serves BDAT (RFC 3030: "BDAT n [LAST]", then
--                    exactly n octets, taken as they are; without it BDAT is
--                    an unknown command); DATA after BDAT, or with
--                    BODY=BINARYMIME, is answered 503
--   ehlo             "ok" | "refuse" (500 to EHLO, HELO works) |
--                    "long_line" (one EHLO line of ehlo_line_length bytes,
--                    default 5000, CRLF not counted) | "endless"
--   replies          { [trigger] = "full reply, lines joined by \r\n" };
--                    triggers: greeting EHLO (also LHLO) HELO MAIL RCPT
--                    RCPT:<address> DATA (to the DATA command) END (after the
--                    dot, or to BDAT LAST) END:<sender> (END for a message
--                    whose MAIL FROM is sender) BDAT (each chunk but the last)
--                    BDAT:<n> (the n-th chunk of a transaction, from 1, last
--                    or not; a refusal fails the transaction: later chunks get
--                    503 until RSET) RSET NOOP QUIT. A refused MAIL/RCPT/END
--                    changes no state, as on a real server.
--   fail_first       { trigger = "MAIL" | "RCPT" (default) | "DATA" | "END", times = n
--                    (default 1), reply = (default "451 4.3.0 Temporary
--                    failure, try again") }: the first n such commands, over
--                    all sessions of this server, get reply instead
--   max_messages     n: after n accepted messages in one session, MAIL gets
--                    max_messages_reply (default "421 4.7.0 test.local Error:
--                    too many messages in this session"; "" for none) and the
--                    server hangs up
--   close_after      "greeting" | "EHLO" | "MAIL" | "RCPT" | "DATA": close
--                    after that reply; "mid_data": close without a reply once
--                    close_after_bytes (default 100) of the body arrived
--   no_reply_after   "DATA_END": never answer the final dot
--   split_replies    send replies one byte per TCP segment
--   reply_delay      seconds before every reply
--   cert, key        paths of the PEM certificate and key the TLS keys below
--                    use (say, server.postfix().certs .. "/server.pem")
--   implicit         true: TLS from the first byte (needs cert and key)
--   starttls         nil (default): STARTTLS not offered, answered 454 |
--                    "ok" (offered; a real upgrade, after which the client
--                    must EHLO again; needs cert, key) | "refuse" (offered;
--                    answered "454 4.7.0 TLS not available due to temporary
--                    reason") | "inject" (offered; the 220 comes in one write
--                    with "250-injected\r\n250 ok\r\n" behind it, then the
--                    server waits for a handshake; needs cert, key) | "strip"
--                    (not offered, as a downgrading middlebox would; 502 if
--                    sent anyway)
--   auth             AUTH (RFC 4954), offered in EHLO as "AUTH <mechanisms>";
--                    without it AUTH is answered 503. A table of:
--     mechanisms     offered and served, default { "PLAIN", "LOGIN" }; served:
--                    PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 XOAUTH2
--                    OAUTHBEARER (others offered are answered 504)
--     offer          "always" (default) | "tls" (only after TLS) | "never"
--     users          { [username] = password } for the password mechanisms
--     tokens         { "token", ... }: the bearer tokens XOAUTH2 and
--                    OAUTHBEARER accept; any other gets a 334 with the JSON
--                    error (error, default Gmail's {"status":"401",...} for
--                    XOAUTH2, {"status":"invalid_token",...} for OAUTHBEARER;
--                    a table or a string), then after the client's answer
--                    the failure reply
--     replies        { ok = "235 ...", fail = "535 ..." }: the final replies
--     reply          a final reply to every AUTH, at once (after the initial
--                    response, before any challenge), or after challenges
--     challenges     { "334 ...", ... }: raw lines sent in turn (each waits
--                    for the client's line), then reply or the failure reply
--     endless        true or a "334 ..." line: sent after every response
--                    (1000 times at most, then the failure reply)
--     scram          { signature = "good" | "bad" | "none", final =
--                    "challenge" (v= in a 334) | "inline" (in the 235),
--                    iterations = 4096, nonce = server nonce part }
--     required       true: MAIL before a successful AUTH gets 530 5.7.0
--     hang           true: never answer AUTH
--
-- Records (tables, in order): { type = "connect"|"disconnect", conn = n },
-- { type = "tls", conn, version ("TLSv1.2", ...), cipher, servername (the
-- client's SNI), resumed (the client resumed an earlier session) } once a
-- handshake (implicit, or after STARTTLS) is done, { type = "command", conn, line
-- (without CRLF), pipelined (more bytes were already buffered behind it),
-- tls (true once encrypted, else absent) }, for each AUTH exchange { type =
-- "auth", conn, mechanism, initial (the initial response, decoded), steps =
-- { { challenge (the 334 line sent), raw (the client's line), response
-- (decoded; absent when not base64) }, ... }, fields (XOAUTH2 and
-- OAUTHBEARER: the key=value pairs, auth = "Bearer <token>", host, port),
-- user, reply (the final reply), success, tls, closed (the client hung up
-- in mid-exchange) } -- secrets in clear: test data only -- and for each
-- accepted message
-- { type = "message", conn, mail_from, mail_options, rcpt_tos, rcpt_options
-- (one list per accepted recipient), ehlo, data (body after dot-unstuffing,
-- through the CRLF before the final dot; or the BDAT chunks joined), wire
-- (the bytes after the 354 through CRLF.CRLF; with BDAT the same as data),
-- chunks (BDAT only: the chunk sizes, in order), received (the server's
-- time.time() when the message was complete), delivered and replies (LMTP:
-- the recipients that got a 2xx, and the reply to each of rcpt_tos), tls
-- (true if it came encrypted), pipelined (more bytes had come behind the
-- final dot or the last chunk by the time its verdict was due) }; for each BDAT chunk { type = "chunk", conn,
-- index (in its transaction, from 1), size, last, pipelined (more bytes had
-- come behind the chunk's octets by the time its reply was due) } -- the
-- command record of a BDAT line always says pipelined, as its octets follow
-- it. The message record comes once per accepted message (LMTP: once some
-- recipient got a 2xx). A message is
-- recorded before its final reply is sent and a command before it is
-- answered, so both are there once the client has the reply; a disconnect
-- record may lag behind the client's close.

local json = require "spec.support.json"

local server = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
if here:sub(1, 1) ~= "/" then
  here = (os.getenv("PWD") or ".") .. "/" .. here:gsub("^%./", "")
end

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- os.execute says "success" differently in Lua 5.1 and 5.2+.
local function succeeds(command)
  local ok = os.execute(command)
  return ok == true or ok == 0
end

local function sleep(seconds)
  local ok, socket = pcall(require, "socket")
  if ok then
    socket.sleep(seconds)
  else
    os.execute("sleep " .. seconds)
  end
end

local b64 = {}
for i = 1, 64 do
  b64[("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"):byte(i)] = i - 1
end

local function unbase64(s)
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local n = b64[a] * 262144 + b64[b] * 4096 + (b64[c] or 0) * 64 + (b64[d] or 0)
    out[#out + 1] = string.char(math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
      :sub(1, c == 61 and 1 or d == 61 and 2 or 3)
  end
  return table.concat(out)
end

local Server = {}
Server.__index = Server

function server.start(script)
  local host, rest, tls_args = "127.0.0.1", {}, {}
  local path
  for k, v in pairs(script or {}) do
    if k == "host" then
      host = v
    elseif k == "cert" or k == "key" then
      tls_args[#tls_args + 1] = "--" .. k .. " " .. quote(v)
    elseif k == "unix" then
      path = v
      tls_args[#tls_args + 1] = "--unix " .. quote(v)
    elseif k == "lmtp" then
      if v then tls_args[#tls_args + 1] = "--lmtp" end
    else
      rest[k] = v
    end
  end
  local record = os.tmpname()
  local python = os.getenv("SMTP_TEST_PYTHON") or "/usr/bin/python3"
  -- exec, so that the pipe's other end is the server itself: it exits (and
  -- removes the record) when this process closes the pipe or dies, and
  -- close() waits for it.
  local pipe = assert(io.popen(table.concat({ "exec", quote(python),
    quote(here .. "/smtpd.py"), "--host", quote(host), "--script", quote(json.encode(rest)),
    "--record", quote(record), "--temporary", table.concat(tls_args, " ") }, " "), "r"))
  local line = pipe:read("*l")
  local port, pid = (line or ""):match("^PORT (%d+) PID (%d+)$")
  if not port then
    pipe:close()
    os.remove(record)
    error("smtpd.py did not start (said " .. tostring(line) .. "; see stderr)", 2)
  end
  if path then
    return setmetatable({ host = "unix:" .. path, path = path, pid = tonumber(pid), pipe = pipe,
      record = record }, Server)
  end
  return setmetatable({ host = host, port = tonumber(port), pid = tonumber(pid),
    pipe = pipe, record = record }, Server)
end

-- Run fn(srv) with a server started from script, stopping it whatever
-- happens, and raising fn's error after.
function server.with(script, fn)
  local srv = server.start(script)
  local ok, err = pcall(fn, srv)
  srv:stop()
  if not ok then error(err, 0) end
end

function Server:records()
  local text = self.final or assert(read_file(self.record), "server lost its records")
  local records = {}
  -- A last line without its newline is still being written.
  for line in text:gmatch("([^\n]*)\n") do
    records[#records + 1] = json.decode(line)
  end
  return records
end

local function only(records, kind)
  local out = {}
  for _, r in ipairs(records) do
    if r.type == kind then out[#out + 1] = r end
  end
  return out
end

-- The records of one type ("connect", "tls", "chunk", ...).
function Server:records_of(kind)
  return only(self:records(), kind)
end

function Server:commands()
  return only(self:records(), "command")
end

function Server:messages()
  local messages = only(self:records(), "message")
  for _, m in ipairs(messages) do
    m.data, m.wire = unbase64(m.data_b64), unbase64(m.wire_b64)
  end
  return messages
end

-- What was recorded stays readable after stop().
function Server:stop()
  if not self.pid then return end
  self.final = read_file(self.record) or ""
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  self.pipe:close()
  os.remove(self.record)
  if self.path then os.remove(self.path) end
  self.pid = nil
end

local function postfix_config()
  local repo = here:match("^(.*)/spec/support$") or (here .. "/../..")
  return os.getenv("SMTP_TEST_POSTFIX_DIR") or (repo .. "/.test/postfix"),
    tonumber(os.getenv("SMTP_TEST_POSTFIX_PORT") or "2525")
end

function server.postfix()
  local dir, port = postfix_config()
  if not succeeds("PATH=$PATH:/usr/sbin postfix -c " .. quote(dir) .. " status >/dev/null 2>&1") then
    error("the test Postfix is not running; start it with "
      .. "spec/support/postfix.sh start " .. dir .. " " .. port, 2)
  end
  -- The port map and the SASL users of postfix.sh.
  return { host = "127.0.0.1", port = port, domain = "example.test", certs = dir .. "/certs",
    ports = { plain = port, starttls = port + 1, implicit = port + 2, tls12 = port + 3, clientcert = port + 4,
      expired = port + 5, wrongname = port + 6, selfsigned = port + 7, otherca = port + 8,
      plainauth = port + 9, sizelimit = port + 10 },
    users = { plain = { username = "alice", password = "alice-secret-pw" },
      utf8 = { username = "bob", password = "p\195\164ssw\195\182rd" } },
    ntlm_domain = "EXAMPLE",
    mechanisms = { "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "NTLM" } }
end

local function maildir_files(dir)
  local files = {}
  local ls = io.popen("ls -1 " .. quote(dir) .. " 2>/dev/null")
  for name in ls:lines() do files[#files + 1] = dir .. "/" .. name end
  ls:close()
  return files
end

-- Raw text of every message delivered so far.
function server.postfix_inbox()
  local dir = postfix_config()
  local texts = {}
  for _, sub in ipairs({ "new", "cur" }) do
    for _, path in ipairs(maildir_files(dir .. "/mail/inbox/" .. sub)) do
      texts[#texts + 1] = read_file(path)
    end
  end
  return texts
end

function server.postfix_wait(needle, timeout)
  local dir = postfix_config()
  local inbox = dir .. "/mail/inbox/new"
  local deadline = os.time() + (timeout or 15)
  local seen
  repeat
    seen = {}
    for _, path in ipairs(maildir_files(inbox)) do
      local text = read_file(path) or ""
      if text:find(needle, 1, true) then return text end
      seen[#seen + 1] = "  " .. (text:match("\nSubject: ([^\r\n]*)") or "(no subject)")
    end
    sleep(0.1)
  until os.time() > deadline
  local log = {}
  for line in (read_file(dir .. "/maillog") or ""):gmatch("[^\n]+") do
    log[#log + 1] = line
    if #log > 10 then table.remove(log, 1) end
  end
  error(string.format("postfix_wait: no message containing %q in %s after %d s;"
    .. " %d there, subjects:\n%s\nend of %s/maillog:\n%s", needle, inbox,
    timeout or 15, #seen, table.concat(seen, "\n"), dir, table.concat(log, "\n")), 2)
end

-- The test proxies of proxies.sh.  The defaults are the Makefile's, which
-- exports them to proxies.sh and the specs alike.
local function proxy_dir()
  local repo = here:match("^(.*)/spec/support$") or (here .. "/../..")
  return os.getenv("SMTP_TEST_PROXY_DIR") or (repo .. "/.test/proxies")
end

local function env_port(name, default)
  return tonumber(os.getenv(name) or default)
end

function server.proxies()
  local dir = proxy_dir()
  for _, name in ipairs({ "danted-socks", "danted-socks-auth", "socks4a", "tinyproxy-http",
                          "tinyproxy-http-auth" }) do
    local pid = (read_file(dir .. "/" .. name .. ".pid") or ""):match("%d+")
    if not pid or not succeeds("kill -0 " .. pid .. " 2>/dev/null") then
      error("the test proxies are not running (no live " .. name .. " in " .. dir .. "); "
        .. "make spec starts them, or spec/support/proxies.sh start " .. dir
        .. " (with the SMTP_TEST_*_PORT of make spec)", 2)
    end
  end
  return {
    host = "127.0.0.1", dir = dir,
    user = os.getenv("SMTP_TEST_PROXY_USER") or "smtptest",
    password = os.getenv("SMTP_TEST_PROXY_PASSWORD") or "smtptest-proxy-pw",
    ports = {
      socks = env_port("SMTP_TEST_SOCKS_PORT", 21080),
      socks_auth = env_port("SMTP_TEST_SOCKS_AUTH_PORT", 21081),
      socks4a = env_port("SMTP_TEST_SOCKS4A_PORT", 21082),
      http = env_port("SMTP_TEST_HTTP_PORT", 28888),
      http_auth = env_port("SMTP_TEST_HTTP_AUTH_PORT", 28889),
    },
  }
end

local function json_lines(path)
  local records = {}
  -- A last line without its newline is still being written.
  for line in (read_file(path) or ""):gmatch("([^\n]*)\n") do
    records[#records + 1] = json.decode(line)
  end
  return records
end

function server.socks4a_log()
  return json_lines(proxy_dir() .. "/socks4a.log")
end

function server.free_port()
  local python = os.getenv("SMTP_TEST_PYTHON") or "/usr/bin/python3"
  local pipe = assert(io.popen(quote(python) .. " -c " .. quote("import socket\n"
    .. "s = socket.socket()\ns.bind(('127.0.0.1', 0))\nprint(s.getsockname()[1])")))
  local port = tonumber(pipe:read("*l"))
  pipe:close()
  return (assert(port, "no free port"))
end

local Socks4a = {}
Socks4a.__index = Socks4a

function server.socks4a(opts)
  opts = opts or {}
  local log = os.tmpname()
  local python = os.getenv("SMTP_TEST_PYTHON") or "/usr/bin/python3"
  -- exec: the pipe's other end is socks4a.py itself (see server.start).
  local pipe = assert(io.popen(table.concat({ "exec", quote(python), quote(here .. "/socks4a.py"),
    "--port 0 --log", quote(log), "--mode", quote(opts.mode or "relay"),
    opts.stall_limit and "--stall-limit " .. tonumber(opts.stall_limit) or "" }, " "), "r"))
  local line = pipe:read("*l")
  local port, pid = (line or ""):match("^PORT (%d+) PID (%d+)$")
  if not port then
    pipe:close()
    os.remove(log)
    error("socks4a.py did not start (said " .. tostring(line) .. "; see stderr)", 2)
  end
  return setmetatable({ host = "127.0.0.1", port = tonumber(port), pid = tonumber(pid), pipe = pipe,
    log = log }, Socks4a)
end

function Socks4a:records()
  return json_lines(self.log)
end

function Socks4a:stop()
  if not self.pid then return end
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  self.pipe:close()
  os.remove(self.log)
  self.pid = nil
end

return server
