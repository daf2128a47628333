-- send() and open() against the programmable server: the exact bytes that
-- arrive, and every way a server can refuse, stall or break.
local smtp = require "smtp"
local core = require "smtp.core"
local server = require "spec.support.server"

local function connect(srv, extra)
  local t = { address = srv.host, port = srv.port, timeout = 5, tls = { protocol = "none" } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return smtp.connection(t)
end

local with_server = server.with

-- The body as the server stored it: everything after the blank line.
local function body_of(data)
  return data:match("\r\n\r\n(.*)$")
end

local function message(extra)
  local m = { from = "sender@example.com", to = "rcpt@example.com", subject = "s", text = "hello\n" }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

describe("send", function()
  it("delivers a plain message and returns a receipt", function()
    with_server({}, function(srv)
      local receipt, err = connect(srv):send(message {
        from = "Ops <ops@example.com>", to = { "a@example.com", "B <b@example.com>" },
        cc = "c@example.com", bcc = { "hidden@example.com" }, subject = "Nightly report",
      })
      assert.is_nil(err)
      assert.are.same({ "a@example.com", "b@example.com", "c@example.com", "hidden@example.com" },
        (function() local t = {} for i, r in ipairs(receipt.accepted) do t[i] = r.address end return t end)())
      assert.are.same({}, receipt.rejected)
      assert.are.equal(250, receipt.reply.code)
      assert.is_string(receipt.queue_id)
      local m = srv:messages()[1]
      assert.are.equal("ops@example.com", m.mail_from)
      assert.are.same({ "a@example.com", "b@example.com", "c@example.com", "hidden@example.com" }, m.rcpt_tos)
      assert.truthy(m.data:find("\r\nTo: a@example.com, B <b@example.com>\r\n", 1, true))
      assert.truthy(m.data:find("\r\nCc: c@example.com\r\n", 1, true))
      assert.truthy(m.data:find("\r\nSubject: Nightly report\r\n", 1, true))
      assert.truthy(m.data:find("Message-ID: " .. receipt.message_id, 1, true))
      assert.falsy(m.data:lower():find("\nbcc:", 1, true))
      assert.falsy(m.data:find("hidden@", 1, true))
    end)
  end)

  it("normalizes line ends and dot-stuffs, byte for byte", function()
    with_server({}, function(srv)
      local text = ".starts with a dot\n.\nbare LF\nbare CR\rCRLF\r\n..two dots\n\n. space\nlast line"
      assert(connect(srv):send(message { text = text }))
      local m = srv:messages()[1]
      local expected = ".starts with a dot\r\n.\r\nbare LF\r\nbare CR\r\nCRLF\r\n"
        .. "..two dots\r\n\r\n. space\r\nlast line\r\n"
      assert.are.equal(expected, body_of(m.data))
      assert.truthy(m.wire:find("\r\n\r\n..starts with a dot\r\n..\r\nbare LF\r\n", 1, true))
      assert.truthy(m.wire:find("\r\n...two dots\r\n\r\n.. space\r\nlast line\r\n.\r\n$"))
    end)
  end)

  it("sends 8-bit text as 8bit with BODY=8BITMIME when the server offers it", function()
    with_server({}, function(srv)
      local text = "caf\195\169 \226\130\172 bytes\n"
      assert(connect(srv):send(message { text = text }))
      local m = srv:messages()[1]
      assert.are.equal(text:gsub("\n", "\r\n"), body_of(m.data))
      assert.truthy(m.data:find("Content-Transfer-Encoding: 8bit", 1, true))
      assert.are.same({ "BODY=8BITMIME", "SIZE=" .. #m.data }, m.mail_options)
    end)
  end)

  it("carries any 8-bit bytes of a raw message unchanged", function()
    with_server({}, function(srv)
      local raw = "Subject: bytes\r\n\r\n\255\254\0\128 all 256: "
      for i = 0, 255 do if i ~= 10 and i ~= 13 then raw = raw .. string.char(i) end end
      raw = raw .. "\r\n"
      assert(connect(srv):send { from = "a@example.com", to = "b@example.com", raw = raw })
      assert.are.equal(raw, srv:messages()[1].data)
    end)
  end)

  it("refuses text that is not UTF-8 before connecting", function()
    assert.has_error(function()
      smtp.connection { address = "127.0.0.1", port = 1, tls = { protocol = "none" } }
        :send(message { text = "\255\254" })
    end)
  end)

  it("falls back to quoted-printable when the server lacks 8BITMIME", function()
    with_server({ extensions = { "PIPELINING" } }, function(srv)
      assert(connect(srv):send(message { text = "caf\195\169 = ok\n" }))
      local m = srv:messages()[1]
      assert.truthy(m.data:find("Content-Transfer-Encoding: quoted-printable", 1, true))
      assert.are.equal("caf=C3=A9 =3D ok\r\n", body_of(m.data))
      assert.are.same({}, m.mail_options)
    end)
  end)

  it("streams a 1 MB body intact", function()
    with_server({}, function(srv)
      local line = string.rep("0123456789", 9) .. "\n"
      local text = string.rep(line, 11000)
      local receipt = assert(connect(srv):send(message { text = text }))
      local m = srv:messages()[1]
      assert.are.equal((text:gsub("\n", "\r\n")), body_of(m.data))
      assert.is_true(receipt.bytes > 1000000)
    end)
  end)

  it("pipelines MAIL, every RCPT and DATA when PIPELINING is offered", function()
    with_server({}, function(srv)
      assert(connect(srv):send(message { to = { "a@example.com", "b@example.com" } }))
      local cmds = srv:commands()
      local mail
      for i, c in ipairs(cmds) do if c.line:find("^MAIL") then mail = i end end
      assert.is_true(cmds[mail].pipelined)
      assert.is_true(cmds[mail + 1].pipelined)
      assert.is_true(cmds[mail + 2].pipelined)
      assert.are.equal("DATA", cmds[mail + 3].line)
    end)
  end)

  it("sends one command at a time without PIPELINING, or when told not to pipeline", function()
    for _, case in ipairs({ { script = { extensions = { "8BITMIME" } } },
                            { script = {}, opts = { pipelining = false } } }) do
      with_server(case.script, function(srv)
        assert(connect(srv, case.opts):send(message { to = { "a@example.com", "b@example.com" } }))
        for _, c in ipairs(srv:commands()) do
          assert.is_false(c.pipelined, c.line)
        end
        assert.are.equal(1, #srv:messages())
      end)
    end
  end)

  it("reports refused recipients and delivers to the others", function()
    with_server({ replies = { ["RCPT:bad@example.com"] = "550 5.1.1 <bad@example.com>: no such user" } },
      function(srv)
        local to = { "a@example.com", "bad@example.com", "c@example.com" }
        local receipt = assert(connect(srv):send(message { to = to }))
        assert.are.equal(2, #receipt.accepted)
        assert.are.equal(1, #receipt.rejected)
        local r = receipt.rejected[1]
        assert.are.equal("bad@example.com", r.address)
        assert.are.equal(550, r.code)
        assert.are.equal("5.1.1", r.enhanced)
        assert.truthy(r.message:find("no such user", 1, true))
        assert.are.same({ "a@example.com", "c@example.com" }, srv:messages()[1].rcpt_tos)
      end)
  end)

  it("returns an error when every recipient is refused, and sends no body", function()
    for _, pipelining in ipairs({ true, false }) do
      with_server({ replies = { RCPT = "550 5.7.1 relaying denied" } }, function(srv)
        local conn = connect(srv, { pipelining = pipelining })
        local receipt, err = conn:send(message { to = { "a@example.com", "b@example.com" } })
        assert.is_nil(receipt)
        assert.are.equal("rejected", err.kind)
        assert.are.equal("rcpt", err.stage)
        assert.are.equal(550, err.code)
        assert.is_false(err.transient)
        assert.are.equal(2, #err.rejected)
        assert.truthy(tostring(err):find("a@example.com", 1, true))
        assert.are.equal(0, #srv:messages())
      end)
    end
  end)

  it("reports 4xx and 5xx at MAIL, DATA and after the body with stage, code and transience", function()
    local cases = {
      { trigger = "MAIL", reply = "451 4.3.0 try again later", stage = "mail", transient = true },
      { trigger = "MAIL", reply = "553 5.7.1 sender not allowed", stage = "mail", transient = false },
      { trigger = "DATA", reply = "554 5.5.1 no valid recipients", stage = "data", transient = false },
      { trigger = "DATA", reply = "451 4.3.0 local error", stage = "data", transient = true },
      { trigger = "END", reply = "552 5.3.4 message too big", stage = "data", transient = false },
      { trigger = "END", reply = "451 4.7.1 greylisted", stage = "data", transient = true },
    }
    for _, c in ipairs(cases) do
      for _, pipelining in ipairs({ true, false }) do
        with_server({ replies = { [c.trigger] = c.reply } }, function(srv)
          local conn = connect(srv, { pipelining = pipelining })
          local receipt, err = conn:send(message())
          assert.is_nil(receipt, c.reply)
          assert.are.equal("rejected", err.kind)
          assert.are.equal(c.stage, err.stage, c.reply)
          assert.are.equal(tonumber(c.reply:sub(1, 3)), err.code)
          assert.are.equal(c.reply:match("^%d+ (%d%.%d+%.%d+)"), err.enhanced)
          assert.are.equal(c.transient, err.transient)
          assert.truthy(err.hint)
          assert.are.equal(0, #srv:messages())
        end)
      end
    end
  end)

  it("keeps a session usable after a refused transaction, resetting it", function()
    with_server({ replies = { ["RCPT:bad@example.com"] = "550 5.1.1 no such user" } }, function(srv)
      local s = assert(connect(srv):open())
      local receipt, err = s:send(message { to = "bad@example.com" })
      assert.is_nil(receipt)
      assert.are.equal("rcpt", err.stage)
      assert(s:send(message { to = "good@example.com" }))
      s:close()
      local lines = {}
      for _, c in ipairs(srv:commands()) do lines[#lines + 1] = c.line:match("^%u+") end
      assert.are.same({ "EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "QUIT" }, lines)
      assert.are.same({ "good@example.com" }, srv:messages()[1].rcpt_tos)
    end)
  end)

  it("falls back to HELO when EHLO is refused", function()
    with_server({ ehlo = "refuse" }, function(srv)
      local conn = connect(srv)
      local report = assert(conn:test())
      assert.are.equal("HELO", report.ehlo.command)
      assert.are.same({}, report.ehlo.extensions)
      assert(conn:send(message { text = "caf\195\169\n" }))
      local m = srv:messages()[1]
      assert.truthy(m.data:find("quoted-printable", 1, true))
      assert.are.same({}, m.mail_options)
    end)
  end)

  it("reads replies that arrive one byte per TCP segment", function()
    with_server({ split_replies = true }, function(srv)
      assert(connect(srv):send(message { to = { "a@example.com", "b@example.com" } }))
      assert.are.equal(1, #srv:messages())
    end)
  end)

  it("refuses an over-long reply line and an endless multi-line reply as protocol errors", function()
    for _, script in ipairs({ { ehlo = "long_line" }, { ehlo = "endless" } }) do
      with_server(script, function(srv)
        local report, err = connect(srv):test()
        assert.is_nil(report)
        assert.are.equal("protocol", err.kind)
        assert.are.equal("ehlo", err.stage)
        assert.truthy(err.message:find("reply", 1, true))
      end)
    end
  end)

  it("never reports a message sent when the connection drops mid-DATA", function()
    with_server({ close_after = "mid_data", close_after_bytes = 1000 }, function(srv)
      local receipt, err = connect(srv):send(message { text = string.rep("x", 100000) })
      assert.is_nil(receipt)
      assert.are.equal("closed", err.kind)
      assert.are.equal("data", err.stage)
      assert.is_true(err.transient)
      assert.are.equal(0, #srv:messages())
    end)
  end)

  it("reports a server that stops answering within the timeout", function()
    for _, script in ipairs({ { silent = true }, { no_reply_after = "DATA_END" } }) do
      with_server(script, function(srv)
        local conn = connect(srv, { timeout = 1 })
        local t0 = core.clock()
        local receipt, err = conn:send(message())
        local elapsed = core.clock() - t0
        assert.is_nil(receipt)
        assert.are.equal("timeout", err.kind)
        assert.are.equal(script.silent and "greeting" or "data", err.stage)
        assert.is_true(err.transient)
        assert.is_true(elapsed >= 1 and elapsed < 2, "took " .. elapsed .. " s")
      end)
    end
  end)

  it("reports a server that closes at once or after the greeting", function()
    for _, script in ipairs({ { close_on_connect = true }, { close_after = "greeting" } }) do
      with_server(script, function(srv)
        local report, err = connect(srv):test()
        assert.is_nil(report)
        assert.are.equal("closed", err.kind)
        assert.are.equal(script.close_on_connect and "greeting" or "ehlo", err.stage)
      end)
    end
  end)

  it("reports a refusing greeting with the server's words", function()
    with_server({ replies = { greeting = "554 5.7.1 no SMTP service here" } }, function(srv)
      local report, err = connect(srv):test()
      assert.is_nil(report)
      assert.are.equal("rejected", err.kind)
      assert.are.equal("greeting", err.stage)
      assert.are.equal(554, err.code)
      assert.truthy(tostring(err):find("no SMTP service here", 1, true))
    end)
  end)

  it("treats 421 as the server closing, a transient error", function()
    with_server({ replies = { MAIL = "421 4.3.2 shutting down" } }, function(srv)
      local receipt, err = connect(srv):send(message())
      assert.is_nil(receipt)
      assert.are.equal("closed", err.kind)
      assert.are.equal("mail", err.stage)
      assert.are.equal(421, err.code)
      assert.is_true(err.transient)
    end)
  end)

  it("checks a message before connecting: CR, LF or NUL in addresses and headers", function()
    local bad = {
      { to = "a@example.com\r\nRCPT TO:<evil@example.com>" },
      { from = "x@example.com\nBcc: y@example.com" },
      { to = "a\0@example.com" },
      { subject = "hi\r\nBcc: evil@example.com" },
      { headers = { ["X-Tag"] = "a\nb" } },
      { headers = { ["X Tag"] = "a" } },
      { headers = { Bcc = "evil@example.com" } },
      { to = "not an address" },
      { to = {} },
    }
    with_server({}, function(srv)
      local conn = connect(srv)
      for _, b in ipairs(bad) do
        assert.has_error(function() conn:send(message(b)) end)
      end
      local connects = 0
      for _, r in ipairs(srv:records()) do if r.type == "connect" then connects = connects + 1 end end
      assert.are.equal(0, connects)
    end)
  end)

  it("refuses a bad EHLO name before connecting", function()
    assert.has_error(function()
      smtp.connection { address = "127.0.0.1", tls = { protocol = "none" }, helo = "a b" }
    end)
  end)

  it("sends custom headers and the given Date and Message-ID", function()
    with_server({}, function(srv)
      assert(connect(srv):send(message {
        headers = { { "X-Tag", "one" }, { "X-Tag", "two" } },
        date = "Mon, 02 Jan 2006 15:04:05 +0000",
        message_id = "<fixed@example.com>",
        subject = "Gr\195\188\195\159e aus K\195\182ln",
      }))
      local data = srv:messages()[1].data
      assert.truthy(data:find("X-Tag: one\r\nX-Tag: two\r\n", 1, true))
      assert.truthy(data:find("Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n", 1, true))
      assert.truthy(data:find("Message-ID: <fixed@example.com>\r\n", 1, true))
      assert.truthy(data:find("Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n", 1, true))
    end)
  end)
end)

describe("a session", function()
  it("sends several messages over one connection and quits on close", function()
    with_server({}, function(srv)
      local s = assert(connect(srv):open())
      for i = 1, 3 do
        assert(s:send(message { subject = "n" .. i }))
      end
      assert.is_true(s:reset())
      s:close()
      s:close()
      assert.are.equal(3, #srv:messages())
      local conns = {}
      for _, m in ipairs(srv:messages()) do conns[m.conn] = true end
      assert.are.equal(1, #(function() local t = {} for k in pairs(conns) do t[#t + 1] = k end return t end)())
      local cmds = srv:commands()
      assert.are.equal("QUIT", cmds[#cmds].line)
      assert.truthy(tostring(s):find("closed", 1, true))
    end)
  end)

  it("returns the session's error after the server went away", function()
    with_server({ close_after = "DATA" }, function(srv)
      local s = assert(connect(srv):open())
      local receipt, err = s:send(message())
      assert.is_nil(receipt)
      assert.are.equal("closed", err.kind)
      local again, err2 = s:send(message())
      assert.is_nil(again)
      assert.are.equal(err, err2)
      s:close()
    end)
  end)
end)
