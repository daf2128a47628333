-- SMTP AUTH against real peers: the private Postfix with Cyrus SASL (the
-- users and ports are at the top of spec/support/postfix.sh) for every
-- password mechanism, and the programmable server's auth scripts for
-- OAuth2, the providers' refusals, broken challenges and downgrades.
local smtp = require "smtp"
local core = require "smtp.core"
local server = require "spec.support.server"

local pf, ports, ca, alice, bob

local with_server = server.with

local serial = 0
local function tag(what)
  serial = serial + 1
  return string.format("auth-%s-%d-%d-%d", what, os.time(), serial, math.random(1e9))
end

local function message(subject, extra)
  local m = { from = "sender@example.test", to = "rcpt@example.test", subject = subject, text = "authenticated\n" }
  for k, v in pairs(extra or {}) do m[k] = v end
  return m
end

local function copy(t, extra)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- A connection to Postfix's STARTTLS port as localhost, trusting the test CA.
local function postfix_conn(auth, extra)
  return smtp.connection(copy({ address = "localhost", port = ports.starttls, timeout = 5,
    tls = { cafile = ca }, auth = auth }, extra))
end

-- A plaintext connection to the programmable server; credentials allowed.
local function plain_conn(srv, auth, extra)
  return smtp.connection(copy({ address = srv.host, port = srv.port, timeout = 5, tls = { protocol = "none" },
    auth = auth and copy({ allow_insecure = true }, auth) }, extra))
end

local function has(list, value)
  for _, v in ipairs(list or {}) do
    if v == value then return true end
  end
  return false
end


-- Records are written as the server goes; a client that hung up may be
-- ahead of them.  Wait (a little) until the server saw the disconnect.
local function settled(srv)
  for _ = 1, 100 do
    if #srv:records_of("disconnect") >= #srv:records_of("connect") then break end
    os.execute("sleep 0.02")
  end
  return srv
end

local function auth_commands(srv)
  local out = {}
  for _, c in ipairs(srv:commands()) do
    if c.line:upper():find("^AUTH") then out[#out + 1] = c.line end
  end
  return out
end

local function verbs(srv)
  local out = {}
  for _, c in ipairs(srv:commands()) do out[#out + 1] = (c.line:match("^%a+") or c.line):upper() end
  return out
end

-- The Received header Postfix added (unfolded).
local function received(raw)
  return (raw:match("\nReceived: (.-)\r?\n%S") or raw:match("^Received: (.-)\r?\n%S") or ""):gsub("%s+", " ")
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    for j = 3, 0, -1 do
      local k = math.floor(n / 64 ^ j) % 64
      out[#out + 1] = B64:sub(k + 1, k + 1)
    end
    if not b then out[#out], out[#out - 1] = "=", "=" elseif not c then out[#out] = "=" end
  end
  return table.concat(out)
end

-- Every string reachable from v (keys, values, nested tables), joined.
local function serialize(v, seen, out)
  seen, out = seen or {}, out or {}
  if type(v) == "table" then
    if seen[v] then return out end
    seen[v] = true
    for k, x in pairs(v) do
      serialize(k, seen, out)
      serialize(x, seen, out)
    end
  else
    out[#out + 1] = tostring(v)
  end
  return out
end

local function dump(v) return table.concat(serialize(v), "\n") end

-- Neither secret nor its base64 at any of the three alignments (the groups
-- that hold only the secret's bytes) is in text.
local function assert_hidden(secret, text, what)
  assert.falsy(text:find(secret, 1, true), what .. " holds the secret")
  for i = 0, 2 do
    local b = base64(("x"):rep(i) .. secret):sub(i > 0 and 5 or 1, -5)
    if #b >= 8 then assert.falsy(text:find(b, 1, true), what .. " holds the secret in base64") end
  end
end

-- smtp.connection raises, saying what (a plain substring).
local function raises(what, t)
  local ok, err = pcall(smtp.connection, t)
  assert.is_false(ok)
  assert.truthy(tostring(err):find(what, 1, true), tostring(err))
end

local PASSWORD_MECHANISMS = { "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "NTLM" }

describe("AUTH", function()
  setup(function()
    pf = server.postfix()
    ports, ca = pf.ports, pf.certs .. "/ca.pem"
    alice, bob = pf.users.plain, pf.users.utf8
  end)

  describe("with Postfix and Cyrus SASL", function()
    it("offers every password mechanism after STARTTLS, and none before", function()
      local report = assert(postfix_conn(copy(alice)):test())
      assert.are.same(pf.mechanisms, report.auth.offered)
      -- Before STARTTLS (smtpd_tls_auth_only): a plaintext look at the same port.
      local plain = assert(smtp.connection { address = pf.host, port = ports.starttls, timeout = 5,
        tls = { protocol = "none" } }:test())
      for _, e in ipairs(plain.ehlo.extensions) do
        assert.falsy(e:find("^AUTH"), e)
      end
    end)

    for _, mech in ipairs(PASSWORD_MECHANISMS) do
      it(mech .. " over STARTTLS: test() reports it, and send() delivers as the user", function()
        local auth = copy(alice, { mechanisms = { mech } })
        if mech == "NTLM" then auth.domain = pf.ntlm_domain end
        local conn = postfix_conn(auth)
        local report = assert(conn:test())
        assert.are.equal(mech, report.auth.mechanism)
        assert.is_true(has(report.auth.offered, mech))
        assert.is_number(report.auth.time)
        assert.is_true(report.auth.time >= 0 and report.auth.time < 5)
        assert.is_table(report.tls)
        local subject = tag(mech)
        local receipt = assert(conn:send(message(subject)))
        assert.is_string(receipt.queue_id)
        local hdr = received(server.postfix_wait(subject))
        assert.truthy(hdr:find("(Authenticated sender: alice@example.test)", 1, true), hdr)
        assert.truthy(hdr:find("with ESMTPSA", 1, true), hdr)
      end)

      it(mech .. " with a wrong password: kind auth, 535, not transient, with a hint", function()
        local auth = { username = alice.username, password = "not-" .. alice.password, mechanisms = { mech } }
        if mech == "NTLM" then auth.domain = pf.ntlm_domain end
        local report, err = postfix_conn(auth):test()
        assert.is_nil(report)
        assert.are.equal("auth", err.kind)
        assert.are.equal("auth", err.stage)
        assert.are.equal(535, err.code)
        assert.are.equal("5.7.8", err.enhanced)
        assert.is_false(err.transient)
        assert.truthy(err.hint and err.hint:find("auth.password", 1, true), err.hint)
        assert.falsy(tostring(err):find(auth.password, 1, true))
      end)
    end

    it("picks SCRAM-SHA-256 by default, with or without a Windows domain", function()
      for _, extra in ipairs({ {}, { domain = pf.ntlm_domain } }) do
        local report = assert(postfix_conn(copy(alice, extra)):test())
        assert.are.equal("SCRAM-SHA-256", report.auth.mechanism)
      end
      local report = assert(postfix_conn(copy(alice, { mechanisms = { "CRAM-MD5", "PLAIN" } })):test())
      assert.are.equal("CRAM-MD5", report.auth.mechanism, "auth.mechanisms is an order of preference")
    end)

    it("authenticates a UTF-8 password with SCRAM (SASLprep), PLAIN, LOGIN and CRAM-MD5", function()
      for _, mech in ipairs({ "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "LOGIN", "CRAM-MD5" }) do
        local report, err = postfix_conn(copy(bob, { mechanisms = { mech } })):test()
        assert(report, mech .. ": " .. tostring(err))
        assert.are.equal(mech, report.auth.mechanism)
      end
      local subject = tag("utf8")
      assert(postfix_conn(copy(bob)):send(message(subject)))
      assert.truthy(received(server.postfix_wait(subject)):find("Authenticated sender: bob@example.test", 1, true))
    end)

    it("takes the user with its realm (user@example.test) too", function()
      for _, mech in ipairs({ "SCRAM-SHA-256", "PLAIN" }) do
        local report = assert(postfix_conn({ username = alice.username .. "@example.test", password = alice.password,
          mechanisms = { mech } }):test())
        assert.are.equal(mech, report.auth.mechanism)
      end
    end)

    it("takes NTLM's domain as DOMAIN\\user too", function()
      local report = assert(postfix_conn({ username = pf.ntlm_domain .. "\\" .. alice.username,
        password = alice.password, mechanisms = { "NTLM" } }):test())
      assert.are.equal("NTLM", report.auth.mechanism)
    end)

    it("authenticates over implicit TLS", function()
      local conn = smtp.connection { address = "localhost", port = ports.implicit, timeout = 5,
        tls = { cafile = ca, mode = "implicit" }, auth = copy(alice) }
      local report = assert(conn:test())
      assert.are.equal("SCRAM-SHA-256", report.auth.mechanism)
      assert.are.equal("implicit", report.tls.mode)
    end)

    it("keeps one authenticated session for several messages", function()
      local s = assert(postfix_conn(copy(alice)):open())
      local subjects = { tag("open-1"), tag("open-2") }
      for _, subject in ipairs(subjects) do assert(s:send(message(subject))) end
      s:close()
      for _, subject in ipairs(subjects) do
        assert.truthy(received(server.postfix_wait(subject)):find("Authenticated sender: alice@example.test", 1, true))
      end
    end)

    it("relays nowhere even when authenticated: a foreign recipient is refused", function()
      local subject = tag("relay")
      local receipt = assert(postfix_conn(copy(alice)):send(message(subject,
        { to = { "rcpt@example.test", "someone@elsewhere.invalid" } })))
      assert.are.equal(1, #receipt.accepted)
      assert.are.equal("someone@elsewhere.invalid", receipt.rejected[1].address)
      assert.are.equal(554, receipt.rejected[1].code)
      assert.are.equal("5.7.1", receipt.rejected[1].enhanced)
      server.postfix_wait(subject)
    end)

    it("sends credentials in plaintext only with allow_insecure (the plainauth port)", function()
      local conn = smtp.connection { address = pf.host, port = ports.plainauth, timeout = 5,
        tls = { protocol = "none" }, auth = copy(alice, { mechanisms = { "PLAIN" }, allow_insecure = true }) }
      local report = assert(conn:test())
      assert.are.equal("PLAIN", report.auth.mechanism)
      assert.is_nil(report.tls)
      local subject = tag("insecure")
      assert(conn:send(message(subject)))
      local hdr = received(server.postfix_wait(subject))
      assert.truthy(hdr:find("(Authenticated sender: alice@example.test)", 1, true), hdr)
      assert.truthy(hdr:find("with ESMTPA", 1, true), hdr)
      raises("smtp.connection: auth: credentials are never sent without TLS; use TLS (the default) "
        .. "or set auth.allow_insecure = true for a trusted network",
        { address = pf.host, port = ports.plainauth, tls = { protocol = "none" }, auth = copy(alice) })
    end)

    it("says which mechanisms differ when a token meets a password-only server", function()
      local report, err = postfix_conn({ username = "alice@example.test", token = "ya29.some-token" }):test()
      assert.is_nil(report)
      assert.are.equal("auth", err.kind)
      assert.truthy(err.message:find("^No authentication method enabled from those supported by the server"),
        err.message)
      assert.truthy(err.message:find("PLAIN LOGIN CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 NTLM", 1, true), err.message)
      assert.truthy(err.message:find("OAUTHBEARER XOAUTH2", 1, true), err.message)
      assert.falsy(tostring(err):find("ya29.some-token", 1, true))
    end)

    it("shows the plaintext dialogue in the trace over STARTTLS, AUTH redacted", function()
      local lines = {}
      local conn = postfix_conn(copy(alice, { mechanisms = { "PLAIN" } }),
        { trace = function(dir, line) lines[#lines + 1] = dir .. " " .. line end })
      assert(conn:test())
      local text = table.concat(lines, "\n")
      assert_hidden(alice.password, text, "the trace")
      local shown = text:gsub("[^%w%p \n]", "?")
      assert.truthy(text:find("\nC STARTTLS\n", 1, true), shown)
      assert.truthy(text:find("\nC AUTH PLAIN [redacted]\n", 1, true), shown)
      assert.truthy(text:find("\nS 235 2.7.0 Authentication successful", 1, true), shown)
      for _, l in ipairs(lines) do
        assert.truthy(l:find("^[CS] [%w%p ]*$"), "not a line of SMTP text in the trace: " .. l:gsub("[^%w%p ]", "?"))
      end
    end)
  end)

  describe("with the programmable server", function()
    local users = { alice = "pw-alice-123", bob = "p\195\164ssw\195\182rd" }
    local function script(extra)
      return { auth = copy({ users = users, tokens = { "good-token" } }, extra) }
    end

    it("refuses to send credentials over a session that ended up without TLS (opportunistic)", function()
      for _, starttls in ipairs({ false, "strip" }) do
        local s = script { mechanisms = { "PLAIN" } }
        s.starttls = starttls or nil
        with_server(s, function(srv)
          local conn = smtp.connection { address = srv.host, port = srv.port, timeout = 5,
            tls = { mode = "opportunistic" }, auth = { username = "alice", password = users.alice } }
          local report, err = conn:test()
          assert.is_nil(report)
          assert.are.equal("auth", err.kind)
          assert.are.equal("auth", err.stage)
          assert.is_false(err.transient)
          assert.truthy(err.message:find("never sent without TLS", 1, true), err.message)
          assert.truthy(err.hint:find("allow_insecure", 1, true), err.hint)
          assert.are.same({}, auth_commands(settled(srv)))
          assert.are.same({}, srv:records_of("auth"))
        end)
      end
    end)

    it("raises at smtp.connection for credentials without TLS, unless allow_insecure", function()
      for _, auth in ipairs({ { username = "u", password = "p" }, { username = "u", token = "t" } }) do
        raises("credentials are never sent without TLS", { address = "127.0.0.1", tls = { protocol = "none" },
          auth = auth })
        auth.allow_insecure = true
        assert.is_table(smtp.connection { address = "127.0.0.1", tls = { protocol = "none" }, auth = auth })
      end
    end)

    it("raises at smtp.connection for an empty password or token", function()
      raises("smtp.connection: auth.password must be a non-empty string",
        { address = "127.0.0.1", auth = { username = "alice", password = "" } })
      raises("smtp.connection: auth.token must be a non-empty string",
        { address = "127.0.0.1", auth = { username = "alice", token = "" } })
    end)

    it("names what the server offers and what was configured when nothing matches", function()
      with_server(script { mechanisms = { "GSSAPI", "DIGEST-MD5" } }, function(srv)
        local report, err = plain_conn(srv, { username = "alice", password = users.alice }):test()
        assert.is_nil(report)
        assert.are.equal("auth", err.kind)
        assert.truthy(err.message:find("^No authentication method enabled from those supported by the server"),
          err.message)
        assert.truthy(err.message:find("GSSAPI DIGEST-MD5", 1, true), err.message)
        assert.truthy(err.message:find("SCRAM-SHA-256 SCRAM-SHA-1 PLAIN LOGIN CRAM-MD5 NTLM", 1, true), err.message)
        assert.truthy(err.hint:find("auth.mechanisms", 1, true), err.hint)
        assert.are.same({}, auth_commands(settled(srv)))
      end)
      with_server(script { mechanisms = { "PLAIN" } }, function(srv)
        local _, err = plain_conn(srv, { username = "alice", password = users.alice, mechanisms = { "LOGIN" } }):test()
        assert.truthy(err.message:find("offers: PLAIN; configured: LOGIN", 1, true), err.message)
        assert.are.same({}, auth_commands(settled(srv)))
      end)
    end)

    it("suggests anonymous when the server offers no AUTH at all", function()
      with_server({}, function(srv)
        local report, err = plain_conn(srv, { username = "alice", password = users.alice }):test()
        assert.is_nil(report)
        assert.are.equal("auth", err.kind)
        assert.truthy(err.message:find("the server offers: none", 1, true), err.message)
        assert.truthy(err.hint:find("anonymous", 1, true), err.hint)
        assert.are.same({}, auth_commands(settled(srv)))
      end)
    end)

    for _, mech in ipairs({ "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256" }) do
      it(mech .. " sends exactly what the mechanism says, a UTF-8 password included", function()
        with_server(script { mechanisms = { mech } }, function(srv)
          local report = assert(plain_conn(srv, { username = "bob", password = users.bob }):test())
          assert.are.equal(mech, report.auth.mechanism)
          local rec = srv:records_of("auth")[1]
          assert.are.equal("bob", rec.user)
          assert.is_true(rec.success)
          if mech == "PLAIN" then
            assert.are.equal("\0bob\0" .. users.bob, rec.initial)
          elseif mech == "LOGIN" then
            assert.is_nil(rec.initial)
            assert.are.equal("bob", rec.steps[1].response)
            assert.are.equal(users.bob, rec.steps[2].response)
          elseif mech == "CRAM-MD5" then
            assert.truthy(rec.steps[1].response:find("^bob %x+$"), rec.steps[1].response)
          else
            assert.truthy(rec.initial:find("^n,,n=bob,r=[^,]+$"), rec.initial)
            assert.truthy(rec.steps[1].response:find("^c=biws,r=[^,]+,p=[%w+/]+=*$"), rec.steps[1].response)
            assert.are.equal("", rec.steps[2].response)
          end
        end)
      end)
    end

    it("SCRAM: accepts the server signature with the 235, refuses a wrong or missing one", function()
      with_server(script { mechanisms = { "SCRAM-SHA-256" }, scram = { final = "inline" } }, function(srv)
        assert(plain_conn(srv, { username = "alice", password = users.alice }):test())
      end)
      for _, signature in ipairs({ "bad", "none" }) do
        with_server(script { mechanisms = { "SCRAM-SHA-256" }, scram = { signature = signature } }, function(srv)
          local receipt, err = plain_conn(srv, { username = "alice", password = users.alice })
            :send(message("never sent"))
          assert.is_nil(receipt)
          assert.are.equal("auth", err.kind)
          assert.are.equal("auth", err.stage)
          assert.truthy(err.message:find("prove", 1, true), err.message)
          -- The session is closed: nothing after AUTH.
          assert.are.same({ "EHLO", "AUTH" }, verbs(settled(srv)))
          assert.are.same({}, srv:messages())
        end)
      end
    end)

    it("SCRAM: refuses an iteration count too low to be safe or too high to compute", function()
      for _, iterations in ipairs({ 1000, 2000000 }) do
        with_server(script { mechanisms = { "SCRAM-SHA-1" }, scram = { iterations = iterations } }, function(srv)
          local t0 = core.clock()
          local report, err = plain_conn(srv, { username = "alice", password = users.alice }):test()
          assert.is_nil(report)
          assert.are.equal("protocol", err.kind)
          assert.are.equal("auth", err.stage)
          assert.truthy(err.message:find("iteration count", 1, true), err.message)
          assert.is_true(core.clock() - t0 < 1)
        end)
      end
    end)

    describe("OAuth2", function()
      it("XOAUTH2: sends user=...^Aauth=Bearer <token>^A^A, and succeeds", function()
        with_server(script { mechanisms = { "XOAUTH2" } }, function(srv)
          local report = assert(plain_conn(srv, { username = "alice@example.com", token = "good-token" }):test())
          assert.are.equal("XOAUTH2", report.auth.mechanism)
          local rec = srv:records_of("auth")[1]
          assert.are.equal("user=alice@example.com\1auth=Bearer good-token\1\1", rec.initial)
          assert.are.same({}, rec.steps)
          assert.are.same({ "AUTH XOAUTH2 " .. base64(rec.initial) }, auth_commands(srv))
        end)
      end)

      it("OAUTHBEARER: sends the RFC 7628 message with host and port, and succeeds", function()
        with_server(script { mechanisms = { "OAUTHBEARER" } }, function(srv)
          local report = assert(plain_conn(srv, { username = "alice@example.com", token = "good-token" }):test())
          assert.are.equal("OAUTHBEARER", report.auth.mechanism)
          local rec = srv:records_of("auth")[1]
          assert.are.equal("n,a=alice@example.com,\1host=127.0.0.1\1port=" .. srv.port
            .. "\1auth=Bearer good-token\1\1", rec.initial)
        end)
      end)

      it("prefers OAUTHBEARER, then XOAUTH2, by default", function()
        local cases = { { { "XOAUTH2", "OAUTHBEARER" }, "OAUTHBEARER" }, { { "PLAIN", "XOAUTH2" }, "XOAUTH2" } }
        for _, case in ipairs(cases) do
          with_server(script { mechanisms = case[1] }, function(srv)
            local report = assert(plain_conn(srv, { username = "alice@example.com", token = "good-token" }):test())
            assert.are.equal(case[2], report.auth.mechanism)
          end)
        end
      end)

      it("XOAUTH2 refused: answers the JSON challenge with an empty line; status 401 and a token hint", function()
        with_server(script { mechanisms = { "XOAUTH2" } }, function(srv)
          local report, err = plain_conn(srv, { username = "alice@example.com", token = "expired-token" }):test()
          assert.is_nil(report)
          assert.are.equal("auth", err.kind)
          assert.are.equal("auth", err.stage)
          assert.are.equal(535, err.code)
          assert.are.equal("401", err.status)
          assert.is_false(err.transient)
          assert.truthy(err.message:find('"scope":"https://mail.google.com/"', 1, true), err.message)
          assert.truthy(err.hint:find("token", 1, true), err.hint)
          local rec = srv:records_of("auth")[1]
          assert.are.equal("", rec.steps[1].raw)
          assert.falsy(tostring(err):find("expired-token", 1, true))
        end)
      end)

      it("XOAUTH2 refused with Gmail's own words still hints at the token, not an app password", function()
        local gmail = "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
          .. "535 5.7.8  https://support.google.com/mail/?p=BadCredentials d2-20020a05 - gsmtp"
        with_server(script { mechanisms = { "XOAUTH2" }, replies = { fail = gmail } }, function(srv)
          local _, err = plain_conn(srv, { username = "alice@gmail.com", token = "expired-token" }):test()
          assert.are.equal("401", err.status)
          assert.truthy(err.hint:find("token", 1, true), err.hint)
          assert.falsy(err.hint:find("app password", 1, true), err.hint)
        end)
      end)

      it("OAUTHBEARER refused: answers the JSON challenge with ^A (RFC 7628), and reports its status", function()
        with_server(script { mechanisms = { "OAUTHBEARER" } }, function(srv)
          local report, err = plain_conn(srv, { username = "alice@example.com", token = "expired-token" }):test()
          assert.is_nil(report)
          assert.are.equal("auth", err.kind)
          assert.are.equal(535, err.code)
          assert.are.equal("invalid_token", err.status)
          assert.truthy(err.hint:find("token", 1, true), err.hint)
          local rec = srv:records_of("auth")[1]
          assert.are.equal("AQ==", rec.steps[1].raw)
          assert.are.equal("\1", rec.steps[1].response)
        end)
      end)

      it("sends a 5000-byte token in one AUTH line", function()
        local token = ("0123456789abcdef"):rep(313):sub(1, 5000)
        for _, mech in ipairs({ "XOAUTH2", "OAUTHBEARER" }) do
          with_server(script { mechanisms = { mech }, tokens = { token } }, function(srv)
            local report = assert(plain_conn(srv, { username = "alice@example.com", token = token }):test())
            assert.are.equal(mech, report.auth.mechanism)
            local rec = srv:records_of("auth")[1]
            assert.are.equal("Bearer " .. token, rec.fields.auth)
            local line = auth_commands(srv)[1]
            assert.is_true(#line > 6000 and #line <= 12286, #line)
          end)
        end
      end)
    end)

    -- The providers' refusals, and the word of the hint that tells them apart.
    local refusals = {
      { "535 5.7.8 Username and Password not accepted. For more information, go to "
        .. "https://support.google.com/mail/?p=BadCredentials", "Gmail refused" },
      { "534 5.7.9 Application-specific password required. For more information, go to "
        .. "https://support.google.com/mail/?p=InvalidSecondFactor", "App passwords" },
      { "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
        .. "Visit https://aka.ms/smtp_auth_disabled for more information.", "Authenticated SMTP" },
      { "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.", "security defaults" },
      { "535 5.7.3 Authentication unsuccessful [SN4PR0601CA0005.namprd06.prod.outlook.com]",
        "Microsoft refused" },
      { "530 5.7.0 Must issue a STARTTLS command first", "TLS first" },
      { "530 5.7.0 Authentication required", "authenticated clients" },
      { "534 5.7.14 <https://accounts.google.com/signin/continue> Please log in via your web browser",
        "browser" },
      { "538 5.7.11 Encryption required for requested authentication mechanism", "encrypted session" },
      { "454 4.7.0 Temporary authentication failure", "try again later" },
      { "535 5.7.8 Error: authentication failed: authentication failure", "auth.username" },
    }
    for _, case in ipairs(refusals) do
      local reply, word = case[1], case[2]
      it("hints \"" .. word .. "\" for " .. reply:sub(1, 36), function()
        with_server(script { mechanisms = { "PLAIN", "LOGIN" }, reply = reply }, function(srv)
          local report, err = plain_conn(srv, { username = "alice", password = users.alice }):test()
          assert.is_nil(report)
          assert.are.equal("auth", err.kind)
          assert.are.equal("auth", err.stage)
          assert.are.equal(tonumber(reply:sub(1, 3)), err.code)
          assert.are.equal(reply:match("^%d+ (%d%.%d+%.%d+)"), err.enhanced)
          assert.are.equal(reply:sub(1, 1) == "4", err.transient)
          assert.truthy(err.hint and err.hint:find(word, 1, true), tostring(err.hint))
        end)
      end)
    end

    it("reports 530 at MAIL from a server that wants authentication as kind auth", function()
      with_server(script { required = true }, function(srv)
        local receipt, err = plain_conn(srv):send(message("needs auth"))
        assert.is_nil(receipt)
        assert.are.equal("auth", err.kind)
        assert.are.equal("mail", err.stage)
        assert.are.equal(530, err.code)
        assert.truthy(err.hint:find("authenticated clients", 1, true), err.hint)
      end)
    end)

    it("treats a challenge that is not base64 as a protocol error and closes", function()
      for _, mech in ipairs({ "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2" }) do
        with_server(script { mechanisms = { mech }, challenges = { "334 not*base64!" } }, function(srv)
          local auth = mech == "XOAUTH2" and { username = "alice", token = "good-token" }
            or { username = "alice", password = users.alice }
          local receipt, err = plain_conn(srv, auth):send(message("never sent"))
          assert.is_nil(receipt)
          assert.are.equal("protocol", err.kind, mech)
          assert.are.equal("auth", err.stage)
          assert.truthy(err.message:find("base64", 1, true), err.message)
          assert.are.same({ "EHLO", "AUTH" }, verbs(settled(srv)))
        end)
      end
    end)

    it("ends an endless challenge loop with a protocol error, well within the timeout", function()
      for _, mech in ipairs({ "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2",
                              "OAUTHBEARER" }) do
        for _, line in ipairs({ "334 YWdhaW4=", "334 " }) do
          with_server(script { mechanisms = { mech }, endless = line }, function(srv)
            local auth = mech:find("OAUTH") and { username = "alice", token = "good-token" }
              or { username = "alice", password = users.alice }
            local t0 = core.clock()
            local report, err = plain_conn(srv, auth, { timeout = 3 }):test()
            local elapsed = core.clock() - t0
            assert.is_nil(report)
            assert.are.equal("protocol", err.kind, mech .. " " .. line .. ": " .. tostring(err))
            assert.are.equal("auth", err.stage)
            assert.is_true(elapsed < 1, mech .. " took " .. elapsed .. " s")
            local rec = settled(srv):records_of("auth")[1]
            assert.is_true(#rec.steps <= 3, mech .. ": " .. #rec.steps .. " challenges answered")
          end)
        end
      end
    end)

    it("reports a server that never answers AUTH as a timeout at stage auth", function()
      with_server(script { hang = true }, function(srv)
        local t0 = core.clock()
        local report, err = plain_conn(srv, { username = "alice", password = users.alice }, { timeout = 1 }):test()
        local elapsed = core.clock() - t0
        assert.is_nil(report)
        assert.are.equal("timeout", err.kind)
        assert.are.equal("auth", err.stage)
        assert.is_true(err.transient)
        assert.is_true(elapsed >= 0.9 and elapsed < 3, elapsed)
        assert.are.equal(1, #auth_commands(srv))
      end)
    end)

    describe("keeps secrets", function()
      local password, token = "Sup3r-s3cret-pw!", "ya29.a0AfB_byC-very-secret-token"

      local function check(conn, results, lines)
        local text = table.concat(lines, "\n")
        for _, secret in ipairs({ password, token }) do
          assert_hidden(secret, tostring(conn), "tostring(conn)")
          assert_hidden(secret, text, "the trace")
          for _, r in ipairs(results) do
            assert_hidden(secret, dump(r), "a result")
            if type(r) == "table" and getmetatable(r) and getmetatable(r).__tostring then
              assert_hidden(secret, tostring(r), "tostring of a result")
            end
          end
        end
        return text
      end

      it("from tostring(conn), errors, reports and the trace", function()
        local cases = {
          { script { mechanisms = { "PLAIN" }, users = { alice = password } }, { password = password }, true,
            "C AUTH PLAIN [redacted]" },
          { script { mechanisms = { "PLAIN" } }, { password = password }, false, "C AUTH PLAIN [redacted]" },
          { script { mechanisms = { "LOGIN" } }, { password = password }, false, "C AUTH LOGIN [redacted]" },
          { script { mechanisms = { "SCRAM-SHA-1" }, users = { alice = password } }, { password = password }, true,
            "C AUTH SCRAM-SHA-1 [redacted]" },
          { script { mechanisms = { "XOAUTH2" }, tokens = { token } }, { token = token }, true,
            "C AUTH XOAUTH2 [redacted]" },
          { script { mechanisms = { "XOAUTH2" } }, { token = token }, false, "C AUTH XOAUTH2 [redacted]" },
          { script { mechanisms = { "OAUTHBEARER" } }, { token = token }, false, "C AUTH OAUTHBEARER [redacted]" },
        }
        for _, case in ipairs(cases) do
          with_server(case[1], function(srv)
            local lines = {}
            local conn = plain_conn(srv, copy({ username = "alice" }, case[2]),
              { trace = function(dir, line) lines[#lines + 1] = dir .. " " .. line end })
            local report, err = conn:test()
            assert.are.equal(case[3], report ~= nil, tostring(err))
            local receipt, err2 = conn:send(message("secret"))
            local text = check(conn, { report or false, err or false, receipt or false, err2 or false }, lines)
            assert.truthy(text:find(case[4], 1, true), text)
            -- From AUTH to the server's verdict, the client's lines are redacted.
            local in_auth = false
            for _, l in ipairs(lines) do
              if l:find("^C AUTH ") then
                in_auth = true
                assert.truthy(l:find("^C AUTH [%u%d-]+ %[redacted%]$"), l)
              elseif l:find("^S %d%d%d ") then
                in_auth = false
              elseif in_auth then
                assert.are.equal("C [redacted]", l)
              end
            end
          end)
        end
      end)

      it("when the session is opened and when the module refuses the token", function()
        -- A token past the module's bound (8192 octets) is refused before AUTH.
        local long = token .. ("x"):rep(9000)
        with_server(script { mechanisms = { "XOAUTH2" }, tokens = { long } }, function(srv)
          local lines = {}
          local conn = plain_conn(srv, { username = "alice", token = long },
            { trace = function(dir, line) lines[#lines + 1] = dir .. " " .. line end })
          local s, err = conn:open()
          assert.is_nil(s)
          assert.are.equal("auth", err.kind)
          check(conn, { err }, lines)
          assert.are.same({}, auth_commands(settled(srv)))
        end)
        with_server(script { mechanisms = { "PLAIN" }, users = { alice = password } }, function(srv)
          local conn = plain_conn(srv, { username = "alice", password = password })
          local s = assert(conn:open())
          assert_hidden(password, tostring(s), "tostring(session)")
          assert_hidden(password, dump(s.report), "the session's report")
          s:close()
        end)
      end)
    end)
  end)
end)
