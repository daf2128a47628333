-- common.lua -- what every Lua client of the benchmark shares: the same
-- message bodies, the same test data, and the process's memory figures.

local M = {}

-- n octets of text in lines of 64 octets (63 letters and the line end),
-- so that every client sends the same message; eol "\n" (default) or "\r\n".
function M.body(n, eol)
  eol = eol or "\n"
  local line = ("abcdefghijklmnopqrstuvwxyz"):rep(3):sub(1, 64 - #eol) .. eol
  local full = math.floor(n / 64)
  return line:rep(full) .. line:sub(1, n - 64 * full)
end

-- A field of /proc/self/status in KiB ("VmRSS", "VmHWM").
function M.vm(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

-- The whole content of a file.
function M.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- n octets of text (for the encoders): lines of 40 to 76 characters of
-- words with CRLF line ends, some ending in a space, a few starting with
-- "." and a little UTF-8 -- 1 MiB of it made once, then repeated.
function M.text(n)
  local words = { "the", "quarterly", "report", "is", "attached,", "please", "review", "before",
    "Friday.", "Regards", "x=1", "caf\195\169", "and", "of", "to", "meeting", "notes", "(draft)",
    "2024-05-01", "Jos\195\169" }
  local seed = 12345
  local function rnd(m)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % m
  end
  local lines, size = {}, 0
  while size < 1048576 do
    local line, limit = {}, 40 + rnd(37)
    local len = 0
    if rnd(50) == 0 then line[1] = "."; len = 1 end
    while len < limit do
      local w = words[rnd(#words) + 1]
      line[#line + 1] = w
      len = len + #w + 1
    end
    local text = table.concat(line, " ") .. (rnd(20) == 0 and " " or "") .. "\r\n"
    lines[#lines + 1] = text
    size = size + #text
  end
  local mib = table.concat(lines)
  local s = mib:rep(math.floor(n / #mib) + 1)
  return s:sub(1, n)
end

return M
