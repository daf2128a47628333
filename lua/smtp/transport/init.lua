-- Which transport a connection uses: the one named or given; else, inside
-- OpenResty, cosockets (smtp.transport.ngx, which checks the phase when a
-- session connects, not here: a connection may be described in
-- init_by_lua and used in a content handler); else the built-in socket.
local M = {}

-- Transports that ship with smtp, by name.
local named = {
  builtin = "smtp.transport.builtin",
  ngx = "smtp.transport.ngx",
  luasocket = "smtp.transport.luasocket",
}

local function in_openresty()
  local ngx = rawget(_G, "ngx")
  return type(ngx) == "table" and type(ngx.get_phase) == "function"
end

-- t: nil, a name, or a table with a connect function.  Returns the
-- transport, or nil and what was expected.
function M.resolve(t)
  if t == nil then return require(in_openresty() and named.ngx or named.builtin) end
  if type(t) == "string" and named[t] then return require(named[t]) end
  if type(t) == "table" and type(t.connect) == "function" then return t end
  local names = {}
  for name in pairs(named) do names[#names + 1] = string.format("%q", name) end
  table.sort(names)
  return nil, "unset, " .. table.concat(names, ", ") .. ", or a table with a connect function"
end

return M
