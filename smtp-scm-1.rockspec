rockspec_format = "3.0"
package = "smtp"
version = "scm-1"
source = {
  url = "git+https://example.invalid/smtp.git",
}
description = {
  summary = "An SMTP client for Lua: describe a connection once, test it, send through it",
  detailed = [[
A sans-IO SMTP engine in C with a Lua API: connection settings as in a mail
client's dialog, a diagnosing test(), streamed messages, clear errors.]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1, < 5.5",
}
external_dependencies = {
  MBEDTLS = { header = "mbedtls/ssl.h", library = "mbedtls" },
}
build = {
  type = "builtin",
  modules = {
    smtp = "lua/smtp/init.lua",
    ["smtp.options"] = "lua/smtp/options.lua",
    ["smtp.presets"] = "lua/smtp/presets.lua",
    ["smtp.message"] = "lua/smtp/message.lua",
    ["smtp.session"] = "lua/smtp/session.lua",
    ["smtp.errors"] = "lua/smtp/errors.lua",
    ["smtp.address"] = "lua/smtp/address.lua",
    ["smtp.load"] = "lua/smtp/load.lua",
    ["smtp.json"] = "lua/smtp/json.lua",
    ["smtp.transport"] = "lua/smtp/transport/init.lua",
    ["smtp.transport.builtin"] = "lua/smtp/transport/builtin.lua",
    ["smtp.transport.ngx"] = "lua/smtp/transport/ngx.lua",
    ["smtp.transport.luasocket"] = "lua/smtp/transport/luasocket.lua",
    ["smtp.core"] = {
      sources = { "src/lsmtp.c", "src/wire.c", "src/proxy.c", "src/tls.c", "src/sasl.c", "src/codec.c", "src/engine.c", "src/reply.c", "src/net.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      libraries = { "mbedtls", "mbedx509", "mbedcrypto" },
      incdirs = { "$(MBEDTLS_INCDIR)" },
      libdirs = { "$(MBEDTLS_LIBDIR)" },
    },
  },
  install = {
    bin = { ["smtp-test"] = "bin/smtp-test" },
  },
}
