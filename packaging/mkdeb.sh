#!/usr/bin/env bash
#
# packaging/mkdeb.sh MODULE.so OUTDIR: builds
# OUTDIR/libnginx-mod-http-canary_<version>_<arch>.deb with dpkg-deb, laid
# out the way Debian ships its nginx modules (cf. libnginx-mod-http-echo):
#
#   /usr/lib/nginx/modules/ngx_http_canary_module.so
#   /usr/share/nginx/modules-available/mod-http-canary.conf
#   /usr/share/doc/libnginx-mod-http-canary/{copyright,changelog.Debian.gz,
#                                            README.md,docs/,conf-examples/}
#   postinst/prerm/postrm as dh_nginx writes them: the symlink
#   /etc/nginx/modules-enabled/50-mod-http-canary.conf, kept across
#   upgrades, renamed *.removed on remove, deleted on purge; an
#   nginx-reload trigger.
#
# Depends: the nginx ABI the module was built against (nginx:abi in
# NGINX_SRC/debian/libnginx-mod.abisubstvars, as dh_nginx reads it, else
# the nginx-abi-* that the installed nginx Provides) and the packages of
# the shared libraries the .so needs (libhiredis0.14, libcurl4, libc6).
#
# The copyright file is machine-readable (DEP-5): the 2-clause BSD licence
# from LICENSE, in full.
#
# Environment: NGINX_SRC [/usr/share/nginx/src], DEB_REVISION [1],
# DEB_MAINTAINER.

set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
SO=${1:?usage: $0 MODULE.so OUTDIR}
OUT=${2:?usage: $0 MODULE.so OUTDIR}
NGINX_SRC=${NGINX_SRC:-/usr/share/nginx/src}

PKG=libnginx-mod-http-canary
VERSION=$(cat "$TOP/VERSION")-${DEB_REVISION:-1}
ARCH=$(dpkg --print-architecture)
# the project's role address (the packages' Maintainer and the copyright
# file's Upstream-Contact); DEB_MAINTAINER for a package of your own
MAINTAINER=${DEB_MAINTAINER:-ngx_http_canary_module maintainers <maintainers@ngx-canary.org>}

die() {
    echo "mkdeb: $*" >&2
    exit 1
}

[ -f "$SO" ] || die "no module at $SO (run make)"
if objdump -p "$SO" | grep -Eq 'NEEDED +lib(a|ub|t)san'; then
    die "$SO is a sanitizer build: package a plain one (make deb," \
        "without SANITIZE=1)"
fi


# the nginx ABI

abi=""
if [ -f "$NGINX_SRC/debian/libnginx-mod.abisubstvars" ]; then
    abi=$(sed -n 's/^nginx:abi=//p' \
              "$NGINX_SRC/debian/libnginx-mod.abisubstvars")
fi
if [ -z "$abi" ]; then
    abi=$(dpkg-query -W -f='${Provides}' nginx 2>/dev/null \
          | grep -o 'nginx-abi-[^ ,]*' || true)
fi
[ -n "$abi" ] || die "cannot tell the nginx ABI: no nginx:abi in" \
    "$NGINX_SRC/debian/libnginx-mod.abisubstvars and no nginx-abi-* provided" \
    "by an installed nginx"


# the packages of the libraries the .so needs (a small dpkg-shlibdeps)

depends=$abi
glibc=$(objdump -T "$SO" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' \
        | sort -V | tail -1)

for lib in $(objdump -p "$SO" | awk '$1 == "NEEDED" { print $2 }'); do
    pkg=$(dpkg -S "*/$lib" 2>/dev/null | head -1 | cut -d: -f1 || true)
    [ -n "$pkg" ] || die "no Debian package holds $lib, needed by $SO"
    if [ "$pkg" = libc6 ]; then
        [ -n "$glibc" ] && pkg="libc6 (>= $glibc)"
    else
        ver=$(dpkg-query -W -f='${Version}' "$pkg")
        pkg="$pkg (>= ${ver%%-*})"
    fi
    case ", $depends, " in
        *", $pkg, "*) ;;
        *) depends="$depends, $pkg" ;;
    esac
done


# the tree

work=$OUT/$PKG
rm -rf "$work"
mkdir -p "$work/DEBIAN" "$OUT"

install -D -m 0644 "$SO" "$work/usr/lib/nginx/modules/ngx_http_canary_module.so"
strip --strip-unneeded \
    "$work/usr/lib/nginx/modules/ngx_http_canary_module.so"

install -d "$work/usr/share/nginx/modules-available"
echo 'load_module modules/ngx_http_canary_module.so;' \
    > "$work/usr/share/nginx/modules-available/mod-http-canary.conf"
chmod 0644 "$work/usr/share/nginx/modules-available/mod-http-canary.conf"

doc=$work/usr/share/doc/$PKG
install -d "$doc/conf-examples" "$doc/docs"
install -m 0644 "$TOP/README.md" "$doc/README.md"
install -m 0644 -t "$doc/docs/" "$TOP"/docs/*.md
find "$TOP/conf-examples" -maxdepth 1 -type f \
    -exec install -m 0644 -t "$doc/conf-examples/" {} +

# LICENSE: its "Copyright (C) ..." lines, a blank line, the licence text
[ -f "$TOP/LICENSE" ] || die "no $TOP/LICENSE"
holders=$(sed -n 's/^Copyright (C) //p' "$TOP/LICENSE")
[ -n "$holders" ] || die "no \"Copyright (C) ...\" line in $TOP/LICENSE"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: ngx_http_canary_module"
    echo "Upstream-Contact: $MAINTAINER"
    echo
    echo "Files: *"
    echo "Copyright: $holders"
    echo "License: BSD-2-clause"
    echo
    echo "License: BSD-2-clause"
    # the text after the first blank line, as DEP-5 wants it: each line
    # indented by one space, an empty line as " ."
    sed '1,/^$/d' "$TOP/LICENSE" | sed 's/^$/./; s/^/ /'
} > "$doc/copyright"

date=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$TOP" log -1 --format=%ct \
       2>/dev/null || date +%s)}")
{
    echo "$PKG ($VERSION) unstable; urgency=medium"
    echo
    echo "  * Built from $(git -C "$TOP" describe --always --dirty 2>/dev/null \
                           || echo 'a source tree') against $abi."
    echo
    echo " -- $MAINTAINER  $date"
} | gzip -9n > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/copyright" "$doc/changelog.Debian.gz"


# maintainer scripts, as dh_nginx writes them; $DPKG_ROOT lets
# `dpkg --root=DIR --force-script-chrootless` install into a directory

conf=mod-http-canary.conf:50-mod-http-canary.conf

cat > "$work/DEBIAN/postinst" <<EOF2
#!/bin/sh
set -e
# as written by dh_nginx
for confpair in $conf ; do
	from=\$(echo \$confpair | cut -d: -f1)
	to=\$(echo \$confpair | cut -d: -f2)
	enabled="\${DPKG_ROOT:-}/etc/nginx/modules-enabled"

	if [ -L \$enabled/\$to.removed ]; then
		rm \$enabled/\$to.removed
		removed_link=true
	else
		removed_link=false
	fi

	# Symlink on
	# 1) Fresh installations
	# 2) Reinstalls after automatic removes (preserve admin actions)
	if [ -z "\$2" -o "\$removed_link" = "true" ]; then
		mkdir -p \$enabled
		ln -sf /usr/share/nginx/modules-available/\$from \$enabled/\$to
	fi
done

if [ "\$1" = "configure" ] ; then
	if which dpkg-trigger >/dev/null 2>&1 ; then
		dpkg-trigger --no-await nginx-reload
	fi
fi
EOF2

cat > "$work/DEBIAN/prerm" <<EOF2
#!/bin/sh
set -e
# as written by dh_nginx
if [ "\$1" = "remove" ] || [ "\$1" = "deconfigure" ] ; then
	for confpair in $conf ; do
		to=\$(echo \$confpair | cut -d: -f2)
		enabled="\${DPKG_ROOT:-}/etc/nginx/modules-enabled"

		if [ -L \$enabled/\$to ]; then
			mv \$enabled/\$to \$enabled/\$to.removed
		fi
	done
fi
EOF2

cat > "$work/DEBIAN/postrm" <<EOF2
#!/bin/sh
set -e
# as written by dh_nginx
if [ "\$1" = "purge" ] ; then
	for confpair in $conf ; do
		to=\$(echo \$confpair | cut -d: -f2)
		enabled="\${DPKG_ROOT:-}/etc/nginx/modules-enabled"

		if [ -L \$enabled/\$to ]; then
			rm \$enabled/\$to
		fi
		if [ -L \$enabled/\$to.removed ]; then
			rm \$enabled/\$to.removed
		fi
	done
fi

if [ "\$1" = "remove" ] ; then
	if which dpkg-trigger >/dev/null 2>&1 ; then
		dpkg-trigger --no-await nginx-reload
	fi
fi
EOF2

chmod 0755 "$work/DEBIAN/postinst" "$work/DEBIAN/prerm" "$work/DEBIAN/postrm"

size=$(du -sk --exclude=DEBIAN "$work" | cut -f1)

cat > "$work/DEBIAN/control" <<EOF2
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Multi-Arch: foreign
Maintainer: $MAINTAINER
Installed-Size: $size
Depends: $depends
Recommends: nginx
Section: httpd
Priority: optional
Description: Canary releases for Nginx (consistent-hash traffic split)
 ngx_http_canary_module sends each user to the stable or the canary
 upstream by a consistent hash of a user key, with rollout percentages in
 shared memory that change from Redis without a reload, per-variant
 metrics (text, JSON, Prometheus) and automatic progressive rollouts.
EOF2

find "$work" -type d -exec chmod 0755 {} +

deb=$OUT/${PKG}_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$work" "$deb" >/dev/null
echo "$deb"
