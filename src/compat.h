/*
 * compat.h -- every Lua-version difference, in one place (5.1/LuaJIT..5.4).
 */
#ifndef SMTP_COMPAT_H
#define SMTP_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
/* LuaJIT 2.1 has some of these already. */
#ifndef luaL_newlib
#define luaL_newlib(L, l) (lua_newtable(L), luaL_register(L, NULL, l))
#endif
#define luaL_setfuncs(L, l, n) luaL_register(L, NULL, l)
#define luaL_setmetatable(L, tname) (luaL_getmetatable(L, tname), lua_setmetatable(L, -2))
#endif

#if LUA_VERSION_NUM < 504
#define compat_newuserdata(L, size) lua_newuserdata(L, size)
#else
#define compat_newuserdata(L, size) lua_newuserdatauv(L, size, 0)
#endif

/* The module is built with -fvisibility=hidden: only luaopen_* is public. */
#if defined(__GNUC__)
#define SMTP_EXPORT __attribute__((visibility("default")))
#else
#define SMTP_EXPORT
#endif

#endif
