-- smtp.connection: option checking, defaults, names, and what printing shows.
local smtp = require "smtp"

local function raises(pattern, t)
  local ok, err = pcall(smtp.connection, t)
  assert.is_false(ok)
  assert.truthy(tostring(err):find(pattern, 1, true), tostring(err))
end

describe("smtp.connection", function()
  after_each(function()
    for name in pairs(smtp.connections) do smtp.connections[name] = nil end
  end)

  it("suggests the closest key for an unknown one", function()
    raises("unknown option adress (did you mean address?)", { adress = "x" })
    raises("unknown option tls.mdoe (did you mean tls.mode?)", { address = "x", tls = { mdoe = "implicit" } })
    raises("unknown option auth.pasword (did you mean auth.password?)", { address = "x", auth = { pasword = "p" } })
  end)

  it("names the key and what was expected for a bad value", function()
    raises('tls.mode must be one of "explicit", "implicit", "opportunistic", got "implict"',
      { address = "x", tls = { mode = "implict" } })
    raises("port must be an integer port from 1 to 65535, got 70000", { address = "x", port = 70000 })
    raises("timeout must be a positive number of seconds, got -1", { address = "x", timeout = -1 })
    raises("address must be the server's host name or IP address", {})
    raises("address must be a string without CR, LF or NUL", { address = "a\r\nb" })
    raises("proxy.type must be one of", { address = "x", proxy = { type = "socks6" } })
    raises("helo must be", { address = "x", helo = "" })
  end)

  it("picks the safe defaults for port and TLS mode", function()
    local function shown(t) return tostring(smtp.connection(t)) end
    assert.truthy(shown { address = "a" }:find("(a:587, tls explicit, anonymous)", 1, true))
    assert.truthy(shown { address = "a", port = 465 }:find("(a:465, tls implicit", 1, true))
    assert.truthy(shown { address = "a", tls = { mode = "implicit" } }:find("(a:465, tls implicit", 1, true))
    assert.truthy(shown { address = "a", tls = { protocol = "none" } }:find("(a:25, no TLS", 1, true))
  end)

  it("registers named connections and refuses a second with the same name", function()
    local c = smtp.connection { name = "office", address = "a" }
    assert.are.equal(c, smtp.connections.office)
    raises('a connection named "office" already exists', { name = "office", address = "b" })
  end)

  it("fills in from a preset; explicit keys win", function()
    local c = smtp.connection { preset = "devsink", port = 2025 }
    assert.truthy(tostring(c):find("(localhost:2025, no TLS", 1, true))
    raises('preset must be one of', { preset = "nosuch" })
  end)

  it("never shows a password", function()
    local c = smtp.connection { address = "a", auth = { username = "me", password = "hunter2" } }
    local shown = tostring(c)
    assert.truthy(shown:find("me", 1, true))
    assert.falsy(shown:find("hunter2", 1, true))
    for _, v in pairs(c) do assert.are_not.equal("hunter2", v) end
  end)
end)
