# ngx_http_canary_module
#
#   make            build build/nginx/objs/ngx_http_canary_module.so against
#                   Debian's nginx-dev (or NGINX_SRC=/path/to/nginx-source)
#   make NGINX_VERSION=1.30.4 [NGINX_MODULE_KIND=static]
#                   nginx 1.30.4 from ../shared/nginx/nginx-1.30.4.tar.gz
#                   and the module (dynamic, or built in with static), in
#                   build/nginx-1.30.4-dynamic (or -static)
#   make test       unit and integration tests (installs what it needs);
#                   with NGINX_VERSION=, against that nginx
#   make demo       Redis, nginx with the module, demo backends, status page
#   make demo-stop  stops the demo
#   make bench      throughput, instructions per request, propagation and
#                   scale against split_clients and Lua (bench/bench.py)
#   make deb        build/deb/libnginx-mod-http-canary_<version>_<arch>.deb
#   make deb DIST=trixie
#                   the same for Debian 13, built in a trixie container:
#                   build/deb/trixie/
#   make image      the Dockerfile's image (docker or podman)
#
# The Dockerfile runs the same targets (deps, build), so what is tested here
# is what the image does.

SHELL       := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

TOP         := $(CURDIR)
BUILD       := $(TOP)/build
NGINX_SRC   ?= /usr/share/nginx/src
ASAN_SUFFIX := $(if $(filter 1,$(SANITIZE)),-asan)

# nginx from a release tree: NGINX_VERSION picks
# $(NGINX_SOURCES)/nginx-<version>.tar.gz, unpacked and configured once in
# build/nginx-<version>-<kind>; the nginx binary built there is the one
# `make test` runs.  NGINX_SOURCES defaults to shared/nginx beside the
# checkout (a CI clone has shared/ next to it too).
NGINX_VERSION     ?=
NGINX_MODULE_KIND ?= dynamic
NGINX_SOURCES     ?= $(abspath $(TOP)/../shared/nginx)

# the module set of such a build: what production packages carry and the
# suite needs (ssl for TLS to Redis), --with-compat as nginx.org's
# packages are built, --with-debug so that the module's debug logging is
# compiled and tested
NGINX_CONF_FLAGS ?= --with-compat --with-debug --with-threads \
                    --with-http_ssl_module --with-http_v2_module \
                    --with-http_realip_module --with-http_stub_status_module

ifeq ($(filter $(NGINX_MODULE_KIND),dynamic static),)
$(error NGINX_MODULE_KIND=$(NGINX_MODULE_KIND): dynamic or static)
endif

ifneq ($(NGINX_VERSION),)
NGINX_TARBALL := $(NGINX_SOURCES)/nginx-$(NGINX_VERSION).tar.gz
NGINX_BUILD   := $(BUILD)/nginx-$(NGINX_VERSION)-$(NGINX_MODULE_KIND)
NGINX_BUILD   := $(NGINX_BUILD)$(ASAN_SUFFIX)
NGINX_OWN     := 1
else ifeq ($(NGINX_MODULE_KIND),static)
NGINX_BUILD   := $(BUILD)/nginx-static$(ASAN_SUFFIX)
NGINX_OWN     := 1
else
NGINX_BUILD   := $(BUILD)/nginx$(ASAN_SUFFIX)
NGINX_OWN     :=
endif

# the nginx the tests run: the one built here, else Debian's
ifeq ($(NGINX_OWN),1)
NGINX       ?= $(NGINX_BUILD)/objs/nginx
else
NGINX       ?= /usr/sbin/nginx
endif

ifeq ($(NGINX_MODULE_KIND),static)
MODULE      := $(NGINX_BUILD)/objs/nginx
ADD_MODULE  := --add-module=$(TOP)
else
MODULE      := $(NGINX_BUILD)/objs/ngx_http_canary_module.so
ADD_MODULE  := --add-dynamic-module=$(TOP)
endif

# what the tests are told about the module: its .so, or that it is built in
ifeq ($(NGINX_MODULE_KIND),static)
TEST_ENV    := CANARY_MODULE_KIND=static
else
TEST_ENV    := CANARY_MODULE=$(MODULE)
endif

CC          ?= cc
# the module's compiler flags (and nginx's, when it is built here):
# Debian's for its nginx and module packages (dpkg-buildflags), -O2 and not
# nginx's default -O; SANITIZE=1 replaces them (a later --with-cc-opt wins)
NGINX_CC_OPT ?= -g -O2 -fstack-protector-strong -Wformat \
                -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2
NGINX_LD_OPT ?= -Wl,-z,relro -Wl,-z,now -fPIC
CFLAGS_UNIT ?= -O1 -g -Wall -Wextra -Werror

SRCS := $(wildcard src/*.c src/*.h) config

# Debian packages: to build, to test, and for the demo
DEPS_BUILD := nginx nginx-dev libhiredis-dev libjansson-dev libcurl4-openssl-dev \
              libpcre2-dev libssl-dev zlib1g-dev make gcc
DEPS_TEST  := $(DEPS_BUILD) libcmocka-dev redis-server redis-tools wrk openssl \
              lintian \
              prometheus chromium perl curl gdb
DEPS_DEMO  := $(DEPS_BUILD) redis-server redis-tools curl
DEPS_BENCH := $(DEPS_BUILD) redis-server redis-tools wrk valgrind python3 \
              libnginx-mod-http-ndk libnginx-mod-http-lua lua-nginx-redis

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build deps deps-test deps-demo test unit integration \
        demo demo-stop bench deps-bench deb clean foreign-module

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

# The nginx source: a release tree unpacked from its tarball
# (NGINX_VERSION), else a copy of NGINX_SRC; into $(1).
define nginx_tree
	rm -rf $(1)
	mkdir -p $(1)
	@if [ -n "$(NGINX_VERSION)" ]; then \
	    test -f $(NGINX_TARBALL) || { echo "no $(NGINX_TARBALL):" \
	        "set NGINX_SOURCES=/dir/with/nginx-<version>.tar.gz"; exit 1; }; \
	    echo "tar -xzf $(NGINX_TARBALL) -C $(1)"; \
	    tar -xzf $(NGINX_TARBALL) -C $(1) --strip-components=1; \
	else \
	    echo "cp -r $(NGINX_SRC)/. $(1)"; \
	    cp -r $(NGINX_SRC)/. $(1); \
	fi
endef

# The nginx tree configured with this module: as Debian's nginx was
# (Debian's nginx-dev: its conf_flags, which include --with-compat) for
# the module alone, or with NGINX_CONF_FLAGS when nginx itself is built
# here; reconfigured when `config` or this Makefile changes.  Release
# trees from the nginx repository have auto/configure, tarballs
# ./configure.
$(NGINX_BUILD)/objs/Makefile: config Makefile
	@test -f $(NGINX_SRC)/configure || [ -n "$(NGINX_VERSION)" ] \
	    || $(MAKE) deps
	@if [ "$(NGINX_OWN)" = 1 ] && [ -z "$(NGINX_VERSION)" ] \
	    && [ ! -f $(NGINX_SRC)/src/core/nginx.c ]; then \
	    echo "NGINX_MODULE_KIND=static builds nginx: it needs" \
	         "NGINX_VERSION= or a full NGINX_SRC= tree"; exit 1; fi
	$(call nginx_tree,$(NGINX_BUILD))
	cd $(NGINX_BUILD) && \
	    flags=(); \
	    if [ "$(NGINX_OWN)" = 1 ]; then flags=($(NGINX_CONF_FLAGS)); \
	    elif [ -f conf_flags ]; then . ./conf_flags; \
	        flags=("$${NGX_CONF_FLAGS[@]}"); fi; \
	    c=./configure; [ -x $$c ] || c=auto/configure; \
	    $$c "$${flags[@]}" --with-cc-opt='$(NGINX_CC_OPT)' \
	        --with-ld-opt='$(NGINX_LD_OPT)' $(NGINX_CONF_EXTRA) \
	        $(ADD_MODULE) \
	        > $(NGINX_BUILD).configure.log 2>&1 \
	    || { tail -30 $(NGINX_BUILD).configure.log; exit 1; }

# the module alone (Debian's nginx-dev), or nginx and the module
NGINX_MAKE_TARGETS := $(if $(NGINX_OWN),binary) \
                      $(if $(filter dynamic,$(NGINX_MODULE_KIND)),modules)

$(MODULE): $(NGINX_BUILD)/objs/Makefile $(SRCS) src/ngx_http_canary_dashboard.h
	$(MAKE) -C $(NGINX_BUILD) -f objs/Makefile $(NGINX_MAKE_TARGETS)

# The module alone from the same nginx tree, configured with only
# $(2) (t/03-binary-compat.t): in $(1), without --with-compat or any other
# option, a .so that the nginx under test must refuse with its own "is not
# binary compatible"; with --with-compat alone, as the README builds it for
# an installed nginx, one that it must load.  Only the module is compiled.
define module_alone
$(1)/objs/Makefile: config
	$$(call nginx_tree,$(1))
	cd $(1) && c=./configure; [ -x $$$$c ] || c=auto/configure; \
	    $$$$c $(2) --add-dynamic-module=$$(TOP) > $(1).configure.log 2>&1 \
	    || { tail -30 $(1).configure.log; exit 1; }

$(1)/objs/ngx_http_canary_module.so: $(1)/objs/Makefile $$(SRCS) \
                                     src/ngx_http_canary_dashboard.h
	$$(MAKE) -C $(1) -f objs/Makefile modules
endef

FOREIGN_BUILD  := $(BUILD)/nginx-$(or $(NGINX_VERSION),src)-nocompat
FOREIGN_MODULE := $(FOREIGN_BUILD)/objs/ngx_http_canary_module.so
COMPAT_BUILD   := $(BUILD)/nginx-$(or $(NGINX_VERSION),src)-compat
COMPAT_MODULE  := $(COMPAT_BUILD)/objs/ngx_http_canary_module.so

$(eval $(call module_alone,$(FOREIGN_BUILD),))
$(eval $(call module_alone,$(COMPAT_BUILD),--with-compat))

foreign-module: $(FOREIGN_MODULE) $(COMPAT_MODULE)

# the dashboard page, embedded in C; the header is committed, so building
# needs no perl unless the page changed
src/ngx_http_canary_dashboard.h: src/ngx_http_canary_dashboard.html \
                                 tools/dashboard2c.pl
	perl tools/dashboard2c.pl $< > $@.tmp && mv $@.tmp $@

# deps-fuzz: clang for the redis fuzz target's replay
test: deps-test deps-fuzz build unit fuzz-replay integration

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

integration: build foreign-module
	$(TEST_ENV) CANARY_NGINX=$(NGINX) CANARY_FOREIGN_MODULE=$(FOREIGN_MODULE) \
	    CANARY_COMPAT_MODULE=$(COMPAT_MODULE) \
	    prove -I t/lib t/*.t

# BENCH_QUICK=1 for a short run while developing; see bench/bench.py
bench: deps-bench build
	CANARY_MODULE=$(MODULE) NGINX=$(NGINX) /usr/bin/python3 bench/bench.py

demo: deps-demo build
	@$(TEST_ENV) CANARY_NGINX=$(NGINX) demo/run.sh start

demo-stop:
	@demo/run.sh stop

# Debian package: $(DEB_OUT)/libnginx-mod-http-canary_<version>_<arch>.deb
DEB_OUT ?= $(BUILD)/deb

# DIST=trixie: for that Debian release, built in its container, into
# build/deb/trixie/ (mk/containers.mk)
DIST ?=

ifeq ($(DIST),)
deb: build
	@if [ "$(NGINX_OWN)" = 1 ]; then echo "make deb packages the module" \
	    "for Debian's nginx: run it without NGINX_VERSION or" \
	    "NGINX_MODULE_KIND=static"; exit 1; fi
	NGINX_SRC=$(NGINX_SRC) packaging/mkdeb.sh $(MODULE) $(DEB_OUT)
else
deb:
	packaging/deb-in-container.sh $(DIST) $(DEB_OUT)/$(DIST)
endif

include mk/reliability.mk
include mk/containers.mk

clean:
	rm -rf $(BUILD)
