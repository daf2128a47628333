std = "max"
max_line_length = 120
files["spec"] = { std = "+busted" }
-- Run inside nginx (OpenResty): the ngx API.
files["spec/support/ngx_app.lua"] = { std = "+ngx_lua" }
include_files = { "**/*.lua", "bin/*" }
