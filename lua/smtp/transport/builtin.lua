-- The built-in transport: a socket in C (src/net.c); every connect, read
-- and write waits at most its timeout.
--
-- Every transport is a table with one function, and returns connections
-- with four methods (this is the whole interface; see README, "Transports"):
--
--   connect(host, port, timeout)  -> conn | nil, kind, message
--   conn:read(max, timeout)       -> bytes (1..max of them: what has arrived,
--                                    without waiting for max)
--                                  | nil, "closed", message at end of stream
--                                  | nil, kind, message ("timeout", ...)
--   conn:write(bytes, timeout)    -> true | nil, kind, message (all or nothing)
--   conn:close()
--   conn:info()                   -> peer address, family (4 or 6), our
--                                    address as an SMTP literal, seconds the
--                                    name lookup took; optional, each may be nil
--
-- This one also has conn:pump(wire, timeout), which moves bytes between the
-- socket and the session in C until the session has something to do; the
-- session uses it when a connection has it (and no trace is asked for).
--
-- kind is one of the error kinds ("dns", "connect", "timeout", "closed").
-- timeout is in seconds, for that one call.  host is a name or an IPv4 or
-- IPv6 literal (no brackets).  A call may block, or yield (an event loop's
-- transport yields inside read and write); the session makes one call at a
-- time.  The transports that ship: builtin (this one), ngx (OpenResty
-- cosockets), luasocket (LuaSocket, copas).
local core = require "smtp.core"

return {
  name = "builtin",
  connect = function(host, port, timeout)
    return core.connect(host, tostring(port), timeout)
  end,
}
