-- The rest of ESMTP: CHUNKING/BDAT (RFC 3030), DSN (RFC 3461), SIZE (RFC
-- 1870), REQUIRETLS (RFC 8689), LMTP (RFC 2033) and send_all, against the
-- private Postfix (which offers CHUNKING, DSN and, on its sizelimit port, a
-- low SIZE), the programmable server (spec/support/smtpd.py: BDAT, LMTP,
-- Unix sockets, scripted failures) and, when Debian's dovecot-lmtpd is
-- installed, Dovecot's LMTP server.
local smtp = require "smtp"
local core = require "smtp.core"
local server = require "spec.support.server"

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  assert(f:write(s))
  f:close()
end

local function connect(srv, extra)
  local t = { address = srv.host, port = srv.port, timeout = 5, tls = { protocol = "none" } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return smtp.connection(t)
end

local with_server = server.with

local function message(extra)
  local m = { from = "sender@example.com", to = "rcpt@example.com", subject = "s", text = "hello\n" }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

-- The body as the server stored it: everything after the blank line.
local function body_of(data)
  return data:match("\r?\n\r?\n(.*)$")
end

local function only(records, kind)
  local out = {}
  for _, r in ipairs(records) do
    if r.type == kind then out[#out + 1] = r end
  end
  return out
end

-- The verbs of the commands received, in order ("EHLO", "MAIL", "BDAT", ...).
local function verbs(srv)
  local out = {}
  for _, c in ipairs(srv:commands()) do out[#out + 1] = c.line:match("^%a*"):upper() end
  return out
end

local function count(list, value)
  local n = 0
  for _, v in ipairs(list) do
    if v == value then n = n + 1 end
  end
  return n
end

local function has(list, value)
  return count(list, value) > 0
end

local function command_lines(srv, verb)
  local out = {}
  for _, c in ipairs(srv:commands()) do
    if c.line:upper():find("^" .. verb) then out[#out + 1] = c.line end
  end
  return out
end

local function addresses(entries)
  local out = {}
  for i, e in ipairs(entries) do out[i] = e.address end
  return out
end

-- A trace that keeps every line, for the dialogue with Postfix.
local function tracer()
  local lines = {}
  return lines, function(direction, line) lines[#lines + 1] = direction .. " " .. line end
end

local function traced(lines, pattern)
  for _, l in ipairs(lines) do
    if l:find(pattern) then return true end
  end
  return false
end

local serial = 0
local function tag(what)
  serial = serial + 1
  return string.format("esmtp-%s-%d-%d-%d", what, os.time(), serial, math.random(1e9))
end

-- Bytes that do not repeat in a short period (an attachment that base64
-- cannot fold into a pattern).
local function noise(n)
  local block = {}
  local x = 12345
  for i = 1, 4096 do
    x = (x * 1103515245 + 12345) % 2147483648
    block[i] = string.char(math.floor(x / 65536) % 256)
  end
  block = table.concat(block)
  local out, have, k = {}, 0, 0
  while have < n do
    k = k + 1
    local piece = block:sub(k % 4096 + 1) .. block:sub(1, k % 4096)
    out[#out + 1] = piece
    have = have + #piece
  end
  return table.concat(out):sub(1, n)
end

local function base64(s)
  local enc = core.encoder("base64")
  return enc:update(s) .. enc:finish()
end

-- ---- Postfix ----

local pf

local function postfix()
  pf = pf or server.postfix()
  return pf
end

local function postfix_conn(port, extra)
  local t = { address = postfix().host, port = port or postfix().port, timeout = 20, tls = { protocol = "none" } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return smtp.connection(t)
end

-- The command counts Postfix logs when the session that took queue_id
-- ends: "disconnect from ... ehlo=1 mail=1 rcpt=1 bdat=3 quit=1
-- commands=7" -> { ehlo = 1, mail = 1, rcpt = 1, bdat = 3, ... }.
local function postfix_session_counts(queue_id)
  local log = postfix().certs:match("^(.*)/certs$") .. "/maillog"
  local deadline = core.clock() + 15
  repeat
    local text = read_file(log) or ""
    local at, pid = text:match("()postfix/smtpd%[(%d+)%]: " .. queue_id .. ": client=")
    if at then
      local line = text:match("postfix/smtpd%[" .. pid .. "%]: disconnect from [^\n]*", at)
      if line then
        local counts = {}
        for k, v in line:gmatch("(%a+)=(%d+)") do counts[k] = tonumber(v) end
        return counts, line
      end
    end
    core.sleep(0.1)
  until core.clock() > deadline
  error("no disconnect line in " .. log .. " for the session of queue id " .. queue_id)
end

-- What Postfix stored (its Maildir has LF line ends): the part after our
-- header section.
local function delivered_body(needle)
  return body_of(server.postfix_wait(needle, 30))
end

describe("CHUNKING (BDAT)", function()
  describe("against Postfix", function()
    it("sends plain text as BDAT, arriving byte for byte", function()
      local subject = tag("bdat-plain")
      local text = "Hello over BDAT.\nSecond line.\n"
      local lines, trace = tracer()
      local receipt = assert(postfix_conn(nil, { trace = trace }):send(message {
        from = "sender@example.test", to = "rcpt@example.test", subject = subject, text = text }))
      assert.are.equal(text, delivered_body(subject))
      local counts, line = postfix_session_counts(receipt.queue_id)
      assert.is_true((counts.bdat or 0) >= 1, line)
      assert.is_nil(counts.data, line)
      -- DATA would have had its 354.
      assert.is_false(traced(lines, "^S 354"))
    end)

    it("sends lines starting with a dot, bare LF and bare CR unstuffed and normalized", function()
      local subject = tag("bdat-dots")
      local text = ".starts with a dot\n.\n..two dots\nbare LF\nbare CR\rCRLF\r\n. space\nlast line"
      local receipt = assert(postfix_conn():send(message {
        from = "sender@example.test", to = "rcpt@example.test", subject = subject, text = text }))
      assert.are.equal(".starts with a dot\n.\n..two dots\nbare LF\nbare CR\nCRLF\n. space\nlast line\n",
        delivered_body(subject))
      local counts, line = postfix_session_counts(receipt.queue_id)
      assert.is_true((counts.bdat or 0) >= 1, line)
      assert.is_nil(counts.data, line)
    end)

    it("sends a raw message with bare CR and LF and dot lines, normalized to CRLF", function()
      local subject = tag("bdat-raw")
      local raw = "From: sender@example.test\r\nTo: rcpt@example.test\r\nSubject: " .. subject
        .. "\r\n\r\nbare LF\nbare CR\r.\r\n..\r\nend"
      local receipt = assert(postfix_conn():send { from = "sender@example.test", to = "rcpt@example.test", raw = raw })
      assert.are.equal("bare LF\nbare CR\n.\n..\nend\n", delivered_body(subject))
      local counts, line = postfix_session_counts(receipt.queue_id)
      assert.is_true((counts.bdat or 0) >= 1, line)
      assert.is_nil(counts.data, line)
    end)

    it("streams a 3 MB attachment in many BDAT chunks, arriving byte for byte", function()
      local subject = tag("bdat-big")
      local content = noise(3 * 1024 * 1024)
      local path = os.tmpname()
      write_file(path, content)
      local receipt, err = postfix_conn():send(message {
        from = "sender@example.test", to = "rcpt@example.test", subject = subject, text = "see attached\n",
        attachments = { { path = path, filename = "noise.bin" } } })
      os.remove(path)
      assert.is_nil(err)
      assert.is_true(receipt.bytes > 4 * 1024 * 1024)
      local raw = server.postfix_wait(subject, 30)
      local expected = base64(content):gsub("\r\n", "\n")
      assert.truthy(raw:find("\n\n" .. expected .. "\n--", 1, true), "the attachment arrived changed")
      local counts, line = postfix_session_counts(receipt.queue_id)
      -- The engine's 32 KiB buffer: a 4 MB message takes well over 100 chunks.
      assert.is_true((counts.bdat or 0) > 100, line)
      assert.is_nil(counts.data, line)
    end)

    it("uses DATA with chunking = false", function()
      local subject = tag("bdat-off")
      local text = ".dot\nline\n"
      local lines, trace = tracer()
      local receipt = assert(postfix_conn(nil, { chunking = false, trace = trace }):send(message {
        from = "sender@example.test", to = "rcpt@example.test", subject = subject, text = text }))
      assert.are.equal(text, delivered_body(subject))
      local counts, line = postfix_session_counts(receipt.queue_id)
      assert.are.equal(1, counts.data, line)
      assert.is_nil(counts.bdat, line)
      assert.is_true(traced(lines, "^S 354"))
    end)
  end)

  describe("against the programmable server", function()
    local CHUNKING = { "PIPELINING", "8BITMIME", "SIZE 10485760", "ENHANCEDSTATUSCODES", "CHUNKING" }

    it("sends BDAT chunks, the last one LAST, no DATA, the bytes exact and unstuffed", function()
      with_server({ extensions = CHUNKING }, function(srv)
        local text = string.rep(".a line that starts with a dot\n.\nbare CR\rbare LF\n", 2000) .. "end"
        local receipt = assert(connect(srv):send(message { text = text }))
        local m = srv:messages()[1]
        local expected = (text .. "\n"):gsub("\r\n?", "\n"):gsub("\n", "\r\n")
        assert.are.equal(expected, body_of(m.data))
        assert.truthy(m.data:find("Message-ID: " .. receipt.message_id, 1, true))
        assert.is_false(has(verbs(srv), "DATA"))
        local bdat = command_lines(srv, "BDAT")
        assert.is_true(#bdat > 1, "one chunk for " .. #m.data .. " bytes")
        local total = 0
        for i, line in ipairs(bdat) do
          local n, last = line:match("^BDAT (%d+)( ?L?A?S?T?)$")
          assert.truthy(n, line)
          assert.are.equal(i == #bdat and " LAST" or "", last)
          assert.are.equal(tonumber(n), m.chunks[i])
          total = total + tonumber(n)
        end
        assert.are.equal(#bdat, #m.chunks)
        assert.are.equal(#m.data, total)
        assert.are.equal(m.data, m.wire)
      end)
    end)

    it("sends a short message as one BDAT LAST; a lone dot line arrives as a dot", function()
      with_server({ extensions = CHUNKING }, function(srv)
        local raw = "Subject: one chunk\r\n\r\n.\r\n..\r\nend\r\n"
        assert(connect(srv):send { from = "a@example.com", to = "b@example.com", raw = raw })
        assert.are.same({ "BDAT " .. #raw .. " LAST" }, command_lines(srv, "BDAT"))
        assert.are.equal(raw, srv:messages()[1].data)
      end)
    end)

    it("uses DATA, dot-stuffed, with chunking = false", function()
      with_server({ extensions = CHUNKING }, function(srv)
        local raw = "Subject: data\r\n\r\n.\r\nend\r\n"
        assert(connect(srv, { chunking = false }):send { from = "a@example.com", to = "b@example.com", raw = raw })
        assert.is_true(has(verbs(srv), "DATA"))
        assert.is_false(has(verbs(srv), "BDAT"))
        local m = srv:messages()[1]
        assert.are.equal(raw, m.data)
        assert.truthy(m.wire:find("\r\n\r\n..\r\nend\r\n.\r\n$"))
        assert.is_nil(m.chunks)
      end)
    end)

    it("sends even a binary message with DATA when chunking = false", function()
      with_server({ extensions = { "PIPELINING", "8BITMIME", "CHUNKING", "BINARYMIME" } }, function(srv)
        local raw = "Subject: binary\r\n\r\n\0 NUL\r\n.\r\n"
        assert(connect(srv, { chunking = false }):send { from = "a@example.com", to = "b@example.com", raw = raw })
        assert.is_false(has(verbs(srv), "BDAT"))
        local m = srv:messages()[1]
        assert.is_false(has(m.mail_options, "BODY=BINARYMIME"))
        assert.are.equal(raw, m.data)
      end)
    end)

    it("sends NUL bytes and a 2000-byte line as BODY=BINARYMIME, byte for byte", function()
      with_server({ extensions = { "PIPELINING", "8BITMIME", "CHUNKING", "BINARYMIME", "SIZE 10485760" } },
        function(srv)
          local raw = "Subject: binary\r\nContent-Type: application/octet-stream\r\n\r\n\0\1\2 NUL bytes\0\r\n"
            .. string.rep("x", 2000) .. "\r\nbare LF\nbare CR\r.\r\n\255\254\0"
          assert(connect(srv):send { from = "a@example.com", to = "b@example.com", raw = raw })
          local m = srv:messages()[1]
          assert.is_true(has(m.mail_options, "BODY=BINARYMIME"))
          assert.are.equal(raw, m.data)
          assert.is_false(has(verbs(srv), "DATA"))
        end)
    end)

    it("pipelines BDAT chunks when PIPELINING is offered, and not otherwise", function()
      local text = string.rep("0123456789abcdef\n", 12000)   -- ~200 KB: several chunks
      for _, case in ipairs({ { extensions = CHUNKING, pipelined = true },
                              { extensions = { "8BITMIME", "CHUNKING" }, pipelined = false },
                              { extensions = CHUNKING, opts = { pipelining = false }, pipelined = false } }) do
        -- The reply delay gives a pipelining client time to send ahead.
        with_server({ extensions = case.extensions, reply_delay = 0.02 }, function(srv)
          assert(connect(srv, case.opts):send(message { text = text }))
          local chunks = only(srv:records(), "chunk")
          assert.is_true(#chunks > 3, #chunks .. " chunks")
          for i, c in ipairs(chunks) do
            assert.are.equal(i, c.index)
            assert.are.equal(i == #chunks, c.last)
            -- The last chunk waits for its verdict either way.
            assert.are.equal(case.pipelined and i < #chunks, c.pipelined, "chunk " .. i)
          end
          assert.are.equal(1, #srv:messages())
        end)
      end
    end)

    for _, pipelining in ipairs({ false, true }) do
      it("reports a chunk refused mid-message (kind rejected, stage data) and resets the session, "
        .. (pipelining and "chunks pipelined" or "one chunk at a time"), function()
        local text = string.rep("0123456789abcdef\n", 12000)
        with_server({ extensions = CHUNKING, replies = { ["BDAT:2"] = "554 5.6.0 chunk refused" } }, function(srv)
          local s = assert(connect(srv, { pipelining = pipelining }):open())
          local receipt, err = s:send(message { text = text, subject = "first" })
          assert.is_nil(receipt)
          assert.are.equal("rejected", err.kind)
          assert.are.equal("data", err.stage)
          assert.are.equal(554, err.code, tostring(err))
          assert.are.equal("5.6.0", err.enhanced)
          assert.is_false(err.transient)
          -- Usable afterwards: RSET, then the next message goes through (raw:
          -- one chunk, which the script does not refuse).
          local ok = assert(s:send { from = "a@example.com", to = "b@example.com",
            raw = "Subject: second\r\n\r\nshort\r\n" })
          s:close()
          assert.are.equal(250, ok.reply.code)
          local v = verbs(srv)
          local rset
          for i, verb in ipairs(v) do if verb == "RSET" and not rset then rset = i end end
          assert.truthy(rset, table.concat(v, " "))
          assert.are.equal("BDAT", v[rset - 1])
          assert.are.equal("MAIL", v[rset + 1])
          local msgs = srv:messages()
          assert.are.equal(1, #msgs)
          assert.truthy(msgs[1].data:find("Subject: second", 1, true))
        end)
      end)
    end

    it("traces the envelopes as commands and the chunks as message bytes", function()
      for _, pipelining in ipairs({ true, false }) do
        with_server({ extensions = CHUNKING, replies = { ["BDAT:2"] = "554 5.6.0 chunk refused" } }, function(srv)
          local lines, trace = tracer()
          local s = assert(connect(srv, { pipelining = pipelining, trace = trace }):open())
          assert.is_nil(s:send(message { text = string.rep("0123456789abcdef\n", 12000) }))
          assert(s:send { from = "a@example.com", to = "b@example.com", raw = "Subject: 2\r\n\r\nx\r\n" })
          s:close()
          -- (The RSET after the refused chunk may go out with chunks behind
          -- which it was queued, and so be summed up with them.)
          local want = { "C MAIL FROM:<sender@example.com> SIZE=%d+", "C RCPT TO:<rcpt@example.com>",
            "C MAIL FROM:<a@example.com> SIZE=%d+", "C RCPT TO:<b@example.com>", "C QUIT" }
          local at = 0
          for _, pattern in ipairs(want) do
            local found
            for i = at + 1, #lines do
              if lines[i]:find("^" .. pattern .. "$") then found = i break end
            end
            assert.truthy(found, "no " .. pattern .. " in order in the trace:\n" .. table.concat(lines, "\n"))
            at = found
          end
          assert.is_true(traced(lines, "^C %[%d+ bytes of message%]$"))
        end)
      end
    end)

    it("reports a refused BDAT LAST as a refused message", function()
      with_server({ extensions = CHUNKING, replies = { END = "552 5.3.4 message too big for policy" } }, function(srv)
        local receipt, err = connect(srv):send(message())
        assert.is_nil(receipt)
        assert.are.equal("rejected", err.kind)
        assert.are.equal("data", err.stage)
        assert.are.equal(552, err.code)
        assert.are.equal(0, #srv:messages())
      end)
    end)
  end)
end)

describe("DSN", function()
  local DSN = { "PIPELINING", "8BITMIME", "SIZE 10485760", "ENHANCEDSTATUSCODES", "DSN" }
  local dsn = { notify = { "failure", "delay" }, ret = "headers", envid = "abc+1" }

  it("sends RET, ENVID (as xtext) on MAIL and NOTIFY on each RCPT", function()
    with_server({ extensions = DSN }, function(srv)
      assert(connect(srv):send(message { dsn = dsn, to = { "a@example.com", "b@example.com" } }))
      local m = srv:messages()[1]
      assert.is_true(has(m.mail_options, "RET=HDRS"))
      assert.is_true(has(m.mail_options, "ENVID=abc+2B1"))
      assert.are.same({ { "NOTIFY=FAILURE,DELAY" }, { "NOTIFY=FAILURE,DELAY" } }, m.rcpt_options)
      local mail = command_lines(srv, "MAIL")[1]
      assert.truthy(mail:find(" RET=HDRS", 1, true), mail)
      assert.truthy(mail:find(" ENVID=abc+2B1", 1, true), mail)
    end)
  end)

  it("takes notify and orcpt per recipient over the message's", function()
    with_server({ extensions = DSN }, function(srv)
      assert(connect(srv):send(message { dsn = { notify = "failure", ret = "full" }, to = {
        { address = "a@example.com", notify = "never" },
        { address = "b@example.com", orcpt = "old+box=1@example.org" },
        { address = "c@example.com", notify = { "success", "failure" }, orcpt = "c@example.org" },
        "d@example.com",
      } }))
      local m = srv:messages()[1]
      assert.is_true(has(m.mail_options, "RET=FULL"))
      assert.are.same({
        { "NOTIFY=NEVER" },
        { "NOTIFY=FAILURE", "ORCPT=rfc822;old+2Bbox+3D1@example.org" },
        { "NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;c@example.org" },
        { "NOTIFY=FAILURE" },
      }, m.rcpt_options)
    end)
  end)

  it("is accepted by Postfix, which offers DSN", function()
    local subject = tag("dsn")
    local receipt, err = postfix_conn():send(message {
      from = "sender@example.test", subject = subject, dsn = dsn,
      to = { "rcpt@example.test", { address = "other@example.test", notify = "never", orcpt = "x@example.org" } } })
    assert.is_nil(err)
    assert.are.equal(2, #receipt.accepted)
    server.postfix_wait(subject)
  end)

  it("refuses before MAIL when the server lacks DSN, unless dsn.optional", function()
    with_server({}, function(srv)
      local receipt, err = connect(srv):send(message { dsn = dsn })
      assert.is_nil(receipt)
      assert.are.equal("rejected", err.kind)
      assert.are.equal("mail", err.stage)
      assert.truthy(err.message:find("DSN", 1, true))
      assert.truthy(err.hint:find("optional", 1, true))
      assert.are.same({}, command_lines(srv, "MAIL"))
      assert.are.equal(0, #srv:messages())
    end)
    with_server({}, function(srv)
      local optional = { notify = { "failure", "delay" }, ret = "headers", envid = "abc+1", optional = true }
      assert(connect(srv):send(message { dsn = optional,
        to = { "a@example.com", { address = "b@example.com", notify = "never", orcpt = "b@example.org" } } }))
      local m = srv:messages()[1]
      for _, p in ipairs(m.mail_options) do
        assert.falsy(p:find("^RET=") or p:find("^ENVID="), p)
      end
      assert.are.same({ {}, {} }, m.rcpt_options)
    end)
  end)

  it("sends no NOTIFY or ORCPT of a recipient to a server without DSN", function()
    -- A recipient's own notify/orcpt, without a message-level dsn: the
    -- server would refuse the parameter (555) and so the recipient.
    with_server({}, function(srv)
      local receipt, err = connect(srv):send(message {
        to = { { address = "a@example.com", notify = "never" }, "b@example.com" } })
      if receipt then
        assert.are.same({ "a@example.com", "b@example.com" }, addresses(receipt.accepted))
        assert.are.same({ {}, {} }, srv:messages()[1].rcpt_options)
      else
        -- Or refused before MAIL, as a message-level dsn would be.
        assert.are.equal("mail", err.stage)
        assert.are.same({}, command_lines(srv, "MAIL"))
      end
    end)
  end)
end)

describe("SIZE", function()
  it("refuses a message above the server's SIZE before MAIL, naming both sizes", function()
    with_server({ extensions = { "PIPELINING", "8BITMIME", "SIZE 1000" } }, function(srv)
      local receipt, err = connect(srv):send(message { text = string.rep("x", 70) .. "\n" .. string.rep("y\n", 2000) })
      assert.is_nil(receipt)
      assert.are.equal("rejected", err.kind)
      assert.are.equal("mail", err.stage)
      assert.are.equal(1000, err.size_limit)
      assert.is_true(err.size > 1000)
      assert.truthy(err.message:find(tostring(err.size), 1, true))
      assert.truthy(err.message:find("1000", 1, true))
      assert.truthy(err.hint:find("1000", 1, true), err.hint)
      assert.truthy(err.hint:find(tostring(err.size), 1, true), err.hint)
      assert.are.same({}, command_lines(srv, "MAIL"))
    end)
  end)

  it("does not limit the size when SIZE has no number or 0", function()
    for _, ext in ipairs({ "SIZE", "SIZE 0" }) do
      with_server({ extensions = { "PIPELINING", ext } }, function(srv)
        assert(connect(srv):send(message { text = string.rep("z", 50) .. "\n" .. string.rep("y\n", 5000) }))
        assert.are.equal(1, #srv:messages())
      end)
    end
  end)

  it("refuses a message above Postfix's message_size_limit before MAIL", function()
    local lines, trace = tracer()
    local conn = postfix_conn(postfix().ports.sizelimit, { trace = trace })
    local big = string.rep("0123456789abcdef0123456789abcdef\n", 4000)   -- 132 KB
    local receipt, err = conn:send(message { from = "sender@example.test", to = "rcpt@example.test",
      subject = tag("size"), text = big })
    assert.is_nil(receipt)
    assert.are.equal("rejected", err.kind)
    assert.are.equal("mail", err.stage)
    assert.are.equal(100000, err.size_limit)
    assert.is_true(err.size > 132000)
    assert.truthy(tostring(err):find("100000", 1, true))
    assert.truthy(traced(lines, "^S 250.SIZE 100000$"), table.concat(lines, "\n"))
    assert.is_false(traced(lines, "^C MAIL"))
    -- A message under the limit goes through the same port.
    local subject = tag("size-ok")
    assert(conn:send(message { from = "sender@example.test", to = "rcpt@example.test", subject = subject }))
    server.postfix_wait(subject)
  end)
end)

describe("REQUIRETLS", function()
  local function certs() return postfix().certs end
  local function tls_script(extensions)
    return { starttls = "ok", cert = certs() .. "/server.pem", key = certs() .. "/server.key",
      extensions = extensions }
  end
  local function tls_conn(port)
    return smtp.connection { address = "localhost", port = port, timeout = 5,
      tls = { cafile = certs() .. "/ca.pem" } }
  end

  it("refuses over plaintext, even to a server that offers REQUIRETLS", function()
    with_server({ extensions = { "PIPELINING", "REQUIRETLS" } }, function(srv)
      local receipt, err = connect(srv):send(message { require_tls = true })
      assert.is_nil(receipt)
      assert.are.equal("tls", err.kind)
      assert.are.equal("mail", err.stage)
      assert.truthy(err.hint)
      assert.are.same({}, command_lines(srv, "MAIL"))
    end)
  end)

  it("refuses over TLS when the server does not offer REQUIRETLS", function()
    with_server(tls_script({ "PIPELINING", "8BITMIME" }), function(srv)
      local receipt, err = tls_conn(srv.port):send(message { require_tls = true })
      assert.is_nil(receipt)
      assert.are.equal("tls", err.kind)
      assert.are.equal("mail", err.stage)
      assert.truthy(err.message:find("REQUIRETLS", 1, true))
      assert.are.same({}, command_lines(srv, "MAIL"))
      assert.is_true(has(verbs(srv), "STARTTLS"))
    end)
    -- Postfix offers no REQUIRETLS either.
    local receipt, err = tls_conn(postfix().ports.starttls):send(message {
      from = "sender@example.test", to = "rcpt@example.test", require_tls = true })
    assert.is_nil(receipt)
    assert.are.equal("tls", err.kind)
  end)

  it("sends MAIL ... REQUIRETLS over STARTTLS to a server that offers it", function()
    with_server(tls_script({ "PIPELINING", "8BITMIME", "REQUIRETLS" }), function(srv)
      assert(tls_conn(srv.port):send(message { require_tls = true }))
      local m = srv:messages()[1]
      assert.is_true(m.tls)
      assert.is_true(has(m.mail_options, "REQUIRETLS"))
    end)
    -- And not when the message does not ask for it.
    with_server(tls_script({ "PIPELINING", "8BITMIME", "REQUIRETLS" }), function(srv)
      assert(tls_conn(srv.port):send(message()))
      assert.is_false(has(srv:messages()[1].mail_options, "REQUIRETLS"))
    end)
  end)
end)

-- ---- LMTP ----

local function socket_path(name)
  local base = os.tmpname()
  os.remove(base)
  return base .. "-" .. name .. ".sock"
end

local function lmtp_cases()
  return {
    { name = "TCP", script = { lmtp = true } },
    { name = "a Unix socket", script = { lmtp = true, unix = socket_path("lmtp") } },
  }
end

describe("LMTP", function()
  for _, case in ipairs(lmtp_cases()) do
    it("sends LHLO and reports each recipient's verdict after DATA, over " .. case.name, function()
      local script = { lmtp_replies = { ["b@example.com"] = "452 4.2.2 <b@example.com> mailbox full" } }
      for k, v in pairs(case.script) do script[k] = v end
      with_server(script, function(srv)
        local receipt, err = connect(srv, { protocol = "lmtp" }):send(message {
          to = { "a@example.com", "b@example.com" }, cc = "c@example.com" })
        assert.is_nil(err)
        assert.are.same({ "LHLO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA", "QUIT" }, verbs(srv))
        assert.are.same({ "a@example.com", "c@example.com" }, addresses(receipt.accepted))
        assert.are.equal(1, #receipt.rejected)
        local r = receipt.rejected[1]
        assert.are.equal("b@example.com", r.address)
        assert.are.equal(452, r.code)
        assert.are.equal("4.2.2", r.enhanced)
        assert.truthy(r.message:find("mailbox full", 1, true))
        local m = srv:messages()[1]
        assert.are.same({ "a@example.com", "c@example.com" }, m.delivered)
      end)
    end)
  end

  it("returns an error when every recipient is refused after DATA", function()
    with_server({ lmtp = true, lmtp_replies = { ["a@example.com"] = "550 5.1.1 no such user",
                                                ["b@example.com"] = "452 4.2.2 mailbox full" } }, function(srv)
      local receipt, err = connect(srv, { protocol = "lmtp" }):send(message {
        to = { "a@example.com", "b@example.com" } })
      assert.is_nil(receipt)
      assert.are.equal("rejected", err.kind)
      assert.are.equal("data", err.stage)
      assert.are.equal(2, #err.rejected)
      assert.are.equal(0, #srv:messages())
    end)
  end)

  it("takes the per-recipient verdicts after BDAT LAST", function()
    with_server({ lmtp = true, extensions = { "PIPELINING", "8BITMIME", "CHUNKING", "ENHANCEDSTATUSCODES" },
                  lmtp_replies = { ["b@example.com"] = "550 5.2.1 mailbox disabled" } }, function(srv)
      local receipt = assert(connect(srv, { protocol = "lmtp" }):send(message {
        to = { "a@example.com", "b@example.com", "c@example.com" } }))
      assert.is_true(has(verbs(srv), "BDAT"))
      assert.are.same({ "a@example.com", "c@example.com" }, addresses(receipt.accepted))
      assert.are.same({ "b@example.com" }, addresses(receipt.rejected))
      assert.are.equal(550, receipt.rejected[1].code)
    end)
  end)

  it("sends several messages over one LMTP session", function()
    with_server({ lmtp = true, unix = socket_path("lmtp-many") }, function(srv)
      local s = assert(connect(srv, { protocol = "lmtp" }):open())
      for i = 1, 3 do
        local receipt = assert(s:send(message { subject = "n" .. i, to = { "a@example.com", "b@example.com" } }))
        assert.are.equal(2, #receipt.accepted)
      end
      s:close()
      assert.are.equal(3, #srv:messages())
      assert.are.equal(1, #only(srv:records(), "connect"))
    end)
  end)

  it("speaks SMTP over a Unix socket", function()
    with_server({ unix = socket_path("smtp") }, function(srv)
      local conn = connect(srv)
      local report = assert(conn:test())
      assert.are.equal("unix:" .. srv.path, report.resolved)
      assert(conn:send(message()))
      assert.are.same({ "EHLO", "QUIT", "EHLO", "MAIL", "RCPT", "DATA", "QUIT" }, verbs(srv))
      assert.are.equal(1, #srv:messages())
    end)
  end)

  it("fails at LHLO against an SMTP server, saying so", function()
    with_server({}, function(srv)
      local report, err = connect(srv, { protocol = "lmtp" }):test()
      assert.is_nil(report)
      assert.are.equal("rejected", err.kind)
      assert.are.equal("ehlo", err.stage)
      assert.are.equal(500, err.code)
      assert.truthy(err.hint:find("LMTP", 1, true), err.hint)
    end)
  end)

  it("fails clearly when nothing listens on the Unix socket", function()
    local receipt, err = smtp.connection { address = "unix:" .. socket_path("nobody"), timeout = 2,
      tls = { protocol = "none" } }:send(message())
    assert.is_nil(receipt)
    assert.are.equal("connect", err.kind)
    assert.are.equal("connect", err.stage)
  end)

  describe("against Dovecot's LMTP server", function()
    local dovecot = os.getenv("SMTP_TEST_DOVECOT") or "/usr/sbin/dovecot"
    local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
    local available = io.open(dovecot, "rb")
    if available then available:close() end
    if not available then
      pending("dovecot-lmtpd is not installed (apt-get install dovecot-lmtpd)")
      return
    end
    local dir, port
    setup(function()
      dir = os.tmpname()
      os.remove(dir)
      port = server.free_port()
      local ok = os.execute(here .. "/support/dovecot.sh start " .. dir .. " " .. port .. " >/dev/null")
      assert(ok == true or ok == 0, "spec/support/dovecot.sh start " .. dir .. " " .. port .. " failed")
    end)
    teardown(function()
      if dir then
        os.execute(here .. "/support/dovecot.sh stop " .. dir .. " >/dev/null")
        os.execute("rm -rf '" .. dir .. "'")
      end
    end)

    local function stored(user, needle)
      local deadline = core.clock() + 10
      repeat
        for _, sub in ipairs({ "new", "cur" }) do
          local ls = io.popen("ls -1 " .. dir .. "/mail/" .. user .. "/Maildir/" .. sub .. " 2>/dev/null")
          for name in ls:lines() do
            local text = read_file(dir .. "/mail/" .. user .. "/Maildir/" .. sub .. "/" .. name) or ""
            if text:find(needle, 1, true) then
              ls:close()
              return text
            end
          end
          ls:close()
        end
        core.sleep(0.05)
      until core.clock() > deadline
      return nil
    end

    for _, over in ipairs({ "TCP", "a Unix socket" }) do
      it("delivers per recipient, refusing an unknown user, over " .. over, function()
        local subject = tag("dovecot")
        local conn = smtp.connection { address = over == "TCP" and "127.0.0.1" or ("unix:" .. dir .. "/lmtp.sock"),
          port = over == "TCP" and port or nil, timeout = 10, protocol = "lmtp", tls = { protocol = "none" } }
        local text = ".dot line\nbody\n"
        local receipt, err = conn:send(message { from = "sender@example.test", subject = subject, text = text,
          to = { "alice@example.test", "nobody@example.test", "bob@example.test" } })
        assert.is_nil(err)
        assert.are.same({ "alice@example.test", "bob@example.test" }, addresses(receipt.accepted))
        assert.are.equal("nobody@example.test", receipt.rejected[1].address)
        assert.are.equal(550, receipt.rejected[1].code)
        for _, user in ipairs({ "alice", "bob" }) do
          local stored_text = stored(user, subject)
          assert.truthy(stored_text, user .. " got no message")
          assert.are.equal(".dot line\r\nbody\r\n", (body_of(stored_text):gsub("\r?\n", "\r\n")))
        end
      end)
    end
  end)
end)

-- ---- send_all ----

local function message_ids(srv)
  local ids = {}
  for _, m in ipairs(srv:messages()) do
    ids[#ids + 1] = m.data:match("\r\nMessage%-ID: (<[^>]+>)") or m.data:match("^Message%-ID: (<[^>]+>)")
  end
  return ids
end

local function batch(n, extra)
  local list = {}
  for i = 1, n do
    list[i] = message { subject = "batch " .. i, to = "rcpt" .. i .. "@example.com" }
    for k, v in pairs(extra or {}) do list[i][k] = v end
  end
  return list
end

local function recording_sleep()
  local delays = {}
  return delays, function(seconds) delays[#delays + 1] = seconds end
end

describe("send_all", function()
  it("sends several messages over one session, a receipt for each, in order", function()
    with_server({}, function(srv)
      local results = connect(srv):send_all(batch(5))
      assert.are.equal(5, #results)
      local ids = message_ids(srv)
      for i, r in ipairs(results) do
        assert.is_false(smtp.is_error(r), tostring(r))
        assert.are.same({ "rcpt" .. i .. "@example.com" }, addresses(r.accepted))
        assert.are.equal(ids[i], r.message_id)
      end
      assert.are.equal(1, #only(srv:records(), "connect"))
      assert.are.equal(5, #srv:messages())
    end)
  end)

  for _, case in ipairs({ { name = "a 421", reply = nil }, { name = "a dropped connection", reply = "" } }) do
    it("reconnects after " .. case.name .. " mid-batch, never sending a message twice", function()
      with_server({ max_messages = 2, max_messages_reply = case.reply }, function(srv)
        local delays, sleep = recording_sleep()
        local results = connect(srv):send_all(batch(7), { sleep = sleep })
        assert.are.equal(7, #results)
        for i, r in ipairs(results) do
          assert.is_false(smtp.is_error(r), i .. ": " .. tostring(r))
        end
        -- 2 + 2 + 2 + 1 messages: four sessions.
        assert.are.equal(4, #only(srv:records(), "connect"))
        local ids = message_ids(srv)
        assert.are.equal(7, #ids)
        for i, r in ipairs(results) do
          assert.are.equal(1, count(ids, r.message_id), "message " .. i)
          assert.are.equal(r.message_id, ids[i])
        end
        -- Each break cost one retry, with the first backoff.
        assert.are.same({ 1, 1, 1 }, delays)
      end)
    end)
  end

  it("retries a transient refusal with backoff 1, 2, 4 and then delivers", function()
    with_server({ fail_first = { trigger = "RCPT", times = 3, reply = "451 4.7.1 greylisted, try again" } },
      function(srv)
        local delays, sleep = recording_sleep()
        local results = connect(srv):send_all(batch(2), { retries = 3, backoff = 1, sleep = sleep })
        assert.is_false(smtp.is_error(results[1]), tostring(results[1]))
        assert.is_false(smtp.is_error(results[2]), tostring(results[2]))
        assert.are.same({ 1, 2, 4 }, delays)
        assert.are.equal(5, #command_lines(srv, "RCPT"))
        assert.are.equal(2, #srv:messages())
        assert.are.equal(1, #only(srv:records(), "connect"))
      end)
  end)

  it("gives up after `retries` transient failures with the last error", function()
    with_server({ fail_first = { trigger = "MAIL", times = 10, reply = "451 4.3.0 try later" } }, function(srv)
      local delays, sleep = recording_sleep()
      local results = connect(srv):send_all(batch(1), { retries = 2, backoff = 0.5, sleep = sleep })
      local err = results[1]
      assert.is_true(smtp.is_error(err))
      assert.are.equal("mail", err.stage)
      assert.are.equal(451, err.code)
      assert.is_true(err.transient)
      assert.are.same({ 0.5, 1 }, delays)
      assert.are.equal(3, #command_lines(srv, "MAIL"))
    end)
  end)

  it("does not retry a permanent refusal, and goes on with the rest", function()
    with_server({ replies = { ["RCPT:rcpt1@example.com"] = "550 5.1.1 no such user" } }, function(srv)
      local delays, sleep = recording_sleep()
      local results = connect(srv):send_all(batch(3), { retries = 3, sleep = sleep })
      assert.is_true(smtp.is_error(results[1]))
      assert.are.equal("rejected", results[1].kind)
      assert.are.equal(550, results[1].code)
      assert.is_false(results[1].transient)
      assert.is_false(smtp.is_error(results[2]))
      assert.is_false(smtp.is_error(results[3]))
      assert.are.same({}, delays)
      assert.are.equal(1, count(command_lines(srv, "RCPT"), "RCPT TO:<rcpt1@example.com>"))
      assert.are.equal(2, #srv:messages())
    end)
  end)

  it("keeps to the rate: no more than 3 messages in any 1-second window", function()
    with_server({}, function(srv)
      local delays = {}
      local results = connect(srv):send_all(batch(7), { rate = { messages = 3, per = 1 },
        sleep = function(s) delays[#delays + 1] = s; core.sleep(s) end })
      for i, r in ipairs(results) do assert.is_false(smtp.is_error(r), i .. ": " .. tostring(r)) end
      local msgs = srv:messages()
      assert.are.equal(7, #msgs)
      assert.is_true(#delays >= 2, "the rate never made it wait")
      -- Any 4 consecutive messages span at least a second (50 ms tolerance).
      for i = 1, #msgs - 3 do
        local span = msgs[i + 3].received - msgs[i].received
        assert.is_true(span >= 0.95, string.format("messages %d..%d within %.3f s", i, i + 3, span))
      end
    end)
  end)

  it("returns an error for each message when the server cannot be reached", function()
    local delays, sleep = recording_sleep()
    local conn = smtp.connection { address = "127.0.0.1", port = server.free_port(), timeout = 2,
      tls = { protocol = "none" } }
    local results = conn:send_all(batch(3), { retries = 1, sleep = sleep })
    assert.are.equal(3, #results)
    for _, r in ipairs(results) do
      assert.is_true(smtp.is_error(r))
      assert.are.equal("connect", r.kind)
      assert.is_false(r.transient)
    end
    -- A refused connection is not transient: no retry.
    assert.are.same({}, delays)
  end)

  it("checks its options", function()
    local conn = smtp.connection { address = "127.0.0.1", port = 1, tls = { protocol = "none" } }
    for _, opts in ipairs({ { rate = { messages = 0, per = 1 } }, { rate = { messages = 3 } }, { retries = -1 },
                            { retries = 1.5 }, { backoff = -1 }, { sleep = 1 }, { speed = 3 } }) do
      assert.has_error(function() conn:send_all(batch(1), opts) end)
    end
    assert.has_error(function() conn:send_all("not a list") end)
  end)
end)
