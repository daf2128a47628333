-- conn:test(): the report, and failures before the server says anything.
local smtp = require "smtp"
local server = require "spec.support.server"

local function plain(t)
  t.tls = { protocol = "none" }
  t.timeout = t.timeout or 5
  return smtp.connection(t)
end

describe("test()", function()
  it("reports the resolved address, banner, EHLO domain, extensions and timings", function()
    local srv = server.start { banner = "220 mx.test.local ESMTP ready",
      extensions = { "PIPELINING", "SIZE 1000", "8BITMIME", "AUTH PLAIN LOGIN", "DSN", "CHUNKING" } }
    local report, err = plain { address = srv.host, port = srv.port }:test()
    srv:stop()
    assert.is_nil(err)
    assert.are.equal("127.0.0.1", report.resolved)
    assert.are.equal(4, report.family)
    assert.are.equal(srv.port, report.port)
    assert.are.equal("mx.test.local ESMTP ready", report.banner)
    assert.are.equal("EHLO", report.ehlo.command)
    assert.is_string(report.ehlo.domain)
    assert.are.same({ "PIPELINING", "SIZE 1000", "8BITMIME", "AUTH PLAIN LOGIN", "DSN", "CHUNKING" },
      report.ehlo.extensions)
    for _, step in ipairs({ "connect", "greeting", "ehlo", "quit", "total" }) do
      assert.is_number(report.timings[step], step)
    end
    local cmds = srv:commands()
    assert.are.equal("QUIT", cmds[#cmds].line)
  end)

  it("sends the EHLO name given, or our address literal", function()
    local srv = server.start {}
    assert(plain { address = srv.host, port = srv.port, helo = "client.example.org" }:test())
    assert(plain { address = srv.host, port = srv.port }:test())
    srv:stop()
    local helos = {}
    for _, c in ipairs(srv:commands()) do
      if c.line:find("^EHLO") then helos[#helos + 1] = c.line end
    end
    assert.are.same({ "EHLO client.example.org", "EHLO [127.0.0.1]" }, helos)
  end)

  it("resolves a host name", function()
    local srv = server.start {}
    local report, err = plain { address = "localhost", port = srv.port }:test()
    srv:stop()
    assert.is_nil(err)
    assert.are.equal("127.0.0.1", report.resolved)
  end)

  it("connects over IPv6", function()
    local srv = server.start { host = "::1" }
    local report, err = plain { address = "::1", port = srv.port }:test()
    srv:stop()
    assert.is_nil(err)
    assert.are.equal("::1", report.resolved)
    assert.are.equal(6, report.family)
  end)

  it("reports a name that does not resolve as a dns error", function()
    local name = string.rep("a", 64) .. ".example.com"
    local report, err = plain { address = name, port = 25 }:test()
    assert.is_nil(report)
    assert.are.equal("dns", err.kind)
    assert.are.equal("connect", err.stage)
    assert.truthy(err.message:find(name, 1, true))
    assert.truthy(err.hint)
  end)

  it("reports a refused connection", function()
    local srv = server.start {}
    local port = srv.port
    srv:stop()
    local report, err, partial = plain { address = "127.0.0.1", port = port }:test()
    assert.is_nil(report)
    assert.are.equal("connect", err.kind)
    assert.are.equal("connect", err.stage)
    assert.is_false(err.transient)
    assert.are.equal(port, partial.port)
    assert.truthy(tostring(err):find("refused", 1, true))
  end)

  it("reports a refused connection with credentials set as a connect error; AUTH is never reached", function()
    local conn = smtp.connection { address = "127.0.0.1", port = 1, auth = { username = "u", password = "p" } }
    local report, err, partial = conn:test()
    assert.is_nil(report)
    assert.are.equal("connect", err.kind)
    assert.are.equal("connect", err.stage)
    assert.is_nil(partial.auth)
  end)
end)

describe("test() stages", function()
  local function names(report)
    local t = {}
    for i, st in ipairs(report.stages) do
      t[i] = st.name .. (st.ok and "" or "!")
      assert.is_number(st.time)
      assert.is_true(st.time >= 0)
    end
    return table.concat(t, " ")
  end

  it("lists each stage of reaching the server, with outcome and time", function()
    local pf = server.postfix()
    local report = assert(smtp.connection {
      address = "localhost", port = pf.ports.starttls, timeout = 5, tls = { cafile = pf.certs .. "/ca.pem" },
      auth = { username = pf.users.plain.username, password = pf.users.plain.password },
    }:test())
    assert.are.equal("dns connect greeting ehlo starttls tls ehlo auth quit", names(report))
    assert.truthy(report.stages[6].detail:find("TLS", 1, true))
    assert.truthy(report.stages[8].detail:find("SCRAM-SHA-256", 1, true))
  end)

  it("puts the TLS handshake before the greeting with implicit TLS", function()
    local pf = server.postfix()
    local report = assert(smtp.connection {
      address = "localhost", port = pf.ports.implicit, timeout = 5,
      tls = { mode = "implicit", cafile = pf.certs .. "/ca.pem" },
    }:test())
    assert.are.equal("dns connect tls greeting ehlo quit", names(report))
  end)

  it("returns the report up to the stage that failed", function()
    local srv = server.start { silent = true }
    local report, err, partial = plain { address = srv.host, port = srv.port, timeout = 1 }:test()
    srv:stop()
    assert.is_nil(report)
    assert.are.equal("timeout", err.kind)
    assert.are.equal("dns connect greeting!", names(partial))
    report, err, partial = plain { address = string.rep("a", 64) .. ".example.com", port = 25 }:test()
    assert.is_nil(report)
    assert.are.equal("dns!", names(partial))
    assert.are.equal(err.message, partial.stages[1].detail)
    local pf = server.postfix()
    report, err, partial = smtp.connection {
      address = "localhost", port = pf.ports.expired, timeout = 5,
      tls = { mode = "implicit", cafile = pf.certs .. "/ca.pem" },
    }:test()
    assert.is_nil(report)
    assert.are.equal("tls", err.kind)
    assert.are.equal("dns connect tls!", names(partial))
  end)

  it("probes an envelope without sending anything", function()
    local srv = server.start { replies = { ["RCPT:nobody@example.com"] = "550 5.1.1 no such user" } }
    local conn = plain { address = srv.host, port = srv.port }
    local report = assert(conn:test { probe = { from = "me@example.com", to = { "a@example.com", "b@example.com" } } })
    assert.are.equal("dns connect greeting ehlo probe quit", names(report))
    assert.are.equal(2, #report.probe.accepted)
    local to = { "a@example.com", "nobody@example.com" }
    local report2, err, partial = conn:test { probe = { from = "me@example.com", to = to } }
    srv:stop()
    assert.is_nil(report2)
    assert.are.equal("rejected", err.kind)
    assert.are.equal("rcpt", err.stage)
    assert.are.equal("nobody@example.com", err.rejected[1].address)
    assert.are.equal("dns connect greeting ehlo probe! quit", names(partial))
    local verbs = {}
    for _, c in ipairs(srv:commands()) do verbs[#verbs + 1] = c.line:match("^%u+") end
    assert.are.equal("EHLO MAIL RCPT RCPT RSET QUIT EHLO MAIL RCPT RCPT RSET QUIT", table.concat(verbs, " "))
    assert.are.equal(0, #srv:messages())
    assert.has_error(function() conn:test { probe = { to = "a@example.com" } } end)
    assert.has_error(function() conn:test { prob = {} } end)
  end)
end)
