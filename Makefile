# ngx_http_canary_module
#
#   make            build build/nginx/objs/ngx_http_canary_module.so against
#                   Debian's nginx-dev (or NGINX_SRC=/path/to/nginx-source)
#   make test       unit and integration tests (installs what it needs)
#   make demo       Redis, nginx with the module, demo backends, status page
#   make demo-stop  stops the demo
#   make bench      throughput, instructions per request, propagation and
#                   scale against split_clients and Lua (bench/bench.py)
#   make deb        build/deb/libnginx-mod-http-canary_<version>_<arch>.deb
#
# The Dockerfile runs the same targets (deps, build), so what is tested here
# is what the image does.

SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

TOP         := $(CURDIR)
BUILD       := $(TOP)/build
NGINX_SRC   ?= /usr/share/nginx/src
NGINX_BUILD := $(BUILD)/nginx$(if $(filter 1,$(SANITIZE)),-asan)
NGINX       ?= /usr/sbin/nginx
MODULE      := $(NGINX_BUILD)/objs/ngx_http_canary_module.so
CC          ?= cc
# the module's compiler flags: Debian's for its nginx and module packages
# (dpkg-buildflags), -O2 and not nginx's default -O; SANITIZE=1 replaces
# them (a later --with-cc-opt wins)
NGINX_CC_OPT ?= -g -O2 -fstack-protector-strong -Wformat \
                -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2
NGINX_LD_OPT ?= -Wl,-z,relro -Wl,-z,now -fPIC
CFLAGS_UNIT ?= -O1 -g -Wall -Wextra -Werror

SRCS := $(wildcard src/*.c src/*.h) config

# Debian packages: to build, to test, and for the demo
DEPS_BUILD := nginx nginx-dev libhiredis-dev libpcre2-dev libssl-dev \
              zlib1g-dev make gcc
DEPS_TEST  := $(DEPS_BUILD) libcmocka-dev redis-server redis-tools wrk openssl \
              prometheus chromium perl curl
DEPS_DEMO  := $(DEPS_BUILD) redis-server redis-tools curl
DEPS_BENCH := $(DEPS_BUILD) redis-server redis-tools wrk valgrind python3 \
              libnginx-mod-http-ndk libnginx-mod-http-lua lua-nginx-redis

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build deps deps-test deps-demo test unit integration \
        demo demo-stop bench deps-bench deb clean

all: build

build: $(MODULE)

# Installs the Debian packages in $(1) that are missing, once.
define apt_install
	@missing=""; for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	        | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	        apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_install,$(DEPS_BUILD))

deps-test:
	$(call apt_install,$(DEPS_TEST))

deps-demo:
	$(call apt_install,$(DEPS_DEMO))

deps-bench:
	$(call apt_install,$(DEPS_BENCH))

# A copy of the nginx source tree, configured as Debian's nginx was (when
# it is Debian's nginx-dev) plus this module; reconfigured when `config`
# or this Makefile changes.
$(NGINX_BUILD)/objs/Makefile: config Makefile
	@test -f $(NGINX_SRC)/configure || $(MAKE) deps
	rm -rf $(NGINX_BUILD)
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(NGINX_BUILD)
	cd $(NGINX_BUILD) && \
	    flags=(); \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	        flags=("$${NGX_CONF_FLAGS[@]}"); fi; \
	    ./configure "$${flags[@]}" --with-cc-opt='$(NGINX_CC_OPT)' \
	        --with-ld-opt='$(NGINX_LD_OPT)' $(NGINX_CONF_EXTRA) \
	        --add-dynamic-module=$(TOP) \
	        > $(BUILD)/configure.log 2>&1 \
	    || { tail -30 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(NGINX_BUILD)/objs/Makefile $(SRCS) src/ngx_http_canary_dashboard.h
	$(MAKE) -C $(NGINX_BUILD) -f objs/Makefile modules

# the dashboard page, embedded in C; the header is committed, so building
# needs no perl unless the page changed
src/ngx_http_canary_dashboard.h: src/ngx_http_canary_dashboard.html \
                                 tools/dashboard2c.pl
	perl tools/dashboard2c.pl $< > $@.tmp && mv $@.tmp $@

test: deps-test build unit fuzz-replay integration

unit:
	@mkdir -p $(BUILD)/unit
	@set -e; for t in t/unit/test_*.c; do \
	    n=$$(basename $$t .c); \
	    $(CC) $(CFLAGS_UNIT) -Isrc -o $(BUILD)/unit/$$n $$t \
	        src/ngx_http_canary_bucket.c src/ngx_http_canary_parse.c \
	        src/ngx_http_canary_policy.c \
	        -lcmocka; \
	    $(BUILD)/unit/$$n; \
	done

integration: build
	CANARY_MODULE=$(MODULE) CANARY_NGINX=$(NGINX) prove -I t/lib t/*.t

# BENCH_QUICK=1 for a short run while developing; see bench/bench.py
bench: deps-bench build
	CANARY_MODULE=$(MODULE) NGINX=$(NGINX) /usr/bin/python3 bench/bench.py

demo: deps-demo build
	@demo/run.sh start

demo-stop:
	@demo/run.sh stop

# Debian package: $(DEB_OUT)/libnginx-mod-http-canary_<version>_<arch>.deb
DEB_OUT ?= $(BUILD)/deb

deb: build
	NGINX_SRC=$(NGINX_SRC) packaging/mkdeb.sh $(MODULE) $(DEB_OUT)

include mk/reliability.mk

clean:
	rm -rf $(BUILD)
