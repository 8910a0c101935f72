# ngx_http_canary_module on Debian bookworm's own nginx.
#
#   make image          (docker or podman; or: docker build -t nginx-canary .)
#   docker run --rm -p 8080:80 -e CANARY_REDIS=redis.example:6379 nginx-canary
#   curl -s localhost:8080/ --cookie uid=alice
#   curl -s localhost:8080/canary
#
# Environment: CANARY_REDIS (required), CANARY_STABLE, CANARY_CANARY
# (host:port of your servers; default: built-in demo backends),
# CANARY_PERCENT, CANARY_LISTEN; see docker/entrypoint.sh.
#
# Every build step is a Makefile target that `make test` runs here
# (t/93-docker.t runs this file's build-stage steps on a clean copy of the
# tree), so the image is built the way the tested module is.

# --- build: Debian's nginx-dev and build dependencies, `make build`, and
#     the Debian package (`make deb`), as on a developer's machine

FROM debian:bookworm-slim AS build

RUN apt-get update \
 && apt-get install -y --no-install-recommends make ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# the Makefiles first: the dependencies' layer is rebuilt only when they
# change, not on every change of the sources
COPY Makefile ./
COPY mk/ mk/
RUN make deps
COPY . .
RUN make build
RUN make deb DEB_OUT=/src/dist

# --- runtime: Debian's nginx, libhiredis0.14, libcurl4 and the module,
#     through the package (its Depends pull exactly those); no compilers

FROM debian:bookworm-slim

COPY --from=build /src/dist/ /tmp/canary/
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        /tmp/canary/libnginx-mod-http-canary_*.deb \
 && rm -rf /var/lib/apt/lists/* /tmp/canary \
 && rm -f /etc/nginx/sites-enabled/default \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log

COPY conf-examples/ /etc/nginx/canary-examples/
COPY docker/canary.conf.template /etc/nginx/templates/canary.conf.template
COPY docker/entrypoint.sh /usr/local/bin/canary-entrypoint
COPY docker/healthcheck /usr/local/bin/canary-healthcheck

EXPOSE 80
# SIGQUIT: nginx's graceful stop, requests in flight finish
STOPSIGNAL SIGQUIT
# GET /canary on CANARY_LISTEN answers 200
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["canary-healthcheck"]
ENTRYPOINT ["canary-entrypoint"]
CMD ["nginx", "-g", "daemon off;"]
