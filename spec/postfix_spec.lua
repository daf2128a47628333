-- The happy path against a real Postfix, reading the delivered message back.
local smtp = require "smtp"
local server = require "spec.support.server"

describe("against Postfix", function()
  local pf, conn
  setup(function()
    pf = server.postfix()
    conn = smtp.connection { address = pf.host, port = pf.port, timeout = 10, tls = { protocol = "none" } }
  end)

  it("tests the connection", function()
    local report = assert(conn:test())
    assert.are.equal("mx.example.test", report.ehlo.domain)
    assert.truthy(report.banner:find("mx.example.test", 1, true))
    local has = {}
    for _, e in ipairs(report.ehlo.extensions) do has[e:match("^%S+")] = true end
    assert.is_true(has.PIPELINING and has["8BITMIME"] and has.SIZE and true)
  end)

  it("delivers a message that arrives intact", function()
    local tag = "postfix-" .. os.time() .. "-" .. math.random(1e9)
    local text = "Hello Postfix.\n.\n..two\ncaf\195\169\nlast"
    local receipt, err = conn:send {
      from = "Sender <sender@example.test>", to = "rcpt@example.test", bcc = "secret@example.test",
      subject = tag, text = text,
    }
    assert.is_nil(err)
    assert.are.equal(2, #receipt.accepted)
    assert.is_string(receipt.queue_id)
    local raw = server.postfix_wait(tag)
    local body = raw:match("\r?\n\r?\n(.*)$"):gsub("\r\n", "\n")
    assert.are.equal(text .. "\n", body)
    assert.truthy(raw:find("Message-ID: " .. receipt.message_id, 1, true))
    assert.truthy(raw:find("Content-Transfer-Encoding: 8bit", 1, true))
    assert.falsy(raw:find("secret@", 1, true))
  end)

  it("reports relaying refused for a foreign domain, delivering to the rest", function()
    local tag = "relay-" .. os.time() .. "-" .. math.random(1e9)
    local receipt = assert(conn:send {
      from = "sender@example.test", to = { "rcpt@example.test", "someone@elsewhere.invalid" },
      subject = tag, text = "x",
    })
    assert.are.equal(1, #receipt.accepted)
    assert.are.equal("someone@elsewhere.invalid", receipt.rejected[1].address)
    assert.are.equal(554, receipt.rejected[1].code)
    assert.are.equal("5.7.1", receipt.rejected[1].enhanced)
    server.postfix_wait(tag)
  end)

  it("delivers a batch through send_many, each message intact, a refusal on the right one", function()
    local tag = "many-" .. os.time() .. "-" .. math.random(1e9)
    local list = {}
    for i = 1, 6 do
      list[i] = { from = "sender@example.test", to = "rcpt@example.test",
        subject = tag .. "-" .. i, text = "message " .. i .. "\n.\n..dots\n" }
    end
    list[4].to = "someone@elsewhere.invalid"
    local s = assert(conn:open())
    local results, errs = s:send_many(list)
    s:close()
    assert.are.equal(6, #results)
    assert.are.equal("rcpt", errs[4].stage)
    assert.are.equal(554, errs[4].rejected[1].code)
    for _, i in ipairs({ 1, 2, 3, 5, 6 }) do
      assert.is_nil(errs[i], tostring(errs[i]))
      assert.is_string(results[i].queue_id)
      local raw = server.postfix_wait(tag .. "-" .. i)
      assert.truthy(raw:find("Message-ID: " .. results[i].message_id, 1, true), "message " .. i)
      assert.are.equal("message " .. i .. "\n.\n..dots\n", raw:match("\r?\n\r?\n(.*)$"):gsub("\r\n", "\n"))
    end
  end)
end)
