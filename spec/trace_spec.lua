-- The trace hook: the SMTP dialogue of a plain send, line by line, in the
-- order it happened.  (AUTH redaction is spec/auth_spec.lua's.)
local smtp = require "smtp"
local server = require "spec.support.server"

local function traced_send(pipelining)
  local srv = server.start {}
  local lines = {}
  local conn = smtp.connection { address = srv.host, port = srv.port, timeout = 5, tls = { protocol = "none" },
    helo = "client.example.test", pipelining = pipelining,
    trace = function(direction, line) lines[#lines + 1] = direction .. " " .. line end }
  local receipt, err = conn:send { from = "sender@example.test", to = { "a@example.test", "b@example.test" },
    subject = "traced", text = "the body never shows in the trace\n" }
  srv:stop()
  assert.is_nil(err)
  return lines, receipt
end

-- The dialogue, with the numbers that vary (the size, the queue id) as N.
local function expected(pipelining)
  local head = {
    "S 220 test.local ESMTP smtpd.py",
    "C EHLO client.example.test",
    "S 250-test.local", "S 250-PIPELINING", "S 250-8BITMIME", "S 250-SIZE 10485760",
    "S 250-ENHANCEDSTATUSCODES", "S 250 SMTPUTF8",
  }
  local mail = "C MAIL FROM:<sender@example.test> SIZE=N"
  local envelope = pipelining and {
    mail, "C RCPT TO:<a@example.test>", "C RCPT TO:<b@example.test>", "C DATA",
    "S 250 2.1.0 Ok", "S 250 2.1.5 Ok", "S 250 2.1.5 Ok", "S 354 End data with <CR><LF>.<CR><LF>",
  } or {
    mail, "S 250 2.1.0 Ok", "C RCPT TO:<a@example.test>", "S 250 2.1.5 Ok",
    "C RCPT TO:<b@example.test>", "S 250 2.1.5 Ok", "C DATA", "S 354 End data with <CR><LF>.<CR><LF>",
  }
  local tail = {
    "C [N bytes of message]",
    "S 250 2.0.0 Ok: queued as N",
    "C QUIT", "S 221 2.0.0 Bye",
  }
  local all = {}
  for _, part in ipairs({ head, envelope, tail }) do
    for _, l in ipairs(part) do all[#all + 1] = l end
  end
  return all
end

describe("trace", function()
  for _, pipelining in ipairs({ false, true }) do
    it("shows a plain send, command and reply lines in order (pipelining " .. tostring(pipelining) .. ")", function()
      local lines, receipt = traced_send(pipelining)
      local size, bytes, queue_id
      for i, l in ipairs(lines) do
        lines[i] = l:gsub("SIZE=(%d+)$", function(n) size = tonumber(n) return "SIZE=N" end)
          :gsub("^C %[(%d+) bytes of message%]$", function(n) bytes = tonumber(n) return "C [N bytes of message]" end)
          :gsub("queued as (%x+)$", function(id) queue_id = id return "queued as N" end)
      end
      assert.are.same(expected(pipelining), lines)
      assert.are.equal(receipt.queue_id, queue_id)
      assert.is_true(bytes >= size and size >= receipt.bytes - 2, "SIZE=" .. size .. ", " .. bytes .. " bytes sent")
    end)
  end

  it("gives whole lines of text: no CR or LF, no message body", function()
    local lines = traced_send(true)
    for _, l in ipairs(lines) do
      -- (%c rather than %g: Lua 5.1 has no %g)
      assert.truthy(l:find("^[CS] ") and not l:find("%c"), "not one line of SMTP text: " .. l:gsub("%c", "?"))
      assert.falsy(l:find("never shows", 1, true), l)
    end
  end)
end)
