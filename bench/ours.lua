-- ours.lua -- one measurement of smtp (this tree), printed as one line of
-- numbers for bench/bench.lua.  The module comes from LUA_PATH/LUA_CPATH
-- (bench/run.sh points them at the tree and its build).
--
--   ours.lua plain HOST PORT SECONDS            1 KiB messages over one session: msgs/s, count,
--                                               CPU us/msg (SECONDS "#N": N messages)
--   ours.lua plain-many HOST PORT SECONDS BATCH the same through Session:send_many, BATCH at a time
--   ours.lua tls-connect HOST PORT SECONDS CA   connect + handshake + 1 message: iterations/s
--                                               (one connection object: its sessions resume)
--   ours.lua tls-connect-full HOST PORT SECONDS CA  the same with a new connection object each
--                                               time: a full handshake each
--   ours.lua tls-info HOST PORT CA              the negotiated TLS version and cipher
--   ours.lua tls-bulk HOST PORT SECONDS CA      100 KiB messages over one TLS session: MB/s
--   ours.lua tls-bulk-many HOST PORT SECONDS CA the same through Session:send_many, 20 at a time
--   ours.lua attach HOST PORT FILE              one message with FILE attached: seconds, VmHWM KiB
--   ours.lua idle                               VmHWM KiB of the same process sending nothing
--   ours.lua idle-mem HOST PORT N [CA]          N open idle sessions: Lua KiB and RSS KiB per session
--   ours.lua encode KIND FILE                   core.encoder (base64, qp) from Lua: MB/s of input
--   ours.lua scale HOST PORT SECONDS K          K sessions in coroutines (copas + the luasocket
--                                               transport): msgs/s, RSS KiB/session, Lua KiB/session

local smtp = require "smtp"
local core = require "smtp.core"
local common = require "common"

local mode = arg[1]
local clock = core.clock

local function plain_conn(host, port, extra)
  local t = { address = host, port = tonumber(port), tls = { protocol = "none" }, timeout = 30 }
  for k, v in pairs(extra or {}) do t[k] = v end
  return smtp.connection(t)
end

local function tls_conn(host, port, ca)
  return smtp.connection { address = host, port = tonumber(port), timeout = 30,
    tls = { mode = "implicit", cafile = ca, servername = "localhost" } }
end

local function message(body)
  return { from = "a@example.com", to = "b@example.com", subject = "bench", text = body }
end

local M = {}

-- Call f until SECONDS have passed ("#N": N times); returns the count,
-- the wall time and the process's CPU time (os.clock) it took.
local function loop(seconds, f)
  local count = seconds:match("^#(%d+)$")
  local n, t0, c0 = 0, clock(), os.clock()
  local t = t0
  if count then
    for _ = 1, tonumber(count) do f() end
    n, t = tonumber(count), clock()
  else
    local limit = tonumber(seconds)
    while t - t0 < limit do
      f()
      n = n + 1
      t = clock()
    end
  end
  return n, t - t0, os.clock() - c0
end

-- msgs/s, count, client CPU microseconds per message
function M.plain(host, port, seconds)
  local s = assert(plain_conn(host, port):open())
  local msg = message(common.body(1024))
  local n, t, cpu = loop(seconds, function() assert(s:send(msg)) end)
  s:close()
  print(string.format("%.1f %d %.1f", n / t, n, cpu / n * 1e6))
end

-- The same with Session:send_many (the next envelope behind each final
-- dot), in batches of BATCH messages: msgs/s, count, CPU us/msg.
M["plain-many"] = function(host, port, seconds, batch)
  local s = assert(plain_conn(host, port):open())
  if not s.send_many then error("pending: this tree has no Session:send_many", 0) end
  local list = {}
  for i = 1, tonumber(batch or 100) do list[i] = message(common.body(1024)) end
  local n, t, cpu = loop(seconds, function()
    local receipts, errs = s:send_many(list)
    for i = 1, #list do assert(not errs[i], errs[i]) assert(receipts[i].reply) end
  end)
  s:close()
  n = n * #list
  print(string.format("%.1f %d %.1f", n / t, n, cpu / n * 1e6))
end

M["tls-connect"] = function(host, port, seconds, ca)
  local conn = tls_conn(host, port, ca)
  local msg = message(common.body(1024))
  local n, t, cpu = loop(seconds, function() assert(conn:send(msg)) end)
  print(string.format("%.1f %d %.1f", n / t, n, cpu / n * 1e6))
end

M["tls-connect-full"] = function(host, port, seconds, ca)
  local msg = message(common.body(1024))
  local n, t, cpu = loop(seconds, function() assert(tls_conn(host, port, ca):send(msg)) end)
  print(string.format("%.1f %d %.1f", n / t, n, cpu / n * 1e6))
end

M["tls-info"] = function(host, port, ca)
  local report = assert(tls_conn(host, port, ca):test())
  print(report.tls.version .. " " .. report.tls.cipher .. " (" .. report.tls.library .. ")")
end

M["tls-bulk"] = function(host, port, seconds, ca)
  local s = assert(tls_conn(host, port, ca):open())
  local body = common.body(100 * 1024)
  local msg = message(body)
  local n, t, cpu = loop(seconds, function() assert(s:send(msg)) end)
  s:close()
  print(string.format("%.2f %d %.1f", n * #body / t / 1e6, n, cpu / n * 1e6))
end

M["tls-bulk-many"] = function(host, port, seconds, ca)
  local s = assert(tls_conn(host, port, ca):open())
  local body = common.body(100 * 1024)
  local list = {}
  for i = 1, 20 do list[i] = message(body) end
  local n, t, cpu = loop(seconds, function()
    local _, errs = s:send_many(list)
    for i = 1, #list do assert(not errs[i], errs[i]) end
  end)
  s:close()
  n = n * #list
  print(string.format("%.2f %d %.1f", n * #body / t / 1e6, n, cpu / n * 1e6))
end

function M.attach(host, port, file)
  local conn = plain_conn(host, port)
  local t0 = clock()
  assert(conn:send { from = "a@example.com", to = "b@example.com", subject = "attachment",
    text = "see the attachment\n", attachments = { { path = file } } })
  print(string.format("%.3f %d", clock() - t0, common.vm("VmHWM")))
end

function M.idle()
  print(string.format("0 %d", common.vm("VmHWM")))
end

M["idle-mem"] = function(host, port, n, ca)
  n = tonumber(n)
  local conn = ca and tls_conn(host, port, ca) or plain_conn(host, port)
  -- one session first, so that what is allocated once is not counted
  local first = assert(conn:open())
  collectgarbage()
  collectgarbage()
  local lua0, rss0 = collectgarbage("count"), common.vm("VmRSS")
  local sessions = {}
  for i = 1, n do sessions[i] = assert(conn:open()) end
  collectgarbage()
  collectgarbage()
  local lua1, rss1 = collectgarbage("count"), common.vm("VmRSS")
  print(string.format("%.1f %.1f", (lua1 - lua0) / n, (rss1 - rss0) / n))
  for i = 1, n do sessions[i]:close() end
  first:close()
end

function M.encode(kind, file)
  local data = common.read(file)
  local chunk = 64 * 1024
  local enc = core.encoder(kind)
  local t0, out = clock(), 0
  for i = 1, #data, chunk do out = out + #enc:update(data:sub(i, i + chunk - 1)) end
  out = out + #enc:finish()
  local t = clock() - t0
  print(string.format("%.1f %d", #data / t / 1e6, out))
end

-- copas (Debian packages it for Lua 5.1 and 5.2; it is plain Lua).
local function load_copas()
  local ok, copas = pcall(require, "copas")
  if ok then return copas end
  package.path = package.path .. ";/usr/share/lua/5.1/?.lua"
  return require "copas"
end

function M.scale(host, port, seconds, k)
  k = tonumber(k)
  local copas = load_copas()
  -- copas 1.x closes the socket a thread last waited on when the thread
  -- ends; here a session opened by one thread is used by the next.
  copas.autoclose = false
  local socket = require "socket"
  local transport = require("smtp.transport.luasocket").new {
    create = function() return copas.wrap(socket.tcp()) end,
    connect = function(s, h, p) return copas.connect(s.socket, h, p) end,
  }
  local conn = plain_conn(host, port, { transport = transport })
  local msg = message(common.body(1024))
  local function run_all(f)
    local done, failed = 0, nil
    for i = 1, k do
      copas.addthread(function()
        local ok, err = pcall(f, i)
        if not ok then failed = tostring(err) end
        done = done + 1
      end)
    end
    local limit = clock() + tonumber(seconds) + 30
    while done < k and clock() < limit do copas.step(0.1) end
    assert(not failed, failed)
    assert(done == k, "the sessions did not finish in time")
  end
  collectgarbage()
  collectgarbage()
  local lua0, rss0 = collectgarbage("count"), common.vm("VmRSS")
  -- all sessions open (concurrently) before any message
  local sessions = {}
  run_all(function(i) sessions[i] = assert(conn:open()) end)
  collectgarbage()
  collectgarbage()
  local lua1, rss1 = collectgarbage("count"), common.vm("VmRSS")
  local sent = 0
  local t0 = clock()
  local deadline = t0 + tonumber(seconds)
  run_all(function(i)
    local s = sessions[i]
    while clock() < deadline do
      assert(s:send(msg))
      sent = sent + 1
    end
  end)
  local t = clock() - t0
  run_all(function(i) sessions[i]:close() end)
  print(string.format("%.1f %d %.1f %.1f", sent / t, sent, (rss1 - rss0) / k, (lua1 - lua0) / k))
end

local f = M[mode] or error("ours.lua: unknown mode " .. tostring(mode))
f((table.unpack or unpack)(arg, 2))
