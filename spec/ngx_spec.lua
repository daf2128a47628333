-- smtp inside a real nginx with the Lua module (spec/support/nginx.sh,
-- started by make spec; its locations run spec/support/ngx_app.lua): the
-- cosocket transport chosen by itself, sends to the programmable server
-- and to the test Postfix (STARTTLS, implicit TLS, AUTH, a proxy), a worker
-- that keeps answering while a send waits, and the error in the phases
-- without cosockets.
local server = require "spec.support.server"
local json = require "spec.support.json"
local socket = require "socket"

local NGINX_PORT = tonumber(os.getenv("SMTP_TEST_NGINX_PORT") or "28180")

local function urlencode(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- path?k=v&... with the values encoded; a table value goes as JSON.
local function url(path, args)
  local keys, parts = {}, {}
  for k in pairs(args or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = args[k]
    if type(v) == "table" then v = json.encode(v) end
    parts[#parts + 1] = k .. "=" .. urlencode(tostring(v))
  end
  return #parts > 0 and path .. "?" .. table.concat(parts, "&") or path
end

-- Send a request and return the socket, to read the response later.
local function request(path, args)
  local c = assert(socket.connect("127.0.0.1", NGINX_PORT))
  c:settimeout(30)
  assert(c:send("GET " .. url(path, args) .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
  return c
end

-- status, body, headers (lower-case names) of a request sent by request().
local function response(c)
  local raw = assert(c:receive("*a"))
  c:close()
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  assert(head, "no HTTP response: " .. raw)
  local headers = {}
  for k, v in head:gmatch("\n([^:\r\n]+):[ \t]*([^\r\n]*)") do headers[k:lower()] = v end
  return tonumber(head:match("^HTTP/%d%.%d (%d+)")), body, headers
end

local function get(path, args)
  return response(request(path, args))
end

-- GET that must answer 200 with JSON.
local function get_json(path, args)
  local status, body = get(path, args)
  assert.are.equal(200, status, body)
  return json.decode(body)
end

local with_server = server.with

local serial = 0
local function tag(what)
  serial = serial + 1
  return string.format("ngx-%s-%d-%d-%d", what, os.time(), serial, math.random(1e9))
end

local function plain(srv, extra)
  local o = { address = srv.host, port = srv.port, timeout = 5, tls = { protocol = "none" } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- The Received header Postfix added (unfolded).
local function received(raw)
  return (raw:match("\nReceived: (.-)\r?\n%S") or raw:match("^Received: (.-)\r?\n%S") or ""):gsub("%s+", " ")
end

local function index_of(list, value)
  for i, v in ipairs(list) do
    if v == value then return i end
  end
  return nil
end

-- Poll until fn returns a value (nginx works in the background); bounded.
local function eventually(fn, what)
  for _ = 1, 200 do
    local v = fn()
    if v then return v end
    socket.sleep(0.05)
  end
  error("gave up waiting for " .. what, 2)
end

local function has_ipv6_loopback()
  local f, v6 = io.open("/proc/net/if_inet6"), false
  if f then
    for line in f:lines() do
      if line:find("^0+1 .* lo$") then v6 = true end
    end
    f:close()
  end
  return v6
end

describe("inside nginx (OpenResty cosockets)", function()
  setup(function()
    local ok, c = pcall(socket.connect, "127.0.0.1", NGINX_PORT)
    if not ok or not c then
      error("the test nginx is not running on 127.0.0.1:" .. NGINX_PORT .. "; make spec starts it "
        .. "(spec/support/nginx.sh start DIR " .. NGINX_PORT .. ")")
    end
    c:close()
  end)

  it("picks the cosocket transport in a content handler and keeps one session for several messages", function()
    with_server({}, function(srv)
      local subject = tag("session")
      local out = get_json("/send", { opts = plain(srv), count = 3, tag = subject })
      assert.are.equal("ngx", out.transport)
      assert.are.equal("content", out.phase)
      assert.are.equal(3, #out.results)
      for i, r in ipairs(out.results) do
        assert.are.equal(250, r.code, r.error)
        assert.is_string(r.queue_id)
        assert.truthy(srv:messages()[i].data:find("Subject: " .. subject .. "-" .. i, 1, true))
      end
      -- The peer address, known because the address is an IP literal.
      assert.are.equal("127.0.0.1", out.report.resolved)
      local connects = 0
      for _, r in ipairs(srv:records()) do
        if r.type == "connect" then connects = connects + 1 end
      end
      assert.are.equal(1, connects)
      assert.are.equal(3, #srv:messages())
    end)
  end)

  it("sends from access_by_lua and rewrite_by_lua too", function()
    with_server({}, function(srv)
      for _, where in ipairs({ "access", "rewrite" }) do
        local out = get_json("/" .. where .. "-send", { opts = plain(srv), tag = tag(where) })
        assert.are.equal("ngx", out.transport)
        assert.are.equal(where, out.phase)
        assert.are.equal(250, out.results[1].code, out.results[1].error)
      end
      assert.are.equal(2, #srv:messages())
    end)
  end)

  it("sends to Postfix with STARTTLS and AUTH (mbedTLS over the cosocket's bytes)", function()
    local pf = server.postfix()
    local subject = tag("starttls-auth")
    local out = get_json("/send", { tag = subject, opts = { address = "127.0.0.1", port = pf.ports.starttls,
      timeout = 5, tls = { cafile = pf.certs .. "/ca.pem", servername = "localhost" }, auth = pf.users.plain } })
    assert.are.equal(250, out.results[1].code, out.results[1].error)
    assert.is_string(out.report.tls)
    assert.is_string(out.report.auth)
    local hdr = received(server.postfix_wait(subject .. "-1"))
    assert.truthy(hdr:find("Authenticated sender: alice", 1, true), hdr)
    assert.truthy(hdr:find("using TLS", 1, true), hdr)
  end)

  it("sends to Postfix with implicit TLS and AUTH, several messages in one session", function()
    local pf = server.postfix()
    local subject = tag("implicit-auth")
    local out = get_json("/send", { tag = subject, count = 2, opts = { address = "127.0.0.1",
      port = pf.ports.implicit, timeout = 5, auth = pf.users.utf8,
      tls = { mode = "implicit", cafile = pf.certs .. "/ca.pem", servername = "localhost" } } })
    for i = 1, 2 do
      assert.are.equal(250, out.results[i].code, out.results[i].error)
      local hdr = received(server.postfix_wait(subject .. "-" .. i))
      assert.truthy(hdr:find("Authenticated sender: bob", 1, true), hdr)
    end
  end)

  it("sends through a SOCKS5 proxy over the cosocket", function()
    local pf, proxies = server.postfix(), server.proxies()
    local subject = tag("socks5")
    local out = get_json("/send", { tag = subject, opts = { address = "127.0.0.1", port = pf.ports.plain,
      timeout = 5, tls = { protocol = "none" },
      proxy = { type = "socks5", address = proxies.host, port = proxies.ports.socks } } })
    assert.are.equal(250, out.results[1].code, out.results[1].error)
    server.postfix_wait(subject .. "-1")
  end)

  it("keeps answering other requests while a send waits on a slow server", function()
    with_server({ reply_delay = 0.4 }, function(srv)
      local ev = tag("slow")
      local slow = request("/send", { opts = plain(srv), tag = ev, event = ev })
      -- Once the slow send is under way, five quick requests, one after another.
      eventually(function() return index_of(get_json("/events"), ev .. "-start") end, "the slow send to start")
      for i = 1, 5 do
        local status, body = get("/event", { event = ev .. "-fast-" .. i })
        assert.are.equal(200, status, body)
      end
      local status, body = response(slow)
      assert.are.equal(200, status, body)
      assert.are.equal(250, json.decode(body).results[1].code, body)
      local events = get_json("/events")
      local start, done = index_of(events, ev .. "-start"), index_of(events, ev .. "-done")
      for i = 1, 5 do
        local fast = index_of(events, ev .. "-fast-" .. i)
        assert.is_true(start < fast and fast < done, "fast request " .. i .. " waited for the slow send: "
          .. table.concat(events, " "))
      end
    end)
  end)

  it("(the same check catches a transport that blocks the worker: the built-in socket)", function()
    with_server({ reply_delay = 0.2 }, function(srv)
      local ev = tag("blocking")
      local slow = request("/send", { opts = plain(srv, { transport = "builtin" }), tag = ev, event = ev })
      eventually(function() return index_of(get_json("/events"), ev .. "-start") end, "the slow send to start")
      local status = get("/event", { event = ev .. "-fast" })
      assert.are.equal(200, status)
      local _, body = response(slow)
      assert.are.equal(250, json.decode(body).results[1].code, body)
      local events = get_json("/events")
      assert.is_true(index_of(events, ev .. "-done") < index_of(events, ev .. "-fast"), table.concat(events, " "))
    end)
  end)

  it("honours the timeout through the cosocket's timeouts", function()
    with_server({ silent = true }, function(srv)
      local out = get_json("/send", { opts = plain(srv, { timeout = 0.5 }) })
      local r = out.results[1]
      assert.are.equal("timeout", r.kind, r.error)
      assert.are.equal("greeting", r.stage, r.error)
    end)
  end)

  it("maps connect failures to kinds: refused is connect, an unresolvable name is dns", function()
    local refused = get_json("/send", { opts = { address = "127.0.0.1", port = server.free_port(), timeout = 5,
      tls = { protocol = "none" } } }).results[1]
    assert.are.equal("connect", refused.kind, refused.error)
    assert.are.equal("connect", refused.stage)
    local dns = get_json("/send", { opts = { address = "no-such-host.invalid", port = 25, timeout = 5,
      tls = { protocol = "none" } } }).results[1]
    assert.are.equal("dns", dns.kind, dns.error)
    assert.truthy(dns.message:find("resolver", 1, true), dns.message)
  end)

  if has_ipv6_loopback() then
    it("connects to an IPv6 literal", function()
      with_server({ host = "::1" }, function(srv)
        local out = get_json("/send", { opts = plain(srv), tag = tag("v6") })
        assert.are.equal(250, out.results[1].code, out.results[1].error)
        assert.are.equal("::1", out.report.resolved)
        assert.are.equal(6, out.report.family)
      end)
    end)
  end

  it("sends from an ngx.timer.at callback", function()
    with_server({}, function(srv)
      local key, subject = tag("timer-key"), tag("timer")
      local status, body = get("/timer", { opts = plain(srv), tag = subject, key = key })
      assert.are.equal(200, status)
      assert.are.equal("scheduled\n", body)
      local out = json.decode(eventually(function()
        local st, b = get("/result", { key = key })
        return st == 200 and b
      end, "the timer's send"))
      assert.are.equal("timer", out.phase, out.crash)
      assert.are.equal("ngx", out.transport)
      assert.are.equal(250, out.results[1].code, out.results[1].error)
      assert.truthy(srv:messages()[1].data:find("Subject: " .. subject .. "-1", 1, true))
    end)
  end)

  it("uses a connection described in init_by_lua from a content handler", function()
    local subject = tag("init")
    local out = get_json("/init-conn", { tag = subject })
    assert.are.equal("ngx", out.init_transport)
    assert.are.equal(250, out.result.code, out.result.error)
    server.postfix_wait(subject)
  end)

  describe("in a phase without cosockets, returns a connect error that suggests ngx.timer.at", function()
    local opts = { address = "127.0.0.1", port = 25, timeout = 5, tls = { protocol = "none" } }
    local function check(text, phase)
      assert.truthy(text:find("connect error at connect", 1, true), text)
      assert.truthy(text:find("cosockets are not available in the " .. phase .. " phase", 1, true), text)
      assert.truthy(text:find("ngx.timer.at(0, function() conn:send(msg) end)", 1, true), text)
    end

    it("header_filter_by_lua", function()
      local status, body, headers = get("/header-filter", { opts = opts })
      assert.are.equal(200, status)
      assert.are.equal("body\n", body)
      check(headers["x-smtp-error"] or "(no X-Smtp-Error header)", "header_filter")
    end)

    it("set_by_lua", function()
      local status, body = get("/set", { opts = opts })
      assert.are.equal(200, status)
      check(body, "set")
    end)

    it("log_by_lua", function()
      local key = tag("log")
      local status = get("/log", { opts = opts, key = key })
      assert.are.equal(200, status)
      check(eventually(function()
        local st, b = get("/result", { key = key })
        return st == 200 and b
      end, "the log phase's result"), "log")
    end)
  end)
end)
