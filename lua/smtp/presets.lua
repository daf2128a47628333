-- Provider presets: plain data.  A preset fills in what a connection leaves
-- out; the connection's own keys win (tables such as tls and auth merge key
-- by key).  Add your own: smtp.presets.mine = { address = ..., ... }.
--
-- A preset is a table of connection options, or a function(params) that
-- returns one: params holds the connection's keys that are not connection
-- options (region for ses), and the keys the function does not read are
-- refused as unknown options.  A function raises on a bad parameter with
-- error(message, 0).
--
-- `hint`, when present, is what to try when the provider refuses the
-- credentials (an app password, OAuth2, an API key as the password): the
-- error's hint for a refused AUTH names it.
--
-- "TLS 1.2 and newer" needs no tls.versions: TLS 1.2 is the default floor,
-- and the ceiling is the newest the linked mbedTLS has (naming tls1.3
-- would fail with mbedTLS 2.28, which has none).
--
-- The presets set no tls.mode: it follows the port (implicit TLS on 465,
-- STARTTLS elsewhere), so that port = 587 on a connection with a 465
-- preset (or the other way round) just works.  Where a provider documents
-- both, the preset takes the one the provider recommends.

local presets = {}

-- Microsoft Exchange Server (on premises).  Authenticated clients submit
-- on the "Client Frontend" receive connector: port 587 with STARTTLS, as
-- Microsoft documents it.  Not "implicit" on 465: on Exchange 2013 and
-- later, 465 is the hub transport's "Default" connector, which takes the
-- front end's proxied connections and speaks STARTTLS, not TLS from the
-- first byte; a client that starts a TLS handshake there waits in vain.
-- The address is your server's (no default).  Auth: the domain account;
-- give auth.domain (or "DOMAIN\\user") to bring NTLM forward.
presets.exchange = {
  port = 587,
  hint = "Exchange wants the mailbox's domain account: username as user@domain or DOMAIN\\user "
    .. "(auth.domain for NTLM), and Authenticated SMTP allowed on the Client Frontend connector",
}

-- Microsoft 365 (Exchange Online): smtp.office365.com, port 587, STARTTLS,
-- TLS 1.2 or newer (Microsoft's "SMTP AUTH client submission").  SMTP AUTH
-- must be enabled for the mailbox (it is off for tenants created since
-- 2020, and security defaults block it); Microsoft is retiring basic
-- authentication for it, so OAuth2 (auth.token, scope SMTP.Send) is the
-- lasting choice.
presets.office365 = {
  address = "smtp.office365.com", port = 587,
  hint = "Microsoft 365: enable Authenticated SMTP (SMTP AUTH) for this mailbox, or use OAuth2 "
    .. "(auth.token with the SMTP.Send scope); basic authentication is being retired",
}

-- Outlook.com, Hotmail, Live (consumer accounts): smtp-mail.outlook.com,
-- port 587, STARTTLS.  Microsoft documents OAuth2 ("Modern Auth") for it;
-- an app password works only while the account still allows basic auth.
presets.outlook = {
  address = "smtp-mail.outlook.com", port = 587,
  hint = "Outlook.com wants OAuth2 (auth.token) for SMTP; an app password works only where the account "
    .. "still allows basic authentication",
}

-- Gmail and Google Workspace: smtp.gmail.com, port 465, implicit TLS (587
-- with STARTTLS also works).  The account password is refused: an app
-- password (2-Step Verification on) or OAuth2 (scope https://mail.google.com/).
presets.gmail = {
  address = "smtp.gmail.com", port = 465,
  hint = "Gmail wants an app password (Google Account > Security > 2-Step Verification > App passwords) "
    .. "or OAuth2 (auth.token); the account password is refused",
}

-- Amazon SES: email-smtp.<region>.amazonaws.com, port 465 with TLS from the
-- first byte ("TLS Wrapper"; STARTTLS on 587 too), TLS 1.2 or newer.
-- Parameter: region (default us-east-1).  Auth: SES SMTP credentials,
-- made per region in the SES console, not the IAM access key pair.
function presets.ses(params)
  local region = params.region
  if region == nil then region = "us-east-1" end
  if type(region) ~= "string" or not region:find("^%l%l[%l%-]*%-%d+$") then
    error(string.format("smtp.connection: region must be an AWS region such as \"eu-west-1\", got %s",
      type(region) == "string" and string.format("%q", region) or tostring(region)), 0)
  end
  return {
    address = "email-smtp." .. region .. ".amazonaws.com", port = 465,
    hint = "Amazon SES wants its SMTP credentials (made in the SES console for region " .. region
      .. "), not an IAM access key and secret; credentials of another region are refused",
  }
end

-- Yahoo Mail: smtp.mail.yahoo.com, port 465, implicit TLS (587 with
-- STARTTLS also works).  Auth: an app password; the account password is
-- refused.
presets.yahoo = {
  address = "smtp.mail.yahoo.com", port = 465,
  hint = "Yahoo wants an app password (Account security > Generate app password); the account password "
    .. "is refused",
}

-- iCloud Mail: smtp.mail.me.com, port 587, STARTTLS (the port Apple
-- documents).  Auth: the full iCloud address and an app-specific password
-- (two-factor authentication on).
presets.icloud = {
  address = "smtp.mail.me.com", port = 587,
  hint = "iCloud wants your full iCloud address and an app-specific password (appleid.apple.com > "
    .. "Sign-In and Security); the Apple ID password is refused",
}

-- Zoho Mail: smtp.zoho.com, port 465, implicit TLS (587 with STARTTLS also
-- works).  Accounts in other data centres use their own host (smtp.zoho.eu,
-- smtp.zoho.in, ...), and organization accounts smtppro.zoho.com: set
-- address.  Auth: the account password, or an application-specific
-- password once two-factor authentication is on.
presets.zoho = {
  address = "smtp.zoho.com", port = 465,
  hint = "Zoho wants an application-specific password once two-factor authentication is on, and the "
    .. "host of your account's data centre (smtp.zoho.eu, smtp.zoho.in, smtppro.zoho.com, ...)",
}

-- Fastmail: smtp.fastmail.com, port 465, TLS from the first byte ("not
-- STARTTLS", as Fastmail documents it).  Auth: an app password, always.
presets.fastmail = {
  address = "smtp.fastmail.com", port = 465,
  hint = "Fastmail wants an app password (Settings > Privacy & Security > App passwords); "
    .. "the login password is refused",
}

-- SendGrid (Twilio): smtp.sendgrid.net, port 587, STARTTLS.  Auth: the
-- user name is the word "apikey", the password an API key with Mail Send
-- permission.
presets.sendgrid = {
  address = "smtp.sendgrid.net", port = 587, auth = { username = "apikey" },
  hint = "SendGrid wants the user name \"apikey\" (the word itself) and an API key with Mail Send "
    .. "permission as the password",
}

-- Mailgun: smtp.mailgun.org (EU accounts: smtp.eu.mailgun.org), port 587,
-- STARTTLS.  Auth: the sending domain's SMTP credentials
-- (postmaster@your-domain and its SMTP password), not the account login.
presets.mailgun = {
  address = "smtp.mailgun.org", port = 587,
  hint = "Mailgun wants the sending domain's SMTP credentials (such as postmaster@your-domain), not the "
    .. "account login or API key; EU accounts use address smtp.eu.mailgun.org",
}

-- Postmark: smtp.postmarkapp.com, port 587, STARTTLS (25 and 2525 too;
-- there is no implicit-TLS port).  Auth: the Server API token as both the
-- user name and the password.
presets.postmark = {
  address = "smtp.postmarkapp.com", port = 587,
  hint = "Postmark wants the Server API token as both the user name and the password",
}

-- Brevo (formerly Sendinblue): smtp-relay.brevo.com, port 587, STARTTLS
-- (465 with TLS from the first byte too).  Auth: the SMTP login shown in
-- Settings > SMTP & API and an SMTP key (not an API key).
presets.brevo = {
  address = "smtp-relay.brevo.com", port = 587,
  hint = "Brevo wants the SMTP login shown under Settings > SMTP & API and an SMTP key as the password "
    .. "(not an API key, not the account password)",
}

-- Mailjet: in-v3.mailjet.com, port 587, STARTTLS.  Auth: the API key as
-- the user name and the secret key as the password.
presets.mailjet = {
  address = "in-v3.mailjet.com", port = 587,
  hint = "Mailjet wants the API key as the user name and the secret key as the password",
}

-- A mail server on this machine (Postfix, Exim, OpenSMTPD) relaying for
-- local users: port 25, no TLS on loopback, no authentication.
presets["local"] = { address = "localhost", port = 25, tls = { protocol = "none" } }

-- A development sink (aiosmtpd, MailHog, Mailpit, smtp4dev) on its usual
-- port, 1025: no TLS, no authentication.
presets.devsink = { address = "localhost", port = 1025, tls = { protocol = "none" } }

return presets
