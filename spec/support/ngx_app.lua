-- The nginx side of spec/ngx_spec.lua: what the locations of nginx.sh's
-- nginx.conf run (LuaJIT inside nginx, smtp from the repository's lua/).
--
-- Query arguments (all optional unless said):
--   opts    JSON of the smtp.connection options (required for /send, /timer,
--           /header-filter, /set, /log)
--   count   messages to send through one session (default 1)
--   tag     the subject of each message, with "-<n>" appended
--   event   record "<event>-start" before and "<event>-done" after the send,
--           in the shared event list (see /events)
--   key     /timer, /log: the name the result is kept under, for /result?key=
--
-- Locations (see nginx.sh):
--   /send, /access-send, /rewrite-send  open one session, send count
--           messages, close; the JSON answer is { transport, phase, report =
--           { resolved, family, tls }, results = { { code, queue_id,
--           message_id } or { error = tostring(err), kind, stage, message } } }
--   /init-conn  send one message (tag) through the connection init_by_lua
--           described (to the test Postfix's plain port)
--   /timer  the /send work in an ngx.timer.at(0) callback; answers
--           "scheduled" at once; the JSON lands in /result?key=
--   /event?event=NAME  record NAME in the event list; /events: the list (JSON)
--   /header-filter, /set, /log  conn:test() in a phase without cosockets;
--           the error goes to the X-Smtp-Error header, the body, and
--           /result?key= (the key given to /log) respectively
local json = require "spec.support.json"
local smtp = require "smtp"

local M = {}

local dict = ngx.shared.smtp_test

local function args()
  return ngx.req.get_uri_args()
end

local function record(name)
  local n = dict:incr("events", 1, 0)
  dict:set("event-" .. n, name)
end

local function error_table(err)
  return { error = tostring(err), kind = err.kind, stage = err.stage, message = err.message }
end

-- The transport a connection described here and now would use.
local function transport_name()
  return require("smtp.transport").resolve(nil).name
end

local function connection(a)
  return smtp.connection(json.decode(assert(a.opts, "opts missing")))
end

local function send_all(a)
  local out = { transport = transport_name(), phase = ngx.get_phase(), results = {} }
  local conn = connection(a)
  if a.event then record(a.event .. "-start") end
  local s, err, report = conn:open()
  if not s then
    out.results[1] = error_table(err)
    out.report = report and { resolved = report.resolved } or nil
  else
    out.report = { resolved = s.report.resolved, family = s.report.family,
      tls = s.report.tls and s.report.tls.version or nil,
      auth = s.report.auth and s.report.auth.mechanism or nil }
    for i = 1, tonumber(a.count or 1) do
      local receipt
      receipt, err = s:send { from = "sender@example.test", to = "rcpt@example.test",
        subject = (a.tag or "ngx") .. "-" .. i, text = "sent from nginx, phase " .. ngx.get_phase() .. "\n" }
      out.results[i] = receipt and { code = receipt.reply.code, queue_id = receipt.queue_id,
        message_id = receipt.message_id } or error_table(err)
    end
    s:close()
  end
  if a.event then record(a.event .. "-done") end
  return json.encode(out)
end

function M.init()
  -- Described in the init phase, where there are no cosockets yet: the
  -- transport decides when the session connects.
  M.init_transport = transport_name()
  smtp.connection { name = "from-init", address = "127.0.0.1", timeout = 5,
    port = tonumber(os.getenv("SMTP_TEST_POSTFIX_PORT") or "2525"), tls = { protocol = "none" } }
end

function M.send()
  ngx.say(send_all(args()))
  if ngx.get_phase() ~= "content" then return ngx.exit(200) end
end

function M.init_conn()
  local a = args()
  local receipt, err = smtp.connections["from-init"]:send { from = "sender@example.test",
    to = "rcpt@example.test", subject = a.tag or "from-init", text = "described in init_by_lua\n" }
  ngx.say(json.encode { init_transport = M.init_transport, phase = ngx.get_phase(),
    result = receipt and { code = receipt.reply.code } or error_table(err) })
end

function M.timer()
  local a = args()
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    local good, out = pcall(send_all, a)
    dict:set("result-" .. a.key, good and out or json.encode { crash = tostring(out) })
  end)
  ngx.say(ok and "scheduled" or ("not scheduled: " .. tostring(err)))
end

function M.result()
  local v = dict:get("result-" .. (args().key or ""))
  if not v then return ngx.exit(404) end
  ngx.say(v)
end

function M.event()
  record(args().event or "?")
  ngx.say("ok")
end

function M.events()
  local list = {}
  for i = 1, dict:get("events") or 0 do list[i] = dict:get("event-" .. i) or "?" end
  ngx.say(json.encode(list))
end

local function test_error()
  local report, err = connection(args()):test()
  if report then return "no error: the test succeeded" end
  return tostring(err)
end

function M.header_filter()
  ngx.header["X-Smtp-Error"] = test_error()
end

function M.set()
  return test_error()
end

function M.log()
  dict:set("result-" .. (args().key or "log"), test_error())
end

return M
