-- A small JSON encoder (Lua 5.1-5.4) for smtp-test --json: reports,
-- receipts and errors are plain tables of strings, numbers and booleans.
--
-- A table is an array when its keys are exactly 1..n; an empty table is
-- an object unless json.array(t) marked it.  Keys are sorted, so the same
-- value always gives the same text.  Strings are UTF-8; a byte that is not
-- part of valid UTF-8 is written as the code point of the same number
-- (Latin-1), so the output is always valid JSON.  Functions, userdata and
-- threads are left out of objects (and are null in arrays); a table met
-- twice on the way down (a cycle) is an error.

local json = {}

local arrays = setmetatable({}, { __mode = "k" })

-- Mark t as an array, so that it encodes as [] when empty.
function json.array(t)
  arrays[t] = true
  return t
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- The length of the valid UTF-8 sequence at s[i], or nil.
local function utf8_len(s, i)
  local c = s:byte(i)
  local n, min
  if c < 0x80 then return 1
  elseif c >= 0xC2 and c <= 0xDF then n, min = 2, 0x80
  elseif c >= 0xE0 and c <= 0xEF then n, min = 3, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then n, min = 4, 0x10000
  else return nil end
  local cp = c % (2 ^ (7 - n))
  for j = i + 1, i + n - 1 do
    local b = s:byte(j)
    if not b or b < 0x80 or b > 0xBF then return nil end
    cp = cp * 64 + b % 64
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
  return n
end

local function latin1(c)
  local b = c:byte()
  return string.char(0xC0 + math.floor(b / 64), 0x80 + b % 64)
end

local function encode_string(s)
  local out, i = {}, 1
  while i <= #s do
    local n = utf8_len(s, i)
    if n then
      out[#out + 1] = s:sub(i, i + n - 1)
      i = i + n
    else
      out[#out + 1] = latin1(s:sub(i, i))
      i = i + 1
    end
  end
  return '"' .. table.concat(out):gsub('[%c"\\]', function(c)
    return ESCAPES[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_number(v)
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  if v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then return string.format("%.0f", v) end
  return string.format("%.14g", v)
end

local SKIP = { ["function"] = true, userdata = true, thread = true }

local encode

local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return arrays[t] == true end
  return n == #t
end

function encode(v, seen)
  local kind = type(v)
  if kind == "string" then return encode_string(v) end
  if kind == "number" then return encode_number(v) end
  if kind == "boolean" then return tostring(v) end
  if kind ~= "table" then return "null" end
  if seen[v] then error("json: a table contains itself", 0) end
  seen[v] = true
  local parts = {}
  if is_array(v) then
    for i = 1, #v do parts[i] = encode(v[i], seen) end
    seen[v] = nil
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for k, x in pairs(v) do
    if not SKIP[type(x)] then keys[#keys + 1] = tostring(k) end
  end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local x = v[k]
    if x == nil then x = v[tonumber(k)] end
    parts[i] = encode_string(k) .. ":" .. encode(x, seen)
  end
  seen[v] = nil
  return "{" .. table.concat(parts, ",") .. "}"
end

function json.encode(v)
  return encode(v, {})
end

return json
