-- Transports other than the built-in socket: LuaSocket (blocking), LuaSocket
-- sockets driven by copas (several sends interleaved in one process), and a
-- transport written in the spec itself, against the programmable server.
-- (The cosocket transport runs inside nginx: spec/ngx_spec.lua.)
local smtp = require "smtp"
local server = require "spec.support.server"
local transports = require "smtp.transport"
local luasocket = require "smtp.transport.luasocket"
local builtin = require "smtp.transport.builtin"

local with_server = server.with

local function with_servers(scripts, fn)
  local servers = {}
  for i, s in ipairs(scripts) do servers[i] = server.start(s) end
  local ok, err = pcall(fn, servers)
  for _, srv in ipairs(servers) do srv:stop() end
  if not ok then error(err, 0) end
end

local function connect(srv, extra)
  local t = { address = srv.host, port = srv.port, timeout = 5, tls = { protocol = "none" } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return smtp.connection(t)
end

local function message(subject)
  return { from = "sender@example.com", to = "rcpt@example.com", subject = subject or "s", text = "hello\n" }
end

local function ehlo_of(srv)
  for _, c in ipairs(srv:commands()) do
    if c.line:find("^EHLO ") then return c.line:sub(6) end
  end
end

-- Debian packages copas for Lua 5.1 (and LuaJIT) and 5.2 only; it is plain
-- Lua that runs on 5.3 and 5.4 too, so take it (and coxpcall) from there.
local function load_copas()
  local ok, copas = pcall(require, "copas")
  if ok then return copas end
  local saved = package.path
  package.path = package.path .. ";/usr/share/lua/5.1/?.lua"
  ok, copas = pcall(require, "copas")
  package.path = saved
  return ok and copas or nil
end

describe("transport selection", function()
  it("takes the built-in socket outside nginx, and the others by name or as a table", function()
    assert.are.equal(builtin, transports.resolve(nil))
    assert.are.equal(builtin, transports.resolve("builtin"))
    assert.are.equal(luasocket, transports.resolve("luasocket"))
    assert.are.equal(require("smtp.transport.ngx"), transports.resolve("ngx"))
    local custom = { connect = function() end }
    assert.are.equal(custom, transports.resolve(custom))
  end)

  it("raises at connection() for a transport that is none of those", function()
    assert.has_error(function() smtp.connection { address = "127.0.0.1", transport = "copas" } end,
      'smtp.connection: transport must be unset, "builtin", "luasocket", "ngx", or a table with a connect '
        .. 'function, got "copas"')
    assert.has_error(function() smtp.connection { address = "127.0.0.1", transport = {} } end)
  end)

  it("refuses the cosocket transport outside nginx, at connect time, with a connect error", function()
    local report, err = smtp.connection { address = "127.0.0.1", port = 25, transport = "ngx",
      tls = { protocol = "none" } }:test()
    assert.is_nil(report)
    assert.are.equal("connect", err.kind)
    assert.are.equal("connect", err.stage)
    assert.truthy(err.message:find("needs OpenResty", 1, true), err.message)
  end)
end)

describe("the luasocket transport (blocking LuaSocket)", function()
  it("sends a message and reports the peer and our address as LuaSocket sees them", function()
    with_server({}, function(srv)
      local conn = connect(srv, { transport = "luasocket" })
      local report = assert(conn:test())
      assert.are.equal("127.0.0.1", report.resolved)
      assert.are.equal(4, report.family)
      local receipt = assert(conn:send(message("over luasocket")))
      assert.are.equal(250, receipt.reply.code)
      assert.truthy(srv:messages()[1].data:find("Subject: over luasocket", 1, true))
      -- The default EHLO name is our address literal, from getsockname.
      assert.are.equal("[127.0.0.1]", ehlo_of(srv))
    end)
  end)

  it("streams a 1 MB body and many replies one byte at a time", function()
    with_server({ split_replies = true }, function(srv)
      local text = string.rep(string.rep("x", 99) .. "\n", 10000)
      local s = assert(connect(srv, { transport = "luasocket" }):open())
      for i = 1, 2 do
        assert(s:send { from = "a@example.com", to = "b@example.com", subject = "big" .. i, text = text })
      end
      s:close()
      local m = srv:messages()
      assert.are.equal(2, #m)
      assert.are.equal(#text + 10000, #m[2].data:match("\r\n\r\n(.*)$"))
    end)
  end)

  it("does implicit TLS and STARTTLS over LuaSocket's bytes", function()
    local certs = server.postfix().certs
    local ca = certs .. "/ca.pem"
    local keys = { cert = certs .. "/server.pem", key = certs .. "/server.key" }
    with_server({ implicit = true, cert = keys.cert, key = keys.key }, function(srv)
      local report = assert(connect(srv, { transport = "luasocket", address = "localhost",
        tls = { mode = "implicit", cafile = ca } }):test())
      assert.is_true(report.tls.verified)
      assert(connect(srv, { transport = "luasocket", address = "localhost",
        tls = { mode = "implicit", cafile = ca } }):send(message("implicit")))
      assert.is_true(srv:messages()[1].tls)
    end)
    with_server({ starttls = "ok", cert = keys.cert, key = keys.key }, function(srv)
      assert(connect(srv, { transport = "luasocket", address = "localhost", tls = { cafile = ca } })
        :send(message("starttls")))
      assert.is_true(srv:messages()[1].tls)
    end)
  end)

  it("maps failures to the error kinds: refused, unresolvable, silent, closed", function()
    local _, err = smtp.connection { address = "127.0.0.1", port = server.free_port(), timeout = 5,
      tls = { protocol = "none" }, transport = "luasocket" }:test()
    assert.are.equal("connect", err.kind)
    _, err = smtp.connection { address = "no-such-host.invalid", port = 25, timeout = 5,
      tls = { protocol = "none" }, transport = "luasocket" }:test()
    assert.are.equal("dns", err.kind)
    with_server({ silent = true }, function(srv)
      _, err = connect(srv, { transport = "luasocket", timeout = 0.3 }):test()
      assert.are.equal("timeout", err.kind)
      assert.are.equal("greeting", err.stage)
    end)
    with_server({ close_after = "greeting" }, function(srv)
      _, err = connect(srv, { transport = "luasocket" }):test()
      assert.are.equal("closed", err.kind)
      assert.are.equal("ehlo", err.stage)
    end)
  end)

  it("reads with receivepartial when the socket object has it (copas 3 and later)", function()
    local socket = require "socket"
    local calls = 0
    -- Like copas's: some bytes as soon as they arrive, as the partial result.
    local function create()
      local raw, timeout = socket.tcp(), nil
      return {
        settimeout = function(_, t) timeout = t end,
        connect = function(_, host, port) raw:settimeout(timeout); return raw:connect(host, port) end,
        send = function(_, data, i) raw:settimeout(timeout); return raw:send(data, i) end,
        close = function() raw:close() end,
        receivepartial = function(_, n)
          calls = calls + 1
          raw:settimeout(timeout)
          local first, err, part = raw:receive(1)
          if not first then return nil, err, part end
          raw:settimeout(0)
          local more, _, rest = raw:receive(n)
          return nil, "timeout", first .. (more or rest)
        end,
      }
    end
    with_server({}, function(srv)
      assert(connect(srv, { transport = luasocket.new { create = create } }):send(message("partial")))
      assert.truthy(srv:messages()[1].data:find("Subject: partial", 1, true))
      assert.is_true(calls >= 5)
      -- No getpeername: no address literal for EHLO.
      assert.are.equal("localhost", ehlo_of(srv))
    end)
  end)

  it("raises at new() for options that are not functions", function()
    assert.has_error(function() luasocket.new { create = "socket.tcp" } end,
      "smtp.transport.luasocket.new: create must be a function")
    assert.has_error(function() luasocket.new { connect = 1 } end,
      "smtp.transport.luasocket.new: connect must be a function")
  end)
end)

describe("the luasocket transport under copas", function()
  local copas = load_copas()
  if not copas then
    pending("copas is not installed (Debian: lua-copas)")
    return
  end
  local socket = require "socket"
  -- Lua 5.1's pcall cannot be yielded across; copas brings coxpcall, whose can.
  local copcall = package.loaded.coxpcall and package.loaded.coxpcall.pcall or pcall

  -- copas 1.x wraps without a connect method: connect the raw socket the copas way.
  local transport = luasocket.new {
    create = function() return copas.wrap(socket.tcp()) end,
    connect = function(s, host, port) return copas.connect(s.socket, host, port) end,
  }

  it("runs several sends at once in one process, interleaved", function()
    local delay, n = 0.2, 3
    local scripts = {}
    for i = 1, n do scripts[i] = { reply_delay = delay } end
    with_servers(scripts, function(servers)
      local events, receipts, errs, done = {}, {}, {}, 0
      for i, srv in ipairs(servers) do
        local conn = connect(srv, { transport = transport, trace = function(dir, line)
          events[#events + 1] = { send = i, dir = dir, line = line }
        end })
        copas.addthread(function()
          events[#events + 1] = { send = i, dir = "start" }
          local ok, r, e = copcall(conn.send, conn, message("copas " .. i))
          receipts[i], errs[i] = ok and r, ok and e or r
          events[#events + 1] = { send = i, dir = "end" }
          done = done + 1
        end)
      end
      local t0 = socket.gettime()
      while done < n do
        assert(socket.gettime() - t0 < 30, "the copas sends did not finish in 30 s")
        copas.step(0.1)
      end
      for i = 1, n do
        assert(receipts[i], tostring(errs[i]))
        assert.truthy(servers[i]:messages()[1].data:find("Subject: copas " .. i, 1, true))
      end
      -- Each send waits for six replies; had they run one after another,
      -- every event of one would come before every event of the next.
      -- Instead each one's first server reply comes before any one ends.
      local first_reply, last = {}, {}
      for k, e in ipairs(events) do
        if e.dir == "S" and not first_reply[e.send] then first_reply[e.send] = k end
        if e.dir == "end" then last[e.send] = k end
      end
      local lines = {}
      for k, e in ipairs(events) do lines[k] = e.send .. e.dir .. " " .. (e.line or "") end
      for i = 1, n do
        for j = 1, n do
          assert.is_true(first_reply[i] < last[j], "send " .. i .. " started after send " .. j
            .. " ended:\n" .. table.concat(lines, "\n"))
        end
      end
    end)
  end)
end)

describe("a transport written by the user", function()
  -- A tiny one: the built-in socket, counted, without info().
  local function counting()
    local counts = { connect = 0, read = 0, write = 0, close = 0 }
    local t = {}
    function t.connect(host, port, timeout)
      counts.connect = counts.connect + 1
      local inner, kind, msg = builtin.connect(host, port, timeout)
      if not inner then return nil, kind, msg end
      return {
        read = function(_, max, tmo)
          counts.read = counts.read + 1
          return inner:read(max, tmo)
        end,
        write = function(_, bytes, tmo)
          counts.write = counts.write + 1
          return inner:write(bytes, tmo)
        end,
        close = function()
          counts.close = counts.close + 1
          inner:close()
        end,
      }
    end
    return t, counts
  end

  it("moves every byte of a session, with no info() (the session does without)", function()
    with_server({}, function(srv)
      local t, counts = counting()
      local conn = connect(srv, { transport = t })
      local report = assert(conn:test())
      assert.is_nil(report.resolved)
      assert(conn:send(message("custom")))
      assert.are.equal(2, counts.connect)
      assert.are.equal(2, counts.close)
      assert.is_true(counts.read >= 6 and counts.write >= 4)
      assert.truthy(srv:messages()[1].data:find("Subject: custom", 1, true))
      assert.are.equal("localhost", ehlo_of(srv))
    end)
  end)

  it("runs in a game loop's own scheduler (the README's): sends progress between frames, side by side", function()
    local loop = require "spec.support.game_loop"
    local socket = require "socket"
    with_servers({ { reply_delay = 0.1 }, { reply_delay = 0.1 } }, function(servers)
      local results, order, cos = {}, {}, {}
      for i, srv in ipairs(servers) do
        local conn = connect(srv, { transport = loop.transport, trace = function() order[#order + 1] = i end })
        cos[i] = coroutine.create(function() results[i] = { conn:send(message("frame " .. i)) } end)
        assert(coroutine.resume(cos[i]))
      end
      local frames = 0
      while coroutine.status(cos[1]) ~= "dead" or coroutine.status(cos[2]) ~= "dead" do
        loop.tick()
        frames = frames + 1
        assert(frames < 20000, "the sends did not finish")
        socket.sleep(0.005)
      end
      for i = 1, 2 do
        assert(results[i][1], tostring(results[i][2]))
        assert.truthy(servers[i]:messages()[1].data:find("Subject: frame " .. i, 1, true))
      end
      -- The loop kept turning while the sends waited, and they took turns.
      assert.is_true(frames > 10, frames .. " frames")
      local switches = 0
      for k = 2, #order do
        if order[k] ~= order[k - 1] then switches = switches + 1 end
      end
      assert.is_true(switches >= 4, "the trace of the two sends: " .. table.concat(order, " "))
    end)
  end)

  it("hands its connect failure up as the error, kind and message", function()
    local t = { connect = function() return nil, "connect", "the game server's network layer is down" end }
    local _, err = smtp.connection { address = "127.0.0.1", port = 25, transport = t,
      tls = { protocol = "none" } }:test()
    assert.are.equal("connect", err.kind)
    assert.are.equal("connect", err.stage)
    assert.are.equal("the game server's network layer is down", err.message)
  end)

  it("hands read failures up: a timeout from the transport is a timeout error", function()
    with_server({}, function(srv)
      local t = { connect = function(host, port, timeout)
        local inner = assert(builtin.connect(host, port, timeout))
        return { read = function() return nil, "timeout", "no bytes in time" end,
          write = function(_, b, tmo) return inner:write(b, tmo) end, close = function() inner:close() end }
      end }
      local _, err = connect(srv, { transport = t }):test()
      assert.are.equal("timeout", err.kind)
      assert.are.equal("greeting", err.stage)
    end)
  end)
end)
