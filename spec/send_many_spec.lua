-- Session:send_many against the programmable server: with PIPELINING each
-- next envelope goes out behind the previous message's final dot, and
-- every reply is still attributed to the right message.
local smtp = require "smtp"
local server = require "spec.support.server"

local function connect(srv, extra)
  local t = { address = srv.host, port = srv.port, timeout = 5, tls = { protocol = "none" } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return smtp.connection(t)
end

local with_server = server.with

-- Messages 1..n, from m<i>@example.com; to[i] replaces the recipient of one.
local function batch(n, to)
  local list = {}
  for i = 1, n do
    list[i] = { from = "m" .. i .. "@example.com", to = (to or {})[i] or "rcpt@example.com",
      subject = "message " .. i, text = "body " .. i .. "\n" }
  end
  return list
end

-- A distinct queue id in the verdict of each message.
local function queue_ids(n, replies)
  replies = replies or {}
  for i = 1, n do
    local key = "END:m" .. i .. "@example.com"
    replies[key] = replies[key] or ("250 2.0.0 Ok: queued as Q" .. i)
  end
  return replies
end

local function senders(srv)
  local t = {}
  for i, m in ipairs(srv:messages()) do t[i] = m.mail_from end
  return t
end

local function slice(t, from, to)
  local out = {}
  for i = from, to do out[#out + 1] = t[i] end
  return out
end

-- The pipelined flag of each MAIL command record, in order.
local function mail_flags(srv)
  local t = {}
  for _, c in ipairs(srv:commands()) do
    if c.line:find("^MAIL") then t[#t + 1] = c.pipelined end
  end
  return t
end

describe("send_many", function()
  it("returns the receipts in order, each envelope behind the previous final dot", function()
    with_server({ replies = queue_ids(5) }, function(srv)
      local s = assert(connect(srv):open())
      local results, errs = s:send_many(batch(5))
      assert.are.equal(5, #results)
      for i = 1, 5 do
        assert.is_nil(errs[i])
        assert.are.equal(250, results[i].reply.code)
        assert.are.equal("Q" .. i, results[i].queue_id)
        assert.are.same({ "rcpt@example.com" }, { results[i].accepted[1].address })
      end
      assert.are.same({ "m1@example.com", "m2@example.com", "m3@example.com", "m4@example.com",
        "m5@example.com" }, senders(srv))
      -- MAIL, RCPT and DATA of message i+1 were already there when the
      -- server read the final dot of message i
      local msgs = srv:messages()
      for i = 1, 4 do assert.is_true(msgs[i].pipelined, "message " .. i) end
      assert.is_false(msgs[5].pipelined)
      assert.are.same({ true, true, true, true, true }, mail_flags(srv))
      assert.truthy(msgs[3].data:find("body 3\r\n", 1, true))
      -- the session goes on
      assert(s:send(batch(1)[1]))
      assert.is_true(s:alive())
      s:close()
    end)
  end)

  it("attributes a refused recipient and a refused message to the right ones", function()
    local replies = queue_ids(5, { ["RCPT:bad@example.com"] = "550 5.1.1 no such user",
      ["END:m3@example.com"] = "554 5.7.1 message refused as spam" })
    with_server({ replies = replies }, function(srv)
      local s = assert(connect(srv):open())
      local results, errs = s:send_many(batch(5, { [2] = "bad@example.com" }))
      assert.are.equal(5, #results)
      for _, i in ipairs({ 1, 4, 5 }) do
        assert.is_nil(errs[i])
        assert.are.equal("Q" .. i, results[i].queue_id)
      end
      assert.are.equal(errs[2], results[2])
      assert.are.equal("rejected", errs[2].kind)
      assert.are.equal("rcpt", errs[2].stage)
      assert.are.equal(550, errs[2].code)
      assert.are.equal("bad@example.com", errs[2].rejected[1].address)
      assert.are.equal(errs[3], results[3])
      assert.are.equal("rejected", errs[3].kind)
      assert.are.equal("data", errs[3].stage)
      assert.are.equal(554, errs[3].code)
      assert.are.equal("5.7.1", errs[3].enhanced)
      assert.are.same({ "m1@example.com", "m4@example.com", "m5@example.com" }, senders(srv))
      -- message 4 went out behind message 3's refused dot
      local msgs = srv:messages()
      assert.is_true(msgs[2].pipelined)
      for _, flag in ipairs(mail_flags(srv)) do assert.is_true(flag) end
      -- the session is still usable, for one message and for a batch
      assert(s:send(batch(1)[1]))
      results, errs = s:send_many(batch(2))
      assert.is_nil(errs[1])
      assert.is_nil(errs[2])
      assert.are.equal("Q2", results[2].queue_id)
      assert.are.equal(6, #srv:messages())
      s:close()
    end)
  end)

  it("returns errors for the messages not confirmed when the server hangs up", function()
    with_server({ replies = queue_ids(5), max_messages = 2, max_messages_reply = "" }, function(srv)
      local s = assert(connect(srv):open())
      local results, errs = s:send_many(batch(5))
      assert.are.equal(5, #results)
      assert.are.equal("Q1", results[1].queue_id)
      assert.are.equal("Q2", results[2].queue_id)
      for i = 3, 5 do
        assert.is_nil(results[i].reply)
        assert.are.equal(errs[i], results[i])
        assert.are.equal("closed", errs[i].kind)
      end
      assert.are.equal(2, #srv:messages())
      assert.is_false(s:alive())
      s:close()
    end)
  end)

  it("gives no receipt for a message whose verdict never came", function()
    with_server({ close_after = "DATA" }, function(srv)
      local s = assert(connect(srv):open())
      local results, errs = s:send_many(batch(3))
      for i = 1, 3 do
        assert.is_nil(results[i].reply)
        assert.are.equal("closed", errs[i].kind)
      end
      assert.are.equal(0, #srv:messages())
      s:close()
    end)
  end)

  it("sends one message at a time without PIPELINING", function()
    with_server({ extensions = { "8BITMIME", "SIZE 10485760", "ENHANCEDSTATUSCODES" }, replies = queue_ids(5) },
      function(srv)
        local s = assert(connect(srv):open())
        local results, errs = s:send_many(batch(5))
        for i = 1, 5 do
          assert.is_nil(errs[i])
          assert.are.equal("Q" .. i, results[i].queue_id)
        end
        for _, c in ipairs(srv:commands()) do assert.is_false(c.pipelined, c.line) end
        for _, m in ipairs(srv:messages()) do assert.is_false(m.pipelined) end
        assert.are.equal(5, #srv:messages())
        s:close()
      end)
  end)

  it("does not pipeline across messages when told not to pipeline", function()
    with_server({ replies = queue_ids(3) }, function(srv)
      local s = assert(connect(srv, { pipelining = false }):open())
      local results, errs = s:send_many(batch(3))
      for i = 1, 3 do
        assert.is_nil(errs[i])
        assert.are.equal("Q" .. i, results[i].queue_id)
      end
      for _, c in ipairs(srv:commands()) do assert.is_false(c.pipelined, c.line) end
      s:close()
    end)
  end)

  it("falls back to one message at a time over LMTP", function()
    with_server({ lmtp = true, lmtp_replies = { ["bad@example.com"] = "452 4.2.2 mailbox full" } }, function(srv)
      local s = assert(connect(srv, { protocol = "lmtp" }):open())
      local list = batch(3, { [2] = { "rcpt@example.com", "bad@example.com" } })
      local results, errs = s:send_many(list)
      for i = 1, 3 do assert.is_nil(errs[i]) end
      assert.are.equal(1, #results[2].rejected)
      assert.are.equal("bad@example.com", results[2].rejected[1].address)
      assert.are.equal(452, results[2].rejected[1].code)
      for _, m in ipairs(srv:messages()) do assert.is_false(m.pipelined) end
      assert.are.same({ "m1@example.com", "m2@example.com", "m3@example.com" }, senders(srv))
      s:close()
    end)
  end)

  it("puts the next envelope behind BDAT LAST with CHUNKING", function()
    with_server({ extensions = { "PIPELINING", "8BITMIME", "CHUNKING", "ENHANCEDSTATUSCODES" },
                  replies = queue_ids(3, { ["END:m2@example.com"] = "554 5.7.1 no" }) }, function(srv)
      local s = assert(connect(srv):open())
      local results, errs = s:send_many(batch(3))
      assert.are.equal("Q1", results[1].queue_id)
      assert.are.equal(554, errs[2].code)
      assert.are.equal("data", errs[2].stage)
      assert.are.equal("Q3", results[3].queue_id)
      local msgs = srv:messages()
      assert.are.equal(2, #msgs)
      assert.is_true(msgs[1].pipelined)
      assert.are.same({ "m1@example.com", "m3@example.com" }, senders(srv))
      s:close()
    end)
  end)

  it("waits for the chunks' replies, and RSET, after a message refused in mid-BDAT", function()
    with_server({ extensions = { "PIPELINING", "8BITMIME", "CHUNKING", "ENHANCEDSTATUSCODES" },
                  replies = queue_ids(3, { ["BDAT:2"] = "554 5.6.0 bad chunk" }) }, function(srv)
      local s = assert(connect(srv):open())
      local list = batch(3)
      list[1].text = string.rep("0123456789abcdef\n", 12000)   -- three chunks
      local results, errs = s:send_many(list)
      assert.are.equal("rejected", errs[1].kind)
      assert.are.equal("data", errs[1].stage)
      assert.are.equal(554, errs[1].code)
      assert.are.equal(results[1], errs[1])
      assert.are.equal("Q2", results[2].queue_id)
      assert.are.equal("Q3", results[3].queue_id)
      assert.are.same({ "m2@example.com", "m3@example.com" }, senders(srv))
      local verbs = {}
      for _, c in ipairs(srv:commands()) do verbs[#verbs + 1] = c.line:match("^%u+") end
      -- the chunks of message 1, RSET, then the others
      local rset
      for i, v in ipairs(verbs) do if v == "RSET" then rset = rset or i end end
      assert.are.same({ "EHLO", "MAIL", "RCPT", "BDAT", "BDAT" }, slice(verbs, 1, 5))
      for i = 4, rset - 1 do assert.are.equal("BDAT", verbs[i]) end
      assert.are.same({ "RSET", "MAIL", "RCPT", "BDAT", "MAIL", "RCPT", "BDAT" }, slice(verbs, rset, #verbs))
      s:close()
    end)
  end)

  it("reports a message refused before sending without disturbing the others", function()
    with_server({ replies = queue_ids(3) }, function(srv)
      local s = assert(connect(srv):open())
      local list = batch(3)
      list[2].require_tls = true   -- never sent over plaintext
      local results, errs = s:send_many(list)
      assert.are.equal("Q1", results[1].queue_id)
      assert.are.equal("tls", errs[2].kind)
      assert.are.equal("Q3", results[3].queue_id)
      assert.are.same({ "m1@example.com", "m3@example.com" }, senders(srv))
      assert.is_true(srv:messages()[1].pipelined)
      s:close()
    end)
  end)
end)
