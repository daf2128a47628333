-- The one place that checks and normalizes connection options.  A bad
-- option is a programming error: it raises at once, naming the key and what
-- was expected.

local M = {}

local function fail(path, what, got)
  local shown = type(got) == "string" and string.format("%q", got) or tostring(got)
  error(string.format("smtp.connection: %s must be %s, got %s", path, what, shown), 4)
end

-- Levenshtein distance, for suggesting the key that was meant.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function check_keys(t, known, path, level)
  for k in pairs(t) do
    if known[k] == nil then
      local best, best_d
      for name in pairs(known) do
        local d = distance(tostring(k), name)
        if not best_d or d < best_d or (d == best_d and name < best) then best, best_d = name, d end
      end
      local msg = string.format("smtp.connection: unknown option %s%s", path, tostring(k))
      if best_d and best_d <= math.max(2, math.floor(#tostring(k) / 3)) then
        msg = msg .. string.format(" (did you mean %s%s?)", path, best)
      end
      error(msg, level or 3)
    end
  end
end

local function check_type(path, v, kind)
  if v ~= nil and type(v) ~= kind then fail(path, "a " .. kind, v) end
  return v
end

local function check_enum(path, v, allowed)
  if v == nil then return nil end
  for _, a in ipairs(allowed) do
    if v == a then return v end
  end
  local quoted = {}
  for i, a in ipairs(allowed) do quoted[i] = string.format("%q", a) end
  fail(path, "one of " .. table.concat(quoted, ", "), v)
end

-- A string that goes on the wire or into a file name: no CR, LF or NUL.
local function check_line(path, v)
  check_type(path, v, "string")
  if v and v:find("[%z\r\n]") then fail(path, "a string without CR, LF or NUL", v) end
  return v
end

local function check_host(path, v)
  check_line(path, v)
  if v and (v == "" or v:find("%s")) then fail(path, "a host name or IP address", v) end
  return v
end

local function check_port(path, v)
  if v ~= nil and (type(v) ~= "number" or v % 1 ~= 0 or v < 1 or v > 65535) then
    fail(path, "an integer port from 1 to 65535", v)
  end
  return v
end

local TLS_KEYS = { protocol = 1, mode = 1, versions = 1, verify = 1, cafile = 1, capath = 1,
  certificate = 1, key = 1, servername = 1, pin = 1 }
local AUTH_KEYS = { anonymous = 1, username = 1, password = 1, domain = 1, token = 1,
  mechanisms = 1, allow_insecure = 1 }
local PROXY_KEYS = { type = 1, address = 1, port = 1, domain = 1, username = 1, password = 1 }
local KEYS = { name = 1, preset = 1, address = 1, port = 1, timeout = 1, charset = 1, helo = 1,
  auth = 1, tls = 1, proxy = 1, trace = 1, protocol = 1, transport = 1, pipelining = 1, chunking = 1 }

local VERSIONS = { "tls1.0", "tls1.1", "tls1.2", "tls1.3" }

-- tls.versions -> the range min..max as 1..4; max 0 means "the newest the
-- linked mbedTLS has", which is the default above TLS 1.2.
local function version_range(v)
  if v == nil then return 3, 0 end
  if type(v) ~= "table" or #v == 0 then fail("tls.versions", "a non-empty list of TLS versions", v) end
  local seen, min, max = {}, 5, 0
  for i, name in ipairs(v) do
    if type(name) == "string" and name:lower():find("^ssl") then
      error(string.format("smtp.connection: tls.versions[%d]: %s is SSL, which is broken and never offered; "
        .. "use tls1.2 or tls1.3", i, name), 5)
    end
    check_enum("tls.versions[" .. i .. "]", name, VERSIONS)
    for n, known in ipairs(VERSIONS) do
      if known == name then seen[n], min, max = true, math.min(min, n), math.max(max, n) end
    end
  end
  for n = min, max do
    if not seen[n] then fail("tls.versions", "a contiguous range of versions (the handshake allows a range)", v) end
  end
  return min, max
end

-- tls.pin: SHA-256 of the server's public key, as hex (sha256sum's output,
-- colons allowed) or base64 (curl's --pinnedpubkey sha256//...).
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function pin_bytes(p)
  if p == nil then return nil end
  local hex = p:gsub(":", "")
  if #hex == 64 and hex:find("^%x+$") then
    return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
  end
  local b64 = p:gsub("^sha256//", "")
  if #b64 == 44 and b64:find("^[%w+/]+=$") then
    local bits = b64:sub(1, 43):gsub(".", function(c)
      local n, out = B64:find(c, 1, true) - 1, {}
      for i = 6, 1, -1 do out[#out + 1] = math.floor(n / 2 ^ (i - 1)) % 2 end
      return table.concat(out)
    end)
    return (bits:sub(1, 256):gsub("%d%d%d%d%d%d%d%d", function(byte) return string.char(tonumber(byte, 2)) end))
  end
  fail("tls.pin", "the SHA-256 of the server's public key, in hex (64 digits) or base64", p)
end

local function tls_options(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then fail("tls", "a table", t) end
  check_keys(t, TLS_KEYS, "tls.")
  local o = {
    protocol = check_enum("tls.protocol", t.protocol, { "none", "ssl", "tls" }) or "tls",
    mode = check_enum("tls.mode", t.mode, { "explicit", "implicit", "opportunistic" }),
    verify = check_type("tls.verify", t.verify, "boolean"),
    cafile = check_line("tls.cafile", t.cafile),
    capath = check_line("tls.capath", t.capath),
    certificate = check_type("tls.certificate", t.certificate, "string"),
    key = check_type("tls.key", t.key, "string"),
    servername = check_host("tls.servername", t.servername),
    pin = pin_bytes(check_line("tls.pin", t.pin)),
  }
  o.min, o.max = version_range(t.versions)
  if o.verify == nil then o.verify = true end
  if (o.certificate == nil) ~= (o.key == nil) then
    fail(o.key and "tls.certificate" or "tls.key", "set too (a client certificate needs its key)", nil)
  end
  return o
end

local PASSWORD_MECHANISMS = { "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN", "LOGIN", "CRAM-MD5", "NTLM" }
local TOKEN_MECHANISMS = { "OAUTHBEARER", "XOAUTH2" }

local function check_mechanisms(list, token)
  if list == nil then return nil end
  if type(list) ~= "table" or #list == 0 then fail("auth.mechanisms", "a non-empty list of SASL mechanisms", list) end
  local allowed = token and TOKEN_MECHANISMS or PASSWORD_MECHANISMS
  local out = {}
  for i, m in ipairs(list) do
    local name = type(m) == "string" and m:upper() or m
    check_enum("auth.mechanisms[" .. i .. "]", name, allowed)
    out[i] = name
  end
  return out
end

local function auth_options(t)
  if t == nil then return { anonymous = true } end
  if type(t) ~= "table" then fail("auth", "a table", t) end
  check_keys(t, AUTH_KEYS, "auth.")
  local o = {
    anonymous = check_type("auth.anonymous", t.anonymous, "boolean"),
    username = check_line("auth.username", t.username),
    password = check_type("auth.password", t.password, "string"),
    domain = check_line("auth.domain", t.domain),
    token = check_type("auth.token", t.token, "string"),
    allow_insecure = check_type("auth.allow_insecure", t.allow_insecure, "boolean") or false,
  }
  if o.anonymous == nil then o.anonymous = o.username == nil and o.token == nil end
  if o.anonymous then
    if o.username or o.password or o.token then
      fail("auth.anonymous", "false (or unset) when credentials are given", true)
    end
    return o
  end
  if o.password and o.token then
    fail("auth.token", "unset when auth.password is set (one or the other)", "(a token)")
  end
  if o.password == "" then fail("auth.password", "a non-empty string", "(an empty password)") end
  if o.token == "" then fail("auth.token", "a non-empty string", "(an empty token)") end
  if not o.password and not o.token then fail("auth.password", "set (or auth.token for OAuth2)", nil) end
  if o.password and (o.username or "") == "" then fail("auth.username", "set with auth.password", o.username) end
  o.mechanisms = check_mechanisms(t.mechanisms, o.token ~= nil)
  return o
end

-- The mechanisms to try, strongest first, when auth.mechanisms is not set.
-- A Windows domain brings NTLM forward: it is how on-premises Exchange
-- knows domain accounts.
function M.mechanisms(auth)
  if auth.mechanisms then return auth.mechanisms end
  if auth.token then return TOKEN_MECHANISMS end
  if auth.domain or (auth.username or ""):find("\\", 1, true) then
    return { "SCRAM-SHA-256", "SCRAM-SHA-1", "NTLM", "PLAIN", "LOGIN", "CRAM-MD5" }
  end
  return PASSWORD_MECHANISMS
end

local function proxy_options(t)
  if t == nil then return { type = "none" } end
  if type(t) ~= "table" then fail("proxy", "a table", t) end
  check_keys(t, PROXY_KEYS, "proxy.")
  local o = {
    type = check_enum("proxy.type", t.type, { "none", "socks4", "socks4a", "socks5", "http" }) or "none",
    address = check_host("proxy.address", t.address),
    port = check_port("proxy.port", t.port),
    domain = check_line("proxy.domain", t.domain),
    username = check_line("proxy.username", t.username),
    password = check_type("proxy.password", t.password, "string"),
  }
  if o.type == "none" then return o end
  if not o.address then fail("proxy.address", "set for proxy type " .. o.type, nil) end
  o.port = o.port or (o.type == "http" and 8080 or 1080)
  if o.password and not o.username then fail("proxy.username", "set when proxy.password is", nil) end
  if o.password and o.type:find("^socks4") then
    fail("proxy.password", "unset for " .. o.type .. " (it sends a user id only)", "(a password)")
  end
  if o.domain and o.type ~= "http" then
    fail("proxy.domain", "unset for " .. o.type .. " (only HTTP proxies take one)", o.domain)
  end
  for _, key in ipairs({ "username", "password", "domain" }) do
    if o[key] and (#o[key] > 255 or o[key] == "") then
      fail("proxy." .. key, "1 to 255 octets", key == "password" and "(a password)" or o[key])
    end
  end
  return o
end

local function transport(t)
  local resolved, expected = require("smtp.transport").resolve(t)
  if not resolved then fail("transport", expected, t) end
  return resolved
end

-- Presets fill in what the user left out; explicit keys win.
local function merge(preset, t)
  local o = {}
  for k, v in pairs(preset) do o[k] = v end
  for k, v in pairs(t) do
    if type(v) == "table" and type(o[k]) == "table" then
      local sub = {}
      for kk, vv in pairs(o[k]) do sub[kk] = vv end
      for kk, vv in pairs(v) do sub[kk] = vv end
      o[k] = sub
    else
      o[k] = v
    end
  end
  o.preset = nil
  return o
end

-- A preset that is a function takes parameters: the connection's keys that
-- are not options (region for ses).  It gets them as its argument; a key it
-- does not read is an unknown option.  Returns the preset's table and the
-- connection's options without the parameters.
local function call_preset(name, fn, t)
  local own, params, read = {}, {}, {}
  for k, v in pairs(t) do
    if KEYS[k] then own[k] = v else params[k] = v end
  end
  local ok, p = pcall(fn, setmetatable({}, { __index = function(_, k)
    read[k] = true
    return params[k]
  end }))
  if not ok then error(p, 3) end
  local known = {}
  for k in pairs(KEYS) do known[k] = 1 end
  for k in pairs(read) do known[k] = 1 end
  check_keys(params, known, "", 4)
  if type(p) ~= "table" then fail("preset " .. name, "a table of options (what its function returns)", p) end
  return p, own
end

function M.normalize(t, presets)
  if type(t) ~= "table" then fail("the argument", "a table of options", t) end
  local p
  if t.preset ~= nil then
    check_type("preset", t.preset, "string")
    p = presets[t.preset]
    if not p then check_enum("preset", t.preset, (function()
      local names = {}
      for k in pairs(presets) do names[#names + 1] = k end
      table.sort(names)
      return names
    end)()) end
    if type(p) == "function" then p, t = call_preset(t.preset, p, t) end
  end
  check_keys(t, KEYS, "")
  local preset_name = t.preset
  if p then t = merge(p, t) end
  local o = {
    name = check_line("name", t.name),
    address = check_host("address", t.address),
    port = check_port("port", t.port),
    timeout = t.timeout,
    charset = check_line("charset", t.charset) or "utf-8",
    helo = check_line("helo", t.helo),
    tls = tls_options(t.tls),
    auth = auth_options(t.auth),
    proxy = proxy_options(t.proxy),
    trace = check_type("trace", t.trace, "function"),
    protocol = check_enum("protocol", t.protocol, { "smtp", "lmtp" }) or "smtp",
    transport = t.transport,
    pipelining = check_type("pipelining", t.pipelining, "boolean"),
    chunking = check_type("chunking", t.chunking, "boolean"),
    preset = preset_name,
    preset_hint = p and check_type("the preset's hint", p.hint, "string"),
  }
  if o.chunking == nil then o.chunking = true end
  if not o.address then fail("address", "the server's host name or IP address", nil) end
  o.transport = transport(o.transport)
  if o.timeout == nil then
    o.timeout = 60
  elseif type(o.timeout) ~= "number" or not (o.timeout > 0 and o.timeout < 2147483) then
    fail("timeout", "a positive number of seconds", o.timeout)
  end
  if o.helo and (o.helo == "" or o.helo:find("%s") or #o.helo > 255) then
    fail("helo", "a host name without spaces, at most 255 characters", o.helo)
  end
  local tls = o.tls
  if tls.protocol ~= "none" and not tls.mode then
    tls.mode = o.port == 465 and "implicit" or "explicit"
  end
  tls.servername = tls.servername or o.address
  if not o.port then
    o.port = tls.protocol == "none" and 25 or tls.mode == "implicit" and 465 or 587
  end
  if o.pipelining == nil then o.pipelining = true end
  if not o.auth.anonymous and tls.protocol == "none" and not o.auth.allow_insecure then
    error("smtp.connection: auth: credentials are never sent without TLS; use TLS (the default) "
      .. "or set auth.allow_insecure = true for a trusted network", 3)
  end
  return o
end

return M
