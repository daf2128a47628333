-- TLS against real peers: the private Postfix's TLS ports (the port map is
-- at the top of spec/support/postfix.sh) and the programmable server's
-- STARTTLS scripts, with the certificates of spec/support/certs.sh.
local smtp = require "smtp"
local core = require "smtp.core"
local server = require "spec.support.server"

local pf, ports, certs, ca

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- A connection to localhost:port trusting the test CA; tls and extra
-- entries override (tls.cafile = false: the system's CAs).
local function connect(port, tls, extra)
  local t = { address = "localhost", port = port, timeout = 5, tls = { cafile = ca } }
  for k, v in pairs(tls or {}) do t.tls[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  if t.tls.cafile == false then t.tls.cafile = nil end
  return smtp.connection(t)
end

local function implicit(port, tls, extra)
  local t = { mode = "implicit" }
  for k, v in pairs(tls or {}) do t[k] = v end
  return connect(port, t, extra)
end

local serial = 0
local function tag(what)
  serial = serial + 1
  return string.format("tls-%s-%d-%d-%d", what, os.time(), serial, math.random(1e9))
end

local function message(subject)
  return { from = "sender@example.test", to = "rcpt@example.test", subject = subject, text = "over TLS\n" }
end

local function has(list, value)
  for _, v in ipairs(list or {}) do
    if v == value then return true end
  end
  return false
end

local with_server = server.with

-- The smtpd.py script keys for a certificate of certs.sh.
local function cert(name, script)
  script = script or {}
  script.cert, script.key = certs .. "/" .. name .. ".pem", certs .. "/" .. name .. ".key"
  return script
end

-- Each command the server received, as "VERB" or "VERB+tls".
local function verbs(srv)
  local out = {}
  for _, c in ipairs(srv:commands()) do
    out[#out + 1] = c.line:match("^%a+"):upper() .. (c.tls and "+tls" or "")
  end
  return out
end


-- The Received header Postfix added (unfolded).
local function received(raw)
  return (raw:match("\nReceived: (.-)\r?\n%S") or raw:match("^Received: (.-)\r?\n%S") or ""):gsub("%s+", " ")
end

-- Proves a refused message never arrived: a message sent after it through
-- the plain port arrives, and the refused one is not there.
local function assert_never_delivered(refused)
  local sentinel = tag("sentinel")
  assert(smtp.connection { address = pf.host, port = ports.plain, timeout = 5, tls = { protocol = "none" } }
    :send(message(sentinel)))
  server.postfix_wait(sentinel)
  for _, raw in ipairs(server.postfix_inbox()) do
    assert.falsy(raw:find(refused, 1, true), "a message sent over a refused TLS session arrived")
  end
end

local function sha256_base64(hex)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local bytes = { hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end) }
  local raw, out = bytes[1] .. "\0\0", {}
  for i = 1, 32, 3 do
    local a, b, c = raw:byte(i, i + 2)
    local n = a * 65536 + b * 256 + c
    for j = 3, 0, -1 do
      local k = math.floor(n / 64 ^ j) % 64
      out[#out + 1] = alphabet:sub(k + 1, k + 1)
    end
  end
  return table.concat(out):sub(1, 43) .. "="
end

local linked
-- The linked mbedTLS, as report.tls.library says ("2.28.3").
local function mbedtls()
  if not linked then linked = assert(implicit(ports.implicit):test()).tls.library end
  return linked, tonumber(linked:match("^(%d+)"))
end

local function now_utc()
  return os.date("!%Y-%m-%d %H:%M:%SZ")
end

describe("TLS", function()
  setup(function()
    pf = server.postfix()
    ports, certs = pf.ports, pf.certs
    ca = certs .. "/ca.pem"
  end)

  describe("with Postfix", function()
    it("speaks implicit TLS: the report shows version, cipher and the verified certificate", function()
      local report = assert(implicit(ports.implicit):test())
      local tls = report.tls
      local _, major = mbedtls()
      if major < 3 then
        assert.are.equal("TLSv1.2", tls.version)
      else
        assert.truthy(tls.version == "TLSv1.2" or tls.version == "TLSv1.3", tls.version)
      end
      assert.is_string(tls.cipher)
      assert.is_true(#tls.cipher > 0)
      assert.is_string(tls.library)
      assert.are.equal("implicit", tls.mode)
      assert.is_true(tls.verify)
      assert.is_true(tls.verified)
      assert.are.same({}, tls.problems)
      local c = tls.certificate
      assert.truthy(c.subject:find("CN=localhost", 1, true), c.subject)
      assert.truthy(c.issuer:find("CN=smtp test CA", 1, true), c.issuer)
      assert.truthy(c.valid_from:find("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%dZ$"), c.valid_from)
      assert.truthy(c.valid_to:find("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%dZ$"), c.valid_to)
      assert.is_true(c.valid_from <= now_utc() and now_utc() < c.valid_to)
      assert.is_true(has(c.names, "localhost"), table.concat(c.names, " "))
      assert.is_true(has(c.names, "mx.example.test"))
      assert.is_true(has(c.names, "127.0.0.1"))
      assert.are.equal("mx.example.test", report.ehlo.domain)
    end)

    it("delivers over implicit TLS, and Postfix records that TLS was used", function()
      local subject = tag("implicit")
      local conn = implicit(ports.implicit)
      local version = assert(conn:test()).tls.version
      local receipt = assert(conn:send(message(subject)))
      assert.is_string(receipt.queue_id)
      local hdr = received(server.postfix_wait(subject))
      assert.truthy(hdr:find("(using " .. version .. " with cipher ", 1, true), hdr)
      assert.truthy(hdr:find("with ESMTPS", 1, true), hdr)
    end)

    it("upgrades with STARTTLS, by name and by IP address (matched against the IP SANs)", function()
      for _, address in ipairs({ "localhost", "127.0.0.1" }) do
        local conn = connect(ports.starttls, nil, { address = address })
        local report = assert(conn:test())
        assert.are.equal("explicit", report.tls.mode)
        assert.is_true(report.tls.verified)
        assert.are.same({}, report.tls.problems)
        -- The extensions are those of the EHLO after TLS: STARTTLS is gone.
        local ext = {}
        for _, e in ipairs(report.ehlo.extensions) do ext[e:match("^%S+")] = true end
        assert.is_nil(ext.STARTTLS)
        assert.is_true(ext.PIPELINING)
        assert.is_number(report.timings.starttls)
        local subject = tag("starttls")
        assert(conn:send(message(subject)))
        local hdr = received(server.postfix_wait(subject))
        assert.truthy(hdr:find("(using " .. report.tls.version .. " with cipher ", 1, true), hdr)
      end
    end)

    it("connects over IPv6, matching ::1 against the certificate's IP SANs", function()
      local f, v6 = io.open("/proc/net/if_inet6"), false
      if f then
        for line in f:lines() do v6 = v6 or line:find("^0+1 .* lo$") ~= nil end
        f:close()
      end
      if not v6 then
        pending("no IPv6 loopback here")
        return
      end
      local report = assert(implicit(ports.implicit, nil, { address = "::1" }):test())
      assert.are.equal(6, report.family)
      assert.is_true(report.tls.verified)
    end)
  end)

  describe("versions", function()
    it("keeps to TLS 1.2 when asked, against a server that allows only TLS 1.2", function()
      local report = assert(connect(ports.tls12, { versions = { "tls1.2" } }):test())
      assert.are.equal("TLSv1.2", report.tls.version)
      report = assert(connect(ports.tls12):test())
      assert.are.equal("TLSv1.2", report.tls.version)
    end)

    it("says that TLS 1.3 needs a newer mbedTLS, naming the linked one", function()
      local library, major = mbedtls()
      if major >= 3 then
        pending("the linked mbedTLS " .. library .. " has TLS 1.3: see the next test")
        return
      end
      local report, err = connect(ports.starttls, { versions = { "tls1.3" } }):test()
      assert.is_nil(report)
      assert.are.equal("tls", err.kind)
      assert.truthy(err.message:find("TLS 1.3", 1, true), err.message)
      assert.truthy(err.message:find("mbedTLS " .. library, 1, true), err.message)
      assert.truthy(err.hint:find("mbedTLS 3", 1, true), err.hint)
      assert.is_false(err.transient)
    end)

    it("speaks TLS 1.3 when asked, with mbedTLS 3", function()
      local library, major = mbedtls()
      if major < 3 then
        pending("the linked mbedTLS " .. library .. " has no TLS 1.3")
        return
      end
      local report = assert(connect(ports.starttls, { versions = { "tls1.3" } }):test())
      assert.are.equal("TLSv1.3", report.tls.version)
      local _, err = connect(ports.tls12, { versions = { "tls1.3" } }):test()
      assert.are.equal("tls", err.kind)
    end)

    it("refuses SSL and a range with a hole when the connection is described", function()
      local ok, msg = pcall(connect, ports.starttls, { versions = { "ssl3" } })
      assert.is_false(ok)
      assert.truthy(msg:find("SSL", 1, true) and msg:find("broken", 1, true), msg)
      ok, msg = pcall(connect, ports.starttls, { versions = { "tls1.0", "tls1.2" } })
      assert.is_false(ok)
      assert.truthy(msg:find("tls.versions", 1, true) and msg:find("contiguous", 1, true), msg)
    end)
  end)

  describe("a refused certificate", function()
    -- Each case: the Postfix port, the certificate that smtpd.py serves to
    -- show the same over STARTTLS, the problem, what the hint must say, and
    -- tls options.
    local cases = {
      { name = "expired", port = "expired", problem = "expired", hint = { "expired" } },
      { name = "for another name", port = "wrongname", cert = "wrongname", problem = "name-mismatch",
        hint = { "wrong.example.test", "full DNS name" } },
      { name = "self-signed", port = "selfsigned", cert = "selfsigned", problem = "not-trusted",
        hint = { "self-signed", "tls.pin" } },
      { name = "from an unknown CA", port = "otherca", cert = "otherca-server", problem = "not-trusted",
        hint = { "tls.cafile", "intercept", "smtp other CA" } },
      { name = "not in the system's bundle", port = "implicit", cert = "server", problem = "not-trusted",
        tls = { cafile = false }, hint = { "tls.cafile", "smtp test CA" } },
    }
    for _, case in ipairs(cases) do
      it("fails the handshake, says why and sends nothing when the certificate is " .. case.name, function()
        local function check(err, stage)
          assert.are.equal("tls", err.kind)
          assert.are.equal(stage, err.stage)
          assert.is_false(err.transient)
          assert.are.same({ case.problem }, err.problems)
          assert.is_string(err.certificate.subject)
          assert.truthy(err.message:find("refused", 1, true), err.message)
          for _, word in ipairs(case.hint) do
            assert.truthy(err.hint:find(word, 1, true), "hint lacks " .. word .. ": " .. err.hint)
          end
        end
        -- Postfix, implicit TLS.
        local conn = implicit(ports[case.port], case.tls)
        local subject = tag(case.port)
        local receipt, err = conn:send(message(subject))
        assert.is_nil(receipt)
        check(err, "connect")
        local report
        report, err = conn:test()
        assert.is_nil(report)
        check(err, "connect")
        -- smtpd.py with the same certificate, implicit and STARTTLS: after
        -- the handshake not a single command arrives.
        local file = case.cert or case.port
        with_server(cert(file, { implicit = true }), function(srv)
          local r, e = implicit(srv.port, case.tls):send(message(subject))
          assert.is_nil(r)
          check(e, "connect")
          assert.are.same({}, srv:commands())
        end)
        with_server(cert(file, { starttls = "ok" }), function(srv)
          local r, e = connect(srv.port, case.tls):send(message(subject))
          assert.is_nil(r)
          check(e, "starttls")
          assert.are.same({ "EHLO", "STARTTLS" }, verbs(srv))
          assert.are.same({}, srv:messages())
        end)
        assert_never_delivered(subject)
      end)
    end

    it("is accepted with verify = false, the report saying it was not verified", function()
      local report = assert(implicit(ports.selfsigned, { verify = false }):test())
      assert.is_false(report.tls.verify)
      assert.is_false(report.tls.verified)
      assert.is_true(has(report.tls.problems, "not-trusted"))
    end)

    it("is trusted when given as tls.cafile itself (self-signed)", function()
      local report = assert(implicit(ports.selfsigned, { cafile = certs .. "/selfsigned.pem" }):test())
      assert.is_true(report.tls.verified)
    end)
  end)

  describe("pinning", function()
    it("accepts the server's key by its SHA-256, in hex and in base64", function()
      local hex = read_file(certs .. "/server.pin"):match("%x+")
      assert.are.equal(64, #hex)
      for _, pin in ipairs({ hex, hex:upper(), "sha256//" .. sha256_base64(hex) }) do
        local report = assert(implicit(ports.implicit, { pin = pin }):test())
        assert.is_true(report.tls.verified)
      end
    end)

    it("refuses a key that does not match the pin, even when the chain is valid", function()
      local other = read_file(certs .. "/selfsigned.pin"):match("%x+")
      for _, c in ipairs({ implicit(ports.implicit, { pin = other }), connect(ports.starttls, { pin = other }) }) do
        local report, err = c:test()
        assert.is_nil(report)
        assert.are.equal("tls", err.kind)
        assert.truthy(err.message:find("tls.pin", 1, true), err.message)
        assert.truthy(err.hint:find("tls.pin", 1, true), err.hint)
      end
    end)

    it("trusts a self-signed server by its pin alone (verify = false)", function()
      local pin = read_file(certs .. "/selfsigned.pin"):match("%x+")
      local subject = tag("pinned")
      assert(implicit(ports.selfsigned, { verify = false, pin = pin }):send(message(subject)))
      server.postfix_wait(subject)
      local wrong = read_file(certs .. "/server.pin"):match("%x+")
      local report, err = implicit(ports.selfsigned, { verify = false, pin = wrong }):test()
      assert.is_nil(report)
      assert.are.equal("tls", err.kind)
      assert.truthy(err.message:find("tls.pin", 1, true), err.message)
    end)
  end)

  describe("session resumption", function()
    local function same_certificate(a, b)
      assert.are.equal(a.subject, b.subject)
      assert.are.equal(a.issuer, b.issuer)
      assert.are.equal(a.valid_to, b.valid_to)
      assert.are.same(a.names, b.names)
    end

    it("resumes a connection's later sessions, reporting the certificate as checked before", function()
      for _, conn in ipairs({ implicit(ports.implicit), connect(ports.starttls) }) do
        local first = assert(conn:test())
        assert.is_false(first.tls.resumed)
        local s = assert(conn:open())
        local tls = s.report.tls
        assert.is_true(tls.resumed)
        assert.is_true(tls.verified)
        assert.are.same({}, tls.problems)
        same_certificate(first.tls.certificate, tls.certificate)
        local resumed_stage
        for _, st in ipairs(s.report.stages) do
          if st.name == "tls" then resumed_stage = st.detail end
        end
        assert.truthy(resumed_stage:find("resumed", 1, true), resumed_stage)
        local subject = tag("resumed")
        assert(s:send(message(subject)))
        s:close()
        local hdr = received(server.postfix_wait(subject))
        assert.truthy(hdr:find("(using " .. tls.version .. " with cipher ", 1, true), hdr)
        subject = tag("resumed-send")
        assert(conn:send(message(subject)))
        server.postfix_wait(subject)
        assert.is_true(assert(conn:test()).tls.resumed)
      end
    end)

    it("never resumes another connection's session, as the server sees it", function()
      with_server(cert("server", { implicit = true }), function(srv)
        local one, other = implicit(srv.port), implicit(srv.port)
        assert.is_false(assert(one:test()).tls.resumed)
        assert.is_true(assert(one:test()).tls.resumed)
        assert.is_false(assert(other:test()).tls.resumed)
        assert.is_true(assert(other:test()).tls.resumed)
        local seen = {}
        for i, r in ipairs(srv:records_of("tls")) do seen[i] = r.resumed end
        assert.are.same({ false, true, false, true }, seen)
      end)
    end)

    it("resumes after STARTTLS too, and the server agrees", function()
      with_server(cert("server", { starttls = "ok" }), function(srv)
        local conn = connect(srv.port)
        assert(conn:test())
        assert(conn:send(message("x")))
        local seen = {}
        for i, r in ipairs(srv:records_of("tls")) do seen[i] = r.resumed end
        assert.are.same({ false, true }, seen)
        assert.is_true(srv:messages()[1].tls)
      end)
    end)

    it("keeps reporting the problems of a certificate accepted unverified", function()
      local conn = implicit(ports.selfsigned, { verify = false })
      assert.is_false(assert(conn:test()).tls.resumed)
      local tls = assert(conn:test()).tls
      assert.is_true(tls.resumed)
      assert.is_false(tls.verified)
      assert.is_true(has(tls.problems, "not-trusted"))
      assert.truthy(tls.certificate.subject:find("CN=", 1, true), tls.certificate.subject)
    end)

    it("never makes a refused server good: a wrong pin or a bad certificate fails every time", function()
      local other = read_file(certs .. "/selfsigned.pin"):match("%x+")
      local right = read_file(certs .. "/server.pin"):match("%x+")
      local good = implicit(ports.implicit, { pin = right })
      local pinned = implicit(ports.implicit, { pin = other })
      local expired = implicit(ports.expired)
      for round = 1, 3 do
        local report, err, partial = pinned:test()
        assert.is_nil(report)
        assert.are.equal("tls", err.kind)
        assert.truthy(err.message:find("tls.pin", 1, true), err.message)
        assert.is_false(partial.tls.resumed)
        report, err, partial = expired:test()
        assert.is_nil(report)
        assert.are.same({ "expired" }, err.problems)
        assert.is_false(partial.tls.resumed)
        -- meanwhile a connection with the right pin resumes its own session
        assert.are.equal(round > 1, assert(good:test()).tls.resumed)
      end
    end)

    it("reports a CA file it cannot load the same way every time", function()
      local conn = implicit(ports.implicit, { cafile = "/nonexistent/ca.pem" })
      for _ = 1, 2 do
        local report, err = conn:test()
        assert.is_nil(report)
        assert.are.equal("tls", err.kind)
        assert.are.equal("connect", err.stage)
        assert.are.equal("cannot load tls.cafile /nonexistent/ca.pem", err.message)
        assert.truthy(err.hint:find("tls.cafile", 1, true), err.hint)
      end
    end)
  end)

  describe("a client certificate", function()
    it("is needed where the server requires one", function()
      local report, err = implicit(ports.clientcert):test()
      assert.is_nil(report)
      assert.are.equal("tls", err.kind)
      assert.truthy(err.message:lower():find("certificate", 1, true), err.message)
      assert.truthy((err.hint or ""):find("tls.certificate", 1, true), err.hint)
      assert.is_false(err.transient)
    end)

    it("is presented from files, and Postfix sees it", function()
      local conn = implicit(ports.clientcert, { certificate = certs .. "/client.pem", key = certs .. "/client.key" })
      assert(conn:test())
      local subject = tag("clientcert")
      assert(conn:send(message(subject)))
      local hdr = received(server.postfix_wait(subject))
      assert.truthy(hdr:find('Client CN "smtp test client"', 1, true), hdr)
    end)

    it("is presented from PEM text", function()
      local conn = implicit(ports.clientcert, { certificate = read_file(certs .. "/client.pem"),
        key = read_file(certs .. "/client.key") })
      local report = assert(conn:test())
      assert.is_true(report.tls.verified)
    end)
  end)

  describe("the server name", function()
    it("is checked against tls.servername rather than the address", function()
      local conn = implicit(ports.implicit, { servername = "mx.example.test" }, { address = "127.0.0.1" })
      assert(conn:test())
      local report, err = implicit(ports.implicit, { servername = "nope.example.test" },
        { address = "127.0.0.1" }):test()
      assert.is_nil(report)
      assert.are.equal("tls", err.kind)
      assert.are.same({ "name-mismatch" }, err.problems)
      assert.truthy(err.hint:find("nope.example.test", 1, true), err.hint)
    end)

    it("goes to the server as SNI, and an IP address does not", function()
      with_server(cert("server", { implicit = true }), function(srv)
        assert(implicit(srv.port, { servername = "mx.example.test" }, { address = "127.0.0.1" }):test())
        assert(implicit(srv.port, nil, { address = "localhost" }):test())
        assert(implicit(srv.port, nil, { address = "127.0.0.1" }):test())
        local tls = srv:records_of("tls")
        assert.are.equal(3, #tls)
        assert.are.equal("mx.example.test", tls[1].servername)
        assert.are.equal("localhost", tls[2].servername)
        -- RFC 6066 3: "Literal IPv4 and IPv6 addresses are not permitted".
        assert.is_nil(tls[3].servername)
      end)
    end)
  end)

  describe("STARTTLS", function()
    local function starttls(mode, tls)
      local t = { mode = mode }
      for k, v in pairs(tls or {}) do t[k] = v end
      return t
    end

    it("upgrades, then says EHLO again and sends everything encrypted", function()
      with_server(cert("server", { starttls = "ok" }), function(srv)
        local conn = connect(srv.port)
        local report = assert(conn:test())
        assert.are.equal("explicit", report.tls.mode)
        assert.is_false(has(report.ehlo.extensions, "STARTTLS"))
        assert(conn:send(message("x")))
        assert.are.same({ "EHLO", "STARTTLS", "EHLO+tls", "QUIT+tls",
                          "EHLO", "STARTTLS", "EHLO+tls", "MAIL+tls", "RCPT+tls", "DATA+tls", "QUIT+tls" },
          verbs(srv))
        assert.is_true(srv:messages()[1].tls)
      end)
    end)

    it("refuses a server that does not offer it, sending nothing more", function()
      with_server(cert("server", { starttls = "strip" }), function(srv)
        local receipt, err = connect(srv.port):send(message("x"))
        assert.is_nil(receipt)
        assert.are.equal("tls", err.kind)
        assert.are.equal("starttls", err.stage)
        assert.truthy(err.message:find("STARTTLS", 1, true), err.message)
        local seen = verbs(srv)
        assert.are.equal("EHLO", seen[1])
        assert.truthy(#seen == 1 or (#seen == 2 and seen[2] == "QUIT"), table.concat(seen, " "))
        assert.are.same({}, srv:messages())
      end)
    end)

    it("reports a 454 refusal as transient, sending nothing more", function()
      with_server(cert("server", { starttls = "refuse" }), function(srv)
        local receipt, err = connect(srv.port):send(message("x"))
        assert.is_nil(receipt)
        assert.are.equal("tls", err.kind)
        assert.are.equal("starttls", err.stage)
        assert.are.equal(454, err.code)
        assert.are.equal("4.7.0", err.enhanced)
        assert.is_true(err.transient)
        local seen = verbs(srv)
        assert.are.equal("STARTTLS", seen[2])
        assert.truthy(#seen == 2 or (#seen == 3 and seen[3] == "QUIT"), table.concat(seen, " "))
      end)
    end)

    it("detects replies injected behind the 220 and stops before any handshake", function()
      with_server(cert("server", { starttls = "inject" }), function(srv)
        local receipt, err = connect(srv.port):send(message("x"))
        assert.is_nil(receipt)
        assert.are.equal("tls", err.kind)
        assert.are.equal("starttls", err.stage)
        assert.truthy(err.message:find("injection", 1, true), err.message)
        assert.truthy(err.hint:find("tamper", 1, true), err.hint)
        assert.are.same({ "EHLO", "STARTTLS" }, verbs(srv))
        assert.are.same({}, srv:records_of("tls"))
      end)
    end)

    it("goes on in plaintext when opportunistic and the server has no STARTTLS", function()
      for _, mode in ipairs({ "strip", "refuse" }) do
        with_server(cert("server", { starttls = mode }), function(srv)
          local conn = connect(srv.port, starttls("opportunistic"))
          local report = assert(conn:test())
          assert.is_nil(report.tls)
          assert(conn:send(message("x")))
          assert.is_nil(srv:messages()[1].tls)
        end)
      end
    end)

    it("uses TLS when opportunistic and the server offers it", function()
      with_server(cert("server", { starttls = "ok" }), function(srv)
        local conn = connect(srv.port, starttls("opportunistic"))
        local report = assert(conn:test())
        assert.are.equal("opportunistic", report.tls.mode)
        assert.is_true(report.tls.verified)
        assert(conn:send(message("x")))
        assert.is_true(srv:messages()[1].tls)
      end)
    end)
  end)

  describe("a mode that does not fit the port", function()
    it("implicit TLS against a plaintext port: says so and suggests explicit", function()
      local report, err = implicit(ports.plain):test()
      assert.is_nil(report)
      assert.are.equal("tls", err.kind)
      assert.are.equal("connect", err.stage)
      assert.truthy(err.message:find("plaintext", 1, true), err.message)
      assert.truthy(err.hint:find("explicit", 1, true), err.hint)
    end)

    it("STARTTLS against an implicit TLS port: a timeout at the greeting that suggests implicit", function()
      local t0 = core.clock()
      local report, err = connect(ports.implicit, nil, { timeout = 1 }):test()
      local elapsed = core.clock() - t0
      assert.is_nil(report)
      assert.are.equal("timeout", err.kind)
      assert.are.equal("greeting", err.stage)
      assert.truthy(err.hint:find("implicit", 1, true), err.hint)
      assert.is_true(elapsed >= 1 and elapsed < 2.5, "took " .. elapsed .. " s")
    end)

    it("a handshake that stalls times out", function()
      with_server({ silent = true }, function(srv)
        local t0 = core.clock()
        local report, err = implicit(srv.port, nil, { timeout = 1 }):test()
        local elapsed = core.clock() - t0
        assert.is_nil(report)
        assert.are.equal("timeout", err.kind)
        assert.is_true(err.transient)
        assert.is_true(elapsed >= 1 and elapsed < 2.5, "took " .. elapsed .. " s")
      end)
    end)
  end)
end)
