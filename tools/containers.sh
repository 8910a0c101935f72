#!/usr/bin/env bash
#
# tools/containers.sh: the container engine the project builds and tests
# images with, made to work on a machine without an image registry.
#
#   tools/containers.sh engine         docker (a daemon that answers) or
#                                      podman (installed when missing)
#   tools/containers.sh base SUITE...  local base images debian:SUITE-slim
#                                      (bookworm, trixie) when the engine
#                                      has none: debootstrap from the mirror
#                                      apt uses, then import
#   tools/containers.sh build TAG DIR [ARGS...]
#                                      build DIR's Dockerfile (or the file
#                                      in ARGS' -f) as TAG
#   tools/containers.sh cmd ARGS...    the engine with ARGS (run, rm, ...)
#   tools/containers.sh compose ARGS...
#                                      docker compose, or docker-compose
#                                      against podman's Docker API
#
# podman here: runc (crun refuses hybrid cgroups), cgroupfs, and ulimits no
# higher than the host's hard limits, in a containers.conf of our own under
# build/containers/ (CONTAINERS_CONF), so the system's is left alone.  The
# base images' root trees are kept there as tarballs: a fresh engine store
# imports them again in seconds.  Run as root (or with sudo for the apt and
# debootstrap steps).

set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${CANARY_CONTAINER_CACHE:-$TOP/build/containers}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

die() {
    echo "containers.sh: $*" >&2
    exit 1
}

log() {
    echo "containers.sh: $*" >&2
}

apt_install() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    log "installing ${missing[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/dev/null
}

# CANARY_ENGINE=docker|podman chooses; else a docker daemon that answers,
# else podman
engine() {
    if [ -n "${CANARY_ENGINE:-}" ]; then
        echo "$CANARY_ENGINE"
    elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        echo docker
    else
        echo podman
    fi
}

podman_conf() {
    local nofile nproc conf=$CACHE/containers.conf
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    case "$nofile" in unlimited|'') nofile=1048576 ;; esac
    case "$nproc" in unlimited|'') nproc=32768 ;; esac
    [ "$nproc" -gt 32768 ] && nproc=32768
    mkdir -p "$CACHE"
    cat > "$conf.new" <<CONF
# written by tools/containers.sh
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
    if cmp -s "$conf.new" "$conf"; then rm "$conf.new"
    else mv "$conf.new" "$conf"; fi
    export CONTAINERS_CONF=$conf
}

setup() {
    ENGINE=$(engine)
    if [ "$ENGINE" = podman ]; then
        apt_install podman runc
        podman_conf
    fi
}

mirror() {
    local m
    m=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources \
        2>/dev/null | head -1)
    [ -n "$m" ] || m=$(awk '$1 == "deb" { print $2; exit }' \
                           /etc/apt/sources.list 2>/dev/null)
    echo "${m:-http://deb.debian.org/debian}"
}

# a root tree made as Debian's slim images are: no apt lists or caches,
# dpkg told to leave out manuals, docs (but copyright files) and
# translations, now and in what is installed later, apt to drop what it
# downloaded
slim() {
    local root=$1
    $SUDO mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
    $SUDO tee "$root/etc/dpkg/dpkg.cfg.d/slim" >/dev/null <<'CFG'
# as Debian's slim images (tools/containers.sh)
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/linda/*
CFG
    # and apt keeps no downloaded packages or caches in a layer
    $SUDO tee "$root/etc/apt/apt.conf.d/slim-clean" >/dev/null <<'CFG'
// as Debian's slim images (tools/containers.sh)
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
    $SUDO find "$root/usr/share/doc" -mindepth 1 -not -name copyright \
        -not -type d -delete
    $SUDO find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    $SUDO rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/locale/* "$root"/usr/share/lintian/overrides/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/debconf/*-old \
        "$root"/var/log/*.log "$root"/var/log/apt/*
}

# debian:SUITE-slim: there already, pulled (docker with a registry), or
# imported from build/containers/debian-SUITE.tar, made by debootstrap
base() {
    local suite tar root
    for suite in "$@"; do
        if $ENGINE image inspect "debian:$suite-slim" >/dev/null 2>&1; then
            continue
        fi
        if [ "$ENGINE" = docker ] && docker pull -q "debian:$suite-slim" \
                                     >/dev/null 2>&1; then
            continue
        fi
        tar=$CACHE/debian-$suite.tar
        if [ ! -s "$tar" ]; then
            apt_install debootstrap
            log "debootstrap $suite (a minute or two)"
            root=$(mktemp -d "$CACHE/root-$suite.XXXXXX")
            chmod 0755 "$root"
            $SUDO debootstrap --variant=minbase "$suite" "$root" \
                "$(mirror)" >"$root.log" 2>&1 \
                || { tail -20 "$root.log" >&2; die "debootstrap $suite"; }
            slim "$root"
            $SUDO tar -C "$root" -cf "$tar.new" .
            $SUDO rm -rf "$root" "$root.log"
            mv "$tar.new" "$tar"
        fi
        log "importing debian:$suite-slim"
        $ENGINE import -q - "debian:$suite-slim" < "$tar" >/dev/null
        # podman names it localhost/debian:..., which FROM debian:... finds
    done
}

build() {
    local tag=${1:?tag} dir=${2:?dir}
    shift 2
    if [ "$ENGINE" = podman ]; then
        # --format docker: OCI images have no HEALTHCHECK
        podman build --isolation chroot --network host --pull=never \
            --format docker -t "$tag" "$@" "$dir"
    else
        docker build --network host -t "$tag" "$@" "$dir"
    fi
    # what earlier builds left untagged, once a day old (the newest stay
    # as the cache of the next build)
    $ENGINE image prune -f --filter until=24h >/dev/null 2>&1 || true
}

# docker compose (or docker-compose); with podman, Debian's docker-compose
# against podman's Docker API on build/containers/podman.sock, served
# while it is used (it stops after a minute without a request).
# podman-compose 1.0.3 (bookworm's) cannot run host-network services.
compose() {
    if [ "$ENGINE" = docker ]; then
        if docker compose version >/dev/null 2>&1; then
            exec docker compose "$@"
        fi
        apt_install docker-compose
        exec docker-compose "$@"
    fi
    apt_install docker-compose
    local sock=$CACHE/podman.sock i
    if ! curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1; then
        rm -f "$sock"
        setsid podman system service --time=60 "unix://$sock" \
            >"$CACHE/podman-service.log" 2>&1 < /dev/null &
        for i in $(seq 50); do
            curl -sf --unix-socket "$sock" http://d/_ping >/dev/null 2>&1 \
                && break
            sleep 0.1
        done
    fi
    DOCKER_HOST=unix://$sock exec docker-compose "$@"
}

cmd=${1:-engine}
shift || true
setup
case "$cmd" in
    engine) echo "$ENGINE" ;;
    base)   base "$@" ;;
    build)  build "$@" ;;
    cmd)    exec "$ENGINE" "$@" ;;
    compose) compose "$@" ;;
    *)      die "unknown command $cmd (engine, base, build, cmd, compose)" ;;
esac
