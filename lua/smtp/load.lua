-- smtp.load(path): connections defined in a Lua file.
--
--   -- connections.lua
--   return {
--     office = { preset = "office365",
--                auth = { username = "me@example.com", password = os.getenv "SMTP_PASSWORD" } },
--     relay  = { address = "mail.example.com", port = 25, tls = { protocol = "none" } },
--   }
--
-- The file returns either a table name -> options or a list of options
-- (each with its name, or none).  It runs in a sandbox: string, table and
-- math, the basic functions that cannot reach outside (pairs, ipairs,
-- type, tostring, tonumber, select, next, error, assert, pcall, unpack)
-- and os.getenv; no io, no require, no load or dofile, no other os.
-- Each definition becomes smtp.connection(options); a name defined twice
-- (in this file, in another file loaded before, or by smtp.connection) is
-- an error that names both places.  Nothing is registered unless every
-- definition of the file is good.

local M = {}

-- Where each loaded connection came from, by name: "file:line (key)".
local origins = setmetatable({}, { __mode = "v" })
local origin_of = setmetatable({}, { __mode = "k" })

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function sandbox()
  local str = copy(string)
  str.dump = nil
  return {
    string = str, table = copy(table), math = copy(math),
    os = { getenv = os.getenv },
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, error = error, assert = assert, pcall = pcall,
    unpack = table.unpack or unpack, -- luacheck: ignore 143 (unpack is Lua 5.1's)
    _VERSION = _VERSION,
  }
end

local function fail(msg)
  error("smtp.load: " .. msg, 0)
end

-- Run the file's text in the sandbox: its value, or raise with the file name.
local function run(path, source)
  if source:sub(1, 1) == "\27" then fail(path .. ": a precompiled chunk; give Lua source") end
  local env, chunkname = sandbox(), "@" .. path
  local chunk, err
  if setfenv then -- Lua 5.1, LuaJIT
    chunk, err = loadstring(source, chunkname) -- luacheck: ignore 143 (loadstring is Lua 5.1's)
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = load(source, chunkname, "t", env)
  end
  if not chunk then fail(err) end
  local ok, value = pcall(chunk)
  if not ok then
    value = tostring(value)
    fail(value:find(path, 1, true) and value or (path .. ": " .. value))
  end
  return value
end

-- The lines where definitions start, read off the text of a file that
-- returns a table constructor (`return { ... }`): for a table by name, the
-- line of each key of that constructor (`office = {`, `["office"] = {`);
-- for a list, the line of each `name = "..."` of its entries.  In order of
-- appearance, so a name given twice in one file finds both.  Strings and
-- comments are skipped; a file that builds its table some other way gets
-- no line numbers, only the key or position.
local function lines_of(source)
  local by_name, by_key = {}, {}
  local function add(list, name, line)
    list[name] = list[name] or {}
    local l = list[name]
    l[#l + 1] = line
  end
  local i, n, line, depth, top = 1, #source, 1, 0, nil
  local function skip_to(j)
    local _, newlines = source:sub(i, j - 1):gsub("\n", "")
    line = line + newlines
    i = j
  end
  while i <= n do
    local c = source:sub(i, i)
    local eq = source:match("^%-%-%[(=*)%[", i) or source:match("^%[(=*)%[", i)
    if eq then -- a long comment or string
      local close = source:find("]" .. eq .. "]", i, true)
      skip_to(close and close + #eq + 2 or n + 1)
    elseif source:sub(i, i + 1) == "--" then
      i = source:find("\n", i, true) or n + 1
    elseif c == '"' or c == "'" then
      local j = i + 1
      while j <= n and source:sub(j, j) ~= c do
        j = j + (source:sub(j, j) == "\\" and 2 or 1)
      end
      skip_to(j + 1)
    elseif c == "{" then
      depth = depth + 1
      i = i + 1
    elseif c == "}" then
      if top and depth == top then return by_name, by_key end
      depth = depth - 1
      i = i + 1
    elseif c:find("[%a_]") then
      local word = source:match("^[%w_]+", i)
      local after = i + #word
      if word == "return" and depth == 0 and source:find("^%s*{", after) then
        top = 1
      elseif top and depth == top and source:find("^%s*=%s*{", after) then
        add(by_key, word, line)
      elseif top and depth == top + 1 and word == "name" then
        local _, value = source:match("^%s*=%s*([\"'])(.-)%1", after)
        if value then add(by_name, value, line) end
      end
      i = after
    elseif c == "[" and top and depth == top then
      local _, key = source:match("^%[%s*([\"'])(.-)%1%s*%]%s*=%s*{", i)
      if key then add(by_key, key, line) end
      i = i + 1
    else
      if c == "\n" then line = line + 1 end
      i = i + 1
    end
  end
  return by_name, by_key
end

local function describe(path, line, where)
  return path .. (line and (":" .. line) or "") .. " (" .. where .. ")"
end

-- The definitions of the file's value, each { name, options, origin }.
local function definitions(path, source, value)
  if type(value) ~= "table" then
    fail(path .. ": the file must return a table of connections (name -> options, or a list), got " .. type(value))
  end
  local by_name, by_key = lines_of(source)
  local used, defs, n = {}, {}, 0
  local function next_line(list, name)
    used[list] = used[list] or {}
    local i = (used[list][name] or 0) + 1
    used[list][name] = i
    return list[name] and list[name][i]
  end
  for _ in pairs(value) do n = n + 1 end
  if n == #value then
    for i, o in ipairs(value) do
      if type(o) ~= "table" then fail(describe(path, nil, "entry " .. i) .. ": expected a table of options, got "
        .. type(o)) end
      local line = type(o.name) == "string" and next_line(by_name, o.name) or nil
      defs[i] = { name = o.name, options = o, origin = describe(path, line, "entry " .. i) }
    end
  else
    local names = {}
    for k in pairs(value) do
      if type(k) ~= "string" then
        fail(path .. ": the table mixes a list and names (key " .. tostring(k) .. "); use one or the other")
      end
      names[#names + 1] = k
    end
    table.sort(names)
    for _, k in ipairs(names) do
      local o = value[k]
      if type(o) ~= "table" then fail(describe(path, nil, k) .. ": expected a table of options, got " .. type(o)) end
      if o.name ~= nil and o.name ~= k then
        fail(describe(path, nil, k) .. ": its name is " .. tostring(o.name) .. "; leave name out, or use the same")
      end
      local lines = by_key[k] or {}
      if #lines > 1 then
        -- Lua keeps the last of two equal keys without a word: say it.
        fail(string.format("a connection named %q is defined twice: %s and %s", k,
          describe(path, lines[1], k), describe(path, lines[2], k)))
      end
      local def = copy(o)
      def.name = k
      defs[#defs + 1] = { name = k, options = def, origin = describe(path, lines[1], k) }
    end
  end
  return defs
end

local function read(path)
  if type(path) ~= "string" then error("smtp.load: expected a file name, got " .. type(path), 3) end
  local f, err = io.open(path, "rb")
  if not f then fail("cannot open " .. (err or path)) end
  local source = f:read("*a")
  f:close()
  return source
end

-- Create every connection the file defines; returns them as a list, in
-- the file's order (by name for a table by name).
function M.load(path)
  local smtp = require "smtp"
  local source = read(path)
  local defs = definitions(path, source, run(path, source))
  local seen = {}
  for _, d in ipairs(defs) do
    local name = d.name
    if name ~= nil then
      local earlier = seen[name] or (smtp.connections[name] and
        (origins[name] == smtp.connections[name] and origin_of[smtp.connections[name]]
          or "a connection made by smtp.connection"))
      if earlier then
        fail(string.format("a connection named %q is defined twice: %s and %s", tostring(name), earlier, d.origin))
      end
      seen[name] = d.origin
    end
  end
  local made = {}
  for i, d in ipairs(defs) do
    local ok, conn = pcall(smtp.connection, d.options)
    if not ok then
      for _, c in ipairs(made) do
        if c.name and smtp.connections[c.name] == c then smtp.connections[c.name] = nil end
      end
      local msg = tostring(conn):gsub("^[^:]*:%d+: ", "")
      error("smtp.load: " .. d.origin .. ": " .. msg, 2)
    end
    made[i] = conn
    if conn.name then
      origins[conn.name] = conn
      origin_of[conn] = d.origin
    end
  end
  return made
end

return M
