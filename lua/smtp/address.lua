-- Addresses: parsing "Name <user@domain>", RFC 5321 mailbox syntax (with
-- UTF-8 as RFC 6531 allows), and IDN domains in their ASCII form.
--
-- An internationalized domain is sent as punycode (RFC 3492), which every
-- server understands; only a non-ASCII local part needs SMTPUTF8.  Labels
-- are lowercased (ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic
-- capitals; no full Unicode case folding or NFC here).

local M = {}

local ATEXT = "[%w!#$%%&'*+%-/=?^_`{|}~\128-\255]"

local function valid_local(l)
  if l:sub(1, 1) == '"' then
    if #l < 2 or l:sub(-1) ~= '"' then return false end
    local i, body = 1, l:sub(2, -2)
    while i <= #body do
      local c = body:byte(i)
      if c == 92 then                       -- backslash: quoted-pair
        local n = body:byte(i + 1)
        if not n or n < 32 or n > 126 then return false end
        i = i + 2
      elseif c == 34 or c < 32 or c == 127 then
        return false
      else
        i = i + 1
      end
    end
    return true
  end
  for atom in (l .. "."):gmatch("(.-)%.") do
    if atom == "" or atom:find("^" .. ATEXT .. "+$") == nil then return false end
  end
  return true
end

local function valid_domain(d)
  if d:sub(1, 1) == "[" then
    return d:find("^%[[%w%.:%-]+%]$") ~= nil
  end
  if #d > 255 then return false end
  for label in (d .. "."):gmatch("(.-)%.") do
    if #label == 0 or #label > 63 or label:find("^[%w\128-\255]") == nil
      or label:find("^[%w%-\128-\255]*$") == nil or label:sub(-1) == "-" then
      return false
    end
  end
  return true
end

-- The mailbox "local@domain"; true when valid.
function M.valid(a)
  if type(a) ~= "string" or #a > 254 or a:find("[%z\1-\31\127]") then return false end
  if a:find("[\128-\255]") and not M.utf8_valid(a) then return false end
  local l, d = a:match("^(.+)@([^@]+)$")
  if not l then return false end
  return #l <= 64 and valid_local(l) and valid_domain(d)
end

-- ---- UTF-8 ----

local UTF8_CHAR = "[%z\1-\127\194-\244][\128-\191]*"

function M.utf8_valid(s)
  if not s:find("[\128-\255]") then return true end   -- ASCII: nothing to check
  for ch in s:gmatch(UTF8_CHAR) do
    local n, c = #ch, ch:byte(1)
    local want = c < 0x80 and 1 or c < 0xE0 and 2 or c < 0xF0 and 3 or 4
    if n ~= want then return false end
  end
  return #s:gsub(UTF8_CHAR, "") == 0
end

local function code_points(s)
  local cps = {}
  for ch in s:gmatch(UTF8_CHAR) do
    local c = ch:byte(1)
    if c < 0x80 then
      cps[#cps + 1] = c
    else
      local n = c < 0xE0 and 2 or c < 0xF0 and 3 or 4
      local cp = c % (n == 2 and 0x20 or n == 3 and 0x10 or 0x08)
      for i = 2, n do cp = cp * 64 + ch:byte(i) % 64 end
      cps[#cps + 1] = cp
    end
  end
  return cps
end

-- The lower case of a capital of Latin-1, Latin Extended-A, Greek or
-- Cyrillic (UTS 46 maps them so; IDNA2008 allows no capitals in a label).
local function lower(c)
  if c < 0x80 then return (c >= 65 and c <= 90) and c + 32 or c end
  if (c >= 0xC0 and c <= 0xDE and c ~= 0xD7) or (c >= 0x391 and c <= 0x3AB and c ~= 0x3A2)
    or (c >= 0x410 and c <= 0x42F) then
    return c + 32
  end
  if c >= 0x400 and c <= 0x40F then return c + 80 end
  if c == 0x178 then return 0xFF end
  if (c >= 0x100 and c <= 0x137 and c ~= 0x130) or (c >= 0x14A and c <= 0x177) then
    return c % 2 == 0 and c + 1 or c
  end
  if (c >= 0x139 and c <= 0x148) or (c >= 0x179 and c <= 0x17E) then return c % 2 == 1 and c + 1 or c end
  return c
end

-- ---- punycode (RFC 3492 6.3) ----

local BASE, TMIN, TMAX, SKEW, DAMP = 36, 1, 26, 38, 700

local function adapt(delta, points, first)
  delta = math.floor(delta / (first and DAMP or 2))
  delta = delta + math.floor(delta / points)
  local k = 0
  while delta > math.floor((BASE - TMIN) * TMAX / 2) do
    delta = math.floor(delta / (BASE - TMIN))
    k = k + BASE
  end
  return k + math.floor((BASE - TMIN + 1) * delta / (delta + SKEW))
end

local function digit(d)
  return string.char(d < 26 and d + 97 or d + 22)
end

local function punycode(label)
  local cps = code_points(label)
  for i, c in ipairs(cps) do cps[i] = lower(c) end
  local out = {}
  for _, c in ipairs(cps) do
    if c < 128 then out[#out + 1] = string.char(c) end
  end
  local basic = #out
  local handled = basic
  if basic > 0 then out[#out + 1] = "-" end
  local n, delta, bias = 128, 0, 72
  while handled < #cps do
    local m = math.huge
    for _, c in ipairs(cps) do
      if c >= n and c < m then m = c end
    end
    delta = delta + (m - n) * (handled + 1)
    n = m
    for _, c in ipairs(cps) do
      if c < n then delta = delta + 1 end
      if c == n then
        local q, k = delta, BASE
        while true do
          local t = k <= bias and TMIN or k >= bias + TMAX and TMAX or k - bias
          if q < t then break end
          out[#out + 1] = digit(t + (q - t) % (BASE - t))
          q = math.floor((q - t) / (BASE - t))
          k = k + BASE
        end
        out[#out + 1] = digit(q)
        bias = adapt(delta, handled + 1, handled == basic)
        delta = 0
        handled = handled + 1
      end
    end
    delta = delta + 1
    n = n + 1
  end
  return "xn--" .. table.concat(out)
end

-- The domain in ASCII: each non-ASCII label as punycode.
function M.ascii_domain(d)
  if not d:find("[\128-\255]") then return d end
  local labels = {}
  for label in (d .. "."):gmatch("(.-)%.") do
    labels[#labels + 1] = label:find("[\128-\255]") and punycode(label) or label
  end
  return table.concat(labels, ".")
end

-- The address as it goes on the wire: the domain in ASCII.
function M.wire_form(a)
  local l, d = a:match("^(.+)@([^@]+)$")
  return l .. "@" .. M.ascii_domain(d)
end

return M
