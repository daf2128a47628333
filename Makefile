# smtp -- build, test and demo.  Every variable can be overridden:
#   make LUA=lua5.3 LUA_INC=/usr/include/lua5.3
#   make spec LUA=lua5.1 BUILD=build/lua5.1     # the specs under another interpreter
LUA ?= lua5.4
LUA_INC ?= $(if $(filter luajit%,$(LUA)),/usr/include/luajit-2.1,/usr/include/$(LUA))
CC ?= cc
CFLAGS ?= -O2 -g
WARN ?= -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes -Wpointer-arith -Wcast-qual
STD = -std=c99 -D_POSIX_C_SOURCE=200809L -fvisibility=hidden
BUILD ?= build
BUSTED ?= /usr/bin/busted
POSTFIX_DIR ?= $(CURDIR)/.test/postfix
POSTFIX_PORT ?= 2525

CORE_SRC = src/lsmtp.c src/wire.c src/proxy.c src/tls.c src/sasl.c src/engine.c src/reply.c src/net.c \
  src/codec.c
CORE_HDR = src/compat.h src/wire.h src/proxy.h src/tls.h src/sasl.h src/engine.h src/reply.h src/net.h \
  src/codec.h
MBEDTLS_INC ?=
MBEDTLS_LIBS ?= -lmbedtls -lmbedx509 -lmbedcrypto

.PHONY: all deps demo test spec check lint werror asan clean
all: $(BUILD)/smtp/core.so

$(BUILD)/smtp/core.so: $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS) -fPIC -shared -I$(LUA_INC) $(MBEDTLS_INC) -o $@ $(CORE_SRC) $(LDFLAGS) $(MBEDTLS_LIBS)

deps:
	@scripts/deps.sh

demo: deps all
	@scripts/demo.sh $(LUA)

# Ports of the test proxies: away from the usual ones, which a system
# service may hold.
PROXY_DIR ?= $(CURDIR)/.test/proxies
export SMTP_TEST_SOCKS_PORT ?= 21080
export SMTP_TEST_SOCKS_AUTH_PORT ?= 21081
export SMTP_TEST_SOCKS4A_PORT ?= 21082
export SMTP_TEST_HTTP_PORT ?= 28888
export SMTP_TEST_HTTP_AUTH_PORT ?= 28889

# nginx with the Lua module runs LuaJIT, so it loads a build of the module
# against LuaJIT's headers, without sanitizers (nginx is not instrumented).
LUAJIT_INC ?= /usr/include/luajit-2.1
NGX_CFLAGS ?= -O2 -g
NGINX_DIR ?= $(CURDIR)/.test/nginx
NGINX_PORT ?= 28180

$(BUILD)/luajit/smtp/core.so: $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(NGX_CFLAGS) -fPIC -shared -I$(LUAJIT_INC) $(MBEDTLS_INC) -o $@ $(CORE_SRC) $(MBEDTLS_LIBS)

# The interpreters the specs run under: $(LUA) with the module in $(BUILD);
# each other one with its own build in $(BUILD)/<interpreter>.  make test
# runs all of TEST_LUAS, with one start of the servers for all of them.
TEST_LUAS ?= lua5.4 lua5.3 lua5.1 luajit
SPEC_LUAS ?= $(LUA)
spec_build = $(if $(filter $(LUA),$(1)),$(BUILD),$(BUILD)/$(1))
spec_inc = $(if $(filter luajit%,$(1)),$(LUAJIT_INC),/usr/include/$(1))
SPEC_SERVERS_ENV = SMTP_TEST_POSTFIX_DIR=$(POSTFIX_DIR) SMTP_TEST_POSTFIX_PORT=$(POSTFIX_PORT) \
  SMTP_TEST_PROXY_DIR=$(PROXY_DIR) SMTP_TEST_NGINX_DIR=$(NGINX_DIR) SMTP_TEST_NGINX_PORT=$(NGINX_PORT)

# The specs need the private Postfix instance, the proxies and nginx; they
# are stopped whatever happens.
spec: all $(BUILD)/luajit/smtp/core.so
	@$(foreach lua,$(filter-out $(LUA),$(SPEC_LUAS)),$(MAKE) --no-print-directory LUA=$(lua) \
	  LUA_INC=$(call spec_inc,$(lua)) BUILD=$(call spec_build,$(lua)) all &&) true
	@spec/support/postfix.sh start $(POSTFIX_DIR) $(POSTFIX_PORT) >/dev/null
	@spec/support/proxies.sh start $(PROXY_DIR) >/dev/null || \
	  { spec/support/postfix.sh stop $(POSTFIX_DIR) >/dev/null; exit 1; }
	@SMTP_TEST_POSTFIX_PORT=$(POSTFIX_PORT) \
	  spec/support/nginx.sh start $(NGINX_DIR) $(NGINX_PORT) $(CURDIR)/$(BUILD)/luajit >/dev/null || \
	  { spec/support/proxies.sh stop $(PROXY_DIR) >/dev/null; \
	    spec/support/postfix.sh stop $(POSTFIX_DIR) >/dev/null; exit 1; }
	@rc=0; summary=""; \
	  for lua in $(SPEC_LUAS); do \
	    case " $(LUA) " in *" $$lua "*) build=$(BUILD) ;; *) build=$(BUILD)/$$lua ;; esac; \
	    [ "$(words $(SPEC_LUAS))" = 1 ] || echo "== specs under $$lua"; \
	    if $(SPEC_SERVERS_ENV) $(SPEC_ENV) $$lua $(BUSTED) --cpath="$(CURDIR)/$$build/?.so" $(SPEC_ARGS); \
	    then summary="$$summary $$lua:ok"; else rc=1; summary="$$summary $$lua:FAILED"; fi; \
	  done; \
	  spec/support/nginx.sh stop $(NGINX_DIR) >/dev/null; \
	  spec/support/proxies.sh stop $(PROXY_DIR) >/dev/null; \
	  spec/support/postfix.sh stop $(POSTFIX_DIR) >/dev/null; \
	  [ "$(words $(SPEC_LUAS))" = 1 ] || echo "== specs:$$summary"; exit $$rc

test: deps
	@$(MAKE) --no-print-directory spec SPEC_LUAS="$(TEST_LUAS)"

lint:
	luacheck -q lua bin spec examples

werror:
	$(MAKE) --no-print-directory -B BUILD=$(BUILD)/werror WARN="$(WARN) -Werror" all

# The specs again, with the module under AddressSanitizer and UBSan.  Lua
# itself is not instrumented, so the runtime is preloaded and leak checking
# is left to the C tests, which own every allocation they make.
ASAN_LIBS = $(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)
asan:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" \
	  SPEC_ENV='LD_PRELOAD="$(ASAN_LIBS)" ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1' spec

check: deps lint werror ctest asan fuzz-smoke

clean:
	rm -rf $(BUILD) .test

-include mk/c.mk
-include mk/bench.mk
