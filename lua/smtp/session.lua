-- One live SMTP session: the driver loop that moves bytes between the
-- engine (src/engine.c) and the transport, and the policy that turns the
-- engine's events into receipts and error objects.

local core = require "smtp.core"
local errors = require "smtp.errors"
local message = require "smtp.message"
local options = require "smtp.options"

local M = {}

local Session = {}
Session.__index = Session

local function reply(code, enhanced, text)
  return { code = code, enhanced = enhanced ~= "" and enhanced or nil, message = text }
end

-- What the client sent, as the dialogue shows it: command lines from the
-- wire's tap (in the clear, never TLS records or the proxy's bytes), AUTH
-- payloads redacted, the message itself summed up.
function Session:trace_sent()
  local out, total = self.engine:take_plain()
  if total == 0 then return end
  if self.in_body then
    self.trace("C", "[" .. total .. " bytes of message]")
    return
  end
  for line in out:gmatch("(.-)\r\n") do
    if self.in_auth then
      local verb = line:match("^AUTH %S+")
      self.trace("C", verb and verb .. " [redacted]" or "[redacted]")
    elseif line ~= "" then
      self.trace("C", line)
    end
  end
end

-- The staged report: each step of reaching the server, with its outcome
-- and how long it took since the step before.
function Session:stage(name, ok, detail, time)
  local now = core.clock()
  local st = { name = name, ok = ok, time = time or now - self.mark, detail = detail }
  self.mark = now
  local stages = self.report.stages
  stages[#stages + 1] = st
  self.report.timings[name] = st.time
end

-- The wire passes the proxy hop and the TLS handshake by itself: notice it.
function Session:watch_layer()
  local layer = self.engine:layer()
  if layer == self.layer then return end
  if self.layer == "proxy" then
    local p = self.report.proxy
    self:stage("proxy", true, p.type .. " proxy " .. p.address .. ":" .. p.port .. " to " .. p.target)
    p.time = self.report.timings.proxy
  end
  if layer == "tls" then
    local info = self.engine:tls()
    self:stage("tls", true, info.version .. " " .. info.cipher .. (info.resumed and ", resumed" or ""))
  end
  self.layer = layer
end

function Session:on_event(kind, index, code, enhanced, text)
  local r = reply(code, enhanced, text)
  if self.trace then
    local lines = {}
    for line in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
    for i, line in ipairs(lines) do
      self.trace("S", code .. (i < #lines and "-" or " ") .. (r.enhanced and r.enhanced .. " " or "") .. line)
    end
  end
  local ok = code >= 200 and code < 300
  if kind == "greeting" then
    self.report.banner = text
    self:stage("greeting", code == 220, text)
  elseif kind == "starttls" then
    self:stage("starttls", code == 220, text)
  elseif kind == "ehlo" or kind == "helo" then
    self.report.ehlo = self.report.ehlo or {}
    self.report.ehlo[kind == "ehlo" and "reply" or "helo_reply"] = r
    if ok then
      self.report.ehlo.command = kind:upper()
      self.report.ehlo.domain = text:match("^(%S*)")
      local ext = {}
      for line in text:gmatch("\n([^\n]+)") do ext[#ext + 1] = line end
      self.report.ehlo.extensions = ext
    end
    self:stage(kind, ok, ok and (self.report.ehlo.domain .. ", " .. #self.report.ehlo.extensions .. " extensions")
      or (code .. " " .. text))
  elseif kind == "auth" then
    self.auth_reply = r
  elseif kind == "quit" then
    self.quit_reply = code .. " " .. text
  elseif kind == "rcpt" then
    self.txn.rcpt[index] = r
  elseif self.txn and (kind == "mail" or kind == "data" or kind == "message") then
    -- send_many: until its verdict, the replies to the chunks and the end
    -- of the message sent before this one (never LMTP: one verdict each)
    local t = kind ~= "mail" and self.ending or self.txn
    -- The first refused BDAT chunk says why; the 503s to the chunks
    -- pipelined behind it say less.
    local first = t.data
    if not (kind == "data" and first and first.code >= 400) then t[kind] = r end
    if kind == "message" then
      t.messages[index] = r
      if t == self.ending then self.ending = nil else self.in_body = false end
    end
  end
end

-- The transport failed while the engine wanted to `op` ("read", "write").
function Session:io_failed(op, kind, msg)
  local eng = self.engine
  if op == "read" and kind == "closed" then
    eng:eof()
  else
    if op == "read" and eng:layer() == "proxy" then msg = msg:gsub("the server", "the proxy") end
    eng:fail(kind, msg)
  end
end

-- One turn of the driver loop.  Returns "busy" after doing some work, the
-- engine's action when it is the caller's turn ("ready", "body",
-- "command"), or nil and the error once the session is closed.
function Session:step()
  local eng, conn = self.engine, self.conn
  -- The built-in socket moves the bytes in C until there is something to
  -- do here; the trace needs each write, so it takes the long way.
  if conn.pump and not self.trace then
    local a, kind, index, code, enhanced, text = conn:pump(eng, self.timeout, false, self.layer)
    if a == "event" then
      self:on_event(kind, index, code, enhanced, text)
    elseif a == "layer" then
      self:watch_layer()
    elseif a == nil then
      self:io_failed(index, kind, code)
    elseif a == "closed" then
      return nil, self:error()
    else
      return a
    end
    return "busy"
  end
  local a = eng:action()
  -- action() may have passed the proxy hop and parsed what came with its
  -- reply: record the hop before any event from behind it.
  if self.layer ~= "tls" then self:watch_layer() end
  if a == "write" then
    local out = eng:output()
    local ok, kind, msg = conn:write(out, self.timeout)
    if ok then eng:sent(#out) else self:io_failed("write", kind, msg) end
    if self.trace then self:trace_sent() end
  elseif a == "event" then
    self:on_event(eng:event())
  elseif a == "read" then
    local ok, kind, msg = conn:read(eng:room(), self.timeout)
    if ok then eng:feed(ok) else self:io_failed("read", kind, msg) end
  elseif a == "closed" then
    return nil, self:error()
  else
    return a
  end
  if self.layer ~= "tls" then self:watch_layer() end
  return "busy"
end

-- Write what is queued without waiting for the replies.
function Session:flush()
  local eng, conn = self.engine, self.conn
  if conn.pump and not self.trace then
    while true do
      local a, kind, index, code, enhanced, text = conn:pump(eng, self.timeout, true, self.layer)
      if a == "event" then
        self:on_event(kind, index, code, enhanced, text)
      elseif a == "layer" then
        self:watch_layer()
      elseif a == nil then
        self:io_failed(index, kind, code)
      else
        return
      end
    end
  end
  while eng:action() == "write" do self:step() end
end

-- Drive the engine until it is the caller's turn.
function Session:run()
  while true do
    local a, err = self:step()
    if a ~= "busy" then return a, err end
  end
end

-- Call an engine command, driving the session while the engine says
-- "again" (it waits for replies, or for room).
function Session:command(name, ...)
  local eng = self.engine
  while true do
    -- A server that hung up takes no more commands: say why, don't raise.
    if eng:action() == "closed" then return nil, self:error() end
    local r = eng[name](eng, ...)
    if r ~= "again" then return r end
    local a, err = self:step()
    if not a then return nil, err end
    if a ~= "busy" then error("smtp: internal error: engine refused " .. name .. " with nothing to wait for") end
  end
end

function Session:error()
  if not self.err then
    local kind, stage, code, enhanced, msg = self.engine:error()
    if not kind then
      kind, stage, msg = "closed", "quit", "the session is closed"
    end
    self.err = errors.new { kind = kind, stage = stage, code = code, enhanced = enhanced, message = msg }
  end
  return self.err
end

local function is_ok(r) return r and r.code >= 200 and r.code < 300 end

-- The receipt, or the error that explains why the message was not sent.
local function refused(txn, stage, r, text)
  -- 530: "authentication required" (RFC 4954 6), whatever the command.
  return nil, errors.new { kind = r.code == 530 and "auth" or "rejected", stage = stage, code = r.code,
    enhanced = r.enhanced, message = text or r.message, accepted = txn.accepted, rejected = txn.rejected,
    size = txn.size, size_limit = txn.size_limit }
end

-- MAIL and RCPT replies: true when the server took the sender and at least
-- one recipient (all of them when `all`), else nil and the error.
local function verdict_envelope(txn, recipients, all)
  if txn.mail and not is_ok(txn.mail) then return refused(txn, "mail", txn.mail) end
  for i, addr in ipairs(recipients) do
    local r = txn.rcpt[i]
    if r then
      local entry = { address = addr, code = r.code, enhanced = r.enhanced, message = r.message }
      table.insert(is_ok(r) and txn.accepted or txn.rejected, entry)
    end
  end
  if #txn.accepted == 0 or (all and #txn.rejected > 0) then
    local parts = {}
    for i, r in ipairs(txn.rejected) do parts[i] = r.address .. ": " .. r.code .. " " .. r.message end
    local _, e = refused(txn, "rcpt", txn.rejected[1], (#txn.accepted == 0 and "every recipient was refused ("
      or "recipients were refused (") .. table.concat(parts, "; ") .. ")")
    local transient = true
    for _, r in ipairs(txn.rejected) do transient = transient and r.code < 500 end
    e.transient = transient
    return nil, e
  end
  return true
end

-- The receipt, or the error that explains why the message was not sent.
-- LMTP gives a verdict per accepted recipient: those refused there move to
-- rejected.
local function verdict(txn, m, bytes)
  local ok, err = verdict_envelope(txn, m.recipients)
  if not ok then return nil, err end
  -- DATA wants 354; BDAT chunks but the last, 2xx.
  local data = txn.data
  if data and not (data.code == 354 or (txn.chunked and is_ok(data))) then return refused(txn, "data", data) end
  if #txn.messages > 1 then
    local delivered = {}
    for i, entry in ipairs(txn.accepted) do
      local r = txn.messages[i]
      entry.delivered = r
      if is_ok(r) then
        delivered[#delivered + 1] = entry
      else
        txn.rejected[#txn.rejected + 1] = { address = entry.address, code = r.code, enhanced = r.enhanced,
          message = r.message }
      end
    end
    txn.accepted = delivered
    if #delivered == 0 then return refused(txn, "data", txn.messages[1]) end
  elseif not is_ok(txn.message) then
    return refused(txn, "data", txn.message)
  end
  local final = txn.message
  return {
    accepted = txn.accepted,
    rejected = txn.rejected,
    reply = final,
    queue_id = final.message:match("[Qq]ueued as (%S+)") or final.message:match("id=(%S+)"),
    message_id = m.message_id,
    bytes = bytes,
  }
end

local function needs_smtputf8(m)
  if m.sender:find("[\128-\255]") then return true end
  for _, r in ipairs(m.recipients) do
    if r:find("[\128-\255]") then return true end
  end
  return false
end

-- What the server must offer for this message, checked before MAIL: no
-- byte is sent for a message it would refuse.
local function refuse(kind, text, hint)
  return nil, errors.new { kind = kind, stage = "mail", message = text, hint = hint }
end

local function join(params, p)
  return params == "" and p or params .. " " .. p
end

local function preflight(self, m, caps, params, size)
  if caps.size and caps.size > 0 and size and size > caps.size then
    -- errors.lua's hint for a message too large names both sizes.
    return nil, errors.new { kind = "rejected", stage = "mail", size = size, size_limit = caps.size,
      message = string.format("the message is %d bytes and the server takes at most %d (SIZE)", size, caps.size) }
  end
  if m.require_tls and not (self.report.tls and caps.requiretls) then
    return refuse("tls", self.report.tls and "the message requires TLS all the way (REQUIRETLS) and the server "
      .. "does not offer REQUIRETLS" or "the message requires TLS (REQUIRETLS) and this session is not encrypted",
      "send it through a server that offers REQUIRETLS over TLS, or drop require_tls")
  end
  if m.require_tls then params = join(params, "REQUIRETLS") end
  local wants_dsn = m.dsn ~= nil
  for _, rp in ipairs(m.rcpt_params) do wants_dsn = wants_dsn or rp ~= "" end
  if wants_dsn then
    if caps.dsn then
      if m.dsn and m.dsn.ret then params = join(params, "RET=" .. m.dsn.ret) end
      if m.dsn and m.dsn.envid then params = join(params, "ENVID=" .. m.dsn.envid) end
    elseif not (m.dsn and m.dsn.optional) then
      return refuse("rejected", "the message asks for delivery status notifications (DSN) and the server does "
        .. "not offer DSN", "set dsn.optional = true to send it without them")
    end
  end
  if needs_smtputf8(m) then
    if not caps.smtputf8 then
      return refuse("rejected", "an address is not ASCII and the server does not offer SMTPUTF8",
        "use ASCII addresses or a server that supports SMTPUTF8")
    end
    params = join(params, "SMTPUTF8")
  end
  return params
end

-- Feed the message to the engine: after 354 with the dot-stuffer, or as
-- BDAT chunks.  Returns the engine's action and the bytes fed, or nil, err.
-- early: return "pending" once the final dot (or BDAT LAST) is queued,
-- without waiting for the verdict (send_many reads it later).
function Session:stream(header, body, chunked, binary, early)
  local eng = self.engine
  local a, err, r = "body", nil, nil
  if chunked then
    -- The first chunk waits for the envelope's replies: get them first,
    -- so the trace shows MAIL and RCPT as commands, not message bytes.
    local first, failure = self:command("bdat", "", 1, false)
    if not first then return nil, failure, 0 end
    if first == "done" then return self:run() end
  else
    a, err = self:run()
    if a ~= "body" then return a, err, 0 end
  end
  -- With BDAT the envelope goes out from here too: it is message bytes
  -- only once the first chunk is queued.
  self.in_body = not chunked
  local bytes = 0
  local chunk, ok, nxt = header, pcall(body)
  -- The header and a small first chunk go as one BDAT: one reply less.
  if chunked and ok and nxt and #header + #nxt <= 65536 then
    chunk = header .. nxt
    ok, nxt = pcall(body)
  end
  while a and chunk do
    if not ok then
      -- Hang up before the end: the server must not take half a message.
      self:release()
      return nil, errors.new { kind = "closed", stage = "data",
        message = "reading the message failed, so it was not sent: " .. tostring(nxt) }, bytes
    end
    local last, i = nxt == nil, 1
    repeat
      if chunked then
        r, i = eng:bdat(chunk, i, last, binary)
        if r == "done" then
          self.in_body = false
          return self:run()
        end
        if r == "ok" then self.in_body = true end
      elseif a == "body" then
        i = eng:body(chunk, i)
      end
      if i <= #chunk or r == "again" then a, err = self:step() end
    until not a or (i > #chunk and r ~= "again")
    bytes = bytes + #chunk
    chunk = nxt
    if chunk then ok, nxt = pcall(body) end
  end
  if a and not chunked then r, err = self:command("body_end") end
  if a and r and early then return "pending", nil, bytes end
  if a and r then a, err = self:run() end
  return a, err, bytes
end

-- Render a message checked by message.prepare for what the server offers,
-- and check it against that: what envelope() needs, or nil and the error.
local function compose(self, m)
  -- The extensions are fixed once the session is open (its last EHLO).
  local caps = self.caps
  if not caps then
    caps = self.engine:caps()
    -- chunking = false: no BDAT, so no BINARYMIME either.
    if not self.chunking then caps.chunking, caps.binarymime = false, false end
    self.caps = caps
  end
  local header, body, params, size, binary = message.render(m, caps)
  local err
  params, err = preflight(self, m, caps, params, size)
  if not params then return nil, err end
  return { header = header, body = body, params = params, size = size, binary = binary,
    chunked = binary or (caps.chunking and self.chunking) }
end

-- Send the envelope of a composed message: MAIL, RCPT, and DATA unless
-- chunked.  Returns c with the transaction, or nil and the error.
local function envelope(self, m, c)
  local caps = self.caps
  self.in_body = false
  local txn = { rcpt = {}, accepted = {}, rejected = {}, messages = {}, chunked = c.chunked,
    size = c.size, size_limit = caps.size }
  self.txn = txn
  local r, err = self:command("mail", m.sender, c.params)
  for i, rcpt in ipairs(m.recipients) do
    if r ~= "ok" then break end
    r, err = self:command("rcpt", rcpt, caps.dsn and m.rcpt_params[i] or "")
  end
  if r == "ok" and not c.chunked then r, err = self:command("data") end
  if not r then return nil, err end
  c.txn, c.chunked = txn, c.chunked and r == "ok"
  return c
end

-- Send a message checked by message.prepare.
function Session:deliver(m)
  if self.engine:action() ~= "ready" then return nil, self:error() end
  local t, err = compose(self, m)
  if t then t, err = envelope(self, m, t) end
  if not t then return nil, err end
  local a, bytes
  a, err, bytes = self:stream(t.header, t.body, t.chunked, t.binary)
  if not a then return nil, err end
  return verdict(t.txn, m, bytes)
end

-- Messages checked by message.prepare, over this session: with PIPELINING
-- (and not LMTP), each message's MAIL, RCPT and DATA go out in the same
-- write as the previous message's final dot (RFC 2920 3.1), so each
-- message costs about one round trip.  Returns the list of results, in
-- order: each the receipt or the error object; and the list of errors
-- (nil where a message was sent).  A message counts as sent only on the
-- server's final 2xx to it.
function Session:deliver_many(list)
  local results, errs = {}, {}
  local overlap = self.report.pipelining and not self.lmtp and not self.trace
  if not overlap then
    for i, m in ipairs(list) do
      local r, err = self:deliver(m)
      results[i], errs[i] = r or err, err
    end
    return results, errs
  end
  local prev    -- { i, m, txn, bytes }: its final dot is out, its verdict unread
  local heard = {} -- the same whose verdict came: their receipts are made while the server works
  local function settle()
    for k = #heard, 1, -1 do
      local h, r, err = heard[k]
      if h.txn.message then r, err = verdict(h.txn, h.m, h.bytes) else err = self:error() end
      results[h.i], errs[h.i] = r or err, err
      heard[k] = nil
    end
  end
  -- The next message, rendered while the server reads the one before.
  local next_c, next_err
  for i, m in ipairs(list) do
    local c, t, a, err, bytes
    c, err, next_c, next_err = next_c, next_err, nil, nil
    if not prev and self.engine:action() ~= "ready" then
      err = self:error()
    else
      -- the previous verdict comes before this envelope's replies
      self.ending = prev and prev.txn
      if not (c or err) then c, err = compose(self, m) end
      if c then t, err = envelope(self, m, c) end
    end
    if t then
      self:flush()
      settle()
      if list[i + 1] then next_c, next_err = compose(self, list[i + 1]) end
      a, err, bytes = self:stream(t.header, t.body, t.chunked, t.binary, true)
    end
    -- The previous verdict came before this message's replies; it is
    -- still awaited only when nothing of this message was sent (refused
    -- before MAIL), unless the session died.
    if prev and (not self.ending or not self:alive()) then
      heard[#heard + 1] = prev
      prev, self.ending = nil, nil
    end
    if a == "pending" then
      prev = { i = i, m = m, txn = t.txn, bytes = bytes }
    elseif a then
      local r
      r, err = verdict(t.txn, m, bytes)
      results[i], errs[i] = r or err, err
    else
      results[i], errs[i] = err, err
    end
  end
  if prev then
    self:run()
    heard[#heard + 1] = prev
  end
  settle()
  self.ending = nil
  return results, errs
end

function Session:send(msg)
  return self:deliver(message.prepare(msg, self.charset))
end

-- Send a list of messages over this session (see deliver_many).
function Session:send_many(list)
  if type(list) ~= "table" then error("smtp: send_many: expected a list of messages", 2) end
  local prepared = {}
  for i, msg in ipairs(list) do prepared[i] = message.prepare(msg, self.charset) end
  return self:deliver_many(prepared)
end

-- RSET: abandon whatever the server holds of a transaction.
function Session:reset()
  local r, err = self:command("rset")
  if r ~= "ok" then return nil, err or self:error() end
  local a
  a, err = self:run()
  if a ~= "ready" then return nil, err end
  return true
end

-- What TLS negotiated and what the certificate is, for the report.
function Session:tls_report(tls)
  local info = self.engine:tls()
  if not info then return nil end
  info.mode = tls.mode
  info.verify = tls.verify
  info.verified = tls.verify and #info.problems == 0
  return info
end

-- Can the session take another message?
function Session:alive()
  return not self.closed and self.engine:action() ~= "closed"
end

-- Close the socket and zero the TLS state, without a word to the server.
function Session:release()
  self.closed = true
  self.conn:close()
  self.engine:free()
end

-- QUIT politely when the session is healthy, then release everything.
function Session:close()
  if self.closed then return true end
  if self.engine:action() == "ready" and self.engine:quit() == "ok" then
    self.mark = core.clock()
    self:run()
    self:stage("quit", true, self.quit_reply)
  end
  self:release()
  return true
end

Session.__close = Session.close

function Session:__tostring()
  return string.format("smtp.session %s (%s:%d)%s", self.name or "", self.report.address,
    self.report.port, self.closed and " (closed)" or "")
end

local function words(s)
  local t = {}
  for w in (s or ""):gmatch("%S+") do t[#t + 1] = w:upper() end
  return t
end

-- AUTH with the strongest mechanism both sides know; credentials only over
-- TLS unless the user allowed otherwise.
function Session:authenticate(o)
  local auth, eng = o.auth, self.engine
  local offered = words(eng:caps().auth)
  local wanted = options.mechanisms(auth)
  local secure = self.report.tls ~= nil
  if not secure and not auth.allow_insecure then
    return nil, errors.new { kind = "auth", stage = "auth",
      message = "credentials are never sent without TLS, and this session is not encrypted",
      hint = "the server did not offer STARTTLS: use tls.mode = \"explicit\" to require it, or set "
        .. "auth.allow_insecure = true on a network you trust" }
  end
  local mech
  for _, m in ipairs(wanted) do
    for _, have in ipairs(offered) do
      if have == m and not mech then mech = m end
    end
  end
  if not mech then
    return nil, errors.new { kind = "auth", stage = "auth",
      message = string.format("No authentication method enabled from those supported by the server "
        .. "(the server offers: %s; configured: %s)", #offered > 0 and table.concat(offered, " ") or "none",
        table.concat(wanted, " ")),
      hint = #offered == 0 and "the server offers no AUTH at all: it may not need it (auth = { anonymous = true }),"
        .. " or it offers AUTH only after STARTTLS or on another port (587)"
        or "allow one of the server's mechanisms in auth.mechanisms" }
  end
  local t0 = core.clock()
  self.mark = t0
  local ok, why = eng:auth(mech, auth.username, auth.password or auth.token, auth.domain, o.address, o.port)
  if not ok then
    return nil, errors.new { kind = "auth", stage = "auth", message = mech .. ": " .. why }
  end
  self.in_auth = true
  local a, err = self:run()
  self.in_auth = false
  if not a then return nil, err end
  local r = self.auth_reply
  self.report.auth = { mechanism = mech, offered = offered, time = core.clock() - t0 }
  self:stage("auth", is_ok(r), mech .. ": " .. r.code .. " " .. r.message)
  if not is_ok(r) then
    local detail, status = eng:auth_detail()
    return nil, errors.new { kind = "auth", stage = "auth", code = r.code, enhanced = r.enhanced,
      message = r.message .. (detail ~= "" and (" (" .. mech .. " said: " .. detail .. ")") or ""),
      status = status ~= "" and status or nil, mechanism = mech, preset_hint = o.preset_hint }
  end
  return true
end

-- Connect and run the session to ready: greeting and EHLO (or HELO), and
-- AUTH when credentials are set.  Returns the session, or nil, err, report.
-- Where the transport connects, and what the proxy (if any) is to reach.
-- SOCKS4 carries only IPv4 addresses, so only it resolves locally: the
-- others hand the name to the proxy and nothing is looked up here.
local function proxy_hop(o, report)
  local p = o.proxy
  if p.type == "none" then return nil end
  local host = o.address
  if p.type == "socks4" then
    local ip, kind, msg = core.resolve4(o.address)
    if not ip then return nil, errors.new { kind = kind, stage = "connect", message = msg } end
    host = ip
  end
  report.proxy = { type = p.type, address = p.address, port = p.port, target = host }
  return { type = p.type, host = host, port = o.port, username = p.username,
    password = p.password, domain = p.domain }
end

-- A failure while reaching the server: the report ends with the stage
-- that failed.
local function failed(report, err, t0)
  local st = report.stages
  local last = st[#st]
  local name = err.stage
  if err.kind == "dns" or err.kind == "proxy" or (name == "connect" and report.proxy and not report.proxy.time) then
    name = err.kind == "dns" and "dns" or "proxy"
  elseif err.kind == "tls" and (name == "connect" or (last and last.name == "starttls" and last.ok)) then
    name = "tls"   -- the handshake itself
  end
  st[#st + 1] = { name = name, ok = false, time = core.clock() - t0, detail = err.message }
  return nil, err, report
end

-- The TLS context of each connection's options, made at its first TLS
-- session and shared by the later ones: the CAs are parsed once, and each
-- session offers the last one's for resumption.  Keyed by the options'
-- tls table, which belongs to one connection, so no session is resumed
-- by another connection.  A CA file that changes on disk is read again
-- only by a new connection.  A failed setup is not kept: the next session
-- tries again.
local contexts = setmetatable({}, { __mode = "k" })

local function tls_context(tls)
  local context = contexts[tls]
  if context then return context end
  local kind, msg
  context, kind, msg = core.tls_context(tls)
  contexts[tls] = context
  return context, kind, msg
end

function M.open(o)
  local report = { name = o.name, address = o.address, port = o.port, timings = {}, stages = {} }
  local t0 = core.clock()
  local hop, err = proxy_hop(o, report)
  if err then return failed(report, err, t0) end
  local conn, kind, msg = o.transport.connect(hop and o.proxy.address or o.address,
    hop and o.proxy.port or o.port, o.timeout)
  if not conn then
    -- The proxy itself is out of reach: the server was never tried.
    if hop then kind, msg = "proxy", "proxy " .. msg end
    return failed(report, errors.new { kind = kind, stage = "connect", message = msg }, t0)
  end
  local now = core.clock()
  local peer, family, localaddr, lookup
  if conn.info then peer, family, localaddr, lookup = conn:info() end
  if hop then report.proxy.resolved = peer else report.resolved, report.family = peer, family end
  local s = setmetatable({
    conn = conn, timeout = o.timeout, report = report, trace = o.trace, name = o.name,
    charset = o.charset, mark = t0, chunking = o.chunking, lmtp = o.protocol == "lmtp",
  }, Session)
  if lookup then s:stage("dns", true, peer, lookup) end
  s:stage("connect", true, (peer or "?") .. (hop and " (the proxy)" or ""), now - t0 - (lookup or 0))
  local tls = o.tls.protocol ~= "none" and o.tls or nil
  local context, setup_kind, setup_problem
  if tls then context, setup_kind, setup_problem = tls_context(tls) end
  local wire
  if context or not tls then
    wire, setup_kind, setup_problem = core.wire(o.helo or localaddr or "localhost", o.pipelining, context,
      tls and tls.mode, hop, o.protocol == "lmtp")
  end
  if not wire then
    conn:close()
    return failed(report, errors.new { kind = setup_kind, stage = "connect", message = setup_problem }, now)
  end
  s.engine, s.layer = wire, wire:layer()
  if o.trace then wire:take_plain() end
  local a
  a, err = s:run()
  report.tls = s:tls_report(tls)
  if a ~= "ready" then
    if o.protocol == "lmtp" and err.stage == "ehlo" and (err.code or 0) >= 500 then
      err.hint = "the server refused LHLO: is it an LMTP server? An SMTP server (ports 25, 587, 465) wants "
        .. "protocol = \"smtp\""
    end
    if err.kind == "tls" and report.tls then
      errors.explain_tls(err, report.tls, tls)
    elseif report.tls then
      errors.client_certificate_wanted(err, tls)
    end
    s:release()
    return failed(report, err, s.mark)
  end
  report.pipelining = o.pipelining and s.engine:caps().pipelining or false
  if not o.auth.anonymous then
    local ok
    ok, err = s:authenticate(o)
    if not ok then
      s:close()
      return failed(report, err, s.mark)
    end
  end
  report.timings.total = core.clock() - t0
  return s
end

-- The envelope probe of test{ probe = ... }: MAIL FROM and RCPT TO, then
-- RSET: would the server take this envelope?  Nothing is sent.
function Session:probe(from, to)
  local txn = { rcpt = {}, accepted = {}, rejected = {} }
  self.txn = txn
  local r, err = self:command("mail", from, "")
  for _, rcpt in ipairs(to) do
    if r ~= "ok" then break end
    r, err = self:command("rcpt", rcpt)
  end
  if not r then return nil, err end
  r, err = self:command("rset")
  if r ~= "ok" then return nil, err or self:error() end
  local a
  a, err = self:run()
  if a ~= "ready" then return nil, err end
  local ok, verdict_err = verdict_envelope(txn, to, true)
  self:stage("probe", ok ~= nil, ok and (#txn.accepted .. " of " .. #to .. " recipients accepted")
    or verdict_err.message)
  self.report.probe = { accepted = txn.accepted, rejected = txn.rejected, mail = txn.mail }
  if not ok then return nil, verdict_err end
  return true
end
return M
