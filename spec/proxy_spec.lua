-- Proxies against real ones, carrying sessions to the private Postfix:
-- danted (SOCKS4 and SOCKS5, with and without username/password), tinyproxy
-- (HTTP CONNECT, with and without Basic authentication) and socks4a.py
-- (SOCKS4a, and scripted misbehaviour), all started by make spec
-- (spec/support/proxies.sh; server.proxies() has their ports).
local smtp = require "smtp"
local core = require "smtp.core"
local server = require "spec.support.server"

local pf, ports, px, ca

local serial = 0
local function tag(what)
  serial = serial + 1
  return string.format("proxy-%s-%d-%d-%d", what, os.time(), serial, math.random(1e9))
end

local function message(subject)
  return { from = "sender@example.test", to = "rcpt@example.test", subject = subject, text = "through a proxy\n" }
end

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = type(v) == "table" and copy(v) or v end
  return out
end

-- The proxies every session goes through: what a user sets (the port is a
-- key of server.proxies().ports) and what report.proxy.target must say.
local VIA = {
  { name = "SOCKS4 (danted)", type = "socks4", port = "socks", target = "127.0.0.1" },
  { name = "SOCKS4a (socks4a.py)", type = "socks4a", port = "socks4a", target = "localhost" },
  { name = "SOCKS5 (danted)", type = "socks5", port = "socks", target = "localhost" },
  { name = "SOCKS5 with username and password (danted)", type = "socks5", port = "socks_auth", auth = true,
    target = "localhost" },
  { name = "HTTP CONNECT (tinyproxy)", type = "http", port = "http", target = "localhost" },
  { name = "HTTP CONNECT with Basic authentication (tinyproxy)", type = "http", port = "http_auth", auth = true,
    target = "localhost" },
}

-- The proxy option for one of VIA; extra entries override (false: unset).
local function proxy(via, extra)
  local p = { type = via.type, address = px.host, port = px.ports[via.port] }
  if via.auth then p.username, p.password = px.user, px.password end
  for k, v in pairs(extra or {}) do
    if v == false then p[k] = nil else p[k] = v end
  end
  return p
end

local function by_type(ptype, port)
  for _, via in ipairs(VIA) do
    if via.type == ptype and (port == nil or via.port == port) then return via end
  end
end

-- A connection to Postfix (localhost, so that the certificate's name
-- matches) through a proxy; extra entries override.
local function connect(p, extra)
  local t = { address = "localhost", port = ports.plain, timeout = 5, tls = { protocol = "none" }, proxy = p }
  for k, v in pairs(extra or {}) do t[k] = v end
  return smtp.connection(t)
end

-- The session kinds Postfix offers: its port, and tls options.
local SESSIONS = {
  { name = "plaintext", port = "plain", tls = { protocol = "none" } },
  { name = "implicit TLS", port = "implicit", tls = { mode = "implicit" } },
  { name = "STARTTLS", port = "starttls", tls = { mode = "explicit" } },
}

local function session_options(session)
  local tls = copy(session.tls)
  if tls.protocol ~= "none" then tls.cafile = ca end
  return { port = ports[session.port], tls = tls }
end

-- The Received header Postfix added (unfolded).
local function received(raw)
  return (raw:match("\nReceived: (.-)\r?\n%S") or raw:match("^Received: (.-)\r?\n%S") or ""):gsub("%s+", " ")
end

local function has_ipv6_loopback()
  local f, v6 = io.open("/proc/net/if_inet6"), false
  if f then
    for line in f:lines() do v6 = v6 or line:find("^0+1 .* lo$") ~= nil end
    f:close()
  end
  return v6
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- The socks4a.py records of the user id given (each test uses its own).
local function logged(userid, records)
  local out = {}
  for _, r in ipairs(records or server.socks4a_log()) do
    if r.userid == userid then out[#out + 1] = r end
  end
  return out
end

local function with_socks4a(opts, fn)
  local p = server.socks4a(opts)
  local ok, err = pcall(fn, p)
  p:stop()
  if not ok then error(err, 0) end
end

-- The names of the report's stages, "!" marking one that failed.
local function stage_names(report)
  local t = {}
  for i, st in ipairs(report.stages) do t[i] = st.name .. (st.ok and "" or "!") end
  return table.concat(t, " ")
end

-- A failure at stage connect of the given kind, its message holding every
-- word of words, its hint every word of hint_words; partial (the report
-- test() returns with a failure), when given, ends with the proxy stage
-- failed for a proxy error.
local function assert_failed(report, err, kind, words, hint_words, partial)
  assert.is_nil(report)
  assert.is_true(smtp.is_error(err), tostring(err))
  assert.are.equal(kind, err.kind, tostring(err))
  assert.are.equal("connect", err.stage, tostring(err))
  for _, w in ipairs(words or {}) do
    assert.truthy(err.message:find(w, 1, true), "message lacks " .. w .. ": " .. err.message)
  end
  for _, w in ipairs(hint_words or {}) do
    assert.truthy((err.hint or ""):find(w, 1, true), "hint lacks " .. w .. ": " .. tostring(err.hint))
  end
  if partial and kind == "proxy" then
    local last = partial.stages[#partial.stages]
    assert.are.equal("proxy", last.name, stage_names(partial))
    assert.is_false(last.ok)
    assert.are.equal(err.message, last.detail)
  end
end

-- The long name: one label over 63 octets, which no resolver looks up.
local UNRESOLVABLE = string.rep("a", 64) .. ".example.com"

describe("proxy", function()
  setup(function()
    pf = server.postfix()
    ports, ca = pf.ports, pf.certs .. "/ca.pem"
    px = server.proxies()
  end)

  describe("carries whole sessions to Postfix", function()
    for _, via in ipairs(VIA) do
      for _, session in ipairs(SESSIONS) do
        it("over " .. session.name .. " through " .. via.name .. ": test() reports the proxy, send() delivers",
          function()
          local conn = connect(proxy(via), session_options(session))
          local report = assert(conn:test())
          local p = report.proxy
          assert.are.equal(via.type, p.type)
          assert.are.equal(px.host, p.address)
          assert.are.equal(px.ports[via.port], p.port)
          assert.are.equal(via.target, p.target)
          assert.are.equal("127.0.0.1", p.resolved)
          assert.is_number(p.time)
          assert.is_true(p.time >= 0)
          -- The proxy hop is a stage of its own (where it goes among the
          -- others is the business of the coalesce test below: that
          -- depends on whether the greeting came with the proxy's reply).
          local hops = 0
          for _, st in ipairs(report.stages) do
            if st.name == "proxy" then
              hops = hops + 1
              assert.is_true(st.ok)
              assert.truthy(st.detail:find(via.target, 1, true), st.detail)
              assert.are.equal(p.time, st.time)
            end
          end
          assert.are.equal(1, hops, stage_names(report))
          assert.are.equal("mx.example.test", report.ehlo.domain)
          if session.tls.protocol == "none" then
            assert.is_nil(report.tls)
          else
            assert.are.equal(session.tls.mode, report.tls.mode)
            assert.is_true(report.tls.verified)
            assert.are.same({}, report.tls.problems)
          end
          local subject = tag(via.type .. "-" .. session.port)
          local receipt = assert(conn:send(message(subject)))
          assert.is_string(receipt.queue_id)
          local hdr = received(server.postfix_wait(subject))
          if report.tls then
            assert.truthy(hdr:find("(using " .. report.tls.version .. " with cipher ", 1, true), hdr)
          else
            assert.falsy(hdr:find("(using ", 1, true), hdr)
          end
        end)
      end
    end

    it("keeps one session open through the proxy for several messages", function()
      local s = assert(connect(proxy(by_type("socks5", "socks_auth")), session_options(SESSIONS[3])):open())
      local subjects = { tag("open-1"), tag("open-2"), tag("open-3") }
      for _, subject in ipairs(subjects) do assert(s:send(message(subject))) end
      s:close()
      for _, subject in ipairs(subjects) do server.postfix_wait(subject) end
    end)

    it("reaches Postfix at the IPv6 literal ::1 through SOCKS5 and HTTP CONNECT", function()
      if not has_ipv6_loopback() then
        pending("no IPv6 loopback here")
        return
      end
      for _, via in ipairs({ by_type("socks5", "socks"), by_type("socks5", "socks_auth"), by_type("http", "http"),
                             by_type("http", "http_auth") }) do
        local conn = connect(proxy(via), { address = "::1" })
        local report = assert(conn:test())
        assert.are.equal("::1", report.proxy.target)
        assert.are.equal("127.0.0.1", report.proxy.resolved)
        -- Postfix names its client: the proxy, which came over IPv6.
        local subject = tag("v6-" .. via.port)
        assert(conn:send(message(subject)))
        local hdr = received(server.postfix_wait(subject))
        assert.truthy(hdr:find("[IPv6:::1]", 1, true), via.name .. ": " .. hdr)
      end
    end)
  end)

  describe("leaves name lookups to the proxy", function()
    it("sends the name itself with SOCKS4a, and an address looked up here with SOCKS4", function()
      local id4a, id4 = tag("name-4a"), tag("name-4")
      local report = assert(connect(proxy(by_type("socks4a"), { username = id4a })):test())
      assert.are.equal("localhost", report.proxy.target)
      report = assert(connect(proxy(by_type("socks4a"), { type = "socks4", username = id4 })):test())
      assert.are.equal("127.0.0.1", report.proxy.target)
      local records = server.socks4a_log()
      local r = logged(id4a, records)
      assert.are.equal(1, #r)
      assert.are.same({ host = "localhost", port = ports.plain, name = true, result = "granted" },
        { host = r[1].host, port = r[1].port, name = r[1].name, result = r[1].result })
      r = logged(id4, records)
      assert.are.equal(1, #r)
      assert.are.same({ host = "127.0.0.1", port = ports.plain, name = false, result = "granted" },
        { host = r[1].host, port = r[1].port, name = r[1].name, result = r[1].result })
    end)

    it("does not resolve here for SOCKS4a, SOCKS5 and HTTP: a name only the proxy tries fails at the proxy", function()
      -- Without a proxy, and with SOCKS4 (which must resolve first), the
      -- name fails here, as a dns error.
      local report, err = smtp.connection { address = UNRESOLVABLE, port = ports.plain, timeout = 5,
        tls = { protocol = "none" } }:test()
      assert_failed(report, err, "dns", { UNRESOLVABLE })
      report, err = connect(proxy(by_type("socks4")), { address = UNRESOLVABLE }):test()
      assert_failed(report, err, "dns", { UNRESOLVABLE })
      -- socks4a.py logs the name it got under this user id.
      local id = tag("unresolvable")
      for _, via in ipairs({ by_type("socks4a"), by_type("socks5", "socks"), by_type("socks5", "socks_auth"),
                             by_type("http", "http"), by_type("http", "http_auth") }) do
        report, err = connect(proxy(via, { username = via.type == "socks4a" and id or nil }),
          { address = UNRESOLVABLE }):test()
        assert.is_nil(report)
        assert.are.equal("proxy", err.kind, via.name .. ": " .. tostring(err))
        assert.are.equal("connect", err.stage)
      end
      local r = logged(id)
      assert.are.equal(1, #r)
      assert.are.equal(UNRESOLVABLE, r[1].host)
      assert.is_true(r[1].name)
      assert.are.equal("unreachable", r[1].result)
    end)
  end)

  it("fails an IPv6 destination for SOCKS4 and SOCKS4a, which cannot carry one, before asking the proxy", function()
    with_socks4a({}, function(p)
      for _, ptype in ipairs({ "socks4", "socks4a" }) do
        local ok, report, err = pcall(function()
          return connect({ type = ptype, address = p.host, port = p.port }, { address = "::1" }):test()
        end)
        if ok then
          assert.is_nil(report)
          assert.are.equal("connect", err.stage, tostring(err))
          assert.truthy(err.kind == "proxy" or err.kind == "dns", tostring(err))
        else
          assert.truthy(report:find("IPv6", 1, true), report)
        end
      end
      assert.are.same({}, p:records())
    end)
  end)

  describe("credentials", function()
    it("wrong for SOCKS5: says so (RFC 1929) and points at proxy.username, never showing the password", function()
      local wrong = "not-the-" .. px.password
      local report, err, partial = connect(proxy(by_type("socks5", "socks_auth"), { password = wrong })):test()
      assert_failed(report, err, "proxy", { "the proxy refused", "username or password", "RFC 1929" },
        { "proxy.username", "proxy.password" }, partial)
      assert.is_false(err.transient)
      assert.falsy(tostring(err):find(wrong, 1, true))
      report, err, partial = connect(proxy(by_type("socks5", "socks_auth"), { username = "nobody-" .. px.user })):test()
      assert_failed(report, err, "proxy", { "RFC 1929" }, { "proxy.username" }, partial)
    end)

    it("wrong for HTTP: the proxy's 401 or 407, and a hint about the credentials", function()
      local wrong = "not-the-" .. px.password
      local report, err, partial = connect(proxy(by_type("http", "http_auth"), { password = wrong })):test()
      assert_failed(report, err, "proxy", { "the proxy refused", "credentials" },
        { "proxy.username", "proxy.password" }, partial)
      assert.truthy(err.message:find("401", 1, true) or err.message:find("407", 1, true), err.message)
      assert.is_false(err.transient)
      assert.falsy(tostring(err):find(wrong, 1, true))
    end)

    it("missing where the proxy wants them: a proxy error, SOCKS5 and HTTP alike", function()
      local none = { username = false, password = false }
      local report, err, partial = connect(proxy(by_type("socks5", "socks_auth"), none)):test()
      assert_failed(report, err, "proxy", { "the proxy refused", "authentication" }, nil, partial)
      report, err, partial = connect(proxy(by_type("http", "http_auth"), none)):test()
      assert_failed(report, err, "proxy", { "the proxy refused", "407" }, { "proxy.username" }, partial)
    end)
  end)

  describe("a destination the proxy will not or cannot reach", function()
    it("is refused by dante's rules without a connection attempt (SOCKS5 reply 2, SOCKS4 91)", function()
      -- proxies.sh lets dante reach 127.0.0.0/8 and ::1 only and blocks the
      -- rest by rule, before connecting: 192.0.2.1 (TEST-NET-1) gets no packet.
      local elsewhere = { address = "192.0.2.1", port = 25 }
      local report, err, partial = connect(proxy(by_type("socks5", "socks")), elsewhere):test()
      assert_failed(report, err, "proxy", { "the proxy refused", "not allowed by ruleset", "reply 2" }, nil, partial)
      report, err, partial = connect(proxy(by_type("socks4")), elsewhere):test()
      assert_failed(report, err, "proxy", { "the proxy refused", "91" }, nil, partial)
      local blocked = 0
      for line in read_file(px.dir .. "/danted-socks.log"):gmatch("[^\n]+") do
        if line:find("block(", 1, true) and line:find("192.0.2.1.25", 1, true) then blocked = blocked + 1 end
      end
      assert.is_true(blocked >= 2, "dante logged " .. blocked .. " blocks of 192.0.2.1.25")
    end)

    it("is a closed port: SOCKS5 says the proxy could not reach the server, HTTP gives tinyproxy's 500", function()
      local closed = { address = "127.0.0.1", port = server.free_port() }
      local report, err, partial = connect(proxy(by_type("socks5", "socks")), closed):test()
      assert_failed(report, err, "proxy", { "the proxy could not reach the server", "connection refused" },
        { "cannot reach the SMTP server" }, partial)
      report, err, partial = connect(proxy(by_type("http", "http")), closed):test()
      assert_failed(report, err, "proxy", { "500", "Unable to connect" }, nil, partial)
    end)
  end)

  describe("a misbehaving proxy", function()
    it("that closes at once: fails at stage connect", function()
      with_socks4a({ mode = "close" }, function(p)
        for _, ptype in ipairs({ "socks4", "socks4a" }) do
          local report, err = connect({ type = ptype, address = p.host, port = p.port }):test()
          assert.is_nil(report)
          assert.truthy(err.kind == "proxy" or err.kind == "closed", tostring(err))
          assert.are.equal("connect", err.stage)
          if err.kind == "proxy" then
            assert.truthy(err.message:find("closed the connection", 1, true), err.message)
          end
        end
        assert.are.equal(2, #p:records())
      end)
    end)

    it("that never answers: a timeout at stage connect, on time", function()
      -- A private socks4a.py that gives up after 4 s: a client that misses
      -- its own timeout then fails this test instead of hanging it.
      with_socks4a({ mode = "stall", stall_limit = 4 }, function(p)
        for _, ptype in ipairs({ "socks4", "socks4a" }) do
          local t0 = core.clock()
          local report, err = connect({ type = ptype, address = p.host, port = p.port }, { timeout = 1 }):test()
          local elapsed = core.clock() - t0
          assert_failed(report, err, "timeout")
          assert.is_true(err.transient)
          assert.is_true(elapsed >= 1 and elapsed < 2.5, ptype .. " took " .. elapsed .. " s")
        end
      end)
    end)

    it("that answers garbage: a proxy error about a malformed reply", function()
      for _, ptype in ipairs({ "socks4", "socks4a" }) do
        local report, err, partial = connect(proxy(by_type("socks4a"), { type = ptype, username = "garbage" })):test()
        assert_failed(report, err, "proxy", { "malformed" }, nil, partial)
      end
      local r = logged("garbage")
      assert.are.equal("garbage", r[#r].result)
    end)

    it("that refuses (SOCKS4 reply 91): a proxy error", function()
      for _, ptype in ipairs({ "socks4", "socks4a" }) do
        local report, err, partial = connect(proxy(by_type("socks4a"), { type = ptype, username = "refuse" })):test()
        assert_failed(report, err, "proxy", { "the proxy refused", "91" }, nil, partial)
      end
      local r = logged("refuse")
      assert.are.equal("refused", r[#r].result)
    end)
  end)

  it("that is down: a proxy error naming the proxy, with a hint about proxy.address and proxy.port", function()
    local port = server.free_port()
    for _, ptype in ipairs({ "socks4", "socks4a", "socks5", "http" }) do
      local report, err, partial = connect({ type = ptype, address = "127.0.0.1", port = port }):test()
      assert_failed(report, err, "proxy", { "proxy", tostring(port) }, { "proxy.address", "proxy.port" }, partial)
    end
  end)

  it("hands the bytes that come behind its final reply to the session (the greeting, in the same write)", function()
    -- danted and tinyproxy do this only by chance; socks4a.py's coalesce
    -- mode holds its reply until Postfix greets, and sends both at once.
    -- The report keeps the order of events: the hop, then the greeting.
    local before = #logged("coalesce")
    for _, ptype in ipairs({ "socks4", "socks4a" }) do
      for _, session in ipairs({ SESSIONS[1], SESSIONS[3] }) do
        local conn = connect(proxy(by_type("socks4a"), { type = ptype, username = "coalesce" }),
          session_options(session))
        local report = assert(conn:test())
        assert.truthy(report.banner:find("mx.example.test", 1, true), report.banner)
        local names = stage_names(report)
        assert.truthy(names:find("connect proxy greeting ehlo", 1, true), names)
        local subject = tag("coalesce-" .. ptype .. "-" .. session.port)
        assert(conn:send(message(subject)))
        server.postfix_wait(subject)
      end
    end
    local r = logged("coalesce")
    assert.are.equal(before + 8, #r)   -- test() and send(), four times
    for i = before + 1, #r do assert.are.equal("granted", r[i].result) end
  end)

  describe("options", function()
    local function raises(t, words)
      local ok, msg = pcall(smtp.connection, t)
      assert.is_false(ok)
      for _, w in ipairs(words) do
        assert.truthy(msg:find(w, 1, true), "error lacks " .. w .. ": " .. msg)
      end
    end

    local function with_proxy(p)
      return { address = "localhost", tls = { protocol = "none" }, proxy = p }
    end

    it("refuse what the proxy type cannot carry, and a password without a username", function()
      raises(with_proxy { type = "socks4", address = "127.0.0.1", username = "u", password = "secret" },
        { "proxy.password", "socks4" })
      raises(with_proxy { type = "socks4a", address = "127.0.0.1", username = "u", password = "secret" },
        { "proxy.password", "socks4a" })
      raises(with_proxy { type = "socks5", address = "127.0.0.1", username = "u", password = "p", domain = "CORP" },
        { "proxy.domain", "socks5" })
      raises(with_proxy { type = "http", address = "127.0.0.1", password = "secret" }, { "proxy.username" })
      raises(with_proxy { type = "socks6", address = "127.0.0.1" }, { "proxy.type", "socks5" })
      raises(with_proxy { type = "socks5" }, { "proxy.address" })
      raises(with_proxy { type = "socks5", address = "127.0.0.1", port = 70000 }, { "proxy.port" })
    end)

    it("refuse an unknown key, suggesting the one meant", function()
      raises(with_proxy { type = "socks5", address = "127.0.0.1", usernmae = "u" },
        { "unknown option proxy.usernmae", "did you mean proxy.username?" })
      raises(with_proxy { type = "http", adress = "127.0.0.1" }, { "did you mean proxy.address?" })
    end)

    it("default the port by type, and print the proxy without its password", function()
      local conn = smtp.connection(with_proxy { type = "socks5", address = "127.0.0.1", username = "u",
        password = "s3cret-pw" })
      local shown = tostring(conn)
      assert.truthy(shown:find("via socks5 proxy 127.0.0.1:1080", 1, true), shown)
      assert.falsy(shown:find("s3cret-pw", 1, true), shown)
      shown = tostring(smtp.connection(with_proxy { type = "http", address = "127.0.0.1" }))
      assert.truthy(shown:find("via http proxy 127.0.0.1:8080", 1, true), shown)
    end)
  end)
end)
