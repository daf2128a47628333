-- luaprof.lua -- where a Lua program spends its CPU time, by function: a
-- count hook reads the CPU clock every BENCH_PROF_EVERY (200) VM
-- instructions and charges the time since the last reading to the function
-- running (self) and to every function on the stack (total).  Time in C
-- functions (string.gsub, the smtp.core methods) goes to the Lua function
-- that called them; time blocked in the kernel is not CPU time and is not
-- counted.  The hook's own cost is left out.
--
--   lua5.4 bench/luaprof.lua SCRIPT ARGS...     (prints after the script ends)

local every = tonumber(os.getenv("BENCH_PROF_EVERY") or "200")
local self_t, total_t = {}, {}
local clock = os.clock
local getinfo = debug.getinfo
local names = {}

local function key(info)
  local k = names[info.func]
  if not k then
    k = string.format("%s:%d %s", info.short_src, info.linedefined, info.name or "?")
    if info.what == "C" then k = "[C] " .. (info.name or "?") end
    names[info.func] = k
  end
  return k
end

local last = clock()
local grand = 0
local function hook()
  local t = clock()
  local dt = t - last
  grand = grand + dt
  local info = getinfo(2, "Snf")
  if info then
    local k = key(info)
    self_t[k] = (self_t[k] or 0) + dt
  end
  local seen = {}
  for level = 2, 60 do
    local i = getinfo(level, "Snf")
    if not i then break end
    local k = key(i)
    if not seen[k] then
      seen[k] = true
      total_t[k] = (total_t[k] or 0) + dt
    end
  end
  last = clock()
end

local script = table.remove(arg, 1)
local chunk = assert(loadfile(script))
debug.sethook(hook, "", every)
local ok, err = pcall(chunk, table.unpack(arg))
debug.sethook()
if not ok then io.stderr:write(tostring(err), "\n") end

local function dump(t, title)
  local list = {}
  for k, v in pairs(t) do list[#list + 1] = { k, v } end
  table.sort(list, function(a, b) return a[2] > b[2] end)
  print(title)
  for i = 1, math.min(25, #list) do
    print(string.format("  %5.1f%%  %s", 100 * list[i][2] / grand, list[i][1]))
  end
end
print(string.format("luaprof: %.3f s of CPU sampled", grand))
dump(self_t, "self (the function running, with the C functions it called):")
dump(total_t, "total (the function and everything it called):")
