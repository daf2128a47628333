-- Just enough JSON for the spec helpers (Lua 5.1-5.4): encode a script for
-- smtpd.py, decode the records it writes.
--
-- Decoding keeps bytes exact: smtpd.py writes received bytes that are not
-- UTF-8 as lone low surrogates \udc80-\udcff (Python's "surrogateescape"),
-- and those decode back to the single byte they stand for. null decodes to
-- nil.

local json = {}

local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/",
  b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function utf8_char(cp)
  if cp < 0x80 then
    return string.char(cp)
  elseif cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 0x1000),
      0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return string.char(0xF0 + math.floor(cp / 0x40000),
    0x80 + math.floor(cp / 0x1000) % 0x40,
    0x80 + math.floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local function fail(s, pos, what)
  error(string.format("json: %s at byte %d of %q", what, pos, s:sub(1, 200)), 0)
end

local decode_value

local function skip(s, pos)
  return s:find("[^ \t\r\n]", pos) or #s + 1
end

local function decode_string(s, pos)
  local out, i = {}, pos + 1
  while true do
    local j = s:find('["\\]', i)
    if not j then fail(s, pos, "unterminated string") end
    out[#out + 1] = s:sub(i, j - 1)
    if s:sub(j, j) == '"' then
      return table.concat(out), j + 1
    end
    local c = s:sub(j + 1, j + 1)
    if c == "u" then
      local cp = tonumber(s:sub(j + 2, j + 5), 16)
      if not cp then fail(s, j, "bad \\u escape") end
      i = j + 6
      local low = s:match("^\\u([dD][c-fC-F]%x%x)", i)
      if cp >= 0xD800 and cp < 0xDC00 and low then
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(low, 16) - 0xDC00)
        out[#out + 1] = utf8_char(cp)
        i = i + 6
      elseif cp >= 0xDC80 and cp <= 0xDCFF then
        out[#out + 1] = string.char(cp - 0xDC00)
      else
        out[#out + 1] = utf8_char(cp)
      end
    elseif escapes[c] then
      out[#out + 1] = escapes[c]
      i = j + 2
    else
      fail(s, j, "bad escape")
    end
  end
end

local function decode_list(s, pos, close, item)
  local result, n = {}, 0
  pos = skip(s, pos + 1)
  if s:sub(pos, pos) == close then return result, pos + 1 end
  while true do
    n = n + 1
    pos = item(s, pos, result, n)
    pos = skip(s, pos)
    local c = s:sub(pos, pos)
    if c == close then return result, pos + 1 end
    if c ~= "," then fail(s, pos, "expected ',' or '" .. close .. "'") end
    pos = skip(s, pos + 1)
  end
end

local function array_item(s, pos, result, n)
  result[n], pos = decode_value(s, pos)
  return pos
end

local function object_item(s, pos, result)
  if s:sub(pos, pos) ~= '"' then fail(s, pos, "expected a key") end
  local key
  key, pos = decode_string(s, pos)
  pos = skip(s, pos)
  if s:sub(pos, pos) ~= ":" then fail(s, pos, "expected ':'") end
  result[key], pos = decode_value(s, skip(s, pos + 1))
  return pos
end

local literals = { ["true"] = true, ["false"] = false }

function decode_value(s, pos)
  local c = s:sub(pos, pos)
  if c == "{" then return decode_list(s, pos, "}", object_item) end
  if c == "[" then return decode_list(s, pos, "]", array_item) end
  if c == '"' then return decode_string(s, pos) end
  local word = s:match("^%a+", pos)
  if word == "null" then return nil, pos + 4 end
  if literals[word] ~= nil then return literals[word], pos + #word end
  local number = s:match("^-?%d+%.?%d*", pos)
  if number then
    number = number .. (s:match("^[eE][-+]?%d+", pos + #number) or "")
    return tonumber(number), pos + #number
  end
  fail(s, pos, "unexpected character")
end

function json.decode(s)
  local value, pos = decode_value(s, skip(s, 1))
  if skip(s, pos) <= #s then fail(s, pos, "trailing garbage") end
  return value
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- A table is an array when its keys are exactly 1..#t; {} encodes as an
-- object, which smtpd.py treats like an empty list where it wants one.
local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n > 0 and n == #t
end

function json.encode(value)
  local kind = type(value)
  if kind == "string" then
    return encode_string(value)
  elseif kind == "number" then
    if value ~= value or value == math.huge or value == -math.huge then
      error("json: cannot encode " .. tostring(value), 2)
    end
    return string.format("%.17g", value)
  elseif kind == "boolean" then
    return tostring(value)
  elseif kind == "table" then
    local parts = {}
    if is_array(value) then
      for i = 1, #value do parts[i] = json.encode(value[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for k, v in pairs(value) do
      if type(k) ~= "string" then
        error("json: object keys must be strings, got " .. type(k), 2)
      end
      parts[#parts + 1] = encode_string(k) .. ":" .. json.encode(v)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("json: cannot encode a " .. kind, 2)
end

return json
