-- A message table -> an envelope and a stream of RFC 5322 / MIME bytes.
--
-- prepare() checks everything and raises on bad input before any byte is
-- sent (addresses, headers, charsets and the characters they cannot hold,
-- attachment files).  render() builds the message for what the server
-- offers, as a header string and a source of body chunks: attachments are
-- read and encoded a block at a time, so memory does not grow with them.

local core = require "smtp.core"
local address = require "smtp.address"

local M = {}

local function fail(key, what, got)
  local shown = type(got) == "string" and string.format("%q", got) or tostring(got)
  error(string.format("smtp.send: %s must be %s, got %s", key, what, shown), 4)
end

-- ---- addresses ----

local NOTIFY = { never = 1, success = 1, failure = 1, delay = 1 }

-- DSN NOTIFY: "never", or a list of success, failure, delay (RFC 3461 4.1).
local function parse_notify(key, v)
  if v == nil then return nil end
  local list = type(v) == "string" and { v } or v
  if type(list) ~= "table" or #list == 0 then fail(key, 'a list of "success", "failure", "delay", or "never"', v) end
  local out = {}
  for i, n in ipairs(list) do
    if not NOTIFY[n] or (n == "never" and #list > 1) then
      fail(key .. "[" .. i .. "]", '"success", "failure", "delay", or "never" alone', n)
    end
    out[i] = n:upper()
  end
  return table.concat(out, ",")
end

-- Addresses already checked: a program sends from and to the same few
-- again and again.  A table that empties itself when it grows too big.
local function memo()
  local t, n = {}, 0
  return function(k) return t[k] end, function(k, v)
    if n >= 256 then t, n = {}, 0 end
    t[k], n = v, n + 1
  end
end
local wire_of, remember_wire = memo()        -- mailbox -> its wire form
local parsed, remember_parsed = memo()       -- "Name <mailbox>" -> { name or false, wire form }

local function wire_address(key, addr)
  local wire = wire_of(addr)
  if wire then return wire end
  if not address.valid(addr) then fail(key, "a valid e-mail address (user@domain)", addr) end
  wire = address.wire_form(addr)
  remember_wire(addr, wire)
  return wire
end

-- "Name <addr>" or "addr" -> name (or nil), address as it goes on the wire.
local function parse_string_address(key, v)
  local known = parsed(v)
  if known then return known[1] or nil, known[2] end
  -- before trimming: %s would take CR and LF for spaces
  if v:find("[%z\r\n]") then fail(key, "an address without CR, LF or NUL", v) end
  local name, addr
  if v:find("<", 1, true) then name, addr = v:match("^%s*(.-)%s*<([^<>]*)>%s*$") end
  if not addr then addr = v:match("^%s*(.*%S)") or "" end
  if name then
    name = name:match('^"(.*)"$') or name
    if name == "" then name = nil end
  end
  local wire = wire_address(key, addr)
  remember_parsed(v, { name or false, wire })
  return name, wire
end

-- "Name <addr>", "addr" or { name = , address = , notify =, orcpt = } ->
-- { name, address, notify, orcpt }.
local function parse_address(key, v)
  if type(v) == "string" then
    local name, wire = parse_string_address(key, v)
    return { name = name, address = wire }
  end
  if type(v) ~= "table" then
    fail(key, 'an address ("Name <user@example.com>", "user@example.com" or { name =, address = })', v)
  end
  local name, orcpt = v.name, nil
  if name ~= nil and type(name) ~= "string" then fail(key .. ".name", "a string", name) end
  if name and name:find("[%z\r\n]") then fail(key, "a display name without CR, LF or NUL", name) end
  local notify = parse_notify(key .. ".notify", v.notify)
  if v.orcpt ~= nil then
    if not address.valid(v.orcpt) then fail(key .. ".orcpt", "a valid e-mail address", v.orcpt) end
    orcpt = v.orcpt
  end
  return { name = name, address = wire_address(key, v.address), notify = notify, orcpt = orcpt }
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

-- ---- text in the message's charset ----

local function is_ascii(s)
  return not s:find("[\128-\255]")
end

local function is_utf8(charset)
  return charset == "utf-8" or charset == "utf8"
end

-- UTF-8 text into the charset, or raise naming the character that does not
-- fit and where it is.
local function transcode(key, s, charset)
  if is_utf8(charset) then
    if not select(5, core.scan(s)) then fail(key, "UTF-8 text", "(invalid UTF-8)") end
    return s
  end
  local out, problem = core.transcode(s, charset)
  if not out then error(string.format("smtp.send: %s: %s", key, problem), 4) end
  return out
end

-- A body text in the charset, and what core.scan says of it (render
-- chooses its encoding from that), scanned once.
local function body_text(key, s, charset)
  if is_utf8(charset) then
    local scan = { core.scan(s) }
    if not scan[5] then fail(key, "UTF-8 text", "(invalid UTF-8)") end
    return s, scan
  end
  s = transcode(key, s, charset)
  return s, { core.scan(s) }
end

-- ---- header encoding ----

-- RFC 2047 Q encoded-words of at most 75 octets, in the charset, never
-- splitting a character across two words.  The first word shares its line
-- with `indent` columns ("Subject: "), so it is shorter.
local function encoded_words(key, s, charset, indent)
  local prefix = "=?" .. charset .. "?Q?"
  local budget = math.min(75, 78 - (indent or 1)) - #prefix - 2
  local words, cur, used = {}, {}, 0
  for ch in s:gmatch("[%z\1-\127\192-\255][\128-\191]*") do
    local enc
    if ch == " " then
      enc = "_"
    elseif ch:find("^[%w!*+/%-]$") then
      enc = ch
    else
      enc = transcode(key, ch, charset):gsub(".", function(c) return string.format("=%02X", c:byte()) end)
    end
    if used + #enc > budget and used > 0 then
      words[#words + 1] = prefix .. table.concat(cur) .. "?="
      cur, used = {}, 0
      budget = 75 - #prefix - 2
    end
    cur[#cur + 1] = enc
    used = used + #enc
  end
  words[#words + 1] = prefix .. table.concat(cur) .. "?="
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

-- "Name: value" for an unstructured value: ASCII folded before its
-- spaces and tabs, so that unfolding (removing CRLF) gives every one of
-- them back; encoded-words when it is not ASCII, holds a word too long to
-- fit a line, or holds "=?" (which a reader would take for the start of
-- an encoded-word).
local function unstructured(name, key, s, charset)
  -- Most values fit on their line as they are.
  if #name + #s <= 76 and not s:find("[^\33-\126 ]") and not s:find("=?", 1, true)
    and s:byte(1) ~= 32 and s:byte(-1) ~= 32 then
    return name .. ": " .. s .. "\r\n"
  end
  if is_ascii(s) and not s:find("=?", 1, true) then
    local long = false
    for w in s:gmatch("[^ \t]+") do long = long or #w > 900 end
    if not long then
      local lines, line = {}, name .. ":"
      for ws, w in s:gsub("^[ \t]+", ""):gmatch("([ \t]*)([^ \t]+)") do
        local piece = line == name .. ":" and " " .. w or ws .. w
        if #line + #piece > 78 and line ~= name .. ":" then
          lines[#lines + 1] = line
          line = piece
        else
          line = line .. piece
        end
      end
      lines[#lines + 1] = line == name .. ":" and line .. " " or line
      return table.concat(lines, "\r\n") .. "\r\n"
    end
  end
  return fold(name, encoded_words(key, s, charset, #name + 2))
end

-- The words of a display name, to fold between: atoms, a quoted-string
-- (which may fold at its spaces too, RFC 5322 3.2.4), or encoded-words.
local function display_name(key, name, charset, indent)
  if not is_ascii(name) or name:find("=?", 1, true) then return encoded_words(key, name, charset, indent) end
  local words = {}
  if name:find("^[%w!#$%%&'*+%-/=?^_`{|}~ ]+$") then
    for w in name:gmatch("%S+") do words[#words + 1] = w end
  else
    local q = '"' .. name:gsub('[\\"]', "\\%0") .. '"'
    for w in (q .. " "):gmatch("([^ ]*) ") do words[#words + 1] = w end
  end
  return words
end

local function address_header(name, list, charset)
  local only = list[2] == nil and list[1]
  if only and not only.name and #name + #only.address <= 76 then
    return name .. ": " .. only.address .. "\r\n"
  end
  local words = {}
  for i, a in ipairs(list) do
    local sep = i < #list and "," or ""
    if a.name then
      local indent = i == 1 and #name + 2 or 1
      for _, w in ipairs(display_name(name, a.name, charset, indent)) do words[#words + 1] = w end
      words[#words + 1] = "<" .. a.address .. ">" .. sep
    else
      words[#words + 1] = a.address .. sep
    end
  end
  return fold(name, words)
end

-- ---- parameters (RFC 2231 for non-ASCII file names) ----

local function quoted(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

-- '; name="value"', or '; name*0*=utf-8''...' continuations when the value
-- is not ASCII or would make the line too long.
local function parameter(name, value)
  if is_ascii(value) and #value < 60 and not value:find("[%c]") then
    return ";\r\n " .. name .. "=" .. quoted(value)
  end
  -- Sections of whole characters: decoders such as Python's decode each
  -- section by itself.
  local parts, cur = {}, ""
  local function flush()
    parts[#parts + 1] = string.format(";\r\n %s*%d*=%s%s", name, #parts, #parts == 0 and "utf-8''" or "", cur)
    cur = ""
  end
  for ch in value:gmatch("[%z\1-\127\192-\255][\128-\191]*") do
    local enc = ch:gsub("[^%w!#$&+%-.^_`|~]", function(c) return string.format("%%%02X", c:byte()) end)
    if #cur + #enc > 60 and cur ~= "" then flush() end
    cur = cur .. enc
  end
  flush()
  return table.concat(parts)
end

-- ---- content types ----

local TYPES = {
  txt = "text/plain", csv = "text/csv", html = "text/html", htm = "text/html", ics = "text/calendar",
  xml = "application/xml", json = "application/json", pdf = "application/pdf", zip = "application/zip",
  gz = "application/gzip", tar = "application/x-tar", doc = "application/msword",
  docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  xls = "application/vnd.ms-excel",
  xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  ppt = "application/vnd.ms-powerpoint",
  pptx = "application/vnd.openxmlformats-officedocument.presentationml.presentation",
  odt = "application/vnd.oasis.opendocument.text", eml = "message/rfc822",
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", webp = "image/webp",
  svg = "image/svg+xml", ico = "image/vnd.microsoft.icon", mp3 = "audio/mpeg", wav = "audio/wav",
  mp4 = "video/mp4", webm = "video/webm",
}

local function guess_type(filename)
  local ext = (filename or ""):match("%.([%w]+)$")
  return ext and TYPES[ext:lower()] or "application/octet-stream"
end

-- ---- dates and ids ----

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }

-- RFC 5322 date in UTC, free of the C locale's day and month names.
-- The last one is kept: messages sent in a loop share their second.
local last_time, last_date
function M.date(t)
  t = t or os.time()
  if t ~= last_time then
    local d = os.date("!*t", t)
    last_time, last_date = t, string.format("%s, %02d %s %04d %02d:%02d:%02d +0000", DAYS[d.wday], d.day,
      MONTHS[d.month], d.year, d.hour, d.min, d.sec)
  end
  return last_date
end

local random_hex = core.random_hex

-- ---- checking a message ----

local KEYS = { from = 1, sender = 1, to = 1, cc = 1, bcc = 1, reply_to = 1, subject = 1, text = 1,
  html = 1, attachments = 1, headers = 1, date = 1, message_id = 1, charset = 1, raw = 1, dsn = 1,
  require_tls = 1 }

-- RFC 3461 4: xtext, for ENVID and ORCPT.
local function xtext(s)
  return (s:gsub("[^\33-\42\44-\60\62-\126]", function(c) return string.format("+%02X", c:byte()) end))
end

local DSN_KEYS = { notify = 1, ret = 1, envid = 1, optional = 1 }

local function parse_dsn(d)
  if d == nil then return nil end
  if type(d) ~= "table" then fail("dsn", "a table { notify =, ret =, envid =, optional = }", d) end
  for k in pairs(d) do
    if not DSN_KEYS[k] then error("smtp.send: unknown key dsn." .. tostring(k), 4) end
  end
  if d.ret ~= nil and d.ret ~= "headers" and d.ret ~= "full" then fail("dsn.ret", '"headers" or "full"', d.ret) end
  if d.envid ~= nil and (type(d.envid) ~= "string" or #d.envid > 100 or d.envid:find("[%c\128-\255]")) then
    fail("dsn.envid", "printable ASCII, at most 100 characters", d.envid)
  end
  if d.optional ~= nil and type(d.optional) ~= "boolean" then fail("dsn.optional", "a boolean", d.optional) end
  return { notify = parse_notify("dsn.notify", d.notify), ret = d.ret and (d.ret == "full" and "FULL" or "HDRS"),
    envid = d.envid and xtext(d.envid), optional = d.optional }
end

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

local ATTACHMENT_KEYS = { path = 1, content = 1, filename = 1, content_type = 1, inline = 1, cid = 1 }

local function parse_attachment(i, a)
  local key = "attachments[" .. i .. "]"
  if type(a) ~= "table" then fail(key, "a table { path = ... } or { content = ... }", a) end
  for k in pairs(a) do
    if not ATTACHMENT_KEYS[k] then error("smtp.send: unknown key " .. key .. "." .. tostring(k), 4) end
  end
  if (a.path == nil) == (a.content == nil) then fail(key, "given a path or a content (one of them)", nil) end
  local att = { inline = a.inline == true }
  if a.path then
    if type(a.path) ~= "string" then fail(key .. ".path", "a string", a.path) end
    local f, why = io.open(a.path, "rb")
    if not f then error(string.format("smtp.send: %s.path: cannot read %s", key, why), 4) end
    -- open() takes a directory; read() does not
    local _, unreadable = f:read(0)
    if unreadable then
      f:close()
      error(string.format("smtp.send: %s.path: cannot read %s: %s", key, a.path, unreadable), 4)
    end
    att.size = f:seek("end")
    f:close()
    if not att.size then error(string.format("smtp.send: %s.path: %s is not a file", key, a.path), 4) end
    att.path = a.path
  else
    if type(a.content) ~= "string" then fail(key .. ".content", "a string", a.content) end
    att.content, att.size = a.content, #a.content
  end
  att.filename = a.filename or (a.path and a.path:match("([^/\\]+)$"))
  for _, k in ipairs({ "filename", "content_type", "cid" }) do
    local v = k == "filename" and att.filename or a[k]
    if v ~= nil and (type(v) ~= "string" or v:find("[%z\r\n]") or v == "") then
      fail(key .. "." .. k, "a non-empty string without CR, LF or NUL", v)
    end
  end
  if att.filename and not address.utf8_valid(att.filename) then fail(key .. ".filename", "UTF-8", att.filename) end
  att.content_type = a.content_type or guess_type(att.filename)
  if not att.content_type:find("^[%w!#$&^_.+%-]+/[%w!#$&^_.+%-]+$") then
    fail(key .. ".content_type", "a MIME type like \"application/pdf\"", att.content_type)
  end
  if a.cid ~= nil and not a.cid:find("^[%w!#$%%&'*+%-/=?^_`{|}~.@]+$") then
    fail(key .. ".cid", "a Content-ID without spaces or brackets", a.cid)
  end
  if att.inline then att.cid = a.cid or (random_hex(8) .. "@smtp") end
  return att
end

local function check_raw(raw)
  if type(raw) ~= "string" and type(raw) ~= "function" then
    fail("raw", "a whole message as a string, or a function returning chunks then nil", raw)
  end
  return raw
end

local STRING_KEYS = { "subject", "text", "html", "date", "message_id" }
local LINE_KEYS = { "subject", "date", "message_id" }
local NOT_WITH_RAW = { "subject", "text", "html", "attachments", "headers", "date", "message_id", "reply_to" }

-- Check a message table; raises on anything wrong.
function M.prepare(msg, default_charset)
  if type(msg) ~= "table" then fail("the message", "a table", msg) end
  for k in pairs(msg) do
    if not KEYS[k] then error("smtp.send: unknown message key " .. tostring(k), 3) end
  end
  local charset = msg.charset or default_charset
  if type(charset) ~= "string" or not charset:find("^[%w%-_.:]+$") then
    fail("charset", "a character set name like \"utf-8\" or \"windows-1252\"", charset)
  end
  charset = charset:lower()
  if not is_utf8(charset) and not core.transcode("", charset) then
    error(string.format("smtp.send: charset %q is not known to iconv on this system", charset), 3)
  end
  local m = {
    from = parse_address("from", msg.from or fail("from", "set", nil)),
    to = parse_list("to", msg.to),
    cc = parse_list("cc", msg.cc),
    bcc = parse_list("bcc", msg.bcc),
    reply_to = parse_list("reply_to", msg.reply_to),
    headers = parse_headers(msg.headers),
    charset = is_utf8(charset) and "utf-8" or charset,
  }
  m.sender = msg.sender and parse_address("sender", msg.sender).address or m.from.address
  m.dsn = parse_dsn(msg.dsn)
  if msg.require_tls ~= nil and type(msg.require_tls) ~= "boolean" then
    fail("require_tls", "a boolean", msg.require_tls)
  end
  m.require_tls = msg.require_tls
  -- Each recipient's RCPT parameters (DSN), in envelope order.
  m.recipients, m.rcpt_params = {}, {}
  for _, list in ipairs({ m.to, m.cc, m.bcc }) do
    for _, a in ipairs(list) do
      m.recipients[#m.recipients + 1] = a.address
      local notify = a.notify or (m.dsn and m.dsn.notify)
      local p = {}
      if notify then p[#p + 1] = "NOTIFY=" .. notify end
      if a.orcpt then p[#p + 1] = "ORCPT=rfc822;" .. xtext(a.orcpt) end
      m.rcpt_params[#m.rcpt_params + 1] = table.concat(p, " ")
    end
  end
  if #m.recipients == 0 then fail("to", "at least one recipient (to, cc or bcc)", nil) end
  if msg.raw ~= nil then
    for _, k in ipairs(NOT_WITH_RAW) do
      if msg[k] ~= nil then error("smtp.send: raw is the whole message: " .. k .. " cannot go with it", 3) end
    end
    m.raw = check_raw(msg.raw)
    return m
  end
  for _, key in ipairs(STRING_KEYS) do
    local v = msg[key]
    if v ~= nil and type(v) ~= "string" then fail(key, "a string", v) end
  end
  for _, key in ipairs(LINE_KEYS) do
    if msg[key] and msg[key]:find("[%z\r\n]") then fail(key, "a string without CR, LF or NUL", msg[key]) end
  end
  if msg.message_id and not msg.message_id:find("^<[^<>%s]+@[^<>%s]+>$") then
    fail("message_id", "like <unique@domain>", msg.message_id)
  end
  m.subject = msg.subject
  if msg.text then m.text, m.text_scan = body_text("text", msg.text, m.charset) end
  if msg.html then m.html, m.html_scan = body_text("html", msg.html, m.charset) end
  -- Header values are encoded when rendered; check now that they fit.
  if m.subject then transcode("subject", m.subject, m.charset) end
  for _, list in ipairs({ { m.from }, m.to, m.cc, m.reply_to }) do
    for _, a in ipairs(list) do
      if a.name then transcode("display name", a.name, m.charset) end
    end
  end
  for _, pair in ipairs(m.headers) do transcode("headers[" .. pair[1] .. "]", pair[2], m.charset) end
  m.attachments = {}
  if msg.attachments ~= nil then
    if type(msg.attachments) ~= "table" then fail("attachments", "a list", msg.attachments) end
    for i, a in ipairs(msg.attachments) do m.attachments[i] = parse_attachment(i, a) end
  end
  m.date = msg.date or M.date()
  local domain = m.from.address:match("@([^@]+)$")
  m.message_id = msg.message_id or ("<" .. random_hex(16) .. "@" .. domain .. ">")
  return m
end

-- The envelope of test{ probe = { from =, to = } }, checked like a message's.
function M.probe(p)
  if type(p) ~= "table" then fail("probe", "a table { from = ..., to = ... }", p) end
  local to = {}
  for i, a in ipairs(parse_list("probe.to", p.to)) do to[i] = a.address end
  if #to == 0 then fail("probe.to", "at least one recipient", nil) end
  return { from = parse_address("probe.from", p.from or fail("probe.from", "set", nil)).address, to = to }
end

-- ---- rendering ----

-- The longest line of s (line ends CRLF).
local function longest_line(s)
  local max = 0
  for line in (s .. "\r\n"):gmatch("(.-)\r\n") do
    if #line > max then max = #line end
  end
  return max
end

local function normalize_newlines(s)
  return (s:gsub("\r\n?", "\n"):gsub("\n", "\r\n"))
end

-- A chunk source over a string through an encoder.
local function encoded_string(kind, s)
  local done = false
  return function()
    if done then return nil end
    done = true
    local enc = core.encoder(kind)
    return enc:update(s) .. enc:finish()
  end
end

local BLOCK = 48 * 1024

-- A chunk source that reads a file a block at a time and encodes it.
local function encoded_file(path)
  local f, enc
  return function()
    if not f then
      local why
      f, why = io.open(path, "rb")
      if not f then error("smtp.send: cannot read attachment: " .. why, 0) end
      enc = core.encoder("base64")
    end
    if not enc then return nil end
    local block, why = f:read(BLOCK)
    if block then
      -- Each block leaves two dead strings; a collector that paces itself
      -- by allocation (LuaJIT, 5.1) would let megabytes of them pile up.
      collectgarbage("step", BLOCK / 1024)
      return enc:update(block)
    end
    if why then
      f:close()
      error("smtp.send: cannot read attachment " .. path .. ": " .. why, 0)
    end
    f:close()
    local tail = enc:finish()
    enc = nil
    return tail
  end
end

local function base64_size(n)
  local chars = math.ceil(n / 3) * 4
  return chars + 2 * math.ceil(chars / 76)
end

local EMPTY_SCAN = { 0, 0, 0, 0, true }

-- A text part: 7bit when it can, 8bit when the server takes it, else
-- quoted-printable, or base64 for text that is mostly not ASCII.
local function text_part(subtype, s, scan, charset, caps)
  -- The line ends stay as they are: the engine makes every one CRLF on the
  -- way out, and quoted-printable does the same.
  local high, nul, longest, crlf_len = scan[1], scan[2], scan[3], scan[4]
  local clean = nul == 0 and longest <= 998
  local cte
  if high == 0 and clean then
    cte = "7bit"
  elseif clean and caps["8bitmime"] then
    cte = "8bit"
  elseif high * 3 > crlf_len then
    cte = "base64"
  else
    cte = "quoted-printable"
  end
  local body, size = s, crlf_len
  if cte == "base64" then
    s = normalize_newlines(s)
    body, size = encoded_string("base64", s), base64_size(#s)
  elseif cte == "quoted-printable" then
    body, size = encoded_string("qp", s), crlf_len + 2 * high + crlf_len / 25
  end
  return {
    headers = "Content-Type: text/" .. subtype .. "; charset=" .. charset .. "\r\n"
      .. "Content-Transfer-Encoding: " .. cte .. "\r\n",
    body = body, size = size, eightbit = cte == "8bit", text = cte ~= "base64" and cte ~= "quoted-printable",
  }
end

local function attachment_part(a)
  local h = { "Content-Type: ", a.content_type }
  if a.filename then h[#h + 1] = parameter("name", a.filename) end
  h[#h + 1] = "\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: "
  h[#h + 1] = a.inline and "inline" or "attachment"
  if a.filename then h[#h + 1] = parameter("filename", a.filename) end
  h[#h + 1] = "\r\n"
  if a.cid then h[#h + 1] = "Content-ID: <" .. a.cid .. ">\r\n" end
  return {
    headers = table.concat(h),
    body = a.path and encoded_file(a.path) or encoded_string("base64", a.content),
    size = base64_size(a.size),
  }
end

local function multipart(subtype, parts)
  return { subtype = subtype, parts = parts }
end

-- The MIME tree: mixed > alternative > related, each only when needed.
local function tree(m, caps)
  local inline, attached = {}, {}
  for _, a in ipairs(m.attachments) do
    -- without html nothing refers to an inline part: it goes with the others
    table.insert((a.inline and m.html) and inline or attached, attachment_part(a))
  end
  local html
  if m.html then
    html = text_part("html", m.html, m.html_scan, m.charset, caps)
    if #inline > 0 then
      table.insert(inline, 1, html)
      html = multipart("related", inline)
    end
  end
  local text = (m.text or not html) and text_part("plain", m.text or "", m.text_scan or EMPTY_SCAN, m.charset, caps)
  local body = text and html and multipart("alternative", { text, html }) or html or text
  if #attached > 0 then
    table.insert(attached, 1, body)
    body = multipart("mixed", attached)
  end
  return body
end

-- A boundary that cannot occur in the content: encoded parts cannot hold
-- "=_" at all, and 7bit/8bit text is searched.
local function boundary(node)
  while true do
    local b = "=_" .. random_hex(12)
    local clash = false
    for _, p in ipairs(node.parts) do
      if p.text and type(p.body) == "string" and p.body:find("--" .. b, 1, true) then clash = true end
    end
    if not clash then return b end
  end
end

-- Flatten the tree into pieces (strings and chunk sources); returns the
-- root's headers and an estimate of the size.
local function flatten(node, pieces, caps)
  if not node.parts then
    pieces[#pieces + 1] = node.body
    return node.headers, node.size, node.eightbit
  end
  local b = boundary(node)
  local size, eightbit = 0, false
  for i, part in ipairs(node.parts) do
    pieces[#pieces + 1] = (i == 1 and "--" or "\r\n--") .. b .. "\r\n"
    local sub = {}
    local headers, psize, p8 = flatten(part, sub, caps)
    pieces[#pieces + 1] = headers .. "\r\n"
    for _, p in ipairs(sub) do pieces[#pieces + 1] = p end
    size, eightbit = size + #headers + psize + #b + 8, eightbit or p8
  end
  pieces[#pieces + 1] = "\r\n--" .. b .. "--\r\n"
  return "Content-Type: multipart/" .. node.subtype .. ";\r\n boundary=\"" .. b .. "\"\r\n",
    size + #b + 8, eightbit
end

-- Pieces -> one chunk source.
local function source(pieces)
  local i, cur = 0, nil
  return function()
    while true do
      if cur then
        local chunk = cur()
        if chunk then
          if chunk ~= "" then return chunk end
        else
          cur = nil
        end
      else
        i = i + 1
        local p = pieces[i]
        if p == nil or type(p) == "string" then return p end
        cur = p
      end
    end
  end
end

-- A header section without its Bcc fields (RFC 5322 3.6.3: never sent),
-- CRLF after each line.  A folded line belongs to the field above it.
local function without_bcc(header)
  local kept, skipping = {}, false
  for line in (header:gsub("\r\n?", "\n") .. "\n"):gmatch("([^\n]*)\n") do
    if not line:find("^[ \t]") then skipping = line:lower():find("^bcc%s*:") ~= nil end
    if not skipping then kept[#kept + 1] = line .. "\r\n" end
  end
  return table.concat(kept)
end

-- raw: the header section without its Bcc fields, then the rest as it is.
local function raw_source(raw)
  local next_chunk = type(raw) == "string" and (function()
    local done = false
    return function()
      if done then return nil end
      done = true
      return raw
    end
  end)() or raw
  local head, done_head = {}, false
  local size = 0
  return function()
    if done_head then return next_chunk() end
    while true do
      local chunk = next_chunk()
      if chunk == nil then
        -- no blank line: the message is all header section
        done_head = true
        return without_bcc((table.concat(head):gsub("\r?\n$", "")))
      end
      if type(chunk) ~= "string" then error("smtp.send: raw function returned a " .. type(chunk), 0) end
      head[#head + 1] = chunk
      size = size + #chunk
      local text = table.concat(head)
      local s, e = text:find("\r?\n\r?\n")
      if s or size > 1024 * 1024 then
        done_head = true
        return without_bcc(s and text:sub(1, s - 1) or text) .. (s and "\r\n" .. text:sub(e + 1) or "")
      end
    end
  end
end

-- The message for a server that offers `caps`: the header section, a
-- source of the rest, MAIL parameters, an estimate of the size (nil when
-- unknown), and whether it must go as binary (BDAT, no line handling).
function M.render(m, caps)
  local params = {}
  if m.raw then
    local known = type(m.raw) == "string"
    local size = known and #m.raw or nil
    -- Bytes that no line-based body can carry go as they are, in BDAT
    -- chunks, when the server takes BINARYMIME (RFC 3030 3).
    local binary = known and (m.raw:find("%z") or longest_line(normalize_newlines(m.raw)) > 998)
      and caps.binarymime and caps.chunking
    if binary then
      params[#params + 1] = "BODY=BINARYMIME"
    -- a function's chunks are not known yet: they may be 8-bit
    elseif (not known or not is_ascii(m.raw)) and caps["8bitmime"] then
      params[#params + 1] = "BODY=8BITMIME"
    end
    if caps.size and size then params[#params + 1] = "SIZE=" .. size end
    return "", raw_source(m.raw), table.concat(params, " "), size, binary
  end
  local pieces = {}
  local root_headers, body_size, eightbit = flatten(tree(m, caps), pieces, caps)
  local cs = m.charset
  local h = {
    address_header("From", { m.from }, cs),
    "Date: " .. m.date .. "\r\n",
    "Message-ID: " .. m.message_id .. "\r\n",
  }
  if #m.to > 0 then h[#h + 1] = address_header("To", m.to, cs) end
  if #m.cc > 0 then h[#h + 1] = address_header("Cc", m.cc, cs) end
  if #m.reply_to > 0 then h[#h + 1] = address_header("Reply-To", m.reply_to, cs) end
  if m.subject then h[#h + 1] = unstructured("Subject", "subject", m.subject, cs) end
  for _, pair in ipairs(m.headers) do h[#h + 1] = unstructured(pair[1], pair[1], pair[2], cs) end
  h[#h + 1] = "MIME-Version: 1.0\r\n"
  h[#h + 1] = root_headers .. "\r\n"
  local header = table.concat(h)
  local size = math.floor(#header + body_size)
  if eightbit then params[#params + 1] = "BODY=8BITMIME" end
  if caps.size then params[#params + 1] = "SIZE=" .. size end
  return header, source(pieces), table.concat(params, " "), size
end

return M
