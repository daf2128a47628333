-- bin/smtp-test, run as a subprocess by the interpreter running the specs,
-- with this process's package paths: exit codes, the report, --json,
-- --help, --send, --trace, and passwords that never show.
local server = require "spec.support.server"
local json = require "spec.support.json"

local INTERPRETER = arg and arg[-1] or "lua"
local SCRIPT = "bin/smtp-test"

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Run smtp-test with args; opts.env: more environment (a value false
-- unsets), opts.stdin: what to feed it.  Returns exit code, stdout, stderr.
local function run(args, opts)
  opts = opts or {}
  local cmd = { "env" }
  for _, v in ipairs({ "LUA_PATH_5_2", "LUA_PATH_5_3", "LUA_PATH_5_4", "LUA_CPATH_5_2", "LUA_CPATH_5_3",
                       "LUA_CPATH_5_4", "LUA_INIT", "LUA_INIT_5_2", "LUA_INIT_5_3", "LUA_INIT_5_4",
                       "LC_ALL", "LC_CTYPE" }) do
    cmd[#cmd + 1] = "-u " .. v
  end
  local env = { LUA_PATH = package.path, LUA_CPATH = package.cpath, LANG = "C.UTF-8" }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  for k, v in pairs(env) do
    cmd[#cmd + 1] = v and (k .. "=" .. quote(v)) or ("-u " .. k)
  end
  cmd[#cmd + 1] = quote(INTERPRETER)
  cmd[#cmd + 1] = SCRIPT
  for _, a in ipairs(args) do cmd[#cmd + 1] = quote(a) end
  local errfile = os.tmpname()
  local line = table.concat(cmd, " ") .. " 2>" .. quote(errfile)
  if opts.stdin then
    line = "printf '%s' " .. quote(opts.stdin) .. " | " .. line
  else
    line = line .. " </dev/null"
  end
  local p = assert(io.popen("(" .. line .. "); echo \"EXIT:$?\""))
  local out = p:read("*a")
  p:close()
  local code = tonumber(out:match("EXIT:(%d+)%s*$"))
  out = out:gsub("EXIT:%d+%s*$", "")
  local err = read_file(errfile)
  os.remove(errfile)
  return code, out, err
end

local function has(text, ...)
  for _, word in ipairs({ ... }) do
    assert.truthy(text:find(word, 1, true), "lacks \"" .. word .. "\" in:\n" .. text)
  end
end

local with_server = server.with

local function plain_args(srv, ...)
  local args = { "--address", srv.host, "--port", tostring(srv.port), "--tls", "none", "--timeout", "5" }
  for _, a in ipairs({ ... }) do args[#args + 1] = a end
  return args
end

describe("smtp-test", function()
  local pf, ca, alice

  setup(function()
    pf = server.postfix()
    ca = pf.certs .. "/ca.pem"
    alice = pf.users.plain
  end)

  describe("--help", function()
    it("documents every option and exits 0", function()
      local code, out = run { "--help" }
      assert.are.equal(0, code)
      has(out, "Usage: smtp-test")
      for _, option in ipairs({ "--preset", "--region", "--address", "--port", "--timeout", "--tls", "--mode",
                                "--cafile", "--insecure", "--username", "--password-env", "--password-prompt",
                                "--token-env", "--proxy", "--proxy-password-env", "--helo", "--send", "--from",
                                "--to", "--subject", "--text", "--attach", "--trace", "--json", "--help" }) do
        assert.truthy(out:find("\n  " .. option:gsub("%-", "%%-") .. "[ \n]"), option .. " is not documented:\n" .. out)
      end
      has(out, "gmail", "office365", "ses", "devsink")
    end)

    it("documents each option the script knows, and nothing it does not", function()
      local source = read_file(SCRIPT)
      local table_text = source:match("local OPTIONS = (%b{})")
      local _, out = run { "--help" }
      local n = 0
      for name in table_text:gmatch('{ "([%w-]+)"') do
        n = n + 1
        assert.truthy(out:find("--" .. name, 1, true), "--" .. name .. " is not in --help")
      end
      local shown = 0
      for _ in out:gmatch("\n  %-%-[%w-]+") do shown = shown + 1 end
      assert.are.equal(n, shown)
    end)
  end)

  describe("bad usage exits 2 with a message", function()
    local cases = {
      { { "--adress", "x" }, "unknown option --adress" },
      { { "--address" }, "--address needs a value" },
      { {}, "give --preset or --address" },
      { { "--address", "x", "--port", "abc" }, "--port must be an integer" },
      { { "--address", "x", "--password", "hunter2" }, "never taken from the command line" },
      { { "--address", "x", "--password-env", "SMTP_TEST_UNSET_VARIABLE" }, "SMTP_TEST_UNSET_VARIABLE" },
      { { "--address", "x", "--send", "--to", "a@example.test" }, "--send needs --from and --to" },
      { { "--address", "x", "--to", "a@example.test" }, "needs both --from and --to" },
      { { "--address", "x", "--subject", "s" }, "--subject needs --send" },
      { { "--address", "x", "--tls", "bogus" }, 'tls.protocol must be one of "none", "ssl", "tls", got "bogus"' },
      { { "--preset", "nosuch" }, "preset must be one of" },
      { { "--address", "x", "--proxy", "socks5:/nowhere" }, "--proxy must be TYPE://[USER@]HOST:PORT" },
      { { "--address", "x", "--insecure=yes" }, "--insecure takes no value" },
      { { "--address", "x", "--helo", "a", "--helo", "b" }, "--helo given twice" },
      { { "--address", "x", "--tls", "none", "--username", "u", "--password-env", "PATH" },
        "credentials are never sent without TLS" },
    }
    for _, case in ipairs(cases) do
      it(table.concat(case[1], " "), function()
        local code, out, err = run(case[1])
        assert.are.equal(2, code, out .. err)
        has(err, case[2])
        assert.are.equal("", out)
        assert.falsy(err:find("stack traceback", 1, true), err)
        assert.falsy(err:find("hunter2", 1, true), err)
      end)
    end
  end)

  describe("a test", function()
    it("that works prints a line per stage and exits 0", function()
      with_server({ banner = "220 mx.cli.test ESMTP" }, function(srv)
        local code, out = run(plain_args(srv))
        assert.are.equal(0, code, out)
        has(out, "smtp.connection (" .. srv.host .. ":" .. srv.port .. ", no TLS, anonymous)",
          "\226\156\147 connect", "\226\156\147 greeting", "mx.cli.test ESMTP", "\226\156\147 ehlo",
          "Extensions: PIPELINING", "\226\156\147 the connection works")
        assert.falsy(out:find("\226\156\151", 1, true), out)
      end)
    end)

    it("that fails exits 1 with the stage, the error and the hint", function()
      local port = server.free_port()
      local code, out = run { "--address", "127.0.0.1", "--port", tostring(port), "--tls", "none" }
      assert.are.equal(1, code, out)
      has(out, "\226\156\151 connect", "Error: connect at connect: cannot connect to 127.0.0.1 port " .. port,
        "Hint: nothing listens on port " .. port)
    end)

    it("marks stages OK and FAIL where the terminal is not UTF-8", function()
      with_server({}, function(srv)
        local code, out = run(plain_args(srv), { env = { LANG = "C" } })
        assert.are.equal(0, code)
        has(out, "OK   connect", "OK   the connection works")
        assert.falsy(out:find("\226\156", 1, true), out)
        code, out = run(plain_args(srv), { env = { LANG = "C", LC_ALL = "en_US.UTF-8" } })
        assert.are.equal(0, code)
        has(out, "\226\156\147 connect")
        code, out = run({ "--address", "127.0.0.1", "--port", tostring(server.free_port()), "--tls", "none" },
          { env = { LANG = "POSIX" } })
        assert.are.equal(1, code)
        has(out, "FAIL connect")
      end)
    end)

    it("over STARTTLS with a password from the environment, against Postfix: TLS details, AUTH", function()
      local code, out, err = run({ "--address", "localhost", "--port", tostring(pf.ports.starttls), "--cafile", ca,
        "--username", alice.username, "--password-env", "SMTP_TEST_CLI_PASSWORD" },
        { env = { SMTP_TEST_CLI_PASSWORD = alice.password } })
      assert.are.equal(0, code, out .. err)
      has(out, "as alice)", "\226\156\147 tls", "TLS: TLSv1.", "STARTTLS", "certificate verified",
        "issuer    CN=smtp test CA", "names     localhost", "\226\156\147 auth", "AUTH: ", "Server: mx.example.test")
      assert.falsy((out .. err):find(alice.password, 1, true))
    end)

    it("never shows the password, with --trace either, and shows the redacted dialogue on stderr", function()
      local code, out, err = run({ "--address", "localhost", "--port", tostring(pf.ports.starttls), "--cafile", ca,
        "--username", alice.username, "--password-env", "SMTP_TEST_CLI_PASSWORD", "--trace" },
        { env = { SMTP_TEST_CLI_PASSWORD = alice.password } })
      assert.are.equal(0, code, out .. err)
      has(err, "S: 220 mx.example.test", "C: EHLO ", "C: STARTTLS", "C: AUTH ", "[redacted]", "C: QUIT")
      assert.falsy((out .. err):find(alice.password, 1, true), "the password shows")
      -- Nor its base64 (AUTH PLAIN's initial response carries it).
      assert.falsy(err:find("YWxpY2", 1, true), err)
    end)

    it("reads the password from a prompt (here a pipe: no terminal, no echo to turn off)", function()
      local code, out, err = run({ "--address", "localhost", "--port", tostring(pf.ports.starttls), "--cafile", ca,
        "--username", alice.username, "--password-prompt" }, { stdin = alice.password .. "\n" })
      assert.are.equal(0, code, out .. err)
      has(err, "Password for alice: ")
      has(out, "\226\156\147 auth")
      assert.falsy((out .. err):find(alice.password, 1, true))
    end)

    it("reports a wrong password with exit 1 and a hint", function()
      local code, out = run({ "--address", "localhost", "--port", tostring(pf.ports.starttls), "--cafile", ca,
        "--username", alice.username, "--password-env", "SMTP_TEST_CLI_PASSWORD" },
        { env = { SMTP_TEST_CLI_PASSWORD = "not-" .. alice.password } })
      assert.are.equal(1, code, out)
      has(out, "\226\156\151 auth", "Error: auth at auth: 535", "Hint: ", "auth.password")
    end)

    it("with --insecure says the certificate was not verified", function()
      local code, out = run { "--address", "localhost", "--port", tostring(pf.ports.selfsigned), "--mode", "implicit",
        "--insecure", "--timeout", "5" }
      assert.are.equal(0, code, out)
      has(out, "implicit TLS", "NOT VERIFIED (--insecure)")
    end)

    it("goes through a proxy", function()
      local px = server.proxies()
      local code, out = run { "--address", "127.0.0.1", "--port", tostring(pf.port), "--tls", "none",
        "--proxy", "socks5://" .. px.host .. ":" .. px.ports.socks, "--timeout", "5" }
      assert.are.equal(0, code, out)
      has(out, "Proxy: socks5 " .. px.host .. ":" .. px.ports.socks)
    end)

    it("tests an envelope with --from and --to: accepted exits 0, refused exits 1", function()
      with_server({ replies = { ["RCPT:nobody@example.test"] = "550 5.1.1 No such user" } }, function(srv)
        local code, out = run(plain_args(srv, "--from", "me@example.test", "--to", "rcpt@example.test"))
        assert.are.equal(0, code, out)
        has(out, "accepted rcpt@example.test")
        code, out = run(plain_args(srv, "--from", "me@example.test", "--to", "rcpt@example.test",
          "--to", "nobody@example.test"))
        assert.are.equal(1, code, out)
        has(out, "nobody@example.test", "550", "Hint: ")
        assert.are.equal(0, #srv:messages())
      end)
    end)
  end)

  describe("--json", function()
    it("prints the report as JSON that parses", function()
      with_server({}, function(srv)
        local code, out = run(plain_args(srv, "--json"))
        assert.are.equal(0, code, out)
        local doc = json.decode(out)
        assert.is_true(doc.ok)
        assert.is_nil(doc.error)
        assert.truthy(doc.connection:find(srv.host, 1, true))
        assert.are.equal(srv.port, doc.report.port)
        assert.are.equal("127.0.0.1", doc.report.resolved)
        assert.is_table(doc.report.ehlo.extensions)
        assert.is_number(doc.report.timings.total)
        if doc.report.stages then
          assert.are.equal("connect", doc.report.stages[1].name == "dns" and doc.report.stages[2].name
            or doc.report.stages[1].name)
          for _, st in ipairs(doc.report.stages) do assert.is_true(st.ok) end
        end
      end)
    end)

    it("prints the error and the report so far as JSON, exit 1", function()
      local port = server.free_port()
      local code, out = run { "--address", "127.0.0.1", "--port", tostring(port), "--tls", "none", "--json" }
      assert.are.equal(1, code, out)
      local doc = json.decode(out)
      assert.is_false(doc.ok)
      assert.are.equal("connect", doc.error.kind)
      assert.are.equal("connect", doc.error.stage)
      assert.is_false(doc.error.transient)
      assert.truthy(doc.error.hint:find("nothing listens", 1, true))
      assert.are.equal(port, doc.report.port)
    end)

    it("over TLS and AUTH against Postfix, with --trace on stderr and no password anywhere", function()
      local code, out, err = run({ "--address", "localhost", "--port", tostring(pf.ports.starttls), "--cafile", ca,
        "--username", alice.username, "--password-env", "SMTP_TEST_CLI_PASSWORD", "--json", "--trace" },
        { env = { SMTP_TEST_CLI_PASSWORD = alice.password } })
      assert.are.equal(0, code, out .. err)
      local doc = json.decode(out)
      assert.is_true(doc.tls ~= nil or doc.report.tls ~= nil)
      assert.are.equal("CN=smtp test CA, O=smtp tests", doc.report.tls.certificate.issuer)
      assert.is_true(doc.report.tls.verified)
      assert.is_string(doc.report.auth.mechanism)
      has(err, "C: AUTH ")
      assert.falsy((out .. err):find(alice.password, 1, true))
    end)
  end)

  describe("--send", function()
    it("sends a message, prints the receipt and exits 0", function()
      with_server({}, function(srv)
        local code, out = run(plain_args(srv, "--send", "--from", "me@example.test", "--to", "a@example.test",
          "--to", "b@example.test", "--subject", "cli test", "--text", "Hello from smtp-test."))
        assert.are.equal(0, code, out)
        has(out, "sent: 250", "Queue id: ", "accepted a@example.test", "accepted b@example.test", "Message-ID: <")
        local m = srv:messages()
        assert.are.equal(1, #m)
        assert.are.same({ "a@example.test", "b@example.test" }, m[1].rcpt_tos)
        has(m[1].data, "Subject: cli test", "Hello from smtp-test.")
      end)
    end)

    it("through Postfix, as JSON", function()
      local tag = "cli-" .. os.time() .. "-" .. math.random(1e9)
      local code, out = run { "--address", pf.host, "--port", tostring(pf.port), "--tls", "none", "--send",
        "--from", "sender@example.test", "--to", "rcpt@example.test", "--subject", tag, "--json" }
      assert.are.equal(0, code, out)
      local doc = json.decode(out)
      assert.is_true(doc.ok)
      assert.are.equal("rcpt@example.test", doc.receipt.accepted[1].address)
      assert.is_string(doc.receipt.queue_id)
      has(server.postfix_wait(tag), "Subject: " .. tag)
    end)

    it("that is refused exits 1 with the hint", function()
      local code, out = run { "--address", pf.host, "--port", tostring(pf.port), "--tls", "none", "--send",
        "--from", "sender@example.test", "--to", "someone@elsewhere.invalid" }
      assert.are.equal(1, code, out)
      has(out, "Error: rejected at rcpt: 554 5.7.1", "Relay access denied", "Hint: ", "relay")
    end)

    it("with --attach: attached, or refused by the library as a bad setting (exit 2)", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "wb"))
      f:write("attached text\n")
      f:close()
      with_server({}, function(srv)
        local code, out, err = run(plain_args(srv, "--send", "--from", "me@example.test", "--to", "a@example.test",
          "--attach", path))
        os.remove(path)
        if code == 0 then
          has(srv:messages()[1].data, path:match("[^/]+$"))
        else
          assert.are.equal(2, code, out .. err)
          has(err, "attachments")
          assert.are.equal(0, #srv:messages())
        end
      end)
    end)
  end)
end)
