-- The demo: describe a connection to a local server, test it, send through it.
--   lua5.4 examples/demo.lua [port]      (make demo starts the server)
local smtp = require "smtp"

local conn = smtp.connection {
  name = "demo",
  address = "127.0.0.1",
  port = tonumber(arg[1]) or 1025,
  timeout = 10,
  tls = { protocol = "none" },      -- a local development server speaks plaintext
}
print(conn)

local report, err = conn:test()
if not report then
  print("test failed: " .. err)
  os.exit(1)
end
print(string.format("test: %s:%d answered %q", report.resolved, report.port, report.banner))
for _, st in ipairs(report.stages) do
  print(string.format("  %-4s %-9s %6.1f ms  %s", st.ok and "ok" or "FAIL", st.name, st.time * 1e3, st.detail))
end
print("  extensions: " .. table.concat(report.ehlo.extensions, ", "))

local receipt
receipt, err = conn:send {
  from = "Demo <demo@example.com>",
  to = { "Alice <alice@example.com>", "bob@example.com" },
  bcc = "audit@example.com",
  subject = "Hello from smtp",
  text = "It works.\n.\nA line with only a dot, sent safely.\n",
}
if not receipt then
  print("send failed: " .. err)
  os.exit(1)
end
print(string.format("sent %s (%d bytes): %d %s", receipt.message_id, receipt.bytes,
  receipt.reply.code, receipt.reply.message))
for _, r in ipairs(receipt.accepted) do print("  accepted " .. r.address) end
