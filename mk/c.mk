# mk/c.mk -- tests and fuzz targets of the C core (src/reply.c, src/engine.c,
# and src/wire.c with its pipes: src/proxy.c, src/tls.c and src/sasl.c over
# mbedTLS), which build as plain C: no Lua, no sockets.  Included by the top
# Makefile; every variable can be overridden.
#
#   make ctest           the C tests under ASan+UBSan; last line "N passed, M failed"
#   make ctest-valgrind  the same tests built without sanitizers, under valgrind
#   make fuzz            each libFuzzer target for FUZZ_SECONDS
#   make fuzz-smoke      each libFuzzer target for FUZZ_SMOKE_SECONDS
#
# The TLS test and fuzz target link the system's mbedTLS; another one, e.g.
# the static 3.6 build in /opt (a separate BUILD keeps the objects apart):
#   make ctest BUILD=build/mbedtls-3.6 CTEST_MBEDTLS_INC=-I/opt/mbedtls-3.6/include \
#     CTEST_MBEDTLS_LIBS="/opt/mbedtls-3.6/lib/libmbedtls.a \
#       /opt/mbedtls-3.6/lib/libmbedx509.a /opt/mbedtls-3.6/lib/libmbedcrypto.a"

BUILD ?= build
CTEST_CC ?= $(CC)
CTEST_CFLAGS ?= -std=c99 -Wall -Wextra -Wshadow -Wmissing-prototypes -Werror -g
CTEST_SAN ?= -fsanitize=address,undefined -fno-sanitize-recover=all
VALGRIND ?= valgrind -q --error-exitcode=1 --leak-check=full
FUZZ_CC ?= clang
FUZZ_CFLAGS ?= -std=c99 -Wall -Wextra -Werror -g -O1 \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_ARGS ?=
CTEST_MBEDTLS_INC ?=
CTEST_MBEDTLS_LIBS ?= -lmbedtls -lmbedx509 -lmbedcrypto

CTEST_NAMES = test_reply test_engine test_proxy test_sasl test_wire test_codec
CTEST_BINS = $(CTEST_NAMES:%=$(BUILD)/ctest/%)
CTEST_PLAIN_BINS = $(CTEST_NAMES:%=$(BUILD)/ctest-plain/%)
FUZZ_NAMES = fuzz_reply fuzz_engine fuzz_proxy fuzz_sasl fuzz_wire fuzz_codec
FUZZ_BINS = $(FUZZ_NAMES:%=$(BUILD)/fuzz/%)

.PHONY: ctest ctest-valgrind fuzz fuzz-smoke

# What each binary is made of; the pattern rules below add the recipe.
WIRE_SRC = src/wire.c src/tls.c src/proxy.c src/sasl.c src/engine.c src/reply.c
$(BUILD)/ctest/test_reply $(BUILD)/ctest-plain/test_reply: \
  src/reply.c test/test_reply.c
$(BUILD)/ctest/test_engine $(BUILD)/ctest-plain/test_engine: \
  src/engine.c src/reply.c test/test_engine.c
$(BUILD)/ctest/test_proxy $(BUILD)/ctest-plain/test_proxy: \
  src/proxy.c test/test_proxy.c
$(BUILD)/ctest/test_sasl $(BUILD)/ctest-plain/test_sasl: \
  src/sasl.c test/test_sasl.c
$(BUILD)/ctest/test_wire $(BUILD)/ctest-plain/test_wire: \
  $(WIRE_SRC) test/test_wire.c test/certs.h
$(BUILD)/ctest/test_codec $(BUILD)/ctest-plain/test_codec: \
  src/codec.c test/test_codec.c
$(BUILD)/fuzz/fuzz_reply: src/reply.c fuzz/fuzz_reply.c
$(BUILD)/fuzz/fuzz_engine: src/engine.c src/reply.c fuzz/fuzz_engine.c
$(BUILD)/fuzz/fuzz_proxy: src/proxy.c fuzz/fuzz_proxy.c
$(BUILD)/fuzz/fuzz_sasl: src/sasl.c fuzz/fuzz_sasl.c
$(BUILD)/fuzz/fuzz_wire: $(WIRE_SRC) fuzz/fuzz_wire.c test/certs.h
$(BUILD)/fuzz/fuzz_codec: src/codec.c fuzz/fuzz_codec.c

# Every binary links mbedTLS: the pipes need it, and the others do not mind.
C_HDR = $(wildcard src/*.h) test/harness.h
$(BUILD)/ctest/%: $(C_HDR)
	@mkdir -p $(@D)
	$(CTEST_CC) $(CTEST_CFLAGS) $(CTEST_SAN) $(CTEST_MBEDTLS_INC) -o $@ $(filter %.c,$^) $(CTEST_MBEDTLS_LIBS)

$(BUILD)/ctest-plain/%: $(C_HDR)
	@mkdir -p $(@D)
	$(CTEST_CC) $(CTEST_CFLAGS) $(CTEST_MBEDTLS_INC) -o $@ $(filter %.c,$^) $(CTEST_MBEDTLS_LIBS)

$(BUILD)/fuzz/%: $(C_HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CTEST_MBEDTLS_INC) -o $@ $(filter %.c,$^) $(CTEST_MBEDTLS_LIBS)

# Run each test binary ($1 prefixes the command), show its report with its
# summary line named, and add the summaries up.  A binary that dies (a
# sanitizer or valgrind error) or exits non-zero counts as a failure even if
# its own line said otherwise.
define ctest_run
pass=0; fail=0; \
for t in $(2); do \
  $(1) $$t > $$t.log 2>&1; rc=$$?; \
  sed '$$d' $$t.log; last=$$(tail -n 1 $$t.log); \
  case "$$last" in \
    *" passed, "*" failed") set -- $$last; p=$$1; f=$$3 ;; \
    *) echo "$$last"; p=0; f=0 ;; \
  esac; \
  if [ $$rc -ne 0 ] && [ $$f -eq 0 ]; then f=1; fi; \
  echo "$${t##*/}: $$p passed, $$f failed"; \
  pass=$$((pass + p)); fail=$$((fail + f)); \
done; \
echo "$$pass passed, $$fail failed"; [ $$fail -eq 0 ]
endef

ctest: $(CTEST_BINS)
	@$(call ctest_run,,$(CTEST_BINS))

ctest-valgrind: $(CTEST_PLAIN_BINS)
	@$(call ctest_run,$(VALGRIND),$(CTEST_PLAIN_BINS))

# Seeds, so that a short run starts from whole dialogues rather than from
# nothing: replies for the parser, and for the engine records in the format
# fuzz/fuzz_engine.c describes (a length byte, then server bytes or body).
define fuzz_seed
mkdir -p $(BUILD)/fuzz/corpus/fuzz_reply $(BUILD)/fuzz/corpus/fuzz_engine; \
printf '250 2.1.0 ok\r\n' > $(BUILD)/fuzz/corpus/fuzz_reply/seed-1; \
printf '250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n221 x\n' \
  > $(BUILD)/fuzz/corpus/fuzz_reply/seed-2; \
printf '550-5.1.1 a\r\n550 5.1.1 b\r\n' > $(BUILD)/fuzz/corpus/fuzz_reply/seed-3; \
printf '\010220 mx\r\n\030250-mx\r\n250 PIPELINING\r\n\034250 a\r\n250 b\r\n250 c\r\n354 d\r\n\005hi\n.\n\200\007250 e\r\n\200\007221 f\r\n' \
  > $(BUILD)/fuzz/corpus/fuzz_engine/seed-1; \
printf '\010220 mx\r\n\007502 x\r\n\007250 y\r\n\107250 a\r\n\007250 b\r\n\007354 c\r\n\003.\r.\200\007250 e\r\n' \
  > $(BUILD)/fuzz/corpus/fuzz_engine/seed-2; \
mkdir -p $(BUILD)/fuzz/corpus/fuzz_proxy; \
printf '\002\001\005\000\005\000\000\001\177\000\000\001\000\031220 x\r\n' \
  > $(BUILD)/fuzz/corpus/fuzz_proxy/seed-socks5; \
$(fuzz_wire_seed)
endef

# fuzz_wire (see fuzz/fuzz_wire.c): live handshakes with an all-zero XOR
# mask (good sessions: implicit, bytewise, STARTTLS, client certificate),
# and raw server streams.
define fuzz_wire_seed
mkdir -p $(BUILD)/fuzz/corpus/fuzz_wire; \
for m in 001 003 021 101; do \
  { printf "\\$$m"; head -c 3000 /dev/zero; } > $(BUILD)/fuzz/corpus/fuzz_wire/seed-live-$$m; \
done; \
printf '\000220 plain ESMTP\r\n' > $(BUILD)/fuzz/corpus/fuzz_wire/seed-raw-1; \
printf '\000\026\003\003\000\004\002\000\000\000' > $(BUILD)/fuzz/corpus/fuzz_wire/seed-raw-2; \
printf '\020220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n\026\003\003\000\001\000' \
  > $(BUILD)/fuzz/corpus/fuzz_wire/seed-raw-3
endef

# Each target for $1 seconds; a finding stops the run and stays in
# $(BUILD)/fuzz/artifacts/ with the log beside it.
define fuzz_run
$(fuzz_seed); mkdir -p $(BUILD)/fuzz/artifacts; \
for f in $(FUZZ_BINS); do \
  n=$${f##*/}; echo "$$n: $(1) s"; mkdir -p $(BUILD)/fuzz/corpus/$$n; \
  $$f -max_total_time=$(1) -print_final_stats=1 \
    -artifact_prefix=$(BUILD)/fuzz/artifacts/$$n- $(FUZZ_ARGS) \
    $(BUILD)/fuzz/corpus/$$n > $(BUILD)/fuzz/$$n.log 2>&1 \
    || { tail -n 60 $(BUILD)/fuzz/$$n.log; echo "$$n: FAILED, see $(BUILD)/fuzz/$$n.log"; exit 1; }; \
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' $(BUILD)/fuzz/$$n.log; \
done
endef

fuzz: $(FUZZ_BINS)
	@$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: $(FUZZ_BINS)
	@$(call fuzz_run,$(FUZZ_SMOKE_SECONDS))
