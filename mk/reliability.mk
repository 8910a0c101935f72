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
FUZZ_TARGETS ?= percent time murmur3 auto escape api redis
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_DIR     := $(TOP)/build/fuzz

# the parsers of outside input are pure C with no nginx headers
FUZZ_SRCS    := src/ngx_http_canary_parse.c src/ngx_http_canary_bucket.c \
                src/ngx_http_canary_policy.c src/ngx_http_canary_api_parse.c
FUZZ_DEPS    := $(FUZZ_SRCS) $(wildcard src/*.h) fuzz/replay.c \
                mk/reliability.mk
FUZZ_LIBS    := -lhiredis -ljansson
SAN_FLAGS    := -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer

.PHONY: deps-fuzz fuzz fuzz-build fuzz-replay

deps-fuzz:
	$(call apt_install,$(DEPS_FUZZ))

# Targets that need nginx (the Redis replies through the sync worker's
# code): a whole nginx tree (Debian's nginx-dev has only the headers):
# ../shared/nginx/nginx-1.22.1.tar.gz, the version Debian ships, or
# NGINX_FULL_SRC=/path/to/nginx-1.x.y (a source tree), configured with few
# modules and this one built in, compiled by clang with the fuzzers'
# sanitizers and coverage, in build/nginx-fuzz.  The target calls the
# module's functions through its headers and links every nginx object
# (this module's too) but main().

NGINX_FULL_SRC  ?= $(firstword $(wildcard $(TOP)/../nginx-1.22.1))
NGINX_FUZZ_TAR  ?= $(NGINX_SOURCES)/nginx-1.22.1.tar.gz
NGINX_FUZZ_FROM := $(or $(NGINX_FULL_SRC),$(wildcard $(NGINX_FUZZ_TAR)))
NGINX_FUZZ      := $(TOP)/build/nginx-fuzz
NGINX_FUZZ_CC   := -g -O1 -fsanitize=fuzzer-no-link,address,undefined \
                   -fno-sanitize-recover=all -fno-omit-frame-pointer
NGINX_FUZZ_INCS := $(addprefix -I $(NGINX_FUZZ)/,src/core src/event \
                   src/event/modules src/os/unix objs src/http \
                   src/http/modules) -Isrc

$(NGINX_FUZZ)/objs/Makefile: config
	@test -n "$(NGINX_FUZZ_FROM)" || { echo "make fuzz: no" \
	    "$(NGINX_FUZZ_TAR): set NGINX_FULL_SRC=/path/to/nginx-1.22.1" \
	    "(full sources)"; exit 1; }
	rm -rf $(NGINX_FUZZ)
	mkdir -p $(NGINX_FUZZ)
	if [ -n "$(NGINX_FULL_SRC)" ]; then \
	    cp -r $(NGINX_FULL_SRC)/. $(NGINX_FUZZ); \
	else \
	    tar -xzf $(NGINX_FUZZ_TAR) -C $(NGINX_FUZZ) --strip-components=1; \
	fi
	cd $(NGINX_FUZZ) && c=./configure; [ -x $$c ] || c=auto/configure; \
	    $$c --with-cc=$(FUZZ_CC) --with-cc-opt='$(NGINX_FUZZ_CC)' \
	        --with-ld-opt='-fsanitize=fuzzer-no-link,address,undefined' \
	        --without-http-cache $$($$c --help \
	            | grep -oE -- '--without-http_[a-z0-9_]+_module' \
	            | grep -v rewrite | sort -u) \
	        --add-module=$(TOP) > $(TOP)/build/fuzz-configure.log 2>&1 \
	    || { tail -20 $(TOP)/build/fuzz-configure.log; exit 1; }

$(FUZZ_DIR)/redis: fuzz/fuzz_redis.c $(NGINX_FUZZ)/objs/Makefile $(SRCS)
	@mkdir -p $(FUZZ_DIR)
	nice $(MAKE) -C $(NGINX_FUZZ) -f objs/Makefile binary > /dev/null
	cd $(NGINX_FUZZ) && objcopy --redefine-sym main=ngx_fuzz_nginx_main \
	    objs/src/core/nginx.o objs/nginx-nomain.o
	@# nginx's own ngx_murmur_hash2() shifts a byte into the sign bit of
	@# an int (undefined, harmless): not this module's to report
	cd $(NGINX_FUZZ) && $(FUZZ_CC) -c $(NGINX_FUZZ_CC) -fno-sanitize=shift \
	    $(NGINX_FUZZ_INCS) -o objs/ngx_murmurhash-noshift.o \
	    src/core/ngx_murmurhash.c
	$(FUZZ_CC) $(NGINX_FUZZ_CC) -fsanitize=fuzzer $(NGINX_FUZZ_INCS) \
	    -o $@ $< $(NGINX_FUZZ)/objs/nginx-nomain.o \
	    $(NGINX_FUZZ)/objs/ngx_murmurhash-noshift.o \
	    $$(find $(NGINX_FUZZ)/objs/src -name '*.o' ! -name nginx.o \
	        ! -name ngx_murmurhash.o) \
	    $(NGINX_FUZZ)/objs/ngx_modules.o \
	    $(NGINX_FUZZ)/objs/addon/src/*.o \
	    -lhiredis -ljansson -lcurl -lpcre2-8 -lcrypt -lpthread

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

# the targets built with nginx replay through their libFuzzer binary
# (clang and the full nginx sources needed); the others with $(CC)
FUZZ_NGINX_TARGETS := redis
FUZZ_PURE_TARGETS  := $(filter-out $(FUZZ_NGINX_TARGETS),$(FUZZ_TARGETS))

fuzz-replay: $(addprefix $(FUZZ_DIR)/replay-,$(FUZZ_PURE_TARGETS))
	@set -e; for t in $(FUZZ_PURE_TARGETS); do \
	    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(FUZZ_DIR)/replay-$$t t/fuzz/$$t/*; \
	done
	@if [ -n "$(NGINX_FUZZ_FROM)" ] && command -v $(FUZZ_CC) > /dev/null; \
	then \
	    set -e; for t in $(FUZZ_NGINX_TARGETS); do \
	        $(MAKE) --no-print-directory $(FUZZ_DIR)/$$t > /dev/null; \
	        $(FUZZ_DIR)/$$t t/fuzz/$$t/* > $(FUZZ_DIR)/replay-$$t.log 2>&1 \
	        || { tail -30 $(FUZZ_DIR)/replay-$$t.log; exit 1; }; \
	        echo "$(FUZZ_DIR)/$$t: $$(ls t/fuzz/$$t | wc -l) inputs replayed"; \
	    done; \
	else \
	    echo "fuzz-replay: $(FUZZ_NGINX_TARGETS) skipped (needs clang and" \
	         "$(NGINX_FUZZ_TAR) or NGINX_FULL_SRC=/path/to/nginx-1.22.1)"; \
	fi


# make test SANITIZE=1 (or make test-asan): the module (and the unit tests
# and fuzz replays) built with AddressSanitizer and UBSan in build/nginx-asan,
# loaded into Debian's own nginx binary with the ASan runtime preloaded
# (t/lib/nginx-sanitized); done() fails a test on any sanitizer report.

ASAN_LIB = $(shell $(CC) -print-file-name=libasan.so)

ifeq ($(SANITIZE),1)
NGINX_CONF_EXTRA := --with-cc-opt='$(SAN_FLAGS)' \
                    --with-ld-opt='-fsanitize=address,undefined'
CFLAGS_UNIT      += $(SAN_FLAGS)
export CANARY_REAL_NGINX := $(NGINX)
NGINX            := $(TOP)/t/lib/nginx-sanitized
export CANARY_ASAN_LIB   := $(ASAN_LIB)
endif

.PHONY: test-asan

test-asan:
	$(MAKE) test SANITIZE=1


# make valgrind: the integration suite with every nginx under valgrind
# memcheck (Debian's binary, the module as `make build` builds it), then
# a report of the errors and definite leaks whose stack passes through the
# module; fails if there is any.  Slow: each nginx start takes seconds.

VALGRIND_DIR := $(TOP)/build/valgrind

.PHONY: valgrind

valgrind: build
	$(call apt_install,valgrind)
	rm -rf $(VALGRIND_DIR)
	-$(TEST_ENV) CANARY_NGINX=$(TOP)/t/lib/nginx-valgrind \
	    CANARY_REAL_NGINX=$(NGINX) CANARY_KEEP=1 \
	    CANARY_VALGRIND_DIR=$(VALGRIND_DIR) CANARY_TIMEOUT_SCALE=6 \
	    prove -I t/lib t/*.t 2>&1 | tee $(TOP)/build/valgrind.prove.log
	t/lib/valgrind-report $(VALGRIND_DIR) | tee $(TOP)/build/valgrind.report
	@# the kept temp prefixes of this run
	xargs -r -n1 dirname < $(VALGRIND_DIR)/dirs | sort -u | xargs -r rm -rf


# make chaos [CHAOS_DOWN=3] [CHAOS_SCALE=1] [CHAOS_CHURN_SECONDS=180]:
# each fault under load (see t/lib/CanaryChaos.pm), then a table (also in
# build/chaos.txt); then sustained churn under wrk (t/chaos/churn.pl, a
# table in build/chaos-churn.txt)

CHAOS_DOWN  ?= 3
CHAOS_SCALE ?= 1
CHAOS_CHURN_SECONDS ?= 180

.PHONY: chaos

chaos: deps-test build
	$(TEST_ENV) CANARY_NGINX=$(NGINX) \
	    perl t/chaos/run.pl --down $(CHAOS_DOWN) --scale $(CHAOS_SCALE)
	$(TEST_ENV) CANARY_NGINX=$(NGINX) \
	    perl t/chaos/churn.pl --seconds $(CHAOS_CHURN_SECONDS)
