#!/usr/bin/env bash
#
# packaging/deb-in-container.sh DIST OUTDIR: the Debian package for another
# Debian release (make deb DIST=trixie): `make build deb` in a DIST
# container, against that release's nginx-dev (its ABI) and libraries
# (hiredis), into OUTDIR/libnginx-mod-http-canary_<version>_<arch>.deb;
# then that release's lintian on it, into OUTDIR/lintian.txt.
#
# The build image canary-build:DIST (debian:DIST-slim and the Makefile's
# DEPS_BUILD, lintian) is made once and reused while that list is the
# same.  The tree goes in as the files git knows (no build/).

set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
DIST=${1:?usage: $0 DIST OUTDIR}
OUT=${2:?usage: $0 DIST OUTDIR}
C=$TOP/tools/containers.sh

case "$DIST" in
    *[!a-z]*|'') echo "deb-in-container: DIST=$DIST: a Debian codename" >&2
                 exit 1 ;;
esac

deps=$(make -s --no-print-directory -C "$TOP" print-deps-build)
ctx=$TOP/build/containers/build-$DIST
mkdir -p "$ctx" "$OUT"
cat > "$ctx/Dockerfile" <<EOF
FROM debian:$DIST-slim
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \\
        --no-install-recommends $deps lintian ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
EOF

"$C" base "$DIST"
"$C" build "canary-build:$DIST" "$ctx" -q >/dev/null

# the source: what git has (committed or not, not ignored)
git -C "$TOP" ls-files -z -co --exclude-standard \
    | (cd "$TOP" && tar --null -T - -c 2>/dev/null) \
    | "$C" cmd run --rm -i --network host -v "$OUT:/out" \
          -e SOURCE_DATE_EPOCH="$(git -C "$TOP" log -1 --format=%ct \
                                  2>/dev/null || date +%s)" \
          "canary-build:$DIST" sh -euc '
        mkdir /src && cd /src && tar -x
        make -s build >/tmp/build.log 2>&1 || { tail -40 /tmp/build.log; exit 1; }
        rm -f /out/*.deb
        make -s deb DEB_OUT=/tmp/deb
        cp /tmp/deb/*.deb /out/
        chmod 0644 /out/*.deb
        lintian --info /out/*.deb > /out/lintian.txt 2>&1 || true
        grep -E "^[EWI]: " /out/lintian.txt || echo "lintian: no tag"
    '
ls "$OUT"/libnginx-mod-http-canary_*.deb
