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

-- What to try, by kind; a reply code or enhanced code refines it.  The
-- first entry whose fields all match wins.
local hints = {
  { kind = "dns", hint = "check the server name (address); it could not be resolved" },
  { kind = "proxy", find = "credentials", hint = "check proxy.username and proxy.password (and proxy.domain "
      .. "for a Windows proxy)" },
  { kind = "proxy", find = "username or password", hint = "check proxy.username and proxy.password" },
  { kind = "proxy", find = "could not reach the server", hint = "the proxy is fine but cannot reach the SMTP "
      .. "server: check address and port as the proxy sees them, and the proxy's rules" },
  { kind = "proxy", find = "proxy cannot connect", hint = "check proxy.address and proxy.port, and that the "
      .. "proxy is running" },
  { kind = "proxy", hint = "check the proxy settings (type, address, port, credentials) and the proxy's log" },
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
  { kind = "auth", code = 534, hint = "the server wants a stronger mechanism or a login in a browser first "
      .. "(Gmail: use an app password or OAuth2)" },
  { kind = "auth", code = 538, hint = "this mechanism needs an encrypted session: use TLS" },
  { kind = "auth", code = 454, hint = "a temporary authentication failure on the server: try again later" },
  { kind = "auth", code = 535, hint = "check auth.username and auth.password (or the token)" },
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
  { kind = "connect", hint = "check address and port, and that the server is up and reachable" },
  { kind = "timeout", stage = "greeting",
    hint = "the server accepted the connection but said nothing: a server that speaks TLS at once "
      .. "(port 465) needs tls.mode = \"implicit\"" },
  { kind = "timeout", stage = "connect", hint = "no answer while connecting (through the proxy or the TLS "
      .. "handshake, if any): check address and port, and that an implicit-TLS port gets tls.mode = \"implicit\"" },
  { kind = "timeout", hint = "the server or the network is slow or a firewall drops packets; "
      .. "raise timeout, or check address and port" },
  { kind = "closed", stage = "data", hint = "the message was not delivered; send it again" },
  { kind = "closed", hint = "the server ended the session; try again later" },
  { kind = "protocol", stage = "auth", hint = "the server's side of the AUTH exchange made no sense: try another "
      .. "mechanism with auth.mechanisms" },
  { kind = "protocol", hint = "the server's answer was not valid SMTP: check that address and port "
      .. "are those of an SMTP server, and the TLS mode" },
  { code = 552, hint = "the message is too large for the server; send a smaller one" },
  { enhanced = "5.7.1", stage = "rcpt",
    hint = "the server refuses to relay to this recipient: authenticate, or send through your own server" },
  { enhanced = "5.1.1", hint = "the mailbox does not exist: check the recipient's address" },
  { class = 4, hint = "a temporary failure: try again later" },
  { class = 5, stage = "greeting", hint = "the server refuses this client: check its policy or use another server" },
  { class = 5, stage = "ehlo", hint = "the server refuses the EHLO name: set helo to this machine's full DNS name" },
  { class = 5, stage = "mail",
    hint = "the server refuses this sender: check from (or sender) and that this account may send as it" },
  { class = 5, stage = "rcpt", hint = "check the recipients' addresses; the server's reply says why it refused them" },
  { class = 5, stage = "data",
    hint = "the server refused the message itself; its reply says why (content, size or policy)" },
}

local function hint_for(e)
  local class = e.code and math.floor(e.code / 100)
  for _, h in ipairs(hints) do
    if (h.kind == nil or h.kind == e.kind) and (h.stage == nil or h.stage == e.stage)
      and (h.code == nil or h.code == e.code) and (h.enhanced == nil or h.enhanced == e.enhanced)
      and (h.class == nil or h.class == class)
      and (h.find == nil or (e.message or ""):find(h.find, 1, true)) then
      return h.hint
    end
  end
  return nil
end

local transient_kinds = { timeout = true, closed = true }

-- t: kind, stage, message, and optionally code, enhanced, and extra fields
-- (rejected = {...} for recipients).
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
