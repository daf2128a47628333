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

-- Connections defined in a Lua file, run in a sandbox (see smtp/load.lua).
M.load = require("smtp.load").load

local Connection = {}
Connection.__index = Connection

-- Settings live here, not on the object, so that printing or serializing
-- a connection cannot show a password.
local settings = setmetatable({}, { __mode = "k" })

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
  return session.open(settings[self])
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

local SEND_ALL_KEYS = { rate = 1, retries = 1, backoff = 1, sleep = 1 }

local function check_send_all(opts)
  if type(opts) ~= "table" then error("smtp.send_all: options must be a table", 3) end
  for k in pairs(opts) do
    if not SEND_ALL_KEYS[k] then error("smtp.send_all: unknown option " .. tostring(k), 3) end
  end
  local rate = opts.rate
  if rate ~= nil and (type(rate) ~= "table" or type(rate.messages) ~= "number" or rate.messages < 1
      or type(rate.per) ~= "number" or rate.per <= 0) then
    error("smtp.send_all: rate must be { messages = n >= 1, per = seconds > 0 }", 3)
  end
  local retries = opts.retries or 2
  if type(retries) ~= "number" or retries < 0 or retries % 1 ~= 0 then
    error("smtp.send_all: retries must be a whole number >= 0", 3)
  end
  local backoff = opts.backoff or 1
  if type(backoff) ~= "number" or backoff < 0 then error("smtp.send_all: backoff must be seconds >= 0", 3) end
  if opts.sleep ~= nil and type(opts.sleep) ~= "function" then
    error("smtp.send_all: sleep must be a function(seconds)", 3)
  end
  local ngx = rawget(_G, "ngx")
  local sleep = opts.sleep or (type(ngx) == "table" and ngx.sleep) or require("smtp.core").sleep
  return rate, retries, backoff, sleep
end

-- Send many messages over as few sessions as it takes: one receipt or
-- error object per message, in order.  A transient failure (4xx, a lost
-- connection, a 421) is retried after backoff * 2^attempt seconds, on a
-- new session when the old one died, up to `retries` times; a permanent
-- one is not.  A message counts as sent only on the server's final 2xx,
-- and is then never sent again.  rate = { messages = n, per = seconds }
-- spaces them (Amazon SES: 14 per second).
function Connection:send_all(list, opts)
  if type(list) ~= "table" then error("smtp.send_all: expected a list of messages", 2) end
  local rate, retries, backoff, sleep = check_send_all(opts or {})
  local o = settings[self]
  local prepared = {}
  for i, msg in ipairs(list) do prepared[i] = message.prepare(msg, o.charset) end
  local clock = require("smtp.core").clock
  local sent_at, results, s = {}, {}, nil
  local function pace()
    if not rate then return end
    local first = sent_at[#sent_at - rate.messages + 1]
    if first then
      local wait = first + rate.per - clock()
      if wait > 0 then sleep(wait) end
    end
  end
  for i, m in ipairs(prepared) do
    local attempt = 0
    while true do
      local result, err
      if not s then s, err = session.open(o) end
      if s then
        pace()
        sent_at[#sent_at + 1] = clock()
        result, err = s:deliver(m)
        if not result and not s:alive() then
          s:release()
          s = nil
        end
      end
      if result or not err.transient or attempt >= retries then
        results[i] = result or err
        break
      end
      sleep(backoff * 2 ^ attempt)
      attempt = attempt + 1
    end
  end
  if s then s:close() end
  return results
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
