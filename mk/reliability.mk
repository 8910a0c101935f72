# Reliability targets of ngx_http_canary_module, included by the Makefile.
#
#   make fuzz [FUZZ_SECONDS=600] [FUZZ_TARGETS="percent time"]
#                   each libFuzzer target in turn, nice'd, for FUZZ_SECONDS
#                   (default 60); a table of executions; crashes land in
#                   t/fuzz/<target>/ as regression inputs
#   make fuzz-replay
#                   every input in t/fuzz/<target>/ once through its target,
#                   built with $(CC) and ASan+UBSan (part of `make test`)
#
# Adding a target: fuzz/fuzz_<name>.c defining LLVMFuzzerTestOneInput(),
# seeds in t/fuzz/<name>/, the name in FUZZ_TARGETS.

DEPS_FUZZ    := clang libclang-rt-dev
FUZZ_TARGETS ?= percent time murmur3 auto escape
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_DIR     := $(TOP)/build/fuzz

# the parsers of outside input are pure C with no nginx headers
FUZZ_SRCS    := src/ngx_http_canary_parse.c src/ngx_http_canary_bucket.c \
                src/ngx_http_canary_policy.c
FUZZ_DEPS    := $(FUZZ_SRCS) $(wildcard src/*.h) fuzz/replay.c \
                mk/reliability.mk
FUZZ_LIBS    := -lhiredis
SAN_FLAGS    := -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer

.PHONY: deps-fuzz fuzz fuzz-build fuzz-replay

deps-fuzz:
	$(call apt_install,$(DEPS_FUZZ))

$(FUZZ_DIR)/%: fuzz/fuzz_%.c $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer $(SAN_FLAGS) -Isrc -o $@ \
	    $< $(FUZZ_SRCS) $(FUZZ_LIBS)

$(FUZZ_DIR)/replay-%: fuzz/fuzz_%.c $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_DIR)
	$(CC) -g -O1 -Wall -Wextra -Werror $(SAN_FLAGS) -Isrc -o $@ \
	    $< fuzz/replay.c $(FUZZ_SRCS) $(FUZZ_LIBS)

fuzz-build: deps-fuzz $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))

fuzz: fuzz-build
	fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-replay: $(addprefix $(FUZZ_DIR)/replay-,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(FUZZ_DIR)/replay-$$t t/fuzz/$$t/*; \
	done


# make test SANITIZE=1 (or make test-asan): the module (and the unit tests
# and fuzz replays) built with AddressSanitizer and UBSan in build/nginx-asan,
# loaded into Debian's own nginx binary with the ASan runtime preloaded
# (t/lib/nginx-sanitized); done() fails a test on any sanitizer report.

ASAN_LIB := $(shell $(CC) -print-file-name=libasan.so)

ifeq ($(SANITIZE),1)
NGINX_CONF_EXTRA := --with-cc-opt='$(SAN_FLAGS)' \
                    --with-ld-opt='-fsanitize=address,undefined'
CFLAGS_UNIT      += $(SAN_FLAGS)
NGINX            := $(TOP)/t/lib/nginx-sanitized
export CANARY_REAL_NGINX := /usr/sbin/nginx
export CANARY_ASAN_LIB   := $(ASAN_LIB)
endif

.PHONY: test-asan

test-asan:
	$(MAKE) test SANITIZE=1


# make valgrind: the integration suite with every nginx under valgrind
# memcheck (Debian's binary, the module built with -O1 -g as usual), then
# a report of the errors and definite leaks whose stack passes through the
# module; fails if there is any.  Slow: each nginx start takes seconds.

VALGRIND_DIR := $(TOP)/build/valgrind

.PHONY: valgrind

valgrind: build
	$(call apt_install,valgrind)
	rm -rf $(VALGRIND_DIR)
	-CANARY_MODULE=$(MODULE) CANARY_NGINX=$(TOP)/t/lib/nginx-valgrind CANARY_KEEP=1 \
	    CANARY_VALGRIND_DIR=$(VALGRIND_DIR) CANARY_TIMEOUT_SCALE=6 \
	    prove -I t/lib t/*.t 2>&1 | tee $(TOP)/build/valgrind.prove.log
	t/lib/valgrind-report $(VALGRIND_DIR) | tee $(TOP)/build/valgrind.report
	@# the kept temp prefixes of this run
	xargs -r -n1 dirname < $(VALGRIND_DIR)/dirs | sort -u | xargs -r rm -rf
