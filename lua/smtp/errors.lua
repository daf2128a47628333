-- The error object returned (never raised) when the network, the server or
-- a protocol fails: kind, stage, code, enhanced, message, hint, transient.
-- It prints and concatenates as one readable line.

local M = {}

local Error = {}
Error.__index = Error

function Error.__tostring(e)
  local parts = { "smtp: ", e.kind, " error at ", e.stage, ": " }
  if e.code then
    parts[#parts + 1] = tostring(e.code) .. " "
    if e.enhanced and e.enhanced ~= "" then parts[#parts + 1] = e.enhanced .. " " end
  end
  parts[#parts + 1] = e.message
  if e.hint then parts[#parts + 1] = " (hint: " .. e.hint .. ")" end
  return table.concat(parts)
end

function Error.__concat(a, b)
  return tostring(a) .. tostring(b)
end

-- The troubleshooting knowledge: what to try, for each failure we know.
-- The first entry whose fields all match wins:
--   kind, stage, code     equal (code may be a set: { [552] = true, ... })
--   enhanced              equal, or a set of codes
--   class                 the reply code's first digit
--   find                  a plain substring of the message (or a list: any)
--   ifind                 the same, ignoring case
--   test                  function(e) -> true when the entry applies
-- and hint is the text, or function(e) -> text.  README's troubleshooting
-- table lists the same entries; every one has a spec in spec/hints_spec.lua.

local function set(...)
  local t = {}
  for _, v in ipairs({ ... }) do t[v] = true end
  return t
end

-- A host name without a dot: resolved through the search domains of this
-- machine, if at all, and never the name on a server's certificate.
local function short_name(e)
  local host = (e.message or ""):match("^cannot resolve ([^%s:]+)")
  return host and not host:find(".", 1, true) and not host:find(":", 1, true) and host ~= "localhost"
    and host
end

-- The limit the server announced (EHLO SIZE), when the session passed it on.
local function too_large(e)
  local limit = tonumber(e.size_limit)
  local parts = { "the message is too large for the server" }
  if limit and limit > 0 then
    parts[#parts + 1] = string.format(" (it announced SIZE %d, %s", limit,
      limit >= 1048576 and string.format("%.1f MB", limit / 1048576) or string.format("%d KB", math.ceil(limit / 1024)))
    if tonumber(e.size) then parts[#parts + 1] = string.format("; this message is %d bytes", e.size) end
    parts[#parts + 1] = ")"
  end
  parts[#parts + 1] = ": send a smaller one (attachments grow by a third in base64), or link to large files"
  return table.concat(parts)
end

local SPF_DMARC = set("5.7.23", "5.7.26", "5.7.27")
local SENDER_REFUSED = set("5.7.1", "5.7.0", "5.7.60")

local hints = {
  -- DNS
  { kind = "dns", test = short_name, hint = function(e)
      return string.format("%s is a short host name: use the server's full DNS name (such as %s.example.com); "
        .. "a short name resolves only through this machine's search domains", short_name(e), short_name(e))
    end },
  { kind = "dns", find = "Temporary failure", hint = "this machine's DNS did not answer: check its network and "
      .. "resolver settings (/etc/resolv.conf), then try again" },
  { kind = "dns", hint = "check the server name (address) for typos; it could not be resolved (if the name "
      .. "is right, check this machine's DNS)" },

  -- Proxies
  { kind = "proxy", find = "credentials", hint = "check proxy.username and proxy.password (and proxy.domain "
      .. "for a Windows proxy)" },
  { kind = "proxy", find = "username or password", hint = "check proxy.username and proxy.password" },
  { kind = "proxy", find = "could not reach the server", hint = "the proxy is fine but cannot reach the SMTP "
      .. "server: check address and port as the proxy sees them, and the proxy's rules" },
  { kind = "proxy", find = "proxy cannot connect", hint = "check proxy.address and proxy.port, and that the "
      .. "proxy is running" },
  { kind = "proxy", hint = "check the proxy settings (type, address, port, credentials) and the proxy's log" },

  -- Authentication
  { kind = "auth", find = "(the server offers: none;",
    hint = "the server offers no AUTH here: it may not need it (leave auth out to connect anonymously), "
      .. "or it offers AUTH only after STARTTLS or on another port (587)" },
  { kind = "auth", find = "No authentication method enabled",
    hint = "no mechanism is allowed on both sides: allow one of the server's mechanisms in auth.mechanisms, "
      .. "or connect anonymously (auth = { anonymous = true }) if the server does not need AUTH" },
  { kind = "auth", find = "said: {", hint = "the OAuth2 token was refused: it may have expired or lack the scope "
      .. "for SMTP (Gmail: https://mail.google.com/, Microsoft 365: SMTP.Send); get a fresh access token" },
  { kind = "auth", find = "Application-specific password required",
    hint = "Gmail wants an app password (Google Account > Security > App passwords) or OAuth2 (auth.token)" },
  { kind = "auth", find = "Username and Password not accepted",
    hint = "Gmail refused the login: use an app password (with 2-Step Verification on) or OAuth2 (auth.token)" },
  { kind = "auth", find = "SmtpClientAuthentication is disabled",
    hint = "Microsoft 365 has SMTP AUTH off for this mailbox: enable Authenticated SMTP for it, or use OAuth2 "
      .. "(auth.token)" },
  { kind = "auth", enhanced = "5.7.139", hint = "Microsoft 365 refused basic authentication: enable SMTP AUTH "
      .. "for the mailbox (or the tenant's security defaults block it), or use OAuth2 (auth.token)" },
  { kind = "auth", enhanced = "5.7.3", hint = "Microsoft refused the login: check the password, enable SMTP AUTH "
      .. "for the mailbox, or use OAuth2 (auth.token)" },
  { kind = "auth", code = 530, find = "STARTTLS", hint = "the server wants TLS first: set tls (STARTTLS is "
      .. "the default)" },
  { kind = "auth", code = 530, hint = "the server accepts mail only from authenticated clients: set auth "
      .. "(username and password, or token)" },
  -- The preset's own advice (an app password, OAuth2, an API key as the
  -- password) when the provider refuses the credentials.
  { kind = "auth", code = set(535, 534), test = function(e) return e.preset_hint end,
    hint = function(e) return e.preset_hint .. "; check auth.username and auth.password" end },
  { kind = "auth", code = 534, hint = "the server wants a stronger mechanism or a login in a browser first "
      .. "(Gmail: use an app password or OAuth2)" },
  { kind = "auth", code = 538, hint = "this mechanism needs an encrypted session: use TLS" },
  { kind = "auth", code = 454, hint = "a temporary authentication failure on the server: try again later" },
  { kind = "auth", code = 535, hint = "check auth.username and auth.password (or the token)" },

  -- TLS: a mode that does not fit the port, and the server's refusals.
  -- (A refused certificate gets its hint from explain_tls below.)
  { kind = "tls", find = "plaintext", hint = "this port speaks plaintext SMTP first: use tls.mode = \"explicit\" "
      .. "(STARTTLS), usually on port 587 or 25; implicit TLS is usually port 465" },
  { kind = "tls", find = "does not offer STARTTLS",
    hint = "the server has no STARTTLS on this port, or something on the way removes it: try port 465 with "
      .. "tls.mode = \"implicit\"; send in plaintext only if you must (tls.protocol = \"none\")" },
  { kind = "tls", find = "injection", hint = "something between you and the server may be tampering with the "
      .. "connection; do not retry over this network" },
  { kind = "tls", find = "is not available in the linked mbedTLS",
    hint = "choose tls.versions the linked mbedTLS supports (TLS 1.3 needs mbedTLS 3)" },
  { kind = "tls", find = "tls.pin", hint = "the server's key changed, or something is intercepting the connection: "
      .. "check the new key before updating tls.pin" },
  { kind = "tls", find = "cafile", hint = "point tls.cafile at a PEM file of trusted CA certificates" },
  { kind = "tls", stage = "starttls", code = 454, hint = "the server cannot start TLS right now: try again later" },

  -- Reaching the server
  { kind = "connect", find = "refused", hint = function(e)
      local port = (e.message or ""):match(" port (%d+)")
      return "nothing listens on " .. (port and ("port " .. port) or "that port") .. " there: check port "
        .. "(587 for STARTTLS, 465 for implicit TLS, 25 between servers) and that the server is running"
    end },
  { kind = "connect", ifind = { "unreachable", "no route" },
    hint = "this machine has no route to the server: check address, the network, and any firewall on the way" },
  { kind = "connect", hint = "check address and port, and that the server is up and reachable" },
  { kind = "timeout", stage = "greeting",
    hint = "the server accepted the connection but said nothing: a server that speaks TLS at once "
      .. "(port 465) needs tls.mode = \"implicit\"" },
  { kind = "timeout", stage = "connect", find = "connecting to",
    hint = "no answer to the connection attempt: a firewall drops it (outgoing port 25 is often blocked; "
      .. "try 587 or 465), the host is down, or this network needs a proxy (proxy)" },
  { kind = "timeout", stage = "connect", hint = "no answer while connecting (through the proxy or the TLS "
      .. "handshake, if any): check address and port, and that an implicit-TLS port gets tls.mode = \"implicit\" "
      .. "and a STARTTLS port (587, 25) tls.mode = \"explicit\"" },
  { kind = "timeout", hint = "the server or the network is slow or a firewall drops packets; "
      .. "raise timeout, or check address and port" },

  -- The server ends the session
  { code = 421, hint = "the server is busy or going down and closed the session (421): try again later; "
      .. "if it persists at the greeting, it may be refusing this client's address (the reply says why)" },
  { kind = "closed", stage = "data", hint = "the message was not delivered; send it again" },
  { kind = "closed", stage = "greeting", hint = "the server hung up before its greeting: it may refuse this "
      .. "client, be overloaded, or expect TLS at once (port 465: tls.mode = \"implicit\"); try again later" },
  { kind = "closed", hint = "the server ended the session; try again later" },
  { kind = "protocol", stage = "auth", hint = "the server's side of the AUTH exchange made no sense: try another "
      .. "mechanism with auth.mechanisms" },
  { kind = "protocol", hint = "the server's answer was not valid SMTP: check that address and port "
      .. "are those of an SMTP server, and the TLS mode" },

  -- Refusals: size, relaying, the sender, SPF/DKIM/DMARC
  { enhanced = "5.2.2", hint = "the recipient's mailbox is full: the recipient must make room; try later" },
  { test = function(e) return tonumber(e.size) and tonumber(e.size_limit) and e.size_limit > 0
      and e.size > e.size_limit end, hint = too_large },
  { code = 552, hint = too_large },
  { enhanced = set("5.3.4", "5.2.3"), hint = too_large },
  { stage = "rcpt", enhanced = "5.7.1", ifind = { "relay" },
    hint = "the server refuses to relay to this recipient: authenticate (auth), or send through your own "
      .. "server; a server relays only for its own users or networks" },
  { enhanced = SPF_DMARC, hint = "the receiving side refused the message because the sender's domain failed "
      .. "SPF or DMARC: send through a server that the From domain's SPF record lists, sign with DKIM, or use "
      .. "a From address of your own account's domain" },
  { enhanced = "5.7.25", hint = "the receiving side wants reverse DNS: the sending server's IP address has "
      .. "no PTR record (or it does not match); send through your provider's submission server instead" },
  { class = 5, ifind = { "spf", "dmarc", "dkim" }, hint = "the receiving side refused the message on an "
      .. "SPF/DKIM/DMARC check: send through a server that the From domain's SPF record lists, sign with "
      .. "DKIM, or use a From address of your own account's domain" },
  { stage = "mail", class = 5, enhanced = SENDER_REFUSED,
    hint = "the server does not let this account send as this sender: use your own address (or one you may "
      .. "send as) in from (or sender), or have the administrator grant it (\"send as\" rights)" },
  { stage = "rcpt", enhanced = "5.7.1",
    hint = "the server refuses this recipient by policy: authenticate, or check the reply for the rule" },
  { enhanced = "5.1.1", hint = "the mailbox does not exist: check the recipient's address" },
  { class = 5, stage = "greeting", hint = "the server refuses this client: check its policy or use another server" },
  { class = 5, stage = "ehlo", hint = "the server refuses the EHLO name: set helo to this machine's full DNS name" },
  { class = 5, test = function(e) return (e.enhanced or ""):find("^5%.7%.") end,
    hint = "the server refused this for a security or policy reason (5.7.x): its reply names the rule" },

  -- Transient failures
  { class = 4, ifind = { "greylist", "try again later", "deferred" }, hint = "a temporary refusal "
      .. "(greylisting or a rate limit): send again in a few minutes; a retry usually succeeds" },
  { class = 4, hint = "a temporary failure (4xx): the message was not taken this time; try again later" },
  { class = 5, stage = "mail",
    hint = "the server refuses this sender: check from (or sender) and that this account may send as it" },
  { class = 5, stage = "rcpt", hint = "check the recipients' addresses; the server's reply says why it refused them" },
  { class = 5, stage = "data",
    hint = "the server refused the message itself; its reply says why (content, size or policy)" },
}

local function is_in(want, v)
  if want == nil then return true end
  if type(want) == "table" then return v ~= nil and want[v] == true end
  return want == v
end

local function found(words, text, fold)
  if words == nil then return true end
  if fold then text = text:lower() end
  for _, w in ipairs(type(words) == "table" and words or { words }) do
    if text:find(w, 1, true) then return true end
  end
  return false
end

-- The first entry of the table that applies to e, or nil.
local function entry_for(e)
  local class = e.code and math.floor(e.code / 100)
  local text = e.message or ""
  for _, h in ipairs(hints) do
    if is_in(h.kind, e.kind) and is_in(h.stage, e.stage) and is_in(h.code, e.code)
      and is_in(h.enhanced, e.enhanced) and is_in(h.class, class)
      and found(h.find, text) and found(h.ifind, text, true) and (h.test == nil or h.test(e)) then
      return h
    end
  end
  return nil
end

local function hint_for(e)
  local h = entry_for(e)
  if not h then return nil end
  if type(h.hint) == "function" then return h.hint(e) end
  return h.hint
end

-- The hint for anything shaped like an error: a refused recipient in a
-- receipt ({ code, enhanced, message } with stage = "rcpt"), say.
function M.hint(t)
  return hint_for(t)
end

-- The table itself and the entry that applies to an error, for the README
-- and the specs (read them, don't change them).
M.hints = hints
M.entry_for = entry_for

local transient_kinds = { timeout = true, closed = true }

-- t: kind, stage, message, and optionally code, enhanced, and extra fields
-- (rejected = {...} for recipients; size and size_limit, the message's size
-- and the server's SIZE, for a refusal of its size; preset_hint, the
-- connection's preset's advice for refused credentials).
function M.new(t)
  local e = setmetatable(t, Error)
  if e.enhanced == "" then e.enhanced = nil end
  if e.transient == nil then
    e.transient = transient_kinds[e.kind] or (e.code ~= nil and e.code >= 400 and e.code < 500)
  end
  e.hint = e.hint or hint_for(e)
  return e
end

-- A refused certificate: say which one, what is wrong with it, and what to
-- do.  info is what the handshake saw (the session's report.tls).
function M.explain_tls(e, info, tls)
  local cert = info.certificate
  if not cert or #info.problems == 0 then return end
  e.certificate, e.problems = cert, info.problems
  local has = {}
  for _, p in ipairs(info.problems) do has[p] = true end
  local names = #cert.names > 0 and table.concat(cert.names, ", ") or cert.subject
  if has.expired then
    e.hint = "the server's certificate expired on " .. cert.valid_to .. "; its administrator must renew it"
  elseif has["not-yet-valid"] then
    e.hint = "the certificate is valid only from " .. cert.valid_from .. ": check this machine's clock"
  elseif has["not-trusted"] and cert.subject == cert.issuer then
    e.hint = "the certificate is self-signed (" .. cert.subject .. "): trust it with tls.cafile "
      .. "or pin its key with tls.pin"
  elseif has["not-trusted"] then
    e.hint = "the certificate was issued by " .. cert.issuer .. ", a CA this system does not trust: add that CA "
      .. "with tls.cafile; an issuer you do not expect may mean something is intercepting the connection"
  elseif has["name-mismatch"] then
    local shown = tls.servername
    e.hint = "the certificate is for " .. names .. ", not " .. shown
    if shown:find("^[%d.]+$") or shown:find(":") or not shown:find(".", 1, true) then
      e.hint = e.hint .. ": use the full DNS name the certificate carries as address (or tls.servername)"
    else
      e.hint = e.hint .. ": connect by one of those names, or set tls.servername"
    end
  end
  e.message = e.message .. " (certificate for " .. names .. ", issued by " .. cert.issuer .. ")"
end

-- A server that ends the session right after the TLS handshake because we
-- showed no client certificate: a TLS setting to fix, not a retry.
function M.client_certificate_wanted(e, tls)
  if tls and not tls.certificate and (e.message or ""):lower():find("certificate", 1, true) then
    e.kind, e.transient = "tls", false
    e.hint = "the server asks for a client certificate: set tls.certificate and tls.key"
  end
end

function M.is(v)
  return getmetatable(v) == Error
end

return M
