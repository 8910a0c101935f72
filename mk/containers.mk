# Container targets of ngx_http_canary_module, included by the Makefile.
#
#   make image [IMAGE=nginx-canary]
#                   the Dockerfile's image, with docker or podman
#                   (tools/containers.sh: podman is installed when there is
#                   no docker daemon; base images are made from the Debian
#                   mirror when no registry has them)
#   make deb DIST=trixie
#                   the Debian package for that release, built in its
#                   container against its nginx-dev: build/deb/trixie/
#   make test-redis-versions [REDIS_DIST=trixie]
#                   the Redis-facing tests against that release's Redis and
#                   Valkey (trixie: Redis 8.0, Valkey 8.1)
#
# The image and trixie tests (t/96, t/97) run in `make test` against
# Debian's nginx only; .ci/run runs test-redis-versions once.

IMAGE       ?= nginx-canary
CONTAINERS  := $(TOP)/tools/containers.sh
REDIS_DIST  ?= trixie
SERVERS_DIR := $(BUILD)/servers-$(REDIS_DIST)
# the tests that talk to Redis: sync, values, outages, state file, auth
# and unix socket, sets, large replies, worker crash, TLS, ACL, Sentinel,
# restore, targeting, auto rollouts
REDIS_TESTS ?= t/11-targeting-redis.t t/20-sync.t t/21-sync-values.t \
               t/22-sync-failure.t t/23-sync-state-file.t \
               t/24-sync-auth-unix.t t/25-sync-sets.t \
               t/26-sync-large-reply.t t/28-sync-worker-crash.t \
               t/29-redis-tls.t t/30-redis-acl.t t/31-redis-sentinel.t \
               t/32-redis-restore.t t/61-auto.t

.PHONY: image print-deps-build redis-servers test-redis-versions

image:
	$(CONTAINERS) base bookworm
	$(CONTAINERS) build $(IMAGE) $(TOP)
	@echo "$(IMAGE): $$($(CONTAINERS) cmd image inspect \
	    --format '{{.Size}}' $(IMAGE) | awk '{ printf "%d MB", $$1 / 1e6 }')"

# the build dependencies, for a build container
print-deps-build:
	@echo $(DEPS_BUILD)

redis-servers:
	$(TOP)/tools/servers-from.sh $(REDIS_DIST) $(SERVERS_DIR)

test-redis-versions: deps-test build foreign-module redis-servers
	@set -e; for s in redis valkey; do \
	    echo "=== $$s from Debian $(REDIS_DIST):" \
	        "$$($(SERVERS_DIR)/bin/$$s-server --version)"; \
	    REDIS_SERVER=$(SERVERS_DIR)/bin/$$s-server \
	    REDIS_CLI=$(SERVERS_DIR)/bin/$$s-cli \
	    $(TEST_ENV) CANARY_NGINX=$(NGINX) \
	    CANARY_FOREIGN_MODULE=$(FOREIGN_MODULE) \
	    CANARY_COMPAT_MODULE=$(COMPAT_MODULE) \
	        prove -I t/lib $(REDIS_TESTS); \
	done
