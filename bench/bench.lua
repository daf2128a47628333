-- bench.lua -- run ours and every peer in turn, each measurement BENCH_REPS
-- times (interleaved, so that a change in the machine's load hits them
-- all alike), and print one table: figure, ours, each peer, the ratio,
-- and the target of issue 10.  Written with the machine's description to
-- bench/results.md.  Started by bench/run.sh, which owns the servers and
-- passes everything in the environment.

local env = os.getenv
local WORK = assert(env "BENCH_WORK", "run bench/run.sh, not this file")
local TREE, BUILD, DIR = env "BENCH_TREE", env "BENCH_BUILD", env "BENCH_DIR"
local LUA = env "BENCH_LUA" or "lua5.4"
local PY = env "BENCH_PYTHON" or "/usr/bin/python3"
local CPU = env "BENCH_CLIENT_CPU" or "0"
local SERVER_CPU = env "BENCH_SERVER_CPU" or "1"
local REPS = tonumber(env "BENCH_REPS" or "5")
local SECS = env "BENCH_SECONDS" or "1"
local ONLY = env "BENCH_ONLY"
local OUT = env "BENCH_OUT" or (DIR .. "/results.md")
local HOST, PORT, TLS_PORT = "127.0.0.1", env "BENCH_PORT", env "BENCH_TLS_PORT"
local CA = WORK .. "/cert.pem"
local SESSIONS = env "BENCH_SESSIONS" or "100"

package.path = DIR .. "/?.lua;" .. package.path

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local now = require("socket").gettime

-- The module under test comes from the tree and its build; the peers'
-- modules from the system (";;" keeps the default paths).
local LUA_ENV = "LUA_PATH=" .. q(DIR .. "/?.lua;" .. TREE .. "/lua/?.lua;" .. TREE .. "/lua/?/init.lua;;")
  .. " LUA_CPATH=" .. q(BUILD .. "/?.so;;")

-- Run a command on the client CPU; its first line of output as numbers,
-- or nil and what went wrong.
local function run(cmd)
  local errfile = WORK .. "/stderr"
  local f = io.popen(LUA_ENV .. " taskset -c " .. CPU .. " " .. cmd .. " 2>" .. errfile)
  local out = f:read("a")
  local ok = f:close()
  local line = out:match("[^\n]*")
  local nums = {}
  for n in line:gmatch("%S+") do nums[#nums + 1] = tonumber(n) end
  if not ok or #nums == 0 or not nums[1] then
    local ef = io.open(errfile)
    local err = ef and ef:read("a") or ""
    if ef then ef:close() end
    return nil, (err:match("[^\n]+") or out:match("[^\n]+") or "no output"):sub(1, 120)
  end
  return nums, line
end

local function lua(script, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = q(a) end
  return LUA .. " " .. q(DIR .. "/" .. script) .. " " .. table.concat(args, " ")
end

-- The same under LuaJIT (OpenResty's Lua), with the module built for it.
local function luajit(script, ...)
  return "env LUA_CPATH=" .. q(BUILD .. "/luajit/?.so;;") .. " " .. lua(script, ...):gsub("^%S+", "luajit", 1)
end

local function python(...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = q(a) end
  return PY .. " " .. q(DIR .. "/smtplib_peer.py") .. " " .. table.concat(args, " ")
end

-- Wall time of a command, in seconds (it runs on the client CPU).
local function timed(cmd)
  local t0 = now()
  local ok = os.execute(LUA_ENV .. " taskset -c " .. CPU .. " " .. cmd .. " >/dev/null 2>" .. WORK .. "/stderr")
  local t = now() - t0
  if not ok then return nil, "failed: " .. cmd:sub(1, 80) end
  return t
end

-- ---- the series: one measurement, run REPS times ----

local series, order = {}, {}

-- run() returns a table of fields for one repetition, or nil, why.
local function add(name, group, fn)
  series[name] = { name = name, group = group, run = fn, samples = {}, errors = {} }
  order[#order + 1] = name
end

local function fields(names, nums)
  local t = {}
  for i, n in ipairs(names) do t[n] = nums[i] end
  return t
end

local function simple(group, name, cmd, names)
  add(name, group, function()
    local nums, err = run(cmd)
    if not nums then return nil, err end
    return fields(names, nums)
  end)
end

local PIPE = BUILD .. "/bench/pipe_client"
local CODEC = BUILD .. "/bench/codec_bench"

-- 1. 1 KiB messages over one plaintext session
simple("plain", "plain.ours", lua("ours.lua", "plain", HOST, PORT, SECS), { "rate", "n", "cpu" })
simple("plain", "plain.ours_many", lua("ours.lua", "plain-many", HOST, PORT, SECS, 100), { "rate", "n", "cpu" })
simple("plain", "plain.ours_jit", luajit("ours.lua", "plain", HOST, PORT, SECS), { "rate", "n", "cpu" })
simple("plain", "plain.ours_many_jit", luajit("ours.lua", "plain-many", HOST, PORT, SECS, 100), { "rate", "n", "cpu" })
local RATE = { "rate", "n", "cpu" }
simple("plain", "plain.luasocket", lua("luasocket_peer.lua", "plain", HOST, PORT, SECS, "nodelay"), RATE)
simple("plain", "plain.luasocket_nagle", lua("luasocket_peer.lua", "plain", HOST, PORT, SECS, "nagle"), RATE)
simple("plain", "plain.smtplib", python("plain", HOST, PORT, SECS), { "rate", "n", "cpu" })
do
  -- smtp-source sends a count, not for a time: about SECS seconds' worth,
  -- from a first short run.
  local count
  add("plain.smtp_source", "plain", function()
    local function source(m)
      return timed(string.format("smtp-source -d -s 1 -m %d -l 1024 -f a@example.com -t b@example.com %s:%s",
        m, HOST, PORT))
    end
    if not count then
      local t, err = source(200)
      if not t then return nil, err end
      count = math.max(200, math.floor(200 / t * tonumber(SECS)))
    end
    local t, err = source(count)
    if not t then return nil, err end
    return { rate = count / t }
  end)
end
simple("plain", "plain.pipe", q(PIPE) .. " " .. HOST .. " " .. PORT .. " " .. SECS, { "rate", "n", "cpu" })
simple("plain", "plain.lockstep", q(PIPE) .. " " .. HOST .. " " .. PORT .. " " .. SECS .. " 1024 lockstep",
  { "rate", "n", "cpu" })

-- 2. implicit TLS: connect, handshake, one message
simple("tls", "tlsc.ours", lua("ours.lua", "tls-connect", HOST, TLS_PORT, SECS, CA), { "rate", "n", "cpu" })
simple("tls", "tlsc.ours_full", lua("ours.lua", "tls-connect-full", HOST, TLS_PORT, SECS, CA), { "rate", "n", "cpu" })
simple("tls", "tlsc.luasec", lua("luasocket_peer.lua", "tls-connect", HOST, TLS_PORT, SECS, CA), { "rate", "n", "cpu" })
simple("tls", "tlsc.smtplib", python("tls-connect", HOST, TLS_PORT, SECS, CA), { "rate", "n", "cpu" })
-- 100 KiB messages over one TLS session
simple("bulk", "bulk.ours", lua("ours.lua", "tls-bulk", HOST, TLS_PORT, SECS, CA), { "mbs", "n", "cpu" })
simple("bulk", "bulk.ours_many", lua("ours.lua", "tls-bulk-many", HOST, TLS_PORT, SECS, CA), { "mbs", "n", "cpu" })
simple("bulk", "bulk.luasec", lua("luasocket_peer.lua", "tls-bulk", HOST, TLS_PORT, SECS, CA), { "mbs", "n", "cpu" })

-- 3. a 20 MiB attachment: wall time, and peak RSS above the same process idle
local ATTACH = WORK .. "/attach.bin"
local function attach(name, attach_cmd, idle_cmd)
  add(name, "attach", function()
    local idle, err = run(idle_cmd)
    if not idle then return nil, err end
    local nums
    nums, err = run(attach_cmd)
    if not nums then return nil, err end
    return { time = nums[1], rss = (nums[2] - idle[2]) / 1024, idle = idle[2] / 1024 }
  end)
end
attach("attach.ours", lua("ours.lua", "attach", HOST, PORT, ATTACH), lua("ours.lua", "idle"))
attach("attach.luasocket", lua("luasocket_peer.lua", "attach", HOST, PORT, ATTACH), lua("luasocket_peer.lua", "idle"))
attach("attach.smtplib", python("attach", HOST, PORT, ATTACH), python("idle"))
-- issue 6: memory stays flat whatever the size
attach("attach100.ours", lua("ours.lua", "attach", HOST, PORT, WORK .. "/attach100.bin"), lua("ours.lua", "idle"))

-- 4. encoders on 64 MiB
do
  local runs
  add("codec.c", "codec", function()
    -- one process runs each codec REPS... its own 5 times: take them in turn
    if not runs then
      runs = {}
      local f = io.popen("taskset -c " .. CPU .. " " .. q(CODEC) .. " -r 2>&1")
      for line in f:lines() do
        local key, rest = line:match("^(%S+)(.*)$")
        runs[key] = {}
        for n in rest:gmatch("%S+") do runs[key][#runs[key] + 1] = tonumber(n) end
      end
      f:close()
      if not runs.b64 then return nil, "codec_bench failed" end
      runs.i = 0
    end
    runs.i = runs.i + 1
    local i = (runs.i - 1) % #runs.b64 + 1
    return { b64 = runs.b64[i], qp = runs.qp[i], dot = runs.dot[i], dot_lf = runs["dot-lf"][i] }
  end)
end
local RANDOM, TEXT = WORK .. "/random.bin", WORK .. "/text.txt"
simple("codec", "codec.lua_b64", lua("ours.lua", "encode", "base64", RANDOM), { "mbs" })
simple("codec", "codec.lua_qp", lua("ours.lua", "encode", "qp", TEXT), { "mbs" })
simple("codec", "codec.mime_b64", lua("luasocket_peer.lua", "encode", "b64", RANDOM), { "mbs" })
simple("codec", "codec.mime_qp", lua("luasocket_peer.lua", "encode", "qp", TEXT), { "mbs" })
simple("codec", "codec.mime_dot", lua("luasocket_peer.lua", "encode", "dot", TEXT), { "mbs" })
add("codec.coreutils", "codec", function()
  local t, err = timed("base64 -w 76 " .. q(RANDOM))
  if not t then return nil, err end
  return { mbs = (64 << 20) / t / 1e6 }
end)

-- 5. memory per idle open session
simple("idle", "idle.ours", lua("ours.lua", "idle-mem", HOST, PORT, SESSIONS), { "lua", "rss" })
simple("idle", "idle.luasocket", lua("luasocket_peer.lua", "idle-mem", HOST, PORT, SESSIONS), { "lua", "rss" })
simple("idle", "idle.ours_tls", lua("ours.lua", "idle-mem", HOST, TLS_PORT, SESSIONS, CA), { "lua", "rss" })
simple("idle", "idle.luasec", lua("luasocket_peer.lua", "idle-mem", HOST, TLS_PORT, SESSIONS, CA), { "lua", "rss" })

-- 6. scaling: K sessions in coroutines over copas
local HAVE_COPAS = io.open(TREE .. "/lua/smtp/transport/luasocket.lua") ~= nil
if HAVE_COPAS then
  for _, k in ipairs({ 1, 10, 100 }) do
    simple("scale", "scale." .. k, lua("ours.lua", "scale", HOST, PORT, SECS, k), { "rate", "n", "rss", "lua" })
  end
end

-- ---- run ----

local function selected(name)
  return not ONLY or name:find(ONLY) ~= nil
end

local groups, group_order = {}, {}
for _, name in ipairs(order) do
  local s = series[name]
  if selected(name) then
    if not groups[s.group] then
      groups[s.group] = {}
      group_order[#group_order + 1] = s.group
    end
    table.insert(groups[s.group], s)
  end
end

local started = now()
for _, g in ipairs(group_order) do
  io.stderr:write(string.format("bench: %-7s", g))
  for _ = 1, REPS do
    for _, s in ipairs(groups[g]) do
      local r, err = s.run()
      if r then s.samples[#s.samples + 1] = r else s.errors[#s.errors + 1] = err end
    end
    io.stderr:write(".")
  end
  io.stderr:write(string.format(" %.0f s\n", now() - started))
end

-- ---- statistics and the table ----

local function stats(name, field)
  local s = series[name]
  if not s then return nil end
  local v = {}
  for _, r in ipairs(s.samples) do
    if r[field] then v[#v + 1] = r[field] end
  end
  if #v == 0 then return nil, s.errors[1] or "not run" end
  table.sort(v)
  local mid = #v % 2 == 1 and v[(#v + 1) // 2] or (v[#v // 2] + v[#v // 2 + 1]) / 2
  return { med = mid, min = v[1], max = v[#v], n = #v }
end

local function num(x)
  if x >= 100 then return string.format("%.0f", x) end
  if x >= 10 then return string.format("%.1f", x) end
  return string.format("%.2f", x)
end

local function show(st, err)
  if not st then return "— (" .. tostring(err or "not run") .. ")" end
  return num(st.med) .. " (" .. num(st.min) .. "–" .. num(st.max) .. ")"
end

-- Each row: figure, ours, a peer, the ratio (> 1: ours is better), the
-- target.  A figure without a peer has an absolute target.
local rows, verdicts, failures = {}, {}, 0
local function row(t)
  local ours, oerr = stats(t.ours[1], t.ours[2])
  local peer, perr
  if t.peer then peer, perr = stats(t.peer[1], t.peer[2]) end
  -- "pending" (a figure this tree cannot give yet) is no failure
  local function failed(st, err, name)
    return not st and selected(name) and not tostring(err):find("pending", 1, true)
  end
  if failed(ours, oerr, t.ours[1]) then failures = failures + 1 end
  if t.peer and failed(peer, perr, t.peer[1]) then failures = failures + 1 end
  if t.ours[1] and not selected(t.ours[1]) then return end
  local ratio, ratio_text = nil, ""
  if ours and peer then
    ratio = t.lower and peer.med / ours.med or ours.med / peer.med
    ratio_text = string.format("%.2f×", ratio)
  end
  local target = ""
  if t.target then
    local met
    if t.target.ratio and ratio then met = ratio >= t.target.ratio end
    if t.target.max and ours then met = ours.med <= t.target.max end
    if t.target.min and ours then met = ours.med >= t.target.min end
    target = t.target.text .. (met == nil and "" or met and " ✔ met" or " ✘ missed")
    if met ~= nil then
      verdicts[#verdicts + 1] = { t.figure .. (t.peer_name and (" vs " .. t.peer_name) or ""), met }
    end
  end
  rows[#rows + 1] = { t.figure, t.same and "″" or show(ours, oerr), t.peer_name or "",
    t.peer and show(peer, perr) or "", ratio_text, target }
end

local PLAIN = "1 KiB msgs/s, one plaintext session"
row { figure = PLAIN, ours = { "plain.ours", "rate" }, peer_name = "LuaSocket smtp, TCP_NODELAY",
  peer = { "plain.luasocket", "rate" }, target = { ratio = 3, text = "≥ 3×" } }
row { figure = PLAIN, same = true, ours = { "plain.ours", "rate" }, peer_name = "LuaSocket smtp, Nagle (defaults)",
  peer = { "plain.luasocket_nagle", "rate" } }
row { figure = PLAIN, same = true, ours = { "plain.ours", "rate" }, peer_name = "Python smtplib, one connection",
  peer = { "plain.smtplib", "rate" }, target = { ratio = 3, text = "≥ 3×" } }
row { figure = PLAIN, same = true, ours = { "plain.ours", "rate" }, peer_name = "smtp-source -s 1 (lockstep)",
  peer = { "plain.smtp_source", "rate" }, target = { ratio = 2.5, text = "≥ 2.5×" } }
row { figure = PLAIN, same = true, ours = { "plain.ours", "rate" },
  peer_name = "pipelining C client (bench/pipe_client)", peer = { "plain.pipe", "rate" },
  target = { ratio = 0.7, text = "≥ 0.7×" } }
row { figure = PLAIN, same = true, ours = { "plain.ours", "rate" },
  peer_name = "the same C client, a message per round trip pair (pipe_client lockstep)",
  peer = { "plain.lockstep", "rate" } }
local MANY = "1 KiB msgs/s, Session:send_many (100 a batch)"
row { figure = MANY, ours = { "plain.ours_many", "rate" }, peer_name = "LuaSocket smtp, TCP_NODELAY",
  peer = { "plain.luasocket", "rate" }, target = { ratio = 3, text = "≥ 3×" } }
row { figure = MANY, same = true, ours = { "plain.ours_many", "rate" }, peer_name = "Python smtplib, one connection",
  peer = { "plain.smtplib", "rate" }, target = { ratio = 3, text = "≥ 3×" } }
row { figure = MANY, same = true, ours = { "plain.ours_many", "rate" }, peer_name = "smtp-source -s 1 (lockstep)",
  peer = { "plain.smtp_source", "rate" }, target = { ratio = 2.5, text = "≥ 2.5×" } }
row { figure = MANY, same = true, ours = { "plain.ours_many", "rate" },
  peer_name = "pipelining C client (bench/pipe_client)", peer = { "plain.pipe", "rate" },
  target = { ratio = 0.7, text = "≥ 0.7×" } }
row { figure = "  the same under LuaJIT (OpenResty's Lua): send in a loop", ours = { "plain.ours_jit", "rate" },
  peer_name = "LuaSocket smtp, TCP_NODELAY", peer = { "plain.luasocket", "rate" } }
row { figure = "  the same under LuaJIT: send_many", ours = { "plain.ours_many_jit", "rate" },
  peer_name = "LuaSocket smtp, TCP_NODELAY", peer = { "plain.luasocket", "rate" } }
local PLAIN_CPU = "  client CPU µs per 1 KiB message"
row { figure = PLAIN_CPU, ours = { "plain.ours", "cpu" }, lower = true, peer_name = "LuaSocket smtp, TCP_NODELAY",
  peer = { "plain.luasocket", "cpu" } }
row { figure = PLAIN_CPU, same = true, ours = { "plain.ours", "cpu" }, lower = true,
  peer_name = "Python smtplib, one connection", peer = { "plain.smtplib", "cpu" } }
row { figure = PLAIN_CPU, same = true, ours = { "plain.ours", "cpu" }, lower = true,
  peer_name = "pipelining C client (bench/pipe_client)", peer = { "plain.pipe", "cpu" } }
row { figure = "  the same with send_many", ours = { "plain.ours_many", "cpu" }, lower = true,
  peer_name = "pipelining C client (bench/pipe_client)", peer = { "plain.pipe", "cpu" } }
local TLSC = "implicit TLS: connect+handshake+1 msg, per s"
row { figure = TLSC, ours = { "tlsc.ours", "rate" }, peer_name = "LuaSec + socket.smtp",
  peer = { "tlsc.luasec", "rate" }, target = { ratio = 1, text = "≥ 1×" } }
row { figure = TLSC, same = true, ours = { "tlsc.ours", "rate" }, peer_name = "Python smtplib.SMTP_SSL",
  peer = { "tlsc.smtplib", "rate" }, target = { ratio = 1, text = "≥ 1×" } }
row { figure = TLSC .. ": client CPU µs each", ours = { "tlsc.ours", "cpu" }, lower = true,
  peer_name = "LuaSec + socket.smtp", peer = { "tlsc.luasec", "cpu" } }
row { figure = TLSC .. ": client CPU µs each", same = true, ours = { "tlsc.ours", "cpu" }, lower = true,
  peer_name = "Python smtplib.SMTP_SSL", peer = { "tlsc.smtplib", "cpu" } }
local TLSC_FULL = "  the same, a new connection object each time (full handshake, no resumption)"
row { figure = TLSC_FULL, ours = { "tlsc.ours_full", "rate" }, peer_name = "LuaSec + socket.smtp",
  peer = { "tlsc.luasec", "rate" } }
row { figure = TLSC_FULL, same = true, ours = { "tlsc.ours_full", "rate" }, peer_name = "Python smtplib.SMTP_SSL",
  peer = { "tlsc.smtplib", "rate" } }
row { figure = TLSC_FULL .. ": client CPU µs each", ours = { "tlsc.ours_full", "cpu" }, lower = true,
  peer_name = "LuaSec + socket.smtp", peer = { "tlsc.luasec", "cpu" } }
row { figure = "100 KiB msgs over one TLS session, MB/s", ours = { "bulk.ours", "mbs" },
  peer_name = "LuaSec + socket.smtp, TCP_NODELAY", peer = { "bulk.luasec", "mbs" },
  target = { ratio = 1.5, text = "≥ 1.5×" } }
row { figure = "  client CPU µs per 100 KiB message", ours = { "bulk.ours", "cpu" }, lower = true,
  peer_name = "LuaSec + socket.smtp, TCP_NODELAY", peer = { "bulk.luasec", "cpu" } }
row { figure = "100 KiB msgs over one TLS session, Session:send_many (20 a batch), MB/s",
  ours = { "bulk.ours_many", "mbs" }, peer_name = "LuaSec + socket.smtp, TCP_NODELAY",
  peer = { "bulk.luasec", "mbs" }, target = { ratio = 1.5, text = "≥ 1.5×" } }
local ATT = "20 MiB attachment: peak RSS above idle, MiB"
row { figure = ATT, ours = { "attach.ours", "rss" }, lower = true, peer_name = "LuaSocket smtp + ltn12 file source",
  peer = { "attach.luasocket", "rss" }, target = { max = 4, text = "≤ 4 MiB" } }
row { figure = ATT, same = true, ours = { "attach.ours", "rss" }, lower = true, peer_name = "Python email + smtplib",
  peer = { "attach.smtplib", "rss" } }
local ATT_T = "20 MiB attachment: wall time, s"
row { figure = ATT_T, ours = { "attach.ours", "time" }, lower = true, peer_name = "LuaSocket smtp + ltn12 file source",
  peer = { "attach.luasocket", "time" }, target = { ratio = 1, text = "≥ 1× (no slower)" } }
row { figure = ATT_T, same = true, ours = { "attach.ours", "time" }, lower = true, peer_name = "Python email + smtplib",
  peer = { "attach.smtplib", "time" } }
row { figure = "100 MiB attachment: peak RSS above idle, MiB", ours = { "attach100.ours", "rss" }, lower = true,
  target = { max = 4, text = "flat (≤ 4 MiB)" } }
row { figure = "100 MiB attachment: wall time, s", ours = { "attach100.ours", "time" }, lower = true }
row { figure = "base64 in C, 64 MiB, MB/s", ours = { "codec.c", "b64" }, peer_name = "LuaSocket mime.b64 (no wrapping)",
  peer = { "codec.mime_b64", "mbs" }, target = { min = 1000, text = "≥ 1000 MB/s" } }
row { figure = "base64 in C, 64 MiB, MB/s", same = true, ours = { "codec.c", "b64" },
  peer_name = "coreutils base64 -w 76", peer = { "codec.coreutils", "mbs" } }
row { figure = "base64 from Lua (encoder:update), MB/s", ours = { "codec.lua_b64", "mbs" },
  peer_name = "LuaSocket mime.b64 (no wrapping)", peer = { "codec.mime_b64", "mbs" } }
row { figure = "quoted-printable in C, text, MB/s", ours = { "codec.c", "qp" }, peer_name = "LuaSocket mime.qp",
  peer = { "codec.mime_qp", "mbs" }, target = { min = 300, text = "≥ 300 MB/s" } }
row { figure = "quoted-printable from Lua, text, MB/s", ours = { "codec.lua_qp", "mbs" },
  peer_name = "LuaSocket mime.qp", peer = { "codec.mime_qp", "mbs" } }
row { figure = "dot-stuffing + CRLF in C (engine), MB/s", ours = { "codec.c", "dot" },
  peer_name = "LuaSocket mime.normalize + mime.stuff", peer = { "codec.mime_dot", "mbs" },
  target = { min = 1000, text = "≥ 1000 MB/s" } }
row { figure = "  same, bare-LF input, MB/s", ours = { "codec.c", "dot_lf" } }
local IDLE = "idle session, plaintext: RSS KiB each"
row { figure = IDLE, ours = { "idle.ours", "rss" }, lower = true, peer_name = "LuaSocket smtp.open",
  peer = { "idle.luasocket", "rss" } }
row { figure = "idle session, plaintext: Lua heap KiB each", ours = { "idle.ours", "lua" }, lower = true,
  peer_name = "LuaSocket smtp.open", peer = { "idle.luasocket", "lua" } }
row { figure = "idle session, TLS: RSS KiB each", ours = { "idle.ours_tls", "rss" }, lower = true,
  peer_name = "LuaSec + smtp.open", peer = { "idle.luasec", "rss" } }
row { figure = "idle session, TLS: Lua heap KiB each", ours = { "idle.ours_tls", "lua" }, lower = true,
  peer_name = "LuaSec + smtp.open", peer = { "idle.luasec", "lua" } }
if HAVE_COPAS then
  for _, k in ipairs({ 1, 10, 100 }) do
    row { figure = k .. " session(s), copas: msgs/s in all", ours = { "scale." .. k, "rate" } }
    row { figure = k .. " session(s), copas: RSS KiB per session", ours = { "scale." .. k, "rss" } }
  end
else
  rows[#rows + 1] = { "scaling 1/10/100 sessions", "pending: lua/smtp/transport/luasocket.lua is missing",
    "", "", "", "" }
end

-- ---- the report ----

local function sh(cmd)
  local f = io.popen(cmd .. " 2>/dev/null")
  local s = f and f:read("a") or ""
  if f then f:close() end
  return (s:gsub("%s+$", ""))
end

local sizes = {}
for line in sh(q(BUILD .. "/bench/sizes")):gmatch("[^\n]+") do
  local k, v = line:match("^(%S+) (.*)$")
  if k then sizes[k] = v end
end

local function tls_info(cmd)
  local nums, line = run(cmd)
  if nums ~= nil then return line end
  local f = io.popen(LUA_ENV .. " " .. cmd .. " 2>&1")
  local s = f:read("l") or "?"
  f:close()
  return s
end

local info = {}
if selected("tlsc.ours") or selected("bulk.ours") then
  info[#info + 1] = "- TLS negotiated, ours: " .. tls_info(lua("ours.lua", "tls-info", HOST, TLS_PORT, CA))
  info[#info + 1] = "- TLS negotiated, LuaSec: " .. tls_info(lua("luasocket_peer.lua", "tls-info", HOST, TLS_PORT, CA))
  info[#info + 1] = "- TLS negotiated, Python: " .. tls_info(python("tls-info", HOST, TLS_PORT, CA))
end
info[#info + 1] = string.format("- Sizes: the session userdata (smtp_wire) %s bytes, of which engine %s; "
  .. "allocated only when used: TLS filter %s (and once per connection its shared TLS context %s), proxy %s, "
  .. "SASL with its response %s; "
  .. "mbedTLS %s record buffers: MBEDTLS_SSL_IN_CONTENT_LEN %s, MBEDTLS_SSL_OUT_CONTENT_LEN %s "
  .. "(allocated %s + %s bytes at the handshake), max_fragment_length %s",
  sizes.wire or "?", sizes.engine or "?", sizes.tls or "?", sizes.tls_context or "?", sizes.proxy or "?",
  sizes.wire_sasl or "?",
  sizes.mbedtls or "?",
  sizes.in_content_len or "?", sizes.out_content_len or "?", sizes.in_buffer_len or "?",
  sizes.out_buffer_len or "?", sizes.max_fragment_length == "1" and "compiled in" or "not compiled in")
local a_ours, a_ls = stats("attach.ours", "idle"), stats("attach.luasocket", "idle")
local a_py = stats("attach.smtplib", "idle")
if a_ours then
  info[#info + 1] = string.format("- Idle process peak RSS (the baselines): ours %.1f MiB, LuaSocket %.1f MiB, "
    .. "Python %s MiB",
    a_ours.med, a_ls and a_ls.med or 0, a_py and string.format("%.1f", a_py.med) or "?")
end

local machine = {
  "- CPU: " .. sh("lscpu | sed -n 's/^Model name: *//p'") .. ", " .. sh("nproc") .. " CPUs; client on CPU "
    .. CPU .. ", servers on CPU " .. SERVER_CPU .. " (taskset)",
  "- Kernel: " .. sh("uname -sr"),
  "- " .. (sh(LUA .. " -v"):match("^Lua %S+") or LUA) .. ", "
    .. sh(LUA .. " -e 'print((require\"socket\")._VERSION)'")
    .. ", LuaSec " .. sh(LUA .. " -e 'print((require\"ssl\")._VERSION)'") .. ", mbedTLS " .. (sizes.mbedtls or "?"),
  "- " .. sh(PY .. " -c 'import sys,ssl; print(\"Python\", sys.version.split()[0] + \",\", ssl.OPENSSL_VERSION)'"),
  "- Server: Postfix smtp-sink " .. sh("/usr/sbin/postconf -d -h mail_version") .. ", "
    .. (sh("stunnel4 -version 2>&1"):match("stunnel %d[%d.]*") or "stunnel") .. " in front for implicit TLS "
    .. "(RSA 2048 certificate made by openssl at bench time, verified by every client)",
  "- Each figure: the median of " .. REPS .. " runs (min–max), runs of " .. SECS .. " s where timed; "
    .. "ours and the peers interleaved. Load average at the end: " .. sh("cut -d' ' -f1-3 /proc/loadavg"),
}

local head = { "figure", "ours", "peer", "peer's figure", "ratio (> 1: ours better)", "target (issue 10)" }
local function md_row(r) return "| " .. table.concat(r, " | ") .. " |" end
local lines = { md_row(head), md_row({ "---", "---", "---", "---", "---", "---" }) }
for _, r in ipairs(rows) do lines[#lines + 1] = md_row(r) end
local table_md = table.concat(lines, "\n")

local met, missed = {}, {}
for _, v in ipairs(verdicts) do table.insert(v[2] and met or missed, v[1]) end

print(table_md)
print()
print(table.concat(info, "\n"))
print(string.format("\ntargets met: %d, missed: %d%s", #met, #missed,
  #missed > 0 and (" (" .. table.concat(missed, "; ") .. ")") or ""))

local f = assert(io.open(OUT, "w"))
f:write("# smtp benchmark results\n\n",
  "Made by `make bench` (bench/run.sh) on ", sh("date -u '+%Y-%m-%d %H:%M UTC'"), ".\n\n",
  "## Machine\n\n", table.concat(machine, "\n"), "\n\n",
  "## Figures\n\n", table_md, "\n\n", table.concat(info, "\n"), "\n\n",
  string.format("Targets met: %d, missed: %d.\n", #met, #missed))
f:close()
io.stderr:write("bench: written to " .. OUT .. "\n")
os.exit(failures == 0 and 0 or 1)
