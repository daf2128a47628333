-- smtp: describe an SMTP connection once, then test it or send through it.
--
--   local smtp = require "smtp"
--   local conn = smtp.connection { address = "mail.example.com", auth = {...} }
--   local report, err = conn:test()
--   local receipt, err = conn:send { from = ..., to = ..., subject = ..., text = ... }

local options = require "smtp.options"
local session = require "smtp.session"
local message = require "smtp.message"
local errors = require "smtp.errors"

local M = {
  _VERSION = "smtp scm",
  presets = require "smtp.presets",
  connections = {},
  is_error = errors.is,
}

local Connection = {}
Connection.__index = Connection

-- Settings live here, not on the object, so that printing or serializing
-- a connection cannot show a password.
local settings = setmetatable({}, { __mode = "k" })

-- Features whose options exist but that this version does not do yet.
local function unavailable(o)
  if o.protocol ~= "smtp" then
    return errors.new { kind = "protocol", stage = "connect",
      message = "LMTP is not available in this version yet" }
  end
end

function M.connection(t)
  local o = options.normalize(t, M.presets)
  if o.name and M.connections[o.name] then
    error(string.format("smtp.connection: a connection named %q already exists", o.name), 2)
  end
  local conn = setmetatable({ name = o.name }, Connection)
  settings[conn] = o
  if o.name then M.connections[o.name] = conn end
  return conn
end

-- A live session for many messages.  Returns the session or nil, err.
function Connection:open()
  local o = settings[self]
  local err = unavailable(o)
  if err then return nil, err, { name = o.name, address = o.address, port = o.port, timings = {} } end
  return session.open(o)
end

-- Reach the server step by step (DNS, TCP or the proxy hop, greeting,
-- EHLO, TLS, AUTH) and, with opts.probe = { from =, to = }, try an
-- envelope (MAIL, RCPT, RSET: nothing is sent); then QUIT.  Returns the
-- staged report, or nil, err, and the report up to the stage that failed.
function Connection:test(opts)
  local probe
  if opts ~= nil then
    if type(opts) ~= "table" then error("smtp.test: expected a table of options, got " .. type(opts), 2) end
    for k in pairs(opts) do
      if k ~= "probe" then error("smtp.test: unknown option " .. tostring(k) .. " (known: probe)", 2) end
    end
    probe = opts.probe and message.probe(opts.probe)
  end
  local s, err, report = self:open()
  if not s then return nil, err, report end
  if probe then
    local ok
    ok, err = s:probe(probe.from, probe.to)
    if not ok then
      s:close()
      return nil, err, s.report
    end
  end
  s:close()
  return s.report
end

-- Deliver one message over a fresh session: the receipt, or nil, err.
function Connection:send(msg)
  local m = message.prepare(msg, settings[self].charset)
  local s, err = self:open()
  if not s then return nil, err end
  local receipt
  receipt, err = s:deliver(m)
  s:close()
  return receipt, err
end

function Connection:__tostring()
  local o = settings[self]
  local auth = o.auth.anonymous and "anonymous" or ("as " .. (o.auth.username or "token holder"))
  local tls = o.tls.protocol == "none" and "no TLS" or o.tls.protocol .. " " .. o.tls.mode
  local via = o.proxy.type == "none" and ""
    or string.format(" via %s proxy %s:%d", o.proxy.type, o.proxy.address, o.proxy.port)
  return string.format("smtp.connection %s(%s:%d, %s, %s)%s", o.name and (o.name .. " ") or "",
    o.address, o.port, tls, auth, via)
end

return M
