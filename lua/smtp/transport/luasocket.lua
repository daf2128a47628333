-- A transport over LuaSocket-compatible socket objects: LuaSocket itself
-- (blocking, each wait bounded by the timeout), or the wrapped sockets of
-- an event loop such as copas, whose coroutines then interleave sends.
--
--   transport = "luasocket"                      -- blocking LuaSocket
--   transport = require("smtp.transport.luasocket").new {
--     create = function() return copas.wrap(socket.tcp()) end,
--     -- only for copas 1.x, whose wrapped sockets have no connect:
--     connect = function(s, host, port) return copas.connect(s.socket, host, port) end,
--   }
--
-- new(options):
--   create()                         -> a socket object, or nil, message;
--                                       default socket.tcp
--   connect(sock, host, port, timeout) -> true | nil, message; default
--                                       sock:settimeout(timeout) and
--                                       sock:connect(host, port)
--
-- The socket object needs settimeout, send(data, i) (LuaSocket's results:
-- last index sent, or nil, err, last index sent), close, and a way to
-- receive "whatever has arrived", which is not LuaSocket's receive(n) (that
-- waits for all n bytes).  Three kinds are known:
--   receivepartial(n)  a method (copas 3 and later): returns as soon as
--                      some bytes arrived, within the timeout;
--   a LuaSocket tcp object (it has getfd): one byte with the timeout, then
--                      whatever else is already there, without waiting;
--   anything else      (copas 1.x and 2.x wrap): settimeout(0), then
--                      receive(n) returns the bytes that arrived as the
--                      partial result, waiting (yielding) only while none did.
-- getpeername and getsockname, when present, give info() for the report
-- and the default EHLO name.  Name resolution is LuaSocket's (getaddrinfo,
-- which blocks even in an event loop): give an IP address to avoid it.

local M = { name = "luasocket" }

local function ms(seconds)
  return math.floor(seconds * 1000 + 0.5)
end

-- LuaSocket's (and getaddrinfo's) words for a name that does not resolve.
local function is_dns_error(err)
  err = err:lower()
  return err:find("name resolution", 1, true) or err:find("not known", 1, true)
    or err:find("host not found", 1, true) or err:find("no address", 1, true)
    or err:find("nodename nor servname", 1, true) or err:find("name or service", 1, true)
end

local function is_luasocket(sock)
  return type(sock) == "userdata" and type(sock.getfd) == "function"
end

-- copas 1.x wraps without close and getpeername; its socket is in the
-- field .socket.
local function raw_for(sock, method)
  if type(sock[method]) ~= "function" and type(sock) == "table" then sock = sock.socket end
  if sock ~= nil and type(sock[method]) == "function" then return sock end
  return nil
end

local function close_socket(sock)
  local s = raw_for(sock, "close")
  if s then s:close() end
end

local Conn = {}
Conn.__index = Conn

local function closed_or(err, what)
  if err == "closed" then return nil, "closed", "the server closed the connection" end
  return nil, "closed", what .. " failed: " .. tostring(err)
end

function Conn:read(max, timeout)
  local sock = self.sock
  if not sock then return nil, "closed", "the connection is closed" end
  if self.eof then
    return nil, "closed", "the server closed the connection"
  end
  local data, err, partial
  if type(sock.receivepartial) == "function" then
    sock:settimeout(timeout)
    data, err, partial = sock:receivepartial(max)
  elseif is_luasocket(sock) then
    sock:settimeout(timeout)
    data, err, partial = sock:receive(1)
    if data and max > 1 then
      -- The rest of what has arrived, without waiting for more.
      sock:settimeout(0)
      local more, err2, part2 = sock:receive(max - 1)
      data = data .. (more or part2 or "")
      if err2 == "closed" then self.eof = true end
    end
  else
    sock:settimeout(0)
    data, err, partial = sock:receive(max)
  end
  if data then return data end
  if partial and partial ~= "" then
    -- Bytes came before the end of the stream: hand them over now, the end next time.
    if err == "closed" then self.eof = true end
    return partial
  end
  if err == "timeout" then
    return nil, "timeout", "no answer from the server within " .. ms(timeout) .. " ms"
  end
  return closed_or(err, "receive")
end

function Conn:write(bytes, timeout)
  local sock = self.sock
  if not sock then return nil, "closed", "the connection is closed" end
  sock:settimeout(timeout)
  local i = 1
  while i <= #bytes do
    local last, err, partial = sock:send(bytes, i)
    last = last or partial
    if last and last >= i then i = last + 1 end
    if err == "timeout" then
      return nil, "timeout", "the server took no data for " .. ms(timeout) .. " ms"
    elseif err then
      return closed_or(err, "send")
    elseif not last then
      return nil, "closed", "send failed"
    end
  end
  return true
end

function Conn:close()
  local sock = self.sock
  self.sock = nil
  if sock then close_socket(sock) end
end

-- The peer's address and family, and ours as an SMTP address literal.
function Conn:info()
  local sock = self.sock and raw_for(self.sock, "getpeername")
  if not sock then return nil end
  local ip, _, fam = sock:getpeername()
  if not ip then return nil end
  local family = (fam == "inet6" or ip:find(":", 1, true)) and 6 or 4
  local literal
  if type(sock.getsockname) == "function" then
    local ours = sock:getsockname()
    if ours then literal = family == 6 and "[IPv6:" .. ours .. "]" or "[" .. ours .. "]" end
  end
  return ip, family, literal
end

function Conn:__tostring()
  return "smtp.luasocket (" .. self.host .. ")" .. (self.sock and "" or " (closed)")
end

local function default_create()
  return require("socket").tcp()
end

local function default_connect(sock, host, port, timeout)
  if type(sock.connect) ~= "function" then
    return nil, "this socket object has no connect method: give the transport a connect function "
      .. "(copas 1.x: function(s, host, port) return copas.connect(s.socket, host, port) end)"
  end
  sock:settimeout(timeout)
  return sock:connect(host, port)
end

-- A transport whose sockets come from options.create (see the top).
function M.new(options)
  options = options or {}
  if type(options) ~= "table" then error("smtp.transport.luasocket.new: options must be a table", 2) end
  local create = options.create or default_create
  local connect = options.connect or default_connect
  if type(create) ~= "function" then error("smtp.transport.luasocket.new: create must be a function", 2) end
  if type(connect) ~= "function" then error("smtp.transport.luasocket.new: connect must be a function", 2) end
  local t = { name = "luasocket" }
  function t.connect(host, port, timeout)
    if host:find("^unix:") then
      return nil, "connect", "the luasocket transport does not do unix sockets (" .. host .. ")"
    end
    local sock, err = create()
    if not sock then return nil, "connect", "cannot create a socket: " .. tostring(err) end
    local ok
    ok, err = connect(sock, host, tonumber(port), timeout)
    -- A non-blocking connect that a loop already completed says so.
    if not ok and err ~= "already connected" then
      close_socket(sock)
      err = tostring(err)
      if err == "timeout" then
        return nil, "timeout", string.format("connecting to %s port %s timed out after %d ms", host, port,
          ms(timeout))
      end
      if is_dns_error(err) then return nil, "dns", string.format("cannot resolve %s: %s", host, err) end
      return nil, "connect", string.format("cannot connect to %s port %s: %s", host, port, err)
    end
    return setmetatable({ sock = sock, host = host }, Conn)
  end
  return t
end

-- The module is itself a transport: blocking LuaSocket.
M.connect = M.new().connect

return M
