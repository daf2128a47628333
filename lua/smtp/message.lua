-- A message table -> an envelope and the bytes of an RFC 5322 message.
--
-- prepare() checks everything and raises on bad input before any byte is
-- sent; render() then builds the header and body for what the server offers
-- (8BITMIME decides between 8bit and quoted-printable).

local M = {}

local function fail(key, what, got)
  local shown = type(got) == "string" and string.format("%q", got) or tostring(got)
  error(string.format("smtp.send: %s must be %s, got %s", key, what, shown), 4)
end

-- ---- addresses (RFC 5321 4.1.2, with UTF-8 as RFC 6531 allows) ----

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
function M.valid_mailbox(a)
  if type(a) ~= "string" or #a > 254 or a:find("[%z\1-\31\127]") then return false end
  local l, d = a:match("^(.+)@([^@]+)$")
  if not l then return false end
  return #l <= 64 and valid_local(l) and valid_domain(d)
end

-- "Name <addr>", "addr" or { name = , address = } -> { name, address }.
local function parse_address(key, v)
  local name, addr
  if type(v) == "table" then
    name, addr = v.name, v.address
    if name ~= nil and type(name) ~= "string" then fail(key .. ".name", "a string", name) end
  elseif type(v) == "string" then
    name, addr = v:match("^%s*(.-)%s*<([^<>]*)>%s*$")
    if not addr then addr = v:match("^%s*(.-)%s*$") end
    if name then
      name = name:match('^"(.*)"$') or name
      if name == "" then name = nil end
    end
  else
    fail(key, 'an address ("Name <user@example.com>", "user@example.com" or { name =, address = })', v)
  end
  if name and name:find("[%z\r\n]") then fail(key, "a display name without CR, LF or NUL", name) end
  if not M.valid_mailbox(addr) then fail(key, "a valid e-mail address (user@domain)", addr) end
  return { name = name, address = addr }
end

local function parse_list(key, v)
  if v == nil then return {} end
  if type(v) == "table" and v.address == nil then
    local list = {}
    for i, item in ipairs(v) do list[i] = parse_address(key .. "[" .. i .. "]", item) end
    return list
  end
  return { parse_address(key, v) }
end

-- ---- header encoding ----

local function is_ascii(s)
  return not s:find("[\128-\255]")
end

-- RFC 2047 Q encoded-words of at most 75 octets, never splitting a UTF-8
-- character across two words.
local function encoded_words(s)
  local words, cur = {}, {}
  local budget = 75 - #"=?UTF-8?Q??="
  local used = 0
  for ch in s:gmatch("[%z\1-\127\192-\255][\128-\191]*") do
    local enc
    if ch == " " then
      enc = "_"
    elseif ch:find("^[%w!*+/%-]$") then
      enc = ch
    else
      enc = ch:gsub(".", function(c) return string.format("=%02X", c:byte()) end)
    end
    if used + #enc > budget then
      words[#words + 1] = "=?UTF-8?Q?" .. table.concat(cur) .. "?="
      cur, used = {}, 0
    end
    cur[#cur + 1] = enc
    used = used + #enc
  end
  words[#words + 1] = "=?UTF-8?Q?" .. table.concat(cur) .. "?="
  return words
end

-- "Name: value" folded at whitespace to stay under 78 columns where it can.
local function fold(name, words)
  local lines, line = {}, name .. ":"
  for _, w in ipairs(words) do
    if #line + 1 + #w > 78 and line ~= name .. ":" then
      lines[#lines + 1] = line
      line = " " .. w
    else
      line = line .. " " .. w
    end
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\r\n") .. "\r\n"
end

-- Words of an unstructured value; encoded-words when it is not ASCII or
-- holds a word too long to fit a line.
local function text_words(s)
  if is_ascii(s) then
    local words = {}
    for w in s:gmatch("%S+") do
      if #w > 900 then return encoded_words(s) end
      words[#words + 1] = w
    end
    if #words == 0 then words[1] = "" end
    return words
  end
  return encoded_words(s)
end

local function display_name(name)
  if not is_ascii(name) then return encoded_words(name) end
  if name:find("^[%w!#$%%&'*+%-/=?^_`{|}~ ]+$") then return { name } end
  return { '"' .. name:gsub('[\\"]', "\\%0") .. '"' }
end

local function address_header(name, list)
  local words = {}
  for i, a in ipairs(list) do
    local sep = i < #list and "," or ""
    if a.name then
      for _, w in ipairs(display_name(a.name)) do words[#words + 1] = w end
      words[#words + 1] = "<" .. a.address .. ">" .. sep
    else
      words[#words + 1] = a.address .. sep
    end
  end
  return fold(name, words)
end

-- ---- body ----

-- Quoted-printable (RFC 2045 6.7) of text whose line ends are already CRLF.
local function quoted_printable(text)
  local out = {}
  for line in (text .. "\r\n"):gmatch("(.-)\r\n") do
    local q = line:gsub("[%z\1-\8\11-\31=\127-\255]", function(c)
      return string.format("=%02X", c:byte())
    end):gsub("[ \t]$", function(c) return string.format("=%02X", c:byte()) end)
    while #q > 76 do
      local cut = q:sub(74, 74) == "=" and 73 or q:sub(75, 75) == "=" and 74 or 75
      out[#out + 1] = q:sub(1, cut) .. "="
      q = q:sub(cut + 1)
    end
    out[#out + 1] = q
  end
  return table.concat(out, "\r\n", 1, #out - 1)
end

local function normalize_newlines(s)
  return (s:gsub("\r\n?", "\n"):gsub("\n", "\r\n"))
end

-- ---- dates and ids ----

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

-- RFC 5322 date in UTC, free of the C locale's day and month names.
function M.date(t)
  local d = os.date("!*t", t)
  return string.format("%s, %02d %s %04d %02d:%02d:%02d +0000", DAYS[d.wday], d.day,
    MONTHS[d.month], d.year, d.hour, d.min, d.sec)
end

local function random_hex(n)
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(n)
  if f then f:close() end
  if not bytes or #bytes < n then
    local t = {}
    for i = 1, n do t[i] = string.char(math.random(0, 255)) end
    bytes = table.concat(t)
  end
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- ---- the message ----

local KEYS = { from = 1, sender = 1, to = 1, cc = 1, bcc = 1, reply_to = 1, subject = 1, text = 1,
  headers = 1, date = 1, message_id = 1, charset = 1 }

-- Header names that the message's own keys produce; set them through those.
local RESERVED = { from = "from", to = "to", cc = "cc", bcc = "bcc", ["reply-to"] = "reply_to",
  subject = "subject", date = "date", ["message-id"] = "message_id", ["mime-version"] = false,
  ["content-type"] = false, ["content-transfer-encoding"] = false }

local function check_header(name, value)
  if type(name) ~= "string" or not name:find("^[\33-\57\59-\126]+$") then
    fail("headers", "a table of header names (printable ASCII, no colon)", name)
  end
  local key = RESERVED[name:lower()]
  if key ~= nil then
    error(string.format("smtp.send: header %q is set by the message%s", name,
      key and (" key " .. key) or ""), 4)
  end
  if type(value) ~= "string" or value:find("[%z\r\n]") then
    fail("headers[" .. name .. "]", "a string without CR, LF or NUL", value)
  end
end

local function parse_headers(h)
  local list = {}
  if h == nil then return list end
  if type(h) ~= "table" then fail("headers", "a table", h) end
  if #h > 0 then
    for _, pair in ipairs(h) do
      if type(pair) ~= "table" then fail("headers", "a list of { name, value } pairs", pair) end
      check_header(pair[1], pair[2])
      list[#list + 1] = { pair[1], pair[2] }
    end
  else
    for name, value in pairs(h) do
      check_header(name, value)
      list[#list + 1] = { name, value }
    end
    table.sort(list, function(a, b) return a[1] < b[1] end)
  end
  return list
end

-- The envelope of test{ probe = { from =, to = } }, checked like a message's.
function M.probe(p)
  if type(p) ~= "table" then fail("probe", "a table { from = ..., to = ... }", p) end
  local to = {}
  for i, a in ipairs(parse_list("probe.to", p.to)) do to[i] = a.address end
  if #to == 0 then fail("probe.to", "at least one recipient", nil) end
  return { from = parse_address("probe.from", p.from or fail("probe.from", "set", nil)).address, to = to }
end

-- Check a message table; raises on anything wrong.
function M.prepare(msg, default_charset)
  if type(msg) ~= "table" then fail("the message", "a table", msg) end
  for k in pairs(msg) do
    if not KEYS[k] then error("smtp.send: unknown message key " .. tostring(k), 3) end
  end
  local charset = msg.charset or default_charset
  if charset:lower() ~= "utf-8" and charset:lower() ~= "us-ascii" then
    error(string.format("smtp.send: charset %q: only utf-8 text is supported in this version", charset), 3)
  end
  local m = {
    from = parse_address("from", msg.from or fail("from", "set", nil)),
    to = parse_list("to", msg.to),
    cc = parse_list("cc", msg.cc),
    bcc = parse_list("bcc", msg.bcc),
    reply_to = parse_list("reply_to", msg.reply_to),
    headers = parse_headers(msg.headers),
  }
  m.sender = msg.sender and parse_address("sender", msg.sender).address or m.from.address
  for _, key in ipairs({ "subject", "text", "date", "message_id" }) do
    local v = msg[key]
    if v ~= nil and type(v) ~= "string" then fail(key, "a string", v) end
  end
  for _, key in ipairs({ "subject", "date", "message_id" }) do
    if msg[key] and msg[key]:find("[%z\r\n]") then fail(key, "a string without CR, LF or NUL", msg[key]) end
  end
  m.recipients = {}
  for _, list in ipairs({ m.to, m.cc, m.bcc }) do
    for _, a in ipairs(list) do m.recipients[#m.recipients + 1] = a.address end
  end
  if #m.recipients == 0 then fail("to", "at least one recipient (to, cc or bcc)", nil) end
  m.subject = msg.subject
  m.text = normalize_newlines(msg.text or "")
  m.date = msg.date or M.date()
  local domain = m.from.address:match("@([^@]+)$")
  m.message_id = msg.message_id or ("<" .. random_hex(16) .. "@" .. domain .. ">")
  return m
end

-- The message's bytes for a server that offers `caps`: header, body, and the
-- MAIL parameters the body needs.
function M.render(m, caps)
  local body, cte = m.text, "7bit"
  local eight = not is_ascii(body)
  local long = false
  for line in (body .. "\r\n"):gmatch("(.-)\r\n") do
    if #line > 998 then long = true break end
  end
  if long or (eight and not caps["8bitmime"]) then
    body, cte = quoted_printable(body), "quoted-printable"
  elseif eight then
    cte = "8bit"
  end
  local h = {
    address_header("From", { m.from }),
    "Date: " .. m.date .. "\r\n",
    "Message-ID: " .. m.message_id .. "\r\n",
  }
  if #m.to > 0 then h[#h + 1] = address_header("To", m.to) end
  if #m.cc > 0 then h[#h + 1] = address_header("Cc", m.cc) end
  if #m.reply_to > 0 then h[#h + 1] = address_header("Reply-To", m.reply_to) end
  if m.subject then h[#h + 1] = fold("Subject", text_words(m.subject)) end
  for _, pair in ipairs(m.headers) do h[#h + 1] = fold(pair[1], text_words(pair[2])) end
  h[#h + 1] = "MIME-Version: 1.0\r\n"
  h[#h + 1] = "Content-Type: text/plain; charset=utf-8\r\n"
  h[#h + 1] = "Content-Transfer-Encoding: " .. cte .. "\r\n\r\n"
  local header = table.concat(h)
  local params = {}
  if cte == "8bit" then params[#params + 1] = "BODY=8BITMIME" end
  if caps.size then
    local unterminated = body ~= "" and body:sub(-2) ~= "\r\n"
    params[#params + 1] = "SIZE=" .. (#header + #body + (unterminated and 2 or 0))
  end
  return header, body, table.concat(params, " ")
end

return M
