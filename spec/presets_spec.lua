-- Provider presets: what each fills in, that explicit keys win, the SES
-- region, presets of one's own, and the local ones against real servers.
local smtp = require "smtp"
local presets = require "smtp.presets"
local server = require "spec.support.server"

-- What tostring(conn) shows for each preset (credentials where the
-- provider needs them; exchange has no address of its own).
local SHOWN = {
  exchange = "(mail.example.com:587, tls explicit",
  office365 = "(smtp.office365.com:587, tls explicit",
  outlook = "(smtp-mail.outlook.com:587, tls explicit",
  gmail = "(smtp.gmail.com:465, tls implicit",
  ses = "(email-smtp.us-east-1.amazonaws.com:465, tls implicit",
  yahoo = "(smtp.mail.yahoo.com:465, tls implicit",
  icloud = "(smtp.mail.me.com:587, tls explicit",
  zoho = "(smtp.zoho.com:465, tls implicit",
  fastmail = "(smtp.fastmail.com:465, tls implicit",
  sendgrid = "(smtp.sendgrid.net:587, tls explicit, as apikey)",
  mailgun = "(smtp.mailgun.org:587, tls explicit",
  postmark = "(smtp.postmarkapp.com:587, tls explicit",
  brevo = "(smtp-relay.brevo.com:587, tls explicit",
  mailjet = "(in-v3.mailjet.com:587, tls explicit",
  ["local"] = "(localhost:25, no TLS, anonymous)",
  devsink = "(localhost:1025, no TLS, anonymous)",
}

local function shown(t)
  return tostring(smtp.connection(t))
end

-- Whether options.lua passes preset parameters (region) to a function preset.
local function takes_parameters()
  return (pcall(smtp.connection, { preset = "ses", region = "eu-west-1" }))
end

describe("presets", function()
  after_each(function()
    for name in pairs(smtp.connections) do smtp.connections[name] = nil end
  end)

  it("are smtp.presets", function()
    assert.are.equal(presets, smtp.presets)
  end)

  it("cover the providers, each with a hint for refused credentials", function()
    local names = {}
    for name in pairs(presets) do names[#names + 1] = name end
    table.sort(names)
    local want = {}
    for name in pairs(SHOWN) do want[#want + 1] = name end
    table.sort(want)
    assert.are.same(want, names)
    for name, p in pairs(presets) do
      local t = type(p) == "function" and p(setmetatable({}, { __index = function() return nil end })) or p
      assert.are.equal("table", type(t), name)
      if name ~= "local" and name ~= "devsink" then
        assert.are.equal("string", type(t.hint), name .. " has no hint")
      end
    end
  end)

  for name, want in pairs(SHOWN) do
    it(name .. " fills in " .. want, function()
      if name == "ses" and not takes_parameters() then
        pending("options.lua does not call function presets yet")
        return
      end
      local t = { preset = name }
      if name == "exchange" then t.address = "mail.example.com" end
      if name ~= "local" and name ~= "devsink" then t.auth = { password = "secret" } end
      if name ~= "sendgrid" and t.auth then t.auth.username = "me@example.com" end
      local s = shown(t)
      assert.truthy(s:find(want, 1, true), s)
      assert.falsy(s:find("secret", 1, true), s)
    end)
  end

  it("let explicit keys win; the TLS mode follows the port", function()
    assert.truthy(shown { preset = "gmail", port = 587 }:find("(smtp.gmail.com:587, tls explicit", 1, true))
    assert.truthy(shown { preset = "office365", port = 465 }:find("(smtp.office365.com:465, tls implicit", 1, true))
    assert.truthy(shown { preset = "mailgun", address = "smtp.eu.mailgun.org" }
      :find("(smtp.eu.mailgun.org:587", 1, true))
    assert.truthy(shown { preset = "sendgrid", auth = { username = "other", password = "k" } }
      :find("as other)", 1, true))
    assert.truthy(shown { preset = "gmail", tls = { mode = "explicit" }, port = 25 }
      :find("(smtp.gmail.com:25, tls explicit", 1, true))
  end)

  it("exchange has no address of its own", function()
    local ok, err = pcall(smtp.connection, { preset = "exchange" })
    assert.is_false(ok)
    assert.truthy(err:find("address must be", 1, true), err)
  end)

  describe("ses", function()
    it("takes a region", function()
      if not takes_parameters() then
        pending("options.lua does not pass preset parameters (region) yet")
        return
      end
      assert.truthy(shown { preset = "ses", region = "eu-west-1" }
        :find("(email-smtp.eu-west-1.amazonaws.com:465, tls implicit", 1, true))
      assert.truthy(shown { preset = "ses", region = "us-gov-west-1" }
        :find("(email-smtp.us-gov-west-1.amazonaws.com:465", 1, true))
    end)

    it("refuses a region that is not one, naming it", function()
      if not takes_parameters() then
        pending("options.lua does not pass preset parameters (region) yet")
        return
      end
      for _, bad in ipairs({ "eu west 1", "eu-west-1.evil.example", "", 42 }) do
        local ok, err = pcall(smtp.connection, { preset = "ses", region = bad })
        assert.is_false(ok)
        assert.truthy(err:find("region must be an AWS region", 1, true), err)
      end
    end)

    it("refuses a misspelt parameter, suggesting region", function()
      if not takes_parameters() then
        pending("options.lua does not pass preset parameters (region) yet")
        return
      end
      local ok, err = pcall(smtp.connection, { preset = "ses", regoin = "eu-west-1" })
      assert.is_false(ok)
      assert.truthy(err:find("unknown option regoin (did you mean region?)", 1, true), err)
    end)
  end)

  it("refuse region for a preset that takes no parameters", function()
    for _, name in ipairs({ "gmail", "devsink" }) do
      local ok, err = pcall(smtp.connection, { preset = name, region = "eu-west-1" })
      assert.is_false(ok)
      assert.truthy(err:find("unknown option region", 1, true), err)
    end
  end)

  it("can be added by the user, as a table or as a function of parameters", function()
    smtp.presets.mine = { address = "mail.mine.example", port = 2525, tls = { protocol = "none" } }
    local ok, err = pcall(function()
      assert.truthy(shown { preset = "mine" }:find("(mail.mine.example:2525, no TLS", 1, true))
      if takes_parameters() then
        smtp.presets.site = function(p) return { address = (p.site or "hq") .. ".mail.example" } end
        assert.truthy(shown { preset = "site" }:find("(hq.mail.example:587", 1, true))
        assert.truthy(shown { preset = "site", site = "branch" }:find("(branch.mail.example:587", 1, true))
      end
    end)
    smtp.presets.mine, smtp.presets.site = nil, nil
    assert(ok, err)
  end)

  describe("against real servers", function()
    it("devsink reaches a development sink (with its port)", function()
      local srv = server.start {}
      local report, err = smtp.connection { preset = "devsink", port = srv.port, timeout = 5 }:test()
      srv:stop()
      assert.is_nil(err)
      assert.truthy(report.banner:find("smtpd.py", 1, true))
    end)

    it("local reaches the MTA on this machine (Postfix, on its test port)", function()
      local pf = server.postfix()
      local report, err = smtp.connection { preset = "local", port = pf.port, timeout = 5 }:test()
      assert.is_nil(err)
      assert.are.equal("mx.example.test", report.ehlo.domain)
    end)
  end)
end)
