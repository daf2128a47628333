-- The composer end to end: each message structure goes through the real
-- Postfix (its plain port), and what Postfix delivered is read back by
-- Python's email package (spec/support/mimeparse.py, an independent MIME
-- implementation) and compared with the input: decoded parts, filenames,
-- content types, headers, no defects, no line over 998 octets.  Envelope
-- details Postfix cannot show (IDN, SMTPUTF8, "nothing was sent") use the
-- scripted smtpd.py.
local smtp = require "smtp"
local server = require "spec.support.server"
local json = require "spec.support.json"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
local MIMEPARSE = here .. "/support/mimeparse.py"
local PYTHON = os.getenv("SMTP_TEST_PYTHON") or "/usr/bin/python3"

local function quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Run a shell command; its standard output and error.
local function run(command)
  local pipe = assert(io.popen(command .. " 2>&1", "r"))
  local out = pipe:read("*a")
  pipe:close()
  return out
end

local function mktemp_dir()
  return (run("mktemp -d"):gsub("%s+$", ""))
end

local function decode_json(out, what)
  local ok, value = pcall(json.decode, out)
  if not ok then error(what .. " said: " .. out:sub(1, 2000), 2) end
  return value
end

-- Python's view of a raw message (see mimeparse.py for the fields).
local function mimeparse(raw)
  local path = os.tmpname()
  write_file(path, raw)
  local out = run(quote(PYTHON) .. " " .. quote(MIMEPARSE) .. " " .. quote(path))
  os.remove(path)
  return decode_json(out, "mimeparse.py")
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64 = {}
for i = 1, 64 do b64[B64:byte(i)] = i - 1 end

local function unbase64(s)
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = s:byte(i, i + 3)
    local n = b64[a] * 262144 + b64[b] * 4096 + (b64[c] or 0) * 64 + (b64[d] or 0)
    out[#out + 1] = string.char(math.floor(n / 65536), math.floor(n / 256) % 256, n % 256)
      :sub(1, c == 61 and 1 or d == 61 and 2 or 3)
  end
  return table.concat(out)
end

-- Line ends as the Maildir file has them.
local function lf(s)
  return (s:gsub("\r\n", "\n"))
end

-- "multipart/mixed(multipart/alternative(text/plain,text/html),application/pdf)"
local function shape(node)
  if not node.parts then return node.content_type end
  local subs = {}
  for i, p in ipairs(node.parts) do subs[i] = shape(p) end
  return node.content_type .. "(" .. table.concat(subs, ",") .. ")"
end

-- The leaves of the tree, in order.
local function leaves(node, out)
  out = out or {}
  if node.parts then
    for _, p in ipairs(node.parts) do leaves(p, out) end
  else
    out[#out + 1] = node
  end
  return out
end

local function payload(leaf)
  return unbase64(leaf.payload_b64)
end

-- What every delivered message must satisfy; `allowed`: patterns of the
-- defects to let pass.
local function check(p, allowed)
  local defects = {}
  for _, d in ipairs(p.defects) do
    local ok = false
    for _, pattern in ipairs(allowed or {}) do ok = ok or d:find(pattern) ~= nil end
    if not ok then defects[#defects + 1] = d end
  end
  assert.are.same({}, defects)
  assert.is_true(p.max_line <= 998, "a line of " .. p.max_line .. " octets")
  for _, leaf in ipairs(leaves(p.tree)) do
    assert.is_nil(leaf.text_error, leaf.path)
  end
end

-- Header lines over 78 columns that could have been folded: more than one
-- word, or an encoded-word (the encoder picks its length).  A single long
-- ASCII word may stand alone.  Postfix's own trace headers are not ours to
-- judge.
local POSTFIX_ADDED = { ["return-path"] = true, ["x-original-to"] = true, ["delivered-to"] = true,
  received = true }

local function unfolded_lines(lines, out)
  local skipping = false
  for _, line in ipairs(lines or {}) do
    if not line:find("^[ \t]") then
      skipping = POSTFIX_ADDED[(line:match("^([^:]*):") or ""):lower()]
    end
    if not skipping and #line > 78 then
      local rest = line:gsub("^[^ \t:]+:", ""):gsub("^[ \t]+", "")
      if rest:find("[ \t]") or rest:find("^=%?.*%?=$") then out[#out + 1] = line end
    end
  end
  return out
end

local function long_header_lines(p)
  local out = unfolded_lines(p.header_lines, {})
  local function walk(node)
    unfolded_lines(node.header_lines, out)
    for _, sub in ipairs(node.parts or {}) do walk(sub) end
  end
  walk(p.tree)
  return out
end

local serial = 0
local function new_tag(what)
  serial = serial + 1
  return string.format("msg-%s-%d-%d-%d", what, os.time(), serial, math.random(1e9))
end

local function add_header(m, name, value)
  if m.headers == nil then
    m.headers = { [name] = value }
  elseif #m.headers > 0 then
    m.headers[#m.headers + 1] = { name, value }
  else
    m.headers[name] = value
  end
end

local pf, conn

local function postfix_connection(extra)
  local t = { address = pf.host, port = pf.ports.plain, timeout = 20, tls = { protocol = "none" } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return smtp.connection(t)
end

-- Send m through Postfix (From, To and the Subject defaulted, an
-- X-Spec-Tag header added to find it); Python's view of what was
-- delivered, the delivered text, the receipt.
local function through_postfix(m, c, allowed)
  local tag = new_tag("pf")
  m.from = m.from or "sender@example.test"
  if m.to == nil and m.cc == nil and m.bcc == nil then m.to = "rcpt@example.test" end
  if m.subject == nil then m.subject = tag end
  add_header(m, "X-Spec-Tag", tag)
  local receipt, err = (c or conn):send(m)
  assert(receipt, tostring(err))
  local raw = server.postfix_wait("X-Spec-Tag: " .. tag)
  local p = mimeparse(raw)
  check(p, allowed)
  return p, raw, receipt
end

local with_server = server.with

local function scripted_connection(srv, extra)
  local t = { address = srv.host, port = srv.port, timeout = 10, tls = { protocol = "none" } }
  for k, v in pairs(extra or {}) do t[k] = v end
  return smtp.connection(t)
end

local function count(records, kind)
  local n = 0
  for _, r in ipairs(records) do
    if r.type == kind then n = n + 1 end
  end
  return n
end

-- A case's label: its keys and values, as Lua would write them.
local function label(t)
  if type(t) ~= "table" then return string.format("%q", t):gsub("\\\n", "\\n") end
  local keys, parts = {}, {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. " = " .. label(t[k]) end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

-- Each message of `bad` must raise at send(), before any connection: after
-- them one good message goes through, and the server saw exactly that one
-- connection (records are in order, so an earlier connect would show).
-- Returns the error messages.
local function refused_before_connecting(bad, extra)
  local errors, sent = {}, {}
  with_server({}, function(srv)
    local c = scripted_connection(srv, extra)
    for i, m in ipairs(bad) do
      local ok, err = pcall(c.send, c, m)
      if ok then
        sent[#sent + 1] = label(m)
      else
        assert.is_string(err)
        assert.truthy(err:find("smtp.send", 1, true), err)
      end
      errors[i] = tostring(err)
    end
    assert.are.same({}, sent)
    assert(c:send { from = "sender@example.com", to = "rcpt@example.com", subject = "good", text = "ok\n" })
    local records = srv:records()
    assert.are.equal(1, count(records, "connect"))
    assert.are.equal(1, count(records, "message"))
  end)
  return errors
end

-- Python 3.11 flags the UTF-8 addresses of RFC 6532 (SMTPUTF8) headers.
local RFC6532 = { "^: [%w-]+ header: NonASCIILocalPartDefect", "^: [%w-]+ header: UndecodableBytesDefect" }

local function find_leaf(p, content_type)
  for _, leaf in ipairs(leaves(p.tree)) do
    if leaf.content_type == content_type then return leaf end
  end
end

local function bytes_0_to_255()
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  return table.concat(t)
end

describe("the composer, through Postfix and back through Python's email package", function()
  local dir
  setup(function()
    pf = server.postfix()
    conn = postfix_connection()
    dir = mktemp_dir()
  end)
  teardown(function()
    if dir and dir:find("^/tmp/") then os.execute("rm -rf " .. quote(dir)) end
  end)

  describe("structure", function()
    it("sends ASCII text alone as one text/plain part in 7bit, with Date, Message-ID and MIME-Version", function()
      local text = "Hello,\nplain ASCII text.\n\n-- \nsignature\n"
      local p, _, receipt = through_postfix { text = text }
      assert.are.equal("text/plain", shape(p.tree))
      assert.are.equal("7bit", p.tree.transfer_encoding)
      assert.are.equal("utf-8", p.tree.charset)
      assert.are.equal(text, lf(p.tree.text))
      assert.are.equal("1.0", p.headers["MIME-Version"])
      assert.are.equal(receipt.message_id, p.headers["Message-ID"])
      assert.truthy(p.headers["Message-ID"]:find("^<[^<>@]+@example%.test>$"), p.headers["Message-ID"])
      assert.is_string(p.date)   -- Python could read the Date
      assert.are.equal("sender@example.test", p.addresses.From[1].address)
      assert.are.equal("rcpt@example.test", p.addresses.To[1].address)
    end)

    it("sends UTF-8 text as 8bit with BODY=8BITMIME, which Postfix offers", function()
      local text = "Gr\195\188\195\159e, caf\195\169, \226\128\156quotes\226\128\157 \226\130\172\n"
        .. "\230\151\165\230\156\172\232\170\158\n"
      local p = through_postfix { text = text }
      assert.are.equal("text/plain", shape(p.tree))
      assert.are.equal("8bit", p.tree.transfer_encoding)
      assert.are.equal("utf-8", p.tree.charset)
      assert.are.equal(text, lf(p.tree.text))
      -- The MAIL parameter, where the scripted server shows it.
      with_server({}, function(srv)
        assert(scripted_connection(srv):send { from = "sender@example.com", to = "rcpt@example.com", text = text })
        local m = srv:messages()[1]
        local has = false
        for _, o in ipairs(m.mail_options) do has = has or o:upper() == "BODY=8BITMIME" end
        assert.is_true(has, table.concat(m.mail_options, " "))
        local q = mimeparse(m.data)
        check(q)
        assert.are.equal("8bit", q.tree.transfer_encoding)
        assert.are.equal(text, lf(q.tree.text))
      end)
    end)

    it("puts text and html in multipart/alternative, and html alone in one text/html part", function()
      local text = "Plain version\n"
      local html = "<html><body><p>HTML version &amp; more</p></body></html>\n"
      local p = through_postfix { text = text, html = html }
      assert.are.equal("multipart/alternative(text/plain,text/html)", shape(p.tree))
      local l = leaves(p.tree)
      assert.are.equal(text, lf(l[1].text))
      assert.are.equal(html, lf(l[2].text))
      assert.are.equal("utf-8", l[2].charset)
      p = through_postfix { html = html }
      assert.are.equal("text/html", shape(p.tree))
      assert.are.equal(html, lf(p.tree.text))
    end)

    it("puts attachments after the body in multipart/mixed", function()
      local text, html = "See the attachments.\n", "<p>See the attachments.</p>"
      local pdf = "%PDF-1.4\n%\226\227\207\211\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
      local csv = "a,b\r\n1,2\r\n"
      local p = through_postfix { text = text, html = html, attachments = {
        { content = pdf, filename = "report.pdf" }, { content = csv, filename = "table.csv" } } }
      assert.are.equal("multipart/mixed(multipart/alternative(text/plain,text/html),application/pdf,text/csv)",
        shape(p.tree))
      local l = leaves(p.tree)
      assert.are.equal(text, lf(l[1].text))
      assert.are.equal(html, lf(l[2].text))
      assert.are.equal(pdf, payload(l[3]))
      assert.are.equal("report.pdf", l[3].filename)
      assert.are.equal("attachment", l[3].disposition)
      assert.are.equal("base64", l[3].transfer_encoding)
      assert.are.equal(csv, payload(l[4]))
      assert.are.equal("table.csv", l[4].filename)
      assert.are.equal("attachment", l[4].disposition)
      p = through_postfix { text = text, attachments = { { content = pdf, filename = "report.pdf" } } }
      assert.are.equal("multipart/mixed(text/plain,application/pdf)", shape(p.tree))
      assert.are.equal(pdf, payload(leaves(p.tree)[2]))
    end)

    it("puts html and its inline images in multipart/related, inside alternative when there is text", function()
      local png = "\137PNG\r\n\26\n\0\0\0\rIHDR" .. bytes_0_to_255()
      local cid = "logo.1@example.test"
      local html = '<p>Our logo: <img src="cid:' .. cid .. '" alt="logo"></p>\n'
      local function image() return { content = png, filename = "logo.png", inline = true, cid = cid } end
      local function check_image(leaf)
        assert.are.equal("image/png", leaf.content_type)
        assert.are.equal("inline", leaf.disposition)
        assert.are.equal("<" .. cid .. ">", leaf.content_id)
        assert.are.equal("logo.png", leaf.filename)
        assert.are.equal(png, payload(leaf))
      end

      local p = through_postfix { text = "Our logo is in the HTML part.\n", html = html, attachments = { image() } }
      assert.are.equal("multipart/alternative(text/plain,multipart/related(text/html,image/png))", shape(p.tree))
      local l = leaves(p.tree)
      assert.are.equal(html, lf(l[2].text))
      assert.truthy(l[2].text:find("cid:" .. cid, 1, true))
      check_image(l[3])

      p = through_postfix { html = html, attachments = { image() } }
      assert.are.equal("multipart/related(text/html,image/png)", shape(p.tree))
      check_image(leaves(p.tree)[2])

      p = through_postfix { text = "t\n", html = html,
        attachments = { { content = "%PDF-1.4\n", filename = "a.pdf" }, image() } }
      assert.are.equal("multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png)),"
        .. "application/pdf)", shape(p.tree))
      check_image(leaves(p.tree)[3])
      assert.are.equal("a.pdf", leaves(p.tree)[4].filename)

      -- No cid given: one is made up, so that the html can refer to it.
      p = through_postfix { html = "<p>x</p>", attachments = { { content = png, filename = "x.png", inline = true } } }
      assert.are.equal("multipart/related(text/html,image/png)", shape(p.tree))
      assert.truthy(leaves(p.tree)[2].content_id:find("^<[^<>%s]+>$"))
    end)

    it("keeps an inline image of a message that has no html", function()
      local png = "\137PNG\r\n\26\nnot really"
      local p = through_postfix { text = "text only\n",
        attachments = { { content = png, filename = "x.png", inline = true, cid = "x@example.test" } } }
      local image = find_leaf(p, "image/png")
      assert.is_table(image, "the inline image was dropped: " .. shape(p.tree))
      assert.are.equal(png, payload(image))
      assert.are.equal("<x@example.test>", image.content_id)
    end)

    it("reads attachments from a path and from content, guessing the content type from the name", function()
      local files = {
        ["report.pdf"] = "%PDF-1.7\n" .. bytes_0_to_255(),
        ["photo.PNG"] = "\137PNG\r\n\26\n" .. string.rep("\0\255", 100),
        ["data.xyz"] = "unknown extension\n",
        ["noext"] = "no extension at all",
        ["empty.pdf"] = "",
      }
      for name, bytes in pairs(files) do write_file(dir .. "/" .. name, bytes) end
      local p = through_postfix { text = "attachments\n", attachments = {
        { path = dir .. "/report.pdf" },
        { path = dir .. "/photo.PNG" },
        { path = dir .. "/data.xyz" },
        { path = dir .. "/noext" },
        { path = dir .. "/noext", filename = "renamed.png" },
        { content = "a;b\n", filename = "table.csv" },
        { content = "\0\1\2" },
        { content = "<x/>", filename = "x.bin", content_type = "application/xml" },
        { content = "", filename = "empty.txt" },
        { path = dir .. "/empty.pdf" },
      } }
      local want = {
        { "application/pdf", "report.pdf", files["report.pdf"] },
        { "image/png", "photo.PNG", files["photo.PNG"] },
        { "application/octet-stream", "data.xyz", files["data.xyz"] },
        { "application/octet-stream", "noext", files.noext },
        { "image/png", "renamed.png", files.noext },
        { "text/csv", "table.csv", "a;b\n" },
        { "application/octet-stream", nil, "\0\1\2" },
        { "application/xml", "x.bin", "<x/>" },
        { "text/plain", "empty.txt", "" },
        { "application/pdf", "empty.pdf", "" },
      }
      local l = leaves(p.tree)
      assert.are.equal(#want + 1, #l)
      for i, w in ipairs(want) do
        local leaf = l[i + 1]
        assert.are.equal(w[1], leaf.content_type, "attachment " .. i)
        assert.are.equal(w[2], leaf.filename, "attachment " .. i)
        assert.are.equal("attachment", leaf.disposition, "attachment " .. i)
        assert.are.equal(w[3], payload(leaf), "attachment " .. i)
      end
    end)
  end)

  describe("encodings", function()
    it("encodes non-ASCII subject, display names and header values as words Python decodes exactly, "
      .. "folded under 78 columns", function()
      local m = {
        from = { name = "J\195\182rg M\195\188ller-L\195\188denscheidt", address = "sender@example.test" },
        to = { "Zo\195\171 \195\133ngstr\195\182m <rcpt@example.test>",
               { name = "\230\151\165\230\156\172 \229\164\170\233\131\142", address = "taro@example.test" } },
        cc = { name = "\195\156n\195\175c\195\182d\195\169, with a comma \"and quotes\"", address = "cc@example.test" },
        reply_to = { "\195\132rger-Abteilung <reply@example.test>",
                     { name = 'Doe, John "JD" \\ (ASCII)', address = "doe@example.test" } },
        subject = "Gr\195\188\195\159e aus K\195\182ln \226\128\147 \230\151\165\230\156\172\232\170\158\227\129\174"
          .. "\228\187\182\229\144\141 \226\128\147 \206\149\206\187\206\187\206\183\206\189\206\185\206\186\206\172",
        headers = { ["X-Note"] = "\195\156n\195\175c\195\182de in a custom header, long enough to need folding "
          .. "across lines: \230\151\165\230\156\172\232\170\158\227\131\134\227\130\173\227\130\185\227\131\136" },
        text = "body\n",
      }
      local p = through_postfix(m)
      assert.are.equal(m.subject, p.headers.Subject)
      assert.are.equal(m.headers["X-Note"], p.headers["X-Note"])
      assert.are.equal(m.from.name, p.addresses.From[1].name)
      assert.are.equal("Zo\195\171 \195\133ngstr\195\182m", p.addresses.To[1].name)
      assert.are.equal("rcpt@example.test", p.addresses.To[1].address)
      assert.are.equal(m.to[2].name, p.addresses.To[2].name)
      assert.are.equal("taro@example.test", p.addresses.To[2].address)
      assert.are.equal(m.cc.name, p.addresses.Cc[1].name)
      assert.are.equal("\195\132rger-Abteilung", p.addresses["Reply-To"][1].name)
      assert.are.equal('Doe, John "JD" \\ (ASCII)', p.addresses["Reply-To"][2].name)
      assert.are.equal('Doe, John "JD" \\ (ASCII)', p.addresses["Reply-To"][2].display_name)
      -- No 8-bit byte in any header: encoded-words, not raw UTF-8.
      for _, line in ipairs(p.header_lines) do assert.falsy(line:find("[\128-\255]"), line) end
      assert.are.same({}, long_header_lines(p))
    end)

    it("folds a 300-character subject, ASCII or not; a single long word may stand alone", function()
      local words = {}
      while #table.concat(words, " ") < 300 do words[#words + 1] = "word" .. #words end
      local subjects = {
        table.concat(words, " "):sub(1, 300),
        string.rep("Gr\195\188\195\159e \226\130\172 ", 34):sub(1, 300),
        string.rep("\230\151\165\230\156\172\232\170\158", 34),
        string.rep("x", 300),
      }
      for i, subject in ipairs(subjects) do
        local p = through_postfix { subject = subject, text = "subject " .. i .. "\n" }
        assert.are.equal(subject, p.headers.Subject, "subject " .. i)
        assert.are.same({}, long_header_lines(p), "subject " .. i)
      end
    end)

    it("keeps a subject that fits its line as it is, and drops only its outer blanks", function()
      -- 69 characters make "Subject: " + 69 = 78 columns, the most on one line.
      local fits = string.rep("abcd efgh ", 7):sub(1, 69)
      local cases = {
        { fits, fits, 1 },
        { fits .. "x", fits .. "x", 2 },
        { "two  spaces   kept", "two  spaces   kept", 1 },
        { "  blank before and after  ", "blank before and after", 1 },
        { "tab\tinside", "tab\tinside", 1 },
        { "", "", 1 },
      }
      for i, c in ipairs(cases) do
        local p = through_postfix { subject = c[1], text = "subject case " .. i .. "\n" }
        assert.are.equal(c[2], p.headers.Subject, "case " .. i)
        local lines = 0
        for _, line in ipairs(p.header_lines) do
          if line:find("^Subject:") then lines = 1 elseif lines > 0 and line:find("^[ \t]") then lines = lines + 1
          elseif lines > 0 then break end
        end
        assert.are.equal(c[3], lines, "case " .. i .. ": lines")
        assert.are.same({}, long_header_lines(p), "case " .. i)
      end
      local p = through_postfix { from = "s@example.test", to = string.rep("r", 60) .. "@example.test",
        text = "x\n" }
      assert.are.equal(string.rep("r", 60) .. "@example.test", p.addresses.To[1].address)
    end)

    it("folds a long ASCII display name and a long list of addresses", function()
      local to = {}
      for i = 1, 12 do to[i] = "Recipient Number " .. i .. " <rcpt" .. i .. "@example.test>" end
      local long = "A very long ASCII display name with many words that goes on and on past the limit"
      local quoted = "Doe, John: another very long ASCII display name, this one quoted because of its commas"
      local p = through_postfix { from = { name = long, address = "sender@example.test" }, to = to,
        cc = { name = quoted, address = "cc@example.test" }, text = "x\n" }
      assert.are.equal(long, p.addresses.From[1].name)
      assert.are.equal(quoted, p.addresses.Cc[1].name)
      assert.are.equal(12, #p.addresses.To)
      for i = 1, 12 do
        assert.are.equal("Recipient Number " .. i, p.addresses.To[i].name)
        assert.are.equal("rcpt" .. i .. "@example.test", p.addresses.To[i].address)
      end
      assert.are.same({}, long_header_lines(p))
    end)

    it("keeps text that looks like an encoded-word literal", function()
      local looks = "literal =?utf-8?Q?abc?= text"
      local p = through_postfix { subject = looks, text = "x\n", headers = { ["X-Looks"] = looks },
        from = { name = "=?utf-8?Q?Mallory?=", address = "sender@example.test" } }
      assert.are.equal(looks, p.headers.Subject)
      assert.are.equal(looks, p.headers["X-Looks"])
      assert.are.equal("=?utf-8?Q?Mallory?=", p.addresses.From[1].name)
    end)

    it("keeps the whitespace of an ASCII subject as it is", function()
      local subject = "Re:  two  spaces,\ta tab   and more"
      local p = through_postfix { subject = subject, text = "x\n" }
      assert.are.equal(subject, p.headers.Subject)
    end)

    it("encodes a header value holding a word too long for any line", function()
      local word = string.rep("abcdefghij", 120)
      local spaced = string.rep("a few words ", 100)
      local p = through_postfix { text = "x\n", headers = { ["X-Long-Word"] = word, ["X-Long-Text"] = spaced } }
      assert.are.equal(word, p.headers["X-Long-Word"])
      assert.are.equal(spaced:gsub(" $", ""), p.headers["X-Long-Text"]:gsub(" $", ""))
      assert.are.same({}, long_header_lines(p))
    end)

    it("names attachments in RFC 2231 when the name is not ASCII or long, decoded exactly", function()
      local names = {
        "r\195\169sum\195\169 \226\130\172.pdf",
        string.rep("\195\156n\195\175c\195\182d\195\169-", 12) .. "\230\151\165\230\156\172.txt",
        string.rep("a-very-long-ascii-file-name-", 4) .. ".pdf",
        'say "hi" \\ there (1).txt',
      }
      local attachments = {}
      for i, name in ipairs(names) do attachments[i] = { content = "file " .. i, filename = name } end
      attachments[#attachments + 1] = { content = "inline", filename = "\195\169t\195\169.png", inline = true }
      local p = through_postfix { text = "x\n", html = "<p>x</p>", attachments = attachments }
      local l = leaves(p.tree)
      for i, name in ipairs(names) do
        local leaf = l[#l - #names + i]
        assert.are.equal(name, leaf.filename, "file " .. i)
        assert.are.equal(name, leaf.name, "file " .. i)
        assert.are.equal("file " .. i, payload(leaf))
      end
      assert.are.equal("application/pdf", l[#l - #names + 1].content_type)
      local image = find_leaf(p, "image/png")
      assert.are.equal("\195\169t\195\169.png", image.filename)
      assert.are.equal("inline", image.disposition)
      assert.are.same({}, long_header_lines(p))
    end)

    it("sends lines over 998 octets as quoted-printable that decodes exactly", function()
      local texts = {
        string.rep("0123456789", 150) .. "\nshort line\n",
        "trailing spaces  \n\ttabs\t\na = b, =3D stays\n" .. string.rep("caf\195\169 ", 200) .. "\n",
        string.rep("x", 997) .. "\n" .. string.rep("y", 999) .. "\n.\n." .. string.rep("z", 1200) .. "\n",
      }
      for i, text in ipairs(texts) do
        local p = through_postfix { text = text, html = "<p>" .. string.rep("h", 2000) .. "</p>" }
        local l = leaves(p.tree)
        assert.are.equal("quoted-printable", l[1].transfer_encoding, "text " .. i)
        assert.are.equal(text, lf(l[1].text), "text " .. i)
        assert.is_true(l[1].encoded_max_line <= 76, "text " .. i .. ": " .. l[1].encoded_max_line)
        assert.are.equal("quoted-printable", l[2].transfer_encoding)
        assert.are.equal("<p>" .. string.rep("h", 2000) .. "</p>", lf(l[2].text))
      end
    end)

    it("sends mostly Japanese text as base64 or quoted-printable when it cannot go 8bit", function()
      local sentence = "\230\151\165\230\156\172\232\170\158\227\129\174\227\131\134\227\130\173\227\130\185"
        .. "\227\131\136\227\129\167\227\129\153\227\128\130"
      -- Through Postfix (it offers 8BITMIME): a line over 998 octets.
      local long = string.rep(sentence, 40) .. "\n" .. sentence .. "\n"
      local p = through_postfix { text = long, subject = sentence }
      assert.truthy(p.tree.transfer_encoding == "base64" or p.tree.transfer_encoding == "quoted-printable",
        p.tree.transfer_encoding)
      assert.are.equal(long, lf(p.tree.text))
      assert.are.equal(sentence, p.headers.Subject)
      -- A server without 8BITMIME: short lines too.
      with_server({ extensions = { "PIPELINING", "ENHANCEDSTATUSCODES" } }, function(srv)
        local short = sentence .. "\n" .. sentence .. sentence .. "\n"
        assert(scripted_connection(srv):send { from = "sender@example.com", to = "rcpt@example.com",
          subject = sentence, text = short })
        local m = srv:messages()[1]
        assert.are.same({}, m.mail_options)
        local q = mimeparse(m.data)
        check(q)
        assert.truthy(q.tree.transfer_encoding == "base64" or q.tree.transfer_encoding == "quoted-printable",
          q.tree.transfer_encoding)
        assert.are.equal(short, lf(q.tree.text))
        assert.are.equal(sentence, q.headers.Subject)
        assert.falsy(m.data:find("[\128-\255]"))
      end)
    end)

    it("keeps lines that start with a dot, and a lone dot, in text and html", function()
      local text = ".leading dot\n.\n..two dots\nmiddle . dot\n. space\n.\n"
      local html = "<pre>\n.\n.dot\n</pre>\n.\n"
      local p = through_postfix { text = text, html = html }
      local l = leaves(p.tree)
      assert.are.equal(text, lf(l[1].text))
      assert.are.equal(html, lf(l[2].text))
      -- and in quoted-printable (a long line forces it)
      local qp = text .. string.rep("q", 1000) .. "\n.\n"
      p = through_postfix { text = qp }
      assert.are.equal("quoted-printable", p.tree.transfer_encoding)
      assert.are.equal(qp, lf(p.tree.text))
    end)

    it("carries attachment bytes exactly: boundary-like text, lone dots, CR, LF, NUL, all 256 values", function()
      local all = bytes_0_to_255()
      local bytes = "--=_\r\n--=_0123456789abcdef01234567--\r\n.\r\n.\n.\r\0\r\r\n\n" .. all .. "\r\n.\r\n"
        .. string.rep(all, 50) .. "\n--=_--\n."
      local path = dir .. "/binary.bin"
      write_file(path, bytes)
      local text = "text holding boundary-like lines:\n--=_\n--=_abc\n--=_abc--\n"
      local p = through_postfix { text = text, attachments = {
        { content = bytes, filename = "content.bin" }, { path = path } } }
      assert.are.equal("multipart/mixed(text/plain,application/octet-stream,application/octet-stream)",
        shape(p.tree))
      local l = leaves(p.tree)
      assert.are.equal(text, lf(l[1].text))
      assert.are.equal(bytes, payload(l[2]))
      assert.are.equal(bytes, payload(l[3]))
      assert.are.equal("binary.bin", l[3].filename)
      assert.is_true(l[2].encoded_max_line <= 76)
    end)
  end)

  describe("code pages", function()
    local samples = {
      ["windows-1252"] = "Voil\195\160 l'\195\169t\195\169 \226\128\147 \226\128\156guillemets\226\128\157 "
        .. "\226\128\166 5 \226\130\172, \197\147uvre, \197\189, \226\132\162",
      ["iso-8859-1"] = "Gr\195\188\195\159e aus K\195\182ln: \194\189 \195\151 \195\183 \195\177 \194\191 \194\169",
      ["iso-8859-2"] = "Za\197\188\195\179\197\130\196\135 g\196\153\197\155l\196\133 ja\197\186\197\132; "
        .. "P\197\153\195\173li\197\161 \197\190lu\197\165ou\196\141k\195\189 k\197\175\197\136 "
        .. "\195\186p\196\155l \196\143\195\161belsk\195\169 \195\179dy",
      ["iso-8859-15"] = "L'\197\146uvre co\195\187te 5 \226\130\172, \197\160\195\161rka a \197\189ofie, "
        .. "\197\184, \197\147, \197\190",
      ["koi8-r"] = "\208\161\209\138\208\181\209\136\209\140 \208\182\208\181 \208\181\209\137\209\145 "
        .. "\209\141\209\130\208\184\209\133 \208\188\209\143\208\179\208\186\208\184\209\133 "
        .. "\209\132\209\128\208\176\208\189\209\134\209\131\208\183\209\129\208\186\208\184\209\133 "
        .. "\208\177\209\131\208\187\208\190\208\186",
      ["shift_jis"] = "\230\151\165\230\156\172\232\170\158\227\129\174\227\131\134\227\130\173\227\130\185"
        .. "\227\131\136\227\129\167\227\129\153\227\128\130\230\188\162\229\173\151\227\128\129"
        .. "\227\129\178\227\130\137\227\129\140\227\129\170\227\128\129\227\130\171\227\130\191"
        .. "\227\130\171\227\131\138\227\128\130",
      ["gb2312"] = "\231\174\128\228\189\147\228\184\173\230\150\135\230\181\139\232\175\149\239\188\154"
        .. "\228\189\160\229\165\189\239\188\140\228\184\150\231\149\140\239\188\129",
    }
    local order = { "windows-1252", "iso-8859-1", "iso-8859-2", "iso-8859-15", "koi8-r", "shift_jis", "gb2312" }

    local function check_charset(p, cs, sample, text)
      local l = leaves(p.tree)
      assert.are.equal(cs, l[1].charset)
      assert.are.equal(text, lf(l[1].text))
      assert.are.equal(cs, l[2].charset)
      assert.are.equal("<p>" .. sample .. "</p>", lf(l[2].text))
      assert.are.equal(sample, p.headers.Subject)
      assert.are.equal(sample, p.headers["X-Lang"])
      assert.are.equal(sample, p.addresses.From[1].name)
      -- The words are in the charset too, not UTF-8.
      local raw_headers = table.concat(p.header_lines, "\n"):lower()
      assert.truthy(raw_headers:find("=?" .. cs .. "?", 1, true), raw_headers)
      assert.falsy(raw_headers:find("=?utf-8?", 1, true))
    end

    for _, cs in ipairs(order) do
      it("sends text, html, subject, a header and a display name in " .. cs, function()
        local sample = samples[cs]
        local text = sample .. "\n" .. sample .. " (2)\n"
        local p = through_postfix { charset = cs, subject = sample, text = text, html = "<p>" .. sample .. "</p>",
          from = { name = sample, address = "sender@example.test" }, headers = { ["X-Lang"] = sample } }
        check_charset(p, cs, sample, text)
      end)
    end

    it("takes the code page from the connection's charset; a message's charset overrides it", function()
      local c = postfix_connection { charset = "koi8-r" }
      local sample = samples["koi8-r"]
      local function msg(extra)
        local m = { subject = sample, text = sample .. "\n", html = "<p>" .. sample .. "</p>",
          from = { name = sample, address = "sender@example.test" }, headers = { ["X-Lang"] = sample } }
        for k, v in pairs(extra or {}) do m[k] = v end
        return m
      end
      check_charset(through_postfix(msg(), c), "koi8-r", sample, sample .. "\n")
      -- a session of that connection too
      local s = assert(c:open())
      local tag = new_tag("session")
      assert(s:send { from = { name = sample, address = "sender@example.test" }, to = "rcpt@example.test",
        subject = sample, text = sample .. "\n", html = "<p>" .. sample .. "</p>",
        headers = { ["X-Lang"] = sample, ["X-Spec-Tag"] = tag } })
      s:close()
      local p = mimeparse(server.postfix_wait("X-Spec-Tag: " .. tag))
      check(p)
      check_charset(p, "koi8-r", sample, sample .. "\n")
      -- the message's own charset wins, in any case
      local polish = samples["iso-8859-2"]
      p = through_postfix({ charset = "ISO-8859-2", subject = polish, text = polish .. "\n",
        html = "<p>" .. polish .. "</p>", from = { name = polish, address = "sender@example.test" },
        headers = { ["X-Lang"] = polish } }, c)
      check_charset(p, "iso-8859-2", polish, polish .. "\n")
    end)

    it("refuses a character the charset cannot hold, naming it and its position, before connecting", function()
      local euro, e_acute = "\226\130\172", "\195\169"
      local cases = {
        { "iso-8859-1", { text = "Price: 5 " .. euro .. "\n" }, "text", euro, "U+20AC", 10 },
        { "iso-8859-1", { subject = "Prix 5 " .. euro }, "subject", euro, "U+20AC", 8 },
        { "iso-8859-1", { text = "Gr\195\188\195\159e \240\159\152\128\n" }, "text", "\240\159\152\128",
          "U+1F600", 7 },
        { "koi8-r", { from = { name = "Ren" .. e_acute .. "e", address = "sender@example.com" } },
          "display name", e_acute, "U+00E9", 4 },
        { "koi8-r", { to = "\230\151\165\230\156\172 <rcpt@example.com>" }, "display name", "\230\151\165",
          "U+65E5", 1 },
        { "shift_jis", { headers = { ["X-Price"] = "500 " .. euro } }, "X-Price", euro, "U+20AC", 5 },
        { "gb2312", { html = "<p>ma\195\177ana</p>" }, "html", "\195\177", "U+00F1", 6 },
        { "iso-8859-15", { text = "a \194\164 b\n" }, "text", "\194\164", "U+00A4", 3 },
        { "windows-1252", { text = "\206\169\n" }, "text", "\206\169", "U+03A9", 1 },
        { "iso-8859-2", { subject = "ma\195\177ana" }, "subject", "\195\177", "U+00F1", 3 },
      }
      local bad = {}
      for i, c in ipairs(cases) do
        local m = { from = "sender@example.com", to = "rcpt@example.com", subject = "s", text = "t\n",
          charset = c[1] }
        for k, v in pairs(c[2]) do m[k] = v end
        bad[i] = m
      end
      local errors = refused_before_connecting(bad)
      for i, c in ipairs(cases) do
        local want = string.format('"%s" (%s), character %d, has no place in %s', c[4], c[5], c[6], c[1])
        assert.truthy(errors[i]:find(want, 1, true), "case " .. i .. ": " .. errors[i])
        assert.truthy(errors[i]:find(c[3], 1, true), "case " .. i .. ": " .. errors[i])
      end
      -- the connection's charset, too
      errors = refused_before_connecting({ { from = "sender@example.com", to = "rcpt@example.com",
        text = "5 " .. euro .. "\n" } }, { charset = "iso-8859-1" })
      assert.truthy(errors[1]:find('"' .. euro .. '" (U+20AC), character 3, has no place in iso-8859-1', 1, true),
        errors[1])
    end)

    it("refuses an unknown charset before connecting", function()
      local errors = refused_before_connecting({ { from = "sender@example.com", to = "rcpt@example.com",
        text = "x\n", charset = "x-no-such-charset" } })
      assert.truthy(errors[1]:find("x-no-such-charset", 1, true), errors[1])
      -- on the connection: raised by smtp.connection or by send, never sent
      with_server({}, function(srv)
        local ok, err = pcall(function()
          local c = scripted_connection(srv, { charset = "x-no-such-charset" })
          return c:send { from = "sender@example.com", to = "rcpt@example.com", text = "x\n" }
        end)
        assert.is_false(ok)
        assert.truthy(tostring(err):find("x-no-such-charset", 1, true), tostring(err))
        assert.are.equal(0, count(srv:records(), "connect"))
      end)
    end)
  end)

  describe("raw messages", function()
    local function raw_message(tag, eol)
      eol = eol or "\r\n"
      local lines = {
        "From: Sender <sender@example.test>",
        "To: rcpt@example.test",
        "Bcc: hidden@example.test",
        "Subject: raw " .. tag,
        "BCC: second@example.test,",
        "  folded-continuation@example.test",
        "X-Spec-Tag: " .. tag,
        "X-Bcc-Note: not a Bcc field",
        "bcc: lower@example.test",
        "Date: Mon, 02 Jan 2006 15:04:05 +0000",
        "Message-ID: <" .. tag .. "@example.test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "Body line, caf\195\169",
        ".leading dot",
        ".",
        "Bcc: in the body stays",
        "",
        "last line",
        "",
      }
      local kept = {}
      for _, l in ipairs(lines) do
        if not (l:lower():find("^bcc:") or l:find("folded%-continuation")) or l:find("in the body") then
          kept[#kept + 1] = l
        end
      end
      return table.concat(lines, eol), table.concat(kept, "\r\n")
    end

    local function envelope(raw)
      return { from = "sender@example.test", to = "rcpt@example.test", bcc = "hidden@example.test", raw = raw }
    end

    -- The delivered text is Postfix's trace headers, then exactly `expected`.
    local function check_delivered(delivered, expected)
      local want = lf(expected)
      assert.are.equal(want, delivered:sub(-#want))
      local prefix = delivered:sub(1, -#want - 1)
      for line in prefix:gmatch("([^\n]*)\n") do
        local name = line:match("^([%w-]+):")
        assert.truthy(line:find("^[ \t]") or (name and POSTFIX_ADDED[name:lower()]), line)
      end
      local p = mimeparse(delivered)
      check(p)
      for _, pair in ipairs(p.header_list) do assert.are_not.equal("bcc", pair[1]:lower()) end
    end

    -- Chunks of 1, 2, 3, 5, 8, 13 bytes and empty ones, in turn.
    local function chunked(s)
      local sizes, i, k = { 1, 2, 0, 3, 5, 8, 13 }, 1, 0
      return function()
        if i > #s then return nil end
        k = k % #sizes + 1
        local piece = s:sub(i, i + sizes[k] - 1)
        i = i + sizes[k]
        return piece
      end
    end

    it("delivers a raw string as it is, less its Bcc fields (folded lines too)", function()
      with_server({}, function(srv)
        local raw, expected = raw_message("scripted")
        assert(scripted_connection(srv):send(envelope(raw)))
        local m = srv:messages()[1]
        assert.are.equal(expected, m.data)
        assert.truthy(m.wire:find("\r\n..leading dot\r\n..\r\nBcc: in the body stays\r\n", 1, true))
        assert.are.same({ "rcpt@example.test", "hidden@example.test" }, m.rcpt_tos)
      end)
      local tag = new_tag("raw")
      local raw, expected = raw_message(tag)
      assert(conn:send(envelope(raw)))
      check_delivered(server.postfix_wait("X-Spec-Tag: " .. tag), expected)
    end)

    it("delivers a raw message from a function source, whatever the chunk boundaries", function()
      with_server({}, function(srv)
        local raw, expected = raw_message("scripted")
        assert(scripted_connection(srv):send(envelope(chunked(raw))))
        assert.are.equal(expected, srv:messages()[1].data)
      end)
      local tag = new_tag("rawfn")
      local raw, expected = raw_message(tag)
      assert(conn:send(envelope(chunked(raw))))
      check_delivered(server.postfix_wait("X-Spec-Tag: " .. tag), expected)
    end)

    it("removes the Bcc fields of a raw message that is all header, no body", function()
      local tag = new_tag("rawhead")
      local raw = "From: sender@example.test\r\nTo: rcpt@example.test\r\nBcc: hidden@example.test\r\n"
        .. "Subject: " .. tag .. "\r\nX-Spec-Tag: " .. tag .. "\r\nMessage-ID: <" .. tag .. "@example.test>\r\n"
        .. "Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n"
      local expected = raw:gsub("Bcc: hidden@example.test\r\n", "")
      with_server({}, function(srv)
        assert(scripted_connection(srv):send(envelope(raw)))
        local data = srv:messages()[1].data
        assert.falsy(data:find("hidden@", 1, true), data)
        assert.are.equal(expected, data:sub(1, #expected))
        assert.truthy(data:sub(#expected + 1):find("^[\r\n]*$"))
      end)
    end)

    it("declares BODY=8BITMIME for a raw message with 8-bit bytes, from a string or a function", function()
      with_server({}, function(srv)
        local raw = "From: sender@example.com\r\nSubject: 8bit\r\n\r\ncaf\195\169\r\n"
        local c = scripted_connection(srv)
        assert(c:send { from = "sender@example.com", to = "rcpt@example.com", raw = raw })
        assert(c:send { from = "sender@example.com", to = "rcpt@example.com", raw = chunked(raw) })
        for i, m in ipairs(srv:messages()) do
          assert.are.equal(raw, m.data)
          local has = false
          for _, o in ipairs(m.mail_options) do has = has or o:upper() == "BODY=8BITMIME" end
          assert.is_true(has, "message " .. i .. ": " .. table.concat(m.mail_options, " "))
        end
      end)
    end)

    it("turns bare LF and bare CR line ends of a raw message into CRLF", function()
      with_server({}, function(srv)
        local raw, expected = raw_message("scripted", "\n")
        raw = raw .. "bare\rCR\n"
        expected = expected .. "bare\r\nCR\r\n"
        assert(scripted_connection(srv):send(envelope(raw)))
        assert.are.equal(expected, srv:messages()[1].data)
        assert(scripted_connection(srv):send(envelope(chunked(raw))))
        assert.are.equal(expected, srv:messages()[2].data)
      end)
      local tag = new_tag("rawlf")
      local raw, expected = raw_message(tag, "\n")
      assert(conn:send(envelope(raw)))
      check_delivered(server.postfix_wait("X-Spec-Tag: " .. tag), expected)
    end)
  end)

  describe("addresses", function()
    it("sends an IDN domain as punycode, in the envelope and the headers", function()
      with_server({ extensions = { "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES" } }, function(srv)
        local receipt = assert(scripted_connection(srv):send {
          from = "Sender <sender@b\195\188cher.example>",
          to = { "B\195\188cher <info@b\195\188cher.example>", "x@M\195\188NCHEN.example" },
          subject = "IDN", text = "x\n" })
        local m = srv:messages()[1]
        assert.are.equal("sender@xn--bcher-kva.example", m.mail_from)
        assert.are.same({ "info@xn--bcher-kva.example", "x@xn--mnchen-3ya.example" }, m.rcpt_tos)
        assert.are.same({}, m.mail_options)
        local p = mimeparse(m.data)
        check(p)
        assert.are.equal("sender@xn--bcher-kva.example", p.addresses.From[1].address)
        assert.are.equal("info@xn--bcher-kva.example", p.addresses.To[1].address)
        assert.are.equal("B\195\188cher", p.addresses.To[1].name)
        assert.are.equal("x@xn--mnchen-3ya.example", p.addresses.To[2].address)
        assert.are.equal("@xn--bcher-kva.example>", receipt.message_id:sub(-#"@xn--bcher-kva.example>"))
        assert.falsy(m.data:find("[\128-\255]"))
      end)
    end)

    it("lowercases a non-ASCII capital in an IDN label before punycode (M\195\156NCHEN is m\195\188nchen)", function()
      with_server({}, function(srv)
        assert(scripted_connection(srv):send { from = "sender@example.com", to = "x@M\195\156NCHEN.example",
          subject = "IDN", text = "x\n" })
        assert.are.same({ "x@xn--mnchen-3ya.example" }, srv:messages()[1].rcpt_tos)
      end)
    end)

    it("refuses a UTF-8 local part before MAIL when the server lacks SMTPUTF8", function()
      with_server({ extensions = { "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES" } }, function(srv)
        local receipt, err = scripted_connection(srv):send {
          from = "sender@example.com", to = "j\195\182rg@example.com", subject = "s", text = "x\n" }
        assert.is_nil(receipt)
        assert.are.equal("rejected", err.kind)
        assert.are.equal("mail", err.stage)
        assert.truthy(tostring(err):find("SMTPUTF8", 1, true))
        for _, c in ipairs(srv:commands()) do assert.falsy(c.line:find("^MAIL"), c.line) end
        assert.are.equal(0, #srv:messages())
      end)
    end)

    it("asks for SMTPUTF8 for a UTF-8 local part when the server offers it", function()
      with_server({}, function(srv)
        assert(scripted_connection(srv):send { from = "J\195\182rg <j\195\182rg@example.com>",
          to = "\230\151\165\230\156\172@example.com", subject = "s", text = "x\n" })
        local m = srv:messages()[1]
        assert.are.equal("j\195\182rg@example.com", m.mail_from)
        assert.are.same({ "\230\151\165\230\156\172@example.com" }, m.rcpt_tos)
        local has = false
        for _, o in ipairs(m.mail_options) do has = has or o:upper() == "SMTPUTF8" end
        assert.is_true(has, table.concat(m.mail_options, " "))
        local p = mimeparse(m.data)
        check(p, RFC6532)
        assert.are.equal("j\195\182rg@example.com", p.addresses.From[1].address)
        assert.are.equal("J\195\182rg", p.addresses.From[1].name)
        assert.are.equal("\230\151\165\230\156\172@example.com", p.addresses.To[1].address)
      end)
      -- and Postfix, which offers SMTPUTF8, delivers it
      local p = through_postfix({ from = "j\195\182rg@example.test", to = "m\195\188ller@example.test", text = "x\n" },
        nil, RFC6532)
      assert.are.equal("j\195\182rg@example.test", p.addresses.From[1].address)
      assert.are.equal("m\195\188ller@example.test", p.addresses.To[1].address)
    end)
  end)

  describe("checks before connecting", function()
    local function m(extra)
      local t = { from = "sender@example.com", to = "rcpt@example.com", subject = "s", text = "t\n" }
      for k, v in pairs(extra) do t[k] = v end
      return t
    end

    it("refuses CR, LF and NUL in header names and values, addresses, filenames and content ids", function()
      local bad = {}
      for _, c in ipairs({ "\r\n", "\n", "\r", "\0" }) do
        local evil = c .. "Bcc: evil@example.com"
        for _, x in ipairs({
          { headers = { ["X-A"] = "v" .. evil } },
          { headers = { { "X-A", "v" .. evil } } },
          { headers = { ["X-A" .. c .. "Bcc"] = "v" } },
          { headers = { { "X-A" .. c, "v" } } },
          { from = "sender@example.com" .. evil },
          { to = "rcpt@example.com" .. c },
          { to = { "ok@example.com", "r" .. c .. "@example.com" } },
          { cc = "cc@exa" .. c .. "mple.com" },
          { bcc = "bcc@example.com" .. evil },
          { reply_to = "reply@example.com" .. c },
          { sender = "s@example.com" .. c },
          { from = { name = "Evil" .. evil, address = "sender@example.com" } },
          { to = "Na" .. c .. "me <rcpt@example.com>" },
          { to = "Name" .. c .. "<rcpt@example.com>" },
          { to = { { name = "x" .. c, address = "rcpt@example.com" } } },
          { subject = "a" .. evil },
          { date = "Mon, 02 Jan 2006 15:04:05 +0000" .. c },
          { message_id = "<a@example.com>" .. evil },
          { attachments = { { content = "x", filename = "a" .. c .. ".txt" } } },
          { attachments = { { content = "x", inline = true, cid = "c" .. c .. "@example.com" } } },
          { attachments = { { content = "x", content_type = "text/plain" .. evil } } },
        }) do
          bad[#bad + 1] = m(x)
        end
      end
      refused_before_connecting(bad)
    end)

    it("refuses structural headers and header names that are not field names", function()
      local bad = {}
      for _, name in ipairs({ "MIME-Version", "mime-version", "Content-Type", "CONTENT-TYPE",
        "Content-Transfer-Encoding", "Bcc", "From", "To", "Subject", "Message-ID", "Date" }) do
        bad[#bad + 1] = m { headers = { [name] = "x" } }
        bad[#bad + 1] = m { headers = { { name, "x" } } }
      end
      for _, name in ipairs({ "X Tag", "X:Tag", "X-Tag:", "", " X-Tag", "X-T\195\164g", "X-\127", "X-\t" }) do
        bad[#bad + 1] = m { headers = { [name] = "x" } }
      end
      local errors = refused_before_connecting(bad)
      assert.truthy(errors[1]:find("MIME-Version", 1, true), errors[1])
    end)

    it("refuses a missing or unreadable attachment file", function()
      local errors = refused_before_connecting({
        m { attachments = { { path = dir .. "/does-not-exist.pdf" } } },
        m { attachments = { { path = dir } } },     -- a directory: open() works, read() does not
        m { attachments = { { path = dir .. "/no-such-dir/x.pdf" } } },
      })
      assert.truthy(errors[1]:find("does-not-exist.pdf", 1, true), errors[1])
    end)
  end)

  describe("a large attachment", function()
    it("streams a 20 MB file that arrives byte-exact, the Lua heap staying small", function()
      local path = dir .. "/big.bin"
      local sum = run(quote(PYTHON) .. " -c " .. quote(table.concat({
        "import hashlib, random, sys",
        "data = random.Random(6).randbytes(20 * 1024 * 1024)",
        "data = data[:1000] + b'\\r\\n.\\r\\n--=_\\r\\n' + data[1000:]",
        "open(sys.argv[1], 'wb').write(data)",
        "print(hashlib.sha256(data).hexdigest(), len(data))" }, "\n")) .. " " .. quote(path)):gsub("%s+$", "")
      local sha, size = sum:match("^(%x+) (%d+)$")
      assert.is_string(sha, sum)
      -- No SIZE limit on this server (Postfix's message_size_limit is 10 MB).
      with_server({ extensions = { "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES" } }, function(srv)
        collectgarbage()
        local base, peak = collectgarbage("count"), 0
        local c = scripted_connection(srv, { timeout = 60, trace = function()
          local kb = collectgarbage("count")
          if kb > peak then peak = kb end
        end })
        local receipt = assert(c:send { from = "sender@example.com", to = "rcpt@example.com", subject = "big",
          text = "20 MB attached\n", attachments = { { path = path } } })
        assert.is_true(receipt.bytes > 20 * 1024 * 1024 * 4 / 3)
        local p = decode_json(run(quote(PYTHON) .. " " .. quote(MIMEPARSE) .. " --smtpd-record " .. quote(srv.record)),
          "mimeparse.py")
        check(p)
        assert.are.equal("multipart/mixed(text/plain,application/octet-stream)", shape(p.tree))
        local leaf = leaves(p.tree)[2]
        assert.are.equal("big.bin", leaf.filename)
        assert.are.equal(tonumber(size), leaf.size)
        assert.are.equal(sha, leaf.sha256)
        -- Read whole, the file alone would be 20 MB of heap, its base64 27 MB.
        assert.is_true(peak - base < 16 * 1024, string.format("the Lua heap grew by %.1f MB", (peak - base) / 1024))
      end)
    end)
  end)
end)
