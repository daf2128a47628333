# mk/bench.mk -- `make bench`: ours against the peers on loopback, issue 10's
# figures in one table, written to bench/results.md (see bench/run.sh).  Not
# part of `make test`: it times things, and the machine's load shows in it.
#
#   make bench                        everything (about 3 minutes)
#   make bench BENCH_ONLY=plain       only the figures whose key matches (a Lua pattern)
#   make bench BENCH_REPS=7 BENCH_SECONDS=2
#   make bench-profile                where the time goes for 1 KiB messages (bench/profile.sh)
#
# The module is built for the benchmark in its own directory, with the
# usual CFLAGS (-O2 -g).

BENCH_BUILD ?= $(BUILD)/bench-$(LUA)
BENCH_CC_FLAGS ?= -std=c99 -O2 -g -Wall -Wextra
BENCH_ENV = BENCH_LUA=$(LUA) $(if $(BENCH_ONLY),BENCH_ONLY='$(BENCH_ONLY)') \
  $(if $(BENCH_REPS),BENCH_REPS=$(BENCH_REPS)) $(if $(BENCH_SECONDS),BENCH_SECONDS=$(BENCH_SECONDS)) \
  $(if $(BENCH_PORT),BENCH_PORT=$(BENCH_PORT)) $(if $(BENCH_OUT),BENCH_OUT=$(BENCH_OUT))
BENCH_BINS = $(BENCH_BUILD)/bench/pipe_client $(BENCH_BUILD)/bench/codec_bench $(BENCH_BUILD)/bench/sizes

.PHONY: bench bench-deps bench-profile

# What the benchmark needs besides the test dependencies: the peers
# (LuaSocket, LuaSec, copas), the servers, and for the profile perf,
# strace and valgrind.
BENCH_PKGS = lua5.4 luajit2 libluajit2-5.1-dev lua-socket lua-sec lua-copas stunnel4 postfix openssl python3 linux-perf strace valgrind
bench-deps:
	@missing=""; for p in $(BENCH_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" != 0 ]; then echo "missing packages; run: sudo apt-get install -y$$missing" >&2; exit 1; fi; \
	echo "installing:$$missing" >&2; \
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -q --no-install-recommends $$missing >/dev/null; }

$(BENCH_BUILD)/smtp/core.so $(BENCH_BUILD)/luajit/smtp/core.so: $(CORE_SRC) $(CORE_HDR)
	@$(MAKE) --no-print-directory BUILD=$(BENCH_BUILD) $@

$(BENCH_BUILD)/bench/pipe_client: bench/pipe_client.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CC_FLAGS) -o $@ $<

$(BENCH_BUILD)/bench/codec_bench: bench/codec_bench.c src/codec.c src/engine.c src/reply.c $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CC_FLAGS) -o $@ $(filter %.c,$^)

$(BENCH_BUILD)/bench/sizes: bench/sizes.c $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CC_FLAGS) $(MBEDTLS_INC) -o $@ $<

bench: bench-deps $(BENCH_BUILD)/smtp/core.so $(BENCH_BUILD)/luajit/smtp/core.so $(BENCH_BINS)
	@$(BENCH_ENV) bench/run.sh $(CURDIR) $(BENCH_BUILD)

bench-profile: bench-deps $(BENCH_BUILD)/smtp/core.so
	@$(BENCH_ENV) bench/run.sh $(CURDIR) $(BENCH_BUILD) $(CURDIR)/bench/profile.sh
