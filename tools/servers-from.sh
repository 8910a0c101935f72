#!/usr/bin/env bash
#
# tools/servers-from.sh DIST DIR: another Debian release's Redis and Valkey
# (trixie: Redis 8.0, Valkey 8.1) runnable on this host, for the suite
# (REDIS_SERVER=DIR/bin/redis-server REDIS_CLI=DIR/bin/redis-cli prove ...).
#
# The packages are installed in a debian:DIST-slim container; their
# binaries, every shared library they load and that release's dynamic
# loader are copied out to DIR, and DIR/bin/NAME runs DIR/real/NAME
# through that loader with DIR/lib as its only library path.  So the
# servers are that release's own builds, yet plain processes of this
# host: the suite's ports, files, signals (STOP, KILL) and pids work on
# them as on the host's own redis-server.  Made once; DIR/versions says
# what is there.

set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
DIST=${1:?usage: $0 DIST DIR}
DIR=$(realpath -m "${2:?usage: $0 DIST DIR}")
C=$TOP/tools/containers.sh
PKGS="redis-server redis-tools valkey-server valkey-tools"
BINS="redis-server redis-cli valkey-server valkey-cli"

if [ -s "$DIR/versions" ] && [ "$(head -1 "$DIR/versions")" = "$PKGS" ]; then
    exit 0
fi

"$C" base "$DIST"
rm -rf "$DIR"
mkdir -p "$DIR"
"$C" cmd run --rm --network host -v "$DIR:/out" "debian:$DIST-slim" sh -euc "
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $PKGS >/dev/null
    mkdir -p /out/real /out/lib /out/bin
    for b in $BINS; do
        cp -L /usr/bin/\$b /out/real/\$b
        ldd /usr/bin/\$b | awk '\$2 == \"=>\" && \$3 ~ /^\\// { print \$3 }
                               \$1 ~ /^\\// { print \$1 }' \
            | while read -r l; do cp -Ln \"\$l\" /out/lib/; done
    done
    echo '$PKGS' > /out/versions
    dpkg-query -W $PKGS >> /out/versions
"
loader=$(cd "$DIR/lib" && ls ld-linux-*.so.* | head -1)
for b in $BINS; do
    cat > "$DIR/bin/$b" <<EOF
#!/bin/sh
# $b from Debian $DIST, through its own loader and libraries
d=\$(cd "\$(dirname "\$0")/.." && pwd)
exec "\$d/lib/$loader" --library-path "\$d/lib" "\$d/real/$b" "\$@"
EOF
    chmod 0755 "$DIR/bin/$b"
done
cat "$DIR/versions" | tail -n +2
