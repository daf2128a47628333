-- luasocket_peer.lua -- the same measurements with LuaSocket's socket.smtp
-- (and LuaSec for TLS), the way a Lua user sends mail today.  One line of
-- numbers per run, as bench/ours.lua prints them.
--
--   luasocket_peer.lua plain HOST PORT SECONDS nodelay|nagle   1 KiB messages, one session: msgs/s
--   luasocket_peer.lua tls-connect HOST PORT SECONDS CA        connect + handshake + 1 message: iterations/s
--   luasocket_peer.lua tls-info HOST PORT CA                   the negotiated TLS version and cipher
--   luasocket_peer.lua tls-bulk HOST PORT SECONDS CA           100 KiB messages, one TLS session: MB/s
--   luasocket_peer.lua attach HOST PORT FILE                   FILE attached, streamed (ltn12): seconds, VmHWM KiB
--   luasocket_peer.lua idle                                    VmHWM KiB sending nothing
--   luasocket_peer.lua idle-mem HOST PORT N [CA]               N idle sessions: Lua KiB, RSS KiB per session
--   luasocket_peer.lua encode b64|qp|dot FILE                  mime filters on 64 KiB chunks: MB/s of input

local socket = require "socket"
local smtp = require "socket.smtp"
local ltn12 = require "ltn12"
local mime = require "mime"
local common = require "common"

local mode = arg[1]
local clock = socket.gettime

local function tcp(nodelay)
  return function()
    -- tcp4: LuaSocket's tcp() makes the descriptor only at connect, too
    -- late for setoption
    local t = socket.tcp4()
    if nodelay then assert(t:setoption("tcp-nodelay", true)) end
    return t
  end
end

-- A socket whose connect also does the TLS handshake, for socket.smtp.open
-- (LuaSec's own sample does it this way).
local function tls_create(ca)
  local ssl = require "ssl"
  local params = { mode = "client", protocol = "any", verify = "peer", cafile = ca,
    options = { "all", "no_sslv3" } }
  return function()
    local raw = socket.tcp4()
    assert(raw:setoption("tcp-nodelay", true))
    local sock = raw
    local wrapper = {}
    function wrapper.connect(_, host, port)
      local ok, err = raw:connect(host, port)
      if not ok then return nil, err end
      sock = assert(ssl.wrap(raw, params))
      sock:sni("localhost")
      ok, err = sock:dohandshake()
      if not ok then return nil, err end
      return 1
    end
    return setmetatable(wrapper, { __index = function(_, name)
      return function(_, ...) return sock[name](sock, ...) end
    end })
  end, params
end

local function message(body)
  return smtp.message {
    headers = { from = "a@example.com", to = "b@example.com", subject = "bench",
      ["message-id"] = "<x@example.com>" },
    body = body,
  }
end

local function session(host, port, create)
  local s = smtp.open(host, tonumber(port), create)
  s:greet("bench.example")
  return s
end

local function deliver(s, body)
  s:send { from = "<a@example.com>", rcpt = "<b@example.com>", source = message(body) }
end

-- deliver until SECONDS have passed: count, wall time, CPU time
local function loop(s, body, seconds)
  local n, t0, c0, limit = 0, clock(), os.clock(), tonumber(seconds)
  local t = t0
  while t - t0 < limit do
    deliver(s, body)
    n = n + 1
    t = clock()
  end
  return n, t - t0, os.clock() - c0
end

local M = {}

function M.plain(host, port, seconds, how)
  local s = session(host, port, tcp(how == "nodelay"))
  local n, t, cpu = loop(s, common.body(1024, "\r\n"), seconds)
  s:quit()
  s:close()
  print(string.format("%.1f %d %.1f", n / t, n, cpu / n * 1e6))
end

M["tls-connect"] = function(host, port, seconds, ca)
  local create = tls_create(ca)
  local body = common.body(1024, "\r\n")
  local n, t0, c0, limit = 0, clock(), os.clock(), tonumber(seconds)
  local t = t0
  while t - t0 < limit do
    local s = session(host, port, create)
    deliver(s, body)
    s:quit()
    s:close()
    n = n + 1
    t = clock()
  end
  print(string.format("%.1f %d %.1f", n / (t - t0), n, (os.clock() - c0) / n * 1e6))
end

M["tls-info"] = function(host, port, ca)
  local ssl = require "ssl"
  local _, params = tls_create(ca)
  local raw = socket.tcp()
  assert(raw:connect(host, tonumber(port)))
  local sock = assert(ssl.wrap(raw, params))
  assert(sock:dohandshake())
  local info = sock:info()
  print(info.protocol .. " " .. info.cipher .. " (LuaSec " .. ssl._VERSION .. ")")
  sock:close()
end

M["tls-bulk"] = function(host, port, seconds, ca)
  local s = session(host, port, (tls_create(ca)))
  local body = common.body(100 * 1024, "\r\n")
  local n, t, cpu = loop(s, body, seconds)
  s:quit()
  s:close()
  print(string.format("%.2f %d %.1f", n * #body / t / 1e6, n, cpu / n * 1e6))
end

-- The LuaSocket manual's way to attach a file: a source that reads it,
-- through the base64 encoder and the line wrapper.
function M.attach(host, port, file)
  local t0 = clock()
  local ok, err = smtp.send {
    from = "<a@example.com>", rcpt = "<b@example.com>", server = host, port = tonumber(port),
    domain = "bench.example", create = tcp(true),
    source = smtp.message {
      headers = { from = "a@example.com", to = "b@example.com", subject = "attachment" },
      body = {
        { body = "see the attachment\r\n" },
        {
          headers = { ["content-type"] = 'application/octet-stream; name="data.bin"',
            ["content-disposition"] = 'attachment; filename="data.bin"',
            ["content-transfer-encoding"] = "BASE64" },
          body = ltn12.source.chain(ltn12.source.file(assert(io.open(file, "rb"))),
            ltn12.filter.chain(mime.encode("base64"), mime.wrap())),
        },
      },
    },
  }
  assert(ok, err)
  print(string.format("%.3f %d", clock() - t0, common.vm("VmHWM")))
end

function M.idle()
  print(string.format("0 %d", common.vm("VmHWM")))
end

M["idle-mem"] = function(host, port, n, ca)
  n = tonumber(n)
  local create = ca and (tls_create(ca)) or tcp(true)
  local first = session(host, port, create)
  collectgarbage()
  collectgarbage()
  local lua0, rss0 = collectgarbage("count"), common.vm("VmRSS")
  local sessions = {}
  for i = 1, n do sessions[i] = session(host, port, create) end
  collectgarbage()
  collectgarbage()
  local lua1, rss1 = collectgarbage("count"), common.vm("VmRSS")
  print(string.format("%.1f %.1f", (lua1 - lua0) / n, (rss1 - rss0) / n))
  for i = 1, n do sessions[i]:quit(); sessions[i]:close() end
  first:quit()
  first:close()
end

function M.encode(kind, file)
  local data = common.read(file)
  local chunk = 64 * 1024
  local filter = kind == "b64" and mime.encode("base64") or kind == "qp" and mime.encode("quoted-printable")
    or ltn12.filter.chain(mime.normalize(), mime.stuff())
  local t0, out = clock(), 0
  for i = 1, #data, chunk do out = out + #(filter(data:sub(i, i + chunk - 1)) or "") end
  out = out + #(filter(nil) or "")
  local t = clock() - t0
  print(string.format("%.1f %d", #data / t / 1e6, out))
end

local f = M[mode] or error("luasocket_peer.lua: unknown mode " .. tostring(mode))
f(table.unpack(arg, 2))
