#!/usr/bin/perl

# make deb: the package has Debian's layout and the right control fields,
# installs with `dpkg -i` into a temporary root (never the system), enables
# the module as dh_nginx does, and Debian's nginx loads the installed .so
# through the shipped modules-available file (`nginx -t`, then serving).
# Remove and purge undo the symlink as Debian's modules do.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;
use CanaryTest;

use Cwd qw(abs_path);

need_module();

for my $tool (qw(dpkg dpkg-deb objdump)) {
    plan skip_all => "$tool not installed"
        unless grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

# The package is Debian's kind of module for Debian's nginx: it is tested
# in the run against that nginx (`make test`), and said skipped in the
# runs against other builds (`make test NGINX_VERSION=...`).
{
    my $real = abs_path($ENV{CANARY_REAL_NGINX} || $CanaryTest::NGINX)
               // '';
    my $debian = abs_path('/usr/sbin/nginx') // '';
    my $v = nginx_version();
    plan skip_all => 'the .deb is a dynamic module for Debian\'s nginx;'
                     . " this run's nginx $v has the module built in"
        if module_static();
    plan skip_all => 'the .deb is for Debian\'s nginx (/usr/sbin/nginx);'
                     . " this run tests another build: $real ($v)"
        if $real ne $debian;
    plan skip_all => 'the .deb is for Debian\'s nginx: /usr/sbin/nginx'
                     . ' is not from a Debian package'
        if system("dpkg -S /usr/sbin/nginx > /dev/null 2>&1") != 0;
}

my $repo = "$FindBin::Bin/..";
my $tmp = tempdir('canary-deb-XXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{CANARY_KEEP});
chmod 0755, $tmp;

# the production nginx, not a test wrapper (sanitizers, valgrind)
my $nginx = '/usr/sbin/nginx';

sub run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

# a plain build even inside `make test SANITIZE=1`
my ($rc, $out) = run("env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS -u SANITIZE "
                     . "make -s -C '$repo' deb DEB_OUT='$tmp/out'");
is($rc, 0, 'make deb') or diag($out);

chomp(my $version = CanaryTest::read_file("$repo/VERSION"));
chomp(my $arch = `dpkg --print-architecture`);
my $deb = "$tmp/out/libnginx-mod-http-canary_${version}-1_${arch}.deb";
ok(-f $deb, "built $deb") or BAIL_OUT("no package");

# control fields

my %f;
my $control = `dpkg-deb -f '$deb'`;
while ($control =~ /^([\w-]+):\s*(.*(?:\n .*)*)$/mg) {
    $f{$1} = $2;
}

is($f{Package}, 'libnginx-mod-http-canary', 'Package');
is($f{Version}, "$version-1", 'Version from VERSION');
is($f{Architecture}, $arch, 'Architecture');
is($f{Section}, 'httpd', 'Section httpd, as Debian\'s modules');
like($f{Maintainer} // '', qr/^.+ <[^>]+\@[^>]+>$/, 'Maintainer: name <mail>');
unlike($f{Maintainer} // '',
       qr/\@(?:localhost|[^>]*\.(?:example|invalid|test|local))>|\@example\./,
       'Maintainer: a real role address, not a placeholder');
like($f{Description} // '', qr/\A.+\n \S/, 'Description: synopsis and text');

# the nginx ABI: what Debian's nginx provides, as dh_nginx reads it
my $provides = `dpkg-query -W -f='\${Provides}' nginx 2>/dev/null`;
my ($abi) = $provides =~ /(nginx-abi-[^\s,]+)/;
SKIP: {
    skip 'no installed nginx providing nginx-abi-*', 1 unless $abi;
    like($f{Depends}, qr/(?:^|, )\Q$abi\E(?:,|$)/,
         "Depends on the ABI of the installed nginx ($abi)");
}
my @needed = `objdump -p '${\ module_path()}'`
             =~ /^\s*NEEDED\s+(\S+)/mg;
ok((grep { /^libhiredis\.so\.0\.14$/ } @needed), 'the .so needs hiredis 0.14');
like($f{Depends}, qr/(?:^|, )libhiredis0\.14 \(>= [\d.]+\)/,
     'Depends on libhiredis0.14');
like($f{Depends}, qr/(?:^|, )libc6 \(>= [\d.]+\)/, 'Depends on libc6');
ok((grep { /^libcurl\.so\.4$/ } @needed), 'the .so needs libcurl 4');
like($f{Depends}, qr/(?:^|, )libcurl4 \(>= [\d.]+\)/,
     'Depends on libcurl4 (the OpenSSL build)');
is($f{Recommends}, 'nginx', 'Recommends nginx');

# contents

my $list = `dpkg-deb -c '$deb'`;
for my $path (qw(./usr/lib/nginx/modules/ngx_http_canary_module.so
                 ./usr/share/nginx/modules-available/mod-http-canary.conf
                 ./usr/share/doc/libnginx-mod-http-canary/copyright
                 ./usr/share/doc/libnginx-mod-http-canary/changelog.Debian.gz
                 ./usr/share/doc/libnginx-mod-http-canary/docs/directives.md
                 ./usr/share/doc/libnginx-mod-http-canary/conf-examples/minimal-cookie.conf))
{
    like($list, qr/ \Q$path\E$/m, "ships $path");
}
unlike($list, qr/^(?!d)\S+ (?!root\/root)/m, 'every file owned by root');

# dpkg -x: the files as they land

my $x = "$tmp/x";
($rc, $out) = run("dpkg -x '$deb' '$x'");
is($rc, 0, 'dpkg -x') or diag($out);
is(CanaryTest::read_file("$x/usr/share/nginx/modules-available/"
                         . 'mod-http-canary.conf'),
   "load_module modules/ngx_http_canary_module.so;\n",
   'modules-available file as Debian writes them');

# the copyright file: DEP-5, the licence of LICENSE in full

my $copyright = CanaryTest::read_file(
    "$x/usr/share/doc/libnginx-mod-http-canary/copyright");
my $license = CanaryTest::read_file("$repo/LICENSE");
my ($holders) = $license =~ /^Copyright \(C\) (.+)$/m;
like($license, qr/^Redistribution and use in source and binary forms/m,
     'LICENSE: the BSD licence');
like($copyright, qr{^Format: https://www\.debian\.org/doc/packaging-manuals/copyright-format/1\.0/$}m,
     'copyright: DEP-5');
like($copyright, qr/^Copyright: \Q$holders\E$/m,
     "copyright: Copyright: $holders");
is(() = $copyright =~ /^License: BSD-2-clause$/mg, 2,
   'copyright: License: BSD-2-clause, and its text');
(my $body = $license) =~ s/\A.*?\n\n//s;
my ($text) = $copyright =~ /^License: BSD-2-clause\n((?: .*\n)+)\z/m;
$text //= '';
$text =~ s/^ \.$//mg;
$text =~ s/^ //mg;
is($text, $body, 'copyright: the licence text is LICENSE\'s, whole');

# dpkg -i into a temporary root; maintainer scripts run without chroot,
# against $DPKG_ROOT (dpkg sets it), so the system is not touched

my $root = "$tmp/root";
mkdir $_ for $root, "$root/var", "$root/var/lib", "$root/var/lib/dpkg",
             "$root/var/lib/dpkg/info", "$root/var/lib/dpkg/updates",
             "$root/etc", "$root/etc/nginx", "$root/etc/nginx/modules-enabled";
CanaryTest::write_file("$root/var/lib/dpkg/status", '');

my $dpkg = "dpkg --root='$root' --log=/dev/null --force-script-chrootless";
my $link = "$root/etc/nginx/modules-enabled/50-mod-http-canary.conf";

($rc, $out) = run("$dpkg --force-depends -i '$deb'");
is($rc, 0, 'dpkg -i into a temporary root') or diag($out);
is(readlink($link),
   '/usr/share/nginx/modules-available/mod-http-canary.conf',
   'postinst enables it in modules-enabled');

# Debian's nginx loads the installed module the way /etc/nginx/nginx.conf
# does (include of modules-enabled, modules/ relative to the prefix
# /usr/lib/nginx/ of Debian's build; here the temporary root's)

my $p = CanaryTest::make_prefix();
my $conf = <<"EOF";
include $root/usr/share/nginx/modules-available/mod-http-canary.conf;
error_log $p/logs/error.log;
pid $p/logs/nginx.pid;
events { }
http {
    client_body_temp_path $p/temp/client_body;
    proxy_temp_path $p/temp/proxy;
    fastcgi_temp_path $p/temp/fastcgi;
    uwsgi_temp_path $p/temp/uwsgi;
    scgi_temp_path $p/temp/scgi;
    upstream s { server 127.0.0.1:1; }
    upstream c { server 127.0.0.1:2; }
    canary_zone 1m;
    canary_rollout app { key \$arg_u; stable s; canary c; percent 50; }
    server {
        listen 127.0.0.1:1;
        location / { canary app; return 200 \$canary_variant; }
    }
}
EOF
CanaryTest::write_file("$p/nginx.conf", $conf);
($rc, $out) = run("$nginx -t -p '$root/usr/lib/nginx/' -c '$p/nginx.conf'");
is($rc, 0, 'nginx -t loads the installed .so') or diag($out);
like($out, qr/test is successful/, '... test is successful');

# and serves with it

{
    local $ENV{CANARY_MODULE} = "$root/usr/lib/nginx/modules/"
                                . 'ngx_http_canary_module.so';
    my $ng = start_nginx(<<'EOF');
upstream s { server 127.0.0.1:1; }
upstream c { server 127.0.0.1:2; }
canary_zone 1m;
canary_rollout app { key $arg_u; stable s; canary c; percent 50; }
server {
    listen 127.0.0.1:%%PORT%%;
    location / { canary app; return 200 "$canary_variant $canary_bucket"; }
}
EOF
    my $b = murmur3_32('app:u1') % 10000;
    my (undef, undef, $body) = http_get($ng->port, '/?u=u1');
    is($body, ($b < 5000 ? 'canary' : 'stable') . " $b",
       'the packaged module routes by the documented hash');
    $ng->stop;
}

# lintian (bookworm's): no error or warning but those explained in
# packaging/lintian-tags

SKIP: {
    skip 'no lintian', 1 unless -x '/usr/bin/lintian';
    my %explained = map { /^(\S+)/ ? ($1 => 1) : () }
                    grep { !/^\s*(?:#|$)/ } split /\n/,
                    CanaryTest::read_file("$repo/packaging/lintian-tags");
    my $lintian = `lintian '$deb' 2>&1`;
    my @tags = $lintian =~ /^[EW]: \S+: (\S+)/mg;
    is_deeply([grep { !$explained{$_} } @tags], [],
              'lintian: no error or warning but those explained')
        or diag($lintian);
}

# remove keeps the admin's choice as *.removed, purge deletes it

($rc, $out) = run("$dpkg -r libnginx-mod-http-canary");
is($rc, 0, 'dpkg -r') or diag($out);
ok(!-e "$root/usr/lib/nginx/modules/ngx_http_canary_module.so",
   'remove deletes the .so');
ok(-l "$link.removed" && !-l $link, 'prerm renames the link *.removed');

($rc, $out) = run("$dpkg --force-depends -i '$deb'");
ok(-l $link && !-l "$link.removed", 'reinstall after remove re-enables it');

($rc, $out) = run("$dpkg -P libnginx-mod-http-canary");
is($rc, 0, 'dpkg -P') or diag($out);
ok(!-l $link && !-l "$link.removed", 'purge deletes the link');

done();
