-- The troubleshooting knowledge: every entry of the hints table in
-- lua/smtp/errors.lua, produced by a real failure against the private
-- Postfix, the test proxies or the programmable server (errors.new only
-- where no server on loopback can produce the failure), and the last test
-- checks that no entry was left without a case.
local smtp = require "smtp"
local errors = require "smtp.errors"
local server = require "spec.support.server"

local pf, ca
local covered = {}
local preset_hook_missing = false

-- The error's hint must hold every word; the table entry that applies to
-- the error counts as covered.
local function assert_hint(err, words)
  assert.truthy(errors.is(err), "not an error: " .. tostring(err))
  assert.truthy(err.hint, "no hint for " .. tostring(err))
  for _, w in ipairs(words) do
    assert.truthy(err.hint:find(w, 1, true), "hint lacks \"" .. w .. "\": " .. err.hint)
  end
  local entry = errors.entry_for(err)
  if entry then covered[entry] = true end
end

local function copy(t, extra)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function message(extra)
  return copy({ from = "sender@example.test", to = "rcpt@example.test", subject = "hints", text = "hello\n" }, extra)
end

-- test() (or send(msg)) against a scripted smtpd.py, plaintext unless the
-- options say otherwise; the error.
local function scripted(script, opts, msg)
  local srv = server.start(script)
  local ok, r, err = pcall(function()
    local conn = smtp.connection(copy({ address = srv.host, port = srv.port, timeout = 5,
      tls = { protocol = "none" } }, opts))
    if msg then return conn:send(msg) end
    return conn:test()
  end)
  srv:stop()
  if not ok then error(r, 0) end
  assert.is_nil(r, "it worked")
  return err
end

local function reached(opts, msg)
  local conn = smtp.connection(copy({ timeout = 5 }, opts))
  local r, err
  if msg then r, err = conn:send(msg) else r, err = conn:test() end
  assert.is_nil(r, "it worked")
  return err
end

local function with_credentials(extra)
  return { auth = copy({ username = "alice", password = "alice-secret-pw", allow_insecure = true }, extra) }
end

describe("hints", function()
  setup(function()
    pf = server.postfix()
    ca = pf.certs .. "/ca.pem"
  end)

  after_each(function()
    for name in pairs(smtp.connections) do smtp.connections[name] = nil end
  end)

  describe("DNS", function()
    it("a short host name: use the full DNS name", function()
      local err = reached { address = "nosuchhost", port = 25, tls = { protocol = "none" } }
      assert.are.equal("dns", err.kind)
      assert_hint(err, { "nosuchhost is a short host name", "full DNS name" })
    end)

    it("a name that does not resolve: check it for typos", function()
      local err = reached { address = string.rep("a", 63) .. ".example.com", port = 25, tls = { protocol = "none" } }
      assert.are.equal("dns", err.kind)
      assert_hint(err, { "typos" })
    end)

    it("a resolver that does not answer (no server can make this one)", function()
      assert_hint(errors.new { kind = "dns", stage = "connect",
        message = "cannot resolve mail.example.com: Temporary failure in name resolution" }, { "resolv.conf" })
    end)
  end)

  describe("proxies", function()
    local px
    setup(function() px = server.proxies() end)

    local function via(proxy, port)
      return reached { address = "127.0.0.1", port = port or pf.port, tls = { protocol = "none" }, proxy = proxy }
    end

    it("wrong SOCKS5 credentials", function()
      assert_hint(via { type = "socks5", address = px.host, port = px.ports.socks_auth, username = px.user,
        password = "wrong" }, { "proxy.username", "proxy.password" })
    end)

    it("wrong or missing HTTP proxy credentials", function()
      assert_hint(via { type = "http", address = px.host, port = px.ports.http_auth }, { "proxy.domain" })
    end)

    it("a proxy that cannot reach the server", function()
      assert_hint(via({ type = "socks5", address = px.host, port = px.ports.socks }, server.free_port()),
        { "cannot reach the SMTP server" })
    end)

    it("a proxy that is not there", function()
      assert_hint(via { type = "socks5", address = "127.0.0.1", port = server.free_port() },
        { "proxy.address", "proxy.port" })
    end)

    it("any other refusal of the proxy", function()
      local p = server.socks4a { mode = "refuse" }
      local ok, err = pcall(via, { type = "socks4", address = p.host, port = p.port })
      p:stop()
      assert(ok, err)
      assert_hint(err, { "proxy's log" })
    end)
  end)

  describe("authentication", function()
    it("no AUTH offered at all: connect anonymously", function()
      local err = scripted({}, with_credentials())
      assert.are.equal("auth", err.kind)
      assert_hint(err, { "anonymous" })
    end)

    it("no mechanism in common: auth.mechanisms, or anonymous", function()
      local err = scripted({ auth = { mechanisms = { "CRAM-MD5" } } }, with_credentials { mechanisms = { "PLAIN" } })
      assert_hint(err, { "auth.mechanisms" })
    end)

    it("an OAuth2 token refused", function()
      local err = scripted({ auth = { mechanisms = { "XOAUTH2" }, tokens = { "good" } } },
        { auth = { username = "alice", token = "expired", allow_insecure = true } })
      assert_hint(err, { "fresh access token" })
    end)

    -- The servers' own words, and the word of the hint that answers them.
    local refusals = {
      { "534-5.7.9 Application-specific password required. For more information, go to\r\n"
        .. "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor", "App passwords" },
      { "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
        .. "535 5.7.8  https://support.google.com/mail/?p=BadCredentials", "Gmail refused the login" },
      { "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
        "Authenticated SMTP" },
      { "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.", "security defaults" },
      { "535 5.7.3 Authentication unsuccessful [SN4PR0601CA0005.namprd06.prod.outlook.com]", "Microsoft refused" },
      { "534 5.7.14 <https://accounts.google.com/signin/continue> Please log in via your web browser", "browser" },
      { "538 5.7.11 Encryption required for requested authentication mechanism", "encrypted session" },
      { "454 4.7.0 Temporary authentication failure", "try again later" },
      { "535 5.7.8 Error: authentication failed: authentication failure", "auth.username" },
    }
    for _, case in ipairs(refusals) do
      it("\"" .. case[1]:sub(1, 40) .. "\": " .. case[2], function()
        local err = scripted({ auth = { mechanisms = { "PLAIN" }, reply = case[1] } }, with_credentials())
        assert.are.equal("auth", err.kind)
        assert_hint(err, { case[2] })
      end)
    end

    it("530 to MAIL asking for STARTTLS first", function()
      local err = scripted({ replies = { MAIL = "530 5.7.0 Must issue a STARTTLS command first" } }, {}, message())
      assert.are.equal("auth", err.kind)
      assert_hint(err, { "TLS first" })
    end)

    it("530 to MAIL from a server that wants authentication", function()
      local err = scripted({ auth = { required = true } }, {}, message())
      assert_hint(err, { "authenticated clients" })
    end)

    it("credentials refused by a provider: the preset's advice", function()
      smtp.presets["hints-spec"] = { hint = "use the API key as the password" }
      local ok, err = pcall(scripted, { auth = { mechanisms = { "PLAIN" },
        reply = "535 5.7.8 Authentication credentials invalid" } }, copy(with_credentials(), { preset = "hints-spec" }))
      smtp.presets["hints-spec"] = nil
      assert(ok, err)
      if err.preset_hint == nil then
        preset_hook_missing = true
        pending("session.lua does not pass the preset's hint to errors.new yet (preset_hint)")
        return
      end
      assert_hint(err, { "use the API key as the password", "auth.password" })
    end)
  end)

  describe("TLS", function()
    it("implicit TLS against a plaintext port: use explicit", function()
      local err = reached { address = "localhost", port = pf.ports.plain, tls = { mode = "implicit", cafile = ca } }
      assert_hint(err, { "explicit", "465" })
    end)

    it("STARTTLS not offered: port 465, or plaintext only if you must", function()
      local err = reached { address = "localhost", port = pf.ports.plain, tls = { cafile = ca } }
      assert_hint(err, { "465", "implicit" })
    end)

    it("bytes behind the 220 to STARTTLS: tampering", function()
      local err = scripted({ starttls = "inject", cert = pf.certs .. "/server.pem", key = pf.certs .. "/server.key" },
        { address = "localhost", tls = { cafile = ca } })
      assert_hint(err, { "tampering" })
    end)

    it("a TLS version the linked mbedTLS lacks", function()
      local conn = smtp.connection { address = "localhost", port = pf.ports.implicit, timeout = 5,
        tls = { mode = "implicit", cafile = ca, versions = { "tls1.3" } } }
      local report, err = conn:test()
      if report then
        -- mbedTLS 3 has TLS 1.3 but no longer TLS 1.0.
        conn = smtp.connection { address = "localhost", port = pf.ports.implicit, timeout = 5,
          tls = { mode = "implicit", cafile = ca, versions = { "tls1.0" } } }
        report, err = conn:test()
        assert.is_nil(report)
      end
      assert_hint(err, { "tls.versions the linked mbedTLS supports" })
    end)

    it("a key that does not match tls.pin", function()
      local err = reached { address = "localhost", port = pf.ports.implicit,
        tls = { mode = "implicit", cafile = ca, pin = string.rep("00", 32) } }
      assert_hint(err, { "tls.pin" })
    end)

    it("a CA file that cannot be read", function()
      local err = reached { address = "localhost", port = pf.ports.implicit,
        tls = { mode = "implicit", cafile = "/nonexistent/ca.pem" } }
      assert_hint(err, { "tls.cafile" })
    end)

    it("454 to STARTTLS: try again later", function()
      local err = scripted({ starttls = "refuse" }, { tls = { cafile = ca } })
      assert_hint(err, { "try again later" })
    end)

    -- Refused certificates get their hint from errors.explain_tls.
    local certificates = {
      { "expired", { "expired on" } },
      { "selfsigned", { "self-signed", "tls.pin" } },
      { "otherca", { "tls.cafile" } },
      { "wrongname", { "wrong.example.test", "not localhost", "full DNS name" } },
    }
    for _, case in ipairs(certificates) do
      it("a refused certificate: " .. case[1], function()
        local err = reached { address = "localhost", port = pf.ports[case[1]],
          tls = { mode = "implicit", cafile = ca } }
        assert.are.equal("tls", err.kind)
        assert_hint(err, case[2])
      end)
    end
  end)

  describe("reaching the server", function()
    it("a refused connection: nothing listens on that port", function()
      local port = server.free_port()
      local err = reached { address = "127.0.0.1", port = port, tls = { protocol = "none" } }
      assert_hint(err, { "nothing listens on port " .. port, "587", "465" })
    end)

    it("no route to the host (no server on loopback can make this one)", function()
      assert_hint(errors.new { kind = "connect", stage = "connect",
        message = "cannot connect to 192.0.2.1 port 25 (192.0.2.1): No route to host" }, { "no route", "firewall" })
    end)

    it("any other failure to connect (no server on loopback can make this one)", function()
      assert_hint(errors.new { kind = "connect", stage = "connect",
        message = "cannot connect to 192.0.2.1 port 25 (192.0.2.1): Permission denied" }, { "address and port" })
    end)

    it("a connection attempt that times out (it takes a firewall that drops packets)", function()
      assert_hint(errors.new { kind = "timeout", stage = "connect",
        message = "connecting to 192.0.2.1 port 25 (192.0.2.1) timed out after 5000 ms" },
        { "firewall", "587", "proxy" })
    end)

    it("a silent server with STARTTLS: it may want implicit TLS", function()
      local err = scripted({ silent = true }, { timeout = 1 })
      assert.are.equal("greeting", err.stage)
      assert_hint(err, { "implicit" })
    end)

    it("a silent server with implicit TLS: the mode may not fit the port", function()
      local err = scripted({ silent = true }, { timeout = 1, tls = { mode = "implicit" } })
      assert.are.equal("connect", err.stage)
      assert_hint(err, { "implicit", "explicit" })
    end)

    it("a server that stops answering", function()
      local err = scripted({ no_reply_after = "DATA_END" }, { timeout = 1 }, message())
      assert.are.equal("timeout", err.kind)
      assert_hint(err, { "raise timeout" })
    end)
  end)

  describe("the server ends the session", function()
    it("421 at the greeting and in a transaction: try again later", function()
      local err = scripted { replies = { greeting = "421 4.3.2 Service shutting down" } }
      assert_hint(err, { "421", "try again later" })
      err = scripted({ replies = { RCPT = "421 4.4.2 Connection timed out" } }, {}, message())
      assert.are.equal("closed", err.kind)
      assert_hint(err, { "421", "try again later" })
    end)

    it("a close during the message: send it again", function()
      assert_hint(scripted({ close_after = "mid_data" }, {}, message { text = string.rep("x", 500) }),
        { "send it again" })
    end)

    it("a close before the greeting", function()
      assert_hint(scripted { close_on_connect = true }, { "hung up", "implicit" })
    end)

    it("a close elsewhere", function()
      local err = scripted({ close_after = "MAIL" }, {}, message())
      assert.are.equal("closed", err.kind)
      assert_hint(err, { "try again later" })
    end)

    it("an AUTH exchange that makes no sense", function()
      local err = scripted({ auth = { mechanisms = { "LOGIN" }, challenges = { "334 !!!" } } }, with_credentials())
      assert.are.equal("protocol", err.kind)
      assert_hint(err, { "auth.mechanisms" })
    end)

    it("an answer that is not SMTP", function()
      local err = scripted { ehlo = "long_line" }
      assert.are.equal("protocol", err.kind)
      assert_hint(err, { "not valid SMTP" })
    end)
  end)

  describe("refusals", function()
    it("relaying denied by Postfix (554 5.7.1 at RCPT)", function()
      local err = reached({ address = pf.host, port = pf.port, tls = { protocol = "none" } },
        message { to = "someone@elsewhere.invalid" })
      assert.are.equal(554, err.code)
      assert.are.equal("5.7.1", err.enhanced)
      assert_hint(err, { "relay", "authenticate" })
    end)

    it("a message over the SIZE the server announced: refused before MAIL, naming the limit", function()
      local srv = server.start { extensions = { "SIZE 100" } }
      local ok, r, err = pcall(function()
        return smtp.connection({ address = srv.host, port = srv.port, timeout = 5, tls = { protocol = "none" } })
          :send(message { text = string.rep("x", 300) })
      end)
      srv:stop()
      assert(ok, r)
      assert.is_nil(r)
      assert.are.equal(100, err.size_limit)
      assert_hint(err, { "100" })
      for _, c in ipairs(srv:commands()) do assert.falsy(c.line:find("^MAIL"), c.line) end
    end)

    it("552 from a server whose SIZE was not the whole story: too large, with the SIZE it announced", function()
      local err = scripted({ extensions = { "SIZE 1000000" },
        replies = { END = "552 5.3.4 Message size exceeds fixed limit" } }, {}, message())
      assert.are.equal(552, err.code)
      assert_hint(err, { "too large" })
      if err.size_limit == nil then
        pending("session.lua does not pass size_limit (the server's SIZE) to errors.new for a refusal yet")
        return
      end
      assert_hint(err, { "SIZE 1000000", "this message is" })
    end)

    local replies = {
      { "RCPT", "552 5.2.2 Mailbox full", { "mailbox is full" } },
      { "END", "554 5.3.4 Message too big for system", { "too large" } },
      { "END", "550 5.7.26 Unauthenticated email from example.test is not accepted due to domain's DMARC policy",
        { "SPF or DMARC" } },
      { "END", "550 5.7.23 The message was rejected because of Sender Policy Framework violation",
        { "SPF or DMARC" } },
      { "RCPT", "550 5.7.27 Sender address has null MX", { "SPF or DMARC" } },
      { "END", "550 5.7.25 The IP address sending this message does not have a PTR record setup",
        { "PTR" } },
      { "END", "550 5.7.1 Message rejected: SPF check failed for example.test", { "SPF/DKIM/DMARC" } },
      { "MAIL", "550 5.7.60 SMTP; Client does not have permissions to send as this sender", { "send as" } },
      { "MAIL", "553 5.7.1 <sender@example.test>: Sender address rejected: not owned by user alice",
        { "send as" } },
      { "MAIL", "554 5.7.0 Sender not allowed", { "send as" } },
      { "RCPT", "550 5.7.1 Recipient not authorized", { "by policy" } },
      { "RCPT", "550 5.1.1 User unknown", { "does not exist" } },
      { "END", "554 5.7.9 Message not accepted for policy reasons", { "5.7.x" } },
      { "RCPT", "450 4.2.0 <rcpt@example.test>: Recipient address rejected: Greylisted", { "few minutes" } },
      { "DATA", "451 4.3.0 Local error in processing", { "try again later" } },
      { "MAIL", "553 5.1.8 Domain of sender address does not exist", { "from (or sender)" } },
      { "RCPT", "550 5.1.2 Host unknown", { "recipients' addresses" } },
      { "END", "554 5.6.0 Message content rejected", { "refused the message itself" } },
    }
    for _, case in ipairs(replies) do
      it(case[1] .. " answered \"" .. case[2]:sub(1, 48) .. "\"", function()
        local err = scripted({ replies = { [case[1]] = case[2] } }, { pipelining = false }, message())
        assert.are.equal(tonumber(case[2]:sub(1, 3)), err.code)
        assert_hint(err, case[3])
      end)
    end

    it("5xx to the greeting: the server refuses this client", function()
      assert_hint(scripted { replies = { greeting = "554 Service unavailable" } }, { "refuses this client" })
    end)

    it("5xx to EHLO and HELO: the EHLO name", function()
      local err = scripted { replies = { EHLO = "550 5.5.0 Go away", HELO = "550 5.7.1 Bad HELO name" } }
      assert.are.equal("ehlo", err.stage)
      assert_hint(err, { "helo" })
    end)
  end)

  it("has a case above for every entry of the table", function()
    -- The preset's advice needs session.lua to pass preset_hint; until it
    -- does, its case above is pending and the entry is left out here.
    local preset_entry = errors.entry_for { kind = "auth", stage = "auth", code = 535, message = "x",
      preset_hint = "x" }
    local missing = {}
    for i, h in ipairs(errors.hints) do
      if not covered[h] and not (h == preset_entry and preset_hook_missing) then
        missing[#missing + 1] = i .. ": " .. (type(h.hint) == "string" and h.hint or "(a hint function)")
      end
    end
    assert.are.same({}, missing, "entries without a case:\n" .. table.concat(missing, "\n"))
  end)
end)
