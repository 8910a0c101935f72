#!/usr/bin/perl

# make deb DIST=trixie: the package for Debian 13, built in a trixie
# container against trixie's nginx-dev, depends on that nginx's ABI and on
# trixie's hiredis; lintian (trixie's) finds nothing but the tags
# packaging/lintian-tags explains; `apt-get install` of the file alone in
# a clean trixie container pulls trixie's nginx, enables the module, and
# that nginx routes by a Redis on this host.  Once per CI
# (t/lib/CanaryContainer.pm).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use CanaryTest;
use CanaryContainer;

need_module();
once_per_ci();

my $repo = $CanaryContainer::REPO;
my $dir = "$repo/build/deb/trixie";
my $name = "canary-t97-$$";

my $t0 = time;
my $out = `env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s -C '$repo' deb DIST=trixie 2>&1`;
is($?, 0, 'make deb DIST=trixie') or diag(substr($out, -4000));
note(sprintf 'make deb DIST=trixie took %.0f s', time - $t0);

chomp(my $version = CanaryTest::read_file("$repo/VERSION"));
chomp(my $arch = `dpkg --print-architecture`);
my $file = "libnginx-mod-http-canary_${version}-1_${arch}.deb";
ok(-f "$dir/$file", "build/deb/trixie/$file") or BAIL_OUT('no package');

my $depends = `dpkg-deb -f '$dir/$file' Depends`;
like($depends, qr/^nginx-abi-1\.26\.\d+-\d+(?:,|$)/,
     "Depends on trixie's nginx ABI (1.26)") or diag($depends);
like($depends, qr/(?:^|, )libhiredis1\.1\.0 \(>= 1\.2/,
     "Depends on trixie's hiredis (libhiredis1.1.0, 1.2)");

# lintian: every tag it reports is explained in packaging/lintian-tags
my %explained = map { /^(\S+)/ ? ($1 => 1) : () }
                grep { !/^\s*(?:#|$)/ }
                split /\n/, CanaryTest::read_file("$repo/packaging/lintian-tags");
my $lintian = CanaryTest::read_file("$dir/lintian.txt");
note("lintian (trixie):\n$lintian");
my @tags = $lintian =~ /^[EW]: \S+: (\S+)/mg;
is_deeply([grep { !$explained{$_} } @tags], [],
          'lintian: no error or warning but those explained');

# --- apt-get install in a clean trixie container, then trixie's nginx

my $redis = start_redis();
my ($port, $sport, $cport) = map { free_port() } 1 .. 3;
my $t = CanaryTest::tmp_prefix();
CanaryTest::write_file("$t/canary.conf", <<"EOF");
upstream app_stable { server 127.0.0.1:$sport; }
upstream app_canary { server 127.0.0.1:$cport; }
server {
    listen 127.0.0.1:$sport;
    location / { return 200 "stable \$http_x_canary\\n"; }
}
server {
    listen 127.0.0.1:$cport;
    location / { return 200 "canary \$http_x_canary\\n"; }
}
canary_zone 1m;
canary_redis 127.0.0.1:${\ $redis->port};
canary_sync_interval 1s;
canary_rollout app {
    key     \$cookie_uid;
    stable  app_stable;
    canary  app_canary;
    percent 0;
}
server {
    listen 127.0.0.1:$port;
    location / {
        canary app;
        proxy_pass http://\$canary_upstream;
        proxy_set_header X-Canary \$canary_variant;
    }
    location = /canary { canary_status; }
}
EOF

END {
    local $?;
    engine('rm', '-f', '-t', '0', $name);
}

my $script = <<"EOF";
set -eu
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d
chmod +x /usr/sbin/policy-rc.d
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
    /deb/$file 2>&1 | grep -E '^(Setting up|The following NEW| +[a-z])' || true
nginx -v 2>&1
ls /etc/nginx/modules-enabled/
cp /t/canary.conf /etc/nginx/conf.d/canary.conf
rm -f /etc/nginx/sites-enabled/default
nginx -t 2>&1
echo READY
exec nginx -g 'daemon off;'
EOF

engine('rm', '-f', '-t', '0', $name);
my ($rc, $id) = engine_out('run', '-d', '--name', $name, '--network', 'host',
                           '-v', "$dir:/deb:ro", '-v', "$t:/t:ro",
                           'debian:trixie-slim', 'sh', '-c', $script);
is($rc, 0, 'a trixie container runs') or diag($id);

my $log = '';
my $end = time + 300;
while (time < $end) {
    $log = (engine_out('logs', $name))[1];
    last if $log =~ /^READY$/m
            || (engine_out('inspect', '--format', '{{.State.Running}}',
                           $name))[1] =~ /false/;
    sleep 1;
}
note("install transcript:\n$log");
like($log, qr/^Setting up libnginx-mod-http-canary \(\Q$version\E-1\)/m,
     'apt-get installs the package');
like($log, qr/^Setting up nginx \(1\.26\./m, "and pulls trixie's nginx 1.26");
like($log, qr/^50-mod-http-canary\.conf$/m, 'the module is enabled');
like($log, qr/test is successful/, "trixie's nginx -t loads the module");

ok(CanaryTest::wait_port($port, 20), 'nginx listens');
my ($st, $h, $body) = http_get($port, '/', Cookie => 'uid=alice');
is($body, "stable stable\n", 'routes to stable at percent 0');
$redis->cli(qw(HSET canary:rollout:app percent 100));
$redis->cli(qw(PUBLISH canary:changed app));
my $ok = 0;
$end = time + 10;
while (time < $end) {
    last if $ok = (http_get($port, '/', Cookie => 'uid=alice'))[2]
                  eq "canary canary\n";
    sleep 0.1;
}
ok($ok, 'follows percent 100 set in Redis: routes to canary');
($st, $h, $body) = http_get($port, '/canary');
is($st, 200, 'status page');

is(engine('stop', '-t', '10', $name), 0, 'stops');
$log = (engine_out('logs', $name))[1];
my @bad = grep { /\[(?:alert|emerg|crit)\]/ } split /\n/, $log;
ok(!@bad, 'no alerts') or diag(join "\n", @bad);

done();
