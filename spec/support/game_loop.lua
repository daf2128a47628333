-- A game loop's own scheduler and a transport written for it, as in the
-- README ("Transports", "In a game server or any event loop"): coroutines
-- park on non-blocking LuaSocket sockets and a tick() once per frame
-- resumes those whose socket is ready or whose deadline passed.  Keep the
-- README's copy the same.
local socket = require "socket"

local M = {}

-- The game loop's side: coroutines parked on sockets, resumed by tick().
local parked = {}                              -- coroutine -> { sock, "r"|"w", deadline }

local function wait(sock, what, deadline)      -- true when ready, false at the deadline
  parked[coroutine.running()] = { sock, what, deadline }
  return coroutine.yield()
end

function M.tick()                              -- once per frame: never blocks
  local r, w = {}, {}
  for _, p in pairs(parked) do table.insert(p[2] == "r" and r or w, p[1]) end
  local readable, writable = socket.select(r, w, 0)
  local now, due = socket.gettime(), {}
  for co, p in pairs(parked) do
    local ready = (p[2] == "r" and readable or writable)[p[1]] ~= nil
    if ready or now >= p[3] then due[co] = ready end
  end
  for co, ready in pairs(due) do
    parked[co] = nil
    assert(coroutine.resume(co, ready))
  end
end

-- The transport: non-blocking LuaSocket, waiting through the loop.
local transport = {}
M.transport = transport

function transport.connect(host, port, timeout)
  local sock = socket.tcp()
  sock:settimeout(0)
  local deadline = socket.gettime() + timeout
  local ok, err = sock:connect(host, port)     -- "timeout": in progress
  if not ok and err == "timeout" then
    if not wait(sock, "w", deadline) then
      sock:close()
      return nil, "timeout", "connecting to " .. host .. " timed out"
    end
    ok, err = sock:connect(host, port)
    if err == "already connected" then ok = true end
  end
  if not ok then
    sock:close()
    return nil, "connect", "cannot connect to " .. host .. ": " .. tostring(err)
  end
  local conn = {}
  function conn.read(_, max, t)
    local deadline_r = socket.gettime() + t
    repeat
      local data, e, partial = sock:receive(max)
      data = data or (partial ~= "" and partial) or nil
      if data then return data end             -- what has arrived, up to max
      if e == "closed" then return nil, "closed", "the server closed the connection" end
    until not wait(sock, "r", deadline_r)
    return nil, "timeout", "no answer from the server in " .. t .. " s"
  end
  function conn.write(_, bytes, t)
    local deadline_w, i = socket.gettime() + t, 1
    while i <= #bytes do
      local last, e, partial = sock:send(bytes, i)
      i = (last or partial or i - 1) + 1
      if e and e ~= "timeout" then return nil, "closed", "send failed: " .. e end
      if i <= #bytes and not wait(sock, "w", deadline_w) then
        return nil, "timeout", "the server took no data for " .. t .. " s"
      end
    end
    return true
  end
  function conn.close() sock:close() end
  function conn.info() return (sock:getpeername()) end   -- optional
  return conn
end

return M
