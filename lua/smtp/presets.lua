-- Provider presets: plain data.  A preset fills in what a connection leaves
-- out; the connection's own keys win.  Add your own: smtp.presets.mine = {...}.
return {
  -- A mail server on this machine (Postfix, Exim, OpenSMTPD) relaying for
  -- local users: port 25, no TLS on loopback, no authentication.
  ["local"] = { address = "localhost", port = 25, tls = { protocol = "none" } },
  -- A development sink (aiosmtpd, MailHog, Mailpit) on its usual port.
  devsink = { address = "localhost", port = 1025, tls = { protocol = "none" } },
}
