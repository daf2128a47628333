-- smtp.load(path): connections defined in a Lua file, run in a sandbox;
-- a name defined twice names both places.
local smtp = require "smtp"
local server = require "spec.support.server"

local files = {}

local function file(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  files[#files + 1] = path
  return path
end

local function fails(path, ...)
  local ok, err = pcall(smtp.load, path)
  assert.is_false(ok, "it loaded")
  err = tostring(err)
  for _, word in ipairs({ ... }) do
    assert.truthy(err:find(word, 1, true), "the error lacks \"" .. word .. "\": " .. err)
  end
  return err
end

local function names(list)
  local out = {}
  for i, c in ipairs(list) do out[i] = c.name or "(unnamed)" end
  return out
end

describe("smtp.load", function()
  after_each(function()
    for name in pairs(smtp.connections) do smtp.connections[name] = nil end
    for _, path in ipairs(files) do os.remove(path) end
    files = {}
  end)

  it("creates and registers the connections of a table by name, in name order", function()
    local path = file [[
return {
  relay = { address = "relay.example.com", port = 25, tls = { protocol = "none" } },
  office = {
    preset = "office365",
    auth = { username = "me@example.com", password = os.getenv "HOME" or "x" },
  },
}
]]
    local list = smtp.load(path)
    assert.are.same({ "office", "relay" }, names(list))
    assert.are.equal(list[1], smtp.connections.office)
    assert.are.equal(list[2], smtp.connections.relay)
    assert.truthy(tostring(list[1]):find("(smtp.office365.com:587, tls explicit, as me@example.com)", 1, true))
    assert.truthy(tostring(list[2]):find("(relay.example.com:25, no TLS, anonymous)", 1, true))
  end)

  it("creates the connections of a list in order, named or not", function()
    local list = smtp.load(file [[
return {
  { name = "first", address = "a.example.com" },
  { address = "b.example.com" },
  { name = "third", address = "c.example.com" },
}
]])
    assert.are.same({ "first", "(unnamed)", "third" }, names(list))
    assert.are.equal(list[3], smtp.connections.third)
  end)

  it("reads passwords from the environment with os.getenv", function()
    local path = file [[
local password = os.getenv "PATH"
assert(password, "PATH is not set")
return { { name = "env", address = "a.example.com", auth = { username = "u", password = password } } }
]]
    local list = smtp.load(path)
    assert.truthy(tostring(list[1]):find("as u)", 1, true))
    assert.falsy(tostring(list[1]):find(os.getenv "PATH", 1, true))
  end)

  it("offers string, table and math", function()
    local list = smtp.load(file [[
local hosts = {}
for _, n in ipairs({ 1, 2 }) do table.insert(hosts, string.format("mx%d.example.com", math.floor(n))) end
return { { name = "mx", address = hosts[2]:upper():lower() } }
]])
    assert.truthy(tostring(list[1]):find("mx2.example.com", 1, true))
  end)

  describe("runs the file in a sandbox", function()
    local forbidden = {
      { "io", "io.open('/etc/passwd')" },
      { "require", "require('os')" },
      { "load", "load('return 1')" },
      { "loadstring", "loadstring('return 1')" },
      { "dofile", "dofile('/dev/null')" },
      { "loadfile", "loadfile('/dev/null')" },
      { "execute", "os.execute('true')" },
      { "remove", "os.remove('/nonexistent')" },
      { "getmetatable", "getmetatable('').__index.rep('x', 2)" },
      { "setmetatable", "setmetatable({}, {})" },
      { "rawset", "rawset(_G or {}, 'x', 1)" },
      { "debug", "debug.getinfo(1)" },
      { "collectgarbage", "collectgarbage()" },
      { "dump", "string.dump(function() end)" },
    }
    for _, case in ipairs(forbidden) do
      it("without " .. case[1], function()
        local path = file("local x = " .. case[2] .. "\nreturn {}\n")
        fails(path, "smtp.load: ", path .. ":1:")
      end)
    end

    it("and its changes to string stay inside", function()
      smtp.load(file "string.upper = nil\nreturn {}\n")
      assert.are.equal("X", string.upper("x"))
    end)
  end)

  describe("raises with the file name", function()
    it("for a file that is not there", function()
      fails("/nonexistent/connections.lua", "smtp.load: cannot open /nonexistent/connections.lua")
    end)

    it("for a syntax error, with the line", function()
      local path = file "return {\n  { name = 'a' address = 'x' },\n}\n"
      fails(path, "smtp.load: ", path .. ":2:")
    end)

    it("for an error while running, with the line", function()
      local path = file "local t = {}\n\nreturn t.missing.field\n"
      fails(path, "smtp.load: ", path .. ":3:")
    end)

    it("for a precompiled chunk", function()
      local path = file(string.dump(function() return {} end))
      fails(path, "smtp.load: ", path, "precompiled")
    end)

    it("for a value that is not a table", function()
      local path = file "return 'office'\n"
      fails(path, path, "must return a table")
    end)

    it("for a table that mixes a list and names", function()
      local path = file "return { { address = 'a' }, office = { address = 'b' } }\n"
      fails(path, path, "mixes a list and names")
    end)

    it("for a definition that is not a table, naming its place", function()
      local path = file "return { office = 'mail.example.com' }\n"
      fails(path, path .. " (office)", "expected a table of options")
    end)

    it("for a bad option, naming the definition; nothing of the file is registered", function()
      local path = file [[
return {
  { name = "good", address = "a.example.com" },
  { name = "bad", adress = "b.example.com" },
}
]]
      fails(path, path .. ":3 (entry 2)", "unknown option adress (did you mean address?)")
      assert.is_nil(smtp.connections.good)
      assert.is_nil(smtp.connections.bad)
    end)

    it("for a name in the table that differs from its key", function()
      local path = file "return { office = { name = 'relay', address = 'a' } }\n"
      fails(path, path .. " (office)", "its name is relay")
    end)
  end)

  describe("refuses a name defined twice, naming both places", function()
    it("in one list", function()
      local path = file [[
return {
  { name = "office", address = "a.example.com" },
  { name = "relay", address = "b.example.com" },
  { name = "office", address = "c.example.com" },
}
]]
      fails(path, 'a connection named "office" is defined twice', path .. ":2 (entry 1)", path .. ":4 (entry 3)")
      assert.is_nil(smtp.connections.relay)
    end)

    it("as two equal keys of one table, which Lua alone would let pass", function()
      local path = file [[
return {
  office = { address = "a.example.com" },
  relay = { address = "b.example.com" },
  office = { address = "c.example.com" },
}
]]
      fails(path, 'a connection named "office" is defined twice', path .. ":2 (office)", path .. ":4 (office)")
    end)

    it("in two files", function()
      local first = file "return {\n  office = { address = 'a.example.com' },\n}\n"
      local second = file "return {\n  { name = 'other', address = 'b' },\n  { name = 'office', address = 'c' },\n}\n"
      smtp.load(first)
      fails(second, 'a connection named "office" is defined twice', first .. ":2 (office)",
        second .. ":3 (entry 2)")
      assert.is_nil(smtp.connections.other)
    end)

    it("finds the lines past comments, strings and nested tables", function()
      local first = file [==[
-- office = { an old definition, commented out }
local note = "office = {"
--[[ office = {
]]
return {
  relay = { address = "r.example.com", tls = { protocol = "none" } },
  office = { address = "a.example.com", auth = { username = "u", password = [[office = {]] } },
}
]==]
      smtp.load(first)
      local second = file "return {\n  { name = 'office', address = 'c' },\n}\n"
      fails(second, first .. ":7 (office)", second .. ":2 (entry 1)")
    end)

    it("in a file and by smtp.connection", function()
      smtp.connection { name = "office", address = "a.example.com" }
      local path = file "return { office = { address = 'b.example.com' } }\n"
      fails(path, 'a connection named "office" is defined twice', "by smtp.connection", path .. ":1 (office)")
    end)

    it("again after its connection was removed from smtp.connections: no", function()
      local path = file "return { office = { address = 'a.example.com' } }\n"
      smtp.load(path)
      smtp.connections.office = nil
      assert.are.same({ "office" }, names(smtp.load(path)))
    end)
  end)

  it("gives connections that work", function()
    local srv = server.start {}
    local path = file(string.format("return { sink = { address = %q, port = %d, tls = { protocol = 'none' } } }\n",
      srv.host, srv.port))
    local ok, report, err = pcall(function() return smtp.load(path)[1]:test() end)
    srv:stop()
    assert(ok, report)
    assert.is_nil(err)
    assert.truthy(report.banner:find("smtpd.py", 1, true))
  end)
end)
