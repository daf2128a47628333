-- The OpenResty transport: an ngx.socket.tcp cosocket, so that a send
-- inside nginx yields to the event loop instead of blocking the worker.
-- TLS is ours (mbedTLS over the cosocket's bytes), never sslhandshake.
--
-- Chosen automatically when smtp runs inside nginx (see init.lua), and by
-- name: transport = "ngx".  Cosockets exist only in some phases, and the
-- phase is known only when a session starts: a connection described in
-- init_by_lua is fine; one that connects in a phase without cosockets gets
-- nil, "connect", and a message that says where to send from instead.
--
-- The interface is the one of builtin.lua.  info() gives the peer address
-- only when the address is an IP literal: a cosocket does not tell which
-- address it connected to, nor our own.

local M = { name = "ngx" }

-- ngx.get_phase() values whose handlers may use cosockets (lua-nginx-module:
-- the "yieldable" contexts; preread is ngx_stream_lua's).
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

local function ms(seconds)
  return math.max(1, math.floor(seconds * 1000 + 0.5))
end

-- "::1" -> "[::1]": nginx parses a bare IPv6 literal as host:port.
local function ngx_host(host)
  if host:find(":", 1, true) and not host:find("^%[") and not host:find("^unix:") then
    return "[" .. host .. "]"
  end
  return host
end

local function ip_family(host)
  if host:find("^%d+%.%d+%.%d+%.%d+$") then return 4 end
  if host:find(":", 1, true) and host:find("^[%x:.]+$") then return 6 end
  return nil
end

local Conn = {}
Conn.__index = Conn

function Conn:read(max, timeout)
  local sock = self.sock
  if not sock then return nil, "closed", "the connection is closed" end
  sock:settimeouts(ms(timeout), ms(timeout), ms(timeout))
  local data, err = sock:receiveany(max)
  if data then return data end
  if err == "timeout" then
    return nil, "timeout", "no answer from the server within " .. ms(timeout) .. " ms"
  end
  -- Any other error closed the cosocket: a reset is the end of the stream too.
  self.sock = nil
  if err == "closed" then return nil, "closed", "the server closed the connection" end
  return nil, "closed", "receive failed: " .. tostring(err)
end

function Conn:write(bytes, timeout)
  local sock = self.sock
  if not sock then return nil, "closed", "the connection is closed" end
  sock:settimeouts(ms(timeout), ms(timeout), ms(timeout))
  local sent, err = sock:send(bytes)
  if sent then return true end
  -- A failed send closes the cosocket, a timeout included.
  self.sock = nil
  if err == "timeout" then
    return nil, "timeout", "the server took no data for " .. ms(timeout) .. " ms"
  end
  if err == "closed" then return nil, "closed", "the server closed the connection" end
  return nil, "closed", "send failed: " .. tostring(err)
end

function Conn:close()
  local sock = self.sock
  self.sock = nil
  if sock then sock:close() end
end

function Conn:info()
  if self.family then return self.host, self.family end
  return nil
end

function Conn:__tostring()
  return "smtp.ngx (" .. self.host .. ")" .. (self.sock and "" or " (closed)")
end

-- Whether cosockets can be used here, and if not, why.
function M.available()
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" or type(ngx.socket) ~= "table" then
    return false, "the ngx transport needs OpenResty (ngx.socket.tcp); outside nginx use the built-in transport"
  end
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES[phase] then
    return false, string.format("cosockets are not available in the %s phase: send from a timer "
      .. "(ngx.timer.at(0, function() conn:send(msg) end)) or a content/access phase", phase)
  end
  return true
end

function M.connect(host, port, timeout)
  local ok, why = M.available()
  if not ok then return nil, "connect", why end
  local sock = rawget(_G, "ngx").socket.tcp()
  sock:settimeouts(ms(timeout), ms(timeout), ms(timeout))
  local err
  if host:find("^unix:") then
    ok, err = sock:connect(host)
  else
    ok, err = sock:connect(ngx_host(host), tonumber(port))
  end
  if not ok then
    sock:close()
    err = tostring(err)
    if err == "timeout" then
      return nil, "timeout", string.format("connecting to %s port %s timed out after %d ms", host, port,
        ms(timeout))
    end
    -- "no resolver defined to resolve ...", "... could not be resolved (3: Host not found)"
    if err:find("resolve", 1, true) then
      local msg = string.format("cannot resolve %s: %s", host, err)
      if err:find("no resolver", 1, true) then
        msg = msg .. " (nginx resolves names only through its resolver directive: add one to nginx.conf,"
          .. " or use an IP address)"
      end
      return nil, "dns", msg
    end
    return nil, "connect", string.format("cannot connect to %s port %s: %s", host, port, err)
  end
  return setmetatable({ sock = sock, host = host, family = ip_family(host) }, Conn)
end

return M
